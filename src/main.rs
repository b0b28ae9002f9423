//! The rocktor binary: a standalone broker (name server, broker, HTTP) in one process.

/// mimalloc: glibc malloc spent a quarter of the arbiter threads' time on frees of buffers
/// allocated on another thread (measured with perf, see the performance notes in README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use rocktor::{Broker, Config};
use rocktor_storage::FlushMode;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "rocktor",
    version,
    about = "A message broker that speaks Apache RocketMQ's protocols"
)]
struct Cli {
    /// TOML config file (see rocktor.example.toml).
    #[arg(long, env = "ROCKTOR_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "ROCKTOR_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to bind the listeners to.
    #[arg(long, env = "ROCKTOR_LISTEN")]
    listen: Option<IpAddr>,
    /// Address announced to clients.
    #[arg(long, env = "ROCKTOR_ADVERTISE")]
    advertise: Option<IpAddr>,
    #[arg(long, env = "ROCKTOR_NAMESRV_PORT")]
    namesrv_port: Option<u16>,
    #[arg(long, env = "ROCKTOR_BROKER_PORT")]
    broker_port: Option<u16>,
    /// HTTP port (0 disables).
    #[arg(long, env = "ROCKTOR_HTTP_PORT")]
    http_port: Option<u16>,
    #[arg(long, env = "ROCKTOR_GRPC_PORT")]
    grpc_port: Option<u16>,
    #[arg(long, env = "ROCKTOR_FLUSH_MODE", value_parser = parse_flush)]
    flush_mode: Option<FlushMode>,
    /// ACL 1.0 plain_acl.yml.
    #[arg(long, env = "ROCKTOR_ACL")]
    acl: Option<PathBuf>,
    #[arg(long, env = "ROCKTOR_LOG")]
    log: Option<String>,
}

fn parse_flush(s: &str) -> Result<FlushMode, String> {
    match s {
        "async" => Ok(FlushMode::Async),
        "sync" => Ok(FlushMode::Sync),
        other => Err(format!("flush mode must be async or sync, not {other:?}")),
    }
}

impl Cli {
    fn into_config(self) -> Result<Config, rocktor::config::ConfigError> {
        let mut c = match &self.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        macro_rules! set { ($($f:ident),*) => { $( if let Some(v) = self.$f { c.$f = v; } )* } }
        set!(
            data_dir,
            listen,
            namesrv_port,
            broker_port,
            http_port,
            grpc_port,
            flush_mode,
            log
        );
        if self.advertise.is_some() {
            c.advertise = self.advertise;
        }
        if self.acl.is_some() {
            c.acl = self.acl;
        }
        Ok(c)
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match cli.into_config() {
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
