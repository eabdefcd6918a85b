//! The tokens the platform issues over HTTP (spec §5.3, §5.5): the iotToken of HTTPS
//! pre-authentication (then the MQTT password with `securemode=-1`, username the iotId) and the
//! token of the HTTP data channel (the `password` header of each `POST /topic/…`).
//!
//! Decisions (the platform documents no lifetime): a token lives 48 hours by default
//! (`broker.token_ttl_secs`); a device holds at most one live token of each kind,
//! a new one replaces the old (so the store is bounded by the registered devices); tokens are
//! kept in memory only, so a restarted hub refuses them (CONNACK 4, or code 20003 on the HTTP
//! channel) and the device authenticates again, as it does when a token expires.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::registry::random_alnum;

/// Which door a token opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TokenKind {
    /// The iotToken of `/auth/devicename`, for MQTT with `securemode=-1`.
    Mqtt,
    /// The token of the HTTP data channel (`/auth`).
    HttpChannel,
}

/// The device a token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenHolder {
    pub(crate) product_key: String,
    pub(crate) device_name: String,
    pub(crate) iot_id: String,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenRefusal {
    /// Not a token this hub issued (or one a newer token replaced).
    Unknown,
    /// Issued, and expired.
    Expired,
}

#[derive(Debug)]
struct Issued {
    holder: TokenHolder,
    kind: TokenKind,
    expires_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    by_token: HashMap<String, Issued>,
    /// (kind, productKey, deviceName) → its live token.
    by_device: HashMap<(TokenKind, String, String), String>,
}

/// The live tokens. Shared by the HTTP endpoints that issue them and the logins that check them.
#[derive(Debug)]
pub(crate) struct Tokens {
    ttl_ms: u64,
    state: Mutex<State>,
}

impl Tokens {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new token of `kind` for `holder` at `now_ms`, replacing its previous one; returns it
    /// and when it expires (epoch ms).
    pub(crate) fn issue(&self, kind: TokenKind, holder: TokenHolder, now_ms: u64) -> (String, u64) {
        let token = random_alnum(32);
        let expires_ms = now_ms.saturating_add(self.ttl_ms);
        let key = (kind, holder.product_key.clone(), holder.device_name.clone());
        let mut s = self.lock();
        if let Some(old) = s.by_device.insert(key, token.clone()) {
            s.by_token.remove(&old);
        }
        s.by_token.insert(
            token.clone(),
            Issued {
                holder,
                kind,
                expires_ms,
            },
        );
        (token, expires_ms)
    }

    /// The holder of a live token of `kind`. An expired token is forgotten.
    pub(crate) fn check(
        &self,
        kind: TokenKind,
        token: &str,
        now_ms: u64,
    ) -> Result<TokenHolder, TokenRefusal> {
        let mut s = self.lock();
        let Some(issued) = s.by_token.get(token).filter(|i| i.kind == kind) else {
            return Err(TokenRefusal::Unknown);
        };
        if issued.expires_ms <= now_ms {
            let holder = issued.holder.clone();
            s.by_token.remove(token);
            s.by_device
                .remove(&(kind, holder.product_key, holder.device_name));
            return Err(TokenRefusal::Expired);
        }
        Ok(issued.holder.clone())
    }

    /// Forgets every token of a device (deleted, disabled).
    pub(crate) fn revoke(&self, product_key: &str, device_name: &str) {
        let mut s = self.lock();
        for kind in [TokenKind::Mqtt, TokenKind::HttpChannel] {
            if let Some(t) = s
                .by_device
                .remove(&(kind, product_key.to_owned(), device_name.to_owned()))
            {
                s.by_token.remove(&t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(dn: &str) -> TokenHolder {
        TokenHolder {
            product_key: "pk".into(),
            device_name: dn.into(),
            iot_id: format!("iot-{dn}"),
        }
    }

    #[test]
    fn a_token_opens_its_own_door_until_it_expires_or_is_replaced() {
        let t = Tokens::new(Duration::from_millis(100));
        let (a, expires) = t.issue(TokenKind::Mqtt, holder("d"), 1000);
        assert_eq!(expires, 1100);
        assert_eq!(t.check(TokenKind::Mqtt, &a, 1099), Ok(holder("d")));
        assert_eq!(
            t.check(TokenKind::HttpChannel, &a, 1000),
            Err(TokenRefusal::Unknown)
        );
        assert_eq!(t.check(TokenKind::Mqtt, &a, 1100), Err(TokenRefusal::Expired));
        assert_eq!(t.check(TokenKind::Mqtt, &a, 1100), Err(TokenRefusal::Unknown));
        let (b, _) = t.issue(TokenKind::Mqtt, holder("d"), 2000);
        let (c, _) = t.issue(TokenKind::Mqtt, holder("d"), 2001);
        assert_eq!(t.check(TokenKind::Mqtt, &b, 2002), Err(TokenRefusal::Unknown));
        assert_eq!(t.check(TokenKind::Mqtt, &c, 2002), Ok(holder("d")));
        let (h, _) = t.issue(TokenKind::HttpChannel, holder("d"), 2001);
        t.revoke("pk", "d");
        assert_eq!(t.check(TokenKind::Mqtt, &c, 2002), Err(TokenRefusal::Unknown));
        assert_eq!(
            t.check(TokenKind::HttpChannel, &h, 2002),
            Err(TokenRefusal::Unknown)
        );
        assert!(t.lock().by_token.is_empty() && t.lock().by_device.is_empty());
    }
}
