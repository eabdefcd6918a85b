//! What the device sees: connection changes, messages, and requests to answer.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aliot_protocol::alink::{DeviceReply, MessageId, Request, property_values};
use aliot_protocol::codes::alink as code;
use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

pub use crate::connection::{Connected, Disconnected};
use crate::error::{Error, Result};
use crate::options::QoS;
use crate::route::{CallVia, RrpcKind};
use crate::shared::Shared;

/// One thing that happened to the device.
///
/// Requests ([`Event::PropertySet`], [`Event::ServiceCall`], [`Event::Rrpc`]) carry their own
/// reply methods. A property set or service call dropped without an answer is answered with
/// Alink code 400 ("not handled"), so the platform is never left waiting; an unanswered raw RRPC
/// gets no answer (its caller times out after 8 s).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The device connected (the first time or again) and its subscriptions are restored:
    /// requests sent from now on get their replies.
    Connected(Connected),
    /// A connection attempt failed or the connection was lost.
    Disconnected(Disconnected),
    /// A message on a topic the SDK does not answer itself (custom topics, broadcasts...).
    Message(Message),
    /// The platform sets properties (`thing.service.property.set`).
    PropertySet(PropertySet),
    /// The platform calls a service, asynchronously or synchronously over RRPC.
    ServiceCall(ServiceCall),
    /// A raw or custom-topic RRPC request.
    Rrpc(RrpcRequest),
    /// A message on `/shadow/get/{pk}/{dn}` no call waits for: the application's desired
    /// update pushed as `control`, or a reply to a shadow message sent without this SDK.
    Shadow(ShadowMessage),
    /// The platform pushed a new remote configuration (`thing.config.push`); the SDK has
    /// answered `push_reply`. Fetch it with [`crate::Device::download_config`].
    ConfigPush(aliot_protocol::config::ConfigInfo),
    /// The platform pushed a firmware upgrade on `/ota/device/upgrade/{pk}/{dn}`: download it
    /// with [`crate::ota::Ota::download`].
    OtaUpgrade(crate::ota_info::Upgrade),
    /// The device stopped for good: `None` when asked to ([`crate::Device::disconnect`] or every
    /// handle dropped), or the reason (a refusal under [`crate::RefusalPolicy::Stop`]). The
    /// stream ends after it.
    Stopped(Option<Error>),
}

/// A message on a topic.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Bytes,
    /// The QoS it was delivered with.
    pub qos: QoS,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("payload", &format_args!("{} bytes", self.payload.len()))
            .field("qos", &self.qos)
            .finish()
    }
}

/// A device shadow message from the platform (`{"method":"control"|"reply","payload":{…},"version","timestamp"}`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ShadowMessage {
    /// The whole message.
    pub body: Value,
}

impl ShadowMessage {
    /// A message from its JSON.
    pub fn new(body: Value) -> Self {
        Self { body }
    }

    /// `control` (pushed desired state) or `reply`.
    pub fn method(&self) -> &str {
        self.body
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The document's version (`version`, or `payload.version` in an update's reply).
    pub fn version(&self) -> Option<i64> {
        self.body
            .get("version")
            .or_else(|| self.body.get("payload")?.get("version"))
            .and_then(Value::as_i64)
    }

    /// `payload.state` (`{"reported","desired"}`), when the message carries the document.
    pub fn state(&self) -> Option<&Value> {
        self.body.get("payload")?.get("state")
    }

    /// `payload.state.desired`, when present.
    pub fn desired(&self) -> Option<&Value> {
        self.state()?.get("desired")
    }
}

/// The error half of a handler's answer: an Alink code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError {
    /// Alink code (not 200); see `aliot_protocol::codes::alink`.
    pub code: u32,
    /// What went wrong.
    pub message: String,
}

impl ReplyError {
    /// An error answer with this code and message.
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Code 460: the request's parameters are wrong.
    pub fn bad_params(message: impl Into<String>) -> Self {
        Self::new(code::PARAM_ERROR, message)
    }

