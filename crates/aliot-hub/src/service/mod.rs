//! The application service: the platform's API, as the admin REST API (and, later, Aliyun's
//! OpenAPI, server-side subscription and the console) use it.
//!
//! [`Service`] is a cheap `Clone` handle over the registry and the cluster seam. Registry
//! operations with side effects on connected devices live here (disabling a device disconnects
//! it, deleting one forgets its session), as do the platform's calls to devices: "Pub", property
//! set, synchronous services and raw RRPC, each sent through the cluster to wherever the device
//! is connected and, for calls, awaited until the device answers or the deadline passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aliot_protocol::topic::platform_may_send;
use bytes::Bytes;
use rmqtt_codec::v3::QoS;
use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::cluster::{Cluster, Downlink};
use crate::events::Event;
use crate::metrics::{Metrics, inc};
use crate::platform::service as calls;
use crate::platform::tokens::Tokens;
use crate::registry::{Device, NewDevice, Product, ProductTsl, Registry, RegistryCounts};
use crate::table::{CallKey, Delivered, NotSaved, Reach, Undelivered};

mod call_log;
mod config;
mod desired;
mod error;
mod gateway;
mod message_id;
mod model_check;
mod paging;

pub use self::config::ConfigPush;
pub use self::desired::MAX_DESIRED_PER_CALL;
pub use self::error::{Error, Result};
pub use self::paging::{DevicePage, MAX_DEVICE_PAGE, StatusFilter};
pub use crate::cluster::SessionInfo;

/// What the platform's "Pub" did with a message (the admin API's type).
pub use aliot_admin::PublishOutcome;

/// Settings of the service (from `BrokerConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServiceConfig {
    /// Default deadline of calls.
    pub(crate) call_timeout: Duration,
    /// Largest packet a device accepts (remaining length).
    pub(crate) max_packet_size: u32,
}

struct Inner {
    registry: Arc<dyn Registry>,
    tokens: Arc<Tokens>,
    cluster: Arc<dyn Cluster>,
    metrics: Arc<Metrics>,
    config: ServiceConfig,
    next_id: AtomicU64,
    /// Signs the remote configuration download URLs (shared with the platform).
    config_urls: Arc<crate::platform::config::ConfigUrls>,
    /// Upgrade jobs (shared with the platform).
    ota: Arc<crate::ota::Ota>,
    /// Server-side subscription (shared with the platform).
    subscriptions: Arc<crate::subscription::Subscriptions>,
}

/// The platform's API. A cheap `Clone` handle.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("registry", &self.inner.registry)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Removes a waiting call when its caller stops waiting (answer, timeout or a dropped future).
struct AnswerGuard<'a> {
    cluster: &'a dyn Cluster,
    product_key: &'a str,
    device_name: &'a str,
    key: Option<CallKey>,
}

impl Drop for AnswerGuard<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.cluster
                .forget_answer(self.product_key, self.device_name, &key);
        }
    }
}

fn offline(product_key: &str, device_name: &str) -> Error {
    Error::DeviceOffline {
        product_key: product_key.to_owned(),
        device_name: device_name.to_owned(),
    }
}

fn queue_full(product_key: &str, device_name: &str) -> Error {
    Error::QueueFull {
        product_key: product_key.to_owned(),
        device_name: device_name.to_owned(),
    }
}

