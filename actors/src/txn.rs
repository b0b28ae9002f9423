//! TxnChecker — transactions' half messages (digest §4.4).
//!
//! State it owns: every pending half message (one without an outcome yet) — its producer group,
//! real topic and queue, checks so far, next check time, the connection that sent it, and,
//! within a memory budget, the message in its committed form, so a commit needs no read.
//!
//! Messages: `PrepareReply` (store a half message), `EndReply` (commit or roll back),
//! `PollHalves` (the half messages due for a check whose producer polls for them), and its own
//! check tick (every second: half messages past their check time are asked about, or moved to
//! `TRANS_CHECK_MAX_TIME_TOPIC` after the maximum of checks).
//!
//! A check reaches a producer one of two ways, chosen per half message when it is stored:
//! pushed (CHECK_TRANSACTION_STATE to a live producer of its group: remoting, gRPC) or polled
//! (HTTP producers have no connection to push to: a due half message waits until its group
//! polls for it, then comes back every `poll_interval_ms` for up to `poll_max_checks`).
//!
//! Durability: a half record (no consume-queue entry, so invisible) and its `txn` state are
//! written in one batch before the send is acknowledged. A commit appends the message to its
//! real queue and deletes the `txn` state in the same write batch; a rollback deletes the state
//! and the record together. After a crash a committed message is visible exactly once, and a
//! pending one is pending still (recovered from `txn` at start). Check counts are written as
//! they move, unawaited: a lost update only repeats a check.

use crate::broker::{BrokerActor, CreateTopic, Registry, TopicSpec};
use crate::client_channel::TransactionCheck;
use crate::error::BrokerError;
use crate::message::{encode_record, from_record, PreparedMessage, MAX_PROPERTIES};
use crate::producers::{FindProducer, Producers};
use crate::reply::Reply;
use crate::scheduler::Clock;
use crate::topic_queue::{self, Append};
use actix::prelude::*;
use arc_swap::ArcSwap;
use bytes::Bytes;
use rocktor_storage::{cf, keys, properties, record, AppendBatch, AppendRecord, Store, Writer};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Where Apache keeps half messages; ours live in `log` + `txn`, under this topic name.
pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Where half messages go after the maximum of checks.
pub const CHECK_MAX_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";

pub const PROP_TRAN_MSG: &str = "TRAN_MSG";
pub const PROP_PGROUP: &str = "PGROUP";
pub const PROP_REAL_TOPIC: &str = "REAL_TOPIC";
pub const PROP_REAL_QID: &str = "REAL_QID";
pub const PROP_TRANSACTION_ID: &str = "__transactionId__";
pub const PROP_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
pub const PROP_CHECK_IMMUNITY: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
/// The producer group of half messages published over HTTP, whose producers do not name one.
pub const POLLING_PRODUCER_GROUP: &str = "HTTP_TRANS_PRODUCER";
/// Aliyun ONS's first-check delay, in seconds.
pub const PROP_ONS_CHECK_TIME: &str = "__TransCheckT";

/// MessageSysFlag's transaction bits, and the value a committed message carries.
const SYS_FLAG_TRANSACTION_MASK: i32 = 0xC;
const SYS_FLAG_TRANSACTION_COMMIT: i32 = 0x8;

const TICK: Duration = Duration::from_secs(1);
/// Half messages asked about (or moved) per tick, and the bodies read for the asks.
const CHECKS_PER_TICK: usize = 256;
const CHECK_BYTES: usize = 16 << 20;
/// Bytes of committed-form messages kept in memory; past it a commit reads the record.
const CACHE_BUDGET: usize = 64 << 20;

#[derive(Debug, Clone, Copy)]
pub struct TxnSettings {
    /// A half message is first checked this long after it was stored (Apache's
    /// `transactionTimeOut`), or after its own immunity time when that is longer.
    pub timeout_ms: i64,
    /// Between two checks (`transactionCheckInterval`).
    pub check_interval_ms: i64,
    /// Checks before the message moves to `TRANS_CHECK_MAX_TIME_TOPIC` (`transactionCheckMax`).
    pub max_checks: u32,
    /// Half messages waiting for an outcome at once; past it a new one is refused (busy).
    pub max_pending: usize,
    /// Polled checks: a half message handed to a poll is due again this long after.
    pub poll_interval_ms: i64,
    /// Polled checks before the message moves to `TRANS_CHECK_MAX_TIME_TOPIC` (24 h of them).
    pub poll_max_checks: u32,
}

