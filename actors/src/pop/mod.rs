//! PopState — invisible-time consumption of one topic by one consumer group: one actor per
//! (group, topic), beside the group's ConsumerGroup. The HTTP messaging API, Apache 5's
//! remoting POP codes and (next) gRPC consumers all use it through `service::pop`; it knows
//! none of their wire formats.
//!
//! State it owns, per queue: the pop cursor (every offset below it was handed out once, or
//! skipped by a filter), the deliveries in flight (offset → sequence, attempt, deadline, first
//! delivery time), and whether a read is under way; the receives waiting for messages.
//!
//! Messages: `Receive` (hand out up to N messages, invisible until a deadline; expired ones
//! first, redelivered with the attempt raised and a new handle; past the maximum of attempts
//! to `%DLQ%<group>`; waits up to its time for new messages, woken by the queues' `arrived`
//! notifications), `Ack` (per handle), `ChangeInvisible`, `ForwardToDlq` (a consumer gives a
//! message up), `IsInflight` (delivery status).
//! Ordered receives take a queue only while none of its messages is in flight, so a queue's
//! (and so a message group's or a sharding key's) next batch waits for the previous one to be
//! settled.
//!
//! Durability: a delivery and the cursor move are written (`pop` column family) before the
//! receive is answered; an ack deletes the delivery before it is answered; a redelivery
//! rewrites it; a move to the DLQ deletes it in the same write batch as the DLQ append. After
//! a crash an unacked message is delivered again (from its stored delivery, or from the
//! cursor), an acked one never. The lowest unsettled offset of each queue is committed as the
//! group's offset, so lag and delivery status read as for pull consumers.

pub mod handle;

use crate::error::{written, BrokerError};
use crate::filter::Filter;
use crate::reply::Reply;
use crate::service::BrokerContext;
use crate::topic_queue::{Pull, PullStatus, QueueStats, TopicQueue};
use actix::prelude::*;
use bytes::Bytes;
pub use handle::{HandleError, HandleKey, ReceiptHandle};
use rocktor_storage::{cf, keys, AppendBatch};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Receives one actor keeps waiting; past it a receive is answered at once (empty).
const MAX_WAITING: usize = 4096;
/// Messages one receive takes at most.
pub const MAX_BATCH: usize = 32;
const TICK: Duration = Duration::from_millis(200);
const PULL_WAIT: Duration = Duration::from_secs(3);
/// A delivery whose move to the DLQ failed is tried again after this long.
const DLQ_RETRY_MS: i64 = 5_000;

/// One message handed out.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stored record (MessageExt layout).
    pub record: Bytes,
    pub queue_id: u32,
    pub offset: u64,
    pub seq: u64,
    /// 1 for the first delivery.
    pub attempt: u32,
    pub handle: String,
    /// Invisible until then (ms).
    pub deadline_ms: i64,
    /// When this message was first handed out (ms).
    pub first_ms: i64,
}

/// A delivery in flight, as stored: sequence, attempt, deadline, first delivery (28 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    seq: u64,
    attempt: u32,
    deadline_ms: i64,
    first_ms: i64,
}

