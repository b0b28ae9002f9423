//! One TCP connection: a reader that frames and dispatches requests (pipelined: each request is
//! its own task, answers go back by opaque in completion order) and a writer task that
//! coalesces queued frames into few `write` calls.
//!
//! Backpressure, so that one client cannot grow broker memory: at most
//! `max_requests_in_flight` requests are handled at once (then the reader stops reading, and
//! TCP pushes back on the client); answers waiting for a client that does not read are capped
//! in bytes (past it the connection is closed), and so are the bytes of requests in flight; a write that makes no progress for the write
//! timeout closes it, and so does a connection that sends nothing for the idle timeout.

use super::codes::request as rq;
use super::command::{check_frame, decode_frame, RemotingCommand, FLAG_ONEWAY};
use super::handlers::{dispatch, Role};
use bytes::{Bytes, BytesMut};
use rocktor_actors::client_channel::TransactionCheck;
use rocktor_actors::consumer_group::ClientChannel;
use rocktor_actors::BrokerContext;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

/// The bounds every connection lives within (config keys of the same names).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_requests_in_flight: usize,
    pub max_write_queue_bytes: usize,
    /// None: never close an idle connection.
    pub idle_timeout: Option<Duration>,
    pub write_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_requests_in_flight: 1024,
            max_write_queue_bytes: 64 << 20,
            idle_timeout: Some(Duration::from_secs(120)),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// What the reader, the writer and the answering tasks share about the way out.
struct Outbox {
    /// Bytes queued for the writer and not yet written (bounded by `max_queued_bytes`).
    queued_bytes: AtomicUsize,
    max_queued_bytes: usize,
    /// Turns true when the connection must end (write queue over its cap, write timeout,
    /// reader done); the reader and the writer both watch it.
    closing: watch::Sender<bool>,
    closed: Arc<AtomicBool>,
    /// Signalled after every write, for answers waiting for room in the queue.
    drained: tokio::sync::Notify,
}

impl Outbox {
    fn shut(&self) {
        self.closed.store(true, Ordering::Release);
        self.closing.send_replace(true);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Resolves once the connection is told to close.
async fn closed(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|c| *c).await;
}

/// How a write that made no progress is reported.
const STALLED: &str = "write stalled";

/// The unit in which request bytes in flight are counted.
const BYTE_UNIT: usize = 64 * 1024;

/// Frames at least this large are written as they are instead of copied into the coalescing
/// buffer.
const WRITE_DIRECT: usize = 64 * 1024;

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Requests being handled right now, across connections (graceful shutdown waits for them).
pub static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

pub struct Connection {
    pub id: u64,
    pub remote: SocketAddr,
    tx: mpsc::UnboundedSender<Bytes>,
    out: Arc<Outbox>,
    /// Long polls this connection holds (the domain caps them per connection).
    pub holds: Arc<AtomicUsize>,
    /// This connection's share of the broker's storage-read budget, in MiB.
    pub read_budget: Arc<Semaphore>,
    write_timeout: Duration,
    groups: Mutex<HashSet<String>>,
    next_opaque: AtomicI32,
    /// Our requests to the client that wait for its answer, by opaque.
    pending: Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>,
}

impl Connection {
    /// Turns true once the connection is closed (the domain skips work for it).
    pub fn gone_flag(&self) -> Arc<AtomicBool> {
        self.out.closed.clone()
    }

    /// Queues an answer, first waiting while the answer queue is over its cap: a burst of
    /// large answers waits for the client to read, and only a client that reads nothing for
    /// the write timeout is disconnected.
    pub async fn answer(&self, cmd: &RemotingCommand) {
        let deadline = tokio::time::Instant::now() + self.write_timeout;
        while !self.out.is_closed()
            && self.out.queued_bytes.load(Ordering::Acquire) >= self.out.max_queued_bytes
        {
            let drained = self.out.drained.notified();
            if self.out.queued_bytes.load(Ordering::Acquire) < self.out.max_queued_bytes {
                break;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                tracing::warn!(remote = %self.remote, "client does not read its answers; closing the connection");
                self.out.shut();
                return;
            }
        }
        self.send_command(cmd);
    }