impl Default for TxnSettings {
    fn default() -> Self {
        TxnSettings {
            timeout_ms: 6_000,
            check_interval_ms: 30_000,
            max_checks: 15,
            max_pending: 1_000_000,
            poll_interval_ms: 10_000,
            poll_max_checks: 8_640,
        }
    }
}

/// A half message's `txn` state, MessagePack.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredHalf {
    group: String,
    topic: String,
    queue_id: u32,
    uniq_key: String,
    checks: u32,
    next_check_ms: i64,
    /// Its producer polls for checks (HTTP) instead of being asked.
    #[serde(default)]
    polled: bool,
}

impl StoredHalf {
    fn encode(&self) -> Result<Vec<u8>, BrokerError> {
        rmp_serde::to_vec(self).map_err(|e| BrokerError::Storage(format!("txn state: {e}")))
    }
}

struct Half {
    stored: StoredHalf,
    /// The connection that sent it (not kept across restarts).
    sender: Option<u64>,
    /// An outcome (or the move past the maximum) is being written.
    ending: bool,
    /// The message as a commit writes it, when it fitted the cache.
    committed_form: Option<PreparedMessage>,
}

pub struct TxnChecker {
    store: Store,
    writer: Writer,
    registry: Arc<ArcSwap<Registry>>,
    broker: Addr<BrokerActor>,
    producers: Addr<Producers>,
    settings: TxnSettings,
    store_host: SocketAddr,
    broker_name: String,
    pending: HashMap<u64, Half>,
    /// (next check ms, sequence) of the pending halves not being ended.
    due: BTreeSet<(i64, u64)>,
    /// Polled half messages due for a check, waiting for their producer to poll.
    poll_ready: BTreeSet<u64>,
    cached_bytes: usize,
    checking: bool,
    clock: Clock,
}

/// Everything the checker needs from the broker around it.
pub struct TxnCheckerParts {
    pub store: Store,
    pub writer: Writer,
    pub registry: Arc<ArcSwap<Registry>>,
    pub broker: Addr<BrokerActor>,
    pub producers: Addr<Producers>,
    pub settings: TxnSettings,
    pub store_host: SocketAddr,
    pub broker_name: String,
}

impl TxnChecker {
    pub fn new(p: TxnCheckerParts) -> Self {
        TxnChecker {
            store: p.store,
            writer: p.writer,
            registry: p.registry,
            broker: p.broker,
            producers: p.producers,
            settings: p.settings,
            store_host: p.store_host,
            broker_name: p.broker_name,
            pending: HashMap::new(),
            due: BTreeSet::new(),
            poll_ready: BTreeSet::new(),
            cached_bytes: 0,
            checking: false,
            clock: Arc::new(crate::now_ms),
        }
    }

