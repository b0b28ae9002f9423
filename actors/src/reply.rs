//! Calls that answer through their own channel: the message goes in with `try_send`, so a
//! full mailbox is refused before anything was enqueued (safe to answer busy), and once it
//! is enqueued the caller waits for the outcome instead of timing out on work that may still
//! be done — a client would retry a send it timed out on and store it twice.

use crate::error::BrokerError;
use actix::dev::ToEnvelope;
use actix::prelude::*;
use tokio::sync::oneshot;

/// Where an actor sends the outcome.
pub type Reply<T> = oneshot::Sender<Result<T, BrokerError>>;

/// Sends the message `make` builds around a reply channel, and waits for the outcome.
pub async fn call<A, M, T>(
    addr: &Addr<A>,
    what: &str,
    make: impl FnOnce(Reply<T>) -> M,
) -> Result<T, BrokerError>
where
    A: Actor + Handler<M>,
    A::Context: ToEnvelope<A, M>,
    M: Message<Result = ()> + Send + 'static,
    T: Send + 'static,
{
    let (reply, rx) = oneshot::channel();
    addr.try_send(make(reply)).map_err(|e| match e {
        SendError::Full(_) => BrokerError::SystemBusy,
        SendError::Closed(_) => BrokerError::ShuttingDown,
    })?;
    rx.await
        .unwrap_or_else(|_| Err(BrokerError::Storage(format!("the {what} stopped"))))
}
