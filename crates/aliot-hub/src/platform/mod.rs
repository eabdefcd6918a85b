//! The platform: what Alibaba Cloud IoT does with what devices send, one room per feature.
//!
//! [`Platform`] implements the engine's [`Hooks`]: the CONNECT verdict ([`auth`]), topic rights
//! (`aliot_protocol::topic`), and for every uplink a decision ([`decide`], routed by the typed
//! topic to the feature's file) that it then carries out: a reply on the device's own session,
//! the completion of a waiting call (through the cluster seam, wherever the call waits), the
//! latest property values (in the registry), and events.
//!
//! | uplink | room | platform's answer |
//! |---|---|---|
//! | property post | [`thing`] | `<topic>_reply` code 200, values remembered (6106 above 200 properties, or past the device's limits on remembered properties: nothing kept) |
//! | event post, batch/pack/history post | [`thing`] | `<topic>_reply` once the kept values and events are in the history (judged by the thing model when there is one; rejected identifiers in `data`) |
//! | deviceinfo update/delete, log post | [`thing`] | `<topic>_reply` code 200 (unless `sys.ack` is 0) |
//! | desired get/delete | [`desired`] | `<topic>_reply` with the stored desired values (6104 above 200 identifiers), once durable ([`lane`]) |
//! | `/shadow/update/{pk}/{dn}` | [`shadow`] | `/shadow/get/{pk}/{dn}` reply (400–409, 500), once durable ([`lane`]) |
//! | OTA firmware get | [`ota`] | `<topic>_reply` code 200 with the pending task's push data, or `{}` |
//! | `/ota/device/inform`, `/ota/device/progress` | [`ota`] (rules in `crate::ota`) | no reply: the task's state changes, events |
//! | remote config get | [`config`] | `<topic>_reply` with the product's file (`configId`, size, SHA-256, a signed URL); 6710 without one, 6713 when switched off |
//! | `…/thing/service/property/set_reply`, `…/rrpc/response/{id}`, `/ext/rrpc/{id}/…` | [`service`], [`answer`] | completes the waiting call (outputs checked against the thing model) |
//! | `/ext/ntp/{pk}/{dn}/request` | [`ntp`] | `/ext/ntp/{pk}/{dn}/response` (spec §12 Q8) |
//! | any other `/sys/{pk}/{dn}/…` request | [`handling`] | `<topic>_reply` code 6203 (topic parse failed) |
//! | bad JSON or missing fields | [`handling`] | code 460 when the id can be read, else an event only |
//! | custom topics, other replies | — | event only |

use std::net::IpAddr;
use std::sync::Arc;

use aliot_protocol::gateway::code as gateway_code;
use aliot_protocol::topic::{Access, SysPath, Topic, device_may_access};
use aliot_protocol::tsl::Tsl;
use bytes::Bytes;
use rmqtt_codec::types::Publish;
use tracing::debug;

use crate::BoxFuture;
use crate::clock::{format_cst, format_utc, now_ms};
use crate::cluster::Cluster;
use crate::engine::{Admission, ConnectRequest, Hooks, Refused};
use crate::events::{
    AclDeniedEvent, Event, KickedEvent, ProblemEvent, RefusedEvent, RegisteredEvent, ReplyEvent, StatusEvent,
    TokenIssuedEvent, TopologyEvent, UplinkEvent,
};
use crate::metrics::{Metrics, inc};
use crate::registry::{Enrolment, Registry};
use crate::subscription::{Family, Subscriptions};
use crate::table::{CloseReason, Offer, Outgoing, QueueLimits, Session, SubSessions};
use aliot_protocol::subscription::DeviceOf;

mod answer;
mod auth;
pub(crate) mod config;
mod desired;
pub(crate) mod gateway;
mod handling;
mod lane;
mod ntp;
mod ota;
mod pack;
pub(crate) mod registration;
pub(crate) mod service;
pub(crate) mod shadow;
mod thing;
pub(crate) mod tokens;

pub(crate) use self::handling::{Context, Deferred, Handling, HistoryPost, PlatformReply, PropertyPost};

/// History rows of an uplink being written, and how to answer if they are not.
struct Durable {
    /// Resolves once the rows are durable.
    wait: BoxFuture<'static, crate::registry::Result<()>>,
    /// Where to answer a failed write (`None`: the device asked for no reply).
    reply_to: Option<handling::ReplyTo>,
}

/// Decides what the platform does with an uplink on `topic` (which passed the ACL); `tsl` is
/// the product's thing model, when it has one; `config` tells what a product's devices are told
/// of its remote configuration (asked only for `thing.config.get`); `firmware` the device's
/// pending upgrade for a module (asked only for `thing.ota.firmware.get`).
pub(crate) fn decide(
    topic: &str,
    payload: &Bytes,
    ctx: Context,
    tsl: Option<&Tsl>,
    config: &dyn Fn(&str) -> config::Offer,
    firmware: &dyn Fn(Option<&str>) -> serde_json::Value,
) -> Handling {
    let Ok(parsed) = Topic::parse(topic) else {
        // Inside the device's namespace (the ACL let it through) but not an Alink topic family.
        return Handling::default();
    };
    match parsed {
        Topic::Sys {
            path,
            product_key,
            device_name,
        } => match &path {
            SysPath::PropertyPost => thing::property_post(topic, &path, payload, ctx, tsl),
            SysPath::EventPost(event) => thing::event_post(topic, &path, event, payload, ctx, tsl),
            SysPath::PropertyBatchPost | SysPath::PropertyPackPost | SysPath::PropertyHistoryPost => {
                thing::batch_post(topic, &path, payload, ctx, tsl, (&product_key, &device_name))
            }
            p if thing::is_accepted_post(p) => thing::accepted(topic, &path, payload, ctx),
            SysPath::DesiredGet => desired::get(topic, &path, payload, ctx),
            SysPath::DesiredDelete => desired::delete(topic, &path, payload, ctx),
            SysPath::OtaFirmwareGet => ota::firmware_get(topic, &path, payload, ctx, firmware),
            SysPath::ConfigGet => config::get(topic, &path, payload, ctx, config(&product_key)),
            SysPath::RrpcResponse(_) | SysPath::Reply(_) => {
                answer::checked(service::sys_answer(&path, payload), &path, payload, tsl)
            }
            // Downlink topics published by the device, and unknown requests.
            _ => handling::unknown(topic, &path, payload, ctx),
        },
        Topic::NtpRequest {
            product_key,
            device_name,
        } => ntp::handle(&product_key, &device_name, payload, ctx),
        Topic::ExtRrpc { message_id, inner } => {
            let handling = service::ext_rrpc_answer(message_id, &inner, payload);
            match &*inner {
                Topic::Sys { path, .. } => answer::checked(handling, path, payload, tsl),
                _ => handling,
            }
        }
        Topic::Shadow {
            action,
            product_key,
            device_name,
        } if action == "update" => shadow::update(&product_key, &device_name, payload, ctx.now_ms / 1000),
        _ => Handling::default(),
    }
}

