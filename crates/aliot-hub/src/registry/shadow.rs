//! Device shadows (cloud-side spec §4.1, aliyun-protocol "Device shadow"): per device one
//! document `{"state":{"reported","desired"},"metadata":{…},"timestamp","version"}`, timestamps
//! in seconds. The rules ([`ShadowDocument::apply`]) are shared by every registry
//! implementation; this file also keeps documents in redb.
//!
//! - A device's `update` or `delete` must carry a version above the stored one (409 otherwise);
//!   version -1 is accepted and resets the stored version to 0.
//! - In `update`, an attribute whose value is `"null"` (or JSON null) is deleted, and
//!   `"desired":"null"` clears desired; `delete` removes the listed reported attributes
//!   (`"reported":"null"`: all of them).
//! - The admin's desired update (`UpdateDeviceShadow`): version 0 means "no versioning" (the
//!   stored version goes up by one), any other must be above the stored one; it replaces
//!   desired, or merges into it (delta update; `"null"` deletes an attribute there too).
//! - Caps: [`MAX_ATTRIBUTES`] reported attributes and as many desired ones (408), and
//!   [`MAX_DOCUMENT_BYTES`] bytes of document JSON (408 too): nothing is changed then.
//!
//! # On disk (redb)
//!
//! Table `device_shadows`: (productKey, deviceName) → the document's JSON.

use std::collections::BTreeMap;

use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Error, Result};

/// (productKey, deviceName) → JSON [`ShadowDocument`].
pub(super) const SHADOWS: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("device_shadows");

/// The most reported (and the most desired) attributes of one document (the platform's 408).
pub const MAX_ATTRIBUTES: usize = 128;

/// The largest document, as JSON (the hub's cap, answered with 408 like the attribute cap).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024;

/// A device shadow document, serialized exactly as the platform shows it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ShadowDocument {
    /// `reported` and `desired`.
    pub state: ShadowState,
    /// When each attribute was last written.
    pub metadata: ShadowMetadata,
    /// When the document was last written, epoch seconds.
    pub timestamp: u64,
    /// The document's version.
    pub version: i64,
}

/// The document's `state`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ShadowState {
    /// What the device reported.
    #[serde(default)]
    pub reported: Map<String, Value>,
    /// What the application wants.
    #[serde(default)]
    pub desired: Map<String, Value>,
}

/// The document's `metadata`: attribute → `{"timestamp": seconds}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ShadowMetadata {
    /// Times of the reported attributes.
    #[serde(default)]
    pub reported: BTreeMap<String, Stamp>,
    /// Times of the desired attributes.
    #[serde(default)]
    pub desired: BTreeMap<String, Stamp>,
}

/// `{"timestamp": seconds}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stamp {
    /// Epoch seconds.
    pub timestamp: u64,
}

/// A change to a device's shadow.
#[derive(Debug, Clone, PartialEq)]
pub enum ShadowChange {
    /// The device's `update`: reported attributes (`"null"` deletes one), and whether
    /// `"desired":"null"` clears desired.
    Report {
        /// Attributes to write or delete (`None`: the update only clears desired).
        reported: Option<Map<String, Value>>,
        /// `"desired":"null"`.
        clear_desired: bool,
        /// The request's version.
        version: i64,
    },
    /// The device's `delete`: these reported attributes, or all of them (`None`).
    Delete {
        /// The attributes.
        attributes: Option<Vec<String>>,
        /// The request's version.
        version: i64,
    },
    /// The application's desired update.
    Desire {
        /// The desired attributes.
        desired: Map<String, Value>,
        /// 0: no versioning; otherwise above the stored version.
        version: i64,
        /// Merge into desired (delta update) instead of replacing it.
        merge: bool,
    },
}

/// Why a change was refused: the platform's shadow error code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shadow error {code}: {message}")]
pub struct ShadowRefusal {
    /// 403, 405, 407, 408 or 409 (the parse errors 400–406 are the platform's).
    pub code: u16,
    /// What is wrong.
    pub message: String,
}

