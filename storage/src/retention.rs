//! Retention's storage side: the time → sequence checkpoints, the per-queue cut of the consume
//! queues, dropping expired log ranges and reclaiming their space, and disk-space readings.
//! Blocking, like the rest of the store.

use crate::keys::{self, CqValue};
use crate::store::{QueueBounds, Store};
use crate::{cf, Result};
use rocksdb::{Direction, IteratorMode};
use std::path::Path;

/// `time` key: checkpoint time in ms (big-endian, clamped at 0).
pub(crate) fn time_key(at_ms: i64) -> [u8; 8] {
    (at_ms.max(0) as u64).to_be_bytes()
}

/// Space of the file system holding a path, as statvfs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    pub total: u64,
    /// Free blocks, including those reserved for root.
    pub free: u64,
    /// Free blocks an unprivileged writer may use.
    pub available: u64,
}

impl DiskSpace {
    /// The share in use as `df` shows it: used / (used + available), so reserved blocks (and
    /// blocks a thin-provisioned volume cannot give) do not count as room.
    pub fn used_ratio(&self) -> f64 {
        let used = self.total.saturating_sub(self.free);
        let room = used.saturating_add(self.available);
        if room == 0 {
            return 0.0;
        }
        used as f64 / room as f64
    }
}

/// What `Store::timers_below` found.
#[derive(Debug, Default)]
pub struct TimersBelow {
    /// Entries to re-append (records not read).
    pub moving: Vec<crate::DueTimer>,
    /// The lowest sequence below the bound that stays.
    pub hold: Option<u64>,
    /// The lowest sequence of every entry that stays.
    pub lowest: Option<u64>,
}

/// statvfs of the file system holding `path`.
pub fn disk_space(path: &Path) -> std::io::Result<DiskSpace> {
    let s = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(DiskSpace {
        total: s.f_blocks.saturating_mul(s.f_frsize),
        free: s.f_bfree.saturating_mul(s.f_frsize),
        available: s.f_bavail.saturating_mul(s.f_frsize),
    })
}

impl Store {
    /// The checkpoint put of retention's clock: at `at_ms` the next sequence was `next_seq`.
    pub fn time_checkpoint(at_ms: i64, next_seq: u64) -> (&'static str, Vec<u8>, Vec<u8>) {
        (
            cf::TIME,
            time_key(at_ms).to_vec(),
            next_seq.to_be_bytes().to_vec(),
        )
    }

    /// The range delete of every checkpoint before `before_ms` (older than any horizon).
    pub fn time_checkpoints_before(before_ms: i64) -> (&'static str, Vec<u8>, Vec<u8>) {
        (cf::TIME, time_key(0).to_vec(), time_key(before_ms).to_vec())
    }

    /// The newest checkpoint at or before `at_ms`: (its time, the sequence every record below
    /// was stored by then). None when retention's clock has no checkpoint that old.
    pub fn written_by(&self, at_ms: i64) -> Result<Option<(i64, u64)>> {
        if at_ms < 0 {
            return Ok(None);
        }
        let time = self.handle(cf::TIME)?;
        let key = time_key(at_ms);
        let Some(item) = self
            .db()
            .iterator_cf(time, IteratorMode::From(&key, Direction::Reverse))
            .next()
        else {
            return Ok(None);
        };
        let (k, v) = item?;
        let (Ok(k), Ok(v)) = (<[u8; 8]>::try_from(&k[..]), <[u8; 8]>::try_from(&v[..])) else {
            return Ok(None);
        };
        Ok(Some((u64::from_be_bytes(k) as i64, u64::from_be_bytes(v))))
    }

    /// The lowest sequence still in `log` (None: empty).
    pub fn first_log_seq(&self) -> Result<Option<u64>> {
        self.first_seq_key(cf::LOG, 0)
    }

