//! What CONNECT and dynamic registration read, cached in memory: each device's [`DeviceAuth`]
//! and each product's [`ProductAuth`], filled on a miss from PostgreSQL and invalidated by
//! every change, this process's own at once and other processes' through `LISTEN/NOTIFY`
//! (`listen.rs`).
//!
//! A miss reads PostgreSQL and fills the entry only when no invalidation happened meanwhile
//! (the generation counter), so a stale read racing a change never sticks. Unknown devices are
//! cached too (a registration notifies, so the negative entry goes away), at most
//! [`MAX_NEGATIVE`] of them: beyond that the negative entries are all forgotten.
//!
//! Locks are std `RwLock`s held for a hash lookup or an insert, never across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use std::sync::Arc;

use crate::registry::{DeviceAuth, ProductAuth, ProductTsl};

/// Most cached "no such device" answers.
pub(super) const MAX_NEGATIVE: usize = 65_536;

#[derive(Default)]
struct Devices {
    /// productKey → deviceName → auth (`None`: no such device).
    map: HashMap<String, HashMap<String, Option<DeviceAuth>>>,
    negative: usize,
}

/// The cache. Its entries are filled by [`AuthCache::fill_device`] and dropped by the
/// `forget_*` methods.
#[derive(Default)]
pub(super) struct AuthCache {
    generation: AtomicU64,
    devices: RwLock<Devices>,
    products: RwLock<HashMap<String, Option<ProductAuth>>>,
    /// Every product's thing model: all of them, read at start and again after a reconnect
    /// (`tsl` is read for every property post and has no miss path).
    tsls: RwLock<HashMap<String, Arc<ProductTsl>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCache")
            .field("hits", &self.hits.load(Ordering::Relaxed))
            .field("misses", &self.misses.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl AuthCache {
    /// The generation to pass to a fill after reading PostgreSQL.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// `Some(answer)` when cached.
    pub(super) fn device(&self, pk: &str, dn: &str) -> Option<Option<DeviceAuth>> {
        let found = self
            .devices
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .get(pk)
            .and_then(|m| m.get(dn))
            .cloned();
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Caches what PostgreSQL answered, unless something was invalidated since `generation`;
    /// returns whether it did.
    pub(super) fn fill_device(&self, generation: u64, pk: &str, dn: &str, auth: Option<DeviceAuth>) -> bool {
        let mut devices = self.devices.write().unwrap_or_else(PoisonError::into_inner);
        // Under the write lock: an invalidation bumps the generation before taking it.
        if self.generation.load(Ordering::Acquire) != generation {
            return false;
        }
        if auth.is_none() {
            if devices.negative >= MAX_NEGATIVE {
                for m in devices.map.values_mut() {
                    m.retain(|_, a| a.is_some());
                }
                devices.map.retain(|_, m| !m.is_empty());
                devices.negative = 0;
            }
            devices.negative += 1;
        }
        let old = devices
            .map
            .entry(pk.to_owned())
            .or_default()
            .insert(dn.to_owned(), auth);
        if matches!(old, Some(None)) {
            devices.negative -= 1;
        }
        true
    }

    /// `Some(answer)` when cached.
    pub(super) fn product(&self, pk: &str) -> Option<Option<ProductAuth>> {
        self.products
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(pk)
            .cloned()
    }

    /// Caches a product's auth, unless something was invalidated since `generation`. Products
    /// are few: unknown ones are not cached.
    pub(super) fn fill_product(&self, generation: u64, pk: &str, auth: ProductAuth) {
        let mut products = self.products.write().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::Acquire) == generation {
            products.insert(pk.to_owned(), Some(auth));
        }
    }

    /// Drops a device's entry (it changed).
    pub(super) fn forget_device(&self, pk: &str, dn: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut devices = self.devices.write().unwrap_or_else(PoisonError::into_inner);
        let removed = devices.map.get_mut(pk).and_then(|m| m.remove(dn));
        if matches!(removed, Some(None)) {
            devices.negative -= 1;
        }
    }

    /// Drops the product's "no such device" entries (devices were registered).
    pub(super) fn forget_unknown(&self, pk: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut devices = self.devices.write().unwrap_or_else(PoisonError::into_inner);
        let Devices { map, negative } = &mut *devices;
        if let Some(m) = map.get_mut(pk) {
            let before = m.len();
            m.retain(|_, a| a.is_some());
            *negative -= before - m.len();
        }
    }

    /// Drops a product's entry (it changed).
    pub(super) fn forget_product(&self, pk: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.products
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(pk);
    }

    /// Drops everything (notifications may have been missed while the listener was away).
    pub(super) fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.devices.write().unwrap_or_else(PoisonError::into_inner) = Devices::default();
        self.products
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// The channel every change is announced on.
pub(super) const CHANNEL: &str = "aliot_registry";

/// A change's notification payload: `d <pk> <dn>` or `p <pk>` (names hold no spaces).
pub(super) fn device_payload(pk: &str, dn: &str) -> String {
    format!("d {pk} {dn}")
}

/// Devices were registered in the product: forget that they were unknown.
pub(super) fn created_payload(pk: &str) -> String {
    format!("c {pk}")
}

/// The product's thing model changed.
pub(super) fn tsl_payload(pk: &str) -> String {
    format!("t {pk}")
}

/// See [`device_payload`].
pub(super) fn product_payload(pk: &str) -> String {
    format!("p {pk}")
}

impl AuthCache {
    /// Applies a notification's payload; returns the productKey whose thing model must be read
    /// again (the caller reads it: that needs the database).
    pub(super) fn apply<'p>(&self, payload: &'p str) -> Option<&'p str> {
        let mut parts = payload.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("d"), Some(pk), Some(dn)) => self.forget_device(pk, dn),
            (Some("p"), Some(pk), None) => self.forget_product(pk),
            (Some("c"), Some(pk), None) => self.forget_unknown(pk),
            (Some("t"), Some(pk), None) => return Some(pk),
            _ => {
                tracing::warn!(payload, "unknown registry notification: the cache is cleared");
                self.clear();
            }
        }
        None
    }

    /// A product's thing model.
    pub(super) fn tsl(&self, pk: &str) -> Option<Arc<ProductTsl>> {
        self.tsls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(pk)
            .cloned()
    }

    /// Sets (`Some`) or forgets (`None`) a product's thing model.
    pub(super) fn set_tsl(&self, pk: &str, tsl: Option<Arc<ProductTsl>>) {
        let mut tsls = self.tsls.write().unwrap_or_else(PoisonError::into_inner);
        match tsl {
            Some(t) => tsls.insert(pk.to_owned(), t),
            None => tsls.remove(pk),
        };
    }

    /// Replaces every thing model.
    pub(super) fn set_all_tsls(&self, all: HashMap<String, Arc<ProductTsl>>) {
        *self.tsls.write().unwrap_or_else(PoisonError::into_inner) = all;
    }
}

