//! TopicQueue — one actor per (topic, queue id).
//!
//! State it owns: the next queue offset to assign, the committed offset (every offset below it
//! is durable and readable), a tail cache of recent records so consumers at the head never touch
//! RocksDB, and the long-poll pulls parked until a matching message arrives.
//!
//! Messages: `Append` (assign offsets, hand records to the group-commit writer, answer once
//! durable), `Pull` (read from the tail or, off the actor thread, from storage; park when
//! nothing is there), `StopQueue`. A queue that was not recovered at start-up (a new topic, or
//! a queue added back after a shrink) reads its bounds from the store before its first message.
//!
//! Durability: a record becomes visible to consumers, and its send is acknowledged, only after
//! the writer's batch holding it completed under the flush mode. Batches complete in order of
//! offsets. A failed batch never moves the committed offset: every later batch of the queue
//! fails with it (they are stamped with the writer's failure epoch of the oldest unfinished
//! batch), new appends are refused until they all finished, and the next append reuses the
//! offsets of the failed ones — no hole, no offset that was acknowledged twice.
//!
//! Parked pulls are indexed by what can wake them: a tag filter's pulls by tag code, the rest
//! (no filter, SQL92) in one list, so a commit only re-runs pulls its messages can satisfy.

use crate::error::BrokerError;
use crate::filter::Filter;
use crate::message::{encode_record, PreparedMessage};
use actix::prelude::*;
use bytes::Bytes;
use rocktor_storage::{
    keys, AppendBatch, AppendDone, AppendRecord, CqEntry, QueueRead, Store, Writer,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Offsets of a queue, readable without a message to the actor.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub min: AtomicU64,
    pub max: AtomicU64,
    pub last_store_time: AtomicI64,
    /// Notified whenever `max` moves (new messages are readable).
    pub arrived: tokio::sync::Notify,
}

impl QueueStats {
    pub fn min(&self) -> u64 {
        self.min.load(Ordering::Acquire)
    }
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub tail_entries: usize,
    pub tail_bytes: usize,
    /// Batches awaiting the writer before new appends are refused with SYSTEM_BUSY.
    pub max_inflight: usize,
    /// Pulls parked at once in one queue (the broker-wide and per-connection caps are the
    /// domain's, see `service::pull`); past it a pull is answered at once.
    pub max_parked: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            tail_entries: 4096,
            tail_bytes: 8 << 20,
            max_inflight: 4096,
            max_parked: 65536,
        }
    }
}

