//! Routes — the name server's tables: brokers, the queues each broker serves per topic, and the
//! KV config. Embedded in standalone mode; a separate `rocktor namesrv` runs it alone.
//!
//! Messages: `RegisterBroker` (full topic table, also the periodic refresh), `UpsertTopicRoute`,
//! `RemoveTopicRoute`, `UnregisterBroker`, `GetRoute`, `GetClusterInfo`, `ListTopics`, KV ops.
//!
//! Durability: routes are soft state rebuilt from broker registrations; KV config entries are
//! written through the storage writer when the name server runs with a store.

use actix::prelude::*;
use rocktor_storage::{cf, keys, AppendBatch, Writer};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueData {
    pub broker_name: String,
    pub read_queues: u32,
    pub write_queues: u32,
    pub perm: i32,
    pub topic_sys_flag: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerData {
    pub cluster: String,
    pub broker_name: String,
    pub addrs: BTreeMap<u64, String>,
}

#[derive(Debug, Clone, Default)]
pub struct RouteData {
    pub queue_datas: Vec<QueueData>,
    pub broker_datas: Vec<BrokerData>,
    pub order_topic_conf: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TopicRoute {
    pub topic: String,
    pub read_queues: u32,
    pub write_queues: u32,
    pub perm: i32,
    pub topic_sys_flag: i32,
    pub order: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ClusterInfo {
    pub brokers: Vec<BrokerData>,
    pub clusters: BTreeMap<String, Vec<String>>,
}

struct BrokerEntry {
    data: BrokerData,
    last_update: Instant,
}

/// A broker that has not re-registered for this long is dropped (Apache's 120 s).
pub const BROKER_EXPIRY: Duration = Duration::from_secs(120);

pub struct Routes {
    brokers: HashMap<String, BrokerEntry>,
    topics: BTreeMap<String, BTreeMap<String, (QueueData, bool)>>,
    kv: BTreeMap<String, BTreeMap<String, String>>,
    writer: Option<Writer>,
}

impl Routes {
    pub fn new(kv: BTreeMap<String, BTreeMap<String, String>>, writer: Option<Writer>) -> Self {
        Routes {
            brokers: HashMap::new(),
            topics: BTreeMap::new(),
            kv,
            writer,
        }
    }

    fn remove_broker(&mut self, name: &str) {
        self.brokers.remove(name);
        for qs in self.topics.values_mut() {
            qs.remove(name);
        }
        self.topics.retain(|_, qs| !qs.is_empty());
    }
}

impl Actor for Routes {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_secs(5), |act, _| {
            let now = Instant::now();
            let expired: Vec<String> = act
                .brokers
                .iter()
                .filter(|(_, b)| now.duration_since(b.last_update) > BROKER_EXPIRY)
                .map(|(n, _)| n.clone())
                .collect();
            for name in expired {
                tracing::warn!(broker = %name, "broker expired from the name server");
                act.remove_broker(&name);
            }
        });
    }
}

pub struct RegisterBroker {
    pub cluster: String,
    pub broker_name: String,
    pub broker_id: u64,
    pub addr: String,
    pub topics: Vec<TopicRoute>,
}

impl Message for RegisterBroker {
    type Result = ();
}

impl Handler<RegisterBroker> for Routes {
    type Result = ();

    fn handle(&mut self, msg: RegisterBroker, _: &mut Self::Context) {
        let entry = self
            .brokers
            .entry(msg.broker_name.clone())
            .or_insert_with(|| BrokerEntry {
                data: BrokerData {
                    cluster: msg.cluster.clone(),
                    broker_name: msg.broker_name.clone(),
                    addrs: BTreeMap::new(),
                },
                last_update: Instant::now(),
            });
        entry.data.cluster = msg.cluster;
        entry.data.addrs.insert(msg.broker_id, msg.addr);
        entry.last_update = Instant::now();
        if msg.broker_id == 0 {
            // The master's table is authoritative: drop topics it no longer serves.
            let served: std::collections::HashSet<&str> =
                msg.topics.iter().map(|t| t.topic.as_str()).collect();
            for (topic, qs) in self.topics.iter_mut() {
                if !served.contains(topic.as_str()) {
                    qs.remove(&msg.broker_name);
                }
            }
            self.topics.retain(|_, qs| !qs.is_empty());
            for t in msg.topics {
                self.topics.entry(t.topic.clone()).or_default().insert(
                    msg.broker_name.clone(),
                    (
                        QueueData {
                            broker_name: msg.broker_name.clone(),
                            read_queues: t.read_queues,
                            write_queues: t.write_queues,
                            perm: t.perm,
                            topic_sys_flag: t.topic_sys_flag,
                        },
                        t.order,
                    ),
                );
            }
        }
    }
}

pub struct UpsertTopicRoute {
    pub broker_name: String,
    pub route: TopicRoute,
}

impl Message for UpsertTopicRoute {
    type Result = ();
}

impl Handler<UpsertTopicRoute> for Routes {
    type Result = ();

    fn handle(&mut self, msg: UpsertTopicRoute, _: &mut Self::Context) {
        let t = msg.route;
        self.topics.entry(t.topic.clone()).or_default().insert(
            msg.broker_name.clone(),
            (
                QueueData {
                    broker_name: msg.broker_name,
                    read_queues: t.read_queues,
                    write_queues: t.write_queues,
                    perm: t.perm,
                    topic_sys_flag: t.topic_sys_flag,
                },
                t.order,
            ),
        );
    }
}

/// Removes a topic from one broker, or from all when `broker_name` is None.
pub struct RemoveTopicRoute {
    pub broker_name: Option<String>,
    pub topic: String,
}

impl Message for RemoveTopicRoute {
    type Result = ();
}

impl Handler<RemoveTopicRoute> for Routes {
    type Result = ();

    fn handle(&mut self, msg: RemoveTopicRoute, _: &mut Self::Context) {
        match msg.broker_name {
            Some(b) => {
                if let Some(qs) = self.topics.get_mut(&msg.topic) {
                    qs.remove(&b);
                    if qs.is_empty() {
                        self.topics.remove(&msg.topic);
                    }
                }
            }
            None => {
                self.topics.remove(&msg.topic);
            }
        }
    }
}

pub struct GetRoute {
    pub topic: String,
}

impl Message for GetRoute {
    type Result = Option<RouteData>;
}

impl Handler<GetRoute> for Routes {
    type Result = Option<RouteData>;

    fn handle(&mut self, msg: GetRoute, _: &mut Self::Context) -> Option<RouteData> {
        let qs = self.topics.get(&msg.topic)?;
        let mut route = RouteData::default();
        let mut order = Vec::new();
        for (broker, (q, is_order)) in qs {
            let Some(b) = self.brokers.get(broker) else {
                continue;
            };
            route.queue_datas.push(q.clone());
            route.broker_datas.push(b.data.clone());
            if *is_order {
                order.push(format!("{}:{}", broker, q.write_queues));
            }
        }
        if route.queue_datas.is_empty() {
            return None;
        }
        if !order.is_empty() {
            route.order_topic_conf = Some(order.join(";"));
        }
        Some(route)
    }
}

pub struct GetClusterInfo;

impl Message for GetClusterInfo {
    type Result = ClusterInfo;
}

impl Handler<GetClusterInfo> for Routes {
    type Result = MessageResult<GetClusterInfo>;

    fn handle(&mut self, _: GetClusterInfo, _: &mut Self::Context) -> Self::Result {
        let mut info = ClusterInfo::default();
        let mut brokers: Vec<_> = self.brokers.values().map(|b| b.data.clone()).collect();
        brokers.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        for b in &brokers {
            info.clusters
                .entry(b.cluster.clone())
                .or_default()
                .push(b.broker_name.clone());
        }
        info.brokers = brokers;
        MessageResult(info)
    }
}

/// Topic names, optionally of one cluster.
pub struct ListTopics {
    pub cluster: Option<String>,
}

impl Message for ListTopics {
    type Result = Vec<String>;
}

impl Handler<ListTopics> for Routes {
    type Result = Vec<String>;

    fn handle(&mut self, msg: ListTopics, _: &mut Self::Context) -> Vec<String> {
        self.topics
            .iter()
            .filter(|(_, qs)| match &msg.cluster {
                None => true,
                Some(c) => qs
                    .keys()
                    .any(|b| self.brokers.get(b).is_some_and(|e| &e.data.cluster == c)),
            })
            .map(|(t, _)| t.clone())
            .collect()
    }
}

pub enum KvOp {
    Put {
        namespace: String,
        key: String,
        value: String,
    },
    Get {
        namespace: String,
        key: String,
    },
    Delete {
        namespace: String,
        key: String,
    },
    List {
        namespace: String,
    },
}

pub enum KvReply {
    Done,
    Value(Option<String>),
    Table(Option<BTreeMap<String, String>>),
}

impl Message for KvOp {
    type Result = KvReply;
}

pub fn kv_meta_name(namespace: &str, key: &str) -> String {
    format!("{namespace}\u{0}{key}")
}

impl Handler<KvOp> for Routes {
    type Result = MessageResult<KvOp>;

    fn handle(&mut self, msg: KvOp, _: &mut Self::Context) -> Self::Result {
        MessageResult(match msg {
            KvOp::Put {
                namespace,
                key,
                value,
            } => {
                if let Some(w) = &self.writer {
                    let k =
                        keys::meta_key(keys::MetaKind::KvConfig, &kv_meta_name(&namespace, &key));
                    drop(w.submit(AppendBatch::default().put(
                        cf::META,
                        k,
                        value.clone().into_bytes(),
                    )));
                }
                self.kv.entry(namespace).or_default().insert(key, value);
                KvReply::Done
            }
            KvOp::Get { namespace, key } => {
                KvReply::Value(self.kv.get(&namespace).and_then(|t| t.get(&key)).cloned())
            }
            KvOp::Delete { namespace, key } => {
                if let Some(w) = &self.writer {
                    let mut b = AppendBatch::default();
                    b.deletes.push((
                        cf::META,
                        keys::meta_key(keys::MetaKind::KvConfig, &kv_meta_name(&namespace, &key)),
                    ));
                    drop(w.submit(b));
                }
                if let Some(t) = self.kv.get_mut(&namespace) {
                    t.remove(&key);
                }
                KvReply::Done
            }
            KvOp::List { namespace } => KvReply::Table(self.kv.get(&namespace).cloned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(topic: &str, q: u32) -> TopicRoute {
        TopicRoute {
            topic: topic.into(),
            read_queues: q,
            write_queues: q,
            perm: 6,
            topic_sys_flag: 0,
            order: false,
        }
    }

    #[actix::test]
    async fn register_and_query() {
        let r = Routes::new(BTreeMap::new(), None).start();
        r.send(RegisterBroker {
            cluster: "C".into(),
            broker_name: "b".into(),
            broker_id: 0,
            addr: "127.0.0.1:10911".into(),
            topics: vec![route("T", 4)],
        })
        .await
        .unwrap();
        let rt = r
            .send(GetRoute { topic: "T".into() })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rt.queue_datas[0].write_queues, 4);
        assert_eq!(rt.broker_datas[0].addrs[&0], "127.0.0.1:10911");
        assert!(r
            .send(GetRoute { topic: "X".into() })
            .await
            .unwrap()
            .is_none());
        r.send(UpsertTopicRoute {
            broker_name: "b".into(),
            route: route("X", 2),
        })
        .await
        .unwrap();
        assert_eq!(
            r.send(ListTopics {
                cluster: Some("C".into())
            })
            .await
            .unwrap(),
            vec!["T", "X"]
        );
        r.send(RemoveTopicRoute {
            broker_name: None,
            topic: "X".into(),
        })
        .await
        .unwrap();
        assert_eq!(
            r.send(ListTopics { cluster: None }).await.unwrap(),
            vec!["T"]
        );
        let info = r.send(GetClusterInfo).await.unwrap();
        assert_eq!(info.clusters["C"], vec!["b"]);
    }
}
