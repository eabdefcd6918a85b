//! Signed, expiring download URLs: the one rule behind remote configuration files
//! (`platform::config`) and OTA packages (`ota`).
//!
//! On the platform these are expiring, signed OSS URLs. The hub's are
//! `{base}/{path}?expires={unix seconds}&signature={hex}`, the signature an HMAC-SHA256 of
//! `{path}/{expires}` under a key the hub draws at start and never shows (so URLs end with the
//! process, as they would expire anyway). [`UrlSigner::check`] refuses an altered or expired URL
//! (the listeners answer 403). The base is set once the listeners are bound (`run.rs`).

use std::sync::{PoisonError, RwLock};

use aliot_protocol::sign::{HexCase, SignMethod};
use rand::Rng as _;

/// Why a download URL is refused (answered 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UrlRefusal {
    /// The signature does not match (altered, or signed by another run of the hub).
    BadSignature,
    /// The URL's time is past.
    Expired,
}

impl UrlRefusal {
    pub(crate) fn message(self) -> &'static str {
        match self {
            UrlRefusal::BadSignature => "the URL's signature is not valid",
            UrlRefusal::Expired => "the URL has expired: ask for a new one",
        }
    }
}

/// Signs and checks download URLs. One per hub.
pub(crate) struct UrlSigner {
    key: [u8; 32],
    /// A std lock: written once at start, read for a copy of the base.
    base: RwLock<String>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner")
            .field("key", &"<redacted>")
            .field("base", &self.base())
            .finish()
    }
}

impl Default for UrlSigner {
    fn default() -> Self {
        Self::new()
    }
}

impl UrlSigner {
    /// A new key; relative URLs until [`Self::set_base`].
    pub(crate) fn new() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill(&mut key);
        Self {
            key,
            base: RwLock::new(String::new()),
        }
    }

    /// Sets the base URL devices reach the download routes at.
    pub(crate) fn set_base(&self, base: &str) {
        *self.base.write().unwrap_or_else(PoisonError::into_inner) = base.trim_end_matches('/').to_owned();
    }

    /// The base URL (empty: relative URLs).
    pub(crate) fn base(&self) -> String {
        self.base.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn signature(&self, path: &str, expires: &str) -> String {
        SignMethod::HmacSha256.hex(&self.key, format!("{path}/{expires}").as_bytes(), HexCase::Lower)
    }

    /// A signed URL of `path` (no leading `/`), valid from `now_ms` for `ttl_secs`.
    pub(crate) fn url(&self, path: &str, ttl_secs: u64, now_ms: u64) -> String {
        let expires = (now_ms / 1000 + ttl_secs).to_string();
        let signature = self.signature(path, &expires);
        format!("{}/{path}?expires={expires}&signature={signature}", self.base())
    }

    /// Checks a URL's `expires` and `signature` (constant-time) at `now_ms`.
    ///
    /// # Errors
    /// [`UrlRefusal`]: the signature first (an altered expiry is a bad signature), then the
    /// time.
    pub(crate) fn check(
        &self,
        path: &str,
        expires: &str,
        signature: &str,
        now_ms: u64,
    ) -> Result<(), UrlRefusal> {
        let content = format!("{path}/{expires}");
        if !SignMethod::HmacSha256.verify_hex(&self.key, content.as_bytes(), signature.as_bytes()) {
            return Err(UrlRefusal::BadSignature);
        }
        let expires: u64 = expires.parse().map_err(|_| UrlRefusal::BadSignature)?;
        if now_ms / 1000 >= expires {
            return Err(UrlRefusal::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_accepted_until_it_expires_and_never_once_altered() {
        let s = UrlSigner::new();
        s.set_base("http://h:1/");
        let url = s.url("ota/p1", 60, 1_000_000);
        assert!(
            url.starts_with("http://h:1/ota/p1?expires=1060&signature="),
            "{url}"
        );
        let sig = url.rsplit('=').next().expect("a signature");
        assert_eq!(s.check("ota/p1", "1060", sig, 1_059_999), Ok(()));
        assert_eq!(
            s.check("ota/p1", "1060", sig, 1_060_000),
            Err(UrlRefusal::Expired)
        );
        assert_eq!(
            s.check("ota/p2", "1060", sig, 1_000_000),
            Err(UrlRefusal::BadSignature)
        );
        assert_eq!(
            s.check("ota/p1", "1061", sig, 1_000_000),
            Err(UrlRefusal::BadSignature)
        );
        assert_eq!(
            UrlSigner::new().check("ota/p1", "1060", sig, 1),
            Err(UrlRefusal::BadSignature)
        );
    }
}
