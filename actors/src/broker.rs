//! Broker — the supervisor and the one writer of metadata.
//!
//! State it owns: topic and group configuration, the next topic id, the worker arbiters, and the
//! registry snapshot (`Registry`) that everyone else reads without a message: topic → its queue
//! actors, group → its actor and subscription view.
//!
//! Messages: `CreateTopic`, `DeleteTopic`, `EnsureGroup`, `UpsertGroup`, `DeleteGroup`,
//! `RegisterAll` (timer: refresh the name-server registration).
//!
//! Durability: a metadata change is made durable first and published after (a change that
//! failed to persist is never seen). Changes are atomic responses: the actor takes its next
//! message only once the current change is published, so concurrent requests never create a
//! topic twice.
//!
//! Write availability: while the store refuses writes, the name server is told every topic is
//! read-only (write permission withdrawn), so clients send elsewhere; it is restored when
//! writes succeed again.

use crate::consumer_group::{ConsumerGroup, GroupView, SetConfig};
use crate::error::BrokerError;
use crate::model::{GroupConfig, TopicConfig, PERM_READ, PERM_WRITE};
use crate::routes::{RegisterBroker, RemoveTopicRoute, Routes, TopicRoute, UpsertTopicRoute};
use crate::topic_queue::{QueueLimits, QueueStats, StopQueue, TopicQueue};
use actix::prelude::*;
use arc_swap::ArcSwap;
use rocktor_storage::keys::{self, MetaKind};
use rocktor_storage::{cf, AppendBatch, QueueBounds, Store, Writer};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Settings the domain needs; the binary builds them from its config.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub cluster_name: String,
    pub broker_name: String,
    pub broker_id: u64,
    /// The address clients reach this broker at; it is written into every stored record and
    /// so into every offset message id.
    pub broker_addr: SocketAddr,
    pub auto_create_topic: bool,
    pub auto_create_group: bool,
    pub default_topic_queues: u32,
    pub max_message_size: usize,
    pub queue_limits: QueueLimits,
    pub long_polling: bool,
    /// SQL92 filters (Apache's `enablePropertyFilter`, off there by default, on here).
    pub enable_property_filter: bool,
    pub workers: usize,
    /// The longest a scheduled message may wait (ms); later delivery times are refused.
    pub max_delay_ms: i64,
    /// Long-poll pulls held at once, broker-wide and per client connection.
    pub max_parked_pulls: usize,
    pub max_parked_pulls_per_connection: usize,
    /// Metric label sets (topic, group, RPC codes) at most; past it they count under `_other`.
    pub metrics_max_series: usize,
    /// Whether the flows count metrics at all (the off switch the overhead is measured by).
    pub metrics_enabled: bool,
    /// Consumer clients one group admits.
    pub max_group_members: usize,
    /// Dead letters one re-send request may move.
    pub max_dlq_resend: usize,
    /// Transaction check-back timing.
    pub txn: crate::txn::TxnSettings,
    /// How long an orderly queue lock lives without renewal.
    pub lock_expiry: std::time::Duration,
    /// Messages one query by key answers at most (the newest).
    pub max_query_messages: usize,
    /// How long messages are kept, and the disk watermarks.
    pub retention: crate::retention::RetentionSettings,
    /// The region sends answer with and store (MSG_REGION), and whether clients should trace
    /// (TRACE_ON): Apache's regionId and traceOn.
    pub region_id: String,
    pub trace_on: bool,
    /// ACL 1.0 accounts; None: access control is off.
    pub acl: Option<crate::auth::AclSource>,
    /// A group counts as consumed over HTTP this long after its last HTTP consume; TCP
    /// consumers of it are refused meanwhile.
    pub http_consumer_window: std::time::Duration,
    pub alarms: crate::alarms::AlarmSettings,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 0,
            broker_addr: SocketAddr::from(([127, 0, 0, 1], 10911)),
            auto_create_topic: true,
            auto_create_group: true,
            default_topic_queues: 8,
            max_message_size: 4 << 20,
            queue_limits: QueueLimits::default(),
            long_polling: true,
            enable_property_filter: true,
            workers: 2,
            max_delay_ms: 365 * 86_400_000,
            max_parked_pulls: 131_072,
            max_parked_pulls_per_connection: 4096,
            metrics_max_series: 100_000,
            metrics_enabled: true,
            max_group_members: 10_000,
            max_dlq_resend: 1000,
            txn: Default::default(),
            lock_expiry: crate::consumer_group::LOCK_EXPIRY,
            max_query_messages: 64,
            retention: Default::default(),
            region_id: "DefaultRegion".into(),
            trace_on: true,
            acl: None,
            http_consumer_window: std::time::Duration::from_secs(120),
            alarms: Default::default(),
        }
    }
}

