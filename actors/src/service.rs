//! The domain flows front ends call: one method per request family. They read the registry
//! snapshot, send one message to the actor that owns the state, and return domain results —
//! no wire formats here, so remoting, gRPC and HTTP share them.

use crate::broker::{
    BrokerActor, BrokerSettings, CreateTopic, EnsureGroup, GroupHandle, Recovery, Registry,
    TopicHandle, TopicSpec,
};
use crate::consumer_group::{
    ClientChannel, CommitOffset, ConnectionClosed, ConsumerInfo, FlushOffsets, GetOffsets,
    Heartbeat, ListClientIds, QueryOffset, ResetOffsets, Unregister,
};
use crate::error::{BrokerError, BrokerResult};
use crate::filter::Filter;
use crate::message::{
    check_limits, delay_of_level, due_time, from_record, prepare, IncomingMessage, PreparedMessage,
    PROP_DELAY, PROP_DLQ_ORIGIN_MESSAGE_ID, PROP_DLQ_ORIGIN_TOPIC, PROP_ORIGIN_MESSAGE_ID,
    PROP_RETRY_TOPIC, PROP_UNIQ_KEY,
};
use crate::model::{self, GroupConfig, TopicConfig, PERM_INHERIT, PERM_READ, PERM_WRITE};
use crate::producers::{ProducerConnectionClosed, Producers, RegisterProducer, UnregisterProducer};
use crate::routes::Routes;
use crate::scheduler::{self, Schedule, Scheduler};
use crate::topic_queue::{self, Append, Pull, PullOutcome, PullStatus, QueueStats};
use actix::prelude::*;
use arc_swap::ArcSwap;
use bytes::Bytes;
use rocktor_storage::keys::MetaKind;
use rocktor_storage::{properties, Store, Writer};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a data-path request may wait for a full mailbox before it becomes SYSTEM_BUSY.
const MAILBOX_WAIT: Duration = Duration::from_secs(3);

/// The handle front ends hold: settings, the registry snapshot and the actors' addresses.
#[derive(Clone)]
pub struct BrokerContext {
    pub settings: Arc<BrokerSettings>,
    pub registry: Arc<ArcSwap<Registry>>,
    pub broker: Addr<BrokerActor>,
    pub routes: Addr<Routes>,
    pub scheduler: Addr<Scheduler>,
    pub producers: Addr<Producers>,
    pub store: Store,
    pub writer: Writer,
    arbiters: Arc<Vec<Arbiter>>,
    round_robin: Arc<AtomicU64>,
    /// Long-poll pulls held right now, broker-wide.
    parked_pulls: Arc<AtomicUsize>,
    /// Filters of pulls that carry their own subscription, compiled once per expression.
    pull_filters: Arc<Mutex<HashMap<(String, String), Arc<Filter>>>>,
}

/// The largest answer a pull may build: one record past it still stays well inside clients'
/// 16 MiB frame limit (records are at most 4 MiB + properties).
pub const MAX_PULL_BYTES: usize = 8 << 20;
/// How long a pull over its long-poll cap waits before it is answered "nothing new", so that
/// clients do not spin.
pub const OVER_CAP_HOLD: Duration = Duration::from_millis(500);
/// Distinct self-carried pull subscriptions kept compiled.
const PULL_FILTER_CACHE: usize = 1024;

/// A counter slot held while a pull is parked; given back on drop.
struct HoldSlot(Vec<Arc<AtomicUsize>>);

impl HoldSlot {
    /// Takes a slot in every counter, or none when one is at its cap.
    fn take(counters: &[(&Arc<AtomicUsize>, usize)]) -> Option<HoldSlot> {
        let mut taken = Vec::with_capacity(counters.len());
        for (c, cap) in counters {
            if c.fetch_add(1, Ordering::AcqRel) >= *cap {
                c.fetch_sub(1, Ordering::AcqRel);
                drop(HoldSlot(taken));
                return None;
            }
            taken.push(Arc::clone(c));
        }
        Some(HoldSlot(taken))
    }
}

