//! The SDK against the real hub, in process, on loopback ports picked by the OS.

mod common;

use std::time::Duration;

use aliot_device::{
    CallVia, Device, Error, Event, Handlers, QoS, RefusalPolicy, ReplyError, RrpcKind, TrustAnchors,
};
use aliot_hub::BrokerConfig;
use aliot_hub::events::Event as HubEvent;
use aliot_protocol::{ConnackCode, DeviceIdentity};
use aliot_testkit::events::{drain, next_uplink};
use aliot_testkit::{BrokerHub, MemoryRegistry};
use bytes::Bytes;
use common::Hub;
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(20);

fn refusals(events: &[std::sync::Arc<HubEvent>]) -> usize {
    events
        .iter()
        .filter(|e| matches!(&***e, HubEvent::Refused(_)))
        .count()
}

#[tokio::test]
async fn connects_over_tcp_and_gets_the_property_post_reply() {
    let hub = Hub::start(false).await;
    let id = hub.device("tcp-1").await;
    let (device, _events) = Device::connect(hub.options(id.clone())).await.expect("connects");
    assert!(device.is_connected());

    let reply = device
        .post_property(json!({"LightSwitch": 1, "Temp": {"value": 21.5, "time": 1}}))
        .await
        .expect("reply");
    assert_eq!(reply.code, 200);
    assert_eq!(reply.method.as_deref(), Some("thing.event.property.post"));
    let props = hub
        .service()
        .last_properties(id.product_key(), id.device_name())
        .await
        .expect("stored properties");
    assert_eq!(props.get("LightSwitch"), Some(&json!(1)));

    let reply = device
        .post_event("alarm", json!({"level": 3}))
        .await
        .expect("event reply");
    assert_eq!(reply.code, 200);

    let session = hub
        .service()
        .session(id.product_key(), id.device_name())
        .expect("online");
    assert!(session.auto_subscribe && session.ext_rrpc, "{session:?}");
    assert!(
        session.client_id.contains("securemode=3"),
        "{}",
        session.client_id
    );
    device.disconnect().await;
    assert!(matches!(
        device.post_property(json!({})).await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn connects_over_tls_trusting_the_hub_local_ca() {
    let hub = Hub::start(true).await;
    let id = hub.device("tls-1").await;
    let (device, _events) = Device::connect(hub.tls_options(id.clone()))
        .await
        .expect("TLS connects");
    let session = hub
        .service()
        .session(id.product_key(), id.device_name())
        .expect("online");
    assert!(
        session.client_id.contains("securemode=2"),
        "{}",
        session.client_id
    );
    assert_eq!(
        device.post_property(json!({"x": 1})).await.expect("reply").code,
        200
    );
    device.disconnect().await;

    // SNI / name override: dial 127.0.0.1, verify the certificate as "localhost".
    let (device, _events) = Device::connect(hub.tls_options(id.clone()).server_name("localhost"))
        .await
        .expect("TLS with a server name");
    device.disconnect().await;

    // The built-in Aliyun roots do not trust the hub's local CA.
    let err = Device::connect(hub.tls_options(id).trust(TrustAnchors::Aliyun))
        .await
        .expect_err("untrusted");
    assert!(matches!(err, Error::Tls(_) | Error::Connect { .. }), "{err}");
}

#[tokio::test]
async fn a_wrong_secret_is_refused_with_code_4_and_never_retried() {
    let hub = Hub::start(false).await;
    let id = hub.device("wrong-secret").await;
    let wrong = DeviceIdentity::new(id.product_key(), id.device_name(), "not-the-secret").expect("identity");
    let mut hub_events = hub.service().events();

    // `connect`: the first refusal is the answer.
    let err = Device::connect(hub.options(wrong.clone()))
        .await
        .expect_err("refused");
    assert_eq!(err.connack(), Some(ConnackCode::BadUsernameOrPassword));
    let text = err.to_string();
    assert!(
        text.contains(ConnackCode::BadUsernameOrPassword.cause()) && text.contains("aliot verify"),
        "{text}"
    );
    // The hub emits a refusal before it sends the CONNACK, so all of them are in the channel.
    assert_eq!(refusals(&drain(&mut hub_events)), 1);

    // `spawn` with the default policy (stop): one attempt, a Disconnected without retry, Stopped.
    let (_device, mut events) = Device::spawn(hub.options(wrong)).expect("spawned");
    let mut seen = Vec::new();
    while let Some(event) = events.recv().await {
        seen.push(event);
    }
    match seen.as_slice() {
        [
            Event::Disconnected(d),
            Event::Stopped(Some(Error::Refused { code })),
        ] => {
            assert_eq!(d.refused, Some(ConnackCode::BadUsernameOrPassword));
            assert_eq!(d.retry_in, None);
            assert_eq!(*code, ConnackCode::BadUsernameOrPassword);
        }
        other => panic!("unexpected events {other:?}"),
    }
    assert_eq!(
        refusals(&drain(&mut hub_events)),
        1,
        "exactly one more CONNECT, no storm"
    );
}

#[tokio::test]
async fn a_disabled_device_is_refused_with_code_5() {
    let hub = Hub::start(false).await;
    let id = hub.device("disabled").await;
    hub.service()
        .set_enabled(id.product_key(), id.device_name(), false)
        .await
        .expect("disable");
    let err = Device::connect(hub.options(id).on_refusal(RefusalPolicy::Stop))
        .await
        .expect_err("refused");
    assert_eq!(err.connack(), Some(ConnackCode::NotAuthorized));
}

#[tokio::test]
async fn property_set_and_service_round_trips() {
    let hub = Hub::start(false).await;
    let id = hub.device("handlers").await;
    let (device, events) = Device::connect(hub.options(id.clone())).await.expect("connects");
    let (applied_tx, mut applied_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(
        Handlers::new()
            .on_property_set(move |props| {
                let applied = applied_tx.clone();
                async move {
                    let _ = applied.send(props.clone());
                    Ok(json!({"applied": props.len()}))
                }
            })
            .on_service("Add", |params| async move {
                let a = params
                    .get("a")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| ReplyError::bad_params("a"))?;
                let b = params
                    .get("b")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| ReplyError::bad_params("b"))?;
                Ok(json!({"sum": a + b}))
            })
            .run(events),
    );
    let (pk, dn) = (id.product_key(), id.device_name());

    let reply = hub
        .service()
        .set_property(pk, dn, json!({"LightSwitch": 0}), CALL_TIMEOUT)
        .await
        .expect("set reply");
    assert_eq!(reply["code"], 200, "{reply}");
    assert_eq!(reply["data"]["applied"], 1, "{reply}");
    assert_eq!(
        applied_rx.recv().await.expect("applied").get("LightSwitch"),
        Some(&json!(0))
    );

    // Synchronous call, new style (the device announced ext=1).
    let reply = hub
        .service()
        .invoke_service(pk, dn, "Add", json!({"a": 2, "b": 3}), CALL_TIMEOUT)
        .await
        .expect("rrpc");
    assert_eq!(reply["code"], 200, "{reply}");
    assert_eq!(reply["data"]["sum"], 5, "{reply}");
    // A handler's error becomes the reply's code.
    let reply = hub
        .service()
        .invoke_service(pk, dn, "Add", json!({"a": 2}), CALL_TIMEOUT)
        .await
        .expect("rrpc");
    assert_eq!(reply["code"], 460, "{reply}");
    // No handler: answered "not handled" at once.
    let reply = hub
        .service()
        .invoke_service(pk, dn, "Nope", json!({}), CALL_TIMEOUT)
        .await
        .expect("rrpc");
    assert_eq!(reply["code"], 400, "{reply}");

    // Asynchronous call: the reply goes to `{topic}_reply`.
    let mut hub_events = hub.service().events();
    let topic = format!("/sys/{pk}/{dn}/thing/service/Add");
    let body =
        json!({"id": "42", "version": "1.0", "params": {"a": 40, "b": 2}, "method": "thing.service.Add"});
    hub.service()
        .publish(pk, dn, &topic, Bytes::from(body.to_string()), 1)
        .await
        .expect("published");
    let answer: Value =
        serde_json::from_str(&next_uplink(&mut hub_events, &format!("{topic}_reply")).await).expect("json");
    assert_eq!(answer, json!({"id": "42", "code": 200, "data": {"sum": 42}}));
    drop(device);
}

#[tokio::test]
async fn handlers_observe_every_event_see_whole_requests_and_report_unsent_answers() {
    let hub = Hub::start(false).await;
    let id = hub.device("observed").await;
    let (pk, dn) = (id.product_key().to_owned(), id.device_name().to_owned());
    let (device, events) = Device::connect(hub.options(id.clone())).await.expect("connects");

    // What the observer saw, in order; the slow service's start; the unsent answers.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (unsent_tx, mut unsent_rx) = tokio::sync::mpsc::unbounded_channel::<Error>();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let release_slow = release.clone();
    let run = tokio::spawn(
        Handlers::new()
            .on_event(move |event| {
                let what = match event {
                    Event::PropertySet(set) => format!("property_set {}", set.id()),
                    Event::ServiceCall(call) => format!("service_call {}", call.service()),
                    Event::Stopped(reason) => format!("stopped {reason:?}"),
                    Event::Connected(_) => "connected".to_owned(),
                    _ => "other".to_owned(),
                };
                let _ = seen_tx.send(what);
            })
            .on_property_set_request(|set| {
                let (topic, id) = (set.topic().to_owned(), set.id());
                async move { Ok(json!({"topic": topic, "id": id})) }
            })
            .on_any_service_request(|call| {
                let (method, message_id) = (call.method(), call.via().message_id().map(str::to_owned));
                async move { Ok(json!({"method": method, "rrpc": message_id})) }
            })
            .on_service("Slow", move |_params| {
                let (release, started) = (release_slow.clone(), started_tx.clone());
                async move {
                    let _ = started.send(());
                    release.notified().await;
                    Ok(json!({}))
                }
            })
            .on_reply_error(move |e| {
                let _ = unsent_tx.send(e.clone());
            })
            .run(events),
    );

    // The observed events that matter here (a `Disconnected` before `Stopped` or not, it does not).
    async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
        loop {
            let seen = rx.recv().await.expect("seen");
            if seen != "other" {
                return seen;
            }
        }
    }
    assert_eq!(next(&mut seen_rx).await, "connected");

    // The whole request: the reply data holds the request's own topic and id.
    let reply = hub
        .service()
        .set_property(&pk, &dn, json!({"LightSwitch": 1}), CALL_TIMEOUT)
        .await
        .expect("set reply");
    assert_eq!(reply["code"], 200, "{reply}");
    assert_eq!(reply["data"]["id"], reply["id"], "{reply}");
    assert_eq!(
        reply["data"]["topic"],
        format!("/sys/{pk}/{dn}/thing/service/property/set"),
        "{reply}"
    );
    assert_eq!(
        next(&mut seen_rx).await,
        format!("property_set {}", reply["id"].as_str().expect("id"))
    );

    // A synchronous call: the method and the RRPC message id come from the call itself.
    let reply = hub
        .service()
        .invoke_service(&pk, &dn, "Echo", json!({}), CALL_TIMEOUT)
        .await
        .expect("rrpc");
    assert_eq!(reply["code"], 200, "{reply}");
    assert_eq!(reply["data"]["method"], "thing.service.Echo", "{reply}");
    assert!(reply["data"]["rrpc"].is_string(), "{reply}");
    assert_eq!(next(&mut seen_rx).await, "service_call Echo");

    // An answer computed after the device stopped cannot be sent: the observer hears of it.
    let body = json!({"id": "9", "version": "1.0", "params": {}, "method": "thing.service.Slow"});
    hub.service()
        .publish(
            &pk,
            &dn,
            &format!("/sys/{pk}/{dn}/thing/service/Slow"),
            Bytes::from(body.to_string()),
            1,
        )
        .await
        .expect("published");
    started_rx.recv().await.expect("the slow service started");
    assert_eq!(next(&mut seen_rx).await, "service_call Slow");
    device.disconnect().await;
    release.notify_one();
    let unsent = unsent_rx.recv().await.expect("an unsent answer");
    assert!(
        matches!(unsent, Error::NotConnected | Error::Closed),
        "{unsent:?}"
    );

    // `run` returns why the device stopped (asked to: None), after the observer saw it.
    assert_eq!(run.await.expect("run"), None);
    assert_eq!(next(&mut seen_rx).await, "stopped None");
}

#[tokio::test]
async fn handlers_run_returns_the_refusal_that_stopped_the_device() {
    let hub = Hub::start(false).await;
    let id = hub.device("refused-handlers").await;
    let wrong = DeviceIdentity::new(id.product_key(), id.device_name(), "not-the-secret").expect("identity");
    let (_device, events) = Device::spawn(hub.options(wrong)).expect("spawned");
    let stopped = Handlers::new().run(events).await;
    assert_eq!(
        stopped,
        Some(Error::Refused {
            code: ConnackCode::BadUsernameOrPassword
        })
    );
}

#[tokio::test]
async fn rrpc_in_both_styles_raw_and_custom() {
    let hub = Hub::start(false).await;
    let id_new = hub.device("rrpc-new").await;
    let id_old = hub.device("rrpc-old").await;

    async fn echo(device: Device, mut events: aliot_device::Events) {
        while let Some(event) = events.recv().await {
            match event {
                Event::ServiceCall(call) => {
                    let via = match call.via() {
                        CallVia::Async => "async",
                        CallVia::Rrpc { .. } => "rrpc",
                        CallVia::ExtRrpc { .. } => "ext",
                        _ => "other",
                    };
                    let reply = json!({"via": via, "params": call.params()});
                    call.reply(Ok(reply)).await.expect("answered");
                }
                Event::Rrpc(req) => {
                    let mut answer = match req.kind() {
                        RrpcKind::Custom { topic } => format!("custom {topic}: ").into_bytes(),
                        _ => b"raw: ".to_vec(),
                    };
                    answer.extend_from_slice(req.payload());
                    req.reply(answer).await.expect("answered");
                }
                Event::Stopped(_) => break,
                _ => {}
            }
        }
        drop(device);
    }

    let (new_style, events) = Device::connect(hub.options(id_new.clone()))
        .await
        .expect("connects");
    new_style
        .subscribe_rrpc(&format!(
            "/{}/{}/user/get",
            id_new.product_key(),
            id_new.device_name()
        ))
        .await
        .expect("sub");
    tokio::spawn(echo(new_style.clone(), events));
    let (old_style, events) = Device::connect(hub.options(id_old.clone()).ext_rrpc(false))
        .await
        .expect("connects");
    tokio::spawn(echo(old_style.clone(), events));

    let broker = hub.service();
    let reply = broker
        .invoke_service(
            id_new.product_key(),
            id_new.device_name(),
            "Ping",
            json!({"n": 1}),
            CALL_TIMEOUT,
        )
        .await
        .expect("new style");
    assert_eq!(
        reply["data"],
        json!({"via": "ext", "params": {"n": 1}}),
        "{reply}"
    );
    let reply = broker
        .invoke_service(
            id_old.product_key(),
            id_old.device_name(),
            "Ping",
            json!({"n": 2}),
            CALL_TIMEOUT,
        )
        .await
        .expect("old style");
    assert_eq!(
        reply["data"],
        json!({"via": "rrpc", "params": {"n": 2}}),
        "{reply}"
    );

    let raw = broker
        .rrpc(
            id_old.product_key(),
            id_old.device_name(),
            Bytes::from_static(b"\x01\x02"),
            CALL_TIMEOUT,
        )
        .await
        .expect("raw rrpc");
    assert_eq!(&raw[..], b"raw: \x01\x02");

    let mut hub_events = broker.events();
    let custom = format!(
        "/ext/rrpc/777/{}/{}/user/get",
        id_new.product_key(),
        id_new.device_name()
    );
    broker
        .publish(
            id_new.product_key(),
            id_new.device_name(),
            &custom,
            Bytes::from_static(b"hello"),
            0,
        )
        .await
        .expect("pub");
    let answer = next_uplink(&mut hub_events, &custom).await;
    assert_eq!(
        answer,
        format!(
            "custom /{}/{}/user/get: hello",
            id_new.product_key(),
            id_new.device_name()
        )
    );
    drop((new_style, old_style));
}

#[tokio::test]
async fn ntp_returns_the_offset() {
    let hub = Hub::start(false).await;
    let id = hub.device("ntp").await;
    let (device, _events) = Device::connect(hub.options(id)).await.expect("connects");
    let sync = device.ntp().await.expect("ntp");
    // Same clock on both sides: the platform's time lies within the round trip.
    let rtt = i64::try_from(sync.round_trip.as_millis()).expect("small");
    assert!(sync.offset_ms.abs() <= rtt + 1, "{sync:?}");
    assert_eq!(sync.server_time_ms, sync.local_time_ms + sync.offset_ms);
}

#[tokio::test]
async fn without_auto_subscription_the_sdk_subscribes_itself() {
    let hub = Hub::start(false).await;
    let id = hub.device("no-ss").await;
    let (device, events) = Device::connect(hub.options(id.clone()).auto_subscribe(false))
        .await
        .expect("connects");
    tokio::spawn(
        Handlers::new()
            .on_property_set(|_| async { Ok(json!({})) })
            .run(events),
    );
    let session = hub
        .service()
        .session(id.product_key(), id.device_name())
        .expect("online");
    assert!(!session.auto_subscribe);
    // The property post reply and the NTP response need the SDK's own subscriptions.
    assert_eq!(
        device.post_property(json!({"a": 1})).await.expect("reply").code,
        200
    );
    device.ntp().await.expect("ntp");
    let reply = hub
        .service()
        .set_property(id.product_key(), id.device_name(), json!({"a": 2}), CALL_TIMEOUT)
        .await
        .expect("set");
    assert_eq!(reply["code"], 200);
}

#[tokio::test]
async fn a_request_without_a_reply_times_out() {
    let hub = Hub::start(false).await;
    let id = hub.device("timeout").await;
    let options = hub
        .options(id.clone())
        .auto_subscribe(false)
        .request_timeout(Duration::from_millis(300));
    // `connect` returns once the SDK's own subscriptions are in place...
    let (device, _events) = Device::connect(options).await.expect("connects");
    // ...then the device stops listening to the replies: the platform drops what nobody
    // subscribed to, so the post gets no reply.
    let filter = format!(
        "/sys/{}/{}/thing/event/+/post_reply",
        id.product_key(),
        id.device_name()
    );
    device.unsubscribe(&filter).await.expect("unsubscribed");
    match device.post_property(json!({"a": 1})).await {
        Err(Error::Timeout { method, .. }) => assert_eq!(method, "thing.event.property.post"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The connection is fine: NTP (another topic) still works.
    device.ntp().await.expect("ntp");
}

#[tokio::test]
async fn a_full_event_queue_answers_429_and_keeps_the_connection() {
    let hub = Hub::start(false).await;
    let id = hub.device("busy").await;
    let (pk, dn) = (id.product_key().to_owned(), id.device_name().to_owned());
    // Nobody reads the events: one slot, which a message fills.
    let (device, _events) = Device::connect(hub.options(id).event_capacity(1))
        .await
        .expect("connects");
    let custom = format!("/{pk}/{dn}/user/get");
    device
        .subscribe(&custom, QoS::AtLeastOnce)
        .await
        .expect("subscribed");
    hub.service()
        .publish(&pk, &dn, &custom, Bytes::from_static(b"fills the queue"), 1)
        .await
        .expect("delivered");
    let reply = hub
        .service()
        .set_property(&pk, &dn, json!({"a": 1}), CALL_TIMEOUT)
        .await
        .expect("answered");
    assert_eq!(reply["code"], 429, "{reply}");
    // The network loop is not stalled: requests still work.
    assert_eq!(
        device.post_property(json!({"a": 1})).await.expect("reply").code,
        200
    );
    assert_eq!(device.stats().busy_replies, 1);
}

#[tokio::test]
async fn subscriptions_outside_the_device_namespace_are_refused() {
    let hub = Hub::start(false).await;
    let id = hub.device("acl").await;
    let (device, _events) = Device::connect(hub.options(id)).await.expect("connects");
    let err = device
        .subscribe("/otherpk/otherdn/user/get", QoS::AtMostOnce)
        .await
        .expect_err("refused");
    assert!(matches!(err, Error::SubscribeRejected { .. }), "{err}");
    assert!(matches!(
        device.publish("bad/#", "x", QoS::AtMostOnce).await,
        Err(Error::InvalidTopic(_))
    ));
}

/// Hardening 9: a QoS 1 publish to a topic the device may not use fails at once instead of
/// looping (the platform closes the connection, the SDK reconnects and sends it again…), and
/// the connection stays up.
#[tokio::test]
async fn a_publish_outside_the_device_namespace_fails_at_once() {
    let hub = Hub::start(false).await;
    let id = hub.device("acl-pub").await;
    let (device, _events) = Device::connect(hub.options(id.clone())).await.expect("connects");
    let other = "/otherpk/otherdn/user/update";
    let err = aliot_testkit::guard("the refusal", device.publish(other, "x", QoS::AtLeastOnce))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, Error::TopicNotAllowed(ref t) if t == other),
        "{err}"
    );
    assert!(matches!(
        device.publish(other, "x", QoS::AtMostOnce).await,
        Err(Error::TopicNotAllowed(_))
    ));
    let own = format!("/{}/{}/user/update", id.product_key(), id.device_name());
    device
        .publish(&own, "x", QoS::AtLeastOnce)
        .await
        .expect("its own topic");
    assert_eq!(device.stats().connections, 1, "never disconnected");
}

/// Hardening 9 (item 12): a topic or filter beyond the caps is refused before anything is sent
/// (the platform would close the connection, or answer SUBACK 0x80), and the connection stays up.
#[tokio::test]
async fn topics_beyond_the_caps_fail_at_once() {
    use aliot_protocol::topic::MAX_TOPIC_LEN;
    let hub = Hub::start(false).await;
    let id = hub.device("caps").await;
    let (device, _events) = Device::connect(hub.options(id.clone())).await.expect("connects");
    let head = format!("/{}/{}/user/", id.product_key(), id.device_name());
    let at = format!("{head}{}", "x".repeat(MAX_TOPIC_LEN - head.len()));
    let over = format!("{at}x");
    let err = aliot_testkit::guard("the refusal", device.publish(&over, "x", QoS::AtLeastOnce))
        .await
        .expect_err("refused");
    assert!(matches!(err, Error::InvalidTopic(_)), "{err}");
    assert!(matches!(
        device.subscribe(&over, QoS::AtMostOnce).await,
        Err(Error::InvalidTopic(_))
    ));
    device
        .publish(&at, "x", QoS::AtLeastOnce)
        .await
        .expect("at the cap");
    assert_eq!(device.stats().connections, 1, "never disconnected");
}

/// The hub restarts in the middle of a QoS 1 stream: the device reconnects with a new
/// signature, its subscriptions come back, and every message it saw acknowledged arrived.
#[tokio::test]
async fn hub_restart_mid_stream_loses_no_acknowledged_message() {
    let id = DeviceIdentity::new("pkRestart", "dev-1", "restart-secret").expect("identity");
    let registry = std::sync::Arc::new(MemoryRegistry::default());
    registry.add(id.product_key(), id.device_name(), id.device_secret());
    let config = || BrokerConfig {
        shutdown_grace_ms: 200,
        ..BrokerConfig::default()
    };
    let mut first = BrokerHub::serve(
        config(),
        registry.clone(),
        "127.0.0.1:0".parse().expect("addr"),
        None,
    );
    let addr = first.addr;
    let endpoint = aliot_protocol::Endpoint::custom("127.0.0.1", Some(addr.port()), false).expect("endpoint");
    let options = common::fast(aliot_device::DeviceOptions::new(id.clone(), endpoint)).outbox_capacity(100);
    let (device, mut events) = Device::connect(options).await.expect("connects");
    let custom = format!("/{}/{}/user/get", id.product_key(), id.device_name());
    device
        .subscribe(&custom, QoS::AtLeastOnce)
        .await
        .expect("subscribed");
    let topic = format!("/{}/{}/user/update", id.product_key(), id.device_name());
    let first_client_id = first
        .service()
        .session(id.product_key(), id.device_name())
        .expect("online")
        .client_id;

    // Phase 1: acknowledged while the first hub runs.
    for i in 0..20 {
        device
            .publish(&topic, format!("{i}"), QoS::AtLeastOnce)
            .await
            .expect("acknowledged");
    }
    first.stop().await;
    let mut first_events = first.events;
    // Phase 2: published while the hub is down (queued), acknowledged after it is back.
    let mut pending = Vec::new();
    for i in 20..50 {
        let device = device.clone();
        let topic = topic.clone();
        pending.push(tokio::spawn(async move {
            device.publish(&topic, format!("{i}"), QoS::AtLeastOnce).await
        }));
    }
    let mut second = BrokerHub::serve(config(), registry, addr, None);
    for p in pending {
        p.await.expect("task").expect("acknowledged after the restart");
    }

    let mut seen = std::collections::BTreeSet::new();
    let mut uplinks = drain(&mut first_events);
    // The hub emits an uplink before its PUBACK: everything acknowledged is in the channels.
    uplinks.extend(drain(&mut second.events));
    for e in &uplinks {
        if let HubEvent::Uplink(u) = &**e
            && u.topic == topic
        {
            seen.insert(
                u.payload
                    .clone()
                    .unwrap_or_default()
                    .parse::<u32>()
                    .expect("number"),
            );
        }
    }
    assert_eq!(seen, (0..50).collect(), "every acknowledged message arrived");

    // A new signature: the second hub saw a later timestamp in the clientId.
    let second_client_id = second
        .service()
        .session(id.product_key(), id.device_name())
        .expect("online")
        .client_id;
    let ts = |cid: &str| -> u64 {
        let p = aliot_protocol::ClientId::parse(cid).expect("clientId");
        p.timestamp().expect("timestamp").parse().expect("ms")
    };
    assert!(
        ts(&second_client_id) > ts(&first_client_id),
        "{first_client_id} then {second_client_id}"
    );

    // The subscription was restored on the new connection.
    let outcome = second
        .service()
        .publish(
            id.product_key(),
            id.device_name(),
            &custom,
            Bytes::from_static(b"after restart"),
            1,
        )
        .await
        .expect("published");
    assert_eq!(outcome, aliot_hub::PublishOutcome::Delivered);
    loop {
        match events.recv().await.expect("events") {
            Event::Message(m) if m.topic == custom => {
                assert_eq!(&m.payload[..], b"after restart");
                break;
            }
            _ => {}
        }
    }
    assert!(device.stats().connections >= 2);
    second.stop().await;
}
