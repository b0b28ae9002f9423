//! Retention — expiry of old messages and the disk watermarks.
//!
//! State it owns: retention's clock (the last checkpoint written), what the last pass left
//! (the floor, the lowest scheduled record it must wait for, how far the last timer scan went),
//! and the disk state every send reads without a message (`DiskGuard`).
//!
//! Messages: its own tick (`interval`), `RunPass` (one pass now; tests and admin), and
//! `RetentionStatus`.
//!
//! A pass:
//! 1. writes a checkpoint of retention's clock (now → the writer's next sequence), so "every
//!    record stored before time T" is one seek, with no scan of the log;
//! 2. reads the data directory's disk use (an injectable `DiskProbe`): at or above
//!    `refuse_ratio` sends are refused (SERVICE_NOT_AVAILABLE) until use falls below
//!    `resume_ratio`; at or above `clean_ratio`, and while sends are refused, the oldest tenth
//!    of the log goes early (Apache's forced clean), pass after pass;
//! 3. picks the horizon: the records stored before now − `retention_ms`, or further when
//!    cleaning forcibly; it waits for pending half messages younger than the retention time
//!    (older ones are dropped, as Apache drops half messages past its file reserved time) and
//!    for scheduled records the Scheduler could not move: it re-appends every other scheduled
//!    record below the horizon first (`Rehome`), so a delay longer than the retention time
//!    never holds the log back and is never lost;
//! 4. moves every queue's minimum past its expired entries (and further for a topic with a
//!    shorter `retention.ms`), keeping each queue's last entry so its offsets never restart;
//! 5. deletes the log, consume-queue and half-message ranges in one write through the writer,
//!    publishes the new minimums once that is durable, then gives the space back
//!    (`Store::reclaim_below`: whole SST files dropped, the rest compacted).
//!
//! Durability: the deletes are one atomic write; a crash before it changes nothing, a crash
//! after it leaves the range deleted and the next start reads the minimums from the consume
//! queues. Records in flight to a consumer that were not yet acknowledged may expire like in
//! Apache: a pull skips a record that is gone.

use crate::broker::Registry;
use crate::error::{blocking, BrokerError};
use crate::scheduler::{Clock, Rehome, Scheduler};
use actix::prelude::*;
use arc_swap::ArcSwap;
use rocktor_storage::{AppendBatch, DiskSpace, QueueBounds, Store, Writer};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where disk use comes from: statvfs of the data directory, or a test's own numbers.
#[derive(Clone)]
pub struct DiskProbe(pub Arc<DiskSpaceOf>);

/// Reads the disk space of the file system holding a path.
pub type DiskSpaceOf = dyn Fn(&Path) -> std::io::Result<DiskSpace> + Send + Sync;

impl Default for DiskProbe {
    fn default() -> Self {
        DiskProbe(Arc::new(|p: &Path| rocktor_storage::disk_space(p)))
    }
}

impl std::fmt::Debug for DiskProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiskProbe")
    }
}

#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// How long messages are kept (Apache's fileReservedTime, 72 h).
    pub retention_ms: i64,
    /// How often a pass runs.
    pub interval: Duration,
    /// Disk use at which the oldest messages go before their time.
    pub clean_ratio: f64,
    /// Disk use at which sends are refused...
    pub refuse_ratio: f64,
    /// ...until it falls below this.
    pub resume_ratio: f64,
    pub probe: DiskProbe,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            retention_ms: 72 * 3_600_000,
            interval: Duration::from_secs(10),
            clean_ratio: 0.85,
            refuse_ratio: 0.90,
            resume_ratio: 0.85,
            probe: DiskProbe::default(),
        }
    }
}

/// The topic attribute of a shorter retention for one topic (milliseconds).
pub const ATTR_RETENTION_MS: &str = "retention.ms";

/// Disk state, read by every send without a message.
#[derive(Debug, Default)]
pub struct DiskGuard {
    refused: AtomicBool,
    /// Disk use in parts per million, from the last pass.
    used_ppm: AtomicU64,
}

