//! Gateways: one MQTT connection that speaks for many sub-devices (cloud-side spec §5).
//!
//! A [`Gateway`] wraps a connected [`Device`] (the gateway's own identity). It manages the
//! topology (`thing.topo.add|delete|get`), registers sub-devices (`thing/sub/register`) and logs
//! them in and out on `/ext/session/{pk}/{dn}/combine/…`, singly or in batches of at most
//! [`MAX_BATCH`]. Each logged-in sub-device gets a [`SubDevice`] handle with the thing API of a
//! direct device and its own [`Events`] stream (property sets, service calls, RRPC), all on the
//! gateway's connection. After a reconnect the gateway logs its sub-devices in again (in
//! batches) and subscribes their topics before their handles are usable again.
//!
//! ```no_run
//! use aliot_device::gateway::Gateway;
//! use aliot_device::{Device, DeviceOptions, Event};
//! use aliot_protocol::{DeviceIdentity, Endpoint};
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let endpoint = Endpoint::custom("127.0.0.1", Some(1883), false)?;
//! let gw = DeviceIdentity::new("a1Gw000000A", "gw-01", "gateway-secret")?;
//! let (device, _gateway_events) = Device::connect(DeviceOptions::new(gw, endpoint)).await?;
//! let gateway = Gateway::new(device).await?;
//!
//! let sensor = DeviceIdentity::new("a1Sub00000A", "sensor-07", "sub-secret")?;
//! gateway.add_topo(&[sensor.clone()]).await?;
//! let (sub, mut events) = gateway.login(sensor).await?;
//! sub.post_property(json!({"Temperature": 21.5})).await?;
//! while let Some(event) = events.recv().await {
//!     if let Event::PropertySet(set) = event {
//!         set.reply(Ok(json!({}))).await?;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::sync::{Arc, Weak};

use aliot_protocol::DeviceIdentity;
use aliot_protocol::alink::Reply;
use aliot_protocol::gateway::{
    BatchLogin, LoginParams, MAX_BATCH, RegisteredSubDevice, SubDeviceKey, SubSignMethod, TopoAddItem, topic,
};
use aliot_protocol::topic::SysPath;
use bytes::Bytes;
use rumqttc::SubscribeFilter;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::client::{Device, Handle};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::event::Events;
use crate::options::QoS;
use crate::route::system_filters;
use crate::subs::SubRoute;
use crate::thing::ThingModel;

/// How many events wait, per sub-device, for the application by default.
pub const DEFAULT_SUB_EVENT_CAPACITY: usize = 64;

/// A gateway: a [`Device`] that also speaks for sub-devices. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Gateway {
    device: Device,
    event_capacity: usize,
    sign_method: SubSignMethod,
}

impl Gateway {
    /// Makes `device` a gateway: subscribes the gateway's reply and notice topics (remembered
    /// across reconnects) and starts restoring its sub-device sessions after every reconnect.
    /// Call it once per device.
    ///
    /// # Errors
    /// As [`Device::subscribe`].
    pub async fn new(device: Device) -> Result<Self> {
        let (pk, dn) = (device.product_key().to_owned(), device.device_name().to_owned());
        let p = format!("/sys/{pk}/{dn}/thing");
        let filters = [
            format!("{p}/topo/add_reply"),
            format!("{p}/topo/delete_reply"),
            format!("{p}/topo/get_reply"),
            format!("{p}/topo/change"),
            format!("{p}/topo/add/notify"),
            format!("{p}/sub/register_reply"),
            format!("{p}/list/found_reply"),
            topic::error(&pk, &dn),
        ]
        .into_iter()
        .chain(
            ["login", "logout", "batch_login", "batch_logout"]
                .iter()
                .map(|a| topic::reply(&topic::session(&pk, &dn, a))),
        );
        for filter in filters {
            device.subscribe(&filter, QoS::AtLeastOnce).await?;
        }
        let gateway = Self {
            device,
            event_capacity: DEFAULT_SUB_EVENT_CAPACITY,
            sign_method: SubSignMethod::HMAC_SHA256,
        };
        tokio::spawn(restore_sessions(gateway.device.downgrade(), gateway.sign_method));
        Ok(gateway)
    }

    /// How many events wait per sub-device for the application (at least 1). When a
    /// sub-device's queue is full, a request to it is answered with code 429 and other
    /// messages are dropped, as for a direct device.
    pub fn with_event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// The sign method of topo adds and logins (default `hmacSha256`, as the C and Python SDKs).
    pub fn with_sign_method(mut self, method: SubSignMethod) -> Self {
        self.sign_method = method;
        self
    }

    /// The gateway's own device handle.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Counts the reconnects after which the sub-devices were logged in again (successfully or
    /// not: failures are logged): wait on it to know the sessions are back.
    pub fn restores(&self) -> watch::Receiver<u64> {
        self.device.subs().restored.subscribe()
    }

