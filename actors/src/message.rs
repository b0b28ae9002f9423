//! A message on its way into a queue, and the broker's rules for it: UNIQ_KEY back-fill, the
//! CLUSTER property, the tag code, the index keys, the size limits.

use crate::error::BrokerError;
use crate::model::java_hash;
use bytes::{Bytes, BytesMut};
use rocktor_storage::properties;
use rocktor_storage::record::{self, Record, RecordParts};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

pub const PROP_TAGS: &str = "TAGS";
pub const PROP_KEYS: &str = "KEYS";
pub const PROP_UNIQ_KEY: &str = "UNIQ_KEY";
pub const PROP_CLUSTER: &str = "CLUSTER";
pub const PROP_DELAY: &str = "DELAY";
pub const PROP_TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
pub const PROP_TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
pub const PROP_TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
pub const PROP_START_DELIVER_TIME: &str = "__STARTDELIVERTIME";
/// A held scheduled record's due time (ms), as Apache's timer store writes it; removed when
/// the message is delivered.
pub const PROP_TIMER_OUT_MS: &str = "TIMER_OUT_MS";
pub const PROP_RETRY_TOPIC: &str = "RETRY_TOPIC";
pub const PROP_ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
pub const PROP_DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
pub const PROP_DLQ_ORIGIN_MESSAGE_ID: &str = "DLQ_ORIGIN_MESSAGE_ID";

/// The default `messageDelayLevel` table: "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m
/// 30m 1h 2h", in ms.
pub const DELAY_LEVELS_MS: [i64; 18] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000,
    480_000, 540_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];

/// The delay of a level, clamped to the table as Apache clamps it.
pub fn delay_of_level(level: i32) -> i64 {
    DELAY_LEVELS_MS[(level.clamp(1, DELAY_LEVELS_MS.len() as i32) - 1) as usize]
}

/// When a message asks to be delivered, if later than now: a delay level (`DELAY`), the 5.x
/// timer properties, or Aliyun ONS's `__STARTDELIVERTIME` (absolute epoch ms). The arithmetic
/// saturates (a `TIMER_DELAY_MS` of i64::MAX is "too far", never "now"), and a time more than
/// `max_delay_ms` ahead is refused (`IllegalDeliveryTime`, which each front end maps to its own
/// code).
pub fn due_time(props: &str, now_ms: i64, max_delay_ms: i64) -> Result<Option<i64>, BrokerError> {
    let due = requested_due_time(props, now_ms);
    match due {
        Some(d) if d.saturating_sub(now_ms) > max_delay_ms => {
            Err(BrokerError::IllegalDeliveryTime(format!(
                "the message asks to be delivered {} ms from now, beyond the maximum delay of {max_delay_ms} ms",
                d.saturating_sub(now_ms)
            )))
        }
        d => Ok(d),
    }
}

/// The delivery-time properties of a message, parsed (a value that is no number is absent):
/// delay level, TIMER_DELIVER_MS, TIMER_DELAY_SEC, TIMER_DELAY_MS, __STARTDELIVERTIME.
fn delivery_requests(props: &str) -> [Option<i64>; 5] {
    properties::lookup(
        props,
        [
            PROP_DELAY,
            PROP_TIMER_DELIVER_MS,
            PROP_TIMER_DELAY_SEC,
            PROP_TIMER_DELAY_MS,
            PROP_START_DELIVER_TIME,
        ],
    )
    .map(|v| v.and_then(|v| v.trim().parse::<i64>().ok()))
}

fn requested_due_time(props: &str, now_ms: i64) -> Option<i64> {
    let [delay, deliver_ms, delay_sec, delay_ms, start_deliver] = delivery_requests(props);
    let due = if let Some(level) = delay.filter(|l| *l > 0) {
        now_ms.saturating_add(delay_of_level(level.min(i32::MAX as i64) as i32))
    } else if let Some(at) = deliver_ms {
        at
    } else if let Some(s) = delay_sec {
        now_ms.saturating_add(s.saturating_mul(1000))
    } else if let Some(ms) = delay_ms {
        now_ms.saturating_add(ms)
    } else {
        start_deliver?
    };
    (due > now_ms).then_some(due)
}

