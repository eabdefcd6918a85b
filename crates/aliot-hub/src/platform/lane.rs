//! One ordered lane for uplinks that change what the registry keeps for a device (desired
//! properties, shadows): they are carried out one after the other, in the order the platform
//! decided them, so a device's `update` version 2 never overtakes its version 1, and each is
//! answered only once its change is durable.
//!
//! One worker task runs the jobs; it ends when every sender is gone (the platform dropped).

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;

/// A job: a future that carries out one request and answers it.
pub(crate) type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How many jobs may wait. When full, a new request is answered at once with the platform's
/// "busy" code (shadow 500, desired 6661/500) and nothing is changed: the connection task never
/// waits for the registry.
pub(crate) const LANE_CAPACITY: usize = 1024;

/// The sending side of the lane. A cheap `Clone`.
#[derive(Debug, Clone)]
pub(crate) struct Lane {
    tx: mpsc::Sender<Job>,
}

impl Lane {
    /// Starts the worker (inside a tokio runtime).
    pub(crate) fn start() -> Self {
        // Bounded: see LANE_CAPACITY for the overflow policy.
        let (tx, rx) = mpsc::channel(LANE_CAPACITY);
        tokio::spawn(run(rx));
        Self { tx }
    }

    /// Queues `job`; `false` when the lane is full (or its worker is gone).
    pub(crate) fn push(&self, job: Job) -> bool {
        self.tx.try_send(job).is_ok()
    }
}

async fn run(mut rx: mpsc::Receiver<Job>) {
    while let Some(job) = rx.recv().await {
        job.await;
    }
}