    /// How many sub-devices are logged in through this gateway.
    pub fn logged_in(&self) -> usize {
        self.device.subs().len()
    }

    fn gw_topic(&self, f: fn(&str, &str) -> String) -> String {
        f(self.device.product_key(), self.device.device_name())
    }

    /// Adds sub-devices to the gateway's topology (`thing.topo.add`, each signed with its
    /// deviceSecret).
    ///
    /// # Errors
    /// [`Error::Alink`] with the platform's code (401 sign, 6402 itself, 6400 too many, 6100…),
    /// [`Error::Timeout`], [`Error::Closed`].
    pub async fn add_topo(&self, subs: &[DeviceIdentity]) -> Result<Reply> {
        let ts = now_ms().to_string();
        let items: Vec<TopoAddItem> = subs
            .iter()
            .map(|s| TopoAddItem::signed(s, &ts, self.sign_method))
            .collect();
        self.device
            .request_on(
                self.gw_topic(topic::topo_add),
                "thing.topo.add".into(),
                json!(items),
            )
            .await
    }

    /// Removes sub-devices from the topology (`thing.topo.delete`).
    ///
    /// # Errors
    /// As [`Gateway::add_topo`] (6100, 6401).
    pub async fn delete_topo(&self, subs: &[SubDeviceKey]) -> Result<Reply> {
        self.device
            .request_on(
                self.gw_topic(topic::topo_delete),
                "thing.topo.delete".into(),
                json!(subs),
            )
            .await
    }

    /// The gateway's topology (`thing.topo.get`).
    ///
    /// # Errors
    /// As [`Gateway::add_topo`], or [`Error::BadReply`] when `data` is not a list of devices.
    pub async fn get_topo(&self) -> Result<Vec<SubDeviceKey>> {
        let t = self.gw_topic(topic::topo_get);
        let reply = self
            .device
            .request_on(t.clone(), "thing.topo.get".into(), json!({}))
            .await?;
        serde_json::from_value(reply.data).map_err(|e| Error::BadReply {
            topic: topic::reply(&t),
            reason: e.to_string(),
        })
    }

    /// Registers sub-devices dynamically (`thing/sub/register`) and returns their deviceSecrets.
    ///
    /// # Errors
    /// As [`Gateway::add_topo`] (6288 dynamic registration off, 6619 bound elsewhere…).
    pub async fn register(&self, subs: &[SubDeviceKey]) -> Result<Vec<RegisteredSubDevice>> {
        let t = self.gw_topic(topic::sub_register);
        let reply = self
            .device
            .request_on(t.clone(), "thing.sub.register".into(), json!(subs))
            .await?;
        serde_json::from_value(reply.data).map_err(|e| Error::BadReply {
            topic: topic::reply(&t),
            reason: e.to_string(),
        })
    }

    /// Logs one sub-device in (`combine.login`) and returns its handle and events.
    ///
    /// # Errors
    /// [`Error::Alink`] with the platform's code (6401 no topology, 6287 sign, 428 too many
    /// online, 521 deleted, 522 disabled), [`Error::Timeout`], [`Error::Closed`].
    pub async fn login(&self, sub: DeviceIdentity) -> Result<(SubDevice, Events)> {
        let params = LoginParams::signed(&sub, &now_ms().to_string(), self.sign_method);
        let t = topic::session(self.device.product_key(), self.device.device_name(), "login");
        self.device
            .request_on(t, "combine.login".into(), json!(params))
            .await?;
        let mut out = self.attach(vec![sub]).await?;
        out.pop().ok_or(Error::Closed)
    }

    /// Logs up to [`MAX_BATCH`] sub-devices in at once (`combine.batch_login`, all or none).
    ///
    /// # Errors
    /// [`Error::Options`] for an empty or oversized batch, otherwise as [`Gateway::login`];
    /// on an error none is logged in.
    pub async fn login_batch(&self, subs: Vec<DeviceIdentity>) -> Result<Vec<(SubDevice, Events)>> {
        batch_login(&self.device, &subs, self.sign_method).await?;
        self.attach(subs).await
    }

    /// Subscribes the sub-devices' topics, then hands out their handles.
    async fn attach(&self, subs: Vec<DeviceIdentity>) -> Result<Vec<(SubDevice, Events)>> {
        let mut out = Vec::with_capacity(subs.len());
        let mut keys = Vec::with_capacity(subs.len());
        for identity in subs {
            // Bounded: see `Gateway::with_event_capacity` for the overflow policy.
            let (tx, rx) = mpsc::channel(self.event_capacity);
            keys.push(SubDeviceKey::from(&identity));
            let handle = SubDevice {
                gateway: self.device.clone(),
                key: Arc::new(SubDeviceKey::from(&identity)),
                model: None,
            };
            self.device.subs().insert(SubRoute { identity, events: tx });
            out.push((handle, Events { rx }));
        }
        subscribe_subs(&self.device, &keys).await?;
        Ok(out)
    }