/// Properties the broker and clients set for themselves (Apache's `MessageConst` system
/// keys): front ends that show "user properties" (HTTP, gRPC) leave these out. The keys an
/// application sets through a client API on purpose (KEYS, `__STARTDELIVERTIME`,
/// `__SHARDINGKEY`, `__TransCheckT`) are not among them.
pub fn is_system_property(key: &str) -> bool {
    const SYSTEM: &[&str] = &[
        "TAGS",
        "UNIQ_KEY",
        "WAIT",
        "DELAY",
        "RETRY_TOPIC",
        "REAL_TOPIC",
        "REAL_QID",
        "TRAN_MSG",
        "PGROUP",
        "MIN_OFFSET",
        "MAX_OFFSET",
        "BUYER_ID",
        "ORIGIN_MESSAGE_ID",
        "TRANSFER_FLAG",
        "CORRECTION_FLAG",
        "MQ2_FLAG",
        "RECONSUME_TIME",
        "MSG_REGION",
        "TRACE_ON",
        "MAX_RECONSUME_TIMES",
        "CONSUME_START_TIME",
        "__transactionId__",
        "TRANSACTION_CHECK_TIMES",
        "CHECK_IMMUNITY_TIME_IN_SECONDS",
        "INSTANCE_ID",
        "CORRELATION_ID",
        "REPLY_TO_CLIENT",
        "TTL",
        "ARRIVE_TIME",
        "PUSH_REPLY_TIME",
        "CLUSTER",
        "MSG_TYPE",
        "SHARDING_KEY",
        "TIMER_DELIVER_MS",
        "TIMER_DELAY_SEC",
        "TIMER_DELAY_MS",
        "TIMER_OUT_MS",
        "TIMER_ENQUEUE_MS",
        "TIMER_DEQUEUE_MS",
        "TIMER_ROLL_TIMES",
        "TIMER_DEL_UNIQKEY",
        "POP_CK",
        "POP_CK_OFFSET",
        "1ST_POP_TIME",
        "INNER_NUM",
        "INNER_BASE",
        "DLQ_ORIGIN_TOPIC",
        "DLQ_ORIGIN_MESSAGE_ID",
        "BORN_HOST",
        "BORN_TIMESTAMP",
        "bname",
        "__BORNHOST",
        "TRACE_CONTEXT",
        "__CANCEL_SCHEDULED_MSG",
    ];
    SYSTEM.contains(&key)
}

/// The property that makes a message a FIFO one (the 5.x message group).
pub const PROP_SHARDING_KEY: &str = "__SHARDINGKEY";

/// A message's type for the topic-type rule (`model::check_message_type`), as Apache's proxy
/// tells it: a half message is TRANSACTION, one with a delivery time DELAY, one with a message
/// group FIFO, anything else NORMAL.
pub fn message_type(props: &str, sys_flag: i32) -> crate::model::TopicMessageType {
    use crate::model::TopicMessageType as T;
    if crate::model::is_half_message(sys_flag, props) {
        return T::Transaction;
    }
    let [delay, deliver_ms, delay_sec, delay_ms, start_deliver] = delivery_requests(props);
    let asks_for_time = deliver_ms
        .or(delay_sec)
        .or(delay_ms)
        .or(start_deliver)
        .is_some();
    let group = properties::get(props, PROP_SHARDING_KEY);
    if delay.is_some_and(|level| level > 0) || asks_for_time {
        T::Delay
    } else if group.is_some_and(|g| !g.is_empty()) {
        T::Fifo
    } else {
        T::Normal
    }
}

/// Properties a delayed message loses when it is delivered (Apache removes them too).
pub const DELAY_PROPERTIES: [&str; 5] = [
    PROP_DELAY,
    PROP_TIMER_DELIVER_MS,
    PROP_TIMER_DELAY_SEC,
    PROP_TIMER_DELAY_MS,
    PROP_TIMER_OUT_MS,
];

pub const MAX_BODY: usize = 4 * 1024 * 1024;
pub const MAX_PROPERTIES: usize = 32767;

/// A message as a producer handed it over, before the broker stores it.
#[derive(Debug, Clone)]
pub struct IncomingMessage {
    pub body: Bytes,
    pub flag: i32,
    pub properties: String,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub reconsume_times: i32,
}

/// A message ready for its queue: properties completed, tag code computed.
#[derive(Debug, Clone)]
pub struct PreparedMessage {
    pub body: Bytes,
    pub flag: i32,
    pub properties: String,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub reconsume_times: i32,
    pub tag_hash: i64,
    pub uniq_key: String,
    pub keys: Vec<String>,
}

