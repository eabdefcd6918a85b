//! Typed thing-model helpers: a device that knows its product's TSL checks what it sends and
//! what it is asked, with the platform's own rules (`aliot_protocol::tsl`, cloud-side spec §3).
//!
//! - Posts ([`ThingModel::post_property`], [`ThingModel::post_event`]) are checked before they
//!   leave: a value the platform would reject is an [`Error::Model`] naming the identifier, the
//!   rule and the platform's code, and nothing is sent.
//! - Requests from the platform ([`ThingModel::property_set`], [`ThingModel::service_input`])
//!   are checked against the model: bad input is a [`ReplyError`] with the platform's code, ready
//!   to be the answer.
//! - Service replies ([`ThingModel::reply_service`]) are checked before they are sent.
//!
//! [`ThingModel`] is a cheap `Clone` handle (the model is shared).
//!
//! ```no_run
//! use aliot_device::thing::ThingModel;
//! use aliot_device::{Device, DeviceOptions, Event};
//! use aliot_protocol::{DeviceIdentity, Endpoint};
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let model = ThingModel::from_json(&std::fs::read_to_string("model.json")?)?;
//! let identity = DeviceIdentity::new("a1B2c3D4e5F", "light-01", "device-secret")?;
//! let endpoint = Endpoint::custom("127.0.0.1", Some(1883), false)?;
//! let (device, mut events) = Device::connect(DeviceOptions::new(identity, endpoint)).await?;
//!
//! // Checked first: `{"Brightness": "50"}` would be Error::Model { code: 6306, .. }, not sent.
//! model.post_property(&device, json!({"Brightness": 50})).await?;
//!
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::PropertySet(set) => {
//!             // A read-only or out-of-range property is answered with the platform's code.
//!             let answer = model.property_set(&set).map(|values| {
//!                 println!("apply {values:?}");
//!                 json!({})
//!             });
//!             set.reply(answer).await?;
//!         }
//!         Event::ServiceCall(call) => {
//!             let answer = model.service_input(&call).map(|_inputs| json!({"result": 1}));
//!             model.reply_service(call, answer).await?;
//!         }
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use aliot_protocol::alink::Reply;
use aliot_protocol::tsl::{Fault, Tsl, Validation};
use serde_json::{Map, Value};

use crate::client::Device;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::event::{PropertySet, ReplyError, ServiceCall};

/// A product's thing model on the device side (a cheap `Clone`).
#[derive(Debug, Clone)]
pub struct ThingModel {
    tsl: Arc<Tsl>,
}

/// The services a property get arrives as (`thing.service.property.get`, and the model's
/// generated `get`).
fn is_get(service: &str) -> bool {
    service == "property.get" || service == "get"
}

fn now() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}

/// The first rejected item as an [`Error::Model`].
fn first_rejection(validation: &Validation) -> Option<Error> {
    validation
        .rejected
        .iter()
        .next()
        .map(|(identifier, r)| Error::Model {
            identifier: identifier.clone(),
            code: r.code,
            message: r.message.clone(),
        })
}

/// A whole-message fault as an [`Error::Model`] for `identifier`.
fn fault(identifier: &str, f: Fault) -> Error {
    Error::Model {
        identifier: identifier.to_owned(),
        code: f.code,
        message: f.message,
    }
}

/// The outcome of a check as `Result`: the valid items' values, or the first broken rule.
fn accepted(outcome: std::result::Result<Validation, Fault>, what: &str) -> Result<Map<String, Value>> {
    let validation = outcome.map_err(|f| fault(what, f))?;
    if let Some(e) = first_rejection(&validation) {
        return Err(e);
    }
    Ok(validation
        .items
        .into_iter()
        .map(|(id, item)| (id, item.value))
        .collect())
}

/// An [`Error::Model`] as the answer to the platform.
fn as_reply(e: Error) -> ReplyError {
    match e {
        Error::Model { code, message, .. } => ReplyError::new(code, message),
        other => ReplyError::failed(other.to_string()),
    }
}

impl ThingModel {
    /// The helpers for this model.
    pub fn new(tsl: Tsl) -> Self {
        Self { tsl: Arc::new(tsl) }
    }

    /// Reads the console's TSL export.
    ///
    /// # Errors
    /// [`Error::Tsl`] naming the JSON path and the fault.
    pub fn from_json(text: &str) -> Result<Self> {
        Ok(Self::new(Tsl::from_json(text).map_err(Error::Tsl)?))
    }

    /// The model.
    pub fn tsl(&self) -> &Tsl {
        &self.tsl
    }

    /// Checks a property post's params (`{"Id": v}` or `{"Id": {"value": v, "time": ms}}`) as
    /// the platform will.
    ///
    /// # Errors
    /// [`Error::Model`] for the first identifier the platform would reject (unknown: 6304, wrong
    /// type or range: 6306…6324, `time` beyond now + 24 h: 6326), or for params that are not an
    /// object (460) or hold more than 200 properties (6106).
    pub fn check_properties(&self, params: &Value) -> Result<()> {
        accepted(self.tsl.validate_property_post(params, now()), "params").map(drop)
    }

    /// Checks an event's output values (what [`Device::post_event`] sends as `value`).
    ///
    /// # Errors
    /// [`Error::Model`]: the event is not in the model (6300), or an output is unknown or
    /// invalid.
    pub fn check_event(&self, event: &str, values: &Value) -> Result<()> {
        accepted(self.tsl.validate_event(event, values, now()), event).map(drop)
    }

    /// Checks a service's reply data (outputs may be missing, never wrong).
    ///
    /// # Errors
    /// [`Error::Model`]: the service is not in the model (6300), or an output is unknown or
    /// invalid.
    pub fn check_service_output(&self, service: &str, data: &Value) -> Result<()> {
        let service = if is_get(service) { "get" } else { service };
        accepted(self.tsl.validate_service_output(service, data), service).map(drop)
    }

