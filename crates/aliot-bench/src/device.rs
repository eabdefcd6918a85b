//! One simulated device: a small tokio task that signs its own CONNECT, then idles, posts or
//! answers downlinks, on a [`Connection`] (rmqtt-codec, the hub's codec).
//!
//! Memory is the point here (≤ 4 KiB a device): the task owns its connection (no buffer while
//! idle, see [`crate::wire`]), a [`Session`] of a few hundred bytes and one timer.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use aliot_protocol::alink::{DeviceReply, read_id};
use aliot_protocol::topic::{SysPath, Topic};
use aliot_protocol::{DeviceIdentity, SignOptions};
use serde::Deserialize;
use tokio::sync::watch;

use crate::error::Error;
use crate::fleet::{Fleet, Phase};
use crate::session::{Completion, Matched, Session};
use crate::settings::{Auth, Workload};
use crate::stats::{Stats, instant_at, now_us, unix_us};
use crate::wire::{ConnectAckReason, ConnectBuilder, Connection, Packet, QoS, publish_packet};
use aliot_protocol::register::RegisteredWithToken;

/// What a device logs in with, besides its deviceSecret.
enum Login {
    /// The CONNECT signed with the deviceSecret (or plain credentials).
    Signed,
    /// `authType=connwl`: the deviceToken of a registration.
    Token(RegisteredWithToken),
    /// `securemode=-1`: iotId and iotToken of a pre-authentication.
    IotToken { iot_id: String, token: String },
}

/// The CONNECT of device `idx`: signed with a fresh timestamp, plain credentials, or a token.
fn connect_packet(fleet: &Fleet, idx: usize, login: &Login) -> Result<Packet, String> {
    let s = &fleet.settings;
    let d = &fleet.devices[idx];
    match login {
        Login::Signed => {}
        Login::Token(t) => {
            let cid = aliot_protocol::register::connwl_client_id(&t.client_id);
            return Ok(ConnectBuilder::new(cid)
                .credentials(
                    format!("{}&{}", d.device_name, d.product_key),
                    t.device_token.clone().into_bytes(),
                )
                .keep_alive(s.keepalive)
                .build());
        }
        Login::IotToken { iot_id, token } => {
            let cid = format!("{}.{}|securemode=-1,_ss=1,ext=1|", d.product_key, d.device_name);
            return Ok(ConnectBuilder::new(cid)
                .credentials(iot_id.as_str(), token.clone().into_bytes())
                .keep_alive(s.keepalive)
                .build());
        }
    }
    let builder = match (&s.plain_auth, &d.device_secret) {
        (Some(plain), _) => ConnectBuilder::new(format!("{}.{}", d.product_key, d.device_name))
            .credentials(plain.username.as_str(), plain.password.clone().into_bytes()),
        (None, Some(secret)) => {
            let id = DeviceIdentity::new(d.product_key.as_str(), d.device_name.as_str(), secret.as_str())
                .map_err(|e| format!("{}/{}: {e}", d.product_key, d.device_name))?;
            let creds = aliot_protocol::sign(
                &id,
                &SignOptions {
                    timestamp: Some((unix_us() / 1000).to_string()),
                    sign_method: s.sign_method(),
                    secure_mode: if s.tls.is_some() {
                        aliot_protocol::SecureMode::Tls
                    } else {
                        aliot_protocol::SecureMode::Tcp
                    },
                    // `_ss=1`: downlinks arrive without SUBSCRIBE; `ext=1`: RRPC on /ext/rrpc/.
                    extra_params: vec![("_ss".into(), "1".into()), ("ext".into(), "1".into())],
                    ..SignOptions::default()
                },
            )
            .map_err(|e| format!("{}/{}: {e}", d.product_key, d.device_name))?;
            ConnectBuilder::signed(&creds)
        }
        (None, None) => return Err(format!("{}/{} has no secret", d.product_key, d.device_name)),
    };
    Ok(builder.keep_alive(s.keepalive).build())
}

/// How a connect attempt ended.
enum Handshake {
    Accepted(Connection),
    Refused(u8),
    Failed(String),
}