/// Encodes a prepared message as a stored record of `topic`/`queue_id` at `queue_offset`.
pub fn encode_record(
    topic: &str,
    queue_id: u32,
    queue_offset: u64,
    m: &PreparedMessage,
    store_time: i64,
    store_host: SocketAddr,
) -> BytesMut {
    let parts = RecordParts {
        queue_id: queue_id as i32,
        flag: m.flag,
        queue_offset: queue_offset as i64,
        sys_flag: m.sys_flag,
        born_timestamp: m.born_timestamp,
        born_host: m.born_host,
        store_timestamp: store_time,
        store_host,
        reconsume_times: m.reconsume_times,
        prepared_transaction_offset: 0,
        body: &m.body,
        topic,
        properties: &m.properties,
    };
    let mut buf = BytesMut::with_capacity(record::encoded_len(&parts));
    record::encode(&parts, &mut buf);
    buf
}

/// Rebuilds a prepared message from a stored record (scheduled delivery, retries), with the
/// given properties. The properties must fit the record's 16-bit length field; the broker's
/// additions (retry topic, origin ids) can push a message that fitted over it.
pub fn from_record(rec: &Record, properties: String) -> Result<PreparedMessage, BrokerError> {
    if properties.len() > MAX_PROPERTIES {
        return Err(BrokerError::MessageIllegal(format!(
            "the message properties length {} is greater than the maximum {MAX_PROPERTIES}",
            properties.len()
        )));
    }
    let (tag_hash, keys) = tag_hash_and_keys(&properties);
    let uniq_key = properties::get(&properties, PROP_UNIQ_KEY)
        .unwrap_or_default()
        .to_string();
    Ok(PreparedMessage {
        body: rec.body.clone(),
        flag: rec.flag,
        properties,
        sys_flag: rec.sys_flag,
        born_timestamp: rec.born_timestamp,
        born_host: rec.born_host,
        reconsume_times: rec.reconsume_times,
        tag_hash,
        uniq_key,
        keys,
    })
}

/// The consume-queue tag code (Java hash of TAGS, 0 without a tag) and the space-separated
/// KEYS a message is indexed under.
fn tag_hash_and_keys(props: &str) -> (i64, Vec<String>) {
    let [tags, keys] = properties::lookup(props, [PROP_TAGS, PROP_KEYS]);
    let tag_hash = tags.map(|t| java_hash(t) as i64).unwrap_or(0);
    let keys = keys
        .map(|k| {
            k.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    (tag_hash, keys)
}

/// Checks the limits; the error text says which limit and by how much.
pub fn check_limits(msg: &IncomingMessage, max_body: usize) -> Result<(), BrokerError> {
    if msg.body.len() > max_body {
        return Err(BrokerError::MessageIllegal(format!(
            "the message body size {} is greater than the maximum {}",
            msg.body.len(),
            max_body
        )));
    }
    if msg.properties.len() > MAX_PROPERTIES {
        return Err(BrokerError::MessageIllegal(format!(
            "the message properties length {} is greater than the maximum {MAX_PROPERTIES}",
            msg.properties.len()
        )));
    }
    Ok(())
}

/// The region a message is stored in (trace clients tag their records with it).
pub const PROP_MSG_REGION: &str = "MSG_REGION";
/// Whether consumers should trace the message ("false" turns their trace hook off).
pub const PROP_TRACE_ON: &str = "TRACE_ON";

/// What the broker stamps on every message it stores, as Apache's send processor does.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    pub cluster: &'a str,
    pub region: &'a str,
    pub trace_on: bool,
}

impl Stamp<'_> {
    #[cfg(test)]
    pub(crate) const TEST: Stamp<'static> = Stamp {
        cluster: "C",
        region: "DefaultRegion",
        trace_on: true,
    };
}

