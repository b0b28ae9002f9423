//! ConsumerGroup — one actor per consumer group.
//!
//! State it owns: the live members (from heartbeats, with a channel back to each client), their
//! subscriptions, the group's committed offsets, and its orderly-consumption queue locks
//! (`locks`: soft state, released at once when their client unregisters, expires or its
//! connection closes).
//!
//! Messages: `Heartbeat`, `Unregister`, `ConnectionClosed`, `ExpireIdle` (timer), `ListClientIds`,
//! `QueryOffset`, `CommitOffset`, `GetOffsets`, `GetConnections`, `FlushOffsets`, `LockQueues`,
//! `UnlockQueues`.
//!
//! Durability: committed offsets are kept in memory and written through the group-commit writer
//! every second and on shutdown (`FlushOffsets`), like Apache's 5-second consumerOffset flush.
//! A crash can replay up to a second of consumption; it never skips a message. A flush that
//! fails marks its offsets dirty again, so the next one writes them.
//!
//! Members are bounded (`max_members`): a heartbeat of one more client is refused.
//!
//! The subscription table is published as an immutable snapshot (`GroupView`) so that pulls read
//! it without a message to this actor.

use crate::filter::Filter;
use crate::model::{GroupConfig, MessageModel};
use actix::prelude::*;
use arc_swap::ArcSwap;
use rocktor_storage::{cf, keys, AppendBatch, Writer};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::client_channel::ClientChannel;
pub use locks::{QueueKey, LOCK_EXPIRY};

mod locks;
use locks::QueueLocks;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub topic: String,
    pub expression: String,
    /// `TAG` or `SQL92`.
    pub expression_type: String,
    pub tags: Vec<String>,
    pub codes: Vec<i32>,
    pub version: i64,
}

impl Subscription {
    pub fn filter(&self) -> Result<Filter, String> {
        Filter::from_subscription(&self.expression, &self.expression_type)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    pub client_id: String,
    pub consume_type: String,
    pub message_model: MessageModel,
    pub consume_from_where: String,
    pub subscriptions: Vec<Subscription>,
    pub language: String,
    pub version: i32,
}

/// One topic's subscription as pulls see it.
#[derive(Debug, Clone)]
pub struct SubscriptionView {
    pub subscription: Subscription,
    /// The compiled filter, or why the expression does not compile.
    pub filter: Result<Arc<Filter>, String>,
}

/// The snapshot of a group's subscriptions, by topic.
#[derive(Debug, Clone, Default)]
pub struct GroupView {
    pub subscriptions: HashMap<String, Arc<SubscriptionView>>,
    pub message_model: Option<MessageModel>,
    /// Members whose subscriptions differ from the others', described for admin answers.
    /// Clustering consumers of one group must subscribe alike, or messages go unconsumed.
    pub inconsistencies: Vec<String>,
    /// Some queue of the group holds a live orderly lock: the group consumes orderly, and its
    /// clients' direct sends to the retry topic go to the dead-letter queue (Apache's rule).
    pub orderly_locks: bool,
    /// Live members (remoting or gRPC clients); an HTTP consume refuses a group with any.
    pub members: usize,
}

#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub client_id: String,
    pub client_addr: SocketAddr,
    pub language: String,
    pub version: i32,
}

/// What admin tools read about a group's consumers.
#[derive(Debug, Clone, Default)]
pub struct GroupConnections {
    pub connections: Vec<ConnectionInfo>,
    pub inconsistencies: Vec<String>,
    pub subscriptions: Vec<Subscription>,
    pub consume_type: Option<String>,
    pub message_model: Option<MessageModel>,
    pub consume_from_where: Option<String>,
}

struct Member {
    info: ConsumerInfo,
    channel: Arc<dyn ClientChannel>,
    last_seen: Instant,
}

/// How long a member lives without a heartbeat.
pub const MEMBER_EXPIRY: Duration = Duration::from_secs(120);
const OFFSET_FLUSH_EVERY: Duration = Duration::from_secs(1);

pub struct ConsumerGroup {
    name: String,
    config: GroupConfig,
    members: HashMap<String, Member>,
    offsets: HashMap<(String, u32), i64>,
    dirty: HashSet<(String, u32)>,
    writer: Writer,
    view: Arc<ArcSwap<GroupView>>,
    max_members: usize,
    locks: QueueLocks,
}

