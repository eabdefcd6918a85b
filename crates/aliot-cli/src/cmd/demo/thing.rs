//! The demo's thing-model step: the product gets a small TSL, the lamp posts a valid value and a
//! float sent as text, and the platform's answers are shown (code 200 both times, the rejected
//! identifier named in `data`), with what the SDK's own check says before sending.

use aliot_device::Device;
use aliot_device::thing::ThingModel;
use aliot_hub::RunningHub;
use anyhow::{Context as _, anyhow};
use serde_json::json;

use super::say;

/// The lamp's thing model, as the console exports it (trimmed).
const TSL: &str = r#"{"properties":[
  {"identifier":"LightSwitch","name":"Switch","accessMode":"rw","required":false,
   "dataType":{"type":"bool","specs":{"0":"off","1":"on"}}},
  {"identifier":"Brightness","name":"Brightness","accessMode":"rw","required":false,
   "dataType":{"type":"int","specs":{"min":"0","max":"100","step":"1","unit":"%"}}},
  {"identifier":"Temperature","name":"Temperature","accessMode":"r","required":false,
   "dataType":{"type":"float","specs":{"min":"-40","max":"85","step":"0.1","unit":"°C"}}}]}"#;

/// Runs the step; the summary's detail.
pub(super) async fn step(hub: &RunningHub, pk: &str, device: &Device) -> anyhow::Result<String> {
    say("[+] The thing model: the product gets a TSL, and the platform judges every post by it");
    let imported = hub
        .service()
        .import_tsl(pk, TSL.to_owned())
        .await
        .context("cannot import the demo's TSL")?;
    let names: Vec<_> = imported
        .model
        .properties
        .iter()
        .map(|p| format!("{} ({})", p.identifier, p.data_type.type_name()))
        .collect();
    say(format!("      TSL imported: {}", names.join(", ")));

    let valid = json!({"Temperature": 21.5});
    let reply = device
        .post_property(valid.clone())
        .await
        .map_err(|e| anyhow!("the valid post failed: {e}"))?;
    say(format!("      device   -> property post {valid}"));
    say(format!(
        "      platform -> post_reply  code {}  data {}",
        reply.code, reply.data
    ));

    let wrong = json!({"Temperature": "21.5"});
    let model = ThingModel::from_json(TSL).map_err(|e| anyhow!("the demo's TSL: {e}"))?;
    if let Err(e) = model.check_properties(&wrong) {
        say(format!(
            "      (the SDK's ThingModel would refuse it before sending: {e})"
        ));
    }
    let reply = device
        .post_property(wrong.clone())
        .await
        .map_err(|e| anyhow!("the rejected post failed: {e}"))?;
    say(format!(
        "      device   -> property post {wrong}   (a float sent as text)"
    ));
    say(format!(
        "      platform -> post_reply  code {}  data {}",
        reply.code, reply.data
    ));
    say("      code 200 with the rejected identifier in data: the valid items are kept, this one is not\n");
    let rejected = reply
        .data
        .get("Temperature")
        .and_then(|v| v.as_str())
        .unwrap_or("accepted");
    Ok(format!("text for a float rejected: {rejected}"))
}