impl InFlight {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(28);
        v.extend_from_slice(&self.seq.to_be_bytes());
        v.extend_from_slice(&self.attempt.to_be_bytes());
        v.extend_from_slice(&self.deadline_ms.to_be_bytes());
        v.extend_from_slice(&self.first_ms.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<InFlight> {
        if v.len() != 28 {
            return None;
        }
        Some(InFlight {
            seq: u64::from_be_bytes(v[0..8].try_into().ok()?),
            attempt: u32::from_be_bytes(v[8..12].try_into().ok()?),
            deadline_ms: i64::from_be_bytes(v[12..20].try_into().ok()?),
            first_ms: i64::from_be_bytes(v[20..28].try_into().ok()?),
        })
    }
}

struct QueueState {
    addr: Addr<TopicQueue>,
    stats: Arc<QueueStats>,
    cursor: u64,
    /// The cursor as last written.
    stored_cursor: Option<u64>,
    inflight: BTreeMap<u64, InFlight>,
    busy: bool,
    /// The lowest unsettled offset last committed as the group's offset.
    committed_low: Option<u64>,
}

/// Hand out up to `max` messages, invisible for `invisible_ms`.
pub struct Receive {
    pub max: usize,
    pub invisible_ms: i64,
    pub filter: Arc<Filter>,
    /// How long to wait for a message when there is none (zero: answer at once).
    pub wait: Duration,
    /// A queue's next batch only once none of its messages is in flight.
    pub order: bool,
    /// Deliveries of one message at most; the next goes to the DLQ instead.
    pub max_attempts: u32,
    /// Only this queue (a remoting POP of one queue); None: any.
    pub queue: Option<u32>,
    pub reply: Reply<Vec<Delivery>>,
}

impl Message for Receive {
    type Result = ();
}

struct Waiting {
    r: Receive,
    until: Instant,
}

/// What names a delivery to settle or change: a receipt handle (HTTP, gRPC), or a queue, an
/// offset and the delivery's deadline (Apache 5's remoting POP codes, whose clients build
/// their receipt from the pop answer's popTime and invisibleTime).
#[derive(Debug, Clone)]
pub enum AckTarget {
    Handle(String),
    Delivery {
        queue_id: u32,
        offset: u64,
        deadline_ms: i64,
    },
}

/// Settle deliveries; one outcome per target, in order.
pub struct Ack {
    pub targets: Vec<AckTarget>,
    pub reply: Reply<Vec<Result<(), HandleError>>>,
}

impl Message for Ack {
    type Result = ();
}

/// A new invisible time for one delivery, counted from now; answers its new handle and
/// deadline.
pub struct ChangeInvisible {
    pub target: AckTarget,
    pub invisible_ms: i64,
    pub reply: Reply<Result<(String, i64), HandleError>>,
}

impl Message for ChangeInvisible {
    type Result = ();
}

/// Moves one delivery to `%DLQ%<group>` now (a consumer gave up on it: gRPC's
/// ForwardMessageToDeadLetterQueue), deleting it in the same write.
pub struct ForwardToDlq {
    pub target: AckTarget,
    pub reply: Reply<Result<(), HandleError>>,
}

impl Message for ForwardToDlq {
    type Result = ();
}

/// Whether a delivery of this message (by queue and offset) is in flight.
pub struct IsInflight {
    pub queue_id: u32,
    pub offset: u64,
}

impl Message for IsInflight {
    type Result = bool;
}

pub struct PopState {
    group: String,
    topic: String,
    b: BrokerContext,
    key: Arc<HandleKey>,
    queues: Vec<QueueState>,
    /// (deadline, queue, offset) of every delivery in flight.
    deadlines: BTreeSet<(i64, u32, u64)>,
    waiting: VecDeque<Waiting>,
    loaded: bool,
    watching: bool,
    next_queue: usize,
    /// Queues without a cursor or committed offset start at their ends, not their starts.
    start_at_end: bool,
    /// The in-flight count last put in `rocketmq_consumer_inflight_messages`.
    reported_inflight: Option<usize>,
}

impl PopState {
    pub fn new(
        group: String,
        topic: String,
        b: BrokerContext,
        key: Arc<HandleKey>,
        start_at_end: bool,
    ) -> Self {
        PopState {
            group,
            topic,
            b,
            key,
            queues: Vec::new(),
            deadlines: BTreeSet::new(),
            waiting: VecDeque::new(),
            loaded: false,
            watching: false,
            next_queue: 0,
            start_at_end,
            reported_inflight: None,
        }
    }

    fn pop_key(&self, queue_id: u32, offset: u64) -> Vec<u8> {
        keys::pop_key(&self.group, &self.topic, queue_id, offset)
    }

    /// Follows the topic's queues (a topic can grow); a queue gone with the topic stays.
    fn refresh_queues(&mut self) {
        let Some(t) = self.b.topic(&self.topic) else {
            return;
        };
        for (i, (addr, stats)) in t.queues.iter().zip(&t.stats).enumerate() {
            match self.queues.get_mut(i) {
                Some(q) => {
                    q.addr = addr.clone();
                    q.stats = stats.clone();
                }
                None => self.queues.push(QueueState {
                    addr: addr.clone(),
                    stats: stats.clone(),
                    cursor: stats.min(),
                    stored_cursor: None,
                    inflight: BTreeMap::new(),
                    busy: false,
                    committed_low: None,
                }),
            }
        }
    }

