//! RocketMQ 5's broker metrics — the names and labels of Apache's `BrokerMetricsManager` —
//! counted in the domain flows, so remoting, HTTP and gRPC traffic count alike.
//!
//! State: the label sets handed out so far and their metric handles. Every distinct label set
//! (a topic and message type, a topic and group, an RPC's protocol and codes) costs one entry
//! of `max_series`; past it new ones count under `topic="_other"` / `consumer_group="_other"`
//! and `rocktor_metrics_series_overflow_total` says how often. Handles are cached here so a
//! send costs one map lookup, not a registry lookup with freshly built labels.
//!
//! Nothing here is durable: counters start at zero with the process, as Prometheus expects.

use crate::model::TopicMessageType;
use metrics::{Counter, Gauge, Histogram};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The label value that stands for every topic or group past the series budget.
pub const OTHER: &str = "_other";
/// `rocketmq_message_size` buckets (bytes), Apache's.
pub const MESSAGE_SIZE_BUCKETS: &[f64] = &[
    1024.0,
    4096.0,
    512.0 * 1024.0,
    1024.0 * 1024.0,
    2.0 * 1024.0 * 1024.0,
    4.0 * 1024.0 * 1024.0,
];
/// `rocketmq_rpc_latency` buckets (milliseconds), Apache's plus a few long-poll steps.
pub const RPC_LATENCY_BUCKETS: &[f64] = &[
    1.0, 3.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 3000.0, 10000.0, 30000.0,
];

/// What is counted when a message is stored.
pub struct Inbound {
    messages: Counter,
    bytes: Counter,
    size: Histogram,
}

/// What is counted when messages are handed to a group.
pub struct Outbound {
    messages: Counter,
    bytes: Counter,
    dead_lettered: Counter,
}

#[derive(Default)]
struct Series {
    /// By topic, then by message type (`TopicMessageType as usize`).
    inbound: HashMap<String, [Option<Arc<Inbound>>; 5]>,
    outbound: HashMap<String, HashMap<String, Arc<Outbound>>>,
    rpc: HashMap<(&'static str, String, String), Histogram>,
    gauges: HashMap<(&'static str, String, String), Gauge>,
    used: usize,
}

pub struct BrokerMetrics {
    enabled: bool,
    max_series: usize,
    series: Mutex<Series>,
    /// Broker-wide totals since start, for the REST API's overview (the dashboard's rates).
    stored: AtomicU64,
    delivered: AtomicU64,
    /// When the scrape-time gauges were last computed; held while they are, so concurrent
    /// scrapes wait for one computation instead of each walking every group.
    pub(crate) refreshed: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// Messages behind every group's committed offsets, and the store's size, as of the last
    /// refresh (the REST overview reads them).
    pub backlog: AtomicU64,
    pub store_bytes: AtomicU64,
}

/// Scrapes closer together than this reuse the gauges of the previous one.
pub const MIN_REFRESH_AGE: Duration = Duration::from_secs(1);

/// Broker-wide figures since start, read without the metrics registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub messages_in: u64,
    pub messages_out: u64,
    /// Open connections by protocol, in `PROTOCOLS` order.
    pub connections: [u64; 3],
}

/// The `protocol_type` values, in the order `Totals::connections` counts them.
pub const PROTOCOLS: [&str; 3] = ["remoting", "grpc", "http"];
static OPEN_CONNECTIONS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Apache's `message_type` label values.
pub fn message_type_label(kind: TopicMessageType) -> &'static str {
    match kind {
        TopicMessageType::Normal | TopicMessageType::Mixed => "normal",
        TopicMessageType::Fifo => "fifo",
        TopicMessageType::Delay => "delay",
        TopicMessageType::Transaction => "transaction",
    }
}

impl BrokerMetrics {
    pub fn new(max_series: usize, enabled: bool) -> BrokerMetrics {
        BrokerMetrics {
            enabled,
            max_series: max_series.max(1),
            series: Mutex::new(Series::default()),
            stored: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            refreshed: tokio::sync::Mutex::new(None),
            backlog: AtomicU64::new(0),
            store_bytes: AtomicU64::new(0),
        }
    }

