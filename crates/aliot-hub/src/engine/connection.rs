//! Bytes ↔ MQTT packets over TCP or TLS, with the `rmqtt-codec` v3 codec (MQTT 3.1 and 3.1.1).
//!
//! Memory is the design constraint here: the hub must hold an idle device in a few KiB. So a
//! plain-TCP connection owns **no read buffer while idle**: it waits for readiness, allocates a
//! small buffer only to read, and frees it once every complete packet has been decoded. The write
//! buffer is likewise freed once flushed. The two buffers' handles (32 bytes each) live in a box
//! that exists only while either buffer does, so an idle connection keeps 8 bytes for them in its
//! task: that kept the task's allocation in a smaller size class (the task future is most of an
//! idle connection's memory). (A TLS stream keeps rustls's own buffers whatever we do,
//! so TLS connections cost more; the figure we target is for TCP.)
//!
//! The packet size limit is enforced by the codec from the fixed header, before the body is
//! buffered (`v3::Codec::new(max)` refuses a remaining length above `max`).
//!
//! MQTT 5 later: the codec crate has a v5 codec with the same shape; the session would pick it
//! from the CONNECT's protocol level.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use rmqtt_codec::error::DecodeError;
use rmqtt_codec::v3::{Codec, Packet};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

/// Bytes read per readable event; packets larger than this are assembled across reads.
const READ_CHUNK: usize = 4096;

/// The socket, plain or TLS.
pub(crate) enum Transport {
    /// Plain TCP (securemode 3).
    Tcp(TcpStream),
    /// TLS (securemode 2). Boxed: it is large and the enum is kept in every connection.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tcp(_) => "Tcp",
            Transport::Tls(_) => "Tls",
        })
    }
}

/// What one wait on the socket produced. Both directions are served in the same wait so that a
/// device that keeps the write side busy is still read (its PUBACKs free the inflight window).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Bytes read into the read buffer (0 with `eof` false means nothing was read this time).
    pub(crate) read: usize,
    /// Bytes written from the write buffer.
    pub(crate) written: usize,
    /// The peer closed its side.
    pub(crate) eof: bool,
}

/// One MQTT connection: the socket, the codec and the two buffers.
#[derive(Debug)]
pub(crate) struct Connection {
    transport: Transport,
    codec: Codec,
    /// `None` while both buffers are empty and unallocated (see the module docs).
    bufs: Option<Box<Buffers>>,
    /// TLS only: plaintext handed to rustls that still has to reach the socket.
    tls_unflushed: bool,
}

/// The read and the write buffer.
#[derive(Debug, Default)]
struct Buffers {
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl Buffers {
    /// Neither buffer holds bytes or memory.
    fn is_released(&self) -> bool {
        self.rbuf.capacity() == 0 && self.wbuf.capacity() == 0
    }
}

impl Connection {
    /// Wraps a socket; `max_packet` is the largest remaining length accepted.
    pub(crate) fn new(transport: Transport, max_packet: u32) -> Self {
        Self {
            transport,
            codec: Codec::new(max_packet),
            bufs: None,
            tls_unflushed: false,
        }
    }

    /// Frees the buffers' box once neither buffer holds memory.
    fn drop_released_bufs(&mut self) {
        if self.bufs.as_ref().is_some_and(|b| b.is_released()) {
            self.bufs = None;
        }
    }

    fn wbuf_is_empty(&self) -> bool {
        self.bufs.as_ref().is_none_or(|b| b.wbuf.is_empty())
    }

    /// Bytes encoded but not yet written.
    pub(crate) fn write_backlog(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.wbuf.len())
    }

    /// Whether something still has to reach the socket.
    fn wants_write(&self) -> bool {
        !self.wbuf_is_empty() || self.tls_unflushed
    }

    /// Encodes a packet into the write buffer (written by the next [`Connection::io`]).
    ///
    /// # Errors
    /// The packet cannot be encoded (a field above MQTT's limits); nothing of it stays in the
    /// write buffer, so the stream stays well-formed.
    pub(crate) fn send(&mut self, packet: Packet) -> Result<(), rmqtt_codec::error::EncodeError> {
        let bufs = self.bufs.get_or_insert_with(Box::default);
        let before = bufs.wbuf.len();
        let result = self.codec.encode(packet, &mut bufs.wbuf);
        if result.is_err() {
            // The codec may have written a header before failing on a field.
            bufs.wbuf.truncate(before);
        }
        result
    }

    /// Sets the largest remaining length accepted from now on (the CONNECT is read with a
    /// smaller limit than the packets after it).
    pub(crate) fn set_max_packet(&mut self, max_packet: u32) {
        self.codec.set_max_size(max_packet);
    }

    /// Decodes the next complete packet from what has been read, if any.
    ///
    /// # Errors
    /// A malformed packet, or one above the size limit (detected from its fixed header).
    pub(crate) fn next_packet(&mut self) -> Result<Option<Packet>, DecodeError> {
        let Some(bufs) = self.bufs.as_mut().filter(|b| !b.rbuf.is_empty()) else {
            return Ok(None);
        };
        Ok(self.codec.decode(&mut bufs.rbuf)?.map(|(p, _)| p))
    }

