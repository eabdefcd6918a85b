//! The thing model with the clients a team already has (issue 11): the official Node SDK's
//! `postProps`, `postEvent` and served services, mosquitto with hand-written payloads, and the
//! admin's own calls, all against a hub whose product has a TSL.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use aliot_hub::events::Event as HubEvent;
use aliot_testkit::{TOKEN, TestHub, http, run_guarded};
use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::sync::broadcast;

const TSL: &str = r#"{"properties":[
  {"identifier":"LightSwitch","name":"s","accessMode":"rw","dataType":{"type":"bool","specs":{"0":"off","1":"on"}}},
  {"identifier":"Brightness","name":"b","accessMode":"rw","dataType":{"type":"int","specs":{"min":"0","max":"100"}}},
  {"identifier":"Temperature","name":"t","accessMode":"r","dataType":{"type":"float","specs":{"min":"-40","max":"85"}}}],
 "events":[{"identifier":"Overheat","name":"o","type":"alert","outputData":[
   {"identifier":"Temperature","name":"t","dataType":{"type":"float","specs":{"min":"60","max":"120"}}},
   {"identifier":"Level","name":"l","dataType":{"type":"enum","specs":{"1":"warn","2":"stop"}}}]}],
 "services":[{"identifier":"Blink","name":"b","callType":"sync",
   "inputData":[{"identifier":"Times","name":"t","dataType":{"type":"int","specs":{"min":"1","max":"10"}}}],
   "outputData":[{"identifier":"Done","name":"d","dataType":{"type":"bool","specs":{"0":"no","1":"yes"}}},
     {"identifier":"Took","name":"t","dataType":{"type":"double","specs":{"min":"0","max":"5"}}}]}]}"#;

/// A hub with device `dn` of a product that has [`TSL`]: (hub, pk, dn, secret).
async fn hub_with_model(dn: &str) -> (Arc<TestHub>, String, String, String) {
    let hub = Arc::new(TestHub::start().await);
    let (pk, dn, ds) = hub.device(dn).await;
    let (s, text) = http(
        "PUT",
        &format!("{}/api/v1/products/{pk}/tsl", hub.base),
        Some(TOKEN),
        Some(TSL.to_owned()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    (hub, pk, dn, ds)
}

/// The next reply the platform sent to `dn`.
async fn next_reply(events: &mut broadcast::Receiver<Arc<HubEvent>>, dn: &str) -> (String, Value) {
    aliot_testkit::guard("a reply", async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let HubEvent::Reply(r) = &*e
                        && r.device_name == dn
                    {
                        return (
                            r.topic.clone(),
                            serde_json::from_str(&r.payload).expect("reply JSON"),
                        );
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("hub events ended: {e}"),
            }
        }
    })
    .await
}

// ----- the admin's calls -----

