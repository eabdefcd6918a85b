//! `aliot bench` against a real `aliot hub` process on loopback (ports picked by the kernel).
//!
//! Every run is bounded by its flags (`--count`, `--duration`) and by the helper's hang guard;
//! the assertions are on counts only, never on timings.

use std::process::Output;

use aliot_testkit::{HubProcess, aliot, run_guarded};

const TOKEN: &str = "bench-test-token";

fn hub(dir: &tempfile::TempDir) -> HubProcess {
    HubProcess::start(&dir.path().join("hub"), &["--admin-token", TOKEN])
}

/// `aliot bench --format json --quiet ARGS…` against `hub`; returns the JSON of the last line.
fn bench(hub: &HubProcess, args: &[&str]) -> serde_json::Value {
    bench_on(hub, &hub.mqtt.port().to_string(), &[], args)
}

/// `aliot bench` to 127.0.0.1:`port` with `transport` flags, `hub`'s admin API, `--format json
/// --quiet` and `args`; returns the JSON of the last line.
fn bench_on(hub: &HubProcess, port: &str, transport: &[&str], args: &[&str]) -> serde_json::Value {
    let mut cmd = aliot();
    cmd.args(["bench", "--host", "127.0.0.1", "--port", port])
        .args(transport)
        .args([
            "--admin-url",
            &hub.admin_url,
            "--admin-token",
            TOKEN,
            "--format",
            "json",
            "--quiet",
        ])
        .args(args);
    last_json(&run_guarded(cmd))
}

/// [`bench`] with `count` devices registered under `product_key`, then `args`.
fn bench_registered(hub: &HubProcess, product_key: &str, count: &str, args: &[&str]) -> serde_json::Value {
    let register = ["--register", "--product-key", product_key, "--count", count];
    bench(hub, &[&register[..], args].concat())
}

fn last_json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output; stderr: {}", String::from_utf8_lossy(&out.stderr)));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("the last line is not JSON ({e}): {last}"))
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn connect_workload_should_connect_every_registered_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = hub(&dir);
    let r = bench_registered(
        &hub,
        "a1BenchConn",
        "200",
        &["--workload", "connect", "--rate", "2000", "--duration", "1s"],
    );
    assert_eq!(n(&r, "devices"), 200, "{r}");
    assert_eq!(n(&r, "connected"), 200, "{r}");
    assert_eq!(r["refused"], serde_json::json!({}), "{r}");
    assert_eq!(n(&r, "connect_errors"), 0, "{r}");
    assert_eq!(n(&r, "dropped"), 0, "{r}");
    assert_eq!(r["connack_latency_ms"]["count"], 200, "{r}");
    for key in [
        "connect_rate",
        "duration_s",
        "bench_rss_per_device_kib",
        "msgs_per_s",
    ] {
        assert!(r[key].is_number(), "{key} missing in {r}");
    }
    for key in ["p50", "p90", "p99", "max"] {
        assert!(
            r["connack_latency_ms"][key].is_number(),
            "connack_latency_ms.{key} missing in {r}"
        );
        assert!(
            r["reply_latency_ms"][key].is_number(),
            "reply_latency_ms.{key} missing in {r}"
        );
    }
}

#[test]
fn telemetry_workload_should_lose_no_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = hub(&dir);
    let metrics = format!("{}/metrics", hub.admin_url);
    let r = bench_registered(
        &hub,
        "a1BenchTele",
        "50",
        &[
            "--workload",
            "telemetry",
            "--interval",
            "200ms",
            "--qos",
            "1",
            "--duration",
            "5s",
            "--hub-metrics",
            &metrics,
        ],
    );
    assert_eq!(n(&r, "connected"), 50, "{r}");
    assert!(n(&r, "sent") > 0, "{r}");
    assert_eq!(
        n(&r, "acked"),
        n(&r, "sent"),
        "every QoS 1 post gets its PUBACK: {r}"
    );
    assert_eq!(
        n(&r, "replied"),
        n(&r, "sent"),
        "every post gets its post_reply: {r}"
    );
    assert_eq!(n(&r, "lost"), 0, "{r}");
    assert_eq!(n(&r, "reply_errors"), 0, "{r}");
    assert_eq!(
        r["reply_latency_ms"]["count"].as_u64(),
        Some(n(&r, "sent")),
        "{r}"
    );
    assert!(n(&r, "hub_rss_bytes") > 0, "{r}");
    assert!(r["hub_cpu_seconds"].is_number(), "{r}");
}