/// Append prepared messages to this queue.
pub struct Append {
    pub messages: Vec<PreparedMessage>,
    pub store_host: SocketAddr,
    /// Keys deleted in the same atomic write as the records (a delivered timer entry), so a
    /// crash can neither lose the message nor deliver it twice.
    pub delete_with: Vec<(&'static str, Vec<u8>)>,
}

#[derive(Debug, Clone)]
pub struct AppendResult {
    pub queue_id: u32,
    pub first_offset: u64,
    pub seqs: Vec<u64>,
}

impl Append {
    /// An append that deletes nothing alongside its records.
    pub fn new(messages: Vec<PreparedMessage>, store_host: SocketAddr) -> Self {
        Append {
            messages,
            store_host,
            delete_with: Vec::new(),
        }
    }
}

impl Message for Append {
    type Result = Result<AppendResult, BrokerError>;
}

#[derive(Debug, Clone)]
pub struct Pull {
    pub offset: u64,
    pub max_msgs: usize,
    pub max_bytes: usize,
    pub filter: Arc<Filter>,
    /// Long-poll: hold this long when there is nothing to return.
    pub hold: Option<Duration>,
    /// Turns true when the caller is gone (its connection closed): its storage read is skipped.
    pub caller_gone: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The caller's own share of the read budget (MiB units), so that one connection that
    /// does not read its answers cannot hold the whole broker's budget.
    pub caller_budget: Option<Arc<tokio::sync::Semaphore>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    Found,
    NoNewMessage,
    /// Entries were scanned but none passed the filter.
    NoMatchedMessage,
    OffsetMoved,
}

#[derive(Debug, Clone)]
pub struct PullOutcome {
    pub status: PullStatus,
    pub records: Vec<Bytes>,
    pub next_offset: u64,
    pub min_offset: u64,
    pub max_offset: u64,
    /// The share of the broker's read budget these records hold (storage reads): keep it
    /// until the answer is encoded, so fresh copies waiting to be sent stay bounded too.
    pub budget: Option<ReadBudget>,
    /// The pull asked to be held but the queue's parked pulls were at their cap.
    pub hold_refused: bool,
}

/// A held share of the storage-read budget; released when the last clone drops.
#[derive(Debug, Clone)]
pub struct ReadBudget(
    #[allow(dead_code)]
    Arc<(
        tokio::sync::OwnedSemaphorePermit,
        Option<tokio::sync::OwnedSemaphorePermit>,
    )>,
);

impl Message for Pull {
    type Result = Result<PullOutcome, BrokerError>;
}

/// Stop the queue (its topic was deleted).
pub struct StopQueue;

impl Message for StopQueue {
    type Result = ();
}

/// MiB of records that storage reads in flight may return, broker-wide.
const READ_BUDGET_MIB: u32 = 256;

fn read_budget() -> Arc<tokio::sync::Semaphore> {
    static BUDGET: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    BUDGET
        .get_or_init(|| Arc::new(tokio::sync::Semaphore::new(READ_BUDGET_MIB as usize)))
        .clone()
}

struct TailEntry {
    offset: u64,
    tag_hash: i64,
    record: Bytes,
}

struct InFlight {
    start: u64,
    end: u64,
    tag_hashes: Vec<i64>,
    store_time: i64,
    /// The writer's failure epoch when this batch was accepted.
    epoch: u64,
    done: Option<Option<AppendDone>>,
}

struct Parked {
    pull: Pull,
    tx: oneshot::Sender<Result<PullOutcome, BrokerError>>,
    /// The expiry timer, cancelled when the pull is answered early.
    timer: Option<SpawnHandle>,
}

impl Parked {
    fn caller_gone(&self) -> bool {
        self.tx.is_closed()
            || self
                .pull
                .caller_gone
                .as_ref()
                .is_some_and(|g| g.load(Ordering::Acquire))
    }
}

/// Tag filters with more codes than this are not indexed by tag (they wake on any arrival):
/// one subscription can carry thousands of codes.
const MAX_INDEXED_TAGS: usize = 32;

/// Parked pulls by id, and which arrivals can wake them.
#[derive(Default)]
struct ParkedPulls {
    by_id: HashMap<u64, Parked>,
    /// Tag-filtered pulls by tag code.
    by_tag: HashMap<i32, HashSet<u64>>,
    /// Pulls any arrival may satisfy (no filter, SQL92, many tags).
    others: HashSet<u64>,
}

fn indexed_tags(f: &Filter) -> Option<&HashSet<i32>> {
    match f {
        Filter::Tags(codes) if codes.len() <= MAX_INDEXED_TAGS => Some(codes),
        _ => None,
    }
}

impl ParkedPulls {
    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn insert(&mut self, id: u64, p: Parked) {
        match indexed_tags(&p.pull.filter) {
            Some(codes) => {
                for c in codes {
                    self.by_tag.entry(*c).or_default().insert(id);
                }
            }
            None => {
                self.others.insert(id);
            }
        }
        self.by_id.insert(id, p);
    }

    fn remove(&mut self, id: u64) -> Option<Parked> {
        let p = self.by_id.remove(&id)?;
        match indexed_tags(&p.pull.filter) {
            Some(codes) => {
                for c in codes {
                    if let Some(ids) = self.by_tag.get_mut(c) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            self.by_tag.remove(c);
                        }
                    }
                }
            }
            None => {
                self.others.remove(&id);
            }
        }
        Some(p)
    }

    /// The pulls that arrivals with these tag codes can wake, taken out of the index.
    fn take_woken(&mut self, tag_hashes: &[i64]) -> Vec<(u64, Parked)> {
        let mut ids: HashSet<u64> = std::mem::take(&mut self.others);
        for h in tag_hashes {
            if let Some(v) = self.by_tag.get(&(*h as i32)) {
                ids.extend(v.iter().copied());
            }
        }
        ids.into_iter()
            .filter_map(|id| self.remove(id).map(|p| (id, p)))
            .collect()
    }

    /// Drops the pulls whose callers are gone; answers how many.
    fn purge_gone(&mut self) -> usize {
        let gone: Vec<u64> = self
            .by_id
            .iter()
            .filter(|(_, p)| p.caller_gone())
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.remove(*id);
        }
        gone.len()
    }

    fn drain(&mut self) -> Vec<Parked> {
        self.by_tag.clear();
        self.others.clear();
        self.by_id.drain().map(|(_, p)| p).collect()
    }
}

