//! Topic and group configuration, permissions and naming rules (digest §4.2, §4.10).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const PERM_PRIORITY: i32 = 8;
pub const PERM_READ: i32 = 4;
pub const PERM_WRITE: i32 = 2;
pub const PERM_INHERIT: i32 = 1;

pub const DEFAULT_TOPIC: &str = "TBW102";
pub const RETRY_PREFIX: &str = "%RETRY%";
pub const DLQ_PREFIX: &str = "%DLQ%";
pub const MAX_TOPIC_LEN: usize = 127;
pub const MAX_SYSTEM_TOPIC_LEN: usize = 255;
pub const MAX_GROUP_LEN: usize = 120;

/// Topics clients may not send to directly.
pub const NOT_ALLOWED_SEND_TOPICS: [&str; 6] = [
    "SCHEDULE_TOPIC_XXXX",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub name: String,
    /// Internal id used in storage keys; a re-created topic gets a new one.
    pub id: u32,
    pub read_queues: u32,
    pub write_queues: u32,
    pub perm: i32,
    pub topic_sys_flag: i32,
    pub order: bool,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl TopicConfig {
    /// A readable, writable one-queue topic with id 1 (unit tests).
    #[cfg(test)]
    pub(crate) fn for_test(name: &str) -> Self {
        crate::broker::TopicSpec::single_queue(name).into_config(1)
    }

    /// Queues to run: the larger of read and write, never above `MAX_QUEUES` (a config stored
    /// before that rule cannot make a restart start millions of actors).
    pub fn queue_count(&self) -> u32 {
        self.read_queues.max(self.write_queues).min(MAX_QUEUES)
    }
    pub fn readable(&self) -> bool {
        self.perm & PERM_READ != 0
    }
    pub fn writable(&self) -> bool {
        self.perm & PERM_WRITE != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupConfig {
    pub name: String,
    pub consume_enable: bool,
    pub consume_from_min_enable: bool,
    pub consume_broadcast_enable: bool,
    pub consume_message_orderly: bool,
    pub retry_queue_nums: u32,
    pub retry_max_times: i32,
    pub broker_id: i64,
    pub which_broker_when_consume_slowly: i64,
    pub notify_consumer_ids_changed_enable: bool,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl GroupConfig {
    pub fn new(name: &str) -> Self {
        GroupConfig {
            name: name.to_string(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            consume_message_orderly: false,
            retry_queue_nums: 1,
            retry_max_times: 16,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            attributes: BTreeMap::new(),
        }
    }
}

/// How a consumer group shares a topic: each message to one member (clustering) or to every
/// member (broadcasting). Front ends map their own spellings to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageModel {
    #[default]
    Clustering,
    Broadcasting,
}

impl MessageModel {
    /// RocketMQ's name of the model (`CLUSTERING`, `BROADCASTING`).
    pub fn as_str(self) -> &'static str {
        match self {
            MessageModel::Clustering => "CLUSTERING",
            MessageModel::Broadcasting => "BROADCASTING",
        }
    }

    /// From RocketMQ's name, case-insensitive; anything else is clustering (the default).
    pub fn from_name(name: &str) -> Self {
        if name.eq_ignore_ascii_case("BROADCASTING") {
            MessageModel::Broadcasting
        } else {
            MessageModel::Clustering
        }
    }
}

/// The largest queue count a topic (or a group's retry topic) may have; larger requests and
/// stored configs are clamped or refused, so no request can make the broker start more actors.
pub const MAX_QUEUES: u32 = 1024;

/// MessageSysFlag's transaction bits and the prepared ("half") value.
const SYS_FLAG_TRANSACTION_MASK: i32 = 0xC;
const SYS_FLAG_TRANSACTION_PREPARED: i32 = 0x4;

/// Whether a send is a transaction's half message (`TRAN_MSG=true` or the prepared sys flag).
pub fn is_half_message(sys_flag: i32, properties: &str) -> bool {
    sys_flag & SYS_FLAG_TRANSACTION_MASK == SYS_FLAG_TRANSACTION_PREPARED
        || rocktor_storage::properties::get(properties, "TRAN_MSG")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The message types a topic may be limited to (Apache's `message.type` topic attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicMessageType {
    Normal,
    Fifo,
    Delay,
    Transaction,
    /// Anything goes (also what a topic without the attribute, or `UNSPECIFIED`, accepts).
    Mixed,
}

/// The topic attribute that holds the message type.
pub const ATTR_MESSAGE_TYPE: &str = "message.type";

impl TopicMessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            TopicMessageType::Normal => "NORMAL",
            TopicMessageType::Fifo => "FIFO",
            TopicMessageType::Delay => "DELAY",
            TopicMessageType::Transaction => "TRANSACTION",
            TopicMessageType::Mixed => "MIXED",
        }
    }

    /// From Apache's spelling, case-insensitive; `UNSPECIFIED` means "no limit".
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.trim().to_ascii_uppercase().as_str() {
            "NORMAL" => TopicMessageType::Normal,
            "FIFO" => TopicMessageType::Fifo,
            "DELAY" => TopicMessageType::Delay,
            "TRANSACTION" => TopicMessageType::Transaction,
            "MIXED" | "UNSPECIFIED" => TopicMessageType::Mixed,
            _ => return None,
        })
    }

    /// The message type a topic is limited to (`Mixed` without the attribute).
    pub fn of_topic(t: &TopicConfig) -> Self {
        t.attributes
            .get(ATTR_MESSAGE_TYPE)
            .and_then(|v| Self::from_name(v))
            .unwrap_or(TopicMessageType::Mixed)
    }
}

