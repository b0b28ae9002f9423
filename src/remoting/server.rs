//! Listeners: accept on the control thread, serve each connection on a worker arbiter so the
//! work spreads over the cores.

use super::connection::{serve_connection, ConnectionLimits};
use super::handlers::Role;
use rocktor_actors::BrokerContext;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    role: Role,
    limits: ConnectionLimits,
    broker: BrokerContext,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    // Re-register the socket with the worker's own reactor.
                    let std_stream = match stream.into_std() {
                        Ok(s) => s,
                        Err(e) => { tracing::warn!(error = %e, "cannot detach accepted socket"); continue; }
                    };
                    let b = broker.clone();
                    let arbiter = broker.next_arbiter();
                    arbiter.spawn(async move {
                        match tokio::net::TcpStream::from_std(std_stream) {
                            Ok(s) => serve_connection(s, remote, role, limits, b).await,
                            Err(e) => tracing::warn!(error = %e, "cannot register accepted socket"),
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
}
