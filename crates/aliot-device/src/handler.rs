//! Convenience handlers: register closures per kind of request, then let [`Handlers::run`]
//! consume the [`Events`] stream, running each handler in a task of its own.
//!
//! Three kinds of closures:
//!
//! - **request handlers** compute an answer and [`Handlers`] sends it: [`Handlers::on_property_set`],
//!   [`Handlers::on_service`], [`Handlers::on_any_service`] see the decoded values;
//!   [`Handlers::on_property_set_request`] and [`Handlers::on_any_service_request`] see the whole
//!   request first (topic, id, method, raw JSON) when the answer depends on more than `params`;
//! - **message handlers** ([`Handlers::on_rrpc`], [`Handlers::on_message`]) run in a task of
//!   their own and answer themselves, if at all;
//! - **observers** are called synchronously, in arrival order: [`Handlers::on_event`] sees every
//!   event before it is dispatched, [`Handlers::on_other`] takes the connection events,
//!   [`Handlers::on_reply_error`] hears about answers that could not be sent.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::error::Error;
use crate::event::{Event, Events, Message, PropertySet, ReplyError, RrpcRequest, ServiceCall};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type JsonResult = Result<Value, ReplyError>;
/// Reads what it needs from the request, returns the future that computes the answer.
type PropertyFn = Arc<dyn Fn(&PropertySet) -> BoxFuture<JsonResult> + Send + Sync>;
type ServiceFn = Arc<dyn Fn(&ServiceCall) -> BoxFuture<JsonResult> + Send + Sync>;
type RrpcFn = Arc<dyn Fn(RrpcRequest) -> BoxFuture<()> + Send + Sync>;
type MessageFn = Arc<dyn Fn(Message) -> BoxFuture<()> + Send + Sync>;
type OtherFn = Arc<dyn Fn(Event) + Send + Sync>;
type EventFn = Arc<dyn Fn(&Event) + Send + Sync>;
type ReplyErrorFn = Arc<dyn Fn(&Error) + Send + Sync>;

/// Closures that answer the platform's requests.
///
/// Each request runs in its own task, at most [`Handlers::max_concurrency`] at once: a slow
/// handler delays only the requests behind it, never the connection (the network loop answers
/// code 429 when the event queue fills up). Requests without a handler are answered with code
/// 400 ("not handled").
///
/// ```no_run
/// use aliot_device::{Device, DeviceOptions, Handlers, ReplyError};
/// use serde_json::json;
/// # async fn demo(options: DeviceOptions) -> Result<(), aliot_device::Error> {
/// let (device, events) = Device::connect(options).await?;
/// Handlers::new()
///     .on_property_set(|props| async move {
///         println!("set {props:?}");
///         Ok(json!({}))
///     })
///     .on_service("Reboot", |params| async move {
///         if params.get("delay").is_some_and(|d| !d.is_u64()) {
///             return Err(ReplyError::bad_params("delay must be a number"));
///         }
///         Ok(json!({"ok": true}))
///     })
///     .run(events)
///     .await;
/// # drop(device);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Handlers {
    property_set: Option<PropertyFn>,
    services: HashMap<String, ServiceFn>,
    any_service: Option<ServiceFn>,
    rrpc: Option<RrpcFn>,
    message: Option<MessageFn>,
    other: Option<OtherFn>,
    event: Option<EventFn>,
    reply_error: Option<ReplyErrorFn>,
    concurrency: usize,
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut services: Vec<&String> = self.services.keys().collect();
        services.sort();
        f.debug_struct("Handlers")
            .field("property_set", &self.property_set.is_some())
            .field("services", &services)
            .field("any_service", &self.any_service.is_some())
            .field("rrpc", &self.rrpc.is_some())
            .field("message", &self.message.is_some())
            .field("other", &self.other.is_some())
            .field("event", &self.event.is_some())
            .field("reply_error", &self.reply_error.is_some())
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl Default for Handlers {
    fn default() -> Self {
        Self::new()
    }
}

