//! Remote configuration (cloud-side §4.3): a product's file uploaded, shown, downloaded,
//! deleted and switched on or off, and `thing.config.push` sent to the product's online
//! devices.

use aliot_protocol::topic::{SysPath, Topic};
use bytes::Bytes;
use rmqtt_codec::v3::QoS;

use super::{Result, Service};
use crate::clock::now_ms;
use crate::cluster::Downlink;
use crate::platform::config::push_request;
use crate::registry::{ConfigFile, RemoteConfig};
use crate::table::{Delivered, Reach};

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigPush {
    /// The product has no configuration: nothing was sent.
    NoConfig,
    /// Remote configuration is switched off for the product: nothing was sent.
    Disabled,
    /// `thing.config.push` went to every online device of the product.
    Pushed {
        /// The configuration pushed.
        config_id: String,
        /// The product's online devices.
        online: usize,
        /// Those whose outbound queue took the push (subscribed to `…/thing/config/push`,
        /// explicitly or through `_ss=1`).
        pushed: usize,
    },
}

impl Service {
    /// The product's remote configuration (switch and file metadata).
    ///
    /// # Errors
    /// `ProductNotFound`.
    pub async fn remote_config(&self, product_key: &str) -> Result<RemoteConfig> {
        self.product(product_key).await?;
        Ok(self.inner.registry.remote_config(product_key))
    }

    /// Stores a new configuration file for the product (durable when this returns).
    ///
    /// # Errors
    /// `InvalidArgument` (empty or above 64 KB), `ProductNotFound`, storage.
    pub async fn upload_config(&self, product_key: &str, file: Vec<u8>) -> Result<RemoteConfig> {
        crate::registry::check_config_size(&file)?;
        Ok(self
            .inner
            .registry
            .set_config_file(product_key, Some(file))
            .await?)
    }

    /// Deletes the product's configuration file.
    ///
    /// # Errors
    /// `ProductNotFound`, storage.
    pub async fn delete_config(&self, product_key: &str) -> Result<RemoteConfig> {
        Ok(self.inner.registry.set_config_file(product_key, None).await?)
    }

    /// Switches remote configuration on or off for the product.
    ///
    /// # Errors
    /// `ProductNotFound`, storage.
    pub async fn set_config_enabled(&self, product_key: &str, enabled: bool) -> Result<RemoteConfig> {
        Ok(self
            .inner
            .registry
            .set_config_enabled(product_key, enabled)
            .await?)
    }

    /// The product's configuration file and its metadata (`None` when it has none).
    ///
    /// # Errors
    /// `ProductNotFound`, storage.
    pub async fn config_file(&self, product_key: &str) -> Result<Option<crate::registry::ConfigDownload>> {
        self.product(product_key).await?;
        Ok(self.inner.registry.config_file(product_key).await?)
    }

    /// A fresh download URL of the product's file (what a device would be given now).
    pub fn config_url(&self, product_key: &str, file: &ConfigFile) -> String {
        self.config_url_issued_at(product_key, file, now_ms())
    }

    /// The download URL of the product's file as it would have been issued at `issued_ms`
    /// (epoch ms): valid until then plus `remote_config.url_ttl_secs` (for tools, and tests of
    /// expiry that do not wait).
    pub fn config_url_issued_at(&self, product_key: &str, file: &ConfigFile, issued_ms: u64) -> String {
        self.inner
            .config_urls
            .url(product_key, &file.config_id, issued_ms)
    }

    /// Sends `thing.config.push` (QoS 0, as the platform's other notices) to every online
    /// device of the product, each with a fresh URL; offline devices ask with
    /// `thing.config.get` when they come back.
    ///
    /// # Errors
    /// `ProductNotFound`.
    pub async fn push_config(&self, product_key: &str) -> Result<ConfigPush> {
        self.product(product_key).await?;
        let config = self.inner.registry.remote_config(product_key);
        if !config.enabled {
            return Ok(ConfigPush::Disabled);
        }
        let Some(file) = config.file else {
            return Ok(ConfigPush::NoConfig);
        };
        let online = self.online_devices(product_key);
        let mut pushed = 0;
        for device_name in &online {
            let info = self.inner.config_urls.info(product_key, &file, now_ms());
            let id = self.next_message_id();
            let topic = Topic::sys(product_key, device_name, SysPath::ConfigPush).to_string();
            let downlink = Downlink {
                topic,
                payload: Bytes::from(push_request(&id, &info)),
                qos: QoS::AtMostOnce,
            };
            // A device that went offline meanwhile, or whose queue is full, is not counted.
            if let Ok(taken) =
                self.inner
                    .cluster
                    .deliver(product_key, device_name, downlink, Reach::OnlineOnly)
                && taken.delivered == Delivered::Online
            {
                pushed += 1;
            }
        }
        tracing::info!(product_key, config_id = %file.config_id, online = online.len(), pushed, "remote config pushed");
        Ok(ConfigPush::Pushed {
            config_id: file.config_id,
            online: online.len(),
            pushed,
        })
    }
}
