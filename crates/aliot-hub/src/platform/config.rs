//! Remote configuration (cloud-side §4.3): `thing.config.get` answered with the product's
//! file as the platform describes it (`configId`, `configSize`, `sign`, `signMethod`, `url`,
//! `getType`), code 6710 when the product has none and 6713 when the feature is switched off
//! for it; `thing.config.push` built for the service's push; and the download URLs.
//!
//! # Download URLs
//!
//! On the platform, `url` is an expiring, signed OSS URL. The hub's is
//! `{base}/config/{productKey}/{configId}?expires={unix seconds}&signature={hex}`, the
//! signature an HMAC-SHA256 of `config/{productKey}/{configId}/{expires}` under a key the hub draws
//! at start and never shows (so URLs end with the process, as they would expire anyway).
//! (the rule is `crate::signed_url`'s). [`ConfigUrls::check`] refuses an altered or expired URL (the listener answers 403). The
//! base is `[remote_config] public_url`, else the device HTTP(S) listener's, else the admin
//! listener's (set by `run.rs` once the listeners are bound).

use std::sync::{Arc, PoisonError, RwLock};

use aliot_protocol::alink::{MessageId, Reply, Request};
use aliot_protocol::config::{CONFIG_DISABLED, CONFIG_NOT_FOUND, ConfigInfo};
use aliot_protocol::topic::SysPath;
use bytes::Bytes;

use super::handling::{Context, Handling, method_of, parse_request, send_reply};
use crate::registry::{ConfigFile, Registry};

/// What the platform can tell a device of its product's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Remote configuration is switched off for the product (6713).
    Disabled,
    /// The product has no configuration (6710).
    NotFound,
    /// The file, with a fresh download URL.
    File(ConfigInfo),
}

pub(crate) use crate::signed_url::UrlRefusal;
use crate::signed_url::UrlSigner;

/// Signs and checks configuration download URLs (the rule is [`UrlSigner`]'s). One per hub,
/// shared by the platform (get) and the service (push).
#[derive(Debug)]
pub(crate) struct ConfigUrls {
    signer: Arc<UrlSigner>,
    /// A std lock: written once at start.
    ttl_secs: RwLock<u64>,
}

impl ConfigUrls {
    /// URLs signed by `signer`, with a 30-minute life until [`Self::configure`].
    pub(crate) fn new(signer: Arc<UrlSigner>) -> Self {
        Self {
            signer,
            ttl_secs: RwLock::new(1800),
        }
    }

    /// Sets the base URL devices reach the download routes at, and the URLs' life.
    pub(crate) fn configure(&self, base: &str, ttl_secs: u64) {
        self.signer.set_base(base);
        *self.ttl_secs.write().unwrap_or_else(PoisonError::into_inner) = ttl_secs;
    }

    fn path(product_key: &str, config_id: &str) -> String {
        format!("config/{product_key}/{config_id}")
    }

    /// A signed URL for the file `config_id` of the product, valid from `now_ms` for the
    /// configured life.
    pub(crate) fn url(&self, product_key: &str, config_id: &str, now_ms: u64) -> String {
        let ttl = *self.ttl_secs.read().unwrap_or_else(PoisonError::into_inner);
        self.signer.url(&Self::path(product_key, config_id), ttl, now_ms)
    }

    /// Checks a URL's `expires` and `signature` at `now_ms`.
    ///
    /// # Errors
    /// [`UrlRefusal`].
    pub(crate) fn check(
        &self,
        product_key: &str,
        config_id: &str,
        expires: &str,
        signature: &str,
        now_ms: u64,
    ) -> Result<(), UrlRefusal> {
        self.signer
            .check(&Self::path(product_key, config_id), expires, signature, now_ms)
    }

    /// The description of `file` with a fresh URL.
    pub(crate) fn info(&self, product_key: &str, file: &ConfigFile, now_ms: u64) -> ConfigInfo {
        ConfigInfo {
            config_id: file.config_id.clone(),
            config_size: file.size,
            sign: file.sign.clone(),
            sign_method: aliot_protocol::config::SIGN_METHOD.to_owned(),
            url: self.url(product_key, &file.config_id, now_ms),
            get_type: aliot_protocol::config::GET_TYPE_FILE.to_owned(),
        }
    }

    /// What a device of the product is told now (from the registry's memory).
    pub(crate) fn offer(&self, registry: &dyn Registry, product_key: &str, now_ms: u64) -> Offer {
        let config = registry.remote_config(product_key);
        match (&config.file, config.enabled) {
            (_, false) => Offer::Disabled,
            (None, true) => Offer::NotFound,
            (Some(file), true) => Offer::File(self.info(product_key, file, now_ms)),
        }
    }
}

