//! A small bounded pool of PostgreSQL connections.
//!
//! Why our own and not `deadpool-postgres`: the registry needs only "at most N connections, reuse
//! an idle one, drop a broken one, connect again on demand", which is forty lines over a
//! `Semaphore` and a `Vec`; deadpool would add a crate (and its runtime glue) for the same.
//!
//! Each connection's I/O runs on its own task (tokio-postgres's `Connection`); a connection whose
//! task ended (PostgreSQL restarted, the socket broke) reports `is_closed` and is dropped instead
//! of going back to the pool, so an outage heals by itself on the next checkout.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls};

use crate::registry::{Error, Result};

/// How long a checkout waits for a connection to be made before it fails (the caller sees a
/// storage error, and the hub reports itself unhealthy).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// At most `size` connections; callers beyond that wait for one to come back (the semaphore is
/// fair, so they are served in order).
pub(super) struct Pool {
    config: Config,
    idle: Mutex<Vec<Client>>,
    permits: std::sync::Arc<Semaphore>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config may hold a password: only say where it points.
        f.debug_struct("Pool")
            .field("hosts", &self.config.get_hosts().len())
            .field("available", &self.permits.available_permits())
            .finish()
    }
}

/// A checked-out connection; back to the pool when dropped (unless it broke).
pub(super) struct Conn<'p> {
    client: Option<Client>,
    pool: &'p Pool,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until drop")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until drop")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && !client.is_closed()
        {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(client);
        }
    }
}

impl Pool {
    pub(super) fn new(config: Config, size: usize) -> Pool {
        Pool {
            config,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: std::sync::Arc::new(Semaphore::new(size)),
        }
    }

    /// Makes a new connection (not pooled): for the listener and the migrations.
    pub(super) async fn connect(
        &self,
    ) -> Result<(
        Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    )> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.config.connect(NoTls))
            .await
            .map_err(|e| Error::storage("connecting to PostgreSQL", e))?
            .map_err(|e| Error::storage("connecting to PostgreSQL", e))
    }

    /// An idle healthy connection, or a new one.
    pub(super) async fn get(&self) -> Result<Conn<'_>> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::storage("waiting for a PostgreSQL connection", e))?;
        loop {
            let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            match idle {
                Some(client) if client.is_closed() => continue,
                Some(client) => {
                    return Ok(Conn {
                        client: Some(client),
                        pool: self,
                        _permit: permit,
                    });
                }
                None => break,
            }
        }
        let (client, connection) = self.connect().await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "a PostgreSQL connection of the registry ended");
            }
        });
        Ok(Conn {
            client: Some(client),
            pool: self,
            _permit: permit,
        })
    }
}
