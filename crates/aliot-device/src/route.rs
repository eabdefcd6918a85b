//! Where an incoming PUBLISH goes, pure: a reply to one of our requests, an NTP response, a
//! request the application must answer (property set, service call, RRPC), or a plain message.

use aliot_protocol::alink::Request;
use aliot_protocol::topic::{SysPath, Topic};

/// How a service call reached the device, which decides where its reply goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallVia {
    /// Asynchronous: `/sys/{pk}/{dn}/thing/service/{id}`, reply on `…/{id}_reply`.
    Async,
    /// Synchronous, old style: `/sys/{pk}/{dn}/rrpc/request/{messageId}`, reply on
    /// `…/rrpc/response/{messageId}`.
    Rrpc {
        /// The RRPC message id (from the topic).
        message_id: String,
    },
    /// Synchronous, new style (`ext=1`): `/ext/rrpc/{messageId}/sys/{pk}/{dn}/thing/service/{id}`,
    /// reply on the same topic.
    ExtRrpc {
        /// The RRPC message id (from the topic).
        message_id: String,
    },
}

impl CallVia {
    /// Whether the caller waits synchronously (RRPC, 8 s deadline on the platform).
    pub fn is_sync(&self) -> bool {
        !matches!(self, CallVia::Async)
    }

    /// The RRPC message id, for synchronous calls.
    pub fn message_id(&self) -> Option<&str> {
        match self {
            CallVia::Async => None,
            CallVia::Rrpc { message_id } | CallVia::ExtRrpc { message_id } => Some(message_id),
        }
    }
}

/// What kind of raw RRPC request arrived.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RrpcKind {
    /// Raw RRPC (the server API `RRpc` with bytes): `/sys/{pk}/{dn}/rrpc/request/{messageId}`.
    Raw,
    /// Custom-topic RRPC: `/ext/rrpc/{messageId}/{pk}/{dn}/user/...`; `topic` is the custom
    /// topic (`/{pk}/{dn}/user/...`).
    Custom {
        /// The custom topic inside the RRPC topic.
        topic: String,
    },
}

/// The destination of one incoming message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Route {
    /// `/sys/{pk}/{dn}/…_reply`: the platform's answer to an uplink.
    Reply,
    /// `/ext/ntp/{pk}/{dn}/response`.
    Ntp,
    /// `/shadow/get/{pk}/{dn}`: a shadow reply or `control` push.
    Shadow,
    /// `/sys/{pk}/{dn}/thing/service/property/set`.
    PropertySet { reply_topic: String },
    /// A service call (async or synchronous over RRPC); `request` is the parsed Alink request.
    Service {
        service: String,
        via: CallVia,
        reply_topic: String,
        request: Box<Request>,
    },
    /// A raw or custom-topic RRPC request.
    Rrpc {
        message_id: String,
        kind: RrpcKind,
        reply_topic: String,
    },
    /// `/sys/{pk}/{dn}/thing/config/push`: a new remote configuration.
    ConfigPush { reply_topic: String },
    /// `/ota/device/upgrade/{pk}/{dn}`: a firmware upgrade.
    OtaUpgrade,
    /// Anything else: custom topics, broadcasts, unparsable requests.
    Message,
}