/// Answers `thing.config.get` with `offer`.
pub(crate) fn get(topic: &str, path: &SysPath, payload: &Bytes, ctx: Context, offer: Offer) -> Handling {
    let request = match parse_request(topic, path, payload) {
        Ok(r) => r,
        Err(handling) => return *handling,
    };
    let method = request.method.clone().or_else(|| method_of(topic, path));
    let id = request.id.clone();
    let reply = match offer {
        Offer::Disabled => Reply::error(
            id,
            method,
            CONFIG_DISABLED,
            "remote config is switched off for the product",
        ),
        Offer::NotFound => Reply::error(id, method, CONFIG_NOT_FOUND, "remote config not found"),
        Offer::File(info) => Reply {
            data: serde_json::to_value(info).unwrap_or_default(),
            ..Reply::success(id, method)
        },
    };
    let mut handling = Handling::default();
    send_reply(&mut handling, topic, &request, reply, ctx);
    handling
}

/// The `thing.config.push` request announcing `info`, with message id `id`.
pub(crate) fn push_request(id: &str, info: &ConfigInfo) -> Vec<u8> {
    Request::new(
        MessageId::new(id),
        SysPath::ConfigPush
            .method()
            .unwrap_or_else(|| "thing.config.push".into()),
        serde_json::to_value(info).unwrap_or_default(),
    )
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            recv_ms: 1,
            now_ms: 2,
            honour_sys_ack: true,
            forward: false,
        }
    }

    #[test]
    fn a_url_is_accepted_until_it_expires_and_never_once_altered() {
        let urls = ConfigUrls::new(Arc::new(UrlSigner::new()));
        urls.configure("http://127.0.0.1:8081/", 60);
        let url = urls.url("pk", "cid", 1_000_000);
        assert!(
            url.starts_with("http://127.0.0.1:8081/config/pk/cid?expires=1060&signature="),
            "{url}"
        );
        let signature = url.rsplit('=').next().expect("a signature");
        assert_eq!(urls.check("pk", "cid", "1060", signature, 1_059_999), Ok(()));
        assert_eq!(
            urls.check("pk", "cid", "1060", signature, 1_060_000),
            Err(UrlRefusal::Expired)
        );
        assert_eq!(
            urls.check("pk", "cid", "9999", signature, 1_000_000),
            Err(UrlRefusal::BadSignature)
        );
        assert_eq!(
            urls.check("pk", "other", "1060", signature, 1_000_000),
            Err(UrlRefusal::BadSignature)
        );
        // Another hub's key signs differently.
        let other = ConfigUrls::new(Arc::new(UrlSigner::new()));
        assert_eq!(
            other.check("pk", "cid", "1060", signature, 1_000_000),
            Err(UrlRefusal::BadSignature)
        );
    }

    #[test]
    fn get_is_answered_with_the_file_or_the_platforms_codes() {
        let topic = "/sys/pk/dn/thing/config/get";
        let payload = Bytes::from_static(
            br#"{"id":"5","version":"1.0","params":{"configScope":"product","getType":"file"},"method":"thing.config.get"}"#,
        );
        let text = |h: &Handling| {
            String::from_utf8(h.reply.as_ref().expect("a reply").payload.clone()).expect("utf8")
        };
        let h = get(topic, &SysPath::ConfigGet, &payload, ctx(), Offer::NotFound);
        assert!(text(&h).starts_with(r#"{"code":6710"#), "{}", text(&h));
        let h = get(topic, &SysPath::ConfigGet, &payload, ctx(), Offer::Disabled);
        assert!(text(&h).starts_with(r#"{"code":6713"#), "{}", text(&h));
        let info = ConfigInfo::for_file("c1", b"abc", "http://h/config/pk/c1".into());
        let h = get(
            topic,
            &SysPath::ConfigGet,
            &payload,
            ctx(),
            Offer::File(info.clone()),
        );
        let reply = h.reply.as_ref().expect("a reply");
        assert_eq!(reply.topic, "/sys/pk/dn/thing/config/get_reply");
        let v: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON");
        assert_eq!(v["code"], 200);
        assert_eq!(v["id"], "5");
        assert_eq!(v["method"], "thing.config.get");
        let back: ConfigInfo = serde_json::from_value(v["data"].clone()).expect("a ConfigInfo");
        assert_eq!(back, info);
    }

    #[test]
    fn push_carries_the_info_as_params() {
        let info = ConfigInfo::for_file("c1", b"abc", "u".into());
        let v: serde_json::Value = serde_json::from_slice(&push_request("9", &info)).expect("JSON");
        assert_eq!(v["method"], "thing.config.push");
        assert_eq!(v["id"], "9");
        assert_eq!(v["params"]["configId"], "c1");
        assert_eq!(v["params"]["getType"], "file");
    }
}
