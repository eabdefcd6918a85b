//! The lean MQTT client against a scripted peer on 127.0.0.1:0 (the peer is a `Connection` too,
//! wrapped around the accepted socket).

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::Duration;

use aliot_bench::Error;
use aliot_bench::wire::{
    ConnectAck, ConnectAckReason, ConnectBuilder, Connection, Packet, QoS, publish_packet,
};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;

/// Guard against a hung test; never used to wait for something to happen.
const GUARD: Duration = Duration::from_secs(10);

/// A listener, and a client connected to it with the server's side of the connection.
async fn pair() -> (Connection, Connection) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let (client, accepted) = tokio::join!(Connection::open(addr, None), listener.accept());
    let (server, _) = accepted.expect("accept");
    (client.expect("connect"), Connection::from_tcp(server))
}

async fn recv(conn: &mut Connection) -> Option<Packet> {
    tokio::time::timeout(GUARD, conn.recv())
        .await
        .expect("no packet and no close within the guard")
        .expect("a well-formed packet")
}

fn accepted() -> Packet {
    Packet::ConnectAck(ConnectAck {
        session_present: false,
        return_code: ConnectAckReason::ConnectionAccepted,
    })
}

#[tokio::test]
async fn handshake_should_send_the_connect_and_return_the_connack() {
    let (mut client, mut server) = pair().await;
    let peer = tokio::spawn(async move {
        let Some(Packet::Connect(c)) = recv(&mut server).await else {
            panic!("expected CONNECT");
        };
        server.send(accepted()).await.expect("send");
        (
            c.client_id.to_string(),
            c.username.map(|u| u.to_string()),
            c.keep_alive,
        )
    });
    let connect = ConnectBuilder::new("pk.dev|securemode=3|")
        .credentials("dev&pk", "secret-hex")
        .keep_alive(30)
        .build();
    let ack = client.handshake(connect).await.expect("handshake");
    assert_eq!(ack.return_code, ConnectAckReason::ConnectionAccepted);
    let (client_id, username, keep_alive) = peer.await.expect("peer");
    assert_eq!(client_id, "pk.dev|securemode=3|");
    assert_eq!(username.as_deref(), Some("dev&pk"));
    assert_eq!(keep_alive, 30);
}

#[tokio::test]
async fn a_close_before_the_connack_should_be_an_error_naming_it() {
    let (mut client, server) = pair().await;
    drop(server);
    let err = client
        .handshake(ConnectBuilder::new("c").build())
        .await
        .expect_err("closed");
    assert!(
        matches!(err, Error::Closed { expected: "CONNACK" } | Error::Io(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn packets_should_round_trip_and_an_idle_connection_should_hold_no_buffer() {
    let (mut client, mut server) = pair().await;
    client
        .publish("/pk/dev/user/up", "hello", QoS::AtLeastOnce, 7)
        .await
        .expect("publish");
    let Some(Packet::Publish(p)) = recv(&mut server).await else {
        panic!("expected PUBLISH");
    };
    assert_eq!((&*p.topic, &p.payload[..]), ("/pk/dev/user/up", &b"hello"[..]));
    let id = p.packet_id.expect("QoS 1 has a packet id");
    server.puback(id).await.expect("puback");
    assert!(matches!(
        recv(&mut client).await,
        Some(Packet::PublishAck { packet_id }) if packet_id == id
    ));
    assert_eq!(client.buffered(), 0, "an idle connection holds no buffer");
    assert_eq!(server.buffered(), 0, "an idle connection holds no buffer");
}

#[tokio::test]
async fn fed_packets_should_go_out_in_one_flush_and_be_received_in_order() {
    let (mut client, mut server) = pair().await;
    let one = NonZeroU16::MIN;
    client.feed(Packet::PingRequest).expect("feed");
    client
        .feed(aliot_bench::wire::subscribe_packet(
            one,
            &[("a/#", QoS::AtLeastOnce)],
        ))
        .expect("feed");
    assert!(client.unflushed() > 0);
    client.flush().await.expect("flush");
    assert_eq!(client.unflushed(), 0);
    assert!(matches!(recv(&mut server).await, Some(Packet::PingRequest)));
    let Some(Packet::Subscribe { topic_filters, .. }) = recv(&mut server).await else {
        panic!("expected SUBSCRIBE");
    };
    assert_eq!(&*topic_filters[0].0, "a/#");
}

#[tokio::test]
async fn a_packet_split_across_writes_should_be_decoded_whole() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (client, accepted) = tokio::join!(Connection::open(addr, None), listener.accept());
    let (mut client, (mut raw, _)) = (client.expect("connect"), accepted.expect("accept"));
    // A PUBLISH QoS 0 on topic "t" with payload "xyz", written in three pieces.
    let bytes = [0x30, 0x06, 0x00, 0x01, b't', b'x', b'y', b'z'];
    let writer = tokio::spawn(async move {
        for piece in [&bytes[..1], &bytes[1..4], &bytes[4..]] {
            raw.write_all(piece).await.expect("write");
            raw.flush().await.expect("flush");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        raw
    });
    let Some(Packet::Publish(p)) = recv(&mut client).await else {
        panic!("expected PUBLISH");
    };
    assert_eq!((&*p.topic, &p.payload[..]), ("t", &b"xyz"[..]));
    drop(writer.await.expect("writer"));
    assert!(recv(&mut client).await.is_none(), "the peer closed");
}

#[tokio::test]
async fn recv_should_lose_nothing_when_a_select_branch_cancels_it() {
    let (mut client, mut server) = pair().await;
    let peer = tokio::spawn(async move {
        // Half a PINGRESP, a pause longer than the client's timer, then the rest.
        server.write_raw(&[0xD0]).await.expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.write_raw(&[0x00]).await.expect("write");
        server
    });
    let mut timer_fired = false;
    let packet = loop {
        tokio::select! {
            r = client.recv() => break r.expect("well-formed"),
            () = tokio::time::sleep(Duration::from_millis(20)) => timer_fired = true,
        }
    };
    assert!(timer_fired);
    assert!(matches!(packet, Some(Packet::PingResponse)), "{packet:?}");
    drop(peer.await.expect("peer"));
}

#[tokio::test]
async fn malformed_bytes_should_be_a_decode_error() {
    let (mut client, mut server) = pair().await;
    // Packet type 0 is reserved.
    server.write_raw(&[0x00, 0x00]).await.expect("write");
    let err = tokio::time::timeout(GUARD, client.recv())
        .await
        .expect("guard")
        .expect_err("malformed");
    assert!(matches!(err, Error::Decode(_)), "{err:?}");
}

#[tokio::test]
async fn disconnect_should_send_disconnect_then_close() {
    let (mut client, mut server) = pair().await;
    client.disconnect().await.expect("disconnect");
    assert!(matches!(recv(&mut server).await, Some(Packet::Disconnect)));
    assert!(recv(&mut server).await.is_none(), "closed after DISCONNECT");
}

#[test]
fn a_qos1_publish_without_a_packet_id_should_fail_to_encode() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (mut client, _server) = pair().await;
        let err = client
            .feed(publish_packet("t", "x", QoS::AtLeastOnce, 0))
            .expect_err("no packet id");
        assert!(matches!(err, Error::Encode(_)), "{err:?}");
        assert_eq!(client.unflushed(), 0);
    });
}

#[test]
fn a_connection_should_stay_small() {
    // Every simulated device holds one; its buffers are empty while idle.
    let size = std::mem::size_of::<Connection>();
    assert!(size <= 128, "a connection is {size} bytes");
}
