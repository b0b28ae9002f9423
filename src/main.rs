//! The rocktor binary: a standalone broker (name server, broker, HTTP) in one process.

/// mimalloc: glibc malloc spent a quarter of the arbiter threads' time on frees of buffers
/// allocated on another thread (measured with perf, see the performance notes in README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Args, Parser};
use rocktor::{Broker, Config};
use rocktor_storage::FlushMode;
use serde::Serialize;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "rocktor",
    version,
    about = "A message broker that speaks Apache RocketMQ's protocols",
    after_help = "Every config key can also be set by a ROCKTOR_<KEY> environment variable \
                  (e.g. ROCKTOR_BROKER_PORT). Precedence: defaults < config file < \
                  environment < flags."
)]
struct Cli {
    /// TOML config file (see rocktor.example.toml).
    #[arg(long, global = true, env = "ROCKTOR_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    flags: Flags,
    /// Without one, run the broker.
    #[command(subcommand)]
    command: Option<Migration>,
}

/// Metadata to or from Apache RocketMQ, with the broker stopped (the store takes one process).
#[derive(Debug, clap::Subcommand)]
enum Migration {
    /// Brings an Apache broker's topics, groups and committed offsets (topics.json,
    /// subscriptionGroup.json, consumerOffset.json) and a plain_acl.yml beside them into this
    /// broker's data directory, and says what it imported and what it skipped.
    Import {
        /// The Apache broker's store/config directory.
        #[arg(long)]
        apache_config: PathBuf,
        /// Its plain_acl.yml, when not in that directory (Apache keeps it in conf/).
        #[arg(long)]
        apache_acl: Option<PathBuf>,
    },
    /// Writes this broker's topics, groups, committed offsets (and ACL accounts) as an Apache
    /// broker's store/config files. Messages stay here, so offsets are written for queues
    /// that start empty (0 for a group that read everything).
    Export {
        #[arg(long)]
        apache_config: PathBuf,
        /// Write the committed offsets as they are: for another rocktor, whose import makes
        /// its queues continue them.
        #[arg(long)]
        keep_offsets: bool,
    },
}

// Flags that override config keys: the top layer of `Config::load`. Only the flags given are
// serialized, so the other keys keep their value from the environment, the file or the
// defaults. Field names are config keys. (A plain comment: clap would take a doc comment on a
// flattened struct for the command's about.)
#[derive(Debug, Args, Serialize)]
struct Flags {
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Address to bind the listeners to.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<IpAddr>,
    /// Address announced to clients.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    advertise: Option<IpAddr>,
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    namesrv_port: Option<u16>,
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_port: Option<u16>,
    /// HTTP port (0 disables).
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    http_port: Option<u16>,
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_port: Option<u16>,
    #[arg(long, global = true, value_parser = parse_flush)]
    #[serde(skip_serializing_if = "Option::is_none")]
    flush_mode: Option<FlushMode>,
    /// ACL 1.0 plain_acl.yml.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    acl: Option<PathBuf>,
    /// TLS certificate chain (PEM) for the remoting ports.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
    /// permissive (TLS and plain on one port), enforcing (TLS only) or disabled.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_mode: Option<String>,
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<String>,
}

fn parse_flush(s: &str) -> Result<FlushMode, String> {
    match s {
        "async" => Ok(FlushMode::Async),
        "sync" => Ok(FlushMode::Sync),
        other => Err(format!("flush mode must be async or sync, not {other:?}")),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), &cli.flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rocktor: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // A migration prints its report; the broker's start-up lines would bury it.
    let level = match cli.command {
        Some(_) => "warn",
        None => config.log.as_str(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match cli.command {
        // The report goes to stdout, alone.
        Some(_) => logs.with_writer(std::io::stderr).init(),
        None => logs.init(),
    }

    if let Some(m) = cli.command {
        return migrate(m, config);
    }
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        let broker = Broker::start(config).await?;
        wait_for_signal().await;
        tracing::info!("signal received: shutting down");
        broker.stop().await;
        Ok::<(), rocktor::StartError>(())
    });
    match result {
        Ok(()) => exit_now(0),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("rocktor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn migrate(m: Migration, config: Config) -> std::process::ExitCode {
    // The files are read and checked before the store is opened: a bad one changes nothing.
    enum Job {
        Import(rocktor::migrate::Source),
        Export { dir: PathBuf, keep_offsets: bool },
    }
    let job = match m {
        Migration::Import {
            apache_config,
            apache_acl,
        } => match rocktor::migrate::Source::read(&apache_config, apache_acl.as_deref()) {
            Ok(s) => Job::Import(s),
            Err(e) => {
                eprintln!("rocktor: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
        Migration::Export {
            apache_config,
            keep_offsets,
        } => Job::Export {
            dir: apache_config,
            keep_offsets,
        },
    };
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        let ctx = rocktor::open_context(&config).await.map_err(|e| match e {
            // RocksDB's LOCK file: another process has the store.
            rocktor::StartError::Storage { .. } if e.to_string().contains("lock") => {
                format!("{e} (a broker running on this data directory holds it: stop it first)")
            }
            e => e.to_string(),
        })?;
        let done = match job {
            Job::Import(src) => rocktor::migrate::import(&ctx, src)
                .await
                .map(|r| r.render("imported")),
            Job::Export { dir, keep_offsets } => rocktor::migrate::export(&ctx, &dir, keep_offsets)
                .await
                .map(|r| r.render("exported")),
        };
        // Offsets flushed and the store closed, whatever happened.
        ctx.shutdown().await;
        done
    });
    match result {
        Ok(report) => {
            print!("{report}");
            exit_now(0)
        }
        Err(e) => {
            eprintln!("rocktor: {e}");
            exit_now(1)
        }
    }
}

/// Ends the process once everything is durable (WAL synced, memtables flushed, RocksDB's
/// threads stopped), without running C++ static destructors: worker threads may still be
/// dropping their handles, and RocksDB aborts ("pthread lock: Invalid argument") when its
/// statics go first.
fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit only ends the process; nothing after it runs.
    unsafe { libc::_exit(code) }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
