//! The multi-item property posts (`thing.event.property.batch.post`, `….pack.post`,
//! `….history.post`): their params read into points, each point judged on its own (the `time`
//! rule always, the thing model's rules when the product has one).
//!
//! The payload shapes are not verified against the platform (aliyun-protocol.md §4 [R]); aliot
//! reads the shapes of the Link SDKs and is lenient where they differ:
//!
//! | method | params |
//! |---|---|
//! | `batch.post` | `{"properties":{"Id":[{"value":v,"time":ms},…]},"events":{"Ev":[{"value":{…},"time":ms},…]}}` |
//! | `pack.post` | `{"properties":{"Id":{"value":v,"time":ms}},"events":{"Ev":{"value":{…},"time":ms}},"subDevices":[{"identity":{"productKey","deviceName"},"properties":…,"events":…}]}` |
//! | `history.post` | `[{"identity":{"productKey","deviceName"},"properties":[{"Id":{"value":v,"time":ms}}],"events":[{"Ev":{"value":{…},"time":ms}}]},…]` |
//!
//! In every place an identifier maps to one item or an array of items, and `properties`/`events`
//! are an object or an array of objects. A property item is `{"value":v,"time":ms}` or a bare
//! value; an event item is `{"value":{…outputs},"time":ms}`. An entry whose `identity` is another
//! device (a gateway's sub-device) is skipped and counted here: the hub judges each sub-device's
//! entry as that sub-device's own post.
//!
//! A point with a bad `time` (not ms, or more than 24 h ahead) is rejected with 6326; with a
//! model, a property the model lacks or a value of the wrong type gets its 63xx like a property
//! post; an event the model lacks gets 6300 and an event with a bad output is rejected whole with
//! the output's code. The reply's `data` names each rejected identifier (the last rejection when
//! several of its points were rejected). Whole-message faults: params of the wrong shape (460),
//! more than [`MAX_POST_PROPERTIES`] property identifiers or more than [`MAX_BATCH_POINTS`]
//! points (6106), more than [`MAX_BATCH_EVENTS`] events (6356).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::validate::{Item, Rejection, Validation, check, fields, time, timed, unknown};
use super::{Fault, MAX_POST_PROPERTIES, Tsl, TslCode};
use crate::codes::alink as code;

/// The most points (property values and events) one multi-item post may carry (aliot's bound).
pub const MAX_BATCH_POINTS: usize = 5000;
/// The most events one multi-item post may carry (the platform's pack limit, code 6356).
pub const MAX_BATCH_EVENTS: usize = 200;
/// The Alink code for too many events in a pack post.
pub const TOO_MANY_EVENTS: u32 = 6356;

/// Which multi-item post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchKind {
    /// `thing.event.property.batch.post`.
    Batch,
    /// `thing.event.property.pack.post` (a gateway's own and its sub-devices' data).
    Pack,
    /// `thing.event.property.history.post` (data kept while offline).
    History,
}

/// A property value kept from a post.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The property identifier.
    pub identifier: String,
    /// The value.
    pub value: Value,
    /// UTC ms, when the item carried a `time`.
    pub time: Option<i64>,
}

/// An event kept from a post.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPoint {
    /// The event identifier.
    pub identifier: String,
    /// Its outputs (an object).
    pub output: Value,
    /// UTC ms, when the item carried a `time`.
    pub time: Option<i64>,
}

/// What a multi-item post keeps and rejects.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchValidation {
    /// The valid property values, in the order posted.
    pub properties: Vec<Point>,
    /// The valid events, in the order posted.
    pub events: Vec<EventPoint>,
    /// The rejected identifiers.
    pub rejected: BTreeMap<String, Rejection>,
    /// Entries of other devices (sub-devices), skipped.
    pub skipped: usize,
}

impl BatchValidation {
    /// The `data` of the `post_reply` (still `code:200`): each rejected identifier → its message.
    pub fn reply_data(&self) -> Map<String, Value> {
        self.rejected
            .iter()
            .map(|(id, r)| (id.clone(), Value::String(r.reply_message().to_owned())))
            .collect()
    }
}

fn not_shape(what: &str) -> Fault {
    Fault {
        code: code::PARAM_ERROR,
        message: format!("request parameter error: {what}"),
    }
}