enum Step {
    Ready(PullOutcome),
    Storage(Pull),
}

pub struct TopicQueue {
    topic: Arc<str>,
    topic_id: u32,
    queue_id: u32,
    store: Store,
    writer: Writer,
    stats: Arc<QueueStats>,
    limits: QueueLimits,
    next_offset: u64,
    committed: u64,
    inflight: VecDeque<InFlight>,
    tail: VecDeque<TailEntry>,
    tail_start: u64,
    tail_bytes: usize,
    parked: ParkedPulls,
    next_park_id: u64,
    /// A batch failed and later ones are still unfinished: appends are refused until they are.
    broken: bool,
    /// Bounds still to be read from the store before the first message (queues not recovered
    /// at start-up).
    load_bounds: bool,
    /// Appends received in this mailbox drain, submitted to the writer together once it ends.
    pending: Vec<AppendRecord>,
    pending_deletes: Vec<(&'static str, Vec<u8>)>,
    pending_waiters: Vec<Waiter>,
}

/// An Append waiting for its share of a writer submission.
struct Waiter {
    start: u64,
    count: usize,
    tx: oneshot::Sender<Result<AppendResult, BrokerError>>,
}

impl TopicQueue {
    #[allow(clippy::too_many_arguments)]
    /// `bounds`: what recovery read at start-up; `None` reads them from the store when the
    /// actor starts, before its first message (a queue added later, possibly over entries an
    /// earlier incarnation wrote).
    pub fn new(
        topic: Arc<str>,
        topic_id: u32,
        queue_id: u32,
        bounds: Option<rocktor_storage::QueueBounds>,
        store: Store,
        writer: Writer,
        stats: Arc<QueueStats>,
        limits: QueueLimits,
    ) -> Self {
        let load_bounds = bounds.is_none();
        let bounds = bounds.unwrap_or_default();
        stats.min.store(bounds.min, Ordering::Release);
        stats.max.store(bounds.max, Ordering::Release);
        TopicQueue {
            topic_id,
            queue_id,
            store,
            writer,
            stats,
            limits,
            next_offset: bounds.max,
            committed: bounds.max,
            inflight: VecDeque::new(),
            tail: VecDeque::new(),
            tail_start: bounds.max,
            tail_bytes: 0,
            parked: ParkedPulls::default(),
            next_park_id: 0,
            broken: false,
            load_bounds,
            pending: Vec::new(),
            pending_deletes: Vec::new(),
            pending_waiters: Vec::new(),
            topic,
        }
    }

    fn outcome(&self, status: PullStatus, next_offset: u64) -> PullOutcome {
        PullOutcome {
            status,
            records: Vec::new(),
            next_offset,
            min_offset: self.stats.min(),
            max_offset: self.committed,
            budget: None,
            hold_refused: false,
        }
    }

    /// Answers from memory when it can; says when storage has to be read.
    fn try_pull(&self, p: &Pull) -> Step {
        let (min, max) = (self.stats.min(), self.committed);
        if p.offset < min {
            return Step::Ready(self.outcome(PullStatus::OffsetMoved, min));
        }
        if p.offset == max {
            return Step::Ready(self.outcome(PullStatus::NoNewMessage, p.offset));
        }
        if p.offset > max {
            return Step::Ready(self.outcome(PullStatus::OffsetMoved, max));
        }
        if p.offset < self.tail_start {
            return Step::Storage(p.clone());
        }
        let start = self.tail.partition_point(|e| e.offset < p.offset);
        let mut out = self.outcome(PullStatus::NoMatchedMessage, max);
        let mut bytes = 0usize;
        for e in self.tail.range(start..) {
            if out.records.len() >= p.max_msgs || bytes >= p.max_bytes {
                out.next_offset = e.offset;
                break;
            }
            if p.filter.accepts_tag_hash(e.tag_hash) && p.filter.accepts_record(&e.record) {
                bytes += e.record.len();
                out.records.push(e.record.clone());
            }
        }
        if !out.records.is_empty() {
            out.status = PullStatus::Found;
        }
        Step::Ready(out)
    }

