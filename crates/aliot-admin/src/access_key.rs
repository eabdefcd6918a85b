//! `/api/v1/access-keys`: the AccessKeyId/AccessKeySecret pairs that sign Aliyun OpenAPI
//! requests to the hub and log AMQP consumers in. The secret is in the answer to the creation
//! only; lists never carry it.

use std::fmt;

use hyper::Method;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::Result;
use crate::wire::segment;

/// `POST /api/v1/access-keys` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateAccessKey {
    /// What the key is for (shown in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The answer to `POST /api/v1/access-keys`: the new key with its secret (given out once).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyCreated {
    /// The AccessKeyId.
    pub access_key_id: String,
    /// The AccessKeySecret.
    pub access_key_secret: String,
    /// When it was created, epoch ms.
    pub created: u64,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl fmt::Debug for AccessKeyCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKeyCreated")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field("created", &self.created)
            .field("description", &self.description)
            .finish()
    }
}

/// An access key as listed (`GET /api/v1/access-keys`): never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyView {
    /// The AccessKeyId.
    pub access_key_id: String,
    /// When it was created, epoch ms.
    pub created: u64,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The answer to `DELETE /api/v1/access-keys/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyDeleted {
    /// The AccessKeyId.
    pub access_key_id: String,
    /// Always true (an unknown key is a 404 `not_found`).
    pub deleted: bool,
}

impl Client {
    /// `POST /api/v1/access-keys`: a new access key; its secret is in this answer only.
    ///
    /// # Errors
    ///
    /// As [`Client::health`]; `invalid_argument` (400) when the hub has its maximum of keys.
    pub async fn create_access_key(&self, body: &CreateAccessKey) -> Result<AccessKeyCreated> {
        self.send_json(Method::POST, "/api/v1/access-keys", body, self.timeout)
            .await
    }

    /// `GET /api/v1/access-keys`: the access keys, without secrets.
    ///
    /// # Errors
    ///
    /// As [`Client::health`].
    pub async fn access_keys(&self) -> Result<Vec<AccessKeyView>> {
        self.get_json("/api/v1/access-keys").await
    }

    /// `DELETE /api/v1/access-keys/{id}`: requests signed with the key are refused from now.
    ///
    /// # Errors
    ///
    /// As [`Client::health`]; `not_found` (404) for an unknown key.
    pub async fn delete_access_key(&self, access_key_id: &str) -> Result<AccessKeyDeleted> {
        let path = format!("/api/v1/access-keys/{}", segment(access_key_id));
        let answer = self.exchange(Method::DELETE, &path, None, self.timeout).await?;
        self.decode(&path, &answer)
    }
}
