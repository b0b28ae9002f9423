//! Scheduler — delayed delivery: delay levels, the 5.x timer properties, ONS start-deliver
//! times, and the back-off of consumer retries.
//!
//! State it owns: the delivery floor (every timer entry due before it was delivered, so rounds
//! need not scan the tombstones of delivered entries) and whether a delivery round is running.
//! A `Schedule` due before the floor (a short delay written while a round ran, a clock step
//! back) lowers the floor, and a round that ends never raises it past such an entry. Rounds run
//! beside the mailbox: a round waiting on a queue never holds up new delayed sends.
//!
//! Messages: `Schedule` (store records now, deliver them later), `Cancel` (Huawei DMS's
//! cancel message and Apache 5.5's recall: forget a scheduled message before its due time),
//! `Rehome` (retention: re-append records that are still waiting ahead of the expiry horizon,
//! as Apache's timer store rolls long delays), and its own 10 ms tick.
//!
//! Durability: a scheduled record and its timer entry are written in one batch before the send
//! is acknowledged. When due, the record is appended to its real queue and its timer entry is
//! deleted in the same write batch, so a crash delivers it exactly once. A cancel deletes the
//! timer entry and the record in one write before it is answered; while that write is in
//! flight, rounds skip the entry.

use crate::broker::Registry;
use crate::error::{blocking, BrokerError};
use crate::message::{encode_record, from_record, PreparedMessage, DELAY_PROPERTIES};
use crate::topic_queue::Append;
use actix::prelude::*;
use arc_swap::ArcSwap;
use rocktor_storage::{
    cf, properties, record, AppendBatch, AppendRecord, DueTimer, Store, TimerEntry, Writer,
};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often the scheduler looks at the clock. A round scans storage only once the earliest
/// known due time has come (`next_due`), or every `RESCAN` as a safety net.
const TICK: Duration = Duration::from_millis(10);
const RESCAN: i64 = 1000;
/// Timer entries delivered per round.
const ROUND: usize = 2048;

/// Due messages of one queue, with their timer entries to delete in the same write.
type QueueBatch = (Vec<PreparedMessage>, Vec<(&'static str, Vec<u8>)>);

/// Who has a timer entry: a round delivering it, or a cancel that removed it (kept until the
/// floor passes its due time, so a round that scanned before the delete landed skips it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Delivering,
    Cancelled {
        due_ms: i64,
    },
    /// Being re-appended ahead of retention (`Rehome`); a cancel meanwhile answers busy.
    Rehoming,
    /// Re-appended under a new key (kept until the floor passes its due time): a cancel that
    /// found this old key answers busy, and its retry finds the new one.
    Moved {
        due_ms: i64,
    },
}

type Claims = HashMap<Vec<u8>, Claim>;

/// Wall-clock milliseconds; tests step it.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub struct Scheduler {
    store: Store,
    writer: Writer,
    registry: Arc<ArcSwap<Registry>>,
    store_host: SocketAddr,
    floor_ms: i64,
    /// The earliest due time scheduled since the running round started.
    lowest_since_round: i64,
    busy: bool,
    clock: Clock,
    /// The earliest due time known not to be delivered yet (from the last scan and the
    /// schedules since); no scan before it.
    next_due: i64,
    last_scan: i64,
    /// Timer keys a round is delivering, or a cancel removed: each entry goes one way only.
    claims: Arc<std::sync::Mutex<Claims>>,
}

impl Scheduler {
    pub fn new(
        store: Store,
        writer: Writer,
        registry: Arc<ArcSwap<Registry>>,
        store_host: SocketAddr,
    ) -> Self {
        Scheduler {
            store,
            writer,
            registry,
            store_host,
            floor_ms: 0,
            lowest_since_round: i64::MAX,
            busy: false,
            clock: Arc::new(crate::now_ms),
            next_due: i64::MIN,
            last_scan: i64::MIN,
            claims: Default::default(),
        }
    }