pub struct TopicHandle {
    pub config: TopicConfig,
    pub queues: Vec<Addr<TopicQueue>>,
    pub stats: Vec<Arc<QueueStats>>,
}

pub struct GroupHandle {
    pub config: GroupConfig,
    pub addr: Addr<ConsumerGroup>,
    pub view: Arc<ArcSwap<GroupView>>,
}

/// The immutable snapshot of what exists; replaced whole on every metadata change.
#[derive(Default, Clone)]
pub struct Registry {
    pub topics: HashMap<String, Arc<TopicHandle>>,
    pub groups: HashMap<String, Arc<GroupHandle>>,
}

/// What start-up recovered, handed to the actor once.
pub(crate) struct Recovery {
    pub topics: Vec<TopicConfig>,
    pub groups: Vec<GroupConfig>,
    pub bounds: HashMap<(u32, u32), QueueBounds>,
    pub offsets: HashMap<String, HashMap<(String, u32), i64>>,
    pub next_topic_id: u32,
    /// Runtime ACL changes (applied over the ACL file).
    pub acl_overlay: crate::auth::Overlay,
    /// The stored request modes by (group, topic).
    pub request_modes: Vec<((String, String), crate::service::RequestModeSetting)>,
}

pub struct BrokerActor {
    settings: Arc<BrokerSettings>,
    store: Store,
    writer: Writer,
    registry: Arc<ArcSwap<Registry>>,
    routes: Addr<Routes>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    next_topic_id: u32,
    bounds: HashMap<(u32, u32), QueueBounds>,
    offsets: HashMap<String, HashMap<(String, u32), i64>>,
    /// What the name server was last told about write availability.
    advertised_writable: bool,
}

fn topic_route(c: &TopicConfig, writable: bool) -> TopicRoute {
    TopicRoute {
        topic: c.name.clone(),
        read_queues: c.read_queues,
        write_queues: c.write_queues,
        perm: if writable {
            c.perm
        } else {
            c.perm & !crate::model::PERM_WRITE
        },
        topic_sys_flag: c.topic_sys_flag,
        order: c.order,
    }
}

fn encode_meta<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, BrokerError> {
    rmp_serde::to_vec_named(v).map_err(|e| BrokerError::Storage(format!("metadata encoding: {e}")))
}

impl BrokerActor {
    pub(crate) fn new(
        settings: Arc<BrokerSettings>,
        store: Store,
        writer: Writer,
        registry: Arc<ArcSwap<Registry>>,
        routes: Addr<Routes>,
        arbiters: Vec<ArbiterHandle>,
        recovery: Recovery,
    ) -> Self {
        let mut me = BrokerActor {
            settings,
            store,
            writer,
            registry,
            routes,
            arbiters,
            next_arbiter: 0,
            next_topic_id: recovery.next_topic_id,
            bounds: recovery.bounds,
            offsets: recovery.offsets,
            advertised_writable: true,
        };
        let mut reg = Registry::default();
        for t in recovery.topics {
            let h = me.start_topic(t, None);
            reg.topics.insert(h.config.name.clone(), h);
        }
        // Groups are those with a stored config: the offsets of a deleted group stay (Apache
        // keeps them unless asked to clean) and come back with the group, not before it.
        let groups: BTreeMap<String, GroupConfig> = recovery
            .groups
            .into_iter()
            .map(|g| (g.name.clone(), g))
            .collect();
        for (_, g) in groups {
            let h = me.start_group(g);
            reg.groups.insert(h.config.name.clone(), h);
        }
        me.registry.store(Arc::new(reg));
        me
    }

    fn arbiter(&mut self) -> ArbiterHandle {
        let a = self.arbiters[self.next_arbiter % self.arbiters.len()].clone();
        self.next_arbiter += 1;
        a
    }