impl DiskGuard {
    /// Refuses a send while the disk is above its watermark, with Apache's remark.
    pub fn check_writable(&self) -> Result<(), BrokerError> {
        if !self.refused.load(Ordering::Acquire) {
            return Ok(());
        }
        let used = self.used_ppm.load(Ordering::Acquire) as f64 / 10_000.0;
        Err(BrokerError::WriteUnavailable(format!(
            "service not available now. It may be caused by one of the following reasons: \
             the broker's disk is full [{used:.2}%], messages are put to the slave, message \
             store has been shut down, etc."
        )))
    }

    pub fn refused(&self) -> bool {
        self.refused.load(Ordering::Acquire)
    }

    pub fn used_ratio(&self) -> f64 {
        self.used_ppm.load(Ordering::Acquire) as f64 / 1e6
    }

    /// Takes a reading; answers whether the refusal changed.
    fn observe(&self, used: f64, s: &RetentionSettings) -> Option<bool> {
        self.used_ppm
            .store((used.clamp(0.0, 1.0) * 1e6) as u64, Ordering::Release);
        let was = self.refused.load(Ordering::Acquire);
        let now = if was {
            used >= s.resume_ratio
        } else {
            used >= s.refuse_ratio
        };
        self.refused.store(now, Ordering::Release);
        (now != was).then_some(now)
    }
}

/// What the last pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassReport {
    /// Records below this sequence are gone.
    pub floor: u64,
    pub disk_used: f64,
    pub forced: bool,
    pub writes_refused: bool,
    /// Queues whose minimum moved.
    pub queues_moved: usize,
    /// The horizon was held back by a record still needed (scheduled or half message).
    pub held_by: Option<u64>,
}

pub struct Retention {
    store: Store,
    writer: Writer,
    registry: Arc<ArcSwap<Registry>>,
    scheduler: Addr<Scheduler>,
    settings: RetentionSettings,
    guard: Arc<DiskGuard>,
    clock: Clock,
    busy: bool,
    carried: Carried,
    last: PassReport,
}

/// What one pass leaves the next.
#[derive(Debug, Clone, Copy, Default)]
struct Carried {
    /// No timer entry has a sequence below this (the last scan's lowest, or the writer's next
    /// sequence then): while the horizon is not above it, no scan is needed.
    timers_from: u64,
    /// The lowest scheduled record the last scan had to leave below its horizon.
    timer_hold: Option<u64>,
    /// Passes that deleted something since the last manual compaction of the log's boundary.
    since_compaction: u32,
}

/// A manual compaction of the log below the horizon at most every this many deleting passes
/// (whole files go at once anyway; the boundary file waits a little).
const COMPACT_EVERY: u32 = 10;

pub struct RetentionParts {
    pub store: Store,
    pub writer: Writer,
    pub registry: Arc<ArcSwap<Registry>>,
    pub scheduler: Addr<Scheduler>,
    pub settings: RetentionSettings,
    pub guard: Arc<DiskGuard>,
}