/// Platform settings (from `BrokerConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlatformConfig {
    /// Honour `sys.ack` = 0 in uplinks (no reply).
    pub(crate) sys_ack: bool,
    /// The outbound queue limits replies are offered with.
    pub(crate) outbound: QueueLimits,
}

/// The platform's side of every connection. A cheap `Clone` (every field is shared): a reply that
/// waits for a history commit is sent from its own task.
#[derive(Debug, Clone)]
pub(crate) struct Platform {
    registry: Arc<dyn Registry>,
    tokens: Arc<tokens::Tokens>,
    cluster: Arc<dyn Cluster>,
    metrics: Arc<Metrics>,
    config: PlatformConfig,
    /// Desired and shadow requests, carried out in order once decided.
    lane: lane::Lane,
    /// Signs the remote configuration download URLs (shared with the service's push).
    config_urls: Arc<config::ConfigUrls>,
    /// Upgrade jobs (shared with the service).
    ota: Arc<crate::ota::Ota>,
    /// Sub-devices logged in through gateways (shared with the device table).
    subs: Arc<SubSessions>,
    /// Server-side subscription (shared with the service and the admin API).
    subscriptions: Arc<Subscriptions>,
}

/// The parts of the platform shared with the rest of the hub (the service, the device table).
#[derive(Debug)]
pub(crate) struct SharedRooms {
    /// Signs the remote configuration download URLs (shared with the service's push).
    pub(crate) config_urls: Arc<config::ConfigUrls>,
    /// Upgrade jobs (shared with the service).
    pub(crate) ota: Arc<crate::ota::Ota>,
    /// Sub-devices logged in through gateways (shared with the device table).
    pub(crate) subs: Arc<SubSessions>,
    /// Server-side subscription (shared with the service and the admin API).
    pub(crate) subscriptions: Arc<Subscriptions>,
}

impl Platform {
    pub(crate) fn new(
        registry: Arc<dyn Registry>,
        tokens: Arc<tokens::Tokens>,
        cluster: Arc<dyn Cluster>,
        metrics: Arc<Metrics>,
        config: PlatformConfig,
        shared: SharedRooms,
    ) -> Self {
        let SharedRooms {
            config_urls,
            ota,
            subs,
            subscriptions,
        } = shared;
        Self {
            subs,
            subscriptions,
            registry,
            tokens,
            cluster,
            metrics,
            config,
            lane: lane::Lane::start(),
            config_urls,
            ota,
        }
    }

    /// The OTA room.
    pub(crate) fn ota(&self) -> &Arc<crate::ota::Ota> {
        &self.ota
    }

    /// The remote configuration download URLs' signer.
    pub(crate) fn config_urls(&self) -> &Arc<config::ConfigUrls> {
        &self.config_urls
    }

    fn emit(&self, build: impl FnOnce() -> Event) {
        if self.cluster.observed() {
            self.cluster.publish(build());
        }
    }

    fn status(&self, session: &Session, online: bool, at_ms: u64, last_ms: u64, reason: Option<String>) {
        let device = DeviceOf {
            iot_id: session.id.iot_id(),
            product_key: session.id.product_key(),
            device_name: session.id.device_name(),
        };
        // Queued now, in order; nothing waits for the commit.
        drop(
            self.subscriptions
                .status(device, online, at_ms, last_ms, &session.id.ip.to_string()),
        );
        self.emit(|| {
            Event::Status(StatusEvent {
                status: if online { "online" } else { "offline" },
                iot_id: session.id.iot_id().to_string(),
                product_key: session.id.product_key().to_string(),
                device_name: session.id.device_name().to_string(),
                time: format_cst(at_ms),
                utc_time: format_utc(at_ms),
                last_time: format_cst(last_ms),
                utc_last_time: format_utc(last_ms),
                client_ip: session.id.ip.to_string(),
                reason,
            })
        });
    }

    fn acl_denied(&self, session: &Session, action: &'static str, topic: &str, more: usize) {
        self.emit(|| {
            Event::AclDenied(AclDeniedEvent {
                product_key: session.id.product_key().to_string(),
                device_name: session.id.device_name().to_string(),
                action,
                topic: topic.to_owned(),
                more,
                client_ip: session.id.ip.to_string(),
                time: now_ms(),
            })
        });
    }

    /// Queues a platform reply, at the QoS of the uplink, if the device is reached by its topic.
    fn reply(&self, session: &Session, reply: PlatformReply, qos: rmqtt_codec::v3::QoS) {
        inc(&self.metrics.replies);
        let observed = self.cluster.observed();
        let text = if observed {
            String::from_utf8_lossy(&reply.payload).into_owned()
        } else {
            String::new()
        };
        let msg = Outgoing::new(reply.topic.clone(), Bytes::from(reply.payload), qos, now_ms());
        let delivered = match session.offer(msg, self.config.outbound) {
            Offer::Accepted => true,
            Offer::Dropped => {
                inc(&self.metrics.qos0_dropped);
                false
            }
            Offer::NotSubscribed | Offer::Closing(_) => false,
        };
        if observed {
            self.cluster.publish(Event::Reply(ReplyEvent {
                product_key: session.id.product_key().to_string(),
                device_name: session.id.device_name().to_string(),
                topic: reply.topic,
                code: reply.code,
                payload: text,
                delivered,
                time: now_ms(),
            }));
        }
    }
}