    /// The same checker on another clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn publish_gauge(&self) {
        metrics::gauge!("rocktor_transaction_half_pending").set(self.pending.len() as f64);
    }

    fn forget(&mut self, seq: u64) {
        if let Some(h) = self.pending.remove(&seq) {
            self.due.remove(&(h.stored.next_check_ms, seq));
            self.poll_ready.remove(&seq);
            if let Some(m) = h.committed_form {
                self.cached_bytes = self.cached_bytes.saturating_sub(cached_size(&m));
            }
        }
        self.publish_gauge();
    }

    /// A half message whose record is gone or corrupt can never be committed: its state is
    /// deleted (unawaited; a failure only repeats this after a restart).
    fn drop_unreadable(&mut self, seq: u64) {
        drop(self.writer.try_submit(AppendBatch {
            deletes: vec![(cf::TXN, keys::txn_key(seq).to_vec())],
            ..Default::default()
        }));
        self.forget(seq);
    }

    /// An outcome failed to be written: the half message is pending again.
    fn reopen(&mut self, seq: u64) {
        if let Some(h) = self.pending.get_mut(&seq) {
            h.ending = false;
            self.due.insert((h.stored.next_check_ms, seq));
        }
    }

    /// The first check time: the transaction timeout, or the message's own immunity time
    /// (`CHECK_IMMUNITY_TIME_IN_SECONDS`, ONS's `__TransCheckT`) when that is longer.
    fn first_check(&self, props: &str, now: i64) -> i64 {
        let [immunity, ons] = properties::lookup(props, [PROP_CHECK_IMMUNITY, PROP_ONS_CHECK_TIME]);
        let secs = |v: Option<&str>| {
            v.and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(0)
                .clamp(0, 86_400 * 365)
                * 1000
        };
        let wait = self.settings.timeout_ms.max(secs(immunity)).max(secs(ons));
        now.saturating_add(wait)
    }

    fn prepare(&mut self, msg: Prepare, reply: Reply<u64>, ctx: &mut Context<Self>) {
        let now = (self.clock)();
        let Prepare {
            topic,
            queue_id,
            message,
            producer_group,
            sender,
            polled,
        } = msg;
        if self.pending.len() >= self.settings.max_pending {
            let _ = reply.send(Err(BrokerError::LimitExceeded(format!(
                "{} half messages are waiting for an outcome, the most the broker holds",
                self.pending.len()
            ))));
            return;
        }
        let mut half = message;
        let has_group = properties::get(&half.properties, PROP_PGROUP).is_some();
        let committed_props = properties::without(
            &half.properties,
            &[PROP_TRAN_MSG, PROP_REAL_TOPIC, PROP_REAL_QID],
        );
        // The broker's own keys replace whatever the client put there.
        half.properties = properties::without(
            &half.properties,
            &[
                PROP_REAL_TOPIC,
                PROP_REAL_QID,
                PROP_TRANSACTION_ID,
                PROP_CHECK_TIMES,
            ],
        );
        properties::push(&mut half.properties, PROP_REAL_TOPIC, &topic);
        properties::push(&mut half.properties, PROP_REAL_QID, &queue_id.to_string());
        properties::push(&mut half.properties, PROP_TRANSACTION_ID, &half.uniq_key);
        if !has_group {
            properties::push(&mut half.properties, PROP_PGROUP, &producer_group);
        }
        // Room for the check count a check-back adds; the record's length field is 16 bits.
        if half.properties.len() + PROP_CHECK_TIMES.len() + 12 > MAX_PROPERTIES {
            let _ = reply.send(Err(BrokerError::MessageIllegal(format!(
                "the half message's properties ({} bytes with the broker's) exceed the maximum {MAX_PROPERTIES}",
                half.properties.len()
            ))));
            return;
        }
        let stored = StoredHalf {
            group: producer_group,
            topic,
            queue_id,
            uniq_key: half.uniq_key.clone(),
            checks: 0,
            next_check_ms: self.first_check(&half.properties, now),
            polled,
        };
        let state = match stored.encode() {
            Ok(s) => s,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let committed_form = PreparedMessage {
            properties: committed_props,
            sys_flag: (half.sys_flag & !SYS_FLAG_TRANSACTION_MASK) | SYS_FLAG_TRANSACTION_COMMIT,
            ..half.clone()
        };
        // The half record itself carries no transaction bits (Apache resets them too).
        half.sys_flag &= !SYS_FLAG_TRANSACTION_MASK;
        let record = encode_record(HALF_TOPIC, 0, 0, &half, now, self.store_host);
        let rx = match self.writer.try_submit(AppendBatch {
            records: vec![AppendRecord {
                record,
                cq: None,
                timer: None,
                // Traces find a half message by its id while it is pending, and after.
                index_keys: vec![rocktor_storage::keys::index_prefix(
                    rocktor_storage::keys::HELD_TOPIC_ID,
                    &half.uniq_key,
                )],
                txn: Some(state),
            }],
            ..Default::default()
        }) {
            Ok(rx) => rx,
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                return;
            }
        };
        let written = async move {
            crate::error::written(rx.await)?
                .seqs
                .first()
                .copied()
                .ok_or_else(|| BrokerError::Storage("no sequence for the half message".into()))
        };
        ctx.spawn(written.into_actor(self).map(move |r, act, _| {
            if let Ok(seq) = r {
                let size = cached_size(&committed_form);
                let committed_form = (act.cached_bytes + size <= CACHE_BUDGET).then(|| {
                    act.cached_bytes += size;
                    committed_form
                });
                act.due.insert((stored.next_check_ms, seq));
                act.pending.insert(
                    seq,
                    Half {
                        stored,
                        sender,
                        ending: false,
                        committed_form,
                    },
                );
                metrics::counter!("rocktor_transaction_half_total").increment(1);
                act.publish_gauge();
            }
            let _ = reply.send(r);
        }));
    }

    fn end(&mut self, msg: EndTransaction, reply: Reply<()>, ctx: &mut Context<Self>) {
        let seq = msg.commit_log_offset;
        let Some(h) = self.pending.get_mut(&seq) else {
            // Already committed or rolled back (a repeated or late outcome), or never ours.
            tracing::debug!(seq, "END_TRANSACTION for no pending half message; ignored");
            let _ = reply.send(Ok(()));
            return;
        };
        // A polled half message's producer never named its group when it published.
        if !h.stored.polled && h.stored.group != msg.producer_group {
            let _ = reply.send(Err(BrokerError::TransactionMismatch(format!(
                "the producer group wrong: the half message belongs to {}, not {}",
                h.stored.group, msg.producer_group
            ))));
            return;
        }
        if msg.tran_state_offset != seq {
            let _ = reply.send(Err(BrokerError::TransactionMismatch(format!(
                "the transaction state table offset wrong: {} for the half message at {seq}",
                msg.tran_state_offset
            ))));
            return;
        }
        if h.ending {
            let _ = reply.send(Ok(()));
            return;
        }
        h.ending = true;
        let next = h.stored.next_check_ms;
        self.due.remove(&(next, seq));
        self.poll_ready.remove(&seq);
        let fut: std::pin::Pin<Box<dyn std::future::Future<Output = _>>> = if msg.commit {
            let form = h.committed_form.clone();
            let dest = (h.stored.topic.clone(), h.stored.queue_id);
            Box::pin(self.commit(seq, form, dest))
        } else {
            Box::pin(self.rollback(seq))
        };
        let done = if msg.commit {
            "rocktor_transaction_committed_total"
        } else {
            "rocktor_transaction_rolled_back_total"
        };
        ctx.spawn(fut.into_actor(self).map(move |r, act, _| {
            act.settle(seq, &r, "writing a transaction outcome", done, None);
            let _ = reply.send(r);
        }));
    }

    /// What writing an end (an outcome, or the move past the check maximum) came to: once
    /// written the half message is forgotten; with its record unreadable it is dropped;
    /// otherwise it is pending again (checked after `retry_after_ms` when given).
    fn settle(
        &mut self,
        seq: u64,
        r: &Result<(), BrokerError>,
        what: &'static str,
        done_counter: &'static str,
        retry_after_ms: Option<i64>,
    ) {
        match r {
            Ok(()) => {
                self.forget(seq);
                metrics::counter!(done_counter).increment(1);
            }
            Err(BrokerError::NotFound(e)) => {
                tracing::error!(seq, error = %e, "{what}: the half message is unreadable; dropping it");
                self.drop_unreadable(seq);
            }
            Err(e) => {
                tracing::warn!(seq, error = %e, "{what} failed; the half message stays pending");
                if let (Some(after), Some(h)) = (retry_after_ms, self.pending.get_mut(&seq)) {
                    h.stored.next_check_ms = (self.clock)().saturating_add(after);
                }
                self.reopen(seq);
            }
        }
    }

    /// Appends the committed form to the real queue, deleting the `txn` state in the same write.
    fn commit(
        &self,
        seq: u64,
        form: Option<PreparedMessage>,
        (topic, queue_id): (String, u32),
    ) -> impl std::future::Future<Output = Result<(), BrokerError>> {
        let (store, registry, store_host) =
            (self.store.clone(), self.registry.clone(), self.store_host);
        async move {
            let message = match form {
                Some(m) => m,
                None => committed_form_of(&read_half(&store, seq).await?)?,
            };
            let queue = registry
                .load()
                .topics
                .get(&topic)
                .and_then(|t| t.queues.get(queue_id as usize).cloned());
            let Some(queue) = queue else {
                return Err(BrokerError::TopicNotExist(topic));
            };
            let mut append = Append::new(vec![message], store_host);
            append
                .delete_with
                .push((cf::TXN, keys::txn_key(seq).to_vec()));
            topic_queue::append(&queue, append).await.map(|_| ())
        }
    }

    /// Deletes the `txn` state. The half record stays in `log` for retention to remove: deleting
    /// the newest record would let a restart hand its sequence out again.
    fn rollback(&self, seq: u64) -> impl std::future::Future<Output = Result<(), BrokerError>> {
        let rx = self.writer.try_submit(AppendBatch {
            deletes: vec![(cf::TXN, keys::txn_key(seq).to_vec())],
            ..Default::default()
        });
        async move { crate::error::written(rx?.await).map(|_| ()) }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.checking {
            return;
        }
        let now = (self.clock)();
        let due: Vec<(i64, u64)> = self
            .due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(CHECKS_PER_TICK)
            .copied()
            .collect();
        if due.is_empty() {
            return;
        }
        let mut asks = Vec::new();
        let mut exhausted = Vec::new();
        let mut updates = AppendBatch::default();
        for (at, seq) in due {
            self.due.remove(&(at, seq));
            let Some(h) = self.pending.get_mut(&seq) else {
                continue;
            };
            let max = if h.stored.polled {
                self.settings.poll_max_checks
            } else {
                self.settings.max_checks
            };
            if h.stored.checks >= max {
                h.ending = true;
                self.poll_ready.remove(&seq);
                exhausted.push(seq);
                continue;
            }
            if h.stored.polled {
                // Counted when its producer polls for it.
                self.poll_ready.insert(seq);
                continue;
            }
            h.stored.checks += 1;
            h.stored.next_check_ms = now.saturating_add(self.settings.check_interval_ms);
            self.due.insert((h.stored.next_check_ms, seq));
            if let Ok(v) = h.stored.encode() {
                updates.puts.push((cf::TXN, keys::txn_key(seq).to_vec(), v));
            }
            asks.push((seq, h.stored.clone(), h.sender));
        }
        if !updates.puts.is_empty() {
            // Unawaited: a lost count only repeats a check after a restart.
            drop(self.writer.try_submit(updates));
        }
        self.checking = true;
        let ask = self.ask_producers(asks);
        let moved = self.move_exhausted(exhausted);
        let work = async move {
            let asked = ask.await;
            (asked, moved.await)
        };
        ctx.spawn(
            work.into_actor(self)
                .map(move |((skipped, unreadable), moved), act, _| {
                    act.checking = false;
                    for seq in skipped {
                        // Over the tick's byte budget: not asked, so not counted; next tick.
                        if let Some(h) = act.pending.get_mut(&seq).filter(|h| !h.ending) {
                            act.due.remove(&(h.stored.next_check_ms, seq));
                            h.stored.checks = h.stored.checks.saturating_sub(1);
                            h.stored.next_check_ms = now;
                            act.due.insert((now, seq));
                        }
                    }
                    for seq in unreadable {
                        act.drop_unreadable(seq);
                    }
                    let interval = act.settings.check_interval_ms;
                    for (seq, r) in moved {
                        act.settle(
                            seq,
                            &r,
                            "moving a half message past its check maximum",
                            "rocktor_transaction_check_max_total",
                            Some(interval),
                        );
                    }
                }),
        );
    }

    /// Sends CHECK_TRANSACTION_STATE for each half message to one live producer of its group.
    /// Reads go in small chunks and stop at `CHECK_BYTES` of bodies per tick (so one tick can
    /// neither hold much memory nor flood a producer's connection); answers the half messages
    /// left unasked for the next tick, and those whose record is unreadable.
    fn ask_producers(
        &self,
        asks: Vec<(u64, StoredHalf, Option<u64>)>,
    ) -> impl std::future::Future<Output = (Vec<u64>, Vec<u64>)> {
        let (store, producers, store_host, broker_name) = (
            self.store.clone(),
            self.producers.clone(),
            self.store_host,
            self.broker_name.clone(),
        );
        async move {
            let (mut skipped, mut unreadable) = (Vec::new(), Vec::new());
            let mut bytes = 0usize;
            let mut rest = asks.into_iter().peekable();
            while rest.peek().is_some() {
                if bytes >= CHECK_BYTES {
                    skipped.extend(rest.map(|(s, _, _)| s));
                    break;
                }
                let chunk: Vec<_> = rest.by_ref().take(16).collect();
                let seqs: Vec<u64> = chunk.iter().map(|(s, _, _)| *s).collect();
                let records = read_halves(&store, seqs).await;
                for ((seq, state, sender), rec) in chunk.into_iter().zip(records) {
                    let rec = match rec {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(seq, error = %e, "cannot read a half message to check it; dropping it");
                            unreadable.push(seq);
                            continue;
                        }
                    };
                    bytes += rec.body.len() + rec.properties.len();
                    metrics::counter!("rocktor_transaction_checks_total").increment(1);
                    let channel = producers
                        .send(FindProducer {
                            group: state.group.clone(),
                            prefer: sender,
                        })
                        .await
                        .ok()
                        .flatten();
                    let Some(channel) = channel else {
                        tracing::warn!(seq, group = %state.group, "no live producer of the group to check a half message with");
                        continue;
                    };
                    // The check count goes along when it fits the record's properties.
                    let with_count = properties::with(
                        &properties::without(&rec.properties, &[PROP_CHECK_TIMES]),
                        PROP_CHECK_TIMES,
                        &state.checks.to_string(),
                    );
                    let props = if with_count.len() <= MAX_PROPERTIES {
                        with_count
                    } else {
                        rec.properties.clone()
                    };
                    let body =
                        encode_as(&rec, &state.topic, state.queue_id, seq, &props, store_host);
                    channel.check_transaction_state(
                        &TransactionCheck {
                            topic: state.topic.clone(),
                            tran_state_offset: seq,
                            commit_log_offset: seq,
                            msg_id: state.uniq_key.clone(),
                            transaction_id: state.uniq_key.clone(),
                            store_host,
                            broker_name: broker_name.clone(),
                        },
                        body,
                    );
                }
            }
            (skipped, unreadable)
        }
    }

    /// Appends half messages past the check maximum to `TRANS_CHECK_MAX_TIME_TOPIC`, deleting
    /// their `txn` state in the same write.
    fn move_exhausted(
        &self,
        seqs: Vec<u64>,
    ) -> impl std::future::Future<Output = Vec<(u64, Result<(), BrokerError>)>> {
        let (store, registry, broker, store_host) = (
            self.store.clone(),
            self.registry.clone(),
            self.broker.clone(),
            self.store_host,
        );
        async move {
            if seqs.is_empty() {
                return Vec::new();
            }
            let queue = match check_max_queue(&registry, &broker).await {
                Ok(q) => q,
                Err(e) => return seqs.into_iter().map(|s| (s, Err(e.clone()))).collect(),
            };
            let records = read_halves(&store, seqs.clone()).await;
            let mut out = Vec::with_capacity(seqs.len());
            for (seq, rec) in seqs.into_iter().zip(records) {
                let r = async {
                    let rec = rec?;
                    let m = from_record(&rec, rec.properties.clone())?;
                    let mut append = Append::new(vec![m], store_host);
                    append
                        .delete_with
                        .push((cf::TXN, keys::txn_key(seq).to_vec()));
                    topic_queue::append(&queue, append).await.map(|_| ())
                }
                .await;
                out.push((seq, r));
            }
            out
        }
    }
}

