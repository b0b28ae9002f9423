//! TLS on the remoting ports (rustls). Each connection is told apart by its first byte, as
//! Apache's permissive mode does: a TLS ClientHello starts with 0x16 (a handshake record),
//! while a remoting frame starts with its length's high byte, which is 0 for every frame we
//! accept (at most 16 MiB). In enforcing mode a plain connection is closed.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Apache's `tls.server.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connections only, even with a certificate configured.
    Disabled,
    /// TLS and plain connections on one port (TLS only when a certificate is configured).
    #[default]
    Permissive,
    /// TLS connections only.
    Enforcing,
}

/// A TLS ClientHello's first byte: the handshake record type.
const TLS_HANDSHAKE: u8 = 0x16;
/// How long a TLS handshake may take once its first byte arrived.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The listeners' TLS side.
#[derive(Clone)]
pub struct TlsListener {
    acceptor: TlsAcceptor,
    enforcing: bool,
}

/// One accepted connection, plain or TLS.
pub enum Accepted {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The server configuration from PEM files: a certificate chain and its private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate {}: no certificate in it",
            cert.display()
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("TLS key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    Ok(Arc::new(config))
}

impl TlsListener {
    pub fn new(config: Arc<rustls::ServerConfig>, mode: TlsMode) -> Option<TlsListener> {
        (mode != TlsMode::Disabled).then(|| TlsListener {
            acceptor: TlsAcceptor::from(config),
            enforcing: mode == TlsMode::Enforcing,
        })
    }

    /// Waits for the connection's first byte (up to `wait`: the idle timeout) and completes a
    /// TLS handshake when it starts one. None: the peer left, was idle, failed its handshake,
    /// or spoke plain to an enforcing port.
    pub async fn accept(&self, stream: TcpStream, wait: Option<Duration>) -> Option<Accepted> {
        let mut first = [0u8; 1];
        let peeked = match wait {
            Some(t) => tokio::time::timeout(t, stream.peek(&mut first))
                .await
                .ok()?,
            None => stream.peek(&mut first).await,
        };
        if !matches!(peeked, Ok(1)) {
            return None;
        }
        if first[0] != TLS_HANDSHAKE {
            if self.enforcing {
                tracing::debug!("plain connection refused: this port takes TLS only");
                return None;
            }
            return Some(Accepted::Plain(stream));
        }
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Some(Accepted::Tls(Box::new(tls))),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => None,
        }
    }
}
