//! The lean MQTT 3.1.1 client of the workspace: one framed connection on rmqtt-codec (the hub's
//! codec) over TCP or TLS.
//!
//! [`Connection`] is what each simulated device of the bench holds, and what tests use to speak
//! MQTT to a server packet by packet, or byte by byte ([`Connection::write_raw`]). It does no
//! protocol work of its own: no keepalive, no acknowledgements, no retries. The caller sends and
//! receives [`Packet`]s and decides. [`ConnectBuilder`] builds the CONNECT from
//! [`aliot_protocol`] credentials, and [`publish_packet`] and [`subscribe_packet`] build the packets
//! a device sends most often.
//!
//! ```no_run
//! use aliot_bench::wire::{ConnectAckReason, ConnectBuilder, Connection, Packet, QoS};
//! use aliot_protocol::{DeviceIdentity, SignOptions, sign};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let id = DeviceIdentity::new("a1Pk", "dev1", "secret")?;
//! let creds = sign(&id, &SignOptions::default())?;
//! let mut conn = Connection::open("127.0.0.1:1883".parse()?, None).await?;
//! let ack = conn.handshake(ConnectBuilder::signed(&creds).keep_alive(60).build()).await?;
//! assert_eq!(ack.return_code, ConnectAckReason::ConnectionAccepted);
//! conn.publish("/a1Pk/dev1/user/update", "hello", QoS::AtLeastOnce, 1).await?;
//! while let Some(packet) = conn.recv().await? {
//!     if let Packet::PublishAck { .. } = packet {
//!         break;
//!     }
//! }
//! conn.disconnect().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Memory
//!
//! A connection costs its socket and about a hundred bytes besides; an idle one holds no buffer.
//! Plain-TCP reads land in one 16 KiB buffer per thread and only bytes that do not make a whole
//! packet yet are kept; packets are encoded into a buffer that lives until it is written. A
//! decoded packet's payload shares the received bytes, which are freed with the packet. TLS keeps
//! its own 16 KiB read buffer (a TLS session costs tens of KiB anyway).
//!
//! # Cancellation
//!
//! [`Connection::recv`] is cancel-safe: in a `tokio::select!`, a branch that loses loses no bytes.
//! Writes ([`Connection::send`], [`Connection::flush`], [`Connection::write_raw`]) are not: a
//! write cancelled half-way leaves half a packet on the wire.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU16;
use std::path::Path;
use std::sync::Arc;

use aliot_protocol::Credentials;
use bytes::{Bytes, BytesMut};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::{Decoder as _, Encoder as _};

pub use rmqtt_codec::types::Publish;
use rmqtt_codec::v3::Codec;
pub use rmqtt_codec::v3::{Connect, ConnectAck, ConnectAckReason, Packet, QoS, SubscribeReturnCode};

use crate::error::{Error, Result};

/// The largest packet a [`Connection`] accepts by default: 300 KiB (the hub's payload limit is
/// 256 KiB). Change it with [`Connection::set_max_packet`].
pub const MAX_PACKET: u32 = 300 * 1024;

/// Size of the read buffer: one per runtime thread for plain TCP, one per TLS connection.
const READ_BUF_LEN: usize = 16 * 1024;

thread_local! {
    /// Where plain-TCP reads land before the bytes are decoded (one per runtime thread): an idle
    /// connection then owns no read buffer at all.
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; READ_BUF_LEN].into_boxed_slice());
}

