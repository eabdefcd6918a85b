//! Under `--plain-auth` (a general broker such as mosquitto) no platform answers a post, so the
//! telemetry workload measures what such a broker does instead: PUBACK to the publisher (in
//! [`super::device`]) plus delivery to **one** subscriber, this one. Each post carries its send
//! time (`"t"`, µs since this process's bench epoch); the subscriber records publish → delivery.

use std::num::NonZeroU16;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rmqtt_codec::types::Protocol;
use rmqtt_codec::v3::{Codec, Connect, ConnectAckReason, Packet, QoS};
use tokio::sync::oneshot;
use tokio_util::codec::Decoder as _;

use super::device::{Conn, Fleet, MAX_PACKET, Phase, encode, open};
use super::stats::{Stats, now_us};

/// The subscriber's topic filter: every post of this process.
pub(crate) fn filter(worker_index: usize) -> String {
    format!("aliot-bench/w{worker_index}/#")
}

/// Connects, subscribes, signals `ready`, then counts deliveries until the fleet closes.
pub(crate) async fn run(fleet: Arc<Fleet>, ready: oneshot::Sender<Result<(), String>>) {
    let mut phase_rx = fleet.phase.subscribe();
    let (mut conn, mut codec, mut rx) = match setup(&fleet).await {
        Ok(x) => {
            let _ = ready.send(Ok(()));
            x
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let stats = &fleet.stats;
    let mut n: usize = 0;
    let mut tx = BytesMut::new();
    let keepalive = std::time::Duration::from_secs(30);
    loop {
        tokio::select! {
            r = conn.fill(&mut rx) => {
                if !matches!(r, Ok(k) if k > 0) {
                    return;
                }
                while let Ok(Some((p, _))) = codec.decode(&mut rx) {
                    if let Packet::Publish(p) = p {
                        if let Some(id) = p.packet_id
                            && encode(Packet::PublishAck { packet_id: id }, &mut tx).is_err()
                        {
                            return;
                        }
                        n += 1;
                        Stats::inc(&stats.replied);
                        stats.mark_reply();
                        if let Some(t) = sent_at(&p.payload) {
                            stats.reply.record(n, now_us().saturating_sub(t));
                        }
                    }
                }
                if !tx.is_empty() {
                    if conn.write_all(&tx).await.is_err() {
                        return;
                    }
                    tx.clear();
                }
            }
            () = tokio::time::sleep(keepalive) => {
                let mut ping = BytesMut::new();
                if encode(Packet::PingRequest, &mut ping).is_err() || conn.write_all(&ping).await.is_err() {
                    return;
                }
            }
            r = phase_rx.changed() => {
                if r.is_err() || *phase_rx.borrow() == Phase::Close {
                    let mut bye = BytesMut::new();
                    if encode(Packet::Disconnect, &mut bye).is_ok() {
                        let _ = conn.write_all(&bye).await;
                    }
                    conn.shutdown().await;
                    return;
                }
            }
        }
    }
}

async fn setup(fleet: &Fleet) -> Result<(Conn, Codec, BytesMut), String> {
    let s = &fleet.settings;
    let plain = s.plain_auth.as_ref().ok_or("the subscriber needs --plain-auth")?;
    let mut conn = open(fleet, 0)
        .await
        .map_err(|e| format!("subscriber: connect {}: {e}", fleet.addr))?;
    let mut tx = BytesMut::new();
    let connect = Packet::Connect(Box::new(Connect {
        protocol: Protocol(4),
        clean_session: true,
        keep_alive: 60,
        last_will: None,
        client_id: format!("aliot-bench-sub-w{}-{}", s.worker_index, std::process::id()).into(),
        username: Some(plain.username.clone().into()),
        password: Some(Bytes::from(plain.password.clone().into_bytes())),
        cert: None,
    }));
    let packet_id = NonZeroU16::new(1).expect("1 is not zero");
    let subscribe = Packet::Subscribe {
        packet_id,
        topic_filters: vec![(filter(s.worker_index).into(), QoS::AtLeastOnce)],
    };
    encode(connect, &mut tx).map_err(|e| e.to_string())?;
    encode(subscribe, &mut tx).map_err(|e| e.to_string())?;
    conn.write_all(&tx)
        .await
        .map_err(|e| format!("subscriber: {e}"))?;
    let mut codec = Codec::new(MAX_PACKET);
    let mut rx = BytesMut::new();
    let deadline = tokio::time::Instant::now() + s.connect_timeout;
    loop {
        let r = tokio::time::timeout_at(deadline, conn.fill(&mut rx))
            .await
            .map_err(|_| "subscriber: no SUBACK in time".to_owned())?;
        match r {
            Ok(0) => return Err("subscriber: the server closed the connection".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("subscriber: {e}")),
        }
        loop {
            match codec.decode(&mut rx) {
                Ok(Some((Packet::ConnectAck(a), _)))
                    if a.return_code != ConnectAckReason::ConnectionAccepted =>
                {
                    return Err(format!("subscriber refused: {}", a.return_code.reason()));
                }
                Ok(Some((Packet::SubscribeAck { status, .. }, _))) => {
                    if matches!(
                        status.first(),
                        Some(rmqtt_codec::v3::SubscribeReturnCode::Failure)
                    ) {
                        return Err(format!(
                            "subscriber: SUBSCRIBE {} refused",
                            filter(s.worker_index)
                        ));
                    }
                    return Ok((conn, codec, rx));
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(format!("subscriber: {e:?}")),
            }
        }
    }
}

/// The `"t":<µs>` of a post's payload.
fn sent_at(payload: &Bytes) -> Option<u64> {
    let s = std::str::from_utf8(payload).ok()?;
    let at = s.find("\"t\":")? + 4;
    let digits: &str = &s[at..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_time_should_be_read_from_the_post() {
        let p = Bytes::from_static(br#"{"id":"3","version":"1.0","params":{"t":123456},"method":"m"}"#);
        assert_eq!(sent_at(&p), Some(123_456));
        assert_eq!(sent_at(&Bytes::from_static(b"{}")), None);
    }
}
