//! The HTTP front end: Prometheus metrics and a health check. The admin REST API, the HTTP
//! messaging API and the dashboard come with their own issues.

use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;

/// Routes other actix-web apps can mount when embedding rocktor.
pub fn configure(cfg: &mut web::ServiceConfig, metrics: Option<PrometheusHandle>) {
    cfg.app_data(web::Data::new(metrics))
        .route("/metrics", web::get().to(metrics_page))
        .route(
            "/healthz",
            web::get().to(|| async { HttpResponse::Ok().body("ok") }),
        );
}

async fn metrics_page(handle: web::Data<Option<PrometheusHandle>>) -> HttpResponse {
    match handle.get_ref() {
        Some(h) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(h.render()),
        None => HttpResponse::ServiceUnavailable()
            .body("metrics recorder not installed in this process"),
    }
}

pub fn start(
    addr: SocketAddr,
    metrics: Option<PrometheusHandle>,
) -> std::io::Result<actix_web::dev::Server> {
    let server = HttpServer::new(move || App::new().configure(|c| configure(c, metrics.clone())))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(addr)?
        .run();
    Ok(server)
}
