//! Key layouts of the column families. Big-endian integers so that RocksDB's byte order is the
//! numeric order, which makes "last offset of a queue" a single reverse seek.

/// `log` key: the global sequence.
pub fn log_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub fn parse_log_key(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.try_into().ok()?))
}

/// `cq` key: topic id, queue id, queue offset (16 bytes).
pub fn cq_key(topic_id: u32, queue_id: u32, offset: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&topic_id.to_be_bytes());
    k[4..8].copy_from_slice(&queue_id.to_be_bytes());
    k[8..].copy_from_slice(&offset.to_be_bytes());
    k
}

/// The 8-byte prefix shared by every entry of one queue.
pub fn cq_prefix(topic_id: u32, queue_id: u32) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(&topic_id.to_be_bytes());
    k[4..].copy_from_slice(&queue_id.to_be_bytes());
    k
}

pub fn parse_cq_key(k: &[u8]) -> Option<(u32, u32, u64)> {
    if k.len() != 16 {
        return None;
    }
    Some((
        u32::from_be_bytes(k[..4].try_into().ok()?),
        u32::from_be_bytes(k[4..8].try_into().ok()?),
        u64::from_be_bytes(k[8..].try_into().ok()?),
    ))
}

/// `cq` value: sequence, record size, tag hash, store timestamp (28 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqValue {
    pub seq: u64,
    pub size: u32,
    pub tag_hash: i64,
    pub store_time: i64,
}

impl CqValue {
    pub const LEN: usize = 28;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut v = [0u8; Self::LEN];
        v[..8].copy_from_slice(&self.seq.to_be_bytes());
        v[8..12].copy_from_slice(&self.size.to_be_bytes());
        v[12..20].copy_from_slice(&self.tag_hash.to_be_bytes());
        v[20..].copy_from_slice(&self.store_time.to_be_bytes());
        v
    }

    pub fn decode(v: &[u8]) -> Option<Self> {
        if v.len() != Self::LEN {
            return None;
        }
        Some(CqValue {
            seq: u64::from_be_bytes(v[..8].try_into().ok()?),
            size: u32::from_be_bytes(v[8..12].try_into().ok()?),
            tag_hash: i64::from_be_bytes(v[12..20].try_into().ok()?),
            store_time: i64::from_be_bytes(v[20..].try_into().ok()?),
        })
    }
}

/// `offsets` key: group, NUL, topic, NUL, queue id. Names cannot contain NUL (the name rule is
/// `[%|a-zA-Z0-9_-]+`), so the separator is unambiguous.
pub fn offset_key(group: &str, topic: &str, queue_id: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(group.len() + topic.len() + 6);
    k.extend_from_slice(group.as_bytes());
    k.push(0);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&queue_id.to_be_bytes());
    k
}

pub fn parse_offset_key(k: &[u8]) -> Option<(String, String, u32)> {
    if k.len() < 6 {
        return None;
    }
    let (names, qid) = k.split_at(k.len() - 4);
    let qid = u32::from_be_bytes(qid.try_into().ok()?);
    let names = names.strip_suffix(&[0])?;
    let mut parts = names.splitn(2, |b| *b == 0);
    let group = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let topic = std::str::from_utf8(parts.next()?).ok()?.to_string();
    Some((group, topic, qid))
}

/// `pop` keys: the `offsets` key of (group, topic, queue) followed by the queue offset (big
/// endian, so one queue's deliveries sort by offset). Offset `POP_CURSOR` holds the queue's
/// pop cursor: every offset below it was handed out (or skipped by the filter) once.
pub fn pop_key(group: &str, topic: &str, queue_id: u32, offset: u64) -> Vec<u8> {
    let mut k = offset_key(group, topic, queue_id);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

/// The offset under which a queue's pop cursor is stored.
pub const POP_CURSOR: u64 = u64::MAX;

/// The prefix of every `pop` key of (group, topic).
pub fn pop_prefix(group: &str, topic: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(group.len() + topic.len() + 2);
    k.extend_from_slice(group.as_bytes());
    k.push(0);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k
}

/// (queue id, offset) of a `pop` key under `prefix`.
pub fn parse_pop_key(prefix: &[u8], k: &[u8]) -> Option<(u32, u64)> {
    let rest = k.strip_prefix(prefix)?;
    if rest.len() != 12 {
        return None;
    }
    let qid = u32::from_be_bytes(rest[..4].try_into().ok()?);
    let off = u64::from_be_bytes(rest[4..].try_into().ok()?);
    Some((qid, off))
}

/// Kinds of `meta` entries; the key is the kind byte followed by the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MetaKind {
    Topic = 1,
    Group = 2,
    Counter = 3,
    KvConfig = 4,
    /// Runtime ACL changes (`auth::Overlay`).
    Acl = 5,
    /// Broker secrets (the receipt-handle key).
    Secret = 6,
    /// How a group consumes a topic (pull or pop: SET_MESSAGE_REQUEST_MODE), by "group\0topic".
    RequestMode = 7,
    /// Where a queue's offsets begin when it did not start at 0 (a topic imported from another
    /// broker continues its offsets), by `queue_base_key`.
    QueueBase = 8,
    /// Alarm rules set at run time (JSON), under "rules".
    AlarmRules = 9,
}