/// The one rule for a send's type against its topic's: a typed topic takes only its own type,
/// a MIXED (or untyped) topic takes everything. Apache's proxy applies it to 5.x gRPC sends
/// only; remoting and HTTP sends are never refused for their type (a 4.x orderly producer
/// carries no type marker), so only the gRPC front end calls this.
pub fn check_message_type(
    topic: &TopicConfig,
    message: TopicMessageType,
) -> Result<(), crate::BrokerError> {
    let allowed = TopicMessageType::of_topic(topic);
    if allowed == TopicMessageType::Mixed || allowed == message {
        return Ok(());
    }
    Err(crate::BrokerError::MessageTypeMismatch(format!(
        "the topic {} takes {} messages; this message is {}",
        topic.name,
        allowed.as_str(),
        message.as_str()
    )))
}

/// The values a topic attribute takes.
enum AttributeValues {
    OneOf(&'static [&'static str]),
    /// A positive whole number (milliseconds).
    PositiveMs,
}

/// Topic attribute keys an admin may set, with their allowed values.
const TOPIC_ATTRIBUTES: [(&str, AttributeValues); 4] = [
    (
        ATTR_MESSAGE_TYPE,
        AttributeValues::OneOf(&[
            "UNSPECIFIED",
            "NORMAL",
            "FIFO",
            "DELAY",
            "TRANSACTION",
            "MIXED",
        ]),
    ),
    (
        "queue.type",
        AttributeValues::OneOf(&["BatchCQ", "SimpleCQ"]),
    ),
    (
        "cleanup.policy",
        AttributeValues::OneOf(&["DELETE", "COMPACTION"]),
    ),
    // A topic's own, shorter retention in ms (a positive whole number; see `retention`).
    (
        crate::retention::ATTR_RETENTION_MS,
        AttributeValues::PositiveMs,
    ),
];

