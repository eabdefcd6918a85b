//! The `register` workload: every device registers itself once with its product's secret
//! (dynamic registration, spec §5.1/§5.2) and the bench measures how fast the server answers.
//!
//! Over MQTT (the default) a device connects with `authType=register` or `regnwl`, waits for
//! CONNACK and the one answer the platform publishes (`/ext/register`, `/ext/regnwl`); over HTTP
//! (`register_url`) it posts the form of `/auth/register/device` and reads the JSON answer. The
//! latency is from the start of the attempt (before the TCP connect) to the answer, recorded as
//! the fleet's handshake latency; `connected` counts registrations answered.

use std::net::SocketAddr;

use aliot_protocol::HexCase;
use aliot_protocol::register::{REGISTER_TOPIC, REGNWL_TOPIC, RegisteredWithToken};
use aliot_protocol::sign::{dynreg_http_body, dynreg_sign, sign_content};
use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::error::Error;
use crate::fleet::Fleet;
use crate::stats::{Stats, now_us, unix_us};
use crate::wire::{ConnectAckReason, ConnectBuilder, Connection, Packet};

/// The largest HTTP answer read (a registration answer is a few hundred bytes).
const MAX_ANSWER: usize = 16 * 1024;

/// How one registration ended.
enum Outcome {
    Registered,
    /// CONNACK code, or the platform's code of an HTTP answer (counted as refused code 5).
    Refused(u8),
    Failed(String),
}

/// A 15-character `random` (as the Python SDK sends), different for every attempt of a run:
/// the platform needs it only to vary the signature, not to be unpredictable.
fn random(idx: usize) -> String {
    let mixed = now_us().rotate_left(20) ^ (idx as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("{:015x}", mixed & 0x0fff_ffff_ffff_ffff)
}

/// Registers device `idx` once and records the outcome.
pub(crate) async fn run(fleet: &Fleet, idx: usize) {
    let stats = &fleet.stats;
    let permit = match &fleet.pending {
        Some(s) => s.acquire().await.ok(),
        None => None,
    };
    stats.mark_attempt();
    Stats::inc(&stats.attempted);
    let t0 = now_us();
    let attempt = async {
        match &fleet.settings.registration {
            Some(r) if r.url.is_some() => over_http(fleet, idx).await,
            _ => over_mqtt(fleet, idx).await,
        }
    };
    let outcome = match tokio::time::timeout(fleet.settings.connect_timeout, attempt).await {
        Ok(o) => o,
        Err(_) => Outcome::Failed(format!("no answer within {:?}", fleet.settings.connect_timeout)),
    };
    drop(permit);
    match outcome {
        Outcome::Registered => {
            stats.connack.record(idx, now_us().saturating_sub(t0));
            stats.mark_connack();
            Stats::inc(&stats.connected);
        }
        Outcome::Refused(code) => {
            stats.mark_connack();
            Stats::inc(&stats.refused[usize::from(code.min(6))]);
        }
        Outcome::Failed(e) => {
            tracing::debug!(device = idx, error = %e, "registration failed");
            Stats::inc(&stats.connect_errors);
            fleet.note_error(e);
        }
    }
    fleet.handshakes.finish_one();
}

async fn over_mqtt(fleet: &Fleet, idx: usize) -> Outcome {
    let Some(r) = &fleet.settings.registration else {
        return Outcome::Failed("no product secret".into());
    };
    let d = &fleet.devices[idx];
    let (pk, dn) = (d.product_key.as_str(), d.device_name.as_str());
    let random = random(idx);
    let method = fleet.settings.sign_method();
    let password = dynreg_sign(method, &r.product_secret, dn, pk, &random, HexCase::Lower);
    let client_id = format!(
        "{dn}.{pk}|random={random},authType={},securemode=2,signmethod={}|",
        r.auth_type,
        method.as_str()
    );
    let packet = ConnectBuilder::new(client_id)
        .credentials(format!("{dn}&{pk}"), Bytes::from(password.into_bytes()))
        .keep_alive(fleet.settings.keepalive)
        .build();
    let mut conn = match Connection::open_from(fleet.addr, fleet.source_ip(idx), fleet.tls.as_ref()).await {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("connect {}: {e}", fleet.addr)),
    };
    if let Err(e) = conn.send(packet).await {
        return Outcome::Failed(format!("sending CONNECT: {e}"));
    }
    match conn.recv().await {
        Ok(Some(Packet::ConnectAck(ack))) => match ack.return_code {
            ConnectAckReason::ConnectionAccepted => {}
            code => return Outcome::Refused(u8::from(code)),
        },
        Ok(_) => return Outcome::Failed("no CONNACK".into()),
        Err(e) => return Outcome::Failed(format!("reading CONNACK: {e}")),
    }
    let expected = if r.auth_type == "regnwl" {
        REGNWL_TOPIC
    } else {
        REGISTER_TOPIC
    };
    match conn.recv().await {
        Ok(Some(Packet::Publish(p))) if &*p.topic == expected => Outcome::Registered,
        Ok(Some(Packet::Publish(p))) => {
            Outcome::Failed(format!("answer on {} instead of {expected}", &*p.topic))
        }
        Ok(_) => Outcome::Failed("the server closed the connection without an answer".into()),
        Err(e) => Outcome::Failed(format!("reading the answer: {e}")),
    }
}