    /// Checks, then posts properties ([`Device::post_property`]).
    ///
    /// # Errors
    /// [`Error::Model`] as [`ThingModel::check_properties`] (nothing sent); then as
    /// [`Device::post_property`].
    pub async fn post_property(&self, device: &Device, params: Value) -> Result<Reply> {
        self.check_properties(&params)?;
        device.post_property(params).await
    }

    /// Checks, then posts an event ([`Device::post_event`]).
    ///
    /// # Errors
    /// [`Error::Model`] as [`ThingModel::check_event`] (nothing sent); then as
    /// [`Device::post_event`].
    pub async fn post_event(&self, device: &Device, event: &str, values: Value) -> Result<Reply> {
        self.check_event(event, &values)?;
        device.post_event(event, values).await
    }

    /// The values of a property set, checked: `rw` properties of the model with valid values.
    ///
    /// # Errors
    /// A [`ReplyError`] with the platform's code (6320 unknown or read-only property, 6306…
    /// wrong type or range, 460 params not an object), to answer with.
    pub fn property_set(&self, set: &PropertySet) -> std::result::Result<Map<String, Value>, ReplyError> {
        accepted(self.tsl.validate_property_set(set.params()), "params").map_err(as_reply)
    }

    /// The inputs of a service call, checked: a service of the model with every input present
    /// and valid. A property get (`thing.service.property.get`) gives the identifiers asked,
    /// each mapped to itself.
    ///
    /// # Errors
    /// A [`ReplyError`] with the platform's code (6300 unknown service, 6302 missing input,
    /// 6304 unknown input, 6306… wrong type or range), to answer with.
    pub fn service_input(&self, call: &ServiceCall) -> std::result::Result<Map<String, Value>, ReplyError> {
        let service = if is_get(call.service()) {
            "get"
        } else {
            call.service()
        };
        accepted(self.tsl.validate_service_input(service, call.params()), service).map_err(as_reply)
    }

    /// Answers a service call after checking a successful answer's outputs. An answer that
    /// breaks the model is not sent as it is: the platform gets the broken rule's code instead
    /// (so that it is not left waiting), and the caller gets the [`Error::Model`].
    ///
    /// # Errors
    /// [`Error::Model`] for invalid outputs; as [`ServiceCall::reply`].
    pub async fn reply_service(
        &self,
        call: ServiceCall,
        answer: std::result::Result<Value, ReplyError>,
    ) -> Result<()> {
        let checked = match &answer {
            Ok(data) => self.check_service_output(call.service(), data),
            Err(_) => Ok(()),
        };
        match checked {
            Ok(()) => call.reply(answer).await,
            Err(e) => {
                call.reply(Err(as_reply(e.clone()))).await?;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const TSL: &str = r#"{"properties":[
      {"identifier":"Brightness","name":"b","accessMode":"rw","dataType":{"type":"int","specs":{"min":"0","max":"100"}}},
      {"identifier":"Temperature","name":"t","accessMode":"r","dataType":{"type":"float","specs":{}}}],
     "events":[{"identifier":"Overheat","name":"o","type":"alert","outputData":[
      {"identifier":"Level","name":"l","dataType":{"type":"enum","specs":{"1":"warn","2":"stop"}}}]}],
     "services":[{"identifier":"Blink","name":"b","callType":"sync","inputData":[],"outputData":[
      {"identifier":"Done","name":"d","dataType":{"type":"bool","specs":{}}}]}]}"#;

    fn model() -> ThingModel {
        ThingModel::from_json(TSL).expect("the test model reads")
    }

    fn refusal(result: Result<()>) -> (String, u32, String) {
        match result {
            Err(Error::Model {
                identifier,
                code,
                message,
            }) => (identifier, code, message),
            other => panic!("expected a model refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_post_the_platform_would_reject_names_the_identifier_the_rule_and_the_code() {
        let m = model();
        assert!(
            m.check_properties(&json!({"Brightness": 5, "Temperature": 1.5}))
                .is_ok()
        );
        let (id, code, message) = refusal(m.check_properties(&json!({"Temperature": "21.5"})));
        assert_eq!((id.as_str(), code), ("Temperature", 6307));
        assert_eq!(message, "tsl parse: data type is not float -> Temperature");
        let (id, code, _) = refusal(m.check_properties(&json!({"Colour": 1})));
        assert_eq!((id.as_str(), code), ("Colour", 6304));
        assert_eq!(refusal(m.check_properties(&json!([1]))).1, 460);
    }

    #[test]
    fn events_and_service_outputs_are_checked_too() {
        let m = model();
        assert!(m.check_event("Overheat", &json!({"Level": 2})).is_ok());
        assert_eq!(refusal(m.check_event("Overheat", &json!({"Level": 3}))).1, 6309);
        assert_eq!(refusal(m.check_event("Smoke", &json!({}))).1, 6300);
        assert!(m.check_service_output("Blink", &json!({"Done": 1})).is_ok());
        assert_eq!(
            refusal(m.check_service_output("Blink", &json!({"Done": true}))).1,
            6308
        );
        assert!(
            m.check_service_output("property.get", &json!({"Brightness": 3}))
                .is_ok()
        );
    }

    #[test]
    fn a_bad_model_is_an_error_naming_its_path() {
        let e = ThingModel::from_json(r#"{"properties":[{"identifier":"","accessMode":"r"}]}"#)
            .expect_err("an empty identifier");
        assert!(
            matches!(&e, Error::Tsl(t) if t.path.starts_with("properties[0]")),
            "{e}"
        );
    }
}