    /// Whether one more label set fits; counts the overflow when it does not.
    fn admit(&self, s: &mut Series) -> bool {
        if s.used < self.max_series {
            s.used += 1;
            true
        } else {
            // Looked up each time: the broker starts before the process installs its
            // recorder, so a handle taken at start would count nowhere.
            metrics::counter!("rocktor_metrics_series_overflow_total").increment(1);
            false
        }
    }

    fn inbound(&self, topic: &str, kind: TopicMessageType) -> Arc<Inbound> {
        let i = kind as usize;
        let Ok(mut s) = self.series.lock() else {
            return Arc::new(inbound_handles(OTHER, kind));
        };
        if let Some(h) = s.inbound.get(topic).and_then(|t| t[i].clone()) {
            return h;
        }
        let name = if self.admit(&mut s) { topic } else { OTHER };
        let slot = &mut s.inbound.entry(name.to_string()).or_default()[i];
        slot.get_or_insert_with(|| Arc::new(inbound_handles(name, kind)))
            .clone()
    }

    fn outbound(&self, topic: &str, group: &str) -> Arc<Outbound> {
        let Ok(mut s) = self.series.lock() else {
            return Arc::new(outbound_handles(OTHER, OTHER));
        };
        if let Some(h) = s.outbound.get(topic).and_then(|g| g.get(group)) {
            return h.clone();
        }
        let (t, g) = if self.admit(&mut s) {
            (topic, group)
        } else {
            (OTHER, OTHER)
        };
        s.outbound
            .entry(t.to_string())
            .or_default()
            .entry(g.to_string())
            .or_insert_with(|| Arc::new(outbound_handles(t, g)))
            .clone()
    }

    /// Messages stored in `topic` (`sizes`: each one's body length).
    pub fn messages_in(&self, topic: &str, kind: TopicMessageType, sizes: &[usize]) {
        self.stored.fetch_add(sizes.len() as u64, Ordering::Relaxed);
        if !self.enabled {
            return;
        }
        let h = self.inbound(topic, kind);
        h.messages.increment(sizes.len() as u64);
        for &n in sizes {
            h.bytes.increment(n as u64);
            h.size.record(n as f64);
        }
    }

    /// Messages of `topic` handed to `group` (pull, pop, HTTP and gRPC receive).
    pub fn messages_out(&self, topic: &str, group: &str, count: usize, bytes: usize) {
        if count == 0 {
            return;
        }
        self.delivered.fetch_add(count as u64, Ordering::Relaxed);
        if !self.enabled {
            return;
        }
        let h = self.outbound(topic, group);
        h.messages.increment(count as u64);
        h.bytes.increment(bytes as u64);
    }

    /// A message of `topic` moved to `group`'s dead-letter queue.
    pub fn dead_lettered(&self, topic: &str, group: &str) {
        if !self.enabled {
            return;
        }
        self.outbound(topic, group).dead_lettered.increment(1);
    }

    /// One answered request: `protocol` is remoting, http or grpc; the codes are the
    /// protocol's own (a remoting request code, an HTTP route, a gRPC method).
    pub fn rpc(&self, protocol: &'static str, request: &str, response: &str, took: Duration) {
        if !self.enabled {
            return;
        }
        let ms = took.as_secs_f64() * 1000.0;
        let Ok(mut s) = self.series.lock() else {
            return;
        };
        let key = (protocol, request.to_string(), response.to_string());
        if let Some(h) = s.rpc.get(&key) {
            h.record(ms);
            return;
        }
        let key = if self.admit(&mut s) {
            key
        } else {
            (protocol, OTHER.to_string(), OTHER.to_string())
        };
        let h = s
            .rpc
            .entry(key)
            .or_insert_with_key(|(p, req, resp)| {
                metrics::histogram!("rocketmq_rpc_latency", "protocol_type" => *p,
                    "request_code" => req.clone(), "response_code" => resp.clone())
            })
            .clone();
        drop(s);
        h.record(ms);
    }

