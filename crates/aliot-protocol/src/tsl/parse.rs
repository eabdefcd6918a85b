//! The exported JSON → the model, with the JSON path of every fault.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::{
    AccessMode, CallType, DataType, Event, EventKind, Field, InputData, MAX_ARRAY_SIZE, MAX_ENTRIES,
    MAX_IDENTIFIER_LEN, MAX_TEXT_LEN, MAX_TSL_LEN, Property, Service, Tsl, TslError, TslErrorKind,
};

fn err(path: &str, kind: TslErrorKind) -> TslError {
    TslError {
        path: path.to_owned(),
        kind,
    }
}

pub(super) fn from_json(text: &str) -> Result<Tsl, TslError> {
    if text.len() > MAX_TSL_LEN {
        return Err(err("", TslErrorKind::TooLarge(text.len())));
    }
    let value: Value =
        crate::json::from_str(text).map_err(|e| err("", TslErrorKind::NotJson(e.to_string())))?;
    tsl(&value)
}

pub(super) fn tsl(value: &Value) -> Result<Tsl, TslError> {
    let root = object(value, "")?;
    let product_key = match root.get("profile") {
        None | Some(Value::Null) => None,
        Some(profile) => match object(profile, "profile")?.get("productKey") {
            None | Some(Value::Null) => None,
            Some(Value::String(pk)) => Some(pk.clone()),
            Some(_) => return Err(err("profile.productKey", TslErrorKind::Expected("a string"))),
        },
    };
    let properties = list(root, "properties", "", property)?;
    unique(properties.iter().map(|p| p.identifier.as_str()), "properties")?;
    let events = list(root, "events", "", event)?;
    unique(events.iter().map(|e| e.identifier.as_str()), "events")?;
    let services = list(root, "services", "", service)?;
    unique(services.iter().map(|s| s.identifier.as_str()), "services")?;
    Ok(Tsl {
        product_key,
        properties,
        events,
        services,
    })
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, TslError> {
    value
        .as_object()
        .ok_or_else(|| err(path, TslErrorKind::Expected("an object")))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The entries of an optional array under `key`, each read by `read` with its path.
fn list<T>(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    read: impl Fn(&Value, &str) -> Result<T, TslError>,
) -> Result<Vec<T>, TslError> {
    let path = join(path, key);
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(entries)) => entries_of(entries, &path, read),
        Some(_) => Err(err(&path, TslErrorKind::Expected("an array"))),
    }
}

fn entries_of<T>(
    entries: &[Value],
    path: &str,
    read: impl Fn(&Value, &str) -> Result<T, TslError>,
) -> Result<Vec<T>, TslError> {
    if entries.len() > MAX_ENTRIES {
        return Err(err(path, TslErrorKind::TooMany));
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| read(entry, &format!("{path}[{i}]")))
        .collect()
}

fn unique<'a>(ids: impl Iterator<Item = &'a str>, path: &str) -> Result<(), TslError> {
    let mut seen = BTreeSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(err(path, TslErrorKind::Duplicate(id.to_owned())));
        }
    }
    Ok(())
}

fn string<'a>(obj: &'a Map<String, Value>, key: &str, path: &str) -> Result<Option<&'a str>, TslError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(err(&join(path, key), TslErrorKind::Expected("a string"))),
    }
}

/// Whether `id` follows the platform's identifier rule (module docs).
pub(super) fn valid_identifier(id: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= MAX_IDENTIFIER_LEN
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    match id.split_once(':') {
        Some((module, rest)) => part(module) && part(rest),
        None => part(id),
    }
}

fn identifier(obj: &Map<String, Value>, path: &str) -> Result<String, TslError> {
    let id_path = join(path, "identifier");
    let id = string(obj, "identifier", path)?.ok_or_else(|| err(&id_path, TslErrorKind::Missing))?;
    if id.is_empty() {
        return Err(err(&id_path, TslErrorKind::EmptyIdentifier));
    }
    if !valid_identifier(id) {
        return Err(err(&id_path, TslErrorKind::BadIdentifier(id.to_owned())));
    }
    Ok(id.to_owned())
}

fn name(obj: &Map<String, Value>, path: &str) -> Result<String, TslError> {
    Ok(string(obj, "name", path)?.unwrap_or_default().to_owned())
}

