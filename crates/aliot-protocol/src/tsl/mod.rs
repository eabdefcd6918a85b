//! The thing model (TSL, 物模型; cloud-side spec §3): the console's exported JSON read into typed
//! structs, the platform's validation of property posts, events, services and property sets, and
//! valid sample values for each data type.
//!
//! # Reading an exported TSL
//!
//! [`Tsl::from_json`] reads the console's export (spec §3.1): `profile.productKey`, `properties`,
//! `events`, `services`. Numbers in `specs` arrive as strings (`"min":"0"`) or numbers; both are
//! accepted, and an empty string is an absent value. Unknown keys are ignored, and so are older
//! exports' `link` and `profile.deviceName`. A fault is a [`TslError`] naming the JSON path
//! (`properties[3].dataType.specs.min`) and why; an unsupported data type is named, and the
//! whole model is refused.
//!
//! Bounds (aliot's, so that an import stays small; the platform's own where known):
//! - the JSON text is at most [`MAX_TSL_LEN`] bytes;
//! - every list (properties, events, services, `inputData`, `outputData`, struct fields, enum
//!   values) has at most [`MAX_ENTRIES`] entries;
//! - an identifier is 1 to [`MAX_IDENTIFIER_LEN`] ASCII letters, digits and `_` (the platform's
//!   rule), optionally after a custom module's `module:` prefix of the same characters (`fb:Id`);
//!   identifiers are unique within their list;
//! - text `length` is at most [`MAX_TEXT_LEN`] (default when absent), array `size` 1 to
//!   [`MAX_ARRAY_SIZE`];
//! - nesting is bounded by the types: a struct's fields are never structs, an array's items are
//!   int, float, double, text or struct, and an array inside a struct never holds structs. The
//!   deepest value is thus an array of structs holding arrays of scalars.
//!
//! # Validating values
//!
//! Pure: the clock is a parameter (`now_ms`). The platform's behaviour (spec §3.3): a rejected
//! identifier does not fail a post, it is reported with its code and message beside the valid
//! items ([`Validation`]); only a whole-message problem is a [`Fault`] (params not an object:
//! 460; more than [`MAX_POST_PROPERTIES`]: 6106). The rules per type, with their
//! [`TslCode`]:
//!
//! | type | accepted value | else |
//! |---|---|---|
//! | int | a JSON integer in 32 bits, within `min..=max` (`step` is not checked, like the platform's range check) | 6306 |
//! | float | a JSON number (an integer too) within ±`f32::MAX` and `min..=max` | 6307 |
//! | double | a JSON number (an integer too) within `min..=max` | 6322 |
//! | text | a string of at most `length` UTF-8 **bytes** | 6310 |
//! | date | a string of 1 to 19 decimal digits (UTC ms) fitting `i64` | 6311 |
//! | bool | the integer 0 or 1 (`true`/`false` are refused) | 6308 |
//! | enum | an integer key of the specs | 6309 |
//! | struct | an object of the struct's fields, each valid; missing fields are allowed, unknown ones are 6304 | 6312 |
//! | array | a JSON array of at most `size` valid items | 6301, 6324 |
//!
//! A value nested in a struct or array is reported under the top identifier, with the code of
//! the innermost failing rule and its message naming the innermost identifier (the struct field,
//! else the top identifier), as the platform's `tsl parse: data type is not string -> red`.
//! Numbers beyond `i64`/`f64` never reach the rules: they are not JSON a strict parser accepts,
//! and an integer beyond `i64` is not an int.
//!
//! Property posts accept both forms of spec §4.4: `{"Id": value}` and
//! `{"Id": {"value": v, "time": ms}}` (an object whose keys are `value` and optionally `time` is
//! the second form, also for a struct property). `time` is a JSON integer or a string of digits,
//! at most 24 h after `now_ms` (else 6326). An event's params are `{"value": {…}, "time": ms}`
//! (or the bare `{…}` of outputs). Service inputs must all be present (6302); outputs may be
//! partial. A property set takes `rw` properties only (6320 for an unknown or read-only one).
//! Batch, pack and history posts carry many points: [`validate_batch`] (its shapes and rules in
//! `batch.rs`).
//!
//! ```
//! use aliot_protocol::tsl::Tsl;
//! use serde_json::json;
//!
//! let tsl = Tsl::from_json(r#"{"profile":{"productKey":"a1a3Xryxx97"},"properties":[
//!   {"identifier":"PowerSwitch","name":"Power","accessMode":"rw","required":false,
//!    "dataType":{"type":"bool","specs":{"0":"Off","1":"On"}}},
//!   {"identifier":"code","name":"Code","accessMode":"r","required":false,
//!    "dataType":{"type":"int","specs":{"min":"0","max":"100","step":"1"}}}]}"#)?;
//! let post = tsl
//!     .validate_property_post(&json!({"PowerSwitch": 1, "code": "15"}), 1_700_000_000_000)
//!     .expect("params are an object");
//! assert_eq!(post.items["PowerSwitch"].value, json!(1));
//! let rejected = &post.rejected["code"];
//! assert_eq!(rejected.code, 6306);
//! assert_eq!(rejected.message, "tsl parse: data type is not int -> code");
//! assert_eq!(rejected.value, json!("15"));
//! # Ok::<(), aliot_protocol::tsl::TslError>(())
//! ```