/// A TLS client configuration: the CA to trust and the name to check on the server's
/// certificate. Cheap to clone (the rustls configuration is shared).
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// A TCP connection to `addr` from `local_ip` (any when `None`), with `TCP_NODELAY`.
pub(crate) async fn tcp_connect(addr: SocketAddr, local_ip: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    socket.set_nodelay(true)?;
    if let Some(ip) = local_ip {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}

impl TlsClient {
    /// The TLS handshake on an established TCP connection.
    ///
    /// # Errors
    /// [`Error::Io`] when the handshake fails.
    pub(crate) async fn connect(
        &self,
        stream: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        Box::pin(self.connector.connect(self.server_name.clone(), stream))
            .await
            .map_err(Error::Io)
    }

    /// Trusts the CA certificates of a PEM file (e.g. the local CA `aliot hub` writes) and checks
    /// `server_name` on the server's certificate.
    ///
    /// # Errors
    /// [`Error::Tls`] when the file cannot be read, holds bad PEM or no certificate, or when
    /// `server_name` is not a DNS name or an IP address.
    pub fn from_ca_file(ca_file: &Path, server_name: &str) -> Result<Self> {
        let shown = ca_file.display();
        let certs = CertificateDer::pem_file_iter(ca_file).map_err(|e| Error::Tls {
            message: format!("cannot read the CA file {shown}"),
            source: Some(e.into()),
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            let cert = cert.map_err(|e| Error::Tls {
                message: format!("bad PEM in {shown}"),
                source: Some(e.into()),
            })?;
            roots.add(cert).map_err(|e| Error::Tls {
                message: format!("bad CA certificate in {shown}"),
                source: Some(e.into()),
            })?;
        }
        if roots.is_empty() {
            return Err(Error::Tls {
                message: format!("no CA certificate in {shown}"),
                source: None,
            });
        }
        Self::with_roots(roots, server_name)
    }

    /// Trusts the CA certificates of PEM text and checks `server_name` on the server's
    /// certificate.
    ///
    /// # Errors
    /// [`Error::Tls`] when the text holds bad PEM or no certificate, or when `server_name` is not
    /// a DNS name or an IP address.
    pub fn from_ca_pem(pem: &[u8], server_name: &str) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| Error::Tls {
                message: "bad PEM".into(),
                source: Some(e.into()),
            })?;
            roots.add(cert).map_err(|e| Error::Tls {
                message: "bad CA certificate".into(),
                source: Some(e.into()),
            })?;
        }
        if roots.is_empty() {
            return Err(Error::Tls {
                message: "no CA certificate in the PEM text".into(),
                source: None,
            });
        }
        Self::with_roots(roots, server_name)
    }

    fn with_roots(roots: rustls::RootCertStore, server_name: &str) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls {
                message: "rustls has no safe protocol version".into(),
                source: Some(e.into()),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(server_name.to_owned()).map_err(|e| Error::Tls {
            message: format!("{server_name:?} is not a valid server name"),
            source: Some(e.into()),
        })?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

/// A plain or encrypted byte stream.
enum Stream {
    Tcp(TcpStream),
    /// Boxed: a TLS session is large, and a plain connection should not pay for its size.
    Tls(Box<TlsConn>),
}

struct TlsConn {
    stream: TlsStream<TcpStream>,
    buf: Box<[u8]>,
}

/// A framed MQTT 3.1.1 connection (client side, or either side of a test).
///
/// Packets go out with [`send`](Self::send) (or [`feed`](Self::feed) several, then
/// [`flush`](Self::flush) them in one write) and come in with [`recv`](Self::recv). See the
/// [module documentation](self) for its memory and cancellation properties.
pub struct Connection {
    stream: Stream,
    codec: Codec,
    /// Received bytes not yet decoded; empty (no allocation) when idle.
    rx: BytesMut,
    /// Encoded packets not yet written; empty (no allocation) when idle.
    tx: BytesMut,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field(
                "transport",
                &match self.stream {
                    Stream::Tcp(_) => "tcp",
                    Stream::Tls(_) => "tls",
                },
            )
            .field("rx", &self.rx.len())
            .field("tx", &self.tx.len())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `addr` (with `TCP_NODELAY`), over TLS when `tls` is given.
    ///
    /// # Errors
    /// [`Error::Io`] when the TCP connection or the TLS handshake fails.
    pub async fn open(addr: SocketAddr, tls: Option<&TlsClient>) -> Result<Self> {
        Self::open_from(addr, None, tls).await
    }

    /// As [`open`](Self::open), from the local address `local_ip` when given (a port is picked by
    /// the kernel). Spreading connections over several local addresses avoids running out of
    /// ephemeral ports.
    ///
    /// # Errors
    /// [`Error::Io`] when the socket cannot be bound or connected, or the TLS handshake fails.
    pub async fn open_from(
        addr: SocketAddr,
        local_ip: Option<IpAddr>,
        tls: Option<&TlsClient>,
    ) -> Result<Self> {
        let stream = tcp_connect(addr, local_ip).await.map_err(Error::Io)?;
        match tls {
            None => Ok(Self::from_tcp(stream)),
            Some(tls) => {
                // Boxed: the handshake's future holds a whole TLS session, and the future of a
                // caller that may use TLS (every bench device) should not be that large.
                let stream = Box::pin(tls.connector.connect(tls.server_name.clone(), stream))
                    .await
                    .map_err(Error::Io)?;
                Ok(Self::with_stream(Stream::Tls(Box::new(TlsConn {
                    stream,
                    buf: vec![0u8; READ_BUF_LEN].into_boxed_slice(),
                }))))
            }
        }
    }

    /// Wraps an established TCP stream (e.g. one a test server accepted). Socket options are
    /// left as they are.
    pub fn from_tcp(stream: TcpStream) -> Self {
        Self::with_stream(Stream::Tcp(stream))
    }

    fn with_stream(stream: Stream) -> Self {
        Self {
            stream,
            codec: Codec::new(MAX_PACKET),
            rx: BytesMut::new(),
            tx: BytesMut::new(),
        }
    }

    /// Sets the largest packet [`recv`](Self::recv) accepts (0 = no limit); a larger one is a
    /// [`Error::Decode`].
    pub fn set_max_packet(&mut self, max: u32) {
        self.codec.set_max_size(max);
    }

    /// Encodes `packet` after the ones already fed; nothing is written until
    /// [`flush`](Self::flush).
    ///
    /// # Errors
    /// [`Error::Encode`] when the packet cannot be encoded (e.g. a QoS 1 PUBLISH without a packet
    /// id); the packets fed before are kept.
    pub fn feed(&mut self, packet: Packet) -> Result<()> {
        self.codec.encode(packet, &mut self.tx).map_err(Error::Encode)
    }

    /// Bytes fed and not yet flushed.
    pub fn unflushed(&self) -> usize {
        self.tx.len()
    }

    /// Writes the packets fed so far, in one write, and frees their buffer.
    ///
    /// # Errors
    /// [`Error::Io`] when the write fails (the connection is then unusable).
    pub async fn flush(&mut self) -> Result<()> {
        if self.tx.is_empty() {
            return Ok(());
        }
        // Taking the buffer leaves an empty one (no allocation) in its place.
        let tx = std::mem::take(&mut self.tx);
        write_all(&mut self.stream, &tx).await.map_err(Error::Io)
    }

    /// Sends one packet (and any fed before it).
    ///
    /// # Errors
    /// [`Error::Encode`] or [`Error::Io`].
    pub async fn send(&mut self, packet: Packet) -> Result<()> {
        self.feed(packet)?;
        self.flush().await
    }

    /// Writes `bytes` as they are, after any packets fed before: for malformed-input tests.
    ///
    /// # Errors
    /// [`Error::Io`] when the write fails.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.flush().await?;
        write_all(&mut self.stream, bytes).await.map_err(Error::Io)
    }

    /// The next packet; `Ok(None)` once the peer has closed the connection (end of stream, or a
    /// reset). Cancel-safe.
    ///
    /// # Errors
    /// [`Error::Decode`] when the peer sent something that is not an MQTT 3.1.1 packet (or one
    /// larger than the limit), [`Error::Io`] when reading fails otherwise.
    pub async fn recv(&mut self) -> Result<Option<Packet>> {
        loop {
            if let Some(p) = self.try_recv()? {
                return Ok(Some(p));
            }
            match fill(&mut self.stream, &mut self.rx).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// The next packet if it has already been received whole; never waits. `Ok(None)` means
    /// "nothing buffered", not "closed".
    ///
    /// # Errors
    /// [`Error::Decode`] when the buffered bytes are not an MQTT 3.1.1 packet.
    pub fn try_recv(&mut self) -> Result<Option<Packet>> {
        let r = self.codec.decode(&mut self.rx);
        if self.rx.is_empty() {
            // Give the allocation back while idle (a decoded payload keeps its own bytes alive).
            self.rx = BytesMut::new();
        }
        match r {
            Ok(Some((p, _))) => Ok(Some(p)),
            Ok(None) => Ok(None),
            Err(e) => Err(Error::Decode(e)),
        }
    }

    /// Buffer bytes held by this connection besides its socket (and TLS session): 0 when idle.
    pub fn buffered(&self) -> usize {
        self.rx.capacity() + self.tx.capacity()
    }

    /// Sends `connect` and waits for the CONNACK. A refusal is not an error: check
    /// [`ConnectAck::return_code`].
    ///
    /// # Errors
    /// [`Error::Closed`] when the peer closes before its CONNACK, [`Error::UnexpectedPacket`]
    /// when another packet comes first, or the errors of [`send`](Self::send) and
    /// [`recv`](Self::recv).
    pub async fn handshake(&mut self, connect: Packet) -> Result<ConnectAck> {
        self.send(connect).await?;
        match self.recv().await? {
            Some(Packet::ConnectAck(ack)) => Ok(ack),
            Some(p) => Err(Error::UnexpectedPacket {
                expected: "CONNACK",
                packet_type: p.packet_type(),
            }),
            None => Err(Error::Closed { expected: "CONNACK" }),
        }
    }

    /// Sends a PUBLISH (see [`publish_packet`]).
    ///
    /// # Errors
    /// As [`send`](Self::send); a QoS 1 or 2 publish with `packet_id` 0 is an [`Error::Encode`].
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        packet_id: u16,
    ) -> Result<()> {
        self.send(publish_packet(topic, payload, qos, packet_id)).await
    }

    /// Sends a SUBSCRIBE; the SUBACK comes with [`recv`](Self::recv).
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub async fn subscribe(&mut self, packet_id: NonZeroU16, filters: &[(&str, QoS)]) -> Result<()> {
        self.send(subscribe_packet(packet_id, filters)).await
    }

    /// Acknowledges a QoS 1 PUBLISH.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub async fn puback(&mut self, packet_id: NonZeroU16) -> Result<()> {
        self.send(Packet::PublishAck { packet_id }).await
    }

    /// Sends a PINGREQ; the PINGRESP comes with [`recv`](Self::recv).
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub async fn ping(&mut self) -> Result<()> {
        self.send(Packet::PingRequest).await
    }

    /// Sends DISCONNECT, then closes the connection (see [`shutdown`](Self::shutdown)).
    ///
    /// # Errors
    /// As [`send`](Self::send) and [`shutdown`](Self::shutdown).
    pub async fn disconnect(&mut self) -> Result<()> {
        self.send(Packet::Disconnect).await?;
        self.shutdown().await
    }

    /// Closes the writing side (TCP FIN; TLS close_notify first) without sending DISCONNECT: to a
    /// server, an unexpected loss of the client.
    ///
    /// # Errors
    /// [`Error::Io`] when the socket is already broken.
    pub async fn shutdown(&mut self) -> Result<()> {
        match &mut self.stream {
            Stream::Tcp(s) => s.shutdown().await,
            Stream::Tls(t) => t.stream.shutdown().await,
        }
        .map_err(Error::Io)
    }
}

