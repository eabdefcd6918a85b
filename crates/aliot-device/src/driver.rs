//! The network loop: owns the MQTT event loop, signs every (re)connect afresh, backs off,
//! restores subscriptions, and routes incoming messages without ever waiting for the application.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aliot_protocol::alink::{Reply, Request, read_id};
use aliot_protocol::codes::alink as code;
use aliot_protocol::http_auth::{IotToken, iot_token_credentials};
use aliot_protocol::register::token_credentials;
use aliot_protocol::topic::Topic;
use aliot_protocol::{ConnackCode, SignOptions};
use bytes::Bytes;
use rumqttc::{ConnectionError, EventLoop, Packet, Publish, SubscribeFilter};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::backoff::{Next, Schedule};
use crate::clock::now_ms;
use crate::error::Error;
use crate::event::{
    Connected, Disconnected, Event, Message, PropertySet, Replier, RrpcRequest, ServiceCall, ShadowMessage,
};
use crate::options::{Login, QoS};
use crate::preauth::PreAuthClient;
use crate::route::{Route, route};
use crate::shared::{Shared, lock, rumqttc_qos};
use crate::subs::SubRoutes;
use crate::transport::Dial;
use crate::url::host_port;

/// Signs CONNECTs: a new timestamp (epoch ms, strictly increasing) for every attempt of a
/// secret login; the same fields, token verbatim, for every attempt of a token login; the iotId
/// and iotToken of the last pre-authentication for a pre-auth login.
pub(crate) struct Signer {
    pub(crate) login: Login,
    pub(crate) options: SignOptions,
    last_ms: u64,
    /// The token of the last pre-authentication ([`Login::PreAuth`]), until it is refused.
    pub(crate) iot_token: Option<IotToken>,
    /// Whether `iot_token` was just obtained (no CONNACK has accepted or refused it yet).
    pub(crate) fresh_token: bool,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("login", &self.login)
            .field("options", &self.options)
            .finish()
    }
}

impl Signer {
    pub(crate) fn new(login: Login, options: SignOptions) -> Self {
        Self {
            login,
            options,
            last_ms: 0,
            iot_token: None,
            fresh_token: false,
        }
    }

    /// Fresh credentials. The timestamp never repeats, so no two attempts of a secret login
    /// share a clientId; a token login is not signed and never changes.
    pub(crate) fn sign(&mut self) -> Result<aliot_protocol::Credentials, Error> {
        match &self.login {
            Login::Secret(identity) => {
                let ts = now_ms().max(self.last_ms + 1);
                self.last_ms = ts;
                let mut options = self.options.clone();
                options.timestamp = Some(ts.to_string());
                Ok(aliot_protocol::sign(identity, &options)?)
            }
            Login::Token(token) => Ok(token_credentials(token, &self.options.extra_params)?),
            Login::PreAuth { identity, .. } => {
                // Before the first pre-authentication: the clientId only (checked at start).
                let none = IotToken {
                    iot_id: String::new(),
                    iot_token: String::new(),
                    mqtt: None,
                };
                let token = self.iot_token.as_ref().unwrap_or(&none);
                Ok(iot_token_credentials(
                    identity.product_key(),
                    identity.device_name(),
                    token,
                    &self.options.extra_params,
                )?)
            }
        }
    }
}

pub(crate) struct Driver {
    pub(crate) eventloop: EventLoop,
    pub(crate) shared: Arc<Shared>,
    pub(crate) events: mpsc::Sender<Event>,
    /// Sub-devices a gateway speaks for: their downlinks go to their own queues.
    pub(crate) subs: Arc<SubRoutes>,
    pub(crate) signer: Signer,
    pub(crate) schedule: Schedule,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) endpoint: String,
    pub(crate) system_filters: Vec<String>,
    pub(crate) connections: u64,
    /// clientId and timestamp of the attempt in progress.
    pub(crate) signed: (String, String),
    /// The pre-authentication of a [`Login::PreAuth`].
    pub(crate) preauth: Option<PreAuthClient>,
    /// What the next attempt dials.
    pub(crate) dial: Dial,
    /// The configured endpoint's `host:port` (dialled when a pre-authentication names none).
    pub(crate) configured: String,
}

