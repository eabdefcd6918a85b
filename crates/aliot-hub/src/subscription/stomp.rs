//! The STOMP transport of server-side subscription (cloud-side spec §2.5): what the platform's
//! official Python 3 sample (`stomp.py`) connects to on port 61614. A second transport of the
//! same consumer interface as [`super::amqp`]: same login, same groups, same messages.
//!
//! Per connection: TLS (on the TLS listener), then CONNECT (or STOMP) with `login`/`passcode` =
//! the `aksign` username and password (§2.2) within [`CONNECT_TIMEOUT`]; a bad one gets an
//! ERROR frame and the connection closes (the client's normal connect failure). The version is
//! the highest of the client's `accept-version` (1.0, 1.1, 1.2). Heart-beats: the hub sends
//! an EOL as often as the client asks (`heart-beat:cx,cy` → every `max(cy, 10 s)`; stomp.py's
//! sample asks `0,300`, so every 10 s) and, when the client offers to send them, expects its
//! bytes within three of the negotiated periods, else closes.
//!
//! One SUBSCRIBE per connection (like AMQP's one receiver link; a second gets an ERROR), to any
//! destination (`/topic/#` in the sample; it does not filter: the group's messages all come).
//! SUBSCRIBE attaches a [`Consumer`] to the login's group; UNSUBSCRIBE, DISCONNECT or the
//! connection's end detach it, putting back what was not acknowledged.
//!
//! Ack modes: `auto` settles a message as accepted once its MESSAGE frame is written; `client`
//! (cumulative) and `client-individual` keep it in flight until ACK (accepted: deleted) or
//! NACK (released: redelivered to any consumer of the group), the ack timeout, or the end of
//! the connection (both released). The unacknowledged window per subscription is
//! [`DEFAULT_WINDOW`] messages (`activemq.prefetchSize` on SUBSCRIBE may set 1 to
//! [`MAX_WINDOW`]): when full, nothing more is claimed from the group. ACK takes `id` (1.2,
//! the MESSAGE's `ack` header) or `message-id` (1.1); an unknown one is settled anyway (it may
//! have been redelivered after the ack timeout) and never an error.
//!
//! MESSAGE headers: `destination` (the subscription's), `message-id` (= `messageId`),
//! `subscription`, `ack` (1.2, client modes), then the AMQP application properties as text:
//! `topic`, `messageId`, `generateTime` (epoch ms), `qos`; `content-length` always (bodies may
//! hold NULs), no `content-type` (as AMQP). Header values are escaped per 1.1/1.2.
//!
//! Bad input (a malformed or oversized frame, SEND/BEGIN and other producer frames, an unknown
//! command, a missing header, an unknown ack mode) gets an ERROR frame with a `message` header
//! and the connection closes, as the STOMP specification says. `receipt` on any frame gets a
//! RECEIPT once the frame is handled (on DISCONNECT, before the close).
//!
//! Limits: at most `max_connections` connections at once (more are accepted and closed); a
//! client that stops reading for [`WRITE_TIMEOUT`] is disconnected; client frames are bounded
//! by [`super::stomp_frame::Limits`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use aliot_protocol::subscription::AkSignLogin;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::listener::{Limits, Transport, accept_loop};
use super::stomp_frame::{self, Decoded, Frame, FrameError, Version};
use super::{Consumer, Message, Settlement, Subscriptions};
use crate::BoxFuture;

/// Time to finish TLS and CONNECT (the platform's 15 s for AMQP).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Unacknowledged messages per subscription by default (client ack modes).
pub(crate) const DEFAULT_WINDOW: usize = 100;

/// Unacknowledged messages per subscription at most.
pub(crate) const MAX_WINDOW: usize = 1000;

/// Heart-beat period floor, ms (the hub never sends or expects them more often): stomp.py
/// gives up after 1.5 periods without one, so a short period breaks consumers of a busy hub.
pub(crate) const MIN_HEARTBEAT_MS: u64 = 10_000;

/// How long a write may wait for a client that does not read.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The listener's settings.
#[derive(Debug, Clone)]
pub(crate) struct StompSettings {
    /// Connections at once, at most.
    pub(crate) max_connections: usize,
    /// How long to wait for the shutdown of the connections.
    pub(crate) shutdown_grace: Duration,
}

