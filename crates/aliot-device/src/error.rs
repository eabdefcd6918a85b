//! The error type of aliot-device.

use std::time::Duration;

use aliot_protocol::{AuthCode, ConnackCode};
use thiserror::Error;

/// Everything that can go wrong in the device SDK.
///
/// Foreign errors (IO, TLS, the MQTT client's) are kept as text so that the type stays `Clone`
/// (the same error is handed to every waiter) and the MQTT client stays an implementation detail.
/// No variant ever carries the device secret or the CONNECT password.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// An option is out of range or inconsistent (checked before connecting).
    #[error("invalid option: {0}")]
    Options(String),
    /// Bad identity, clientId, endpoint or profile (from aliot-protocol).
    #[error(transparent)]
    Protocol(#[from] aliot_protocol::Error),
    /// A CA file could not be read or holds no usable certificate, or TLS could not be set up.
    #[error("TLS: {0}")]
    Tls(String),
    /// The platform answered CONNECT with a refusal (CONNACK return code 1..=5).
    #[error("connection refused: CONNACK {code}: {cause}; fix: {hint}", cause = code.cause(), hint = code.hint())]
    Refused {
        /// The CONNACK return code, with Aliyun's cause ([`ConnackCode::cause`]) and the fix
        /// ([`ConnackCode::hint`]).
        code: ConnackCode,
    },
    /// The platform refused a dynamic registration ([`crate::register::register_mqtt`]) with a
    /// CONNACK refusal (1..=5).
    #[error(
        "registration refused: CONNACK {code}: {cause}; fix: {hint}",
        cause = code.registration_cause(),
        hint = code.registration_hint()
    )]
    RegistrationRefused {
        /// The CONNACK return code, with the registration's cause
        /// ([`ConnackCode::registration_cause`]) and the fix ([`ConnackCode::registration_hint`]).
        code: ConnackCode,
    },
    /// The platform's HTTPS auth service refused a dynamic registration
    /// ([`crate::register::register_https`]) with one of its codes: 6288 (the product does not
    /// allow it), 6289 (the device is already activated), 6292 (sign method), 6600 (signature),
    /// 460 (parameters, or a device not created beforehand), 500.
    #[error(
        "registration refused: code {code}: {message}; fix: {hint}",
        hint = code.hint()
    )]
    RegistrationRejected {
        /// The platform's code, with its meaning ([`AuthCode::meaning`]) and the fix
        /// ([`AuthCode::hint`]).
        code: AuthCode,
        /// The platform's message.
        message: String,
    },
    /// The platform's HTTPS auth service refused a pre-authentication ([`crate::Login::PreAuth`])
    /// with one of its codes: 401 (unknown device or wrong signature), 403 (disabled), 460
    /// (parameters), 500.
    #[error(
        "pre-authentication refused: code {code}: {message}; fix: {hint}",
        hint = code.hint()
    )]
    PreAuthRefused {
        /// The platform's code, with its meaning and the fix.
        code: AuthCode,
        /// The platform's message.
        message: String,
    },
    /// The platform accepted a registration but did not publish its answer in time.
    #[error("no registration answer on {topic} within {timeout:?}")]
    RegistrationTimeout {
        /// The topic the answer was expected on (`/ext/register` or `/ext/regnwl`).
        topic: String,
        /// The registration timeout that expired.
        timeout: Duration,
    },
    /// The connection could not be set up (DNS, TCP, TLS handshake, timeout) or was lost.
    #[error("cannot reach {endpoint}: {reason}")]
    Connect {
        /// `host:port`.
        endpoint: String,
        /// What failed.
        reason: String,
    },
    /// A QoS 0 publish (or a reply) was attempted while the device is offline.
    #[error("not connected")]
    NotConnected,
    /// The platform did not answer a request in time.
    #[error("no reply to {method} (id {id}) within {timeout:?}")]
    Timeout {
        /// The Alink method (or `ntp`).
        method: String,
        /// The request id.
        id: String,
        /// The request timeout that expired.
        timeout: Duration,
    },
    /// The platform answered a request with an Alink error code.
    #[error("{method} (id {id}) failed with code {code}: {message}")]
    Alink {
        /// The Alink method.
        method: String,
        /// The request id.
        id: String,
        /// The Alink code (never 200).
        code: u32,
        /// The platform's message, or aliot's description of the code.
        message: String,
    },
    /// A reply that could not be read.
    #[error("unreadable reply on {topic}: {reason}")]
    BadReply {
        /// The topic it came on (for the HTTPS auth service: the request's path).
        topic: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The bounded queue of unacknowledged QoS 1 publishes is full; the new message was not
    /// queued (nothing already queued is dropped).
    #[error(
        "{capacity} QoS 1 messages are already waiting for an acknowledgement; the new one was not queued"
    )]
    QueueFull {
        /// The configured capacity ([`crate::DeviceOptions::outbox_capacity`]).
        capacity: usize,
    },
    /// The platform refused a SUBSCRIBE (SUBACK 0x80).
    #[error("the platform refused the subscription to {filter}")]
    SubscribeRejected {
        /// The topic filter.
        filter: String,
    },
    /// A topic or filter that MQTT does not allow (empty, wildcard in a topic, NUL...) or that is
    /// beyond the caps (`aliot_protocol::topic::MAX_TOPIC_LEN` bytes, `MAX_TOPIC_LEVELS` levels).
    #[error("invalid topic {0:?}")]
    InvalidTopic(String),
    /// A topic outside the device's own namespaces (`/{pk}/{dn}/…`, `/sys/{pk}/{dn}/…`, …): the
    /// platform closes the connection of a device that publishes there.
    #[error("{0:?} is not one of this device's topics (the platform would close the connection)")]
    TopicNotAllowed(String),
    /// A value breaks the product's thing model ([`crate::thing::ThingModel`]): checked before
    /// sending, so nothing was sent.
    #[error("the thing model refuses {identifier}: code {code}: {message}")]
    Model {
        /// The identifier at fault (a property, an event's or service's parameter, or the
        /// event or service itself).
        identifier: String,
        /// The platform's code for the broken rule (63xx; 460, 6106 for the whole message).
        code: u32,
        /// The platform's message, naming the rule (`tsl parse: data type is not int -> code`).
        message: String,
    },
    /// A thing model (TSL) that could not be read: the JSON path and the fault.
    #[error("invalid thing model: {0}")]
    Tsl(aliot_protocol::tsl::TslError),
    /// A remote configuration download failed: the URL answered something else than the file,
    /// or the file is not the one announced (size, SHA-256), or it is above 64 KB.
    #[error("remote config download: {0}")]
    ConfigDownload(String),
    /// A firmware download failed (OTA step -2): the URL answered something else than the file
    /// (an expired URL gets 403), the connection kept dropping, or the file could not be written.
    #[error("firmware download: {0}")]
    OtaDownload(String),
    /// A downloaded firmware is not the one announced (OTA step -3): wrong size or digest. The
    /// file is removed, never handed over.
    #[error("firmware check failed: {0}")]
    OtaVerify(String),
    /// An OTA push or `thing.ota.firmware.get` answer that cannot be used (no URL, no size, an
    /// unknown `signMethod`…).
    #[error("bad OTA task: {0}")]
    OtaTask(String),
    /// The device was stopped (by [`crate::Device::disconnect`], by dropping every handle, or by
    /// a refusal under [`crate::RefusalPolicy::Stop`]).
    #[error("the device is stopped")]
    Closed,
}