/// Waits for data and appends it to `rx`; `Ok(0)` at end of stream. Cancel-safe: bytes are
/// appended to `rx` only in the synchronous step that reads them.
async fn fill(stream: &mut Stream, rx: &mut BytesMut) -> io::Result<usize> {
    match stream {
        Stream::Tcp(s) => loop {
            s.readable().await?;
            let r = READ_BUF.with_borrow_mut(|buf| {
                let n = s.try_read(buf)?;
                rx.extend_from_slice(&buf[..n]);
                Ok::<usize, io::Error>(n)
            });
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        },
        Stream::Tls(t) => {
            let n = t.stream.read(&mut t.buf).await?;
            rx.extend_from_slice(&t.buf[..n]);
            Ok(n)
        }
    }
}

async fn write_all(stream: &mut Stream, data: &[u8]) -> io::Result<()> {
    match stream {
        Stream::Tcp(s) => s.write_all(data).await,
        Stream::Tls(t) => {
            t.stream.write_all(data).await?;
            t.stream.flush().await
        }
    }
}

/// A PUBLISH of `payload` on `topic`. `packet_id` is used at QoS 1 and 2 (where 0 makes the packet
/// fail to encode) and ignored at QoS 0, which carries none.
pub fn publish_packet(topic: &str, payload: impl Into<Bytes>, qos: QoS, packet_id: u16) -> Packet {
    Packet::Publish(Box::new(Publish {
        dup: false,
        retain: false,
        qos,
        topic: topic.into(),
        packet_id: if qos == QoS::AtMostOnce {
            None
        } else {
            NonZeroU16::new(packet_id)
        },
        payload: payload.into(),
        properties: None,
    }))
}