#[test]
fn a_wrong_secret_in_the_csv_should_be_refused_with_code_4() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = hub(&dir);
    // Register two devices, then bench them from a CSV where one secret is wrong.
    let r = bench_registered(&hub, "a1BenchCsv", "2", &["--duration", "0s"]);
    assert_eq!(n(&r, "connected"), 2, "{r}");
    let mut list = aliot();
    list.args([
        "admin",
        "--url",
        &hub.admin_url,
        "--token",
        TOKEN,
        "device",
        "list",
        "--product-key",
        "a1BenchCsv",
        "--format",
        "csv",
    ]);
    let out = run_guarded(list);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<&str> = text.lines().filter(|l| l.contains("bench-")).collect();
    assert_eq!(
        rows.len(),
        2,
        "admin device list --format csv: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wrong = {
        let cols: Vec<&str> = rows[1].split(',').collect();
        format!("{},{},{}x", cols[0], cols[1], cols[2])
    };
    let path = dir.path().join("fleet.csv");
    std::fs::write(
        &path,
        format!("productKey,deviceName,deviceSecret\n{}\n{wrong}\n", rows[0]),
    )
    .expect("write csv");
    let r = bench(
        &hub,
        &[
            "--devices",
            path.to_str().expect("utf-8 path"),
            "--workload",
            "connect",
            "--duration",
            "0s",
        ],
    );
    assert_eq!(n(&r, "devices"), 2, "{r}");
    assert_eq!(n(&r, "connected"), 1, "{r}");
    assert_eq!(r["refused"], serde_json::json!({"4": 1}), "{r}");
}

#[test]
fn two_processes_should_merge_their_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = hub(&dir);
    let r = bench_registered(
        &hub,
        "a1BenchProc",
        "60",
        &[
            "--processes",
            "2",
            "--workload",
            "telemetry",
            "--interval",
            "250ms",
            "--duration",
            "1s",
        ],
    );
    assert_eq!(n(&r, "processes"), 2, "{r}");
    assert_eq!(n(&r, "devices"), 60, "{r}");
    assert_eq!(n(&r, "connected"), 60, "{r}");
    assert_eq!(
        r["connack_latency_ms"]["count"], 60,
        "both workers' histograms are merged: {r}"
    );
    assert_eq!(n(&r, "replied"), n(&r, "sent"), "{r}");
    assert_eq!(
        r["reply_latency_ms"]["count"].as_u64(),
        Some(n(&r, "replied")),
        "{r}"
    );
    assert_eq!(n(&r, "lost"), 0, "{r}");
}

#[test]
fn downlink_and_rrpc_workloads_should_get_every_call_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = hub(&dir);
    for workload in ["downlink", "rrpc"] {
        let r = bench_registered(
            &hub,
            "a1BenchDown",
            "20",
            &["--workload", workload, "--concurrency", "4", "--duration", "1s"],
        );
        assert_eq!(n(&r, "connected"), 20, "{workload}: {r}");
        assert!(n(&r, "sent") > 0, "{workload}: {r}");
        assert_eq!(n(&r, "replied"), n(&r, "sent"), "{workload}: {r}");
        assert_eq!(n(&r, "downlinks_answered"), n(&r, "sent"), "{workload}: {r}");
        assert_eq!(n(&r, "lost"), 0, "{workload}: {r}");
    }
}

#[test]
fn bad_flags_should_exit_2_with_a_reason() {
    let mut cmd = aliot();
    cmd.args(["bench", "--product-key", "pk", "--count", "3"]);
    let out = run_guarded(cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--register"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn telemetry_over_tls_should_trust_the_hub_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = HubProcess::start(
        &dir.path().join("hub"),
        &["--admin-token", TOKEN, "--mqtts", "127.0.0.1:0"],
    );
    // "mqtts:       127.0.0.1:PORT (local CA for devices to trust: PATH)"
    let line = hub
        .banner
        .iter()
        .find(|l| l.trim_start().starts_with("mqtts:"))
        .expect("an mqtts line");
    let port = line
        .split_whitespace()
        .nth(1)
        .and_then(|a| a.rsplit(':').next())
        .expect("mqtts address");
    let ca = line
        .split("trust: ")
        .nth(1)
        .map(|s| s.trim_end_matches(')'))
        .expect("CA path");
    let r = bench_on(
        &hub,
        port,
        &["--tls", "--ca-file", ca],
        &[
            "--register",
            "--product-key",
            "a1BenchTls",
            "--count",
            "5",
            "--workload",
            "telemetry",
            "--interval",
            "200ms",
            "--duration",
            "1s",
        ],
    );
    assert_eq!(n(&r, "connected"), 5, "{r}");
    assert!(n(&r, "sent") > 0, "{r}");
    assert_eq!(n(&r, "replied"), n(&r, "sent"), "{r}");
    assert!(
        r["target"].as_str().is_some_and(|t| t.starts_with("mqtts://")),
        "{r}"
    );
}

