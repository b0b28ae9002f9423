//! rocktor: a message broker that speaks Apache RocketMQ's protocols.
//!
//! As a library: build a [`Config`], then [`Broker::start`] inside a running actix System (for
//! example inside an actix-web app, see `examples/embedded.rs`), and [`Broker::stop`] it.

mod acl;
pub mod client;
pub mod config;
mod digest;
pub mod grpc;
pub mod http;
pub mod migrate;
pub mod remoting;
pub mod webhook;

pub use config::Config;
pub use rocktor_actors::BrokerContext;

use remoting::handlers::Role;
use rocktor_actors::{topic_queue::QueueLimits, BrokerSettings};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot open storage at {path}: {source}")]
    Storage {
        path: String,
        source: rocktor_storage::StorageError,
    },
    #[error("cannot start the broker: {0}")]
    Broker(#[from] rocktor_actors::BrokerError),
    #[error("ACL file: {0}")]
    Acl(String),
    #[error("{0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The addresses a running broker listens on.
#[derive(Debug, Clone)]
pub struct Addresses {
    pub namesrv: SocketAddr,
    pub broker: SocketAddr,
    pub http: Option<SocketAddr>,
    pub grpc: Option<SocketAddr>,
}

/// A running broker: name server, broker and HTTP front end.
pub struct Broker {
    ctx: BrokerContext,
    shutdown: watch::Sender<bool>,
    http: Option<actix_web::dev::ServerHandle>,
    addresses: Addresses,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })
}

/// Installs the Prometheus recorder once per process; later calls reuse the first handle.
fn metrics_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
            use rocktor_actors::metrics::{MESSAGE_SIZE_BUCKETS, RPC_LATENCY_BUCKETS};
            // Histograms (not summaries) for the two RocketMQ 5 distributions, with Apache's
            // buckets, so Prometheus can aggregate them across brokers.
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("rocketmq_message_size".into()),
                    MESSAGE_SIZE_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("rocketmq_rpc_latency".into()),
                        RPC_LATENCY_BUCKETS,
                    )
                });
            match builder.and_then(|b| b.install_recorder()) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// Opens the store and starts the broker's domain, its actors without listeners: what a
/// [`Broker`] serves, and what `rocktor import` and `rocktor export` drive. Must run inside an
/// actix System.
pub async fn open_context(config: &Config) -> Result<BrokerContext, StartError> {
    config.validate()?;
    let path = config.data_dir.join("store");
    let store = {
        let p = path.clone();
        let flush = config.flush_mode;
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&p)
                .map_err(|e| rocktor_storage::StorageError::Meta(e.to_string()))?;
            rocktor_storage::Store::open(&p, flush)
        })
        .await
        .map_err(|e| StartError::Broker(rocktor_actors::BrokerError::Storage(e.to_string())))?
        .map_err(|source| StartError::Storage {
            path: path.display().to_string(),
            source,
        })?
    };
    let mut settings = BrokerSettings {
        cluster_name: config.cluster_name.clone(),
        broker_name: config.broker_name.clone(),
        broker_id: 0,
        broker_addr: config.advertised_broker_addr(),
        auto_create_topic: config.auto_create_topic,
        auto_create_group: config.auto_create_group,
        default_topic_queues: config.default_topic_queues,
        max_message_size: config.max_message_size,
        queue_limits: QueueLimits {
            tail_entries: config.tail_cache_entries,
            tail_bytes: config.tail_cache_bytes,
            ..Default::default()
        },
        long_polling: config.long_polling,
        enable_property_filter: config.enable_property_filter,
        workers: config.workers(),
        max_delay_ms: config.max_delay_ms.min(i64::MAX as u64) as i64,
        max_parked_pulls: config.max_parked_pulls,
        max_parked_pulls_per_connection: config.max_parked_pulls_per_connection,
        metrics_max_series: config.metrics_max_series,
        metrics_enabled: config.metrics_enabled,
        max_group_members: config.max_group_members,
        max_dlq_resend: config.max_dlq_resend,
        txn: rocktor_actors::txn::TxnSettings {
            timeout_ms: config.transaction_timeout_ms.min(i64::MAX as u64) as i64,
            check_interval_ms: config.transaction_check_interval_ms.min(i64::MAX as u64) as i64,
            max_checks: config.transaction_check_max,
            ..Default::default()
        },
        lock_expiry: Duration::from_millis(config.orderly_lock_expiry_ms),
        max_query_messages: config.max_query_messages,
        retention: rocktor_actors::retention::RetentionSettings {
            retention_ms: config
                .retention_secs
                .saturating_mul(1000)
                .min(i64::MAX as u64) as i64,
            interval: Duration::from_millis(config.retention_check_interval_ms),
            clean_ratio: f64::from(config.disk_clean_percent) / 100.0,
            refuse_ratio: f64::from(config.disk_refuse_percent) / 100.0,
            resume_ratio: f64::from(config.disk_resume_percent) / 100.0,
            probe: Default::default(),
        },
        region_id: config.region_id.clone(),
        trace_on: config.trace_on,
        acl: None,
        http_consumer_window: Duration::from_secs(config.http_consumer_window_secs),
        alarms: rocktor_actors::alarms::AlarmSettings {
            sink: config
                .alarm_webhook()
                .map_err(|e| StartError::Config(config::ConfigError::Invalid(e)))?
                .map(webhook::Webhook::start),
            ..config.alarm_settings()
        },
    };
    if let Some(path) = &config.acl {
        settings.acl = Some(acl::load(path).map_err(StartError::Acl)?);
    }
    Ok(BrokerContext::start(settings, store).await?)
}

