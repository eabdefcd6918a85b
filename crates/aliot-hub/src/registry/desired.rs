//! Desired properties (cloud-side spec §4.1, aliyun-protocol §4.4): per device, identifier →
//! value, version and time. The rules ([`DesiredProperties::apply`]) are shared by every
//! registry implementation; this file also keeps them in redb.
//!
//! - A set gives each identifier the next version (the first set is version 1). With an
//!   expected version, the set is refused, whole, unless the identifier's current version is
//!   exactly that one (the platform's "version mismatch"; an identifier never set has version
//!   0).
//! - A clear (admin clear, the device's `thing.property.desired.delete`) removes the value of
//!   each identifier whose version matches (or with no version given) and keeps its version,
//!   so the next set of it continues from there (a stale expected version cannot succeed after
//!   a clear). Identifiers whose version does not match are left alone and reported.
//! - At most [`MAX_DESIRED_PER_DEVICE`] identifiers and [`MAX_DESIRED_BYTES`] bytes of values
//!   per device.
//!
//! # On disk (redb)
//!
//! Table `desired_properties`: (productKey, deviceName) → JSON `{identifier: {"value","version","time"}}`.

use std::collections::BTreeMap;

use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Error, Result};

/// (productKey, deviceName) → JSON [`DesiredProperties`].
pub(super) const DESIRED: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("desired_properties");

/// The most identifiers a device keeps desired values for (the hub's own cap).
pub const MAX_DESIRED_PER_DEVICE: usize = 1000;

/// The most bytes of desired values (as JSON) a device keeps (the hub's own cap).
pub const MAX_DESIRED_BYTES: usize = 256 * 1024;

/// One identifier's desired value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredValue {
    /// The value; `None` once cleared (the version is kept).
    pub value: Option<Value>,
    /// Its version: 1 after the first set, one more at each set or clear.
    pub version: u64,
    /// When it was last set or cleared, epoch ms.
    pub time: u64,
}

/// A device's desired properties: identifier → value. Cleared identifiers keep their version.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DesiredProperties {
    items: BTreeMap<String, DesiredValue>,
}

/// A change to a device's desired properties.
#[derive(Debug, Clone, PartialEq)]
pub enum DesiredChange {
    /// Set these values: identifier → (value, expected current version).
    Set(BTreeMap<String, (Value, Option<u64>)>),
    /// Clear these identifiers: identifier → expected current version (`None`: any).
    Clear(BTreeMap<String, Option<u64>>),
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DesiredOutcome {
    /// The identifiers changed, with their new versions.
    pub versions: BTreeMap<String, u64>,
    /// Identifiers a clear left alone: identifier → (expected, current) version.
    pub skipped: BTreeMap<String, (u64, u64)>,
}

impl DesiredProperties {
    /// The identifiers that hold a value, with it.
    pub fn values(&self) -> impl Iterator<Item = (&str, &DesiredValue)> {
        self.items
            .iter()
            .filter(|(_, v)| v.value.is_some())
            .map(|(k, v)| (k.as_str(), v))
    }

    /// One identifier's entry (also a cleared one).
    pub fn get(&self, identifier: &str) -> Option<&DesiredValue> {
        self.items.get(identifier)
    }

    /// Whether no identifier holds a value.
    pub fn is_empty(&self) -> bool {
        self.values().next().is_none()
    }

    fn version(&self, identifier: &str) -> u64 {
        self.items.get(identifier).map_or(0, |v| v.version)
    }

    /// Applies `change` at `now_ms`: all of a set or nothing, a clear per identifier.
    ///
    /// # Errors
    /// [`Error::VersionConflict`] for a set whose expected version is not the current one;
    /// [`Error::InvalidArgument`] past [`MAX_DESIRED_PER_DEVICE`] or [`MAX_DESIRED_BYTES`].
    /// Nothing is changed then.
    pub fn apply(&mut self, change: DesiredChange, now_ms: u64) -> Result<DesiredOutcome> {
        let mut outcome = DesiredOutcome::default();
        match change {
            DesiredChange::Set(items) => {
                for (id, (_, expected)) in &items {
                    let current = self.version(id);
                    if let Some(expected) = *expected
                        && expected != current
                    {
                        return Err(Error::VersionConflict {
                            what: format!("desired property {id}"),
                            expected,
                            current,
                        });
                    }
                }
                let mut next = self.clone();
                for (id, (value, _)) in items {
                    let version = next.version(&id) + 1;
                    next.items.insert(
                        id.clone(),
                        DesiredValue {
                            value: Some(value),
                            version,
                            time: now_ms,
                        },
                    );
                    outcome.versions.insert(id, version);
                }
                next.check()?;
                *self = next;
            }
            DesiredChange::Clear(items) => {
                for (id, expected) in items {
                    let Some(entry) = self.items.get_mut(&id) else {
                        continue;
                    };
                    if let Some(expected) = expected
                        && expected != entry.version
                    {
                        outcome.skipped.insert(id, (expected, entry.version));
                        continue;
                    }
                    if entry.value.take().is_some() {
                        entry.version += 1;
                        entry.time = now_ms;
                    }
                    outcome.versions.insert(id, entry.version);
                }
            }
        }
        Ok(outcome)
    }

