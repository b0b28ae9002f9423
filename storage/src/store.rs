//! The RocksDB instance: opening, recovery reads and the read paths. Every method blocks;
//! call them from a blocking pool or at start-up, never from an actor's arbiter thread.

use crate::direct_io;
use crate::keys::{self, CqValue};
use crate::writer::Writer;
use crate::{cf, Result, StorageError};
use bytes::Bytes;
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode, Options, DB};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// When a send is acknowledged relative to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushMode {
    /// Written to the WAL (the OS page cache) before the ack; survives a process crash, not a
    /// power loss or kernel crash.
    Async,
    /// The WAL is fsynced before any message of a batch is acknowledged.
    Sync,
}

/// First and next offset of a consume queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueBounds {
    pub min: u64,
    pub max: u64,
}

/// One consume-queue entry read back with its record.
#[derive(Debug, Clone)]
pub struct ReadEntry {
    pub offset: u64,
    pub cq: CqValue,
    pub record: Bytes,
}

/// What a queue read found: the matching entries and the offset after the last scanned one.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    pub entries: Vec<ReadEntry>,
    pub next_offset: u64,
    pub scanned: u64,
}

/// Which part of a queue to read.
#[derive(Debug, Clone, Copy)]
pub struct QueueRead {
    pub topic_id: u32,
    pub queue_id: u32,
    pub from: u64,
    /// Exclusive upper bound: the committed offset.
    pub upto: u64,
    pub max_count: usize,
    pub max_bytes: usize,
}

/// A delayed record whose time has come.
#[derive(Debug, Clone)]
pub struct DueTimer {
    pub key: Vec<u8>,
    pub due_ms: i64,
    pub topic: String,
    pub queue_id: u32,
    /// None when the record is gone (retention); the timer entry is then just dropped.
    pub record: Option<Bytes>,
}

/// Everything start-up needs besides the per-queue bounds.
#[derive(Debug, Default)]
pub struct Recovered {
    pub meta: Vec<(u8, String, Vec<u8>)>,
    pub offsets: Vec<(String, String, u32, i64)>,
    pub next_seq: u64,
}

#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    flush: FlushMode,
    path: Arc<std::path::PathBuf>,
    /// RocksDB's statistics, when opened with them (tests count WAL syncs).
    stats: Option<Arc<Options>>,
    /// Retention's floor: every record below this sequence is expired; the index family's
    /// compactions drop entries that point below it.
    floor: Arc<AtomicU64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("flush", &self.flush).finish()
    }
}

/// Block size of the `log` column family's SST files.
const LOG_BLOCK_SIZE: usize = 64 << 10;

impl Store {
    pub fn open(path: &Path, flush: FlushMode) -> Result<Self> {
        Self::open_with(path, flush, false)
    }

