//! TopicQueue — one actor per (topic, queue id).
//!
//! State it owns: the next queue offset to assign, the committed offset (every offset below it
//! is durable and readable), a tail cache of recent records so consumers at the head never touch
//! RocksDB, and the long-poll pulls parked until a matching message arrives.
//!
//! Messages: `Append` (assign offsets, hand records to the group-commit writer, answer once
//! durable), `Pull` (read from the tail or, off the actor thread, from storage; park when
//! nothing is there), `StopQueue`.
//!
//! Durability: a record becomes visible to consumers, and its send is acknowledged, only after
//! the writer's batch holding it completed under the flush mode. Batches complete in order of
//! offsets; a failed batch leaves a hole that readers skip.

use crate::error::BrokerError;
use crate::filter::Filter;
use crate::message::{encode_record, PreparedMessage};
use actix::prelude::*;
use bytes::Bytes;
use rocktor_storage::{
    keys, AppendBatch, AppendDone, AppendRecord, CqEntry, QueueRead, Store, Writer,
};
use std::collections::VecDeque;
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
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            tail_entries: 4096,
            tail_bytes: 8 << 20,
            max_inflight: 4096,
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
}

impl Message for Pull {
    type Result = Result<PullOutcome, BrokerError>;
}

/// Stop the queue (its topic was deleted).
pub struct StopQueue;

impl Message for StopQueue {
    type Result = ();
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
    done: Option<Option<AppendDone>>,
}