    /// Reads below the tail on the blocking pool: RocksDB I/O never runs on this thread. Reads
    /// in flight are bounded broker-wide by `READ_BUDGET_MIB` (by the bytes each may return),
    /// so pipelined pulls cannot make the broker hold unbounded fresh copies of records.
    fn read_storage(
        &self,
        p: Pull,
    ) -> impl std::future::Future<Output = Result<PullOutcome, BrokerError>> {
        let store = self.store.clone();
        let (topic_id, queue_id) = (self.topic_id, self.queue_id);
        let (min, max) = (self.stats.min(), self.committed);
        let p_filter = p.filter.clone();
        async move {
            let units = ((p.max_bytes >> 20) + 1).min(READ_BUDGET_MIB as usize) as u32;
            let gone = || {
                p.caller_gone
                    .as_ref()
                    .is_some_and(|g| g.load(Ordering::Acquire))
            };
            if gone() {
                return Err(BrokerError::ShuttingDown);
            }
            let own = match &p.caller_budget {
                Some(b) => {
                    // At most 9 units; a connection's share is at least 16 (config check).
                    Some(
                        b.clone()
                            .acquire_many_owned(units)
                            .await
                            .map_err(|_| BrokerError::ShuttingDown)?,
                    )
                }
                None => None,
            };
            let budget = read_budget()
                .acquire_many_owned(units)
                .await
                .map_err(|_| BrokerError::ShuttingDown)?;
            if gone() {
                return Err(BrokerError::ShuttingDown);
            }
            let read = tokio::task::spawn_blocking(move || {
                let filter = p.filter.clone();
                let read = QueueRead {
                    topic_id,
                    queue_id,
                    from: p.offset,
                    upto: max,
                    max_count: p.max_msgs,
                    max_bytes: p.max_bytes,
                };
                store.read_queue(&read, &|cq| filter.accepts_tag_hash(cq.tag_hash))
            })
            .await
            .map_err(|e| BrokerError::Storage(format!("read task failed: {e}")))??;
            let mut read = read;
            if p_filter.needs_record() {
                read.entries.retain(|e| p_filter.accepts_record(&e.record));
            }
            let status = if !read.entries.is_empty() {
                PullStatus::Found
            } else {
                PullStatus::NoMatchedMessage
            };
            let next_offset = if read.scanned == 0 {
                max
            } else {
                read.next_offset
            };
            Ok(PullOutcome {
                status,
                records: read.entries.into_iter().map(|e| e.record).collect(),
                next_offset,
                min_offset: min,
                max_offset: max,
                budget: Some(ReadBudget(Arc::new((budget, own)))),
                hold_refused: false,
            })
        }
    }

    fn complete(&mut self, start: u64, done: Option<AppendDone>, ctx: &mut Context<Self>) {
        if let Some(f) = self.inflight.iter_mut().find(|f| f.start == start) {
            f.done = Some(done);
        }
        let mut advanced = false;
        let mut new_tags = Vec::new();
        while self.inflight.front().is_some_and(|f| f.done.is_some()) {
            let Some(f) = self.inflight.pop_front() else {
                break;
            };
            match f.done {
                Some(Some(d)) => {
                    if f.start != self.committed {
                        // Cannot happen while every later batch fails with an earlier one; if
                        // it does, readers skip the missing offsets.
                        tracing::error!(topic = %self.topic, queue = self.queue_id, from = self.committed, to = f.start, "offsets left unwritten by a failed batch");
                    }
                    for (i, rec) in d.records.into_iter().enumerate() {
                        self.tail_bytes += rec.len();
                        self.tail.push_back(TailEntry {
                            offset: f.start + i as u64,
                            tag_hash: f.tag_hashes.get(i).copied().unwrap_or(0),
                            record: rec,
                        });
                    }
                    new_tags.extend_from_slice(&f.tag_hashes);
                    self.stats
                        .last_store_time
                        .store(f.store_time, Ordering::Release);
                    self.committed = f.end;
                    advanced = true;
                }
                // A failed batch: nothing of it is visible and the committed offset stays.
                _ => self.broken = true,
            }
        }
        self.settle();
        while self.tail.len() > self.limits.tail_entries || self.tail_bytes > self.limits.tail_bytes
        {
            match self.tail.pop_front() {
                Some(e) => {
                    self.tail_bytes -= e.record.len();
                    self.tail_start = e.offset + 1;
                }
                None => break,
            }
        }
        if advanced {
            self.stats.max.store(self.committed, Ordering::Release);
            // Pop consumers (invisible-time consumption) wait on this, not on parked pulls.
            self.stats.arrived.notify_waiters();
            self.wake_parked(&new_tags, ctx);
        }
    }

    /// Once everything submitted has finished, the offsets of failed batches are reused and
    /// appends are taken again.
    fn settle(&mut self) {
        if self.inflight.is_empty() {
            self.next_offset = self.committed;
            self.broken = false;
        }
    }

