//! The accept loop: connection limit, accept backoff, graceful shutdown.
//!
//! - Every accepted socket gets `TCP_NODELAY` (with Nagle on, a QoS 1 round trip took 42.8 ms
//!   instead of 0.28 ms when we measured mosquitto here).
//! - The connection limit is a `Semaphore` whose permit moves into the connection task. At the
//!   limit, new sockets are accepted and closed at once, so clients fail fast instead of waiting
//!   in the backlog.
//! - `accept()` errors (out of file descriptors, ...) are logged and retried with an exponential
//!   backoff capped at one second; one failure never stops the server.
//! - Shutdown: stop accepting (the listener is dropped), cancel every connection of this
//!   listener (each flushes what it has encoded and closes), wait for them up to
//!   `shutdown_grace_ms`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::{EngineShared, task};
use crate::error::Result;
use crate::metrics::inc;

const MAX_BACKOFF: Duration = Duration::from_secs(1);

pub(crate) async fn serve(
    shared: Arc<EngineShared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let local = listener.local_addr().ok();
    info!(addr = ?local, tls = tls.is_some(), "MQTT listener accepting");
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                inc(&shared.metrics.connections_total);
                let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
                    inc(&shared.metrics.connections_rejected_limit);
                    debug!(%peer, "connection limit reached; closing the new connection");
                    drop(stream);
                    continue;
                };
                if let Err(e) = stream.set_nodelay(true) {
                    debug!(%peer, error = %e, "could not set TCP_NODELAY");
                }
                inc(&shared.metrics.connections_current);
                tracker.spawn(task::run(
                    shared.clone(),
                    stream,
                    peer,
                    tls.clone(),
                    cancel.clone(),
                    permit,
                ));
            }
            Err(e) => {
                inc(&shared.metrics.accept_errors);
                warn!(error = %e, retry_in = ?backoff, "accept failed");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    drop(listener);
    info!(addr = ?local, open = tracker.len(), "MQTT listener stopped; closing its connections");
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(shared.config.shutdown_grace(), tracker.wait())
        .await
        .is_err()
    {
        warn!(addr = ?local, open = tracker.len(), "connections still open after the shutdown grace period");
    }
    Ok(())
}
