//! The thing model's check of the platform's own calls (cloud-side spec §3.3): a property set or
//! a service call whose params break the product's TSL is refused before anything is sent, as
//! the cloud's `SetDeviceProperty` / `InvokeThingService` refuse it. A product without a TSL
//! lets every call through (today's behaviour).

use aliot_protocol::tsl::{Fault, Tsl, Validation};
use serde_json::Value;

use super::error::Error;

/// What a call does, for the model's rules.
pub(super) enum Call<'a> {
    /// `thing.service.property.set`: `rw` properties of valid values.
    PropertySet,
    /// `thing.service.{identifier}`: a service of the model, every input present and valid.
    Service(&'a str),
}

/// Checks `params` against the model; the first broken rule is the error.
///
/// # Errors
/// [`Error::ThingModel`] with the platform's code (63xx, 460, 6106) and the identifier.
pub(super) fn check(tsl: Option<&Tsl>, call: Call<'_>, params: &Value) -> Result<(), Error> {
    let Some(tsl) = tsl else { return Ok(()) };
    let outcome = match call {
        Call::PropertySet => tsl.validate_property_set(params),
        Call::Service(identifier) => tsl.validate_service_input(identifier, params),
    };
    let target = match call {
        Call::PropertySet => "params",
        Call::Service(identifier) => identifier,
    };
    match outcome {
        Err(Fault { code, message }) => Err(Error::ThingModel {
            code,
            identifier: target.to_owned(),
            message,
        }),
        Ok(validation) => first_rejection(&validation),
    }
}

fn first_rejection(validation: &Validation) -> Result<(), Error> {
    match validation.rejected.iter().next() {
        None => Ok(()),
        Some((identifier, rejection)) => Err(Error::ThingModel {
            code: rejection.code,
            identifier: identifier.clone(),
            message: rejection.message.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn model() -> Tsl {
        Tsl::from_json(
            r#"{"properties":[
              {"identifier":"Brightness","name":"B","accessMode":"rw","required":false,
               "dataType":{"type":"int","specs":{"min":"0","max":"100"}}},
              {"identifier":"Temp","name":"T","accessMode":"r","required":false,
               "dataType":{"type":"float","specs":{}}}],
             "services":[{"identifier":"Blink","name":"Blink","callType":"sync",
               "inputData":[{"identifier":"times","name":"t","dataType":{"type":"int","specs":{}}}],
               "outputData":[]}]}"#,
        )
        .expect("the test model reads")
    }

    fn code(result: Result<(), Error>) -> (u32, String) {
        match result {
            Err(Error::ThingModel { code, identifier, .. }) => (code, identifier),
            other => panic!("expected a thing model refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_product_without_a_model_lets_every_call_through() {
        assert!(check(None, Call::PropertySet, &json!({"x": "y"})).is_ok());
        assert!(check(None, Call::Service("Nope"), &json!(1)).is_ok());
    }

    #[test]
    fn a_set_is_refused_with_the_code_of_the_broken_rule_and_the_identifier() {
        let tsl = model();
        assert!(check(Some(&tsl), Call::PropertySet, &json!({"Brightness": 50})).is_ok());
        assert_eq!(
            code(check(Some(&tsl), Call::PropertySet, &json!({"Brightness": 500}))),
            (6306, "Brightness".to_owned())
        );
        assert_eq!(
            code(check(Some(&tsl), Call::PropertySet, &json!({"Temp": 1.5}))),
            (6320, "Temp".to_owned())
        );
        assert_eq!(code(check(Some(&tsl), Call::PropertySet, &json!([1]))).0, 460);
    }

    #[test]
    fn a_service_call_needs_a_service_of_the_model_and_valid_inputs() {
        let tsl = model();
        assert!(check(Some(&tsl), Call::Service("Blink"), &json!({"times": 3})).is_ok());
        assert_eq!(
            code(check(Some(&tsl), Call::Service("Blink"), &json!({}))),
            (6302, "times".to_owned())
        );
        assert_eq!(
            code(check(Some(&tsl), Call::Service("Blink"), &json!({"times": "3"}))),
            (6306, "times".to_owned())
        );
        assert_eq!(
            code(check(Some(&tsl), Call::Service("Reboot"), &json!({}))),
            (6300, "Reboot".to_owned())
        );
    }
}
