//! The thing model's history over real sockets (issue 11): property, batch and history posts kept
//! and read back page by page through the admin API, rejected batch items, retention and caps,
//! bad query parameters, service answers judged by the model, and the call log.

use std::sync::Arc;

use aliot_testkit::{Raw, Signing, TOKEN, TestHub, creds_with, http, json};
use hyper::StatusCode;
use rmqtt_codec::v3::QoS;
use serde_json::{Value, json};

const DAY_MS: u64 = 24 * 3600 * 1000;

fn now_ms() -> u64 {
    aliot_hub::clock::now_ms()
}

/// A device of a new product, online (`extra`: clientId parameters such as `ext=1`).
async fn online(hub: &TestHub, dn: &str, extra: &str) -> (String, Raw) {
    let (pk, dn, secret) = hub.device(dn).await;
    let c = creds_with(&Signing {
        product_key: &pk,
        device_name: &dn,
        secret: &secret,
        extra,
        ..Signing::default()
    });
    let mut dev = Raw::online(hub.mqtt, &c).await;
    let filter = format!("/sys/{pk}/{dn}/thing/event/+/post_reply");
    let filter2 = format!("/sys/{pk}/{dn}/thing/event/property/+/post_reply");
    dev.subscribe(
        1,
        &[
            (filter.as_str(), QoS::AtMostOnce),
            (filter2.as_str(), QoS::AtMostOnce),
        ],
    )
    .await;
    (pk, dev)
}

/// Posts `body` on `…/thing/event/{path}` at QoS 0 and returns the reply.
async fn post(dev: &mut Raw, pk: &str, dn: &str, path: &str, body: Value) -> Value {
    let topic = format!("/sys/{pk}/{dn}/thing/event/{path}");
    dev.publish(&topic, &body.to_string(), QoS::AtMostOnce, 1).await;
    let reply = dev.publish_in().await;
    assert_eq!(&*reply.topic, format!("{topic}_reply"));
    json(&reply)
}

async fn get(hub: &TestHub, path: &str) -> (StatusCode, Value) {
    hub.call("GET", path, None).await
}

/// Every item of a paged route, following `nextCursor`; also the number of pages.
async fn all_pages(hub: &TestHub, path: &str) -> (Vec<Value>, usize) {
    let (mut items, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}cursor={c}"),
            None => path.to_owned(),
        };
        let (s, page) = get(hub, &url).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        pages += 1;
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (items, pages),
        }
    }
}