/// Reads a multi-item post's `params` of the device `(product_key, device_name)` and judges each
/// point: the `time` rule always, `tsl`'s rules when given (module docs).
///
/// # Errors
/// [`Fault`] 460 for params of the wrong shape, 6106 beyond [`MAX_POST_PROPERTIES`] identifiers or
/// [`MAX_BATCH_POINTS`] points, 6356 beyond [`MAX_BATCH_EVENTS`] events.
pub fn validate_batch(
    tsl: Option<&Tsl>,
    kind: BatchKind,
    params: &Value,
    device: (&str, &str),
    now_ms: i64,
) -> Result<BatchValidation, Fault> {
    // (properties, events) sections that belong to this device.
    let mut sections: Vec<Section<'_>> = Vec::new();
    let mut skipped = 0;
    match kind {
        BatchKind::Batch | BatchKind::Pack => {
            let o = params
                .as_object()
                .ok_or_else(|| not_shape("params is not an object"))?;
            sections.push((o.get("properties"), o.get("events")));
            if kind == BatchKind::Pack
                && let Some(subs) = o.get("subDevices")
            {
                let subs = subs
                    .as_array()
                    .ok_or_else(|| not_shape("subDevices is not an array"))?;
                for s in subs {
                    entry(s, device, &mut sections, &mut skipped)?;
                }
            }
        }
        BatchKind::History => {
            let entries = params
                .as_array()
                .ok_or_else(|| not_shape("params is not an array"))?;
            for e in entries {
                entry(e, device, &mut sections, &mut skipped)?;
            }
        }
    }
    let mut raw_props = Vec::new();
    let mut raw_events = Vec::new();
    for (props, events) in sections {
        if let Some(p) = props {
            items(p, "properties", &mut raw_props)?;
        }
        if let Some(e) = events {
            items(e, "events", &mut raw_events)?;
        }
    }
    let identifiers: BTreeSet<&str> = raw_props.iter().map(|(id, _)| *id).collect();
    if identifiers.len() > MAX_POST_PROPERTIES || raw_props.len() + raw_events.len() > MAX_BATCH_POINTS {
        return Err(Fault {
            code: code::TOO_MANY_PROPERTIES,
            message: format!(
                "too many properties: {} identifiers, {} points (at most {MAX_POST_PROPERTIES} and {MAX_BATCH_POINTS})",
                identifiers.len(),
                raw_props.len() + raw_events.len()
            ),
        });
    }
    if raw_events.len() > MAX_BATCH_EVENTS {
        return Err(Fault {
            code: TOO_MANY_EVENTS,
            message: format!(
                "too many events: {} (at most {MAX_BATCH_EVENTS})",
                raw_events.len()
            ),
        });
    }
    let mut out = BatchValidation {
        skipped,
        ..BatchValidation::default()
    };
    for (id, raw) in raw_props {
        let (value, t) = timed(raw).unwrap_or((raw, None));
        let when = match t.map(|t| time(t, now_ms)) {
            None => None,
            Some(Some(t)) => Some(t),
            Some(None) => {
                out.rejected
                    .insert(id.to_owned(), Rejection::new(TslCode::BadTime, id, value));
                continue;
            }
        };
        if let Some(tsl) = tsl {
            let judged = match tsl.property(id) {
                Some(p) => check(&p.data_type, value, id),
                None => Err(unknown(id)),
            };
            if let Err(b) = judged {
                out.rejected
                    .insert(id.to_owned(), Rejection::new(b.rule, &b.at, value));
                continue;
            }
        }
        out.properties.push(Point {
            identifier: id.to_owned(),
            value: value.clone(),
            time: when,
        });
    }
    for (id, raw) in raw_events {
        let (output, t) = match timed(raw) {
            Some((inner, t)) => (inner, t),
            None => (raw, None),
        };
        let when = match t.map(|t| time(t, now_ms)) {
            None => None,
            Some(Some(t)) => Some(t),
            Some(None) => {
                out.rejected
                    .insert(id.to_owned(), Rejection::new(TslCode::BadTime, id, output));
                continue;
            }
        };
        if !output.is_object() {
            out.rejected
                .insert(id.to_owned(), Rejection::new(TslCode::NotStruct, id, output));
            continue;
        }
        if let Some(tsl) = tsl {
            let Some(event) = tsl.event(id) else {
                out.rejected
                    .insert(id.to_owned(), Rejection::new(TslCode::MethodNotExist, id, output));
                continue;
            };
            let judged = fields(&event.output_data, output, false)?;
            if let Some((_, first)) = judged.rejected.into_iter().next() {
                out.rejected.insert(id.to_owned(), first);
                continue;
            }
        }
        out.events.push(EventPoint {
            identifier: id.to_owned(),
            output: output.clone(),
            time: when,
        });
    }
    Ok(out)
}

