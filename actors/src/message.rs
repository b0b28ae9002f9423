//! A message on its way into a queue, and the broker's rules for it: UNIQ_KEY back-fill, the
//! CLUSTER property, the tag code, the index keys, the size limits.

use crate::error::BrokerError;
use crate::model::java_hash;
use bytes::Bytes;
use rocktor_storage::properties;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

pub const PROP_TAGS: &str = "TAGS";
pub const PROP_KEYS: &str = "KEYS";
pub const PROP_UNIQ_KEY: &str = "UNIQ_KEY";
pub const PROP_CLUSTER: &str = "CLUSTER";
pub const PROP_MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";

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

/// Fills in what the broker adds to every message and derives its tag code and keys.
pub fn prepare(
    msg: IncomingMessage,
    cluster: &str,
    store_host: SocketAddr,
) -> Result<PreparedMessage, BrokerError> {
    let mut props = msg.properties;
    let uniq_key = match properties::get(&props, PROP_UNIQ_KEY) {
        Some(k) => k.to_string(),
        None => {
            let k = new_uniq_key(store_host);
            properties::push(&mut props, PROP_UNIQ_KEY, &k);
            k
        }
    };
    if properties::get(&props, PROP_CLUSTER).is_none() {
        properties::push(&mut props, PROP_CLUSTER, cluster);
    }
    if props.len() > MAX_PROPERTIES {
        return Err(BrokerError::MessageIllegal(format!(
            "the message properties length {} is greater than the maximum {MAX_PROPERTIES}",
            props.len()
        )));
    }
    let tag_hash = properties::get(&props, PROP_TAGS)
        .map(|t| java_hash(t) as i64)
        .unwrap_or(0);
    let keys = properties::get(&props, PROP_KEYS)
        .map(|k| {
            k.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
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
    b.extend_from_slice(&(std::process::id() as u16).to_be_bytes());
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
    fn prepare_backfills_uniq_key_and_cluster() {
        let p = prepare(
            incoming("TAGS\u{1}TagA\u{2}KEYS\u{1}k1 k2\u{2}"),
            "C",
            "127.0.0.1:10911".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(p.uniq_key.len(), 32);
        assert_eq!(
            properties::get(&p.properties, PROP_UNIQ_KEY),
            Some(p.uniq_key.as_str())
        );
        assert_eq!(properties::get(&p.properties, PROP_CLUSTER), Some("C"));
        assert_eq!(p.tag_hash, 2598919);
        assert_eq!(p.keys, vec!["k1", "k2"]);
        let q = prepare(
            incoming("UNIQ_KEY\u{1}ABC\u{2}"),
            "C",
            "127.0.0.1:10911".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(q.uniq_key, "ABC");
        assert_eq!(q.tag_hash, 0);
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
