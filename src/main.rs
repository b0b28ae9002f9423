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
    #[arg(long, env = "ROCKTOR_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    flags: Flags,
}

// Flags that override config keys: the top layer of `Config::load`. Only the flags given are
// serialized, so the other keys keep their value from the environment, the file or the
// defaults. Field names are config keys. (A plain comment: clap would take a doc comment on a
// flattened struct for the command's about.)
#[derive(Debug, Args, Serialize)]
struct Flags {
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Address to bind the listeners to.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<IpAddr>,
    /// Address announced to clients.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    advertise: Option<IpAddr>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    namesrv_port: Option<u16>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_port: Option<u16>,
    /// HTTP port (0 disables).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    http_port: Option<u16>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_port: Option<u16>,
    #[arg(long, value_parser = parse_flush)]
    #[serde(skip_serializing_if = "Option::is_none")]
    flush_mode: Option<FlushMode>,
    /// ACL 1.0 plain_acl.yml.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    acl: Option<PathBuf>,
    /// TLS certificate chain (PEM) for the remoting ports.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
    /// permissive (TLS and plain on one port), enforcing (TLS only) or disabled.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_mode: Option<String>,
    #[arg(long)]
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();

    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        let broker = Broker::start(config).await?;
        wait_for_signal().await;
        tracing::info!("signal received: shutting down");
        broker.stop().await;
        Ok::<(), rocktor::StartError>(())
    });
    match result {
        Ok(()) => {
            // Everything is durable now (WAL synced, memtables flushed, RocksDB's threads
            // stopped). Leave without running C++ static destructors: worker threads may still
            // be dropping their handles, and RocksDB aborts ("pthread lock: Invalid argument")
            // when its statics go first.
            use std::io::Write;
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            // SAFETY: _exit only ends the process; nothing after it runs.
            unsafe { libc::_exit(0) }
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("rocktor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
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
