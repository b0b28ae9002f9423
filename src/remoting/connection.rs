//! One TCP connection: a reader that frames and dispatches requests (pipelined: each request is
//! its own task, answers go back by opaque in completion order) and a writer task that
//! coalesces queued frames into few `write` calls.

use super::codes::request as rq;
use super::command::{check_frame, decode_frame, RemotingCommand, FLAG_ONEWAY};
use super::handlers::{dispatch, Role};
use bytes::{Bytes, BytesMut};
use rocktor_actors::consumer_group::ClientChannel;
use rocktor_actors::BrokerContext;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Requests being handled right now, across connections (graceful shutdown waits for them).
pub static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

pub struct Connection {
    pub id: u64,
    pub remote: SocketAddr,
    tx: mpsc::UnboundedSender<Bytes>,
    groups: Mutex<HashSet<String>>,
    next_opaque: AtomicI32,
}

impl Connection {
    pub fn send_command(&self, cmd: &RemotingCommand) {
        let mut buf = BytesMut::with_capacity(256 + cmd.body.len());
        cmd.encode(&mut buf);
        // A closed connection just drops the frame: the peer is gone.
        let _ = self.tx.send(buf.freeze());
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
    });
    actix::spawn(write_loop(wr, rx));
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'read: loop {
        loop {
            match check_frame(&buf) {
                Ok(Some(n)) => {
                    let frame = buf.split_to(n).freeze();
                    match decode_frame(frame) {
                        Ok(cmd) if cmd.is_response() => {
                            // Answers to our oneway notifications, or late client replies.
                            tracing::trace!(opaque = cmd.opaque, "ignoring response from client");
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
