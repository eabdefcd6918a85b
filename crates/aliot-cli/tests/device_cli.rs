//! `aliot device` run as a user runs it, against a hub started in this process.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use aliot_hub::RunningHub;
use aliot_hub::config::Config;
use aliot_hub::events::Event as HubEvent;
use aliot_hub::registry::Device;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;
use tokio::sync::broadcast;

const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A device command that answers service calls from a shell script: it echoes what it got and
/// fails (exit 3, "boom" on stderr) for the service `Fail`.
const SCRIPT: &str = r#"#!/bin/sh
input=$(cat)
if [ "$ALIOT_METHOD" = "thing.service.Fail" ]; then
  echo "something went wrong" >&2
  echo "boom" >&2
  exit 3
fi
printf '{"method":"%s","id":"%s","secret":"%s","input":%s}\n' \
  "$ALIOT_METHOD" "$ALIOT_MESSAGE_ID" "${ALIOT_DEVICE_SECRET:-none}" "$input"
"#;

/// Waits for `dn` to go to `status`; returns the reason the hub gave.
async fn wait_status(
    events: &mut broadcast::Receiver<Arc<HubEvent>>,
    dn: &str,
    status: &str,
) -> Option<String> {
    loop {
        match events.recv().await {
            Ok(e) => {
                if let HubEvent::Status(s) = &*e
                    && s.device_name == dn
                    && s.status == status
                {
                    return s.reason.clone();
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => panic!("hub events ended: {e}"),
        }
    }
}

/// `aliot device run ARGS` (no identity from the environment: the args give it) until device
/// `dn` of `pk` is online with a clientId containing `client_id_has`; then a property set must be
/// answered with 200, and the child is stopped. Its stderr is shown if it exits first.
async fn device_run_logs_in(
    hub: &RunningHub,
    pk: &str,
    dn: &str,
    args: &[&std::ffi::OsStr],
    client_id_has: &str,
) {
    let mut events = hub.service().events();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aliot"))
        .args(["device", "run"])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("ALIOT_PRODUCT_KEY")
        .env_remove("ALIOT_DEVICE_NAME")
        .env_remove("ALIOT_DEVICE_SECRET")
        .env_remove("ALIOT_DEVICE_TOKEN")
        .env_remove("ALIOT_AUTH_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("aliot device run");
    aliot_testkit::guard("the device online", async {
        tokio::select! {
            _ = wait_status(&mut events, dn, "online") => {}
            status = child.wait() => {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut stderr).await;
                }
                panic!("aliot device run exited ({status:?}) before logging in: {stderr}");
            }
        }
    })
    .await;
    let session = hub.service().session(pk, dn).expect("online");
    assert!(session.client_id.contains(client_id_has), "{}", session.client_id);
    let reply = hub
        .service()
        .set_property(pk, dn, json!({"LightSwitch": 1}), CALL_TIMEOUT)
        .await
        .expect("answered");
    assert_eq!(reply["code"], 200, "{reply}");
    child.start_kill().expect("kill");
    let _ = aliot_testkit::guard("aliot device run to exit", child.wait()).await;
}

/// A hub on 127.0.0.1 (data in `dir`) with the device `dn` registered under a new product.
async fn hub_with_device(dir: &tempfile::TempDir, dn: &str) -> (RunningHub, Device) {
    let mut config = Config {
        data_dir: Some(dir.path().join("hub")),
        ..Config::default()
    };
    config.mqtt.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin.listen = "127.0.0.1:0".parse().expect("addr");
    config.openapi.listen = "127.0.0.1:0".parse().expect("addr");
    let hub = aliot_hub::start(config, std::future::pending())
        .await
        .expect("hub");
    let product = hub.service().create_product("cli", None).await.expect("product");
    let device = hub
        .service()
        .create_device(&product.product_key, dn, None)
        .await
        .expect("device");
    (hub, device)
}

/// `aliot device post-property '{"a":1}'` to `hub` as `device`, with `secret`.
fn post_property(hub: &RunningHub, device: &Device, secret: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_aliot"));
    cmd.args(["device", "post-property", "--host", "127.0.0.1", "--port"])
        .arg(hub.mqtt_addr().port().to_string())
        .args([
            "--product-key",
            &device.product_key,
            "--device-name",
            &device.device_name,
        ])
        .args(["--device-secret", secret, r#"{"a":1}"#])
        .env_remove("RUST_LOG");
    cmd
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn device_run_exec_answers_service_calls_with_a_script() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().expect("temp dir");
    let (hub, device) = hub_with_device(&dir, "cli-dev").await;
    let script = dir.path().join("answer.sh");
    std::fs::write(&script, SCRIPT).expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let mut events = hub.service().events();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aliot"))
        .args(["device", "run", "--host", "127.0.0.1", "--port"])
        .arg(hub.mqtt_addr().port().to_string())
        .arg("--exec")
        .arg(&script)
        .args(["--format", "json"])
        .env_remove("RUST_LOG")
        .env("ALIOT_PRODUCT_KEY", &device.product_key)
        .env("ALIOT_DEVICE_NAME", &device.device_name)
        .env("ALIOT_DEVICE_SECRET", &device.device_secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("aliot device run");
    wait_status(&mut events, &device.device_name, "online").await;

    let reply = hub
        .service()
        .invoke_service(
            &device.product_key,
            &device.device_name,
            "Echo",
            json!({"n": 7}),
            CALL_TIMEOUT,
        )
        .await
        .expect("answered");
    assert_eq!(reply["code"], 200, "{reply}");
    let data = &reply["data"];
    assert_eq!(data["method"], "thing.service.Echo", "{reply}");
    assert_eq!(
        data["id"], reply["id"],
        "ALIOT_MESSAGE_ID is the request id: {reply}"
    );
    assert_eq!(
        data["secret"], "none",
        "the command never sees the device secret: {reply}"
    );
    assert_eq!(
        data["input"]["params"],
        json!({"n": 7}),
        "the request is on stdin: {reply}"
    );

    let reply = hub
        .service()
        .invoke_service(
            &device.product_key,
            &device.device_name,
            "Fail",
            json!({}),
            CALL_TIMEOUT,
        )
        .await
        .expect("answered");
    assert_eq!(reply["code"], 500, "{reply}");
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(
        message.ends_with("boom"),
        "the stderr tail is the message: {reply}"
    );

    let reply = hub
        .service()
        .set_property(
            &device.product_key,
            &device.device_name,
            json!({"LightSwitch": 1}),
            CALL_TIMEOUT,
        )
        .await
        .expect("answered");
    assert_eq!(reply["code"], 200, "{reply}");
    assert_eq!(reply["data"]["method"], "thing.service.property.set", "{reply}");

    // SIGTERM (like Ctrl-C): a clean DISCONNECT and exit status 0.
    let pid = child.id().expect("running").to_string();
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(status.success());
    let reason = wait_status(&mut events, &device.device_name, "offline").await;
    let status = child.wait().await.expect("exit");
    assert!(status.success(), "{status}");
    assert!(
        reason.is_some_and(|r| r.to_lowercase().contains("disconnect")),
        "offline after a DISCONNECT"
    );

    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .await
        .expect("read");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "service_call" && l["service"] == "Echo"),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l["type"] == "reply" && l["code"] == 500),
        "{stdout}"
    );
    hub.stop().await.expect("hub stops");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_device_prints_the_code_cause_and_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (hub, device) = hub_with_device(&dir, "refused").await;

    let out = post_property(&hub, &device, "wrong-secret")
        .env_remove("ALIOT_DEVICE_SECRET")
        .output()
        .await
        .expect("aliot device post-property");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CONNACK 4"), "{stderr}");
    assert!(stderr.contains("cause:") && stderr.contains("fix:"), "{stderr}");
    assert!(
        !stderr.contains("wrong-secret"),
        "the secret is never printed: {stderr}"
    );

    // With the right secret: the platform's reply on stdout, exit 0.
    let out = post_property(&hub, &device, &device.device_secret)
        .output()
        .await
        .expect("aliot device post-property");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reply: Value = serde_json::from_slice(&out.stdout).expect("JSON reply");
    assert_eq!(reply["code"], 200);
    hub.stop().await.expect("hub stops");
}

/// `aliot device register` against `hub` (plain MQTT), with no identity from the environment.
fn register(
    hub: &RunningHub,
    product_key: &str,
    product_secret: &str,
    device_name: &str,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_aliot"));
    cmd.args(["device", "register", "--host", "127.0.0.1", "--port"])
        .arg(hub.mqtt_addr().port().to_string())
        .args(["--product-key", product_key, "--device-name", device_name])
        .args(["--product-secret", product_secret])
        .env_remove("RUST_LOG")
        .env_remove("ALIOT_PRODUCT_KEY")
        .env_remove("ALIOT_PRODUCT_SECRET")
        .env_remove("ALIOT_DEVICE_NAME")
        .env_remove("ALIOT_DEVICE_SECRET")
        .env_remove("ALIOT_DEVICE_TOKEN");
    cmd
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn device_register_saves_a_profile_that_device_run_logs_in_with() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().expect("temp dir");
    let (hub, pre) = hub_with_device(&dir, "pre-1").await;
    let pk = pre.product_key.clone();
    let product = hub
        .service()
        .set_dynamic_registration(&pk, true)
        .await
        .expect("switch on");
    let ps = product.product_secret.clone();

    // Without pre-registration: a token, saved in a 0600 profile.
    let saved = dir.path().join("new-1.toml");
    let out = register(&hub, &pk, &ps, "new-1")
        .arg("--no-preregister")
        .arg("--save")
        .arg(&saved)
        .output()
        .await
        .expect("aliot device register");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let answer: Value = serde_json::from_slice(&out.stdout).expect("the answer as JSON");
    assert_eq!(answer["productKey"], pk.as_str(), "{answer}");
    assert_eq!(answer["deviceName"], "new-1", "{answer}");
    let token = answer["deviceToken"].as_str().expect("deviceToken").to_owned();
    assert!(answer["clientId"].is_string(), "{answer}");
    assert!(!stderr.contains(&token), "the token is never logged: {stderr}");
    let mode = std::fs::metadata(&saved).expect("saved").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "owner only");
    let text = std::fs::read_to_string(&saved).expect("profile");
    assert!(text.contains(&token) && !text.contains(&ps), "{text}");

    // `aliot device run --profile` logs in with the token (no --auth needed).
    device_run_logs_in(
        &hub,
        &pk,
        "new-1",
        &[
            "--profile".as_ref(),
            saved.as_os_str(),
            "--post-property".as_ref(),
            r#"{"Level":3}"#.as_ref(),
            "--format".as_ref(),
            "json".as_ref(),
        ],
        "authType=connwl",
    )
    .await;

    // The same login from flags: --auth token with the token in the environment.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_aliot"))
        .args(["device", "post-property", "--host", "127.0.0.1", "--port"])
        .arg(hub.mqtt_addr().port().to_string())
        .args(["--product-key", &pk, "--device-name", "new-1", "--auth", "token"])
        .args(["--client-id", answer["clientId"].as_str().expect("clientId")])
        .arg(r#"{"a":1}"#)
        .env_remove("RUST_LOG")
        .env("ALIOT_DEVICE_SECRET", "not-used-with-auth-token")
        .env("ALIOT_DEVICE_TOKEN", &token)
        .output()
        .await
        .expect("aliot device post-property");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reply: Value = serde_json::from_slice(&out.stdout).expect("JSON reply");
    assert_eq!(reply["code"], 200);

    // Pre-registered: a new secret; `post-property --profile` uses it; the old one is refused.
    let saved = dir.path().join("pre-1.toml");
    let out = register(&hub, &pk, &ps, "pre-1")
        .arg("--save")
        .arg(&saved)
        .output()
        .await
        .expect("aliot device register");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("the answer as JSON");
    let secret = answer["deviceSecret"].as_str().expect("deviceSecret");
    assert_ne!(secret, pre.device_secret);
    let out = post_property(&hub, &pre, &pre.device_secret)
        .output()
        .await
        .expect("aliot device post-property");
    assert_eq!(out.status.code(), Some(1), "the old secret is refused");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_aliot"))
        .args(["device", "post-property", "--profile"])
        .arg(&saved)
        .arg(r#"{"a":2}"#)
        .env_remove("RUST_LOG")
        .env_remove("ALIOT_DEVICE_SECRET")
        .env_remove("ALIOT_DEVICE_TOKEN")
        .output()
        .await
        .expect("aliot device post-property");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reply: Value = serde_json::from_slice(&out.stdout).expect("JSON reply");
    assert_eq!(reply["code"], 200);

    // The profile is not overwritten without --force (before anything is registered).
    let out = register(&hub, &pk, &ps, "pre-1")
        .arg("--save")
        .arg(&saved)
        .output()
        .await
        .expect("aliot device register");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    hub.stop().await.expect("hub stops");
}

#[tokio::test(flavor = "multi_thread")]
async fn device_register_refusals_and_https_are_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (hub, device) = hub_with_device(&dir, "d-1").await;
    let product = hub.service().product(&device.product_key).await.expect("product");
    assert!(!product.dynamic_registration, "off for a new product");

    // The product's switch is off: CONNACK 5 with the registration's cause and fix, exit 1.
    let out = register(&hub, &device.product_key, &product.product_secret, "d-2")
        .arg("--no-preregister")
        .output()
        .await
        .expect("aliot device register");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CONNACK 5"), "{stderr}");
    assert!(stderr.contains("dynamic registration is off"), "{stderr}");
    assert!(
        !stderr.contains(&product.product_secret),
        "the productSecret is never printed: {stderr}"
    );
    assert!(out.stdout.is_empty());

    // A wrong productSecret: CONNACK 4.
    hub.service()
        .set_dynamic_registration(&device.product_key, true)
        .await
        .expect("switch on");
    let out = register(&hub, &device.product_key, "wrong-secret", "d-2")
        .arg("--no-preregister")
        .output()
        .await
        .expect("aliot device register");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CONNACK 4"));

    // HTTPS serves devices created beforehand only; --register-url is for HTTPS: usage errors.
    let out = register(&hub, &device.product_key, &product.product_secret, "d-2")
        .args(["--via", "https", "--no-preregister"])
        .output()
        .await
        .expect("aliot device register");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("created beforehand"), "{stderr}");
    let out = register(&hub, &device.product_key, &product.product_secret, "d-2")
        .args(["--register-url", "http://127.0.0.1:1"])
        .output()
        .await
        .expect("aliot device register");
    assert_eq!(out.status.code(), Some(2));
    hub.stop().await.expect("hub stops");
}

