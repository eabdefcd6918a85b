//! The accept loop both consumer transports (AMQP, STOMP) share: the connection limit, the TLS
//! handshake under a deadline, and a graceful stop.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::Subscriptions;
use crate::BoxFuture;

/// A consumer protocol served on a listener.
pub(crate) trait Transport: Send + Sync + 'static {
    /// The protocol's name in logs (`AMQP`, `STOMP`).
    const NAME: &'static str;

    /// Serves one consumer connection (plain or after TLS) to its end.
    fn connection<Io>(io: Io, subs: Arc<Subscriptions>) -> BoxFuture<'static, Result<(), String>>
    where
        Io: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static;
}

/// How a listener bounds its connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections at once, at most; a connection beyond is closed at once.
    pub(crate) max_connections: usize,
    /// How long a TLS handshake may take.
    pub(crate) handshake_timeout: Duration,
    /// How long to wait for the connections at shutdown.
    pub(crate) shutdown_grace: Duration,
}

/// Serves `T`'s consumers on `listener` (TLS when `tls` is given) until `stop`.
pub(crate) async fn accept_loop<T: Transport>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    subs: Arc<Subscriptions>,
    limits: Limits,
    stop: CancellationToken,
) {
    let name = T::NAME;
    let tracker = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(limits.max_connections));
    let cancel = CancellationToken::new();
    info!(addr = ?listener.local_addr().ok(), tls = tls.is_some(), "{name} listener accepting");
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                debug!(error = %e, "{name} accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            debug!(%peer, "{name} connection limit reached; closing the new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (subs, tls, cancel) = (subs.clone(), tls.clone(), cancel.clone());
        tracker.spawn(async move {
            let served = async {
                match tls {
                    Some(tls) => {
                        match tokio::time::timeout(limits.handshake_timeout, tls.accept(stream)).await {
                            Ok(Ok(stream)) => T::connection(stream, subs).await,
                            Ok(Err(e)) => Err(format!("TLS: {e}")),
                            Err(_) => Err("TLS handshake timed out".into()),
                        }
                    }
                    None => T::connection(stream, subs).await,
                }
            };
            tokio::select! {
                r = served => if let Err(e) = r {
                    debug!(%peer, error = %e, "{name} connection ended");
                },
                () = cancel.cancelled() => {}
            }
            drop(permit);
        });
    }
    drop(listener);
    cancel.cancel();
    tracker.close();
    let _ = tokio::time::timeout(limits.shutdown_grace, tracker.wait()).await;
}
