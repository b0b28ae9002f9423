//! Translations between apache.rocketmq.v2 messages and the domain: a proto message into a
//! stored message's properties (Apache proxy's mapping, digest §6.3), a stored record into a
//! proto message, and domain errors into gRPC `Status` codes — all in one place.

use super::pb::{self, Code};
use rocktor_actors::message::{
    is_system_property, IncomingMessage, PROP_KEYS, PROP_SHARDING_KEY, PROP_START_DELIVER_TIME,
    PROP_TAGS, PROP_TIMER_DELIVER_MS, PROP_UNIQ_KEY,
};
use rocktor_actors::model::TopicMessageType;
use rocktor_actors::BrokerError;
use rocktor_storage::{properties, record::Record};
use std::net::SocketAddr;

/// A half message's system flag, and a compressed body's.
const SYS_FLAG_COMPRESSED: i32 = 0x1;
const SYS_FLAG_PREPARED: i32 = 0x4;
/// Apache proxy's limits on a message (digest §6.3).
pub const MAX_USER_PROPERTIES: usize = 128;
pub const MAX_PROPERTIES_BYTES: usize = 16 << 10;
pub const MAX_MESSAGE_GROUP_BYTES: usize = 64;
/// Keys the gRPC API carries as system properties, beside the broker's own
/// (`is_system_property`): not shown as user properties, not settable as ones.
const GRPC_SYSTEM: &[&str] = &[PROP_KEYS, PROP_SHARDING_KEY, PROP_START_DELIVER_TIME];

pub fn status(code: Code, message: impl Into<String>) -> pb::Status {
    pb::Status {
        code: code as i32,
        message: message.into(),
    }
}

pub fn ok() -> pb::Status {
    status(Code::Ok, "OK")
}

/// A domain error as the status Apache's proxy answers for it.
pub fn error_status(e: &BrokerError) -> pb::Status {
    let code = match e {
        BrokerError::TopicNotExist(_) => Code::TopicNotFound,
        BrokerError::MessageIllegal(_) | BrokerError::InvalidParameter(_) => Code::BadRequest,
        BrokerError::IllegalDeliveryTime(_) => Code::IllegalDeliveryTime,
        BrokerError::NoPermission(_) => Code::Forbidden,
        BrokerError::SystemBusy | BrokerError::LimitExceeded(_) => Code::TooManyRequests,
        BrokerError::GroupNotExist(_) => Code::ConsumerGroupNotFound,
        BrokerError::SubscriptionNotExist(_)
        | BrokerError::SubscriptionNotLatest(_)
        | BrokerError::SubscriptionParseFailed(_) => Code::IllegalFilterExpression,
        BrokerError::Storage(_) | BrokerError::WriteUnavailable(_) | BrokerError::ShuttingDown => {
            Code::InternalServerError
        }
        BrokerError::NotFound(_) => Code::NotFound,
        BrokerError::NotSupported(_) => Code::NotImplemented,
        BrokerError::MessageTypeMismatch(_) => Code::MessagePropertyConflictWithType,
        BrokerError::IllegalOperation(_) => Code::BadRequest,
        BrokerError::TransactionMismatch(_) => Code::InvalidTransactionId,
    };
    status(code, e.to_string())
}

/// A resource's stored name: `namespace%name`, by the resource's namespace or else the call's.
pub fn resource_name(r: Option<&pb::Resource>, namespace: &str) -> String {
    let Some(r) = r else {
        return String::new();
    };
    let ns = if r.resource_namespace.is_empty() {
        namespace
    } else {
        r.resource_namespace.as_str()
    };
    rocktor_actors::model::with_namespace(ns, r.name.trim())
}

/// A stored name as a resource: `ns%name` split again for a client of that namespace.
pub fn resource_of(name: &str, namespace: &str) -> pb::Resource {
    match name
        .strip_prefix(namespace)
        .and_then(|r| r.strip_prefix('%'))
    {
        Some(short) if !namespace.is_empty() => pb::Resource {
            resource_namespace: namespace.to_string(),
            name: short.to_string(),
        },
        _ => pb::Resource {
            resource_namespace: String::new(),
            name: name.to_string(),
        },
    }
}

pub fn millis(d: &prost_types::Duration) -> i64 {
    d.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(d.nanos / 1_000_000))
}

pub fn duration(ms: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn timestamp_ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos / 1_000_000))
}

