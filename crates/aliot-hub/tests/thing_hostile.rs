//! Hostile property posts against a hub whose product has a thing model (issue 11, "bad
//! input"): NaN and numbers beyond `f64`, nesting deeper than the parser's limit, arrays far
//! past their `size`, duplicate keys, integers beyond 32 bits. Each gets the platform's code and
//! a clear message on `post_reply` (or, when not even the id can be read, a problem event),
//! and nothing of a refused message is kept; the connection stays usable.

use aliot_hub::events::Event;
use aliot_testkit::{Raw, TestHub, http, json, signed};
use hyper::StatusCode;
use rmqtt_codec::v3::QoS;
use serde_json::{Value, json};

const LAMP_TSL: &str = include_str!("../../aliot-protocol/tests/data/tsl-lamp.json");

/// A hub with the lamp model, and a raw device subscribed to its `post_reply`:
/// (hub, pk, dn, device, post topic).
async fn lamp() -> (TestHub, String, String, Raw, String) {
    let hub = TestHub::start().await;
    let (pk, dn, secret) = hub.device("lamp").await;
    let (s, text) = http(
        "PUT",
        &format!("{}/api/v1/products/{pk}/tsl", hub.base),
        Some(aliot_testkit::TOKEN),
        Some(LAMP_TSL.to_owned()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let mut raw = Raw::online(hub.mqtt, &signed(&pk, &dn, &secret)).await;
    let topic = format!("/sys/{pk}/{dn}/thing/event/property/post");
    let reply = format!("{topic}_reply");
    raw.subscribe(1, &[(reply.as_str(), QoS::AtMostOnce)]).await;
    (hub, pk, dn, raw, topic)
}

/// Posts `payload` and returns the platform's reply.
async fn post(raw: &mut Raw, topic: &str, payload: &str) -> Value {
    raw.publish(topic, payload, QoS::AtMostOnce, 0).await;
    json(&raw.publish_in().await)
}

/// The device's remembered property values, as the admin API shows them.
async fn kept(hub: &TestHub, pk: &str, dn: &str) -> Value {
    let (_, d) = hub
        .call("GET", &format!("/api/v1/products/{pk}/devices/{dn}"), None)
        .await;
    d["properties"].clone()
}

#[tokio::test]
async fn unreadable_posts_are_reported_and_keep_nothing() {
    let (hub, pk, dn, mut raw, topic) = lamp().await;
    let mut events = hub.service().events();
    // Not JSON (JSON has no NaN), and no id can be read past the fault: there is no reply to
    // send; it is a problem event that names the fault.
    let unreadable = [(
        r#"{"id":"1","params":{"Voltage":NaN},"method":"thing.event.property.post"}"#,
        "expected value",
    )];
    for (payload, why) in unreadable {
        raw.publish(&topic, payload, QoS::AtMostOnce, 0).await;
        aliot_testkit::guard(why, async {
            loop {
                match events.recv().await {
                    Ok(e) if matches!(&*e, Event::Problem(p) if p.reason.contains(why)) => break,
                    Ok(_) => {}
                    Err(e) => panic!("event stream: {e}"),
                }
            }
        })
        .await;
    }
    // Readable up to the id: answered with 460 naming the fault. A number beyond f64, nesting
    // past the parser's limit (128), and the same identifier twice (which one would count?).
    let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    let deep = format!(r#"{{"id":"3","params":{{"History":{deep}}},"method":"thing.event.property.post"}}"#);
    for (id, payload, why) in [
        (
            "2",
            r#"{"id":"2","params":{"Energy":1e400},"method":"thing.event.property.post"}"#,
            "number out of range",
        ),
        ("3", deep.as_str(), "recursion limit"),
        (
            "4",
            r#"{"id":"4","params":{"Brightness":10,"Brightness":"ten"},"method":"thing.event.property.post"}"#,
            r#"duplicate key "Brightness""#,
        ),
    ] {
        let reply = post(&mut raw, &topic, payload).await;
        assert_eq!(
            (&reply["id"], &reply["code"]),
            (&json!(id), &json!(460)),
            "{reply}"
        );
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("request parameter error") && message.contains(why),
            "{why}: {reply}"
        );
    }
    assert_eq!(kept(&hub, &pk, &dn).await, json!({}), "nothing kept");
    // The connection is still good: a valid post is answered (the next reply: none was sent for
    // the unreadable ones) and kept.
    let reply = post(
        &mut raw,
        &topic,
        r#"{"id":"5","params":{"Brightness":10},"method":"thing.event.property.post"}"#,
    )
    .await;
    assert_eq!(
        (&reply["id"], &reply["code"], &reply["data"]),
        (&json!("5"), &json!(200), &json!({})),
        "{reply}"
    );
    assert_eq!(kept(&hub, &pk, &dn).await, json!({"Brightness": 10}));
}

#[tokio::test]
async fn out_of_model_values_are_rejected_one_by_one_with_their_codes() {
    let (hub, pk, dn, mut raw, topic) = lamp().await;
    let history: Vec<u32> = (0..10_000).map(|i| i % 100).collect();
    let params = json!({
        "History": history,                      // size 24: 6324
        "Brightness": 4_294_967_296_u64,         // beyond 32 bits: 6306
        "ColorTemperature": 99_999_999_999_999_999_999.0, // a huge float for an int: 6306
        "Energy": 1.0e308,                       // past the double's max: 6322
        "Label": "x".repeat(10_000),             // length 16: 6310
        "WorkMode": 3,                           // valid: kept
    });
    let payload = json!({"id": "1", "params": params, "method": "thing.event.property.post"}).to_string();
    let reply = post(&mut raw, &topic, &payload).await;
    assert_eq!(reply["code"], 200, "{reply}");
    let data = reply["data"].as_object().cloned().unwrap_or_default();
    let mut rejected: Vec<&str> = data.keys().map(String::as_str).collect();
    rejected.sort_unstable();
    assert_eq!(
        rejected,
        ["Brightness", "ColorTemperature", "Energy", "History", "Label"],
        "{reply}"
    );
    for (id, message) in &data {
        let message = message.as_str().unwrap_or_default();
        assert!(message.starts_with("tsl parse:"), "{id}: {message}");
        assert!(
            message.len() < 300,
            "the message does not echo the value: {message}"
        );
    }
    assert_eq!(kept(&hub, &pk, &dn).await, json!({"WorkMode": 3}));
}
