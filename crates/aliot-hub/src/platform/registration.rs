//! Dynamic registration, whatever the door (MQTT `authType=register|regnwl`, spec §5.2; HTTPS
//! `/auth/register/device`, spec §5.1): the productSecret's signature, the product's switch,
//! then the registry's rules ([`enrolment_rule`](crate::registry::Registry::enrol)), stored
//! before it is answered. Each door maps a [`Refusal`] to its own codes here.

use aliot_protocol::auth::RefusalReason;
use aliot_protocol::codes::AuthCode;

use crate::registry::{Enrolled, Enrolment, Error, Registry};

/// The HMAC key of the dummy check for products that do not exist (as long as a real secret, so
/// the cost is the same).
pub(crate) const UNKNOWN_SECRET: &str = "00000000000000000000000000000000";

/// Why a registration is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No such product (answered as a bad signature: nothing is revealed).
    UnknownProduct,
    /// The signature is not the productSecret's.
    BadSignature,
    /// The product does not allow dynamic registration.
    NotAllowed,
    /// Pre-registration required and the device is not registered.
    UnknownDevice,
    /// The device is disabled.
    Disabled,
    /// The device has logged in before (the platform's 6289).
    Activated,
    /// A deviceName the platform would not accept.
    Invalid(String),
    /// The registry could not store it.
    Unavailable(String),
}

impl Refusal {
    /// The CONNACK reason of an MQTT registration (spec §5.2: 4 for credentials, 5 for a
    /// registration the product or device state forbids, 3 when it could not be stored).
    pub(crate) fn connack(self) -> RefusalReason {
        match self {
            Refusal::UnknownProduct | Refusal::UnknownDevice => RefusalReason::UnknownDevice,
            Refusal::BadSignature => RefusalReason::SignatureMismatch,
            Refusal::Disabled => RefusalReason::DeviceDisabled,
            Refusal::NotAllowed => RefusalReason::RegistrationRefused(
                "the product does not allow dynamic registration (platform code 6288)".into(),
            ),
            Refusal::Activated => RefusalReason::RegistrationRefused(
                "the device is already activated (platform code 6289): reset it to register it again".into(),
            ),
            Refusal::Invalid(why) => RefusalReason::RegistrationRefused(why),
            Refusal::Unavailable(why) => RefusalReason::ServerUnavailable(why),
        }
    }

    /// The code and message of an HTTPS registration (spec §5.1): 6288 not allowed, 6289
    /// activated, 6600 signature (or unknown product), 460 bad parameters (or a device not
    /// registered beforehand, or disabled), 500 storage.
    pub(crate) fn code(&self) -> (u32, String) {
        match self {
            Refusal::UnknownProduct | Refusal::BadSignature => (
                AuthCode::SignatureMismatch.code(),
                "signature verify failed: sign it with the productSecret".into(),
            ),
            Refusal::NotAllowed => (
                AuthCode::RegistrationOff.code(),
                "dynamic registration is not enabled for the product".into(),
            ),
            Refusal::Activated => (
                AuthCode::AlreadyActivated.code(),
                "the device is already activated: reset it to register it again".into(),
            ),
            Refusal::UnknownDevice => (
                AuthCode::ParamError.code(),
                "the device is not registered: register it first (this registration needs pre-registration)"
                    .into(),
            ),
            Refusal::Disabled => (AuthCode::ParamError.code(), "the device is disabled".into()),
            Refusal::Invalid(why) => (AuthCode::ParamError.code(), why.clone()),
            Refusal::Unavailable(why) => (
                AuthCode::SystemError.code(),
                format!("the registration could not be stored: {why}"),
            ),
        }
    }
}

/// Registers `dn` of `pk` dynamically when `signed(productSecret)` holds (the caller's check
/// of the signature, in constant time; it also runs for unknown products, with a dummy key).
pub(crate) async fn enrol(
    registry: &dyn Registry,
    product_key: &str,
    device_name: &str,
    how: Enrolment,
    signed: impl FnOnce(&str) -> bool,
) -> Result<Enrolled, Refusal> {
    let Some(product) = registry.product_auth(product_key).await else {
        let _ = signed(UNKNOWN_SECRET);
        return Err(Refusal::UnknownProduct);
    };
    if !signed(&product.product_secret) {
        return Err(Refusal::BadSignature);
    }
    if !product.dynamic_registration {
        return Err(Refusal::NotAllowed);
    }
    registry
        .enrol(product_key, device_name, how)
        .await
        .map_err(|e| match e {
            Error::DeviceNotFound { .. } => Refusal::UnknownDevice,
            Error::DeviceDisabled { .. } => Refusal::Disabled,
            Error::AlreadyActivated { .. } => Refusal::Activated,
            Error::InvalidArgument(why) => Refusal::Invalid(why),
            Error::ProductNotFound { .. } => Refusal::UnknownProduct,
            other => Refusal::Unavailable(other.to_string()),
        })
}