impl Platform {
    /// What one uplink does, whoever carried it: the uplink event, then the platform's
    /// [`decide`], the remembered properties, the history rows (queued) and the completed call.
    /// Returns the reply to send, the problem to report, the request to carry out later
    /// ([`Platform::defer`]) and the history write the reply must wait for.
    #[allow(clippy::too_many_arguments)]
    fn process(
        &self,
        iot_id: Option<&str>,
        product_key: &str,
        device_name: &str,
        topic: &str,
        qos: u8,
        payload: &Bytes,
    ) -> (
        Option<PlatformReply>,
        Option<String>,
        Option<Deferred>,
        Option<Durable>,
    ) {
        let recv_ms = now_ms();
        self.emit(|| {
            Event::Uplink(UplinkEvent::new(
                product_key,
                device_name,
                topic,
                qos,
                payload,
                recv_ms,
            ))
        });
        let ctx = Context {
            recv_ms,
            now_ms: now_ms(),
            honour_sys_ack: self.config.sys_ack,
            forward: self.subscriptions.wants(product_key, Family::DeviceDataFlag),
        };
        let tsl = self.registry.tsl(product_key);
        let offer = |pk: &str| self.config_urls.offer(&*self.registry, pk, ctx.now_ms);
        let firmware = |module: Option<&str>| self.ota.firmware_get(product_key, device_name, module);
        let mut handling = decide(
            topic,
            payload,
            ctx,
            tsl.as_ref().map(|t| &t.model),
            &offer,
            &firmware,
        );
        ota::observe(&self.ota, topic, product_key, device_name, payload);
        let forwarded = if ctx.forward {
            self.forward_uplink(
                iot_id,
                product_key,
                device_name,
                topic,
                qos,
                payload,
                handling.forward.take(),
            )
        } else {
            None
        };
        // Batch and history posts, found sub-devices (their own flags).
        let forwarded = crate::subscription::families::join(
            forwarded,
            self.subscriptions.uplink_families(
                &self.registry,
                iot_id,
                product_key,
                device_name,
                topic,
                payload,
            ),
        );
        let mut refused = false;
        if let Some(PropertyPost { values, reply_to }) = handling.properties.take() {
            // The registry keeps the values whole or not at all; a refusal changes the answer
            // (`thing::refused`: 6106).
            if let Err(why) = self
                .registry
                .remember_properties(product_key, device_name, values)
            {
                let (reply, problem) = thing::refused(reply_to, &why);
                handling.reply = reply;
                handling.problem = Some(problem);
                refused = true;
            }
        }
        let mut durable = None;
        if let Some(HistoryPost {
            mut records,
            reply_to,
        }) = handling.history.take()
        {
            if refused {
                // Values the device was told were not kept stay out of the history too.
                records.properties.clear();
            }
            if !records.is_empty() {
                // Queued now, in the order of the uplinks; durable when `wait` resolves.
                let wait = self.registry.record(product_key, device_name, records);
                durable = Some(Durable { wait, reply_to });
            }
        }
        if let Some(forwarded) = forwarded {
            // The reply also waits for the consumer groups' backlog commit (a forwarding
            // failure is logged, never answered to the device: it is not the device's fault).
            let history = durable.take();
            let reply_to = history.as_ref().and_then(|d| d.reply_to.clone());
            let wait: BoxFuture<'static, crate::registry::Result<()>> = Box::pin(async move {
                let history = async move {
                    match history {
                        Some(d) => d.wait.await,
                        None => Ok(()),
                    }
                };
                let (saved, forwarded) = futures_util::future::join(history, forwarded).await;
                if let Err(e) = forwarded {
                    tracing::warn!(error = %e, "forwarded message not kept");
                }
                saved
            });
            durable = Some(Durable { wait, reply_to });
        }
        if let Some((key, payload)) = handling.completes {
            // The table counts answered calls.
            if !self.cluster.complete(product_key, device_name, &key, payload) {
                debug!(%key, "answer to no waiting call (late or unknown id)");
            }
        }
        (handling.reply, handling.problem, handling.deferred, durable)
    }

    /// Forwards an uplink to the consumer groups that want the product's device data: a
    /// thing-model post in the transformed format (`draft`), a device's answer to a downlink as
    /// `thing/downlink/reply/message`, a custom topic verbatim. The device's iotId is looked up
    /// when the caller does not know it (sub-devices, HTTP). The commit to wait for, if any.
    #[allow(clippy::too_many_arguments)]
    fn forward_uplink(
        &self,
        iot_id: Option<&str>,
        product_key: &str,
        device_name: &str,
        topic: &str,
        qos: u8,
        payload: &Bytes,
        draft: Option<crate::subscription::forward::Draft>,
    ) -> Option<crate::subscription::forward::Commit> {
        let own = format!("/{product_key}/{device_name}/");
        let sys = format!("/sys/{product_key}/{device_name}/thing/");
        let downlink_reply = topic.strip_prefix(&sys).is_some_and(|rest| {
            (rest.starts_with("service/") && rest.ends_with("_reply")) || rest == "config/push_reply"
        });
        if draft.is_none() && !downlink_reply {
            return topic
                .starts_with(&own)
                .then(|| self.subscriptions.custom_uplink(product_key, topic, payload, qos))
                .flatten();
        }
        let (subs, registry) = (self.subscriptions.clone(), self.registry.clone());
        let (pk, dn, topic) = (product_key.to_owned(), device_name.to_owned(), topic.to_owned());
        let known = iot_id.map(str::to_owned);
        let lookup = (pk.clone(), dn.clone());
        let payload = payload.clone();
        let now = now_ms();
        let send = move |iot_id: &str| {
            let device = DeviceOf {
                iot_id,
                product_key: &pk,
                device_name: &dn,
            };
            match &draft {
                Some(draft) => subs.thing_post(device, &topic, draft, now, qos),
                None => subs.downlink_reply(device, &topic, &payload, now),
            }
        };
        match known {
            Some(iot_id) => send(&iot_id),
            None => Some(Box::pin(async move {
                let iot_id = registry
                    .device_auth(&lookup.0, &lookup.1)
                    .await
                    .map(|a| a.iot_id)
                    .unwrap_or_default();
                match send(&iot_id) {
                    Some(c) => c.await,
                    None => Ok(()),
                }
            })),
        }
    }

    /// Queues a desired or shadow request on the lane: carried out in order, then answered
    /// (when `session` is given) and its problem reported. When the lane is full it is
    /// answered at once with the platform's busy code.
    fn defer(
        &self,
        product_key: &str,
        device_name: &str,
        session: Option<(Arc<Session>, rmqtt_codec::v3::QoS)>,
        deferred: Deferred,
    ) {
        let now = now_ms();
        let busy = match &deferred {
            Deferred::Shadow { .. } => shadow::busy(&deferred, now / 1000),
            _ => desired::busy(&deferred),
        };
        let this = self.clone();
        let (pk, dn) = (product_key.to_owned(), device_name.to_owned());
        let to = session.clone();
        let job: lane::Job = Box::pin(async move {
            let registry = &*this.registry;
            let (reply, problem) = match deferred {
                d @ Deferred::Shadow { .. } => shadow::carry_out(registry, &pk, &dn, d, now / 1000).await,
                d => desired::carry_out(registry, &pk, &dn, d, now).await,
            };
            if let Some((session, qos)) = to {
                if let Some(problem) = problem {
                    this.problem(&session, None, &problem, false);
                }
                if let Some(reply) = reply {
                    this.reply(&session, reply, qos);
                }
            }
        });
        if !self.lane.push(job)
            && let (Some((session, qos)), Some(reply)) = (session, busy)
        {
            self.problem(&session, None, "desired/shadow lane full: answered busy", false);
            self.reply(&session, reply, qos);
        }
    }

    /// An uplink over the HTTP data channel (spec §5.5), already authorised: handled as an MQTT
    /// uplink at QoS 0, except that its reply has nowhere to go (the device polls nothing).
    /// Returns the history write the HTTP answer must wait for.
    pub(crate) fn http_uplink(
        &self,
        product_key: &str,
        device_name: &str,
        ip: IpAddr,
        topic: &str,
        payload: &Bytes,
    ) -> Option<BoxFuture<'static, crate::registry::Result<()>>> {
        inc(&self.metrics.http_uplinks);
        let (_reply, problem, deferred, durable) =
            self.process(None, product_key, device_name, topic, 0, payload);
        if let Some(deferred) = deferred {
            self.defer(product_key, device_name, None, deferred);
        }
        if let Some(problem) = problem {
            debug!(topic, %problem, "unusable uplink over HTTP");
            self.emit(|| {
                Event::Problem(ProblemEvent {
                    product_key: Some(product_key.to_owned()),
                    device_name: Some(device_name.to_owned()),
                    topic: Some(topic.to_owned()),
                    reason: problem,
                    closed: false,
                    client_ip: ip.to_string(),
                    time: now_ms(),
                })
            });
        }
        durable.map(|d| d.wait)
    }

    /// Issues a token over HTTP to a device that proved its secret; counts and reports it.
    pub(crate) fn issue_token(&self, kind: tokens::TokenKind, holder: tokens::TokenHolder) -> String {
        let (product_key, device_name) = (holder.product_key.clone(), holder.device_name.clone());
        let (token, expires) = self.tokens.issue(kind, holder, now_ms());
        let kind = match kind {
            tokens::TokenKind::Mqtt => {
                inc(&self.metrics.iot_tokens_issued);
                "iotToken"
            }
            tokens::TokenKind::HttpChannel => {
                inc(&self.metrics.http_tokens_issued);
                "http"
            }
        };
        self.emit(|| {
            Event::TokenIssued(TokenIssuedEvent {
                product_key,
                device_name,
                kind,
                expires,
                time: now_ms(),
            })
        });
        token
    }

    /// The tokens issued over HTTP.
    pub(crate) fn tokens(&self) -> &Arc<tokens::Tokens> {
        &self.tokens
    }

    /// The registry.
    pub(crate) fn registry(&self) -> &Arc<dyn Registry> {
        &self.registry
    }

    /// Reports a refused HTTPS registration (an MQTT one is reported as a refused CONNECT).
    pub(crate) fn registration_refused(&self, product_key: &str, device_name: &str, ip: IpAddr, why: &str) {
        self.emit(|| {
            Event::Refused(RefusedEvent {
                code: None,
                reason: format!("HTTPS dynamic registration refused: {why}"),
                client_id: None,
                username: Some(format!("{device_name}&{product_key}")),
                client_ip: ip.to_string(),
                time: now_ms(),
            })
        });
    }

    /// Counts and reports a dynamic registration the registry stored.
    pub(crate) fn registered(
        &self,
        product_key: String,
        device_name: String,
        how: Enrolment,
        via: &'static str,
    ) {
        inc(&self.metrics.dynamic_registrations);
        if how == Enrolment::NoPreRegistration {
            inc(&self.metrics.device_tokens_issued);
        }
        if self
            .subscriptions
            .wants(&product_key, Family::DeviceLifeCycleFlag)
        {
            let (this, pk, dn) = (self.clone(), product_key.clone(), device_name.clone());
            tokio::spawn(async move {
                if let Ok(Some(d)) = this.registry.device(&pk, &dn).await {
                    let device = DeviceOf {
                        iot_id: &d.iot_id,
                        product_key: &pk,
                        device_name: &dn,
                    };
                    let created =
                        this.subscriptions
                            .lifecycle(device, "create", Some(&d.device_secret), now_ms());
                    if let Some(Err(e)) = match created {
                        Some(c) => Some(c.await),
                        None => None,
                    } {
                        tracing::warn!(error = %e, "lifecycle message not kept");
                    }
                }
            });
        }
        let auth_type = how.as_str();
        tracing::info!(
            product_key,
            device_name,
            auth_type,
            via,
            "device registered dynamically"
        );
        self.emit(|| {
            Event::Registered(RegisteredEvent {
                product_key,
                device_name,
                auth_type,
                via,
                time: now_ms(),
            })
        });
    }
}

