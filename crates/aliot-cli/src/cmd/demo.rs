//! `aliot demo`: the platform and a device, both on this machine, no account needed.
//!
//! Starts an embedded hub on free loopback ports with a temporary data directory, registers a
//! product and a device, runs a simulated device with the SDK, and narrates what happens: the
//! signed CONNECT, property posts and their replies, a property set applied by the device, a
//! synchronous service call answered over RRPC, an NTP sync. Then a summary, and exit 0 — or,
//! with `--keep-running`, how to reach the hub and the device until Ctrl-C.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aliot_device::register::{Mode, RegisterOptions, register_mqtt};
use aliot_device::{CallVia, Device, DeviceOptions, Event, Events, ReplyError};
use aliot_hub::RunningHub;
use aliot_hub::config::Config;
use aliot_protocol::sign::sign_content;
use aliot_protocol::{ClientId, DeviceIdentity, Endpoint, SecureMode, SignMethod, SignOptions};
use anyhow::{Context as _, anyhow};
use serde_json::{Map, Value, json};

use crate::{clock, output, signal};

mod ota;
mod thing;

/// Arguments of `aliot demo`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Everything runs on 127.0.0.1 with a temporary data directory, removed on exit.")]
pub(crate) struct Args {
    /// After the demo, keep the hub and the device running (Ctrl-C stops them) and print how to
    /// reach them with `aliot admin` and mosquitto_sub.
    #[arg(long)]
    keep_running: bool,
}

/// The demo device's product and name.
const PRODUCT: &str = "Demo Lamp";
const DEVICE: &str = "lamp-01";
/// The device that registers itself (dynamic registration, no pre-registration).
const NEW_DEVICE: &str = "lamp-02";
const CONSOLE: &str = "console";
/// How long the platform waits for the device's answers in the demo.
const CALL_TIMEOUT: Duration = Duration::from_secs(8);

/// One line of the transcript on stdout. A reader that went away does not stop the demo: it
/// runs to its end (and removes its temporary directory) unread.
fn say(line: impl AsRef<str>) {
    let _ = output::line(line.as_ref());
}

/// Runs `aliot demo`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start tokio")?;
    rt.block_on(demo(args))
}

/// One line of the summary.
struct Check {
    what: &'static str,
    detail: String,
}

