//! Access keys: the AccessKeyId/AccessKeySecret pairs that sign OpenAPI requests (cloud-side
//! §1.2, §1.3) and log AMQP consumers in (§2.2). Created by the admin (`aliot admin access-key
//! create`), the secret shown once; looked up from memory on every signed request.
//!
//! # On disk (redb)
//!
//! One table, `access_keys`: AccessKeyId → JSON `{secret, created_ms, description}`; one durable
//! transaction per change, memory updated after the commit.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::RwLock;

use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// AccessKeyId → JSON record.
pub(super) const ACCESS_KEYS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("access_keys");

/// The most access keys a hub keeps (the cloud allows two per RAM user; a test bench needs a few).
pub const MAX_ACCESS_KEYS: usize = 100;

/// A new access key, with its secret (shown once).
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    /// The AccessKeyId (`LTAI` and 20 letters or digits).
    pub access_key_id: String,
    /// The AccessKeySecret (30 letters or digits).
    pub access_key_secret: String,
    /// When it was created, epoch ms.
    pub created_ms: u64,
    /// What it is for, as given at creation.
    pub description: Option<String>,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field("created_ms", &self.created_ms)
            .field("description", &self.description)
            .finish()
    }
}

impl AccessKey {
    /// A fresh key pair from the CSPRNG.
    pub fn generate(created_ms: u64, description: Option<String>) -> Self {
        Self {
            access_key_id: format!("LTAI{}", random_alnum(20)),
            access_key_secret: random_alnum(30),
            created_ms,
            description,
        }
    }

    /// The key without its secret.
    pub fn info(&self) -> AccessKeyInfo {
        AccessKeyInfo {
            access_key_id: self.access_key_id.clone(),
            created_ms: self.created_ms,
            description: self.description.clone(),
        }
    }
}

/// `n` random letters and digits from the thread-local CSPRNG.
fn random_alnum(n: usize) -> String {
    use rand::Rng as _;
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// An access key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyInfo {
    /// The AccessKeyId.
    pub access_key_id: String,
    /// When it was created, epoch ms.
    pub created_ms: u64,
    /// What it is for.
    pub description: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    secret: String,
    created_ms: u64,
    #[serde(default)]
    description: Option<String>,
}

/// The access keys in memory (what signed requests look up), sorted by id.
#[derive(Default)]
pub(crate) struct AccessKeys {
    keys: RwLock<BTreeMap<String, AccessKey>>,
}

impl fmt::Debug for AccessKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKeys")
            .field("count", &self.read().len())
            .finish()
    }
}