impl ConsumerGroup {
    pub fn new(
        config: GroupConfig,
        offsets: HashMap<(String, u32), i64>,
        writer: Writer,
        view: Arc<ArcSwap<GroupView>>,
    ) -> Self {
        ConsumerGroup {
            name: config.name.clone(),
            config,
            members: HashMap::new(),
            offsets,
            dirty: HashSet::new(),
            writer,
            view,
            max_members: 10_000,
            locks: QueueLocks::default(),
        }
    }

    /// How long a queue lock lives without renewal.
    pub fn with_lock_expiry(mut self, expiry: Duration) -> Self {
        self.locks = QueueLocks::new(expiry);
        self
    }

    /// The most clients the group admits.
    pub fn with_max_members(mut self, n: usize) -> Self {
        self.max_members = n.max(1);
        self
    }

    fn publish_view(&self) {
        let mut subs: HashMap<String, Arc<SubscriptionView>> = HashMap::new();
        let mut model = None;
        for m in self.members.values() {
            model.get_or_insert(m.info.message_model);
            for s in &m.info.subscriptions {
                let newer = subs
                    .get(&s.topic)
                    .is_none_or(|v| v.subscription.version < s.version);
                if newer {
                    subs.insert(
                        s.topic.clone(),
                        Arc::new(SubscriptionView {
                            subscription: s.clone(),
                            filter: s.filter().map(Arc::new),
                        }),
                    );
                }
            }
        }
        let inconsistencies = self.inconsistencies();
        if !inconsistencies.is_empty() {
            tracing::warn!(group = %self.name, ?inconsistencies, "members of one group subscribe differently");
        }
        self.view.store(Arc::new(GroupView {
            subscriptions: subs,
            message_model: model,
            inconsistencies,
            orderly_locks: self.locks.any_live(Instant::now()),
            members: self.members.len(),
        }));
    }

    /// Republishes the view's lock flag when it changed, and the lock gauge.
    fn locks_changed(&self) {
        let live = self.locks.any_live(Instant::now());
        if self.view.load().orderly_locks != live {
            let mut v = GroupView::clone(&self.view.load());
            v.orderly_locks = live;
            self.view.store(Arc::new(v));
        }
        metrics::gauge!("rocktor_queue_locks_held", "group" => self.name.clone())
            .set(self.locks.held() as f64);
    }

