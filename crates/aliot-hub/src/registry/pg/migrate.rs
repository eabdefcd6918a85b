//! The schema: the SQL files of `crates/aliot-hub/migrations/`, embedded in the binary and applied
//! at start.
//!
//! Several hub processes may start at once on the same database: each takes a transaction-level
//! advisory lock first, so one applies what is missing while the others wait, then find it
//! applied. Each migration runs in that one transaction with its row in `schema_migrations`, so
//! a crash half-way leaves the schema as it was.

use tokio_postgres::Client;

use crate::registry::{Error, Result};

/// The migrations, in order: (version, name, SQL). A migration is never edited once released:
/// a change is a new file.
pub(super) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_registry",
        include_str!("../../../migrations/0001_registry.sql"),
    ),
    (
        2,
        "0002_product_tsl",
        include_str!("../../../migrations/0002_product_tsl.sql"),
    ),
];

/// The advisory lock's key (any constant the hub alone uses: "aliot" in ASCII).
const LOCK_KEY: i64 = 0x0061_6c69_6f74;

/// Applies the migrations the database lacks; returns how many it applied.
///
/// # Errors
/// [`Error::Storage`] when a statement fails (nothing of the failed migration is kept), or when
/// the database holds a migration newer than this binary knows (an older hub on a newer schema).
pub(super) async fn migrate(client: &mut Client) -> Result<usize> {
    let st = |what: &'static str| move |e: tokio_postgres::Error| Error::storage(what, e);
    let txn = client
        .transaction()
        .await
        .map_err(st("starting the migrations"))?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(st("taking the migrations lock"))?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer PRIMARY KEY,
             name       text    NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(st("creating schema_migrations"))?;
    let applied: Vec<i32> = txn
        .query("SELECT version FROM schema_migrations ORDER BY version", &[])
        .await
        .map_err(st("reading schema_migrations"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if let Some(&newest) = applied.last()
        && newest > known
    {
        return Err(Error::storage(
            "checking the schema",
            std::io::Error::other(format!(
                "the database has schema version {newest}; this hub knows up to {known}: upgrade the hub"
            )),
        ));
    }
    let mut count = 0;
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        txn.batch_execute(sql).await.map_err(st("applying a migration"))?;
        txn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(st("recording a migration"))?;
        tracing::info!(version, name, "registry schema migrated");
        count += 1;
    }
    txn.commit().await.map_err(st("committing the migrations"))?;
    Ok(count)
}
