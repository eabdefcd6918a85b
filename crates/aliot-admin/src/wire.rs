//! How values are written into request URLs: percent-encoded path segments and query strings
//! made from the query types' serde names (so the names are written once, in the types).

use std::fmt::{self, Write as _};

use serde::Serialize;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// `s` as one path segment: everything but `A-Z a-z 0-9 - . _ ~ @ :` percent-encoded, so a
/// name holding `/`, `?` or `#` cannot reach another endpoint.
pub(crate) fn segment(s: &str) -> String {
    encode(s, b"-._~@:")
}

/// `?k=v&…` of a flat query struct (fields in declaration order, `None`s left out), or `""`.
pub(crate) fn query<T: Serialize>(q: &T) -> String {
    // The query types are flat structs of optional strings, integers and unit enums: serde_json
    // writes them as one JSON object, and that object reads back as pairs.
    let json = serde_json::to_string(q).expect("a query type serializes to a JSON object");
    let Pairs(pairs) = serde_json::from_str(&json).expect("a JSON object reads as pairs");
    let mut out = String::new();
    for (key, value) in pairs {
        let value = match value {
            Value::Null => continue,
            Value::String(s) => s,
            other => other.to_string(),
        };
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(&encode(&key, b"-._~"));
        out.push('=');
        // `,` stays readable: the event filter's `type=status,uplink`.
        out.push_str(&encode(&value, b"-._~,:@"));
    }
    out
}

fn encode(s: &str, safe: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || safe.contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A JSON object's entries in the order they were written (a `Map` may sort them).
struct Pairs(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    pairs.push(entry);
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(PairsVisitor)
    }
}

/// Test helper: `value` serializes to exactly `json`, and `json` reads back as `value`.
#[cfg(test)]
pub(crate) fn assert_wire<T>(value: &T, json: &str)
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + fmt::Debug,
{
    let written = serde_json::to_string(value).expect("serializes");
    assert_eq!(written, json, "the wire format changed");
    let read: T = serde_json::from_str(json).expect("deserializes");
    assert_eq!(&read, value, "the JSON does not read back as the value");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cannot_escape_their_place_in_the_path() {
        assert_eq!(segment("dev-1_a.b~c@d:e"), "dev-1_a.b~c@d:e");
        assert_eq!(segment("a/b?c#d e%"), "a%2Fb%3Fc%23d%20e%25");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn queries_keep_the_declared_order_and_leave_out_nones() {
        #[derive(Serialize)]
        struct Q {
            b: Option<&'static str>,
            a: Option<u64>,
            c: Option<&'static str>,
        }
        let q = Q {
            b: Some("x y&z"),
            a: Some(3),
            c: None,
        };
        assert_eq!(query(&q), "?b=x%20y%26z&a=3");
        assert_eq!(
            query(&Q {
                b: None,
                a: None,
                c: None
            }),
            ""
        );
    }
}