    /// Starts queue actors for `config`, reusing those of `previous` where they exist.
    fn start_topic(
        &mut self,
        config: TopicConfig,
        previous: Option<&TopicHandle>,
    ) -> Arc<TopicHandle> {
        let name: Arc<str> = Arc::from(config.name.as_str());
        let mut queues = Vec::new();
        let mut stats = Vec::new();
        for qid in 0..config.queue_count() {
            if let Some(prev) = previous.filter(|p| p.config.id == config.id) {
                if let (Some(q), Some(s)) =
                    (prev.queues.get(qid as usize), prev.stats.get(qid as usize))
                {
                    queues.push(q.clone());
                    stats.push(s.clone());
                    continue;
                }
            }
            // Recovered at start-up, or read by the queue itself (a queue added later).
            let bounds = self.bounds.remove(&(config.id, qid));
            let st = Arc::new(QueueStats::default());
            let (store, writer, limits, topic, tid) = (
                self.store.clone(),
                self.writer.clone(),
                self.settings.queue_limits,
                name.clone(),
                config.id,
            );
            let st2 = st.clone();
            let addr = TopicQueue::start_in_arbiter(&self.arbiter(), move |_| {
                TopicQueue::new(topic, tid, qid, bounds, store, writer, st2, limits)
            });
            queues.push(addr);
            stats.push(st);
        }
        Arc::new(TopicHandle {
            config,
            queues,
            stats,
        })
    }

    fn start_group(&mut self, config: GroupConfig) -> Arc<GroupHandle> {
        let view = Arc::new(ArcSwap::from_pointee(GroupView::default()));
        let offsets = self.offsets.remove(&config.name).unwrap_or_default();
        let (writer, v2, c2) = (self.writer.clone(), view.clone(), config.clone());
        let max_members = self.settings.max_group_members;
        let lock_expiry = self.settings.lock_expiry;
        let addr = ConsumerGroup::start_in_arbiter(&self.arbiter(), move |_| {
            ConsumerGroup::new(c2, offsets, writer, v2)
                .with_max_members(max_members)
                .with_lock_expiry(lock_expiry)
        });
        Arc::new(GroupHandle { config, addr, view })
    }

    fn publish(&self, f: impl FnOnce(&mut Registry)) {
        let mut reg = Registry::clone(&self.registry.load());
        f(&mut reg);
        self.registry.store(Arc::new(reg));
    }

    fn persist(
        &self,
        batch: AppendBatch,
    ) -> impl std::future::Future<Output = Result<(), BrokerError>> {
        let rx = self.writer.submit(batch);
        async move { crate::error::written(rx.await).map(|_| ()) }
    }

    fn register_all(&self) {
        let reg = self.registry.load();
        let writable = self.writer.is_healthy();
        let topics = reg
            .topics
            .values()
            .map(|t| topic_route(&t.config, writable))
            .collect();
        self.routes.do_send(RegisterBroker {
            cluster: self.settings.cluster_name.clone(),
            broker_name: self.settings.broker_name.clone(),
            broker_id: self.settings.broker_id,
            addr: self.settings.broker_addr.to_string(),
            topics,
        });
    }
}

impl Actor for BrokerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.register_all();
        ctx.run_interval(Duration::from_secs(30), |act, _| act.register_all());
        ctx.run_interval(Duration::from_secs(1), |act, _| {
            let writable = act.writer.is_healthy();
            if writable != act.advertised_writable {
                act.advertised_writable = writable;
                if writable {
                    tracing::warn!("the store takes writes again: write permission restored");
                } else {
                    tracing::error!(
                        "the store refuses writes: write permission withdrawn at the name server"
                    );
                }
                act.register_all();
            }
        });
    }
}

/// What to create; `id` is assigned by the broker.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub read_queues: u32,
    pub write_queues: u32,
    pub perm: i32,
    pub topic_sys_flag: i32,
    pub order: bool,
    pub attributes: BTreeMap<String, String>,
}

impl TopicSpec {
    /// A readable, writable topic of one queue (dead-letter and system topics).
    pub fn single_queue(name: impl Into<String>) -> Self {
        TopicSpec {
            name: name.into(),
            read_queues: 1,
            write_queues: 1,
            perm: PERM_READ | PERM_WRITE,
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
        }
    }

    /// The stored configuration of a topic made from this spec under `id`.
    pub fn into_config(self, id: u32) -> TopicConfig {
        TopicConfig {
            name: self.name,
            id,
            read_queues: self.read_queues,
            write_queues: self.write_queues,
            perm: self.perm,
            topic_sys_flag: self.topic_sys_flag,
            order: self.order,
            attributes: self.attributes,
        }
    }
}