impl Broker {
    /// Opens storage, recovers, starts the actors and listeners. Must run inside an actix System.
    pub async fn start(config: Config) -> Result<Broker, StartError> {
        // The recorder first: what the domain's actors publish as they start counts.
        let metrics = metrics_handle();
        let ctx = open_context(&config).await?;
        let broker_addr = config.advertised_broker_addr();
        let limits = remoting::connection::ConnectionLimits {
            max_requests_in_flight: config.max_requests_per_connection,
            max_write_queue_bytes: config.max_connection_write_queue_bytes,
            idle_timeout: (config.connection_idle_timeout_secs > 0)
                .then(|| Duration::from_secs(config.connection_idle_timeout_secs)),
            write_timeout: Duration::from_secs(config.connection_write_timeout_secs.max(1)),
        };
        if let Some(path) = &config.acl {
            acl::watch(path.clone(), ctx.auth.clone());
        }
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let server = remoting::tls::server_config(cert, key).map_err(StartError::Tls)?;
                let listener = remoting::tls::TlsListener::new(server, config.tls_mode);
                if listener.is_some() {
                    tracing::info!(mode = ?config.tls_mode, cert = %cert.display(), "TLS on the remoting ports");
                }
                listener
            }
            _ => None,
        };
        let (shutdown, rx) = watch::channel(false);
        let ns_listener = bind(SocketAddr::new(config.listen, config.namesrv_port)).await?;
        let br_listener = bind(SocketAddr::new(config.listen, config.broker_port)).await?;
        let addresses = Addresses {
            namesrv: ns_listener
                .local_addr()
                .map_err(|source| StartError::Listen {
                    addr: broker_addr,
                    source,
                })?,
            broker: br_listener
                .local_addr()
                .map_err(|source| StartError::Listen {
                    addr: broker_addr,
                    source,
                })?,
            http: None,
            grpc: None,
        };
        actix_rt::spawn(remoting::server::serve(
            ns_listener,
            Role::NameServer,
            limits,
            tls.clone(),
            ctx.clone(),
            rx.clone(),
        ));
        actix_rt::spawn(remoting::server::serve(
            br_listener,
            Role::Broker,
            limits,
            tls.clone(),
            ctx.clone(),
            rx.clone(),
        ));
        if config.vip_port && config.broker_port > 2 {
            let vip = SocketAddr::new(config.listen, config.broker_port - 2);
            match TcpListener::bind(vip).await {
                Ok(l) => {
                    actix_rt::spawn(remoting::server::serve(
                        l,
                        Role::Broker,
                        limits,
                        tls.clone(),
                        ctx.clone(),
                        rx.clone(),
                    ));
                }
                Err(e) => {
                    tracing::warn!(%vip, error = %e, "VIP port not available; old Java clients need vipChannelEnabled=false")
                }
            }
        }
        let mut broker = Broker {
            ctx,
            shutdown,
            http: None,
            addresses,
        };
        if config.http_port != 0 {
            let addr = SocketAddr::new(config.listen, config.http_port);
            let server = http::start(
                addr,
                metrics,
                broker.ctx.clone(),
                http::MessagingSettings::from_config(&config),
                config.workers(),
            )
            .map_err(|source| StartError::Listen { addr, source })?;
            broker.http = Some(server.handle());
            broker.addresses.http = Some(addr);
            actix_rt::spawn(server);
        }
        if config.grpc_port != 0 {
            let addr = SocketAddr::new(config.listen, config.grpc_port);
            let listener = bind(addr).await?;
            let local = listener
                .local_addr()
                .map_err(|source| StartError::Listen { addr, source })?;
            let acceptor = grpc::io::GrpcAcceptor::new(
                config.tls_mode,
                config.tls_cert.as_deref(),
                config.tls_key.as_deref(),
                &config.data_dir,
            )
            .map_err(StartError::Tls)?;
            grpc::serve(
                listener,
                acceptor,
                broker.ctx.clone(),
                grpc::GrpcSettings {
                    max_message_size: config.max_message_size,
                    advertised: SocketAddr::new(broker_addr.ip(), local.port()),
                },
                config.workers(),
                broker.shutdown.subscribe(),
            );
            broker.addresses.grpc = Some(local);
        }
        tracing::info!(namesrv = %broker.addresses.namesrv, broker = %broker.addresses.broker,
            advertised = %broker_addr, flush = ?config.flush_mode, "rocktor is up");
        Ok(broker)
    }

    pub fn context(&self) -> &BrokerContext {
        &self.ctx
    }

    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    /// Stops accepting, lets in-flight requests finish (up to 2 s), flushes offsets and storage.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        if let Some(h) = &self.http {
            h.stop(true).await;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while remoting::connection::IN_FLIGHT.load(Ordering::Acquire) > 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.ctx.shutdown().await;
        tracing::info!("rocktor stopped");
    }
}
