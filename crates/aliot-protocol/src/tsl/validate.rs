//! The platform's validation of values against the model (module docs: the rules per type).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{AccessMode, DataType, Field, InputData, MAX_POST_PROPERTIES, MAX_TIME_AHEAD_MS, Tsl, TslCode};
use crate::codes::alink as code;

/// A valid item: its value and, for a property posted as `{"value":…,"time":…}`, its time.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The value (the inner one of the `{"value":…}` form).
    pub value: Value,
    /// UTC ms, when the item carried a `time`.
    pub time: Option<i64>,
}

/// A rejected item: the rule it broke and the platform's words.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The Alink code (63xx).
    pub code: u32,
    /// The rule broken.
    pub rule: TslCode,
    /// The platform's message with the innermost identifier:
    /// `tsl parse: data type is not int -> code` (as in the forwarded `checkFailedData`).
    pub message: String,
    /// The value as posted (the inner one of the `{"value":…}` form; `null` when missing).
    pub value: Value,
}

impl Rejection {
    pub(super) fn new(rule: TslCode, at: &str, value: &Value) -> Self {
        Self {
            code: rule.code(),
            rule,
            message: format!("{} -> {at}", rule.message()),
            value: value.clone(),
        }
    }

    /// The message a `post_reply`'s `data` maps the identifier to: the platform's captured
    /// replies carry it without the ` -> identifier` suffix (`"tsl parse: params not exist"`).
    pub fn reply_message(&self) -> &str {
        self.rule.message()
    }
}

/// The outcome of a message whose params could be read: valid and rejected items, by identifier.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Validation {
    /// The valid items.
    pub items: BTreeMap<String, Item>,
    /// The rejected items.
    pub rejected: BTreeMap<String, Rejection>,
    /// An event's `time` (UTC ms), when it carried one.
    pub time: Option<i64>,
}

impl Validation {
    /// Whether nothing was rejected.
    pub fn is_valid(&self) -> bool {
        self.rejected.is_empty()
    }

    /// The `data` of the `post_reply` (still `code:200`): each rejected identifier → its message.
    pub fn reply_data(&self) -> Map<String, Value> {
        self.rejected
            .iter()
            .map(|(id, r)| (id.clone(), Value::String(r.reply_message().to_owned())))
            .collect()
    }

    fn reject(&mut self, id: &str, rejection: Rejection) {
        self.rejected.insert(id.to_owned(), rejection);
    }
}

/// A fault of the whole message: the reply's code is not 200.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Fault {
    /// The Alink code: 460, 6106, 6300 or 6326.
    pub code: u32,
    /// What is wrong.
    pub message: String,
}

impl Fault {
    fn not_object(what: &str) -> Self {
        Self {
            code: code::PARAM_ERROR,
            message: format!("request parameter error: {what} is not an object"),
        }
    }

    fn too_many(count: usize) -> Self {
        Self {
            code: code::TOO_MANY_PROPERTIES,
            message: format!("too many properties: {count} (at most {MAX_POST_PROPERTIES})"),
        }
    }

    fn rule(rule: TslCode, at: &str) -> Self {
        Self {
            code: rule.code(),
            message: format!("{} -> {at}", rule.message()),
        }
    }
}

/// A broken rule and the innermost identifier it is reported under.
pub(super) struct Broken {
    pub(super) rule: TslCode,
    pub(super) at: String,
}

fn broken(rule: TslCode, at: &str) -> Broken {
    Broken {
        rule,
        at: at.to_owned(),
    }
}

fn in_range(v: f64, min: Option<f64>, max: Option<f64>) -> bool {
    min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)
}

/// Whether `s` is a date: 1 to 19 decimal digits fitting `i64`.
fn is_date(s: &str) -> bool {
    !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<i64>().is_ok()
}

/// Checks `value` against `data_type`; `id` names it in messages.
pub(super) fn check(data_type: &DataType, value: &Value, id: &str) -> Result<(), Broken> {
    let mismatch = || broken(data_type.mismatch(), id);
    match data_type {
        DataType::Int { min, max, .. } => {
            let i = value
                .as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(mismatch)?;
            if min.is_some_and(|m| i < m) || max.is_some_and(|m| i > m) {
                return Err(broken(TslCode::IntOutOfRange, id));
            }
        }
        DataType::Float { min, max, .. } => {
            let f = value
                .as_f64()
                .filter(|f| f.abs() <= f64::from(f32::MAX))
                .ok_or_else(mismatch)?;
            if !in_range(f, *min, *max) {
                return Err(broken(TslCode::FloatOutOfRange, id));
            }
        }
        DataType::Double { min, max, .. } => {
            let f = value.as_f64().filter(|f| f.is_finite()).ok_or_else(mismatch)?;
            if !in_range(f, *min, *max) {
                return Err(broken(TslCode::DoubleOutOfRange, id));
            }
        }
        DataType::Text { length } => {
            let s = value.as_str().ok_or_else(mismatch)?;
            if s.len() > *length as usize {
                return Err(broken(TslCode::TextTooLong, id));
            }
        }
        DataType::Date => {
            value.as_str().filter(|s| is_date(s)).ok_or_else(mismatch)?;
        }
        DataType::Bool { .. } => {
            value
                .as_i64()
                .filter(|i| *i == 0 || *i == 1)
                .ok_or_else(mismatch)?;
        }
        DataType::Enum { values } => {
            value
                .as_i64()
                .filter(|i| values.contains_key(i))
                .ok_or_else(mismatch)?;
        }
        DataType::Struct(fields) => {
            let object = value.as_object().ok_or_else(mismatch)?;
            for (key, v) in object {
                let field = find(fields, key).ok_or_else(|| unknown(key))?;
                check(&field.data_type, v, &field.identifier)?;
            }
        }
        DataType::Array { size, item } => {
            let items = value.as_array().ok_or_else(mismatch)?;
            if items.len() > *size as usize {
                return Err(broken(TslCode::ArrayTooLong, id));
            }
            for v in items {
                check(item, v, id)?;
            }
        }
    }
    Ok(())
}