    /// Reads the stored deliveries and cursors, and the group's committed offsets for queues
    /// without a cursor; serves once done.
    fn load(&mut self, ctx: &mut Context<Self>) {
        self.refresh_queues();
        let prefix = keys::pop_prefix(&self.group, &self.topic);
        let store = self.b.store.clone();
        let b = self.b.clone();
        let (group, topic) = (self.group.clone(), self.topic.clone());
        let queue_count = self.queues.len() as u32;
        let work = async move {
            let p = prefix.clone();
            let entries = tokio::task::spawn_blocking(move || store.pop_entries(&p))
                .await
                .map_err(|e| BrokerError::Storage(format!("pop recovery task: {e}")))??;
            let mut committed = Vec::new();
            for q in 0..queue_count {
                committed.push(
                    b.query_offset(&group, &topic, q, false)
                        .await
                        .ok()
                        .flatten(),
                );
            }
            Ok::<_, BrokerError>((prefix, entries, committed))
        };
        ctx.wait(work.into_actor(self).map(|r, act, ctx| {
            match r {
                Ok((prefix, entries, committed)) => act.recovered(&prefix, entries, committed),
                Err(e) => {
                    // Serving without the stored state could hand out acked messages again:
                    // stop, and let the next request start a fresh actor that tries again.
                    tracing::error!(group = %act.group, topic = %act.topic, error = %e, "cannot read the pop state; stopped");
                    for w in act.waiting.drain(..) {
                        let _ = w.r.reply.send(Err(e.clone()));
                    }
                    ctx.stop();
                    return;
                }
            }
            act.loaded = true;
            act.serve(ctx);
        }));
    }

    fn recovered(
        &mut self,
        prefix: &[u8],
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        committed: Vec<Option<i64>>,
    ) {
        let mut cursors = BTreeMap::new();
        let mut fresh_at_end = Vec::new();
        for (k, v) in entries {
            let Some((qid, off)) = keys::parse_pop_key(prefix, &k) else {
                tracing::warn!(group = %self.group, topic = %self.topic, "skipping a malformed pop key");
                continue;
            };
            if off == keys::POP_CURSOR {
                if let Ok(raw) = <[u8; 8]>::try_from(&v[..]) {
                    cursors.insert(qid, u64::from_be_bytes(raw));
                }
                continue;
            }
            let Some(f) = InFlight::decode(&v) else {
                tracing::warn!(group = %self.group, topic = %self.topic, qid, off, "skipping a malformed pop entry");
                continue;
            };
            if let Some(q) = self.queues.get_mut(qid as usize) {
                q.inflight.insert(off, f);
                self.deadlines.insert((f.deadline_ms, qid, off));
            }
        }
        for (i, q) in self.queues.iter_mut().enumerate() {
            let start = match (
                cursors.get(&(i as u32)),
                committed.get(i).copied().flatten(),
            ) {
                (Some(c), _) => {
                    q.stored_cursor = Some(*c);
                    *c
                }
                (None, Some(o)) if o >= 0 => o as u64,
                // A new group reads the queue from its end (init mode MAX) and keeps that
                // start, or from its first retained message.
                _ if self.start_at_end => {
                    fresh_at_end.push(i);
                    q.stats.max()
                }
                _ => q.stats.min(),
            };
            q.cursor = start.max(q.stats.min());
        }
        for qi in fresh_at_end {
            self.store_cursor(qi);
        }
        let n = self.deadlines.len();
        if n > 0 {
            tracing::info!(group = %self.group, topic = %self.topic, inflight = n, "pop state recovered");
        }
    }

