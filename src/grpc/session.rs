//! gRPC client sessions: what each client (by `x-mq-client-id`) declared in its Telemetry
//! settings, and the way back to it — the Telemetry stream, as a domain `ClientChannel`, so
//! transaction checks reach 5.x producers as they reach remoting ones.

use super::convert;
use super::pb;
use rocktor_actors::client_channel::{ClientChannel, TransactionCheck};
use rocktor_actors::consumer_group::{ConsumerInfo, Subscription};
use rocktor_actors::model::{self, MessageModel};
use rocktor_actors::service::HeartbeatRequest;
use rocktor_actors::BrokerContext;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Connection ids of gRPC sessions start here, far above remoting's, so the two never meet.
static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1 << 48);
/// Server-to-client commands queued on one Telemetry stream at most; past it a command is
/// dropped (a check is asked again on the checker's next round).
pub const TELEMETRY_QUEUE: usize = 64;
/// Sessions kept at most: a client id past it is refused until others leave.
pub const MAX_SESSIONS: usize = 100_000;

pub type TelemetrySender = mpsc::Sender<Result<pb::TelemetryCommand, tonic::Status>>;

/// What a client declared, as the broker uses it.
#[derive(Debug, Clone)]
pub enum Role {
    Producer {
        topics: Vec<String>,
    },
    Consumer {
        group: String,
        client_type: pb::ClientType,
        subscriptions: Vec<Subscription>,
    },
}

/// The Telemetry stream of one client.
pub struct GrpcChannel {
    pub connection_id: u64,
    pub remote: SocketAddr,
    pub namespace: String,
    tx: TelemetrySender,
    ctx: BrokerContext,
}

impl GrpcChannel {
    pub fn new(
        remote: SocketAddr,
        namespace: String,
        tx: TelemetrySender,
        ctx: BrokerContext,
    ) -> GrpcChannel {
        GrpcChannel {
            connection_id: NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed),
            remote,
            namespace,
            tx,
            ctx,
        }
    }

    /// Queues a command for the client; false when its queue is full or it left.
    pub fn send(&self, cmd: pb::TelemetryCommand) -> bool {
        self.tx.try_send(Ok(cmd)).is_ok()
    }
}

impl ClientChannel for GrpcChannel {
    fn connection_id(&self) -> u64 {
        self.connection_id
    }

    fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// 5.x clients ask for their assignment every few seconds; nothing to push.
    fn notify_consumer_ids_changed(&self, _group: &str) {}

    fn consumer_running_info(
        &self,
        _group: &str,
        _client_id: &str,
        _jstack: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bytes::Bytes, String>> + Send>>
    {
        Box::pin(async { Err("a 5.x gRPC client does not report its running info".to_string()) })
    }

    /// 5.x consumers keep no offsets of their own: a reset moves the broker's, which is all.
    fn reset_offsets(&self, _: &str, _: &str, _: &str, _: i64, _: &[(u32, i64)]) {}

    /// RecoverOrphanedTransactionCommand: the half message and a transaction id the
    /// producer's EndTransaction hands back (it names the half message, signed).
    fn check_transaction_state(&self, check: &TransactionCheck, message: bytes::Bytes) {
        let Ok((rec, _)) = rocktor_storage::record::decode(&message) else {
            tracing::warn!(topic = %check.topic, "a transaction check's half message does not decode");
            return;
        };
        let transaction_id = self
            .ctx
            .handle_key
            .encode_half(&check.topic, check.tran_state_offset);
        let mut msg = convert::incoming(
            rec,
            check.commit_log_offset,
            &self.namespace,
            convert::Shown::default(),
        );
        if let Some(sys) = msg.system_properties.as_mut() {
            sys.message_id = check.msg_id.clone();
            sys.message_type = pb::MessageType::Transaction as i32;
        }
        let cmd = pb::TelemetryCommand {
            status: None,
            command: Some(
                pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(
                    pb::RecoverOrphanedTransactionCommand {
                        message: Some(msg),
                        transaction_id,
                    },
                ),
            ),
        };
        if !self.send(cmd) {
            tracing::debug!(topic = %check.topic, "transaction check not queued: the producer's stream is full or gone");
        }
    }
}

/// Who may end a session.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    Stream(u64),
    Host(std::net::IpAddr),
}

/// One client's session.
pub struct Session {
    pub channel: Arc<GrpcChannel>,
    pub role: Role,
    pub language: String,
}

/// The sessions by client id.
#[derive(Default)]
pub struct Sessions {
    by_client: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Keeps (or replaces) the client's session; false when the table is full.
    pub fn put(&self, client_id: &str, session: Session) -> bool {
        let Ok(mut m) = self.by_client.lock() else {
            return false;
        };
        if m.len() >= MAX_SESSIONS && !m.contains_key(client_id) {
            return false;
        }
        m.insert(client_id.to_string(), session);
        true
    }