impl std::fmt::Debug for Driver {
    // The MQTT options hold the password: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("endpoint", &self.endpoint)
            .field("connections", &self.connections)
            .finish()
    }
}

impl Driver {
    pub(crate) async fn run(mut self) {
        let mut connected_at: Option<Instant> = None;
        let outcome: Option<Error> = loop {
            if connected_at.is_none() {
                if self.shared.stopping() {
                    break None;
                }
                if let Some(client) = self.preauth.clone().filter(|_| self.signer.iot_token.is_none()) {
                    let fetched = tokio::select! {
                        biased;
                        _ = self.stop.wait_for(|s| *s) => break None,
                        r = client.fetch() => r,
                    };
                    match fetched {
                        Ok(token) => self.use_token(token),
                        Err(e) => match self.failed(e, None).await {
                            Some(outcome) => break outcome,
                            None => continue,
                        },
                    }
                }
                match self.signer.sign() {
                    Ok(creds) => {
                        self.signed = (
                            creds.client_id.clone(),
                            creds.timestamp.clone().unwrap_or_default(),
                        );
                        if let Err(e) = self.eventloop.mqtt_options.try_set_client_id(creds.client_id) {
                            break Some(Error::Options(e.to_string()));
                        }
                        self.eventloop
                            .mqtt_options
                            .set_credentials(creds.username, creds.password);
                    }
                    Err(e) => break Some(e),
                }
            }
            // Cancelling `poll` is only safe while no connection is up (an attempt in progress is
            // simply abandoned); once connected, stopping goes through a DISCONNECT request and
            // `poll` runs to completion.
            let polled = if connected_at.is_none() {
                tokio::select! {
                    biased;
                    _ = self.stop.wait_for(|s| *s) => break None,
                    r = self.eventloop.poll() => r,
                }
            } else {
                self.eventloop.poll().await
            };
            match polled {
                Ok(rumqttc::Event::Incoming(Packet::ConnAck(ack))) => {
                    connected_at = Some(Instant::now());
                    self.signer.fresh_token = false;
                    self.on_connected(ack.session_present);
                }
                Ok(rumqttc::Event::Incoming(Packet::Publish(publish))) => self.dispatch(publish),
                Ok(_) => {}
                Err(e) => {
                    if self.shared.stopping() {
                        break None;
                    }
                    let lasted = connected_at.take().map(|t| t.elapsed());
                    if let Some(lasted) = lasted {
                        self.shared.conn.send_modify(|s| {
                            s.live = 0;
                            s.connected = false;
                        });
                        self.schedule.connection_lost(lasted);
                    }
                    let error = self.classify(e);
                    // A token that worked before (or was kept from an earlier connection) and is
                    // refused now has expired, was replaced or forgotten: renew it at once. A
                    // token just obtained and refused is a real refusal.
                    if self.preauth.is_some()
                        && !self.signer.fresh_token
                        && error.connack() == Some(ConnackCode::BadUsernameOrPassword)
                        && self.signer.iot_token.take().is_some()
                    {
                        tracing::info!(endpoint = %self.endpoint, "the iotToken was refused: pre-authenticating again");
                        self.emit(Event::Disconnected(Disconnected {
                            reason: format!(
                                "{error} (the iotToken expired or was replaced: pre-authenticating again)"
                            ),
                            refused: error.connack(),
                            was_connected: lasted.is_some(),
                            retry_in: Some(Duration::ZERO),
                        }));
                        continue;
                    }
                    // An attempt that could not reach where the last pre-authentication said:
                    // ask again before the next one (the endpoint may have moved).
                    if self.preauth.is_some() && lasted.is_none() && error.connack().is_none() {
                        self.signer.iot_token = None;
                    }
                    if let Some(outcome) = self.failed(error, lasted).await {
                        break outcome;
                    }
                }
            }
        };
        self.shared.close();
        if let Some(first) = lock(&self.shared.first).take() {
            let _ = first.send(Err(outcome.clone().unwrap_or(Error::Closed)));
        }
        tracing::debug!(endpoint = %self.endpoint, "device stopped");
        // The last event: wait a little for room, the consumer is probably still reading.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.events.send(Event::Stopped(outcome))).await;
    }