    /// Answers every waiting receive that can be answered now.
    fn serve(&mut self, ctx: &mut Context<Self>) {
        if !self.loaded {
            return;
        }
        if self.reported_inflight != Some(self.deadlines.len()) {
            self.reported_inflight = Some(self.deadlines.len());
            let n = self.deadlines.len() as f64;
            self.b.metrics.group_gauge(
                "rocketmq_consumer_inflight_messages",
                &self.topic,
                &self.group,
                n,
            );
        }
        self.refresh_queues();
        let now = crate::now_ms();
        let instant = Instant::now();
        let mut i = 0;
        while i < self.waiting.len() {
            if self.waiting[i].r.reply.is_closed() {
                self.waiting.remove(i);
                continue;
            }
            let r = &self.waiting[i].r;
            let (max, order, only) = (r.max, r.order, r.queue);
            let expired = self.take_expired(now, max, order, only);
            if !expired.is_empty() {
                if let Some(w) = self.waiting.remove(i) {
                    self.redeliver(expired, w.r, now, ctx);
                }
                continue;
            }
            match self.pick_queue(order, only) {
                Some(q) => {
                    if let Some(w) = self.waiting.remove(i) {
                        self.pull(q, w, ctx);
                    }
                }
                None if self.waiting[i].until <= instant => {
                    if let Some(w) = self.waiting.remove(i) {
                        let _ = w.r.reply.send(Ok(Vec::new()));
                    }
                }
                None => i += 1,
            }
        }
        if !self.waiting.is_empty() {
            self.watch(ctx);
        }
    }

    /// Expired deliveries to hand out again: unordered, the earliest expired ones; ordered,
    /// those of one queue whose deliveries have all expired, lowest offsets first.
    fn take_expired(
        &mut self,
        now: i64,
        max: usize,
        order: bool,
        only: Option<u32>,
    ) -> Vec<(u32, u64)> {
        let max = max.clamp(1, MAX_BATCH);
        if !order {
            return self
                .deadlines
                .iter()
                .take_while(|(d, _, _)| *d <= now)
                .filter(|(_, q, _)| only.is_none_or(|o| o == *q))
                .take(max)
                .map(|(_, q, o)| (*q, *o))
                .collect();
        }
        for (qid, q) in self.queues.iter().enumerate() {
            if q.busy || q.inflight.is_empty() || only.is_some_and(|o| o != qid as u32) {
                continue;
            }
            if q.inflight.values().all(|f| f.deadline_ms <= now) {
                return q
                    .inflight
                    .keys()
                    .take(max)
                    .map(|o| (qid as u32, *o))
                    .collect();
            }
        }
        Vec::new()
    }

    /// The next queue with messages past its cursor that this receive may read.
    fn pick_queue(&mut self, order: bool, only: Option<u32>) -> Option<usize> {
        let n = self.queues.len();
        for k in 0..n {
            let i = (self.next_queue + k) % n;
            if only.is_some_and(|o| o as usize != i) {
                continue;
            }
            let q = &mut self.queues[i];
            let min = q.stats.min();
            if q.cursor < min {
                q.cursor = min; // retention removed what the cursor pointed at
            }
            if q.busy || q.cursor >= q.stats.max() || (order && !q.inflight.is_empty()) {
                continue;
            }
            self.next_queue = (i + 1) % n;
            return Some(i);
        }
        None
    }

    fn handle_of(&self, queue_id: u32, offset: u64, f: &InFlight) -> String {
        self.key.encode(
            &self.group,
            &self.topic,
            &ReceiptHandle {
                queue_id,
                offset,
                attempt: f.attempt,
                deadline_ms: f.deadline_ms,
            },
        )
    }

    /// The delivery a target names, if it is the one in flight now.
    fn find(&self, target: &AckTarget) -> Result<(ReceiptHandle, InFlight), HandleError> {
        let h = match target {
            AckTarget::Handle(text) => self.key.decode(&self.group, &self.topic, text)?,
            AckTarget::Delivery {
                queue_id,
                offset,
                deadline_ms,
            } => ReceiptHandle {
                queue_id: *queue_id,
                offset: *offset,
                attempt: 0,
                deadline_ms: *deadline_ms,
            },
        };
        let current = self
            .queues
            .get(h.queue_id as usize)
            .and_then(|q| q.inflight.get(&h.offset))
            .copied();
        let by_delivery = matches!(target, AckTarget::Delivery { .. });
        match current {
            Some(f)
                if f.deadline_ms == h.deadline_ms && (by_delivery || f.attempt == h.attempt) =>
            {
                Ok((h, f))
            }
            _ => Err(HandleError::Expired),
        }
    }