/// The `properties` and `events` of one entry.
type Section<'a> = (Option<&'a Value>, Option<&'a Value>);

/// Adds the sections of an entry (`{"identity"?, "properties"?, "events"?}`) when it is the
/// device's own; counts it in `skipped` otherwise.
fn entry<'a>(
    e: &'a Value,
    device: (&str, &str),
    sections: &mut Vec<Section<'a>>,
    skipped: &mut usize,
) -> Result<(), Fault> {
    let o = e
        .as_object()
        .ok_or_else(|| not_shape("an entry is not an object"))?;
    if let Some(identity) = o.get("identity") {
        let mine = identity.get("productKey").and_then(Value::as_str) == Some(device.0)
            && identity.get("deviceName").and_then(Value::as_str) == Some(device.1);
        if !mine {
            *skipped += 1;
            return Ok(());
        }
    }
    sections.push((o.get("properties"), o.get("events")));
    Ok(())
}

/// Appends the `(identifier, item)` pairs of a `properties` or `events` section: an object of
/// identifier → item or array of items, or an array of such objects.
fn items<'a>(section: &'a Value, what: &str, out: &mut Vec<(&'a str, &'a Value)>) -> Result<(), Fault> {
    let objects: Vec<&Map<String, Value>> = match section {
        Value::Object(o) => vec![o],
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.as_object()
                    .ok_or_else(|| not_shape(&format!("an item of {what} is not an object")))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(not_shape(&format!("{what} is not an object"))),
    };
    for o in objects {
        for (id, v) in o {
            match v {
                Value::Array(list) => out.extend(list.iter().map(|item| (id.as_str(), item))),
                item => out.push((id.as_str(), item)),
            }
            if out.len() > MAX_BATCH_POINTS {
                // Enough to refuse the message; the caller reports the count.
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A property post's `params` judged without a thing model: every identifier is kept unless its
/// `time` breaks the time rule (6326), as [`Tsl::validate_property_post`] does with a model.
///
/// # Errors
/// [`Fault`] 460 when params are not an object, 6106 beyond [`MAX_POST_PROPERTIES`].
pub fn validate_untyped_property_post(params: &Value, now_ms: i64) -> Result<Validation, Fault> {
    let object = params
        .as_object()
        .ok_or_else(|| not_shape("params is not an object"))?;
    if object.len() > MAX_POST_PROPERTIES {
        return Err(Fault {
            code: code::TOO_MANY_PROPERTIES,
            message: format!(
                "too many properties: {} (at most {MAX_POST_PROPERTIES})",
                object.len()
            ),
        });
    }
    let mut out = Validation::default();
    for (id, raw) in object {
        let (value, t) = timed(raw).unwrap_or((raw, None));
        match t.map(|t| time(t, now_ms)) {
            Some(None) => {
                out.rejected
                    .insert(id.clone(), Rejection::new(TslCode::BadTime, id, value));
            }
            when => {
                out.items.insert(
                    id.clone(),
                    Item {
                        value: value.clone(),
                        time: when.flatten(),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// An event's `params` (`{"value":{…},"time":ms}` or the bare outputs) read without a thing
/// model: every output is kept; `time` must follow the time rule.
///
/// # Errors
/// [`Fault`] 460 when params are not an object, 6326 for a bad `time`.
pub fn validate_untyped_event(identifier: &str, params: &Value, now_ms: i64) -> Result<Validation, Fault> {
    if !params.is_object() {
        return Err(not_shape("params is not an object"));
    }
    let (outputs, t) = match timed(params) {
        Some((inner, t)) if inner.is_object() => (inner, t),
        _ => (params, None),
    };
    let when = match t {
        None => None,
        Some(t) => Some(time(t, now_ms).ok_or_else(|| Fault {
            code: TslCode::BadTime.code(),
            message: format!("{} -> {identifier}", TslCode::BadTime.message()),
        })?),
    };
    let items = outputs
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                Item {
                    value: v.clone(),
                    time: None,
                },
            )
        })
        .collect();
    Ok(Validation {
        items,
        rejected: BTreeMap::new(),
        time: when,
    })
}
