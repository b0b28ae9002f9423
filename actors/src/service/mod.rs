//! The domain flows front ends call, one file per flow (recovery, send, retry, pull,
//! membership, offsets, dlq): one method per request family. They read the registry
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
    Stamp, PROP_DELAY, PROP_DLQ_ORIGIN_MESSAGE_ID, PROP_DLQ_ORIGIN_TOPIC, PROP_ORIGIN_MESSAGE_ID,
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

pub mod acl;
mod assignment;
mod dlq;
mod membership;
mod offsets;
mod pop;
mod pull;
mod query;
mod recovery;
mod retry;
mod send;
mod trace;
mod txn;

pub use assignment::{Assignment, RequestMode, RequestModeSetting, Strategy};
pub use dlq::DeadLetter;
pub use membership::HeartbeatRequest;
pub use membership::MAX_LOCK_QUEUES;
pub use offsets::ResetTarget;
pub use pop::{ConsumerProtocol, ReceiveRequest};
use pull::FilterCache;
pub use pull::{PullRequest, MAX_PULL_BYTES, OVER_CAP_HOLD};
pub use query::{DeliveryStatus, GroupDelivery, MessageQuery};
use recovery::recover;
pub use retry::SendBackRequest;
pub use send::{SendRequest, SendResult, PROP_CANCEL_SCHEDULED_MSG};
pub use trace::{ConsumeTrace, GroupTrace, HeldMessage, MessageTrace, StoredMessage};

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
    pub txn: Addr<crate::txn::TxnChecker>,
    pub retention: Addr<crate::retention::Retention>,
    /// Whether the disk takes new messages (the watermarks), read by every send.
    pub disk: Arc<crate::retention::DiskGuard>,
    /// Access control (ACL 1.0 accounts), shared by the front ends.
    pub auth: Arc<crate::auth::Authenticator>,
    pub store: Store,
    pub writer: Writer,
    arbiters: Arc<Vec<Arbiter>>,
    round_robin: Arc<AtomicU64>,
    /// Long-poll pulls held right now, broker-wide.
    parked_pulls: Arc<AtomicUsize>,
    /// Filters of pulls that carry their own subscription, compiled once per expression.
    pull_filters: Arc<Mutex<FilterCache>>,
    /// The pop actors by (group, topic), and the groups served over HTTP.
    pops: Arc<Mutex<pop::PopRegistry>>,
    /// Signs and checks receipt handles.
    pub handle_key: Arc<crate::pop::HandleKey>,
    /// RocketMQ 5's metrics, counted by the flows of every front end.
    pub metrics: Arc<crate::metrics::BrokerMetrics>,
    /// The alarm rules and their state.
    pub alarms: Addr<crate::alarms::Alarms>,
}

impl BrokerContext {
    /// Recovers the store and starts the actors. Call inside a running actix System.
    pub async fn start(settings: BrokerSettings, store: Store) -> BrokerResult<BrokerContext> {
        let started = std::time::Instant::now();
        let settings_acl = settings.acl.clone();
        let s2 = store.clone();
        let (mut recovery, next_seq, kv) = tokio::task::spawn_blocking(move || recover(&s2))
            .await
            .map_err(|e| BrokerError::Storage(format!("recovery task failed: {e}")))??;
        let topic_count = recovery.topics.len();
        let acl_overlay = std::mem::take(&mut recovery.acl_overlay);
        let request_modes = std::mem::take(&mut recovery.request_modes);
        let writer = store.start_writer(next_seq)?;
        let s3 = store.clone();
        let handle_key = tokio::task::spawn_blocking(move || pop::load_handle_key(&s3))
            .await
            .map_err(|e| BrokerError::Storage(format!("handle key task failed: {e}")))??;
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
        let producers = Producers::default().start();
        let txn = crate::txn::TxnChecker::new(crate::txn::TxnCheckerParts {
            store: store.clone(),
            writer: writer.clone(),
            registry: registry.clone(),
            broker: broker.clone(),
            producers: producers.clone(),
            settings: settings.txn,
            store_host: settings.broker_addr,
            broker_name: settings.broker_name.clone(),
        })
        .start();
        let disk = Arc::new(crate::retention::DiskGuard::default());
        let retention = crate::retention::Retention::new(crate::retention::RetentionParts {
            store: store.clone(),
            writer: writer.clone(),
            registry: registry.clone(),
            scheduler: scheduler.clone(),
            settings: settings.retention.clone(),
            guard: disk.clone(),
        })
        .start();
        let (metrics_max_series, metrics_enabled) =
            (settings.metrics_max_series, settings.metrics_enabled);
        let s4 = store.clone();
        let alarm_rules =
            tokio::task::spawn_blocking(move || crate::alarms::Alarms::stored_rules(&s4))
                .await
                .unwrap_or(None);
        // The alarm actor reads the broker through a context that holds its own address.
        let alarms_context = Context::<crate::alarms::Alarms>::new();
        let ctx = BrokerContext {
            settings,
            registry,
            broker,
            routes,
            scheduler,
            producers,
            txn,
            retention,
            disk,
            auth: Arc::new(crate::auth::Authenticator::new(settings_acl, acl_overlay)),
            store,
            writer,
            arbiters: Arc::new(arbiters),
            round_robin: Arc::new(AtomicU64::new(0)),
            parked_pulls: Arc::new(AtomicUsize::new(0)),
            pull_filters: Arc::new(Mutex::new(HashMap::new())),
            pops: Arc::new(Mutex::new(pop::PopRegistry::with_request_modes(
                request_modes,
            ))),
            handle_key: Arc::new(handle_key),
            metrics: Arc::new(crate::metrics::BrokerMetrics::new(
                metrics_max_series,
                metrics_enabled,
            )),
            alarms: alarms_context.address(),
        };
        alarms_context.run(crate::alarms::Alarms::new(
            ctx.clone(),
            ctx.settings.alarms.clone(),
            alarm_rules,
        ));
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

    /// The topic, or TOPIC_NOT_EXIST.
    pub fn existing_topic(&self, name: &str) -> BrokerResult<Arc<TopicHandle>> {
        self.topic(name)
            .ok_or_else(|| BrokerError::TopicNotExist(name.to_string()))
    }

    pub fn group(&self, name: &str) -> Option<Arc<GroupHandle>> {
        self.registry.load().groups.get(name).cloned()
    }

    pub fn queue_stats(&self, topic: &str, queue_id: u32) -> BrokerResult<Arc<QueueStats>> {
        let t = self.existing_topic(topic)?;
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

    pub(super) async fn auto_create(&self, mut spec: TopicSpec) -> BrokerResult<Arc<TopicHandle>> {
        model::validate_topic(&spec.name).map_err(BrokerError::InvalidParameter)?;
        spec.read_queues = spec.read_queues.clamp(1, model::MAX_QUEUES);
        spec.write_queues = spec.write_queues.clamp(1, model::MAX_QUEUES);
        self.broker
            .send(CreateTopic {
                spec,
                only_if_absent: true,
                start_offsets: Vec::new(),
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
        self.auto_create(TopicSpec::single_queue(name)).await
    }
}