    fn respond_later(&self, p: Parked) {
        let fut = self.read_storage(p.pull);
        actix::spawn(async move {
            let _ = p.tx.send(fut.await);
        });
    }

    /// Re-runs the parked pulls that messages with these tag codes can satisfy.
    fn wake_parked(&mut self, tag_hashes: &[i64], ctx: &mut Context<Self>) {
        for (id, mut p) in self.parked.take_woken(tag_hashes) {
            if p.caller_gone() {
                if let Some(t) = p.timer.take() {
                    ctx.cancel_future(t);
                }
                continue;
            }
            match self.try_pull(&p.pull) {
                Step::Ready(out)
                    if out.status == PullStatus::Found || out.status == PullStatus::OffsetMoved =>
                {
                    if let Some(t) = p.timer.take() {
                        ctx.cancel_future(t);
                    }
                    let _ = p.tx.send(Ok(out));
                }
                Step::Ready(out) => {
                    // Nothing matched: keep holding from past what was scanned, as Apache does.
                    // Same id: the expiry timer set when it was parked still finds it.
                    p.pull.offset = out.next_offset;
                    self.parked.insert(id, p);
                }
                Step::Storage(_) => {
                    if let Some(t) = p.timer.take() {
                        ctx.cancel_future(t);
                    }
                    self.respond_later(p)
                }
            }
        }
    }

    fn expire(&mut self, id: u64) {
        let Some(p) = self.parked.remove(id) else {
            return;
        };
        match self.try_pull(&p.pull) {
            Step::Ready(out) => {
                let _ = p.tx.send(Ok(out));
            }
            Step::Storage(_) => self.respond_later(p),
        }
    }
}

impl Actor for TopicQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(8192);
        if self.load_bounds {
            // Before any message: offsets must continue after what the store holds.
            let (store, t, q) = (self.store.clone(), self.topic_id, self.queue_id);
            let read = async move {
                tokio::task::spawn_blocking(move || store.queue_bounds(t, q))
                    .await
                    .map_err(|e| BrokerError::Storage(e.to_string()))?
                    .map_err(BrokerError::from)
            };
            read.into_actor(self)
                .map(|bounds, act, ctx| match bounds {
                    Ok(b) => {
                        act.load_bounds = false;
                        act.next_offset = b.max;
                        act.committed = b.max;
                        act.tail_start = b.max;
                        act.stats.min.store(b.min, Ordering::Release);
                        act.stats.max.store(b.max, Ordering::Release);
                    }
                    Err(e) => {
                        // Serving at offset 0 would overwrite what is stored: stop instead.
                        tracing::error!(topic = %act.topic, queue = act.queue_id, error = %e, "cannot read the queue's bounds; queue stopped");
                        ctx.stop();
                    }
                })
                .wait(ctx);
        }
    }
}

impl TopicQueue {
    /// Submits the appends of the mailbox drain that just ended as one writer batch: one
    /// submission, one wake-up of the writer and one answer back instead of one per request.
    fn submit_pending(&mut self, ctx: &mut Context<Self>) {
        let records = std::mem::take(&mut self.pending);
        let deletes = std::mem::take(&mut self.pending_deletes);
        let waiters = std::mem::take(&mut self.pending_waiters);
        if waiters.is_empty() {
            return;
        }
        if self.broken {
            // An earlier batch failed after these were accepted: they must not land past it.
            for w in waiters {
                self.complete(w.start, None, ctx);
                let _ = w.tx.send(Err(BrokerError::WriteUnavailable(
                    "a previous write failed; nothing was written".into(),
                )));
            }
            return;
        }
        // The epoch of the oldest unfinished batch: if any write failed since, this one fails
        // too instead of landing beyond the failed offsets.
        let epoch = self.inflight.front().map(|f| f.epoch);
        let rx = match self.writer.try_submit(AppendBatch {
            records,
            deletes,
            epoch,
            ..Default::default()
        }) {
            Ok(rx) => rx,
            Err(e) => {
                // Not enqueued, so nothing of it will be written: these are the newest
                // batches, give their offsets back and say so (busy is safe to retry).
                let err = BrokerError::from(e);
                if let Some(first) = waiters.first() {
                    while self.inflight.back().is_some_and(|f| f.start >= first.start) {
                        self.inflight.pop_back();
                    }
                    self.next_offset = first.start;
                }
                self.settle();
                for w in waiters {
                    let _ = w.tx.send(Err(err.clone()));
                }
                return;
            }
        };
        let queue_id = self.queue_id;
        ctx.spawn(rx.into_actor(self).map(move |res, act, ctx| {
            let mut done = crate::error::written(res);
            for w in waiters {
                let result = match &mut done {
                    Ok(d) => {
                        // Each waiter's records are the next `count` of the batch, in order.
                        let part = AppendDone {
                            seqs: d.seqs.drain(..w.count.min(d.seqs.len())).collect(),
                            records: d.records.drain(..w.count.min(d.records.len())).collect(),
                        };
                        let seqs = part.seqs.clone();
                        act.complete(w.start, Some(part), ctx);
                        Ok(AppendResult {
                            queue_id,
                            first_offset: w.start,
                            seqs,
                        })
                    }
                    Err(e) => {
                        act.complete(w.start, None, ctx);
                        Err(e.clone())
                    }
                };
                let _ = w.tx.send(result);
            }
        }));
    }
}

