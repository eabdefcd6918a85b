//! Convenience handlers: register closures per kind of request, then let [`Handlers::run`]
//! consume the [`Events`] stream, running each handler in a task of its own.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::event::{Event, Events, Message, ReplyError, RrpcRequest};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type JsonResult = Result<Value, ReplyError>;
type PropertyFn = Arc<dyn Fn(Map<String, Value>) -> BoxFuture<JsonResult> + Send + Sync>;
type ServiceFn = Arc<dyn Fn(String, Value) -> BoxFuture<JsonResult> + Send + Sync>;
type RrpcFn = Arc<dyn Fn(RrpcRequest) -> BoxFuture<()> + Send + Sync>;
type MessageFn = Arc<dyn Fn(Message) -> BoxFuture<()> + Send + Sync>;
type OtherFn = Arc<dyn Fn(Event) + Send + Sync>;

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
    /// (usually `{}`) or an error.
    #[must_use]
    pub fn on_property_set<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JsonResult> + Send + 'static,
    {
        self.property_set = Some(Arc::new(move |props| Box::pin(f(props))));
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
        self.services
            .insert(service.into(), Arc::new(move |_name, params| Box::pin(f(params))));
        self
    }

    /// Handles every service without a handler of its own: receives the service identifier and
    /// `params`.
    #[must_use]
    pub fn on_any_service<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(String, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JsonResult> + Send + 'static,
    {
        self.any_service = Some(Arc::new(move |name, params| Box::pin(f(name, params))));
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

    /// Consumes the events until the device stops. Spawn it (`tokio::spawn(handlers.run(events))`)
    /// to keep using the [`crate::Device`] handle meanwhile.
    pub async fn run(self, mut events: Events) {
        // Bounds the handlers in flight; the semaphore is never closed, so acquiring only waits.
        let permits = Arc::new(Semaphore::new(self.concurrency));
        while let Some(event) = events.recv().await {
            match event {
                Event::PropertySet(set) => {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    match self.property_set.clone() {
                        Some(f) => {
                            tokio::spawn(async move {
                                let result = f(set.properties()).await;
                                if let Err(e) = set.reply(result).await {
                                    tracing::warn!(error = %e, "property set answer not sent");
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
                    let handler = self
                        .services
                        .get(call.service())
                        .or(self.any_service.as_ref())
                        .cloned();
                    match handler {
                        Some(f) => {
                            tokio::spawn(async move {
                                let result = f(call.service().to_owned(), call.params().clone()).await;
                                if let Err(e) = call.reply(result).await {
                                    tracing::warn!(error = %e, "service answer not sent");
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
                    if let Some(f) = &self.other {
                        f(other);
                    }
                }
            }
        }
    }
}