    /// Logs one sub-device out (`combine.logout`); its event stream ends.
    ///
    /// # Errors
    /// [`Error::Alink`] (520 no session), [`Error::Timeout`], [`Error::Closed`]. The handle is
    /// forgotten locally in every case.
    pub async fn logout(&self, sub: &SubDeviceKey) -> Result<()> {
        self.forget(std::slice::from_ref(sub)).await;
        let t = topic::session(self.device.product_key(), self.device.device_name(), "logout");
        self.device
            .request_on(t, "combine.logout".into(), json!(sub))
            .await
            .map(drop)
    }

    /// Logs up to [`MAX_BATCH`] sub-devices out (`combine.batch_logout`).
    ///
    /// # Errors
    /// [`Error::Options`] for an empty or oversized batch, otherwise as [`Gateway::logout`].
    pub async fn logout_batch(&self, subs: &[SubDeviceKey]) -> Result<()> {
        check_batch(subs.len())?;
        self.forget(subs).await;
        let t = topic::session(
            self.device.product_key(),
            self.device.device_name(),
            "batch_logout",
        );
        self.device
            .request_on(t, "combine.batch_logout".into(), json!(subs))
            .await
            .map(drop)
    }

    async fn forget(&self, subs: &[SubDeviceKey]) {
        for key in subs {
            self.device.subs().remove(&key.product_key, &key.device_name);
            for f in sub_filters(key) {
                // Best effort: the platform drops them with the session anyway.
                let _ = self.device.shared().client.unsubscribe(f).await;
            }
        }
    }
}

/// What the gateway subscribes for a sub-device: its system topics (no shadow, no NTP) and the
/// platform's `thing/disable|enable|delete` notices.
fn sub_filters(key: &SubDeviceKey) -> Vec<String> {
    let (pk, dn) = (&key.product_key, &key.device_name);
    let mut filters: Vec<String> = system_filters(pk, dn, false)
        .into_iter()
        .filter(|f| !f.starts_with("/shadow/") && !f.starts_with("/ext/ntp/"))
        .collect();
    filters.extend(["disable", "enable", "delete"].map(|w| topic::sub_notice(pk, dn, w)));
    filters
}

fn check_batch(n: usize) -> Result<()> {
    if n == 0 || n > MAX_BATCH {
        return Err(Error::Options(format!(
            "a batch holds 1 to {MAX_BATCH} sub-devices, not {n}"
        )));
    }
    Ok(())
}

/// `combine.batch_login` of `subs` (1 to 50).
async fn batch_login(device: &Device, subs: &[DeviceIdentity], method: SubSignMethod) -> Result<Reply> {
    check_batch(subs.len())?;
    let ts = now_ms().to_string();
    let batch = BatchLogin {
        sign_method: None,
        device_list: subs.iter().map(|s| LoginParams::signed(s, &ts, method)).collect(),
    };
    let t = topic::session(device.product_key(), device.device_name(), "batch_login");
    device
        .request_on(t, "combine.batch_login".into(), json!(batch))
        .await
}

/// Subscribes the system topics of sub-devices on the gateway's connection and waits for the
/// SUBACK. Not remembered by the device: [`restore_sessions`] subscribes them again after the
/// next login.
async fn subscribe_subs(device: &Device, keys: &[SubDeviceKey]) -> Result<()> {
    let filters: Vec<SubscribeFilter> = keys
        .iter()
        .flat_map(sub_filters)
        .map(|f| SubscribeFilter::new(f, rumqttc::QoS::AtLeastOnce))
        .collect();
    for chunk in filters.chunks(64) {
        let notice = device
            .shared()
            .client
            .subscribe_many_tracked(chunk.to_vec())
            .await
            .map_err(|_| Error::Closed)?;
        match notice.wait_async().await {
            Ok(suback) => {
                if suback
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    return Err(Error::SubscribeRejected {
                        filter: chunk.first().map(|f| f.path.clone()).unwrap_or_default(),
                    });
                }
            }
            Err(rumqttc::SubscribeNoticeError::V4SubAckFailure(_)) => {
                return Err(Error::SubscribeRejected {
                    filter: chunk.first().map(|f| f.path.clone()).unwrap_or_default(),
                });
            }
            // The connection dropped first: `restore_sessions` subscribes again.
            Err(_) => {}
        }
    }
    Ok(())
}