impl Handler<Append> for TopicQueue {
    type Result = ResponseFuture<Result<AppendResult, BrokerError>>;

    fn handle(&mut self, msg: Append, ctx: &mut Self::Context) -> Self::Result {
        if self.inflight.len() >= self.limits.max_inflight {
            return Box::pin(std::future::ready(Err(BrokerError::SystemBusy)));
        }
        if self.broken || !self.writer.is_healthy() {
            return Box::pin(std::future::ready(Err(BrokerError::WriteUnavailable(
                "the store refuses writes (a write failed); try again later".into(),
            ))));
        }
        let start = self.next_offset;
        let now = crate::now_ms();
        let mut tag_hashes = Vec::with_capacity(msg.messages.len());
        for (i, m) in msg.messages.iter().enumerate() {
            let offset = start + i as u64;
            let record = encode_record(&self.topic, self.queue_id, offset, m, now, msg.store_host);
            let mut index_keys: Vec<Vec<u8>> = m
                .keys
                .iter()
                .map(|k| keys::index_prefix(self.topic_id, k))
                .collect();
            index_keys.push(keys::index_prefix(self.topic_id, &m.uniq_key));
            self.pending.push(AppendRecord {
                record,
                cq: Some(CqEntry {
                    topic_id: self.topic_id,
                    queue_id: self.queue_id,
                    queue_offset: offset,
                    tag_hash: m.tag_hash,
                    store_time: now,
                }),
                index_keys,
                txn: None,
                timer: None,
            });
            tag_hashes.push(m.tag_hash);
        }
        self.pending_deletes.extend(msg.delete_with);
        let n = msg.messages.len();
        self.next_offset += n as u64;
        self.inflight.push_back(InFlight {
            start,
            end: start + n as u64,
            tag_hashes,
            store_time: now,
            epoch: self.writer.epoch(),
            done: None,
        });
        let (tx, rx) = oneshot::channel();
        if self.pending_waiters.is_empty() {
            // Runs after the mailbox drain that this message is part of.
            ctx.spawn(fut::ready(()).map(|_, act: &mut Self, ctx| act.submit_pending(ctx)));
        }
        self.pending_waiters.push(Waiter {
            start,
            count: n,
            tx,
        });
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(BrokerError::Storage("the queue stopped".into())))
        })
    }
}

/// An `Append` that answers through its own channel (see `reply`).
pub struct AppendReply {
    pub append: Append,
    pub reply: crate::reply::Reply<AppendResult>,
}

impl Message for AppendReply {
    type Result = ();
}

impl Handler<AppendReply> for TopicQueue {
    type Result = ();

    fn handle(&mut self, msg: AppendReply, ctx: &mut Self::Context) {
        let fut = <Self as Handler<Append>>::handle(self, msg.append, ctx);
        let reply = msg.reply;
        // A task of its own, not a future of this actor's context: actix polls every future
        // of a context each time the actor wakes, so hundreds of pending appends there would
        // make every message cost as much again.
        actix::spawn(async move {
            let _ = reply.send(fut.await);
        });
    }
}

/// Appends through `AppendReply`: busy only when nothing was enqueued.
pub async fn append(queue: &Addr<TopicQueue>, append: Append) -> Result<AppendResult, BrokerError> {
    crate::reply::call(queue, "queue", |reply| AppendReply { append, reply }).await
}

impl Handler<Pull> for TopicQueue {
    type Result = ResponseFuture<Result<PullOutcome, BrokerError>>;