/// Registers device `idx` without pre-registration (`regnwl`) for its deviceToken (the
/// `token` login of the other workloads).
pub(crate) async fn regnwl_token(fleet: &Fleet, idx: usize) -> Result<RegisteredWithToken, String> {
    let Some(r) = &fleet.settings.registration else {
        return Err("no product secret".into());
    };
    let d = &fleet.devices[idx];
    let (pk, dn) = (d.product_key.as_str(), d.device_name.as_str());
    let random = random(idx);
    let method = fleet.settings.sign_method();
    let password = dynreg_sign(method, &r.product_secret, dn, pk, &random, HexCase::Lower);
    let client_id = format!(
        "{dn}.{pk}|random={random},authType=regnwl,securemode=2,signmethod={}|",
        method.as_str()
    );
    let packet = ConnectBuilder::new(client_id)
        .credentials(format!("{dn}&{pk}"), Bytes::from(password.into_bytes()))
        .keep_alive(fleet.settings.keepalive)
        .build();
    let mut conn = Connection::open_from(fleet.addr, fleet.source_ip(idx), fleet.tls.as_ref())
        .await
        .map_err(|e| format!("connect {}: {e}", fleet.addr))?;
    conn.send(packet)
        .await
        .map_err(|e| format!("sending CONNECT: {e}"))?;
    match conn.recv().await {
        Ok(Some(Packet::ConnectAck(ack))) if ack.return_code == ConnectAckReason::ConnectionAccepted => {}
        Ok(Some(Packet::ConnectAck(ack))) => {
            return Err(format!(
                "registration refused: CONNACK {}",
                u8::from(ack.return_code)
            ));
        }
        _ => return Err("no CONNACK to the registration".into()),
    }
    match conn.recv().await {
        Ok(Some(Packet::Publish(p))) if &*p.topic == REGNWL_TOPIC => {
            RegisteredWithToken::parse(&p.payload).map_err(|e| format!("bad /ext/regnwl answer: {e}"))
        }
        _ => Err("no /ext/regnwl answer".into()),
    }
}