async fn demo(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("aliot-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let mut checks: Vec<Check> = Vec::new();

    say("aliot demo: the Alibaba Cloud IoT platform and a device, both on this machine.\n");

    // 1. The platform.
    say("[1/8] Starting an embedded hub: the platform's MQTT broker, registry and admin API");
    let mut config = Config {
        data_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    };
    config.mqtt.listen = "127.0.0.1:0".parse().context("address")?;
    config.admin.listen = "127.0.0.1:0".parse().context("address")?;
    config.openapi.listen = "127.0.0.1:0".parse().context("address")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let hub = aliot_hub::start(config, async move {
        let _ = stop_rx.await;
    })
    .await
    .context("cannot start the embedded hub")?;
    say(format!(
        "      MQTT on {}, admin API on {}",
        hub.mqtt_addr(),
        hub.admin_url()
    ));
    say(format!("      data in {} (temporary)\n", dir.path().display()));

    // 2. Registration.
    let product = hub
        .service()
        .create_product(PRODUCT, None)
        .await
        .context("cannot register the product")?;
    let pk = product.product_key.clone();
    let registered = hub
        .service()
        .create_device(&pk, DEVICE, None)
        .await
        .context("cannot register the device")?;
    say(format!(
        "[2/8] Registering product {PRODUCT:?} and device {DEVICE:?}"
    ));
    say(format!(
        "      productKey {pk}, deviceName {DEVICE}: the triple the device signs with"
    ));
    say("      (the deviceSecret stays between the registry and the device)\n");
    let identity = DeviceIdentity::new(
        &registered.product_key,
        &registered.device_name,
        &registered.device_secret,
    )
    .context("device identity")?;

    // 3. Signed CONNECT.
    say("[3/8] The device signs its CONNECT and connects");
    let endpoint = Endpoint::custom("127.0.0.1", Some(hub.mqtt_addr().port()), false).context("endpoint")?;
    let options = DeviceOptions::new(identity.clone(), endpoint.clone()).request_timeout(CALL_TIMEOUT);
    let t = Instant::now();
    let (device, mut events) = Device::connect(options)
        .await
        .map_err(|e| anyhow!("the device could not connect: {e}"))?;
    let connect_ms = t.elapsed().as_millis();
    let connected = loop {
        match events.recv().await {
            Some(Event::Connected(c)) => break c,
            Some(_) => {}
            None => return Err(anyhow!("the device stopped")),
        }
    };
    let cid = ClientId::parse(&connected.client_id).map_err(|e| anyhow!("clientId: {e}"))?;
    let content = sign_content(cid.prefix(), DEVICE, &pk, Some(&connected.timestamp));
    say(format!("      clientId  {}", connected.client_id));
    say(format!("      username  {}", identity.username()));
    say(format!(
        "      password  hex(HMAC-SHA256(deviceSecret, \"{content}\"))"
    ));
    say(format!(
        "      <- CONNACK 0: accepted in {connect_ms} ms (the hub recomputed the signature)\n"
    ));
    checks.push(Check {
        what: "signed CONNECT accepted",
        detail: format!("securemode=3, hmacsha256, {connect_ms} ms"),
    });

    // The device's side: apply property sets, answer services; narrate as it goes.
    let state = Arc::new(Mutex::new(Map::from_iter([
        ("LightSwitch".to_owned(), json!(1)),
        ("Brightness".to_owned(), json!(80)),
    ])));
    let device_task = tokio::spawn(device_loop(events, state.clone()));

    // 4. Property post.
    say("[4/8] The device posts its properties (thing.event.property.post)");
    let props = Value::Object(lock(&state).clone());
    say(format!(
        "      -> /sys/{pk}/{DEVICE}/thing/event/property/post  params {props}"
    ));
    let t = Instant::now();
    let reply = device
        .post_property(props)
        .await
        .map_err(|e| anyhow!("property post failed: {e}"))?;
    let post_ms = t.elapsed().as_millis();
    say(format!(
        "      <- /sys/{pk}/{DEVICE}/thing/event/property/post_reply  code {} {:?} (id {}, {post_ms} ms)\n",
        reply.code, reply.message, reply.id
    ));
    checks.push(Check {
        what: "property post answered",
        detail: format!("code {} in {post_ms} ms", reply.code),
    });

    // 5. Property set from the platform.
    say("[5/8] The platform sets a property (thing.service.property.set)");
    say(format!(
        "      platform -> /sys/{pk}/{DEVICE}/thing/service/property/set  {{\"Brightness\":30}}"
    ));
    let t = Instant::now();
    let answer = hub
        .service()
        .set_property(&pk, DEVICE, json!({"Brightness": 30}), CALL_TIMEOUT)
        .await
        .map_err(|e| anyhow!("property set failed: {e}"))?;
    let set_ms = t.elapsed().as_millis();
    say(format!("      platform <- set_reply {answer} ({set_ms} ms)"));
    let brightness = lock(&state).get("Brightness").cloned().unwrap_or(Value::Null);
    say(format!("      the device's Brightness is now {brightness}\n"));
    checks.push(Check {
        what: "property set applied",
        detail: format!(
            "code {} in {set_ms} ms, Brightness = {brightness}",
            answer["code"]
        ),
    });

    // 6. Synchronous service over RRPC.
    say("[6/8] The platform calls a service synchronously over RRPC (thing.service.Blink)");
    let t = Instant::now();
    let answer = hub
        .service()
        .invoke_service(&pk, DEVICE, "Blink", json!({"times": 3}), CALL_TIMEOUT)
        .await
        .map_err(|e| anyhow!("the service call failed: {e}"))?;
    let call_ms = t.elapsed().as_millis();
    say(format!("      platform <- {answer} ({call_ms} ms)\n"));
    checks.push(Check {
        what: "synchronous service answered",
        detail: format!("code {} in {call_ms} ms", answer["code"]),
    });

    // 7. NTP.
    say("[7/8] The device synchronises its clock (NTP over MQTT)");
    say(format!(
        "      -> /ext/ntp/{pk}/{DEVICE}/request  {{\"deviceSendTime\":\"...\"}}"
    ));
    let sync = device.ntp().await.map_err(|e| anyhow!("NTP failed: {e}"))?;
    say(format!(
        "      <- /ext/ntp/{pk}/{DEVICE}/response: platform time {} ms, local offset {:+} ms, round trip {} ms\n",
        sync.server_time_ms,
        sync.offset_ms,
        sync.round_trip.as_millis()
    ));
    checks.push(Check {
        what: "NTP time sync",
        detail: format!(
            "offset {:+} ms, round trip {} ms",
            sync.offset_ms,
            sync.round_trip.as_millis()
        ),
    });

    // 8. Dynamic registration: a mass-produced device knows only its product's secret.
    say(
        "[8/8] A new device registers itself with the product's secret, then connects (dynamic registration)",
    );
    hub.service()
        .set_dynamic_registration(&pk, true)
        .await
        .context("cannot allow dynamic registration")?;
    say(format!(
        "      the product allows dynamic registration; {NEW_DEVICE:?} is flashed with productKey and productSecret only"
    ));
    let t = Instant::now();
    let registration = register_mqtt(&RegisterOptions::new(
        endpoint.clone(),
        &pk,
        &product.product_secret,
        NEW_DEVICE,
        Mode::NoPreRegistration,
    ))
    .await
    .map_err(|e| anyhow!("the registration failed: {e}"))?;
    let register_ms = t.elapsed().as_millis();
    say(format!(
        "      -> CONNECT {NEW_DEVICE}.{pk}|random=…,authType=regnwl,…|  password hex(HMAC-SHA256(productSecret, \"deviceName{NEW_DEVICE}productKey{pk}random…\"))"
    ));
    say(format!(
        "      <- /ext/regnwl: a clientId and a deviceToken ({register_ms} ms; the hub created the device)"
    ));
    let options = registration
        .device_options(endpoint.clone())
        .map_err(|e| anyhow!("the registration's login: {e}"))?
        .request_timeout(CALL_TIMEOUT);
    let (new_device, mut new_events) = Device::connect(options)
        .await
        .map_err(|e| anyhow!("the registered device could not connect: {e}"))?;
    let new_connected = loop {
        match new_events.recv().await {
            Some(Event::Connected(c)) => break c,
            Some(_) => {}
            None => return Err(anyhow!("the registered device stopped")),
        }
    };
    say(format!(
        "      -> CONNECT {}  password: the deviceToken",
        new_connected.client_id
    ));
    let reply = new_device
        .post_property(json!({"LightSwitch": 0}))
        .await
        .map_err(|e| anyhow!("the registered device's post failed: {e}"))?;
    say(format!(
        "      <- CONNACK 0; its first property post is answered with code {}\n",
        reply.code
    ));
    new_device.disconnect().await;
    checks.push(Check {
        what: "dynamic registration",
        detail: format!(
            "regnwl in {register_ms} ms, token login, post code {}",
            reply.code
        ),
    });

    let detail = thing::step(&hub, &pk, &device).await?;
    checks.push(Check {
        what: "thing model",
        detail,
    });

    let detail = ota::step(&hub, dir.path(), &pk).await?;
    checks.push(Check {
        what: "OTA upgrade",
        detail,
    });

    say("Summary");
    for c in &checks {
        say(format!("  ok  {:<30} {}", c.what, c.detail));
    }
    say(format!(
        "  all done in {} ms, on 127.0.0.1 only\n",
        started.elapsed().as_millis()
    ));

    if args.keep_running {
        keep_running(&hub, dir.path(), &pk).await?;
    } else {
        say("Next: `aliot demo --keep-running` to play with it, `aliot hub` for a hub of your own,");
        say("      `aliot device run --help` for a simulated device.");
    }

    device.disconnect().await;
    let _ = device_task.await;
    let _ = stop_tx.send(());
    hub.wait().await.context("the embedded hub failed")?;
    drop(dir);
    Ok(ExitCode::SUCCESS)
}

fn lock(m: &Mutex<Map<String, Value>>) -> std::sync::MutexGuard<'_, Map<String, Value>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The simulated lamp: applies property sets, blinks on request, narrates.
async fn device_loop(mut events: Events, state: Arc<Mutex<Map<String, Value>>>) {
    while let Some(event) = events.recv().await {
        match event {
            Event::PropertySet(set) => {
                let mut changes = String::new();
                {
                    let mut s = lock(&state);
                    for (k, v) in set.properties() {
                        let old = s.get(&k).cloned().unwrap_or(Value::Null);
                        let _ = write!(changes, "{k} {old} -> {v}  ");
                        s.insert(k, v);
                    }
                }
                say(format!(
                    "      device   <- property set (id {}): applying {}",
                    set.id(),
                    changes.trim_end()
                ));
                say("      device   -> set_reply code 200");
                if let Err(e) = set.reply(Ok(json!({}))).await {
                    say(format!("      device   could not answer: {e}"));
                }
            }
            Event::ServiceCall(call) => {
                let via = match call.via() {
                    CallVia::ExtRrpc { message_id } => {
                        format!("RRPC, new style: /ext/rrpc/{message_id}/…, answered on the same topic")
                    }
                    CallVia::Rrpc { message_id } => {
                        format!("RRPC: /rrpc/request/{message_id}, answered on /rrpc/response/{message_id}")
                    }
                    _ => "asynchronously, answered on {topic}_reply".to_owned(),
                };
                say(format!(
                    "      device   <- {} {} ({via})",
                    call.method(),
                    call.params()
                ));
                let result = match call.service() {
                    "Blink" => {
                        let times = call.params().get("times").and_then(Value::as_u64).unwrap_or(1);
                        say(format!("      device   blinks {times} times"));
                        Ok(json!({"blinked": times}))
                    }
                    other => Err(ReplyError::new(460, format!("the lamp has no service {other}"))),
                };
                if let Err(e) = call.reply(result).await {
                    say(format!("      device   could not answer: {e}"));
                }
            }
            Event::Rrpc(req) => {
                say(format!(
                    "      device   <- raw RRPC {} ({} bytes), echoing it",
                    req.message_id(),
                    req.payload().len()
                ));
                let payload = req.payload().to_vec();
                let _ = req.reply(payload).await;
            }
            Event::Message(m) => {
                say(format!(
                    "      device   <- {} {}",
                    m.topic,
                    String::from_utf8_lossy(&m.payload)
                ));
            }
            Event::Disconnected(d) => say(format!("      device   disconnected: {}", d.reason)),
            Event::Stopped(_) => break,
            _ => {}
        }
    }
}

/// Prints how to reach the hub and the device, and waits for Ctrl-C.
async fn keep_running(hub: &RunningHub, data_dir: &std::path::Path, pk: &str) -> anyhow::Result<()> {
    let shutdown = signal::shutdown().context("cannot listen for Ctrl-C and SIGTERM")?;
    // A second device for mosquitto_sub to log in as (devices only see their own topics).
    let console = hub
        .service()
        .create_device(pk, CONSOLE, None)
        .await
        .context("cannot register the console device")?;
    let console_id = DeviceIdentity::new(&console.product_key, &console.device_name, &console.device_secret)
        .context("console identity")?;
    let ts = clock::now_ms().map(|ms| ms.to_string()).unwrap_or_default();
    let creds = aliot_protocol::sign(
        &console_id,
        &SignOptions {
            timestamp: Some(ts),
            sign_method: SignMethod::HmacSha256,
            secure_mode: SecureMode::Tcp,
            ..SignOptions::default()
        },
    )
    .context("signing")?;
    let admin = format!("aliot admin --data-dir {}", data_dir.display());
    let port = hub.mqtt_addr().port();
    say("The hub and the device keep running. Try, from another terminal:");
    say(format!("  {admin} device list --product-key {pk}"));
    say(format!(
        "  {admin} set-property --product-key {pk} --device-name {DEVICE} --params '{{\"Brightness\":50}}'"
    ));
    say(format!(
        "  {admin} invoke --product-key {pk} --device-name {DEVICE} --service Blink --params '{{\"times\":2}}'"
    ));
    say(format!("  {admin} events"));
    say(format!(
        "Listen as a second device ({CONSOLE}) with mosquitto_sub, and send it a message:"
    ));
    say(format!(
        "  mosquitto_sub -V mqttv311 -h 127.0.0.1 -p {port} -k 60 -i '{}' -u '{}' -P '{}' -t '/{pk}/{CONSOLE}/user/get' -v",
        creds.client_id, creds.username, creds.password
    ));
    say(format!(
        "  {admin} publish --product-key {pk} --device-name {CONSOLE} --topic /{pk}/{CONSOLE}/user/get --payload hello"
    ));
    say("Ctrl-C stops both and removes the temporary directory.\n");
    shutdown.await;
    say("\nstopping");
    Ok(())
}