impl Retention {
    pub fn new(p: RetentionParts) -> Self {
        Retention {
            last: PassReport {
                floor: p.store.retention_floor(),
                ..Default::default()
            },
            store: p.store,
            writer: p.writer,
            registry: p.registry,
            scheduler: p.scheduler,
            settings: p.settings,
            guard: p.guard,
            clock: Arc::new(crate::now_ms),
            busy: false,
            carried: Carried::default(),
        }
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn pass(&mut self) -> impl Future<Output = Result<(PassReport, Carried), BrokerError>> {
        let now = (self.clock)();
        let ctx = PassInput {
            store: self.store.clone(),
            writer: self.writer.clone(),
            registry: self.registry.load_full(),
            scheduler: self.scheduler.clone(),
            settings: self.settings.clone(),
            guard: self.guard.clone(),
            carried: self.carried,
            now,
        };
        run_pass(ctx)
    }
}

struct PassInput {
    store: Store,
    writer: Writer,
    registry: Arc<Registry>,
    scheduler: Addr<Scheduler>,
    settings: RetentionSettings,
    guard: Arc<DiskGuard>,
    carried: Carried,
    now: i64,
}

async fn submit(writer: &Writer, batch: AppendBatch) -> Result<(), BrokerError> {
    crate::error::written(writer.try_submit(batch)?.await).map(|_| ())
}

/// Reads the data directory's disk use into the guard (the watermarks) and the gauges; on a
/// failed reading the last one stands.
async fn read_disk(store: &Store, s: &RetentionSettings, guard: &DiskGuard) -> f64 {
    let (probe, path) = (s.probe.clone(), store.path().to_path_buf());
    let used = match tokio::task::spawn_blocking(move || (probe.0)(&path)).await {
        Ok(Ok(d)) => d.used_ratio(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the data directory's disk use");
            guard.used_ratio()
        }
        Err(_) => guard.used_ratio(),
    };
    metrics::gauge!("rocktor_disk_used_ratio").set(used);
    match guard.observe(used, s) {
        Some(true) => tracing::error!(
            used = format!("{:.1}%", used * 100.0),
            "disk use is above the refuse watermark: new messages are refused until it falls below {:.0}%",
            s.resume_ratio * 100.0
        ),
        Some(false) => tracing::warn!(
            used = format!("{:.1}%", used * 100.0),
            "disk use is below the resume watermark again: sends are accepted"
        ),
        None => {}
    }
    metrics::gauge!("rocktor_disk_writes_refused").set(if guard.refused() { 1.0 } else { 0.0 });
    used
}

/// One pass; answers its report and what the next pass needs.
async fn run_pass(p: PassInput) -> Result<(PassReport, Carried), BrokerError> {
    let s = &p.settings;
    // 1. Disk use, first: a writer that refuses (a full disk) must not stop the watermarks.
    let used = read_disk(&p.store, s, &p.guard).await;
    // While sends are refused the clean goes on whatever the marks, so a resume mark below
    // the clean mark cannot leave the broker refusing with nothing freeing space.
    let forced = used >= s.clean_ratio || p.guard.refused();

    // 2. Retention's clock. A checkpoint that cannot be written (a busy or failing writer) is
    // only a later horizon: the pass goes on with the ones already there.
    let mut clock = AppendBatch::default();
    clock
        .puts
        .push(Store::time_checkpoint(p.now, p.writer.next_seq()));
    if let Err(e) = submit(&p.writer, clock).await {
        tracing::warn!(error = %e, "retention's clock checkpoint was not written");
    }

    // 3. The horizon.
    let cutoff = p.now.saturating_sub(s.retention_ms);
    let store = p.store.clone();
    let next = p.writer.next_seq();
    let (by_time, first, last) = blocking(move || {
        Ok((
            store.written_by(cutoff)?,
            store.first_log_seq()?,
            store.last_log_seq()?,
        ))
    })
    .await?;
    // The newest record always stays: a restart numbers new records after the last one kept.
    let keep_last = last.unwrap_or(0);
    let time_horizon = by_time.map_or(0, |(_, seq)| seq).min(keep_last);
    let mut horizon = time_horizon;
    if forced {
        let first = first.unwrap_or(next);
        let step = (next.saturating_sub(first) / 10).max(1);
        horizon = horizon.max(first.saturating_add(step).min(keep_last));
        tracing::warn!(
            used = format!("{:.1}%", used * 100.0),
            "disk use is above the clean watermark: deleting the oldest messages early"
        );
    }
    let mut held_by = None;
    // Half messages still within the retention time hold the horizon.
    let store = p.store.clone();
    let first_txn = blocking(move || store.first_txn_seq(time_horizon)).await?;
    if let Some(t) = first_txn {
        if t < horizon {
            horizon = t;
            held_by = Some(t);
        }
    }
    // Scheduled records: moved ahead by the Scheduler, the rest waited for. No timer entry
    // lies below `timers_from`, so until the horizon passes it there is nothing to scan.
    let mut carried = p.carried;
    let floor = p.store.retention_floor();
    if horizon > floor && horizon > carried.timers_from {
        let written_before = p.writer.next_seq();
        let out = p
            .scheduler
            .send(Rehome { below: horizon })
            .await
            .map_err(BrokerError::from)??;
        carried.timer_hold = out.hold;
        carried.timers_from = [out.lowest, out.hold]
            .into_iter()
            .flatten()
            .fold(written_before, u64::min);
    }
    if let Some(h) = carried.timer_hold {
        if h < horizon {
            horizon = h;
            held_by = Some(held_by.map_or(h, |x: u64| x.min(h)));
        }
    }
    let mut report = PassReport {
        floor,
        disk_used: used,
        forced,
        writes_refused: p.guard.refused(),
        queues_moved: 0,
        held_by,
    };

    // 4. Queue minimums (also for topics with a shorter retention of their own).
    let queues: Vec<QueueCut> = p
        .registry
        .topics
        .values()
        .flat_map(|t| {
            let own = t
                .config
                .attributes
                .get(ATTR_RETENTION_MS)
                .and_then(|v| v.parse::<i64>().ok())
                .filter(|ms| *ms > 0 && *ms < s.retention_ms)
                .map(|ms| p.now.saturating_sub(ms));
            t.stats.iter().enumerate().map(move |(q, st)| QueueCut {
                topic_id: t.config.id,
                queue_id: q as u32,
                bounds: QueueBounds {
                    min: st.min(),
                    max: st.max(),
                },
                stored_before: own,
                stats: st.clone(),
                new_min: 0,
            })
        })
        .collect();
    let any_topic_cut = queues.iter().any(|q| q.stored_before.is_some());
    if horizon <= floor && !any_topic_cut {
        return Ok((report, carried));
    }
    let store = p.store.clone();
    let cuts = blocking(move || {
        let mut out = Vec::new();
        for mut q in queues {
            if q.bounds.max == 0 {
                continue;
            }
            let mut new_min = q.bounds.min;
            if horizon > floor {
                new_min = new_min
                    .max(store.first_offset_from_seq(q.topic_id, q.queue_id, q.bounds, horizon)?);
            }
            if let Some(ts) = q.stored_before {
                new_min = new_min
                    .max(store.search_offset_by_time(q.topic_id, q.queue_id, q.bounds, ts, false)?);
            }
            // The last entry stays: a queue's offsets must never start again at 0.
            new_min = new_min.min(q.bounds.max - 1);
            if new_min > q.bounds.min {
                q.new_min = new_min;
                out.push(q);
            }
        }
        Ok(out)
    })
    .await?;

    // 5. One write, then the minimums, then the space.
    let mut batch = AppendBatch::default();
    for q in &cuts {
        batch
            .delete_ranges
            .push(Store::cq_entries_below(q.topic_id, q.queue_id, q.new_min));
    }
    if horizon > floor {
        batch.delete_ranges.extend(Store::log_below(horizon));
        if let Some((at, _)) = by_time {
            batch.delete_ranges.push(Store::time_checkpoints_before(at));
        }
    }
    if batch.delete_ranges.is_empty() {
        return Ok((report, carried));
    }
    submit(&p.writer, batch).await?;
    for q in &cuts {
        q.stats.min.fetch_max(q.new_min, Ordering::AcqRel);
    }
    report.queues_moved = cuts.len();
    if horizon > floor {
        carried.since_compaction += 1;
        // Compact the boundary now and then, or at once when space is short or nothing is left.
        let compact = forced || carried.since_compaction >= COMPACT_EVERY || horizon >= keep_last;
        if compact {
            carried.since_compaction = 0;
        }
        let store = p.store.clone();
        blocking(move || store.reclaim_below(horizon, compact)).await?;
        report.floor = horizon;
        metrics::gauge!("rocktor_retention_floor").set(horizon as f64);
        tracing::info!(
            below = horizon,
            queues = cuts.len(),
            forced,
            "retention deleted expired messages"
        );
    }
    Ok((report, carried))
}

struct QueueCut {
    topic_id: u32,
    queue_id: u32,
    bounds: QueueBounds,
    /// A topic's own retention: entries stored before this time go too.
    stored_before: Option<i64>,
    stats: Arc<crate::topic_queue::QueueStats>,
    new_min: u64,
}

impl Actor for Retention {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        // The first reading at once, not a check interval after start: the watermarks and the
        // gauge start from the disk as it is.
        let (store, settings, guard) = (
            self.store.clone(),
            self.settings.clone(),
            self.guard.clone(),
        );
        actix::spawn(async move {
            read_disk(&store, &settings, &guard).await;
        });
        // A crash between a pass's delete and its reclaim left the space to compactions: give
        // it back once at start (a no-op when there is nothing below the floor).
        let store = self.store.clone();
        if store.retention_floor() > 0 {
            actix::spawn(async move {
                let floor = store.retention_floor();
                if let Err(e) = blocking(move || store.reclaim_below(floor, true)).await {
                    tracing::warn!(error = %e, "reclaiming expired space at start failed");
                }
            });
        }
        ctx.run_interval(self.settings.interval, |act, ctx| {
            if act.busy {
                return;
            }
            act.busy = true;
            ctx.spawn(act.pass().into_actor(act).map(|r, act, _| {
                act.busy = false;
                act.absorb(r);
            }));
        });
    }
}

