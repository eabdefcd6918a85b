//! Under plain auth (a general broker such as mosquitto) no platform answers a post, so the
//! telemetry workload measures what such a broker does instead: PUBACK to the publisher (in the
//! device task) plus delivery to **one** subscriber, this one. Each post carries its send time
//! (`"t"`, µs since this process's bench epoch); the subscriber records publish → delivery.

use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::Error;
use crate::fleet::{Fleet, Phase};
use crate::stats::{Stats, now_us};
use crate::wire::{
    ConnectAckReason, ConnectBuilder, Connection, Packet, QoS, SubscribeReturnCode, subscribe_packet,
};

/// The keepalive the subscriber declares; it pings at half of it when nothing arrives.
const KEEPALIVE_S: u16 = 60;

/// The subscriber's topic filter: every post of this process.
fn filter(worker_index: usize) -> String {
    format!("aliot-bench/w{worker_index}/#")
}

/// Connects, subscribes, signals `ready`, then counts deliveries until the fleet closes.
pub(crate) async fn run(fleet: Arc<Fleet>, ready: oneshot::Sender<Result<(), Error>>) {
    let mut phase_rx = fleet.phase.subscribe();
    let mut conn = match setup(&fleet).await {
        Ok(conn) => {
            let _ = ready.send(Ok(()));
            conn
        }
        Err(e) => {
            let _ = ready.send(Err(Error::Subscriber(e)));
            return;
        }
    };
    let stats = &fleet.stats;
    let mut n: usize = 0;
    let ping_every = Duration::from_secs(u64::from(KEEPALIVE_S / 2));
    loop {
        tokio::select! {
            // `recv` is cancel-safe: a branch that loses loses no received byte.
            r = conn.recv() => {
                let Ok(Some(first)) = r else {
                    return;
                };
                let mut next = Some(first);
                while let Some(p) = next {
                    if let Packet::Publish(p) = p {
                        if let Some(id) = p.packet_id
                            && conn.feed(Packet::PublishAck { packet_id: id }).is_err()
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
                    next = conn.try_recv().ok().flatten();
                }
                if conn.flush().await.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(ping_every) => {
                if conn.ping().await.is_err() {
                    return;
                }
            }
            r = phase_rx.changed() => {
                if r.is_err() || *phase_rx.borrow() == Phase::Close {
                    // The run is over: a failed goodbye changes nothing.
                    let _ = conn.disconnect().await;
                    return;
                }
            }
        }
    }
}

/// Connects with the plain credentials and subscribes to [`filter`]; returns once subscribed.
async fn setup(fleet: &Fleet) -> Result<Connection, String> {
    let s = &fleet.settings;
    let plain = s.plain_auth.as_ref().ok_or("the subscriber needs --plain-auth")?;
    let mut conn = Connection::open_from(fleet.addr, fleet.source_ip(0), fleet.tls.as_ref())
        .await
        .map_err(|e| format!("subscriber: connect {}: {}", fleet.addr, io_text(e)))?;
    let connect = ConnectBuilder::new(format!(
        "aliot-bench-sub-w{}-{}",
        s.worker_index,
        std::process::id()
    ))
    .credentials(plain.username.as_str(), plain.password.clone().into_bytes())
    .keep_alive(KEEPALIVE_S)
    .build();
    let packet_id = NonZeroU16::MIN;
    let subscribe = subscribe_packet(packet_id, &[(&filter(s.worker_index), QoS::AtLeastOnce)]);
    conn.feed(connect).map_err(|e| e.to_string())?;
    conn.feed(subscribe).map_err(|e| e.to_string())?;
    conn.flush()
        .await
        .map_err(|e| format!("subscriber: {}", io_text(e)))?;
    let deadline = tokio::time::Instant::now() + s.connect_timeout;
    loop {
        let r = tokio::time::timeout_at(deadline, conn.recv())
            .await
            .map_err(|_| "subscriber: no SUBACK in time".to_owned())?;
        match r {
            Ok(None) => return Err("subscriber: the server closed the connection".into()),
            Ok(Some(Packet::ConnectAck(a))) if a.return_code != ConnectAckReason::ConnectionAccepted => {
                return Err(format!("subscriber refused: {}", a.return_code.reason()));
            }
            Ok(Some(Packet::SubscribeAck { status, .. })) => {
                if matches!(status.first(), Some(SubscribeReturnCode::Failure)) {
                    return Err(format!(
                        "subscriber: SUBSCRIBE {} refused",
                        filter(s.worker_index)
                    ));
                }
                return Ok(conn);
            }
            Ok(Some(_)) => {}
            Err(Error::Decode(e)) => return Err(format!("subscriber: {e:?}")),
            Err(e) => return Err(format!("subscriber: {}", io_text(e))),
        }
    }
}

/// The text of an I/O error without the wrapper's words.
fn io_text(e: Error) -> String {
    match e {
        Error::Io(e) => e.to_string(),
        e => e.to_string(),
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
