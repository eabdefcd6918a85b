//! The one shutdown signal of `aliot`: Ctrl-C, or SIGTERM on unix. `aliot hub`, `aliot device
//! run`, `aliot admin events` and `aliot demo --keep-running` stop on it.

use std::future::Future;
use std::io;

/// A future that completes on the first Ctrl-C (SIGINT) or SIGTERM after this call.
///
/// The handlers are registered here, synchronously, before the future is returned (and not
/// when it is first polled, as `tokio::signal::ctrl_c()` would): a signal that arrives before
/// the future is polled, e.g. while `aliot hub` prints its banner and the hub has not yet
/// polled it in its own task, is kept for it and never kills the process with the default
/// action. Call it from within the runtime (whose signal driver `enable_all` turns on).
///
/// # Errors
/// A handler that cannot be registered.
pub(crate) fn shutdown() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let stopped = {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
    };
    #[cfg(not(unix))]
    let stopped = {
        let mut ctrl_c = tokio::signal::windows::ctrl_c()?;
        async move {
            ctrl_c.recv().await;
        }
    };
    Ok(async move {
        stopped.await;
        tracing::info!("shutdown requested");
    })
}