    pub fn send_command(&self, cmd: &RemotingCommand) {
        if self.out.is_closed() {
            return;
        }
        let mut buf = BytesMut::with_capacity(256 + cmd.body_len());
        cmd.encode(&mut buf);
        let n = buf.len();
        if self.out.queued_bytes.fetch_add(n, Ordering::AcqRel) + n > self.out.max_queued_bytes {
            tracing::warn!(remote = %self.remote, queued = self.out.queued_bytes.load(Ordering::Relaxed), "client does not read its answers; closing the connection");
            self.out.queued_bytes.fetch_sub(n, Ordering::AcqRel);
            self.out.shut();
            return;
        }
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

    fn check_transaction_state(&self, check: &TransactionCheck, message: Bytes) {
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        let offset_msg_id =
            super::message::offset_msg_id(check.store_host, check.commit_log_offset);
        let mut cmd = RemotingCommand::request(rq::CHECK_TRANSACTION_STATE, opaque)
            .with_ext("topic", check.topic.as_str())
            .with_ext("tranStateTableOffset", check.tran_state_offset)
            .with_ext("commitLogOffset", check.commit_log_offset)
            .with_ext("msgId", check.msg_id.as_str())
            .with_ext("transactionId", check.transaction_id.as_str())
            .with_ext("offsetMsgId", offset_msg_id)
            .with_ext("bname", check.broker_name.as_str())
            .with_body(message);
        cmd.flag = FLAG_ONEWAY;
        self.send_command(&cmd);
    }
}

/// Writes one chunk, or gives up when it makes no progress for `timeout`.
async fn write_chunk<W: AsyncWrite + Unpin>(
    wr: &mut W,
    chunk: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    // The flush matters for TLS, whose stream buffers like a BufWriter; for TCP it is free.
    let write = async {
        wr.write_all(chunk).await?;
        wr.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "{STALLED}: no progress for {} s",
            timeout.as_secs()
        )),
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    out: Arc<Outbox>,
    remote: SocketAddr,
    timeout: Duration,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let first = tokio::select! {
            f = rx.recv() => match f {
                Some(f) => f,
                None => break,
            },
            _ = closed(out.closing.subscribe()) => return,
        };
        let mut pending = vec![first];
        // Let the other answers completed in this round queue up first: one write for many
        // answers (measured: a write per 1.8 answers without this).
        tokio::task::yield_now().await;
        let mut size = pending[0].len();
        while size < 1 << 20 {
            match rx.try_recv() {
                Ok(more) => {
                    size += more.len();
                    pending.push(more);
                }
                Err(_) => break,
            }
        }
        let mut result = Ok(());
        for frame in &pending {
            if frame.len() >= WRITE_DIRECT {
                // Large frames (pull answers) go out as they are, without another copy.
                if !buf.is_empty() {
                    result = write_chunk(&mut wr, &buf, timeout).await;
                    buf.clear();
                }
                if result.is_ok() {
                    result = write_chunk(&mut wr, frame, timeout).await;
                }
            } else {
                buf.extend_from_slice(frame);
            }
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() && !buf.is_empty() {
            result = write_chunk(&mut wr, &buf, timeout).await;
        }
        buf.clear();
        out.queued_bytes.fetch_sub(size, Ordering::AcqRel);
        out.drained.notify_waiters();
        if let Err(e) = result {
            if e.starts_with(STALLED) {
                tracing::warn!(%remote, error = %e, "client does not read its answers; closing the connection");
            } else {
                tracing::debug!(%remote, error = %e, "connection write failed; closing");
            }
            out.shut();
            return;
        }
    }
    let _ = wr.shutdown().await;
}

/// Serves one plain connection.
pub async fn serve_tcp(
    stream: TcpStream,
    remote: SocketAddr,
    role: Role,
    limits: ConnectionLimits,
    broker: BrokerContext,
) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    serve_connection(rd, wr, remote, role, limits, broker).await
}