/// A proto message to store, and whether it is a transaction's half message. `Err`: the
/// status of a message Apache's proxy refuses.
pub struct Outgoing {
    pub message: IncomingMessage,
    pub topic: String,
    pub kind: TopicMessageType,
    pub message_id: String,
}

fn bad_text(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

/// The mapping of digest §6.3: tag → TAGS, keys → KEYS, message_id → UNIQ_KEY, group →
/// `__SHARDINGKEY`, delivery time → TIMER_DELIVER_MS, TRANSACTION → TRAN_MSG and PGROUP (the
/// producer group is the topic) with the prepared flag, plus the user properties.
pub fn outgoing(
    m: pb::Message,
    namespace: &str,
    max_body: usize,
    born_host: SocketAddr,
) -> Result<Outgoing, pb::Status> {
    let topic = resource_name(m.topic.as_ref(), namespace);
    if topic.is_empty() {
        return Err(status(Code::IllegalTopic, "the message names no topic"));
    }
    let sys = m.system_properties.unwrap_or_default();
    if m.body.is_empty() {
        return Err(status(Code::MessageBodyEmpty, "the message body is empty"));
    }
    if m.body.len() > max_body {
        return Err(status(
            Code::MessageBodyTooLarge,
            format!(
                "the message body size {} is greater than the maximum {max_body}",
                m.body.len()
            ),
        ));
    }
    let message_id = sys.message_id.trim().to_string();
    if message_id.is_empty() || bad_text(&message_id) {
        return Err(status(Code::IllegalMessageId, "the message id is blank"));
    }
    if m.user_properties.len() > MAX_USER_PROPERTIES {
        return Err(status(
            Code::MessagePropertiesTooLarge,
            format!(
                "the message has {} user properties, more than {MAX_USER_PROPERTIES}",
                m.user_properties.len()
            ),
        ));
    }
    let mut props = String::new();
    if let Some(tag) = sys.tag.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        if tag.contains('|') || bad_text(tag) {
            return Err(status(
                Code::IllegalMessageTag,
                format!("the tag {tag:?} holds '|' or a control character"),
            ));
        }
        properties::push(&mut props, PROP_TAGS, tag);
    }
    let keys: Vec<&str> = sys
        .keys
        .iter()
        .map(|k| k.trim())
        .filter(|k| !k.is_empty())
        .collect();
    if keys.iter().any(|k| bad_text(k) || k.contains(' ')) {
        return Err(status(
            Code::IllegalMessageKey,
            "a message key holds a space or a control character",
        ));
    }
    if !keys.is_empty() {
        properties::push(&mut props, PROP_KEYS, &keys.join(" "));
    }
    properties::push(&mut props, PROP_UNIQ_KEY, &message_id);
    let message_group = sys
        .message_group
        .as_deref()
        .map(str::trim)
        .filter(|g| !g.is_empty());
    if let Some(g) = message_group {
        if g.len() >= MAX_MESSAGE_GROUP_BYTES || bad_text(g) {
            return Err(status(
                Code::IllegalMessageGroup,
                format!("the message group is {} bytes or holds a control character; it must be under {MAX_MESSAGE_GROUP_BYTES}", g.len()),
            ));
        }
        properties::push(&mut props, PROP_SHARDING_KEY, g);
    }
    if let Some(t) = &sys.delivery_timestamp {
        properties::push(
            &mut props,
            PROP_TIMER_DELIVER_MS,
            &timestamp_ms(t).to_string(),
        );
    }
    let declared = pb::MessageType::try_from(sys.message_type).unwrap_or_default();
    let transactional = declared == pb::MessageType::Transaction;
    if transactional {
        properties::push(&mut props, rocktor_actors::txn::PROP_TRAN_MSG, "true");
        properties::push(&mut props, rocktor_actors::txn::PROP_PGROUP, &topic);
        if let Some(d) = &sys.orphaned_transaction_recovery_duration {
            let secs = (millis(d) / 1000).max(0);
            properties::push(
                &mut props,
                rocktor_actors::txn::PROP_CHECK_IMMUNITY,
                &secs.to_string(),
            );
        }
    }
    if let Some(t) = sys.trace_context.as_deref().filter(|t| !t.is_empty()) {
        if !bad_text(t) {
            properties::push(&mut props, "TRACE_CONTEXT", t);
        }
    }
    if !sys.born_host.is_empty() && !bad_text(&sys.born_host) {
        properties::push(&mut props, "__BORNHOST", &sys.born_host);
    }
    let user_start = props.len();
    let mut user: Vec<(&String, &String)> = m.user_properties.iter().collect();
    user.sort();
    for (k, v) in user {
        if k.is_empty() || bad_text(k) || bad_text(v) {
            return Err(status(
                Code::IllegalMessagePropertyKey,
                format!("the property {k:?} is empty or holds a control character"),
            ));
        }
        if is_system_property(k) || GRPC_SYSTEM.contains(&k.as_str()) {
            return Err(status(
                Code::IllegalMessagePropertyKey,
                format!("the property key {k} is reserved"),
            ));
        }
        properties::push(&mut props, k, v);
    }
    if props.len() - user_start > MAX_PROPERTIES_BYTES {
        return Err(status(
            Code::MessagePropertiesTooLarge,
            format!("the user properties exceed {MAX_PROPERTIES_BYTES} bytes"),
        ));
    }
    let mut sys_flag = 0;
    if transactional {
        sys_flag |= SYS_FLAG_PREPARED;
    }
    if pb::Encoding::try_from(sys.body_encoding) == Ok(pb::Encoding::Gzip) {
        sys_flag |= SYS_FLAG_COMPRESSED;
    }
    let born_timestamp = sys
        .born_timestamp
        .as_ref()
        .map(timestamp_ms)
        .filter(|t| *t > 0)
        .unwrap_or_else(rocktor_actors::now_ms);
    let kind = rocktor_actors::message::message_type(&props, sys_flag);
    Ok(Outgoing {
        message: IncomingMessage {
            body: m.body,
            flag: 0,
            properties: props,
            sys_flag,
            born_timestamp,
            born_host,
            reconsume_times: 0,
        },
        topic,
        kind,
        message_id,
    })
}

