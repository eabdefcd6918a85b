//! `aliot device run --tsl` (issue 11): a device simulated from its thing model alone, against a
//! hub that judges it by the same model.

use std::process::Stdio;
use std::time::Duration;

use aliot_hub::RunningHub;
use aliot_hub::config::Config;
use aliot_hub::events::Event as HubEvent;
use aliot_protocol::tsl::Tsl;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;
use tokio::sync::broadcast;

const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Every data type: ranges and steps, enums, a struct, arrays of scalars and of structs; an event
/// and services with typed inputs and outputs.
const TSL: &str = r#"{"profile":{"productKey":"x"},"properties":[
  {"identifier":"LightSwitch","name":"s","accessMode":"rw","dataType":{"type":"bool","specs":{"0":"off","1":"on"}}},
  {"identifier":"Brightness","name":"b","accessMode":"rw","dataType":{"type":"int","specs":{"min":"0","max":"100","step":"5"}}},
  {"identifier":"Temperature","name":"t","accessMode":"r","dataType":{"type":"float","specs":{"min":"-40","max":"85.5"}}},
  {"identifier":"Energy","name":"e","accessMode":"r","dataType":{"type":"double","specs":{"min":"0","max":"1e6"}}},
  {"identifier":"Label","name":"l","accessMode":"rw","dataType":{"type":"text","specs":{"length":"6"}}},
  {"identifier":"Since","name":"d","accessMode":"r","dataType":{"type":"date","specs":{}}},
  {"identifier":"Mode","name":"m","accessMode":"rw","dataType":{"type":"enum","specs":{"0":"eco","2":"boost","7":"night"}}},
  {"identifier":"Color","name":"c","accessMode":"rw","dataType":{"type":"struct","specs":[
    {"identifier":"Red","name":"r","dataType":{"type":"int","specs":{"min":"0","max":"255"}}},
    {"identifier":"Name","name":"n","dataType":{"type":"text","specs":{"length":"4"}}},
    {"identifier":"Levels","name":"v","dataType":{"type":"array","specs":{"size":"3","item":{"type":"int"}}}}]}},
  {"identifier":"Zones","name":"z","accessMode":"r","dataType":{"type":"array","specs":{"size":"4","item":{"type":"struct","specs":[
    {"identifier":"Id","name":"i","dataType":{"type":"int","specs":{"min":"1","max":"9"}}},
    {"identifier":"Load","name":"l","dataType":{"type":"float","specs":{"min":"0","max":"1"}}}]}}}}],
 "events":[
  {"identifier":"post","name":"post","type":"info","method":"thing.event.property.post","outputData":[]},
  {"identifier":"Overheat","name":"o","type":"alert","outputData":[
    {"identifier":"Temperature","name":"t","dataType":{"type":"float","specs":{"min":"60","max":"120"}}},
    {"identifier":"Level","name":"l","dataType":{"type":"enum","specs":{"1":"warn","2":"stop"}}}]}],
 "services":[
  {"identifier":"Blink","name":"b","callType":"sync","inputData":[
    {"identifier":"Times","name":"t","dataType":{"type":"int","specs":{"min":"1","max":"10"}}}],
   "outputData":[
    {"identifier":"Done","name":"d","dataType":{"type":"bool","specs":{"0":"no","1":"yes"}}},
    {"identifier":"Took","name":"t","dataType":{"type":"double","specs":{"min":"0","max":"5"}}}]},
  {"identifier":"get","name":"get","callType":"async","inputData":["LightSwitch","Brightness"],"outputData":[]}]}"#;

/// Posts and event posts to see accepted before the calls (several rounds: values vary).
const ROUNDS: usize = 8;