impl Retention {
    fn absorb(&mut self, r: Result<(PassReport, Carried), BrokerError>) {
        match r {
            Ok((report, carried)) => {
                self.carried = carried;
                self.last = report;
            }
            Err(e) => tracing::warn!(error = %e, "retention pass failed; trying again next time"),
        }
    }
}

/// Runs one pass now (after the one running, if any) and answers its report.
pub struct RunPass;

impl Message for RunPass {
    type Result = Result<PassReport, BrokerError>;
}

impl Handler<RunPass> for Retention {
    type Result = ResponseActFuture<Self, Result<PassReport, BrokerError>>;

    fn handle(&mut self, _: RunPass, _: &mut Self::Context) -> Self::Result {
        if self.busy {
            return Box::pin(fut::ready(Err(BrokerError::SystemBusy)));
        }
        self.busy = true;
        Box::pin(self.pass().into_actor(self).map(|r, act, _| {
            act.busy = false;
            let out = r.as_ref().map(|(rep, _)| rep.clone()).map_err(Clone::clone);
            act.absorb(r);
            out
        }))
    }
}

/// What the last pass did.
pub struct RetentionStatus;

impl Message for RetentionStatus {
    type Result = PassReport;
}

impl Handler<RetentionStatus> for Retention {
    type Result = MessageResult<RetentionStatus>;