/// A SUBSCRIBE to `filters`, each with its maximum QoS.
pub fn subscribe_packet(packet_id: NonZeroU16, filters: &[(&str, QoS)]) -> Packet {
    Packet::Subscribe {
        packet_id,
        topic_filters: filters.iter().map(|(f, q)| ((*f).into(), *q)).collect(),
    }
}

/// Builds an MQTT 3.1.1 CONNECT: from a device's signed credentials ([`signed`](Self::signed)),
/// or from any client id, username and password. Keepalive 60 s and a clean session unless set.
///
/// `Debug` redacts the password.
#[derive(Clone)]
pub struct ConnectBuilder {
    client_id: String,
    username: Option<String>,
    password: Option<Bytes>,
    keep_alive: u16,
    clean_session: bool,
}

impl fmt::Debug for ConnectBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectBuilder")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("keep_alive", &self.keep_alive)
            .field("clean_session", &self.clean_session)
            .finish()
    }
}

impl ConnectBuilder {
    /// A CONNECT with this client id and no credentials.
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            username: None,
            password: None,
            keep_alive: 60,
            clean_session: true,
        }
    }

    /// The CONNECT of a device signed with [`aliot_protocol::sign()`]: its client id, username and
    /// password.
    pub fn signed(credentials: &Credentials) -> Self {
        Self::new(credentials.client_id.as_str()).credentials(
            credentials.username.as_str(),
            credentials.password.as_bytes().to_vec(),
        )
    }

    /// Sets the username and password.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<Bytes>) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// Sets the keepalive in seconds (0 = none).
    pub fn keep_alive(mut self, seconds: u16) -> Self {
        self.keep_alive = seconds;
        self
    }

    /// Sets the clean-session flag.
    pub fn clean_session(mut self, clean: bool) -> Self {
        self.clean_session = clean;
        self
    }

    /// The packet.
    pub fn build(self) -> Packet {
        Packet::Connect(Box::new(Connect {
            clean_session: self.clean_session,
            keep_alive: self.keep_alive,
            client_id: self.client_id.into(),
            username: self.username.map(Into::into),
            password: self.password,
            ..Connect::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qos0_publish_should_carry_no_packet_id() {
        let Packet::Publish(p) = publish_packet("t", "x", QoS::AtMostOnce, 7) else {
            panic!("not a PUBLISH");
        };
        assert_eq!(p.packet_id, None);
        let Packet::Publish(p) = publish_packet("t", "x", QoS::AtLeastOnce, 7) else {
            panic!("not a PUBLISH");
        };
        assert_eq!(p.packet_id, NonZeroU16::new(7));
    }

    #[test]
    fn connect_builder_should_use_the_signed_fields_and_redact_the_password() {
        let id = aliot_protocol::DeviceIdentity::new("a1Pk", "dev", "s3cret").expect("identity");
        let creds = aliot_protocol::sign(&id, &aliot_protocol::SignOptions::default()).expect("sign");
        let b = ConnectBuilder::signed(&creds).keep_alive(30).clean_session(false);
        assert!(!format!("{b:?}").contains(&creds.password));
        let Packet::Connect(c) = b.build() else {
            panic!("not a CONNECT");
        };
        assert_eq!(&*c.client_id, creds.client_id.as_str());
        assert_eq!(c.username.as_deref(), Some(creds.username.as_str()));
        assert_eq!(c.password.as_deref(), Some(creds.password.as_bytes()));
        assert_eq!((c.keep_alive, c.clean_session), (30, false));
    }
}