    /// The highest sequence still in `log` (None: empty). Retention never deletes it: the next
    /// start numbers new records after it.
    pub fn last_log_seq(&self) -> Result<Option<u64>> {
        let log = self.handle(cf::LOG)?;
        match self.db().iterator_cf(log, IteratorMode::End).next() {
            Some(item) => {
                let (k, _) = item?;
                Ok(keys::parse_log_key(&k))
            }
            None => Ok(None),
        }
    }

    /// The oldest pending half message at or after sequence `from` (None: none pending).
    pub fn first_txn_seq(&self, from: u64) -> Result<Option<u64>> {
        self.first_seq_key(cf::TXN, from)
    }

    fn first_seq_key(&self, name: &'static str, from: u64) -> Result<Option<u64>> {
        let h = self.handle(name)?;
        let start = keys::log_key(from);
        match self
            .db()
            .iterator_cf(h, IteratorMode::From(&start, Direction::Forward))
            .next()
        {
            Some(item) => {
                let (k, _) = item?;
                Ok(keys::parse_log_key(&k))
            }
            None => Ok(None),
        }
    }

    /// The first offset of a queue whose record's sequence is at least `seq`, by binary search
    /// (sequences grow with offsets within a queue). Answers `bounds.max` when every entry is
    /// below it; a hole counts as below.
    pub fn first_offset_from_seq(
        &self,
        topic_id: u32,
        queue_id: u32,
        bounds: QueueBounds,
        seq: u64,
    ) -> Result<u64> {
        let (mut lo, mut hi) = (bounds.min, bounds.max);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let below = match self.cq_entry(topic_id, queue_id, mid)? {
                Some(CqValue { seq: s, .. }) => s < seq,
                None => true,
            };
            if below {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The range delete of one queue's consume-queue entries below `offset`.
    pub fn cq_entries_below(
        topic_id: u32,
        queue_id: u32,
        offset: u64,
    ) -> (&'static str, Vec<u8>, Vec<u8>) {
        (
            cf::CQ,
            keys::cq_key(topic_id, queue_id, 0).to_vec(),
            keys::cq_key(topic_id, queue_id, offset).to_vec(),
        )
    }

    /// The range deletes of every record and half-message state below `horizon`.
    pub fn log_below(horizon: u64) -> [(&'static str, Vec<u8>, Vec<u8>); 2] {
        let (from, to) = (keys::log_key(0).to_vec(), keys::log_key(horizon).to_vec());
        [(cf::LOG, from.clone(), to.clone()), (cf::TXN, from, to)]
    }

    /// Gives back the disk space of the log below `horizon` once its range delete is durable:
    /// SST files wholly inside the range are dropped as they are (no rewrite); with `compact`
    /// the rest of the range is compacted away too; index entries below the floor go in the index family's own
    /// compactions.
    pub fn reclaim_below(&self, horizon: u64, compact: bool) -> Result<()> {
        self.raise_retention_floor(horizon);
        let log = self.handle(cf::LOG)?;
        // A range that reaches records still in memtables (a short retention, a forced clean on
        // a small disk) is flushed, so the WAL files that hold them can go too.
        let flushed_to = self
            .db()
            .live_files()?
            .iter()
            .filter(|f| f.column_family_name == cf::LOG)
            .filter_map(|f| f.end_key.as_deref().and_then(keys::parse_log_key))
            .max();
        if flushed_to.is_none_or(|s| s.saturating_add(1) < horizon) {
            self.flush_memtables()?;
        }
        let Some(last_expired) = horizon.checked_sub(1) else {
            return Ok(());
        };
        // Both ends are inclusive here: a file that ends at `horizon` holds a record to keep.
        let (from, to) = (keys::log_key(0), keys::log_key(last_expired));
        self.db().delete_file_in_range_cf(log, from, to)?;
        if compact {
            self.db().compact_range_cf(log, Some(from), Some(to));
        }
        // The consume queues' range tombstones go with their family's own compactions: every
        // universal-compaction file spans all queues, so a manual one would rewrite them all.
        Ok(())
    }

    /// Timer entries whose record lies below `below`, for the scheduler to re-append ahead of
    /// retention: at most `limit` of those due after `movable_after_ms` (without their records,
    /// which the caller reads a chunk at a time), and what stays: the lowest sequence of those
    /// below `below` that do not move (due sooner, or past the limit), which retention must
    /// wait for, and the lowest sequence of all entries left in place. Scans the whole timer
    /// family's keys.
    pub fn timers_below(
        &self,
        below: u64,
        movable_after_ms: i64,
        limit: usize,
    ) -> Result<TimersBelow> {
        let timer = self.handle(cf::TIMER)?;
        let mut out = TimersBelow::default();
        for item in self.db().iterator_cf(timer, IteratorMode::Start) {
            let (k, v) = item?;
            let Some((due_ms, seq)) = keys::parse_timer_key(&k) else {
                continue;
            };
            // A malformed entry can never be delivered: nothing to keep its record for.
            let Some((queue_id, topic)) = keys::parse_timer_value(&v) else {
                continue;
            };
            if seq >= below {
                out.lowest = Some(out.lowest.map_or(seq, |l| l.min(seq)));
            } else if due_ms > movable_after_ms && out.moving.len() < limit {
                out.moving.push(crate::DueTimer {
                    key: k.to_vec(),
                    due_ms,
                    topic,
                    queue_id,
                    record: None,
                });
            } else {
                out.hold = Some(out.hold.map_or(seq, |h| h.min(seq)));
                out.lowest = Some(out.lowest.map_or(seq, |l| l.min(seq)));
            }
        }
        Ok(out)
    }

    /// Whether the timer entry of the record at `seq`, due at `due_ms`, is still waiting.
    pub fn timer_pending(&self, due_ms: i64, seq: u64) -> Result<bool> {
        let timer = self.handle(cf::TIMER)?;
        Ok(self
            .db()
            .get_pinned_cf(timer, keys::timer_key(due_ms, seq))?
            .is_some())
    }

    /// The next sequence retention's clock has seen (its newest checkpoint), so a restart never
    /// numbers records below a sequence a checkpoint already dated.
    pub fn clock_next_seq(&self) -> Result<Option<u64>> {
        let time = self.handle(cf::TIME)?;
        match self.db().iterator_cf(time, IteratorMode::End).next() {
            Some(item) => {
                let (_, v) = item?;
                Ok(<[u8; 8]>::try_from(&v[..]).ok().map(u64::from_be_bytes))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FlushMode;
    use crate::AppendBatch;

    #[test]
    fn checkpoints_answer_the_newest_at_or_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), FlushMode::Async).unwrap();
        let w = store.start_writer(0).unwrap();
        let mut b = AppendBatch::default();
        for (t, s) in [(1000, 5), (2000, 9), (3000, 20)] {
            let (c, k, v) = Store::time_checkpoint(t, s);
            b.puts.push((c, k, v));
        }
        w.submit(b).blocking_recv().unwrap().unwrap();
        assert_eq!(store.written_by(999).unwrap(), None);
        assert_eq!(store.written_by(1000).unwrap(), Some((1000, 5)));
        assert_eq!(store.written_by(2500).unwrap(), Some((2000, 9)));
        assert_eq!(store.written_by(i64::MAX).unwrap(), Some((3000, 20)));
        let mut b = AppendBatch::default();
        b.delete_ranges.push(Store::time_checkpoints_before(2000));
        w.submit(b).blocking_recv().unwrap().unwrap();
        assert_eq!(store.written_by(1500).unwrap(), None);
        assert_eq!(store.written_by(2000).unwrap(), Some((2000, 9)));
    }

    #[test]
    fn disk_space_reads_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let d = disk_space(dir.path()).unwrap();
        assert!(d.total > 0 && d.available <= d.free && d.free <= d.total);
        let r = d.used_ratio();
        assert!((0.0..=1.0).contains(&r));
        let df = DiskSpace {
            total: 100,
            free: 30,
            available: 10,
        };
        assert!((df.used_ratio() - 70.0 / 80.0).abs() < 1e-9, "df's Use%");
        assert!(disk_space(Path::new("/no/such/dir")).is_err());
    }
}
