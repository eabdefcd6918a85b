//! Every CONNACK return code the hub sends, in one place (spec §3.1, §12).
//!
//! | code | when | decided by |
//! |---|---|---|
//! | 0 | accepted | the platform's verdict |
//! | 1 | protocol level other than 3 (MQTT 3.1) or 4 (MQTT 3.1.1) | the engine ([`unsupported_level`]) |
//! | 2 | empty clientId with clean session 0; malformed clientId, unknown securemode, keepalive outside 30..1200 s | the engine ([`empty_client_id`]); the platform |
//! | 3 | server unavailable | the platform |
//! | 4 | bad or missing username or password, unknown device, unsupported signmethod, signature mismatch | the platform |
//! | 5 | device disabled | the platform |
//!
//! A connection refused for being over the connection limit is closed without a CONNACK.

use rmqtt_codec::v3::ConnectAckReason;
use rmqtt_codec::version::ProtocolVersion;

use super::Refused;

/// The CONNACK return code for a refusal code 1..=5 (anything else is "not authorized").
pub(crate) fn reason(code: u8) -> ConnectAckReason {
    match code {
        0 => ConnectAckReason::ConnectionAccepted,
        1 => ConnectAckReason::UnacceptableProtocolVersion,
        2 => ConnectAckReason::IdentifierRejected,
        3 => ConnectAckReason::ServiceUnavailable,
        4 => ConnectAckReason::BadUserNameOrPassword,
        _ => ConnectAckReason::NotAuthorized,
    }
}

/// A CONNECT whose protocol level the codec refused; `hint` is the level read from the packet.
pub(crate) fn unsupported_level(hint: Option<ProtocolVersion>) -> Refused {
    let reason = match hint {
        Some(ProtocolVersion::MQTT5) => "MQTT 5.0 (protocol level 5) is not supported; use 3.1.1 or 3.1",
        _ => "unsupported MQTT protocol level; use 3.1.1 (level 4) or 3.1 (level 3)",
    };
    Refused {
        code: 1,
        reason: reason.to_owned(),
    }
}

/// A CONNECT with an empty clientId and clean session 0 (MQTT-3.1.3-8).
pub(crate) fn empty_client_id() -> Refused {
    Refused {
        code: 2,
        reason: "empty clientId with clean session 0".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_code_has_its_connack() {
        for code in 0..=5u8 {
            assert_eq!(u8::from(reason(code)), code);
        }
        assert_eq!(u8::from(reason(9)), 5);
        assert_eq!(unsupported_level(Some(ProtocolVersion::MQTT5)).code, 1);
        assert!(
            unsupported_level(Some(ProtocolVersion::MQTT5))
                .reason
                .contains("MQTT 5.0")
        );
        assert_eq!(empty_client_id().code, 2);
    }
}