#[test]
fn register_should_find_the_admin_url_in_the_hub_data_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = hub(&dir);
    let mut cmd = aliot();
    cmd.args([
        "bench",
        "--host",
        "127.0.0.1",
        "--port",
        &hub.mqtt.port().to_string(),
    ])
    .arg("--data-dir")
    .arg(dir.path().join("hub"))
    .args(["--admin-token", TOKEN, "--format", "json", "--quiet"])
    .args([
        "--register",
        "--product-key",
        "a1BenchDir",
        "--count",
        "3",
        "--duration",
        "0s",
    ]);
    let r = last_json(&run_guarded(cmd));
    assert_eq!(n(&r, "connected"), 3, "{r}");
}

/// Devices that post without ever reading and leave a largest-size packet unfinished are held
/// (the hub measured), and the hub still serves the next fleet in full.
#[test]
fn exhaust_workload_should_leave_the_hub_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = hub(&dir);
    let metrics = format!("{}/metrics", hub.admin_url);
    let r = bench_registered(
        &hub,
        "a1BenchExh",
        "20",
        &[
            "--workload",
            "exhaust",
            "--duration",
            "1s",
            "--drain",
            "1s",
            "--hub-metrics",
            &metrics,
        ],
    );
    assert_eq!(n(&r, "connected"), 20, "{r}");
    assert!(n(&r, "sent") > 0, "{r}");
    assert_eq!(
        n(&r, "lost"),
        0,
        "an unread reply is not a loss under exhaust: {r}"
    );
    assert!(r["hub_rss_bytes"].is_number(), "{r}");
    let r = bench_registered(
        &hub,
        "a1BenchAfter",
        "5",
        &[
            "--workload",
            "telemetry",
            "--interval",
            "100ms",
            "--duration",
            "1s",
        ],
    );
    assert_eq!(n(&r, "connected"), 5, "{r}");
    assert!(n(&r, "replied") > 0, "{r}");
    assert_eq!(n(&r, "lost"), 0, "{r}");
}

#[test]
fn register_workload_should_register_every_device_over_mqtt_and_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = HubProcess::start(
        &dir.path().join("hub"),
        &["--admin-token", TOKEN, "--device-http", "127.0.0.1:0"],
    );
    let device_http = hub.device_http_url();
    let mut admin = aliot();
    admin
        .args(["admin", "--url", &hub.admin_url, "--token", TOKEN])
        .args([
            "product",
            "create",
            "--name",
            "reg",
            "--product-key",
            "a1BenchReg",
            "--dynamic-registration",
        ]);
    let product = aliot_testkit::ok_json(&run_guarded(admin));
    let secret = product["productSecret"]
        .as_str()
        .expect("productSecret")
        .to_owned();
    let common = [
        "--workload",
        "register",
        "--product-key",
        "a1BenchReg",
        "--product-secret",
        &secret,
        "--duration",
        "0s",
    ];
    // Without pre-registration, over MQTT: the hub creates them.
    let v = bench(
        &hub,
        &[&common[..], &["--prefix", "nwl-", "--count", "30"]].concat(),
    );
    assert_eq!((n(&v, "connected"), n(&v, "connect_errors")), (30, 0), "{v}");
    // Registered beforehand, over HTTP.
    let v = bench(
        &hub,
        &[
            &common[..],
            &[
                "--register",
                "--prefix",
                "pre-",
                "--count",
                "20",
                "--register-auth-type",
                "register",
                "--register-url",
                &device_http,
            ],
        ]
        .concat(),
    );
    assert_eq!((n(&v, "connected"), n(&v, "connect_errors")), (20, 0), "{v}");
    // Token logins (each device registers for its token first) and pre-authenticated logins.
    let v = bench(
        &hub,
        &[
            "--workload",
            "connect",
            "--duration",
            "0s",
            "--auth",
            "token",
            "--product-key",
            "a1BenchReg",
            "--product-secret",
            &secret,
            "--prefix",
            "tok-",
            "--count",
            "20",
        ],
    );
    assert_eq!((n(&v, "connected"), n(&v, "connect_errors")), (20, 0), "{v}");
    let v = bench(
        &hub,
        &[
            "--workload",
            "telemetry",
            "--interval",
            "50ms",
            "--duration",
            "1s",
            "--auth",
            "https",
            "--auth-url",
            &device_http,
            "--register",
            "--product-key",
            "a1BenchReg",
            "--prefix",
            "pa-",
            "--count",
            "10",
        ],
    );
    assert_eq!((n(&v, "connected"), n(&v, "lost")), (10, 0), "{v}");
    assert!(n(&v, "replied") > 0, "{v}");
    // A wrong secret: every registration refused.
    let v = bench(
        &hub,
        &[
            "--workload",
            "register",
            "--product-key",
            "a1BenchReg",
            "--product-secret",
            "wrong",
            "--duration",
            "0s",
            "--prefix",
            "x-",
            "--count",
            "5",
        ],
    );
    assert_eq!(n(&v, "connected"), 0, "{v}");
    assert_eq!(v["refused"]["4"], 5, "{v}");
}

