//! `aliot sign` and `aliot verify`, run as a user runs them.

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use aliot_protocol::sign::sign_content;
use aliot_protocol::{HexCase, SignMethod};
use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;
use base64::Engine as _;
use serde_json::Value;

// The issue's example (the documentation's device, spec §9 V1).
const PK: &str = "a14Xib5kdYd";
const DN: &str = "light1983432";
const DS: &str = "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq";
const PREFIX: &str = "SN1928339";
const TS: &str = "1539421321846";
const CID: &str = "SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|";
const USER: &str = "light1983432&a14Xib5kdYd";
const PW: &str = "b2488041f64f425016b467ee1c94959ebd592ad1";
const CONTENT: &str = "clientIdSN1928339deviceNamelight1983432productKeya14Xib5kdYdtimestamp1539421321846";

/// `aliot` with none of the caller's ALIOT_* variables.
fn aliot() -> Command {
    let mut c = cargo_bin_cmd!("aliot");
    for v in [
        "ALIOT_PRODUCT_KEY",
        "ALIOT_DEVICE_NAME",
        "ALIOT_DEVICE_SECRET",
        "RUST_LOG",
    ] {
        c.env_remove(v);
    }
    c
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Out {
    let o = cmd.output().expect("aliot runs");
    Out {
        code: o.status.code().expect("aliot exits (not killed by a signal)"),
        stdout: String::from_utf8(o.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(o.stderr).expect("stderr is UTF-8"),
    }
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// `aliot sign` with this triple, then `extra`.
fn sign_with(pk: &str, dn: &str, ds: &str, extra: &[&str]) -> Out {
    run(aliot()
        .args([
            "sign",
            "--product-key",
            pk,
            "--device-name",
            dn,
            "--device-secret",
            ds,
        ])
        .args(extra))
}

/// The issue's example arguments, plus `extra` (whose `--client-id` replaces the example's).
fn sign_example(extra: &[&str]) -> Out {
    let client_id: &[&str] = if extra.contains(&"--client-id") {
        &[]
    } else {
        &["--client-id", PREFIX]
    };
    sign_with(PK, DN, DS, &[&["--timestamp", TS], client_id, extra].concat())
}

/// `aliot verify` on these fields, then `extra`.
fn verify_with(cid: &str, user: &str, pw: &str, extra: &[&str]) -> Out {
    run(aliot()
        .args(["verify", "--client-id", cid, "--username", user, "--password", pw])
        .args(extra))
}

/// A usage error: exit 2, nothing on stdout, exactly one `aliot: ` line on stderr.
fn assert_usage_error(o: &Out, needle: &str) {
    assert_eq!(o.code, 2, "exit status; stderr: {}", o.stderr);
    assert_eq!(o.stdout, "", "nothing on stdout");
    assert_eq!(o.stderr.lines().count(), 1, "one line on stderr: {:?}", o.stderr);
    assert!(o.stderr.starts_with("aliot: "), "{:?}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "{:?}", o.stderr);
    assert!(o.stderr.contains(needle), "{needle:?} not in {:?}", o.stderr);
}

/// Runs `script` with `sh`, feeding `stdin`; returns stdout.
fn sh(script: &str, stdin: &str) -> String {
    let mut child = std::process::Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh runs");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("sh finishes");
    assert!(out.status.success(), "sh failed on {stdin:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn write_profile(dir: &Path, name: &str, toml: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, toml).expect("write profile");
    path.to_str().expect("UTF-8 temp path").to_owned()
}

// ---------------------------------------------------------------------------------------------
// aliot sign

#[test]
fn sign_the_issue_example_as_json() {
    let o = sign_example(&["--format", "json"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v = json(&o.stdout);
    let obj = v.as_object().expect("one JSON object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "client_id",
            "host",
            "password",
            "port",
            "secure_mode",
            "sign_content",
            "sign_method",
            "timestamp",
            "username"
        ]
    );
    assert_eq!(v["password"], PW);
    assert_eq!(v["client_id"], CID);
    assert_eq!(v["username"], USER);
    assert_eq!(v["host"], "a14Xib5kdYd.iot-as-mqtt.cn-shanghai.aliyuncs.com");
    assert_eq!(v["port"], 1883);
    assert_eq!(v["sign_method"], "hmacsha1");
    assert_eq!(v["secure_mode"], 3);
    assert_eq!(v["timestamp"], TS);
    assert_eq!(v["sign_content"], CONTENT);
    // The byte-for-byte fragments of the issue.
    assert!(o.stdout.contains(&format!("\"password\": \"{PW}\"")));
    assert!(o.stdout.contains(&format!("\"client_id\": \"{CID}\"")));
}

#[test]
fn sign_text_is_the_default_format() {
    let o = sign_example(&[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let expected = format!(
        "host         a14Xib5kdYd.iot-as-mqtt.cn-shanghai.aliyuncs.com\n\
         port         1883\n\
         client_id    {CID}\n\
         username     {USER}\n\
         password     {PW}\n\
         sign_method  hmacsha1\n\
         secure_mode  3\n\
         timestamp    {TS}\n\
         sign_content {CONTENT}\n"
    );
    assert_eq!(o.stdout, expected);
    assert_eq!(o.stderr, "");
}

#[test]
fn sign_env_lines_are_shell_quoted_and_evaluate_back() {
    let o = sign_example(&["--format", "env"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let expected = format!(
        "ALIOT_MQTT_HOST=a14Xib5kdYd.iot-as-mqtt.cn-shanghai.aliyuncs.com\n\
         ALIOT_MQTT_PORT=1883\n\
         ALIOT_MQTT_CLIENT_ID='{CID}'\n\
         ALIOT_MQTT_USERNAME='{USER}'\n\
         ALIOT_MQTT_PASSWORD={PW}\n\
         ALIOT_MQTT_SIGN_METHOD=hmacsha1\n\
         ALIOT_MQTT_SECURE_MODE=3\n\
         ALIOT_MQTT_TIMESTAMP={TS}\n\
         ALIOT_MQTT_SIGN_CONTENT={CONTENT}\n"
    );
    assert_eq!(o.stdout, expected);
    let back = sh(
        r#"eval "$(cat)"; printf '%s\n' "$ALIOT_MQTT_CLIENT_ID" "$ALIOT_MQTT_USERNAME" "$ALIOT_MQTT_PASSWORD" "$ALIOT_MQTT_PORT""#,
        &o.stdout,
    );
    assert_eq!(back, format!("{CID}\n{USER}\n{PW}\n1883\n"));
}

#[test]
fn sign_env_quotes_single_quotes_posix_style() {
    let o = sign_example(&["--format", "env", "--client-id", "it's a 'test'"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout
            .contains(r"ALIOT_MQTT_CLIENT_ID='it'\''s a '\''test'\''|securemode=3"),
        "{}",
        o.stdout
    );
    let back = sh(r#"eval "$(cat)"; printf '%s' "$ALIOT_MQTT_CLIENT_ID""#, &o.stdout);
    assert_eq!(
        back,
        format!("it's a 'test'|securemode=3,signmethod=hmacsha1,timestamp={TS}|")
    );
}

#[test]
fn sign_mosquitto_prints_a_ready_mosquitto_sub_line() {
    let o = sign_example(&["--format", "mosquitto"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        o.stdout,
        format!(
            "mosquitto_sub -h a14Xib5kdYd.iot-as-mqtt.cn-shanghai.aliyuncs.com -p 1883 -i '{CID}' -u '{USER}' -P {PW} \
             -V mqttv311 -k 60 -t '/sys/a14Xib5kdYd/light1983432/thing/#'\n"
        )
    );
    // The shell splits it into exactly the intended words.
    let words = sh(r#"eval "set -- $(cat)"; printf '%s\n' "$@""#, &o.stdout);
    let expected = [
        "mosquitto_sub",
        "-h",
        "a14Xib5kdYd.iot-as-mqtt.cn-shanghai.aliyuncs.com",
        "-p",
        "1883",
        "-i",
        CID,
        "-u",
        USER,
        "-P",
        PW,
        "-V",
        "mqttv311",
        "-k",
        "60",
        "-t",
        "/sys/a14Xib5kdYd/light1983432/thing/#",
    ];
    assert_eq!(words.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn sign_mosquitto_over_tls_names_a_ca_file() {
    let o = sign_example(&["--format", "mosquitto", "--secure-mode", "2"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains(" -p 443 "), "{}", o.stdout);
    assert!(o.stdout.contains("securemode=2,"), "{}", o.stdout);
    assert!(o.stdout.trim_end().ends_with("--cafile ca.pem"), "{}", o.stdout);
    assert!(o.stdout.starts_with("# TLS:"), "a hint line first: {}", o.stdout);
    // With a profile naming the CA, no hint and that file.
    let dir = tempfile::tempdir().expect("temp dir");
    let p = write_profile(
        dir.path(),
        "dev.toml",
        "tls = true\nca_file = \"/etc/my ca.pem\"\n",
    );
    let o = sign_example(&["--format", "mosquitto", "--profile", &p]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout.lines().count(), 1, "{}", o.stdout);
    assert!(
        o.stdout.trim_end().ends_with("--cafile '/etc/my ca.pem'"),
        "{}",
        o.stdout
    );
}

#[test]
fn sign_uppercase_and_other_algorithms_match_the_vectors() {
    let o = sign_example(&["--format", "json", "--uppercase"]);
    assert_eq!(json(&o.stdout)["password"], PW.to_uppercase());
    // things-go triple (spec §9 D2), all three algorithms.
    for (method, pw) in [
        ("hmacmd5", "9c8b8678c34d7440bd61eef665848b52"),
        ("hmacsha1", "a53623e22412316579266a0e7d8d727538180c88"),
        (
            "hmacsha256",
            "cbad7c5408045c5524d04caf43e633b9aeaf6bf58823b5645465bc389933b36d",
        ),
        (
            "HmacSha256",
            "cbad7c5408045c5524d04caf43e633b9aeaf6bf58823b5645465bc389933b36d",
        ),
    ] {
        let o = sign_with(
            "a1QR3GD1Db3",
            "dynamic",
            "632155d72f983dfe24b43b30c2ed9b2f",
            &[
                "--timestamp",
                "2524608000000",
                "--sign-method",
                method,
                "--format",
                "json",
            ],
        );
        assert_eq!(o.code, 0, "{}", o.stderr);
        let v = json(&o.stdout);
        assert_eq!(v["password"], pw, "{method}");
        assert_eq!(v["sign_method"], method.to_ascii_lowercase());
        // Without --client-id the prefix is pk.dn.
        assert_eq!(
            v["client_id"],
            format!(
                "a1QR3GD1Db3.dynamic|securemode=3,signmethod={},timestamp=2524608000000|",
                method.to_lowercase()
            )
        );
    }
}

#[test]
fn sign_without_timestamp_matches_the_no_timestamp_vector() {
    let o = sign_with(
        "a13FN5TplKq",
        "mqtt_basic_demo",
        "jA0K15GobTDa5wgOtJPzdtcZPc4X7NYQ",
        &[
            "--no-timestamp",
            "--sign-method",
            "hmacsha256",
            "--uppercase",
            "--format",
            "json",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v = json(&o.stdout);
    assert_eq!(
        v["password"],
        "CC6A464A12D7BEFC7852FDE160140111955C337C3D7A32D270DD965971E0E15C"
    );
    assert_eq!(v["timestamp"], Value::Null);
    assert_eq!(
        v["client_id"],
        "a13FN5TplKq.mqtt_basic_demo|securemode=3,signmethod=hmacsha256|"
    );
    assert_eq!(
        v["sign_content"],
        "clientIda13FN5TplKq.mqtt_basic_demodeviceNamemqtt_basic_demoproductKeya13FN5TplKq"
    );
}

#[test]
fn sign_defaults_the_timestamp_to_now_in_milliseconds() {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis()
    };
    let before = now();
    let o = sign_with(PK, DN, DS, &["--format", "json"]);
    let after = now();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v = json(&o.stdout);
    let ts: u128 = v["timestamp"]
        .as_str()
        .expect("timestamp string")
        .parse()
        .expect("decimal");
    assert!((before..=after).contains(&ts), "{before} <= {ts} <= {after}");
    assert_eq!(
        v["client_id"],
        format!("{PK}.{DN}|securemode=3,signmethod=hmacsha1,timestamp={ts}|")
    );
}

#[test]
fn sign_endpoints_follow_region_instance_and_host() {
    let host_port = |extra: &[&str]| {
        let o = sign_example(&[&["--format", "json"], extra].concat());
        assert_eq!(o.code, 0, "{extra:?}: {}", o.stderr);
        let v = json(&o.stdout);
        (
            v["host"].as_str().expect("host").to_owned(),
            v["port"].as_u64().expect("port"),
            v["secure_mode"].clone(),
        )
    };
    assert_eq!(
        host_port(&["--region", "ap-southeast-1"]).0,
        "a14Xib5kdYd.iot-as-mqtt.ap-southeast-1.aliyuncs.com"
    );
    assert_eq!(
        host_port(&["--secure-mode", "2"]),
        (
            "a14Xib5kdYd.iot-as-mqtt.cn-shanghai.aliyuncs.com".into(),
            443,
            2.into()
        )
    );
    assert_eq!(
        host_port(&["--instance-id", "iot-06z00abc"]),
        ("iot-06z00abc.mqtt.iothub.aliyuncs.com".into(), 1883, 3.into())
    );
    assert_eq!(
        host_port(&["--instance-id", "iot-06z00abc", "--secure-mode", "2"]),
        ("iot-06z00abc.mqtt.iothub.aliyuncs.com".into(), 8883, 2.into())
    );
    assert_eq!(
        host_port(&["--host", "127.0.0.1"]),
        ("127.0.0.1".into(), 1883, 3.into())
    );
    assert_eq!(
        host_port(&["--host", "127.0.0.1", "--port", "1999"]),
        ("127.0.0.1".into(), 1999, 3.into())
    );
    assert_eq!(host_port(&["--port", "8443"]).1, 8443);
}

#[test]
fn sign_takes_the_triple_from_the_environment() {
    let o = run(aliot()
        .env("ALIOT_PRODUCT_KEY", PK)
        .env("ALIOT_DEVICE_NAME", DN)
        .env("ALIOT_DEVICE_SECRET", DS)
        .args([
            "sign",
            "--client-id",
            PREFIX,
            "--timestamp",
            TS,
            "--format",
            "json",
        ]));
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(json(&o.stdout)["password"], PW);
}

#[test]
fn sign_takes_the_triple_and_settings_from_a_profile() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = write_profile(
        dir.path(),
        "light.toml",
        &format!(
            "productKey = \"{PK}\"\ndeviceName = \"{DN}\"\ndeviceSecret = \"{DS}\"\nclient_id = \"{PREFIX}\"\n"
        ),
    );
    let o = run(aliot().args(["sign", "--profile", &p, "--timestamp", TS, "--format", "json"]));
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v = json(&o.stdout);
    assert_eq!(v["password"], PW);
    assert_eq!(v["client_id"], CID);

    // host, port, tls and sign_method come from the profile too; flags win over them.
    let p = write_profile(
        dir.path(),
        "hub.toml",
        &format!(
            "product_key = \"{PK}\"\ndevice_name = \"{DN}\"\ndevice_secret = \"{DS}\"\nhost = \"127.0.0.1\"\n\
             port = 18883\ntls = true\nsign_method = \"hmacsha256\"\n"
        ),
    );
    let o = run(aliot().args(["sign", "--profile", &p, "--timestamp", TS, "--format", "json"]));
    let v = json(&o.stdout);
    assert_eq!(
        (v["host"].as_str(), v["port"].as_u64(), v["secure_mode"].as_i64()),
        (Some("127.0.0.1"), Some(18883), Some(2))
    );
    assert_eq!(v["sign_method"], "hmacsha256");
    let o = run(aliot().args([
        "sign",
        "--profile",
        &p,
        "--timestamp",
        TS,
        "--sign-method",
        "hmacmd5",
        "--secure-mode",
        "3",
        "--region",
        "cn-shanghai",
        "--format",
        "json",
    ]));
    let v = json(&o.stdout);
    assert_eq!(v["sign_method"], "hmacmd5");
    assert_eq!(v["secure_mode"], 3);
    assert_eq!(
        (v["host"].as_str(), v["port"].as_u64()),
        (
            Some("a14Xib5kdYd.iot-as-mqtt.cn-shanghai.aliyuncs.com"),
            Some(1883)
        )
    );
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_profile() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = write_profile(
        dir.path(),
        "p.toml",
        "product_key = \"pkProfile\"\ndevice_name = \"dnProfile\"\ndevice_secret = \"dsProfile\"\n",
    );
    let username = |cmd: &mut Command, flags: &[&str]| {
        let o = run(cmd
            .args(["sign", "--profile", &p, "--timestamp", "1", "--format", "json"])
            .args(flags));
        assert_eq!(o.code, 0, "{}", o.stderr);
        let v = json(&o.stdout);
        (
            v["username"].as_str().expect("username").to_owned(),
            v["password"].as_str().expect("password").to_owned(),
        )
    };
    let pw = |pk: &str, dn: &str, ds: &str| {
        SignMethod::HmacSha1.hex(
            ds.as_bytes(),
            sign_content(&format!("{pk}.{dn}"), dn, pk, Some("1")).as_bytes(),
            HexCase::Lower,
        )
    };
    // Profile only.
    assert_eq!(
        username(&mut aliot(), &[]),
        (
            "dnProfile&pkProfile".into(),
            pw("pkProfile", "dnProfile", "dsProfile")
        )
    );
    // The environment overrides the profile, field by field.
    assert_eq!(
        username(
            aliot()
                .env("ALIOT_PRODUCT_KEY", "pkEnv")
                .env("ALIOT_DEVICE_SECRET", "dsEnv"),
            &[]
        ),
        ("dnProfile&pkEnv".into(), pw("pkEnv", "dnProfile", "dsEnv"))
    );
    // Flags override both.
    assert_eq!(
        username(
            aliot()
                .env("ALIOT_PRODUCT_KEY", "pkEnv")
                .env("ALIOT_DEVICE_NAME", "dnEnv"),
            &["--product-key", "pkFlag", "--device-secret", "dsFlag"]
        ),
        ("dnEnv&pkFlag".into(), pw("pkFlag", "dnEnv", "dsFlag"))
    );
}

#[test]
fn sign_bad_flags_are_one_line_usage_errors() {
    for (args, needle) in [
        (vec!["--bogus"], "--bogus"),
        (vec!["--sign-method", "sha1"], "sign method"),
        (vec!["--secure-mode", "1"], "--secure-mode"),
        (vec!["--no-timestamp"], "--no-timestamp"),
        (vec!["--region", "cn-shanghai", "--host", "h"], "--host"),
        (vec!["--port", "x"], "--port"),
        (vec!["--port", "70000"], "--port"),
        (vec!["--format", "yaml"], "--format"),
        (vec!["--region", "cn/shanghai"], "region"),
        (vec!["--host", " "], "host"),
        (vec!["--client-id", "a|b"], "clientId"),
        (vec!["--client-id", &"x".repeat(65)], "64"),
    ] {
        let o = sign_example(&args);
        assert_usage_error(&o, needle);
    }
    let o = sign_with(PK, DN, DS, &["--timestamp", ""]);
    assert_usage_error(&o, "timestamp");
}

#[test]
fn sign_missing_or_invalid_identity_is_a_usage_error() {
    let o = run(aliot().args(["sign", "--device-name", DN, "--device-secret", DS]));
    assert_usage_error(&o, "ALIOT_PRODUCT_KEY");
    let o = run(aliot().args(["sign", "--product-key", PK, "--device-secret", DS]));
    assert_usage_error(&o, "--device-name");
    let o = run(aliot().args(["sign", "--product-key", PK, "--device-name", DN]));
    assert_usage_error(&o, "device_secret");
    let o = sign_with(PK, "a&b", DS, &[]);
    assert_usage_error(&o, "deviceName");
    let o = sign_with("p k", DN, DS, &[]);
    assert_usage_error(&o, "productKey");
    let o = sign_with(PK, DN, "with space", &[]);
    assert_usage_error(&o, "deviceSecret");
    assert!(
        !o.stderr.contains("with space"),
        "the secret is never echoed: {}",
        o.stderr
    );
}

#[test]
fn sign_bad_profiles_are_one_line_usage_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.toml");
    let o = run(aliot().args(["sign", "--profile", missing.to_str().expect("UTF-8")]));
    assert_usage_error(&o, "cannot read profile");
    for (name, toml, needle) in [
        ("syntax.toml", "product_key = \n", "profile"),
        ("unknown.toml", "product_kee = \"pk\"\n", "product_kee"),
        ("type.toml", "port = \"x\"\n", "profile"),
        ("method.toml", "sign_method = \"sha1\"\n", "sign method"),
        (
            "incomplete.toml",
            "product_key = \"pk\"\ndevice_name = \"dn\"\n",
            "device_secret",
        ),
        (
            "invalid.toml",
            "product_key = \"pk\"\ndevice_name = \"d n\"\ndevice_secret = \"s\"\n",
            "deviceName",
        ),
        (
            "multiline.toml",
            "product_key = \"pk\"\n[table]\nx = 1\n",
            "profile",
        ),
    ] {
        let p = write_profile(dir.path(), name, toml);
        let o = run(aliot().args(["sign", "--profile", &p]));
        assert_usage_error(&o, needle);
    }
}

// ---------------------------------------------------------------------------------------------
// aliot verify

/// `aliot verify --format json` on these fields with `secret`: (exit status, JSON).
fn verify(cid: &str, user: &str, pw: &str, secret: &str) -> (i32, Value) {
    let o = verify_with(cid, user, pw, &["--device-secret", secret, "--format", "json"]);
    assert!(o.stderr.is_empty(), "{}", o.stderr);
    let v = json(&o.stdout);
    let keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    for k in &keys {
        assert!(
            ["valid", "reason", "hint", "expected_password"].contains(k),
            "unexpected key {k}"
        );
    }
    assert_eq!(
        v["valid"].as_bool(),
        Some(o.code == 0),
        "exit status follows validity"
    );
    (o.code, v)
}

/// Expects an invalid verdict whose reason (or hint) mentions every needle.
fn assert_diagnosis(cid: &str, user: &str, pw: &str, secret: &str, needles: &[&str]) -> Value {
    let (code, v) = verify(cid, user, pw, secret);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["valid"], false);
    let text = format!("{} {}", v["reason"], v["hint"]);
    for n in needles {
        assert!(text.contains(n), "{n:?} not in {text}");
    }
    v
}

fn hmac(method: SignMethod, key: &str, content: &str) -> String {
    method.hex(key.as_bytes(), content.as_bytes(), HexCase::Lower)
}

#[test]
fn verify_accepts_the_documented_example() {
    let (code, v) = verify(CID, USER, PW, DS);
    assert_eq!(code, 0);
    assert_eq!(v["valid"], true);
    assert_eq!(v["expected_password"], PW);
    // Text output too.
    let o = verify_with(CID, USER, PW, &["--device-secret", DS]);
    assert_eq!(o.code, 0);
    assert!(o.stdout.starts_with("valid: "), "{}", o.stdout);
}

#[test]
fn verify_accepts_uppercase_hex() {
    let (code, v) = verify(CID, USER, &PW.to_uppercase(), DS);
    assert_eq!(code, 0, "{v}");
    assert!(v["hint"].as_str().expect("hint").contains("uppercase"), "{v}");
}

#[test]
fn verify_treats_a_missing_signmethod_as_hmacmd5() {
    let cid = "SN1928339|securemode=3,timestamp=1539421321846|";
    let (code, v) = verify(cid, USER, &hmac(SignMethod::HmacMd5, DS, CONTENT), DS);
    assert_eq!(code, 0, "{v}");
    assert!(v["hint"].as_str().expect("hint").contains("HMAC-MD5"), "{v}");
    // The same fields signed with SHA-1: say to declare it.
    assert_diagnosis(
        cid,
        USER,
        PW,
        DS,
        &["no signmethod", "HMAC-MD5", "signmethod=hmacsha1"],
    );
}

#[test]
fn verify_diagnoses_a_reversed_username() {
    let v = assert_diagnosis(
        CID,
        "a14Xib5kdYd&light1983432",
        PW,
        DS,
        &["productKey&deviceName", USER],
    );
    // The password was right: the expected password is the given one.
    assert_eq!(v["expected_password"], PW);
}

#[test]
fn verify_diagnoses_a_malformed_client_id() {
    assert_diagnosis("SN1928339", USER, PW, DS, &["malformed clientId", "no '|'"]);
    assert_diagnosis(
        "SN1928339|securemode=3,signmethod=hmacsha1",
        USER,
        PW,
        DS,
        &["malformed clientId", "final '|'"],
    );
    assert_diagnosis(
        "SN1928339|securemode,signmethod=hmacsha1|",
        USER,
        PW,
        DS,
        &["malformed clientId", "key=value"],
    );
    assert_diagnosis("SN1928339|securemode=9|", USER, PW, DS, &["securemode=9"]);
    let (_, v) = verify("SN1928339", USER, PW, DS);
    assert_eq!(
        v.get("expected_password"),
        None,
        "no expected password without a clientId to sign"
    );
}

#[test]
fn verify_diagnoses_signmethod_in_the_sign_content() {
    // The negative vector of sign-vectors.json: the content includes signmethodhmacsha1.
    assert_diagnosis(
        CID,
        USER,
        "12f259e67094f31c3af4b5d3957d135034603a52",
        DS,
        &["signmethod", "included"],
    );
}

#[test]
fn verify_diagnoses_unsorted_keys() {
    let unsorted = format!("productKey{PK}deviceName{DN}clientId{PREFIX}timestamp{TS}");
    assert_diagnosis(
        CID,
        USER,
        &hmac(SignMethod::HmacSha1, DS, &unsorted),
        DS,
        &["not sorted", "productKey,deviceName,clientId,timestamp"],
    );
}

#[test]
fn verify_diagnoses_a_timestamp_that_differs_from_the_client_id() {
    let later = format!("clientId{PREFIX}deviceName{DN}productKey{PK}timestamp1539421321849");
    assert_diagnosis(
        CID,
        USER,
        &hmac(SignMethod::HmacSha1, DS, &later),
        DS,
        &["1539421321849", "differs", TS],
    );
    let none = format!("clientId{PREFIX}deviceName{DN}productKey{PK}");
    assert_diagnosis(
        CID,
        USER,
        &hmac(SignMethod::HmacSha1, DS, &none),
        DS,
        &["no timestamp"],
    );
    // Seconds signed, milliseconds sent.
    let seconds = format!("clientId{PREFIX}deviceName{DN}productKey{PK}timestamp1539421321");
    assert_diagnosis(
        CID,
        USER,
        &hmac(SignMethod::HmacSha1, DS, &seconds),
        DS,
        &["1539421321", "differs"],
    );
}

#[test]
fn verify_diagnoses_another_algorithm_than_declared_and_names_it() {
    let v = assert_diagnosis(
        CID,
        USER,
        &hmac(SignMethod::HmacSha256, DS, CONTENT),
        DS,
        &[
            "HMAC-SHA256",
            "declares signmethod=hmacsha1",
            "signmethod=hmacsha256",
        ],
    );
    assert_eq!(v["expected_password"], PW);
    let md5 = hmac(SignMethod::HmacMd5, DS, CONTENT);
    assert_diagnosis(CID, USER, &md5, DS, &["HMAC-MD5", "declares signmethod=hmacsha1"]);
}

#[test]
fn verify_diagnoses_the_node_sdk_sign_algorithm_bug() {
    // The Node SDK with signAlgorithm 'sha256': declares hmacsha256, signs with SHA-1.
    let cid =
        "a1TestPk01&dev01|securemode=3,signmethod=hmacsha256,timestamp=1700000000123,lan=NodeJS,_v=1.2.8|";
    let content = "clientIda1TestPk01&dev01deviceNamedev01productKeya1TestPk01timestamp1700000000123";
    let secret = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        hmac(SignMethod::HmacSha1, secret, content),
        "a1a38732ebf2803a49f8a8a135594d69f1548a18"
    );
    let v = assert_diagnosis(
        cid,
        "dev01&a1TestPk01",
        "a1a38732ebf2803a49f8a8a135594d69f1548a18",
        secret,
        &["Node SDK", "signAlgorithm", "HMAC-SHA1", "signmethod=hmacsha256"],
    );
    assert_eq!(
        v["expected_password"],
        hmac(SignMethod::HmacSha256, secret, content)
    );
}

#[test]
fn verify_diagnoses_base64_instead_of_hex() {
    let raw = SignMethod::HmacSha1.mac(DS.as_bytes(), CONTENT.as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    assert_diagnosis(CID, USER, &b64, DS, &["base64", "hex"]);
}

#[test]
fn verify_diagnoses_a_secret_with_stray_white_space() {
    for stray in [
        format!("{DS}\n"),
        format!("{DS} "),
        format!(" {DS}"),
        format!("{DS}\r\n"),
    ] {
        assert_diagnosis(
            CID,
            USER,
            &hmac(SignMethod::HmacSha1, &stray, CONTENT),
            DS,
            &["white space", "trim"],
        );
    }
    // White space around the secret given to verify is an accident and ignored.
    let (code, _) = verify(CID, USER, PW, &format!(" {DS}\n"));
    assert_eq!(code, 0);
}

#[test]
fn verify_diagnoses_product_key_and_device_name_swapped() {
    let swapped = format!("clientId{PREFIX}deviceName{PK}productKey{DN}timestamp{TS}");
    assert_diagnosis(
        CID,
        USER,
        &hmac(SignMethod::HmacSha1, DS, &swapped),
        DS,
        &["swapped", "sign content"],
    );
    // Swapped everywhere: consistent, but a deviceName with '@' cannot be a productKey.
    let (pk, dn, ds) = (
        "a1B2c3D4e5F",
        "light-01_x@home.1:2",
        "Secr3tWithMixedCASE0000000000000",
    );
    let cid = format!("{dn}.{pk}|securemode=3,signmethod=hmacsha1|");
    let content = sign_content(&format!("{dn}.{pk}"), pk, dn, None);
    assert_diagnosis(
        &cid,
        &format!("{pk}&{dn}"),
        &hmac(SignMethod::HmacSha1, ds, &content),
        ds,
        &["swapped everywhere"],
    );
}

#[test]
fn verify_diagnoses_the_whole_client_id_signed_as_the_client_id() {
    let whole = format!("clientId{CID}deviceName{DN}productKey{PK}timestamp{TS}");
    assert_diagnosis(
        CID,
        USER,
        &hmac(SignMethod::HmacSha1, DS, &whole),
        DS,
        &["whole MQTT clientId"],
    );
}

#[test]
fn verify_diagnoses_a_username_without_ampersand() {
    // The clientId prefix pk.dn tells what the username should be.
    let cid = format!("{PK}.{DN}|securemode=3,signmethod=hmacsha1|");
    assert_diagnosis(&cid, DN, PW, DS, &["no '&'", USER]);
}

#[test]
fn verify_diagnoses_a_password_with_a_trailing_newline() {
    assert_diagnosis(CID, USER, &format!("{PW}\n"), DS, &["white space"]);
}

#[test]
fn verify_diagnoses_a_password_that_is_not_hex() {
    assert_diagnosis(CID, USER, "not-a-password", DS, &["not hex"]);
    assert_diagnosis(CID, USER, &PW[..30], DS, &["30 hex digits"]);
}

#[test]
fn verify_diagnoses_an_unsupported_signmethod_and_names_the_one_used() {
    assert_diagnosis(
        "SN1928339|securemode=3,signmethod=hmacsha512,timestamp=1539421321846|",
        USER,
        PW,
        DS,
        &["hmacsha512", "not supported", "signmethod=hmacsha1"],
    );
}

#[test]
fn verify_diagnoses_a_hex_decoded_secret() {
    let secret = "0123456789abcdef0123456789abcdef";
    let key: Vec<u8> = (0..secret.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&secret[i..i + 2], 16).expect("hex"))
        .collect();
    let pw = SignMethod::HmacSha1.hex(&key, CONTENT.as_bytes(), HexCase::Lower);
    assert_diagnosis(CID, USER, &pw, secret, &["hex-decoded secret"]);
}

#[test]
fn verify_says_signature_mismatch_for_another_secret() {
    let v = assert_diagnosis(
        CID,
        USER,
        PW,
        "AnotherSecret0000000000000000000",
        &["signature mismatch", "deviceSecret"],
    );
    assert_eq!(
        v["expected_password"],
        hmac(SignMethod::HmacSha1, "AnotherSecret0000000000000000000", CONTENT)
    );
}

#[test]
fn verify_reads_the_secret_and_the_device_from_a_profile() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = write_profile(
        dir.path(),
        "light.toml",
        &format!("product_key = \"{PK}\"\ndevice_name = \"{DN}\"\ndevice_secret = \"{DS}\"\n"),
    );
    let args = |user: &str, pw: &str| verify_with(CID, user, pw, &["--profile", &p, "--format", "json"]);
    let o = args(USER, PW);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(json(&o.stdout)["expected_password"], PW);
    // The profile tells a reversed username for sure.
    let o = args("a14Xib5kdYd&light1983432", PW);
    assert_eq!(o.code, 1);
    assert!(
        json(&o.stdout)["reason"]
            .as_str()
            .expect("reason")
            .contains("productKey&deviceName")
    );
    // Fields of another device.
    let o = args("other&a14Xib5kdYd", PW);
    assert_eq!(o.code, 1);
    assert!(
        json(&o.stdout)["reason"]
            .as_str()
            .expect("reason")
            .contains("another device"),
        "{}",
        o.stdout
    );
    // --device-secret wins over the profile's.
    let o = verify_with(
        CID,
        USER,
        PW,
        &[
            "--profile",
            &p,
            "--device-secret",
            "AnotherSecret0000000000000000000",
        ],
    );
    assert_eq!(o.code, 1, "{}", o.stdout);
}

#[test]
fn verify_text_output_names_the_fix() {
    let o = verify_with(CID, "a14Xib5kdYd&light1983432", PW, &["--device-secret", DS]);
    assert_eq!(o.code, 1);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(lines[0].starts_with("invalid: "), "{}", o.stdout);
    assert!(lines.iter().any(|l| l.starts_with("hint: ")), "{}", o.stdout);
    assert!(
        lines.iter().any(|l| *l == format!("expected password: {PW}")),
        "{}",
        o.stdout
    );
}

#[test]
fn verify_bad_usage_exits_2() {
    // No secret: nothing to check the password with.
    let o = verify_with(CID, USER, PW, &[]);
    assert_usage_error(&o, "--device-secret");
    // Missing fields, unknown format, bad profile.
    let o = run(aliot().args([
        "verify",
        "--username",
        USER,
        "--password",
        PW,
        "--device-secret",
        DS,
    ]));
    assert_usage_error(&o, "--client-id");
    let o = verify_with(CID, USER, PW, &["--device-secret", DS, "--format", "xml"]);
    assert_usage_error(&o, "--format");
    let o = verify_with(CID, USER, PW, &["--device-secret", " "]);
    assert_usage_error(&o, "empty");
    let dir = tempfile::tempdir().expect("temp dir");
    let p = write_profile(dir.path(), "bad.toml", "device_secret = 1\n");
    let o = verify_with(CID, USER, PW, &["--profile", &p]);
    assert_usage_error(&o, "profile");
    // A malformed clientId is a finding (exit 1) even without a secret.
    let o = verify_with("nopipe", USER, PW, &[]);
    assert_eq!(o.code, 1, "{}", o.stderr);
}

#[test]
fn verify_diagnoses_registration_signs() {
    let (pk, dn, ps) = ("a1Lamp0001", "lamp-7", "productsecret0123");
    let cid = format!("{dn}.{pk}|random=r42,authType=register,securemode=2,signmethod=hmacsha256|");
    let user = format!("{dn}&{pk}");
    let m = SignMethod::HmacSha256;
    let good = hmac(m, ps, &format!("deviceName{dn}productKey{pk}randomr42"));
    let (code, v) = verify(&cid, &user, &good, ps);
    assert_eq!(code, 0, "{v}");
    // The random left out of the sign content.
    assert_diagnosis(
        &cid,
        &user,
        &hmac(m, ps, &format!("deviceName{dn}productKey{pk}")),
        ps,
        &["random"],
    );
    // Signed like a login.
    let login = hmac(m, ps, &format!("clientId{dn}.{pk}deviceName{dn}productKey{pk}"));
    assert_diagnosis(&cid, &user, &login, ps, &["login"]);
    // Signed with a deviceSecret (here: another key): the hint names the productSecret.
    assert_diagnosis(&cid, &user, &hmac(m, "devicesecret", "x"), ps, &["productSecret"]);
    // No random at all.
    let no_random = format!("{dn}.{pk}|authType=register,securemode=2,signmethod=hmacsha256|");
    assert_diagnosis(&no_random, &user, &good, ps, &["random"]);
}
