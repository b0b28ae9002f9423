//! The gRPC front end: `apache.rocketmq.v2.MessagingService` for RocketMQ 5.x clients, on
//! the same domain as remoting and HTTP (digest §6). One tonic server per worker arbiter:
//! the accept loop hands each connection to the next worker, as remoting does, so HTTP/2 and
//! protobuf work spreads over the cores. Plain and TLS on one port (`io`).

mod convert;
pub mod io;
mod service;
mod session;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("apache.rocketmq.v2");
}

use rocktor_actors::auth::{AccessRequest, AuthError, Perm, Resource, LOCALHOST};
use rocktor_actors::BrokerContext;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;

pub use service::GrpcSettings;

/// Connections waiting for their worker at most; past it a new one is closed at once.
const HANDOFF_QUEUE: usize = 1024;
/// Connections in their first bytes or TLS handshake at once, per worker.
const MAX_HANDSHAKES: usize = 1024;
/// Streams one HTTP/2 connection may have open at once (each may carry a request of up to
/// twice the largest message).
const MAX_STREAMS_PER_CONNECTION: u32 = 128;

/// Serves the gRPC port until `shutdown` turns true.
pub fn serve(
    listener: TcpListener,
    acceptor: io::GrpcAcceptor,
    ctx: BrokerContext,
    settings: GrpcSettings,
    workers: usize,
    shutdown: watch::Receiver<bool>,
) {
    let service = service::Messaging::new(ctx.clone(), settings);
    let mut handoffs = Vec::new();
    for _ in 0..workers.max(1) {
        let (tx, rx) = mpsc::channel::<TcpStream>(HANDOFF_QUEUE);
        handoffs.push(tx);
        let (service, acceptor, shutdown) = (service.clone(), acceptor.clone(), shutdown.clone());
        ctx.next_arbiter()
            .spawn(worker(rx, acceptor, service, shutdown));
    }
    actix_rt::spawn(accept_loop(listener, handoffs, shutdown));
}

async fn accept_loop(
    listener: TcpListener,
    handoffs: Vec<mpsc::Sender<TcpStream>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                next = next.wrapping_add(1);
                if handoffs[next % handoffs.len()].try_send(stream).is_err() {
                    tracing::warn!("gRPC connection refused: its worker's queue is full");
                }
            }
            Err(e) => {
                // Out of descriptors and the like: wait a moment instead of spinning.
                tracing::warn!(error = %e, "gRPC accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// One worker's tonic server, fed with the connections the accept loop hands it.
async fn worker(
    mut connections: mpsc::Receiver<TcpStream>,
    acceptor: io::GrpcAcceptor,
    service: service::Messaging,
    mut shutdown: watch::Receiver<bool>,
) {
    let (io_tx, io_rx) = mpsc::channel::<io::GrpcIo>(64);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        while let Some(stream) = connections.recv().await {
            // Connections still silent or in their handshake are bounded: past it a new one
            // is closed at once.
            let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                tracing::warn!("gRPC connection refused: too many handshakes under way");
                continue;
            };
            let (acceptor, io_tx) = (acceptor.clone(), io_tx.clone());
            // The TLS handshake runs beside the others, not in the accept path.
            tokio::spawn(async move {
                let accepted = acceptor.accept(stream).await;
                drop(permit);
                if let Some(io) = accepted {
                    let _ = io_tx.send(io).await;
                }
            });
        }
    });
    let incoming = ReceiverStream::new(io_rx).map(Ok::<_, std::io::Error>);
    let max_message = service.max_request_bytes();
    let metrics = service.metrics();
    let server = pb::messaging_service_server::MessagingServiceServer::new(service)
        .max_decoding_message_size(max_message)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let stop = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    let served = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .layer(RpcTimerLayer(metrics))
        .add_service(server)
        .serve_with_incoming_shutdown(incoming, stop)
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "gRPC worker stopped");
    }
}

/// Times every call into `rocketmq_rpc_latency` (protocol `grpc`, request code = the method,
/// response code = the call's grpc-status, 0 unless it failed before its answer). A server
/// stream is timed to its first answer.
#[derive(Clone)]
struct RpcTimerLayer(Arc<rocktor_actors::metrics::BrokerMetrics>);

impl<S> tower_layer::Layer<S> for RpcTimerLayer {
    type Service = RpcTimer<S>;
    fn layer(&self, inner: S) -> RpcTimer<S> {
        RpcTimer {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct RpcTimer<S> {
    inner: S,
    metrics: Arc<rocktor_actors::metrics::BrokerMetrics>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, R> tower_service::Service<tonic::codegen::http::Request<B>> for RpcTimer<S>
where
    S: tower_service::Service<
        tonic::codegen::http::Request<B>,
        Response = tonic::codegen::http::Response<R>,
    >,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let method = service::method_label(req.uri().path());
        let started = std::time::Instant::now();
        let metrics = self.metrics.clone();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let r = answer.await;
            let code = match &r {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u8>().ok())
                    .unwrap_or(0),
                Err(_) => tonic::Code::Internal as u8,
            };
            metrics.rpc("grpc", method, &code.to_string(), started.elapsed());
            r
        })
    }
}