impl Platform {
    /// A gateway's topology or session request: carried out on its own task (it reads and
    /// writes the registry), then answered on `<topic>_reply` and reported.
    fn gateway_request(&self, session: &Arc<Session>, op: gateway::Op, publish: &Publish) {
        let (this, session, qos) = (self.clone(), Arc::clone(session), publish.qos);
        let topic = publish.topic.to_string();
        let payload = publish.payload.clone();
        let (pk, dn) = (
            session.id.product_key().to_owned(),
            session.id.device_name().to_owned(),
        );
        self.emit(|| {
            Event::Uplink(UplinkEvent::new(
                &pk,
                &dn,
                &topic,
                qos.value(),
                &payload,
                now_ms(),
            ))
        });
        tokio::spawn(async move {
            let mut out = gateway::handle(
                this.registry.clone(),
                this.subs.clone(),
                session.clone(),
                op,
                payload.clone(),
            )
            .await;
            // `thing/list/found` answered with success: forwarded (FoundDeviceListFlag) before
            // the reply leaves.
            if matches!(out.reply, Some((_, 200)))
                && let Some(commit) = this.subscriptions.uplink_families(
                    &this.registry,
                    Some(session.id.iot_id()),
                    &pk,
                    &dn,
                    &topic,
                    &payload,
                )
                && let Err(e) = commit.await
            {
                tracing::warn!(error = %e, "found-device list not forwarded");
            }
            if let Some((action, devices)) = out.topology.take()
                && (this.cluster.observed() || this.subscriptions.wants(&pk, Family::DeviceTopoLifeCycleFlag))
            {
                let gw = (pk.clone(), dn.clone());
                let events =
                    TopologyEvent::of(&*this.registry, action, "gateway", &gw, &devices, now_ms()).await;
                this.subscriptions.topology(&events);
                for e in events {
                    this.cluster.publish(e);
                }
            }
            if let Some(problem) = &out.problem {
                this.problem(&session, Some(&topic), problem, false);
            }
            for (sub, old) in &out.kicked {
                this.sub_notice(
                    old,
                    427,
                    "sub-device logged in through another gateway connection",
                    sub,
                );
            }
            for sub in out.online {
                // One session per device: its own connection, if any, is closed (the later
                // login wins).
                if this.cluster.kick(&sub.0, &sub.1) {
                    this.problem(
                        &session,
                        Some(&topic),
                        &format!(
                            "{}/{} logged in through this gateway: its own connection was closed",
                            sub.0, sub.1
                        ),
                        false,
                    );
                }
                this.sub_status(sub, true, session.id.ip, None);
            }
            for (sub, why) in out.offline {
                this.sub_status(sub, false, session.id.ip, Some(why.to_owned()));
            }
            if let Some((payload, code)) = out.reply {
                let reply = PlatformReply {
                    topic: aliot_protocol::topic::reply_topic(&topic),
                    payload,
                    code,
                };
                this.reply(&session, reply, qos);
            }
        });
    }

