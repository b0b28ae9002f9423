//! rocktor-storage: the RocksDB schema, the stored message record, and the one group-commit writer.
//!
//! Everything here is synchronous and blocking; callers on actor threads hand work to the writer
//! thread (`Writer`) or to a blocking pool, never call RocksDB themselves.

pub mod cf;
mod direct_io;
pub mod keys;
pub mod properties;
pub mod record;
mod retention;
mod store;
mod writer;

pub use retention::{disk_space, DiskSpace, TimersBelow};
pub use store::DueTimer;
pub use store::{FlushMode, QueueBounds, QueueRead, ReadEntry, ReadOutcome, Recovered, Store};
pub use writer::{AppendBatch, AppendDone, AppendRecord, CqEntry, TimerEntry, Writer};

/// Errors of the storage layer. The disk and RocksDB can hand us any of these; none panics.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("missing column family {0}")]
    MissingCf(&'static str),
    #[error("corrupt stored value in {cf}: {what}")]
    Corrupt { cf: &'static str, what: String },
    #[error("metadata encoding: {0}")]
    Meta(String),
    #[error("the storage writer has stopped")]
    WriterGone,
    /// The writer's queue is full; nothing was enqueued.
    #[error("the storage writer is busy")]
    Busy,
    /// A write failed (disk full, I/O error): the broker refuses writes until one succeeds.
    #[error("storage refuses writes: {0}")]
    Unavailable(String),
}

pub type Result<T> = std::result::Result<T, StorageError>;
