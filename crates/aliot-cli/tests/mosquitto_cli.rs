//! Interop with real MQTT clients: mosquitto_pub / mosquitto_sub against `aliot hub`, connecting
//! with the credentials `aliot sign` prints (issue 3). `.ci/run` installs mosquitto-clients.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use aliot_testkit::{GUARD, HubProcess, admin, aliot, ok_json, run_guarded, wait_guarded};

/// Registers product `pk` and device `dn`; returns the device secret.
fn register(dir: &Path, pk: &str, dn: &str) -> String {
    ok_json(&admin(
        dir,
        &[
            "product",
            "create",
            "--name",
            "mosquitto interop",
            "--product-key",
            pk,
        ],
    ));
    let created = ok_json(&admin(
        dir,
        &["device", "create", "--product-key", pk, "--device-name", dn],
    ));
    created["deviceSecret"].as_str().expect("deviceSecret").to_owned()
}

/// `aliot sign` for a device of the hub, in `format`, extra args appended.
fn sign(hub: &HubProcess, device: [&str; 3], format: &str, extra: &[&str]) -> std::process::Output {
    let [pk, dn, secret] = device;
    let port = hub.mqtt.port().to_string();
    let mut c = aliot();
    c.args([
        "sign",
        "--product-key",
        pk,
        "--device-name",
        dn,
        "--device-secret",
        secret,
    ])
    .args(["--host", "127.0.0.1", "--port", &port, "--format", format])
    .args(extra);
    let out = run_guarded(c);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `aliot sign … --format mosquitto` for the hub: a ready `mosquitto_sub` command line.
fn mosquitto_line(hub: &HubProcess, pk: &str, dn: &str, secret: &str) -> String {
    let text = String::from_utf8(sign(hub, [pk, dn, secret], "mosquitto", &[]).stdout).expect("utf8");
    let line = text
        .lines()
        .find(|l| l.starts_with("mosquitto_sub "))
        .expect("a mosquitto_sub line");
    line.to_owned()
}

/// `aliot sign … --format json` (extra args appended).
fn sign_json(hub: &HubProcess, pk: &str, dn: &str, secret: &str, extra: &[&str]) -> serde_json::Value {
    ok_json(&sign(hub, [pk, dn, secret], "json", extra))
}

/// Runs a printed `mosquitto_sub` line through `sh` with extra arguments; returns the exit code and
/// stdout.
fn run_sub(line: &str, extra: &str) -> (Option<i32>, String) {
    let out = run_guarded({
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!("{line} {extra}"));
        c
    });
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Runs `tool` (mosquitto_pub or mosquitto_sub) against the hub as MQTT 3.1.1 with keepalive 60, the
/// given clientId and the username and password of `creds` (`aliot sign --format json`), then `extra`.
fn mosquitto(
    tool: &str,
    hub: &HubProcess,
    client_id: &str,
    creds: &serde_json::Value,
    extra: &[&str],
) -> std::process::Output {
    let port = hub.mqtt.port().to_string();
    let mut c = Command::new(tool);
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "mqttv311",
        "-k",
        "60",
        "-i",
        client_id,
    ])
    .args(["-u", creds["username"].as_str().expect("username")])
    .args(["-P", creds["password"].as_str().expect("password")])
    .args(extra);
    run_guarded(c)
}