async fn handshake(fleet: &Fleet, idx: usize, login: Login) -> Handshake {
    // HTTPS pre-authentication is part of this login: timed with it.
    let login = if fleet.settings.auth == Auth::Https {
        // Boxed: the exchange's future is large and most devices never make it.
        match Box::pin(crate::register::pre_authenticate(fleet, idx)).await {
            Ok((iot_id, token)) => Login::IotToken { iot_id, token },
            Err(e) => return Handshake::Failed(format!("pre-authentication: {e}")),
        }
    } else {
        login
    };
    let packet = match connect_packet(fleet, idx, &login) {
        Ok(p) => p,
        Err(e) => return Handshake::Failed(e),
    };
    let addr = fleet.addr;
    let mut conn = match Connection::open_from(addr, fleet.source_ip(idx), fleet.tls.as_ref()).await {
        Ok(c) => c,
        // EMFILE: one process holds at most `ulimit -n` sockets.
        Err(Error::Io(e)) if e.raw_os_error() == Some(24) => {
            return Handshake::Failed(format!("connect {addr}: {e} (split the fleet with --processes)"));
        }
        Err(Error::Io(e)) => return Handshake::Failed(format!("connect {addr}: {e}")),
        Err(e) => return Handshake::Failed(format!("connect {addr}: {e}")),
    };
    if let Err(e) = conn.send(packet).await {
        return Handshake::Failed(match e {
            Error::Io(e) => format!("sending CONNECT: {e}"),
            e => e.to_string(),
        });
    }
    match conn.recv().await {
        Ok(Some(Packet::ConnectAck(ack))) => match ack.return_code {
            ConnectAckReason::ConnectionAccepted => Handshake::Accepted(conn),
            code => Handshake::Refused(u8::from(code)),
        },
        Ok(Some(p)) => Handshake::Failed(format!("expected CONNACK, got packet type {}", p.packet_type())),
        Ok(None) => Handshake::Failed("the server closed the connection before CONNACK".into()),
        Err(Error::Decode(e)) => Handshake::Failed(format!("bad CONNACK: {e:?}")),
        Err(Error::Io(e)) => Handshake::Failed(format!("reading CONNACK: {e}")),
        Err(e) => Handshake::Failed(format!("reading CONNACK: {e}")),
    }
}

/// Runs device `idx` until the fleet closes.
pub(crate) async fn run(fleet: Arc<Fleet>, idx: usize) {
    if fleet.settings.workload == Workload::Register {
        return Box::pin(crate::register::run(&fleet, idx)).await;
    }
    let mut phase_rx = fleet.phase.subscribe();
    let stats = &fleet.stats;
    // The token of a token login comes from a registration first (not timed).
    let login = if fleet.settings.auth == Auth::Token {
        // Boxed, as the registration's future is large and only token logins make it.
        match Box::pin(crate::register::regnwl_token(&fleet, idx)).await {
            Ok(t) => Login::Token(t),
            Err(e) => {
                tracing::debug!(device = idx, error = %e, "registration for a token failed");
                Stats::inc(&stats.attempted);
                Stats::inc(&stats.connect_errors);
                fleet.note_error(e);
                fleet.handshakes.finish_one();
                return;
            }
        }
    } else {
        Login::Signed
    };
    // The semaphore is never closed, so `acquire` only fails if it were: treat that as no limit.
    let permit = match &fleet.pending {
        Some(s) => s.acquire().await.ok(),
        None => None,
    };
    stats.mark_attempt();
    Stats::inc(&stats.attempted);
    let t0 = now_us();
    let outcome =
        match tokio::time::timeout(fleet.settings.connect_timeout, handshake(&fleet, idx, login)).await {
            Ok(h) => h,
            Err(_) => Handshake::Failed(format!("no CONNACK within {:?}", fleet.settings.connect_timeout)),
        };
    drop(permit);
    let mut conn = match outcome {
        Handshake::Accepted(c) => {
            stats.connack.record(idx, now_us().saturating_sub(t0));
            stats.mark_connack();
            Stats::inc(&stats.connected);
            c
        }
        Handshake::Refused(code) => {
            stats.connack.record(idx, now_us().saturating_sub(t0));
            stats.mark_connack();
            Stats::inc(&stats.refused[usize::from(code.min(6))]);
            fleet.handshakes.finish_one();
            return;
        }
        Handshake::Failed(e) => {
            tracing::debug!(device = idx, error = %e, "connect failed");
            Stats::inc(&stats.connect_errors);
            fleet.note_error(e);
            fleet.handshakes.finish_one();
            return;
        }
    };
    fleet.handshakes.finish_one();
    let graceful = if fleet.settings.workload == Workload::Exhaust {
        Box::pin(crate::exhaust::run(&fleet, idx, &mut conn, &mut phase_rx)).await
    } else {
        session_loop(&fleet, idx, &mut conn, &mut phase_rx).await
    };
    if graceful {
        // The run is over: a failed goodbye changes nothing.
        let _ = conn.disconnect().await;
    } else {
        Stats::inc(&stats.dropped);
    }
}