    /// The sub-devices' parts of a gateway's pack post (`pack.rs`): each sub-device logged in
    /// on this connection, every part (the gateway's own too) free of whole-message faults, then
    /// each part handled as its sub-device's. Returns their history writes, or the reply
    /// refusing the whole post (`None` when the gateway asked for no reply).
    fn pack_parts(
        &self,
        session: &Arc<Session>,
        topic: &str,
        qos: u8,
        pack: Result<pack::Pack, (aliot_protocol::alink::Request, pack::Refusal)>,
    ) -> Result<Vec<BoxFuture<'static, crate::registry::Result<()>>>, Option<PlatformReply>> {
        let gateway = (session.id.product_key(), session.id.device_name());
        let refuse = |request: &aliot_protocol::alink::Request, r: pack::Refusal| {
            self.problem(
                session,
                Some(topic),
                &format!("pack post refused: {} {}", r.code, r.message),
                false,
            );
            let payload = pack::refusal_reply(request, self.config.sys_ack, &r)?;
            Some(PlatformReply {
                topic: aliot_protocol::topic::reply_topic(topic),
                payload,
                code: r.code,
            })
        };
        let pack = match pack {
            Ok(p) => p,
            Err((request, r)) => return Err(refuse(&request, r)),
        };
        if let Some(part) = pack
            .subs
            .iter()
            .find(|p| !self.subs.speaks_for(session, &p.device.0, &p.device.1))
        {
            let r = pack::Refusal {
                code: gateway_code::NO_SESSION,
                message: format!(
                    "sub-device {}/{} is not logged in through this gateway",
                    part.device.0, part.device.1
                ),
            };
            return Err(refuse(&pack.request, r));
        }
        let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
        let own_tsl = self.registry.tsl(gateway.0);
        let mut parts: Vec<(&serde_json::Value, Option<_>, (&str, &str))> =
            vec![(&pack.request.params, own_tsl, gateway)];
        for p in &pack.subs {
            parts.push((
                &p.params,
                self.registry.tsl(&p.device.0),
                (&p.device.0, &p.device.1),
            ));
        }
        for (params, tsl, device) in parts {
            let model = tsl.as_ref().map(|t| &t.model);
            if let Err(fault) = aliot_protocol::tsl::validate_batch(
                model,
                aliot_protocol::tsl::BatchKind::Pack,
                params,
                device,
                now,
            ) {
                let r = pack::Refusal {
                    code: fault.code,
                    message: format!("{}/{}: {}", device.0, device.1, fault.message),
                };
                return Err(refuse(&pack.request, r));
            }
        }
        let mut writes = Vec::new();
        for part in pack.subs {
            let (pk, dn) = (&part.device.0, &part.device.1);
            let (_reply, problem, _deferred, durable) =
                self.process(None, pk, dn, &part.topic, qos, &part.payload);
            if let Some(problem) = problem {
                self.problem(session, Some(topic), &format!("{pk}/{dn}: {problem}"), false);
            }
            if let Some(d) = durable {
                writes.push(d.wait);
            }
        }
        Ok(writes)
    }

    /// The device, other than the connection's own, whose topic `topic` is.
    fn not_logged_in(&self, session: &Session, topic: &str) -> Option<crate::registry::DeviceRef> {
        let own = (session.id.product_key(), session.id.device_name());
        gateway::speaker(topic, &|pk, dn| (pk, dn) != own, Access::Publish)
    }

    /// A notice about a sub-device on its gateway's `/ext/error/{pk}/{dn}`.
    fn sub_notice(&self, gateway: &Session, code: u32, message: &str, sub: &crate::registry::DeviceRef) {
        let topic = format!(
            "/ext/error/{}/{}",
            gateway.id.product_key(),
            gateway.id.device_name()
        );
        let payload = gateway::error_notice(now_ms(), code, message, sub);
        self.reply(
            gateway,
            PlatformReply { topic, payload, code },
            rmqtt_codec::v3::QoS::AtMostOnce,
        );
    }

    /// A sub-device's online/offline status event (its iotId read from the registry).
    fn sub_status(&self, sub: crate::registry::DeviceRef, online: bool, ip: IpAddr, reason: Option<String>) {
        let forward = self.subscriptions.wants(&sub.0, Family::DeviceStatusChangeFlag);
        if !self.cluster.observed() && !forward {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let iot_id = this
                .registry
                .device_auth(&sub.0, &sub.1)
                .await
                .map(|a| a.iot_id)
                .unwrap_or_default();
            let at = now_ms();
            if forward {
                let device = DeviceOf {
                    iot_id: &iot_id,
                    product_key: &sub.0,
                    device_name: &sub.1,
                };
                drop(this.subscriptions.status(device, online, at, at, &ip.to_string()));
            }
            this.emit(|| {
                Event::Status(StatusEvent {
                    status: if online { "online" } else { "offline" },
                    iot_id,
                    product_key: sub.0,
                    device_name: sub.1,
                    time: format_cst(at),
                    utc_time: format_utc(at),
                    last_time: format_cst(at),
                    utc_last_time: format_utc(at),
                    client_ip: ip.to_string(),
                    reason,
                })
            });
        });
    }
}

