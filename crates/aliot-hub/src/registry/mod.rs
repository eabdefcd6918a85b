//! The registry: what the hub knows about products and devices, behind one narrow trait.
//!
//! [`Registry`] is every registry operation the hub needs: products, devices and their secrets,
//! last-online status, the last reported property values, desired properties and device
//! shadows. The engine never sees it; the
//! platform asks it at CONNECT ([`Registry::device_auth`]) and after uplinks, and the
//! application [`Service`](crate::service::Service) (admin API, later OpenAPI and the console)
//! asks it for everything else. [`RedbRegistry`] is the embedded implementation (one redb file
//! in the data directory, mirrored in memory); another implementation (PostgreSQL) can be added
//! without touching the engine or the platform.
//!
//! # Contract for implementations
//! - A registration, change or deletion is durable before its future resolves with `Ok`: an
//!   answer given to a caller is never lost to a crash.
//! - [`Registry::device_auth`] is on the CONNECT path (tens of thousands of calls a second):
//!   serve it from memory.
//! - [`Registry::device_online`] and [`Registry::remember_properties`] never block: they are
//!   best effort (say in the implementation's docs what may be lost). `device_online` never
//!   fails the caller; `remember_properties` refuses, whole, a post that would take the device
//!   past its [`PropertyLimits`] (the rule is [`Properties::remember`], shared by every
//!   implementation), and the platform answers that post with code 6106.
//! - A change to desired properties or a shadow ([`Registry::change_desired`],
//!   [`Registry::change_shadow`]) is durable before its future resolves with `Ok`, and follows
//!   the shared rules ([`DesiredProperties::apply`], [`ShadowDocument::apply`]) atomically per
//!   device; a device's deletion forgets both.
//! - Nothing a registry keeps grows with what devices send beyond those limits.
//! - History ([`Registry::record`]: kept property values, events, the call log) is durable when
//!   the future `record` returns resolves with `Ok`; it is bounded by a retention and per-device
//!   caps ([`HistoryConfig`](crate::config::HistoryConfig)).

use std::fmt;
use std::net::IpAddr;

use aliot_protocol::identity::{validate_device_name, validate_product_key, validate_secret};
use serde_json::{Map, Value};

mod access_keys;
mod apply;
mod desired;
mod error;
#[cfg(feature = "fault-injection")]
mod fault;
mod history;
mod pg;
mod properties;
mod record;
mod redb;
mod remote_config;
mod sessions;
mod shadow;
mod store;
mod topology;

pub use self::access_keys::{AccessKey, AccessKeyInfo, MAX_ACCESS_KEYS};
pub use self::apply::{ApplyRecord, ApplyStatus, FIRST_APPLY_ID, InvalidName, MAX_APPLIES};
pub use self::desired::{
    DesiredChange, DesiredOutcome, DesiredProperties, DesiredValue, MAX_DESIRED_BYTES, MAX_DESIRED_PER_DEVICE,
};
pub use self::error::{Error, Result};
#[cfg(feature = "fault-injection")]
pub use self::fault::StorageFault;
pub use self::history::{HISTORY_FILE, History};
pub use self::pg::PgRegistry;
pub use self::properties::{Properties, PropertyLimits};
pub use self::record::{
    CallRecord, Cursor, EventRecord, LatestProperty, Order, Page, PropertyPoint, PropertySample, Records,
    Window,
};
pub(crate) use self::redb::random_alnum;
pub use self::redb::{DB_FILE, MAX_REPORTED_RECORDS, ONLINE_QUEUE, RedbRegistry};
pub use self::remote_config::{ConfigDownload, ConfigFile, RemoteConfig, check_size as check_config_size};
pub use self::sessions::{SavedMessage, SavedSession, SessionChange};
pub use self::shadow::{
    MAX_ATTRIBUTES as MAX_SHADOW_ATTRIBUTES, MAX_DOCUMENT_BYTES as MAX_SHADOW_BYTES, ShadowChange,
    ShadowDocument, ShadowMetadata, ShadowRefusal, ShadowState, Stamp,
};
pub use self::topology::{
    DeviceRef, MAX_SUBS_PER_GATEWAY, TopoRefusal, node_type_refusal, plan_add as plan_topology_add,
    plan_remove as plan_topology_remove,
};