    /// Sets a gauge labelled by topic and consumer group (scrape-time figures).
    pub fn group_gauge(&self, name: &'static str, topic: &str, group: &str, value: f64) {
        if !self.enabled {
            return;
        }
        let Ok(mut s) = self.series.lock() else {
            return;
        };
        let key = (name, topic.to_string(), group.to_string());
        if let Some(g) = s.gauges.get(&key) {
            g.set(value);
            return;
        }
        if !self.admit(&mut s) {
            return;
        }
        let g = metrics::gauge!(name, "topic" => key.1.clone(), "consumer_group" => key.2.clone());
        g.set(value);
        s.gauges.insert(key, g);
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Messages stored and delivered since start, and the connections open now.
    pub fn totals(&self) -> Totals {
        let mut connections = [0; 3];
        for (n, open) in connections.iter_mut().zip(&OPEN_CONNECTIONS) {
            *n = open.load(Ordering::Relaxed);
        }
        Totals {
            messages_in: self.stored.load(Ordering::Relaxed),
            messages_out: self.delivered.load(Ordering::Relaxed),
            connections,
        }
    }

    /// Label sets in use (for tests and the overflow warning).
    pub fn series_in_use(&self) -> usize {
        self.series.lock().map(|s| s.used).unwrap_or(0)
    }
}

/// One open client connection of `protocol` in `rocketmq_connections` while it lives.
pub struct OpenConnection(Gauge, Option<&'static AtomicU64>);

impl OpenConnection {
    pub fn new(protocol: &'static str) -> OpenConnection {
        let g = metrics::gauge!("rocketmq_connections", "protocol_type" => protocol);
        g.increment(1.0);
        let open = PROTOCOLS
            .iter()
            .position(|p| *p == protocol)
            .map(|i| &OPEN_CONNECTIONS[i]);
        if let Some(n) = open {
            n.fetch_add(1, Ordering::Relaxed);
        }
        OpenConnection(g, open)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.decrement(1.0);
        if let Some(n) = self.1 {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn inbound_handles(topic: &str, kind: TopicMessageType) -> Inbound {
    let (t, k) = (topic.to_string(), message_type_label(kind));
    Inbound {
        messages: metrics::counter!("rocketmq_messages_in_total", "topic" => t.clone(), "message_type" => k),
        bytes: metrics::counter!("rocketmq_throughput_in_total", "topic" => t.clone(), "message_type" => k),
        size: metrics::histogram!("rocketmq_message_size", "topic" => t, "message_type" => k),
    }
}

fn outbound_handles(topic: &str, group: &str) -> Outbound {
    let (t, g) = (topic.to_string(), group.to_string());
    Outbound {
        messages: metrics::counter!("rocketmq_messages_out_total", "topic" => t.clone(), "consumer_group" => g.clone()),
        bytes: metrics::counter!("rocketmq_throughput_out_total", "topic" => t.clone(), "consumer_group" => g.clone()),
        dead_lettered: metrics::counter!("rocketmq_send_to_dlq_messages_total", "topic" => t, "consumer_group" => g),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_budget_new_label_sets_share_the_other_series() {
        let m = BrokerMetrics::new(2, true);
        m.messages_in("A", TopicMessageType::Normal, &[10]);
        m.messages_in("A", TopicMessageType::Normal, &[10, 20]);
        assert_eq!(m.series_in_use(), 1, "a known label set costs nothing more");
        m.messages_out("A", "G", 3, 30);
        assert_eq!(m.series_in_use(), 2);
        m.messages_in("B", TopicMessageType::Delay, &[1]);
        m.rpc("remoting", "10", "0", Duration::from_millis(2));
        assert_eq!(m.series_in_use(), 2, "over budget: counted under _other");
        let s = m.series.lock().unwrap();
        assert!(s.inbound.contains_key(OTHER) && !s.inbound.contains_key("B"));
        assert!(s.rpc.keys().any(|(_, req, _)| req == OTHER));
    }
}
