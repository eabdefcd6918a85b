//! `GET /ota/{firmwareId}?expires=…&signature=…`: the package download the push and
//! `thing.ota.firmware.get` name (signed and expiring, `crate::signed_url`). Served on the
//! device HTTP(S) listener, and on the admin listener without the admin token when the hub has
//! no device listener: the signature is the only credential, as with the platform's OSS URLs.
//!
//! | status | when |
//! |---|---|
//! | 200 | the whole package (`application/octet-stream`, `Accept-Ranges: bytes`) |
//! | 206 | `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` (one range): that part, `Content-Range` |
//! | 403 | no, a wrong or an expired signature |
//! | 404 | the package was deleted |
//! | 416 | a range past the end |
//! | 503 | `[ota] max_downloads` downloads are running: `Retry-After: 1` (no queue, so that a wave of devices cannot hold connections open waiting) |
//!
//! Bytes sent are counted in `/metrics` (`aliot_hub_ota_bytes_served_total`); the file is
//! read in 64 KiB chunks (memory per download is one chunk).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::ota::Ota;

const CHUNK: u64 = 64 * 1024;

/// The download route, with its state (mergeable into either listener's router).
pub(crate) fn router(ota: Arc<Ota>) -> Router {
    Router::new()
        .route("/ota/{firmware_id}", get(download))
        .with_state(ota)
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}

/// A `Range` header's one range within `size`: `Ok(None)` for no header (or one we do not
/// read: several ranges, another unit → the whole file, as RFC 9110 allows), `Err` when
/// unsatisfiable.
fn range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size.saturating_sub(1))
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(size.saturating_sub(1))
        };
        (start, end)
    };
    if start >= size || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn download(
    State(ota): State<Arc<Ota>>,
    Path(firmware_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (Some(expires), Some(signature)) = (query.get("expires"), query.get("signature")) else {
        return refuse(StatusCode::FORBIDDEN, "the URL is not signed");
    };
    if let Err(why) = ota.check_url(&firmware_id, expires, signature) {
        tracing::debug!(%firmware_id, reason = why.message(), "OTA download refused");
        return refuse(StatusCode::FORBIDDEN, why.message());
    }
    let Ok(package) = ota.package(&firmware_id) else {
        return refuse(StatusCode::NOT_FOUND, "no such package");
    };
    let Ok(permit) = ota.downloads.clone().try_acquire_owned() else {
        ota.downloads_refused.fetch_add(1, Ordering::Relaxed);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "too many downloads at once: retry\n",
        )
            .into_response();
    };
    let size = package.firmware_size;
    let (status, start, end) = match range(&headers, size) {
        Ok(None) => (StatusCode::OK, 0, size.saturating_sub(1)),
        Ok(Some((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
        Err(()) => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                "range not satisfiable\n",
            )
                .into_response();
        }
    };
    let mut file = match tokio::fs::File::open(ota.package_path(&firmware_id)).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(%firmware_id, error = %e, "an OTA package file cannot be read");
            return refuse(StatusCode::NOT_FOUND, "no such package");
        }
    };
    if start > 0
        && let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await
    {
        tracing::error!(%firmware_id, error = %e, "seeking in an OTA package failed");
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    }
    let len = end + 1 - start;
    let counter = ota.clone();
    // The permit travels with the stream: released when the body ends or the client leaves.
    let stream = futures_util::stream::unfold((file, len, permit), move |(mut file, left, permit)| {
        let counter = counter.clone();
        async move {
            if left == 0 {
                return None;
            }
            let want = usize::try_from(left.min(CHUNK)).unwrap_or(64 * 1024);
            let mut buf = vec![0u8; want];
            match file.read(&mut buf).await {
                Ok(0) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "package file shorter than recorded",
                    )),
                    (file, 0, permit),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    counter.bytes_served.fetch_add(n as u64, Ordering::Relaxed);
                    Some((Ok(bytes::Bytes::from(buf)), (file, left - n as u64, permit)))
                }
                Err(e) => Some((Err(e), (file, 0, permit))),
            }
        }
    });
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, len)
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::ETAG, format!("\"{}\"", package.firmware_sign));
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
    }
    response
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, value.parse().expect("a header value"));
        h
    }

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(range(&HeaderMap::new(), 10), Ok(None));
        assert_eq!(range(&with("bytes=2-5"), 10), Ok(Some((2, 5))));
        assert_eq!(range(&with("bytes=4-"), 10), Ok(Some((4, 9))));
        assert_eq!(range(&with("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(range(&with("bytes=5-100"), 10), Ok(Some((5, 9))));
        assert_eq!(range(&with("bytes=10-"), 10), Err(()));
        assert_eq!(range(&with("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(range(&with("items=0-1"), 10), Ok(None));
    }
}