impl Handlers {
    /// No handlers; at most 16 run at once.
    pub fn new() -> Self {
        Self {
            property_set: None,
            services: HashMap::new(),
            any_service: None,
            rrpc: None,
            message: None,
            other: None,
            event: None,
            reply_error: None,
            concurrency: 16,
        }
    }

    /// How many handlers may run at once (at least 1).
    #[must_use]
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Handles property sets: receives the properties by identifier, returns the reply data
    /// (usually `{}`) or an error. Replaces an [`Handlers::on_property_set_request`] handler.
    #[must_use]
    pub fn on_property_set<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JsonResult> + Send + 'static,
    {
        self.property_set = Some(Arc::new(move |set: &PropertySet| Box::pin(f(set.properties()))));
        self
    }

    /// Handles property sets, seeing the whole request: the closure reads what it needs from the
    /// [`PropertySet`] (topic, id, [`PropertySet::request`]...) and returns the future that
    /// computes the reply data or an error; [`Handlers`] sends the answer. Replaces an
    /// [`Handlers::on_property_set`] handler.
    ///
    /// ```no_run
    /// # use aliot_device::Handlers;
    /// # use serde_json::json;
    /// let handlers = Handlers::new().on_property_set_request(|set| {
    ///     let (id, raw) = (set.id(), set.request().to_vec());
    ///     async move {
    ///         println!("request {id}: {} bytes", raw.len());
    ///         Ok(json!({}))
    ///     }
    /// });
    /// ```
    #[must_use]
    pub fn on_property_set_request<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(&PropertySet) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JsonResult> + Send + 'static,
    {
        self.property_set = Some(Arc::new(move |set: &PropertySet| Box::pin(f(set))));
        self
    }