    /// Opens with RocksDB's statistics on (`ticker`), for tests that count what RocksDB did.
    pub fn open_with(path: &Path, flush: FlushMode, statistics: bool) -> Result<Self> {
        let mut opts = Options::default();
        if statistics {
            opts.enable_statistics();
        }
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        // Eight jobs give two flush threads (RocksDB takes a quarter for flushes): a WAL-size
        // flush switches every column family at once, and with one thread the log memtables
        // queued behind the small ones until writes stopped (rocksdb LOG: "Stopping writes
        // because we have 4 immutable memtables").
        opts.set_max_background_jobs(8);
        opts.set_bytes_per_sync(1 << 20);
        if direct_io::supported(path) {
            opts.set_use_direct_io_for_flush_and_compaction(true);
        }
        // Flushes and compactions run at the lowest CPU priority (nice 19): on two cores a
        // flush took a core from the connection threads for a few ms at a time, which set the
        // send p99 at 50k msg/s (16.2 / 12.7 ms; 8.6 / 9.7 ms lowered). They catch up in idle
        // time; if they fall behind, RocksDB's write stalls hold senders back. This is the
        // process-wide default Env, which an embedding application's own RocksDB shares.
        let mut env = rocksdb::Env::new()?;
        env.lower_thread_pool_cpu_priority();
        env.lower_high_priority_thread_pool_cpu_priority();
        opts.set_env(&env);
        // Bounds what a restart after a crash replays: past 256 MiB of WAL every memtable is
        // flushed. Measured: 6.0 s to restart after kill -9 with 2M messages without a bound;
        // 0.45 s with this one. 64 MiB restarted faster but flushed the consume-queue and index
        // column families four times as often, and their compactions took 25 of 60 CPU-s.
        opts.set_max_total_wal_size(256 << 20);
        let floor = Arc::new(AtomicU64::new(0));
        let cfs = cf::ALL.iter().map(|name| {
            let mut o = Options::default();
            if *name == cf::INDEX {
                // Index entries are not range-deleted with their records (they are keyed by
                // message key, not time): compactions drop those below retention's floor.
                let floor = floor.clone();
                o.set_compaction_filter("rocktor-index-retention", move |_, k: &[u8], _: &[u8]| {
                    let seq = k
                        .len()
                        .checked_sub(8)
                        .and_then(|at| k[at..].try_into().ok())
                        .map(u64::from_be_bytes);
                    match seq {
                        Some(s) if s < floor.load(Ordering::Relaxed) => {
                            rocksdb::compaction_filter::Decision::Remove
                        }
                        _ => rocksdb::compaction_filter::Decision::Keep,
                    }
                });
            }
            if *name == cf::LOG {
                // Large sequential values: bigger memtables mean fewer, larger flushes.
                o.set_write_buffer_size(64 << 20);
                o.set_max_write_buffer_number(4);
                // 64 KiB blocks: a pull reads one queue's records, which lie ~8 apart among the
                // other queues' in the log, so with 4 KiB blocks a backlog drain from disk was one
                // small read per record (2M backlog: 116k msg/s, 26.7 CPU-s); one 64 KiB block
                // serves every queue's records in it (198k msg/s, 16.5 CPU-s).
                let mut table = rocksdb::BlockBasedOptions::default();
                table.set_block_size(LOG_BLOCK_SIZE);
                o.set_block_based_table_factory(&table);
            } else {
                // Small column families are switched along with the log at every WAL-size
                // flush; room for several immutable memtables keeps them from stopping writes.
                o.set_max_write_buffer_number(6);
            }
            if *name == cf::CQ || *name == cf::INDEX {
                // Every flush of these spans their whole key range (all queues' newest offsets;
                // random message keys), so leveled compaction rewrote the whole column family
                // each time: 15 CPU-s in a 40 s send run (rocksdb LOG). Size-tiered merging
                // rewrites each entry O(log n) times instead.
                o.set_compaction_style(rocksdb::DBCompactionStyle::Universal);
            }
            ColumnFamilyDescriptor::new(*name, o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let store = Store {
            db: Arc::new(db),
            flush,
            path: Arc::new(path.to_path_buf()),
            stats: statistics.then(|| Arc::new(opts)),
            floor,
        };
        // The lowest record still stored is where the last retention pass left the floor.
        if let Some(first) = store.first_log_seq()? {
            store.raise_retention_floor(first);
        }
        Ok(store)
    }

    /// Raises retention's floor (never lowers it).
    pub fn raise_retention_floor(&self, seq: u64) {
        self.floor.fetch_max(seq, Ordering::AcqRel);
    }

    /// Retention's floor: records below it are expired (or were never written).
    pub fn retention_floor(&self) -> u64 {
        self.floor.load(Ordering::Acquire)
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many times the WAL was synced, when opened with statistics.
    pub fn wal_syncs(&self) -> Option<u64> {
        self.stats
            .as_ref()
            .map(|o| o.get_ticker_count(rocksdb::statistics::Ticker::WalFileSynced))
    }

    pub fn flush_mode(&self) -> FlushMode {
        self.flush
    }

    pub(crate) fn db(&self) -> &Arc<DB> {
        &self.db
    }

    pub(crate) fn handle(&self, name: &'static str) -> Result<&ColumnFamily> {
        self.db.cf_handle(name).ok_or(StorageError::MissingCf(name))
    }

    /// Starts the one group-commit writer thread.
    pub fn start_writer(&self, next_seq: u64) -> Result<Writer> {
        Writer::start(self.clone(), next_seq)
    }

    /// Stops RocksDB's flush and compaction threads and waits for them. Called last on a
    /// graceful shutdown (after `Writer::flush`): a process that exits with them still running
    /// can abort in static destructors ("pthread lock: Invalid argument").
    pub fn stop_background_work(&self) {
        self.db.cancel_all_background_work(true);
    }

    /// Writes every column family's memtable to SST files (graceful shutdown).
    pub(crate) fn flush_memtables(&self) -> std::result::Result<(), rocksdb::Error> {
        let mut opts = rocksdb::FlushOptions::default();
        opts.set_wait(true);
        let handles: Vec<&ColumnFamily> = cf::ALL
            .iter()
            .filter_map(|n| self.db.cf_handle(n))
            .collect();
        self.db.flush_cfs_opt(&handles, &opts)
    }

    /// Reads metadata, committed offsets and the next global sequence.
    pub fn recover(&self) -> Result<Recovered> {
        let mut out = Recovered::default();
        let meta = self.handle(cf::META)?;
        for item in self.db.iterator_cf(meta, IteratorMode::Start) {
            let (k, v) = item?;
            if k.is_empty() {
                continue;
            }
            let name = String::from_utf8_lossy(&k[1..]).into_owned();
            out.meta.push((k[0], name, v.to_vec()));
        }
        let offsets = self.handle(cf::OFFSETS)?;
        for item in self.db.iterator_cf(offsets, IteratorMode::Start) {
            let (k, v) = item?;
            let Some((g, t, q)) = keys::parse_offset_key(&k) else {
                tracing::warn!("skipping malformed offset key");
                continue;
            };
            let Ok(raw) = <[u8; 8]>::try_from(&v[..]) else {
                tracing::warn!(group = %g, topic = %t, "skipping malformed offset value");
                continue;
            };
            out.offsets.push((g, t, q, i64::from_be_bytes(raw)));
        }
        let log = self.handle(cf::LOG)?;
        if let Some(item) = self.db.iterator_cf(log, IteratorMode::End).next() {
            let (k, _) = item?;
            let seq = keys::parse_log_key(&k).ok_or_else(|| StorageError::Corrupt {
                cf: cf::LOG,
                what: "log key is not 8 bytes".into(),
            })?;
            out.next_seq = seq + 1;
        }
        // A failed write skips its sequences; a checkpoint may have seen them.
        if let Some(seen) = self.clock_next_seq()? {
            out.next_seq = out.next_seq.max(seen);
        }
        Ok(out)
    }

    /// The first and next offset of one queue, by two seeks, never below its base offset (an
    /// imported queue that holds nothing yet starts there).
    pub fn queue_bounds(&self, topic_id: u32, queue_id: u32) -> Result<QueueBounds> {
        let stored = self.stored_queue_bounds(topic_id, queue_id)?;
        let base = match self.get_meta(&keys::queue_base_key(topic_id, queue_id))? {
            Some(v) => keys::parse_queue_base(&v).ok_or_else(|| StorageError::Corrupt {
                cf: cf::META,
                what: format!(
                    "the base offset of topic id {topic_id} queue {queue_id} is not an offset \
                     below 2^62 ({} bytes)",
                    v.len()
                ),
            })?,
            None => 0,
        };
        Ok(QueueBounds {
            min: stored.min.max(base),
            max: stored.max.max(base),
        })
    }

    fn stored_queue_bounds(&self, topic_id: u32, queue_id: u32) -> Result<QueueBounds> {
        let cq = self.handle(cf::CQ)?;
        let prefix = keys::cq_prefix(topic_id, queue_id);
        let mut bounds = QueueBounds::default();
        let first = keys::cq_key(topic_id, queue_id, 0);
        if let Some(item) = self
            .db
            .iterator_cf(cq, IteratorMode::From(&first, Direction::Forward))
            .next()
        {
            let (k, _) = item?;
            if k.starts_with(&prefix) {
                if let Some((_, _, off)) = keys::parse_cq_key(&k) {
                    bounds.min = off;
                }
            } else {
                return Ok(bounds);
            }
        } else {
            return Ok(bounds);
        }
        let last = keys::cq_key(topic_id, queue_id, u64::MAX);
        if let Some(item) = self
            .db
            .iterator_cf(cq, IteratorMode::From(&last, Direction::Reverse))
            .next()
        {
            let (k, _) = item?;
            if k.starts_with(&prefix) {
                if let Some((_, _, off)) = keys::parse_cq_key(&k) {
                    bounds.max = off + 1;
                }
            }
        }
        Ok(bounds)
    }

    /// One consume-queue entry.
    pub fn cq_entry(&self, topic_id: u32, queue_id: u32, offset: u64) -> Result<Option<CqValue>> {
        let cq = self.handle(cf::CQ)?;
        Ok(self
            .db
            .get_cf(cq, keys::cq_key(topic_id, queue_id, offset))?
            .and_then(|v| CqValue::decode(&v)))
    }

    /// Reads up to `max_count` entries (and about `max_bytes`) from `from`, not past `upto`,
    /// keeping those `keep` accepts by their consume-queue entry.
    pub fn read_queue(
        &self,
        r: &QueueRead,
        keep: &dyn Fn(&CqValue) -> bool,
    ) -> Result<ReadOutcome> {
        let QueueRead {
            topic_id,
            queue_id,
            from,
            upto,
            max_count,
            max_bytes,
        } = *r;
        let cq = self.handle(cf::CQ)?;
        let log = self.handle(cf::LOG)?;
        let prefix = keys::cq_prefix(topic_id, queue_id);
        let start = keys::cq_key(topic_id, queue_id, from);
        let mut wanted: Vec<(u64, CqValue)> = Vec::new();
        let mut next = from;
        let mut bytes = 0usize;
        // Scan at most this many filtered-out entries in one read, so a selective filter over a
        // long backlog answers PULL_RETRY_IMMEDIATELY instead of reading the whole queue.
        let scan_limit = (max_count * 64).max(1024) as u64;
        let mut scanned = 0u64;
        for item in self
            .db
            .iterator_cf(cq, IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let Some((_, _, off)) = keys::parse_cq_key(&k) else {
                break;
            };
            if off >= upto
                || wanted.len() >= max_count
                || bytes >= max_bytes
                || scanned >= scan_limit
            {
                break;
            }
            let Some(val) = CqValue::decode(&v) else {
                return Err(StorageError::Corrupt {
                    cf: cf::CQ,
                    what: format!("entry {off}"),
                });
            };
            scanned += 1;
            next = off + 1;
            if keep(&val) {
                bytes += val.size as usize;
                wanted.push((off, val));
            }
        }
        let keys: Vec<[u8; 8]> = wanted.iter().map(|(_, v)| keys::log_key(v.seq)).collect();
        let records = self
            .db
            .multi_get_cf(keys.iter().map(|k| (log, k.as_slice())));
        let mut entries = Vec::with_capacity(wanted.len());
        for ((offset, cqv), rec) in wanted.into_iter().zip(records) {
            match rec? {
                Some(bytes) => entries.push(ReadEntry {
                    offset,
                    cq: cqv,
                    record: Bytes::from(bytes),
                }),
                // Deleted by retention between the two reads: skip it like Apache skips an
                // expired commit-log position.
                None => continue,
            }
        }
        Ok(ReadOutcome {
            entries,
            next_offset: next,
            scanned,
        })
    }

    /// One stored record by its global sequence.
    pub fn read_record(&self, seq: u64) -> Result<Option<Bytes>> {
        let log = self.handle(cf::LOG)?;
        Ok(self.db.get_cf(log, keys::log_key(seq))?.map(Bytes::from))
    }

    /// The newest (highest) sequences under an `index` prefix (`keys::index_prefix`), at most
    /// `limit`, newest first. The index is hashed: callers check the records' keys.
    pub fn index_newest(&self, prefix: &[u8], limit: usize) -> Result<Vec<u64>> {
        let index = self.handle(cf::INDEX)?;
        let mut upper = prefix.to_vec();
        upper.extend_from_slice(&[0xFF; 8]);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(index, IteratorMode::From(&upper, Direction::Reverse))
        {
            let (k, _) = item?;
            if out.len() >= limit || !k.starts_with(prefix) {
                break;
            }
            if let Some(seq) = k
                .get(prefix.len()..)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_be_bytes)
            {
                out.push(seq);
            }
        }
        Ok(out)
    }

    /// RocketMQ's `getOffsetInQueueByTime`: binary search over store times, which grow with the
    /// offset. `upper` = last offset stored at or before `ts`; otherwise the first at or after.
    pub fn search_offset_by_time(
        &self,
        topic_id: u32,
        queue_id: u32,
        bounds: QueueBounds,
        ts: i64,
        upper: bool,
    ) -> Result<u64> {
        if bounds.max <= bounds.min {
            return Ok(bounds.min);
        }
        let (mut lo, mut hi) = (bounds.min, bounds.max);
        // first offset whose store time is > ts (upper) or >= ts (lower)
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let t = match self.cq_entry(topic_id, queue_id, mid)? {
                Some(v) => v.store_time,
                None => i64::MIN, // a hole (deleted) counts as older
            };
            let before = if upper { t <= ts } else { t < ts };
            if before {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if upper {
            Ok(if lo > bounds.min { lo - 1 } else { bounds.min })
        } else {
            Ok(lo.min(bounds.max))
        }
    }

    /// Timer entries due at or before `now_ms`, from `floor_ms` on, oldest first, with their
    /// records, and the due time of the first entry after them (None: no later entry), so the
    /// scheduler knows when to look again. Starting at the floor skips the tombstones of
    /// entries already delivered.
    pub fn due_timers(
        &self,
        floor_ms: i64,
        now_ms: i64,
        limit: usize,
    ) -> Result<(Vec<DueTimer>, Option<i64>)> {
        let timer = self.handle(cf::TIMER)?;
        let start = keys::timer_key(floor_ms, 0);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(timer, IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item?;
            let Some((due_ms, seq)) = keys::parse_timer_key(&k) else {
                continue;
            };
            if due_ms > now_ms || out.len() >= limit {
                return Ok((out, Some(due_ms)));
            }
            let Some((queue_id, topic)) = keys::parse_timer_value(&v) else {
                tracing::warn!(seq, "dropping malformed timer entry");
                continue;
            };
            out.push(DueTimer {
                key: k.to_vec(),
                due_ms,
                topic,
                queue_id,
                record: self.read_record(seq)?,
            });
        }
        Ok((out, None))
    }

    /// The first of at most `limit` timer entries due exactly at `due_ms` whose destination
    /// topic and record `matches`; records are read one at a time, so a crowded millisecond
    /// costs reads, not memory.
    pub fn find_timer_at(
        &self,
        due_ms: i64,
        limit: usize,
        mut matches: impl FnMut(&str, &Bytes) -> bool,
    ) -> Result<Option<DueTimer>> {
        let timer = self.handle(cf::TIMER)?;
        let start = keys::timer_key(due_ms, 0);
        for item in self
            .db
            .iterator_cf(timer, IteratorMode::From(&start, Direction::Forward))
            .take(limit)
        {
            let (k, v) = item?;
            let Some((at, seq)) = keys::parse_timer_key(&k) else {
                continue;
            };
            if at != due_ms {
                break;
            }
            let Some((queue_id, topic)) = keys::parse_timer_value(&v) else {
                continue;
            };
            let Some(record) = self.read_record(seq)? else {
                continue;
            };
            if matches(&topic, &record) {
                return Ok(Some(DueTimer {
                    key: k.to_vec(),
                    due_ms: at,
                    topic,
                    queue_id,
                    record: Some(record),
                }));
            }
        }
        Ok(None)
    }

    /// Every half message's state (the `txn` family), by sequence. Recovery of the
    /// transaction checker; unreadable keys are skipped.
    pub fn txn_entries(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        let txn = self.handle(cf::TXN)?;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(txn, IteratorMode::Start) {
            let (k, v) = item?;
            match keys::parse_txn_key(&k) {
                Some(seq) => out.push((seq, v.to_vec())),
                None => tracing::warn!("skipping a malformed txn key"),
            }
        }
        Ok(out)
    }

    /// Whether the half message at `seq` still waits for its outcome.
    pub fn txn_pending(&self, seq: u64) -> Result<bool> {
        let txn = self.handle(cf::TXN)?;
        Ok(self.db.get_pinned_cf(txn, keys::txn_key(seq))?.is_some())
    }

    /// RocksDB's estimate of the keys in a column family (pending timers for the metrics).
    pub fn estimate_keys(&self, name: &'static str) -> Result<u64> {
        let h = self.handle(name)?;
        Ok(self
            .db
            .property_int_value_cf(h, "rocksdb.estimate-num-keys")?
            .unwrap_or(0))
    }

    /// Bytes the store holds on disk: SST files of every column family plus the memtables
    /// (`rocketmq_storage_size`).
    pub fn live_data_size(&self) -> Result<u64> {
        let mut total = 0u64;
        for name in cf::ALL {
            let h = self.handle(name)?;
            for prop in [
                "rocksdb.total-sst-files-size",
                "rocksdb.cur-size-all-mem-tables",
            ] {
                total = total.saturating_add(self.db.property_int_value_cf(h, prop)?.unwrap_or(0));
            }
        }
        Ok(total)
    }

    /// Every `pop` entry under a (group, topic) prefix (`keys::pop_prefix`), in key order:
    /// what a pop consumer's state recovers from.
    pub fn pop_entries(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let pop = self.handle(cf::POP)?;
        let mut out = Vec::new();
        let iter = self
            .db
            .iterator_cf(pop, IteratorMode::From(prefix, rocksdb::Direction::Forward));
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Writes one metadata value, synced (start-up only; everything else goes through the
    /// writer).
    pub fn put_meta(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let meta = self.handle(cf::META)?;
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db.put_cf_opt(meta, key, value, &wo)?;
        Ok(())
    }

    /// Reads one metadata value.
    pub fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let meta = self.handle(cf::META)?;
        Ok(self.db.get_cf(meta, key)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_queue_with_a_base_starts_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), FlushMode::Sync).unwrap();
        store
            .put_meta(&keys::queue_base_key(3, 1), &15u64.to_be_bytes())
            .unwrap();
        let b = store.queue_bounds(3, 1).unwrap();
        assert_eq!((b.min, b.max), (15, 15));
        // Another queue of the topic, and the same queue id of another topic, start at 0.
        assert_eq!(store.queue_bounds(3, 0).unwrap(), QueueBounds::default());
        assert_eq!(store.queue_bounds(4, 1).unwrap(), QueueBounds::default());
        store.put_meta(&keys::queue_base_key(3, 2), b"bad").unwrap();
        let e = store.queue_bounds(3, 2).unwrap_err().to_string();
        assert!(e.contains("topic id 3 queue 2"), "{e}");
        store
            .put_meta(&keys::queue_base_key(3, 3), &u64::MAX.to_be_bytes())
            .unwrap();
        assert!(store.queue_bounds(3, 3).is_err());
    }
}