/// Serves one connection, plain or TLS, until the peer closes it, sends a malformed frame, or
/// breaks a limit. (Plain TCP comes split in two owned halves, without the lock a generic
/// split takes per read and write.)
pub async fn serve_connection<R, W>(
    mut rd: R,
    wr: W,
    remote: SocketAddr,
    role: Role,
    limits: ConnectionLimits,
    broker: BrokerContext,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + 'static,
{
    let _open = rocktor_actors::metrics::OpenConnection::new(match role {
        Role::NameServer => "remoting-namesrv",
        Role::Broker => "remoting",
    });
    // Unbounded as a channel, bounded in bytes by `send_command`.
    let (tx, rx) = mpsc::unbounded_channel();
    let conn = Arc::new(Connection {
        id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
        remote,
        tx,
        out: Arc::new(Outbox {
            queued_bytes: AtomicUsize::new(0),
            max_queued_bytes: limits.max_write_queue_bytes,
            closing: watch::channel(false).0,
            closed: Arc::new(AtomicBool::new(false)),
            drained: tokio::sync::Notify::new(),
        }),
        holds: Arc::new(AtomicUsize::new(0)),
        read_budget: Arc::new(Semaphore::new(
            (limits.max_write_queue_bytes >> 20).clamp(1, 1 << 20),
        )),
        write_timeout: limits.write_timeout,
        groups: Mutex::new(HashSet::new()),
        next_opaque: AtomicI32::new(1),
        pending: Mutex::new(HashMap::new()),
    });
    actix::spawn(write_loop(
        wr,
        rx,
        conn.out.clone(),
        remote,
        limits.write_timeout,
    ));
    let in_flight = Arc::new(Semaphore::new(limits.max_requests_in_flight.max(1)));
    // Bytes of requests in flight, in 64 KiB units, bounded like the answer queue.
    let byte_units =
        (limits.max_write_queue_bytes / BYTE_UNIT).clamp(1, u32::MAX as usize / 2) as u32;
    let in_flight_bytes = Arc::new(Semaphore::new(byte_units as usize));
    // One shared handle per connection: cloning the context itself per request cost 3% of the
    // broker's CPU (perf) in reference-count traffic on its actor addresses.
    let broker = Arc::new(broker);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'read: loop {
        loop {
            match check_frame(&buf) {
                Ok(Some(n)) => {
                    let frame_len = n;
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
                            // Full (in requests or in request bytes): stop reading until a
                            // request finishes.
                            let units = (frame_len.div_ceil(BYTE_UNIT).min(byte_units as usize)
                                as u32)
                                .max(1);
                            let permits = tokio::select! {
                                p = async {
                                    let n = in_flight.clone().acquire_owned().await?;
                                    let b = in_flight_bytes.clone().acquire_many_owned(units).await?;
                                    Ok::<_, tokio::sync::AcquireError>((n, b))
                                } => match p {
                                    Ok(p) => p,
                                    Err(_) => break 'read,
                                },
                                _ = closed(conn.out.closing.subscribe()) => break 'read,
                            };
                            let (b, c) = (broker.clone(), conn.clone());
                            IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
                            actix::spawn(async move {
                                let permit = permits;
                                // A oneway request is the client's last word on something (an
                                // END_TRANSACTION sent just before it disconnects): it is done
                                // whatever happens to the connection.
                                let oneway = cmd.is_oneway();
                                // A connection closed meanwhile gets no more work done for it.
                                if c.out.is_closed() && !oneway {
                                    IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
                                    return;
                                }
                                // A connection that closes cancels what is still waiting for it
                                // (a parked pull, a read); work already handed to an actor
                                // finishes there.
                                let reply = if oneway {
                                    dispatch(&b, &c, role, cmd).await
                                } else {
                                    tokio::select! {
                                        r = dispatch(&b, &c, role, cmd) => r,
                                        _ = closed(c.out.closing.subscribe()) => None,
                                    }
                                };
                                if let Some(resp) = reply {
                                    c.answer(&resp).await;
                                }
                                IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
                                drop(permit);
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
        if conn.out.is_closed() {
            break;
        }
        let idle = async {
            match limits.idle_timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = rd.read_buf(&mut buf) => match read {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "connection read failed");
                    break;
                }
            },
            _ = closed(conn.out.closing.subscribe()) => break,
            _ = idle => {
                tracing::info!(%remote, "connection idle too long; closing");
                break;
            }
        }
    }
    // Stops the writer too; answers still being computed are dropped.
    conn.out.shut();
    broker.connection_closed(conn.id, conn.groups());
}
