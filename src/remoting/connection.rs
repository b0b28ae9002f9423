//! One TCP connection: a reader that frames and dispatches requests (pipelined: each request is
//! its own task, answers go back by opaque in completion order) and a writer task that
//! coalesces queued frames into few `write` calls.

use super::codes::request as rq;
use super::command::{check_frame, decode_frame, RemotingCommand, FLAG_ONEWAY};
use super::handlers::{dispatch, Role};
use bytes::{Bytes, BytesMut};
use rocktor_actors::consumer_group::ClientChannel;
use rocktor_actors::BrokerContext;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Requests being handled right now, across connections (graceful shutdown waits for them).
pub static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

pub struct Connection {
    pub id: u64,
    pub remote: SocketAddr,
    tx: mpsc::UnboundedSender<Bytes>,
    groups: Mutex<HashSet<String>>,
    next_opaque: AtomicI32,
    /// Our requests to the client that wait for its answer, by opaque.
    pending: Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>,
}

impl Connection {
    pub fn send_command(&self, cmd: &RemotingCommand) {
        let mut buf = BytesMut::with_capacity(256 + cmd.body.len());
        cmd.encode(&mut buf);
        // A closed connection just drops the frame: the peer is gone.
        let _ = self.tx.send(buf.freeze());
    }

    /// Sends a request to the client; the receiver gets its answer.
    pub fn invoke(&self, mut cmd: RemotingCommand) -> oneshot::Receiver<RemotingCommand> {
        let (tx, rx) = oneshot::channel();
        cmd.opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut p) = self.pending.lock() {
            // Requests whose answer never came must not pile up.
            p.retain(|_, w| !w.is_closed());
            p.insert(cmd.opaque, tx);
        }
        self.send_command(&cmd);
        rx
    }

    pub fn joined_group(&self, group: &str) {
        if let Ok(mut g) = self.groups.lock() {
            if !g.contains(group) {
                g.insert(group.to_string());
            }
        }
    }

    fn groups(&self) -> Vec<String> {
        self.groups
            .lock()
            .map(|g| g.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl ClientChannel for Connection {
    fn connection_id(&self) -> u64 {
        self.id
    }

    fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    fn notify_consumer_ids_changed(&self, group: &str) {
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        let mut cmd = RemotingCommand::request(rq::NOTIFY_CONSUMER_IDS_CHANGED, opaque)
            .with_ext("consumerGroup", group);
        cmd.flag = FLAG_ONEWAY;
        self.send_command(&cmd);
    }

    fn consumer_running_info(
        &self,
        group: &str,
        client_id: &str,
        jstack: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, String>> + Send>> {
        let cmd = RemotingCommand::request(rq::GET_CONSUMER_RUNNING_INFO, 0)
            .with_ext("consumerGroup", group)
            .with_ext("clientId", client_id)
            .with_ext("jstackEnable", jstack);
        let rx = self.invoke(cmd);
        Box::pin(async move {
            match tokio::time::timeout(std::time::Duration::from_secs(5), rx).await {
                Ok(Ok(resp)) if resp.code == 0 => Ok(resp.body),
                Ok(Ok(resp)) => Err(format!(
                    "the client answered {}: {}",
                    resp.code,
                    resp.remark.unwrap_or_default()
                )),
                Ok(Err(_)) => Err("the client's connection closed".into()),
                Err(_) => Err("the client did not answer in 5 s".into()),
            }
        })
    }

    fn reset_offsets(
        &self,
        broker_name: &str,
        group: &str,
        topic: &str,
        timestamp: i64,
        offsets: &[(u32, i64)],
    ) {
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        let body = super::body::reset_offset_body(broker_name, topic, offsets);
        let mut cmd = RemotingCommand::request(rq::RESET_CONSUMER_CLIENT_OFFSET, opaque)
            .with_ext("topic", topic)
            .with_ext("group", group)
            .with_ext("timestamp", timestamp)
            .with_ext("isForce", "true")
            .with_body(body.into_bytes());
        cmd.flag = FLAG_ONEWAY;
        self.send_command(&cmd);
    }
}

async fn write_loop(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        buf.extend_from_slice(&first);
        // Let the other answers completed in this round queue up first: one write for many
        // answers (measured: a write per 1.8 answers without this).
        tokio::task::yield_now().await;
        while buf.len() < 1 << 20 {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if let Err(e) = wr.write_all(&buf).await {
            tracing::debug!(error = %e, "connection write failed");
            return;
        }
        buf.clear();
    }
    let _ = wr.shutdown().await;
}

/// Serves one connection until the peer closes it or sends a malformed frame.
pub async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    role: Role,
    broker: BrokerContext,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let conn = Arc::new(Connection {
        id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
        remote,
        tx,
        groups: Mutex::new(HashSet::new()),
        next_opaque: AtomicI32::new(1),
        pending: Mutex::new(HashMap::new()),
    });
    actix::spawn(write_loop(wr, rx));
    // One shared handle per connection: cloning the context itself per request cost 3% of the
    // broker's CPU (perf) in reference-count traffic on its actor addresses.
    let broker = Arc::new(broker);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'read: loop {
        loop {
            match check_frame(&buf) {
                Ok(Some(n)) => {
                    let frame = buf.split_to(n).freeze();
                    match decode_frame(frame) {
                        Ok(cmd) if cmd.is_response() => {
                            let waiter = conn
                                .pending
                                .lock()
                                .ok()
                                .and_then(|mut p| p.remove(&cmd.opaque));
                            match waiter {
                                Some(w) => {
                                    let _ = w.send(cmd);
                                }
                                // A late answer to a request that timed out.
                                None => tracing::trace!(
                                    opaque = cmd.opaque,
                                    "ignoring unexpected response"
                                ),
                            }
                        }
                        Ok(cmd) => {
                            let (b, c) = (broker.clone(), conn.clone());
                            IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
                            actix::spawn(async move {
                                if let Some(resp) = dispatch(&b, &c, role, cmd).await {
                                    c.send_command(&resp);
                                }
                                IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
                            });
                        }
                        Err(e) => {
                            tracing::warn!(%remote, error = %e, "malformed frame; closing the connection");
                            break 'read;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%remote, error = %e, "bad frame; closing the connection");
                    break 'read;
                }
            }
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(%remote, error = %e, "connection read failed");
                break;
            }
        }
    }
    broker.connection_closed(conn.id, conn.groups());
}