mod batch;
mod parse;
mod sample;
mod validate;

use std::collections::BTreeMap;
use std::fmt;

pub use crate::codes::TslCode;
pub use batch::{
    BatchKind, BatchValidation, EventPoint, MAX_BATCH_EVENTS, MAX_BATCH_POINTS, Point, TOO_MANY_EVENTS,
    validate_batch, validate_untyped_event, validate_untyped_property_post,
};
pub use validate::{Fault, Item, Rejection, Validation};

/// The longest exported TSL read, in bytes of JSON text.
pub const MAX_TSL_LEN: usize = 4 * 1024 * 1024;
/// The most entries of any list of the model.
pub const MAX_ENTRIES: usize = 1000;
/// The longest identifier (and custom-module prefix), in ASCII characters (the platform's rule).
pub const MAX_IDENTIFIER_LEN: usize = 50;
/// The largest text `length` (and the default), in UTF-8 bytes (spec §3.2).
pub const MAX_TEXT_LEN: u32 = 10240;
/// The largest array `size` (spec §3.2).
pub const MAX_ARRAY_SIZE: u32 = 512;
/// The most properties in one post (spec §3.8, code 6106).
pub const MAX_POST_PROPERTIES: usize = 200;
/// How far ahead of now a `time` may be, in ms (24 h, spec §3.8; code 6326).
pub const MAX_TIME_AHEAD_MS: i64 = 24 * 3600 * 1000;

/// A product's thing model.
#[derive(Debug, Clone, PartialEq)]
pub struct Tsl {
    /// `profile.productKey`; `None` when the model has no profile (a hand-written one).
    pub product_key: Option<String>,
    /// The properties.
    pub properties: Vec<Property>,
    /// The events (the export includes the generated `post`).
    pub events: Vec<Event>,
    /// The services (the export includes the generated `set` and `get`).
    pub services: Vec<Service>,
}

/// A property.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    /// The identifier (`fb:Id` in a custom module).
    pub identifier: String,
    /// The display name.
    pub name: String,
    /// `r` or `rw`.
    pub access_mode: AccessMode,
    /// Whether the product requires it (standard-category properties).
    pub required: bool,
    /// Its type.
    pub data_type: DataType,
}

/// A property's `accessMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessMode {
    /// `r`: the device posts it; it cannot be set.
    ReadOnly,
    /// `rw`: it can also be set.
    ReadWrite,
}