    fn handle(&mut self, _: RetentionStatus, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.last.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{PullRequest, SendRequest};
    use crate::topic_queue::PullStatus;
    use crate::{BrokerContext, BrokerSettings, TopicSpec};
    use bytes::Bytes;

    fn send(topic: &str, props: &str) -> SendRequest {
        SendRequest::for_test(topic, Bytes::from(vec![7u8; 512]), props)
    }

    /// A broker whose disk use is whatever `used_ppm` says, with passes run by hand.
    async fn broker(dir: &Path, retention_ms: i64) -> (BrokerContext, Arc<AtomicU64>) {
        let used_ppm = Arc::new(AtomicU64::new(100_000));
        let u = used_ppm.clone();
        let probe = DiskProbe(Arc::new(move |_: &Path| {
            let used = u.load(Ordering::Relaxed);
            let free = 1_000_000 - used.min(1_000_000);
            Ok(DiskSpace {
                total: 1_000_000,
                free,
                available: free,
            })
        }));
        let store = Store::open(dir, rocktor_storage::FlushMode::Async).unwrap();
        let settings = BrokerSettings {
            retention: RetentionSettings {
                retention_ms,
                interval: Duration::from_secs(3600),
                probe,
                ..Default::default()
            },
            ..Default::default()
        };
        let b = BrokerContext::start(settings, store).await.unwrap();
        b.create_topic(TopicSpec::single_queue("T"), "")
            .await
            .unwrap();
        (b, used_ppm)
    }

    async fn pass(b: &BrokerContext) -> PassReport {
        b.retention.send(RunPass).await.unwrap().unwrap()
    }

    #[actix::test]
    async fn the_watermarks_refuse_and_resume_sends_and_clean_early() {
        let dir = tempfile::tempdir().unwrap();
        let (b, used) = broker(dir.path(), 72 * 3_600_000).await;
        for _ in 0..100 {
            b.send(send("T", "")).await.unwrap();
        }
        let r = pass(&b).await;
        assert!(!r.writes_refused && !r.forced && r.floor == 0, "{r:?}");
        // Above the clean watermark: the oldest tenth goes, though nothing is old.
        used.store(870_000, Ordering::Relaxed);
        let r = pass(&b).await;
        assert!(r.forced && !r.writes_refused, "{r:?}");
        assert!(r.floor >= 9, "{r:?}");
        let stats = b.queue_stats("T", 0).unwrap();
        assert!(
            stats.min() >= 9 && stats.max() == 100,
            "min {}",
            stats.min()
        );
        // Above the refuse watermark: sends fail with Apache's remark; reads go on.
        used.store(920_000, Ordering::Relaxed);
        let r = pass(&b).await;
        assert!(r.writes_refused, "{r:?}");
        match b.send(send("T", "")).await {
            Err(BrokerError::WriteUnavailable(m)) => {
                assert!(m.contains("disk is full [92.00%]"), "{m}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let pulled = b
            .pull(PullRequest {
                group: "G".into(),
                topic: "T".into(),
                queue_id: 0,
                offset: 0,
                max_msgs: 32,
                max_bytes: 1 << 20,
                subscription: Some(("*".into(), "TAG".into())),
                sub_version: 0,
                commit_offset: None,
                hold: None,
                connection_holds: None,
                caller_gone: None,
                caller_budget: None,
            })
            .await
            .unwrap();
        assert_eq!(
            pulled.status,
            PullStatus::OffsetMoved,
            "a reader behind retention"
        );
        assert_eq!(pulled.next_offset, stats.min());
        // Between the watermarks: still refused (hysteresis) until below the resume mark.
        used.store(870_000, Ordering::Relaxed);
        assert!(pass(&b).await.writes_refused);
        used.store(800_000, Ordering::Relaxed);
        let r = pass(&b).await;
        assert!(!r.writes_refused && !r.forced, "{r:?}");
        b.send(send("T", "")).await.unwrap();
        b.shutdown().await;
    }

    #[actix::test]
    async fn a_far_scheduled_message_outlives_many_horizons() {
        let dir = tempfile::tempdir().unwrap();
        let (b, _) = broker(dir.path(), 300).await;
        let due = crate::now_ms() + 3_600_000;
        let first = b
            .send(send("T", &format!("TIMER_DELIVER_MS\u{1}{due}\u{2}")))
            .await
            .unwrap()
            .seqs[0];
        let mut at = first;
        for round in 0..4 {
            for _ in 0..20 {
                b.send(send("T", "")).await.unwrap();
            }
            pass(&b).await;
            tokio::time::sleep(Duration::from_millis(350)).await;
            let r = pass(&b).await;
            let timers = b.store.timers_below(u64::MAX, 0, 10).unwrap().moving;
            assert_eq!(timers.len(), 1, "round {round}: {r:?}");
            let (d, seq) = rocktor_storage::keys::parse_timer_key(&timers[0].key).unwrap();
            assert_eq!(d, due);
            let record = b.store.read_record(seq).unwrap();
            assert!(record.is_some(), "round {round}: record {seq} is there");
            assert!(
                seq >= r.floor,
                "round {round}: {seq} below the floor {}",
                r.floor
            );
            assert!(seq > at || r.floor <= at, "round {round}");
            at = seq;
        }
        assert!(at > first, "moved ahead");
        b.shutdown().await;
    }

    #[actix::test]
    async fn expiry_moves_minimums_keeps_the_newest_and_waits_for_held_records() {
        let dir = tempfile::tempdir().unwrap();
        let (b, _) = broker(dir.path(), 300).await;
        for _ in 0..50 {
            b.send(send("T", "")).await.unwrap();
        }
        // A scheduled message due in a few seconds: too close to move, so it is waited for.
        let due = crate::now_ms() + 5_000;
        let held = b
            .send(send("T", &format!("TIMER_DELIVER_MS\u{1}{due}\u{2}")))
            .await
            .unwrap()
            .seqs[0];
        for _ in 0..50 {
            b.send(send("T", "")).await.unwrap();
        }
        pass(&b).await; // the clock's first checkpoint
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = pass(&b).await;
        assert_eq!(r.held_by, Some(held), "{r:?}");
        assert_eq!(r.floor, held);
        let stats = b.queue_stats("T", 0).unwrap();
        assert_eq!(stats.min(), 50, "every record below the held one expired");
        assert!(b.view_message(0).await.is_err(), "record 0 is gone");
        assert!(b.view_message(held).await.is_ok());
        // What the next start reads back: the consume queue's first entry, the log's first key.
        let id = b.existing_topic("T").unwrap().config.id;
        let bounds = b.store.queue_bounds(id, 0).unwrap();
        assert_eq!((bounds.min, bounds.max), (50, 100));
        assert_eq!(b.store.first_log_seq().unwrap(), Some(held));
        b.shutdown().await;
    }
}