/// What a cached committed form costs: body, properties and the rest of the message.
fn cached_size(m: &PreparedMessage) -> usize {
    m.body.len() + m.properties.len() + m.uniq_key.len() + 256
}

/// The only queue of `TRANS_CHECK_MAX_TIME_TOPIC`, created on first use.
async fn check_max_queue(
    registry: &ArcSwap<Registry>,
    broker: &Addr<BrokerActor>,
) -> Result<Addr<topic_queue::TopicQueue>, BrokerError> {
    let existing = registry.load().topics.get(CHECK_MAX_TOPIC).cloned();
    let topic = match existing {
        Some(t) => t,
        None => {
            broker
                .send(CreateTopic {
                    spec: TopicSpec::single_queue(CHECK_MAX_TOPIC),
                    only_if_absent: true,
                    start_offsets: Vec::new(),
                })
                .await??
        }
    };
    topic
        .queues
        .first()
        .cloned()
        .ok_or_else(|| BrokerError::TopicNotExist(CHECK_MAX_TOPIC.into()))
}

async fn read_half(store: &Store, seq: u64) -> Result<record::Record, BrokerError> {
    read_halves(store, vec![seq])
        .await
        .pop()
        .unwrap_or_else(|| Err(BrokerError::Storage("no half message read".into())))
}