/// Applies Apache's attribute changes (`+key=value` sets, `-key` removes, comma-separated) to
/// a topic's current attributes. Unknown keys and values are refused, as Apache refuses them.
pub fn apply_topic_attributes(
    current: &BTreeMap<String, String>,
    changes: &str,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = current.clone();
    for item in changes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (remove, rest) = match item.as_bytes()[0] {
            b'+' => (false, &item[1..]),
            b'-' => (true, &item[1..]),
            _ => (false, item),
        };
        let (key, value) = match rest.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (rest.trim(), None),
        };
        let Some((_, allowed)) = TOPIC_ATTRIBUTES.iter().find(|(k, _)| *k == key) else {
            return Err(format!("unsupported topic attribute key: {key}"));
        };
        if remove {
            out.remove(key);
            continue;
        }
        let Some(value) = value else {
            return Err(format!(
                "the topic attribute {key} needs a value (+{key}=value)"
            ));
        };
        let value = match allowed {
            AttributeValues::OneOf(values) => match values.iter().find(|v| v.eq_ignore_ascii_case(value)) {
                Some(v) => v.to_string(),
                None => {
                    return Err(format!(
                        "the topic attribute {key} takes one of {}, not {value}",
                        values.join(", ")
                    ))
                }
            },
            AttributeValues::PositiveMs => match value.parse::<u64>() {
                Ok(ms) if ms > 0 => ms.to_string(),
                _ => {
                    return Err(format!(
                        "the topic attribute {key} takes a positive number of milliseconds, not {value}"
                    ))
                }
            },
        };
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

/// `^[%|a-zA-Z0-9_-]+$`
pub fn valid_name_chars(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
}

/// Checks a topic name as Apache's `TopicValidator` does; the error text says what is wrong.
pub fn validate_topic(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the specified topic is blank".into());
    }
    if !valid_name_chars(name) {
        return Err(format!(
            "the specified topic[{name}] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
        ));
    }
    let limit = if is_retry_or_dlq(name) {
        MAX_SYSTEM_TOPIC_LEN
    } else {
        MAX_TOPIC_LEN
    };
    if name.len() > limit {
        return Err(format!(
            "the specified topic is longer than topic max length {limit}"
        ));
    }
    Ok(())
}

/// The numbers of a group's configuration an admin may set (Apache keeps them in range too).
pub fn validate_group_config(g: &GroupConfig) -> Result<(), String> {
    if g.retry_queue_nums > MAX_QUEUES {
        return Err(format!(
            "retryQueueNums {} is out of range 0..{MAX_QUEUES}",
            g.retry_queue_nums
        ));
    }
    if !(-1..=MAX_RETRY_TIMES).contains(&g.retry_max_times) {
        return Err(format!(
            "retryMaxTimes {} is out of range -1..{MAX_RETRY_TIMES}",
            g.retry_max_times
        ));
    }
    Ok(())
}

/// The largest retry budget a group may have (well past the 16 of Apache's default).
pub const MAX_RETRY_TIMES: i32 = 10_000;

pub fn validate_group(name: &str) -> Result<(), String> {
    if !valid_name_chars(name) {
        return Err(format!(
            "the specified group[{name}] is blank or contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
        ));
    }
    if name.len() > MAX_GROUP_LEN {
        return Err(format!(
            "the specified group is longer than group max length {MAX_GROUP_LEN}"
        ));
    }
    Ok(())
}

/// The broker's own topics (TBW102, schedule, transaction, trace, retry and dead-letter
/// ones), which listings of users' topics leave out.
pub fn is_system_topic(topic: &str) -> bool {
    topic == DEFAULT_TOPIC
        || NOT_ALLOWED_SEND_TOPICS.contains(&topic)
        || topic.starts_with("RMQ_SYS_")
        || topic.starts_with("rmq_sys_")
        || is_retry_or_dlq(topic)
}

/// Apache's own consumer groups (MixAll's and the ONS ones), which listings of users'
/// groups and counts leave out.
pub fn is_system_group(group: &str) -> bool {
    const SYSTEM: [&str; 9] = [
        "SELF_TEST_C_GROUP",
        "TOOLS_CONSUMER",
        "FILTERSRV_CONSUMER",
        "CID_ONS-HTTP-PROXY",
        "CID_ONSAPI_PERMISSION",
        "CID_ONSAPI_OWNER",
        "CID_ONSAPI_PULL",
        "CID_RMQ_SYS_TRANS",
        "CID_SYS_RMQ_TRANS",
    ];
    SYSTEM.contains(&group) || group.starts_with("CID_RMQ_SYS_")
}