    /// Compares every member's subscriptions (topic → expression) with the first member's.
    fn inconsistencies(&self) -> Vec<String> {
        let key = |m: &Member| {
            let mut v: Vec<(String, String, String)> = m
                .info
                .subscriptions
                .iter()
                .filter(|s| !s.topic.starts_with(crate::model::RETRY_PREFIX))
                .map(|s| {
                    (
                        s.topic.clone(),
                        s.expression.trim().to_string(),
                        s.expression_type.to_ascii_uppercase(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by(|a, b| a.info.client_id.cmp(&b.info.client_id));
        let Some(first) = members.first() else {
            return Vec::new();
        };
        let reference = key(first);
        members
            .iter()
            .skip(1)
            .filter(|m| key(m) != reference)
            .map(|m| {
                let show = |v: &[(String, String, String)]| {
                    v.iter()
                        .map(|(t, e, ty)| format!("{t}:{ty}:{e}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!(
                    "{} subscribes [{}] while {} subscribes [{}]",
                    m.info.client_id,
                    show(&key(m)),
                    first.info.client_id,
                    show(&reference)
                )
            })
            .collect()
    }

    fn notify_members(&self) {
        if !self.config.notify_consumer_ids_changed_enable {
            return;
        }
        for m in self.members.values() {
            m.channel.notify_consumer_ids_changed(&self.name);
        }
    }

    fn membership_changed(&self) {
        self.publish_view();
        self.notify_members();
    }

    /// The dirty offsets as one batch, and their keys (dirty again if the write fails).
    fn offsets_batch(&mut self) -> Option<(AppendBatch, Vec<(String, u32)>)> {
        if self.dirty.is_empty() {
            return None;
        }
        let mut batch = AppendBatch::default();
        let keys: Vec<(String, u32)> = self.dirty.drain().collect();
        for key in &keys {
            if let Some(off) = self.offsets.get(key) {
                batch.puts.push((
                    cf::OFFSETS,
                    keys::offset_key(&self.name, &key.0, key.1),
                    off.to_be_bytes().to_vec(),
                ));
            }
        }
        Some((batch, keys))
    }

    /// Writes the dirty offsets; a failure puts them back for the next flush.
    fn flush(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> tokio::sync::oneshot::Receiver<Result<(), String>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let Some((batch, keys)) = self.offsets_batch() else {
            let _ = tx.send(Ok(()));
            return rx;
        };
        let written = self.writer.submit(batch);
        ctx.spawn(written.into_actor(self).map(move |res, act, _| {
            let res = match res {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the storage writer stopped".to_string()),
            };
            if let Err(e) = &res {
                tracing::warn!(group = %act.name, error = %e, "offset flush failed; retrying with the next one");
                act.dirty.extend(keys);
            }
            let _ = tx.send(res);
        }));
        rx
    }
}

impl Actor for ConsumerGroup {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(16384);
        self.publish_view();
        ctx.run_interval(OFFSET_FLUSH_EVERY, |act, ctx| {
            // Not awaited here: a failed flush marks its offsets dirty again.
            drop(act.flush(ctx));
        });
        ctx.run_interval(Duration::from_secs(10), |act, _| {
            act.expire_idle(Instant::now())
        });
    }
}

impl ConsumerGroup {
    fn expire_idle(&mut self, now: Instant) {
        let before = self.members.len();
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| now.duration_since(m.last_seen) >= MEMBER_EXPIRY)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.members.remove(id);
            self.locks.release_client(id);
        }
        let locks_before = self.locks.held();
        if self.locks.expire(now) != locks_before || !expired.is_empty() {
            self.locks_changed();
        }
        if self.members.len() != before {
            tracing::info!(group = %self.name, dropped = before - self.members.len(), "consumers expired without heartbeat");
            self.membership_changed();
        }
    }
}

/// Registers or refreshes a member; answers whether the member set or subscriptions changed.
pub struct Heartbeat {
    pub info: ConsumerInfo,
    pub channel: Arc<dyn ClientChannel>,
}

impl Message for Heartbeat {
    type Result = Result<bool, crate::BrokerError>;
}

impl Handler<Heartbeat> for ConsumerGroup {
    type Result = Result<bool, crate::BrokerError>;

    fn handle(&mut self, msg: Heartbeat, _: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        let client_id = msg.info.client_id.clone();
        if !self.members.contains_key(&client_id) && self.members.len() >= self.max_members {
            return Err(crate::BrokerError::LimitExceeded(format!(
                "the consumer group {} already has {} clients, the most it admits",
                self.name, self.max_members
            )));
        }
        let changed = match self.members.get_mut(&client_id) {
            Some(m) => {
                let subs_changed = m.info.subscriptions != msg.info.subscriptions;
                let channel_changed = m.channel.connection_id() != msg.channel.connection_id();
                m.info = msg.info;
                m.channel = msg.channel;
                m.last_seen = now;
                if subs_changed {
                    self.publish_view();
                }
                if channel_changed {
                    self.notify_members();
                }
                subs_changed
            }
            None => {
                self.members.insert(
                    client_id,
                    Member {
                        info: msg.info,
                        channel: msg.channel,
                        last_seen: now,
                    },
                );
                self.membership_changed();
                true
            }
        };
        Ok(changed)
    }
}

pub struct Unregister {
    pub client_id: String,
}

impl Message for Unregister {
    type Result = ();
}

impl Handler<Unregister> for ConsumerGroup {
    type Result = ();

    fn handle(&mut self, msg: Unregister, _: &mut Self::Context) {
        if self.locks.release_client(&msg.client_id) > 0 {
            self.locks_changed();
        }
        if self.members.remove(&msg.client_id).is_some() {
            self.membership_changed();
        }
    }
}

/// A client connection closed: its members leave at once.
pub struct ConnectionClosed {
    pub connection_id: u64,
}

impl Message for ConnectionClosed {
    type Result = ();
}

impl Handler<ConnectionClosed> for ConsumerGroup {
    type Result = ();

    fn handle(&mut self, msg: ConnectionClosed, _: &mut Self::Context) {
        // Only the locks taken over this connection: a client that reconnected and renewed
        // its lease over a new one keeps it.
        if self.locks.release_connection(msg.connection_id) > 0 {
            self.locks_changed();
        }
        let before = self.members.len();
        self.members
            .retain(|_, m| m.channel.connection_id() != msg.connection_id);
        if self.members.len() != before {
            self.membership_changed();
        }
    }
}

pub struct ListClientIds;

impl Message for ListClientIds {
    type Result = Vec<String>;
}

impl Handler<ListClientIds> for ConsumerGroup {
    type Result = Vec<String>;

    fn handle(&mut self, _: ListClientIds, _: &mut Self::Context) -> Vec<String> {
        let mut ids: Vec<String> = self.members.keys().cloned().collect();
        ids.sort();
        ids
    }
}

pub struct QueryOffset {
    pub topic: String,
    pub queue_id: u32,
}

impl Message for QueryOffset {
    type Result = Option<i64>;
}

impl Handler<QueryOffset> for ConsumerGroup {
    type Result = Option<i64>;

    fn handle(&mut self, msg: QueryOffset, _: &mut Self::Context) -> Option<i64> {
        self.offsets.get(&(msg.topic, msg.queue_id)).copied()
    }
}

pub struct CommitOffset {
    pub topic: String,
    pub queue_id: u32,
    pub offset: i64,
}

impl Message for CommitOffset {
    type Result = ();
}

impl Handler<CommitOffset> for ConsumerGroup {
    type Result = ();

    fn handle(&mut self, msg: CommitOffset, _: &mut Self::Context) {
        let key = (msg.topic, msg.queue_id);
        if self.offsets.get(&key) != Some(&msg.offset) {
            self.offsets.insert(key.clone(), msg.offset);
            self.dirty.insert(key);
        }
    }
}

/// All committed offsets, optionally of one topic.
pub struct GetOffsets {
    pub topic: Option<String>,
}

impl Message for GetOffsets {
    type Result = Vec<(String, u32, i64)>;
}

impl Handler<GetOffsets> for ConsumerGroup {
    type Result = Vec<(String, u32, i64)>;

    fn handle(&mut self, msg: GetOffsets, _: &mut Self::Context) -> Self::Result {
        let mut v: Vec<_> = self
            .offsets
            .iter()
            .filter(|((t, _), _)| msg.topic.as_ref().is_none_or(|want| want == t))
            .map(|((t, q), o)| (t.clone(), *q, *o))
            .collect();
        v.sort();
        v
    }
}

pub struct GetConnections;

impl Message for GetConnections {
    type Result = GroupConnections;
}

impl Handler<GetConnections> for ConsumerGroup {
    type Result = MessageResult<GetConnections>;

    fn handle(&mut self, _: GetConnections, _: &mut Self::Context) -> Self::Result {
        let mut out = GroupConnections {
            inconsistencies: self.inconsistencies(),
            ..Default::default()
        };
        let mut seen = HashSet::new();
        for m in self.members.values() {
            out.connections.push(ConnectionInfo {
                client_id: m.info.client_id.clone(),
                client_addr: m.channel.remote_addr(),
                language: m.info.language.clone(),
                version: m.info.version,
            });
            out.consume_type
                .get_or_insert_with(|| m.info.consume_type.clone());
            out.message_model.get_or_insert(m.info.message_model);
            out.consume_from_where
                .get_or_insert_with(|| m.info.consume_from_where.clone());
            for s in &m.info.subscriptions {
                if seen.insert(s.topic.clone()) {
                    out.subscriptions.push(s.clone());
                }
            }
        }
        MessageResult(out)
    }
}

/// Writes dirty offsets now and answers once they are durable.
pub struct FlushOffsets;

impl Message for FlushOffsets {
    type Result = Result<(), String>;
}

impl Handler<FlushOffsets> for ConsumerGroup {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, _: FlushOffsets, ctx: &mut Self::Context) -> Self::Result {
        let rx = self.flush(ctx);
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err("the group stopped".into())) })
    }
}