    /// The client's registration as a heartbeat, if it declared itself.
    pub fn heartbeat_of(&self, client_id: &str) -> Option<HeartbeatRequest> {
        let m = self.by_client.lock().ok()?;
        m.get(client_id).map(|s| heartbeat(client_id, s))
    }

    /// The connection id of the client's Telemetry stream (transaction checks ask it first).
    pub fn connection_of(&self, client_id: &str) -> Option<u64> {
        let m = self.by_client.lock().ok()?;
        m.get(client_id).map(|s| s.channel.connection_id)
    }

    pub fn role(&self, client_id: &str) -> Option<Role> {
        let m = self.by_client.lock().ok()?;
        m.get(client_id).map(|s| s.role.clone())
    }

    /// Removes the session when it is still the one of `by`: the stream that made it (a
    /// client that reconnected has a newer one), or a call from the host it lives on (so a
    /// client id alone cannot end another host's session).
    pub fn remove(&self, client_id: &str, by: Owner) -> Option<Session> {
        let mut m = self.by_client.lock().ok()?;
        let owned = m.get(client_id).is_some_and(|s| match by {
            Owner::Stream(id) => s.channel.connection_id == id,
            Owner::Host(ip) => s.channel.remote.ip() == ip,
        });
        if owned {
            m.remove(client_id)
        } else {
            None
        }
    }
}

/// A session as the domain's heartbeat: producers of their topics (a 5.x producer's group is
/// its topic, as Apache's proxy names it), or a consumer of one group.
pub fn heartbeat(client_id: &str, s: &Session) -> HeartbeatRequest {
    let channel: Arc<dyn ClientChannel> = s.channel.clone();
    let (producer_groups, consumers) = match &s.role {
        Role::Producer { topics } => (topics.clone(), Vec::new()),
        Role::Consumer {
            group,
            client_type,
            subscriptions,
        } => (
            Vec::new(),
            vec![(
                group.clone(),
                ConsumerInfo {
                    client_id: client_id.to_string(),
                    consume_type: match client_type {
                        pb::ClientType::SimpleConsumer | pb::ClientType::PullConsumer => {
                            "CONSUME_ACTIVELY".into()
                        }
                        _ => "CONSUME_PASSIVELY".into(),
                    },
                    message_model: MessageModel::Clustering,
                    consume_from_where: "CONSUME_FROM_LAST_OFFSET".into(),
                    subscriptions: subscriptions.clone(),
                    language: s.language.clone(),
                    // 5.x clients send a version text, not Apache's version code.
                    version: 0,
                },
            )],
        ),
    };
    HeartbeatRequest {
        client_id: client_id.to_string(),
        language: s.language.clone(),
        version: 0,
        producer_groups,
        consumers,
        channel,
    }
}

/// A subscription entry as the domain keeps subscriptions (tags and their hashes shown by
/// admin tools as for remoting consumers).
pub fn subscription(topic: String, f: Option<&pb::FilterExpression>) -> Subscription {
    let (expression, expression_type) = filter_of(f);
    let (tags, codes) = if expression_type == "TAG" && expression != "*" {
        let tags: Vec<String> = expression
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        let codes = tags.iter().map(|t| model::java_hash(t)).collect();
        (tags, codes)
    } else {
        (Vec::new(), Vec::new())
    };
    Subscription {
        topic,
        expression,
        expression_type,
        tags,
        codes,
        version: rocktor_actors::now_ms(),
    }
}

/// A filter expression as the domain's (expression, type): TAG (`*` when blank) or SQL92.
pub fn filter_of(f: Option<&pb::FilterExpression>) -> (String, String) {
    match f {
        Some(f) if pb::FilterType::try_from(f.r#type) == Ok(pb::FilterType::Sql) => {
            (f.expression.clone(), "SQL92".into())
        }
        Some(f) if !f.expression.trim().is_empty() => {
            (f.expression.trim().to_string(), "TAG".into())
        }
        _ => ("*".into(), "TAG".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_map_to_the_domain() {
        assert_eq!(filter_of(None), ("*".to_string(), "TAG".to_string()));
        let sql = pb::FilterExpression {
            r#type: pb::FilterType::Sql as i32,
            expression: "a > 1".into(),
        };
        assert_eq!(filter_of(Some(&sql)).1, "SQL92");
        let s = subscription(
            "T".into(),
            Some(&pb::FilterExpression {
                r#type: pb::FilterType::Tag as i32,
                expression: "A || B".into(),
            }),
        );
        assert_eq!(s.tags, vec!["A".to_string(), "B".to_string()]);
        assert_eq!(s.codes.len(), 2);
    }
}