impl Error {
    /// The CONNACK code when this is a refusal (of a login or of a registration).
    pub fn connack(&self) -> Option<ConnackCode> {
        match self {
            Error::Refused { code } | Error::RegistrationRefused { code } => Some(*code),
            _ => None,
        }
    }
}

impl Error {
    /// Whether retrying cannot fix this failure: a CONNACK refusal other than 3, or a refused
    /// pre-authentication other than 500 (what the [`crate::RefusalPolicy`] applies to).
    pub(crate) fn is_permanent_refusal(&self) -> bool {
        match self {
            Error::PreAuthRefused { code, .. } => !matches!(code, AuthCode::SystemError),
            other => other.connack().is_some_and(is_permanent),
        }
    }
}

/// `Result` with aliot-device's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether retrying can fix a refusal: 3 (server unavailable) is transient; 1, 2, 4 and 5 say
/// the device's configuration or credentials are wrong.
pub(crate) fn is_permanent(code: ConnackCode) -> bool {
    !matches!(code, ConnackCode::ServerUnavailable | ConnackCode::Accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_the_code_the_cause_and_the_fix() {
        let e = Error::Refused {
            code: ConnackCode::BadUsernameOrPassword,
        };
        let text = e.to_string();
        assert!(text.contains("4 (bad user name or password)"), "{text}");
        assert!(
            text.contains(ConnackCode::BadUsernameOrPassword.cause()),
            "{text}"
        );
        assert!(text.contains("aliot verify"), "{text}");
        assert_eq!(e.connack(), Some(ConnackCode::BadUsernameOrPassword));
    }
}