/// The largest base offset: far beyond any real queue, and room to count on from it (offsets
/// travel as i64 on the wire).
pub const MAX_QUEUE_BASE: u64 = 1 << 62;

/// A stored base offset, if it is 8 bytes and at most `MAX_QUEUE_BASE`.
pub fn parse_queue_base(v: &[u8]) -> Option<u64> {
    let base = u64::from_be_bytes(v.try_into().ok()?);
    (base <= MAX_QUEUE_BASE).then_some(base)
}

/// `meta` key of a queue's base offset: the kind byte, topic id, queue id (big-endian, so one
/// range delete takes a topic's).
pub fn queue_base_key(topic_id: u32, queue_id: u32) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = MetaKind::QueueBase as u8;
    k[1..5].copy_from_slice(&topic_id.to_be_bytes());
    k[5..].copy_from_slice(&queue_id.to_be_bytes());
    k
}

pub fn meta_key(kind: MetaKind, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1);
    k.push(kind as u8);
    k.extend_from_slice(name.as_bytes());
    k
}

/// The index's pseudo topic of records held back from their queues (scheduled messages not yet
/// due, transactional half messages), by UNIQ_KEY: traces find them there.
pub const HELD_TOPIC_ID: u32 = u32::MAX;

/// `index` key prefix: topic id and a 64-bit FNV-1a hash of the message key; the writer appends
/// the sequence. Hash collisions are resolved by reading the record and comparing keys.
pub fn index_prefix(topic_id: u32, key: &str) -> Vec<u8> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut k = Vec::with_capacity(20);
    k.extend_from_slice(&topic_id.to_be_bytes());
    k.extend_from_slice(&h.to_be_bytes());
    k
}

/// `timer` key: due time (ms, big-endian, so the scan is in due order), then the sequence.
pub fn timer_key(due_ms: i64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub fn parse_timer_key(k: &[u8]) -> Option<(i64, u64)> {
    if k.len() != 16 {
        return None;
    }
    Some((
        u64::from_be_bytes(k[..8].try_into().ok()?) as i64,
        u64::from_be_bytes(k[8..].try_into().ok()?),
    ))
}

/// `timer` value: destination queue id and topic.
pub fn timer_value(queue_id: u32, topic: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + topic.len());
    v.extend_from_slice(&queue_id.to_be_bytes());
    v.extend_from_slice(topic.as_bytes());
    v
}

pub fn parse_timer_value(v: &[u8]) -> Option<(u32, String)> {
    if v.len() < 4 {
        return None;
    }
    let q = u32::from_be_bytes(v[..4].try_into().ok()?);
    Some((q, String::from_utf8(v[4..].to_vec()).ok()?))
}

/// `txn` key: the half record's sequence, big-endian.
pub fn txn_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub fn parse_txn_key(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_key_round_trips() {
        let k = offset_key("g1", "%RETRY%g1", 7);
        assert_eq!(
            parse_offset_key(&k),
            Some(("g1".into(), "%RETRY%g1".into(), 7))
        );
    }

    #[test]
    fn cq_keys_sort_by_offset() {
        assert!(cq_key(1, 2, 255) < cq_key(1, 2, 256));
        assert!(cq_key(1, 2, u64::MAX) < cq_key(1, 3, 0));
        assert_eq!(parse_cq_key(&cq_key(9, 8, 7)), Some((9, 8, 7)));
    }

    #[test]
    fn cq_value_round_trips() {
        let v = CqValue {
            seq: 5,
            size: 100,
            tag_hash: -3,
            store_time: 1_700_000_000_000,
        };
        assert_eq!(CqValue::decode(&v.encode()), Some(v));
        assert_eq!(CqValue::decode(&[1, 2, 3]), None);
    }
}
