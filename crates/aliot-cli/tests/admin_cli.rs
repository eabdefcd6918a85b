//! `aliot admin` against a hub process: registration, management, calls that reach a device,
//! the event stream, and how the hub is found (flags, environment, data directory).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};

use aliot_testkit::{
    BlockingRaw as RawDevice, GUARD, HubProcess, admin, aliot, ok_json, run_guarded, stderr,
};
use serde_json::json;

/// `aliot admin CMD… --product-key PK --device-name DN EXTRA…`.
fn on_device(d: &Path, cmd: &[&str], pk: &str, dn: &str, extra: &[&str]) -> Output {
    let target = ["--product-key", pk, "--device-name", dn];
    admin(d, &[cmd, &target[..], extra].concat())
}

/// [`on_device`] in a thread of its own, while the test plays the device.
fn spawn_on_device(
    d: &Path,
    cmd: &'static str,
    pk: &'static str,
    dn: &'static str,
    extra: &'static [&'static str],
) -> std::thread::JoinHandle<Output> {
    let d = d.to_owned();
    std::thread::spawn(move || on_device(&d, &[cmd], pk, dn, extra))
}

/// Creates the product `pk` and its device `dn`; returns the device secret.
fn product_with_device(d: &Path, pk: &str, dn: &str) -> String {
    ok_json(&admin(
        d,
        &["product", "create", "--name", "p", "--product-key", pk],
    ));
    let created = ok_json(&on_device(d, &["device", "create"], pk, dn, &[]));
    created["deviceSecret"].as_str().expect("secret").to_owned()
}