    /// The same scheduler on another clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn start_round(&mut self, ctx: &mut Context<Self>) {
        let now = (self.clock)();
        if self.busy || (now < self.next_due && now.saturating_sub(self.last_scan) < RESCAN) {
            return;
        }
        self.busy = true;
        self.last_scan = now;
        self.lowest_since_round = i64::MAX;
        // Until the scan says otherwise: entries scheduled from now on lower it again.
        self.next_due = i64::MAX;
        let (store, floor) = (self.store.clone(), self.floor_ms);
        let scan = blocking(move || store.due_timers(floor, now, ROUND));
        scan.into_actor(self)
            .then(move |due, act, _| {
                let (fut, next) = match due {
                    Ok((due, next)) if !due.is_empty() => {
                        // A full round may leave more due entries: look again at once.
                        let next = if due.len() >= ROUND { Some(now) } else { next };
                        (Some(act.deliver(due)), next)
                    }
                    Ok((_, next)) => (None, next),
                    Err(e) => {
                        tracing::error!(error = %e, "reading due timers failed");
                        (None, Some(now.saturating_add(RESCAN)))
                    }
                };
                async move {
                    match fut {
                        Some(f) => (Some(f.await), next),
                        None => (None, next),
                    }
                }
                .into_actor(act)
            })
            .map(move |(delivered, next), act, _| {
                let retry = match delivered {
                    Some(Some(f)) => {
                        // Never past an entry scheduled during the round with an earlier due
                        // time.
                        act.floor_ms = act.floor_ms.max(f.min(act.lowest_since_round));
                        let floor = act.floor_ms;
                        if let Ok(mut c) = act.claims.lock() {
                            c.retain(|_, claim| {
                                !matches!(claim, Claim::Cancelled { due_ms } | Claim::Moved { due_ms } if *due_ms < floor)
                            });
                        }
                        i64::MAX
                    }
                    // Some entry could not be delivered: try again in a second.
                    Some(None) => now.saturating_add(RESCAN),
                    None => i64::MAX,
                };
                act.next_due = act
                    .next_due
                    .min(next.unwrap_or(i64::MAX))
                    .min(act.lowest_since_round)
                    .min(retry);
                act.busy = false;
            })
            .spawn(ctx);
    }

    /// Appends due records to their queues, deleting their timer entries in the same atomic
    /// write. Resolves to the new floor when every entry of the round was delivered.
    fn deliver(&self, due: Vec<DueTimer>) -> impl std::future::Future<Output = Option<i64>> {
        let registry = self.registry.load_full();
        let (writer, store_host) = (self.writer.clone(), self.store_host);
        let claims = self.claims.clone();
        async move {
            // Group by queue, keeping due order inside each queue.
            let mut by_queue: BTreeMap<(String, u32), QueueBatch> = BTreeMap::new();
            // Timer entries with nothing left to deliver (unreadable record, vanished queue).
            let mut dropped = AppendBatch::default();
            let mut claimed = Vec::with_capacity(due.len());
            for t in &due {
                let mine = match claims.lock() {
                    Ok(mut c) => match c.get(&t.key) {
                        Some(Claim::Cancelled { .. } | Claim::Rehoming | Claim::Moved { .. }) => {
                            false
                        }
                        _ => {
                            c.insert(t.key.clone(), Claim::Delivering);
                            true
                        }
                    },
                    Err(_) => true,
                };
                if !mine {
                    continue;
                }
                claimed.push(t.key.clone());
                let rec = t
                    .record
                    .as_ref()
                    .and_then(|b| record::decode(b).ok())
                    .map(|(r, _)| r);
                let Some(rec) = rec else {
                    dropped.deletes.push((cf::TIMER, t.key.clone()));
                    continue;
                };
                let props = properties::without(&rec.properties, &DELAY_PROPERTIES);
                let Ok(m) = from_record(&rec, props) else {
                    tracing::error!(topic = %t.topic, "dropping a delayed message whose properties do not fit a record");
                    dropped.deletes.push((cf::TIMER, t.key.clone()));
                    continue;
                };
                let entry = by_queue.entry((t.topic.clone(), t.queue_id)).or_default();
                entry.0.push(m);
                entry.1.push((cf::TIMER, t.key.clone()));
            }
            let mut all_ok = true;
            // One append per queue, all at once: they share the writer's next group commit.
            let mut appends = Vec::with_capacity(by_queue.len());
            for ((topic, queue_id), (messages, timer_keys)) in by_queue {
                let Some(queue) = registry
                    .topics
                    .get(&topic)
                    .and_then(|h| h.queues.get(queue_id as usize).cloned())
                else {
                    tracing::warn!(%topic, queue_id, "dropping delayed messages of a topic or queue that no longer exists");
                    dropped.deletes.extend(timer_keys);
                    continue;
                };
                appends.push(async move {
                    let appended = queue
                        .send(Append {
                            messages,
                            store_host,
                            delete_with: timer_keys,
                        })
                        .await;
                    (topic, queue_id, appended)
                });
            }
            for (topic, queue_id, appended) in futures_util::future::join_all(appends).await {
                if let Err(e) = appended.map_err(BrokerError::from).and_then(|r| r) {
                    tracing::warn!(%topic, queue_id, error = %e, "delayed delivery failed; retrying next round");
                    all_ok = false;
                }
            }
            if !dropped.deletes.is_empty() {
                match writer.submit(dropped).await {
                    Ok(Ok(_)) => {}
                    _ => all_ok = false,
                }
            }
            if let Ok(mut c) = claims.lock() {
                for k in &claimed {
                    c.remove(k);
                }
            }
            let last_due = due.iter().map(|t| t.due_ms).max();
            if all_ok {
                last_due
            } else {
                None
            }
        }
    }
}