/// `aliot device run --tsl` for device `sim-01` of `pk` (secret `secret`) on `hub`.
fn simulate(hub: &RunningHub, pk: &str, secret: &str, tsl: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_aliot"))
        .args(["device", "run", "--host", "127.0.0.1", "--port"])
        .arg(hub.mqtt_addr().port().to_string())
        .args([
            "--product-key",
            pk,
            "--device-name",
            "sim-01",
            "--device-secret",
            secret,
        ])
        .arg("--tsl")
        .arg(tsl)
        .args(["--post-interval", "20ms", "--seed", "11", "--format", "json"])
        .env_remove("RUST_LOG")
        .env_remove("ALIOT_PRODUCT_KEY")
        .env_remove("ALIOT_DEVICE_NAME")
        .env_remove("ALIOT_DEVICE_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("aliot device run --tsl")
}

/// A hub (data in `dir`) with device `sim-01` of a new product: (hub, pk, secret).
async fn hub_with_device(dir: &tempfile::TempDir) -> (RunningHub, String, String) {
    let mut config = Config {
        data_dir: Some(dir.path().join("hub")),
        ..Config::default()
    };
    config.mqtt.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin.listen = "127.0.0.1:0".parse().expect("addr");
    config.openapi.listen = "127.0.0.1:0".parse().expect("addr");
    let hub: RunningHub = aliot_hub::start(config, std::future::pending())
        .await
        .expect("hub");
    let product = hub.service().create_product("sim", None).await.expect("product");
    let device = hub
        .service()
        .create_device(&product.product_key, "sim-01", None)
        .await
        .expect("device");
    (hub, product.product_key, device.device_secret)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_simulated_from_its_tsl_refuses_bad_requests_with_the_platforms_codes() {
    // The hub has no model here, so bad calls reach the device, which judges them by its own.
    let dir = tempfile::tempdir().expect("tempdir");
    let (hub, pk, secret) = hub_with_device(&dir).await;
    let path = dir.path().join("model.json");
    std::fs::write(&path, TSL).expect("the TSL file");
    let mut events = hub.service().events();
    let _child = simulate(&hub, &pk, &secret, &path);
    aliot_testkit::guard("the simulated device online", async {
        loop {
            if let Ok(HubEvent::Status(s)) = events.recv().await.as_deref()
                && s.device_name == "sim-01"
                && s.status == "online"
            {
                break;
            }
        }
    })
    .await;
    let service = hub.service();
    for (params, code) in [
        (json!({"Brightness": "35"}), 6306),
        (json!({"Temperature": 20.5}), 6320),
        (json!({"Colour": 1}), 6320),
        (json!({"Mode": 3}), 6309),
    ] {
        let reply = service
            .set_property(&pk, "sim-01", params.clone(), CALL_TIMEOUT)
            .await
            .expect("answered");
        assert_eq!(reply["code"], code, "{params}: {reply}");
    }
    for (name, params, code) in [
        ("Blink", json!({}), 6302),
        ("Blink", json!({"Times": 11}), 6306),
        ("Reboot", json!({}), 6300),
    ] {
        let reply = service
            .invoke_service(&pk, "sim-01", name, params.clone(), CALL_TIMEOUT)
            .await
            .expect("answered");
        assert_eq!(reply["code"], code, "{name} {params}: {reply}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_simulated_from_its_tsl_posts_valid_values_and_answers_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hub, pk, secret) = hub_with_device(&dir).await;
    let service = hub.service();
    service.import_tsl(&pk, TSL.to_owned()).await.expect("TSL");
    let model = Tsl::from_json(TSL).expect("the model");
    let path = dir.path().join("model.json");
    std::fs::write(&path, TSL).expect("the TSL file");
    let mut events = service.events();
    let mut child = simulate(&hub, &pk, &secret, &path);

    // Property posts and event posts, all answered 200 with nothing rejected.
    let (mut posts, mut alarms) = (0, 0);
    aliot_testkit::guard("posts and an event accepted", async {
        while posts < ROUNDS || alarms < 1 {
            tokio::select! {
                e = events.recv() => match e.as_deref() {
                    Ok(HubEvent::Reply(r)) if r.device_name == "sim-01" => {
                        let reply: Value = serde_json::from_str(&r.payload).expect("reply JSON");
                        assert_eq!(r.code, 200, "{}", r.payload);
                        assert_eq!(reply["data"], json!({}), "something was rejected: {}", r.payload);
                        if r.topic.ends_with("/thing/event/property/post_reply") {
                            posts += 1;
                        } else if r.topic.ends_with("/thing/event/Overheat/post_reply") {
                            alarms += 1;
                        }
                    }
                    Ok(HubEvent::Problem(p)) if p.device_name.as_deref() == Some("sim-01") => {
                        panic!("the hub saw a problem: {}", p.reason)
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("hub events ended: {e}"),
                },
                status = child.wait() => {
                    let mut stderr = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut stderr).await;
                    }
                    panic!("aliot device run exited ({status:?}): {stderr}");
                }
            }
        }
    })
    .await;

    // A property set: answered 200, applied, posted back as it was set.
    let reply = service
        .set_property(&pk, "sim-01", json!({"Brightness": 35, "Mode": 7}), CALL_TIMEOUT)
        .await
        .expect("answered");
    assert_eq!(reply["code"], 200, "{reply}");
    aliot_testkit::guard("the set values posted back", async {
        loop {
            if let Ok(HubEvent::Uplink(u)) = events.recv().await.as_deref()
                && u.topic.ends_with("/thing/event/property/post")
            {
                let post: Value = serde_json::from_str(u.payload.as_deref().unwrap_or("{}")).expect("JSON");
                if post["params"] == json!({"Brightness": 35, "Mode": 7}) {
                    break;
                }
            }
        }
    })
    .await;

    // A get answers the current (just set) values.
    let reply = service
        .invoke_service(&pk, "sim-01", "get", json!(["Brightness", "Mode"]), CALL_TIMEOUT)
        .await
        .expect("get answered");
    assert_eq!(reply["code"], 200, "{reply}");
    assert_eq!(reply["data"]["Brightness"], 35, "{reply}");
    assert_eq!(reply["data"]["Mode"], 7, "{reply}");

    // A service: valid outputs, all of them.
    let reply = service
        .invoke_service(&pk, "sim-01", "Blink", json!({"Times": 3}), CALL_TIMEOUT)
        .await
        .expect("Blink answered");
    assert_eq!(reply["code"], 200, "{reply}");
    let outputs = model
        .validate_service_output("Blink", &reply["data"])
        .expect("outputs are an object");
    assert!(outputs.is_valid(), "{reply}");
    assert_eq!(outputs.items.len(), 2, "{reply}");

    child.start_kill().expect("kill");
    let _ = aliot_testkit::guard("aliot device run to exit", child.wait()).await;
    drop(hub);
}
