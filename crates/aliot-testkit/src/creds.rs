//! Signed CONNECT fields as real SDKs build them.

use aliot_protocol::sign::{HexCase, SignMethod, sign_content};
use bytes::Bytes;
use rmqtt_codec::v3::{Connect, Packet};

/// The productKey of the devices [`crate::BrokerHub`] registers.
pub const PK: &str = "a1TestPk01";
/// Their deviceSecret.
pub const SECRET: &str = "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq";

/// Signed CONNECT fields.
#[derive(Clone, Debug)]
pub struct Creds {
    /// clientId.
    pub client_id: String,
    /// username.
    pub username: String,
    /// password (hex HMAC).
    pub password: String,
}

/// Signs device `dn` of [`PK`] like the documentation's example:
/// `{pk}.{dn}|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|` plus `extra`
/// parameters (e.g. `_ss=1,ext=1`).
pub fn creds(dn: &str, extra: &str) -> Creds {
    creds_with(&Signing {
        device_name: dn,
        extra,
        ..Signing::default()
    })
}

/// Signs device `dn` of `pk` with `secret` (otherwise as [`creds`]).
pub fn signed(pk: &str, dn: &str, secret: &str) -> Creds {
    creds_with(&Signing {
        product_key: pk,
        device_name: dn,
        secret,
        ..Signing::default()
    })
}

/// Everything [`creds_with`] can vary.
#[derive(Debug, Clone, Copy)]
pub struct Signing<'a> {
    /// productKey.
    pub product_key: &'a str,
    /// deviceName.
    pub device_name: &'a str,
    /// deviceSecret (the HMAC key).
    pub secret: &'a str,
    /// The clientId prefix; `""` means `{pk}.{dn}`.
    pub prefix: &'a str,
    /// The sign method.
    pub method: SignMethod,
    /// The timestamp, or none.
    pub timestamp: Option<&'a str>,
    /// More clientId parameters (`_ss=1,ext=1`).
    pub extra: &'a str,
    /// Hex case of the password.
    pub case: HexCase,
}

impl Default for Signing<'_> {
    fn default() -> Self {
        Self {
            product_key: PK,
            device_name: "dev1",
            secret: SECRET,
            prefix: "",
            method: SignMethod::HmacSha1,
            timestamp: Some("1539421321846"),
            extra: "",
            case: HexCase::Lower,
        }
    }
}

/// Signed CONNECT fields from `s`.
pub fn creds_with(s: &Signing<'_>) -> Creds {
    let prefix = if s.prefix.is_empty() {
        format!("{}.{}", s.product_key, s.device_name)
    } else {
        s.prefix.to_owned()
    };
    let mut params = vec![
        "securemode=3".to_owned(),
        format!("signmethod={}", s.method.as_str()),
    ];
    if let Some(ts) = s.timestamp {
        params.push(format!("timestamp={ts}"));
    }
    if !s.extra.is_empty() {
        params.push(s.extra.to_owned());
    }
    let content = sign_content(&prefix, s.device_name, s.product_key, s.timestamp);
    Creds {
        client_id: format!("{prefix}|{}|", params.join(",")),
        username: format!("{}&{}", s.device_name, s.product_key),
        password: s.method.hex(s.secret.as_bytes(), content.as_bytes(), s.case),
    }
}

/// A CONNECT packet carrying `c`.
pub fn connect_packet(c: &Creds, keep_alive: u16, clean_session: bool) -> Packet {
    Packet::Connect(Box::new(Connect {
        clean_session,
        keep_alive,
        client_id: c.client_id.clone().into(),
        username: Some(c.username.clone().into()),
        password: Some(Bytes::from(c.password.clone())),
        ..Connect::default()
    }))
}