    /// Code 500: the device failed to do it.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(code::SYSTEM_ERROR, message)
    }
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "code {}: {}", self.code, self.message)
    }
}

/// Sends the answer to one request, once; answers with a fallback if dropped unanswered.
pub(crate) struct Replier {
    shared: Arc<Shared>,
    topic: String,
    qos: QoS,
    /// Alink id of the request, when the answer is an Alink device reply.
    id: Option<MessageId>,
    /// What the request asked (for the "not handled" message).
    what: String,
    answered: bool,
}

impl fmt::Debug for Replier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replier")
            .field("topic", &self.topic)
            .field("answered", &self.answered)
            .finish()
    }
}

impl Replier {
    pub(crate) fn new(
        shared: Arc<Shared>,
        topic: String,
        qos: QoS,
        id: Option<MessageId>,
        what: String,
    ) -> Self {
        Self {
            shared,
            topic,
            qos,
            id,
            what,
            answered: false,
        }
    }

    /// Sends raw bytes as the answer.
    async fn send(mut self, payload: Vec<u8>) -> Result<()> {
        self.answered = true;
        self.shared
            .publish_now(&self.topic, Bytes::from(payload), self.qos)
            .await
    }

    /// Sends an Alink device reply `{"id":..,"code":..,"data":..}`.
    async fn send_alink(self, result: std::result::Result<Value, ReplyError>) -> Result<()> {
        let id = self.id.clone().unwrap_or_else(|| MessageId::new(0));
        let reply = match result {
            Ok(data) => DeviceReply::success(id, data),
            Err(e) => DeviceReply {
                id,
                code: e.code,
                data: Value::Object(Map::new()),
                message: Some(e.message),
            },
        };
        self.send(reply.to_vec()).await
    }

    /// Answers at once without waiting (from the network loop or `Drop`): best effort.
    pub(crate) fn answer_now(&mut self, code: u32, message: &str) {
        if self.answered {
            return;
        }
        self.answered = true;
        if let Some(id) = self.id.clone() {
            let reply = DeviceReply {
                id,
                code,
                data: Value::Object(Map::new()),
                message: Some(message.to_owned()),
            };
            self.shared
                .try_publish_now(&self.topic, Bytes::from(reply.to_vec()), self.qos);
        }
    }

    /// Marks the request as answered without sending anything.
    fn disarm(&mut self) {
        self.answered = true;
    }
}

impl Drop for Replier {
    fn drop(&mut self) {
        if !self.answered {
            let message = format!("the device did not handle {}", self.what);
            self.answer_now(code::REQUEST_ERROR, &message);
        }
    }
}

/// The platform sets properties: answer with [`PropertySet::reply`] once they are applied.
#[derive(Debug)]
pub struct PropertySet {
    pub(crate) topic: String,
    pub(crate) qos: QoS,
    pub(crate) request: Request,
    pub(crate) replier: Replier,
}

impl PropertySet {
    /// The topic it came on.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The QoS it was delivered with.
    pub fn qos(&self) -> QoS {
        self.qos
    }

    /// The Alink request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The request id.
    pub fn id(&self) -> String {
        self.request.id.as_text()
    }

    /// The `params` object.
    pub fn params(&self) -> &Value {
        &self.request.params
    }

    /// The properties to set, by identifier (both the short and the `{"value":..}` forms).
    pub fn properties(&self) -> Map<String, Value> {
        property_values(&self.request.params)
    }

    /// Answers: `Ok(data)` → code 200 with `data` (usually `{}`), `Err` → its code and message.
    ///
    /// # Errors
    /// [`Error::NotConnected`] when the device is offline (the platform then sees no answer).
    pub async fn reply(self, result: std::result::Result<Value, ReplyError>) -> Result<()> {
        self.replier.send_alink(result).await
    }
}