/// Reads and decodes half records, one result per sequence, on the blocking pool.
async fn read_halves(store: &Store, seqs: Vec<u64>) -> Vec<Result<record::Record, BrokerError>> {
    let store = store.clone();
    let n = seqs.len();
    let read = tokio::task::spawn_blocking(move || {
        seqs.into_iter()
            .map(|seq| {
                let bytes = store
                    .read_record(seq)
                    .map_err(BrokerError::from)?
                    .ok_or_else(|| BrokerError::NotFound(format!("no half message at {seq}")))?;
                record::decode(&bytes).map(|(r, _)| r).map_err(|e| {
                    BrokerError::NotFound(format!("the half message at {seq} is corrupt: {}", e.0))
                })
            })
            .collect::<Vec<_>>()
    })
    .await;
    read.unwrap_or_else(|e| {
        (0..n)
            .map(|_| Err(BrokerError::Storage(format!("read task failed: {e}"))))
            .collect()
    })
}

/// A half record as its commit writes it: real topic properties gone, commit sys flag.
fn committed_form_of(rec: &record::Record) -> Result<PreparedMessage, BrokerError> {
    let props = properties::without(
        &rec.properties,
        &[PROP_TRAN_MSG, PROP_REAL_TOPIC, PROP_REAL_QID],
    );
    let mut m = from_record(rec, props)?;
    m.sys_flag = (m.sys_flag & !SYS_FLAG_TRANSACTION_MASK) | SYS_FLAG_TRANSACTION_COMMIT;
    Ok(m)
}