#[test]
fn products_and_devices_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _hub = HubProcess::start(dir.path(), &[]);
    let d = dir.path();
    let p = ok_json(&admin(d, &["product", "create", "--name", "Lamps"]));
    let pk = p["productKey"].as_str().expect("pk").to_owned();
    assert!(pk.starts_with("a1") && pk.len() == 11, "{pk}");
    let list = ok_json(&admin(d, &["product", "list"]));
    assert_eq!(list[0]["productKey"], pk.as_str());
    assert_eq!(list[0]["dynamicRegistration"], false);
    // Dynamic registration: allowed at creation, or later.
    let open = ok_json(&admin(
        d,
        &["product", "create", "--name", "Open", "--dynamic-registration"],
    ));
    assert_eq!(open["dynamicRegistration"], true, "{open}");
    let on = ok_json(&admin(
        d,
        &[
            "product",
            "update",
            "--product-key",
            &pk,
            "--dynamic-registration",
            "on",
        ],
    ));
    assert_eq!(on["dynamicRegistration"], true, "{on}");
    let out = admin(
        d,
        &[
            "product",
            "update",
            "--product-key",
            &pk,
            "--dynamic-registration",
            "yes",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let one = ok_json(&admin(
        d,
        &[
            "device",
            "create",
            "--product-key",
            &pk,
            "--device-name",
            "l1",
            "--device-secret",
            "my-secret",
        ],
    ));
    assert_eq!(one["deviceSecret"], "my-secret");
    let batch = ok_json(&admin(
        d,
        &[
            "device",
            "create",
            "--product-key",
            &pk,
            "--prefix",
            "b",
            "--count",
            "3",
        ],
    ));
    assert_eq!(batch.as_array().expect("array").len(), 3);
    let named = ok_json(&admin(
        d,
        &["device", "create", "--product-key", &pk, "--names", "x,y"],
    ));
    assert_eq!(named[1]["deviceName"], "y");

    let list = ok_json(&admin(d, &["device", "list", "--product-key", &pk]));
    assert_eq!(list.as_array().expect("array").len(), 6);
    let out = admin(d, &["device", "list", "--product-key", &pk, "--format", "csv"]);
    assert!(out.status.success());
    let csv = String::from_utf8(out.stdout).expect("utf-8");
    assert!(csv.lines().any(|l| l == format!("{pk},l1,my-secret")), "{csv}");
    assert_eq!(csv.lines().count(), 6);

    let off = ok_json(&on_device(d, &["device", "disable"], &pk, "l1", &[]));
    assert_eq!(off["enabled"], false);
    let on = ok_json(&on_device(d, &["device", "enable"], &pk, "l1", &[]));
    assert_eq!(on["enabled"], true);
    let show = ok_json(&on_device(d, &["device", "show"], &pk, "l1", &[]));
    assert_eq!(show["status"], "offline");
    let del = ok_json(&on_device(d, &["device", "delete"], &pk, "l1", &[]));
    assert_eq!(del["deleted"], true);

    // Errors: the hub's message on one line, exit 1.
    let out = on_device(d, &["device", "show"], &pk, "l1", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("404 device_not_found"), "{}", stderr(&out));
    let out = on_device(d, &["device", "create"], &pk, "x", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("409"), "{}", stderr(&out));
    let out = admin(d, &["--token", "wrong", "product", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    // Usage errors: exit 2, before any request.
    let out = admin(
        d,
        &[
            "set-property",
            "--product-key",
            &pk,
            "--device-name",
            "x",
            "--params",
            "[1]",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = admin(d, &["device", "create", "--product-key", &pk]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn the_hub_is_found_by_flags_environment_or_data_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = HubProcess::start(dir.path(), &["--admin-token", "cli-test-token"]);
    let empty = tempfile::tempdir().expect("tempdir");
    // A data directory without admin.url: a usage error naming the flags.
    let out = admin(empty.path(), &["product", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--url"), "{}", stderr(&out));
    // The URL from the data directory, but the token was given by flag and is not in a file.
    let out = admin(dir.path(), &["product", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--token"), "{}", stderr(&out));
    ok_json(&admin(
        dir.path(),
        &["--token", "cli-test-token", "product", "list"],
    ));
    ok_json(&admin(
        empty.path(),
        &[
            "--url",
            &hub.admin_url,
            "--token",
            "cli-test-token",
            "product",
            "list",
        ],
    ));
    let mut c = aliot();
    c.args(["admin", "product", "list"])
        .env("HOME", empty.path())
        .env("XDG_DATA_HOME", empty.path())
        .env("ALIOT_ADMIN_URL", &hub.admin_url)
        .env("ALIOT_ADMIN_TOKEN", "cli-test-token");
    ok_json(&run_guarded(c));
}

#[test]
fn calls_reach_a_device_and_print_its_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = HubProcess::start(dir.path(), &[]);
    let d = dir.path();
    let secret = &product_with_device(d, "a1Calls", "dev");

    // Offline: 409, exit 1.
    let out = on_device(
        d,
        &["set-property"],
        "a1Calls",
        "dev",
        &["--params", r#"{"P":1}"#],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("device_offline"), "{}", stderr(&out));

    let (mut dev, code) = RawDevice::connect(hub.mqtt, "a1Calls", "dev", secret);
    assert_eq!(code, 0);
    let call = spawn_on_device(d, "set-property", "a1Calls", "dev", &["--params", r#"{"P":1}"#]);
    let (topic, payload) = dev.recv_publish();
    assert_eq!(topic, "/sys/a1Calls/dev/thing/service/property/set");
    let req: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
    let reply = json!({"id": req["id"], "code": 200, "data": {}}).to_string();
    dev.publish(&format!("{topic}_reply"), reply.as_bytes());
    let answer = ok_json(&call.join().expect("thread"));
    assert_eq!(answer["code"], 200);

    // Raw RRPC, and a device that stays silent: 504 after --timeout-ms.
    let call = spawn_on_device(d, "rrpc", "a1Calls", "dev", &["--payload", "ping"]);
    let (topic, payload) = dev.recv_publish();
    assert_eq!(&payload[..], b"ping");
    dev.publish(&topic.replace("/request/", "/response/"), b"pong");
    let answer = ok_json(&call.join().expect("thread"));
    assert_eq!(answer, json!({"payload": "pong", "encoding": "text"}));
    let call = spawn_on_device(
        d,
        "invoke",
        "a1Calls",
        "dev",
        &["--service", "Reboot", "--timeout-ms", "100"],
    );
    let _ = dev.recv_publish();
    let out = call.join().expect("thread");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("504 device_timeout"), "{}", stderr(&out));

    // The platform's Pub on a custom topic (subscribed implicitly? no: custom topics need a
    // SUBSCRIBE, so the hub says the message was dropped).
    let out = ok_json(&on_device(
        d,
        &["publish"],
        "a1Calls",
        "dev",
        &["--topic", "/a1Calls/dev/user/get", "--payload", "hi"],
    ));
    assert_eq!(out["outcome"], "not_subscribed");
}

#[test]
fn events_are_followed_one_json_a_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = HubProcess::start(dir.path(), &[]);
    let d = dir.path();
    let secret = &product_with_device(d, "a1Ev", "watched");

    let mut events = aliot()
        .args(["admin", "--data-dir"])
        .arg(d)
        .args(["events", "--device-name", "watched", "--type", "status"])
        .env("HOME", d)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn events");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = events.stdout.take().expect("stdout");
    let stderr = events.stderr.take().expect("stderr");
    let events = Kill(events);
    let lines = |r: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        rx
    };
    let out = lines(Box::new(stdout));
    let err = lines(Box::new(stderr));
    // The note on stderr comes once the stream is open: no event after it is missed.
    let note = err.recv_timeout(GUARD).expect("the stream opens");
    assert!(note.contains("following the events"), "{note}");
    let (_dev, code) = RawDevice::connect(hub.mqtt, "a1Ev", "watched", secret);
    assert_eq!(code, 0);
    let line = out.recv_timeout(GUARD).expect("an event line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON a line");
    assert_eq!(v["deviceName"], "watched");
    drop(events);
}

#[test]
fn a_thing_model_is_imported_and_exported_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _hub = HubProcess::start(dir.path(), &[]);
    let d = dir.path();
    ok_json(&admin(
        d,
        &[
            "product",
            "create",
            "--name",
            "Lamps",
            "--product-key",
            "a1TslCli",
        ],
    ));
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../aliot-protocol/tests/data/tsl-lamp.json"
    );
    let v = ok_json(&admin(
        d,
        &[
            "product",
            "tsl",
            "import",
            "--product-key",
            "a1TslCli",
            "--file",
            file,
        ],
    ));
    assert_eq!(v["productKey"], "a1TslCli", "{v}");
    let out = admin(d, &["product", "tsl", "export", "--product-key", "a1TslCli"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let exported = String::from_utf8(out.stdout).expect("utf8");
    let original = std::fs::read_to_string(file).expect("the fixture");
    assert_eq!(exported.trim_end(), original.trim_end());
    ok_json(&admin(
        d,
        &["product", "tsl", "delete", "--product-key", "a1TslCli"],
    ));
    let out = admin(d, &["product", "tsl", "export", "--product-key", "a1TslCli"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("tsl_not_found"), "{}", stderr(&out));
}