#[tokio::test]
async fn admin_calls_that_break_the_thing_model_are_refused_before_sending() {
    let (hub, pk, dn, _) = hub_with_model("checked").await;
    let set = format!("/api/v1/products/{pk}/devices/{dn}/properties");
    let refused = |body: Value, code: &'static str, identifier: &'static str| {
        let (hub, set) = (hub.clone(), set.clone());
        async move {
            let (s, v) = hub.call("POST", &set, Some(body)).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
            assert_eq!(v["code"], "thing_model", "{v}");
            let message = v["message"].as_str().unwrap_or_default();
            assert!(message.contains(&format!("code {code}")), "{message}");
            assert!(message.contains(identifier), "{message}");
        }
    };
    // A float as text, an out-of-range int, a read-only property, one the model lacks.
    refused(json!({"params": {"Brightness": "50"}}), "6306", "Brightness").await;
    refused(json!({"params": {"Brightness": 101}}), "6306", "Brightness").await;
    refused(json!({"params": {"Temperature": 20.5}}), "6320", "Temperature").await;
    refused(json!({"params": {"Colour": 1}}), "6320", "Colour").await;

    let call = |service: &str, params: Value| {
        let (hub, pk, dn) = (hub.clone(), pk.clone(), dn.clone());
        let path = format!("/api/v1/products/{pk}/devices/{dn}/services/{service}");
        async move { hub.call("POST", &path, Some(json!({ "params": params }))).await }
    };
    let (s, v) = call("Blink", json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"].as_str().unwrap_or_default().contains("code 6302"),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap_or_default().contains("Times"), "{v}");
    let (s, v) = call("Blink", json!({"Times": 11})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"].as_str().unwrap_or_default().contains("code 6306"),
        "{v}"
    );
    let (s, v) = call("Reboot", json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"].as_str().unwrap_or_default().contains("code 6300"),
        "{v}"
    );

    // Valid calls pass the check (and meet the offline device).
    let (s, v) = hub
        .call(
            "POST",
            &set,
            Some(json!({"params": {"Brightness": 50, "LightSwitch": 0}})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "device_offline", "{v}");
    let (s, v) = call("Blink", json!({"Times": 2})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    // Without a model, anything goes (today's behaviour).
    let (s, _) = hub
        .call("DELETE", &format!("/api/v1/products/{pk}/tsl"), None)
        .await;
    assert!(s.is_success(), "{s}");
    let (s, v) = hub
        .call("POST", &set, Some(json!({"params": {"Brightness": "50"}})))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
}

// ----- the official Node SDK -----

/// The node script's next line, as JSON.
async fn line(rx: &mut tokio::sync::mpsc::Receiver<String>) -> Value {
    let line = aliot_testkit::guard("a line of the node script", rx.recv())
        .await
        .expect("the node script printed a line");
    serde_json::from_str::<Value>(&line).unwrap_or_else(|_| panic!("JSON: {line}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_node_sdks_post_props_post_event_and_services_work_unchanged() {
    let (hub, pk, dn, ds) = hub_with_model("node-lamp").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/node_thing.js");
    let mut child = Command::new("node")
        .arg(script)
        .arg(aliot_testkit::sdk_node_package())
        .arg(hub.mqtt.port().to_string())
        .args([&pk, &dn, &ds])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    // The three posts, as the SDK's callbacks saw the platform's answers.
    let posts = line(&mut rx).await;
    assert_eq!(posts["step"], "posts", "{posts}");
    assert_eq!(posts["valid"]["code"], 200, "{posts}");
    assert_eq!(posts["valid"]["data"], json!({}), "{posts}");
    assert_eq!(posts["invalid"]["code"], 200, "{posts}");
    let rejected = posts["invalid"]["data"].as_object().expect("data");
    assert_eq!(rejected.len(), 2, "{posts}");
    assert!(
        rejected["Temperature"]
            .as_str()
            .unwrap_or_default()
            .contains("not float"),
        "{posts}"
    );
    assert!(
        rejected["LightSwitch"]
            .as_str()
            .unwrap_or_default()
            .contains("not bool"),
        "{posts}"
    );
    assert_eq!(posts["event"]["code"], 200, "{posts}");
    assert_eq!(posts["event"]["data"], json!({}), "{posts}");
    // The backend calls the served service: checked, delivered, answered by the SDK's handler.
    let path = format!("/api/v1/products/{pk}/devices/{dn}/services/Blink");
    let (s, v) = hub
        .call("POST", &path, Some(json!({"params": {"Times": "3"}})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = hub
        .call("POST", &path, Some(json!({"params": {"Times": 3}})))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["code"], 200, "{v}");
    assert_eq!(v["data"], json!({"Done": 1, "Took": 0.25}), "{v}");
    let served = line(&mut rx).await;
    assert_eq!(served["step"], "served", "{served}");
    assert_eq!(served["call"]["params"], json!({"Times": 3}), "{served}");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("node exit");
    assert!(status.success(), "{status}");
}

// ----- mosquitto with hand-written payloads -----

/// `mosquitto_pub` as device `dn` (announcing `_ss=1`, so the reply is delivered), QoS 1.
fn mosquitto_pub(hub: &TestHub, pk: &str, dn: &str, ds: &str, topic: &str, payload: &str) {
    let c = aliot_testkit::creds_with(&aliot_testkit::Signing {
        product_key: pk,
        device_name: dn,
        secret: ds,
        extra: "_ss=1",
        ..aliot_testkit::Signing::default()
    });
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &hub.mqtt.port().to_string()])
        .args(["-V", "mqttv311", "-k", "60", "-q", "1"])
        .args(["-i", &c.client_id, "-u", &c.username, "-P", &c.password])
        .args(["-t", topic, "-m", payload]);
    let out = run_guarded(cmd);
    assert!(
        out.status.success(),
        "mosquitto_pub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mosquitto_posts_are_judged_by_the_thing_model() {
    let (hub, pk, dn, ds) = hub_with_model("mosq-lamp").await;
    let mut events = hub.service().events();
    let topic = format!("/sys/{pk}/{dn}/thing/event/property/post");
    let post = |payload: &'static str| {
        let (hub, pk, dn, ds, topic) = (hub.clone(), pk.clone(), dn.clone(), ds.clone(), topic.clone());
        tokio::task::spawn_blocking(move || mosquitto_pub(&hub, &pk, &dn, &ds, &topic, payload))
    };

    post(r#"{"id":"7","version":"1.0","params":{"Brightness":30,"Temperature":21.5},"method":"thing.event.property.post"}"#)
        .await
        .expect("mosquitto_pub");
    let (reply_topic, reply) = next_reply(&mut events, &dn).await;
    assert_eq!(reply_topic, format!("{topic}_reply"));
    assert_eq!(reply["id"], "7", "{reply}");
    assert_eq!(reply["code"], 200, "{reply}");
    assert_eq!(reply["data"], json!({}), "{reply}");

    // A float sent as text: the post is still code 200, the reply's data names the rejected one.
    post(r#"{"id":"8","version":"1.0","params":{"Brightness":31,"Temperature":"21.5"},"method":"thing.event.property.post"}"#)
        .await
        .expect("mosquitto_pub");
    let (_, reply) = next_reply(&mut events, &dn).await;
    assert_eq!(reply["id"], "8", "{reply}");
    assert_eq!(reply["code"], 200, "{reply}");
    assert_eq!(
        reply["data"],
        json!({"Temperature": "tsl parse: data type is not float"}),
        "{reply}"
    );
}
