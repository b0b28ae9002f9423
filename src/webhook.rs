//! The alarm webhook (`alarm_webhook`): the domain's alarm events, one JSON POST each to the
//! configured URL (http or https, hyper's HTTP/1.1 client; https checks the server against
//! Mozilla's roots), in order, from a bounded queue: a slow or dead receiver never holds up
//! the broker, and what does not fit is dropped and counted (by the alarms actor).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use rocktor_actors::alarms::{AlarmEvent, AlarmSink};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Notifications waiting for the receiver.
const QUEUE: usize = 256;
/// One delivery, connect to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where notifications go, checked when the broker starts.
#[derive(Debug, Clone)]
pub struct Webhook {
    uri: Uri,
    tls: bool,
    host: String,
    port: u16,
}

impl Webhook {
    pub fn parse(url: &str) -> Result<Webhook, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("alarm_webhook {url:?}: {e}"))?;
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(format!(
                "alarm_webhook {url:?}: credentials in the URL are not sent; put a token in its path or query"
            ));
        }
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!(
                    "alarm_webhook {url:?}: not an http:// or https:// URL"
                ))
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("alarm_webhook {url:?}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Webhook {
            uri,
            tls,
            host,
            port,
        })
    }

    /// The URL without its path and query, which may carry a token: for listings and logs.
    pub fn redacted(&self) -> String {
        let host = match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        };
        format!(
            "{}://{host}:{}/…",
            if self.tls { "https" } else { "http" },
            self.port
        )
    }

    /// Starts the delivery task (inside an actix System); the sink takes the notifications.
    pub fn start(self) -> AlarmSink {
        let (tx, mut rx) = mpsc::channel::<AlarmEvent>(QUEUE);
        let name = self.redacted();
        let hook = Arc::new(self);
        actix::spawn(async move {
            while let Some(event) = rx.recv().await {
                let body = match serde_json::to_vec(&event) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(error = %e, "alarm event not encoded");
                        continue;
                    }
                };
                match tokio::time::timeout(TIMEOUT, hook.post(body)).await {
                    Ok(Ok(status)) if (200..300).contains(&status) => {
                        metrics::counter!("rocktor_alarm_notifications_total", "result" => "delivered").increment(1);
                    }
                    outcome => {
                        let why = match outcome {
                            Ok(Ok(status)) => format!("answered {status}"),
                            Ok(Err(e)) => e,
                            Err(_) => format!("no answer in {TIMEOUT:?}"),
                        };
                        metrics::counter!("rocktor_alarm_notifications_total", "result" => "failed").increment(1);
                        tracing::warn!(webhook = %hook.redacted(), error = %why, "alarm notification not delivered");
                    }
                }
            }
        });
        AlarmSink { name, queue: tx }
    }

    async fn post(&self, body: Vec<u8>) -> Result<u16, String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let path = self
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let req = hyper::Request::post(path)
            .header(
                "host",
                self.uri.authority().map(|a| a.as_str()).unwrap_or(""),
            )
            .header("content-type", "application/json")
            .header("user-agent", concat!("rocktor/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        if self.tls {
            let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                .map_err(|e| format!("server name: {e}"))?;
            let stream = tls_connector()?
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            send(TokioIo::new(stream), req).await
        } else {
            send(TokioIo::new(tcp), req).await
        }
    }
}

async fn send<IO>(io: IO, req: hyper::Request<Full<Bytes>>) -> Result<u16, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = resp.status().as_u16();
    // Read (at most a little of) the answer, so the receiver sees a clean exchange.
    let _ = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await;
    Ok(status)
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    type Made = Result<Arc<rustls::ClientConfig>, String>;
    static CONFIG: std::sync::OnceLock<Made> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
            .map_err(|e| format!("TLS: {e}"))
        })
        .clone()
        .map(tokio_rustls::TlsConnector::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_listed_without_their_path() {
        let h = Webhook::parse("https://hooks.example.com/services/T0KEN?x=1").unwrap();
        assert_eq!(h.redacted(), "https://hooks.example.com:443/…");
        let h = Webhook::parse("http://127.0.0.1:9000/alarm").unwrap();
        assert_eq!((h.host.as_str(), h.port, h.tls), ("127.0.0.1", 9000, false));
        let h = Webhook::parse("http://[::1]:9000/").unwrap();
        assert_eq!(h.host, "::1");
        assert_eq!(h.redacted(), "http://[::1]:9000/…");
        for bad in [
            "",
            "ftp://x/",
            "/relative",
            "http://",
            "not a url",
            "http://u:p@h/",
        ] {
            assert!(Webhook::parse(bad).is_err(), "{bad}");
        }
    }
}
