//! What an OpenAPI action is: its parameters in, its business answer out (cloud-side spec §1.5,
//! §1.6). The transport (listener, signatures, envelope, JSON or XML) is in the sibling modules;
//! an action only sees a [`Ctx`] and returns the top-level fields of its answer.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::registry::{self, Device};
use crate::service::{self, Service};

/// A request's parameters: the query and the form body merged, every name and value decoded
/// (`+` as space). The signature's own parameters are in it too; actions ignore what they do not
/// know, as the platform does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    /// Parameters from decoded pairs (a later duplicate replaces an earlier one).
    pub(crate) fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            map: pairs.into_iter().collect(),
        }
    }

    /// Every parameter, sorted by name.
    pub(crate) fn all(&self) -> &BTreeMap<String, String> {
        &self.map
    }

    /// A parameter's value; an empty value counts as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A parameter that must be present and non-empty.
    ///
    /// # Errors
    /// `iot.common.InvalidFormattedParameter` naming the parameter.
    pub(crate) fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).ok_or_else(|| ApiError::missing(name))
    }

    /// A boolean: `true`/`false` in any case (the Python SDKs send `True`/`False`).
    ///
    /// # Errors
    /// `iot.common.InvalidFormattedParameter` for any other text.
    pub(crate) fn flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::invalid(name, v)),
        }
    }

    /// A number.
    ///
    /// # Errors
    /// `iot.common.InvalidFormattedParameter` when it does not parse.
    pub(crate) fn number<T: FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|v| v.trim().parse::<T>().map_err(|_| ApiError::invalid(name, v)))
            .transpose()
    }

    /// A flattened list: `name.1`, `name.2`, … in numeric order (`DeviceName.N`, `IotId.N`).
    pub(crate) fn list(&self, name: &str) -> Vec<&str> {
        let prefix = format!("{name}.");
        let mut items: Vec<(u32, &str)> = self
            .map
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, v)| {
                let n = k[prefix.len()..].parse::<u32>().ok()?;
                Some((n, v.as_str()))
            })
            .collect();
        items.sort_by_key(|(n, _)| *n);
        items.into_iter().map(|(_, v)| v).collect()
    }
}

/// An action's refusal.
///
/// A business error is answered with HTTP 200, `Success:false`, `Code` and `ErrorMessage`; a
/// gateway-level error (`status` set) with that HTTP status, `Code` and `Message` (spec §1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// HTTP status for a gateway-level error; `None` for a business error (HTTP 200).
    pub(crate) status: Option<u16>,
    /// The platform's code (`iot.device.NotExistedDevice`).
    pub(crate) code: Cow<'static, str>,
    /// The message (English, as D-ERR writes it).
    pub(crate) message: String,
}

impl ApiError {
    /// A business error (HTTP 200, `Success:false`).
    pub(crate) fn business(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            status: None,
            code: code.into(),
            message: message.into(),
        }
    }

    /// A gateway-level error with its HTTP status.
    pub(crate) fn gateway(
        status: u16,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status: Some(status),
            code: code.into(),
            message: message.into(),
        }
    }

    /// A required parameter is missing.
    pub(crate) fn missing(name: &str) -> Self {
        Self::business(
            "iot.common.InvalidFormattedParameter",
            format!("The parameter {name} is required."),
        )
    }

    /// A parameter's value is unusable.
    pub(crate) fn invalid(name: &str, value: &str) -> Self {
        let shown: String = value.chars().take(64).collect();
        Self::business(
            "iot.common.InvalidFormattedParameter",
            format!("The parameter {name} is invalid: {shown}"),
        )
    }

    /// The device does not exist.
    pub(crate) fn no_device() -> Self {
        Self::business(
            "iot.device.NotExistedDevice",
            "The specified device does not exist.",
        )
    }

    /// The product does not exist.
    pub(crate) fn no_product() -> Self {
        Self::business(
            "iot.prod.NotExistedProduct",
            "The specified product does not exist.",
        )
    }
}

/// The top-level fields of a successful answer besides `RequestId` and `Success` (`Data`,
/// `MessageId`, `Total`…), with the types the official SDKs' models expect (spec §1.6, §8).
pub(crate) type Reply = Map<String, Value>;

/// What an action gives back.
pub(crate) type ActionResult = Result<Reply, ApiError>;

/// What an action may use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// The platform's API (the same calls as the admin REST API).
    pub(crate) service: &'a Service,
    /// The request's parameters.
    pub(crate) params: &'a Params,
    /// The caller's AccessKeyId (already verified).
    pub(crate) access_key_id: &'a str,
}

impl Ctx<'_> {
    /// The device the request names: `IotId` when given (it wins), else `ProductKey` and
    /// `DeviceName`.
    ///
    /// # Errors
    /// `iot.device.NotExistedDevice`, or `iot.common.InvalidFormattedParameter` when neither is
    /// given.
    pub(crate) async fn device(&self) -> Result<Device, ApiError> {
        if let Some(iot_id) = self.params.get("IotId") {
            return self
                .service
                .device_by_iot_id(iot_id)
                .await
                .map_err(ApiError::from)?
                .ok_or_else(ApiError::no_device);
        }
        let product_key = self.params.required("ProductKey")?;
        let device_name = self.params.required("DeviceName")?;
        self.service
            .device(product_key, device_name)
            .await
            .map_err(ApiError::from)
    }
}

/// The platform's code for each of the service's errors: the one place where the hub's errors
/// become OpenAPI codes (spec §1.7).
impl From<service::Error> for ApiError {
    fn from(e: service::Error) -> Self {
        use service::Error as S;
        let message = e.to_string();
        match e {
            S::Registry(r) => Self::from(r),
            S::DeviceOffline { .. } => Self::business("iot.messagebroker.OFFLINE", message),
            S::NotSubscribed { .. } => Self::business("iot.messagebroker.PublishMessageFailed", message),
            S::QueueFull { .. } => Self::business("iot.messagebroker.RateLimit", message),
            S::NotSaved { .. } => Self::business("iot.system.SystemException", message),
            S::TooManyPendingCalls { .. } => Self::business("iot.messagebroker.RateLimit", message),
            S::Timeout { .. } => Self::business("iot.messagebroker.TIMEOUT", message),
            S::BadReply { .. } => Self::business("iot.messagebroker.RrpcException", message),
            S::InvalidArgument(_) => Self::business("iot.common.InvalidFormattedParameter", message),
            S::ThingModel { .. } => {
                Self::business("iot.device.InvalidFormattedDevicePropertiesString", message)
            }
            S::ShadowRefused(_) => {
                Self::business("iot.messagebroker.UpdateDeviceShadowMessageFailed", message)
            }
            S::Topology(_) => Self::business("iot.device.TopoRelationCountExceeded", message),
        }
    }
}

impl From<registry::Error> for ApiError {
    fn from(e: registry::Error) -> Self {
        use registry::Error as R;
        let message = e.to_string();
        match e {
            R::ProductNotFound { .. } => Self::no_product(),
            R::DeviceNotFound { .. } => Self::no_device(),
            R::ProductExists { .. } => Self::business("iot.prod.AlreadyExistedProductName", message),
            R::DeviceExists { .. } => Self::business("iot.device.AlreadyExistedDeviceName", message),
            R::InvalidArgument(_) => Self::business("iot.common.InvalidFormattedParameter", message),
            _ => Self::business("iot.system.SystemException", message),
        }
    }
}