/// Classifies an incoming message for the device `(pk, dn)`.
pub(crate) fn route(topic: &str, payload: &[u8], pk: &str, dn: &str) -> Route {
    // A gateway's session replies (`/ext/session/{pk}/{dn}/combine/…_reply`) answer by id too.
    if topic.starts_with(&format!("/ext/session/{pk}/{dn}/")) && topic.ends_with("_reply") {
        return Route::Reply;
    }
    let Ok(parsed) = Topic::parse(topic) else {
        return Route::Message;
    };
    if parsed.device() != Some((pk, dn)) {
        return Route::Message;
    }
    match parsed {
        Topic::Sys { path, .. } => match path {
            SysPath::Reply(_) => Route::Reply,
            // Replies to paths the protocol crate does not type (gateway `thing/topo/add_reply`,
            // `thing/sub/register_reply`…) answer by id too.
            SysPath::Other(p) if p.ends_with("_reply") => Route::Reply,
            SysPath::PropertySet => Route::PropertySet {
                reply_topic: format!("{topic}_reply"),
            },
            SysPath::ConfigPush => Route::ConfigPush {
                reply_topic: format!("{topic}_reply"),
            },
            SysPath::Service(service) => match Request::parse(payload) {
                Ok(request) => Route::Service {
                    service,
                    via: CallVia::Async,
                    reply_topic: format!("{topic}_reply"),
                    request: Box::new(request),
                },
                Err(_) => Route::Message,
            },
            SysPath::RrpcRequest(message_id) => {
                let reply_topic = format!("/sys/{pk}/{dn}/rrpc/response/{message_id}");
                // The same topic carries synchronous service calls (Alink JSON whose method is
                // `thing.service.{id}`) and raw RRPC (any bytes).
                match Request::parse(payload) {
                    Ok(request) => match request
                        .method
                        .as_deref()
                        .and_then(|m| m.strip_prefix("thing.service."))
                    {
                        Some(service) if !service.is_empty() && service != "property.set" => Route::Service {
                            service: service.to_owned(),
                            via: CallVia::Rrpc { message_id },
                            reply_topic,
                            request: Box::new(request),
                        },
                        _ => Route::Rrpc {
                            message_id,
                            kind: RrpcKind::Raw,
                            reply_topic,
                        },
                    },
                    Err(_) => Route::Rrpc {
                        message_id,
                        kind: RrpcKind::Raw,
                        reply_topic,
                    },
                }
            }
            _ => Route::Message,
        },
        Topic::NtpResponse { .. } => Route::Ntp,
        Topic::Ota { action, .. } if action == "upgrade" => Route::OtaUpgrade,
        Topic::Shadow { action, .. } if action == "get" => Route::Shadow,
        Topic::ExtRrpc { message_id, inner } => match *inner {
            Topic::Sys {
                path: SysPath::Service(service),
                ..
            } => match Request::parse(payload) {
                Ok(request) => Route::Service {
                    service,
                    via: CallVia::ExtRrpc { message_id },
                    reply_topic: topic.to_owned(),
                    request: Box::new(request),
                },
                Err(_) => Route::Rrpc {
                    message_id,
                    kind: RrpcKind::Raw,
                    reply_topic: topic.to_owned(),
                },
            },
            Topic::Custom { .. } => Route::Rrpc {
                message_id,
                kind: RrpcKind::Custom {
                    topic: inner.to_string(),
                },
                reply_topic: topic.to_owned(),
            },
            _ => Route::Rrpc {
                message_id,
                kind: RrpcKind::Raw,
                reply_topic: topic.to_owned(),
            },
        },
        _ => Route::Message,
    }
}

