//! The bench's few calls to the hub's admin API (device registration, the downlink and rrpc
//! workloads) and Prometheus `/metrics` scraping, over a tiny HTTP/1.1 client.
//!
//! Kept in this one file behind a narrow interface ([`Http::post_json`], [`get_url`],
//! [`metric`]) so that a shared admin client crate can replace it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::{Error, Result};
use crate::settings::AdminTarget;

/// How long one admin call may take (the hub's own device deadline is 8 s by default).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a `/metrics` scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// A keep-alive HTTP client bound to one base URL and bearer token. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    target: AdminTarget,
}

impl Http {
    pub(crate) fn new(target: AdminTarget) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(connector);
        Self { client, target }
    }

    /// The base URL.
    pub(crate) fn url(&self) -> &str {
        &self.target.url
    }

    /// `POST {base}{path}` with a JSON body: (status, body).
    pub(crate) async fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<(u16, Bytes)> {
        let bytes =
            serde_json::to_vec(body).map_err(|e| Error::admin("cannot encode the request body", e))?;
        let url = format!("{}{}", self.target.url, path);
        let mut req = hyper::Request::post(&url).header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(token) = &self.target.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| Error::admin(format!("bad URL {url}"), e))?;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| Error::admin(format!("cannot reach {url}"), e))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| Error::admin(format!("reading the answer of {url}"), e))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|e| Error::admin(format!("{url} did not answer in {CALL_TIMEOUT:?}"), e))?
    }
}

/// A GET of a full URL (for `/metrics`), without a token: the body as text.
pub(crate) async fn get_url(http: &Http, url: &str) -> Result<String> {
    let req = hyper::Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| Error::admin(format!("bad URL {url}"), e))?;
    let scrape = async {
        let resp = http
            .client
            .request(req)
            .await
            .map_err(|e| Error::admin(format!("cannot reach {url}"), e))?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::admin("reading /metrics", e))?
            .to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(SCRAPE_TIMEOUT, scrape)
        .await
        .map_err(|e| Error::admin(format!("{url} did not answer"), e))?
}

/// The value of an unlabelled metric in Prometheus text (`name 1.5e7`).
pub(crate) fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = rest
            .strip_prefix(' ')
            .or_else(|| rest.strip_prefix("{}").map(str::trim_start))?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_should_read_plain_and_exponent_values_and_ignore_prefixes() {
        let text = "# HELP process_resident_memory_bytes x\nprocess_resident_memory_bytes_extra 1\n\
                    process_resident_memory_bytes 1.2345e7\nprocess_cpu_seconds_total 12.5\n";
        assert_eq!(metric(text, "process_resident_memory_bytes"), Some(12_345_000.0));
        assert_eq!(metric(text, "process_cpu_seconds_total"), Some(12.5));
        assert_eq!(metric(text, "nope"), None);
    }
}