impl Hooks for Platform {
    fn authenticate<'a>(&'a self, connect: ConnectRequest<'a>) -> BoxFuture<'a, Result<Admission, Refused>> {
        Box::pin(async move {
            match auth::authenticate(&*self.registry, &self.tokens, connect).await? {
                auth::Verdict::Login(principal) => Ok(Admission::Session(principal)),
                auth::Verdict::Registered {
                    product_key,
                    device_name,
                    how,
                    topic,
                    payload,
                } => {
                    self.registered(product_key, device_name, how, "mqtt");
                    Ok(Admission::AnswerThenClose {
                        topic: topic.to_owned(),
                        payload: Bytes::from(payload),
                    })
                }
            }
        })
    }

    fn refused(
        &self,
        ip: IpAddr,
        code: Option<u8>,
        client_id: Option<&str>,
        username: Option<&str>,
        reason: &str,
    ) {
        self.emit(|| {
            Event::Refused(RefusedEvent {
                code,
                reason: reason.to_owned(),
                client_id: client_id.map(str::to_owned),
                username: username.map(str::to_owned),
                client_ip: ip.to_string(),
                time: now_ms(),
            })
        });
    }

    fn connected(&self, session: &Arc<Session>, kicked: Option<&Arc<Session>>) {
        let id = &session.id;
        self.registry
            .device_online(id.product_key(), id.device_name(), id.ip, id.connected_ms);
        if let Some(old) = kicked {
            self.emit(|| {
                Event::Kicked(KickedEvent {
                    product_key: id.product_key().to_string(),
                    device_name: id.device_name().to_string(),
                    client_ip: old.id.ip.to_string(),
                    new_client_ip: id.ip.to_string(),
                    time: now_ms(),
                })
            });
            self.status(
                old,
                false,
                id.connected_ms,
                id.connected_ms,
                Some(CloseReason::Kicked.to_string()),
            );
        }
        self.status(session, true, id.connected_ms, id.connected_ms, None);
        // One session per device: logged in through a gateway until now, it is logged out
        // there, and the gateway told (427 on its `/ext/error`).
        let me = (id.product_key().to_owned(), id.device_name().to_owned());
        if let Some(gateway) = self.subs.kick(&me) {
            self.sub_notice(
                &gateway,
                gateway_code::KICKED,
                "sub-device connected directly",
                &me,
            );
        }
        // Its queued OTA task may go now.
        self.ota.wake();
    }

    fn disconnected(&self, session: &Arc<Session>, reason: &CloseReason, owned: bool, last_rx_ms: u64) {
        // A device closed because it logged in through a gateway stays online there.
        if owned
            && self
                .subs
                .gateway(session.id.product_key(), session.id.device_name())
                .is_none()
        {
            self.status(session, false, now_ms(), last_rx_ms, Some(reason.to_string()));
        }
        // Its sub-devices go offline with it.
        for sub in self.subs.gateway_gone(session) {
            self.sub_status(sub, false, session.id.ip, Some("gateway offline".to_owned()));
        }
    }

    fn may_publish(&self, session: &Session, topic: &str) -> bool {
        let ok = gateway::may_access(
            (session.id.product_key(), session.id.device_name()),
            &|pk, dn| self.subs.speaks_for(session, pk, dn),
            topic,
            Access::Publish,
        );
        if !ok {
            self.acl_denied(session, "publish", topic, 0);
            // A gateway's publish for a sub-device without a session is answered on its
            // `/ext/error` (520) by `uplink`, not with a disconnection.
            return self.subs.is_gateway(session) && self.not_logged_in(session, topic).is_some();
        }
        ok
    }

    fn may_subscribe(&self, session: &Session, filter: &str) -> bool {
        gateway::may_access(
            (session.id.product_key(), session.id.device_name()),
            &|pk, dn| self.subs.speaks_for(session, pk, dn),
            filter,
            Access::Subscribe,
        )
    }

    fn max_subscriptions(&self, session: &Session, limit: usize) -> usize {
        // The gateway's own allowance, and one per sub-device logged in on it.
        limit.saturating_mul(1 + self.subs.online_on(session))
    }

    fn subscribe_denied(&self, session: &Session, filters: &[&str]) {
        if let Some(first) = filters.first() {
            self.acl_denied(session, "subscribe", first, filters.len() - 1);
        }
    }