/// An event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The identifier (`post` for the generated property post).
    pub identifier: String,
    /// The display name.
    pub name: String,
    /// `info`, `alert` or `error`.
    pub kind: EventKind,
    /// `thing.event.{identifier}.post` (as exported; derived when absent).
    pub method: String,
    /// Its parameters.
    pub output_data: Vec<Field>,
}

/// An event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `info`.
    Info,
    /// `alert`.
    Alert,
    /// `error` (a fault).
    Error,
}

/// A service.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// The identifier (`set` and `get` for the generated ones).
    pub identifier: String,
    /// The display name.
    pub name: String,
    /// `sync` (RRPC) or `async`.
    pub call_type: CallType,
    /// `thing.service.{identifier}` (as exported; derived when absent).
    pub method: String,
    /// Its inputs.
    pub input_data: InputData,
    /// Its outputs.
    pub output_data: Vec<Field>,
}

/// A service's `callType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallType {
    /// `sync`: called over RRPC, answered at once.
    Sync,
    /// `async`: answered on the `_reply` topic.
    Async,
}

/// A service's `inputData`.
#[derive(Debug, Clone, PartialEq)]
pub enum InputData {
    /// Typed parameters (every service but `get`).
    Fields(Vec<Field>),
    /// Property identifiers (the generated `get`: `["PowerSwitch", …]`).
    Identifiers(Vec<String>),
}

/// A typed parameter: an event's or service's data, or a struct's field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The identifier.
    pub identifier: String,
    /// The display name.
    pub name: String,
    /// Its type.
    pub data_type: DataType,
}

/// A data type and its specs (spec §3.2).
#[derive(Debug, Clone, PartialEq)]
pub enum DataType {
    /// `int`: a 32-bit integer.
    Int {
        /// The smallest value (`i32::MIN` when absent).
        min: Option<i32>,
        /// The largest value (`i32::MAX` when absent).
        max: Option<i32>,
        /// The step (not checked by validation).
        step: Option<i32>,
        /// The unit symbol.
        unit: Option<String>,
    },
    /// `float`: a 32-bit float.
    Float {
        /// The smallest value.
        min: Option<f64>,
        /// The largest value.
        max: Option<f64>,
        /// The step (not checked by validation).
        step: Option<f64>,
        /// The unit symbol.
        unit: Option<String>,
    },
    /// `double`: a 64-bit float.
    Double {
        /// The smallest value.
        min: Option<f64>,
        /// The largest value.
        max: Option<f64>,
        /// The step (not checked by validation).
        step: Option<f64>,
        /// The unit symbol.
        unit: Option<String>,
    },
    /// `text`: a string of at most `length` UTF-8 bytes.
    Text {
        /// The longest value, in bytes (at most [`MAX_TEXT_LEN`]).
        length: u32,
    },
    /// `date`: a string of UTC milliseconds.
    Date,
    /// `bool`: the integer 0 or 1.
    Bool {
        /// The labels of 0 and 1 (empty when absent).
        labels: [String; 2],
    },
    /// `enum`: an integer key.
    Enum {
        /// The keys and their labels (at least one).
        values: BTreeMap<i64, String>,
    },
    /// `struct`: an object of fields (never structs).
    Struct(Vec<Field>),
    /// `array`: a JSON array.
    Array {
        /// The most elements (1 to [`MAX_ARRAY_SIZE`]).
        size: u32,
        /// The element type: int, float, double, text or struct.
        item: Box<DataType>,
    },
}