impl Drop for HoldSlot {
    fn drop(&mut self) {
        for c in &self.0 {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

pub struct SendRequest {
    pub producer_group: String,
    pub topic: String,
    pub default_topic: Option<String>,
    pub default_topic_queues: u32,
    /// Negative: the broker picks a queue.
    pub queue_id: i32,
    pub messages: Vec<IncomingMessage>,
    /// Retry-topic sends: the consumer's limit (header `maxReconsumeTimes`).
    pub max_reconsume_times: Option<i32>,
    /// Sent as a batch (SEND_BATCH_MESSAGE), which retry and dead-letter topics refuse.
    pub batch: bool,
}

/// CONSUMER_SEND_MSG_BACK: a consumer gives a message back for a later retry.
pub struct SendBackRequest {
    pub group: String,
    /// The commit-log offset (sequence) of the message.
    pub offset: u64,
    /// 0: the broker's back-off (3 + reconsume times); negative: straight to the DLQ.
    pub delay_level: i32,
    pub origin_msg_id: Option<String>,
    pub max_reconsume_times: Option<i32>,
}

#[derive(Debug, Clone)]
pub struct SendResult {
    pub queue_id: u32,
    pub first_offset: u64,
    pub seqs: Vec<u64>,
    pub uniq_keys: Vec<String>,
    pub store_host: SocketAddr,
}

pub struct PullRequest {
    pub group: String,
    pub topic: String,
    pub queue_id: u32,
    pub offset: u64,
    pub max_msgs: usize,
    pub max_bytes: usize,
    /// The expression and its type when the request carries its own subscription.
    pub subscription: Option<(String, String)>,
    pub sub_version: i64,
    pub commit_offset: Option<i64>,
    pub hold: Option<Duration>,
    /// The long polls the caller's connection holds right now (capped per connection).
    pub connection_holds: Option<Arc<AtomicUsize>>,
}

/// A message in a group's dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub queue_offset: u64,
    pub seq: u64,
    pub record: rocktor_storage::record::Record,
}

/// Where an offset reset moves a group.
#[derive(Debug, Clone, Copy)]
pub enum ResetTarget {
    /// The first message stored at or after this time.
    Timestamp(i64),
    /// The end of each queue (skip the backlog).
    Latest,
    /// This offset in every queue, clamped to what exists.
    Offset(i64),
}

pub struct HeartbeatRequest {
    pub client_id: String,
    pub language: String,
    pub version: i32,
    pub producer_groups: Vec<String>,
    pub consumers: Vec<(String, ConsumerInfo)>,
    pub channel: Arc<dyn ClientChannel>,
}

fn decode_meta<T: serde::de::DeserializeOwned>(what: &str, name: &str, v: &[u8]) -> Option<T> {
    match rmp_serde::from_slice(v) {
        Ok(x) => Some(x),
        Err(e) => {
            tracing::error!(%what, %name, error = %e, "skipping unreadable metadata entry");
            None
        }
    }
}

/// Name-server KV config by namespace.
type KvTable = BTreeMap<String, BTreeMap<String, String>>;

fn recover(store: &Store) -> BrokerResult<(Recovery, u64, KvTable)> {
    let rec = store.recover()?;
    let mut topics: Vec<TopicConfig> = Vec::new();
    let mut groups = Vec::new();
    let mut kv = KvTable::new();
    let mut next_topic_id = 1u32;
    for (kind, name, value) in &rec.meta {
        match *kind {
            k if k == MetaKind::Topic as u8 => {
                topics.extend(decode_meta::<TopicConfig>("topic", name, value))
            }
            k if k == MetaKind::Group as u8 => {
                groups.extend(decode_meta::<GroupConfig>("group", name, value))
            }
            k if k == MetaKind::Counter as u8 && name == "topic_id" => {
                if let Ok(raw) = <[u8; 4]>::try_from(value.as_slice()) {
                    next_topic_id = next_topic_id.max(u32::from_be_bytes(raw));
                }
            }
            k if k == MetaKind::KvConfig as u8 => {
                if let Some((ns, key)) = name.split_once('\u{0}') {
                    kv.entry(ns.to_string())
                        .or_default()
                        .insert(key.to_string(), String::from_utf8_lossy(value).into_owned());
                }
            }
            _ => {}
        }
    }
    for t in &topics {
        next_topic_id = next_topic_id.max(t.id + 1);
    }
    let mut bounds = HashMap::new();
    for t in &topics {
        for q in 0..t.queue_count() {
            bounds.insert((t.id, q), store.queue_bounds(t.id, q)?);
        }
    }
    let mut offsets: HashMap<String, HashMap<(String, u32), i64>> = HashMap::new();
    for (g, t, q, o) in rec.offsets {
        offsets.entry(g).or_default().insert((t, q), o);
    }
    Ok((
        Recovery {
            topics,
            groups,
            bounds,
            offsets,
            next_topic_id,
        },
        rec.next_seq,
        kv,
    ))
}

impl BrokerContext {
    /// Recovers the store and starts the actors. Call inside a running actix System.
    pub async fn start(settings: BrokerSettings, store: Store) -> BrokerResult<BrokerContext> {
        let started = std::time::Instant::now();
        let s2 = store.clone();
        let (recovery, next_seq, kv) =
            tokio::task::spawn_blocking(move || recover(&s2))
                .await
                .map_err(|e| BrokerError::Storage(format!("recovery task failed: {e}")))??;
        let topic_count = recovery.topics.len();
        let writer = store.start_writer(next_seq)?;
        let arbiters: Vec<Arbiter> = (0..settings.workers.max(1))
            .map(|_| Arbiter::new())
            .collect();
        let handles = arbiters.iter().map(|a| a.handle()).collect();
        let settings = Arc::new(settings);
        let registry = Arc::new(ArcSwap::from_pointee(Registry::default()));
        let routes = Routes::new(kv, Some(writer.clone())).start();
        let broker = BrokerActor::new(
            settings.clone(),
            store.clone(),
            writer.clone(),
            registry.clone(),
            routes.clone(),
            handles,
            recovery,
        )
        .start();
        let scheduler = Scheduler::new(
            store.clone(),
            writer.clone(),
            registry.clone(),
            settings.broker_addr,
        )
        .start();
        let ctx = BrokerContext {
            settings,
            registry,
            broker,
            routes,
            scheduler,
            producers: Producers::default().start(),
            store,
            writer,
            arbiters: Arc::new(arbiters),
            round_robin: Arc::new(AtomicU64::new(0)),
            parked_pulls: Arc::new(AtomicUsize::new(0)),
            pull_filters: Arc::new(Mutex::new(HashMap::new())),
        };
        if ctx.topic(model::DEFAULT_TOPIC).is_none() && ctx.settings.auto_create_topic {
            ctx.auto_create(TopicSpec {
                name: model::DEFAULT_TOPIC.into(),
                read_queues: ctx.settings.default_topic_queues,
                write_queues: ctx.settings.default_topic_queues,
                perm: PERM_READ | PERM_WRITE | PERM_INHERIT,
                topic_sys_flag: 0,
                order: false,
                attributes: BTreeMap::new(),
            })
            .await?;
        }
        tracing::info!(
            topics = topic_count,
            next_seq,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "storage recovered"
        );
        Ok(ctx)
    }

    /// Flushes offsets and the WAL, then stops the worker arbiters.
    pub async fn shutdown(&self) {
        let groups: Vec<_> = self.registry.load().groups.values().cloned().collect();
        for g in groups {
            match g.addr.send(FlushOffsets).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(group = %g.config.name, error = %e, "offset flush failed")
                }
                Err(_) => {}
            }
        }
        match self.writer.flush().await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "WAL flush failed"),
            Err(_) => tracing::error!("storage writer already stopped"),
        }
        let (store, writer) = (self.store.clone(), self.writer.clone());
        let _ = tokio::task::spawn_blocking(move || {
            writer.close();
            store.stop_background_work();
        })
        .await;
        for a in self.arbiters.iter() {
            a.stop();
        }
    }

    /// Whether the store takes writes (false after a failed write until one succeeds again).
    pub fn writable(&self) -> bool {
        self.writer.is_healthy()
    }

    /// The arbiter for the next connection, round-robin, to spread work over the cores.
    pub fn next_arbiter(&self) -> ArbiterHandle {
        let i = self.round_robin.fetch_add(1, Ordering::Relaxed) as usize;
        self.arbiters[i % self.arbiters.len()].handle()
    }

    pub fn topic(&self, name: &str) -> Option<Arc<TopicHandle>> {
        self.registry.load().topics.get(name).cloned()
    }

    pub fn group(&self, name: &str) -> Option<Arc<GroupHandle>> {
        self.registry.load().groups.get(name).cloned()
    }

    pub fn queue_stats(&self, topic: &str, queue_id: u32) -> BrokerResult<Arc<QueueStats>> {
        let t = self
            .topic(topic)
            .ok_or_else(|| BrokerError::TopicNotExist(topic.to_string()))?;
        t.stats.get(queue_id as usize).cloned().ok_or_else(|| {
            BrokerError::InvalidParameter(format!("queueId[{queue_id}] is illegal, topic: {topic}"))
        })
    }

    pub async fn ensure_group(&self, name: &str) -> BrokerResult<Arc<GroupHandle>> {
        if let Some(g) = self.group(name) {
            return Ok(g);
        }
        model::validate_group(name).map_err(BrokerError::InvalidParameter)?;
        self.broker
            .send(EnsureGroup {
                name: name.to_string(),
            })
            .timeout(MAILBOX_WAIT)
            .await?
    }

    /// The retry topic of a group, created on demand (digest §4.3).
    pub async fn ensure_retry_topic(&self, group: &GroupHandle) -> BrokerResult<Arc<TopicHandle>> {
        let name = model::retry_topic(&group.config.name);
        if let Some(t) = self.topic(&name) {
            return Ok(t);
        }
        let queues = group.config.retry_queue_nums.clamp(1, model::MAX_QUEUES);
        self.auto_create(TopicSpec {
            name,
            read_queues: queues,
            write_queues: queues,
            perm: PERM_READ | PERM_WRITE,
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
        })
        .await
    }

    /// The dead-letter topic of a group: one queue, created lazily (digest §4.3).
    pub async fn ensure_dlq_topic(&self, group: &str) -> BrokerResult<Arc<TopicHandle>> {
        let name = model::dlq_topic(group);
        if let Some(t) = self.topic(&name) {
            return Ok(t);
        }
        self.auto_create(TopicSpec {
            name,
            read_queues: 1,
            write_queues: 1,
            perm: PERM_READ | PERM_WRITE,
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
        })
        .await
    }

    /// Routes a message a consumer gave back: to `%RETRY%<group>` after the back-off of its
    /// delay level, or past the group's limit to `%DLQ%<group>` (digest §4.3).
    pub async fn send_back(&self, req: SendBackRequest) -> BrokerResult<()> {
        let group = self.ensure_group(&req.group).await?;
        if group.config.retry_queue_nums == 0 {
            return Ok(()); // Apache's rule: no retry queues means the message is dropped.
        }
        let store = self.store.clone();
        let seq = req.offset;
        let bytes = tokio::task::spawn_blocking(move || store.read_record(seq))
            .await
            .map_err(|e| BrokerError::Storage(e.to_string()))??
            .ok_or_else(|| {
                BrokerError::NotFound(format!("look message by offset failed, {seq}"))
            })?;
        let (rec, _) = rocktor_storage::record::decode(&bytes)
            .map_err(|e| BrokerError::Storage(format!("stored record {seq}: {e}")))?;
        let mut props = rec.properties.clone();
        let origin_topic = properties::get(&props, PROP_RETRY_TOPIC)
            .unwrap_or(&rec.topic)
            .to_string();
        if properties::get(&props, PROP_RETRY_TOPIC).is_none() {
            properties::push(&mut props, PROP_RETRY_TOPIC, &rec.topic);
        }
        let origin_id = req
            .origin_msg_id
            .filter(|s| !s.is_empty())
            .or_else(|| properties::get(&props, PROP_ORIGIN_MESSAGE_ID).map(str::to_string))
            .or_else(|| properties::get(&props, PROP_UNIQ_KEY).map(str::to_string))
            .unwrap_or_default();
        if properties::get(&props, PROP_ORIGIN_MESSAGE_ID).is_none() && !origin_id.is_empty() {
            properties::push(&mut props, PROP_ORIGIN_MESSAGE_ID, &origin_id);
        }
        let max = req
            .max_reconsume_times
            .unwrap_or(group.config.retry_max_times);
        let times = rec.reconsume_times;
        if times >= max || req.delay_level < 0 {
            let mut p = properties::without(&props, &[PROP_DELAY]);
            p = properties::with(&p, PROP_DLQ_ORIGIN_TOPIC, &origin_topic);
            p = properties::with(&p, PROP_DLQ_ORIGIN_MESSAGE_ID, &origin_id);
            let mut m: PreparedMessage = from_record(&rec, p)?;
            m.reconsume_times = times.saturating_add(1);
            let dlq = self.ensure_dlq_topic(&req.group).await?;
            self.append_to_first_queue(&dlq, vec![m]).await?;
            metrics::counter!("rocktor_messages_dead_lettered_total", "group" => req.group)
                .increment(1);
            return Ok(());
        }
        let level = if req.delay_level == 0 {
            times.saturating_add(3)
        } else {
            req.delay_level
        };
        let p = properties::with(&props, PROP_DELAY, &level.to_string());
        let mut m = from_record(&rec, p)?;
        m.reconsume_times = times.saturating_add(1);
        let retry = self.ensure_retry_topic(&group).await?;
        let queue_id = (self.round_robin.fetch_add(1, Ordering::Relaxed)
            % retry.queues.len().max(1) as u64) as u32;
        let due_ms = crate::now_ms().saturating_add(delay_of_level(level));
        scheduler::schedule(
            &self.scheduler,
            Schedule {
                topic: retry.config.name.clone(),
                queue_id,
                messages: vec![m],
                due_ms,
            },
        )
        .await?;
        metrics::counter!("rocktor_messages_retried_total", "group" => req.group).increment(1);
        Ok(())
    }

    async fn auto_create(&self, mut spec: TopicSpec) -> BrokerResult<Arc<TopicHandle>> {
        model::validate_topic(&spec.name).map_err(BrokerError::InvalidParameter)?;
        spec.read_queues = spec.read_queues.clamp(1, model::MAX_QUEUES);
        spec.write_queues = spec.write_queues.clamp(1, model::MAX_QUEUES);
        self.broker
            .send(CreateTopic {
                spec,
                only_if_absent: true,
            })
            .timeout(MAILBOX_WAIT)
            .await?
    }

    /// Finds the topic of a send, auto-creating it from the default topic (TBW102 flow).
    async fn topic_for_send(&self, req: &SendRequest) -> BrokerResult<Arc<TopicHandle>> {
        if let Some(t) = self.topic(&req.topic) {
            return Ok(t);
        }
        if let Some(group) = req.topic.strip_prefix(model::RETRY_PREFIX) {
            let g = self.ensure_group(group).await?;
            return self.ensure_retry_topic(&g).await;
        }
        if !self.settings.auto_create_topic {
            return Err(BrokerError::TopicNotExist(req.topic.clone()));
        }
        let default = req.default_topic.as_deref().unwrap_or(model::DEFAULT_TOPIC);
        let Some(d) = self.topic(default) else {
            return Err(BrokerError::TopicNotExist(req.topic.clone()));
        };
        if d.config.perm & PERM_INHERIT == 0 {
            return Err(BrokerError::TopicNotExist(req.topic.clone()));
        }
        let queues = req
            .default_topic_queues
            .clamp(1, d.config.write_queues.max(1));
        self.auto_create(TopicSpec {
            name: req.topic.clone(),
            read_queues: queues,
            write_queues: queues,
            perm: d.config.perm & !PERM_INHERIT,
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
        })
        .await
    }

    /// Stores the messages of one send (one message, or a batch) in one queue.
    pub async fn send(&self, req: SendRequest) -> BrokerResult<SendResult> {
        model::validate_topic(&req.topic).map_err(BrokerError::MessageIllegal)?;
        if model::NOT_ALLOWED_SEND_TOPICS.contains(&req.topic.as_str()) {
            return Err(BrokerError::NoPermission(format!(
                "Sending message to topic[{}] is forbidden.",
                req.topic
            )));
        }
        if req.messages.is_empty() {
            return Err(BrokerError::MessageIllegal(
                "the batch holds no message".into(),
            ));
        }
        if req.batch && model::is_retry_or_dlq(&req.topic) {
            return Err(BrokerError::MessageIllegal(
                "batch request does not support retry group".into(),
            ));
        }
        for m in &req.messages {
            check_limits(m, self.settings.max_message_size)?;
            if model::is_half_message(m.sys_flag, &m.properties) {
                // Delivering a half message at once would break the transaction's promise;
                // Apache answers the same when its broker rejects transaction messages.
                return Err(BrokerError::NoPermission(format!(
                    "the broker[{}] sending transaction message is forbidden (transactions are not supported yet)",
                    self.settings.broker_name
                )));
            }
        }
        let mut topic = self.topic_for_send(&req).await?;
        if let Some(group) = req.topic.strip_prefix(model::RETRY_PREFIX) {
            // Orderly consumers re-send failures to the retry topic themselves; past the limit
            // such a message belongs in the dead-letter queue (digest §4.3).
            let g = self.ensure_group(group).await?;
            let max = req.max_reconsume_times.unwrap_or(g.config.retry_max_times);
            if req.messages.iter().any(|m| m.reconsume_times > max) {
                topic = self.ensure_dlq_topic(group).await?;
            }
        }
        if !topic.config.writable() {
            return Err(BrokerError::NoPermission(format!(
                "the topic[{}] sending message is forbidden",
                req.topic
            )));
        }
        let write_queues = topic.config.write_queues.max(1);
        let queue_id = if req.queue_id < 0 {
            (self.round_robin.fetch_add(1, Ordering::Relaxed) % write_queues as u64) as u32
        } else {
            req.queue_id as u32
        };
        let Some(queue) = topic.queues.get(queue_id as usize) else {
            return Err(BrokerError::InvalidParameter(format!(
                "request queueId[{queue_id}] is illegal, topic: {} queue count: {}",
                req.topic,
                topic.queues.len()
            )));
        };
        let store_host = self.settings.broker_addr;
        let mut prepared = Vec::with_capacity(req.messages.len());
        for m in req.messages {
            prepared.push(prepare(m, &self.settings.cluster_name, store_host)?);
        }
        let uniq_keys: Vec<String> = prepared.iter().map(|p| p.uniq_key.clone()).collect();
        let n = prepared.len() as u64;
        let due = match prepared.first() {
            Some(p) => due_time(&p.properties, crate::now_ms(), self.settings.max_delay_ms)?,
            None => None,
        };
        if let Some(due_ms) = due {
            let seqs = scheduler::schedule(
                &self.scheduler,
                Schedule {
                    topic: topic.config.name.clone(),
                    queue_id,
                    messages: prepared,
                    due_ms,
                },
            )
            .await?;
            metrics::counter!("rocktor_messages_scheduled_total", "topic" => req.topic.clone())
                .increment(n);
            return Ok(SendResult {
                queue_id,
                first_offset: 0,
                seqs,
                uniq_keys,
                store_host,
            });
        }
        let r = topic_queue::append(queue, Append::new(prepared, store_host)).await?;
        metrics::counter!("rocketmq_messages_in_total", "topic" => req.topic.clone()).increment(n);
        Ok(SendResult {
            queue_id: r.queue_id,
            first_offset: r.first_offset,
            seqs: r.seqs,
            uniq_keys,
            store_host,
        })
    }

    /// The filter of a pull: its own subscription, or the one the group registered.
    fn pull_filter(&self, group: &GroupHandle, req: &PullRequest) -> BrokerResult<Arc<Filter>> {
        if let Some((expr, ty)) = &req.subscription {
            self.check_filter_type(ty)?;
            return self.compiled_filter(expr, ty);
        }
        let view = group.view.load();
        let Some(sub) = view.subscriptions.get(&req.topic) else {
            return Err(BrokerError::SubscriptionNotExist(req.group.clone()));
        };
        if sub.subscription.version < req.sub_version {
            return Err(BrokerError::SubscriptionNotLatest(req.group.clone()));
        }
        // Compiled once when the heartbeat registered this subscription version.
        self.check_filter_type(&sub.subscription.expression_type)?;
        sub.filter
            .clone()
            .map_err(BrokerError::SubscriptionParseFailed)
    }

    /// SQL92 needs property filtering on (Apache's `enablePropertyFilter`).
    fn check_filter_type(&self, expression_type: &str) -> BrokerResult<()> {
        if expression_type.eq_ignore_ascii_case("SQL92") && !self.settings.enable_property_filter {
            return Err(BrokerError::NotSupported(
                "The broker does not support consumer to filter message by SQL92 (enable_property_filter = false)".into(),
            ));
        }
        Ok(())
    }

    /// A self-carried subscription's filter, compiled once per distinct expression.
    fn compiled_filter(&self, expr: &str, ty: &str) -> BrokerResult<Arc<Filter>> {
        let key = (expr.to_string(), ty.to_string());
        if let Some(f) = self
            .pull_filters
            .lock()
            .ok()
            .and_then(|c| c.get(&key).cloned())
        {
            return Ok(f);
        }
        let f = Arc::new(
            Filter::from_subscription(expr, ty).map_err(BrokerError::SubscriptionParseFailed)?,
        );
        if let Ok(mut cache) = self.pull_filters.lock() {
            if cache.len() >= PULL_FILTER_CACHE {
                cache.clear();
            }
            cache.insert(key, f.clone());
        }
        Ok(f)
    }

    /// CHECK_CLIENT_CONFIG and every SQL92 pull: property filtering must be on, and the
    /// expression must compile.
    pub fn check_expression(&self, expression: &str, expression_type: &str) -> BrokerResult<()> {
        self.check_filter_type(expression_type)?;
        self.compiled_filter(expression, expression_type)
            .map(|_| ())
    }

    pub async fn pull(&self, req: PullRequest) -> BrokerResult<PullOutcome> {
        let topic = self
            .topic(&req.topic)
            .ok_or_else(|| BrokerError::TopicNotExist(req.topic.clone()))?;
        if !topic.config.readable() {
            return Err(BrokerError::NoPermission(format!(
                "the topic[{}] pulling message is forbidden",
                req.topic
            )));
        }
        let group = self.ensure_group(&req.group).await?;
        if !group.config.consume_enable {
            return Err(BrokerError::NoPermission(format!(
                "subscription group no permission, {}",
                req.group
            )));
        }
        if !group.config.consume_broadcast_enable
            && group.view.load().message_model.as_deref() == Some("BROADCASTING")
        {
            return Err(BrokerError::NoPermission(format!(
                "the consumer group[{}] can not consume by broadcast way",
                req.group
            )));
        }
        let filter = self.pull_filter(&group, &req)?;
        let Some(queue) = topic.queues.get(req.queue_id as usize) else {
            return Err(BrokerError::InvalidParameter(format!(
                "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{}]",
                req.queue_id, req.topic, topic.config.read_queues
            )));
        };
        if let Some(off) = req.commit_offset {
            // A lost commit is superseded by the next one, so a full mailbox may drop it.
            let _ = group.addr.try_send(CommitOffset {
                topic: req.topic.clone(),
                queue_id: req.queue_id,
                offset: off,
            });
        }
        let mut hold = if self.settings.long_polling {
            req.hold
        } else {
            req.hold.map(|_| Duration::from_secs(1))
        };
        // A long poll holds a slot broker-wide and in its connection; over either cap it is
        // answered as if its hold had elapsed, after a short wait so the client does not spin.
        let mut over_cap = false;
        let slot = match hold {
            Some(_) => {
                let mut counters = vec![(&self.parked_pulls, self.settings.max_parked_pulls)];
                if let Some(c) = &req.connection_holds {
                    counters.push((c, self.settings.max_parked_pulls_per_connection));
                }
                let slot = HoldSlot::take(&counters);
                if slot.is_none() {
                    hold = None;
                    over_cap = true;
                }
                slot
            }
            None => None,
        };
        let out = queue
            .send(Pull {
                offset: req.offset,
                max_msgs: req.max_msgs.clamp(1, 1024),
                max_bytes: req.max_bytes.clamp(1, MAX_PULL_BYTES),
                filter,
                hold,
            })
            .timeout(hold.unwrap_or_default() + MAILBOX_WAIT)
            .await??;
        drop(slot);
        if over_cap && out.status == PullStatus::NoNewMessage {
            metrics::counter!("rocktor_long_polls_over_cap_total").increment(1);
            tokio::time::sleep(OVER_CAP_HOLD).await;
        }
        metrics::counter!("rocketmq_messages_out_total", "topic" => req.topic)
            .increment(out.records.len() as u64);
        Ok(out)
    }

    pub async fn heartbeat(&self, hb: HeartbeatRequest) -> BrokerResult<bool> {
        let producer_groups: Vec<String> = hb
            .producer_groups
            .into_iter()
            .filter(|g| g != "CLIENT_INNER_PRODUCER")
            .collect();
        if !producer_groups.is_empty() {
            self.producers.do_send(RegisterProducer {
                groups: producer_groups,
                client_id: hb.client_id.clone(),
                language: hb.language.clone(),
                version: hb.version,
                channel: hb.channel.clone(),
            });
        }
        let mut changed = false;
        for (group_name, info) in hb.consumers {
            let group = self.ensure_group(&group_name).await?;
            if info.message_model != "BROADCASTING" {
                self.ensure_retry_topic(&group).await?;
            }
            changed |= group
                .addr
                .send(Heartbeat {
                    info,
                    channel: hb.channel.clone(),
                })
                .timeout(MAILBOX_WAIT)
                .await??;
        }
        Ok(changed)
    }

    pub fn unregister(
        &self,
        client_id: &str,
        consumer_group: Option<&str>,
        producer_group: Option<&str>,
    ) {
        if let Some(g) = producer_group {
            self.producers.do_send(UnregisterProducer {
                group: g.to_string(),
                client_id: client_id.to_string(),
            });
        }
        if let Some(g) = consumer_group.and_then(|g| self.group(g)) {
            g.addr.do_send(Unregister {
                client_id: client_id.to_string(),
            });
        }
    }

    /// A connection closed: its consumers leave the groups it joined.
    pub fn connection_closed(&self, connection_id: u64, groups: impl IntoIterator<Item = String>) {
        self.producers
            .do_send(ProducerConnectionClosed { connection_id });
        for g in groups {
            if let Some(g) = self.group(&g) {
                g.addr.do_send(ConnectionClosed { connection_id });
            }
        }
    }

    pub async fn consumer_ids(&self, group: &str) -> BrokerResult<Vec<String>> {
        match self.group(group) {
            Some(g) => Ok(g.addr.send(ListClientIds).await?),
            None => Ok(Vec::new()),
        }
    }

    /// The committed offset; for a group that never committed, 0 while the queue still starts
    /// at 0 (Apache's rule that lets CONSUME_FROM_LAST_OFFSET read a new topic from its start).
    pub async fn query_offset(
        &self,
        group: &str,
        topic: &str,
        queue_id: u32,
        zero_if_not_found: bool,
    ) -> BrokerResult<Option<i64>> {
        if let Some(g) = self.group(group) {
            if let Some(o) = g
                .addr
                .send(QueryOffset {
                    topic: topic.to_string(),
                    queue_id,
                })
                .timeout(MAILBOX_WAIT)
                .await?
            {
                return Ok(Some(o));
            }
        }
        if zero_if_not_found {
            if let Ok(stats) = self.queue_stats(topic, queue_id) {
                if stats.min() == 0 {
                    return Ok(Some(0));
                }
            }
        }
        Ok(None)
    }

    pub async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        queue_id: u32,
        offset: i64,
    ) -> BrokerResult<()> {
        let Some(t) = self.topic(topic) else {
            return Err(BrokerError::TopicNotExist(topic.to_string()));
        };
        if queue_id as usize >= t.queues.len() {
            return Err(BrokerError::InvalidParameter(format!(
                "queueId[{queue_id}] is illegal, topic: {topic} has {} queues",
                t.queues.len()
            )));
        }
        let g = self.ensure_group(group).await?;
        g.addr
            .send(CommitOffset {
                topic: topic.to_string(),
                queue_id,
                offset,
            })
            .timeout(MAILBOX_WAIT)
            .await?;
        Ok(())
    }

    /// Resets a group's offsets of a topic, online members told at once, offline ones finding
    /// the new offsets when they come back. Without `force`, a queue only moves backwards
    /// (Apache's rule). Answers the offsets set per queue.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        target: ResetTarget,
        force: bool,
    ) -> BrokerResult<Vec<(u32, i64)>> {
        let t = self
            .topic(topic)
            .ok_or_else(|| BrokerError::TopicNotExist(topic.to_string()))?;
        let g = self
            .group(group)
            .ok_or_else(|| BrokerError::GroupNotExist(group.to_string()))?;
        let current = g
            .addr
            .send(GetOffsets {
                topic: Some(topic.to_string()),
            })
            .await?;
        let mut offsets = Vec::new();
        for (q, stats) in t.stats.iter().enumerate() {
            let q = q as u32;
            let wanted = match target {
                ResetTarget::Timestamp(ts) => self.search_offset(topic, q, ts, false).await? as i64,
                ResetTarget::Latest => stats.max() as i64,
                ResetTarget::Offset(o) => o.clamp(stats.min() as i64, stats.max() as i64),
            };
            let cur = current
                .iter()
                .find(|(_, qq, _)| *qq == q)
                .map(|(_, _, o)| *o);
            let new = match cur {
                Some(c) if !force && wanted >= c => c,
                _ => wanted,
            };
            offsets.push((q, new));
        }
        let timestamp = match target {
            ResetTarget::Timestamp(ts) => ts,
            _ => crate::now_ms(),
        };
        let told = g
            .addr
            .send(ResetOffsets {
                broker_name: self.settings.broker_name.clone(),
                topic: topic.to_string(),
                timestamp,
                offsets: offsets.clone(),
            })
            .await?;
        tracing::info!(%group, %topic, online_members_told = told, "consumer offsets reset");
        Ok(offsets)
    }

    /// Dead letters of a group stored between `from_ms` and `to_ms` (at most `max`).
    pub async fn list_dead_letters(
        &self,
        group: &str,
        from_ms: i64,
        to_ms: i64,
        max: usize,
    ) -> BrokerResult<Vec<DeadLetter>> {
        let name = model::dlq_topic(group);
        let Some(t) = self.topic(&name) else {
            return Ok(Vec::new());
        };
        let Some(stats) = t.stats.first() else {
            return Ok(Vec::new());
        };
        let start = self.search_offset(&name, 0, from_ms, false).await?;
        let read = rocktor_storage::QueueRead {
            topic_id: t.config.id,
            queue_id: 0,
            from: start,
            upto: stats.max(),
            max_count: max.clamp(1, 10_000),
            max_bytes: 64 << 20,
        };
        let store = self.store.clone();
        let out = tokio::task::spawn_blocking(move || {
            store.read_queue(&read, &|cq| cq.store_time <= to_ms)
        })
        .await
        .map_err(|e| BrokerError::Storage(e.to_string()))??;
        let mut letters = Vec::new();
        for e in out.entries {
            if let Ok((rec, _)) = rocktor_storage::record::decode(&e.record) {
                letters.push(DeadLetter {
                    queue_offset: e.offset,
                    seq: e.cq.seq,
                    record: rec,
                });
            }
        }
        Ok(letters)
    }

    /// Re-sends dead letters (by their DLQ queue offsets) to the group's retry topic, with a
    /// fresh retry budget. Answers how many were re-sent.
    pub async fn resend_dead_letters(&self, group: &str, offsets: &[u64]) -> BrokerResult<usize> {
        if offsets.len() > self.settings.max_dlq_resend {
            return Err(BrokerError::InvalidParameter(format!(
                "{} dead letters asked for; one request re-sends at most {}",
                offsets.len(),
                self.settings.max_dlq_resend
            )));
        }
        let name = model::dlq_topic(group);
        let t = self
            .topic(&name)
            .ok_or_else(|| BrokerError::TopicNotExist(name.clone()))?;
        let g = self
            .group(group)
            .ok_or_else(|| BrokerError::GroupNotExist(group.to_string()))?;
        let retry = self.ensure_retry_topic(&g).await?;
        let (store, id) = (self.store.clone(), t.config.id);
        let wanted = offsets.to_vec();
        let records = tokio::task::spawn_blocking(
            move || -> Result<Vec<Bytes>, rocktor_storage::StorageError> {
                let mut out = Vec::new();
                for off in wanted {
                    if let Some(cq) = store.cq_entry(id, 0, off)? {
                        out.extend(store.read_record(cq.seq)?);
                    }
                }
                Ok(out)
            },
        )
        .await
        .map_err(|e| BrokerError::Storage(e.to_string()))??;
        let mut messages = Vec::new();
        for bytes in records {
            let (rec, _) = rocktor_storage::record::decode(&bytes)
                .map_err(|e| BrokerError::Storage(format!("stored dead letter: {e}")))?;
            let props = properties::without(
                &rec.properties,
                &[
                    PROP_DLQ_ORIGIN_TOPIC,
                    PROP_DLQ_ORIGIN_MESSAGE_ID,
                    PROP_DELAY,
                ],
            );
            let mut m = from_record(&rec, props)?;
            m.reconsume_times = 0;
            messages.push(m);
        }
        let n = messages.len();
        if n > 0 {
            self.append_to_first_queue(&retry, messages).await?;
        }
        Ok(n)
    }

    /// Appends to queue 0 of a retry or dead-letter topic (they have one queue).
    async fn append_to_first_queue(
        &self,
        topic: &TopicHandle,
        messages: Vec<PreparedMessage>,
    ) -> BrokerResult<crate::topic_queue::AppendResult> {
        let queue = topic.queues.first().ok_or_else(|| {
            BrokerError::Storage(format!("topic {} has no queue", topic.config.name))
        })?;
        topic_queue::append(queue, Append::new(messages, self.settings.broker_addr)).await
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP, on the blocking pool.
    pub async fn search_offset(
        &self,
        topic: &str,
        queue_id: u32,
        ts: i64,
        upper: bool,
    ) -> BrokerResult<u64> {
        let t = self
            .topic(topic)
            .ok_or_else(|| BrokerError::TopicNotExist(topic.to_string()))?;
        let stats = self.queue_stats(topic, queue_id)?;
        let bounds = rocktor_storage::QueueBounds {
            min: stats.min(),
            max: stats.max(),
        };
        let store = self.store.clone();
        let id = t.config.id;
        tokio::task::spawn_blocking(move || {
            store.search_offset_by_time(id, queue_id, bounds, ts, upper)
        })
        .await
        .map_err(|e| BrokerError::Storage(e.to_string()))?
        .map_err(Into::into)
    }

    /// Store time of the message at `offset`, if it exists.
    pub async fn store_time_at(
        &self,
        topic: &str,
        queue_id: u32,
        offset: u64,
    ) -> BrokerResult<Option<i64>> {
        let t = self
            .topic(topic)
            .ok_or_else(|| BrokerError::TopicNotExist(topic.to_string()))?;
        let (store, id) = (self.store.clone(), t.config.id);
        let cq = tokio::task::spawn_blocking(move || store.cq_entry(id, queue_id, offset))
            .await
            .map_err(|e| BrokerError::Storage(e.to_string()))??;
        Ok(cq.map(|c| c.store_time))
    }

    /// Store time of the oldest message of a queue, or 0 when it is empty.
    pub async fn earliest_store_time(&self, topic: &str, queue_id: u32) -> BrokerResult<i64> {
        let t = self
            .topic(topic)
            .ok_or_else(|| BrokerError::TopicNotExist(topic.to_string()))?;
        let stats = self.queue_stats(topic, queue_id)?;
        if stats.max() <= stats.min() {
            return Ok(0);
        }
        let (store, id, min) = (self.store.clone(), t.config.id, stats.min());
        let cq = tokio::task::spawn_blocking(move || store.cq_entry(id, queue_id, min))
            .await
            .map_err(|e| BrokerError::Storage(e.to_string()))??;
        Ok(cq.map(|c| c.store_time).unwrap_or(0))
    }
}