/// Replaces the group's configuration (admin update).
pub struct SetConfig(pub GroupConfig);

impl Message for SetConfig {
    type Result = ();
}

impl Handler<SetConfig> for ConsumerGroup {
    type Result = ();

    fn handle(&mut self, msg: SetConfig, _: &mut Self::Context) {
        self.config = msg.0;
    }
}

/// Sets committed offsets of one topic (an admin reset) and tells the online members.
pub struct ResetOffsets {
    pub broker_name: String,
    pub topic: String,
    pub timestamp: i64,
    pub offsets: Vec<(u32, i64)>,
}

impl Message for ResetOffsets {
    type Result = usize;
}

impl Handler<ResetOffsets> for ConsumerGroup {
    /// How many online members were told.
    type Result = usize;

    fn handle(&mut self, msg: ResetOffsets, _: &mut Self::Context) -> usize {
        for (q, off) in &msg.offsets {
            let key = (msg.topic.clone(), *q);
            self.offsets.insert(key.clone(), *off);
            self.dirty.insert(key);
        }
        let mut told = 0;
        for m in self.members.values() {
            if m.info.subscriptions.iter().any(|s| s.topic == msg.topic) {
                m.channel.reset_offsets(
                    &msg.broker_name,
                    &self.name,
                    &msg.topic,
                    msg.timestamp,
                    &msg.offsets,
                );
                told += 1;
            }
        }
        told
    }
}