/// Scheduled messages and retry back-offs not yet due, by RocksDB's estimate (an exact count
/// would scan the timer family), read on the blocking pool like every RocksDB call.
pub async fn pending_estimate(store: Store) -> Option<u64> {
    tokio::task::spawn_blocking(move || store.estimate_keys(cf::TIMER))
        .await
        .ok()?
        .ok()
}

/// Sets `rocktor_scheduled_pending` from `pending_estimate`.
fn publish_pending(store: Store) {
    actix::spawn(async move {
        if let Some(n) = pending_estimate(store).await {
            metrics::gauge!("rocktor_scheduled_pending").set(n as f64);
        }
    });
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Every delayed send and retry back-off comes through here (try_send): room for the
        // bursts of many producers.
        ctx.set_mailbox_capacity(16384);
        ctx.run_interval(TICK, |act, ctx| act.start_round(ctx));
        publish_pending(self.store.clone());
        ctx.run_interval(Duration::from_secs(10), |act, _| {
            publish_pending(act.store.clone())
        });
    }
}

/// Forgets the scheduled message with this UNIQ_KEY in `topic`, due at `due_ms`, if it is
/// still waiting; answers its sequence, or None when there is nothing (any more) to cancel.
pub struct Cancel {
    pub topic: String,
    pub uniq_key: String,
    pub due_ms: i64,
}

impl Message for Cancel {
    type Result = Result<Option<u64>, BrokerError>;
}

/// Timer entries one cancel looks through (those due in the same millisecond).
const CANCEL_SCAN: usize = 100_000;

impl Handler<Cancel> for Scheduler {
    type Result = ResponseActFuture<Self, Result<Option<u64>, BrokerError>>;

    fn handle(&mut self, msg: Cancel, _: &mut Self::Context) -> Self::Result {
        if msg.due_ms <= (self.clock)() {
            // Due already: delivered or being delivered; a cancel changes nothing.
            return Box::pin(fut::ready(Ok(None)));
        }
        let store = self.store.clone();
        let find = async move {
            let found = blocking(move || {
                store.find_timer_at(msg.due_ms, CANCEL_SCAN, |topic, record| {
                    topic == msg.topic
                        && record::decode(record).is_ok_and(|(r, _)| {
                            properties::get(&r.properties, crate::message::PROP_UNIQ_KEY)
                                == Some(msg.uniq_key.as_str())
                        })
                })
            })
            .await?;
            Ok::<_, BrokerError>(found)
        };
        Box::pin(find.into_actor(self).then(|found, act, _| {
            let writer = act.writer.clone();
            let claims = act.claims.clone();
            async move {
                let Some(t) = found? else {
                    return Ok(None);
                };
                // A round already delivering it wins: the cancel changes nothing.
                match claims.lock() {
                    Ok(mut c) => {
                        match c.get(&t.key) {
                            Some(Claim::Delivering) => return Ok(None),
                            Some(Claim::Rehoming | Claim::Moved { .. }) => {
                                return Err(BrokerError::SystemBusy)
                            }
                            _ => {}
                        }
                        c.insert(t.key.clone(), Claim::Cancelled { due_ms: t.due_ms });
                    }
                    Err(_) => return Ok(None),
                }
                let seq = rocktor_storage::keys::parse_timer_key(&t.key).map(|(_, s)| s);
                // Only the timer entry goes: the record stays for retention (deleting the
                // newest record would let a restart hand its sequence out again).
                let mut batch = AppendBatch::default();
                batch.deletes.push((cf::TIMER, t.key.clone()));
                let r = match writer.try_submit(batch) {
                    Ok(rx) => crate::error::written(rx.await).map(|_| seq),
                    Err(e) => Err(e.into()),
                };
                match &r {
                    Ok(_) => metrics::counter!("rocktor_scheduled_cancelled_total").increment(1),
                    Err(_) => {
                        // Not removed: a round may deliver it after all.
                        if let Ok(mut c) = claims.lock() {
                            c.remove(&t.key);
                        }
                    }
                }
                r
            }
            .into_actor(act)
        }))
    }
}