/// Creates a topic or updates its queue counts and permissions.
pub struct CreateTopic {
    pub spec: TopicSpec,
    /// Auto-create: an existing topic wins and is returned unchanged.
    pub only_if_absent: bool,
    /// Where each queue's offsets begin, by queue id, when the topic is new (an import from
    /// another broker continues its offsets); ignored for a topic that exists.
    pub start_offsets: Vec<u64>,
}

impl Message for CreateTopic {
    type Result = Result<Arc<TopicHandle>, BrokerError>;
}

/// An answer the broker actor gives before it takes its next message.
type Atomic<T> = AtomicResponse<BrokerActor, Result<T, BrokerError>>;

fn atomic_ready<T: 'static>(r: Result<T, BrokerError>) -> Atomic<T> {
    AtomicResponse::new(Box::pin(fut::ready(r)))
}

impl Handler<CreateTopic> for BrokerActor {
    type Result = Atomic<Arc<TopicHandle>>;

    fn handle(&mut self, msg: CreateTopic, _: &mut Self::Context) -> Self::Result {
        let existing = self.registry.load().topics.get(&msg.spec.name).cloned();
        if let Some(h) = &existing {
            let same = h.config.read_queues == msg.spec.read_queues
                && h.config.write_queues == msg.spec.write_queues
                && h.config.perm == msg.spec.perm
                && h.config.order == msg.spec.order
                && h.config.topic_sys_flag == msg.spec.topic_sys_flag
                && h.config.attributes == msg.spec.attributes;
            if msg.only_if_absent || same {
                return atomic_ready(Ok(h.clone()));
            }
        }
        let mut batch = AppendBatch::default();
        let id = match &existing {
            Some(h) => h.config.id,
            None => {
                let id = self.next_topic_id;
                self.next_topic_id += 1;
                batch.puts.push((
                    cf::META,
                    keys::meta_key(MetaKind::Counter, "topic_id"),
                    self.next_topic_id.to_be_bytes().to_vec(),
                ));
                for (q, base) in msg.start_offsets.iter().enumerate() {
                    if *base > 0 {
                        batch.puts.push((
                            cf::META,
                            keys::queue_base_key(id, q as u32).to_vec(),
                            base.to_be_bytes().to_vec(),
                        ));
                    }
                }
                id
            }
        };
        let config = msg.spec.into_config(id);
        let encoded = match encode_meta(&config) {
            Ok(v) => v,
            Err(e) => return atomic_ready(Err(e)),
        };
        batch.puts.push((
            cf::META,
            keys::meta_key(MetaKind::Topic, &config.name),
            encoded,
        ));
        let persisted = self.persist(batch);
        AtomicResponse::new(Box::pin(persisted.into_actor(self).map(
            move |res, act, _| {
                res?;
                let handle = act.start_topic(config, existing.as_deref());
                let h2 = handle.clone();
                act.publish(|r| {
                    r.topics.insert(h2.config.name.clone(), h2);
                });
                act.routes.do_send(UpsertTopicRoute {
                    broker_name: act.settings.broker_name.clone(),
                    route: topic_route(&handle.config, act.writer.is_healthy()),
                });
                tracing::info!(topic = %handle.config.name, read = handle.config.read_queues, write = handle.config.write_queues, "topic created or updated");
                Ok(handle)
            },
        )))
    }
}

pub struct DeleteTopic {
    pub name: String,
}

impl Message for DeleteTopic {
    type Result = Result<(), BrokerError>;
}

impl Handler<DeleteTopic> for BrokerActor {
    type Result = Atomic<()>;