/// Reads one product's thing model (`None` when it has none).
pub(super) async fn read_tsl(
    c: &tokio_postgres::Client,
    pk: &str,
) -> crate::registry::Result<Option<Arc<ProductTsl>>> {
    let row = c
        .query_opt("SELECT json FROM product_tsl WHERE product_key = $1", &[&pk])
        .await
        .map_err(|e| crate::registry::Error::storage("reading a thing model", e))?;
    Ok(row.and_then(|r| parse_tsl(pk, r.get(0))))
}

/// Reads every product's thing model.
pub(super) async fn read_all_tsls(
    c: &tokio_postgres::Client,
) -> crate::registry::Result<HashMap<String, Arc<ProductTsl>>> {
    let rows = c
        .query("SELECT product_key, json FROM product_tsl", &[])
        .await
        .map_err(|e| crate::registry::Error::storage("reading thing models", e))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let pk: String = r.get(0);
            parse_tsl(&pk, r.get(1)).map(|t| (pk, t))
        })
        .collect())
}

/// A stored model that no longer reads (it was checked when imported) is skipped and logged.
fn parse_tsl(pk: &str, json: String) -> Option<Arc<ProductTsl>> {
    match ProductTsl::from_json(json) {
        Ok(t) => Some(Arc::new(t)),
        Err(e) => {
            tracing::error!(product_key = %pk, error = %e, "a stored thing model does not read: skipped");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(secret: &str) -> DeviceAuth {
        DeviceAuth {
            device_secret: secret.into(),
            enabled: true,
            iot_id: "id".into(),
        }
    }

    #[test]
    fn a_fill_racing_an_invalidation_is_not_kept() {
        let cache = AuthCache::default();
        let generation = cache.generation();
        cache.apply(&device_payload("pk", "dn"));
        cache.fill_device(generation, "pk", "dn", Some(auth("old")));
        assert_eq!(cache.device("pk", "dn"), None);
        let generation = cache.generation();
        cache.fill_device(generation, "pk", "dn", Some(auth("new")));
        assert_eq!(cache.device("pk", "dn"), Some(Some(auth("new"))));
        cache.apply(&device_payload("pk", "dn"));
        assert_eq!(cache.device("pk", "dn"), None);
    }

    #[test]
    fn negative_entries_are_bounded() {
        let cache = AuthCache::default();
        for i in 0..=MAX_NEGATIVE {
            cache.fill_device(cache.generation(), "pk", &format!("d{i}"), None);
        }
        cache.fill_device(cache.generation(), "pk", "real", Some(auth("s")));
        let devices = cache.devices.read().expect("lock");
        assert!(devices.negative <= MAX_NEGATIVE);
        assert!(devices.map["pk"].len() <= MAX_NEGATIVE + 1);
    }
}