    fn handle(&mut self, msg: Pull, ctx: &mut Self::Context) -> Self::Result {
        match self.try_pull(&msg) {
            Step::Ready(out) if out.status == PullStatus::NoNewMessage && msg.hold.is_some() => {
                let hold = msg.hold.unwrap_or_default();
                if self.parked.len() >= self.limits.max_parked && self.parked.purge_gone() == 0 {
                    // Full: answered at once; the domain makes the caller wait a moment.
                    return Box::pin(async move {
                        Ok(PullOutcome {
                            hold_refused: true,
                            ..out
                        })
                    });
                }
                let (tx, rx) = oneshot::channel();
                let id = self.next_park_id;
                self.next_park_id += 1;
                let timer = ctx.run_later(hold, move |act, _| act.expire(id));
                self.parked.insert(
                    id,
                    Parked {
                        pull: Pull { hold: None, ..msg },
                        tx,
                        timer: Some(timer),
                    },
                );
                Box::pin(async move { rx.await.unwrap_or(Err(BrokerError::ShuttingDown)) })
            }
            Step::Ready(out) => Box::pin(async move { Ok(out) }),
            Step::Storage(p) => Box::pin(self.read_storage(p)),
        }
    }
}

impl Handler<StopQueue> for TopicQueue {
    type Result = ();

    fn handle(&mut self, _: StopQueue, ctx: &mut Self::Context) {
        for p in self.parked.drain() {
            let _ =
                p.tx.send(Err(BrokerError::TopicNotExist(self.topic.to_string())));
        }
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{prepare, IncomingMessage};
    use rocktor_storage::FlushMode;

    fn msg(tag: &str) -> PreparedMessage {
        prepare(
            IncomingMessage {
                body: Bytes::from_static(b"hello"),
                flag: 0,
                properties: format!("TAGS\u{1}{tag}\u{2}"),
                sys_flag: 0,
                born_timestamp: 1,
                born_host: "127.0.0.1:1".parse().unwrap(),
                reconsume_times: 0,
            },
            &crate::message::Stamp::TEST,
            "127.0.0.1:10911".parse().unwrap(),
        )
        .unwrap()
    }

    /// Starts a queue on a fresh store; the store is returned so the test can stop RocksDB's
    /// background threads before the process exits (exiting with them running can crash).
    fn start(
        dir: &std::path::Path,
        limits: QueueLimits,
    ) -> (Addr<TopicQueue>, Arc<QueueStats>, Store, Writer) {
        let store = Store::open(dir, FlushMode::Async).unwrap();
        let bounds = store.queue_bounds(1, 0).unwrap();
        let next = store.recover().unwrap().next_seq;
        let writer = store.start_writer(next).unwrap();
        let stats = Arc::new(QueueStats::default());
        let q = TopicQueue::new(
            "T".into(),
            1,
            0,
            Some(bounds),
            store.clone(),
            writer.clone(),
            stats.clone(),
            limits,
        );
        (q.start(), stats, store, writer)
    }

    /// Joins the writer thread and stops RocksDB's threads, so the test process never exits
    /// while they still use the database.
    fn shut(store: Store, writer: Writer) {
        writer.close();
        store.stop_background_work();
    }

    fn pull(offset: u64, hold: Option<Duration>, filter: Filter) -> Pull {
        Pull {
            offset,
            max_msgs: 32,
            max_bytes: 1 << 20,
            filter: Arc::new(filter),
            hold,
            caller_gone: None,
            caller_budget: None,
        }
    }

    #[actix::test]
    async fn append_then_pull_from_tail_and_storage() {
        let dir = tempfile::tempdir().unwrap();
        let limits = QueueLimits {
            tail_entries: 2,
            ..Default::default()
        };
        let (q, stats, store, writer) = start(dir.path(), limits);
        for tag in ["A", "B", "A", "B"] {
            let r = q
                .send(Append::new(
                    vec![msg(tag)],
                    "127.0.0.1:10911".parse().unwrap(),
                ))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(r.seqs.len(), 1);
        }
        assert_eq!(stats.max(), 4);
        // offset 0 is below the 2-entry tail: read from storage
        let out = q.send(pull(0, None, Filter::All)).await.unwrap().unwrap();
        assert_eq!(out.status, PullStatus::Found);
        assert_eq!(out.records.len(), 4);
        assert_eq!(out.next_offset, 4);
        // from the tail, filtered
        let out = q
            .send(pull(2, None, Filter::from_tag_expression("A")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.records.len(), 1);
        let (rec, _) = rocktor_storage::record::decode(&out.records[0]).unwrap();
        assert_eq!(rec.queue_offset, 2);
        // status table
        assert_eq!(
            q.send(pull(4, None, Filter::All))
                .await
                .unwrap()
                .unwrap()
                .status,
            PullStatus::NoNewMessage
        );
        let moved = q.send(pull(9, None, Filter::All)).await.unwrap().unwrap();
        assert_eq!(
            (moved.status, moved.next_offset),
            (PullStatus::OffsetMoved, 4)
        );
        shut(store, writer);
    }

    #[actix::test]
    async fn keys_deleted_with_an_append_are_gone_once_it_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let (q, _, store, writer) = start(dir.path(), QueueLimits::default());
        let key = b"due-entry".to_vec();
        writer
            .submit(rocktor_storage::AppendBatch::default().put(
                rocktor_storage::cf::META,
                key.clone(),
                b"x".to_vec(),
            ))
            .await
            .unwrap()
            .unwrap();
        assert!(store.get_meta(&key).unwrap().is_some());
        q.send(Append {
            messages: vec![msg("A")],
            store_host: "127.0.0.1:10911".parse().unwrap(),
            delete_with: vec![(rocktor_storage::cf::META, key.clone())],
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(store.get_meta(&key).unwrap(), None);
        shut(store, writer);
    }

    #[actix::test]
    async fn long_poll_wakes_on_matching_arrival_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let (q, _, store, writer) = start(dir.path(), QueueLimits::default());
        let waiting = q.send(pull(
            0,
            Some(Duration::from_secs(10)),
            Filter::from_tag_expression("A"),
        ));
        let q2 = q.clone();
        let sender = async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let host: SocketAddr = "127.0.0.1:10911".parse().unwrap();
            q2.send(Append::new(vec![msg("B")], host))
                .await
                .unwrap()
                .unwrap();
            q2.send(Append::new(vec![msg("A")], host))
                .await
                .unwrap()
                .unwrap();
        };
        let started = std::time::Instant::now();
        let (out, _) = tokio::join!(waiting, sender);
        let out = out.unwrap().unwrap();
        assert_eq!(out.status, PullStatus::Found);
        assert_eq!(out.records.len(), 1);
        assert!(started.elapsed() < Duration::from_secs(5));
        // nothing new: answered when the hold ends
        let started = std::time::Instant::now();
        let out = q
            .send(pull(2, Some(Duration::from_millis(200)), Filter::All))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.status, PullStatus::NoNewMessage);
        assert!(started.elapsed() >= Duration::from_millis(190));
        shut(store, writer);
    }