pub use crate::BoxFuture;
pub use aliot_admin::NodeType;

/// The longest product name.
pub const MAX_PRODUCT_NAME_LEN: usize = 64;

/// The most devices one batch registration may create.
pub const MAX_BATCH: usize = 100_000;

/// A product.
#[derive(Clone, PartialEq, Eq)]
pub struct Product {
    /// productKey.
    pub product_key: String,
    /// Display name.
    pub name: String,
    /// productSecret (dynamic registration key). Never logged.
    pub product_secret: String,
    /// Creation time, epoch ms.
    pub created_ms: u64,
    /// Number of devices registered in the product.
    pub device_count: usize,
    /// Whether devices may register themselves with the productSecret (spec §5.1, §5.2; off
    /// for a new product, as on the platform).
    pub dynamic_registration: bool,
    /// Direct device, gateway or sub-device (cloud-side §5).
    pub node_type: NodeType,
}

impl fmt::Debug for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Product")
            .field("product_key", &self.product_key)
            .field("name", &self.name)
            .field("product_secret", &"<redacted>")
            .field("created_ms", &self.created_ms)
            .field("device_count", &self.device_count)
            .field("dynamic_registration", &self.dynamic_registration)
            .field("node_type", &self.node_type)
            .finish()
    }
}

/// A device as the registry knows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Device {
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// deviceSecret. Never logged.
    pub device_secret: String,
    /// The platform's id of the device.
    pub iot_id: String,
    /// A disabled device is refused at CONNECT (CONNACK 5).
    pub enabled: bool,
    /// Creation time, epoch ms.
    pub created_ms: u64,
    /// Last successful login, epoch ms.
    pub last_online_ms: Option<u64>,
    /// Address of the last successful login.
    pub last_ip: Option<IpAddr>,
    /// How the device last registered itself with its product's secret (`None`: only
    /// registered by the admin API). A device is activated once `last_online_ms` is set.
    pub dynamic_registration: Option<Enrolment>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("product_key", &self.product_key)
            .field("device_name", &self.device_name)
            .field("device_secret", &"<redacted>")
            .field("iot_id", &self.iot_id)
            .field("enabled", &self.enabled)
            .field("created_ms", &self.created_ms)
            .field("last_online_ms", &self.last_online_ms)
            .field("last_ip", &self.last_ip)
            .field("dynamic_registration", &self.dynamic_registration)
            .finish()
    }
}

/// A device to register: its name and, optionally, its secret (generated when `None`).
#[derive(Clone, PartialEq, Eq)]
pub struct NewDevice {
    /// deviceName.
    pub device_name: String,
    /// deviceSecret; `None` → 32 random letters and digits.
    pub device_secret: Option<String>,
}

impl NewDevice {
    /// A device whose secret the registry generates.
    pub fn named(device_name: impl Into<String>) -> Self {
        Self {
            device_name: device_name.into(),
            device_secret: None,
        }
    }
}

impl fmt::Debug for NewDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewDevice")
            .field("device_name", &self.device_name)
            .field(
                "device_secret",
                &self.device_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What the platform needs to know about one device to authenticate it.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceAuth {
    /// The device secret (HMAC key of the CONNECT password). Never logged.
    pub device_secret: String,
    /// A disabled device is refused with CONNACK 5.
    pub enabled: bool,
    /// The platform's id of the device (`iotId`), reported in status events.
    pub iot_id: String,
}

impl fmt::Debug for DeviceAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuth")
            .field("device_secret", &"<redacted>")
            .field("enabled", &self.enabled)
            .field("iot_id", &self.iot_id)
            .finish()
    }
}

/// A product's thing model as imported: the JSON text (what an export answers, as it was
/// given) and the model read from it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductTsl {
    /// The TSL JSON, as imported.
    pub json: String,
    /// The model read from it.
    pub model: aliot_protocol::tsl::Tsl,
}

impl ProductTsl {
    /// Reads a TSL export.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the JSON path and the rule (nothing is stored).
    pub fn from_json(json: String) -> Result<Self> {
        let model = aliot_protocol::tsl::Tsl::from_json(&json)
            .map_err(|e| Error::InvalidArgument(format!("invalid TSL: {e}")))?;
        Ok(Self { json, model })
    }
}

