//! STOMP 1.0/1.1/1.2 frames (<https://stomp.github.io/stomp-specification-1.2.html>): a
//! streaming decoder for what clients send and an encoder for what the hub sends. Pure, no IO.
//!
//! Our own small codec rather than a crate: the one maintained candidate (`stomp-parser`, one
//! maintainer, nom-based) parses a frame from a byte array that already holds exactly one
//! frame, so the part that matters on a socket (where a frame ends: `content-length` bodies
//! holding NULs, heart-beat EOLs between frames, size bounds before buffering) would still be
//! ours, and it brings nom, paste and either for the rest.
//!
//! Decoding rules: EOLs between frames are heart-beats; a frame is a command line, header
//! lines (`\n` or `\r\n`), an empty line, the body and a NUL. With `content-length` the body
//! is exactly that many bytes (NULs allowed); without, it ends at the first NUL. A repeated
//! header keeps its first value (1.2 §"Repeated Header Entries"). Header values are unescaped
//! (`\\`, `\n`, `\c`, and `\r` in 1.2) except in CONNECT/CONNECTED and in 1.0; an undefined
//! escape is an error. The header section and the body are bounded ([`Limits`]).

use bytes::{Buf, Bytes, BytesMut};

/// The protocol version a connection speaks (it decides header escaping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Version {
    /// 1.0: no escaping.
    V10,
    /// 1.1: `\\`, `\n`, `\c`.
    V11,
    /// 1.2: 1.1's and `\r`.
    V12,
}

impl Version {
    /// As in `accept-version` and CONNECTED's `version`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Version::V10 => "1.0",
            Version::V11 => "1.1",
            Version::V12 => "1.2",
        }
    }

    /// The highest version of a client's `accept-version` list the hub speaks (`None` for an
    /// absent header: a 1.0 client; `Err` when none is supported).
    pub(crate) fn negotiate(accept: Option<&str>) -> Result<Version, ()> {
        let Some(accept) = accept else {
            return Ok(Version::V10);
        };
        let mut best = None;
        for v in accept.split(',').map(str::trim) {
            let v = match v {
                "1.0" => Version::V10,
                "1.1" => Version::V11,
                "1.2" => Version::V12,
                _ => continue,
            };
            best = best.max(Some(v));
        }
        best.ok_or(())
    }
}

/// Bounds on what a client may send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Bytes of command and headers, at most.
    pub(crate) max_header_bytes: usize,
    /// Headers per frame, at most.
    pub(crate) max_headers: usize,
    /// Body bytes, at most.
    pub(crate) max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Why a client's bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// Headers beyond [`Limits::max_header_bytes`] or [`Limits::max_headers`].
    #[error("frame headers too large")]
    HeadersTooLarge,
    /// A body beyond [`Limits::max_body_bytes`].
    #[error("frame body too large")]
    BodyTooLarge,
    /// Not UTF-8, a header line without `:`, a bad escape, a bad `content-length`.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// The body did not end with NUL at `content-length`.
    #[error("malformed frame: no NUL after content-length bytes")]
    MissingNul,
}

/// A frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// `CONNECT`, `SUBSCRIBE`, `MESSAGE`…
    pub(crate) command: String,
    /// Headers in order, unescaped; the first of a repeated name wins in [`Frame::header`].
    pub(crate) headers: Vec<(String, String)>,
    /// The body.
    pub(crate) body: Bytes,
}

impl Frame {
    /// A frame without a body.
    pub(crate) fn new(command: &str) -> Self {
        Self {
            command: command.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header.
    pub(crate) fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sets the body.
    pub(crate) fn with_body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }

    /// The first value of header `name`.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Encodes it (adds `content-length` when there is a body); header names and values are
    /// escaped as `version` says (never in CONNECTED).
    pub(crate) fn encode(&self, version: Version, out: &mut Vec<u8>) {
        let escape = version != Version::V10 && self.command != "CONNECTED";
        out.extend_from_slice(self.command.as_bytes());
        out.push(b'\n');
        let mut put = |name: &str, value: &str| {
            push_escaped(out, name, escape, version);
            out.push(b':');
            push_escaped(out, value, escape, version);
            out.push(b'\n');
        };
        for (name, value) in &self.headers {
            put(name, value);
        }
        if !self.body.is_empty() {
            put("content-length", &self.body.len().to_string());
        }
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out.push(0);
    }
}

fn push_escaped(out: &mut Vec<u8>, s: &str, escape: bool, version: Version) {
    if !escape {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b':' => out.extend_from_slice(b"\\c"),
            b'\r' if version == Version::V12 => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

fn unescape(s: &str, version: Version) -> Result<String, FrameError> {
    if !s.contains('\\') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('c') => out.push(':'),
            Some('r') if version == Version::V12 => out.push('\r'),
            _ => return Err(FrameError::Malformed("undefined escape sequence in a header")),
        }
    }
    Ok(out)
}

/// What the decoder found at the front of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// An EOL between frames (a heart-beat).
    Heartbeat,
    /// A whole frame.
    Frame(Frame),
}