/// The metadata every call carries (digest §6.2).
pub struct CallMeta {
    pub client_id: String,
    pub namespace: String,
    pub language: String,
    pub remote: SocketAddr,
    authorization: Option<String>,
    date_time: Option<String>,
}

impl CallMeta {
    pub fn of<T>(req: &tonic::Request<T>) -> CallMeta {
        let m = req.metadata();
        let text = |k: &str| {
            m.get(k)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        CallMeta {
            client_id: text("x-mq-client-id").unwrap_or_default(),
            namespace: text("x-mq-namespace").unwrap_or_default(),
            language: text("x-mq-language").unwrap_or_else(|| "JAVA".into()),
            remote: req
                .remote_addr()
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            authorization: text("authorization"),
            date_time: text("x-mq-date-time"),
        }
    }
}

/// Why a call's credentials were refused.
#[derive(Debug)]
pub enum Denied {
    /// No or a wrong signature, an unknown account (UNAUTHORIZED).
    Unauthenticated(String),
    /// A known account without the permission (FORBIDDEN).
    Forbidden(String),
}

/// `MQv2-HMAC-SHA1 Credential=AK[/…], SignedHeaders=x-mq-date-time, Signature=HEX` as the
/// access key and the signature in Base64 (the shared authenticator's form). An empty
/// Credential (the Python client sends one without credentials) is no access key.
fn parse_authorization(v: &str) -> Result<(Option<String>, Option<String>), String> {
    use base64::Engine;
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    if scheme != "MQv2-HMAC-SHA1" {
        return Err(format!("unknown authorization scheme {scheme}"));
    }
    let (mut ak, mut sig) = (None, None);
    for part in rest.split(',') {
        let Some((k, val)) = part.trim().split_once('=') else {
            continue;
        };
        match k.trim() {
            "Credential" => {
                ak = val
                    .split('/')
                    .next()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            }
            "Signature" => sig = Some(val.trim().to_string()),
            _ => {}
        }
    }
    let sig = match sig.filter(|s| !s.is_empty()) {
        None => None,
        Some(hex) => {
            let bytes = decode_hex(&hex).ok_or("the signature is not hex")?;
            Some(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    };
    Ok((ak, sig))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// With ACL on: the call's signature over `x-mq-date-time` and its permissions, through the
/// shared authenticator; with ACL off the header is ignored.
pub fn authorize(
    ctx: &BrokerContext,
    meta: &CallMeta,
    resources: Vec<(Resource, Perm)>,
) -> Result<(), Denied> {
    if !ctx.auth.enabled() {
        return Ok(());
    }
    let (ak, sig) = match meta.authorization.as_deref() {
        Some(v) => parse_authorization(v).map_err(Denied::Unauthenticated)?,
        None => (None, None),
    };
    let date = meta.date_time.clone().unwrap_or_default();
    let remote = match meta.remote.ip() {
        ip if ip.is_unspecified() => LOCALHOST,
        ip => ip,
    };
    let req = AccessRequest {
        remote,
        access_key: ak.as_deref(),
        signature: sig.as_deref(),
        fields: Vec::new(),
        body: &[],
        string_to_sign: Some(&date),
        admin_only: false,
        resources,
    };
    ctx.auth.check(&req).map_err(|e| match e {
        e @ (AuthError::NoCredentials
        | AuthError::UnknownAccessKey(_)
        | AuthError::BadSignature(_)) => Denied::Unauthenticated(e.to_string()),
        e @ (AuthError::NotAdmin(_) | AuthError::Denied { .. }) => Denied::Forbidden(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_headers_parse_as_clients_send_them() {
        let (ak, sig) = parse_authorization(
            "MQv2-HMAC-SHA1 Credential=AK1/20240101/x, SignedHeaders=x-mq-date-time, Signature=0aFF",
        )
        .unwrap();
        assert_eq!(ak.as_deref(), Some("AK1"));
        assert_eq!(sig.as_deref(), Some("Cv8="));
        let (ak, _) = parse_authorization(
            "MQv2-HMAC-SHA1 Credential=, SignedHeaders=x-mq-date-time, Signature=",
        )
        .unwrap();
        assert_eq!(ak, None);
        assert!(parse_authorization("Basic abc").is_err());
        assert!(parse_authorization("MQv2-HMAC-SHA1 Credential=A, Signature=xyz").is_err());
    }
}
