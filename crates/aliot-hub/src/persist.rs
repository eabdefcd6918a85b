//! Saves what clean-session-0 devices keep (their sessions and the QoS 1 messages they are
//! owed) so that it survives a restart, `kill -9` included: the device table journals every
//! change (`table::journal`), and the task here writes the journal to the registry
//! ([`Registry::save_sessions`]) in batches, one durable transaction each. At start,
//! [`restore`] puts back what was saved.
//!
//! # What is durable when
//!
//! - A QoS 1 message an admin sends to a clean-session-0 device: before the admin's answer
//!   (`Service::publish` waits for the batch that holds it). It stays saved until the device's
//!   PUBACK (or its retention ends).
//! - A session's subscriptions: in the batch after the SUBSCRIBE or the login, without delaying
//!   the SUBACK or the CONNACK (a crash within that batch's few milliseconds forgets them; the
//!   device resubscribes when its session is not present).
//!
//! # Batching and failures
//!
//! The task takes everything the journal holds, writes it in one transaction (fsync included)
//! and reports it saved; changes that arrive meanwhile go into the next batch, so a burst costs
//! a few fsyncs, not one per message. When a write fails, the batch goes back to the journal,
//! waiting admins get a 503 at once (their messages are still delivered while the hub runs),
//! and the task retries after a delay doubling from 100 ms to 10 s (the registry reopens its
//! file on the retry). Meanwhile the journal's byte budget refuses new messages for
//! clean-session-0 devices.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::registry::{self, Registry};
use crate::table::{DeviceTable, Journal};

/// First delay before a failed write is retried.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest delay between two retries.
const MAX_RETRY: Duration = Duration::from_secs(10);

/// Puts the sessions saved before the restart back into `table`; returns the number of sessions
/// and of messages.
///
/// # Errors
/// The registry cannot read them.
pub(crate) async fn restore(
    table: &DeviceTable,
    registry: &dyn Registry,
) -> registry::Result<(usize, usize)> {
    let sessions = registry.sessions().await?;
    let count = sessions.len();
    let messages = table.restore(sessions);
    if count > 0 {
        tracing::info!(sessions = count, messages, "clean-session-0 sessions restored");
    }
    Ok((count, messages))
}

/// Writes the journal's changes as they come, until the registry is gone (the task holds it
/// weakly, so that a stopped hub's registry closes its file). A hub that stops gracefully
/// first waits for the journal: see [`flush`].
pub(crate) async fn run(journal: Arc<Journal>, registry: Weak<dyn Registry>) {
    let mut delay = FIRST_RETRY;
    loop {
        let Some(batch) = journal.take() else {
            journal.changed().await;
            continue;
        };
        let Some(registry) = registry.upgrade() else {
            return;
        };
        let n = batch.changes.len();
        match registry.save_sessions(batch.changes.clone()).await {
            Ok(()) => {
                journal.saved(&batch);
                delay = FIRST_RETRY;
                tracing::trace!(changes = n, "sessions saved");
            }
            Err(e) => {
                tracing::error!(error = %e, changes = n, retry_in = ?delay, "cannot save clean-session-0 sessions");
                journal.failed(batch);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY);
            }
        }
    }
}

/// Waits until everything journaled so far is saved, at most `limit`; `false` when it was not.
pub(crate) async fn flush(journal: &Journal, limit: Duration) -> bool {
    let everything = journal.everything();
    matches!(
        tokio::time::timeout(limit, journal.wait(everything)).await,
        Ok(Ok(()))
    )
}