fn find<'a>(fields: &'a [Field], id: &str) -> Option<&'a Field> {
    fields.iter().find(|f| f.identifier == id)
}

pub(super) fn unknown(key: &str) -> Broken {
    if key.is_empty() {
        broken(TslCode::EmptyIdentifier, key)
    } else {
        broken(TslCode::ParamsNotExist, key)
    }
}

/// A `time`: a JSON integer or a string of digits, UTC ms, at most 24 h after `now_ms`.
pub(super) fn time(value: &Value, now_ms: i64) -> Option<i64> {
    let t = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if is_date(s) => s.parse().ok(),
        _ => None,
    }?;
    (t >= 0 && t <= now_ms.saturating_add(MAX_TIME_AHEAD_MS)).then_some(t)
}

/// The `{"value": v, "time": t}` form: an object whose keys are `value` and optionally `time`.
pub(super) fn timed(value: &Value) -> Option<(&Value, Option<&Value>)> {
    let object = value.as_object()?;
    let inner = object.get("value")?;
    let t = object.get("time");
    (object.len() == 1 + usize::from(t.is_some())).then_some((inner, t))
}

impl Tsl {
    /// Validates a property post's `params` (`thing.event.property.post`, spec §4.4).
    ///
    /// # Errors
    /// [`Fault`] 460 when params are not an object, 6106 beyond [`MAX_POST_PROPERTIES`].
    pub fn validate_property_post(&self, params: &Value, now_ms: i64) -> Result<Validation, Fault> {
        let object = params.as_object().ok_or_else(|| Fault::not_object("params"))?;
        if object.len() > MAX_POST_PROPERTIES {
            return Err(Fault::too_many(object.len()));
        }
        let mut out = Validation::default();
        for (id, raw) in object {
            let (value, t) = timed(raw).unwrap_or((raw, None));
            let Some(property) = self.property(id) else {
                let b = unknown(id);
                out.reject(id, Rejection::new(b.rule, &b.at, value));
                continue;
            };
            let time = match t.map(|t| time(t, now_ms)) {
                None => None,
                Some(Some(t)) => Some(t),
                Some(None) => {
                    out.reject(id, Rejection::new(TslCode::BadTime, id, value));
                    continue;
                }
            };
            match check(&property.data_type, value, id) {
                Ok(()) => {
                    out.items.insert(
                        id.clone(),
                        Item {
                            value: value.clone(),
                            time,
                        },
                    );
                }
                Err(b) => out.reject(id, Rejection::new(b.rule, &b.at, value)),
            }
        }
        Ok(out)
    }

    /// Validates an event's `params` (`thing.event.{identifier}.post`): `{"value":{…},"time":ms}`
    /// or the bare outputs `{…}`. The identifier `post` (or `property`, from the method
    /// `thing.event.property.post`) is [`Tsl::validate_property_post`].
    ///
    /// # Errors
    /// [`Fault`] 6300 for an event the model lacks, 460 when params are not an object, 6326 for a
    /// bad `time`.
    pub fn validate_event(&self, identifier: &str, params: &Value, now_ms: i64) -> Result<Validation, Fault> {
        if identifier == "post" || identifier == "property" {
            return self.validate_property_post(params, now_ms);
        }
        let event = self
            .event(identifier)
            .ok_or_else(|| Fault::rule(TslCode::MethodNotExist, &format!("thing.event.{identifier}.post")))?;
        if !params.is_object() {
            return Err(Fault::not_object("params"));
        }
        let (outputs, t) = match timed(params) {
            Some((inner, t)) if inner.is_object() => (inner, t),
            _ => (params, None),
        };
        let time = match t {
            None => None,
            Some(t) => Some(time(t, now_ms).ok_or_else(|| Fault::rule(TslCode::BadTime, identifier))?),
        };
        let mut out = fields(&event.output_data, outputs, false)?;
        out.time = time;
        Ok(out)
    }