impl AccessKeys {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, AccessKey>> {
        // Inserts and removes are single calls: a poisoned map is still consistent.
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, AccessKey>> {
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The secret of a key.
    pub(crate) fn secret(&self, access_key_id: &str) -> Option<String> {
        self.read()
            .get(access_key_id)
            .map(|k| k.access_key_secret.clone())
    }

    /// Every key, without secrets.
    pub(crate) fn list(&self) -> Vec<AccessKeyInfo> {
        self.read().values().map(AccessKey::info).collect()
    }

    /// Adds a key unless the hub has [`MAX_ACCESS_KEYS`] already; `save` makes it durable first.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] at the limit; `save`'s errors.
    pub(crate) fn add(
        &self,
        key: AccessKey,
        save: impl FnOnce(&AccessKey) -> Result<()>,
    ) -> Result<AccessKey> {
        if self.read().len() >= MAX_ACCESS_KEYS {
            return Err(Error::InvalidArgument(format!(
                "the hub keeps at most {MAX_ACCESS_KEYS} access keys; delete one first"
            )));
        }
        save(&key)?;
        self.write().insert(key.access_key_id.clone(), key.clone());
        Ok(key)
    }

    /// Removes a key (`remove` makes it durable first); whether it existed.
    ///
    /// # Errors
    /// `remove`'s errors.
    pub(crate) fn delete(&self, access_key_id: &str, remove: impl FnOnce() -> Result<()>) -> Result<bool> {
        if !self.read().contains_key(access_key_id) {
            return Ok(false);
        }
        remove()?;
        Ok(self.write().remove(access_key_id).is_some())
    }

    /// Replaces the keys with `keys`.
    pub(crate) fn replace(&self, keys: Vec<AccessKey>) {
        *self.write() = keys.into_iter().map(|k| (k.access_key_id.clone(), k)).collect();
    }
}

/// Every stored key (blocking); records that do not decode are skipped with an error log.
pub(super) fn read(db: &Database) -> Result<Vec<AccessKey>> {
    let txn = db
        .begin_read()
        .map_err(|e| Error::storage("reading the access keys", e))?;
    let table = match txn.open_table(ACCESS_KEYS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(Error::storage("reading the access keys table", e)),
    };
    let mut out = Vec::new();
    for row in table
        .iter()
        .map_err(|e| Error::storage("reading the access keys table", e))?
    {
        let (k, v) = row.map_err(|e| Error::storage("reading an access key", e))?;
        match serde_json::from_slice::<StoredKey>(v.value()) {
            Ok(s) => out.push(AccessKey {
                access_key_id: k.value().to_owned(),
                access_key_secret: s.secret,
                created_ms: s.created_ms,
                description: s.description,
            }),
            Err(e) => {
                tracing::error!(access_key_id = k.value(), error = %e, "skipped an access key that cannot be decoded");
            }
        }
    }
    Ok(out)
}

/// Stores a key durably (blocking).
pub(super) fn save(db: &Database, key: &AccessKey) -> Result<()> {
    let stored = StoredKey {
        secret: key.access_key_secret.clone(),
        created_ms: key.created_ms,
        description: key.description.clone(),
    };
    let bytes = serde_json::to_vec(&stored).map_err(|source| Error::Corrupt {
        record: format!("access_keys/{}", key.access_key_id),
        source,
    })?;
    let txn = db
        .begin_write()
        .map_err(|e| Error::storage("starting an access key write", e))?;
    {
        let mut table = txn
            .open_table(ACCESS_KEYS)
            .map_err(|e| Error::storage("opening the access keys table", e))?;
        table
            .insert(key.access_key_id.as_str(), bytes.as_slice())
            .map_err(|e| Error::storage("writing an access key", e))?;
    }
    txn.commit()
        .map_err(|e| Error::storage("committing an access key", e))
}

/// Deletes a key durably (blocking).
pub(super) fn remove(db: &Database, access_key_id: &str) -> Result<()> {
    let txn = db
        .begin_write()
        .map_err(|e| Error::storage("starting an access key deletion", e))?;
    {
        let mut table = txn
            .open_table(ACCESS_KEYS)
            .map_err(|e| Error::storage("opening the access keys table", e))?;
        table
            .remove(access_key_id)
            .map_err(|e| Error::storage("deleting an access key", e))?;
    }
    txn.commit()
        .map_err(|e| Error::storage("committing an access key deletion", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_and_lists() {
        let key = AccessKey::generate(1, Some("backend".into()));
        assert!(key.access_key_id.starts_with("LTAI"));
        assert_eq!(key.access_key_secret.len(), 30);
        assert!(!format!("{key:?}").contains(&key.access_key_secret));
        let keys = AccessKeys::default();
        keys.add(key.clone(), |_| Ok(())).expect("added");
        assert_eq!(keys.list(), vec![key.info()]);
        assert_eq!(
            keys.secret(&key.access_key_id),
            Some(key.access_key_secret.clone())
        );
        assert!(keys.delete(&key.access_key_id, || Ok(())).expect("deleted"));
        assert!(!keys.delete(&key.access_key_id, || Ok(())).expect("absent"));
        assert_eq!(keys.secret(&key.access_key_id), None);
    }
}
