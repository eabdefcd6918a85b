//! A minimal HTTP/1.1 client for the platform's HTTPS auth service (spec §5.1, §5.3) and the
//! remote configuration download: one form `POST` or one `GET` per connection
//! (`Connection: close`), over TCP or TLS (rustls, the same trust choice as MQTT), bounded in
//! size and time. Enough for `/auth/...` and a config file, kept small on purpose: the
//! device-only `aliot` links no HTTP library.
//!
//! The answer is read up to a body limit ([`MAX_ANSWER`] for the auth service, the caller's for
//! a `GET`) and [`MAX_HEAD`] of status line and headers; its length comes from
//! `Content-Length`, from `Transfer-Encoding: chunked`, or the connection's end.

use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::options::TrustAnchors;
use crate::url::BaseUrl;

/// The largest answer body read.
pub(crate) const MAX_ANSWER: usize = 16 * 1024;

/// The largest status line plus headers read.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// An HTTP answer: its status and body. `Debug` leaves the body out (it may hold a secret).
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

/// `POST {base}{path}` with a form body, within `timeout` (connection, TLS, request, answer).
/// The body is never logged: it holds a signature.
pub(crate) async fn post_form(
    base: &BaseUrl,
    path: &str,
    body: &str,
    trust: &TrustAnchors,
    timeout: Duration,
) -> Result<Answer> {
    let request = format!(
        "POST {}{path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded;charset=utf-8\r\n\
         Accept: application/json\r\nUser-Agent: aliot/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        base.path,
        base.host_header(),
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    send(base, request, trust, timeout, MAX_ANSWER).await
}

/// `GET {base}{path_and_query}` within `timeout`, reading at most `max_body` bytes of body.
/// `path_and_query` starts with `/` or `?` and is sent as it is (already encoded).
pub(crate) async fn get(
    base: &BaseUrl,
    path_and_query: &str,
    trust: &TrustAnchors,
    timeout: Duration,
    max_body: usize,
) -> Result<Answer> {
    let request = format!(
        "GET {}{path_and_query} HTTP/1.1\r\nHost: {}\r\nUser-Agent: aliot/{}\r\nConnection: close\r\n\r\n",
        base.path,
        base.host_header(),
        env!("CARGO_PKG_VERSION"),
    );
    send(base, request, trust, timeout, max_body).await
}

/// Sends `request` on a new connection to `base` and reads the answer.
async fn send(
    base: &BaseUrl,
    request: String,
    trust: &TrustAnchors,
    timeout: Duration,
    max_body: usize,
) -> Result<Answer> {
    let address = base.address();
    let fail = |reason: String| Error::Connect {
        endpoint: address.clone(),
        reason,
    };
    let exchange = async {
        let tcp = TcpStream::connect(&address)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        if base.tls {
            let config = crate::tls::client_config(trust)?;
            let name = ServerName::try_from(base.host.clone())
                .map_err(|e| Error::Tls(format!("{}: not a valid server name: {e}", base.host)))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| Error::Tls(format!("{address}: {e}")))?;
            exchange(tls, request.as_bytes(), max_body).await
        } else {
            exchange(tcp, request.as_bytes(), max_body).await
        }
        .map_err(fail)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| fail(format!("no answer within {timeout:?}")))?
}

/// A byte stream to a server, TCP or TLS.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Opens a connection to `base` (TLS when it is `https`) for a caller that writes its request
/// and reads the answer itself, as the firmware download does to stream it.
pub(crate) async fn connect(base: &BaseUrl, trust: &TrustAnchors) -> Result<Box<dyn Stream>> {
    let address = base.address();
    let tcp = TcpStream::connect(&address).await.map_err(|e| Error::Connect {
        endpoint: address.clone(),
        reason: e.to_string(),
    })?;
    let _ = tcp.set_nodelay(true);
    if !base.tls {
        return Ok(Box::new(tcp));
    }
    let config = crate::tls::client_config(trust)?;
    let name = ServerName::try_from(base.host.clone())
        .map_err(|e| Error::Tls(format!("{}: not a valid server name: {e}", base.host)))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| Error::Tls(format!("{address}: {e}")))?;
    Ok(Box::new(tls))
}