/// Fills in what the broker adds to every message and derives its tag code and keys.
pub fn prepare(
    msg: IncomingMessage,
    stamp: &Stamp<'_>,
    store_host: SocketAddr,
) -> Result<PreparedMessage, BrokerError> {
    let mut props = msg.properties;
    let [uniq, has_cluster, has_region, has_trace] = properties::lookup(
        &props,
        [PROP_UNIQ_KEY, PROP_CLUSTER, PROP_MSG_REGION, PROP_TRACE_ON],
    );
    let uniq_key = uniq.map(str::to_string);
    // TRACE_ON only matters as "false" (consumers skip their trace hook), so "true" is not
    // stored: 14 bytes less in every record and pull.
    let add_cluster = has_cluster.is_none();
    let add_region = has_region.is_none();
    let add_trace = has_trace.is_none() && !stamp.trace_on;
    // Room for what is added, so the string grows at most once.
    let mut room = 0;
    if uniq_key.is_none() {
        room += PROP_UNIQ_KEY.len() + 34;
    }
    if add_cluster {
        room += PROP_CLUSTER.len() + stamp.cluster.len() + 2;
    }
    if add_region {
        room += PROP_MSG_REGION.len() + stamp.region.len() + 2;
    }
    if add_trace {
        room += PROP_TRACE_ON.len() + 7;
    }
    props.reserve(room);
    let uniq_key = match uniq_key {
        Some(k) => k,
        None => {
            let k = new_uniq_key(store_host);
            properties::push(&mut props, PROP_UNIQ_KEY, &k);
            k
        }
    };
    if add_cluster {
        properties::push(&mut props, PROP_CLUSTER, stamp.cluster);
    }
    if add_region {
        properties::push(&mut props, PROP_MSG_REGION, stamp.region);
    }
    if add_trace {
        properties::push(&mut props, PROP_TRACE_ON, "false");
    }
    if props.len() > MAX_PROPERTIES {
        return Err(BrokerError::MessageIllegal(format!(
            "the message properties length {} is greater than the maximum {MAX_PROPERTIES}",
            props.len()
        )));
    }
    let (tag_hash, keys) = tag_hash_and_keys(&props);
    Ok(PreparedMessage {
        body: msg.body,
        flag: msg.flag,
        properties: props,
        sys_flag: msg.sys_flag,
        born_timestamp: msg.born_timestamp,
        born_host: msg.born_host,
        reconsume_times: msg.reconsume_times,
        tag_hash,
        uniq_key,
        keys,
    })
}