impl ShadowRefusal {
    /// A refusal with `code`.
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

fn is_null(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some("null")
}

fn write_attributes(
    target: &mut Map<String, Value>,
    stamps: &mut BTreeMap<String, Stamp>,
    attributes: Map<String, Value>,
    now_s: u64,
) {
    for (k, v) in attributes {
        if is_null(&v) {
            target.remove(&k);
            stamps.remove(&k);
        } else {
            target.insert(k.clone(), v);
            stamps.insert(k, Stamp { timestamp: now_s });
        }
    }
}

impl ShadowDocument {
    fn check_version(&self, version: i64) -> std::result::Result<i64, ShadowRefusal> {
        match version {
            -1 => Ok(0),
            v if v > self.version => Ok(v),
            v => Err(ShadowRefusal::new(
                409,
                format!(
                    "version conflict: {v} is not above the shadow's version {}",
                    self.version
                ),
            )),
        }
    }

    /// Applies `change` to `doc` (`None`: no document yet) at `now_s`, returning the new
    /// document.
    ///
    /// # Errors
    /// The platform's refusal (409 version, 407 delete without a document, 408 caps); `doc`
    /// is unchanged then.
    pub fn apply(
        doc: Option<&ShadowDocument>,
        change: ShadowChange,
        now_s: u64,
    ) -> std::result::Result<ShadowDocument, ShadowRefusal> {
        let mut next = doc.cloned().unwrap_or_default();
        match change {
            ShadowChange::Report {
                reported,
                clear_desired,
                version,
            } => {
                next.version = next.check_version(version)?;
                if let Some(reported) = reported {
                    write_attributes(
                        &mut next.state.reported,
                        &mut next.metadata.reported,
                        reported,
                        now_s,
                    );
                }
                if clear_desired {
                    next.state.desired.clear();
                    next.metadata.desired.clear();
                }
            }
            ShadowChange::Delete { attributes, version } => {
                if doc.is_none() {
                    return Err(ShadowRefusal::new(407, "shadow document empty"));
                }
                next.version = next.check_version(version)?;
                match attributes {
                    None => {
                        next.state.reported.clear();
                        next.metadata.reported.clear();
                    }
                    Some(names) => {
                        for name in names {
                            next.state.reported.remove(&name);
                            next.metadata.reported.remove(&name);
                        }
                    }
                }
            }
            ShadowChange::Desire {
                desired,
                version,
                merge,
            } => {
                next.version = match version {
                    0 => next.version.saturating_add(1).max(1),
                    v if v > next.version => v,
                    v => {
                        return Err(ShadowRefusal::new(
                            409,
                            format!(
                                "version conflict: {v} is not above the shadow's version {}",
                                next.version
                            ),
                        ));
                    }
                };
                if !merge {
                    next.state.desired.clear();
                    next.metadata.desired.clear();
                }
                write_attributes(
                    &mut next.state.desired,
                    &mut next.metadata.desired,
                    desired,
                    now_s,
                );
            }
        }
        next.timestamp = now_s;
        for (what, n) in [
            ("reported", next.state.reported.len()),
            ("desired", next.state.desired.len()),
        ] {
            if n > MAX_ATTRIBUTES {
                return Err(ShadowRefusal::new(
                    408,
                    format!("too many {what} attributes: {n} (at most {MAX_ATTRIBUTES})"),
                ));
            }
        }
        let bytes = serde_json::to_vec(&next).map_or(usize::MAX, |b| b.len());
        if bytes > MAX_DOCUMENT_BYTES {
            return Err(ShadowRefusal::new(
                408,
                format!("shadow document of {bytes} bytes (at most {MAX_DOCUMENT_BYTES})"),
            ));
        }
        Ok(next)
    }
}

fn st<E: Into<redb::Error>>(action: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::storage(action, e.into())
}

fn decode(pk: &str, dn: &str, bytes: &[u8]) -> Result<ShadowDocument> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        record: format!("device_shadows/{pk}/{dn}"),
        source: e,
    })
}

/// A device's shadow as stored (blocking).
pub(super) fn load(db: &redb::Database, pk: &str, dn: &str) -> Result<Option<ShadowDocument>> {
    let txn = db.begin_read().map_err(st("reading a shadow"))?;
    let table = txn.open_table(SHADOWS).map_err(st("reading the shadows table"))?;
    match table.get((pk, dn)).map_err(st("reading a shadow"))? {
        Some(v) => decode(pk, dn, v.value()).map(Some),
        None => Ok(None),
    }
}