pub fn is_retry_or_dlq(topic: &str) -> bool {
    topic.starts_with(RETRY_PREFIX) || topic.starts_with(DLQ_PREFIX)
}

pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_PREFIX}{group}")
}

pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_PREFIX}{group}")
}

/// `namespace%name`, as clients with a namespace spell their topics and groups (Apache's
/// `NamespaceUtil.wrapNamespace`): unchanged without a namespace, for an empty name, or when
/// the name is already wrapped. The HTTP (`ns`) and gRPC (`x-mq-namespace`) front ends wrap
/// with it; remoting clients send wrapped names themselves.
pub fn with_namespace(namespace: &str, name: &str) -> String {
    let wrapped = name
        .strip_prefix(namespace)
        .is_some_and(|rest| rest.starts_with('%'));
    if namespace.is_empty() || name.is_empty() || wrapped {
        name.to_string()
    } else {
        format!("{namespace}%{name}")
    }
}

/// Java's `String.hashCode`, the tag code of consume-queue entries (digest §4.5).
pub fn java_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for u in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(u as i32);
    }
    h
}

#[cfg(test)]
mod namespace_tests {
    #[test]
    fn names_are_wrapped_once() {
        assert_eq!(super::with_namespace("ns", "T"), "ns%T");
        assert_eq!(super::with_namespace("ns", "ns%T"), "ns%T");
        assert_eq!(super::with_namespace("", "T"), "T");
        assert_eq!(super::with_namespace("ns", ""), "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_java() {
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("TagA"), 2598919);
        assert_eq!(java_hash("TagB"), 2598920);
        assert_eq!(
            java_hash("hello world, this is long"),
            "hello world, this is long"
                .encode_utf16()
                .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
        );
    }

    fn topic(ty: Option<&str>) -> TopicConfig {
        let mut t = TopicConfig::for_test("T");
        if let Some(ty) = ty {
            t.attributes
                .insert(ATTR_MESSAGE_TYPE.to_string(), ty.to_string());
        }
        t
    }

    #[test]
    fn message_types_are_enforced_by_one_rule() {
        use TopicMessageType::*;
        let all = [Normal, Fifo, Delay, Transaction, Mixed];
        for t in [None, Some("MIXED"), Some("UNSPECIFIED")] {
            for m in all {
                assert!(
                    check_message_type(&topic(t), m).is_ok(),
                    "{t:?} takes {m:?}"
                );
            }
        }
        for ty in [Normal, Fifo, Delay, Transaction] {
            let t = topic(Some(ty.as_str()));
            for m in [Normal, Fifo, Delay, Transaction] {
                assert_eq!(
                    check_message_type(&t, m).is_ok(),
                    m == ty,
                    "{ty:?} vs {m:?}"
                );
            }
        }
    }

    #[test]
    fn topic_attributes_change_like_apache() {
        let a = apply_topic_attributes(&BTreeMap::new(), "+message.type=fifo").unwrap();
        assert_eq!(a.get(ATTR_MESSAGE_TYPE).map(String::as_str), Some("FIFO"));
        let b = apply_topic_attributes(&a, "+cleanup.policy=DELETE").unwrap();
        assert_eq!(b.len(), 2);
        let c = apply_topic_attributes(&b, "-message.type").unwrap();
        assert_eq!(c.len(), 1);
        assert!(apply_topic_attributes(&a, "+message.type=SOMETIMES").is_err());
        assert!(apply_topic_attributes(&a, "+no.such.key=1").is_err());
        assert!(apply_topic_attributes(&a, "+message.type").is_err());
        assert_eq!(apply_topic_attributes(&a, " , ").unwrap(), a);
    }

    #[test]
    fn names() {
        assert!(validate_topic("Topic_A-1%|x").is_ok());
        assert!(validate_topic("bad topic").is_err());
        assert!(validate_topic(&"a".repeat(128)).is_err());
        assert!(validate_topic(&format!("%RETRY%{}", "a".repeat(150))).is_ok());
        assert!(validate_group("g1").is_ok());
        assert!(validate_group("").is_err());
    }
}