/// The channel of one member, by client id.
pub struct FindMember {
    pub client_id: String,
}

impl Message for FindMember {
    type Result = Option<Arc<dyn ClientChannel>>;
}

impl Handler<FindMember> for ConsumerGroup {
    type Result = Option<Arc<dyn ClientChannel>>;

    fn handle(&mut self, msg: FindMember, _: &mut Self::Context) -> Self::Result {
        self.members.get(&msg.client_id).map(|m| m.channel.clone())
    }
}

/// LOCK_BATCH_MQ: grants the queues that are free, expired or already the client's; answers
/// the granted ones.
pub struct LockQueues {
    pub client_id: String,
    pub connection_id: u64,
    pub queues: Vec<QueueKey>,
}

impl Message for LockQueues {
    type Result = Vec<QueueKey>;
}

impl Handler<LockQueues> for ConsumerGroup {
    type Result = MessageResult<LockQueues>;

    fn handle(&mut self, msg: LockQueues, _: &mut Self::Context) -> Self::Result {
        let granted = self.locks.lock(
            &msg.client_id,
            msg.connection_id,
            msg.queues,
            Instant::now(),
        );
        self.locks_changed();
        MessageResult(granted)
    }
}

/// UNLOCK_BATCH_MQ: releases the queues the client holds among these.
pub struct UnlockQueues {
    pub client_id: String,
    pub queues: Vec<QueueKey>,
}

impl Message for UnlockQueues {
    type Result = ();
}

impl Handler<UnlockQueues> for ConsumerGroup {
    type Result = ();

    fn handle(&mut self, msg: UnlockQueues, _: &mut Self::Context) {
        if self.locks.unlock(&msg.client_id, &msg.queues) > 0 {
            self.locks_changed();
        }
    }
}

/// Stops the group actor (the group was deleted).
pub struct Stop;

impl Message for Stop {
    type Result = ();
}

impl Handler<Stop> for ConsumerGroup {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct FakeChannel {
        id: u64,
        notified: AtomicUsize,
    }

    impl ClientChannel for FakeChannel {
        fn connection_id(&self) -> u64 {
            self.id
        }
        fn remote_addr(&self) -> SocketAddr {
            "127.0.0.1:5000".parse().unwrap()
        }
        fn notify_consumer_ids_changed(&self, _: &str) {
            self.notified.fetch_add(1, Ordering::SeqCst);
        }
        fn reset_offsets(&self, _: &str, _: &str, _: &str, _: i64, _: &[(u32, i64)]) {}
        fn check_transaction_state(
            &self,
            _: &crate::client_channel::TransactionCheck,
            _: bytes::Bytes,
        ) {
        }
        fn consumer_running_info(
            &self,
            _: &str,
            _: &str,
            _: bool,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bytes::Bytes, String>> + Send>>
        {
            Box::pin(async { Err("not a real client".to_string()) })
        }
    }

    fn info(id: &str, expr: &str, version: i64) -> ConsumerInfo {
        ConsumerInfo {
            client_id: id.into(),
            consume_type: "CONSUME_PASSIVELY".into(),
            message_model: MessageModel::Clustering,
            consume_from_where: "CONSUME_FROM_LAST_OFFSET".into(),
            subscriptions: vec![Subscription {
                topic: "T".into(),
                expression: expr.into(),
                expression_type: "TAG".into(),
                tags: vec![],
                codes: vec![],
                version,
            }],
            language: "JAVA".into(),
            version: 0,
        }
    }

