//! The thing model's history from the command line, across a `kill -9` (issue 11): property and
//! batch posts the hub answered are still there after the hub is killed and restarted, and
//! `aliot admin device properties|history|events|calls` read them back.

use aliot_testkit::{BlockingRaw, HubProcess, admin, ok_json};
use serde_json::json;

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn answered_posts_survive_kill_9_and_read_back_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut hub = HubProcess::start(d, &[]);
    let p = ok_json(&admin(d, &["product", "create", "--name", "Lamps"]));
    let pk = p["productKey"].as_str().expect("pk").to_owned();
    let dev = ok_json(&admin(
        d,
        &["device", "create", "--product-key", &pk, "--device-name", "lamp"],
    ));
    let secret = dev["deviceSecret"].as_str().expect("secret").to_owned();
    let (mut raw, code) = BlockingRaw::connect(hub.mqtt, &pk, "lamp", &secret);
    assert_eq!(code, 0);
    // An hour ago: well inside the default retention (30 days).
    let base = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("ms fit u64")
        - 3_600_000;
    let topic = format!("/sys/{pk}/lamp/thing/event/property/post");
    // 50 posts, each answered (so acknowledged) before the next.
    for i in 0..50u64 {
        let body = json!({"id": i.to_string(), "params": {"T": {"value": i, "time": base + i}}});
        raw.publish(&topic, body.to_string().as_bytes());
        let (t, reply) = raw.recv_publish();
        assert_eq!(t, format!("{topic}_reply"));
        let reply: serde_json::Value = serde_json::from_slice(&reply).expect("JSON");
        assert_eq!(reply["code"], 200, "{reply}");
    }
    // And 100 more points in one batch post, answered, then the hub is killed at once.
    let points: Vec<_> = (50..150u64)
        .map(|i| json!({"value": i, "time": base + i}))
        .collect();
    let batch = format!("/sys/{pk}/lamp/thing/event/property/batch/post");
    let body = json!({"id": "b", "params": {"properties": {"T": points}, "events": {"Alarm": [{"value": {"level": 1}, "time": base}]}}});
    raw.publish(&batch, body.to_string().as_bytes());
    let (_, reply) = raw.recv_publish();
    assert!(String::from_utf8_lossy(&reply).contains(r#""code":200"#));
    hub.kill_9();
    drop(raw);

    let _hub = HubProcess::start(d, &[]);
    let all = ok_json(&admin(
        d,
        &[
            "device", "history", &pk, "lamp", "T", "--all", "--limit", "40", "--format", "json",
        ],
    ));
    let values: Vec<u64> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["value"].as_u64().expect("a number"))
        .collect();
    assert_eq!(
        values,
        (0..150).collect::<Vec<_>>(),
        "every answered point survived"
    );
    // A page at a time, newest first, as a table with a hint to go on.
    let out = admin(
        d,
        &["device", "history", &pk, "lamp", "T", "--limit", "2", "--desc"],
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("TIME") && lines[1].ends_with("149") && lines[2].ends_with("148"),
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--cursor"),
        "{out:?}"
    );
    let text = stdout(&admin(d, &["device", "properties", &pk, "lamp"]));
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("T ") && l.ends_with("149")),
        "{text}"
    );
    let events = ok_json(&admin(d, &["device", "events", &pk, "lamp", "--format", "json"]));
    assert_eq!(events["items"][0]["identifier"], "Alarm", "{events}");
    let text = stdout(&admin(d, &["device", "calls", &pk, "lamp"]));
    assert!(text.starts_with("TIME"), "{text}");
    // A bad parameter is the hub's 400, on stderr.
    let out = admin(d, &["device", "history", &pk, "lamp", "T", "--limit", "5000"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("limit"), "{out:?}");
}