    fn uplink(&self, session: &Arc<Session>, publish: &Publish) {
        let id = &session.id;
        let topic: &str = &publish.topic;
        let own = (id.product_key(), id.device_name());
        if let Some(op) = gateway::Op::of(own, topic) {
            self.gateway_request(session, op, publish);
            return;
        }
        // A gateway's uplink on a sub-device's topic is the sub-device's.
        let sub = if device_may_access(own.0, own.1, topic, Access::Publish) {
            None
        } else {
            gateway::speaker(
                topic,
                &|pk, dn| self.subs.speaks_for(session, pk, dn),
                Access::Publish,
            )
        };
        if sub.is_none()
            && !device_may_access(own.0, own.1, topic, Access::Publish)
            && let Some(other) = self.not_logged_in(session, topic)
        {
            self.problem(
                session,
                Some(topic),
                "publish for a sub-device that is not logged in (520)",
                false,
            );
            self.sub_notice(session, 520, "sub-device not logged in", &other);
            return;
        }
        let (pk, dn) = sub.as_ref().map_or(own, |(pk, dn)| (pk.as_str(), dn.as_str()));
        // A gateway's pack post carrying its sub-devices' data: their parts first (all or none).
        let mut sub_writes = Vec::new();
        if sub.is_none()
            && let Some(pack) = pack::read(topic, own, &publish.payload)
        {
            match self.pack_parts(session, topic, publish.qos.value(), pack) {
                Ok(writes) => sub_writes = writes,
                Err(reply) => {
                    if let Some(reply) = reply {
                        self.reply(session, reply, publish.qos);
                    }
                    return;
                }
            }
        }
        let iot_id = sub.is_none().then(|| id.iot_id());
        let (reply, problem, deferred, mut durable) =
            self.process(iot_id, pk, dn, topic, publish.qos.value(), &publish.payload);
        if !sub_writes.is_empty() {
            // The reply waits for the sub-devices' rows too.
            let (own_wait, reply_to) = match durable.take() {
                Some(Durable { wait, reply_to }) => (Some(wait), reply_to),
                None => (None, None),
            };
            durable = Some(Durable {
                wait: Box::pin(async move {
                    if let Some(w) = own_wait {
                        w.await?;
                    }
                    for w in sub_writes {
                        w.await?;
                    }
                    Ok(())
                }),
                reply_to,
            });
        }
        if let Some(deferred) = deferred {
            self.defer(pk, dn, Some((session.clone(), publish.qos)), deferred);
        }
        if let Some(problem) = problem {
            debug!(topic, %problem, "unusable uplink");
            self.problem(session, Some(topic), &problem, false);
        }
        match (reply, durable) {
            (Some(reply), Some(Durable { wait, reply_to })) => {
                // Acknowledged = durable: the reply leaves once the history rows are committed
                // (group commit, `registry::History`). Its own task, so that the connection
                // keeps reading meanwhile; replies of one device may thus leave out of order.
                let (this, session, qos, topic) =
                    (self.clone(), Arc::clone(session), publish.qos, topic.to_owned());
                tokio::spawn(async move {
                    match wait.await {
                        Ok(()) => this.reply(&session, reply, qos),
                        Err(e) => {
                            let (reply, problem) = thing::unsaved(reply_to, &e);
                            this.problem(&session, Some(&topic), &problem, false);
                            if let Some(reply) = reply {
                                this.reply(&session, reply, qos);
                            }
                        }
                    }
                });
            }
            (Some(reply), None) => self.reply(session, reply, publish.qos),
            (None, Some(Durable { wait, .. })) => {
                // Nothing to answer: the rows are queued; only a failure is worth a word.
                let topic = topic.to_owned();
                tokio::spawn(async move {
                    if let Err(e) = wait.await {
                        tracing::warn!(topic, error = %e, "history rows of an unanswered uplink not saved");
                    }
                });
            }
            (None, None) => {}
        }
    }

    fn problem(&self, session: &Session, topic: Option<&str>, reason: &str, closed: bool) {
        self.emit(|| {
            Event::Problem(ProblemEvent {
                product_key: Some(session.id.product_key().to_string()),
                device_name: Some(session.id.device_name().to_string()),
                topic: topic.map(str::to_owned),
                reason: reason.to_owned(),
                closed,
                client_ip: session.id.ip.to_string(),
                time: now_ms(),
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    use super::*;
    use crate::table::CallKey;

    fn handle(topic: &str, payload: &str) -> Handling {
        handle_with(topic, payload, None)
    }

    fn handle_with(topic: &str, payload: &str, tsl: Option<&Tsl>) -> Handling {
        let ctx = Context {
            recv_ms: 10,
            now_ms: 20,
            honour_sys_ack: true,
            forward: false,
        };
        decide(
            topic,
            &Bytes::copy_from_slice(payload.as_bytes()),
            ctx,
            tsl,
            &|_| config::Offer::NotFound,
            &|_| serde_json::json!({}),
        )
    }

    #[test]
    fn with_a_thing_model_a_post_keeps_the_valid_properties_and_names_the_others() {
        let tsl = Tsl::from_json(
            r#"{"properties":[
              {"identifier":"LightSwitch","accessMode":"rw","dataType":{"type":"bool","specs":{"0":"off","1":"on"}}},
              {"identifier":"code","accessMode":"r","dataType":{"type":"int","specs":{"min":"0","max":"100"}}}]}"#,
        )
        .expect("a model");
        let topic = "/sys/pk/dn/thing/event/property/post";
        let h = handle_with(
            topic,
            r#"{"id":"7","params":{"LightSwitch":1,"code":"15","ghost":3},"method":"thing.event.property.post"}"#,
            Some(&tsl),
        );
        let reply: Value = serde_json::from_str(&reply_text(&h)).expect("JSON");
        assert_eq!(reply["code"], 200, "{reply}");
        assert_eq!(
            reply["data"]["code"], "tsl parse: data type is not int",
            "{reply}"
        );
        assert!(
            reply["data"]["ghost"]
                .as_str()
                .is_some_and(|m| m.contains("params not exist")),
            "{reply}"
        );
        assert!(reply["data"].get("LightSwitch").is_none(), "{reply}");
        let kept = &h.properties.as_ref().expect("values to keep").values;
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["LightSwitch"]);
        assert!(
            h.problem.as_deref().is_some_and(|p| p.contains("6306")),
            "{:?}",
            h.problem
        );
        // Events too: an output of the wrong type is named, an event the model lacks is a fault.
        let tsl = Tsl::from_json(
            r#"{"properties":[],"events":[{"identifier":"Overheat","type":"alert","method":"thing.event.Overheat.post",
              "outputData":[{"identifier":"temp","dataType":{"type":"float","specs":{"min":"0","max":"200"}}}]}]}"#,
        )
        .expect("a model");
        let h = handle_with(
            "/sys/pk/dn/thing/event/Overheat/post",
            r#"{"id":"9","params":{"value":{"temp":"hot"},"time":10},"method":"thing.event.Overheat.post"}"#,
            Some(&tsl),
        );
        let reply: Value = serde_json::from_str(&reply_text(&h)).expect("JSON");
        assert_eq!(reply["code"], 200, "{reply}");
        assert!(reply["data"]["temp"].is_string(), "{reply}");
        let h = handle_with(
            "/sys/pk/dn/thing/event/Unknown/post",
            r#"{"id":"10","params":{"value":{}},"method":"thing.event.Unknown.post"}"#,
            Some(&tsl),
        );
        let reply: Value = serde_json::from_str(&reply_text(&h)).expect("JSON");
        assert_ne!(reply["code"], 200, "{reply}");
        // Without a model, everything is kept.
        let h = handle(topic, r#"{"id":"8","params":{"code":"15"}}"#);
        assert!(h.properties.is_some() && h.problem.is_none());
    }

    fn reply_text(h: &Handling) -> String {
        String::from_utf8(h.reply.as_ref().expect("a reply").payload.clone()).expect("utf8")
    }