fn property(value: &Value, path: &str) -> Result<Property, TslError> {
    let obj = object(value, path)?;
    let identifier = identifier(obj, path)?;
    let access_mode = match string(obj, "accessMode", path)? {
        Some("r") => AccessMode::ReadOnly,
        // Absent: the console's default.
        Some("rw") | None => AccessMode::ReadWrite,
        Some(other) => {
            return Err(err(
                &join(path, "accessMode"),
                TslErrorKind::Invalid(format!("{other:?} (r or rw)")),
            ));
        }
    };
    let required = match obj.get("required") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(err(&join(path, "required"), TslErrorKind::Expected("a boolean"))),
    };
    Ok(Property {
        name: name(obj, path)?,
        data_type: data_type_of(obj, path, Nesting::Top)?,
        identifier,
        access_mode,
        required,
    })
}

fn event(value: &Value, path: &str) -> Result<Event, TslError> {
    let obj = object(value, path)?;
    let identifier = identifier(obj, path)?;
    let kind = match string(obj, "type", path)? {
        Some("info") | None => EventKind::Info,
        Some("alert") => EventKind::Alert,
        Some("error") => EventKind::Error,
        Some(other) => {
            return Err(err(
                &join(path, "type"),
                TslErrorKind::Invalid(format!("{other:?} (info, alert or error)")),
            ));
        }
    };
    let method = match string(obj, "method", path)? {
        Some(m) => m.to_owned(),
        None if identifier == "post" => "thing.event.property.post".to_owned(),
        None => format!("thing.event.{identifier}.post"),
    };
    let output_data = fields(obj, "outputData", path)?;
    Ok(Event {
        name: name(obj, path)?,
        identifier,
        kind,
        method,
        output_data,
    })
}

fn service(value: &Value, path: &str) -> Result<Service, TslError> {
    let obj = object(value, path)?;
    let identifier = identifier(obj, path)?;
    let call_type = match string(obj, "callType", path)? {
        Some("sync") => CallType::Sync,
        Some("async") | None => CallType::Async,
        Some(other) => {
            return Err(err(
                &join(path, "callType"),
                TslErrorKind::Invalid(format!("{other:?} (sync or async)")),
            ));
        }
    };
    let method = match string(obj, "method", path)? {
        Some(m) => m.to_owned(),
        None if identifier == "set" || identifier == "get" => format!("thing.service.property.{identifier}"),
        None => format!("thing.service.{identifier}"),
    };
    let in_path = join(path, "inputData");
    let input_data = match obj.get("inputData") {
        Some(Value::Array(entries)) if entries.first().is_some_and(Value::is_string) => {
            let ids = entries_of(entries, &in_path, |v, p| match v.as_str() {
                Some(id) if valid_identifier(id) => Ok(id.to_owned()),
                Some("") => Err(err(p, TslErrorKind::EmptyIdentifier)),
                Some(id) => Err(err(p, TslErrorKind::BadIdentifier(id.to_owned()))),
                None => Err(err(p, TslErrorKind::Expected("an identifier string"))),
            })?;
            InputData::Identifiers(ids)
        }
        _ => InputData::Fields(fields(obj, "inputData", path)?),
    };
    let output_data = fields(obj, "outputData", path)?;
    Ok(Service {
        name: name(obj, path)?,
        identifier,
        call_type,
        method,
        input_data,
        output_data,
    })
}

/// A list of typed parameters, unique by identifier.
fn fields(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Vec<Field>, TslError> {
    let list = list(obj, key, path, |v, p| field(v, p, Nesting::Top))?;
    unique(list.iter().map(|f| f.identifier.as_str()), &join(path, key))?;
    Ok(list)
}

fn field(value: &Value, path: &str, nesting: Nesting) -> Result<Field, TslError> {
    let obj = object(value, path)?;
    Ok(Field {
        identifier: identifier(obj, path)?,
        name: name(obj, path)?,
        data_type: data_type_of(obj, path, nesting)?,
    })
}

/// Where a data type sits: what it may be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nesting {
    /// A property or parameter: anything.
    Top,
    /// An array's item: int, float, double, text or struct.
    Item,
    /// A struct's field: anything but a struct (an array of scalars only).
    InStruct,
    /// An array's item inside a struct: int, float, double or text.
    ItemInStruct,
}