/// A hub like [`hub_with_device`], with the device HTTP listener too; its base URL.
async fn hub_with_device_http(dir: &tempfile::TempDir, dn: &str) -> (RunningHub, Device, String) {
    let mut config = Config {
        data_dir: Some(dir.path().join("hub")),
        ..Config::default()
    };
    config.mqtt.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin.listen = "127.0.0.1:0".parse().expect("addr");
    config.openapi.listen = "127.0.0.1:0".parse().expect("addr");
    config.device_http = Some(aliot_hub::config::DeviceHttpConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..Default::default()
    });
    let hub = aliot_hub::start(config, std::future::pending())
        .await
        .expect("hub");
    let url = hub.device_http_url().expect("device HTTP listener").to_owned();
    let product = hub.service().create_product("cli", None).await.expect("product");
    let device = hub
        .service()
        .create_device(&product.product_key, dn, None)
        .await
        .expect("device");
    (hub, device, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn device_register_via_https_and_run_with_https_pre_authentication() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (hub, device, url) = hub_with_device_http(&dir, "h-1").await;
    let pk = device.product_key.clone();
    let ps = hub.service().product(&pk).await.expect("product").product_secret;

    // Dynamic registration off: the platform's code 6288 with its meaning and fix, exit 1.
    let out = register(&hub, &pk, &ps, "h-1")
        .args(["--via", "https", "--register-url", &url])
        .output()
        .await
        .expect("aliot device register");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("6288") && stderr.contains("fix:"), "{stderr}");
    assert!(
        !stderr.contains(&ps),
        "the productSecret is never printed: {stderr}"
    );

    hub.service()
        .set_dynamic_registration(&pk, true)
        .await
        .expect("switch on");
    let saved = dir.path().join("h-1.toml");
    let out = register(&hub, &pk, &ps, "h-1")
        .args(["--via", "https", "--register-url", &url, "--save"])
        .arg(&saved)
        .output()
        .await
        .expect("aliot device register");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let answer: Value = serde_json::from_slice(&out.stdout).expect("the answer as JSON");
    let secret = answer["deviceSecret"].as_str().expect("deviceSecret").to_owned();
    assert_eq!(answer["deviceName"], "h-1", "{answer}");
    assert_ne!(secret, device.device_secret);
    assert!(!stderr.contains(&secret), "the secret is never logged: {stderr}");
    let text = std::fs::read_to_string(&saved).expect("profile");
    assert!(text.contains(&secret), "{text}");

    // `aliot device run --auth https`: pre-authenticates with the saved secret, then MQTT with
    // securemode=-1 where the answer says.
    device_run_logs_in(
        &hub,
        &pk,
        "h-1",
        &[
            "--profile".as_ref(),
            saved.as_os_str(),
            "--auth".as_ref(),
            "https".as_ref(),
            "--auth-url".as_ref(),
            url.as_ref(),
            "--post-property".as_ref(),
            r#"{"Level":4}"#.as_ref(),
            "--format".as_ref(),
            "json".as_ref(),
        ],
        "securemode=-1",
    )
    .await;

    // A wrong secret: the pre-authentication's 401 with its meaning and fix, exit 1.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_aliot"))
        .args(["device", "post-property", "--auth-url", &url])
        .args([
            "--product-key",
            &pk,
            "--device-name",
            "h-1",
            "--device-secret",
            "wrong",
        ])
        .arg(r#"{"a":1}"#)
        .env_remove("RUST_LOG")
        .env_remove("ALIOT_DEVICE_TOKEN")
        .output()
        .await
        .expect("aliot device post-property");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pre-authentication refused: code 401"),
        "{stderr}"
    );
    hub.stop().await.expect("hub stops");
}