/// After every reconnect (each new ready connection), logs the sub-devices in again in batches
/// and subscribes their topics. Holds the device weakly: it ends when the device stops.
async fn restore_sessions(device: Weak<Handle>, method: SubSignMethod) {
    let Some(first) = Device::upgrade(&device) else {
        return;
    };
    let mut conn = first.shared().conn.subscribe();
    let mut seen = conn.borrow().generation;
    drop(first);
    loop {
        let state = match conn
            .wait_for(|s| s.closed || (s.connected && s.generation > seen))
            .await
        {
            Ok(state) => *state,
            Err(_) => return,
        };
        if state.closed {
            return;
        }
        seen = state.generation;
        let Some(device) = Device::upgrade(&device) else {
            return;
        };
        let subs = device.subs().identities();
        for chunk in subs.chunks(MAX_BATCH) {
            let keys: Vec<SubDeviceKey> = chunk.iter().map(SubDeviceKey::from).collect();
            match batch_login(&device, chunk, method).await {
                Ok(_) => {
                    if let Err(e) = subscribe_subs(&device, &keys).await {
                        tracing::warn!(error = %e, "sub-device topics not subscribed again");
                    }
                }
                Err(e) => tracing::warn!(error = %e, n = chunk.len(), "sub-devices not logged in again"),
            }
        }
        if !subs.is_empty() {
            tracing::debug!(n = subs.len(), "sub-device sessions restored");
        }
        device.subs().restored.send_modify(|n| *n += 1);
    }
}

/// A logged-in sub-device: the thing API of a direct device, on its gateway's connection.
/// Cheap to clone.
#[derive(Clone)]
pub struct SubDevice {
    gateway: Device,
    key: Arc<SubDeviceKey>,
    model: Option<Arc<ThingModel>>,
}

impl std::fmt::Debug for SubDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubDevice")
            .field("product_key", &self.key.product_key)
            .field("device_name", &self.key.device_name)
            .field("logged_in", &self.is_logged_in())
            .finish()
    }
}

impl SubDevice {
    /// Checks what this handle posts against a thing model (as [`ThingModel::post_property`]).
    pub fn with_model(mut self, model: ThingModel) -> Self {
        self.model = Some(Arc::new(model));
        self
    }

    /// The thing model given to [`SubDevice::with_model`].
    pub fn model(&self) -> Option<&ThingModel> {
        self.model.as_deref()
    }

    /// The productKey.
    pub fn product_key(&self) -> &str {
        &self.key.product_key
    }

    /// The deviceName.
    pub fn device_name(&self) -> &str {
        &self.key.device_name
    }

    /// The (productKey, deviceName) pair.
    pub fn key(&self) -> &SubDeviceKey {
        &self.key
    }

    /// The gateway's device handle.
    pub fn gateway(&self) -> &Device {
        &self.gateway
    }

    /// Whether the gateway still speaks for this sub-device (not logged out).
    pub fn is_logged_in(&self) -> bool {
        self.gateway
            .subs()
            .contains(&self.key.product_key, &self.key.device_name)
    }

    fn check_logged_in(&self) -> Result<()> {
        if self.is_logged_in() {
            Ok(())
        } else {
            Err(Error::Options(format!(
                "sub-device {}/{} is logged out",
                self.key.product_key, self.key.device_name
            )))
        }
    }

    /// Posts properties on the sub-device's topic and waits for the reply (checked against the
    /// thing model first, when one is given).
    ///
    /// # Errors
    /// As [`Device::post_property`]; [`Error::Options`] once logged out.
    pub async fn post_property(&self, params: Value) -> Result<Reply> {
        if let Some(model) = &self.model {
            model.check_properties(&params)?;
        }
        self.request(SysPath::PropertyPost, params).await
    }

    /// Posts an event on the sub-device's topic and waits for the reply.
    ///
    /// # Errors
    /// As [`SubDevice::post_property`].
    pub async fn post_event(&self, event: &str, values: Value) -> Result<Reply> {
        if event.is_empty() || event.contains(['/', '+', '#']) {
            return Err(Error::InvalidTopic(event.to_owned()));
        }
        if let Some(model) = &self.model {
            model.check_event(event, &values)?;
        }
        self.request(
            SysPath::EventPost(event.to_owned()),
            json!({ "value": values, "time": now_ms() }),
        )
        .await
    }

    /// Any Alink request on `/sys/{subPk}/{subDn}/{path}`.
    ///
    /// # Errors
    /// As [`Device::request`]; [`Error::Options`] once logged out.
    pub async fn request(&self, path: SysPath, params: Value) -> Result<Reply> {
        self.check_logged_in()?;
        self.gateway
            .request_for(&self.key.product_key, &self.key.device_name, path, params)
            .await
    }

    /// Publishes on one of the sub-device's topics.
    ///
    /// # Errors
    /// As [`Device::publish`]; [`Error::TopicNotAllowed`] once logged out.
    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>, qos: QoS) -> Result<()> {
        self.gateway.publish(topic, payload, qos).await
    }
}