#[test]
fn telemetry_from_a_thing_model_posts_values_the_hub_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = hub(&dir);
    let tsl = concat!(env!("CARGO_MANIFEST_DIR"), "/../../benches/data/tsl-50.json");
    let mut c = aliot();
    c.args(["admin", "--url", &hub.admin_url, "--token", TOKEN])
        .args(["product", "create", "--name", "m", "--product-key", "a1BenchTsl"]);
    aliot_testkit::ok_json(&run_guarded(c));
    let mut c = aliot();
    c.args(["admin", "--url", &hub.admin_url, "--token", TOKEN])
        .args([
            "product",
            "tsl",
            "import",
            "--product-key",
            "a1BenchTsl",
            "--file",
            tsl,
        ]);
    aliot_testkit::ok_json(&run_guarded(c));
    let v = bench_registered(
        &hub,
        "a1BenchTsl",
        "5",
        &[
            "--workload",
            "telemetry",
            "--interval",
            "20ms",
            "--duration",
            "1s",
            "--tsl",
            tsl,
        ],
    );
    assert!(n(&v, "sent") > 0, "{v}");
    assert_eq!(
        (n(&v, "replied"), n(&v, "reply_errors"), n(&v, "lost")),
        (n(&v, "sent"), 0, 0),
        "{v}"
    );
    let mut c = aliot();
    c.args(["admin", "--url", &hub.admin_url, "--token", TOKEN])
        .args([
            "device",
            "show",
            "--product-key",
            "a1BenchTsl",
            "--device-name",
            "bench-0",
        ]);
    let device = aliot_testkit::ok_json(&run_guarded(c));
    assert_eq!(
        device["properties"].as_object().map(|m| m.len()),
        Some(50),
        "every property valid and kept"
    );
}

#[test]
fn ota_workload_should_upgrade_every_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = hub(&dir);
    let mut create = aliot();
    create
        .args(["admin", "--url", &hub.admin_url, "--token", TOKEN])
        .args([
            "product",
            "create",
            "--name",
            "ota",
            "--product-key",
            "a1OtaBenchT",
        ]);
    aliot_testkit::ok_json(&run_guarded(create));
    let v = bench(
        &hub,
        &[
            "--workload",
            "ota",
            "--product-key",
            "a1OtaBenchT",
            "--count",
            "5",
            "--package-bytes",
            "20000",
        ],
    );
    assert_eq!(v["workload"], "ota", "{v}");
    assert_eq!(v["completed"], true, "{v}");
    assert_eq!(n(&v, "succeeded"), 5, "{v}");
    assert_eq!(n(&v, "failed"), 0, "{v}");
    assert_eq!(n(&v, "pushesReceived"), 5, "{v}");
    assert_eq!(n(&v, "bytesDownloaded"), 5 * 20_000, "{v}");
    assert_eq!(n(&v, "deviceFailures"), 0, "{v}");
}

#[test]
fn gateway_workload_should_log_in_post_and_answer_for_every_sub_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = hub(&dir);
    let v = bench(
        &hub,
        &[
            "--workload",
            "gateway",
            "--gateways",
            "3",
            "--sub-devices-per-gateway",
            "60",
            "--posts-per-sub",
            "2",
            "--downlinks",
            "30",
        ],
    );
    assert_eq!(v["workload"], "gateway", "{v}");
    assert_eq!(n(&v, "gateways"), 3, "{v}");
    assert_eq!(n(&v, "topoAdds"), 3, "{v}");
    assert_eq!(n(&v, "loggedIn"), 180, "{v}");
    // 60 sub-devices a gateway: batches of 50 and 10.
    assert_eq!(n(&v["batchLoginMs"], "count"), 6, "{v}");
    assert_eq!(n(&v, "posts"), 360, "{v}");
    assert_eq!(n(&v, "postsAnswered"), 360, "{v}");
    assert_eq!(n(&v, "postsOk"), 360, "{v}");
    assert_eq!(n(&v, "downlinks"), 30, "{v}");
    assert_eq!(n(&v, "downlinksAnswered"), 30, "{v}");
    assert_eq!(n(&v["downlinkMs"], "count"), 30, "{v}");
    assert!(v["firstFailure"].is_null(), "{v}");
}