/// HTTPS pre-authentication of device `idx` (`POST {auth_url}/auth/devicename`, signed with its
/// deviceSecret): its iotId and iotToken.
pub(crate) async fn pre_authenticate(fleet: &Fleet, idx: usize) -> Result<(String, String), String> {
    let Some(url) = &fleet.settings.auth_url else {
        return Err("no --auth-url".into());
    };
    let d = &fleet.devices[idx];
    let (pk, dn) = (d.product_key.as_str(), d.device_name.as_str());
    let secret = d
        .device_secret
        .as_deref()
        .ok_or_else(|| format!("{pk}/{dn} has no secret"))?;
    let method = fleet.settings.sign_method();
    let client_id = format!("{pk}.{dn}");
    let timestamp = (unix_us() / 1000).to_string();
    let content = sign_content(&client_id, dn, pk, Some(&timestamp));
    let sign = method.hex(secret.as_bytes(), content.as_bytes(), HexCase::Lower);
    let body = format!(
        "productKey={pk}&deviceName={dn}&signmethod={}&sign={sign}&version=default&clientId={client_id}&timestamp={timestamp}&resources=mqtt",
        method.as_str()
    );
    let request = format!(
        "POST /auth/devicename HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.authority,
        body.len()
    );
    let answer = exchange(fleet, idx, url.addr, request.as_bytes()).await?;
    let text = String::from_utf8_lossy(&answer);
    let (_, json) = text
        .split_once("\r\n\r\n")
        .ok_or("an HTTP answer without a body")?;
    let v: serde_json::Value =
        serde_json::from_str(json.trim()).map_err(|e| format!("the answer is not JSON: {e}"))?;
    match (
        v["code"].as_u64(),
        v["data"]["iotId"].as_str(),
        v["data"]["iotToken"].as_str(),
    ) {
        (Some(200), Some(id), Some(token)) => Ok((id.to_owned(), token.to_owned())),
        _ => Err(format!("pre-authentication answered {v}")),
    }
}

/// `POST {url}/auth/register/device` over one connection (HTTP/1.1, `Connection: close`).
async fn over_http(fleet: &Fleet, idx: usize) -> Outcome {
    let Some(r) = &fleet.settings.registration else {
        return Outcome::Failed("no product secret".into());
    };
    let Some(url) = &r.url else {
        return Outcome::Failed("no URL".into());
    };
    let d = &fleet.devices[idx];
    let (pk, dn) = (d.product_key.as_str(), d.device_name.as_str());
    let random = random(idx);
    let method = fleet.settings.sign_method();
    let sign = dynreg_sign(method, &r.product_secret, dn, pk, &random, HexCase::Lower);
    let body = dynreg_http_body(pk, dn, &random, method, &sign);
    let request = format!(
        "POST /auth/register/device HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.authority,
        body.len()
    );
    let answer = match exchange(fleet, idx, url.addr, request.as_bytes()).await {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(e),
    };
    let text = String::from_utf8_lossy(&answer);
    let Some((_, json)) = text.split_once("\r\n\r\n") else {
        return Outcome::Failed("an HTTP answer without a body".into());
    };
    match serde_json::from_str::<serde_json::Value>(json.trim()) {
        Ok(v) if v["code"] == 200 => Outcome::Registered,
        Ok(v) => {
            let code = v["code"].as_u64().unwrap_or_default();
            fleet.note_error(format!("registration answered code {code}: {}", v["message"]));
            Outcome::Refused(5)
        }
        Err(e) => Outcome::Failed(format!("the answer is not JSON: {e}")),
    }
}

/// Sends `request` and reads the answer to EOF (at most [`MAX_ANSWER`] bytes), over TLS when
/// the fleet uses TLS.
async fn exchange(fleet: &Fleet, idx: usize, addr: SocketAddr, request: &[u8]) -> Result<Vec<u8>, String> {
    let stream = crate::wire::tcp_connect(addr, fleet.source_ip(idx))
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let mut answer = Vec::with_capacity(1024);
    match &fleet.tls {
        None => {
            let mut s = stream;
            s.write_all(request).await.map_err(|e| e.to_string())?;
            read_to_end(&mut s, &mut answer).await?;
        }
        Some(tls) => {
            let mut s = tls.connect(stream).await.map_err(|e: Error| e.to_string())?;
            s.write_all(request).await.map_err(|e| e.to_string())?;
            read_to_end(&mut s, &mut answer).await?;
        }
    }
    Ok(answer)
}

async fn read_to_end<S: tokio::io::AsyncRead + Unpin>(s: &mut S, out: &mut Vec<u8>) -> Result<(), String> {
    let mut buf = [0u8; 2048];
    loop {
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        if out.len() + n > MAX_ANSWER {
            return Err(format!("an answer longer than {MAX_ANSWER} bytes"));
        }
        out.extend_from_slice(&buf[..n]);
    }
}