/// Re-appends the records of timer entries below sequence `below` that are due after the next
/// minute, each with its entry, in one write per chunk of 256 (records read a chunk at a time).
pub struct Rehome {
    pub below: u64,
}

/// What stays after a `Rehome`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RehomeOutcome {
    /// The lowest sequence below the bound that stays (due sooner, unmovable, or past this
    /// pass's limit): retention waits for it.
    pub hold: Option<u64>,
    /// The lowest sequence of any entry left in place (moved ones are above every sequence
    /// written before the call).
    pub lowest: Option<u64>,
}

impl Message for Rehome {
    type Result = Result<RehomeOutcome, BrokerError>;
}

/// Entries due within this margin are left where they are: a round may be delivering them.
const REHOME_MARGIN_MS: i64 = 60_000;
/// Entries one pass moves, and how many go in one write.
const REHOME_LIMIT: usize = 65_536;
const REHOME_CHUNK: usize = 256;

impl Handler<Rehome> for Scheduler {
    type Result = ResponseFuture<Result<RehomeOutcome, BrokerError>>;

    fn handle(&mut self, msg: Rehome, _: &mut Self::Context) -> Self::Result {
        let now = (self.clock)();
        let (store, writer, claims, host, clock) = (
            self.store.clone(),
            self.writer.clone(),
            self.claims.clone(),
            self.store_host,
            self.clock.clone(),
        );
        Box::pin(async move {
            let s2 = store.clone();
            let found =
                blocking(move || s2.timers_below(msg.below, now + REHOME_MARGIN_MS, REHOME_LIMIT))
                    .await?;
            let mut out = RehomeOutcome {
                hold: found.hold,
                lowest: found.lowest,
            };
            let stays = |out: &mut RehomeOutcome, seq: Option<u64>| {
                out.hold = min_seq(out.hold, seq);
                out.lowest = min_seq(out.lowest, seq);
            };
            let mut moved = 0u64;
            for chunk in found.moving.chunks(REHOME_CHUNK) {
                // Claimed now, and only while still far from due: the scan may be old.
                let mut claimed = Vec::with_capacity(chunk.len());
                for t in chunk {
                    let seq = rocktor_storage::keys::parse_timer_key(&t.key).map(|(_, s)| s);
                    let far = t.due_ms > clock() + REHOME_MARGIN_MS;
                    let mine = far
                        && match claims.lock() {
                            Ok(mut c) if !c.contains_key(&t.key) => {
                                c.insert(t.key.clone(), Claim::Rehoming);
                                true
                            }
                            _ => false,
                        };
                    if mine {
                        claimed.push((t.clone(), seq));
                    } else {
                        stays(&mut out, seq);
                    }
                }
                let s2 = store.clone();
                let keys: Vec<Option<u64>> = claimed.iter().map(|(_, s)| *s).collect();
                let records = blocking(move || {
                    keys.into_iter()
                        .map(|s| {
                            s.map(|s| s2.read_record(s))
                                .transpose()
                                .map(Option::flatten)
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .await;
                let mut batch = AppendBatch::default();
                if let Ok(records) = &records {
                    for ((t, seq), record) in claimed.iter().zip(records) {
                        batch.deletes.push((cf::TIMER, t.key.clone()));
                        let rec = record.as_ref().and_then(|b| record::decode(b).ok());
                        // Gone or unreadable: it could never be delivered; only the entry goes.
                        let Some((rec, _)) = rec else {
                            tracing::warn!(topic = %t.topic, ?seq, "dropping a timer entry whose record is gone or unreadable");
                            continue;
                        };
                        let Ok(m) = from_record(&rec, rec.properties.clone()) else {
                            tracing::warn!(topic = %t.topic, ?seq, "dropping a scheduled message whose properties do not fit a record");
                            continue;
                        };
                        batch
                            .records
                            .push(held_record(&t.topic, t.queue_id, t.due_ms, &m, now, host));
                    }
                }
                let written = match records {
                    Ok(_) => match writer.submit(batch).await {
                        Ok(Ok(_)) => true,
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "re-appending scheduled messages ahead of retention failed");
                            false
                        }
                        Err(_) => false,
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "reading scheduled messages to re-append failed");
                        false
                    }
                };
                if let Ok(mut c) = claims.lock() {
                    for (t, _) in &claimed {
                        if written {
                            c.insert(t.key.clone(), Claim::Moved { due_ms: t.due_ms });
                        } else {
                            c.remove(&t.key);
                        }
                    }
                }
                if written {
                    moved += claimed.len() as u64;
                } else {
                    for (_, seq) in &claimed {
                        stays(&mut out, *seq);
                    }
                }
            }
            if moved > 0 {
                metrics::counter!("rocktor_scheduled_rehomed_total").increment(moved);
                tracing::info!(moved, "re-appended scheduled messages ahead of retention");
            }
            Ok(out)
        })
    }
}

/// The stored form of a scheduled message until it is due: its due time in TIMER_OUT_MS, its
/// timer entry, and its id in the held-records index (traces find it there).
fn held_record(
    topic: &str,
    queue_id: u32,
    due_ms: i64,
    m: &PreparedMessage,
    now: i64,
    store_host: SocketAddr,
) -> AppendRecord {
    let held = PreparedMessage {
        properties: properties::with(
            &m.properties,
            crate::message::PROP_TIMER_OUT_MS,
            &due_ms.to_string(),
        ),
        ..m.clone()
    };
    AppendRecord {
        record: encode_record(topic, queue_id, 0, &held, now, store_host),
        cq: None,
        timer: Some(TimerEntry {
            due_ms,
            topic: topic.to_string(),
            queue_id,
        }),
        index_keys: vec![rocktor_storage::keys::index_prefix(
            rocktor_storage::keys::HELD_TOPIC_ID,
            &m.uniq_key,
        )],
        txn: None,
    }
}

fn min_seq(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The recall handle a scheduled send answers with (Apache 5.5's `recallHandle`; gRPC's
/// RecallMessage takes the same): URL-safe, padded base64 of "v1 topic broker due-ms
/// message-id", Apache's layout (the Rust client decodes it to learn the broker).
pub fn recall_handle(topic: &str, broker_name: &str, due_ms: i64, uniq_key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE
        .encode(format!("v1 {topic} {broker_name} {due_ms} {uniq_key}"))
}

/// What a recall handle names: (topic, broker name, due ms, message id).
pub fn parse_recall_handle(handle: &str) -> Result<(String, String, i64, String), BrokerError> {
    use base64::Engine;
    let bad = || BrokerError::IllegalOperation("recall handle is invalid".into());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(handle.trim().trim_end_matches('='))
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let parts: Vec<&str> = text.split(' ').collect();
    match parts.as_slice() {
        ["v1", topic, broker, due, id] => Ok((
            topic.to_string(),
            broker.to_string(),
            due.parse().map_err(|_| bad())?,
            id.to_string(),
        )),
        _ => Err(bad()),
    }
}

/// Stores messages of one queue for delivery at `due_ms`; answers with their sequences.
pub struct Schedule {
    pub topic: String,
    pub queue_id: u32,
    pub messages: Vec<PreparedMessage>,
    pub due_ms: i64,
}

impl Message for Schedule {
    type Result = Result<Vec<u64>, BrokerError>;
}

impl Handler<Schedule> for Scheduler {
    type Result = ResponseActFuture<Self, Result<Vec<u64>, BrokerError>>;

    fn handle(&mut self, msg: Schedule, _: &mut Self::Context) -> Self::Result {
        let now = (self.clock)();
        // An entry due before the floor would be skipped by every later round.
        self.floor_ms = self.floor_ms.min(msg.due_ms);
        self.lowest_since_round = self.lowest_since_round.min(msg.due_ms);
        self.next_due = self.next_due.min(msg.due_ms);
        let records = msg
            .messages
            .iter()
            .map(|m| {
                held_record(
                    &msg.topic,
                    msg.queue_id,
                    msg.due_ms,
                    m,
                    now,
                    self.store_host,
                )
            })
            .collect();
        let rx = self.writer.try_submit(AppendBatch {
            records,
            ..Default::default()
        });
        let due = msg.due_ms;
        let written = async move { crate::error::written(rx?.await).map(|done| done.seqs) };
        Box::pin(written.into_actor(self).map(move |r, act, _| {
            // Again once the entry is durable: a round that started and scanned before the
            // write landed must not leave the floor above it.
            act.floor_ms = act.floor_ms.min(due);
            act.lowest_since_round = act.lowest_since_round.min(due);
            act.next_due = act.next_due.min(due);
            r
        }))
    }
}

/// A `Schedule` that answers through its own channel (see `topic_queue::AppendReply`): busy
/// only when nothing was enqueued, otherwise the caller waits for the outcome.
pub struct ScheduleReply {
    pub schedule: Schedule,
    pub reply: crate::reply::Reply<Vec<u64>>,
}

impl Message for ScheduleReply {
    type Result = ();
}

impl Handler<ScheduleReply> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: ScheduleReply, ctx: &mut Self::Context) {
        let fut = <Self as Handler<Schedule>>::handle(self, msg.schedule, ctx);
        let reply = msg.reply;
        ctx.spawn(fut.map(move |r, _, _| {
            let _ = reply.send(r);
        }));
    }
}

/// Schedules through `ScheduleReply`.
pub async fn schedule(
    scheduler: &Addr<Scheduler>,
    schedule: Schedule,
) -> Result<Vec<u64>, BrokerError> {
    crate::reply::call(scheduler, "scheduler", |reply| ScheduleReply {
        schedule,
        reply,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::TopicHandle;
    use crate::message::{prepare, IncomingMessage};
    use crate::model::TopicConfig;
    use crate::topic_queue::{QueueLimits, QueueStats, TopicQueue};
    use bytes::Bytes;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// One message with this body for queue 0 of "T", due at `due_ms`.
    fn at(due_ms: i64, body: &'static [u8]) -> Schedule {
        Schedule {
            topic: "T".into(),
            queue_id: 0,
            messages: vec![msg(body)],
            due_ms,
        }
    }

    fn msg(body: &'static [u8]) -> PreparedMessage {
        prepare(
            IncomingMessage {
                body: Bytes::from_static(body),
                flag: 0,
                properties: String::new(),
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

    /// A scheduler on a stepped clock (starting at `t0`) delivering to a one-queue topic "T".
    struct Fixture {
        _dir: tempfile::TempDir,
        store: rocktor_storage::Store,
        writer: Writer,
        stats: Arc<QueueStats>,
        now: Arc<AtomicI64>,
        t0: i64,
        claims: Arc<std::sync::Mutex<Claims>>,
        sched: Addr<Scheduler>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store =
            rocktor_storage::Store::open(dir.path(), rocktor_storage::FlushMode::Async).unwrap();
        let writer = store.start_writer(0).unwrap();
        let stats = Arc::new(QueueStats::default());
        let queue = TopicQueue::new(
            "T".into(),
            1,
            0,
            Some(Default::default()),
            store.clone(),
            writer.clone(),
            stats.clone(),
            QueueLimits::default(),
        )
        .start();
        let mut reg = Registry::default();
        reg.topics.insert(
            "T".into(),
            Arc::new(TopicHandle {
                config: TopicConfig::for_test("T"),
                queues: vec![queue],
                stats: vec![stats.clone()],
            }),
        );
        let t0 = 10_000_000i64;
        let now = Arc::new(AtomicI64::new(t0));
        let n2 = now.clone();
        let scheduler = Scheduler::new(
            store.clone(),
            writer.clone(),
            Arc::new(ArcSwap::from_pointee(reg)),
            "127.0.0.1:10911".parse().unwrap(),
        )
        .with_clock(Arc::new(move || n2.load(Ordering::SeqCst)));
        let claims = scheduler.claims.clone();
        Fixture {
            _dir: dir,
            store,
            writer,
            stats,
            now,
            t0,
            claims,
            sched: scheduler.start(),
        }
    }

    async fn wait_for(stats: &QueueStats, max: u64) -> bool {
        for _ in 0..40 {
            if stats.max() >= max {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Retention's re-append: a far entry moves to a new record (same due time, its id
    /// indexed), a near one stays and is reported; the moved one is still delivered once, and
    /// a cancel still finds it.
    #[actix::test]
    async fn rehome_moves_far_entries_and_they_still_deliver() {
        let Fixture {
            _dir,
            store,
            writer,
            stats,
            now,
            t0,
            claims,
            sched,
        } = fixture();
        let near = sched.send(at(t0 + 1_000, b"near")).await.unwrap().unwrap()[0];
        let far_msg = msg(b"far");
        let far_id = far_msg.uniq_key.clone();
        let far = sched
            .send(Schedule {
                messages: vec![far_msg],
                ..at(t0 + 3_600_000, b"")
            })
            .await
            .unwrap()
            .unwrap()[0];
        let out = sched
            .send(Rehome { below: far + 1 })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            out.hold,
            Some(near),
            "the near entry stays and holds retention"
        );
        assert_eq!(out.lowest, Some(near));
        assert!(
            store.read_record(far).unwrap().is_some(),
            "the old record is retention's"
        );
        let far_entry = |store: &rocktor_storage::Store| {
            let listed = store.timers_below(u64::MAX, 0, 10).unwrap().moving;
            let t = listed
                .iter()
                .find(|t| t.due_ms == t0 + 3_600_000)
                .unwrap()
                .clone();
            rocktor_storage::keys::parse_timer_key(&t.key).unwrap().1
        };
        let new_seq = far_entry(&store);
        assert!(new_seq > far, "re-appended after the horizon");
        let bytes = store.read_record(new_seq).unwrap().unwrap();
        let rec = record::decode(&bytes).unwrap().0;
        assert_eq!(rec.store_timestamp, t0, "stored anew");
        let held = store
            .index_newest(
                &rocktor_storage::keys::index_prefix(rocktor_storage::keys::HELD_TOPIC_ID, &far_id),
                4,
            )
            .unwrap();
        assert_eq!(
            held,
            vec![new_seq, far],
            "both copies are indexed under its id"
        );
        // A cancel that raced the move answers busy; its retry finds the new copy.
        let old_key = rocktor_storage::keys::timer_key(t0 + 3_600_000, far).to_vec();
        assert!(matches!(
            claims.lock().map(|c| c.get(&old_key).copied()),
            Ok(Some(Claim::Moved { .. }))
        ));
        // The horizon passes the new copy too: it moves again.
        let out = sched
            .send(Rehome { below: new_seq + 1 })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.hold, Some(near));
        let newer = far_entry(&store);
        assert!(newer > new_seq, "moved again: {newer} after {new_seq}");
        now.store(t0 + 3_600_001, Ordering::SeqCst);
        assert!(wait_for(&stats, 2).await, "both delivered");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(stats.max(), 2, "the moved entry is delivered once");
        writer.close();
        store.stop_background_work();
    }

    /// An entry scheduled with a due time before the delivery floor (here a clock step back
    /// after a round delivered later entries) is still delivered on time, not after a restart.
    #[actix::test]
    async fn an_entry_due_before_the_floor_is_still_delivered() {
        let Fixture {
            _dir,
            store,
            writer,
            stats,
            now,
            t0,
            sched,
            ..
        } = fixture();
        sched.send(at(t0 + 100, b"a")).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(stats.max(), 0, "not due yet");
        now.store(t0 + 200, Ordering::SeqCst);
        assert!(wait_for(&stats, 1).await, "the first entry is delivered");
        // The clock steps back; an entry due before the floor (t0 + 100) is scheduled.
        now.store(t0 - 1_000, Ordering::SeqCst);
        sched.send(at(t0 - 500, b"b")).await.unwrap().unwrap();
        now.store(t0 - 400, Ordering::SeqCst);
        assert!(
            wait_for(&stats, 2).await,
            "the entry due before the floor is delivered"
        );
        writer.close();
        store.stop_background_work();
    }
}