    fn check(&self) -> Result<()> {
        if self.items.len() > MAX_DESIRED_PER_DEVICE {
            return Err(Error::InvalidArgument(format!(
                "a device keeps at most {MAX_DESIRED_PER_DEVICE} desired properties ({} asked)",
                self.items.len()
            )));
        }
        let bytes: usize = self
            .values()
            .map(|(id, v)| id.len() + v.value.as_ref().map_or(0, |v| v.to_string().len()))
            .sum();
        if bytes > MAX_DESIRED_BYTES {
            return Err(Error::InvalidArgument(format!(
                "a device keeps at most {MAX_DESIRED_BYTES} bytes of desired values ({bytes} asked)"
            )));
        }
        Ok(())
    }
}

fn st<E: Into<redb::Error>>(action: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::storage(action, e.into())
}

fn decode(pk: &str, dn: &str, bytes: &[u8]) -> Result<DesiredProperties> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        record: format!("desired_properties/{pk}/{dn}"),
        source: e,
    })
}

/// A device's desired properties as stored (blocking).
pub(super) fn load(db: &redb::Database, pk: &str, dn: &str) -> Result<DesiredProperties> {
    let txn = db.begin_read().map_err(st("reading desired properties"))?;
    let table = txn
        .open_table(DESIRED)
        .map_err(st("reading the desired properties table"))?;
    match table.get((pk, dn)).map_err(st("reading desired properties"))? {
        Some(v) => decode(pk, dn, v.value()),
        None => Ok(DesiredProperties::default()),
    }
}

/// Applies `change` to a device's desired properties in one durable transaction (blocking).
pub(super) fn change(
    db: &redb::Database,
    pk: &str,
    dn: &str,
    change: DesiredChange,
    now_ms: u64,
) -> Result<DesiredOutcome> {
    let txn = db
        .begin_write()
        .map_err(st("starting a desired properties write"))?;
    let outcome = {
        let mut table = txn
            .open_table(DESIRED)
            .map_err(st("opening the desired properties table"))?;
        let mut current = match table.get((pk, dn)).map_err(st("reading desired properties"))? {
            Some(v) => decode(pk, dn, v.value())?,
            None => DesiredProperties::default(),
        };
        let outcome = current.apply(change, now_ms)?;
        let bytes = serde_json::to_vec(&current).map_err(|e| Error::Corrupt {
            record: format!("desired_properties/{pk}/{dn}"),
            source: e,
        })?;
        table
            .insert((pk, dn), bytes.as_slice())
            .map_err(st("writing desired properties"))?;
        outcome
    };
    txn.commit().map_err(st("committing desired properties"))?;
    Ok(outcome)
}

/// Forgets a device's desired properties, inside its deletion's transaction.
pub(super) fn forget(txn: &redb::WriteTransaction, pk: &str, dn: &str) -> Result<()> {
    txn.open_table(DESIRED)
        .map_err(st("opening the desired properties table"))?
        .remove((pk, dn))
        .map_err(st("deleting desired properties"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn set(items: &[(&str, Value, Option<u64>)]) -> DesiredChange {
        DesiredChange::Set(
            items
                .iter()
                .map(|(k, v, e)| ((*k).to_owned(), (v.clone(), *e)))
                .collect(),
        )
    }

    #[test]
    fn each_set_raises_the_version_and_a_stale_expected_version_changes_nothing() {
        let mut d = DesiredProperties::default();
        let out = d.apply(set(&[("power", json!(1), None)]), 10).expect("set");
        assert_eq!(out.versions["power"], 1);
        let out = d
            .apply(set(&[("power", json!(0), Some(1))]), 20)
            .expect("set with the current version");
        assert_eq!(out.versions["power"], 2);
        let err = d
            .apply(set(&[("power", json!(5), Some(1)), ("t", json!(3), None)]), 30)
            .expect_err("stale");
        assert!(
            matches!(
                err,
                Error::VersionConflict {
                    expected: 1,
                    current: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(d.get("power").and_then(|v| v.value.clone()), Some(json!(0)));
        assert!(d.get("t").is_none());
    }

    #[test]
    fn a_clear_keeps_the_version_and_skips_mismatched_identifiers() {
        let mut d = DesiredProperties::default();
        d.apply(set(&[("a", json!(1), None), ("b", json!(2), None)]), 1)
            .expect("set");
        let clear = DesiredChange::Clear([("a".to_owned(), Some(1)), ("b".to_owned(), Some(7))].into());
        let out = d.apply(clear, 2).expect("clear");
        assert_eq!(out.versions["a"], 2);
        assert_eq!(out.skipped["b"], (7, 1));
        assert_eq!(d.values().map(|(k, _)| k).collect::<Vec<_>>(), ["b"]);
        let out = d.apply(set(&[("a", json!(9), Some(2))]), 3).expect("set again");
        assert_eq!(out.versions["a"], 3);
    }

    #[test]
    fn a_device_keeps_a_bounded_number_of_desired_values() {
        let mut d = DesiredProperties::default();
        let many: BTreeMap<String, (Value, Option<u64>)> = (0..=MAX_DESIRED_PER_DEVICE)
            .map(|i| (format!("p{i}"), (json!(i), None)))
            .collect();
        assert!(d.apply(DesiredChange::Set(many), 1).is_err());
        assert!(d.is_empty());
    }
}
