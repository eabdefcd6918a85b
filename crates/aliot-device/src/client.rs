//! [`Device`]: the cheap, cloneable handle applications use.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aliot_protocol::alink::{MessageId, Reply, Request, ntp};
use aliot_protocol::codes::alink as code;
use aliot_protocol::topic::{Access, SysPath, Topic, device_may_access, valid_filter, valid_topic};
use aliot_protocol::{SecureMode, SignOptions};
use bytes::Bytes;
use rumqttc::AsyncClient;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::backoff::Schedule;
use crate::clock::now_ms;
use crate::driver::{Driver, Signer};
use crate::error::{Error, Result};
use crate::event::{Connected, Events};
use crate::options::{DeviceOptions, Login, QoS};
use crate::pending::{Correlator, IdGenerator};
use crate::route::system_filters;
use crate::shared::{ConnState, Counters, Shared, lock, rumqttc_qos};
use crate::subs::SubRoutes;

/// A connected (or connecting) device: a cheap handle, `Clone` + `Send` + `Sync`.
///
/// The connection is driven by a background task started by [`Device::connect`] or
/// [`Device::spawn`]; it keeps running, reconnecting and re-signing as needed, until
/// [`Device::disconnect`] is called, every handle is dropped, or a refusal stops it
/// ([`crate::RefusalPolicy`]).
#[derive(Clone)]
pub struct Device {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("product_key", &self.shared().product_key)
            .field("device_name", &self.shared().device_name)
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// Dropping the last handle stops the device.
#[derive(Debug)]
pub(crate) struct Handle {
    shared: Arc<Shared>,
    /// The sub-devices this connection speaks for, when it is a gateway's.
    subs: Arc<SubRoutes>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.request_stop();
    }
}

/// Counters of one device since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Successful connections.
    pub connections: u64,
    /// Plain messages dropped because the event queue was full.
    pub dropped_messages: u64,
    /// Requests answered with code 429 because the event queue was full.
    pub busy_replies: u64,
    /// QoS 1 messages sent again after a connection was lost before their PUBACK.
    pub resent: u64,
    /// QoS 1 messages waiting for their PUBACK now.
    pub unacknowledged: usize,
}

/// The result of an NTP time sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeSync {
    /// The platform's time when the response arrived, epoch ms:
    /// `(serverRecvTime + serverSendTime + deviceRecvTime − deviceSendTime) / 2`.
    pub server_time_ms: i64,
    /// The local clock when the response arrived, epoch ms.
    pub local_time_ms: i64,
    /// `server_time_ms − local_time_ms`: add it to the local clock to get the platform's time.
    pub offset_ms: i64,
    /// Request to response, as measured locally.
    pub round_trip: Duration,
}

impl Device {
    /// Starts the device and waits for its first connection to be ready (CONNACK accepted and,
    /// without `_ss=1` or with subscriptions of your own, the SUBACK back).
    ///
    /// If that first attempt fails (unreachable endpoint, TLS error, CONNACK refusal) the device
    /// stops and the error is returned: [`Error::Refused`] carries the CONNACK code with Aliyun's
    /// cause and the fix. After a first success, connection losses are retried in the
    /// background with backoff, each attempt signed afresh.
    ///
    /// # Errors
    /// Invalid options ([`DeviceOptions::validate`]), an unreadable CA file, or the first
    /// attempt's failure.
    pub async fn connect(options: DeviceOptions) -> Result<(Device, Events)> {
        let (first_tx, first_rx) = oneshot::channel();
        let (device, events) = Self::start(options, Some(first_tx))?;
        match first_rx.await {
            Ok(Ok(_connected)) => Ok((device, events)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Closed),
        }
    }

    /// Starts the device without waiting: connection attempts (the first one included) and
    /// their failures show up on the [`Events`] stream, retried per the backoff and refusal
    /// policy.
    ///
    /// # Errors
    /// Invalid options or an unreadable CA file.
    pub fn spawn(options: DeviceOptions) -> Result<(Device, Events)> {
        Self::start(options, None)
    }

