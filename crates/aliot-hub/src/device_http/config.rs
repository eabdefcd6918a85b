//! `GET /config/{productKey}/{configId}?expires=…&signature=…`: the remote configuration
//! download the URLs of `thing.config.get` and `thing.config.push` name (signed and expiring,
//! see `platform::config`). Served on the device HTTP(S) listener, and on the admin listener
//! without the admin token when the hub has no device listener: the signature is the only
//! credential, as with the platform's OSS URLs.
//!
//! | status | when |
//! |---|---|
//! | 200 | the file (`application/octet-stream`, at most 64 KB) |
//! | 403 | no, a wrong or an expired signature; remote config switched off for the product |
//! | 404 | the product has no configuration, or a newer one replaced `configId` |

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::clock::now_ms;
use crate::platform::Platform;

/// The download route, with its state (mergeable into either listener's router).
pub(crate) fn router(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/config/{pk}/{config_id}", get(download))
        .with_state(platform)
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}

async fn download(
    State(platform): State<Arc<Platform>>,
    Path((pk, config_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (Some(expires), Some(signature)) = (query.get("expires"), query.get("signature")) else {
        return refuse(StatusCode::FORBIDDEN, "the URL is not signed");
    };
    if let Err(why) = platform
        .config_urls()
        .check(&pk, &config_id, expires, signature, now_ms())
    {
        tracing::debug!(product_key = %pk, %config_id, reason = why.message(), "config download refused");
        return refuse(StatusCode::FORBIDDEN, why.message());
    }
    let registry = platform.registry();
    if !registry.remote_config(&pk).enabled {
        return refuse(
            StatusCode::FORBIDDEN,
            "remote config is switched off for the product",
        );
    }
    match registry.config_file(&pk).await {
        Ok(Some((meta, bytes))) if meta.config_id == config_id => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            bytes,
        )
            .into_response(),
        Ok(_) => refuse(
            StatusCode::NOT_FOUND,
            "no such configuration: ask for the current one",
        ),
        Err(e) => {
            tracing::error!(product_key = %pk, error = %e, "reading a remote config file failed");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}