    /// After a failed attempt (`lasted` `None`) or a lost connection: reports it and waits per
    /// the schedule. `Some(outcome)` when the device stops (`outcome` `None`: it was asked to).
    async fn failed(&mut self, error: Error, lasted: Option<Duration>) -> Option<Option<Error>> {
        tracing::info!(endpoint = %self.endpoint, error = %error, "connection down");
        if lasted.is_none()
            && self.connections == 0
            && let Some(first) = lock(&self.shared.first).take()
        {
            // `Device::connect` reports the first attempt's failure and stops.
            let _ = first.send(Err(error.clone()));
            return Some(Some(error));
        }
        let next = self
            .schedule
            .next_after(error.is_permanent_refusal(), &mut rand::rng());
        let retry_in = match next {
            Next::RetryIn(d) => Some(d),
            Next::Stop => None,
        };
        self.emit(Event::Disconnected(Disconnected {
            reason: error.to_string(),
            refused: error.connack(),
            was_connected: lasted.is_some(),
            retry_in,
        }));
        let Some(delay) = retry_in else {
            return Some(Some(error));
        };
        tokio::select! {
            biased;
            _ = self.stop.wait_for(|s| *s) => Some(None),
            () = tokio::time::sleep(delay) => None,
        }
    }

    /// A new iotToken: connect where it says (else to the configured endpoint) with it.
    fn use_token(&mut self, token: IotToken) {
        let address = token
            .mqtt
            .as_ref()
            .map_or_else(|| self.configured.clone(), |m| host_port(&m.host, m.port));
        tracing::debug!(iot_id = %token.iot_id, endpoint = %address, "pre-authenticated");
        self.dial.set(address.clone());
        self.endpoint = address;
        self.signer.iot_token = Some(token);
        self.signer.fresh_token = true;
    }

    fn classify(&self, e: ConnectionError) -> Error {
        match e {
            ConnectionError::ConnectionRefused(rc) => Error::Refused {
                code: ConnackCode::from_code(rc as u8).unwrap_or(ConnackCode::ServerUnavailable),
            },
            ConnectionError::Tls(e) => Error::Tls(format!("{}: {e}", self.endpoint)),
            other => Error::Connect {
                endpoint: self.endpoint.clone(),
                reason: other.to_string(),
            },
        }
    }

