//! A minimal RocketMQ remoting client: requests matched to responses by opaque, oneway sends,
//! and a stream of server-initiated requests. It speaks only standard remoting, so the load
//! generator and tests can point it at any RocketMQ-compatible broker.

use crate::remoting::command::{check_frame, decode_frame, RemotingCommand, FLAG_ONEWAY};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("connection closed")]
    Closed,
    #[error("request timed out")]
    Timeout,
    #[error("broker answered {code}: {remark}")]
    Broker { code: i32, remark: String },
    #[error("bad response: {0}")]
    BadResponse(String),
}

type Pending = Arc<Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>>;

#[derive(Clone)]
pub struct RemotingClient {
    tx: mpsc::UnboundedSender<Bytes>,
    pending: Pending,
    next_opaque: Arc<AtomicI32>,
    pub addr: SocketAddr,
}

impl RemotingClient {
    /// Connects; `server_requests` receives requests the server sends us (e.g. code 40).
    pub async fn connect(
        addr: SocketAddr,
    ) -> Result<(RemotingClient, mpsc::UnboundedReceiver<RemotingCommand>), ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Connect(addr, e))?;
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        Ok(Self::start(addr, rd, wr))
    }

    /// Connects over TLS, checking the server's certificate against `config`'s roots for
    /// `server_name` (e.g. "localhost").
    pub async fn connect_tls(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<(RemotingClient, mpsc::UnboundedReceiver<RemotingCommand>), ClientError> {
        let name =
            rustls::pki_types::ServerName::try_from(server_name.to_string()).map_err(|e| {
                ClientError::Connect(
                    addr,
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                )
            })?;
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Connect(addr, e))?;
        let _ = stream.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| ClientError::Connect(addr, e))?;
        let (rd, wr) = tokio::io::split(tls);
        Ok(Self::start(addr, rd, wr))
    }

    fn start<R, W>(
        addr: SocketAddr,
        mut rd: R,
        mut wr: W,
    ) -> (RemotingClient, mpsc::UnboundedReceiver<RemotingCommand>)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let (req_tx, req_rx) = mpsc::unbounded_channel();
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            while let Some(first) = rx.recv().await {
                buf.extend_from_slice(&first);
                tokio::task::yield_now().await;
                while let Ok(more) = rx.try_recv() {
                    buf.extend_from_slice(&more);
                    if buf.len() > 1 << 20 {
                        break;
                    }
                }
                if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                    return;
                }
                buf.clear();
            }
        });
        let p2 = pending.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(256 * 1024);
            loop {
                while let Ok(Some(n)) = check_frame(&buf) {
                    let frame = buf.split_to(n).freeze();
                    let Ok(cmd) = decode_frame(frame) else { return };
                    if cmd.is_response() {
                        let waiter = p2.lock().ok().and_then(|mut m| m.remove(&cmd.opaque));
                        if let Some(w) = waiter {
                            let _ = w.send(cmd);
                        }
                    } else {
                        let _ = req_tx.send(cmd);
                    }
                }
                if check_frame(&buf).is_err() {
                    break;
                }
                buf.reserve(64 * 1024);
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            // Wake everyone still waiting: their requests will never be answered.
            if let Ok(mut m) = p2.lock() {
                m.clear();
            }
        });
        (
            RemotingClient {
                tx,
                pending,
                next_opaque: Arc::new(AtomicI32::new(1)),
                addr,
            },
            req_rx,
        )
    }

    fn encode(cmd: &RemotingCommand) -> Bytes {
        let mut b = BytesMut::with_capacity(256 + cmd.body.len());
        cmd.encode(&mut b);
        b.freeze()
    }

    /// Sends a request and waits for its response.
    pub async fn request(
        &self,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, ClientError> {
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        cmd.opaque = opaque;
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| ClientError::Closed)?
            .insert(opaque, tx);
        self.tx
            .send(Self::encode(&cmd))
            .map_err(|_| ClientError::Closed)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => {
                if let Ok(mut m) = self.pending.lock() {
                    m.remove(&opaque);
                }
                Err(ClientError::Timeout)
            }
        }
    }

    /// Like `request`, but a non-zero response code is an error.
    pub async fn call(
        &self,
        cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, ClientError> {
        let r = self.request(cmd, timeout).await?;
        if r.code != 0 {
            return Err(ClientError::Broker {
                code: r.code,
                remark: r.remark.unwrap_or_default(),
            });
        }
        Ok(r)
    }

    pub fn oneway(&self, mut cmd: RemotingCommand) -> Result<(), ClientError> {
        cmd.opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        cmd.flag |= FLAG_ONEWAY;
        self.tx
            .send(Self::encode(&cmd))
            .map_err(|_| ClientError::Closed)
    }

    /// Sends raw bytes (tests of malformed input).
    pub fn send_raw(&self, bytes: Bytes) -> Result<(), ClientError> {
        self.tx.send(bytes).map_err(|_| ClientError::Closed)
    }
}

/// UPDATE_AND_CREATE_TOPIC for a read/write topic with `queues` queues.
pub fn create_topic_request(topic: &str, queues: u32) -> RemotingCommand {
    request(
        17,
        &[
            ("topic", topic.to_string()),
            ("defaultTopic", "TBW102".into()),
            ("readQueueNums", queues.to_string()),
            ("writeQueueNums", queues.to_string()),
            ("perm", "6".into()),
            ("topicFilterType", "SINGLE_TAG".into()),
            ("topicSysFlag", "0".into()),
            ("order", "false".into()),
        ],
    )
}

/// A request with the given code and extFields.
/// Signs a request as the RocketMQ clients' ACL 1.0 hook does: `AccessKey` added, then
/// `Signature` over the sorted header values and the body.
pub fn sign_request(cmd: &mut RemotingCommand, access_key: &str, secret_key: &str) {
    cmd.ext.insert("AccessKey", access_key);
    let signature = {
        let fields: Vec<(&str, &str)> = cmd.ext.iter().collect();
        rocktor_actors::auth::sign(secret_key, &fields, &cmd.body)
    };
    cmd.ext.insert("Signature", signature.as_str());
}

pub fn request(code: i32, ext: &[(&str, String)]) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code, 0);
    for (k, v) in ext {
        cmd.ext.insert((*k).to_string(), v.clone());
    }
    cmd
}
