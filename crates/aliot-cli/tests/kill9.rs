//! What the hub acknowledged survives `kill -9` (hardening 9, item 17): registrations answered
//! 201, and QoS 1 messages for a clean-session-0 device answered 200 by the admin API, whether
//! they were in flight to the device, waiting in its queue, or not yet sent. With the embedded
//! registry and with the registry on PostgreSQL (`--registry`, a PostgreSQL started for the test).

use std::collections::BTreeSet;
use std::sync::mpsc;

use aliot_testkit::wire::{Connection, Packet, QoS, subscribe_packet};
use aliot_testkit::{GUARD, HubProcess, Signing, connect_packet, creds_with, guard, try_request};

const TOKEN: &str = "kill9-admin-token-0123456789";
const PK: &str = "a1Kill9Q";
const TOPIC: &str = "/a1Kill9Q/sink/user/get";

fn start(dir: &std::path::Path) -> HubProcess {
    HubProcess::start(dir, &["--admin-token", TOKEN])
}

fn start_on(registry: &str) -> impl Fn(&std::path::Path) -> HubProcess + '_ {
    move |dir| HubProcess::start(dir, &["--admin-token", TOKEN, "--registry", registry])
}

/// A request that must work (the hub is up).
fn call(hub: &HubProcess, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let (status, text) =
        try_request(&hub.admin_url, method, path, TOKEN, Some(body)).expect("the hub answers");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// Connects the device with clean session 0; returns the connection and the session-present flag.
async fn connect(hub: &HubProcess, secret: &str) -> (Connection, bool) {
    let creds = creds_with(&Signing {
        product_key: PK,
        device_name: "sink",
        secret,
        ..Signing::default()
    });
    let mut conn = guard("the connection", Connection::open(hub.mqtt, None))
        .await
        .expect("connect");
    let ack = guard("the CONNACK", conn.handshake(connect_packet(&creds, 60, false)))
        .await
        .expect("CONNACK");
    assert_eq!(u8::from(ack.return_code), 0, "CONNACK");
    (conn, ack.session_present)
}

/// The next message's payload (as a number), acknowledged when `ack`; `None` once closed.
async fn next(conn: &mut Connection, ack: bool) -> Option<u32> {
    loop {
        match guard("a message for the device", conn.recv()).await {
            Ok(Some(Packet::Publish(p))) => {
                if ack && let Some(id) = p.packet_id {
                    conn.send(Packet::PublishAck { packet_id: id }).await.ok()?;
                }
                return std::str::from_utf8(&p.payload).ok()?.parse().ok();
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

#[test]
fn acknowledged_registrations_and_qos1_messages_survive_kill_9() {
    survive_kill_9(start);
}

#[test]
fn on_postgres_acknowledged_registrations_and_qos1_messages_survive_kill_9() {
    let infra = aliot_testkit::infra::Infra::postgres();
    survive_kill_9(start_on(infra.pg()));
}

fn survive_kill_9(start: impl Fn(&std::path::Path) -> HubProcess) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = start(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (s, _) = call(
        &hub,
        "POST",
        "/api/v1/products",
        &format!(r#"{{"name":"kill","productKey":"{PK}"}}"#),
    );
    assert_eq!(s, 201);
    let (s, sink) = call(
        &hub,
        "POST",
        &format!("/api/v1/products/{PK}/devices"),
        r#"{"deviceName":"sink"}"#,
    );
    assert_eq!(s, 201);
    let secret = sink["deviceSecret"].as_str().expect("a secret").to_owned();

    let mut received = BTreeSet::new();
    let (mut conn, present) = rt.block_on(connect(&hub, &secret));
    assert!(!present);
    rt.block_on(async {
        let sub = subscribe_packet(std::num::NonZeroU16::MIN, &[(TOPIC, QoS::AtLeastOnce)]);
        conn.send(sub).await.expect("SUBSCRIBE");
        match guard("the SUBACK", conn.recv()).await {
            Ok(Some(Packet::SubscribeAck { .. })) => {}
            other => panic!("expected SUBACK, got {other:?}"),
        }
    });

    // Two clients of the admin API, until the hub dies under them: a stream of QoS 1
    // messages to the device and a stream of registrations. Each reports what was answered.
    let (published_tx, published) = mpsc::channel::<u32>();
    let (registered_tx, registered) = mpsc::channel::<String>();
    let base = hub.admin_url.clone();
    let publisher = std::thread::spawn(move || {
        for seq in 0u32.. {
            let body = format!(r#"{{"topic":"{TOPIC}","payload":"{seq}","qos":1}}"#);
            let path = format!("/api/v1/products/{PK}/devices/sink/publish");
            match try_request(&base, "POST", &path, TOKEN, Some(&body)) {
                Some((200, _)) => {
                    if published_tx.send(seq).is_err() {
                        return;
                    }
                }
                Some((status, text)) => panic!("publish {seq}: {status} {text}"),
                None => return,
            }
        }
    });
    let base = hub.admin_url.clone();
    let registrar = std::thread::spawn(move || {
        for i in 0u32.. {
            let name = format!("reg{i}");
            let body = format!(r#"{{"deviceName":"{name}"}}"#);
            match try_request(
                &base,
                "POST",
                &format!("/api/v1/products/{PK}/devices"),
                TOKEN,
                Some(&body),
            ) {
                Some((201, _)) => {
                    if registered_tx.send(name).is_err() {
                        return;
                    }
                }
                Some((status, text)) => panic!("register {name}: {status} {text}"),
                None => return,
            }
        }
    });

    // The device takes and acknowledges the first 100 messages, then stops reading: later
    // messages wait unacknowledged in flight and in its queue.
    while received.len() < 100 {
        let seq = rt.block_on(next(&mut conn, true)).expect("a message");
        received.insert(seq);
    }
    let mut accepted = BTreeSet::new();
    while accepted.len() < 400 {
        accepted.insert(published.recv_timeout(GUARD).expect("the publisher goes on"));
    }
    let mut names = Vec::new();
    while names.len() < 20 {
        names.push(registered.recv_timeout(GUARD).expect("the registrar goes on"));
    }
    hub.kill_9();
    publisher.join().expect("the publisher ends when the hub is gone");
    registrar.join().expect("the registrar ends when the hub is gone");
    accepted.extend(published.try_iter());
    names.extend(registered.try_iter());
    drop(conn);

    let hub = start(dir.path());
    for name in &names {
        let (s, d) = call(&hub, "GET", &format!("/api/v1/products/{PK}/devices/{name}"), "");
        assert_eq!(s, 200, "registration of {name} was answered 201 but is lost: {d}");
    }
    let (mut conn, present) = rt.block_on(connect(&hub, &secret));
    assert!(present, "the clean-session-0 session survives");
    // Every acknowledged message arrives (at least once); a lost one fails at the guard.
    while !accepted.is_subset(&received) {
        let seq = rt.block_on(next(&mut conn, true)).unwrap_or_else(|| {
            panic!(
                "closed with {} messages missing",
                accepted.difference(&received).count()
            )
        });
        received.insert(seq);
    }
    assert!(accepted.len() >= 400 && names.len() >= 20);
}
