//! Serving an HTTP API (an axum `Router`) within the hub's limits.
//!
//! `axum::serve` has no limit on connections and waits for a request's headers forever, so a
//! peer that opens sockets and sends nothing (or a byte a minute) holds them without bound. This
//! accept loop adds both limits:
//!
//! - at most `max_connections` connections at a time: a connection above the limit is accepted
//!   and closed at once (counted), so clients fail fast instead of queueing in the backlog;
//! - the request head must arrive within `header_read_timeout` (on a new connection and
//!   between requests of a kept-alive one), else the connection is closed.
//!
//! Shutdown stops accepting, lets requests in progress finish (long-lived responses such as the
//! event stream are ended by their own shutdown signal) and returns when every connection is
//! done or the grace period has passed.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// The limits of one HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HttpLimits {
    /// Connections served at the same time, at most.
    pub(crate) max_connections: usize,
    /// How long a request head may take to arrive.
    pub(crate) header_read_timeout: Duration,
    /// How long shutdown waits for requests in progress.
    pub(crate) shutdown_grace: Duration,
}

/// Counters of one HTTP listener.
#[derive(Debug, Default)]
pub(crate) struct HttpCounters {
    /// Connections closed at accept because the limit was reached.
    pub(crate) rejected: AtomicU64,
    /// Connections accepted.
    pub(crate) accepted: AtomicU64,
}

const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The client's address, in every request's extensions (`Extension<Peer>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer(pub(crate) std::net::SocketAddr);

/// Serves `app` on `listener` (over TLS with `tls`) within `limits` until `shutdown`
/// completes. The TLS handshake must end within the header read timeout.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: axum::Router,
    limits: HttpLimits,
    counters: Arc<HttpCounters>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // Every connection's task, so that the ones still running after the grace period can be
    // cut off; finished ones are reaped at each accept.
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, retry_in = ?backoff, "HTTP accept failed");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(5);
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            debug!(%peer, "HTTP connection limit reached; closing the new connection");
            continue;
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(Peer(peer))));
        match &tls {
            None => {
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tasks.spawn(async move {
                    if let Err(e) = conn.await {
                        debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                    drop(permit);
                });
            }
            Some(acceptor) => {
                let (acceptor, http, watcher) = (acceptor.clone(), http.clone(), graceful.watcher());
                let handshake = limits.header_read_timeout;
                tasks.spawn(async move {
                    let stream = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            debug!(%peer, "TLS handshake not finished in time");
                            return;
                        }
                    };
                    let conn = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                    if let Err(e) = conn.await {
                        debug!(%peer, error = %e, "HTTPS connection ended with an error");
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        info!(
            open = tasks.len(),
            "HTTP requests still running at shutdown were cut off"
        );
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}
