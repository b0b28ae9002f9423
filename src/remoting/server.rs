//! Listeners: accept on the control thread, serve each connection on a worker arbiter so the
//! work spreads over the cores.

use super::connection::{serve_connection, serve_tcp, ConnectionLimits};
use super::handlers::Role;
use super::tls::{Accepted, TlsListener};
use rocktor_actors::BrokerContext;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Accepts connections until `shutdown` turns true; with `tls`, plain and TLS ones as their
/// first byte says.
pub async fn serve(
    listener: TcpListener,
    role: Role,
    limits: ConnectionLimits,
    tls: Option<TlsListener>,
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
                    let tls = tls.clone();
                    arbiter.spawn(async move {
                        let s = match tokio::net::TcpStream::from_std(std_stream) {
                            Ok(s) => s,
                            Err(e) => { tracing::warn!(error = %e, "cannot register accepted socket"); return; }
                        };
                        let Some(tls) = tls else {
                            return serve_tcp(s, remote, role, limits, b).await;
                        };
                        match tls.accept(s, limits.idle_timeout).await {
                            Some(Accepted::Plain(s)) => serve_tcp(s, remote, role, limits, b).await,
                            Some(Accepted::Tls(s)) => {
                                let _ = s.get_ref().0.set_nodelay(true);
                                let (rd, wr) = tokio::io::split(*s);
                                serve_connection(rd, wr, remote, role, limits, b).await
                            }
                            None => {}
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
