//! The latest reported property values of one device, and the rule that bounds them.
//!
//! Every registry keeps, per device, the last value of each property identifier it reported
//! ([`Registry::remember_properties`](super::Registry::remember_properties)). A device chooses
//! its identifiers and values, so without a limit one device could make the hub hold any
//! amount of memory. [`Properties::remember`] is the one place that applies
//! [`PropertyLimits`]: a post is kept whole or not at all.
//!
//! # What a device sees beyond the limits
//!
//! A property post that would take the device past either limit is **not stored** (none of its
//! values: a partial merge would leave a mix of old and new readings) and the platform answers
//! it with code 6106, "too many properties reported", the platform's code for a post above its
//! 200-property limit (spec §3.8, §4.2). The answer is built in `platform/thing.rs`. Values
//! already kept stay; a post that only updates identifiers the device already has is accepted
//! as long as the new values fit in the byte budget.

use serde_json::{Map, Value};

use super::{Error, Result};
use crate::config::RegistryConfig;

/// How much a registry keeps of one device's reported properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropertyLimits {
    /// Distinct property identifiers kept per device.
    pub max_identifiers: usize,
    /// Bytes kept per device: the length of each identifier plus the length of its value as
    /// compact JSON.
    pub max_bytes: usize,
}

impl Default for PropertyLimits {
    /// The hub's default settings (`[registry]` in the default configuration file): 1000
    /// identifiers and 64 KiB per device.
    fn default() -> Self {
        Self::from(&RegistryConfig::default())
    }
}

impl From<&RegistryConfig> for PropertyLimits {
    fn from(c: &RegistryConfig) -> Self {
        Self {
            max_identifiers: c.max_properties_per_device,
            max_bytes: c.max_property_bytes_per_device,
        }
    }
}

/// One device's latest property values, with the bytes they count for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties {
    values: Map<String, Value>,
    /// Sum of [`entry_bytes`] over `values`, kept so that a post costs only its own entries.
    bytes: usize,
}

/// Counts what it is given (serializes a value without allocating).
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What one identifier and its value count against [`PropertyLimits::max_bytes`].
fn entry_bytes(key: &str, value: &Value) -> usize {
    let mut counter = Counter(0);
    // Serializing a `Value` fails only when the writer does, and `Counter` never does.
    let _ = serde_json::to_writer(&mut counter, value);
    key.len() + counter.0
}

impl Properties {
    /// The values, by identifier.
    pub fn values(&self) -> &Map<String, Value> {
        &self.values
    }

    /// The values, by identifier.
    pub fn into_values(self) -> Map<String, Value> {
        self.values
    }

    /// Number of identifiers kept.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no value is kept.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Bytes counted against [`PropertyLimits::max_bytes`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Merges `values` (identifier → value) into what is kept, all of them or none.
    ///
    /// # Errors
    /// [`Error::PropertyLimit`] when the merge would keep more identifiers or bytes than
    /// `limits` allow; nothing is changed then.
    pub fn remember(&mut self, values: Map<String, Value>, limits: PropertyLimits) -> Result<()> {
        let mut count = self.values.len();
        let mut bytes = self.bytes;
        for (k, v) in &values {
            let size = entry_bytes(k, v);
            match self.values.get(k) {
                Some(old) => bytes = bytes - entry_bytes(k, old) + size,
                None => {
                    count += 1;
                    bytes += size;
                }
            }
        }
        if count > limits.max_identifiers {
            return Err(Error::PropertyLimit {
                what: "property identifiers",
                would_keep: count,
                limit: limits.max_identifiers,
            });
        }
        if bytes > limits.max_bytes {
            return Err(Error::PropertyLimit {
                what: "bytes of property values",
                would_keep: bytes,
                limit: limits.max_bytes,
            });
        }
        self.values.extend(values);
        self.bytes = bytes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    const SMALL: PropertyLimits = PropertyLimits {
        max_identifiers: 3,
        max_bytes: 40,
    };

    #[test]
    fn values_are_merged_per_identifier_and_counted_in_bytes() {
        let mut p = Properties::default();
        p.remember(map(json!({"a": 1, "b": "xy"})), SMALL).expect("fits");
        // "a" + "1" and "b" + "\"xy\"".
        assert_eq!(p.bytes(), 2 + 5);
        p.remember(map(json!({"a": 100})), SMALL).expect("fits");
        assert_eq!(p.values().get("a"), Some(&json!(100)));
        assert_eq!((p.len(), p.bytes()), (2, 4 + 5));
    }

    #[test]
    fn a_post_past_the_identifier_limit_is_refused_whole() {
        let mut p = Properties::default();
        p.remember(map(json!({"a": 1, "b": 2})), SMALL).expect("fits");
        let err = p
            .remember(map(json!({"a": 9, "c": 3, "d": 4})), SMALL)
            .expect_err("4 identifiers");
        assert!(
            matches!(
                err,
                Error::PropertyLimit {
                    would_keep: 4,
                    limit: 3,
                    ..
                }
            ),
            "{err}"
        );
        // Nothing of the refused post was kept, not even the update of "a".
        assert_eq!(p.values().get("a"), Some(&json!(1)));
        assert_eq!(p.len(), 2);
        // Updating kept identifiers is still accepted.
        p.remember(map(json!({"a": 5, "b": 6})), SMALL).expect("fits");
    }

    #[test]
    fn a_post_past_the_byte_limit_is_refused_whole() {
        let mut p = Properties::default();
        p.remember(map(json!({"a": "0123456789"})), SMALL).expect("fits");
        let before = p.clone();
        let err = p
            .remember(map(json!({"a": "x".repeat(50)})), SMALL)
            .expect_err("too big");
        assert!(matches!(err, Error::PropertyLimit { limit: 40, .. }), "{err}");
        assert_eq!(p, before);
        // A smaller value frees bytes.
        p.remember(map(json!({"a": 1, "b": "0123456789"})), SMALL)
            .expect("fits");
        assert_eq!(p.bytes(), 2 + 13);
    }
}