    #[actix::test]
    async fn members_come_and_go_and_are_notified() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            rocktor_storage::Store::open(dir.path(), rocktor_storage::FlushMode::Async).unwrap();
        let writer = store.start_writer(0).unwrap();
        let view = Arc::new(ArcSwap::from_pointee(GroupView::default()));
        let g = ConsumerGroup::new(
            GroupConfig::new("g"),
            HashMap::new(),
            writer.clone(),
            view.clone(),
        )
        .start();
        let a = Arc::new(FakeChannel {
            id: 1,
            notified: AtomicUsize::new(0),
        });
        let b = Arc::new(FakeChannel {
            id: 2,
            notified: AtomicUsize::new(0),
        });
        assert!(g
            .send(Heartbeat {
                info: info("a", "*", 1),
                channel: a.clone()
            })
            .await
            .unwrap()
            .unwrap());
        assert!(!g
            .send(Heartbeat {
                info: info("a", "*", 1),
                channel: a.clone()
            })
            .await
            .unwrap()
            .unwrap());
        assert!(g
            .send(Heartbeat {
                info: info("b", "TagA", 2),
                channel: b.clone()
            })
            .await
            .unwrap()
            .unwrap());
        assert_eq!(g.send(ListClientIds).await.unwrap(), vec!["a", "b"]);
        assert!(a.notified.load(Ordering::SeqCst) >= 1);
        let v = view.load();
        assert_eq!(v.subscriptions["T"].subscription.expression, "TagA");
        assert_eq!(v.inconsistencies.len(), 1, "a subscribes * and b TagA");
        assert!(
            v.inconsistencies[0].contains("b subscribes [T:TAG:TagA]"),
            "{:?}",
            v.inconsistencies
        );
        g.send(ConnectionClosed { connection_id: 2 }).await.unwrap();
        assert_eq!(g.send(ListClientIds).await.unwrap(), vec!["a"]);
        g.send(CommitOffset {
            topic: "T".into(),
            queue_id: 0,
            offset: 7,
        })
        .await
        .unwrap();
        assert_eq!(
            g.send(QueryOffset {
                topic: "T".into(),
                queue_id: 0
            })
            .await
            .unwrap(),
            Some(7)
        );
        g.send(FlushOffsets).await.unwrap().unwrap();
        let rec = store.recover().unwrap();
        assert_eq!(rec.offsets, vec![("g".to_string(), "T".to_string(), 0, 7)]);
        writer.close();
        store.stop_background_work();
    }

    #[actix::test]
    async fn members_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            rocktor_storage::Store::open(dir.path(), rocktor_storage::FlushMode::Async).unwrap();
        let writer = store.start_writer(0).unwrap();
        let view = Arc::new(ArcSwap::from_pointee(GroupView::default()));
        let g = ConsumerGroup::new(GroupConfig::new("g"), HashMap::new(), writer.clone(), view)
            .with_max_members(2)
            .start();
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            let ch = Arc::new(FakeChannel {
                id: i as u64,
                notified: AtomicUsize::new(0),
            });
            let r = g
                .send(Heartbeat {
                    info: info(id, "*", 1),
                    channel: ch,
                })
                .await
                .unwrap();
            assert_eq!(r.is_ok(), i < 2, "member {id}: {r:?}");
        }
        writer.close();
        store.stop_background_work();
    }

    /// A failed offset flush marks the offsets dirty again: the next flush writes them.
    #[actix::test]
    async fn a_failed_offset_flush_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            rocktor_storage::Store::open(dir.path(), rocktor_storage::FlushMode::Sync).unwrap();
        let writer = store.start_writer(0).unwrap();
        let view = Arc::new(ArcSwap::from_pointee(GroupView::default()));
        let g =
            ConsumerGroup::new(GroupConfig::new("g"), HashMap::new(), writer.clone(), view).start();
        g.send(CommitOffset {
            topic: "T".into(),
            queue_id: 0,
            offset: 42,
        })
        .await
        .unwrap();
        fail::cfg(
            "storage::write",
            &format!("return({})", dir.path().display()),
        )
        .unwrap();
        assert!(g.send(FlushOffsets).await.unwrap().is_err());
        fail::remove("storage::write");
        // The writer probes before its next write; the flush then succeeds and is stored.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if g.send(FlushOffsets).await.unwrap().is_ok()
                && store.recover().unwrap().offsets.len() == 1
            {
                break;
            }
            assert!(Instant::now() < deadline, "offsets never written");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rec = store.recover().unwrap();
        assert_eq!(rec.offsets, vec![("g".to_string(), "T".to_string(), 0, 42)]);
        writer.close();
        store.stop_background_work();
    }
}
