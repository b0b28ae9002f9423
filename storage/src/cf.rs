//! Column family names, in one place (as TiKV does), so a typo cannot open a new family.

/// Stored message records by global sequence (the RocketMQ "commit log offset").
pub const LOG: &str = "log";
/// Consume queues: (topic id, queue id, queue offset) → (sequence, size, tag hash, store time).
pub const CQ: &str = "cq";
/// Message keys and UNIQ_KEY → sequence, for QUERY_MESSAGE.
pub const INDEX: &str = "index";
/// Committed consumer offsets: (group, topic, queue) → offset.
pub const OFFSETS: &str = "offsets";
/// Topic, group and user configuration, MessagePack.
pub const META: &str = "meta";
/// Delayed messages by due time.
pub const TIMER: &str = "timer";
/// Transaction state of half messages.
pub const TXN: &str = "txn";

/// Retention's clock: checkpoint time (ms) → the next sequence then; every record below that
/// sequence was stored at or before that time.
pub const TIME: &str = "time";

/// Invisible-time consumption: (group, topic, queue, offset) → the delivery in flight, and
/// each queue's pop cursor under offset `u64::MAX` (`keys::pop_key`).
pub const POP: &str = "pop";

pub const ALL: [&str; 9] = [LOG, CQ, INDEX, OFFSETS, META, TIMER, TXN, TIME, POP];