    fn set_deadline(&mut self, qid: u32, off: u64, f: InFlight) {
        let Some(q) = self.queues.get_mut(qid as usize) else {
            return;
        };
        if let Some(old) = q.inflight.insert(off, f) {
            self.deadlines.remove(&(old.deadline_ms, qid, off));
        }
        self.deadlines.insert((f.deadline_ms, qid, off));
    }

    fn remove_delivery(&mut self, qid: u32, off: u64) -> Option<InFlight> {
        let f = self.queues.get_mut(qid as usize)?.inflight.remove(&off)?;
        self.deadlines.remove(&(f.deadline_ms, qid, off));
        Some(f)
    }

    /// Hands expired deliveries out again (attempt raised, new deadline and handle); those at
    /// the maximum of attempts go to the DLQ instead.
    fn redeliver(
        &mut self,
        expired: Vec<(u32, u64)>,
        r: Receive,
        now: i64,
        ctx: &mut Context<Self>,
    ) {
        let mut batch = AppendBatch::default();
        let mut out = Vec::new();
        let mut dead = Vec::new();
        for (qid, off) in expired {
            let Some(f) = self
                .queues
                .get(qid as usize)
                .and_then(|q| q.inflight.get(&off))
                .copied()
            else {
                continue;
            };
            if f.attempt >= r.max_attempts.max(1) {
                // Out of the in-flight set while it moves; back with a later deadline if the
                // move fails.
                self.remove_delivery(qid, off);
                dead.push((qid, off, f));
                continue;
            }
            let next = InFlight {
                attempt: f.attempt.saturating_add(1),
                deadline_ms: now.saturating_add(r.invisible_ms),
                ..f
            };
            self.set_deadline(qid, off, next);
            batch
                .puts
                .push((cf::POP, self.pop_key(qid, off), next.encode()));
            out.push((qid, off, next));
        }
        for (qid, off, f) in dead {
            self.dead_letter(qid, off, f, None, ctx);
        }
        let deliveries: Vec<(u32, u64, InFlight, String)> = out
            .into_iter()
            .map(|(q, o, f)| (q, o, f, self.handle_of(q, o, &f)))
            .collect();
        let rx = self.b.writer.try_submit(batch);
        let store = self.b.store.clone();
        let work = async move {
            written(rx?.await)?;
            let seqs: Vec<u64> = deliveries.iter().map(|(_, _, f, _)| f.seq).collect();
            let records = tokio::task::spawn_blocking(move || {
                seqs.into_iter()
                    .map(|s| store.read_record(s).ok().flatten())
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| BrokerError::Storage(format!("read task: {e}")))?;
            Ok::<_, BrokerError>((deliveries, records))
        };
        ctx.spawn(work.into_actor(self).map(move |res, act, ctx| {
            match res {
                Ok((deliveries, records)) => {
                    let mut answer = Vec::new();
                    let mut gone = AppendBatch::default();
                    for ((qid, off, f, handle), rec) in deliveries.into_iter().zip(records) {
                        match rec {
                            Some(record) => answer.push(Delivery {
                                record,
                                queue_id: qid,
                                offset: off,
                                seq: f.seq,
                                attempt: f.attempt,
                                handle,
                                deadline_ms: f.deadline_ms,
                                first_ms: f.first_ms,
                            }),
                            None => {
                                // Retention removed it: nothing left to deliver.
                                act.remove_delivery(qid, off);
                                gone.deletes.push((cf::POP, act.pop_key(qid, off)));
                            }
                        }
                    }
                    if !gone.deletes.is_empty() {
                        drop(act.b.writer.try_submit(gone));
                        act.commit_low_marks();
                    }
                    metrics::counter!("rocktor_pop_redelivered_total", "group" => act.group.clone())
                        .increment(answer.len() as u64);
                    let bytes = answer.iter().map(|d| d.record.len()).sum();
                    act.b
                        .metrics
                        .messages_out(&act.topic, &act.group, answer.len(), bytes);
                    let _ = r.reply.send(Ok(answer));
                }
                Err(e) => {
                    let _ = r.reply.send(Err(e));
                }
            }
            act.serve(ctx);
        }));
    }

    /// Moves a delivery past its maximum of attempts to `%DLQ%<group>`, deleting it in the
    /// same write. `reply`: a consumer asked for the move (gRPC's forward to the DLQ).
    fn dead_letter(
        &mut self,
        qid: u32,
        off: u64,
        f: InFlight,
        reply: Option<Reply<Result<(), HandleError>>>,
        ctx: &mut Context<Self>,
    ) {
        let b = self.b.clone();
        let group = self.group.clone();
        let key = self.pop_key(qid, off);
        let work = async move { b.dead_letter_seq(&group, f.seq, key, f.attempt).await };
        ctx.spawn(work.into_actor(self).map(move |r, act, ctx| {
            let answer = match r {
                Ok(()) => {
                    act.commit_low_marks();
                    Ok(Ok(()))
                }
                Err(BrokerError::NotFound(_)) => {
                    drop(act.b.writer.try_submit(AppendBatch {
                        deletes: vec![(cf::POP, act.pop_key(qid, off))],
                        ..Default::default()
                    }));
                    act.commit_low_marks();
                    Ok(Err(HandleError::Expired))
                }
                Err(e) => {
                    tracing::warn!(group = %act.group, topic = %act.topic, qid, off, error = %e, "moving a message to the DLQ failed; tried again later");
                    let later = InFlight {
                        deadline_ms: crate::now_ms().saturating_add(DLQ_RETRY_MS),
                        ..f
                    };
                    act.set_deadline(qid, off, later);
                    Err(e)
                }
            };
            if let Some(reply) = reply {
                let _ = reply.send(answer);
                // A settled message can free an ordered queue.
                act.serve(ctx);
            }
        }));
    }

    /// Reads fresh messages of queue `qi` from its cursor for one receive.
    fn pull(&mut self, qi: usize, w: Waiting, ctx: &mut Context<Self>) {
        let q = &mut self.queues[qi];
        q.busy = true;
        let from = q.cursor;
        let pull = Pull {
            offset: from,
            max_msgs: w.r.max.clamp(1, MAX_BATCH),
            max_bytes: crate::service::MAX_PULL_BYTES,
            filter: w.r.filter.clone(),
            hold: None,
            caller_gone: None,
            caller_budget: None,
        };
        let fut = q.addr.send(pull).timeout(PULL_WAIT);
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let Some(q) = act.queues.get_mut(qi) else {
                return;
            };
            q.busy = false;
            let out = match res {
                Ok(Ok(out)) => out,
                Ok(Err(e)) => {
                    let _ = w.r.reply.send(Err(e));
                    act.serve(ctx);
                    return;
                }
                Err(e) => {
                    let _ = w.r.reply.send(Err(BrokerError::from(e)));
                    act.serve(ctx);
                    return;
                }
            };
            if out.status == PullStatus::OffsetMoved || out.next_offset > q.cursor {
                q.cursor = out.next_offset.max(q.stats.min());
            }
            if out.records.is_empty() {
                // Nothing matched this receive's filter: the cursor moved past them; the
                // receive waits on (first in line again).
                act.store_cursor(qi);
                act.waiting.push_front(w);
                act.serve(ctx);
                return;
            }
            act.hand_out(qi, out.records, w.r, ctx);
            act.serve(ctx);
        }));
    }

    /// Writes a queue's cursor when it moved (unawaited: a lost cursor only re-reads skipped
    /// messages after a crash).
    fn store_cursor(&mut self, qi: usize) {
        let key = self.pop_key(qi as u32, keys::POP_CURSOR);
        let Some(q) = self.queues.get_mut(qi) else {
            return;
        };
        if q.stored_cursor == Some(q.cursor) {
            return;
        }
        q.stored_cursor = Some(q.cursor);
        let batch = AppendBatch::default().put(cf::POP, key, q.cursor.to_be_bytes().to_vec());
        drop(self.b.writer.try_submit(batch));
        self.commit_low_marks();
    }

    /// Records fresh deliveries and answers once they (and the cursor) are written.
    fn hand_out(&mut self, qi: usize, records: Vec<Bytes>, r: Receive, ctx: &mut Context<Self>) {
        let now = crate::now_ms();
        let qid = qi as u32;
        let deadline_ms = now.saturating_add(r.invisible_ms);
        let mut batch = AppendBatch::default();
        let mut answer = Vec::with_capacity(records.len());
        for record in records {
            let Some((off, seq)) = rocktor_storage::record::positions(&record) else {
                continue;
            };
            let f = InFlight {
                seq,
                attempt: 1,
                deadline_ms,
                first_ms: now,
            };
            self.set_deadline(qid, off, f);
            batch
                .puts
                .push((cf::POP, self.pop_key(qid, off), f.encode()));
            answer.push(Delivery {
                record,
                queue_id: qid,
                offset: off,
                seq,
                attempt: 1,
                handle: self.handle_of(qid, off, &f),
                deadline_ms,
                first_ms: now,
            });
        }
        if let Some(q) = self.queues.get_mut(qi) {
            q.stored_cursor = Some(q.cursor);
            batch.puts.push((
                cf::POP,
                keys::pop_key(&self.group, &self.topic, qid, keys::POP_CURSOR),
                q.cursor.to_be_bytes().to_vec(),
            ));
        }
        let bytes = answer.iter().map(|d| d.record.len()).sum();
        self.b
            .metrics
            .messages_out(&self.topic, &self.group, answer.len(), bytes);
        let rx = self.b.writer.try_submit(batch);
        let reply = r.reply;
        ctx.spawn(
            async move {
                let r = match rx {
                    Ok(rx) => written(rx.await).map(|_| answer),
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(r);
            }
            .into_actor(self),
        );
    }

    /// Commits each queue's lowest unsettled offset as the group's offset (lag, status),
    /// where it moved.
    fn commit_low_marks(&mut self) {
        let Some(g) = self.b.group(&self.group) else {
            return;
        };
        for (qid, q) in self.queues.iter_mut().enumerate() {
            let low = q
                .inflight
                .keys()
                .next()
                .copied()
                .unwrap_or(q.cursor)
                .min(q.cursor);
            if q.committed_low == Some(low) {
                continue;
            }
            // A lost commit is superseded by the next one.
            let sent = g.addr.try_send(crate::consumer_group::CommitOffset {
                topic: self.topic.clone(),
                queue_id: qid as u32,
                offset: low as i64,
            });
            if sent.is_ok() {
                q.committed_low = Some(low);
            }
        }
    }

    /// Waits (off the actor) for a message past the cursor of a queue a waiting receive could
    /// read now, then serves. Queues busy or held by an ordered batch are left out: their
    /// end (a read answered, an ack, an expiry) serves by itself.
    fn watch(&mut self, ctx: &mut Context<Self>) {
        if self.watching {
            return;
        }
        let targets: Vec<(Arc<QueueStats>, u64)> = self
            .queues
            .iter()
            .filter(|q| !q.busy)
            .map(|q| (q.stats.clone(), q.cursor))
            .collect();
        if targets.is_empty() {
            return;
        }
        self.watching = true;
        let wait = async move {
            let waits = targets.iter().map(|(stats, cursor)| {
                Box::pin(async move {
                    let notified = stats.arrived.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if stats.max() > *cursor {
                        return;
                    }
                    notified.await;
                })
            });
            futures_util::future::select_all(waits).await;
        };
        ctx.spawn(wait.into_actor(self).map(|_, act, ctx| {
            act.watching = false;
            act.serve(ctx);
        }));
    }
}

