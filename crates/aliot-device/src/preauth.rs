//! HTTPS pre-authentication (spec §5.3): `POST {auth_url}/auth/devicename` signed with the
//! deviceSecret, answered with the iotId and iotToken of the `securemode=-1` MQTT login and where
//! to connect with them. A [`crate::Device`] with [`Login::PreAuth`] does this by itself before
//! its first connection and whenever the platform refuses its token; [`pre_authenticate`] does
//! it once, for callers that want the token themselves.

use std::time::Duration;

use aliot_protocol::http_auth::{IotToken, PREAUTH_PATH, TokenAnswerError, preauth_body};
use aliot_protocol::{DeviceIdentity, SignMethod};

use crate::error::{Error, Result};
use crate::http;
use crate::options::{DeviceOptions, Login, TrustAnchors};
use crate::url::BaseUrl;

/// Everything one pre-authentication needs.
#[derive(Debug, Clone)]
pub(crate) struct PreAuthClient {
    pub(crate) identity: DeviceIdentity,
    pub(crate) base: BaseUrl,
    pub(crate) sign_method: SignMethod,
    pub(crate) trust: TrustAnchors,
    pub(crate) timeout: Duration,
}

impl PreAuthClient {
    /// The client of options with a [`Login::PreAuth`]; `None` for other logins.
    pub(crate) fn of(options: &DeviceOptions) -> Result<Option<Self>> {
        let Login::PreAuth { identity, auth_url } = &options.login else {
            return Ok(None);
        };
        Ok(Some(Self {
            identity: identity.clone(),
            base: BaseUrl::parse(auth_url)?,
            sign_method: options.sign_method,
            trust: options.trust.clone(),
            timeout: options.connect_timeout,
        }))
    }

    /// One pre-authentication, signed with a fresh timestamp.
    pub(crate) async fn fetch(&self) -> Result<IotToken> {
        let timestamp = crate::clock::now_ms().to_string();
        let body = preauth_body(&self.identity, self.sign_method, &timestamp);
        let reply = http::post_form(&self.base, PREAUTH_PATH, &body, &self.trust, self.timeout).await?;
        let answer = crate::register::auth_answer(PREAUTH_PATH, &reply)?;
        IotToken::from_answer(&answer).map_err(|e| match e {
            TokenAnswerError::Refused { code, message } => Error::PreAuthRefused { code, message },
            TokenAnswerError::Malformed(reason) => Error::BadReply {
                topic: PREAUTH_PATH.into(),
                reason,
            },
        })
    }
}

/// Pre-authenticates once with the [`Login::PreAuth`] of `options` (its URL, the
/// [`DeviceOptions::sign_method`], the [`DeviceOptions::trust`] and, as the bound of the whole
/// exchange, the [`DeviceOptions::connect_timeout`]) and returns the token. A new token replaces
/// the device's previous one. `Debug` of the token redacts it.
///
/// # Errors
/// [`Error::PreAuthRefused`] (the platform's code: 401 unknown device or wrong signature, 403
/// disabled, 460 parameters), [`Error::Connect`] and [`Error::Tls`] (unreachable, no answer in
/// time, an answer over 16 KiB), [`Error::BadReply`], and [`Error::Options`] for options without
/// a pre-auth login or with a bad URL.
pub async fn pre_authenticate(options: &DeviceOptions) -> Result<IotToken> {
    let client = PreAuthClient::of(options)?
        .ok_or_else(|| Error::Options("the options' login is not Login::PreAuth".into()))?;
    client.fetch().await
}