struct Parked {
    id: u64,
    pull: Pull,
    tx: oneshot::Sender<Result<PullOutcome, BrokerError>>,
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
    min_offset: u64,
    inflight: VecDeque<InFlight>,
    tail: VecDeque<TailEntry>,
    tail_start: u64,
    tail_bytes: usize,
    parked: Vec<Parked>,
    next_park_id: u64,
    /// Appends received in this mailbox drain, submitted to the writer together once it ends.
    pending: Vec<AppendRecord>,
    pending_deletes: Vec<(&'static str, Vec<u8>)>,
    pending_waiters: Vec<Waiter>,
    committed_gauge: metrics::Gauge,
}

/// An Append waiting for its share of a writer submission.
struct Waiter {
    start: u64,
    count: usize,
    tx: oneshot::Sender<Result<AppendResult, BrokerError>>,
}

impl TopicQueue {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topic: Arc<str>,
        topic_id: u32,
        queue_id: u32,
        bounds: rocktor_storage::QueueBounds,
        store: Store,
        writer: Writer,
        stats: Arc<QueueStats>,
        limits: QueueLimits,
    ) -> Self {
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
            min_offset: bounds.min,
            inflight: VecDeque::new(),
            tail: VecDeque::new(),
            tail_start: bounds.max,
            tail_bytes: 0,
            parked: Vec::new(),
            next_park_id: 0,
            pending: Vec::new(),
            pending_deletes: Vec::new(),
            pending_waiters: Vec::new(),
            committed_gauge: metrics::gauge!("rocktor_queue_committed_offset", "topic" => topic.to_string(), "queue" => queue_id.to_string()),
            topic,
        }
    }

    fn outcome(&self, status: PullStatus, next_offset: u64) -> PullOutcome {
        PullOutcome {
            status,
            records: Vec::new(),
            next_offset,
            min_offset: self.min_offset,
            max_offset: self.committed,
        }
    }

    /// Answers from memory when it can; says when storage has to be read.
    fn try_pull(&self, p: &Pull) -> Step {
        let (min, max) = (self.min_offset, self.committed);
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

    /// Reads below the tail on the blocking pool: RocksDB I/O never runs on this thread.
    fn read_storage(
        &self,
        p: Pull,
    ) -> impl std::future::Future<Output = Result<PullOutcome, BrokerError>> {
        let store = self.store.clone();
        let (topic_id, queue_id) = (self.topic_id, self.queue_id);
        let (min, max) = (self.min_offset, self.committed);
        let p_filter = p.filter.clone();
        async move {
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
            })
        }
    }

    fn complete(&mut self, start: u64, done: Option<AppendDone>) {
        if let Some(f) = self.inflight.iter_mut().find(|f| f.start == start) {
            f.done = Some(done);
        }
        let mut advanced = false;
        while self.inflight.front().is_some_and(|f| f.done.is_some()) {
            let Some(f) = self.inflight.pop_front() else {
                break;
            };
            if let Some(Some(d)) = f.done {
                for (i, rec) in d.records.into_iter().enumerate() {
                    self.tail_bytes += rec.len();
                    self.tail.push_back(TailEntry {
                        offset: f.start + i as u64,
                        tag_hash: f.tag_hashes.get(i).copied().unwrap_or(0),
                        record: rec,
                    });
                }
                self.stats
                    .last_store_time
                    .store(f.store_time, Ordering::Release);
            }
            self.committed = f.end;
            advanced = true;
        }
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
            self.committed_gauge.set(self.committed as f64);
            self.wake_parked();
        }
    }

    fn respond_later(&self, p: Parked) {
        let fut = self.read_storage(p.pull);
        actix::spawn(async move {
            let _ = p.tx.send(fut.await);
        });
    }

    /// Re-runs parked pulls after new messages became visible.
    fn wake_parked(&mut self) {
        let parked = std::mem::take(&mut self.parked);
        for mut p in parked {
            if p.tx.is_closed() {
                continue;
            }
            match self.try_pull(&p.pull) {
                Step::Ready(out)
                    if out.status == PullStatus::Found || out.status == PullStatus::OffsetMoved =>
                {
                    let _ = p.tx.send(Ok(out));
                }
                Step::Ready(out) => {
                    // Nothing matched: keep holding from past what was scanned, as Apache does.
                    p.pull.offset = out.next_offset;
                    self.parked.push(p);
                }
                Step::Storage(_) => self.respond_later(p),
            }
        }
    }

    fn expire(&mut self, id: u64) {
        let Some(pos) = self.parked.iter().position(|p| p.id == id) else {
            return;
        };
        let p = self.parked.swap_remove(pos);
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
        let rx = self.writer.submit(AppendBatch {
            records,
            deletes,
            ..Default::default()
        });
        let queue_id = self.queue_id;
        ctx.spawn(rx.into_actor(self).map(move |res, act, _ctx| {
            let mut done = match res {
                Ok(Ok(done)) => Ok(done),
                Ok(Err(e)) => Err(BrokerError::from(e)),
                Err(_) => Err(BrokerError::Storage("the storage writer stopped".into())),
            };
            for w in waiters {
                let result = match &mut done {
                    Ok(d) => {
                        // Each waiter's records are the next `count` of the batch, in order.
                        let part = AppendDone {
                            seqs: d.seqs.drain(..w.count.min(d.seqs.len())).collect(),
                            records: d.records.drain(..w.count.min(d.records.len())).collect(),
                        };
                        let seqs = part.seqs.clone();
                        act.complete(w.start, Some(part));
                        Ok(AppendResult {
                            queue_id,
                            first_offset: w.start,
                            seqs,
                        })
                    }
                    Err(e) => {
                        act.complete(w.start, None);
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

impl Handler<Pull> for TopicQueue {
    type Result = ResponseFuture<Result<PullOutcome, BrokerError>>;

    fn handle(&mut self, msg: Pull, ctx: &mut Self::Context) -> Self::Result {
        match self.try_pull(&msg) {
            Step::Ready(out) if out.status == PullStatus::NoNewMessage && msg.hold.is_some() => {
                let hold = msg.hold.unwrap_or_default();
                let (tx, rx) = oneshot::channel();
                let id = self.next_park_id;
                self.next_park_id += 1;
                self.parked.push(Parked {
                    id,
                    pull: Pull { hold: None, ..msg },
                    tx,
                });
                ctx.run_later(hold, move |act, _| act.expire(id));
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
            "C",
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
            bounds,
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
}