/// The platform calls a service: answer with [`ServiceCall::reply`].
#[derive(Debug)]
pub struct ServiceCall {
    pub(crate) service: String,
    pub(crate) via: CallVia,
    pub(crate) topic: String,
    pub(crate) qos: QoS,
    pub(crate) request: Request,
    pub(crate) replier: Replier,
}

impl ServiceCall {
    /// The service identifier (`Reboot` for `thing.service.Reboot`).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The method (`thing.service.{id}`).
    pub fn method(&self) -> String {
        self.request
            .method
            .clone()
            .unwrap_or_else(|| format!("thing.service.{}", self.service))
    }

    /// Asynchronous, or synchronous over RRPC (old or new style).
    pub fn via(&self) -> &CallVia {
        &self.via
    }

    /// The topic it came on.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The QoS it was delivered with.
    pub fn qos(&self) -> QoS {
        self.qos
    }

    /// The Alink request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The request id.
    pub fn id(&self) -> String {
        self.request.id.as_text()
    }

    /// The `params`.
    pub fn params(&self) -> &Value {
        &self.request.params
    }

    /// Answers: `Ok(data)` → code 200 with the service's output, `Err` → its code and message.
    /// The answer goes where the call came from (`{topic}_reply`, `rrpc/response/{id}` or the
    /// same `/ext/rrpc/...` topic).
    ///
    /// # Errors
    /// [`Error::NotConnected`] when the device is offline.
    pub async fn reply(self, result: std::result::Result<Value, ReplyError>) -> Result<()> {
        self.replier.send_alink(result).await
    }
}

/// A raw RRPC request (bytes in, bytes out) or a custom-topic RRPC request.
#[derive(Debug)]
pub struct RrpcRequest {
    pub(crate) message_id: String,
    pub(crate) kind: RrpcKind,
    pub(crate) topic: String,
    pub(crate) qos: QoS,
    pub(crate) payload: Bytes,
    pub(crate) replier: Replier,
}

impl RrpcRequest {
    /// The RRPC message id (from the topic).
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// Raw, or on which custom topic.
    pub fn kind(&self) -> &RrpcKind {
        &self.kind
    }

    /// The topic it came on.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The request bytes.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The QoS it was delivered with.
    pub fn qos(&self) -> QoS {
        self.qos
    }

    /// Answers with these bytes (within 8 s, the platform's RRPC deadline).
    ///
    /// # Errors
    /// [`Error::NotConnected`] when the device is offline.
    pub async fn reply(self, payload: impl Into<Vec<u8>>) -> Result<()> {
        self.replier.send(payload.into()).await
    }

    /// Declines to answer (the caller times out).
    pub fn ignore(mut self) {
        self.replier.disarm();
    }
}

impl Event {
    /// Answers a request at once with an error code, from the network loop (queue full).
    pub(crate) fn refuse(&mut self, code: u32, message: &str) {
        match self {
            Event::PropertySet(r) => r.replier.answer_now(code, message),
            Event::ServiceCall(r) => r.replier.answer_now(code, message),
            Event::Rrpc(r) => r.replier.disarm(),
            _ => {}
        }
    }

    /// Whether the event is a request that expects an answer.
    pub(crate) fn is_request(&self) -> bool {
        matches!(
            self,
            Event::PropertySet(_) | Event::ServiceCall(_) | Event::Rrpc(_)
        )
    }
}

/// The stream of [`Event`]s of one device, in arrival order.
///
/// Read it with [`Events::recv`] or as a `futures` [`Stream`](futures_util::Stream). It ends
/// after [`Event::Stopped`]. It is fed through a bounded queue
/// ([`crate::DeviceOptions::event_capacity`]): a consumer that falls behind makes the SDK answer
/// new requests with code 429 and drop new plain messages, never stall the connection.
#[derive(Debug)]
pub struct Events {
    pub(crate) rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the device has stopped and every event was read.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl futures_util::Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}