/// What dynamic registration needs to know about a product (served from memory).
#[derive(Clone, PartialEq, Eq)]
pub struct ProductAuth {
    /// The productSecret (HMAC key of a registration). Never logged.
    pub product_secret: String,
    /// Whether the product allows dynamic registration.
    pub dynamic_registration: bool,
}

impl fmt::Debug for ProductAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProductAuth")
            .field("product_secret", &"<redacted>")
            .field("dynamic_registration", &self.dynamic_registration)
            .finish()
    }
}

/// How a device registers itself with its product's secret (spec §5.1, §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enrolment {
    /// The device was registered beforehand (`authType=register`, HTTPS
    /// `/auth/register/device`): it gets a new deviceSecret.
    #[serde(rename = "register")]
    PreRegistered,
    /// Without pre-registration (`authType=regnwl`): the device is created when new, and gets a
    /// new deviceToken for `authType=connwl` logins.
    #[serde(rename = "regnwl")]
    NoPreRegistration,
}

impl Enrolment {
    /// `register` or `regnwl`: the clientId's `authType` of this kind of registration.
    pub fn as_str(self) -> &'static str {
        match self {
            Enrolment::PreRegistered => "register",
            Enrolment::NoPreRegistration => "regnwl",
        }
    }
}

/// What dynamic registration gave a device. Durable when returned.
#[derive(Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// The device as it now is (with its new deviceSecret for [`Enrolment::PreRegistered`]).
    pub device: Device,
    /// The new deviceToken, for [`Enrolment::NoPreRegistration`]. Never logged.
    pub device_token: Option<String>,
}