/// The system topics a device subscribes to itself when it does not announce `_ss=1`.
pub(crate) fn system_filters(pk: &str, dn: &str, ext_rrpc: bool) -> Vec<String> {
    let p = format!("/sys/{pk}/{dn}");
    let mut filters = vec![
        format!("{p}/thing/event/+/post_reply"),
        format!("{p}/thing/service/property/set"),
        format!("{p}/thing/service/+"),
        format!("{p}/rrpc/request/+"),
        format!("/ext/ntp/{pk}/{dn}/response"),
        format!("{p}/thing/property/desired/+"),
        format!("/shadow/get/{pk}/{dn}"),
        format!("{p}/thing/config/get_reply"),
        format!("{p}/thing/config/push"),
        format!("/ota/device/upgrade/{pk}/{dn}"),
        format!("{p}/thing/ota/firmware/get_reply"),
    ];
    if ext_rrpc {
        filters.push(format!("/ext/rrpc/+{p}/thing/service/+"));
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL: &[u8] = br#"{"id":"7","version":"1.0","params":{"a":1},"method":"thing.service.Reboot"}"#;

    #[test]
    fn gateway_replies_are_replies() {
        for topic in [
            "/sys/pk/gw/thing/topo/add_reply",
            "/sys/pk/gw/thing/sub/register_reply",
            "/ext/session/pk/gw/combine/login_reply",
            "/ext/session/pk/gw/combine/batch_logout_reply",
        ] {
            assert_eq!(route(topic, b"{}", "pk", "gw"), Route::Reply, "{topic}");
        }
        assert_eq!(
            route("/ext/session/pk/other/combine/login_reply", b"{}", "pk", "gw"),
            Route::Message
        );
        assert_eq!(
            route("/sys/pk/gw/thing/topo/change", b"{}", "pk", "gw"),
            Route::Message
        );
    }

    #[test]
    fn replies_and_ntp_are_recognised() {
        assert_eq!(
            route("/sys/pk/dn/thing/event/property/post_reply", b"{}", "pk", "dn"),
            Route::Reply
        );
        assert_eq!(
            route("/sys/pk/dn/thing/event/alarm/post_reply", b"{}", "pk", "dn"),
            Route::Reply
        );
        assert_eq!(route("/ext/ntp/pk/dn/response", b"{}", "pk", "dn"), Route::Ntp);
    }

    #[test]
    fn property_sets_reply_on_set_reply() {
        assert_eq!(
            route("/sys/pk/dn/thing/service/property/set", b"{}", "pk", "dn"),
            Route::PropertySet {
                reply_topic: "/sys/pk/dn/thing/service/property/set_reply".into()
            }
        );
    }

    #[test]
    fn service_calls_in_all_three_styles() {
        let Route::Service {
            service,
            via,
            reply_topic,
            ..
        } = route("/sys/pk/dn/thing/service/Reboot", CALL, "pk", "dn")
        else {
            panic!("async call")
        };
        assert_eq!(
            (service.as_str(), via, reply_topic.as_str()),
            ("Reboot", CallVia::Async, "/sys/pk/dn/thing/service/Reboot_reply")
        );

        let Route::Service {
            service,
            via,
            reply_topic,
            ..
        } = route("/sys/pk/dn/rrpc/request/123", CALL, "pk", "dn")
        else {
            panic!("old-style sync call")
        };
        assert_eq!(service, "Reboot");
        assert_eq!(
            via,
            CallVia::Rrpc {
                message_id: "123".into()
            }
        );
        assert_eq!(reply_topic, "/sys/pk/dn/rrpc/response/123");

        let t = "/ext/rrpc/456/sys/pk/dn/thing/service/Reboot";
        let Route::Service { via, reply_topic, .. } = route(t, CALL, "pk", "dn") else {
            panic!("new-style sync call")
        };
        assert_eq!(
            via,
            CallVia::ExtRrpc {
                message_id: "456".into()
            }
        );
        assert_eq!(reply_topic, t);
    }

    #[test]
    fn raw_and_custom_rrpc() {
        assert_eq!(
            route("/sys/pk/dn/rrpc/request/9", b"\x01\x02raw", "pk", "dn"),
            Route::Rrpc {
                message_id: "9".into(),
                kind: RrpcKind::Raw,
                reply_topic: "/sys/pk/dn/rrpc/response/9".into()
            }
        );
        let t = "/ext/rrpc/10/pk/dn/user/get";
        assert_eq!(
            route(t, b"hello", "pk", "dn"),
            Route::Rrpc {
                message_id: "10".into(),
                kind: RrpcKind::Custom {
                    topic: "/pk/dn/user/get".into()
                },
                reply_topic: t.into()
            }
        );
    }

    #[test]
    fn other_devices_and_custom_topics_are_plain_messages() {
        assert_eq!(
            route("/sys/pk/other/thing/service/property/set", b"{}", "pk", "dn"),
            Route::Message
        );
        assert_eq!(route("/pk/dn/user/get", b"x", "pk", "dn"), Route::Message);
        assert_eq!(route("/broadcast/pk/all", b"x", "pk", "dn"), Route::Message);
        assert_eq!(route("not-a-topic", b"x", "pk", "dn"), Route::Message);
        assert_eq!(
            route("/sys/pk/dn/thing/service/Reboot", b"garbage", "pk", "dn"),
            Route::Message
        );
    }

    #[test]
    fn system_filters_cover_what_the_sdk_answers() {
        let f = system_filters("pk", "dn", true);
        assert!(f.contains(&"/ext/rrpc/+/sys/pk/dn/thing/service/+".to_owned()));
        assert_eq!(system_filters("pk", "dn", false).len(), f.len() - 1);
        for filter in &f {
            assert!(aliot_protocol::topic::valid_filter(filter), "{filter}");
        }
    }
}