/// Lines of a child's stdout, on a channel.
fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The mosquitto clients are a prerequisite of these tests (README, `.ci/run`): say so plainly.
fn require_mosquitto_clients() {
    for tool in ["mosquitto_sub", "mosquitto_pub"] {
        let found = Command::new(tool)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            found,
            "{tool} is not installed: `apt-get install -y mosquitto-clients` (as .ci/run does)"
        );
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn mosquitto_sub_receives_a_downlink_and_mosquitto_pub_gets_its_property_post_answered() {
    require_mosquitto_clients();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let hub = HubProcess::start(d, &[]);
    let secret = register(d, "a1Mosq", "lamp");

    // mosquitto_sub, exactly as `aliot sign --format mosquitto` prints it: one message, then exit.
    let line = mosquitto_line(&hub, "a1Mosq", "lamp", &secret);
    let mut sub = Command::new("sh");
    sub.arg("-c")
        .arg(format!("{line} -C 1 -v"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut sub = KillOnDrop(sub.spawn().expect("spawn mosquitto_sub"));
    let sub_out = lines(sub.0.stdout.take().expect("stdout"));

    // Push until the hub says it was delivered (the SUBSCRIBE may still be on its way).
    let payload =
        r#"{"id":"9","version":"1.0","params":{"LightSwitch":1},"method":"thing.service.property.set"}"#;
    let deadline = std::time::Instant::now() + GUARD;
    loop {
        let out = admin(
            d,
            &[
                "publish",
                "--product-key",
                "a1Mosq",
                "--device-name",
                "lamp",
                "--topic",
                "/sys/a1Mosq/lamp/thing/service/property/set",
                "--payload",
                payload,
            ],
        );
        if out.status.success() && ok_json(&out)["outcome"] == "delivered" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "mosquitto_sub never subscribed"
        );
        std::thread::yield_now();
    }
    let got = sub_out
        .recv_timeout(GUARD)
        .expect("mosquitto_sub printed the message");
    assert_eq!(
        got,
        format!("/sys/a1Mosq/lamp/thing/service/property/set {payload}")
    );
    assert_eq!(wait_guarded(&mut sub.0).code(), Some(0));

    // mosquitto_pub posts a property at QoS 1 (its exit status 0 means the hub sent PUBACK);
    // the platform's post_reply goes back to it (`_ss=1`), echoing the id.
    let mut events = aliot();
    events
        .args(["admin", "--data-dir"])
        .arg(d)
        .args(["events", "--device-name", "lamp", "--type", "reply"])
        .env("HOME", d)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut events = KillOnDrop(events.spawn().expect("spawn events"));
    let event_lines = lines(events.0.stdout.take().expect("stdout"));
    let event_err = lines(events.0.stderr.take().expect("stderr"));
    let ready = event_err.recv_timeout(GUARD).expect("events stream opened");
    assert!(ready.contains("following"), "{ready}");

    let c = sign_json(&hub, "a1Mosq", "lamp", &secret, &["--param", "_ss=1"]);
    let post =
        r#"{"id":"42","version":"1.0","params":{"Brightness":55},"method":"thing.event.property.post"}"#;
    let client_id = c["client_id"].as_str().expect("client_id");
    let out = mosquitto(
        "mosquitto_pub",
        &hub,
        client_id,
        &c,
        &[
            "-q",
            "1",
            "-t",
            "/sys/a1Mosq/lamp/thing/event/property/post",
            "-m",
            post,
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "mosquitto_pub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value =
        serde_json::from_str(&event_lines.recv_timeout(GUARD).expect("a reply event")).expect("JSON event");
    assert_eq!(
        reply["topic"], "/sys/a1Mosq/lamp/thing/event/property/post_reply",
        "{reply}"
    );
    assert_eq!(reply["code"], 200, "{reply}");
    let body: serde_json::Value =
        serde_json::from_str(reply["payload"].as_str().expect("payload")).expect("JSON");
    assert_eq!(body["id"], "42");
    assert_eq!(body["method"], "thing.event.property.post");
    drop(events);

    let shown = ok_json(&admin(
        d,
        &[
            "device",
            "show",
            "--product-key",
            "a1Mosq",
            "--device-name",
            "lamp",
        ],
    ));
    assert!(shown.to_string().contains("\"Brightness\":55"), "{shown}");
    drop(hub);
}

#[test]
fn mosquitto_sub_exits_with_the_connack_code_of_each_refusal() {
    require_mosquitto_clients();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let hub = HubProcess::start(d, &[]);
    let secret = register(d, "a1Refuse", "dev");

    // Wrong secret: CONNACK 4.
    let wrong = mosquitto_line(&hub, "a1Refuse", "dev", "NotTheSecret000000000000000000000");
    assert_eq!(run_sub(&wrong, "-C 1").0, Some(4));

    // Malformed clientId (no `|...|` part) with otherwise valid credentials: CONNACK 2.
    let c = sign_json(&hub, "a1Refuse", "dev", &secret, &[]);
    let out = mosquitto(
        "mosquitto_sub",
        &hub,
        "a1Refuse.dev",
        &c,
        &["-t", "/a1Refuse/dev/user/get", "-C", "1"],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Disabled device: CONNACK 5.
    ok_json(&admin(
        d,
        &[
            "device",
            "disable",
            "--product-key",
            "a1Refuse",
            "--device-name",
            "dev",
        ],
    ));
    let line = mosquitto_line(&hub, "a1Refuse", "dev", &secret);
    assert_eq!(run_sub(&line, "-C 1").0, Some(5));
    drop(hub);
}

/// Issue 10: what `aliot sign --request …` prints registers a device with the real clients:
/// `mosquitto_sub` (MQTT, regnwl) and `curl` (HTTPS form, register).
#[test]
fn mosquitto_and_curl_register_with_what_aliot_sign_prints() {
    require_mosquitto_clients();
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = HubProcess::start(dir.path(), &["--device-http", "127.0.0.1:0"]);
    let device_http = hub.device_http_url();
    let product = ok_json(&admin(
        dir.path(),
        &[
            "product",
            "create",
            "--name",
            "reg",
            "--product-key",
            "a1SignReg",
            "--dynamic-registration",
        ],
    ));
    let ps = product["productSecret"]
        .as_str()
        .expect("productSecret")
        .to_owned();
    ok_json(&admin(
        dir.path(),
        &[
            "device",
            "create",
            "--product-key",
            "a1SignReg",
            "--device-name",
            "pre-1",
        ],
    ));
    let port = hub.mqtt.port().to_string();
    let sign_request = |request: &str, dn: &str, format: &str, extra: &[&str]| {
        let mut c = aliot();
        c.args([
            "sign",
            "--request",
            request,
            "--product-key",
            "a1SignReg",
            "--device-name",
            dn,
        ])
        .args([
            "--product-secret",
            &ps,
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--format",
            format,
        ])
        .args(extra);
        let out = run_guarded(c);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf8")
    };
    // MQTT without pre-registration: mosquitto_sub prints the /ext/regnwl answer.
    let line = sign_request("regnwl", "mosq-1", "mosquitto", &[]);
    let line = line
        .lines()
        .find(|l| l.starts_with("mosquitto_sub "))
        .expect("a mosquitto_sub line");
    let (_code, stdout) = run_sub(line, "");
    let answer: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(answer["deviceName"], "mosq-1", "{answer}");
    assert!(
        answer["deviceToken"].as_str().is_some_and(|t| !t.is_empty()),
        "{answer}"
    );
    // HTTPS form, devices registered beforehand: curl prints the platform's JSON.
    let line = sign_request("register", "pre-1", "curl", &["--auth-url", &device_http]);
    assert!(line.starts_with("curl "), "{line}");
    let out = run_guarded({
        let mut c = Command::new("sh");
        c.arg("-c").arg(line.trim());
        c
    });
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["code"], 200, "{v}");
    let device = ok_json(&admin(
        dir.path(),
        &[
            "device",
            "show",
            "--product-key",
            "a1SignReg",
            "--device-name",
            "pre-1",
        ],
    ));
    assert_eq!(device["deviceSecret"], v["data"]["deviceSecret"]);
    // Pre-authentication: curl gets the iotToken, mosquitto_pub logs in with it.
    let mut c = aliot();
    c.args([
        "sign",
        "--request",
        "preauth",
        "--product-key",
        "a1SignReg",
        "--device-name",
        "pre-1",
    ])
    .args([
        "--device-secret",
        v["data"]["deviceSecret"].as_str().expect("secret"),
    ])
    .args(["--auth-url", &device_http, "--format", "curl"]);
    let out = run_guarded(c);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).expect("utf8");
    let out = run_guarded({
        let mut c = Command::new("sh");
        c.arg("-c").arg(line.trim());
        c
    });
    let text = String::from_utf8_lossy(&out.stdout);
    let pre: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(pre["code"], 200, "{pre}");
    assert_eq!(pre["data"]["resources"]["mqtt"]["port"], hub.mqtt.port(), "{pre}");
    let creds = serde_json::json!({
        "username": pre["data"]["iotId"],
        "password": pre["data"]["iotToken"],
    });
    let out = mosquitto(
        "mosquitto_pub",
        &hub,
        "a1SignReg.pre-1|securemode=-1|",
        &creds,
        &[
            "-t",
            "/sys/a1SignReg/pre-1/thing/event/property/post",
            "-m",
            r#"{"id":"1","params":{"On":1}}"#,
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --format curl is for the HTTPS registration only.
    let mut c = aliot();
    c.args([
        "sign",
        "--request",
        "regnwl",
        "--product-key",
        "a1SignReg",
        "--device-name",
        "x",
    ])
    .args(["--product-secret", "s", "--format", "curl"]);
    assert_eq!(run_guarded(c).status.code(), Some(2));
}