impl Service {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        registry: Arc<dyn Registry>,
        tokens: Arc<Tokens>,
        cluster: Arc<dyn Cluster>,
        metrics: Arc<Metrics>,
        config: ServiceConfig,
        config_urls: Arc<crate::platform::config::ConfigUrls>,
        ota: Arc<crate::ota::Ota>,
        subscriptions: Arc<crate::subscription::Subscriptions>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry,
                tokens,
                cluster,
                metrics,
                config,
                next_id: AtomicU64::new(1),
                config_urls,
                ota,
                subscriptions,
            }),
        }
    }

    /// Server-side subscription: consumer groups, subscribe relations, backlogs.
    pub fn subscriptions(&self) -> &Arc<crate::subscription::Subscriptions> {
        &self.inner.subscriptions
    }

    /// Forwards a lifecycle message (`create` with the secret, `delete`, `enable`, `disable`)
    /// to the consumer groups that want it; nothing waits for its commit.
    fn lifecycle(&self, device: &Device, action: &str) {
        let of = aliot_protocol::subscription::DeviceOf {
            iot_id: &device.iot_id,
            product_key: &device.product_key,
            device_name: &device.device_name,
        };
        let secret = (action == "create").then_some(device.device_secret.as_str());
        drop(
            self.inner
                .subscriptions
                .lifecycle(of, action, secret, crate::clock::now_ms()),
        );
    }

    /// The OTA room: packages, jobs, tasks, module versions.
    pub fn ota(&self) -> &Arc<crate::ota::Ota> {
        &self.inner.ota
    }

    /// The registry behind the service.
    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.inner.registry
    }

    /// The hub's counters.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The default deadline of calls to devices.
    pub fn call_timeout(&self) -> Duration {
        self.inner.config.call_timeout
    }

    fn next_message_id(&self) -> String {
        // Alink ids are decimal strings in 0..=4294967295 (spec §3.8).
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed) % (1 << 32);
        n.to_string()
    }

    // ----- registry -----

    /// Registers a product (see [`Registry::create_product`]).
    ///
    /// # Errors
    /// As [`Registry::create_product`].
    pub async fn create_product(&self, name: &str, product_key: Option<&str>) -> Result<Product> {
        Ok(self.inner.registry.create_product(name, product_key).await?)
    }

    /// Allows or forbids dynamic registration for a product (see
    /// [`Registry::set_dynamic_registration`]).
    ///
    /// # Errors
    /// As [`Registry::set_dynamic_registration`].
    pub async fn set_dynamic_registration(&self, product_key: &str, enabled: bool) -> Result<Product> {
        Ok(self
            .inner
            .registry
            .set_dynamic_registration(product_key, enabled)
            .await?)
    }

    /// Makes an activated device registrable again (see [`Registry::reset_device`]); its HTTP
    /// tokens are revoked too.
    ///
    /// # Errors
    /// As [`Registry::reset_device`].
    pub async fn reset_device(&self, product_key: &str, device_name: &str) -> Result<Device> {
        self.inner.tokens.revoke(product_key, device_name);
        Ok(self.inner.registry.reset_device(product_key, device_name).await?)
    }

    /// The deviceToken of a device registered without pre-registration.
    pub async fn device_token(&self, product_key: &str, device_name: &str) -> Option<String> {
        self.inner.registry.device_token(product_key, device_name).await
    }

    /// Imports (replaces) a product's thing model, read from the console's TSL export.
    ///
    /// # Errors
    /// [`registry::Error::InvalidArgument`](crate::registry::Error::InvalidArgument) naming
    /// the JSON path of a fault (nothing stored); as [`Registry::set_tsl`].
    pub async fn import_tsl(&self, product_key: &str, json: String) -> Result<std::sync::Arc<ProductTsl>> {
        let tsl = ProductTsl::from_json(json)?;
        let registry = &self.inner.registry;
        registry.set_tsl(product_key, Some(tsl)).await?;
        registry.tsl(product_key).ok_or_else(|| {
            crate::registry::Error::ProductNotFound {
                product_key: product_key.to_owned(),
            }
            .into()
        })
    }

    /// A product's thing model (`None` when it has none).
    pub fn tsl(&self, product_key: &str) -> Option<std::sync::Arc<ProductTsl>> {
        self.inner.registry.tsl(product_key)
    }

    /// Removes a product's thing model: its devices' posts are accepted as they are again.
    ///
    /// # Errors
    /// As [`Registry::set_tsl`].
    pub async fn delete_tsl(&self, product_key: &str) -> Result<()> {
        Ok(self.inner.registry.set_tsl(product_key, None).await?)
    }

    /// All products.
    ///
    /// # Errors
    /// A registry failure.
    pub async fn products(&self) -> Result<Vec<Product>> {
        Ok(self.inner.registry.products().await?)
    }

    /// One product.
    ///
    /// # Errors
    /// [`registry::Error::ProductNotFound`](crate::registry::Error::ProductNotFound).
    pub async fn product(&self, product_key: &str) -> Result<Product> {
        self.inner.registry.product(product_key).await?.ok_or_else(|| {
            crate::registry::Error::ProductNotFound {
                product_key: product_key.to_owned(),
            }
            .into()
        })
    }

    /// Registers devices (see [`Registry::create_devices`]).
    ///
    /// # Errors
    /// As [`Registry::create_devices`].
    pub async fn create_devices(
        &self,
        product_key: &str,
        devices: Vec<NewDevice>,
        skip_existing: bool,
    ) -> Result<Vec<Device>> {
        let created = self
            .inner
            .registry
            .create_devices(product_key, devices, skip_existing)
            .await?;
        // A name registered anew after a deletion may log in again.
        for d in created.iter().filter(|d| d.enabled) {
            self.inner.cluster.unblock(&d.product_key, &d.device_name);
        }
        for d in &created {
            self.lifecycle(d, "create");
        }
        Ok(created)
    }

    /// Registers one device; generates its secret when `device_secret` is `None`.
    ///
    /// # Errors
    /// As [`Registry::create_devices`].
    pub async fn create_device(
        &self,
        product_key: &str,
        device_name: &str,
        device_secret: Option<&str>,
    ) -> Result<Device> {
        let new = NewDevice {
            device_name: device_name.to_owned(),
            device_secret: device_secret.map(str::to_owned),
        };
        let mut created = self.create_devices(product_key, vec![new], false).await?;
        created.pop().ok_or_else(|| {
            crate::registry::Error::DeviceNotFound {
                product_key: product_key.to_owned(),
                device_name: device_name.to_owned(),
            }
            .into()
        })
    }

    /// The device, or which of the product and the device is missing.
    ///
    /// # Errors
    /// [`registry::Error::ProductNotFound`](crate::registry::Error::ProductNotFound) or
    /// [`registry::Error::DeviceNotFound`](crate::registry::Error::DeviceNotFound).
    pub async fn device(&self, product_key: &str, device_name: &str) -> Result<Device> {
        let registry = &self.inner.registry;
        if let Some(d) = registry.device(product_key, device_name).await? {
            return Ok(d);
        }
        if registry.product(product_key).await?.is_none() {
            return Err(crate::registry::Error::ProductNotFound {
                product_key: product_key.to_owned(),
            }
            .into());
        }
        Err(crate::registry::Error::DeviceNotFound {
            product_key: product_key.to_owned(),
            device_name: device_name.to_owned(),
        }
        .into())
    }

    /// The device with this iotId, if any (the registry's index).
    ///
    /// # Errors
    /// The registry's storage errors.
    pub async fn device_by_iot_id(&self, iot_id: &str) -> Result<Option<Device>> {
        Ok(self.inner.registry.device_by_iot_id(iot_id).await?)
    }

    // ----- access keys -----

    /// Creates an access key for the OpenAPI and AMQP; the answer is the only time its secret
    /// is given out.
    ///
    /// # Errors
    /// As [`Registry::create_access_key`].
    pub async fn create_access_key(&self, description: Option<String>) -> Result<crate::registry::AccessKey> {
        Ok(self.inner.registry.create_access_key(description).await?)
    }

    /// The access keys, without their secrets.
    ///
    /// # Errors
    /// As [`Registry::access_keys`].
    pub async fn access_keys(&self) -> Result<Vec<crate::registry::AccessKeyInfo>> {
        Ok(self.inner.registry.access_keys().await?)
    }

    /// Deletes an access key; whether it existed. Requests signed with it are refused from now.
    ///
    /// # Errors
    /// As [`Registry::delete_access_key`].
    pub async fn delete_access_key(&self, access_key_id: &str) -> Result<bool> {
        Ok(self.inner.registry.delete_access_key(access_key_id).await?)
    }

    /// The secret of an access key (from memory), for checking a signature or a login.
    pub fn access_key_secret(&self, access_key_id: &str) -> Option<String> {
        self.inner.registry.access_key_secret(access_key_id)
    }

    /// The devices of a product.
    ///
    /// # Errors
    /// [`registry::Error::ProductNotFound`](crate::registry::Error::ProductNotFound).
    pub async fn devices(&self, product_key: &str) -> Result<Vec<Device>> {
        Ok(self.inner.registry.devices(product_key).await?)
    }

    /// Enables or disables a device. A disabled device is disconnected wherever it is, and a
    /// CONNECT of it that was authenticated just before is refused too: its logins are blocked
    /// in memory before the registry is changed, and stay blocked while it is disabled.
    ///
    /// Disabling disconnects the device even when the registry cannot record the change (its
    /// storage failed): the operator asked for the device to be off now, and the answer is the
    /// registry's error all the same, never a success for a change that was not saved.
    ///
    /// # Errors
    /// As [`Registry::set_enabled`]. When disabling fails in the registry, the device stays
    /// disconnected and blocked in memory (until the hub restarts) and the error says so.
    pub async fn set_enabled(&self, product_key: &str, device_name: &str, enabled: bool) -> Result<Device> {
        let cluster = &self.inner.cluster;
        if !enabled {
            // Its HTTP tokens open nothing any more (they are checked again at each use).
            self.inner.tokens.revoke(product_key, device_name);
        }
        if !enabled && cluster.block(product_key, device_name) {
            tracing::info!(product_key, device_name, "disabled device disconnected");
        }
        let method = if enabled { "thing.enable" } else { "thing.disable" };
        let topology = self.notify_gateway(product_key, device_name, method).await;
        self.publish_all(topology);
        let device = self
            .inner
            .registry
            .set_enabled(product_key, device_name, enabled)
            .await;
        match (&device, enabled) {
            (Ok(_), true) => cluster.unblock(product_key, device_name),
            (Err(crate::registry::Error::DeviceNotFound { .. }), false) => {
                cluster.unblock(product_key, device_name);
            }
            (Err(e), false) => {
                tracing::warn!(product_key, device_name, error = %e, "device disconnected and blocked, but its disabling was not saved");
            }
            _ => {}
        }
        if let Ok(d) = &device {
            self.lifecycle(d, if enabled { "enable" } else { "disable" });
        }
        Ok(device?)
    }

    /// Tells a sub-device's gateway that the sub-device was disabled, enabled or deleted
    /// (`method`): `/sys/{pk}/{dn}/thing/{disable|enable|delete}` on the gateway's connection
    /// (reaching it when it subscribed the topic), and for a disable or delete a notice on its
    /// `/ext/error/{gwPk}/{gwDn}` (522, 521) and the sub-device's logout. Best effort: nothing
    /// happens for a device in no topology or a gateway offline.
    ///
    /// Returns the topology events of the change (`thing/topo/lifecycle`: `enable`, `disable`,
    /// or `remove` for a deletion) for the caller to publish once the change is made; none when
    /// nobody listens.
    async fn notify_gateway(&self, product_key: &str, device_name: &str, method: &str) -> Vec<Event> {
        let sub = (product_key.to_owned(), device_name.to_owned());
        let Ok(Some(gw)) = self.inner.registry.gateway_of(sub.clone()).await else {
            return Vec::new();
        };
        let cluster = &self.inner.cluster;
        let action = method.trim_start_matches("thing.");
        let (lifecycle, by) = match method {
            "thing.enable" => ("enable", "enabled"),
            "thing.disable" => ("disable", "disabled"),
            _ => ("remove", "deleted"),
        };
        let events = if cluster.observed()
            || self
                .inner
                .subscriptions
                .wants(&gw.0, crate::subscription::Family::DeviceTopoLifeCycleFlag)
        {
            crate::events::TopologyEvent::of(
                &*self.inner.registry,
                lifecycle,
                by,
                &gw,
                std::slice::from_ref(&sub),
                crate::clock::now_ms(),
            )
            .await
        } else {
            Vec::new()
        };
        let id: u64 = self.next_message_id().parse().unwrap_or_default();
        let notice = Downlink {
            topic: format!("/sys/{product_key}/{device_name}/thing/{action}"),
            payload: Bytes::from(crate::platform::gateway::downlink(
                id,
                method,
                Value::Object(Map::new()),
            )),
            qos: QoS::AtMostOnce,
        };
        let _ = cluster.deliver(&gw.0, &gw.1, notice, Reach::OnlineOnly);
        let code = match method {
            "thing.disable" => aliot_protocol::gateway::code::DISABLED,
            "thing.delete" => aliot_protocol::gateway::code::DELETED,
            _ => return events,
        };
        let error = Downlink {
            topic: format!("/ext/error/{}/{}", gw.0, gw.1),
            payload: Bytes::from(crate::platform::gateway::error_notice(
                id,
                code,
                if code == aliot_protocol::gateway::code::DISABLED {
                    "sub-device disabled"
                } else {
                    "sub-device deleted"
                },
                &sub,
            )),
            qos: QoS::AtMostOnce,
        };
        let _ = cluster.deliver(&gw.0, &gw.1, error, Reach::OnlineOnly);
        self.logout_sub(product_key, device_name, &format!("sub-device {action}d"))
            .await;
        events
    }

    /// Publishes events (built only while someone listens).
    fn publish_all(&self, events: Vec<Event>) {
        self.inner.subscriptions.topology(&events);
        for e in events {
            self.inner.cluster.publish(e);
        }
    }

    /// Deletes a device, disconnects it and forgets its stored session and offline queue.
    /// Returns the deleted device and whether it was online. Its logins stay blocked until a
    /// device of that name is registered again (a CONNECT authenticated just before the deletion
    /// cannot bring it back online).
    ///
    /// When the registry cannot delete it (its storage failed), the device is still
    /// disconnected (the operator wants it gone) but its stored session is kept, as the device
    /// still exists; the answer is the registry's error.
    ///
    /// # Errors
    /// As [`Registry::delete_device`].
    pub async fn delete_device(&self, product_key: &str, device_name: &str) -> Result<(Device, bool)> {
        let cluster = &self.inner.cluster;
        self.inner.tokens.revoke(product_key, device_name);
        // Before the registry forgets its topology.
        let topology = self
            .notify_gateway(product_key, device_name, "thing.delete")
            .await;
        let was_online = cluster.block(product_key, device_name);
        let device = match self.inner.registry.delete_device(product_key, device_name).await {
            Ok(d) => d,
            Err(e) => {
                // Still registered: it may log in again (its stored session is kept).
                cluster.unblock(product_key, device_name);
                if was_online {
                    tracing::warn!(product_key, device_name, error = %e, "device disconnected, but its deletion was not saved");
                }
                return Err(e.into());
            }
        };
        cluster.forget(product_key, device_name);
        self.lifecycle(&device, "delete");
        self.publish_all(topology);
        Ok((device, was_online))
    }

    // ----- devices' state -----

    /// Closes the device's connection wherever it is (it may log in again); returns whether it
    /// was online.
    pub fn disconnect(&self, product_key: &str, device_name: &str) -> bool {
        self.inner.cluster.disconnect(product_key, device_name)
    }

    /// The device's MQTT session, when it is online.
    pub fn session(&self, product_key: &str, device_name: &str) -> Option<SessionInfo> {
        self.inner.cluster.session(product_key, device_name)
    }

    /// Whether the device is online.
    pub fn is_online(&self, product_key: &str, device_name: &str) -> bool {
        self.inner.cluster.locate(product_key, device_name).is_some()
    }

    /// The deviceNames of a product's online devices, sorted.
    pub fn online_devices(&self, product_key: &str) -> Vec<String> {
        self.inner.cluster.online_devices(product_key)
    }

    /// The device's last reported property values, merged per property (from property posts in
    /// the short form `{"k": v}` and the long form `{"k": {"value": v, "time": t}}`).
    pub async fn last_properties(&self, product_key: &str, device_name: &str) -> Option<Map<String, Value>> {
        self.inner
            .registry
            .last_properties(product_key, device_name)
            .await
    }

    /// A new subscription to the hub's events (see [`crate::events`]). A receiver that falls
    /// further behind than the event ring holds gets `RecvError::Lagged` and skips ahead.
    pub fn events(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.cluster.subscribe()
    }

    /// The counters of the hub in Prometheus text format (without the process figures).
    pub fn render_metrics(&self) -> String {
        let mut out = self.inner.metrics.render(self.inner.cluster.gauges());
        render_registry(&mut out, self.inner.registry.counts());
        out
    }

    // ----- calls to devices -----

    fn check_size(&self, topic: &str, payload: &Bytes) -> Result<()> {
        let size = 2 + topic.len() + 2 + payload.len();
        let max = self.inner.config.max_packet_size;
        if size > max as usize {
            return Err(Error::InvalidArgument(format!(
                "message of {size} bytes exceeds the packet limit of {max} bytes"
            )));
        }
        Ok(())
    }

    /// The platform's "Pub": sends `payload` on `topic` to a device, at QoS 0 or 1.
    ///
    /// The topic must be one the device could subscribe to (its own namespaces or its product's
    /// broadcast topics), without wildcards.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for QoS 2, a topic outside the device's namespaces or a payload
    /// above the packet limit; `DeviceNotFound`/`ProductNotFound` from the registry;
    /// [`Error::DeviceOffline`] when the device is offline and the message cannot be queued
    /// (QoS 0, or no clean-session-0 session); [`Error::QueueFull`] when the device's queue
    /// cannot take it.
    async fn publish_unlogged(
        &self,
        product_key: &str,
        device_name: &str,
        topic: &str,
        payload: Bytes,
        qos: u8,
    ) -> Result<PublishOutcome> {
        let qos = match qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            q => {
                return Err(Error::InvalidArgument(format!(
                    "QoS {q} is not supported (0 or 1)"
                )));
            }
        };
        self.device(product_key, device_name).await?;
        if !platform_may_send(product_key, device_name, topic) {
            return Err(Error::InvalidArgument(format!(
                "{topic:?} is not a topic of device {product_key}/{device_name}"
            )));
        }
        self.check_size(topic, &payload)?;
        let downlink = Downlink {
            topic: topic.to_owned(),
            payload,
            qos,
        };
        let cluster = &self.inner.cluster;
        let taken = match cluster.deliver(product_key, device_name, downlink, Reach::OnlineOrQueued) {
            Ok(taken) => taken,
            Err(Undelivered::Offline) => return Err(offline(product_key, device_name)),
            Err(Undelivered::QueueFull) => return Err(queue_full(product_key, device_name)),
        };
        // A message a clean-session-0 device is owed is answered once it is on disk.
        if let Some(ticket) = taken.ticket {
            cluster.saved(ticket).await.map_err(|NotSaved| Error::NotSaved {
                product_key: product_key.to_owned(),
                device_name: device_name.to_owned(),
            })?;
        }
        Ok(match taken.delivered {
            Delivered::Online => PublishOutcome::Delivered,
            Delivered::Queued => PublishOutcome::Queued,
            Delivered::NotSubscribed => PublishOutcome::NotSubscribed,
        })
    }

    /// Sets properties on a device: sends `thing.service.property.set` on
    /// `/sys/{pk}/{dn}/thing/service/property/set` and returns the device's `set_reply` JSON.
    ///
    /// # Errors
    /// `DeviceNotFound`, [`Error::DeviceOffline`], [`Error::NotSubscribed`] (no subscription to
    /// the set topic and no `_ss=1`), [`Error::Timeout`], [`Error::BadReply`] when the answer is
    /// not JSON, [`Error::TooManyPendingCalls`], [`Error::QueueFull`]; [`Error::ThingModel`]
    /// when the params break the product's thing model (nothing is sent).
    pub async fn set_property(
        &self,
        product_key: &str,
        device_name: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value> {
        self.set_property_with_id(product_key, device_name, params, timeout)
            .await
            .map(|(_, reply)| reply)
    }

    /// As [`Service::set_property`], with the Alink id the request was sent with (the
    /// OpenAPI's `MessageId`).
    ///
    /// # Errors
    /// As [`Service::set_property`].
    pub async fn set_property_with_id(
        &self,
        product_key: &str,
        device_name: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<(String, Value)> {
        let tsl = self.tsl(product_key);
        model_check::check(
            tsl.as_deref().map(|t| &t.model),
            model_check::Call::PropertySet,
            &params,
        )?;
        let id = self.next_message_id();
        let (topic, body, key) = calls::property_set(product_key, device_name, &id, params);
        let reply = self
            .call(product_key, device_name, topic, Bytes::from(body), key, timeout)
            .await?;
        Ok((id, json_reply(product_key, device_name, &reply)?))
    }

    /// Invokes a service synchronously, over RRPC in the style the device announced in its
    /// clientId (spec §4.3): with `ext` bit 0 set, on
    /// `/ext/rrpc/{id}/sys/{pk}/{dn}/thing/service/{identifier}` (answered on the same topic);
    /// otherwise on `/sys/{pk}/{dn}/rrpc/request/{id}` (answered on `…/rrpc/response/{id}`).
    /// Returns the device's reply JSON.
    ///
    /// # Errors
    /// As [`Service::set_property`] (RRPC needs no subscription), plus
    /// [`Error::InvalidArgument`] for an identifier that is empty or contains `/`, `+` or `#`.
    pub async fn invoke_service(
        &self,
        product_key: &str,
        device_name: &str,
        identifier: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value> {
        self.invoke_service_with_id(product_key, device_name, identifier, params, timeout)
            .await
            .map(|(_, reply)| reply)
    }

    /// As [`Service::invoke_service`], with the Alink id the request was sent with (the
    /// OpenAPI's `MessageId`).
    ///
    /// # Errors
    /// As [`Service::invoke_service`].
    pub async fn invoke_service_with_id(
        &self,
        product_key: &str,
        device_name: &str,
        identifier: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<(String, Value)> {
        if !calls::valid_identifier(identifier) {
            return Err(Error::InvalidArgument(format!(
                "bad service identifier {identifier:?}"
            )));
        }
        let tsl = self.tsl(product_key);
        let call = model_check::Call::Service(identifier);
        model_check::check(tsl.as_deref().map(|t| &t.model), call, &params)?;
        self.device(product_key, device_name).await?;
        let session = self
            .session(product_key, device_name)
            .ok_or_else(|| offline(product_key, device_name))?;
        let id = self.next_message_id();
        let (topic, body, key) = calls::service_call(
            product_key,
            device_name,
            session.ext_rrpc,
            &id,
            identifier,
            params,
        );
        // The device's answer must fit the caps too (the topic it replies on, the method it
        // echoes): a call it could not answer is refused here rather than timed out.
        let method_len = "thing.service.".len() + identifier.len();
        if !platform_may_send(product_key, device_name, &topic)
            || method_len > aliot_protocol::alink::MAX_METHOD_LEN
        {
            return Err(Error::InvalidArgument(format!(
                "service identifier of {} bytes is too long for the call's topic or method",
                identifier.len()
            )));
        }
        let reply = self
            .call(product_key, device_name, topic, Bytes::from(body), key, timeout)
            .await?;
        Ok((id, json_reply(product_key, device_name, &reply)?))
    }

    /// Raw RRPC: sends `payload` on `/sys/{pk}/{dn}/rrpc/request/{id}` and returns the bytes the
    /// device answers on `/sys/{pk}/{dn}/rrpc/response/{id}`.
    ///
    /// # Errors
    /// As [`Service::invoke_service`].
    pub async fn rrpc(
        &self,
        product_key: &str,
        device_name: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes> {
        self.rrpc_with_id(product_key, device_name, payload, timeout)
            .await
            .map(|(_, answer)| answer)
    }

    /// As [`Service::rrpc`], with the request's message id.
    ///
    /// # Errors
    /// As [`Service::rrpc`].
    pub async fn rrpc_with_id(
        &self,
        product_key: &str,
        device_name: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<(String, Bytes)> {
        let id = self.next_message_id();
        let (topic, key) = calls::raw_rrpc(product_key, device_name, &id);
        let answer = self
            .call(product_key, device_name, topic, payload, key, timeout)
            .await?;
        Ok((id, answer))
    }

    /// RRPC on a custom topic (the OpenAPI's `RRpc` with `Topic`): `payload` on
    /// `/ext/rrpc/{id}{topic}`, answered by the device on the same topic; the message id and the
    /// answer.
    ///
    /// # Errors
    /// As [`Service::rrpc`], and [`Error::InvalidArgument`] for a topic the platform may not
    /// send to the device.
    pub async fn rrpc_on(
        &self,
        product_key: &str,
        device_name: &str,
        topic: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<(String, Bytes)> {
        if !platform_may_send(product_key, device_name, topic) {
            return Err(Error::InvalidArgument(format!(
                "{topic:?} is not a topic of device {product_key}/{device_name}"
            )));
        }
        let id = self.next_message_id();
        let full = format!("/ext/rrpc/{id}{topic}");
        let key = crate::table::CallKey::Rrpc(id.clone());
        let answer = self
            .call(product_key, device_name, full, payload, key, timeout)
            .await?;
        Ok((id, answer))
    }

    /// Sends a QoS 0 request to an online device and waits for the answer matching `key`
    /// (the call log's `call` logs it).
    async fn call_unlogged(
        &self,
        product_key: &str,
        device_name: &str,
        topic: String,
        payload: Bytes,
        key: CallKey,
        timeout: Duration,
    ) -> Result<Bytes> {
        self.device(product_key, device_name).await?;
        self.check_size(&topic, &payload)?;
        let cluster = &*self.inner.cluster;
        // Registered before the request is sent: the answer cannot overtake the registration.
        let rx = cluster
            .expect_answer(product_key, device_name, key.clone())
            .map_err(|_| Error::TooManyPendingCalls {
                product_key: product_key.to_owned(),
                device_name: device_name.to_owned(),
            })?;
        let mut guard = AnswerGuard {
            cluster,
            product_key,
            device_name,
            key: Some(key.clone()),
        };
        let downlink = Downlink {
            topic: topic.clone(),
            payload,
            qos: QoS::AtMostOnce,
        };
        match cluster
            .deliver(product_key, device_name, downlink, Reach::OnlineOnly)
            .map(|t| t.delivered)
        {
            Ok(Delivered::Online) => {}
            Ok(Delivered::NotSubscribed) => {
                return Err(Error::NotSubscribed {
                    product_key: product_key.to_owned(),
                    device_name: device_name.to_owned(),
                    topic,
                });
            }
            Ok(Delivered::Queued) | Err(Undelivered::Offline) => {
                return Err(offline(product_key, device_name));
            }
            Err(Undelivered::QueueFull) => return Err(queue_full(product_key, device_name)),
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => {
                guard.key = None;
                Ok(answer)
            }
            Ok(Err(_)) => Err(offline(product_key, device_name)),
            Err(_) => {
                inc(&self.inner.metrics.calls_timed_out);
                Err(Error::Timeout {
                    product_key: product_key.to_owned(),
                    device_name: device_name.to_owned(),
                    call: key.to_string(),
                    after: timeout,
                })
            }
        }
    }
}

fn json_reply(product_key: &str, device_name: &str, reply: &Bytes) -> Result<Value> {
    serde_json::from_slice(reply).map_err(|source| Error::BadReply {
        product_key: product_key.to_owned(),
        device_name: device_name.to_owned(),
        preview: String::from_utf8_lossy(&reply[..reply.len().min(200)]).into_owned(),
        source,
    })
}

fn render_registry(out: &mut String, counts: RegistryCounts) {
    use std::fmt::Write as _;
    let RegistryCounts {
        products,
        devices,
        online_updates_dropped,
    } = counts;
    let _ = write!(
        out,
        "# HELP aliot_hub_registry_products Registered products.\n\
         # TYPE aliot_hub_registry_products gauge\naliot_hub_registry_products {products}\n\
         # HELP aliot_hub_registry_devices Registered devices.\n\
         # TYPE aliot_hub_registry_devices gauge\naliot_hub_registry_devices {devices}\n\
         # HELP aliot_hub_registry_online_updates_dropped_total Last-online times not written to disk \
         because the writer queue was full.\n\
         # TYPE aliot_hub_registry_online_updates_dropped_total counter\n\
         aliot_hub_registry_online_updates_dropped_total {online_updates_dropped}\n"
    );
}