impl fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrolled")
            .field("device", &self.device)
            .field("device_token", &self.device_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What an enrolment changes, decided by [`enrolment_rule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnrolmentStep {
    /// Give the registered device a new deviceSecret (the old one stops working).
    NewSecret,
    /// Create the device, with a deviceToken.
    Create,
    /// Give the registered device a new deviceToken (the old one stops working).
    NewToken,
}

/// The platform's rules of dynamic registration (spec §5.1, §5.2), which every implementation
/// applies: `existing` is the device as registered (`None` when it is not). A device that has
/// logged in once is activated and cannot register again until it is reset (the platform's
/// 6289); a device that has not may register again, and only its last secret or token is
/// valid; a disabled device cannot register.
///
/// # Errors
/// [`Error::DeviceNotFound`] (pre-registration required), [`Error::AlreadyActivated`],
/// [`Error::DeviceDisabled`].
pub(crate) fn enrolment_rule(
    product_key: &str,
    device_name: &str,
    how: Enrolment,
    existing: Option<&Device>,
) -> Result<EnrolmentStep> {
    let Some(device) = existing else {
        return match how {
            Enrolment::PreRegistered => Err(Error::DeviceNotFound {
                product_key: product_key.to_owned(),
                device_name: device_name.to_owned(),
            }),
            Enrolment::NoPreRegistration => {
                validate_device_name(device_name).map_err(invalid)?;
                Ok(EnrolmentStep::Create)
            }
        };
    };
    if !device.enabled {
        return Err(Error::DeviceDisabled {
            product_key: product_key.to_owned(),
            device_name: device_name.to_owned(),
        });
    }
    if device.last_online_ms.is_some() {
        return Err(Error::AlreadyActivated {
            product_key: product_key.to_owned(),
            device_name: device_name.to_owned(),
        });
    }
    Ok(match how {
        Enrolment::PreRegistered => EnrolmentStep::NewSecret,
        Enrolment::NoPreRegistration => EnrolmentStep::NewToken,
    })
}

// ----- the registration rules every implementation applies -----

/// Checks a product name: 1 to 64 characters, no control characters.
pub(crate) fn validate_product_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::InvalidArgument("the product name is empty".into()));
    }
    if name.chars().count() > MAX_PRODUCT_NAME_LEN {
        return Err(Error::InvalidArgument(format!(
            "the product name is longer than {MAX_PRODUCT_NAME_LEN} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(
            "the product name contains control characters".into(),
        ));
    }
    Ok(())
}

pub(crate) fn invalid(e: aliot_protocol::Error) -> Error {
    Error::InvalidArgument(e.to_string())
}

/// Checks a batch of new devices before any storage work.
pub(crate) fn validate_new_devices(product_key: &str, devices: &[NewDevice]) -> Result<()> {
    if devices.is_empty() {
        return Err(Error::InvalidArgument("no devices to register".into()));
    }
    if devices.len() > MAX_BATCH {
        return Err(Error::InvalidArgument(format!(
            "{} devices in one batch; at most {MAX_BATCH} are allowed",
            devices.len()
        )));
    }
    validate_product_key(product_key).map_err(invalid)?;
    let mut seen = std::collections::HashSet::with_capacity(devices.len());
    for d in devices {
        validate_device_name(&d.device_name).map_err(invalid)?;
        if let Some(s) = &d.device_secret {
            validate_secret("deviceSecret", s).map_err(invalid)?;
        }
        if !seen.insert(d.device_name.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "deviceName {:?} appears twice",
                d.device_name
            )));
        }
    }
    Ok(())
}

/// Counts for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryCounts {
    /// Registered products.
    pub products: u64,
    /// Registered devices.
    pub devices: u64,
    /// Last-online updates that were not written to storage (best-effort writes dropped).
    pub online_updates_dropped: u64,
}

/// The state of a registry's storage, for `/healthz` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryHealth {
    /// Why the registry cannot write now (its storage failed and has not been reopened yet);
    /// `None` when it can. `/healthz` answers 503 with it.
    pub storage_error: Option<String>,
    /// Writes, syncs and reopens that failed in storage.
    pub storage_failures: u64,
    /// Times the storage was reopened after a failure.
    pub reopens: u64,
    /// Records skipped because they could not be decoded, when the file was last read.
    pub records_skipped: u64,
    /// The keys of the first skipped records (`devices/{pk}/{dn}`, `products/{pk}`), at most
    /// [`MAX_REPORTED_RECORDS`].
    pub skipped_records: Vec<String>,
    /// Property posts refused at the per-device limits (answered 6106).
    pub properties_refused: u64,
    /// History rows written durably.
    pub history_rows_written: u64,
    /// History rows not kept: the writer's queue was full or the write failed (their posts were
    /// answered 500).
    pub history_rows_refused: u64,
}

/// Every registry operation the hub needs. Used as `Arc<dyn Registry>`.
pub trait Registry: Send + Sync + fmt::Debug + 'static {
    /// Registers a product; generates the productKey when `product_key` is `None`, and always
    /// generates the productSecret.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name or productKey, [`Error::ProductExists`],
    /// [`Error::Storage`].
    fn create_product<'a>(
        &'a self,
        name: &'a str,
        product_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Product>>;

    /// All products, ordered by productKey.
    fn products(&self) -> BoxFuture<'_, Result<Vec<Product>>>;

    /// One product (`None` when unknown).
    fn product<'a>(&'a self, product_key: &'a str) -> BoxFuture<'a, Result<Option<Product>>>;

    /// Registers devices in one transaction (all or nothing). With `skip_existing`, devices that
    /// already exist are left alone and returned as they are; otherwise an existing one fails
    /// the whole batch with [`Error::DeviceExists`]. Returns the devices in the order given.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty batch, more than [`MAX_BATCH`] devices, a bad
    /// name or secret, or the same name twice; [`Error::ProductNotFound`];
    /// [`Error::DeviceExists`]; [`Error::Storage`].
    fn create_devices<'a>(
        &'a self,
        product_key: &'a str,
        devices: Vec<NewDevice>,
        skip_existing: bool,
    ) -> BoxFuture<'a, Result<Vec<Device>>>;

    /// One device (`None` when unknown).
    fn device<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Device>>>;

    /// The devices of a product, ordered by deviceName.
    ///
    /// # Errors
    /// [`Error::ProductNotFound`].
    fn devices<'a>(&'a self, product_key: &'a str) -> BoxFuture<'a, Result<Vec<Device>>>;

    /// Enables or disables a device; returns it as it now is.
    ///
    /// # Errors
    /// [`Error::DeviceNotFound`], [`Error::Storage`].
    fn set_enabled<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        enabled: bool,
    ) -> BoxFuture<'a, Result<Device>>;

    /// Deletes a device (and what the registry keeps about it); returns what it was.
    ///
    /// # Errors
    /// [`Error::DeviceNotFound`], [`Error::Storage`].
    fn delete_device<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Device>>;

    /// What CONNECT needs to authenticate a device; `None` when the product or the device does
    /// not exist. Served from memory.
    fn device_auth<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Option<DeviceAuth>>;

    /// Records that a device connected (last online time in epoch ms, client address). Best
    /// effort and non-blocking: the caller never waits for it.
    fn device_online(&self, product_key: &str, device_name: &str, ip: IpAddr, at_ms: u64);

    /// Merges reported property values (`{"identifier": value}`) into what the registry keeps
    /// as the device's latest values, all of them or none ([`Properties::remember`]). Best
    /// effort and non-blocking: values of an unknown device are dropped with `Ok`.
    ///
    /// # Errors
    /// [`Error::PropertyLimit`] when keeping them would take the device past its
    /// [`PropertyLimits`]; nothing is kept then.
    fn remember_properties(
        &self,
        product_key: &str,
        device_name: &str,
        values: Map<String, Value>,
    ) -> Result<()>;

    /// The device's latest reported property values (`None` when it never reported any).
    fn last_properties<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Option<Map<String, Value>>>;

    /// What dynamic registration needs to know about a product; `None` when the product does
    /// not exist. Served from memory. A registry without dynamic registration knows none (the
    /// default).
    fn product_auth<'a>(&'a self, product_key: &'a str) -> BoxFuture<'a, Option<ProductAuth>> {
        let _ = product_key;
        Box::pin(std::future::ready(None))
    }

    /// Allows or forbids dynamic registration for a product; returns it as it now is.
    ///
    /// # Errors
    /// [`Error::ProductNotFound`], [`Error::Storage`]; [`Error::Unsupported`] from a registry
    /// without dynamic registration (the default).
    fn set_dynamic_registration<'a>(
        &'a self,
        product_key: &'a str,
        enabled: bool,
    ) -> BoxFuture<'a, Result<Product>> {
        let _ = (product_key, enabled);
        Box::pin(std::future::ready(Err(Error::Unsupported(
            "dynamic registration",
        ))))
    }

    /// Sets a product's node type, durably; returns the product as it now is.
    ///
    /// # Errors
    /// [`Error::ProductNotFound`], [`Error::Storage`]; [`Error::Unsupported`] from a registry
    /// without node types (the default).
    fn set_node_type<'a>(
        &'a self,
        product_key: &'a str,
        node_type: NodeType,
    ) -> BoxFuture<'a, Result<Product>> {
        let _ = (product_key, node_type);
        Box::pin(std::future::ready(Err(Error::Unsupported("node types"))))
    }

    /// Registers a device dynamically by the rules of `enrolment_rule`: a new deviceSecret
    /// or deviceToken, durable before the future resolves with `Ok`. The caller has checked the
    /// product's signature and that the product allows it.
    ///
    /// # Errors
    /// Those of `enrolment_rule`, [`Error::ProductNotFound`], [`Error::Storage`];
    /// [`Error::Unsupported`] from a registry without dynamic registration (the default).
    fn enrol<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        how: Enrolment,
    ) -> BoxFuture<'a, Result<Enrolled>> {
        let _ = (product_key, device_name, how);
        Box::pin(std::future::ready(Err(Error::Unsupported(
            "dynamic registration",
        ))))
    }

    /// The deviceToken of a device that registered without pre-registration (`None` when it
    /// has none). Served from memory.
    fn device_token<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Option<String>> {
        let _ = (product_key, device_name);
        Box::pin(std::future::ready(None))
    }

    /// Makes an activated device registrable again (the platform's `ResetThing`): forgets its
    /// logins (it is no longer activated) and its deviceToken; returns it as it now is.
    ///
    /// # Errors
    /// [`Error::DeviceNotFound`], [`Error::Storage`]; [`Error::Unsupported`] from a registry
    /// without dynamic registration (the default).
    fn reset_device<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Device>> {
        let _ = (product_key, device_name);
        Box::pin(std::future::ready(Err(Error::Unsupported(
            "dynamic registration",
        ))))
    }

    /// The product's thing model (`None` when it has none). From memory and non-blocking: it
    /// is read for every property post.
    fn tsl(&self, product_key: &str) -> Option<std::sync::Arc<ProductTsl>> {
        let _ = product_key;
        None
    }

    /// Stores (`Some`) or removes (`None`) the product's thing model, durably.
    ///
    /// # Errors
    /// [`Error::ProductNotFound`], [`Error::Storage`]; [`Error::Unsupported`] from a registry
    /// without thing models (the default).
    fn set_tsl<'a>(&'a self, product_key: &'a str, tsl: Option<ProductTsl>) -> BoxFuture<'a, Result<()>> {
        let _ = (product_key, tsl);
        Box::pin(std::future::ready(Err(Error::Unsupported("thing models"))))
    }

    /// A device's desired properties (empty when none were set).
    ///
    /// # Errors
    /// [`Error::DeviceNotFound`], [`Error::Storage`]; [`Error::Unsupported`] from a registry
    /// without desired properties (the default).
    fn desired<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<DesiredProperties>> {
        let _ = (product_key, device_name);
        Box::pin(std::future::ready(Err(Error::Unsupported("desired properties"))))
    }

    /// Applies a change to a device's desired properties ([`DesiredProperties::apply`]),
    /// durably before the future resolves with `Ok`.
    ///
    /// # Errors
    /// As [`Registry::desired`], and those of [`DesiredProperties::apply`].
    fn change_desired<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        change: DesiredChange,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<DesiredOutcome>> {
        let _ = (product_key, device_name, change, now_ms);
        Box::pin(std::future::ready(Err(Error::Unsupported("desired properties"))))
    }

    /// A device's shadow (`None` before its first write).
    ///
    /// # Errors
    /// [`Error::DeviceNotFound`], [`Error::Storage`]; [`Error::Unsupported`] from a registry
    /// without shadows (the default).
    fn shadow<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ShadowDocument>>> {
        let _ = (product_key, device_name);
        Box::pin(std::future::ready(Err(Error::Unsupported("device shadows"))))
    }

    /// Applies a change to a device's shadow ([`ShadowDocument::apply`]), durably before the
    /// future resolves with `Ok(Ok(document))`; `Ok(Err(refusal))` changes nothing.
    ///
    /// # Errors
    /// As [`Registry::shadow`].
    fn change_shadow<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        change: ShadowChange,
        now_s: u64,
    ) -> BoxFuture<'a, Result<std::result::Result<ShadowDocument, ShadowRefusal>>> {
        let _ = (product_key, device_name, change, now_s);
        Box::pin(std::future::ready(Err(Error::Unsupported("device shadows"))))
    }

    /// The product's remote configuration: its switch and its file's metadata (the default,
    /// switched on without a file, for a product never configured). From memory and
    /// non-blocking: it is read for every `thing.config.get`.
    fn remote_config(&self, product_key: &str) -> RemoteConfig {
        let _ = product_key;
        RemoteConfig::default()
    }

    /// Stores (`Some`: a new `configId`) or deletes (`None`) the product's configuration file,
    /// durably (file and metadata in one commit); returns the configuration as it now is.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty file or one above 64 KB,
    /// [`Error::ProductNotFound`], [`Error::Storage`]; [`Error::Unsupported`] from a registry
    /// without remote configuration (the default).
    fn set_config_file<'a>(
        &'a self,
        product_key: &'a str,
        file: Option<Vec<u8>>,
    ) -> BoxFuture<'a, Result<RemoteConfig>> {
        let _ = (product_key, file);
        Box::pin(std::future::ready(Err(Error::Unsupported(
            "remote configuration",
        ))))
    }

    /// Switches remote configuration on or off for the product, durably; returns it as it now
    /// is.
    ///
    /// # Errors
    /// [`Error::ProductNotFound`], [`Error::Storage`]; [`Error::Unsupported`] (the default).
    fn set_config_enabled<'a>(
        &'a self,
        product_key: &'a str,
        enabled: bool,
    ) -> BoxFuture<'a, Result<RemoteConfig>> {
        let _ = (product_key, enabled);
        Box::pin(std::future::ready(Err(Error::Unsupported(
            "remote configuration",
        ))))
    }

    /// The product's configuration file with its metadata (`None` when it has none).
    ///
    /// # Errors
    /// [`Error::Storage`].
    fn config_file<'a>(&'a self, product_key: &'a str) -> BoxFuture<'a, Result<Option<ConfigDownload>>> {
        let _ = product_key;
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Adds sub-devices to a gateway's topology, all or none, durably (cloud-side §5); the
    /// gateway's sub-devices afterwards, or the platform's refusal ([`TopoRefusal`]).
    ///
    /// # Errors
    /// [`Error::Storage`]; [`Error::Unsupported`] from a registry without gateways (the default).
    fn add_topology<'a>(
        &'a self,
        gateway: DeviceRef,
        subs: Vec<DeviceRef>,
    ) -> BoxFuture<'a, Result<std::result::Result<Vec<DeviceRef>, TopoRefusal>>> {
        let _ = (gateway, subs);
        Box::pin(std::future::ready(Err(Error::Unsupported("gateways"))))
    }

    /// Removes sub-devices from a gateway's topology, all or none, durably.
    ///
    /// # Errors
    /// As [`Registry::add_topology`].
    fn remove_topology<'a>(
        &'a self,
        gateway: DeviceRef,
        subs: Vec<DeviceRef>,
    ) -> BoxFuture<'a, Result<std::result::Result<Vec<DeviceRef>, TopoRefusal>>> {
        let _ = (gateway, subs);
        Box::pin(std::future::ready(Err(Error::Unsupported("gateways"))))
    }

    /// A gateway's sub-devices, sorted (empty for a device that is no gateway).
    ///
    /// # Errors
    /// As [`Registry::add_topology`].
    fn topology<'a>(&'a self, gateway: DeviceRef) -> BoxFuture<'a, Result<Vec<DeviceRef>>> {
        let _ = gateway;
        Box::pin(std::future::ready(Err(Error::Unsupported("gateways"))))
    }

    /// The gateway a sub-device belongs to.
    ///
    /// # Errors
    /// As [`Registry::add_topology`].
    fn gateway_of<'a>(&'a self, sub: DeviceRef) -> BoxFuture<'a, Result<Option<DeviceRef>>> {
        let _ = sub;
        Box::pin(std::future::ready(Err(Error::Unsupported("gateways"))))
    }

    /// Stores a batch registration application, durably: a new one (`apply_id` `None`; its
    /// ApplyId, never given before, is returned; beyond [`MAX_APPLIES`] the oldest is forgotten)
    /// or a replacement of `apply_id`'s.
    ///
    /// # Errors
    /// [`Error::Storage`]; [`Error::Unsupported`] from a registry without batch applications
    /// (the default).
    fn put_apply<'a>(&'a self, apply_id: Option<u64>, record: ApplyRecord) -> BoxFuture<'a, Result<u64>> {
        let _ = (apply_id, record);
        Box::pin(std::future::ready(Err(Error::Unsupported("batch applications"))))
    }

    /// A batch registration application (`None` when unknown).
    ///
    /// # Errors
    /// As [`Registry::put_apply`].
    fn apply(&self, apply_id: u64) -> BoxFuture<'_, Result<Option<ApplyRecord>>> {
        let _ = apply_id;
        Box::pin(std::future::ready(Err(Error::Unsupported("batch applications"))))
    }

    /// Creates an access key (OpenAPI signatures, AMQP logins), durably; the answer is the only
    /// time its secret is given out.
    ///
    /// # Errors
    /// [`Error::Storage`]; [`Error::InvalidArgument`] at [`MAX_ACCESS_KEYS`];
    /// [`Error::Unsupported`] from a registry without access keys (the default).
    fn create_access_key(&self, description: Option<String>) -> BoxFuture<'_, Result<AccessKey>> {
        let _ = description;
        Box::pin(std::future::ready(Err(Error::Unsupported("access keys"))))
    }

    /// The access keys, sorted by id, without their secrets.
    ///
    /// # Errors
    /// As [`Registry::create_access_key`].
    fn access_keys(&self) -> BoxFuture<'_, Result<Vec<AccessKeyInfo>>> {
        Box::pin(std::future::ready(Err(Error::Unsupported("access keys"))))
    }

    /// Deletes an access key, durably; whether it existed.
    ///
    /// # Errors
    /// As [`Registry::create_access_key`].
    fn delete_access_key<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, Result<bool>> {
        let _ = access_key_id;
        Box::pin(std::future::ready(Err(Error::Unsupported("access keys"))))
    }

    /// The secret of an access key (from memory: every signed request asks).
    fn access_key_secret(&self, access_key_id: &str) -> Option<String> {
        let _ = access_key_id;
        None
    }

    /// The device with this iotId. The default scans every product's devices; implementations
    /// keep an index.
    ///
    /// # Errors
    /// [`Error::Storage`].
    fn device_by_iot_id<'a>(&'a self, iot_id: &'a str) -> BoxFuture<'a, Result<Option<Device>>> {
        Box::pin(async move {
            for product in self.products().await? {
                if let Some(d) = self
                    .devices(&product.product_key)
                    .await?
                    .into_iter()
                    .find(|d| d.iot_id == iot_id)
                {
                    return Ok(Some(d));
                }
            }
            Ok(None)
        })
    }

    /// Counts for `/metrics`.
    fn counts(&self) -> RegistryCounts;

    /// The state of the storage, for `/healthz` and `/metrics`. A registry without storage to
    /// fail is always healthy.
    fn health(&self) -> RegistryHealth {
        RegistryHealth::default()
    }

    /// The clean-session-0 sessions saved by [`Registry::save_sessions`], each with its
    /// messages oldest first (read once, at start). A registry that keeps nothing across
    /// restarts returns none (the default).
    ///
    /// # Errors
    /// [`Error::Storage`].
    fn sessions(&self) -> BoxFuture<'_, Result<Vec<SavedSession>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Applies session changes, in order, durably: when the future resolves with `Ok`, every
    /// change survives a crash. A registry that keeps nothing across restarts accepts and
    /// drops them (the default).
    ///
    /// # Errors
    /// [`Error::Storage`]; nothing of the batch is applied then.
    fn save_sessions(&self, changes: Vec<SessionChange>) -> BoxFuture<'_, Result<()>> {
        drop(changes);
        Box::pin(async { Ok(()) })
    }

    /// Adds rows to a device's history (kept property values, events, calls). The rows are
    /// queued before this returns (rows of successive calls keep their order); the future
    /// resolves once they are durable. A registry without history drops them (the default).
    ///
    /// # Errors
    /// [`Error::Storage`] when the rows cannot be queued or written; nothing of them is kept.
    fn record(
        &self,
        product_key: &str,
        device_name: &str,
        records: Records,
    ) -> BoxFuture<'static, Result<()>> {
        let _ = (product_key, device_name, records);
        Box::pin(std::future::ready(Ok(())))
    }

    /// The latest value and time of each property of a device, by identifier (without the
    /// thing model's names). A registry without history has none (the default).
    ///
    /// # Errors
    /// [`Error::Storage`].
    fn latest_properties<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<LatestProperty>>> {
        let _ = (product_key, device_name);
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// A page of a property's kept values.
    ///
    /// # Errors
    /// [`Error::Storage`]; [`Error::Unsupported`] from a registry without history (the default).
    fn property_history<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        identifier: &'a str,
        window: Window,
    ) -> BoxFuture<'a, Result<Page<PropertyPoint>>> {
        let _ = (product_key, device_name, identifier, window);
        Box::pin(std::future::ready(Err(Error::Unsupported("history"))))
    }

    /// A page of a device's events (of one identifier when given).
    ///
    /// # Errors
    /// As [`Registry::property_history`].
    fn event_history<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        identifier: Option<String>,
        window: Window,
    ) -> BoxFuture<'a, Result<Page<EventRecord>>> {
        let _ = (product_key, device_name, identifier, window);
        Box::pin(std::future::ready(Err(Error::Unsupported("history"))))
    }

    /// A page of the calls made to a device.
    ///
    /// # Errors
    /// As [`Registry::property_history`].
    fn call_log<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        window: Window,
    ) -> BoxFuture<'a, Result<Page<CallRecord>>> {
        let _ = (product_key, device_name, window);
        Box::pin(std::future::ready(Err(Error::Unsupported("history"))))
    }

    /// Writes what is pending and stops background work (at shutdown). Later calls still work
    /// but best-effort writes may stay in memory only.
    fn close(&self) -> BoxFuture<'_, ()>;
}