/// Decodes the first heart-beat or frame in `buf` (consuming it), or `Ok(None)` when more
/// bytes are needed. `version`: `None` before CONNECT (nothing unescaped).
pub(crate) fn decode(
    buf: &mut BytesMut,
    version: Option<Version>,
    limits: Limits,
) -> Result<Option<Decoded>, FrameError> {
    match buf.first() {
        None => return Ok(None),
        Some(b'\n') => {
            buf.advance(1);
            return Ok(Some(Decoded::Heartbeat));
        }
        Some(b'\r') => {
            return match buf.get(1) {
                None => Ok(None),
                Some(b'\n') => {
                    buf.advance(2);
                    Ok(Some(Decoded::Heartbeat))
                }
                Some(_) => Err(FrameError::Malformed("CR without LF")),
            };
        }
        Some(_) => {}
    }
    // The header section ends at the first empty line.
    let Some(end) = header_end(buf) else {
        if buf.len() > limits.max_header_bytes {
            return Err(FrameError::HeadersTooLarge);
        }
        return Ok(None);
    };
    let (head_len, body_start) = end;
    if head_len > limits.max_header_bytes {
        return Err(FrameError::HeadersTooLarge);
    }
    let head =
        std::str::from_utf8(&buf[..head_len]).map_err(|_| FrameError::Malformed("headers not UTF-8"))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let command = lines.next().unwrap_or_default().to_owned();
    if command.is_empty() {
        return Err(FrameError::Malformed("no command"));
    }
    let unescaping = version.filter(|v| *v != Version::V10 && command != "CONNECT" && command != "STOMP");
    let mut headers = Vec::new();
    for line in lines {
        if headers.len() >= limits.max_headers {
            return Err(FrameError::HeadersTooLarge);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(FrameError::Malformed("a header line without ':'"))?;
        let (name, value) = match unescaping {
            Some(v) => (unescape(name, v)?, unescape(value, v)?),
            None => (name.to_owned(), value.to_owned()),
        };
        headers.push((name, value));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.trim().parse::<usize>())
        .transpose()
        .map_err(|_| FrameError::Malformed("content-length is not a number"))?;
    let body_len = match length {
        Some(n) => {
            if n > limits.max_body_bytes {
                return Err(FrameError::BodyTooLarge);
            }
            if buf.len() < body_start + n + 1 {
                return Ok(None);
            }
            if buf[body_start + n] != 0 {
                return Err(FrameError::MissingNul);
            }
            n
        }
        None => match buf[body_start..].iter().position(|b| *b == 0) {
            Some(n) if n > limits.max_body_bytes => return Err(FrameError::BodyTooLarge),
            Some(n) => n,
            None if buf.len() - body_start > limits.max_body_bytes => return Err(FrameError::BodyTooLarge),
            None => return Ok(None),
        },
    };
    let mut frame_bytes = buf.split_to(body_start + body_len + 1);
    frame_bytes.advance(body_start);
    frame_bytes.truncate(body_len);
    Ok(Some(Decoded::Frame(Frame {
        command,
        headers,
        body: frame_bytes.freeze(),
    })))
}

/// The header section's length (without its final EOLs) and where the body starts.
fn header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(n) = buf[i..].iter().position(|b| *b == b'\n') {
        let nl = i + n;
        let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        // An empty line: the previous line ended right before this one.
        if line_end == i && i > 0 {
            // The header text ends before the previous line's EOL.
            let prev = if i >= 2 && buf[i - 2] == b'\r' {
                i - 2
            } else {
                i - 1
            };
            return Some((prev, nl + 1));
        }
        i = nl + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: &[u8], version: Option<Version>) -> Result<Option<Decoded>, FrameError> {
        let mut buf = BytesMut::from(bytes);
        decode(&mut buf, version, Limits::default())
    }

    fn frame(bytes: &[u8], version: Option<Version>) -> Frame {
        match one(bytes, version).expect("a frame") {
            Some(Decoded::Frame(f)) => f,
            other => panic!("not a frame: {other:?}"),
        }
    }

    #[test]
    fn connect_as_stomp_py_sends_it() {
        let f = frame(
            b"CONNECT\naccept-version:1.1\nhost:127.0.0.1\nheart-beat:0,300\nlogin:c|a=b|\npasscode:x=\n\n\0",
            None,
        );
        assert_eq!(f.command, "CONNECT");
        assert_eq!(f.header("accept-version"), Some("1.1"));
        assert_eq!(f.header("login"), Some("c|a=b|"));
        assert_eq!(f.header("passcode"), Some("x="));
        assert!(f.body.is_empty());
    }

    #[test]
    fn crlf_lines_heartbeats_and_pipelined_frames() {
        let mut buf =
            BytesMut::from(&b"\n\r\nACK\r\nid:7\r\n\r\n\0SUBSCRIBE\nid:1\ndestination:/topic/#\n\n\0"[..]);
        let l = Limits::default();
        let v = Some(Version::V12);
        assert_eq!(decode(&mut buf, v, l), Ok(Some(Decoded::Heartbeat)));
        assert_eq!(decode(&mut buf, v, l), Ok(Some(Decoded::Heartbeat)));
        let Ok(Some(Decoded::Frame(ack))) = decode(&mut buf, v, l) else {
            panic!("ACK")
        };
        assert_eq!((ack.command.as_str(), ack.header("id")), ("ACK", Some("7")));
        let Ok(Some(Decoded::Frame(sub))) = decode(&mut buf, v, l) else {
            panic!("SUBSCRIBE")
        };
        assert_eq!(sub.header("destination"), Some("/topic/#"));
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let whole = b"SEND\ndestination:/a\ncontent-length:3\n\na\0b\0";
        for cut in 0..whole.len() {
            assert_eq!(one(&whole[..cut], Some(Version::V12)), Ok(None), "cut at {cut}");
        }
        let f = frame(whole, Some(Version::V12));
        assert_eq!(&f.body[..], b"a\0b", "content-length body keeps its NUL");
    }

    #[test]
    fn content_length_without_nul_is_an_error() {
        assert_eq!(
            one(b"SEND\ncontent-length:1\n\nab\0", Some(Version::V12)),
            Err(FrameError::MissingNul)
        );
    }

    #[test]
    fn escapes_by_version() {
        let f = frame(b"SUBSCRIBE\nid:a\\cb\\\\c\\nd\\re\n\n\0", Some(Version::V12));
        assert_eq!(f.header("id"), Some("a:b\\c\nd\re"));
        assert!(matches!(
            one(b"SUBSCRIBE\nid:a\\r\n\n\0", Some(Version::V11)),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            one(b"SUBSCRIBE\nid:a\\t\n\n\0", Some(Version::V12)),
            Err(FrameError::Malformed(_))
        ));
        // CONNECT and 1.0 keep backslashes.
        assert_eq!(
            frame(b"CONNECT\nlogin:a\\b\n\n\0", None).header("login"),
            Some("a\\b")
        );
        assert_eq!(
            frame(b"SUBSCRIBE\nid:a\\b\n\n\0", Some(Version::V10)).header("id"),
            Some("a\\b")
        );
    }

    #[test]
    fn repeated_header_first_wins() {
        let f = frame(b"ACK\nid:1\nid:2\n\n\0", Some(Version::V12));
        assert_eq!(f.header("id"), Some("1"));
    }

    #[test]
    fn bounds() {
        let limits = Limits {
            max_header_bytes: 32,
            max_headers: 2,
            max_body_bytes: 4,
        };
        let check = |bytes: &[u8]| decode(&mut BytesMut::from(bytes), Some(Version::V12), limits);
        assert_eq!(check(&[b'A'; 40]), Err(FrameError::HeadersTooLarge));
        assert_eq!(
            check(b"ACK\na:1\nb:2\nc:3\n\n\0"),
            Err(FrameError::HeadersTooLarge)
        );
        assert_eq!(
            check(b"SEND\ncontent-length:5\n\n"),
            Err(FrameError::BodyTooLarge)
        );
        assert_eq!(check(b"SEND\n\nabcdef"), Err(FrameError::BodyTooLarge));
        assert!(matches!(
            check(b"ACK\nnocolon\n\n\0"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            check(b"SEND\ncontent-length:x\n\n\0"),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn encode_escapes_and_counts_the_body() {
        let f = Frame::new("MESSAGE")
            .with("topic", "/a:b\\c\nd")
            .with_body(Bytes::from_static(b"x\0y"));
        let mut out = Vec::new();
        f.encode(Version::V12, &mut out);
        assert_eq!(
            &out[..],
            b"MESSAGE\ntopic:/a\\cb\\\\c\\nd\ncontent-length:3\n\nx\0y\0"
        );
        // Round trip through the decoder.
        let back = frame(&out, Some(Version::V12));
        assert_eq!(back.header("topic"), Some("/a:b\\c\nd"));
        assert_eq!(&back.body[..], b"x\0y");
        // CONNECTED is never escaped.
        let mut out = Vec::new();
        Frame::new("CONNECTED")
            .with("server", "a:b")
            .encode(Version::V12, &mut out);
        assert_eq!(&out[..], b"CONNECTED\nserver:a:b\n\n\0");
    }

    #[test]
    fn negotiation() {
        assert_eq!(Version::negotiate(None), Ok(Version::V10));
        assert_eq!(Version::negotiate(Some("1.1")), Ok(Version::V11));
        assert_eq!(Version::negotiate(Some("1.0,1.1,1.2")), Ok(Version::V12));
        assert_eq!(Version::negotiate(Some("2.0")), Err(()));
    }
}