impl DataType {
    /// The TSL's name of the type (`int`, `float`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            DataType::Int { .. } => "int",
            DataType::Float { .. } => "float",
            DataType::Double { .. } => "double",
            DataType::Text { .. } => "text",
            DataType::Date => "date",
            DataType::Bool { .. } => "bool",
            DataType::Enum { .. } => "enum",
            DataType::Struct(_) => "struct",
            DataType::Array { .. } => "array",
        }
    }

    /// The rule a value of the wrong JSON type breaks.
    pub fn mismatch(&self) -> TslCode {
        match self {
            DataType::Int { .. } => TslCode::NotInt,
            DataType::Float { .. } => TslCode::NotFloat,
            DataType::Double { .. } => TslCode::NotDouble,
            DataType::Text { .. } => TslCode::NotText,
            DataType::Date => TslCode::NotDate,
            DataType::Bool { .. } => TslCode::NotBool,
            DataType::Enum { .. } => TslCode::NotEnum,
            DataType::Struct(_) => TslCode::NotStruct,
            DataType::Array { .. } => TslCode::NotArray,
        }
    }
}

/// Why a TSL could not be read: where (a JSON path) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct TslError {
    /// The JSON path of the fault (`properties[3].dataType.specs.min`; empty for the whole text).
    pub path: String,
    /// What is wrong there.
    pub kind: TslErrorKind,
}

impl TslError {
    /// The platform's code for the fault: 6321 (empty identifier), 6317 (type or specs
    /// missing), 6325 (unsupported array item type), else 6318 (parse exception).
    pub fn code(&self) -> u32 {
        match self.kind {
            TslErrorKind::EmptyIdentifier => 6321,
            TslErrorKind::Missing => 6317,
            TslErrorKind::UnsupportedItemType(_) => 6325,
            _ => 6318,
        }
    }
}

/// What is wrong at a [`TslError`]'s path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TslErrorKind {
    /// The text is not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The text is longer than [`MAX_TSL_LEN`].
    #[error("the TSL is {0} bytes long (at most {MAX_TSL_LEN} are read)")]
    TooLarge(usize),
    /// A required key is absent.
    #[error("missing")]
    Missing,
    /// The value has the wrong JSON type.
    #[error("expected {0}")]
    Expected(&'static str),
    /// A value outside what the key allows.
    #[error("invalid value: {0}")]
    Invalid(String),
    /// An empty identifier.
    #[error("empty identifier")]
    EmptyIdentifier,
    /// An identifier breaking the platform's rule.
    #[error(
        "identifier {0:?} is not 1 to {MAX_IDENTIFIER_LEN} ASCII letters, digits and '_' (optionally after a module: prefix)"
    )]
    BadIdentifier(String),
    /// The identifier appears twice in its list.
    #[error("duplicate identifier {0:?}")]
    Duplicate(String),
    /// A data type aliot does not know (the model is refused whole).
    #[error("unsupported data type {0:?}")]
    UnsupportedType(String),
    /// A data type not allowed as an array's item.
    #[error("unsupported array item type {0:?} (int, float, double, text or struct)")]
    UnsupportedItemType(String),
    /// A struct inside a struct (or an array of structs inside a struct).
    #[error("a struct cannot hold a struct")]
    NestedStruct,
    /// A list longer than [`MAX_ENTRIES`].
    #[error("more than {MAX_ENTRIES} entries")]
    TooMany,
}

impl Tsl {
    /// Reads the console's exported JSON.
    ///
    /// # Errors
    /// [`TslError`] naming the path and the fault.
    pub fn from_json(text: &str) -> Result<Self, TslError> {
        parse::from_json(text)
    }

    /// Reads an exported TSL already parsed as JSON.
    ///
    /// # Errors
    /// [`TslError`] naming the path and the fault.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, TslError> {
        parse::tsl(value)
    }

    /// The property with this identifier.
    pub fn property(&self, identifier: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.identifier == identifier)
    }

    /// The event with this identifier.
    pub fn event(&self, identifier: &str) -> Option<&Event> {
        self.events.iter().find(|e| e.identifier == identifier)
    }

    /// The service with this identifier.
    pub fn service(&self, identifier: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.identifier == identifier)
    }
}

impl fmt::Display for AccessMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessMode::ReadOnly => "r",
            AccessMode::ReadWrite => "rw",
        })
    }
}

#[cfg(test)]
mod tests;