    /// Validates a service call's `params` (`thing.service.{identifier}`): every input must be
    /// present (6302). `set` is [`Tsl::validate_property_set`]; `get` takes an array of property
    /// identifiers (6328 when not an array, 6304 for an unknown one; each item's value is its
    /// identifier).
    ///
    /// # Errors
    /// [`Fault`] 6300 for a service the model lacks, 460 when params are not an object, 6328
    /// when `get`'s are not an array.
    pub fn validate_service_input(&self, identifier: &str, params: &Value) -> Result<Validation, Fault> {
        if identifier == "set" {
            return self.validate_property_set(params);
        }
        if identifier == "get" {
            return self.validate_get(params);
        }
        let service = self
            .service(identifier)
            .ok_or_else(|| Fault::rule(TslCode::MethodNotExist, &format!("thing.service.{identifier}")))?;
        match &service.input_data {
            InputData::Fields(inputs) => fields(inputs, params, true),
            InputData::Identifiers(_) => self.validate_get(params),
        }
    }

    fn validate_get(&self, params: &Value) -> Result<Validation, Fault> {
        let ids = params
            .as_array()
            .ok_or_else(|| Fault::rule(TslCode::ParamsNotArray, "params"))?;
        let mut out = Validation::default();
        for v in ids {
            let id = v.as_str().unwrap_or_default();
            if self.property(id).is_some() {
                out.items.insert(
                    id.to_owned(),
                    Item {
                        value: v.clone(),
                        time: None,
                    },
                );
            } else {
                // A non-string is no identifier: reported under its JSON text.
                let b = v
                    .as_str()
                    .map_or_else(|| broken(TslCode::ParamsNotExist, &v.to_string()), unknown);
                out.reject(&b.at, Rejection::new(b.rule, &b.at, v));
            }
        }
        Ok(out)
    }

    /// Validates a service reply's `data`: outputs may be missing. `get`'s are properties
    /// (its `outputData` when the model has it).
    ///
    /// # Errors
    /// [`Fault`] 6300 for a service the model lacks, 460 when data are not an object.
    pub fn validate_service_output(&self, identifier: &str, data: &Value) -> Result<Validation, Fault> {
        match self.service(identifier) {
            Some(service) => fields(&service.output_data, data, false),
            None if identifier == "get" || identifier == "set" => {
                let object = data.as_object().ok_or_else(|| Fault::not_object("data"))?;
                let mut out = Validation::default();
                for (id, value) in object {
                    match self.property(id) {
                        Some(p) => accept(&mut out, &p.data_type, id, value),
                        None => {
                            let b = unknown(id);
                            out.reject(id, Rejection::new(b.rule, &b.at, value));
                        }
                    }
                }
                Ok(out)
            }
            None => Err(Fault::rule(
                TslCode::MethodNotExist,
                &format!("thing.service.{identifier}"),
            )),
        }
    }

    /// Validates a property set's `params` (`thing.service.property.set`, the admin's set):
    /// `rw` properties only (6320 for an unknown or read-only one).
    ///
    /// # Errors
    /// [`Fault`] 460 when params are not an object, 6106 beyond [`MAX_POST_PROPERTIES`].
    pub fn validate_property_set(&self, params: &Value) -> Result<Validation, Fault> {
        let object = params.as_object().ok_or_else(|| Fault::not_object("params"))?;
        if object.len() > MAX_POST_PROPERTIES {
            return Err(Fault::too_many(object.len()));
        }
        let mut out = Validation::default();
        for (id, value) in object {
            match self.property(id) {
                Some(p) if p.access_mode == AccessMode::ReadWrite => {
                    accept(&mut out, &p.data_type, id, value)
                }
                Some(_) => out.reject(id, Rejection::new(TslCode::PropertyReadOnly, id, value)),
                None if id.is_empty() => out.reject(id, Rejection::new(TslCode::EmptyIdentifier, id, value)),
                None => out.reject(id, Rejection::new(TslCode::PropertyNotInTsl, id, value)),
            }
        }
        Ok(out)
    }
}

/// Checks one value and files it as valid or rejected.
fn accept(out: &mut Validation, data_type: &DataType, id: &str, value: &Value) {
    match check(data_type, value, id) {
        Ok(()) => {
            out.items.insert(
                id.to_owned(),
                Item {
                    value: value.clone(),
                    time: None,
                },
            );
        }
        Err(b) => out.reject(id, Rejection::new(b.rule, &b.at, value)),
    }
}

/// Validates an object of parameters against `defined`; with `all_required`, a missing one is
/// rejected (6302).
pub(super) fn fields(defined: &[Field], params: &Value, all_required: bool) -> Result<Validation, Fault> {
    let object = params.as_object().ok_or_else(|| Fault::not_object("params"))?;
    let mut out = Validation::default();
    for (id, value) in object {
        match find(defined, id) {
            Some(f) => accept(&mut out, &f.data_type, id, value),
            None => {
                let b = unknown(id);
                out.reject(id, Rejection::new(b.rule, &b.at, value));
            }
        }
    }
    if all_required {
        for f in defined {
            if !object.contains_key(&f.identifier) {
                out.reject(
                    &f.identifier,
                    Rejection::new(TslCode::RequiredParamMissing, &f.identifier, &Value::Null),
                );
            }
        }
    }
    Ok(out)
}