impl Actor for PopState {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        self.load(ctx);
        ctx.run_interval(TICK, |act, ctx| {
            if !act.waiting.is_empty() {
                act.serve(ctx);
            }
        });
    }
}

impl Handler<Receive> for PopState {
    type Result = ();

    fn handle(&mut self, r: Receive, ctx: &mut Context<Self>) {
        if self.waiting.len() >= MAX_WAITING {
            // Said, not an empty answer: a client told "nothing" polls again at once.
            let _ = r.reply.send(Err(BrokerError::LimitExceeded(format!(
                "{MAX_WAITING} long polls already wait on {} / {}",
                self.group, self.topic
            ))));
            return;
        }
        let until = Instant::now() + r.wait;
        self.waiting.push_back(Waiting { r, until });
        self.serve(ctx);
    }
}

impl Handler<Ack> for PopState {
    type Result = ();

    fn handle(&mut self, a: Ack, ctx: &mut Context<Self>) {
        let mut outcomes = Vec::with_capacity(a.targets.len());
        let mut batch = AppendBatch::default();
        let mut removed = Vec::new();
        for target in &a.targets {
            match self.find(target) {
                Ok((h, f)) => {
                    self.remove_delivery(h.queue_id, h.offset);
                    batch
                        .deletes
                        .push((cf::POP, self.pop_key(h.queue_id, h.offset)));
                    removed.push((h.queue_id, h.offset, f));
                    outcomes.push(Ok(()));
                }
                Err(e) => outcomes.push(Err(e)),
            }
        }
        if removed.is_empty() {
            let _ = a.reply.send(Ok(outcomes));
            return;
        }
        self.commit_low_marks();
        let rx = self.b.writer.try_submit(batch);
        let work = async move {
            match rx {
                Ok(rx) => written(rx.await).map(|_| ()),
                Err(e) => Err(BrokerError::from(e)),
            }
        };
        let reply = a.reply;
        ctx.spawn(work.into_actor(self).map(move |r, act, ctx| {
            match r {
                Ok(()) => {
                    metrics::counter!("rocktor_pop_acked_total", "consumer_group" => act.group.clone())
                        .increment(removed.len() as u64);
                    let _ = reply.send(Ok(outcomes));
                }
                Err(e) => {
                    // Not settled after all: in flight again until its deadline.
                    for (qid, off, f) in removed {
                        act.set_deadline(qid, off, f);
                    }
                    let _ = reply.send(Err(e));
                }
            }
            // An ack can free an ordered queue.
            act.serve(ctx);
        }));
    }
}

