//! `aliot_device::thing::ThingModel` against the hub (issue 11): what the model refuses is never
//! sent; property sets and service calls are judged by the device's model; service answers are
//! checked before they leave.

mod common;

use std::time::Duration;

use aliot_device::thing::ThingModel;
use aliot_device::{Device, Error, Event};
use aliot_testkit::events::next_uplink;
use common::Hub;
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(20);

const TSL: &str = r#"{"properties":[
  {"identifier":"Brightness","name":"b","accessMode":"rw","dataType":{"type":"int","specs":{"min":"0","max":"100"}}},
  {"identifier":"Temperature","name":"t","accessMode":"r","dataType":{"type":"float","specs":{}}}],
 "events":[{"identifier":"Overheat","name":"o","type":"alert","outputData":[
  {"identifier":"Level","name":"l","dataType":{"type":"enum","specs":{"1":"warn","2":"stop"}}}]}],
 "services":[{"identifier":"Blink","name":"b","callType":"sync",
  "inputData":[{"identifier":"Times","name":"t","dataType":{"type":"int","specs":{"min":"1","max":"10"}}}],
  "outputData":[{"identifier":"Done","name":"d","dataType":{"type":"bool","specs":{}}}]}]}"#;

#[tokio::test]
async fn posts_the_model_refuses_are_never_sent() {
    let hub = Hub::start(false).await;
    let id = hub.device("checked").await;
    let (device, _events) = Device::connect(hub.options(id)).await.expect("connects");
    let model = ThingModel::from_json(TSL).expect("model");
    let mut uplinks = hub.service().events();

    let e = model
        .post_property(&device, json!({"Temperature": "21.5"}))
        .await
        .expect_err("a float as text");
    assert!(
        matches!(&e, Error::Model { identifier, code: 6307, .. } if identifier == "Temperature"),
        "{e}"
    );
    assert!(e.to_string().contains("tsl parse: data type is not float"), "{e}");
    let e = model
        .post_event(&device, "Overheat", json!({"Level": 3}))
        .await
        .expect_err("an enum key the model lacks");
    assert!(matches!(&e, Error::Model { code: 6309, .. }), "{e}");

    // The first uplink the hub sees is the valid post: the refused ones never left.
    let reply = model
        .post_property(&device, json!({"Temperature": 21.5}))
        .await
        .expect("a valid post");
    assert_eq!(reply.code, 200);
    let topic = format!("/sys/{}/checked/thing/event/property/post", hub.product_key);
    let first: Value = serde_json::from_str(&next_uplink(&mut uplinks, &topic).await).expect("JSON");
    assert_eq!(first["params"], json!({"Temperature": 21.5}));
    let reply = model
        .post_event(&device, "Overheat", json!({"Level": 2}))
        .await
        .expect("a valid event");
    assert_eq!(reply.code, 200);
}

#[tokio::test]
async fn requests_are_judged_by_the_devices_model() {
    let hub = Hub::start(false).await;
    let id = hub.device("judge").await;
    let (device, mut events) = Device::connect(hub.options(id)).await.expect("connects");
    let model = ThingModel::from_json(TSL).expect("model");
    let pk = hub.product_key.clone();
    tokio::spawn(async move {
        let _device = device;
        while let Some(event) = events.recv().await {
            match event {
                Event::PropertySet(set) => {
                    let answer = model.property_set(&set).map(|_| json!({}));
                    let _ = set.reply(answer).await;
                }
                Event::ServiceCall(call) => {
                    // A wrong answer for Times 7 (Done must be 0 or 1): checked before it leaves.
                    let answer = model
                        .service_input(&call)
                        .map(|inputs| match inputs.get("Times") {
                            Some(t) if *t == json!(7) => json!({"Done": 2}),
                            _ => json!({"Done": 1}),
                        });
                    let _ = model.reply_service(call, answer).await;
                }
                _ => {}
            }
        }
    });
    // The hub has no model here: bad calls reach the device, which answers the platform's codes.
    let service = hub.service();
    let set = |params: Value| service.set_property(&pk, "judge", params, CALL_TIMEOUT);
    assert_eq!(
        set(json!({"Brightness": 50})).await.expect("answered")["code"],
        200
    );
    assert_eq!(
        set(json!({"Brightness": 500})).await.expect("answered")["code"],
        6306
    );
    assert_eq!(
        set(json!({"Temperature": 1.5})).await.expect("answered")["code"],
        6320
    );
    let call =
        |name: &'static str, params: Value| service.invoke_service(&pk, "judge", name, params, CALL_TIMEOUT);
    let ok = call("Blink", json!({"Times": 3})).await.expect("answered");
    assert_eq!(
        (ok["code"].clone(), ok["data"].clone()),
        (json!(200), json!({"Done": 1})),
        "{ok}"
    );
    assert_eq!(call("Blink", json!({})).await.expect("answered")["code"], 6302);
    assert_eq!(call("Reboot", json!({})).await.expect("answered")["code"], 6300);
    let wrong = call("Blink", json!({"Times": 7})).await.expect("answered");
    assert_eq!(wrong["code"], 6308, "{wrong}");
}
