//! Remote configuration (cloud-side §4.3): ask for the product's file
//! ([`Device::config_get`], `thing.config.get`), download it and check it
//! ([`Device::download_config`], [`download`]: the announced size and SHA-256, at most
//! 64 KB held in memory). Pushes arrive as [`crate::Event::ConfigPush`], answered by the SDK.
//!
//! ```no_run
//! # async fn run(device: aliot_device::Device) -> aliot_device::Result<()> {
//! let info = device.config_get().await?;
//! let file = device.download_config(&info).await?;
//! println!("config {} ({} bytes)", info.config_id, file.len());
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use aliot_protocol::config::MAX_CONFIG_SIZE;
pub use aliot_protocol::config::{ConfigInfo, ConfigMismatch};
use aliot_protocol::topic::SysPath;
use serde_json::json;

use crate::client::Device;
use crate::error::{Error, Result};
use crate::options::TrustAnchors;
use crate::url::BaseUrl;

impl Device {
    /// Asks the platform for the product's remote configuration (`thing.config.get`, the
    /// product's file), within the request timeout.
    ///
    /// # Errors
    /// [`Error::Alink`] with code 6710 (the product has none) or 6713 (switched off for the
    /// product); [`Error::BadReply`] when the answer lacks the platform's fields; as
    /// [`Device::request`].
    pub async fn config_get(&self) -> Result<ConfigInfo> {
        let reply = self
            .request(
                SysPath::ConfigGet,
                json!({"configScope": "product", "getType": "file"}),
            )
            .await?;
        serde_json::from_value(reply.data).map_err(|e| Error::BadReply {
            topic: format!(
                "/sys/{}/{}/thing/config/get_reply",
                self.product_key(),
                self.device_name()
            ),
            reason: e.to_string(),
        })
    }

    /// Downloads the configuration `info` describes (HTTP or HTTPS, trusting what MQTT trusts)
    /// within the request timeout, and checks its size and SHA-256.
    ///
    /// # Errors
    /// As [`download`].
    pub async fn download_config(&self, info: &ConfigInfo) -> Result<Vec<u8>> {
        let shared = self.shared();
        download(info, &shared.trust, shared.request_timeout).await
    }
}

/// Splits a download URL into its base (`scheme://host[:port][/path]`) and its query, sent as
/// it is.
fn split_url(url: &str) -> Result<(BaseUrl, &str)> {
    let (base, query) = match url.find('?') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    if query.chars().any(|c| c.is_whitespace() || c.is_control()) || query.contains('#') {
        return Err(Error::ConfigDownload(format!("{url:?} is not a usable URL")));
    }
    let base = BaseUrl::parse(base).map_err(|e| Error::ConfigDownload(format!("{url:?}: {e}")))?;
    Ok((base, query))
}

/// Downloads the configuration `info` describes within `timeout` and checks it: the answer must
/// be 200 with exactly `configSize` bytes (never more than 64 KB are read) whose SHA-256 is
/// `sign`.
///
/// # Errors
/// [`Error::ConfigDownload`] for a `configSize` above 64 KB, an unusable URL, an answer other
/// than 200 (an expired URL gets 403), or a file that is not the one announced;
/// [`Error::Connect`] and [`Error::Tls`] when the server cannot be reached.
pub async fn download(info: &ConfigInfo, trust: &TrustAnchors, timeout: Duration) -> Result<Vec<u8>> {
    let size = usize::try_from(info.config_size).unwrap_or(usize::MAX);
    if size > MAX_CONFIG_SIZE {
        return Err(Error::ConfigDownload(format!(
            "configSize {} is above the platform's 64 KB",
            info.config_size
        )));
    }
    let (base, query) = split_url(&info.url)?;
    let answer = crate::http::get(&base, query, trust, timeout, size)
        .await
        .map_err(|e| match e {
            Error::Connect { reason, .. } if reason.contains("larger than") => {
                Error::ConfigDownload(format!("the file is larger than the announced {size} bytes"))
            }
            other => other,
        })?;
    if answer.status != 200 {
        let text = String::from_utf8_lossy(&answer.body);
        return Err(Error::ConfigDownload(format!(
            "the URL answered HTTP {}: {}",
            answer.status,
            text.trim()
        )));
    }
    info.verify(&answer.body)
        .map_err(|e| Error::ConfigDownload(e.to_string()))?;
    Ok(answer.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_their_query_verbatim() {
        let (base, query) =
            split_url("http://127.0.0.1:8081/config/pk/c1?expires=9&signature=ab").expect("a url");
        assert_eq!(
            (base.address(), base.path.as_str()),
            ("127.0.0.1:8081".to_owned(), "/config/pk/c1")
        );
        assert_eq!(query, "?expires=9&signature=ab");
        let (base, query) = split_url("https://oss.example.com/a%2Fb").expect("a url");
        assert_eq!((base.tls, base.path.as_str(), query), (true, "/a%2Fb", ""));
        assert!(split_url("ftp://x/y").is_err());
        assert!(split_url("http://h/p?a b").is_err());
    }
}