    /// CONNACK: the network is up. The connection becomes *ready* (requests may go out, the
    /// Connected event is emitted) once the subscriptions are restored, so that no reply is sent
    /// by the platform before the device listens for it.
    fn on_connected(&mut self, session_present: bool) {
        self.connections += 1;
        let attempt = self.connections;
        // Mark the network up before reading the subscriptions (see `Device::subscribe`).
        self.shared.conn.send_modify(|s| s.live = attempt);
        let mut filters: Vec<SubscribeFilter> = self
            .system_filters
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), rumqttc::QoS::AtLeastOnce))
            .collect();
        filters.extend(
            lock(&self.shared.subscriptions)
                .iter()
                .map(|(f, q)| SubscribeFilter::new(f.clone(), rumqttc_qos(*q))),
        );
        let ready = Ready {
            shared: self.shared.clone(),
            events: self.events.clone(),
            attempt,
            info: Connected {
                client_id: self.signed.0.clone(),
                timestamp: self.signed.1.clone(),
                session_present,
                connections: attempt,
            },
        };
        tracing::info!(client_id = %ready.info.client_id, connections = attempt, "connected");
        if filters.is_empty() {
            ready.fire();
            return;
        }
        // Subscriptions do not survive a clean session: send them all again, from a task of its
        // own (the loop must not wait on the request channel it drains itself).
        let client = self.shared.client.clone();
        tokio::spawn(async move {
            let names: Vec<String> = filters.iter().map(|f| f.path.clone()).collect();
            let notice = match client.subscribe_many_tracked(filters).await {
                Ok(notice) => notice,
                Err(e) => {
                    tracing::warn!(error = %e, "could not queue the subscriptions");
                    return;
                }
            };
            match notice.wait_async().await {
                Ok(suback) => {
                    let refused: Vec<&String> = names
                        .iter()
                        .zip(&suback.return_codes)
                        .filter(|(_, c)| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                        .map(|(n, _)| n)
                        .collect();
                    if refused.is_empty() {
                        tracing::debug!(count = names.len(), "subscriptions restored");
                    } else {
                        tracing::warn!(?refused, "the platform refused some subscriptions");
                    }
                    ready.fire();
                }
                // The connection went away first; the next one restores them again.
                Err(e) => tracing::debug!(error = %e, "subscriptions not confirmed"),
            }
        });
    }

    fn emit(&self, event: Event) {
        emit(&self.events, &self.shared, event);
    }

    fn message(topic: &str, payload: Bytes, qos: QoS) -> Event {
        Event::Message(Message {
            topic: topic.to_owned(),
            payload,
            qos,
        })
    }

    fn dispatch(&mut self, publish: Publish) {
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            tracing::warn!("message with a non-UTF-8 topic ignored");
            return;
        };
        let topic = topic.to_owned();
        let qos = if publish.qos == rumqttc::QoS::AtMostOnce {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let payload = publish.payload;
        tracing::trace!(topic = %topic, bytes = payload.len(), "incoming");
        let shared = &self.shared;
        // A sub-device's downlink goes to its own queue; everything else to the device's.
        let sub = Topic::parse(&topic).ok().and_then(|t| {
            let (pk, dn) = t.device()?;
            if (pk, dn) == (shared.product_key.as_str(), shared.device_name.as_str()) {
                return None;
            }
            Some((pk.to_owned(), dn.to_owned(), self.subs.sender(pk, dn)?))
        });
        let (pk, dn, events) = match sub {
            Some(sub) => sub,
            None => (
                shared.product_key.clone(),
                shared.device_name.clone(),
                self.events.clone(),
            ),
        };
        match route(&topic, &payload, &pk, &dn) {
            Route::Reply => match serde_json::from_slice::<Reply>(&payload) {
                Ok(reply) => {
                    if lock(&shared.correlator).complete_reply(reply).is_some() {
                        emit(&events, shared, Self::message(&topic, payload, qos));
                    }
                }
                Err(e) => {
                    let failed = read_id(&payload).is_some_and(|id| {
                        lock(&shared.correlator).fail_reply(
                            &id.as_text(),
                            Error::BadReply {
                                topic: topic.clone(),
                                reason: e.to_string(),
                            },
                        )
                    });
                    if !failed {
                        emit(&events, shared, Self::message(&topic, payload, qos));
                    }
                }
            },
            Route::Ntp => {
                let received = now_ms();
                let sent = serde_json::from_slice::<Value>(&payload).ok().and_then(|v| {
                    match v.get("deviceSendTime") {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(Value::Number(n)) => Some(n.to_string()),
                        _ => None,
                    }
                });
                let delivered = sent.is_some_and(|s| {
                    let mut c = lock(&shared.correlator);
                    c.prune_ntp();
                    c.complete_ntp(&s, (payload.to_vec(), received))
                });
                if !delivered {
                    emit(&events, shared, Self::message(&topic, payload, qos));
                }
            }
            Route::Shadow => match serde_json::from_slice::<Value>(&payload) {
                Ok(body) => {
                    let token = match body.get("clientToken") {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(Value::Number(n)) => Some(n.to_string()),
                        _ => None,
                    };
                    let unclaimed = match token {
                        Some(t) => lock(&shared.correlator).complete_shadow(&t, body),
                        None => Some(body),
                    };
                    if let Some(body) = unclaimed {
                        emit(&events, shared, Event::Shadow(ShadowMessage::new(body)));
                    }
                }
                Err(_) => emit(&events, shared, Self::message(&topic, payload, qos)),
            },
            Route::PropertySet { reply_topic } => match Request::parse(&payload) {
                Ok(request) => {
                    let replier = Replier::new(
                        shared.clone(),
                        reply_topic,
                        QoS::AtLeastOnce,
                        Some(request.id.clone()),
                        "thing.service.property.set".into(),
                    );
                    emit(
                        &events,
                        shared,
                        Event::PropertySet(PropertySet {
                            topic,
                            qos,
                            request,
                            replier,
                        }),
                    );
                }
                Err(e) => {
                    if let Some(id) = read_id(&payload) {
                        let mut replier = Replier::new(
                            shared.clone(),
                            reply_topic,
                            QoS::AtLeastOnce,
                            Some(id),
                            String::new(),
                        );
                        replier.answer_now(code::PARAM_ERROR, &e.to_string());
                    }
                    emit(&events, shared, Self::message(&topic, payload, qos));
                }
            },
            Route::Service {
                service,
                via,
                reply_topic,
                request,
            } => {
                // RRPC answers go at QoS 0 (the platform's caller is waiting synchronously).
                let reply_qos = if via.is_sync() {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                };
                let what = format!("thing.service.{service}");
                let replier = Replier::new(
                    shared.clone(),
                    reply_topic,
                    reply_qos,
                    Some(request.id.clone()),
                    what,
                );
                emit(
                    &events,
                    shared,
                    Event::ServiceCall(ServiceCall {
                        service,
                        via,
                        topic,
                        qos,
                        request: *request,
                        replier,
                    }),
                );
            }
            Route::Rrpc {
                message_id,
                kind,
                reply_topic,
            } => {
                let replier = Replier::new(shared.clone(), reply_topic, QoS::AtMostOnce, None, "rrpc".into());
                emit(
                    &events,
                    shared,
                    Event::Rrpc(RrpcRequest {
                        message_id,
                        kind,
                        topic,
                        qos,
                        payload,
                        replier,
                    }),
                );
            }
            Route::ConfigPush { reply_topic } => {
                match crate::config_push::on_push(shared, &reply_topic, &payload) {
                    Some(info) => emit(&events, shared, Event::ConfigPush(info)),
                    None => emit(&events, shared, Self::message(&topic, payload, qos)),
                }
            }
            Route::OtaUpgrade => match crate::ota_info::Upgrade::from_push(&payload) {
                Ok(upgrade) => emit(&events, shared, Event::OtaUpgrade(upgrade)),
                Err(e) => {
                    tracing::warn!(error = %e, "unusable OTA push handed over as a message");
                    emit(&events, shared, Self::message(&topic, payload, qos));
                }
            },
            Route::Message => emit(&events, shared, Self::message(&topic, payload, qos)),
        }
    }
}