/// Writes the request, reads the answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
    max_body: usize,
) -> std::result::Result<Answer, String> {
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(1024);
    let limit = MAX_HEAD + max_body;
    let mut eof = false;
    loop {
        if let Some(parsed) = parse(&buf, eof, max_body)? {
            return Ok(parsed);
        }
        if eof {
            return Err("the connection closed before the whole answer".into());
        }
        if buf.len() >= limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        let mut chunk = [0u8; 4096];
        let want = chunk.len().min(limit - buf.len());
        match stream.read(&mut chunk[..want]).await {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A TLS peer that closes without close_notify: what was read is all there is.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => eof = true,
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The answer in `buf` when it is complete (`eof`: nothing more will come), `None` when more is
/// needed.
fn parse(buf: &[u8], eof: bool, max_body: usize) -> std::result::Result<Option<Answer>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(format!("the answer's headers are larger than {MAX_HEAD} bytes"));
        }
        return Ok(None);
    };
    if end > MAX_HEAD {
        return Err(format!("the answer's headers are larger than {MAX_HEAD} bytes"));
    }
    let head =
        std::str::from_utf8(&buf[..end]).map_err(|_| "the answer's headers are not text".to_owned())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP/1.x answer: {status_line:?}"))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let body = &buf[end + 4..];
    if chunked {
        return Ok(dechunk(body, eof, max_body)?.map(|body| Answer { status, body }));
    }
    match length {
        Some(n) if n > max_body => Err(format!("the answer is larger than {max_body} bytes")),
        Some(n) if body.len() >= n => Ok(Some(Answer {
            status,
            body: body[..n].to_vec(),
        })),
        Some(_) => Ok(None),
        None if eof => Ok(Some(Answer {
            status,
            body: body.to_vec(),
        })),
        None if body.len() > max_body => Err(format!("the answer is larger than {max_body} bytes")),
        None => Ok(None),
    }
}

/// A `Transfer-Encoding: chunked` body, once its last chunk is in.
fn dechunk(mut rest: &[u8], eof: bool, max_body: usize) -> std::result::Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return if eof {
                Err("truncated chunked answer".into())
            } else {
                Ok(None)
            };
        };
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk size".to_owned())?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            // The answer is complete; trailers, if any, are not needed.
            return Ok(Some(body));
        }
        if body.len() + size > max_body {
            return Err(format!("the answer is larger than {max_body} bytes"));
        }
        if rest.len() < size + 2 {
            return if eof {
                Err("truncated chunked answer".into())
            } else {
                Ok(None)
            };
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_parse() {
        let u = BaseUrl::parse("https://iot-auth.cn-shanghai.aliyuncs.com").expect("url");
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "iot-auth.cn-shanghai.aliyuncs.com", 443, "")
        );
        assert_eq!(u.host_header(), "iot-auth.cn-shanghai.aliyuncs.com");
        let u = BaseUrl::parse("http://127.0.0.1:8081/").expect("url");
        assert_eq!((u.tls, u.port, u.path.as_str()), (false, 8081, ""));
        assert_eq!(
            (u.address(), u.host_header()),
            ("127.0.0.1:8081".into(), "127.0.0.1:8081".into())
        );
        let u = BaseUrl::parse("https://[::1]:8443/prefix/").expect("url");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8443, "/prefix")
        );
        assert_eq!(u.address(), "[::1]:8443");
        for bad in [
            "ftp://x",
            "https://",
            "https://h:x",
            "https://u@h",
            "http://h/?q",
            "localhost:1",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_are_read_by_length_chunks_or_end() {
        let full = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nabcdEXTRA";
        let a = parse(full, false, MAX_ANSWER).expect("ok").expect("complete");
        assert_eq!((a.status, a.body.as_slice()), (200, b"abcd".as_slice()));
        assert!(
            parse(
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab",
                false,
                MAX_ANSWER
            )
            .expect("ok")
            .is_none()
        );
        let chunked =
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let a = parse(chunked, false, MAX_ANSWER).expect("ok").expect("complete");
        assert_eq!((a.status, a.body.as_slice()), (201, b"abcde".as_slice()));
        assert!(
            parse(&chunked[..chunked.len() - 8], false, MAX_ANSWER)
                .expect("ok")
                .is_none()
        );
        assert!(parse(&chunked[..chunked.len() - 8], true, MAX_ANSWER).is_err());
        let close = b"HTTP/1.0 500 Oops\r\n\r\nbody";
        assert!(parse(close, false, MAX_ANSWER).expect("ok").is_none());
        assert_eq!(
            parse(close, true, MAX_ANSWER)
                .expect("ok")
                .expect("complete")
                .status,
            500
        );
        let big = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", MAX_ANSWER + 1);
        assert!(parse(big.as_bytes(), false, MAX_ANSWER).is_err());
        assert!(parse(b"SSH-2.0-x\r\n\r\n", false, MAX_ANSWER).is_err());
    }

    #[tokio::test]
    async fn a_server_that_sends_too_much_is_cut_off() {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut sink = [0u8; 1024];
            let _ = server.read(&mut sink).await;
            let _ = server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            let _ = server.write_all(&vec![b'x'; 2 * MAX_ANSWER]).await;
        });
        let e = exchange(client, b"POST / HTTP/1.1\r\n\r\n", MAX_ANSWER)
            .await
            .unwrap_err();
        assert!(e.contains("larger than"), "{e}");
    }
}