    #[test]
    fn property_post_is_answered_with_the_id_echoed_byte_for_byte() {
        let node_id = r#""1|exp-topic|/sys/pk/dn/thing/event/property/post_reply""#;
        for id in [r#""123""#, "42", node_id] {
            let h = handle(
                "/sys/pk/dn/thing/event/property/post",
                &format!(
                    r#"{{"id":{id},"version":"1.0","params":{{"t":1}},"method":"thing.event.property.post"}}"#
                ),
            );
            let r = h.reply.as_ref().expect("reply");
            assert_eq!(r.topic, "/sys/pk/dn/thing/event/property/post_reply");
            assert_eq!(
                reply_text(&h),
                format!(
                    r#"{{"code":200,"data":{{}},"id":{id},"message":"success","method":"thing.event.property.post","version":"1.0"}}"#
                )
            );
            assert_eq!(
                h.properties.as_ref().and_then(|p| p.values.get("t")),
                Some(&serde_json::json!(1))
            );
        }
    }

    #[test]
    fn the_method_comes_from_the_topic_when_the_device_omits_it() {
        let h = handle(
            "/sys/pk/dn/thing/event/alarm/post",
            r#"{"id":"7","params":{"value":{}}}"#,
        );
        assert!(reply_text(&h).contains(r#""method":"thing.event.alarm.post""#));
    }

    #[test]
    fn sys_ack_zero_gets_no_reply_but_properties_are_remembered() {
        let h = handle(
            "/sys/pk/dn/thing/event/property/post",
            r#"{"id":"1","sys":{"ack":0},"params":{"a":{"value":5,"time":1}}}"#,
        );
        assert!(h.reply.is_none());
        let post = h.properties.expect("values to remember");
        assert_eq!(post.values.get("a").cloned(), Some(serde_json::json!(5)));
        // Nothing to answer a refusal with either.
        assert!(post.reply_to.is_none());
    }

    #[test]
    fn bad_requests_get_460_when_the_id_is_readable_and_an_event_otherwise() {
        let h = handle(
            "/sys/pk/dn/thing/event/property/post",
            r#"{"id":"9","params":"x","method":5}"#,
        );
        assert!(reply_text(&h).starts_with(r#"{"code":460"#));
        assert!(h.problem.is_some());
        let h = handle("/sys/pk/dn/thing/event/property/post", "not json");
        assert!(h.reply.is_none() && h.problem.is_some());
        let h = handle(
            "/sys/pk/dn/thing/event/property/post",
            r#"{"id":"9","params":[1]}"#,
        );
        assert!(reply_text(&h).starts_with(r#"{"code":460"#));
    }

    #[test]
    fn too_many_properties_get_6106() {
        let props: Map<String, Value> = (0..201).map(|i| (format!("p{i}"), Value::from(i))).collect();
        let body = serde_json::json!({"id": "3", "params": props}).to_string();
        let h = handle("/sys/pk/dn/thing/event/property/post", &body);
        assert!(reply_text(&h).starts_with(r#"{"code":6106"#));
        assert!(h.properties.is_none());
    }

    /// Hardening 2: a post the registry refuses to keep gets 6106 with its id and method.
    #[test]
    fn a_post_the_registry_refuses_is_answered_6106_with_its_id() {
        let h = handle(
            "/sys/pk/dn/thing/event/property/post",
            r#"{"id":"41","params":{"a":1}}"#,
        );
        let post = h.properties.expect("values to remember");
        let why = crate::registry::Error::PropertyLimit {
            what: "property identifiers",
            would_keep: 1001,
            limit: 1000,
        };
        let (reply, problem) = thing::refused(post.reply_to, &why);
        let reply = reply.expect("answered");
        assert_eq!(reply.topic, "/sys/pk/dn/thing/event/property/post_reply");
        assert_eq!(reply.code, 6106);
        let text = String::from_utf8(reply.payload).expect("utf8");
        assert!(text.starts_with(r#"{"code":6106"#), "{text}");
        assert!(text.contains(r#""id":"41""#), "{text}");
        assert!(text.contains(r#""method":"thing.event.property.post""#), "{text}");
        assert!(problem.contains("1001 property identifiers"), "{problem}");
    }

    #[test]
    fn unknown_sys_methods_get_an_alink_error_never_silence() {
        let h = handle("/sys/pk/dn/thing/frobnicate/now", r#"{"id":"5","params":{}}"#);
        let r = h.reply.as_ref().expect("reply");
        assert_eq!(r.topic, "/sys/pk/dn/thing/frobnicate/now_reply");
        assert!(reply_text(&h).starts_with(r#"{"code":6203"#));
        assert!(reply_text(&h).contains(r#""method":"thing.frobnicate.now""#));
        // A device publishing on a downlink topic is an unknown request too.
        let h = handle(
            "/sys/pk/dn/thing/service/property/set",
            r#"{"id":"5","params":{}}"#,
        );
        assert!(reply_text(&h).starts_with(r#"{"code":6203"#));
    }

    #[test]
    fn replies_are_matched_to_calls_and_never_answered() {
        let h = handle(
            "/sys/pk/dn/thing/service/property/set_reply",
            r#"{"id":"77","code":200,"data":{}}"#,
        );
        assert_eq!(
            h.completes.as_ref().map(|(k, _)| k.clone()),
            Some(CallKey::PropertySet("77".into()))
        );
        assert!(h.reply.is_none());
        let h = handle("/sys/pk/dn/rrpc/response/88", "raw bytes");
        assert_eq!(h.completes.map(|(k, _)| k), Some(CallKey::Rrpc("88".into())));
        let h = handle(
            "/ext/rrpc/99/sys/pk/dn/thing/service/Reboot",
            r#"{"id":"99","code":200}"#,
        );
        assert_eq!(h.completes.map(|(k, _)| k), Some(CallKey::Rrpc("99".into())));
        let h = handle("/sys/pk/dn/thing/config/push_reply", r#"{"id":"1","code":200}"#);
        assert!(h.reply.is_none() && h.completes.is_none());
    }

    #[test]
    fn ntp_requests_are_answered_on_the_response_topic() {
        let h = handle("/ext/ntp/pk/dn/request", r#"{"deviceSendTime":"5"}"#);
        let r = h.reply.as_ref().expect("reply");
        assert_eq!(r.topic, "/ext/ntp/pk/dn/response");
        assert_eq!(
            reply_text(&h),
            r#"{"deviceSendTime":"5","serverRecvTime":"10","serverSendTime":"20"}"#
        );
        assert!(handle("/ext/ntp/pk/dn/request", "{}").problem.is_some());
    }

    #[test]
    fn custom_topics_are_only_observed() {
        let h = handle("/pk/dn/user/update", "anything");
        assert!(h.reply.is_none() && h.completes.is_none() && h.problem.is_none());
    }
}