impl Handler<ChangeInvisible> for PopState {
    type Result = ();

    fn handle(&mut self, c: ChangeInvisible, ctx: &mut Context<Self>) {
        let (h, f) = match self.find(&c.target) {
            Ok(x) => x,
            Err(e) => {
                let _ = c.reply.send(Ok(Err(e)));
                return;
            }
        };
        let next = InFlight {
            deadline_ms: crate::now_ms().saturating_add(c.invisible_ms.max(0)),
            ..f
        };
        self.set_deadline(h.queue_id, h.offset, next);
        let handle = self.handle_of(h.queue_id, h.offset, &next);
        let batch =
            AppendBatch::default().put(cf::POP, self.pop_key(h.queue_id, h.offset), next.encode());
        let rx = self.b.writer.try_submit(batch);
        let reply = c.reply;
        let deadline = next.deadline_ms;
        ctx.spawn(
            async move {
                let r = match rx {
                    Ok(rx) => written(rx.await).map(|_| Ok((handle, deadline))),
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(r);
            }
            .into_actor(self),
        );
    }
}

impl Handler<ForwardToDlq> for PopState {
    type Result = ();

    fn handle(&mut self, m: ForwardToDlq, ctx: &mut Context<Self>) {
        match self.find(&m.target) {
            Ok((h, f)) => {
                // Out of the in-flight set while it moves; back with a later deadline if the
                // move fails.
                self.remove_delivery(h.queue_id, h.offset);
                self.dead_letter(h.queue_id, h.offset, f, Some(m.reply), ctx);
            }
            Err(e) => {
                let _ = m.reply.send(Ok(Err(e)));
            }
        }
    }
}

impl Handler<IsInflight> for PopState {
    type Result = bool;

    fn handle(&mut self, m: IsInflight, _: &mut Context<Self>) -> bool {
        self.queues
            .get(m.queue_id as usize)
            .is_some_and(|q| q.inflight.contains_key(&m.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_deliveries_round_trip_and_junk_is_refused() {
        let f = InFlight {
            seq: 9,
            attempt: 3,
            deadline_ms: 1_700_000_000_000,
            first_ms: 1_699_999_999_000,
        };
        assert_eq!(InFlight::decode(&f.encode()), Some(f));
        assert_eq!(InFlight::decode(&[1, 2, 3]), None);
    }
}