/// Queues an event for the application without waiting: when the queue is full, a request is
/// answered at once with code 429 and anything else is dropped (both counted).
fn emit(events: &mpsc::Sender<Event>, shared: &Shared, event: Event) {
    match events.try_send(event) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(mut event)) => {
            if event.is_request() {
                shared.counters.busy_replies.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("event queue full: answering a request with code 429");
                event.refuse(
                    code::TOO_MANY_REQUESTS,
                    "the device is busy: its event queue is full",
                );
            } else {
                shared.counters.dropped_messages.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("event queue full: an event was dropped");
            }
        }
        // Nobody listens: requests get the "not handled" answer when dropped here.
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

/// Makes a connection ready once its subscriptions are restored.
struct Ready {
    shared: Arc<Shared>,
    events: mpsc::Sender<Event>,
    attempt: u64,
    info: Connected,
}

impl Ready {
    fn fire(self) {
        // Only if this connection is still the live one (it may have dropped meanwhile).
        let fired = self.shared.conn.send_if_modified(|s| {
            if s.live == self.attempt && !s.closed {
                s.connected = true;
                s.generation += 1;
                true
            } else {
                false
            }
        });
        if !fired {
            return;
        }
        if let Some(first) = lock(&self.shared.first).take() {
            let _ = first.send(Ok(self.info.clone()));
        }
        emit(&self.events, &self.shared, Event::Connected(self.info));
    }
}
