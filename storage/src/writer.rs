//! The one group-commit writer. Appends from every TopicQueue (and metadata and offset
//! updates) gather into one `WriteBatch` per round on a dedicated thread; in sync flush mode the
//! WAL is fsynced before any of them is acknowledged. Actors never wait on RocksDB: they get a
//! oneshot receiver back.
//!
//! Failures: a failed write fails every submission of its round and moves the writer's failure
//! epoch on. Until a probe write succeeds again (tried every second) the writer is unhealthy and
//! fails every write without touching RocksDB, and a batch stamped with an older epoch is failed
//! too, so that a queue whose batch failed never sees a later batch of its own succeed past the
//! hole. The channel is bounded: a full one fails the submission at once, before anything was
//! enqueued, so callers may answer "busy" without the risk of a duplicate.

use crate::keys::{self, CqValue};
use crate::record;
use crate::store::{FlushMode, Store};
use crate::{cf, Result, StorageError};
use bytes::{Bytes, BytesMut};
use rocksdb::{WriteBatch, WriteOptions};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::sync::oneshot;

/// Where a record goes in its consume queue.
#[derive(Debug, Clone, Copy)]
pub struct CqEntry {
    pub topic_id: u32,
    pub queue_id: u32,
    pub queue_offset: u64,
    pub tag_hash: i64,
    pub store_time: i64,
}

/// Where a delayed record goes when it is due.
#[derive(Debug, Clone)]
pub struct TimerEntry {
    pub due_ms: i64,
    pub topic: String,
    pub queue_id: u32,
}

/// One message record; the writer assigns its global sequence and patches it in.
#[derive(Debug)]
pub struct AppendRecord {
    pub record: BytesMut,
    pub cq: Option<CqEntry>,
    /// A delayed record is kept out of its queue until the scheduler re-appends it.
    pub timer: Option<TimerEntry>,
    /// Index keys (without the sequence suffix) under which QUERY_MESSAGE finds this record.
    pub index_keys: Vec<Vec<u8>>,
    /// A transaction's half record: its state, stored under its sequence in `txn`.
    pub txn: Option<Vec<u8>>,
}

