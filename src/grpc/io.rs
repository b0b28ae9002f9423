//! The gRPC port's connections: plain HTTP/2 and TLS (ALPN h2) on one port, told apart by
//! the first byte as the remoting ports do, and a self-signed certificate made at first start
//! when none is configured (Java 5 clients connect with TLS by default).

use crate::remoting::tls::{Accepted, TlsListener, TlsMode};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// One accepted gRPC connection, plain or TLS, with its addresses for `Request::remote_addr`.
pub struct GrpcIo {
    inner: Accepted,
    info: TcpConnectInfo,
    _open: rocktor_actors::metrics::OpenConnection,
}

impl GrpcIo {
    pub fn new(inner: Accepted, info: TcpConnectInfo) -> GrpcIo {
        GrpcIo {
            inner,
            info,
            _open: rocktor_actors::metrics::OpenConnection::new("grpc"),
        }
    }
}

impl Connected for GrpcIo {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for GrpcIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Accepted::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Accepted::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for GrpcIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Accepted::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Accepted::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Accepted::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Accepted::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Accepted::Plain(s) => s.is_write_vectored(),
            Accepted::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Accepted::Plain(s) => Pin::new(s).poll_flush(cx),
            Accepted::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Accepted::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Accepted::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How the gRPC port accepts: TLS beside plain (or TLS only, or plain only, by `tls_mode`).
#[derive(Clone)]
pub struct GrpcAcceptor {
    tls: Option<TlsListener>,
}

/// How long a new connection may stay silent before its first byte.
const FIRST_BYTE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl GrpcAcceptor {
    /// With the configured certificate, or one made (and kept under `data_dir`) at first
    /// start. `Disabled`: plain only.
    pub fn new(
        mode: TlsMode,
        cert: Option<&Path>,
        key: Option<&Path>,
        data_dir: &Path,
    ) -> Result<GrpcAcceptor, String> {
        if mode == TlsMode::Disabled {
            return Ok(GrpcAcceptor { tls: None });
        }
        let (cert, key) = match (cert, key) {
            (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
            _ => self_signed(data_dir)?,
        };
        let config = crate::remoting::tls::server_config(&cert, &key)?;
        let mut config = (*config).clone();
        // gRPC clients insist on HTTP/2 chosen by ALPN.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(GrpcAcceptor {
            tls: TlsListener::new(Arc::new(config), mode),
        })
    }

    pub async fn accept(&self, stream: TcpStream) -> Option<GrpcIo> {
        let info = TcpConnectInfo {
            local_addr: stream.local_addr().ok(),
            remote_addr: stream.peer_addr().ok(),
        };
        let _ = stream.set_nodelay(true);
        let accepted = match &self.tls {
            Some(tls) => tls.accept(stream, Some(FIRST_BYTE_WAIT)).await?,
            None => Accepted::Plain(stream),
        };
        Some(GrpcIo::new(accepted, info))
    }
}

/// The certificate and key under `data_dir/grpc-tls/`, made on first use (self-signed, for
/// localhost and this host's name): clients that verify certificates need a configured one.
fn self_signed(data_dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let dir = data_dir.join("grpc-tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            names.push(h.to_string());
        }
    }
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot make a self-signed certificate: {e}"))?;
    let key_pem = made.key_pair.serialize_pem();
    write_private(&key, key_pem.as_bytes())?;
    std::fs::write(&cert, made.cert.pem()).map_err(|e| format!("{}: {e}", cert.display()))?;
    tracing::info!(cert = %cert.display(), "gRPC TLS: no certificate configured, made a self-signed one (set tls_cert/tls_key for your own)");
    Ok((cert, key))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}