#[tokio::test]
async fn property_batch_and_history_posts_are_kept_and_paged_through_the_admin_api() {
    let hub = TestHub::start().await;
    let (pk, mut dev) = online(&hub, "lamp", "").await;
    let t0 = now_ms() - 10_000_000;
    // A property post in both forms.
    let r = post(
        &mut dev,
        &pk,
        "lamp",
        "property/post",
        json!({"id":"1","params":{"Temp":{"value":20,"time":t0},"Mode":"eco"}}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    // 250 points of Temp in one batch post, 3 more in a history post.
    let points: Vec<Value> = (1..=250)
        .map(|i| json!({"value": 20 + i, "time": t0 + i * 1000}))
        .collect();
    let r = post(
        &mut dev,
        &pk,
        "lamp",
        "property/batch/post",
        json!({"id":"2","params":{"properties":{"Temp":points},"events":{"Alarm":[{"value":{"level":3},"time":t0 + 5}]}}}),
    )
    .await;
    assert_eq!(
        (r["code"].clone(), r["data"].clone()),
        (json!(200), json!({})),
        "{r}"
    );
    let r = post(
        &mut dev,
        &pk,
        "lamp",
        "property/history/post",
        json!({"id":"3","params":[{"identity":{"productKey":pk,"deviceName":"lamp"},
            "properties":[{"Temp":{"value":1,"time":t0 - 3000}},{"Temp":{"value":2,"time":t0 - 2000}},{"Temp":{"value":3,"time":t0 - 1000}}]}]}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    let r = post(
        &mut dev,
        &pk,
        "lamp",
        "Alarm/post",
        json!({"id":"4","params":{"value":{"level":5},"time":t0 + 9}}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");

    let base = format!("/api/v1/products/{pk}/devices/lamp");
    // Latest values: the newest point of each property, with its time (the history post's older
    // points do not replace it).
    let (s, latest) = get(&hub, &format!("{base}/properties")).await;
    assert_eq!(s, StatusCode::OK, "{latest}");
    let temp = latest
        .as_array()
        .and_then(|l| l.iter().find(|p| p["identifier"] == "Temp"))
        .expect("Temp");
    assert_eq!(
        (temp["value"].clone(), temp["time"].clone()),
        (json!(270), json!(t0 + 250_000))
    );
    assert!(
        latest
            .as_array()
            .is_some_and(|l| l.iter().any(|p| p["identifier"] == "Mode")),
        "{latest}"
    );

    // 254 points, read 100 at a time oldest first, across three pages, in time order.
    let (items, pages) = all_pages(&hub, &format!("{base}/properties/Temp/history?limit=100")).await;
    assert_eq!((items.len(), pages), (254, 3));
    let times: Vec<u64> = items.iter().map(|p| p["time"].as_u64().expect("time")).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!((times[0], items[0]["value"].clone()), (t0 - 3000, json!(1)));
    // Newest first, within a range.
    let (s, page) = get(
        &hub,
        &format!(
            "{base}/properties/Temp/history?order=desc&limit=2&from={}&to={}",
            t0,
            t0 + 10_000
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(
        page["items"],
        json!([{"time": t0 + 10_000, "value": 30}, {"time": t0 + 9000, "value": 29}])
    );
    let (rest, _) = all_pages(
        &hub,
        &format!(
            "{base}/properties/Temp/history?order=desc&limit=2&from={}&to={}",
            t0,
            t0 + 10_000
        ),
    )
    .await;
    assert_eq!(rest.len(), 11);

    // Events: from the batch post and the event post, filterable by identifier.
    let (events, _) = all_pages(&hub, &format!("{base}/events?identifier=Alarm")).await;
    let levels: Vec<Value> = events.iter().map(|e| e["value"]["level"].clone()).collect();
    assert_eq!(levels, [json!(3), json!(5)]);
    let (s, none) = get(&hub, &format!("{base}/events?identifier=Other")).await;
    assert_eq!((s, none["items"].clone()), (StatusCode::OK, json!([])));
    // 2 + 250 + 3 values and 2 events.
    assert_eq!(hub.metric("aliot_hub_history_rows_written_total").await, 257);
    assert_eq!(hub.metric("aliot_hub_history_rows_refused_total").await, 0);
}

#[tokio::test]
async fn rejected_batch_items_are_named_in_the_reply_and_not_kept() {
    let hub = TestHub::start().await;
    let (pk, mut dev) = online(&hub, "meter", "").await;
    let tsl = r#"{"properties":[
      {"identifier":"Power","name":"Power","accessMode":"r","dataType":{"type":"int","specs":{"min":"0","max":"100"}}}],
      "events":[],"services":[]}"#;
    let (s, text) = http(
        "PUT",
        &format!("{}/api/v1/products/{pk}/tsl", hub.base),
        Some(TOKEN),
        Some(tsl.to_owned()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let now = now_ms();
    let r = post(
        &mut dev,
        &pk,
        "meter",
        "property/batch/post",
        json!({"id":"9","params":{"properties":{
            "Power":[{"value":5,"time":now - 2},{"value":500,"time":now - 1},{"value":6,"time":now + 2 * DAY_MS}],
            "Ghost":[{"value":1,"time":now}]}}}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    assert_eq!(r["data"]["Ghost"], "tsl parse: params not exist", "{r}");
    assert!(r["data"]["Power"].is_string(), "{r}");
    let base = format!("/api/v1/products/{pk}/devices/meter");
    let (_, page) = get(&hub, &format!("{base}/properties/Power/history")).await;
    assert_eq!(page["items"], json!([{"time": now - 2, "value": 5}]), "{page}");
    let (_, page) = get(&hub, &format!("{base}/properties/Ghost/history")).await;
    assert_eq!(page["items"], json!([]));
    // The latest values carry the model's name and type.
    let (_, latest) = get(&hub, &format!("{base}/properties")).await;
    assert_eq!(
        latest,
        json!([{"identifier":"Power","value":5,"time":now - 2,"name":"Power","dataType":"int"}])
    );
    // A whole-message fault is not 200 and keeps nothing.
    let r = post(
        &mut dev,
        &pk,
        "meter",
        "property/batch/post",
        json!({"id":"10","params":[1]}),
    )
    .await;
    assert_eq!(r["code"], 460, "{r}");
}

#[tokio::test]
async fn bad_query_parameters_get_400_with_the_reason() {
    let hub = TestHub::start().await;
    let (pk, dn, _) = hub.device("d").await;
    let base = format!("/api/v1/products/{pk}/devices/{dn}");
    for (query, words) in [
        ("properties/T/history?limit=0", "limit"),
        ("properties/T/history?limit=1001", "limit"),
        ("properties/T/history?limit=x", "limit"),
        ("properties/T/history?from=yesterday", "from"),
        ("properties/T/history?from=20&to=10", "after"),
        ("properties/T/history?cursor=zz", "cursor"),
        ("properties/T/history?order=sideways", "order"),
        ("properties/T/history?identifier=T", "identifier"),
        ("calls?bogus=1", "bogus"),
    ] {
        let (s, body) = get(&hub, &format!("{base}/{query}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["code"], "invalid_argument", "{query}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(words)),
            "{query}: {body}"
        );
    }
    // RFC 3339 times are accepted, and an unknown device is a 404.
    let (s, body) = get(
        &hub,
        &format!("{base}/events?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00.5%2B08:00"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _) = get(&hub, &format!("/api/v1/products/{pk}/devices/nobody/calls")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn points_past_the_retention_are_pruned_and_caps_keep_the_newest() {
    let hub = TestHub::start_with(tempfile::tempdir().expect("a directory"), |c| {
        c.history.max_values_per_device = 5;
        c.history.max_events_per_device = 2;
    })
    .await;
    let (pk, mut dev) = online(&hub, "old", "").await;
    for level in 1..=3 {
        let r = post(
            &mut dev,
            &pk,
            "old",
            "Alarm/post",
            json!({"id":"e","params":{"value":{"level":level}}}),
        )
        .await;
        assert_eq!(r["code"], 200, "{r}");
    }
    let (_, page) = get(&hub, &format!("/api/v1/products/{pk}/devices/old/events")).await;
    let levels: Vec<Value> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["value"]["level"].clone())
        .collect();
    assert_eq!(levels, [json!(2), json!(3)], "at most two events, the newest");
    let now = now_ms();
    let points: Vec<Value> = [20, 10, 3, 2, 1]
        .iter()
        .map(|d| json!({"value": d, "time": now - d * DAY_MS}))
        .collect();
    let r = post(
        &mut dev,
        &pk,
        "old",
        "property/batch/post",
        json!({"id":"1","params":{"properties":{"T":points}}}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    let r = post(
        &mut dev,
        &pk,
        "old",
        "property/post",
        json!({"id":"2","params":{"T":{"value":0,"time":now}}}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    let history = format!("/api/v1/products/{pk}/devices/old/properties/T/history");
    let (_, page) = get(&hub, &history).await;
    let values: Vec<Value> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["value"].clone())
        .collect();
    // Six posted, at most five kept: the oldest went first.
    assert_eq!(values, [json!(10), json!(3), json!(2), json!(1), json!(0)]);
    drop(dev);

    // Restarted with a retention of a week: what is older is pruned when the hub starts.
    let dir = hub.stop().await;
    let hub = TestHub::start_with(dir, |c| {
        c.history.retention_days = 7;
        c.history.max_values_per_device = 5;
        c.history.max_events_per_device = 2;
    })
    .await;
    let (_, page) = get(&hub, &history).await;
    let values: Vec<Value> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["value"].clone())
        .collect();
    assert_eq!(values, [json!(3), json!(2), json!(1), json!(0)]);
    // The latest value survived the restart, in the device view too.
    let (_, device) = get(&hub, &format!("/api/v1/products/{pk}/devices/old")).await;
    assert_eq!(device["properties"]["T"], 0, "{device}");
}

#[tokio::test]
async fn service_answers_are_judged_by_the_model_and_every_call_is_logged() {
    let hub = Arc::new(TestHub::start().await);
    let (pk, mut dev) = online(&hub, "robot", "ext=1").await;
    let tsl = r#"{"properties":[],"events":[],"services":[{"identifier":"Reboot","callType":"sync",
      "inputData":[],"outputData":[{"identifier":"ok","dataType":{"type":"bool","specs":{}}}]}]}"#;
    let (s, text) = http(
        "PUT",
        &format!("{}/api/v1/products/{pk}/tsl", hub.base),
        Some(TOKEN),
        Some(tsl.to_owned()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let base = format!("/api/v1/products/{pk}/devices/robot");
    let (h, path) = (Arc::clone(&hub), format!("{base}/services/Reboot"));
    let call = tokio::spawn(async move {
        h.call("POST", &path, Some(json!({"params": {}, "timeout_ms": 10_000})))
            .await
    });
    let request = dev.publish_in().await;
    let asked = json(&request);
    let answer = json!({"id": asked["id"], "code": 200, "data": {"ok": "yes"}});
    dev.publish(&request.topic, &answer.to_string(), QoS::AtMostOnce, 2)
        .await;
    let (s, reply) = call.await.expect("the call");
    // The caller gets the device's answer, with the rejected output named.
    assert_eq!(s, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"]["ok"], "yes", "{reply}");
    assert_eq!(reply["checkFailedData"]["ok"]["code"], 6308, "{reply}");

    // A publish is logged too; calls read back newest first.
    let (s, body) = hub
        .call(
            "POST",
            &format!("{base}/publish"),
            Some(json!({"topic": format!("/{pk}/robot/user/get"), "payload": "hi"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, page) = get(&hub, &format!("{base}/calls?order=desc")).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let calls = page["items"].as_array().expect("items");
    assert_eq!(calls.len(), 2, "{page}");
    assert_eq!(calls[0]["kind"], "publish", "{page}");
    assert_eq!(calls[1]["kind"], "service", "{page}");
    assert_eq!(calls[1]["identifier"], "Reboot", "{page}");
    assert_eq!(calls[1]["result"], "200", "{page}");
    assert_eq!(calls[1]["answer"]["data"]["ok"], "yes", "{page}");
}

#[tokio::test]
async fn a_deleted_device_registered_again_starts_without_history() {
    let hub = TestHub::start().await;
    let (pk, mut dev) = online(&hub, "gone", "").await;
    // A neighbour whose name sorts between "gone" and "gone/…" keeps its history.
    let secret = hub.register(&pk, "gone-2").await;
    let c = creds_with(&Signing {
        product_key: &pk,
        device_name: "gone-2",
        secret: &secret,
        ..Signing::default()
    });
    let mut other = Raw::online(hub.mqtt, &c).await;
    let topic = format!("/sys/{pk}/gone-2/thing/event/+/post_reply");
    other.subscribe(1, &[(topic.as_str(), QoS::AtMostOnce)]).await;
    for (dev, dn) in [(&mut dev, "gone"), (&mut other, "gone-2")] {
        let r = post(dev, &pk, dn, "property/post", json!({"id":"1","params":{"T":1}})).await;
        assert_eq!(r["code"], 200, "{r}");
        let r = post(
            dev,
            &pk,
            dn,
            "Alarm/post",
            json!({"id":"2","params":{"value":{}}}),
        )
        .await;
        assert_eq!(r["code"], 200, "{r}");
    }
    drop(dev);
    let (s, body) = hub
        .call("DELETE", &format!("/api/v1/products/{pk}/devices/gone"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = hub
        .call(
            "POST",
            &format!("/api/v1/products/{pk}/devices"),
            Some(json!({"deviceName": "gone"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    for (dn, expected) in [("gone", 0), ("gone-2", 1)] {
        let base = format!("/api/v1/products/{pk}/devices/{dn}");
        let (_, latest) = get(&hub, &format!("{base}/properties")).await;
        assert_eq!(latest.as_array().map(Vec::len), Some(expected), "{dn}: {latest}");
        let (_, page) = get(&hub, &format!("{base}/properties/T/history")).await;
        assert_eq!(
            page["items"].as_array().map(Vec::len),
            Some(expected),
            "{dn}: {page}"
        );
        let (_, page) = get(&hub, &format!("{base}/events")).await;
        assert_eq!(
            page["items"].as_array().map(Vec::len),
            Some(expected),
            "{dn}: {page}"
        );
    }
}
