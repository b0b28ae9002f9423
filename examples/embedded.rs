//! rocktor embedded in an actix-web application: the broker runs inside the app's actix System,
//! its HTTP routes — the Aliyun-style HTTP messaging API, /metrics, /healthz and the admin
//! routes — are mounted under /broker next to the app's own, and it stops gracefully with the
//! app. An HTTP SDK pointed at http://127.0.0.1:18080/broker publishes and consumes.
//!
//!     cargo run --release --example embedded
//!
//! Then point a RocketMQ client at name server 127.0.0.1:19876; the app answers on :18080.

use actix_web::{web, App, HttpResponse, HttpServer};
use rocktor::{Broker, Config};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let config = Config {
        data_dir: std::env::temp_dir().join("rocktor-embedded"),
        listen: "127.0.0.1".parse().expect("literal address"),
        namesrv_port: 19876,
        broker_port: 20911,
        http_port: 0, // the app serves HTTP itself
        ..Config::default()
    };
    let broker = Broker::start(config).await.map_err(std::io::Error::other)?;
    let ctx = web::Data::new(broker.context().clone());
    let mounted = (
        broker.context().clone(),
        rocktor::http::MessagingSettings::default(),
    );
    let server = HttpServer::new(move || {
        App::new()
            .app_data(ctx.clone())
            .route(
                "/",
                web::get().to(|| async {
                    HttpResponse::Ok().body("my app, with a RocketMQ broker inside")
                }),
            )
            .route(
                "/topics",
                web::get().to(|ctx: web::Data<rocktor::BrokerContext>| async move {
                    let mut names: Vec<String> =
                        ctx.registry.load().topics.keys().cloned().collect();
                    names.sort();
                    HttpResponse::Ok().json(names)
                }),
            )
            .service(
                web::scope("/broker")
                    .configure(|c| rocktor::http::configure(c, None, Some(mounted.clone()))),
            )
    })
    .keep_alive(rocktor::http::KEEP_ALIVE)
    .bind(("127.0.0.1", 18080))?
    .run();
    let result = server.await;
    broker.stop().await;
    result
}
