//! Domain errors. Front ends map each variant to their own protocol's code in one place.

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BrokerError {
    #[error("topic[{0}] not exist, apply first please!")]
    TopicNotExist(String),
    #[error("{0}")]
    MessageIllegal(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    NoPermission(String),
    #[error("[REJECTREQUEST]system busy, start flow control for a while")]
    SystemBusy,
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
    #[error("the broker is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotSupported(String),
}

impl From<rocktor_storage::StorageError> for BrokerError {
    fn from(e: rocktor_storage::StorageError) -> Self {
        BrokerError::Storage(e.to_string())
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