    fn handle(&mut self, msg: DeleteTopic, _: &mut Self::Context) -> Self::Result {
        let Some(h) = self.registry.load().topics.get(&msg.name).cloned() else {
            return atomic_ready(Ok(()));
        };
        let mut batch = AppendBatch::default();
        batch
            .deletes
            .push((cf::META, keys::meta_key(MetaKind::Topic, &msg.name)));
        // The consume queues go with the topic; records are reclaimed by retention.
        let id = h.config.id;
        batch.delete_ranges.push((
            cf::CQ,
            keys::cq_key(id, 0, 0).to_vec(),
            keys::cq_key(id.saturating_add(1), 0, 0).to_vec(),
        ));
        batch.delete_ranges.push((
            cf::META,
            keys::queue_base_key(id, 0).to_vec(),
            keys::queue_base_key(id.saturating_add(1), 0).to_vec(),
        ));
        let persisted = self.persist(batch);
        AtomicResponse::new(Box::pin(persisted.into_actor(self).map(
            move |res, act, _| {
                res?;
                for q in &h.queues {
                    q.do_send(StopQueue);
                }
                act.publish(|r| {
                    r.topics.remove(&msg.name);
                });
                act.routes.do_send(RemoveTopicRoute {
                    broker_name: Some(act.settings.broker_name.clone()),
                    topic: msg.name.clone(),
                });
                tracing::info!(topic = %msg.name, "topic deleted");
                Ok(())
            },
        )))
    }
}

/// Finds a group, creating it with defaults when auto-create allows.
pub struct EnsureGroup {
    pub name: String,
}

impl Message for EnsureGroup {
    type Result = Result<Arc<GroupHandle>, BrokerError>;
}

impl Handler<EnsureGroup> for BrokerActor {
    type Result = Atomic<Arc<GroupHandle>>;

    fn handle(&mut self, msg: EnsureGroup, ctx: &mut Self::Context) -> Self::Result {
        if let Some(h) = self.registry.load().groups.get(&msg.name).cloned() {
            return atomic_ready(Ok(h));
        }
        if !self.settings.auto_create_group {
            return atomic_ready(Err(BrokerError::GroupNotExist(msg.name)));
        }
        <Self as Handler<UpsertGroup>>::handle(
            self,
            UpsertGroup {
                config: GroupConfig::new(&msg.name),
            },
            ctx,
        )
    }
}

pub struct UpsertGroup {
    pub config: GroupConfig,
}

impl Message for UpsertGroup {
    type Result = Result<Arc<GroupHandle>, BrokerError>;
}

impl Handler<UpsertGroup> for BrokerActor {
    type Result = Atomic<Arc<GroupHandle>>;

    fn handle(&mut self, msg: UpsertGroup, _: &mut Self::Context) -> Self::Result {
        let encoded = match encode_meta(&msg.config) {
            Ok(v) => v,
            Err(e) => return atomic_ready(Err(e)),
        };
        let batch = AppendBatch::default().put(
            cf::META,
            keys::meta_key(MetaKind::Group, &msg.config.name),
            encoded,
        );
        let persisted = self.persist(batch);
        AtomicResponse::new(Box::pin(persisted.into_actor(self).map(
            move |res, act, _| {
                res?;
                let existing = act.registry.load().groups.get(&msg.config.name).cloned();
                let handle = match existing {
                    Some(h) => {
                        h.addr.do_send(SetConfig(msg.config.clone()));
                        Arc::new(GroupHandle {
                            config: msg.config.clone(),
                            addr: h.addr.clone(),
                            view: h.view.clone(),
                        })
                    }
                    None => act.start_group(msg.config.clone()),
                };
                let h2 = handle.clone();
                act.publish(|r| {
                    r.groups.insert(h2.config.name.clone(), h2);
                });
                Ok(handle)
            },
        )))
    }
}

pub struct DeleteGroup {
    pub name: String,
    pub clean_offsets: bool,
}

impl Message for DeleteGroup {
    type Result = Result<(), BrokerError>;
}

impl Handler<DeleteGroup> for BrokerActor {
    type Result = Atomic<()>;

    fn handle(&mut self, msg: DeleteGroup, _: &mut Self::Context) -> Self::Result {
        let Some(h) = self.registry.load().groups.get(&msg.name).cloned() else {
            return atomic_ready(Ok(()));
        };
        let mut batch = AppendBatch::default();
        batch
            .deletes
            .push((cf::META, keys::meta_key(MetaKind::Group, &msg.name)));
        if msg.clean_offsets {
            let mut from = msg.name.as_bytes().to_vec();
            from.push(0);
            let mut to = msg.name.as_bytes().to_vec();
            to.push(1);
            batch.delete_ranges.push((cf::OFFSETS, from, to));
        }
        let persisted = self.persist(batch);
        AtomicResponse::new(Box::pin(persisted.into_actor(self).map(
            move |res, act, _| {
                res?;
                h.addr.do_send(crate::consumer_group::Stop);
                act.publish(|r| {
                    r.groups.remove(&msg.name);
                });
                Ok(())
            },
        )))
    }
}