/// A stored record re-encoded under another topic, queue and offset (the check-back body
/// shows the producer its message as it will be delivered).
fn encode_as(
    rec: &record::Record,
    topic: &str,
    queue_id: u32,
    seq: u64,
    props: &str,
    store_host: SocketAddr,
) -> Bytes {
    let parts = record::RecordParts {
        queue_id: queue_id as i32,
        flag: rec.flag,
        queue_offset: seq as i64,
        sys_flag: rec.sys_flag,
        born_timestamp: rec.born_timestamp,
        born_host: rec.born_host,
        store_timestamp: rec.store_timestamp,
        store_host,
        reconsume_times: rec.reconsume_times,
        prepared_transaction_offset: seq as i64,
        body: &rec.body,
        topic,
        properties: props,
    };
    let mut buf = bytes::BytesMut::with_capacity(record::encoded_len(&parts));
    record::encode(&parts, &mut buf);
    record::patch_physical_offset(&mut buf, seq);
    buf.freeze()
}

impl Actor for TxnChecker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(16384);
        let store = self.store.clone();
        // Recovery first: an END_TRANSACTION waits in the mailbox until the pending halves
        // are known.
        let load = async move {
            tokio::task::spawn_blocking(move || store.txn_entries())
                .await
                .map_err(|e| BrokerError::Storage(e.to_string()))?
                .map_err(BrokerError::from)
        };
        ctx.wait(load.into_actor(self).map(|entries, act, _| match entries {
            Ok(entries) => {
                for (seq, v) in entries {
                    match rmp_serde::from_slice::<StoredHalf>(&v) {
                        Ok(stored) => {
                            act.due.insert((stored.next_check_ms, seq));
                            act.pending.insert(
                                seq,
                                Half {
                                    stored,
                                    sender: None,
                                    ending: false,
                                    committed_form: None,
                                },
                            );
                        }
                        Err(e) => {
                            tracing::warn!(seq, error = %e, "skipping an unreadable half-message state")
                        }
                    }
                }
                if !act.pending.is_empty() {
                    tracing::info!(pending = act.pending.len(), "half messages recovered");
                }
                act.publish_gauge();
            }
            Err(e) => tracing::error!(error = %e, "reading half-message states failed"),
        }));
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
    }
}