fn data_type_of(obj: &Map<String, Value>, path: &str, nesting: Nesting) -> Result<DataType, TslError> {
    let path = join(path, "dataType");
    let value = obj
        .get("dataType")
        .ok_or_else(|| err(&path, TslErrorKind::Missing))?;
    data_type(value, &path, nesting)
}

fn data_type(value: &Value, path: &str, nesting: Nesting) -> Result<DataType, TslError> {
    let obj = object(value, path)?;
    let type_path = join(path, "type");
    let ty = string(obj, "type", path)?.ok_or_else(|| err(&type_path, TslErrorKind::Missing))?;
    let in_item = matches!(nesting, Nesting::Item | Nesting::ItemInStruct);
    if in_item && !matches!(ty, "int" | "float" | "double" | "text" | "struct") {
        return Err(err(&type_path, TslErrorKind::UnsupportedItemType(ty.to_owned())));
    }
    let specs_path = join(path, "specs");
    let specs = obj.get("specs").filter(|s| !s.is_null());
    // The specs object of a numeric or text type; absent is empty.
    let empty = Map::new();
    let specs_object = || -> Result<&Map<String, Value>, TslError> {
        match specs {
            None => Ok(&empty),
            Some(s) => object(s, &specs_path),
        }
    };
    Ok(match ty {
        "int" => {
            let s = specs_object()?;
            let int = |key: &str| -> Result<Option<i32>, TslError> {
                let p = join(&specs_path, key);
                number_spec(s.get(key), &p)?
                    .map(|n| match n {
                        Num::Int(i) => i32::try_from(i)
                            .map_err(|_| err(&p, TslErrorKind::Invalid(format!("{i} is beyond 32 bits")))),
                        Num::Float(_) => Err(err(&p, TslErrorKind::Expected("an integer"))),
                    })
                    .transpose()
            };
            let (min, max, step) = (int("min")?, int("max")?, int("step")?);
            if let (Some(lo), Some(hi)) = (min, max)
                && lo > hi
            {
                return Err(err(
                    &join(&specs_path, "max"),
                    TslErrorKind::Invalid(format!("{hi} < min {lo}")),
                ));
            }
            DataType::Int {
                min,
                max,
                step,
                unit: unit(s, &specs_path)?,
            }
        }
        "float" | "double" => {
            let s = specs_object()?;
            let bound = if ty == "float" {
                f64::from(f32::MAX)
            } else {
                f64::MAX
            };
            let float = |key: &str| -> Result<Option<f64>, TslError> {
                let p = join(&specs_path, key);
                match number_spec(s.get(key), &p)? {
                    None => Ok(None),
                    Some(n) => {
                        let f = n.as_f64();
                        if f.abs() > bound {
                            Err(err(&p, TslErrorKind::Invalid(format!("{f} is beyond {ty}"))))
                        } else {
                            Ok(Some(f))
                        }
                    }
                }
            };
            let (min, max, step) = (float("min")?, float("max")?, float("step")?);
            if let (Some(lo), Some(hi)) = (min, max)
                && lo > hi
            {
                return Err(err(
                    &join(&specs_path, "max"),
                    TslErrorKind::Invalid(format!("{hi} < min {lo}")),
                ));
            }
            let unit = unit(s, &specs_path)?;
            if ty == "float" {
                DataType::Float { min, max, step, unit }
            } else {
                DataType::Double { min, max, step, unit }
            }
        }
        "text" => {
            let s = specs_object()?;
            let p = join(&specs_path, "length");
            let length = match number_spec(s.get("length"), &p)? {
                None => MAX_TEXT_LEN,
                Some(Num::Int(n)) if (0..=i64::from(MAX_TEXT_LEN)).contains(&n) => {
                    u32::try_from(n).unwrap_or(MAX_TEXT_LEN)
                }
                Some(_) => {
                    return Err(err(
                        &p,
                        TslErrorKind::Invalid(format!("not an integer 0..={MAX_TEXT_LEN}")),
                    ));
                }
            };
            DataType::Text { length }
        }
        "date" => DataType::Date,
        "bool" => {
            let mut labels = [String::new(), String::new()];
            for (key, label) in specs_object()? {
                let p = join(&specs_path, key);
                let slot = match key.as_str() {
                    "0" => 0,
                    "1" => 1,
                    _ => {
                        return Err(err(
                            &p,
                            TslErrorKind::Invalid("a bool's keys are \"0\" and \"1\"".into()),
                        ));
                    }
                };
                labels[slot] = label
                    .as_str()
                    .ok_or_else(|| err(&p, TslErrorKind::Expected("a string")))?
                    .to_owned();
            }
            DataType::Bool { labels }
        }
        "enum" => {
            let s = specs.ok_or_else(|| err(&specs_path, TslErrorKind::Missing))?;
            let s = object(s, &specs_path)?;
            if s.is_empty() {
                return Err(err(&specs_path, TslErrorKind::Missing));
            }
            if s.len() > MAX_ENTRIES {
                return Err(err(&specs_path, TslErrorKind::TooMany));
            }
            let mut values = BTreeMap::new();
            for (key, label) in s {
                let p = join(&specs_path, key);
                let k = key
                    .parse::<i64>()
                    .map_err(|_| err(&p, TslErrorKind::Invalid("an enum's keys are integers".into())))?;
                let label = label
                    .as_str()
                    .ok_or_else(|| err(&p, TslErrorKind::Expected("a string")))?;
                values.insert(k, label.to_owned());
            }
            DataType::Enum { values }
        }
        "struct" => {
            if matches!(nesting, Nesting::InStruct | Nesting::ItemInStruct) {
                return Err(err(&type_path, TslErrorKind::NestedStruct));
            }
            let s = specs.ok_or_else(|| err(&specs_path, TslErrorKind::Missing))?;
            let entries = s
                .as_array()
                .ok_or_else(|| err(&specs_path, TslErrorKind::Expected("an array of fields")))?;
            let fields = entries_of(entries, &specs_path, |v, p| field(v, p, Nesting::InStruct))?;
            unique(fields.iter().map(|f| f.identifier.as_str()), &specs_path)?;
            DataType::Struct(fields)
        }
        "array" => {
            let s = specs.ok_or_else(|| err(&specs_path, TslErrorKind::Missing))?;
            let s = object(s, &specs_path)?;
            let p = join(&specs_path, "size");
            let size = match number_spec(s.get("size"), &p)? {
                Some(Num::Int(n)) if (1..=i64::from(MAX_ARRAY_SIZE)).contains(&n) => {
                    u32::try_from(n).unwrap_or(MAX_ARRAY_SIZE)
                }
                None => return Err(err(&p, TslErrorKind::Missing)),
                Some(_) => {
                    return Err(err(
                        &p,
                        TslErrorKind::Invalid(format!("not an integer 1..={MAX_ARRAY_SIZE}")),
                    ));
                }
            };
            let item_path = join(&specs_path, "item");
            let item = s
                .get("item")
                .ok_or_else(|| err(&item_path, TslErrorKind::Missing))?;
            let item_nesting = if nesting == Nesting::InStruct {
                Nesting::ItemInStruct
            } else {
                Nesting::Item
            };
            DataType::Array {
                size,
                item: Box::new(data_type(item, &item_path, item_nesting)?),
            }
        }
        other => return Err(err(&type_path, TslErrorKind::UnsupportedType(other.to_owned()))),
    })
}

fn unit(specs: &Map<String, Value>, path: &str) -> Result<Option<String>, TslError> {
    Ok(string(specs, "unit", path)?
        .filter(|u| !u.is_empty())
        .map(str::to_owned))
}

/// A number of the specs.
#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            // Precision beyond 2^53 does not matter for bounds.
            #[allow(clippy::cast_precision_loss)]
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

/// A specs number: a string (`"0"`, `"0.5"`; empty is absent) or a JSON number.
fn number_spec(value: Option<&Value>, path: &str) -> Result<Option<Num>, TslError> {
    let invalid = || err(path, TslErrorKind::Expected("a number or a string of one"));
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                Ok(Some(Num::Int(i)))
            } else {
                match s.parse::<f64>() {
                    Ok(f) if f.is_finite() => Ok(Some(Num::Float(f))),
                    _ => Err(invalid()),
                }
            }
        }
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(Num::Int(i))),
            (None, Some(f)) if f.is_finite() => Ok(Some(Num::Float(f))),
            _ => Err(invalid()),
        },
        Some(_) => Err(invalid()),
    }
}
