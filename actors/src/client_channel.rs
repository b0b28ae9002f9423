//! The client channel: "call this connected client", as the domain sees it. Remoting
//! connections implement it today; the gRPC Telemetry stream will implement the same trait,
//! so no actor ever sees a wire format.

use std::net::SocketAddr;

/// What a transaction check-back tells the producer about its half message.
#[derive(Debug, Clone)]
pub struct TransactionCheck {
    /// The message's real topic.
    pub topic: String,
    /// The half message's queue offset and commit-log offset (here both its sequence), which
    /// the producer echoes back in END_TRANSACTION.
    pub tran_state_offset: u64,
    pub commit_log_offset: u64,
    /// The message's UNIQ_KEY, which is also its transaction id.
    pub msg_id: String,
    pub transaction_id: String,
    /// The broker's advertised address and name (for the offset message id).
    pub store_host: SocketAddr,
    pub broker_name: String,
}

/// A way back to a connected client, implemented by the front end that owns the connection.
pub trait ClientChannel: Send + Sync + 'static {
    fn connection_id(&self) -> u64;
    fn remote_addr(&self) -> SocketAddr;
    /// Tell the client to rebalance now (NOTIFY_CONSUMER_IDS_CHANGED in remoting).
    fn notify_consumer_ids_changed(&self, group: &str);
    /// Ask the client for its running state (GET_CONSUMER_RUNNING_INFO); the answer is the
    /// client's own document, passed through unread.
    fn consumer_running_info(
        &self,
        group: &str,
        client_id: &str,
        jstack: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bytes::Bytes, String>> + Send>>;
    /// Tell the client its offsets of `topic` were reset (RESET_CONSUMER_CLIENT_OFFSET).
    fn reset_offsets(
        &self,
        broker_name: &str,
        group: &str,
        topic: &str,
        timestamp: i64,
        offsets: &[(u32, i64)],
    );
    /// Ask a producer how its local transaction ended (CHECK_TRANSACTION_STATE); `message` is
    /// the whole half message as a stored record, with its real topic and queue. The producer
    /// answers later with an END_TRANSACTION of its own.
    fn check_transaction_state(&self, check: &TransactionCheck, message: bytes::Bytes);
}