/// Serves STOMP consumers on `listener` (TLS when `tls` is given) until `stop`.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    subs: Arc<Subscriptions>,
    settings: StompSettings,
    stop: CancellationToken,
) {
    let limits = Limits {
        max_connections: settings.max_connections,
        handshake_timeout: CONNECT_TIMEOUT,
        shutdown_grace: settings.shutdown_grace,
    };
    accept_loop::<Stomp>(listener, tls, subs, limits, stop).await;
}

/// The STOMP transport for the shared accept loop.
struct Stomp;

impl Transport for Stomp {
    const NAME: &'static str = "STOMP";

    fn connection<Io>(io: Io, subs: Arc<Subscriptions>) -> BoxFuture<'static, Result<(), String>>
    where
        Io: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
    {
        Box::pin(connection(io, subs))
    }
}

/// How a subscription acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckMode {
    Auto,
    Client,
    ClientIndividual,
}

/// The connection's one subscription.
struct Subscription {
    id: String,
    destination: String,
    ack: AckMode,
    window: usize,
    consumer: Consumer,
    /// Delivered, not acknowledged (client modes), in delivery order, with when.
    pending: VecDeque<(u64, Instant)>,
}

/// The writing half and the negotiated version.
struct Out<W> {
    io: W,
    version: Version,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> Out<W> {
    async fn send(&mut self, frame: &Frame) -> Result<(), String> {
        self.buf.clear();
        frame.encode(self.version, &mut self.buf);
        self.write().await
    }

    async fn heartbeat(&mut self) -> Result<(), String> {
        self.buf.clear();
        self.buf.push(b'\n');
        self.write().await
    }

    async fn write(&mut self) -> Result<(), String> {
        let io = &mut self.io;
        let buf = &self.buf;
        match tokio::time::timeout(WRITE_TIMEOUT, async {
            io.write_all(buf).await?;
            io.flush().await
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write: {e}")),
            Err(_) => Err("the client does not read".into()),
        }
    }

    /// An ERROR frame (then the caller closes).
    async fn error(&mut self, message: &str, cause: Option<&Frame>) -> Result<(), String> {
        let mut f = Frame::new("ERROR").with("message", message);
        if let Some(receipt) = cause.and_then(|c| c.header("receipt")) {
            f = f.with("receipt-id", receipt);
        }
        if let Some(c) = cause {
            f = f.with("content-type", "text/plain");
            f.body = bytes::Bytes::from(format!("{message}\n(in reply to {})", c.command));
        }
        let _ = self.send(&f).await;
        let _ = self.io.shutdown().await;
        Err(message.to_owned())
    }
}

/// Reads the next frame (skipping heart-beats).
async fn read_frame<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    version: Option<Version>,
) -> Result<Option<Frame>, FrameError> {
    loop {
        match stomp_frame::decode(buf, version, stomp_frame::Limits::default())? {
            Some(Decoded::Frame(f)) => return Ok(Some(f)),
            Some(Decoded::Heartbeat) => continue,
            None => {}
        }
        match io.read_buf(buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// `heart-beat:cx,cy` → (the hub sends every, the hub expects every), ms (0: never).
fn heartbeats(header: Option<&str>) -> (u64, u64) {
    let parse = |s: Option<&str>| s.and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
    let (cx, cy) = match header.and_then(|h| h.split_once(',')) {
        Some((x, y)) => (parse(Some(x)), parse(Some(y))),
        None => (0, 0),
    };
    let period = |client: u64| {
        if client == 0 {
            0
        } else {
            client.max(MIN_HEARTBEAT_MS)
        }
    };
    (period(cy), period(cx))
}

/// One consumer connection, from CONNECT to its end.
async fn connection<Io>(io: Io, subs: Arc<Subscriptions>) -> Result<(), String>
where
    Io: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut reader, writer) = tokio::io::split(io);
    let mut out = Out {
        io: writer,
        version: Version::V12,
        buf: Vec::new(),
    };
    let mut buf = BytesMut::with_capacity(4096);
    let first = match tokio::time::timeout(CONNECT_TIMEOUT, read_frame(&mut reader, &mut buf, None)).await {
        Ok(Ok(Some(f))) => f,
        Ok(Ok(None)) => return Err("closed before CONNECT".into()),
        Ok(Err(e)) => return out.error(&e.to_string(), None).await,
        Err(_) => return out.error("no CONNECT in time", None).await,
    };
    if first.command != "CONNECT" && first.command != "STOMP" {
        return out.error("expected CONNECT or STOMP", Some(&first)).await;
    }
    let Ok(version) = Version::negotiate(first.header("accept-version")) else {
        let f = Frame::new("ERROR")
            .with("version", "1.0,1.1,1.2")
            .with("content-type", "text/plain")
            .with("message", "supported protocol versions are 1.0 1.1 1.2");
        let _ = out.send(&f).await;
        let _ = out.io.shutdown().await;
        return Err("no common version".into());
    };
    out.version = version;
    let login = match subs.login(
        first.header("login").unwrap_or_default(),
        first.header("passcode").unwrap_or_default(),
    ) {
        Ok(login) => login,
        Err(e) => {
            info!(error = %e, "STOMP consumer refused");
            return out.error(&e.to_string(), Some(&first)).await;
        }
    };
    let (send_every, expect_every) = heartbeats(first.header("heart-beat"));
    let mut connected = Frame::new("CONNECTED");
    if version != Version::V10 {
        connected = connected.with("version", version.as_str());
    }
    let connected = connected
        .with("heart-beat", format!("{send_every},{expect_every}"))
        .with("server", concat!("aliot-hub/", env!("CARGO_PKG_VERSION")))
        .with("session", login.client_id.clone());
    out.send(&connected).await?;
    info!(client_id = %login.client_id, group = %login.consumer_group_id, version = version.as_str(), "STOMP consumer connected");
    let mut session = Session {
        subs,
        login,
        sub: None,
        out,
        ack_timeout: Duration::ZERO,
    };
    session.ack_timeout = session.subs.settings().ack_timeout;
    let beat = (send_every > 0).then(|| Duration::from_millis(send_every));
    let silence = (expect_every > 0).then(|| Duration::from_millis(expect_every.saturating_mul(3)));
    session.run(reader, buf, beat, silence).await
}

struct Session<W> {
    subs: Arc<Subscriptions>,
    login: AkSignLogin,
    sub: Option<Subscription>,
    out: Out<W>,
    ack_timeout: Duration,
}

/// What handling a frame leaves the connection in.
enum Next {
    Go,
    Close,
}

async fn pending_forever<T>() -> T {
    std::future::pending().await
}

impl<W: AsyncWrite + Unpin> Session<W> {
    async fn run<R: AsyncRead + Unpin>(
        &mut self,
        mut reader: R,
        mut buf: BytesMut,
        beat: Option<Duration>,
        silence: Option<Duration>,
    ) -> Result<(), String> {
        let mut next_beat = beat.map(|b| Instant::now() + b);
        let mut heard = Instant::now();
        // Frames that arrived with CONNECT.
        if let Next::Close = self.handle_buffered(&mut buf).await? {
            return Ok(());
        }
        loop {
            let claim = async {
                match &self.sub {
                    Some(s) if s.pending.len() < s.window => s.consumer.next().await,
                    _ => pending_forever().await,
                }
            };
            let oldest = self
                .sub
                .as_ref()
                .and_then(|s| s.pending.front())
                .map(|(_, at)| *at + self.ack_timeout);
            tokio::select! {
                read = reader.read_buf(&mut buf) => {
                    match read {
                        Ok(0) => return Ok(()),
                        Ok(_) => heard = Instant::now(),
                        Err(e) => return Err(format!("read: {e}")),
                    }
                    if let Next::Close = self.handle_buffered(&mut buf).await? {
                        return Ok(());
                    }
                }
                m = claim => {
                    let Some(m) = m else {
                        return self.out.error("the consumer group was deleted", None).await;
                    };
                    self.deliver(m).await?;
                }
                () = async { match next_beat { Some(at) => tokio::time::sleep_until(at).await, None => pending_forever().await } } => {
                    self.out.heartbeat().await?;
                    next_beat = beat.map(|b| Instant::now() + b);
                }
                () = async { match silence { Some(s) => tokio::time::sleep_until(heard + s).await, None => pending_forever().await } } => {
                    return Err("no heart-beat from the client".into());
                }
                () = async { match oldest { Some(at) => tokio::time::sleep_until(at).await, None => pending_forever().await } } => {
                    self.expire();
                }
            }
        }
    }

    /// Handles every whole frame in `buf`.
    async fn handle_buffered(&mut self, buf: &mut BytesMut) -> Result<Next, String> {
        loop {
            match stomp_frame::decode(buf, Some(self.out.version), stomp_frame::Limits::default()) {
                Ok(Some(Decoded::Heartbeat)) => {}
                Ok(Some(Decoded::Frame(f))) => {
                    if let Next::Close = self.handle(&f).await? {
                        return Ok(Next::Close);
                    }
                    if let Some(receipt) = f.header("receipt") {
                        self.out
                            .send(&Frame::new("RECEIPT").with("receipt-id", receipt))
                            .await?;
                    }
                }
                Ok(None) => return Ok(Next::Go),
                Err(e) => {
                    self.out.error(&e.to_string(), None).await?;
                    return Ok(Next::Close);
                }
            }
        }
    }

    async fn handle(&mut self, f: &Frame) -> Result<Next, String> {
        match f.command.as_str() {
            "SUBSCRIBE" => self.subscribe(f).await,
            "UNSUBSCRIBE" => {
                let id = f.header("id").or_else(|| f.header("destination"));
                match &self.sub {
                    Some(s) if Some(s.id.as_str()) == id || Some(s.destination.as_str()) == id => {
                        // Dropping the consumer puts back what was not acknowledged.
                        self.sub = None;
                        Ok(Next::Go)
                    }
                    _ => self.out.error("no such subscription", Some(f)).await.map(|()| Next::Close),
                }
            }
            "ACK" | "NACK" => self.ack(f).await,
            "DISCONNECT" => {
                self.sub = None;
                if let Some(receipt) = f.header("receipt") {
                    let _ = self
                        .out
                        .send(&Frame::new("RECEIPT").with("receipt-id", receipt))
                        .await;
                }
                let _ = self.out.io.shutdown().await;
                Ok(Next::Close)
            }
            "CONNECT" | "STOMP" => self.out.error("already connected", Some(f)).await.map(|()| Next::Close),
            "SEND" | "BEGIN" | "COMMIT" | "ABORT" => self
                .out
                .error(
                    "not supported: a server-side subscription connection only receives (SUBSCRIBE, ACK, NACK)",
                    Some(f),
                )
                .await
                .map(|()| Next::Close),
            _ => self.out.error("unknown command", Some(f)).await.map(|()| Next::Close),
        }
    }

    async fn subscribe(&mut self, f: &Frame) -> Result<Next, String> {
        let Some(destination) = f.header("destination") else {
            return self
                .out
                .error("SUBSCRIBE needs a destination header", Some(f))
                .await
                .map(|()| Next::Close);
        };
        let id = match f.header("id") {
            Some(id) => id,
            None if self.out.version == Version::V10 => destination,
            None => {
                return self
                    .out
                    .error("SUBSCRIBE needs an id header", Some(f))
                    .await
                    .map(|()| Next::Close);
            }
        };
        let ack = match f.header("ack").unwrap_or("auto") {
            "auto" => AckMode::Auto,
            "client" => AckMode::Client,
            "client-individual" => AckMode::ClientIndividual,
            _ => {
                return self
                    .out
                    .error("ack must be auto, client or client-individual", Some(f))
                    .await
                    .map(|()| Next::Close);
            }
        };
        let window = match f.header("activemq.prefetchSize").map(str::parse::<usize>) {
            None => DEFAULT_WINDOW,
            Some(Ok(n)) if (1..=MAX_WINDOW).contains(&n) => n,
            Some(_) => {
                return self
                    .out
                    .error("activemq.prefetchSize must be 1 to 1000", Some(f))
                    .await
                    .map(|()| Next::Close);
            }
        };
        if self.sub.is_some() {
            return self
                .out
                .error("one subscription per connection", Some(f))
                .await
                .map(|()| Next::Close);
        }
        let consumer = match self
            .subs
            .attach(&self.login.consumer_group_id, self.login.clean_session)
        {
            Ok(c) => c,
            Err(e) => {
                return self
                    .out
                    .error(&e.to_string(), Some(f))
                    .await
                    .map(|()| Next::Close);
            }
        };
        debug!(id, destination, ?ack, window, "STOMP subscription");
        self.sub = Some(Subscription {
            id: id.to_owned(),
            destination: destination.to_owned(),
            ack,
            window,
            consumer,
            pending: VecDeque::new(),
        });
        Ok(Next::Go)
    }

    async fn ack(&mut self, f: &Frame) -> Result<Next, String> {
        let Some(id) = f.header("id").or_else(|| f.header("message-id")) else {
            return self
                .out
                .error(&format!("{} needs an id header", f.command), Some(f))
                .await
                .map(|()| Next::Close);
        };
        let Ok(id) = id.parse::<u64>() else {
            return self
                .out
                .error("no such message", Some(f))
                .await
                .map(|()| Next::Close);
        };
        let how = if f.command == "ACK" {
            Settlement::Accepted
        } else {
            Settlement::Released
        };
        let Some(sub) = &mut self.sub else {
            return Ok(Next::Go);
        };
        if sub.ack == AckMode::Auto {
            return Ok(Next::Go);
        }
        match sub.pending.iter().position(|(p, _)| *p == id) {
            Some(at) if sub.ack == AckMode::Client => {
                for (p, _) in sub.pending.drain(..=at) {
                    sub.consumer.settle(p, how);
                }
            }
            Some(at) => {
                sub.pending.remove(at);
                sub.consumer.settle(id, how);
            }
            // Released after the ack timeout (maybe in flight elsewhere now): an ACK still
            // deletes it.
            None if how == Settlement::Accepted => sub.consumer.settle(id, how),
            None => {}
        }
        Ok(Next::Go)
    }

    async fn deliver(&mut self, m: Arc<Message>) -> Result<(), String> {
        let Some(sub) = &mut self.sub else {
            return Ok(());
        };
        let id = m.id.to_string();
        let mut f = Frame::new("MESSAGE")
            .with("destination", sub.destination.clone())
            .with("message-id", id.clone())
            .with("subscription", sub.id.clone());
        if sub.ack != AckMode::Auto && self.out.version == Version::V12 {
            f = f.with("ack", id.clone());
        }
        let f = f
            .with("topic", m.topic.clone())
            .with("messageId", id)
            .with("generateTime", m.generate_time.to_string())
            .with("qos", m.qos.to_string())
            .with_body(m.body.clone());
        if sub.ack != AckMode::Auto {
            sub.pending.push_back((m.id, Instant::now()));
        }
        let ack = sub.ack;
        // On an error, dropping the consumer (with the connection) puts it back.
        self.out.send(&f).await?;
        if ack == AckMode::Auto
            && let Some(sub) = &self.sub
        {
            sub.consumer.settle(m.id, Settlement::Accepted);
        }
        Ok(())
    }

    /// Puts back what waited longer than the ack timeout.
    fn expire(&mut self) {
        let Some(sub) = &mut self.sub else { return };
        let now = Instant::now();
        while let Some((id, at)) = sub.pending.front().copied() {
            if at + self.ack_timeout > now {
                break;
            }
            sub.pending.pop_front();
            sub.consumer.settle(id, Settlement::Released);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_negotiation() {
        // stomp.py's sample: sends none, wants one every 300 ms → every 10 s (the floor).
        assert_eq!(heartbeats(Some("0,300")), (10_000, 0));
        assert_eq!(heartbeats(Some("5000,20000")), (20_000, 10_000));
        assert_eq!(heartbeats(Some("0,0")), (0, 0));
        assert_eq!(heartbeats(None), (0, 0));
        assert_eq!(heartbeats(Some("x,y")), (0, 0));
    }
}