/// A half message to store for `topic`/`queue_id`.
pub struct Prepare {
    pub topic: String,
    pub queue_id: u32,
    pub message: PreparedMessage,
    pub producer_group: String,
    /// The sender's connection (its producer is asked first at check time).
    pub sender: Option<u64>,
    /// Its producer polls for checks (`PollHalves`) instead of being asked.
    pub polled: bool,
}

/// A half message handed to a polling producer for its check.
#[derive(Debug, Clone)]
pub struct PolledHalf {
    pub seq: u64,
    /// The message as of its real topic and queue (MessageExt layout).
    pub record: Bytes,
    /// Checks so far, this one included.
    pub checks: u32,
    pub stored_ms: i64,
    pub next_check_ms: i64,
}

/// Up to `max` polled half messages of `topic` due for a check; each is due again
/// `poll_interval_ms` later unless an outcome comes first. (HTTP producers publish without
/// naming their group, so polled halves are found by topic.)
pub struct PollHalves {
    pub topic: String,
    pub max: usize,
    pub reply: Reply<Vec<PolledHalf>>,
}

impl Message for PollHalves {
    type Result = ();
}

impl Handler<PollHalves> for TxnChecker {
    type Result = ();

    fn handle(&mut self, msg: PollHalves, ctx: &mut Self::Context) {
        let now = (self.clock)();
        let picked: Vec<u64> = self
            .poll_ready
            .iter()
            .copied()
            .filter(|seq| {
                self.pending
                    .get(seq)
                    .is_some_and(|h| !h.ending && h.stored.topic == msg.topic)
            })
            .take(msg.max.clamp(1, 64))
            .collect();
        let mut updates = AppendBatch::default();
        let mut states = Vec::with_capacity(picked.len());
        for seq in &picked {
            self.poll_ready.remove(seq);
            let Some(h) = self.pending.get_mut(seq) else {
                continue;
            };
            h.stored.checks += 1;
            h.stored.next_check_ms = now.saturating_add(self.settings.poll_interval_ms);
            self.due.insert((h.stored.next_check_ms, *seq));
            if let Ok(v) = h.stored.encode() {
                updates
                    .puts
                    .push((cf::TXN, keys::txn_key(*seq).to_vec(), v));
            }
            states.push((*seq, h.stored.clone()));
        }
        if !updates.puts.is_empty() {
            // Unawaited: a lost count only repeats a check after a restart.
            drop(self.writer.try_submit(updates));
        }
        metrics::counter!("rocktor_transaction_checks_total").increment(states.len() as u64);
        let (store, store_host) = (self.store.clone(), self.store_host);
        let reply = msg.reply;
        ctx.spawn(
            async move {
                let seqs = states.iter().map(|(s, _)| *s).collect();
                let records = read_halves(&store, seqs).await;
                let out = states
                    .into_iter()
                    .zip(records)
                    .filter_map(|((seq, st), rec)| {
                        let rec = rec.ok()?;
                        let stored_ms = rec.store_timestamp;
                        let record = encode_as(
                            &rec,
                            &st.topic,
                            st.queue_id,
                            seq,
                            &rec.properties,
                            store_host,
                        );
                        Some(PolledHalf {
                            seq,
                            record,
                            checks: st.checks,
                            stored_ms,
                            next_check_ms: st.next_check_ms,
                        })
                    })
                    .collect();
                let _ = reply.send(Ok(out));
            }
            .into_actor(self),
        );
    }
}

