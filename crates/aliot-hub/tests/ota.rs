//! OTA over real sockets (issue 12, cloud-side §4.2, aliyun-protocol §4.4): packages uploaded
//! through the admin API, jobs pushing `/ota/device/upgrade` to raw MQTT devices, downloads from
//! the signed URL (hyper, and curl for `Range` and resume), progress and version reports driving
//! the task states; failures, retries, cancel, the per-minute limit, offline devices, pulls, and
//! bad input.

use std::sync::Arc;

use aliot_hub::events::Event;
use aliot_testkit::events::next_event;
use aliot_testkit::{Raw, TOKEN, TestHub, guard, http, json, signed};
use hyper::StatusCode;
use rmqtt_codec::v3::QoS;
use serde_json::{Value, json};
use tokio::sync::broadcast;

fn firmware(len: usize) -> String {
    (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect()
}

async fn upload(hub: &TestHub, query: &str, body: String) -> (StatusCode, Value) {
    let (status, text) = http(
        "POST",
        &format!("{}/api/v1/ota/packages?{query}", hub.base),
        Some(TOKEN),
        Some(body),
    )
    .await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A device online over the raw client, subscribed to its upgrade topic (unless `subscribe` is
/// false) and to `thing/ota/firmware/get_reply`.
async fn online(hub: &TestHub, pk: &str, dn: &str, ds: &str, subscribe: bool) -> Raw {
    let mut raw = Raw::online(hub.mqtt, &signed(pk, dn, ds)).await;
    let reply = format!("/sys/{pk}/{dn}/thing/ota/firmware/get_reply");
    let upgrade = format!("/ota/device/upgrade/{pk}/{dn}");
    let mut filters = vec![(reply.as_str(), QoS::AtMostOnce)];
    if subscribe {
        filters.push((upgrade.as_str(), QoS::AtLeastOnce));
    }
    raw.subscribe(1, &filters).await;
    raw
}

async fn inform(raw: &mut Raw, pk: &str, dn: &str, version: &str) {
    // C3 and the Python SDK send a numeric id.
    let payload = format!(r#"{{"id":1,"params":{{"version":"{version}"}}}}"#);
    raw.publish(
        &format!("/ota/device/inform/{pk}/{dn}"),
        &payload,
        QoS::AtMostOnce,
        0,
    )
    .await;
}

async fn progress(raw: &mut Raw, pk: &str, dn: &str, step: &str, desc: &str) {
    let payload = format!(r#"{{"id":"2","params":{{"step":"{step}","desc":"{desc}","module":"default"}}}}"#);
    raw.publish(
        &format!("/ota/device/progress/{pk}/{dn}"),
        &payload,
        QoS::AtMostOnce,
        0,
    )
    .await;
}

/// `thing.ota.firmware.get`; its reply. Uplinks of one connection are handled in order, so once
/// this is answered the device's earlier reports were too.
async fn firmware_get(raw: &mut Raw, pk: &str, dn: &str) -> Value {
    raw.publish(
        &format!("/sys/{pk}/{dn}/thing/ota/firmware/get"),
        r#"{"id":"9","version":"1.0","params":{"module":"default"},"method":"thing.ota.firmware.get"}"#,
        QoS::AtMostOnce,
        0,
    )
    .await;
    loop {
        let p = raw.publish_in().await;
        if p.topic.ends_with("/get_reply") {
            return json(&p);
        }
    }
}

/// The next push on the device's upgrade topic.
async fn push(raw: &mut Raw) -> Value {
    loop {
        let p = raw.publish_in().await;
        if p.topic.starts_with("/ota/device/upgrade/") {
            return json(&p);
        }
    }
}

/// The next task event of `dn` with `status`.
async fn task_event(rx: &mut broadcast::Receiver<Arc<Event>>, dn: &str, status: &str) -> Arc<Event> {
    next_event(rx, |e| {
        matches!(e, Event::Ota(o) if o.kind == "task" && o.device_name == dn && o.task_status == Some(status))
    })
    .await
}

async fn create_job(hub: &TestHub, body: Value) -> (StatusCode, Value) {
    hub.call("POST", "/api/v1/ota/jobs", Some(body)).await
}

async fn show_job(hub: &TestHub, job: &str) -> Value {
    let (s, v) = hub.call("GET", &format!("/api/v1/ota/jobs/{job}"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

/// `curl` with `args` then the URL; (succeeded, stderr).
async fn curl(args: &[&str], url: &str) -> (bool, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.arg("-sS").args(args).arg(url);
    let done = tokio::task::spawn_blocking(move || aliot_testkit::run_guarded(cmd))
        .await
        .expect("curl");
    (
        done.status.success(),
        String::from_utf8_lossy(&done.stderr).into_owned(),
    )
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(bytes))
}

#[tokio::test]
async fn push_download_range_progress_inform_succeeds() {
    let hub = TestHub::start().await;
    let mut events = hub.service().events();
    let (pk, dn, ds) = hub.device("ota-1").await;
    let mut raw = online(&hub, &pk, &dn, &ds, true).await;
    inform(&mut raw, &pk, &dn, "1.0.0").await;
    assert_eq!(firmware_get(&mut raw, &pk, &dn).await["data"], json!({}));

    let file = firmware(300_000);
    let (s, package) = upload(&hub, &format!("productKey={pk}&destVersion=2.0.0"), file.clone()).await;
    assert_eq!(s, StatusCode::OK, "{package}");
    assert_eq!(package["firmwareSize"], 300_000);
    assert_eq!(package["md5"], md5_hex(file.as_bytes()));
    assert_eq!(package["moduleName"], "default");
    let fw = package["firmwareId"].as_str().expect("an id").to_owned();

    let (s, job) = create_job(&hub, json!({"firmwareId": fw, "srcVersions": ["1.0.0"]})).await;
    assert_eq!(s, StatusCode::OK, "{job}");
    let job_id = job["jobId"].as_str().expect("a job id").to_owned();
    assert_eq!(job["jobType"], "STATIC");

    // The platform's push: code is the string "1000", id a number.
    let pushed = guard("the push", push(&mut raw)).await;
    assert_eq!(pushed["code"], "1000", "{pushed}");
    assert!(pushed["id"].is_u64(), "{pushed}");
    assert_eq!(pushed["message"], "success");
    let data = &pushed["data"];
    assert_eq!(data["size"], 300_000);
    assert_eq!(data["version"], "2.0.0");
    assert_eq!(data["md5"], md5_hex(file.as_bytes()));
    assert_eq!(data["sign"], md5_hex(file.as_bytes()));
    assert_eq!(data["signMethod"], "Md5");
    assert_eq!(data["module"], "default");
    let url = data["url"].as_str().expect("a url").to_owned();
    task_event(&mut events, &dn, "NOTIFIED").await;

    // The whole file.
    let (s, body) = http("GET", &url, None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(md5_hex(body.as_bytes()), md5_hex(file.as_bytes()));
    // A range, and a download resumed after a dropped connection (curl -C -).
    let dir = tempfile::tempdir().expect("a dir");
    let part = dir.path().join("part");
    let (ok, err) = curl(
        &["-f", "-r", "1000-1999", "-o", part.to_str().expect("utf8")],
        &url,
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(&part).expect("the part"),
        file.as_bytes()[1000..2000]
    );
    let resumed = dir.path().join("resumed");
    std::fs::write(&resumed, &file.as_bytes()[..123_456]).expect("a partial file");
    let (ok, err) = curl(&["-f", "-C", "-", "-o", resumed.to_str().expect("utf8")], &url).await;
    assert!(ok, "{err}");
    assert_eq!(
        md5_hex(&std::fs::read(&resumed).expect("the file")),
        md5_hex(file.as_bytes())
    );
    let (s, _) = http("GET", &url.replace("signature=", "signature=0"), None, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(hub.metric("aliot_hub_ota_bytes_served_total").await >= 300_000 + 1000 + (300_000 - 123_456));

    progress(&mut raw, &pk, &dn, "50", "").await;
    task_event(&mut events, &dn, "IN_PROGRESS").await;
    // Step 100 is not success: the version is.
    progress(&mut raw, &pk, &dn, "100", "").await;
    let v = show_job(&hub, &job_id).await;
    assert_eq!(v["tasks"][0]["taskStatus"], "IN_PROGRESS", "{v}");
    inform(&mut raw, &pk, &dn, "2.0.0").await;
    task_event(&mut events, &dn, "SUCCEEDED").await;
    let v = show_job(&hub, &job_id).await;
    assert_eq!(v["counts"]["SUCCEEDED"], 1, "{v}");
    let (s, m) = hub
        .call("GET", &format!("/api/v1/products/{pk}/devices/{dn}/ota"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["modules"]["default"], "2.0.0");
    // Nothing pending any more.
    assert_eq!(firmware_get(&mut raw, &pk, &dn).await["data"], json!({}));
}

#[tokio::test]
async fn a_negative_step_fails_the_task_after_its_retries() {
    let hub = TestHub::start().await;
    let mut events = hub.service().events();
    let (pk, dn, ds) = hub.device("ota-neg").await;
    let mut raw = online(&hub, &pk, &dn, &ds, true).await;
    let (s, p) = upload(
        &hub,
        &format!("productKey={pk}&destVersion=2.0.0&signMethod=SHA256"),
        firmware(100),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let (s, job) = create_job(
        &hub,
        json!({"productKey": pk, "destVersion": "2.0.0", "retryCount": 1, "retryInterval": 0}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{job}");
    let job_id = job["jobId"].as_str().expect("id").to_owned();
    let first = guard("the push", push(&mut raw)).await;
    assert_eq!(first["data"]["signMethod"], "SHA256");
    assert!(first["data"].get("md5").is_none(), "{first}");
    progress(&mut raw, &pk, &dn, "-3", "checksum mismatch").await;
    // One retry: queued again, then pushed again.
    task_event(&mut events, &dn, "QUEUED").await;
    let second = guard("the retry", push(&mut raw)).await;
    assert_ne!(first["id"], second["id"]);
    progress(&mut raw, &pk, &dn, "-2", "connection reset").await;
    let e = task_event(&mut events, &dn, "FAILED").await;
    let Event::Ota(o) = &*e else { unreachable!() };
    assert_eq!(o.step, Some(-2));
    let v = show_job(&hub, &job_id).await;
    assert_eq!(v["counts"]["FAILED"], 1, "{v}");
    let desc = v["tasks"][0]["taskDesc"].as_str().expect("a reason");
    assert!(
        desc.contains("download failed") && desc.contains("connection reset"),
        "{desc}"
    );
    assert_eq!(v["tasks"][0]["pushes"], 2);
}

#[tokio::test]
async fn maximum_per_minute_is_honoured_and_cancel_stops_the_rest() {
    let hub = TestHub::start().await;
    let mut events = hub.service().events();
    let pk = hub.product().await;
    let mut raws = Vec::new();
    for dn in ["d1", "d2", "d3", "d4"] {
        let ds = hub.register(&pk, dn).await;
        raws.push(online(&hub, &pk, dn, &ds, true).await);
    }
    let (s, _) = upload(&hub, &format!("productKey={pk}&destVersion=3.0"), firmware(10)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, job) = create_job(
        &hub,
        json!({"productKey": pk, "destVersion": "3.0", "maximumPerMinute": 2}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{job}");
    let job_id = job["jobId"].as_str().expect("id").to_owned();
    assert_eq!(job["counts"]["QUEUED"], 4, "{job}");
    // Two pushes (the first devices by name), and no more within the minute.
    push(&mut raws[0]).await;
    push(&mut raws[1]).await;
    let v = show_job(&hub, &job_id).await;
    assert_eq!(v["counts"]["NOTIFIED"], 2, "{v}");
    assert_eq!(v["counts"]["QUEUED"], 2, "{v}");
    for t in v["tasks"].as_array().expect("tasks") {
        let notified = t["taskStatus"] == "NOTIFIED";
        assert_eq!(
            notified,
            ["d1", "d2"].contains(&t["deviceName"].as_str().expect("dn")),
            "{t}"
        );
    }
    // Cancel the queued ones only: the job is canceled, the notified stay.
    let (s, v) = hub
        .call(
            "POST",
            &format!("/api/v1/ota/jobs/{job_id}/cancel"),
            Some(json!({"taskStatus": ["QUEUED"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["jobStatus"], "CANCELED");
    assert_eq!(v["counts"]["CANCELED"], 2, "{v}");
    assert_eq!(v["counts"]["NOTIFIED"], 2, "{v}");
    task_event(&mut events, "d3", "CANCELED").await;
    assert_eq!(firmware_get(&mut raws[2], &pk, "d3").await["data"], json!({}));
}

#[tokio::test]
async fn an_offline_device_gets_the_push_on_connect_and_another_pulls_it() {
    let hub = TestHub::start().await;
    let mut events = hub.service().events();
    let pk = hub.product().await;
    let s1 = hub.register(&pk, "late").await;
    let s2 = hub.register(&pk, "puller").await;
    let (s, _) = upload(
        &hub,
        &format!("productKey={pk}&destVersion=2.0&moduleName=default"),
        firmware(10),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, job) = create_job(
        &hub,
        json!({"productKey": pk, "destVersion": "2.0", "targetDeviceNames": ["late", "puller"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{job}");
    assert_eq!(job["counts"]["QUEUED"], 2, "{job}");

    let mut late = online(&hub, &pk, "late", &s1, true).await;
    let pushed = guard("the push after connect", push(&mut late)).await;
    assert_eq!(pushed["data"]["version"], "2.0");

    // Not subscribed to the push: pulls it.
    let mut puller = online(&hub, &pk, "puller", &s2, false).await;
    let reply = firmware_get(&mut puller, &pk, "puller").await;
    assert_eq!(reply["code"], 200, "{reply}");
    assert_eq!(reply["data"]["version"], "2.0", "{reply}");
    assert!(
        reply["data"]["url"].as_str().expect("url").contains("/ota/"),
        "{reply}"
    );
    task_event(&mut events, "puller", "NOTIFIED").await;
}

#[tokio::test]
async fn bad_input_gets_clear_answers() {
    let hub = TestHub::start_with(tempfile::tempdir().expect("dir"), |c| {
        c.ota.max_package_bytes = 1000
    })
    .await;
    let mut events = hub.service().events();
    let (pk, dn, ds) = hub.device("ota-bad").await;
    // Oversize: 413.
    let (s, v) = upload(&hub, &format!("productKey={pk}&destVersion=1"), firmware(1001)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let (s, v) = upload(&hub, "productKey=nope&destVersion=1", firmware(10)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = upload(&hub, &format!("productKey={pk}&destVersion=2"), firmware(1000)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let fw = v["firmwareId"].as_str().expect("id").to_owned();
    // A job for a version no package has: 404; for source versions no device is on: 400.
    let (s, v) = create_job(&hub, json!({"productKey": pk, "destVersion": "9.9"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = create_job(&hub, json!({"firmwareId": fw, "srcVersions": ["0.1"]})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // An expired URL: 403.
    let ota = hub.service().ota();
    let old = ota.package_url(
        &fw,
        aliot_hub::clock::now_ms() - (ota.settings().url_ttl_secs + 5) * 1000,
    );
    let (s, body) = http("GET", &old, None, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("expired"), "{body}");
    // Progress for no task, an unreadable report: events, and the device is still served.
    let mut raw = online(&hub, &pk, &dn, &ds, true).await;
    progress(&mut raw, &pk, &dn, "30", "").await;
    next_event(
        &mut events,
        |e| matches!(e, Event::Ota(o) if o.kind == "unmatched"),
    )
    .await;
    raw.publish(
        &format!("/ota/device/inform/{pk}/{dn}"),
        "not json",
        QoS::AtMostOnce,
        0,
    )
    .await;
    assert_eq!(firmware_get(&mut raw, &pk, &dn).await["code"], 200);
    // Deleting a package a running job uses: 409.
    inform(&mut raw, &pk, &dn, "1").await;
    let (s, v) = create_job(&hub, json!({"firmwareId": fw})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = hub
        .call("DELETE", &format!("/api/v1/ota/packages/{fw}"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
}

#[tokio::test]
async fn packages_and_task_states_survive_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let hub = TestHub::start_in(dir).await;
    let (pk, dn, ds) = hub.device("ota-keep").await;
    let (s, p) = upload(&hub, &format!("productKey={pk}&destVersion=2"), firmware(5000)).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let fw = p["firmwareId"].as_str().expect("id").to_owned();
    let mut raw = online(&hub, &pk, &dn, &ds, true).await;
    let (s, job) = create_job(&hub, json!({"firmwareId": fw})).await;
    assert_eq!(s, StatusCode::OK, "{job}");
    let job_id = job["jobId"].as_str().expect("id").to_owned();
    push(&mut raw).await;
    progress(&mut raw, &pk, &dn, "40", "").await;
    firmware_get(&mut raw, &pk, &dn).await;
    drop(raw);
    let dir = hub.stop().await;
    let hub = TestHub::start_in(dir).await;
    let v = show_job(&hub, &job_id).await;
    assert_eq!(v["tasks"][0]["taskStatus"], "IN_PROGRESS", "{v}");
    assert_eq!(v["tasks"][0]["progress"], 40, "{v}");
    let (s, p) = hub.call("GET", &format!("/api/v1/ota/packages/{fw}"), None).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let (s, body) = http("GET", p["firmwareUrl"].as_str().expect("url"), None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, firmware(5000));
    // The device comes back with the new version: success.
    let mut raw = online(&hub, &pk, &dn, &ds, true).await;
    inform(&mut raw, &pk, &dn, "2").await;
    firmware_get(&mut raw, &pk, &dn).await;
    let v = show_job(&hub, &job_id).await;
    assert_eq!(v["tasks"][0]["taskStatus"], "SUCCEEDED", "{v}");
}

#[tokio::test]
async fn a_dynamic_job_takes_devices_that_report_a_source_version_later() {
    let hub = TestHub::start().await;
    let mut events = hub.service().events();
    let pk = hub.product().await;
    let secret = hub.register(&pk, "dyn").await;
    let (s, _) = upload(
        &hub,
        &format!("productKey={pk}&destVersion=5&moduleName=wifi"),
        firmware(10),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, job) = create_job(
        &hub,
        json!({"productKey": pk, "destVersion": "5", "moduleName": "wifi", "dynamic": true, "srcVersions": ["4"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{job}");
    assert_eq!(job["jobType"], "DYNAMIC");
    assert_eq!(job["tasks"], json!([]), "{job}");
    let job_id = job["jobId"].as_str().expect("id").to_owned();
    let mut raw = online(&hub, &pk, "dyn", &secret, true).await;
    // Another module's version, or a version the job does not take: nothing.
    raw.publish(
        &format!("/ota/device/inform/{pk}/dyn"),
        r#"{"id":"1","params":{"version":"4"}}"#,
        QoS::AtMostOnce,
        0,
    )
    .await;
    raw.publish(
        &format!("/ota/device/inform/{pk}/dyn"),
        r#"{"id":"2","params":{"version":"3","module":"wifi"}}"#,
        QoS::AtMostOnce,
        0,
    )
    .await;
    firmware_get(&mut raw, &pk, "dyn").await;
    assert_eq!(show_job(&hub, &job_id).await["tasks"], json!([]));
    raw.publish(
        &format!("/ota/device/inform/{pk}/dyn"),
        r#"{"id":"3","params":{"version":"4","module":"wifi"}}"#,
        QoS::AtMostOnce,
        0,
    )
    .await;
    let pushed = guard("the push", push(&mut raw)).await;
    assert_eq!(pushed["data"]["module"], "wifi", "{pushed}");
    raw.publish(
        &format!("/ota/device/inform/{pk}/dyn"),
        r#"{"id":"4","params":{"version":"5","module":"wifi"}}"#,
        QoS::AtMostOnce,
        0,
    )
    .await;
    task_event(&mut events, "dyn", "SUCCEEDED").await;
    let v = show_job(&hub, &job_id).await;
    assert_eq!(
        v["jobStatus"], "IN_PROGRESS",
        "a dynamic job runs until canceled: {v}"
    );
    assert_eq!(
        hub.service()
            .ota()
            .modules(&pk, "dyn")
            .get("default")
            .map(String::as_str),
        Some("4")
    );
}

#[tokio::test]
async fn downloads_above_the_limit_are_answered_503() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let hub = TestHub::start_with(tempfile::tempdir().expect("dir"), |c| c.ota.max_downloads = 1).await;
    let (pk, _, _) = hub.device("ota-busy").await;
    // Larger than what socket buffers hold, so that the first download stays open.
    let (s, p) = upload(
        &hub,
        &format!("productKey={pk}&destVersion=2"),
        firmware(16 << 20),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let url = p["firmwareUrl"].as_str().expect("url").to_owned();
    let rest = url.strip_prefix("http://").expect("http");
    let (host, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut first = tokio::net::TcpStream::connect(host).await.expect("connect");
    first
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut head = [0u8; 12];
    guard("the first answer", first.read_exact(&mut head))
        .await
        .expect("a head");
    assert_eq!(&head, b"HTTP/1.1 200");
    let (s, body) = http("GET", &url, None, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(hub.metric("aliot_hub_ota_downloads_refused_total").await, 1);
    drop(first);
}