    /// A failed write never moves the committed offset; the queue refuses appends while the
    /// store does, and the next append after recovery takes the failed batch's offsets.
    #[actix::test]
    async fn a_failed_write_leaves_no_hole() {
        let dir = tempfile::tempdir().unwrap();
        let (q, stats, store, writer) = start(dir.path(), QueueLimits::default());
        let host: SocketAddr = "127.0.0.1:10911".parse().unwrap();
        let r = q
            .send(Append::new(vec![msg("A")], host))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.first_offset, 0);
        fail::cfg(
            "storage::write",
            &format!("return({})", dir.path().display()),
        )
        .unwrap();
        let failed = q
            .send(Append::new(vec![msg("B"), msg("B")], host))
            .await
            .unwrap();
        assert!(
            matches!(failed, Err(BrokerError::WriteUnavailable(_))),
            "{failed:?}"
        );
        assert_eq!(stats.max(), 1, "the committed offset did not move");
        let refused = q.send(Append::new(vec![msg("C")], host)).await.unwrap();
        assert!(
            refused.is_err(),
            "appends refused while the store refuses writes"
        );
        fail::remove("storage::write");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let r = loop {
            match q.send(Append::new(vec![msg("D")], host)).await.unwrap() {
                Ok(r) => break r,
                Err(_) => {
                    assert!(std::time::Instant::now() < deadline, "never writable again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert_eq!(r.first_offset, 1, "the failed batch's offsets are reused");
        let out = q.send(pull(0, None, Filter::All)).await.unwrap().unwrap();
        let offsets: Vec<i64> = out
            .records
            .iter()
            .map(|b| rocktor_storage::record::decode(b).unwrap().0.queue_offset)
            .collect();
        assert_eq!(offsets, vec![0, 1]);
        shut(store, writer);
    }
}