pub fn message_type(t: TopicMessageType) -> pb::MessageType {
    match t {
        TopicMessageType::Normal | TopicMessageType::Mixed => pb::MessageType::Normal,
        TopicMessageType::Fifo => pb::MessageType::Fifo,
        TopicMessageType::Delay => pb::MessageType::Delay,
        TopicMessageType::Transaction => pb::MessageType::Transaction,
    }
}

/// How a delivered message is shown: its receipt and attempt, when it is one.
#[derive(Default)]
pub struct Shown<'a> {
    pub receipt_handle: Option<&'a str>,
    pub delivery_attempt: Option<u32>,
    pub invisible_ms: Option<i64>,
    /// The topic's message type: a delivered delayed message has lost its timer
    /// properties, so a typed topic says what it is better than the record.
    pub topic_type: Option<TopicMessageType>,
}

/// A stored record as a proto message (for a consumer, or for a transaction check).
pub fn incoming(rec: Record, seq: u64, namespace: &str, shown: Shown<'_>) -> pb::Message {
    let props = &rec.properties;
    let get = |k: &str| properties::get(props, k);
    let message_id = get(PROP_UNIQ_KEY)
        .map(str::to_string)
        .unwrap_or_else(|| crate::remoting::message::offset_msg_id(rec.store_host, seq));
    let mut user = std::collections::HashMap::new();
    for (k, v) in properties::parse(props) {
        if !is_system_property(&k) && !GRPC_SYSTEM.contains(&k.as_str()) {
            user.insert(k, v);
        }
    }
    let kind = match shown.topic_type {
        Some(t) if t != TopicMessageType::Mixed => t,
        _ => rocktor_actors::message::message_type(props, rec.sys_flag),
    };
    let delivery_ms = get(PROP_TIMER_DELIVER_MS)
        .or_else(|| get(PROP_START_DELIVER_TIME))
        .and_then(|v| v.trim().parse::<i64>().ok());
    let system = pb::SystemProperties {
        tag: get(PROP_TAGS).map(str::to_string),
        keys: get(PROP_KEYS)
            .map(|k| {
                k.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        message_id,
        body_digest: Some(pb::Digest {
            r#type: pb::DigestType::Md5 as i32,
            checksum: crate::digest::md5_upper(&rec.body),
        }),
        body_encoding: if rec.sys_flag & SYS_FLAG_COMPRESSED != 0 {
            pb::Encoding::Gzip as i32
        } else {
            pb::Encoding::Identity as i32
        },
        message_type: message_type(kind) as i32,
        born_timestamp: Some(timestamp(rec.born_timestamp)),
        born_host: get("__BORNHOST")
            .map(str::to_string)
            .unwrap_or_else(|| rec.born_host.ip().to_string()),
        store_timestamp: Some(timestamp(rec.store_timestamp)),
        store_host: rec.store_host.to_string(),
        delivery_timestamp: delivery_ms.map(timestamp),
        receipt_handle: shown.receipt_handle.map(str::to_string),
        queue_id: rec.queue_id,
        queue_offset: Some(rec.queue_offset),
        invisible_duration: shown.invisible_ms.map(duration),
        delivery_attempt: shown
            .delivery_attempt
            .map(|a| a.min(i32::MAX as u32) as i32),
        message_group: get(PROP_SHARDING_KEY).map(str::to_string),
        trace_context: get("TRACE_CONTEXT").map(str::to_string),
        orphaned_transaction_recovery_duration: None,
        dead_letter_queue: None,
    };
    pb::Message {
        topic: Some(resource_of(&rec.topic, namespace)),
        user_properties: user,
        system_properties: Some(system),
        body: rec.body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str) -> pb::Message {
        pb::Message {
            topic: Some(pb::Resource {
                resource_namespace: String::new(),
                name: "T".into(),
            }),
            user_properties: [("color".to_string(), "blue".to_string())].into(),
            system_properties: Some(pb::SystemProperties {
                tag: Some("TagA".into()),
                keys: vec!["k1".into(), "k2".into()],
                message_id: id.into(),
                ..Default::default()
            }),
            body: bytes::Bytes::from_static(b"hello"),
        }
    }

    fn host() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    #[test]
    fn a_message_maps_to_properties_and_back() {
        let out = outgoing(message("ID1"), "", 1 << 20, host()).unwrap();
        assert_eq!(out.topic, "T");
        let p = &out.message.properties;
        assert_eq!(properties::get(p, "TAGS"), Some("TagA"));
        assert_eq!(properties::get(p, "KEYS"), Some("k1 k2"));
        assert_eq!(properties::get(p, "UNIQ_KEY"), Some("ID1"));
        assert_eq!(properties::get(p, "color"), Some("blue"));
        assert_eq!(out.kind, TopicMessageType::Normal);
    }

    #[test]
    fn refused_messages_get_apache_codes() {
        let code = |m: pb::Message| outgoing(m, "", 8, host()).err().map(|s| s.code);
        assert_eq!(code(message("")), Some(Code::IllegalMessageId as i32));
        let mut big = message("A");
        big.body = bytes::Bytes::from(vec![0u8; 9]);
        assert_eq!(code(big), Some(Code::MessageBodyTooLarge as i32));
        let mut tag = message("A");
        tag.system_properties.as_mut().unwrap().tag = Some("a|b".into());
        assert_eq!(code(tag), Some(Code::IllegalMessageTag as i32));
        let mut reserved = message("A");
        reserved
            .user_properties
            .insert("UNIQ_KEY".into(), "x".into());
        assert_eq!(code(reserved), Some(Code::IllegalMessagePropertyKey as i32));
        let mut group = message("A");
        group.system_properties.as_mut().unwrap().message_group = Some("g".repeat(64));
        assert_eq!(code(group), Some(Code::IllegalMessageGroup as i32));
        let mut empty = message("A");
        empty.body = bytes::Bytes::new();
        assert_eq!(code(empty), Some(Code::MessageBodyEmpty as i32));
    }

    #[test]
    fn namespaces_wrap_and_unwrap() {
        let r = pb::Resource {
            resource_namespace: "ns".into(),
            name: "T".into(),
        };
        assert_eq!(resource_name(Some(&r), ""), "ns%T");
        let plain = pb::Resource {
            resource_namespace: String::new(),
            name: "T".into(),
        };
        assert_eq!(resource_name(Some(&plain), "h"), "h%T");
        assert_eq!(resource_of("ns%T", "ns").name, "T");
        assert_eq!(resource_of("T", "").name, "T");
    }

    #[test]
    fn durations_round_trip() {
        assert_eq!(millis(&duration(12_345)), 12_345);
        assert_eq!(
            timestamp_ms(&timestamp(1_700_000_000_123)),
            1_700_000_000_123
        );
    }
}