    fn start(
        options: DeviceOptions,
        first: Option<oneshot::Sender<Result<Connected>>>,
    ) -> Result<(Device, Events)> {
        options.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Options("aliot-device needs a tokio runtime".into()));
        }
        let endpoint = &options.endpoint;
        let pk = options.product_key().to_owned();
        let dn = options.device_name().to_owned();
        let token_login = matches!(options.login, Login::Token(_));
        let preauth = crate::preauth::PreAuthClient::of(&options)?;

        let mut extra: Vec<(String, String)> = options
            .extra_params
            .iter()
            .filter(|(k, _)| k != "_ss" && k != "ext")
            .cloned()
            .collect();
        if options.auto_subscribe {
            extra.push(("_ss".into(), "1".into()));
        }
        // A token login announces ext=3, as the platform's SDKs do (bit 0: RRPC on /ext/rrpc).
        let ext = match (options.ext_rrpc, token_login) {
            (false, _) => "0",
            (true, false) => "1",
            (true, true) => "3",
        };
        extra.push(("ext".into(), ext.into()));
        let sign_options = SignOptions {
            client_id_prefix: options.client_id_prefix.clone(),
            timestamp: None,
            sign_method: options.sign_method,
            secure_mode: if endpoint.tls {
                SecureMode::Tls
            } else {
                SecureMode::Tcp
            },
            extra_params: extra,
            hex_case: aliot_protocol::HexCase::Lower,
        };
        let mut signer = Signer::new(options.login.clone(), sign_options);
        // Sign once now so that a bad prefix or parameter is reported before anything starts.
        let first_creds = signer.sign()?;

        let keepalive =
            u16::try_from(options.keepalive.as_secs()).map_err(|_| Error::Options("keepalive".into()))?;
        let (mut mqtt, dial) = crate::transport::mqtt_options(
            first_creds.client_id,
            endpoint,
            options.server_name.as_deref(),
            &options.trust,
        )?;
        let address = dial.address();
        mqtt.set_keep_alive(keepalive);
        mqtt.try_set_clean_session(options.clean_session)
            .map_err(|e| Error::Options(e.to_string()))?;
        mqtt.set_max_packet_size(options.max_packet_size, options.max_packet_size);
        mqtt.set_request_channel_capacity(64);
        let (client, mut eventloop) = AsyncClient::builder(mqtt)
            .try_build()
            .map_err(|e| Error::Options(e.to_string()))?;
        eventloop.set_network_options(crate::transport::network_options(options.connect_timeout));

        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            product_key: pk.clone(),
            device_name: dn.clone(),
            client,
            correlator: Mutex::new(Correlator::default()),
            subscriptions: Mutex::new(BTreeMap::new()),
            conn: watch::Sender::new(ConnState::default()),
            stop: stop_tx,
            stopping: Default::default(),
            outbox: Arc::new(Semaphore::new(options.outbox_capacity)),
            outbox_capacity: options.outbox_capacity,
            ids: IdGenerator::new(rand::random_range(1..=1_000_000)),
            request_timeout: options.request_timeout,
            trust: options.trust.clone(),
            counters: Counters::default(),
            first: Mutex::new(first),
        });
        // Bounded: see `DeviceOptions::event_capacity` for what happens when it is full.
        let (events_tx, events_rx) = mpsc::channel(options.event_capacity);
        let subs = Arc::new(SubRoutes::default());
        let driver = Driver {
            subs: subs.clone(),
            eventloop,
            shared: shared.clone(),
            events: events_tx,
            signer,
            schedule: Schedule::new(options.backoff, options.refusal),
            stop: stop_rx,
            endpoint: address.clone(),
            system_filters: if options.auto_subscribe {
                Vec::new()
            } else {
                system_filters(&pk, &dn, options.ext_rrpc)
            },
            connections: 0,
            signed: (String::new(), String::new()),
            preauth,
            dial,
            configured: address,
        };
        tokio::spawn(driver.run());
        Ok((
            Device {
                handle: Arc::new(Handle { shared, subs }),
            },
            Events { rx: events_rx },
        ))
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    pub(crate) fn subs(&self) -> &Arc<SubRoutes> {
        &self.handle.subs
    }

    /// A handle that does not keep the device running.
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Handle> {
        Arc::downgrade(&self.handle)
    }

    /// The device of a weak handle, if it still runs.
    pub(crate) fn upgrade(weak: &std::sync::Weak<Handle>) -> Option<Device> {
        weak.upgrade().map(|handle| Device { handle })
    }

    /// Whether this connection may send on `topic`: its own namespaces, or those of a
    /// sub-device it is logged in for.
    fn may_access(&self, topic: &str, access: Access) -> bool {
        let shared = self.shared();
        if device_may_access(&shared.product_key, &shared.device_name, topic, access) {
            return true;
        }
        Topic::parse(topic).ok().is_some_and(|t| {
            t.device().is_some_and(|(pk, dn)| {
                self.subs().contains(pk, dn) && device_may_access(pk, dn, topic, access)
            })
        })
    }

    /// The productKey.
    pub fn product_key(&self) -> &str {
        &self.shared().product_key
    }

    /// The deviceName.
    pub fn device_name(&self) -> &str {
        &self.shared().device_name
    }

    /// Whether a connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.shared().is_connected()
    }

    /// Waits until a connection is up.
    ///
    /// # Errors
    /// [`Error::Closed`] when the device stops first.
    pub async fn wait_connected(&self) -> Result<()> {
        let mut rx = self.shared().conn.subscribe();
        let state = *rx
            .wait_for(|s| s.connected || s.closed)
            .await
            .map_err(|_| Error::Closed)?;
        if state.closed { Err(Error::Closed) } else { Ok(()) }
    }

    /// Counters since the device started.
    pub fn stats(&self) -> Stats {
        let s = self.shared();
        Stats {
            connections: s.conn.borrow().generation,
            dropped_messages: s.counters.dropped_messages.load(Ordering::Relaxed),
            busy_replies: s.counters.busy_replies.load(Ordering::Relaxed),
            resent: s.counters.resent.load(Ordering::Relaxed),
            unacknowledged: s.outbox_capacity - s.outbox.available_permits(),
        }
    }

    /// Publishes a message on a topic.
    ///
    /// - QoS 0: sent now; fails with [`Error::NotConnected`] when offline.
    /// - QoS 1: queued and sent as soon as a connection is up, and sent again after every
    ///   reconnect until the platform acknowledges it (at least once). Returns when it is
    ///   acknowledged. At most [`DeviceOptions::outbox_capacity`] messages wait at once; beyond
    ///   that the call fails with [`Error::QueueFull`] and the message is not queued. The
    ///   delivery continues in the background if this future is dropped.
    ///
    /// # Errors
    /// As above, [`Error::InvalidTopic`], [`Error::TopicNotAllowed`] for a topic outside the
    /// device's own namespaces (checked before anything is queued: the platform would close
    /// the connection, and a QoS 1 message would be sent again after every reconnect), or
    /// [`Error::Closed`] when the device stops first.
    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>, qos: QoS) -> Result<()> {
        if !valid_topic(topic) {
            return Err(Error::InvalidTopic(topic.to_owned()));
        }
        if !self.may_access(topic, Access::Publish) {
            return Err(Error::TopicNotAllowed(topic.to_owned()));
        }
        let payload = payload.into();
        match qos {
            QoS::AtMostOnce => self.shared().publish_now(topic, payload, QoS::AtMostOnce).await,
            QoS::AtLeastOnce => self
                .enqueue(topic.to_owned(), payload)?
                .await
                .map_err(|_| Error::Closed)?,
        }
    }

    /// Queues a QoS 1 message; the returned receiver resolves when it is acknowledged.
    fn enqueue(&self, topic: String, payload: Bytes) -> Result<oneshot::Receiver<Result<()>>> {
        let shared = self.shared().clone();
        if shared.stopping() {
            return Err(Error::Closed);
        }
        let permit = shared
            .outbox
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::QueueFull {
                capacity: shared.outbox_capacity,
            })?;
        let (tx, rx) = oneshot::channel();
        // One task per waiting message: its delivery does not depend on the caller staying around.
        tokio::spawn(async move {
            let result = shared.deliver(&topic, payload).await;
            drop(permit);
            let _ = tx.send(result);
        });
        Ok(rx)
    }

    /// Subscribes to a topic filter. The subscription is remembered and restored after every
    /// reconnect; when offline it is only remembered. Returns once the platform granted it (or
    /// at once when offline).
    ///
    /// # Errors
    /// [`Error::InvalidTopic`], or [`Error::SubscribeRejected`] when the platform refuses it
    /// (SUBACK 0x80: not one of the device's topics); a refused filter is forgotten.
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<()> {
        if !valid_filter(filter) {
            return Err(Error::InvalidTopic(filter.to_owned()));
        }
        let shared = self.shared();
        // Insert first, then look at the connection: the network loop marks a connection up and
        // then reads this set, so a filter is either restored by it or sent here (or both).
        lock(&shared.subscriptions).insert(filter.to_owned(), qos);
        if !shared.network_up() {
            return Ok(());
        }
        let notice = shared
            .client
            .subscribe_tracked(filter, rumqttc_qos(qos))
            .await
            .map_err(|_| Error::Closed)?;
        let refused = match notice.wait_async().await {
            Ok(suback) => suback
                .return_codes
                .iter()
                .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)),
            Err(rumqttc::SubscribeNoticeError::V4SubAckFailure(_)) => true,
            // The connection dropped first: the subscription is restored on the next one.
            Err(_) => false,
        };
        if refused {
            lock(&shared.subscriptions).remove(filter);
            return Err(Error::SubscribeRejected {
                filter: filter.to_owned(),
            });
        }
        Ok(())
    }

    /// Forgets a subscription and unsubscribes when connected.
    ///
    /// # Errors
    /// [`Error::InvalidTopic`] or [`Error::Closed`].
    pub async fn unsubscribe(&self, filter: &str) -> Result<()> {
        if !valid_filter(filter) {
            return Err(Error::InvalidTopic(filter.to_owned()));
        }
        let shared = self.shared();
        lock(&shared.subscriptions).remove(filter);
        if shared.is_connected() {
            shared
                .client
                .unsubscribe(filter)
                .await
                .map_err(|_| Error::Closed)?;
        }
        Ok(())
    }

    /// Accepts custom-topic RRPC on one of the device's custom topics (`/{pk}/{dn}/user/...`):
    /// subscribes to `/ext/rrpc/+{topic}`. Requests arrive as [`crate::Event::Rrpc`] with
    /// [`crate::RrpcKind::Custom`].
    ///
    /// # Errors
    /// As [`Device::subscribe`].
    pub async fn subscribe_rrpc(&self, topic: &str) -> Result<()> {
        if !topic.starts_with('/') {
            return Err(Error::InvalidTopic(topic.to_owned()));
        }
        self.subscribe(&format!("/ext/rrpc/+{topic}"), QoS::AtMostOnce)
            .await
    }

    /// Posts properties (`thing.event.property.post`) and waits for the platform's reply.
    /// `params` is `{"Power":"on"}` or the long form `{"Power":{"value":"on","time":…}}`.
    ///
    /// # Errors
    /// [`Error::Timeout`] without a reply in [`DeviceOptions::request_timeout`],
    /// [`Error::Alink`] when the reply's code is not 200, [`Error::QueueFull`], [`Error::Closed`].
    pub async fn post_property(&self, params: Value) -> Result<Reply> {
        self.request(SysPath::PropertyPost, params).await
    }

    /// Posts an event (`thing.event.{id}.post`) with its output values, sent as
    /// `{"value": values, "time": now}`, and waits for the platform's reply.
    ///
    /// # Errors
    /// As [`Device::post_property`].
    pub async fn post_event(&self, event: &str, values: Value) -> Result<Reply> {
        if event.is_empty() || event.contains(['/', '+', '#']) {
            return Err(Error::InvalidTopic(event.to_owned()));
        }
        self.request(
            SysPath::EventPost(event.to_owned()),
            json!({ "value": values, "time": now_ms() }),
        )
        .await
    }

    /// Sends any Alink request on the device's own `/sys/{pk}/{dn}/{path}` topic and waits for
    /// the reply on `{path}_reply` (desired properties, device tags, remote config…).
    ///
    /// # Errors
    /// As [`Device::post_property`]; [`Error::Options`] for a path that has no method.
    pub async fn request(&self, path: SysPath, params: Value) -> Result<Reply> {
        let shared = self.shared();
        self.request_for(&shared.product_key, &shared.device_name, path, params)
            .await
    }

    /// [`Device::request`] on the topics of `(pk, dn)`: the device's own or a sub-device's.
    pub(crate) async fn request_for(
        &self,
        pk: &str,
        dn: &str,
        path: SysPath,
        params: Value,
    ) -> Result<Reply> {
        let method = path
            .method()
            .ok_or_else(|| Error::Options(format!("{path} is not an Alink request topic")))?;
        let topic = Topic::sys(pk, dn, path).to_string();
        self.request_on(topic, method, params).await
    }

    /// Sends an Alink request on `topic` (QoS 1) and waits for the reply with its id.
    pub(crate) async fn request_on(&self, topic: String, method: String, params: Value) -> Result<Reply> {
        let shared = self.shared();
        let id = shared.ids.next_id();
        let request = Request::new(MessageId::new(&id), method.clone(), params);
        let reply = lock(&shared.correlator).expect_reply(&id);
        let _forget = Forget { shared, id: &id };
        let timeout = shared.request_timeout;
        let round_trip = async {
            self.enqueue(topic, Bytes::from(request.to_vec()))?
                .await
                .map_err(|_| Error::Closed)??;
            reply.await.map_err(|_| Error::Closed)?
        };
        let reply = tokio::time::timeout(timeout, round_trip)
            .await
            .map_err(|_| Error::Timeout {
                method: method.clone(),
                id: id.clone(),
                timeout,
            })??;
        if reply.code == code::SUCCESS {
            Ok(reply)
        } else {
            let message = if reply.message.is_empty() {
                code::describe(reply.code).map_or_else(|| "no message".to_owned(), |(m, _)| m.to_owned())
            } else {
                reply.message
            };
            Err(Error::Alink {
                method,
                id: id.clone(),
                code: reply.code,
                message,
            })
        }
    }

    /// Synchronises with the platform's clock over NTP (`/ext/ntp/{pk}/{dn}/request`, QoS 0).
    /// Waits for a connection first if needed (within the request timeout).
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::BadReply`], [`Error::Closed`].
    pub async fn ntp(&self) -> Result<TimeSync> {
        let shared = self.shared();
        let timeout = shared.request_timeout;
        let topic = Topic::NtpRequest {
            product_key: shared.product_key.clone(),
            device_name: shared.device_name.clone(),
        }
        .to_string();
        let exchange = async {
            self.wait_connected().await?;
            let sent = now_ms();
            let rx = lock(&shared.correlator).expect_ntp(&sent.to_string());
            shared
                .publish_now(&topic, Bytes::from(ntp::request(sent)), QoS::AtMostOnce)
                .await?;
            let (payload, received) = rx.await.map_err(|_| Error::Closed)?;
            Ok::<_, Error>((payload, sent, received))
        };
        let (payload, sent, received) =
            tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| Error::Timeout {
                    method: "ntp".into(),
                    id: String::new(),
                    timeout,
                })??;
        let server = ntp::server_time(&payload, received).map_err(|e| Error::BadReply {
            topic: format!("{topic} response"),
            reason: e.to_string(),
        })?;
        let server_time_ms = i64::try_from(server).unwrap_or(i64::MAX);
        let local_time_ms = i64::try_from(received).unwrap_or(i64::MAX);
        Ok(TimeSync {
            server_time_ms,
            local_time_ms,
            offset_ms: server_time_ms.saturating_sub(local_time_ms),
            round_trip: Duration::from_millis(received.saturating_sub(sent)),
        })
    }

    /// Disconnects cleanly (MQTT DISCONNECT after in-flight QoS 1 messages are acknowledged, for
    /// at most 2 s) and waits for the device to stop. Every handle then fails with
    /// [`Error::Closed`]; the events stream ends with [`crate::Event::Stopped`]`(None)`.
    pub async fn disconnect(&self) {
        let shared = self.shared();
        shared.request_stop();
        let mut rx = shared.conn.subscribe();
        let _ = rx.wait_for(|s| s.closed).await;
    }
}

/// Forgets a reply waiter when the request finishes, times out or is dropped.
struct Forget<'a> {
    shared: &'a Shared,
    id: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(&self.shared.correlator).forget_reply(self.id);
    }
}
