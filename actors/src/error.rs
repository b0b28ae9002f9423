//! Domain errors. Front ends map each variant to their own protocol's code in one place.

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BrokerError {
    #[error("topic[{0}] not exist, apply first please!")]
    TopicNotExist(String),
    #[error("{0}")]
    MessageIllegal(String),
    /// A delivery time beyond the broker's maximum delay.
    #[error("{0}")]
    IllegalDeliveryTime(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    NoPermission(String),
    #[error("[REJECTREQUEST]system busy, start flow control for a while")]
    SystemBusy,
    /// A bound on what one peer may make the broker hold (members, parked pulls, ...).
    #[error("{0}")]
    LimitExceeded(String),
    #[error("subscription group [{0}] does not exist")]
    GroupNotExist(String),
    #[error("the consumer's subscription not exist, group: {0}")]
    SubscriptionNotExist(String),
    #[error("the consumer's subscription not latest, group: {0}")]
    SubscriptionNotLatest(String),
    #[error("{0}")]
    SubscriptionParseFailed(String),
    #[error("storage unavailable: {0}")]
    Storage(String),
    /// The store refuses writes (a write failed); reads go on. Nothing was stored.
    #[error("service not available now: {0}")]
    WriteUnavailable(String),
    #[error("the broker is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotSupported(String),
    /// A send whose type its topic does not take (gRPC: MESSAGE_PROPERTY_CONFLICT_WITH_TYPE).
    #[error("{0}")]
    MessageTypeMismatch(String),
    /// An operation the target's state does not allow (a recall of the wrong topic, a
    /// delivered message); Apache's ILLEGAL_OPERATION.
    #[error("{0}")]
    IllegalOperation(String),
    /// An END_TRANSACTION that does not match its half message (group, offsets).
    #[error("{0}")]
    TransactionMismatch(String),
}

impl From<rocktor_storage::StorageError> for BrokerError {
    fn from(e: rocktor_storage::StorageError) -> Self {
        use rocktor_storage::StorageError as S;
        match e {
            S::Busy => BrokerError::SystemBusy,
            S::Unavailable(m) => BrokerError::WriteUnavailable(m),
            e => BrokerError::Storage(e.to_string()),
        }
    }
}

impl From<actix::MailboxError> for BrokerError {
    fn from(e: actix::MailboxError) -> Self {
        match e {
            actix::MailboxError::Closed => BrokerError::ShuttingDown,
            actix::MailboxError::Timeout => BrokerError::SystemBusy,
        }
    }
}

pub type BrokerResult<T> = Result<T, BrokerError>;

/// The outcome of a writer submission, once its receiver answered: the durable batch, or why
/// it was not written.
pub(crate) fn written(
    r: Result<
        rocktor_storage::Result<rocktor_storage::AppendDone>,
        tokio::sync::oneshot::error::RecvError,
    >,
) -> BrokerResult<rocktor_storage::AppendDone> {
    match r {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(BrokerError::Storage("the storage writer stopped".into())),
    }
}

/// Runs blocking store work (RocksDB reads, file-system calls) on the blocking pool, never on
/// an actor's thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> rocktor_storage::Result<T> + Send + 'static,
) -> BrokerResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Storage(e.to_string()))?
        .map_err(BrokerError::from)
}
