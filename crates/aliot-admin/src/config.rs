//! `/api/v1/products/{pk}/config`: a product's remote configuration file (at most 64 KB),
//! its switch, its download and `thing.config.push`.

use bytes::Bytes;
use hyper::Method;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::Result;
use crate::wire::{query, segment};

/// The answer to `GET|PUT|PATCH|DELETE /api/v1/products/{pk}/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteConfigView {
    /// productKey.
    pub product_key: String,
    /// Whether remote configuration is on for the product (off: devices asking get 6713).
    pub enabled: bool,
    /// The file, when one is uploaded (`thing.config.get` answers 6710 without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigFileView>,
    /// What the push after an upload with `?push=true` did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<ConfigPushed>,
}

/// A product's configuration file, as devices are told of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigFileView {
    /// `configId` (a new one for every upload).
    pub config_id: String,
    /// `configSize`, bytes.
    pub config_size: u64,
    /// `sign`: lower-case hex SHA-256.
    pub sign: String,
    /// `signMethod`: `Sha256`.
    pub sign_method: String,
    /// When it was uploaded, epoch ms.
    pub uploaded: u64,
    /// The same instant, ISO 8601 UTC.
    pub uploaded_time: String,
    /// A download URL as a device would get it now (signed, expiring).
    pub url: String,
}

/// `PATCH /api/v1/products/{pk}/config` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateRemoteConfig {
    /// Switches remote configuration on or off for the product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `PUT /api/v1/products/{pk}/config` query: `?push=true` pushes the new file to the online
/// devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UploadConfigQuery {
    /// Push `thing.config.push` to the product's online devices once stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<bool>,
}

/// The answer to `POST /api/v1/products/{pk}/config/push`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigPushed {
    /// productKey.
    pub product_key: String,
    /// The configuration pushed.
    pub config_id: String,
    /// The product's online devices.
    pub online: usize,
    /// Those the push was queued for (online and subscribed to `…/thing/config/push`,
    /// explicitly or through `_ss=1`).
    pub pushed: usize,
}

fn config_path(product_key: &str) -> String {
    format!("/api/v1/products/{}/config", segment(product_key))
}

impl Client {
    /// `GET /api/v1/products/{pk}/config`: the product's switch and file.
    ///
    /// # Errors
    ///
    /// As [`Client::product`].
    pub async fn remote_config(&self, product_key: &str) -> Result<RemoteConfigView> {
        self.get_json(&config_path(product_key)).await
    }

    /// `PUT /api/v1/products/{pk}/config[?push=true]` (raw body): stores a new configuration
    /// file, durably, and with `push` sends `thing.config.push` to the online devices.
    ///
    /// # Errors
    ///
    /// As [`Client::product`]; `invalid_argument` (400) for an empty file or one above 64 KB.
    pub async fn upload_config(
        &self,
        product_key: &str,
        file: Vec<u8>,
        push: bool,
    ) -> Result<RemoteConfigView> {
        let q = UploadConfigQuery {
            push: push.then_some(true),
        };
        let path = format!("{}{}", config_path(product_key), query(&q));
        let answer = self
            .exchange(Method::PUT, &path, Some(Bytes::from(file)), self.timeout)
            .await?;
        self.decode(&path, &answer)
    }

    /// `GET /api/v1/products/{pk}/config/file`: the file's bytes.
    ///
    /// # Errors
    ///
    /// As [`Client::product`]; `config_not_found` (404) when the product has none.
    pub async fn download_config(&self, product_key: &str) -> Result<Vec<u8>> {
        let path = format!("{}/file", config_path(product_key));
        Ok(self
            .exchange(Method::GET, &path, None, self.timeout)
            .await?
            .to_vec())
    }

    /// `DELETE /api/v1/products/{pk}/config`: deletes the file (devices asking get 6710).
    ///
    /// # Errors
    ///
    /// As [`Client::product`].
    pub async fn delete_config(&self, product_key: &str) -> Result<RemoteConfigView> {
        let path = config_path(product_key);
        let answer = self.exchange(Method::DELETE, &path, None, self.timeout).await?;
        self.decode(&path, &answer)
    }

    /// `PATCH /api/v1/products/{pk}/config` `{"enabled"}`: switches remote configuration on or
    /// off for the product.
    ///
    /// # Errors
    ///
    /// As [`Client::product`].
    pub async fn set_config_enabled(&self, product_key: &str, enabled: bool) -> Result<RemoteConfigView> {
        let body = UpdateRemoteConfig {
            enabled: Some(enabled),
        };
        self.send_json(Method::PATCH, &config_path(product_key), &body, self.timeout)
            .await
    }

    /// `POST /api/v1/products/{pk}/config/push`: sends `thing.config.push` to the product's
    /// online devices.
    ///
    /// # Errors
    ///
    /// As [`Client::product`]; `config_not_found` (404) without a file; `config_disabled`
    /// (409) when switched off.
    pub async fn push_config(&self, product_key: &str) -> Result<ConfigPushed> {
        let path = format!("{}/push", config_path(product_key));
        let answer = self.exchange(Method::POST, &path, None, self.timeout).await?;
        self.decode(&path, &answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_has_the_platforms_names() {
        let v = RemoteConfigView {
            product_key: "pk".into(),
            enabled: true,
            config: Some(ConfigFileView {
                config_id: "c".into(),
                config_size: 3,
                sign: "ab".into(),
                sign_method: "Sha256".into(),
                uploaded: 1,
                uploaded_time: "t".into(),
                url: "u".into(),
            }),
            push: None,
        };
        assert_eq!(
            serde_json::to_value(&v).expect("json"),
            serde_json::json!({"productKey":"pk","enabled":true,"config":{"configId":"c","configSize":3,
              "sign":"ab","signMethod":"Sha256","uploaded":1,"uploadedTime":"t","url":"u"}})
        );
        assert_eq!(query(&UploadConfigQuery { push: Some(true) }), "?push=true");
        assert_eq!(query(&UploadConfigQuery::default()), "");
    }
}
