//! The listener: one dedicated PostgreSQL connection that `LISTEN`s on the registry's channel
//! and drops the cache entries other hub processes change. It is also the registry's health
//! probe: while it cannot connect, the registry reports PostgreSQL as unreachable (and
//! `/healthz` answers 503); when it connects again, the whole cache is dropped (notifications
//! sent meanwhile were missed) and the registry is healthy again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use super::cache::{AuthCache, CHANNEL, read_all_tsls, read_tsl};
use super::pool::Pool;
use crate::registry::Error;

/// First delay before reconnecting; doubled up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// The state of the database as the registry sees it.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// Why PostgreSQL cannot be used now (`None`: it can).
    pub(super) error: Mutex<Option<String>>,
    /// Operations and connections that failed.
    pub(super) failures: AtomicU64,
    /// Times the listener connected again after losing PostgreSQL.
    pub(super) reconnects: AtomicU64,
}

impl Health {
    pub(super) fn failed(&self, why: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.error.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
    }

    fn ok(&self) {
        *self.error.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    pub(super) fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Runs until `stop` changes: listens, and reconnects after a failure. `listening` is told once
/// the first `LISTEN` is in place (the registry waits for it before it caches anything: an entry
/// cached earlier would be dropped by the first connection's clear, or miss a change).
pub(super) async fn run(
    pool: Arc<Pool>,
    cache: Arc<AuthCache>,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
    listening: tokio::sync::oneshot::Sender<()>,
) {
    let mut listening = Some(listening);
    let mut delay = FIRST_RETRY;
    let mut first = true;
    loop {
        let session = async {
            let (client, mut connection) = pool.connect().await?;
            // The connection must be polled for `LISTEN` to complete: drive it meanwhile.
            let sql = format!("LISTEN {CHANNEL}");
            {
                let listen = client.batch_execute(&sql);
                tokio::pin!(listen);
                loop {
                    tokio::select! {
                        r = &mut listen => {
                            r.map_err(|e| Error::storage("listening for registry changes", e))?;
                            break;
                        }
                        m = std::future::poll_fn(|cx| connection.poll_message(cx)) => match m {
                            // Before LISTEN completes: everything is read again below.
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return Err(Error::storage("listening for registry changes", e)),
                            None => {
                                return Err(Error::storage(
                                    "listening for registry changes",
                                    std::io::Error::other("connection closed"),
                                ));
                            }
                        }
                    }
                }
            }
            Ok((client, connection))
        };
        let outcome = tokio::select! {
            r = session => r,
            _ = stop.changed() => return,
        };
        match outcome {
            Ok((_client, mut connection)) => {
                // Anything may have changed while we were not listening. The notifications of
                // changes from now on are delivered in order after this.
                cache.clear();
                let tsls = async {
                    let c = pool.get().await?;
                    read_all_tsls(&c).await
                };
                match tsls.await {
                    Ok(all) => cache.set_all_tsls(all),
                    Err(e) => tracing::warn!(error = %e, "cannot read the thing models again"),
                }
                health.ok();
                if !first {
                    health.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("PostgreSQL is reachable again: registry healthy");
                }
                first = false;
                if let Some(tx) = listening.take() {
                    // The registry may have stopped waiting (its open timed out): nothing to tell.
                    let _ = tx.send(());
                }
                delay = FIRST_RETRY;
                let why = loop {
                    let m = tokio::select! {
                        m = std::future::poll_fn(|cx| connection.poll_message(cx)) => m,
                        _ = stop.changed() => return,
                    };
                    match m {
                        Some(Ok(AsyncMessage::Notification(n))) => {
                            if let Some(pk) = cache.apply(n.payload()) {
                                // The notification's transaction is committed: this read
                                // sees the new model (notifications wait in the meantime).
                                let read = async {
                                    let c = pool.get().await?;
                                    read_tsl(&c, pk).await
                                };
                                match read.await {
                                    Ok(t) => cache.set_tsl(pk, t),
                                    Err(e) => {
                                        tracing::warn!(error = %e, product_key = %pk, "cannot read a changed thing model")
                                    }
                                }
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => break e.to_string(),
                        None => break "the connection closed".to_owned(),
                    }
                };
                tracing::warn!(error = %why, "lost PostgreSQL: registry unhealthy until it is back");
                health.failed(format!("PostgreSQL unreachable: {why}"));
            }
            Err(e) => {
                let why =
                    std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
                health.failed(format!("PostgreSQL unreachable: {why}"));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
        delay = (delay * 2).min(MAX_RETRY);
    }
}