    /// Frees the read buffer when everything read has been decoded, so that an idle connection
    /// holds no buffer. TLS keeps it: the next read needs one anyway.
    pub(crate) fn release_read_buffer(&mut self) {
        if !matches!(self.transport, Transport::Tcp(_)) {
            return;
        }
        if let Some(bufs) = self.bufs.as_mut()
            && bufs.rbuf.is_empty()
            && bufs.rbuf.capacity() > 0
        {
            bufs.rbuf = BytesMut::new();
        }
        self.drop_released_bufs();
    }

    /// A copy of the bytes read but not yet decoded (to tell the protocol level of a CONNECT the
    /// codec refused).
    pub(crate) fn peek_read(&self) -> &[u8] {
        self.bufs.as_ref().map_or(&[], |b| &b.rbuf[..])
    }

    /// Waits until the socket can be read (when `want_read`) or written (when something is
    /// buffered), and does both as far as they go without blocking.
    pub(crate) async fn io(&mut self, want_read: bool) -> io::Result<Progress> {
        poll_fn(|cx| self.poll_io(cx, want_read)).await
    }

    fn poll_io(&mut self, cx: &mut Context<'_>, want_read: bool) -> Poll<io::Result<Progress>> {
        let mut progress = Progress::default();
        let mut wrote = false;
        if self.wants_write() {
            match self.poll_write_some(cx) {
                Poll::Ready(Ok(n)) => {
                    progress.written = n;
                    wrote = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if want_read {
            match self.poll_read_some(cx) {
                Poll::Ready(Ok(0)) => progress.eof = true,
                Poll::Ready(Ok(n)) => progress.read = n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if wrote || progress.read > 0 || progress.eof {
            Poll::Ready(Ok(progress))
        } else {
            Poll::Pending
        }
    }

    fn poll_read_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        match &mut self.transport {
            Transport::Tcp(tcp) => loop {
                // Readiness first, buffer second: an idle connection holds no buffer.
                std::task::ready!(tcp.poll_read_ready(cx))?;
                let bufs = self.bufs.get_or_insert_with(Box::default);
                if bufs.rbuf.capacity() - bufs.rbuf.len() < READ_CHUNK / 4 {
                    bufs.rbuf.reserve(READ_CHUNK);
                }
                match tcp.try_read_buf(&mut bufs.rbuf) {
                    Ok(n) => return Poll::Ready(Ok(n)),
                    // Stale readiness (tokio keeps it until a read would block): try_read cleared
                    // it. Give the buffer back before waiting, then poll again to register.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if bufs.rbuf.is_empty() {
                            bufs.rbuf = BytesMut::new();
                            if bufs.is_released() {
                                self.bufs = None;
                            }
                        }
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            },
            Transport::Tls(tls) => {
                // rustls may hold decrypted bytes already, so read directly (no readiness wait).
                let rbuf = &mut self.bufs.get_or_insert_with(Box::default).rbuf;
                let start = rbuf.len();
                rbuf.resize(start + READ_CHUNK, 0);
                let mut rb = ReadBuf::new(&mut rbuf[start..]);
                let res = Pin::new(tls.as_mut()).poll_read(cx, &mut rb);
                let filled = rb.filled().len();
                rbuf.truncate(start + filled);
                match res {
                    Poll::Ready(Ok(())) => Poll::Ready(Ok(filled)),
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn poll_write_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut written = 0;
        if let Some(bufs) = self.bufs.as_mut()
            && !bufs.wbuf.is_empty()
        {
            let res = match &mut self.transport {
                Transport::Tcp(tcp) => Pin::new(tcp).poll_write(cx, &bufs.wbuf),
                Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, &bufs.wbuf),
            };
            match res {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    bufs.wbuf.advance(n);
                    written = n;
                    if bufs.wbuf.is_empty() {
                        // Free the buffer: an idle connection holds none.
                        bufs.wbuf = BytesMut::new();
                        if bufs.is_released() {
                            self.bufs = None;
                        }
                    }
                    if matches!(self.transport, Transport::Tls(_)) {
                        self.tls_unflushed = true;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.tls_unflushed
            && self.wbuf_is_empty()
            && let Transport::Tls(tls) = &mut self.transport
        {
            match Pin::new(tls.as_mut()).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.tls_unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if written == 0 => return Poll::Pending,
                Poll::Pending => {}
            }
        }
        Poll::Ready(Ok(written))
    }

    /// Writes everything buffered (used before closing).
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        while self.wants_write() {
            poll_fn(|cx| self.poll_write_some(cx)).await?;
        }
        Ok(())
    }

    /// Shuts the write side down (TLS close_notify, then FIN).
    pub(crate) async fn shutdown(&mut self) {
        let _ = poll_fn(|cx| match &mut self.transport {
            Transport::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hardening 10: a packet that cannot be encoded leaves nothing behind in the write buffer.
    #[tokio::test]
    async fn a_failed_encode_leaves_the_stream_well_formed() {
        let listener = crate::bind_listener("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let _client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (stream, _) = listener.accept().await.expect("accept");
        let mut conn = Connection::new(Transport::Tcp(stream), 1024);
        let huge = rmqtt_codec::types::Publish {
            dup: false,
            retain: false,
            qos: rmqtt_codec::v3::QoS::AtMostOnce,
            topic: "t".repeat(70_000).into(),
            packet_id: None,
            payload: bytes::Bytes::new(),
            properties: None,
        };
        assert!(conn.send(Packet::Publish(Box::new(huge))).is_err());
        assert_eq!(conn.write_backlog(), 0);
        conn.send(Packet::PingResponse).expect("encodes");
        assert_eq!(conn.write_backlog(), 2);
    }
}
