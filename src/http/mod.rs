//! The HTTP front end (actix-web): the Aliyun-style HTTP messaging API at the root
//! (`/topics/{topic}/messages`), the admin REST API under `/api/v1`, the dashboard at `/`,
//! Prometheus `/metrics` and `/healthz`. Thin translations: every rule lives in
//! `BrokerContext`'s flows.

mod access;
pub mod api;
mod dashboard;
mod messaging;
mod signature;
mod xml;

pub use messaging::MessagingSettings;

use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_exporter_prometheus::PrometheusHandle;
use rocktor_actors::BrokerContext;
use std::net::SocketAddr;
use std::time::Duration;

/// How long an idle keep-alive connection stays open: the SDKs reuse connections between
/// long polls (Python's socket timeout is 60 s; Node reports a closed one as ECONNRESET).
pub const KEEP_ALIVE: Duration = Duration::from_secs(75);

/// Routes other actix-web apps can mount when embedding rocktor (see `examples/embedded.rs`):
/// `/metrics` and `/healthz` always; with a broker, the messaging API, the REST API and the
/// dashboard.
pub fn configure(
    cfg: &mut web::ServiceConfig,
    metrics: Option<PrometheusHandle>,
    broker: Option<(BrokerContext, MessagingSettings)>,
) {
    cfg.app_data(web::Data::new(metrics))
        .app_data(web::Data::new(broker.as_ref().map(|(b, _)| b.clone())))
        .route("/metrics", web::get().to(metrics_page))
        .route("/healthz", web::get().to(healthz));
    if let Some((b, settings)) = broker {
        cfg.app_data(web::Data::new(b))
            .app_data(web::Data::new(settings));
        api::routes(cfg);
        dashboard::routes(cfg);
        messaging::routes(cfg);
    }
}

async fn metrics_page(
    handle: web::Data<Option<PrometheusHandle>>,
    broker: web::Data<Option<BrokerContext>>,
) -> HttpResponse {
    if let Some(b) = broker.get_ref() {
        b.refresh_metrics().await;
    }
    // Process figures (RSS, CPU seconds, open descriptors, threads) as of this scrape.
    static PROCESS: std::sync::OnceLock<metrics_process::Collector> = std::sync::OnceLock::new();
    PROCESS
        .get_or_init(|| {
            let c = metrics_process::Collector::default();
            c.describe();
            c
        })
        .collect();
    match handle.get_ref() {
        Some(h) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(h.render()),
        None => HttpResponse::ServiceUnavailable()
            .body("metrics recorder not installed in this process"),
    }
}

/// 200 "ok"; 503 while the store refuses writes (reads still work).
async fn healthz(broker: web::Data<Option<BrokerContext>>) -> HttpResponse {
    match broker.get_ref() {
        Some(b) if !b.writable() => HttpResponse::ServiceUnavailable()
            .body("write-unavailable: the store refuses writes (see the broker's log)"),
        _ => HttpResponse::Ok().body("ok"),
    }
}

/// The broker's own HTTP server on `addr`, with `workers` threads (one per core by default).
pub fn start(
    addr: SocketAddr,
    metrics: Option<PrometheusHandle>,
    broker: BrokerContext,
    settings: MessagingSettings,
    workers: usize,
) -> std::io::Result<actix_web::dev::Server> {
    let server = HttpServer::new(move || {
        let timer = broker.metrics.clone();
        App::new()
            .configure(|c| configure(c, metrics.clone(), Some((broker.clone(), settings.clone()))))
            .wrap_fn(move |req, srv| {
                use actix_web::dev::Service as _;
                // The route's pattern, not its path: topic names stay out of this label.
                let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
                let method = match req.method().as_str() {
                    m @ ("GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" | "PATCH") => {
                        m.to_string()
                    }
                    _ => "OTHER".to_string(),
                };
                let (timer, started) = (timer.clone(), std::time::Instant::now());
                let answer = srv.call(req);
                async move {
                    let r = answer.await;
                    let status = match &r {
                        Ok(resp) => resp.status().as_u16(),
                        Err(e) => e.as_response_error().status_code().as_u16(),
                    };
                    timer.rpc(
                        "http",
                        &format!("{method} {route}"),
                        &status.to_string(),
                        started.elapsed(),
                    );
                    r
                }
            })
    })
    // Dropped with the connection's extensions, when it closes.
    .on_connect(|_, ext| {
        ext.insert(rocktor_actors::metrics::OpenConnection::new("http"));
    })
    .workers(workers.max(1))
    .keep_alive(KEEP_ALIVE)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(addr)?
    .run();
    Ok(server)
}
