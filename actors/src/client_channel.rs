//! The client channel: "call this connected client", as the domain sees it. Remoting
//! connections implement it today; the gRPC Telemetry stream and the transaction check-back
//! will use the same trait, so no actor ever sees a wire format.

use std::net::SocketAddr;

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
}
