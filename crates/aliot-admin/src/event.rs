//! `GET /api/v1/events`: the filter query, and the server-sent event stream read one
//! [`Event`] (one JSON object) at a time.

use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// Largest event the client accepts, bytes. The hub's events hold at most 16 KiB of payload
/// (base64 grows it by a third), so this is far above any real one; it bounds what a broken
/// server can make the client buffer.
pub const MAX_EVENT_SIZE: usize = 1024 * 1024;

/// `GET /api/v1/events` query: `?productKey=&deviceName=&type=a,b`; every field narrows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventFilter {
    /// Only this product's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_key: Option<String>,
    /// Only this device's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// Only these types, comma-separated (`status,uplink,reply,refused,kicked,acl_denied,problem,ota,topology`; a topology event
    /// matches its gateway's productKey and deviceName).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub types: Option<String>,
}

/// One event: a JSON object with a `type` (`status`, `uplink`, `reply`, `refused`, `kicked`,
/// `acl_denied`, `problem`, `ota`, `topology`, or `lagged` with `skipped` when the client read too slowly and
/// missed some), kept as the hub wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    data: String,
}

impl Event {
    /// The event's JSON text, as the hub wrote it.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// The event's JSON text.
    pub fn into_data(self) -> String {
        self.data
    }

    /// The event parsed.
    ///
    /// # Errors
    ///
    /// When the text is not JSON (the hub always sends JSON).
    pub fn json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.data)
    }
}

/// The open event stream of [`crate::Client::events`]. Read it with [`EventStream::next`];
/// dropping it closes the connection.
#[derive(Debug)]
pub struct EventStream {
    body: Incoming,
    url: String,
    decoder: Decoder,
    ended: bool,
}

impl EventStream {
    pub(crate) fn new(body: Incoming, url: String) -> Self {
        Self {
            body,
            url,
            decoder: Decoder::default(),
            ended: false,
        }
    }

    /// The next event, or `None` once the hub ends the stream (it does when it shuts down).
    ///
    /// Cancel-safe: dropping the future (e.g. in a `select!` with Ctrl-C) loses no event.
    ///
    /// # Errors
    ///
    /// [`Error::Read`] when the connection breaks, [`Error::EventTooLarge`] when an event is
    /// over [`MAX_EVENT_SIZE`].
    pub async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(data) = self.decoder.next_event() {
                return Ok(Some(Event { data }));
            }
            if self.ended {
                return Ok(None);
            }
            if self.decoder.buffered() > MAX_EVENT_SIZE {
                return Err(Error::EventTooLarge {
                    url: self.url.clone(),
                    limit: MAX_EVENT_SIZE,
                });
            }
            // Only an awaited `frame()` is ever dropped by a cancellation, and it holds no data.
            match self.body.frame().await {
                None => {
                    self.ended = true;
                    self.decoder.finish();
                }
                Some(Err(e)) => {
                    return Err(Error::Read {
                        url: self.url.clone(),
                        source: Box::new(e),
                    });
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.decoder.push(&data);
                    }
                }
            }
        }
    }
}

/// The `text/event-stream` format, without IO: bytes in, `data` of complete events out.
///
/// Lines end with LF, CRLF or CR; `data:` lines (one leading space dropped) are joined with LF;
/// a blank line ends an event; comments (`:`, the keep-alives) and other fields are ignored.
#[derive(Debug, Default)]
struct Decoder {
    /// Bytes not yet split into lines.
    pending: Vec<u8>,
    /// The `data` of the event being read, if a `data:` line came.
    data: Option<String>,
    /// Complete events not yet taken.
    ready: std::collections::VecDeque<String>,
    /// The stream ended: a trailing CR is a line end.
    finished: bool,
}

impl Decoder {
    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        self.split_lines();
    }

    /// The stream ended; an event without its closing blank line is dropped, as the SSE
    /// standard says.
    fn finish(&mut self) {
        self.finished = true;
        self.split_lines();
    }

    fn next_event(&mut self) -> Option<String> {
        self.ready.pop_front()
    }

    /// Bytes held for the event being read.
    fn buffered(&self) -> usize {
        self.pending.len() + self.data.as_ref().map_or(0, String::len)
    }

    fn split_lines(&mut self) {
        let mut start = 0;
        while let Some(offset) = self.pending[start..]
            .iter()
            .position(|b| *b == b'\n' || *b == b'\r')
        {
            let end = start + offset;
            let next = match self.pending[end] {
                b'\r' => match self.pending.get(end + 1) {
                    Some(b'\n') => end + 2,
                    Some(_) => end + 1,
                    // A CR last: maybe the first half of a CRLF still on its way.
                    None if !self.finished => break,
                    None => end + 1,
                },
                _ => end + 1,
            };
            let line = String::from_utf8_lossy(&self.pending[start..end]).into_owned();
            self.line(&line);
            start = next;
        }
        self.pending.drain(..start);
    }

    fn line(&mut self, line: &str) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                self.ready.push_back(data);
            }
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{assert_wire, query};

    fn decode(chunks: &[&[u8]]) -> Vec<String> {
        let mut d = Decoder::default();
        let mut events = vec![];
        for c in chunks {
            d.push(c);
            while let Some(e) = d.next_event() {
                events.push(e);
            }
        }
        d.finish();
        while let Some(e) = d.next_event() {
            events.push(e);
        }
        events
    }

    #[test]
    fn the_event_filter_is_pinned() {
        let f = EventFilter {
            product_key: Some("a1P".into()),
            device_name: Some("d".into()),
            types: Some("status,uplink".into()),
        };
        assert_wire(
            &f,
            r#"{"productKey":"a1P","deviceName":"d","type":"status,uplink"}"#,
        );
        assert_eq!(query(&f), "?productKey=a1P&deviceName=d&type=status,uplink");
        assert_eq!(query(&EventFilter::default()), "");
        assert!(serde_json::from_str::<EventFilter>(r#"{"types":"status"}"#).is_err());
    }

    #[test]
    fn events_are_the_data_lines_up_to_a_blank_line() {
        let events = decode(&[b"data: {\"type\":\"status\"}\n\n:\n\ndata: {\"a\":1}\n\n"]);
        assert_eq!(events, [r#"{"type":"status"}"#, r#"{"a":1}"#]);
    }

    #[test]
    fn events_split_anywhere_across_chunks_come_out_whole() {
        let stream: &[u8] =
            b"data: {\"x\": \"y\"}\r\n\r\nevent: e\nid: 1\ndata:  two\ndata:lines\r\rdata: z\n\n";
        let whole = decode(&[stream]);
        assert_eq!(whole, [r#"{"x": "y"}"#, " two\nlines", "z"]);
        for cut in 0..stream.len() {
            assert_eq!(decode(&[&stream[..cut], &stream[cut..]]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn an_event_without_its_blank_line_at_the_end_is_dropped() {
        assert_eq!(decode(&[b"data: 1\n\ndata: 2\n"]), ["1"]);
        assert_eq!(decode(&[b"data: 1\r\r"]), ["1"]);
    }

    #[test]
    fn an_event_is_read_as_json() {
        let e = Event {
            data: r#"{"type":"lagged","skipped":3}"#.into(),
        };
        assert_eq!(e.json().ok().and_then(|v| v["skipped"].as_u64()), Some(3));
        assert_eq!(e.clone().into_data(), e.data());
    }
}