/// A broker-made UNIQ_KEY in the Java layout: IP, pid, a per-process salt, ms of the month and
/// a counter, as 32 uppercase hex characters. Clients treat it as opaque.
pub fn new_uniq_key(host: SocketAddr) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut b = Vec::with_capacity(16);
    match host.ip() {
        std::net::IpAddr::V4(ip) => b.extend_from_slice(&ip.octets()),
        std::net::IpAddr::V6(ip) => b.extend_from_slice(&ip.octets()[12..]),
    }
    // Read once: `process::id` is a system call, and this runs per message.
    static PID: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    b.extend_from_slice(&PID.get_or_init(|| std::process::id() as u16).to_be_bytes());
    b.extend_from_slice(&0x524f_434bu32.to_be_bytes()); // "ROCK"
    let now = crate::now_ms();
    b.extend_from_slice(&((now % (31 * 86_400_000)) as u32).to_be_bytes());
    b.extend_from_slice(&(COUNTER.fetch_add(1, Ordering::Relaxed) as u16).to_be_bytes());
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(32);
    for x in b {
        s.push(HEX[(x >> 4) as usize] as char);
        s.push(HEX[(x & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(props: &str) -> IncomingMessage {
        IncomingMessage {
            body: Bytes::from_static(b"x"),
            flag: 0,
            properties: props.to_string(),
            sys_flag: 0,
            born_timestamp: 0,
            born_host: "127.0.0.1:1".parse().unwrap(),
            reconsume_times: 0,
        }
    }

    #[test]
    fn message_types() {
        use crate::model::TopicMessageType as T;
        assert_eq!(message_type("", 0), T::Normal);
        assert_eq!(message_type("TRAN_MSG\u{1}true\u{2}", 0), T::Transaction);
        assert_eq!(message_type("", 0x4), T::Transaction);
        assert_eq!(message_type("DELAY\u{1}3\u{2}", 0), T::Delay);
        assert_eq!(message_type("DELAY\u{1}0\u{2}", 0), T::Normal);
        assert_eq!(message_type("__STARTDELIVERTIME\u{1}1\u{2}", 0), T::Delay);
        assert_eq!(message_type("__SHARDINGKEY\u{1}g\u{2}", 0), T::Fifo);
    }

    #[test]
    fn prepare_backfills_uniq_key_and_cluster() {
        let p = prepare(
            incoming("TAGS\u{1}TagA\u{2}KEYS\u{1}k1 k2\u{2}"),
            &Stamp::TEST,
            "127.0.0.1:10911".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(p.uniq_key.len(), 32);
        assert_eq!(
            properties::get(&p.properties, PROP_UNIQ_KEY),
            Some(p.uniq_key.as_str())
        );
        assert_eq!(properties::get(&p.properties, PROP_CLUSTER), Some("C"));
        assert_eq!(
            properties::get(&p.properties, PROP_MSG_REGION),
            Some("DefaultRegion")
        );
        assert_eq!(
            properties::get(&p.properties, PROP_TRACE_ON),
            None,
            "on is the default"
        );
        let off = Stamp {
            trace_on: false,
            ..Stamp::TEST
        };
        let q = prepare(incoming(""), &off, "127.0.0.1:10911".parse().unwrap()).unwrap();
        assert_eq!(properties::get(&q.properties, PROP_TRACE_ON), Some("false"));
        assert_eq!(p.tag_hash, 2598919);
        assert_eq!(p.keys, vec!["k1", "k2"]);
        let q = prepare(
            incoming("UNIQ_KEY\u{1}ABC\u{2}"),
            &Stamp::TEST,
            "127.0.0.1:10911".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(q.uniq_key, "ABC");
        assert_eq!(q.tag_hash, 0);
    }

    #[test]
    fn delays_saturate_and_respect_the_maximum() {
        let now = 1_000_000;
        let max = 365 * 86_400_000;
        for props in [
            format!("TIMER_DELAY_MS\u{1}{}\u{2}", i64::MAX),
            format!("TIMER_DELAY_SEC\u{1}{}\u{2}", i64::MAX),
            format!("TIMER_DELIVER_MS\u{1}{}\u{2}", i64::MAX),
            format!("__STARTDELIVERTIME\u{1}{}\u{2}", now + max + 1),
        ] {
            let e = due_time(&props, now, max).unwrap_err();
            assert!(
                matches!(e, BrokerError::IllegalDeliveryTime(_)),
                "{props}: {e}"
            );
        }
        assert_eq!(
            due_time(&format!("TIMER_DELAY_MS\u{1}{max}\u{2}"), now, max).unwrap(),
            Some(now + max)
        );
        assert_eq!(
            due_time(&format!("TIMER_DELAY_MS\u{1}{}\u{2}", i64::MIN), now, max).unwrap(),
            None,
            "a delay in the past is now"
        );
        assert_eq!(
            due_time(&format!("DELAY\u{1}{}\u{2}", i64::MAX), now, max).unwrap(),
            Some(now + 7_200_000)
        );
    }

    fn due_time(props: &str, now: i64, max: i64) -> Result<Option<i64>, BrokerError> {
        super::due_time(props, now, max)
    }

    #[test]
    fn due_times() {
        let now = 1_000_000;
        let due_time = |p: &str, now: i64| super::due_time(p, now, i64::MAX).unwrap();
        assert_eq!(due_time("DELAY\u{1}2\u{2}", now), Some(now + 5_000));
        assert_eq!(due_time("DELAY\u{1}99\u{2}", now), Some(now + 7_200_000));
        assert_eq!(due_time("DELAY\u{1}0\u{2}", now), None);
        assert_eq!(
            due_time("__STARTDELIVERTIME\u{1}1004000\u{2}", now),
            Some(1_004_000)
        );
        assert_eq!(
            due_time("__STARTDELIVERTIME\u{1}10\u{2}", now),
            None,
            "a past time is now"
        );
        assert_eq!(
            due_time("TIMER_DELAY_SEC\u{1}3\u{2}", now),
            Some(now + 3_000)
        );
        assert_eq!(
            due_time("TIMER_DELIVER_MS\u{1}2000000\u{2}", now),
            Some(2_000_000)
        );
        assert_eq!(due_time("TAGS\u{1}a\u{2}", now), None);
        assert_eq!(delay_of_level(3), 10_000);
    }

    #[test]
    fn limits() {
        let mut m = incoming("");
        m.body = Bytes::from(vec![0u8; 11]);
        assert!(check_limits(&m, 10).is_err());
        assert!(check_limits(&m, 11).is_ok());
        let m = incoming(&"a".repeat(MAX_PROPERTIES + 1));
        assert!(check_limits(&m, 10).is_err());
    }
}