#[derive(Deserialize)]
struct ReplyIdCode<'a> {
    #[serde(borrow)]
    id: IdField<'a>,
    code: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IdField<'a> {
    Str(&'a str),
    Num(u64),
}

/// The connected life of a device. Returns `true` when the fleet asked it to close, `false` when
/// the connection was lost.
async fn session_loop(
    fleet: &Fleet,
    idx: usize,
    conn: &mut Connection,
    phase_rx: &mut watch::Receiver<Phase>,
) -> bool {
    let s = &fleet.settings;
    let stats = &fleet.stats;
    let plain = s.plain_auth.is_some();
    let telemetry = s.workload == Workload::Telemetry;
    let qos = if s.qos == 1 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    let mut session = Session::new(
        s.inflight,
        if plain { Completion::Ack } else { Completion::Reply },
    );
    session.last_sent_us = now_us();
    let interval_us = u64::try_from(s.interval.as_micros()).unwrap_or(u64::MAX);
    let n = fleet.devices.len().max(1) as u64;
    let mut next_post_us: Option<u64> = None;
    let mut sleep = pin!(tokio::time::sleep(Duration::from_secs(1)));
    loop {
        let phase = *phase_rx.borrow_and_update();
        if phase == Phase::Close {
            return true;
        }
        // In `Stop` a device posts nothing new; it keeps reading the replies of its open posts
        // and stays connected (keepalive included) until `Close`.
        let now = now_us();
        if phase == Phase::Run && telemetry {
            let next = *next_post_us.get_or_insert_with(|| {
                // Spread the first posts over one interval so the fleet does not post in lockstep.
                now + if interval_us == 0 {
                    0
                } else {
                    (idx as u64 % n) * interval_us / n
                }
            });
            if next <= now && session.can_post() {
                let d = &fleet.devices[idx];
                if let Some((msg_id, pkid)) = session.post(qos == QoS::AtLeastOnce, now) {
                    let payload = match s.post_params.get(msg_id as usize % s.post_params.len().max(1)) {
                        Some(params) => format!(
                            r#"{{"id":"{msg_id}","version":"1.0","params":{params},"method":"thing.event.property.post"}}"#
                        ),
                        None => format!(
                            r#"{{"id":"{msg_id}","version":"1.0","params":{{"t":{now}}},"method":"thing.event.property.post"}}"#
                        ),
                    };
                    let post = publish_packet(&fleet.post_topic(d), payload, qos, pkid);
                    if conn.feed(post).is_err() {
                        return false;
                    }
                    Stats::inc(&stats.sent);
                    next_post_us = Some(if interval_us == 0 { now } else { next + interval_us });
                }
                if conn.flush().await.is_err() {
                    return false;
                }
                continue;
            }
        }
        // Keepalive: PINGREQ when nothing was sent for a keepalive period.
        if now >= session.ping_due_us(s.keepalive) {
            if conn.ping().await.is_err() {
                return false;
            }
            session.last_sent_us = now;
            continue;
        }
        let mut wake = session.ping_due_us(s.keepalive);
        if phase == Phase::Run
            && telemetry
            && session.can_post()
            && let Some(next) = next_post_us
        {
            wake = wake.min(next);
        }
        sleep.as_mut().reset(instant_at(wake));
        tokio::select! {
            // `recv` is cancel-safe: when another branch wins, no received byte is lost.
            r = conn.recv() => {
                let Ok(Some(first)) = r else {
                    // Closed or broken: its open posts stay counted as sent and never replied: lost.
                    session.abandon();
                    return false;
                };
                // Handle everything already received, then write the answers in one go.
                let mut next = Ok(Some(first));
                while let Ok(Some(p)) = next {
                    if handle(fleet, idx, &mut session, p, conn).is_err() {
                        return false;
                    }
                    next = conn.try_recv();
                }
                if next.is_err() {
                    return false;
                }
                if conn.unflushed() > 0 {
                    if conn.flush().await.is_err() {
                        return false;
                    }
                    session.last_sent_us = now_us();
                }
            }
            () = &mut sleep => {}
            r = phase_rx.changed() => {
                if r.is_err() {
                    return true;
                }
            }
        }
    }
}