/// Applies `change` to a device's shadow in one durable transaction (blocking).
pub(super) fn change(
    db: &redb::Database,
    pk: &str,
    dn: &str,
    change: ShadowChange,
    now_s: u64,
) -> Result<std::result::Result<ShadowDocument, ShadowRefusal>> {
    let txn = db.begin_write().map_err(st("starting a shadow write"))?;
    let outcome = {
        let mut table = txn.open_table(SHADOWS).map_err(st("opening the shadows table"))?;
        let current = match table.get((pk, dn)).map_err(st("reading a shadow"))? {
            Some(v) => Some(decode(pk, dn, v.value())?),
            None => None,
        };
        match ShadowDocument::apply(current.as_ref(), change, now_s) {
            Ok(doc) => {
                let bytes = serde_json::to_vec(&doc).map_err(|e| Error::Corrupt {
                    record: format!("device_shadows/{pk}/{dn}"),
                    source: e,
                })?;
                table
                    .insert((pk, dn), bytes.as_slice())
                    .map_err(st("writing a shadow"))?;
                Ok(doc)
            }
            Err(refusal) => Err(refusal),
        }
    };
    if outcome.is_ok() {
        txn.commit().map_err(st("committing a shadow"))?;
    } else {
        txn.abort().map_err(st("abandoning a shadow write"))?;
    }
    Ok(outcome)
}

/// Forgets a device's shadow, inside its deletion's transaction.
pub(super) fn forget(txn: &redb::WriteTransaction, pk: &str, dn: &str) -> Result<()> {
    txn.open_table(SHADOWS)
        .map_err(st("opening the shadows table"))?
        .remove((pk, dn))
        .map_err(st("deleting a shadow"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn report(v: Value, version: i64) -> ShadowChange {
        ShadowChange::Report {
            reported: v.as_object().cloned(),
            clear_desired: false,
            version,
        }
    }

    #[test]
    fn updates_need_a_higher_version_and_minus_one_resets_it() {
        let doc = ShadowDocument::apply(None, report(json!({"color":"red"}), 3), 100).expect("first");
        assert_eq!(doc.version, 3);
        assert_eq!(doc.metadata.reported["color"].timestamp, 100);
        let err = ShadowDocument::apply(Some(&doc), report(json!({"color":"blue"}), 3), 101)
            .expect_err("same version");
        assert_eq!(err.code, 409);
        let reset =
            ShadowDocument::apply(Some(&doc), report(json!({"color":"null"}), -1), 102).expect("reset");
        assert_eq!(reset.version, 0);
        assert!(reset.state.reported.is_empty() && reset.metadata.reported.is_empty());
    }

    #[test]
    fn the_document_serializes_as_the_platform_shows_it() {
        let doc = ShadowDocument::apply(None, report(json!({"a":1}), 1), 5).expect("first");
        assert_eq!(
            serde_json::to_value(&doc).expect("json"),
            json!({"state":{"reported":{"a":1},"desired":{}},
                   "metadata":{"reported":{"a":{"timestamp":5}},"desired":{}},
                   "timestamp":5,"version":1})
        );
    }

    #[test]
    fn desired_updates_merge_or_replace_and_caps_refuse_with_408() {
        let doc = ShadowDocument::apply(
            None,
            ShadowChange::Desire {
                desired: json!({"a":1,"b":2}).as_object().cloned().expect("object"),
                version: 0,
                merge: false,
            },
            1,
        )
        .expect("desire");
        assert_eq!(doc.version, 1);
        let merged = ShadowDocument::apply(
            Some(&doc),
            ShadowChange::Desire {
                desired: json!({"b":"null","c":3}).as_object().cloned().expect("object"),
                version: 5,
                merge: true,
            },
            2,
        )
        .expect("merge");
        assert_eq!(
            merged.state.desired,
            *json!({"a":1,"c":3}).as_object().expect("object")
        );
        let many: Map<String, Value> = (0..=MAX_ATTRIBUTES)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect();
        let err = ShadowDocument::apply(Some(&merged), report(Value::Object(many), 9), 3).expect_err("cap");
        assert_eq!(err.code, 408);
        let big = json!({"blob": "x".repeat(MAX_DOCUMENT_BYTES)});
        let err = ShadowDocument::apply(Some(&merged), report(big, 9), 3).expect_err("bytes");
        assert_eq!(err.code, 408);
        let err = ShadowDocument::apply(
            None,
            ShadowChange::Delete {
                attributes: None,
                version: 1,
            },
            3,
        )
        .expect_err("nothing to delete");
        assert_eq!(err.code, 407);
    }
}
