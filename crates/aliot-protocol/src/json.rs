//! JSON read strictly: an object that names the same key twice is an error.
//!
//! `serde_json::Value` keeps the last of two equal keys and drops the first without a word. For
//! what a device sends that would be a silent drop (`{"Temp":20.5,"Temp":"hot"}` would be
//! judged on `"hot"` alone, and a reviewer reading the payload would see both), and for a thing
//! model file it would hide a typo. [`from_slice`] refuses such input, naming the key; the
//! nesting depth stays serde_json's limit (128), so deep input is an error, never a stack
//! overflow.
//!
//! ```
//! let v = aliot_protocol::json::from_slice(br#"{"a":1,"b":[{"c":2}]}"#).expect("valid");
//! assert_eq!(v["b"][0]["c"], 2);
//! let e = aliot_protocol::json::from_slice(br#"{"a":{"b":1,"b":2}}"#).unwrap_err();
//! assert!(e.to_string().contains("duplicate key \"b\""));
//! ```

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses JSON bytes into a [`Value`], refusing an object with a duplicate key.
///
/// # Errors
/// serde_json's error for input that is not JSON (also a number beyond `f64`, nesting deeper
/// than 128), or a custom one naming the first duplicate key.
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(bytes).map(|s| s.0)
}

/// Parses JSON text; as [`from_slice`].
///
/// # Errors
/// As [`from_slice`].
pub fn from_str(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<Strict>(text).map(|s| s.0)
}

/// A [`Value`] read by [`StrictVisitor`].
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // serde_json never hands out a non-finite number; refuse one rather than invent a value.
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Strict::deserialize(deserializer).map(|s| s.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"id":"1","params":{"a":1,"b":-2,"c":1.5,"d":"x","e":[1,[2]],"f":null,"g":true}}"#,
            "[]",
            "0",
            r#""s""#,
            "18446744073709551615",
            "-9223372036854775808",
            "1e300",
        ] {
            let strict = from_str(text).expect("strict");
            let plain: Value = serde_json::from_str(text).expect("plain");
            assert_eq!(strict, plain, "{text}");
        }
    }

    #[test]
    fn refuses_a_duplicate_key_at_any_depth() {
        for text in [
            r#"{"a":1,"a":1}"#,
            r#"{"params":{"Temp":20.5,"Temp":"hot"}}"#,
            r#"[{"x":{"y":[{"z":1,"z":2}]}}]"#,
        ] {
            let e = from_str(text).expect_err(text);
            assert!(e.to_string().starts_with("duplicate key"), "{text}: {e}");
        }
        // Equal keys in different objects are fine.
        assert!(from_str(r#"{"a":{"a":1},"b":{"a":2}}"#).is_ok());
    }

    #[test]
    fn refuses_what_json_cannot_hold() {
        for text in ["NaN", r#"{"a":NaN}"#, "1e400", r#"{"a":-1e999}"#, "Infinity"] {
            assert!(from_str(text).is_err(), "{text}");
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let e = from_str(&deep).expect_err("too deep");
        assert!(e.to_string().contains("recursion limit"), "{e}");
    }
}