/// One unit of atomic work: records plus any plain puts and range deletes.
#[derive(Debug, Default)]
pub struct AppendBatch {
    pub records: Vec<AppendRecord>,
    pub puts: Vec<(&'static str, Vec<u8>, Vec<u8>)>,
    pub deletes: Vec<(&'static str, Vec<u8>)>,
    pub delete_ranges: Vec<(&'static str, Vec<u8>, Vec<u8>)>,
    /// The failure epoch this batch depends on (`Writer::epoch` when the caller's oldest
    /// unfinished batch was submitted): once a write failed after it, the batch is failed
    /// without being written.
    pub epoch: Option<u64>,
}

impl AppendBatch {
    pub fn put(mut self, cf: &'static str, k: Vec<u8>, v: Vec<u8>) -> Self {
        self.puts.push((cf, k, v));
        self
    }
}

/// The sequences and frozen records of a durable batch, in submission order.
#[derive(Debug, Default)]
pub struct AppendDone {
    pub seqs: Vec<u64>,
    pub records: Vec<Bytes>,
}

enum Cmd {
    Write(AppendBatch, oneshot::Sender<Result<AppendDone>>),
    Flush(oneshot::Sender<Result<()>>),
    Stop,
}

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::SyncSender<Cmd>,
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
    health: Arc<Health>,
}

/// What the writer tells everyone about its state without a message.
#[derive(Debug)]
struct Health {
    healthy: AtomicBool,
    epoch: AtomicU64,
    /// The sequence the next record gets, published after each round is assembled.
    next_seq: AtomicU64,
}

/// Upper bound of submissions folded into one WriteBatch.
const MAX_GROUP: usize = 512;
/// Submissions waiting for the writer thread before new ones are refused.
const CHANNEL_CAPACITY: usize = 16 * 1024;
/// How often an unhealthy writer tries a probe write.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// The META key the probe writes (kind 0xff: recovery skips unknown kinds).
const PROBE_KEY: &[u8] = b"\xffprobe";

impl Writer {
    pub(crate) fn start(store: Store, next_seq: u64) -> Result<Writer> {
        let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
        let health = Arc::new(Health {
            healthy: AtomicBool::new(true),
            epoch: AtomicU64::new(0),
            next_seq: AtomicU64::new(next_seq),
        });
        let h2 = health.clone();
        let handle = std::thread::Builder::new()
            .name("rocktor-writer".into())
            .spawn(move || run(store, rx, next_seq, &h2))
            .map_err(|e| StorageError::Meta(format!("cannot start writer thread: {e}")))?;
        Ok(Writer {
            tx,
            thread: Arc::new(std::sync::Mutex::new(Some(handle))),
            health,
        })
    }

    /// Whether the last write (or probe) succeeded: false while the disk refuses writes.
    pub fn is_healthy(&self) -> bool {
        self.health.healthy.load(Ordering::Acquire)
    }

    /// A sequence every record written so far is below (retention's clock reads it).
    pub fn next_seq(&self) -> u64 {
        self.health.next_seq.load(Ordering::Acquire)
    }

    /// The failure epoch: moves on at every failed write.
    pub fn epoch(&self) -> u64 {
        self.health.epoch.load(Ordering::Acquire)
    }

    /// Queues a batch; the receiver resolves once it is durable under the flush mode.
    pub fn submit(&self, batch: AppendBatch) -> oneshot::Receiver<Result<AppendDone>> {
        match self.try_submit(batch) {
            Ok(rx) => rx,
            Err(e) => {
                let (done, rx) = oneshot::channel();
                let _ = done.send(Err(e));
                rx
            }
        }
    }

    /// Queues a batch, or says at once that it was not queued (`Busy`, `WriterGone`): then
    /// nothing of it will ever be written.
    pub fn try_submit(&self, batch: AppendBatch) -> Result<oneshot::Receiver<Result<AppendDone>>> {
        let (done, rx) = oneshot::channel();
        match self.tx.try_send(Cmd::Write(batch, done)) {
            Ok(()) => Ok(rx),
            Err(mpsc::TrySendError::Full(_)) => Err(StorageError::Busy),
            Err(mpsc::TrySendError::Disconnected(_)) => Err(StorageError::WriterGone),
        }
    }

    /// Stops the writer thread after what was submitted before, and waits for it, so that its
    /// reference to the database is gone when this returns. Later submissions fail with
    /// `WriterGone`.
    pub fn close(&self) {
        let _ = self.tx.send(Cmd::Stop);
        let handle = self.thread.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Syncs the WAL and flushes the memtables, after everything submitted before it.
    pub fn flush(&self) -> oneshot::Receiver<Result<()>> {
        let (done, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Cmd::Flush(done))) = self.tx.send(Cmd::Flush(done)) {
            let _ = done.send(Err(StorageError::WriterGone));
        }
        rx
    }
}

/// The one write call, where tests inject failures: `fail::cfg("storage::write",
/// "return(<data dir>)")` fails the writes of that store only (tests share the process).
fn write(store: &Store, wb: WriteBatch, wo: &WriteOptions) -> std::result::Result<(), String> {
    let injected = fail::eval("storage::write", |arg| {
        arg.is_none_or(|dir| std::path::Path::new(&dir) == store.path())
    });
    if injected == Some(true) {
        return Err("injected write failure".into());
    }
    store.db().write_opt(wb, wo).map_err(|e| e.to_string())
}

/// A small synced write: succeeds once the disk takes writes again.
fn probe(store: &Store) -> bool {
    let Ok(meta) = store.handle(cf::META) else {
        return false;
    };
    let mut wb = WriteBatch::default();
    wb.put_cf(meta, PROBE_KEY, b"");
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    write(store, wb, &wo).is_ok()
}

fn run(store: Store, rx: mpsc::Receiver<Cmd>, mut next_seq: u64, health: &Health) {
    let mut wo = WriteOptions::default();
    wo.set_sync(store.flush_mode() == FlushMode::Sync);
    let mut cmds = Vec::with_capacity(MAX_GROUP);
    let mut stopping = false;
    let mut last_probe: Option<std::time::Instant> = None;
    loop {
        let first = if health.healthy.load(Ordering::Acquire) {
            match rx.recv() {
                Ok(c) => c,
                Err(_) => break,
            }
        } else {
            match rx.recv_timeout(PROBE_EVERY) {
                Ok(c) => c,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    last_probe = Some(std::time::Instant::now());
                    if probe(&store) {
                        tracing::warn!("storage writes succeed again; the broker is writable");
                        health.healthy.store(true, Ordering::Release);
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        };
        if !health.healthy.load(Ordering::Acquire)
            && last_probe.is_none_or(|t| t.elapsed() >= PROBE_EVERY)
        {
            last_probe = Some(std::time::Instant::now());
            if probe(&store) {
                tracing::warn!("storage writes succeed again; the broker is writable");
                health.healthy.store(true, Ordering::Release);
            }
        }
        cmds.push(first);
        while cmds.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(c) => cmds.push(c),
                Err(_) => break,
            }
        }
        let mut wb = WriteBatch::default();
        let mut writes: Vec<(oneshot::Sender<Result<AppendDone>>, AppendDone)> = Vec::new();
        let mut flushes = Vec::new();
        let healthy = health.healthy.load(Ordering::Acquire);
        for cmd in cmds.drain(..) {
            match cmd {
                Cmd::Write(batch, done)
                    if !healthy
                        || batch
                            .epoch
                            .is_some_and(|e| e < health.epoch.load(Ordering::Acquire)) =>
                {
                    // Every failed write moves the epoch on at once, so batches that depend on
                    // this one (even later in this round) fail too instead of landing after it.
                    health.epoch.fetch_add(1, Ordering::AcqRel);
                    let _ = done.send(Err(StorageError::Unavailable(
                        "a previous write failed; nothing was written".into(),
                    )));
                }
                Cmd::Write(batch, done) => match add(&store, &mut wb, batch, &mut next_seq) {
                    Ok(d) => writes.push((done, d)),
                    Err(e) => {
                        health.epoch.fetch_add(1, Ordering::AcqRel);
                        let _ = done.send(Err(e));
                    }
                },
                Cmd::Flush(done) => flushes.push(done),
                Cmd::Stop => stopping = true,
            }
        }
        health.next_seq.store(next_seq, Ordering::Release);
        let result = if wb.is_empty() {
            Ok(())
        } else {
            let started = std::time::Instant::now();
            let r = write(&store, wb, &wo);
            // One group commit: the WAL write, and its fsync under sync flush.
            metrics::histogram!("rocketmq_storage_flush_latency")
                .record(started.elapsed().as_secs_f64() * 1000.0);
            r
        };
        match &result {
            Ok(()) => {
                metrics::counter!("rocktor_storage_write_batches_total").increment(1);
                for (done, d) in writes {
                    let _ = done.send(Ok(d));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "storage write failed; nothing in this batch is acknowledged and the broker refuses writes until the disk takes them again");
                metrics::counter!("rocktor_storage_write_failures_total").increment(1);
                health.epoch.fetch_add(1, Ordering::AcqRel);
                health.healthy.store(false, Ordering::Release);
                for (done, _) in writes {
                    let _ = done.send(Err(StorageError::Unavailable(format!("write failed: {e}"))));
                }
            }
        }
        if !flushes.is_empty() {
            // Sync the WAL, then flush memtables so that the next start does not replay the log.
            let r = store
                .db()
                .flush_wal(true)
                .and_then(|_| store.flush_memtables())
                .map_err(|e| e.to_string());
            for done in flushes {
                let _ = done.send(r.clone().map_err(StorageError::Meta));
            }
        }
        if stopping {
            break;
        }
    }
}

fn add(
    store: &Store,
    wb: &mut WriteBatch,
    batch: AppendBatch,
    next_seq: &mut u64,
) -> Result<AppendDone> {
    let log = store.handle(cf::LOG)?;
    let cq = store.handle(cf::CQ)?;
    let index = store.handle(cf::INDEX)?;
    let timer = store.handle(cf::TIMER)?;
    let txn = store.handle(cf::TXN)?;
    let mut done = AppendDone {
        seqs: Vec::with_capacity(batch.records.len()),
        records: Vec::with_capacity(batch.records.len()),
    };
    for mut r in batch.records {
        let seq = *next_seq;
        *next_seq += 1;
        record::patch_physical_offset(&mut r.record, seq);
        let frozen = r.record.freeze();
        wb.put_cf(log, keys::log_key(seq), &frozen);
        if let Some(e) = r.cq {
            let v = CqValue {
                seq,
                size: frozen.len() as u32,
                tag_hash: e.tag_hash,
                store_time: e.store_time,
            };
            wb.put_cf(
                cq,
                keys::cq_key(e.topic_id, e.queue_id, e.queue_offset),
                v.encode(),
            );
        }
        if let Some(t) = r.timer {
            wb.put_cf(
                timer,
                keys::timer_key(t.due_ms, seq),
                keys::timer_value(t.queue_id, &t.topic),
            );
        }
        if let Some(state) = r.txn {
            wb.put_cf(txn, keys::txn_key(seq), state);
        }
        for mut k in r.index_keys {
            k.extend_from_slice(&seq.to_be_bytes());
            wb.put_cf(index, k, b"");
        }
        done.seqs.push(seq);
        done.records.push(frozen);
    }
    for (name, k, v) in batch.puts {
        wb.put_cf(store.handle(name)?, k, v);
    }
    for (name, k) in batch.deletes {
        wb.delete_cf(store.handle(name)?, k);
    }
    for (name, from, to) in batch.delete_ranges {
        wb.delete_range_cf(store.handle(name)?, from, to);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordParts;

    fn rec(topic: &str, q: u32, off: u64, body: &[u8]) -> AppendRecord {
        let parts = RecordParts {
            queue_id: q as i32,
            flag: 0,
            queue_offset: off as i64,
            sys_flag: 0,
            born_timestamp: 1,
            born_host: "127.0.0.1:1".parse().unwrap(),
            store_timestamp: 1000 + off as i64,
            store_host: "127.0.0.1:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body,
            topic,
            properties: "",
        };
        let mut b = BytesMut::new();
        record::encode(&parts, &mut b);
        AppendRecord {
            record: b,
            cq: Some(CqEntry {
                topic_id: 1,
                queue_id: q,
                queue_offset: off,
                tag_hash: off as i64 % 2,
                store_time: 1000 + off as i64,
            }),
            index_keys: vec![],
            txn: None,
            timer: None,
        }
    }

    #[test]
    fn appends_are_durable_and_readable_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), FlushMode::Sync).unwrap();
            let w = store.start_writer(0).unwrap();
            let batch = AppendBatch {
                records: (0..10)
                    .map(|i| rec("T", 0, i, format!("m{i}").as_bytes()))
                    .collect(),
                ..Default::default()
            };
            let done = w.submit(batch).blocking_recv().unwrap().unwrap();
            assert_eq!(done.seqs, (0..10).collect::<Vec<_>>());
            let (r, _) = record::decode(&done.records[3]).unwrap();
            assert_eq!(r.physical_offset, 3);
        }
        // The writer thread lets go of the DB once it sees its channel closed.
        let store = (0..100)
            .find_map(|_| {
                Store::open(dir.path(), FlushMode::Sync).ok().or_else(|| {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    None
                })
            })
            .expect("reopen after the writer stopped");
        let rec = store.recover().unwrap();
        assert_eq!(rec.next_seq, 10);
        let b = store.queue_bounds(1, 0).unwrap();
        assert_eq!((b.min, b.max), (0, 10));
        assert_eq!(
            store.queue_bounds(1, 1).unwrap(),
            crate::QueueBounds::default()
        );
        let read = crate::QueueRead {
            topic_id: 1,
            queue_id: 0,
            from: 2,
            upto: 10,
            max_count: 100,
            max_bytes: 1 << 20,
        };
        let out = store.read_queue(&read, &|v| v.tag_hash == 0).unwrap();
        assert_eq!(
            out.entries.iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![2, 4, 6, 8]
        );
        assert_eq!(out.next_offset, 10);
        assert_eq!(
            store.search_offset_by_time(1, 0, b, 1004, false).unwrap(),
            4
        );
        assert_eq!(store.search_offset_by_time(1, 0, b, 1004, true).unwrap(), 4);
        assert_eq!(store.search_offset_by_time(1, 0, b, 5000, true).unwrap(), 9);
        assert_eq!(store.search_offset_by_time(1, 0, b, 0, false).unwrap(), 0);
    }

    fn one(store: &Store, off: u64) -> AppendBatch {
        let _ = store;
        AppendBatch {
            records: vec![rec("T", 0, off, b"x")],
            ..Default::default()
        }
    }

    /// Sync flush: every acknowledgement follows a WAL sync (RocksDB's own count); async
    /// flush: no sync at all. This is what makes kill -9 under sync flush lose nothing.
    #[test]
    fn sync_flush_acknowledges_only_after_a_wal_sync() {
        for (mode, writes) in [(FlushMode::Sync, 20u64), (FlushMode::Async, 20)] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_with(dir.path(), mode, true).unwrap();
            let w = store.start_writer(0).unwrap();
            let before = store.wal_syncs().unwrap();
            for i in 0..writes {
                w.submit(one(&store, i)).blocking_recv().unwrap().unwrap();
                if mode == FlushMode::Sync {
                    assert!(
                        store.wal_syncs().unwrap() - before > i,
                        "ack {i} before its sync"
                    );
                }
            }
            let synced = store.wal_syncs().unwrap() - before;
            match mode {
                FlushMode::Sync => assert!(synced >= writes, "{synced} syncs for {writes} acks"),
                FlushMode::Async => assert_eq!(synced, 0),
            }
            w.close();
            store.stop_background_work();
        }
    }

    /// A failed write fails its batch, makes the writer unhealthy, fails batches that depend
    /// on the failed epoch, and the writer comes back once writes succeed again.
    #[test]
    fn a_failed_write_is_never_acknowledged_and_the_writer_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), FlushMode::Sync).unwrap();
        let w = store.start_writer(0).unwrap();
        w.submit(one(&store, 0)).blocking_recv().unwrap().unwrap();
        assert_eq!(w.epoch(), 0);
        let tag = format!("return({})", dir.path().display());
        fail::cfg("storage::write", &tag).unwrap();
        let err = w
            .submit(one(&store, 1))
            .blocking_recv()
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
        assert!(!w.is_healthy());
        assert_eq!(w.epoch(), 1);
        fail::remove("storage::write");
        // A batch that depends on the failed epoch is refused even though the disk is back.
        let mut stale = one(&store, 1);
        stale.epoch = Some(0);
        assert!(w.submit(stale).blocking_recv().unwrap().is_err());
        // The writer probes and takes writes again.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut fresh = one(&store, 1);
        fresh.epoch = Some(w.epoch());
        let done = w.submit(fresh).blocking_recv().unwrap();
        let done = match done {
            Ok(d) => d,
            Err(_) => loop {
                assert!(
                    std::time::Instant::now() < deadline,
                    "writer never recovered"
                );
                std::thread::sleep(Duration::from_millis(100));
                if let Ok(d) = w.submit(one(&store, 1)).blocking_recv().unwrap() {
                    break d;
                }
            },
        };
        assert_eq!(done.seqs.len(), 1);
        assert!(w.is_healthy());
        // Only the acknowledged records are stored.
        let read = crate::QueueRead {
            topic_id: 1,
            queue_id: 0,
            from: 0,
            upto: 10,
            max_count: 100,
            max_bytes: 1 << 20,
        };
        let out = store.read_queue(&read, &|_| true).unwrap();
        assert_eq!(
            out.entries.iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![0, 1]
        );
        w.close();
        store.stop_background_work();
    }
}