    /// Handles one service (asynchronous or synchronous, same handler): receives `params`,
    /// returns the output data or an error.
    #[must_use]
    pub fn on_service<F, Fut>(mut self, service: impl Into<String>, f: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JsonResult> + Send + 'static,
    {
        self.services.insert(
            service.into(),
            Arc::new(move |call: &ServiceCall| Box::pin(f(call.params().clone()))),
        );
        self
    }

    /// Handles every service without a handler of its own: receives the service identifier and
    /// `params`. Replaces an [`Handlers::on_any_service_request`] handler.
    #[must_use]
    pub fn on_any_service<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(String, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JsonResult> + Send + 'static,
    {
        self.any_service = Some(Arc::new(move |call: &ServiceCall| {
            Box::pin(f(call.service().to_owned(), call.params().clone()))
        }));
        self
    }

    /// Handles every service without a handler of its own, seeing the whole call: the closure
    /// reads what it needs from the [`ServiceCall`] (service, method, topic, id,
    /// [`ServiceCall::via`], the raw request...) and returns the future that computes the
    /// output data or an error; [`Handlers`] sends the answer where the call came from.
    /// Replaces an [`Handlers::on_any_service`] handler.
    #[must_use]
    pub fn on_any_service_request<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(&ServiceCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JsonResult> + Send + 'static,
    {
        self.any_service = Some(Arc::new(move |call: &ServiceCall| Box::pin(f(call))));
        self
    }

    /// Handles raw and custom-topic RRPC requests; the handler answers with
    /// [`RrpcRequest::reply`].
    #[must_use]
    pub fn on_rrpc<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(RrpcRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.rrpc = Some(Arc::new(move |req| Box::pin(f(req))));
        self
    }

    /// Handles plain messages (custom topics, broadcasts...).
    #[must_use]
    pub fn on_message<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.message = Some(Arc::new(move |m| Box::pin(f(m))));
        self
    }

    /// Sees every other event (connected, disconnected, stopped), synchronously, in order.
    #[must_use]
    pub fn on_other<F>(mut self, f: F) -> Self
    where
        F: Fn(Event) + Send + Sync + 'static,
    {
        self.other = Some(Arc::new(f));
        self
    }

    /// Observes every event as it arrives, synchronously and in arrival order, before it is
    /// dispatched: a request before its handler is started (or before it waits for a free
    /// slot), a connection event before [`Handlers::on_other`]. For logs, metrics or a display;
    /// it runs on the loop that feeds the handlers, so keep it short.
    ///
    /// ```no_run
    /// # use aliot_device::{Event, Handlers};
    /// let handlers = Handlers::new().on_event(|event| match event {
    ///     Event::Connected(c) => eprintln!("connected as {}", c.client_id),
    ///     Event::PropertySet(set) => eprintln!("property set {}", set.id()),
    ///     _ => {}
    /// });
    /// ```
    #[must_use]
    pub fn on_event<F>(mut self, f: F) -> Self
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        self.event = Some(Arc::new(f));
        self
    }

    /// Hears about every answer of a property set or service handler that could not be sent
    /// (the device went offline or stopped meanwhile: [`Error::NotConnected`], [`Error::Closed`]).
    /// Without it such failures are logged (`tracing`, warn level). RRPC and message handlers
    /// send their answers themselves and see their own errors.
    #[must_use]
    pub fn on_reply_error<F>(mut self, f: F) -> Self
    where
        F: Fn(&Error) + Send + Sync + 'static,
    {
        self.reply_error = Some(Arc::new(f));
        self
    }

    /// Consumes the events until the device stops, and returns why, as [`Event::Stopped`] says:
    /// `None` when it was asked to stop (or the stream ended), the error otherwise (a refusal
    /// under [`crate::RefusalPolicy::Stop`]). Handlers still running keep running. Spawn it
    /// (`tokio::spawn(handlers.run(events))`) to keep using the [`crate::Device`] handle
    /// meanwhile.
    pub async fn run(self, mut events: Events) -> Option<Error> {
        // Bounds the handlers in flight; the semaphore is never closed, so acquiring only waits.
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut stopped = None;
        while let Some(event) = events.recv().await {
            if let Some(f) = &self.event {
                f(&event);
            }
            match event {
                Event::PropertySet(set) => {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    match &self.property_set {
                        Some(f) => {
                            let answer = f(&set);
                            let reply_error = self.reply_error.clone();
                            tokio::spawn(async move {
                                let result = answer.await;
                                if let Err(e) = set.reply(result).await {
                                    reply_failed(reply_error.as_deref(), "property set", &e);
                                }
                                drop(permit);
                            });
                        }
                        None => drop(set),
                    }
                }
                Event::ServiceCall(call) => {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    let handler = self.services.get(call.service()).or(self.any_service.as_ref());
                    match handler {
                        Some(f) => {
                            let answer = f(&call);
                            let reply_error = self.reply_error.clone();
                            tokio::spawn(async move {
                                let result = answer.await;
                                if let Err(e) = call.reply(result).await {
                                    reply_failed(reply_error.as_deref(), "service", &e);
                                }
                                drop(permit);
                            });
                        }
                        None => drop(call),
                    }
                }
                Event::Rrpc(req) => {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    if let Some(f) = self.rrpc.clone() {
                        tokio::spawn(async move {
                            f(req).await;
                            drop(permit);
                        });
                    }
                }
                Event::Message(m) => {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    if let Some(f) = self.message.clone() {
                        tokio::spawn(async move {
                            f(m).await;
                            drop(permit);
                        });
                    }
                }
                other => {
                    if let Event::Stopped(reason) = &other {
                        stopped.clone_from(reason);
                    }
                    if let Some(f) = &self.other {
                        f(other);
                    }
                }
            }
        }
        stopped
    }
}

/// An answer that could not be sent: told to the observer, else logged.
fn reply_failed(observer: Option<&(dyn Fn(&Error) + Send + Sync)>, what: &str, error: &Error) {
    match observer {
        Some(f) => f(error),
        None => tracing::warn!(error = %error, "{what} answer not sent"),
    }
}