/// Reacts to one packet from the server; answers are fed to `conn` (written by the caller).
fn handle(
    fleet: &Fleet,
    idx: usize,
    session: &mut Session,
    p: Packet,
    conn: &mut Connection,
) -> Result<(), Error> {
    let stats = &fleet.stats;
    match p {
        Packet::PublishAck { packet_id } => {
            Stats::inc(&stats.acked);
            match session.puback(packet_id.get()) {
                Matched::Done { sent_us } | Matched::Acked { sent_us } => {
                    stats.ack.record(idx, now_us().saturating_sub(sent_us));
                }
                Matched::Unknown => {}
            }
        }
        Packet::Publish(publish) => {
            if let Some(pkid) = publish.packet_id {
                conn.feed(Packet::PublishAck { packet_id: pkid })?;
            }
            let topic: &str = &publish.topic;
            if topic.ends_with("/thing/event/property/post_reply") {
                let Ok(r) = serde_json::from_slice::<ReplyIdCode<'_>>(&publish.payload) else {
                    Stats::inc(&stats.reply_errors);
                    return Ok(());
                };
                let msg_id = match r.id {
                    IdField::Str(s) => s.parse::<u32>().unwrap_or(0),
                    IdField::Num(n) => u32::try_from(n).unwrap_or(0),
                };
                if let Matched::Done { sent_us } = session.reply(msg_id) {
                    if r.code.unwrap_or(200) == 200 {
                        Stats::inc(&stats.replied);
                        stats.reply.record(idx, now_us().saturating_sub(sent_us));
                        stats.mark_reply();
                    } else {
                        Stats::inc(&stats.reply_errors);
                    }
                }
                return Ok(());
            }
            if let Some(reply_topic) = downlink_reply_topic(topic) {
                let Some(id) = read_id(&publish.payload) else {
                    return Ok(());
                };
                let payload = DeviceReply::success(id, serde_json::json!({})).to_vec();
                conn.feed(publish_packet(&reply_topic, payload, QoS::AtMostOnce, 0))?;
                Stats::inc(&stats.downlinks_answered);
            }
        }
        Packet::PingResponse | Packet::SubscribeAck { .. } | Packet::UnsubscribeAck { .. } => {}
        // The server must not send anything else to a client.
        other => {
            return Err(Error::UnexpectedPacket {
                expected: "a packet a server sends",
                packet_type: other.packet_type(),
            });
        }
    }
    Ok(())
}

/// Where a device answers a downlink: property set → `set_reply`, async service → `{id}_reply`,
/// RRPC (`/sys/…/rrpc/request/{id}` → `/response/{id}`; `/ext/rrpc/…` on the same topic).
fn downlink_reply_topic(topic: &str) -> Option<String> {
    match Topic::parse(topic).ok()? {
        Topic::ExtRrpc { .. } => Some(topic.to_owned()),
        Topic::Sys {
            product_key,
            device_name,
            path,
        } => match path {
            SysPath::PropertySet | SysPath::Service(_) | SysPath::PropertyGet => {
                Some(format!("{topic}_reply"))
            }
            SysPath::RrpcRequest(id) => {
                Some(Topic::sys(&product_key, &device_name, SysPath::RrpcResponse(id)).to_string())
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downlinks_should_be_answered_on_the_topics_the_platform_waits_on() {
        assert_eq!(
            downlink_reply_topic("/sys/pk/dn/thing/service/property/set").as_deref(),
            Some("/sys/pk/dn/thing/service/property/set_reply")
        );
        assert_eq!(
            downlink_reply_topic("/sys/pk/dn/rrpc/request/42").as_deref(),
            Some("/sys/pk/dn/rrpc/response/42")
        );
        assert_eq!(
            downlink_reply_topic("/ext/rrpc/7/sys/pk/dn/thing/service/reboot").as_deref(),
            Some("/ext/rrpc/7/sys/pk/dn/thing/service/reboot")
        );
        assert_eq!(
            downlink_reply_topic("/sys/pk/dn/thing/service/reboot").as_deref(),
            Some("/sys/pk/dn/thing/service/reboot_reply")
        );
        assert_eq!(
            downlink_reply_topic("/sys/pk/dn/thing/event/property/post_reply"),
            None
        );
    }

    #[test]
    fn the_future_of_a_device_should_stay_small() {
        // The task of every simulated device holds this future; keep it well under 4 KiB.
        let options = crate::Options {
            product_key: Some("pk".into()),
            count: Some(1),
            plain_auth: Some("u:p".into()),
            ..crate::Options::default()
        };
        let plan = crate::Plan::new(options).expect("valid options");
        let addr = "127.0.0.1:1".parse().expect("addr");
        let fleet = Arc::new(Fleet::new(plan.settings, Vec::new(), addr, None));
        let size = std::mem::size_of_val(&run(fleet, 0));
        assert!(size < 2048, "a device's future is {size} bytes");
    }
}