/// `Prepare`, answered with the half record's sequence through its own channel.
pub struct PrepareReply {
    pub prepare: Prepare,
    pub reply: Reply<u64>,
}

impl Message for PrepareReply {
    type Result = ();
}

impl Handler<PrepareReply> for TxnChecker {
    type Result = ();

    fn handle(&mut self, msg: PrepareReply, ctx: &mut Self::Context) {
        self.prepare(msg.prepare, msg.reply, ctx);
    }
}

/// A producer's outcome for a half message.
#[derive(Debug, Clone)]
pub struct EndTransaction {
    pub producer_group: String,
    /// Both as the send result gave them (here each is the half message's sequence).
    pub tran_state_offset: u64,
    pub commit_log_offset: u64,
    /// COMMIT (true) or ROLLBACK (false).
    pub commit: bool,
}

pub struct EndReply {
    pub end: EndTransaction,
    pub reply: Reply<()>,
}

impl Message for EndReply {
    type Result = ();
}

impl Handler<EndReply> for TxnChecker {
    type Result = ();

    fn handle(&mut self, msg: EndReply, ctx: &mut Self::Context) {
        self.end(msg.end, msg.reply, ctx);
    }
}

/// How many half messages are pending (tests).
#[cfg(test)]
pub struct PendingCount;

#[cfg(test)]
impl Message for PendingCount {
    type Result = usize;
}

#[cfg(test)]
impl Handler<PendingCount> for TxnChecker {
    type Result = usize;

    fn handle(&mut self, _: PendingCount, _: &mut Self::Context) -> usize {
        self.pending.len()
    }
}
