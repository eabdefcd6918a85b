//! The product, batch, thing model and shadow actions on a broker that serves nothing (the
//! HTTP transport is tested in `tests/openapi_actions.rs`): their answers' shapes and types.

use std::sync::Arc;

use serde_json::{Value, json};

use super::run;
use crate::openapi::action::{ActionResult, Ctx, Params};
use crate::registry::{RedbRegistry, Registry};
use crate::{Broker, BrokerConfig};

async fn broker(dir: &std::path::Path) -> Broker {
    let registry: Arc<dyn Registry> = Arc::new(RedbRegistry::open(dir).await.expect("the registry"));
    Broker::new(BrokerConfig::default(), registry)
}

async fn call(broker: &Broker, action: &str, pairs: &[(&str, &str)]) -> ActionResult {
    let params = Params::new(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let ctx = Ctx {
        service: broker.service(),
        params: &params,
        access_key_id: "test",
    };
    run(action, ctx).await.expect("a known action")
}

async fn ok(broker: &Broker, action: &str, pairs: &[(&str, &str)]) -> Value {
    match call(broker, action, pairs).await {
        Ok(reply) => Value::Object(reply),
        Err(e) => panic!("{action}: {e:?}"),
    }
}

async fn code(broker: &Broker, action: &str, pairs: &[(&str, &str)]) -> String {
    match call(broker, action, pairs).await {
        Ok(reply) => panic!("{action} succeeded: {reply:?}"),
        Err(e) => {
            assert_eq!(e.status, None, "a business error: {e:?}");
            e.code.into_owned()
        }
    }
}

#[tokio::test]
async fn products_batches_models_and_shadows_answer_in_the_models_types() {
    let dir = tempfile::tempdir().expect("a directory");
    let b = broker(dir.path()).await;
    let v = ok(
        &b,
        "CreateProduct",
        &[("ProductName", "a product"), ("NodeType", "1")],
    )
    .await;
    let pk = v["ProductKey"].as_str().expect("ProductKey").to_owned();
    assert_eq!(v["Data"]["NodeType"], 1, "{v}");
    let v = ok(&b, "QueryProduct", &[("ProductKey", &pk)]).await;
    assert!(v["Data"]["GmtCreate"].is_u64(), "{v}");
    assert_eq!(
        code(&b, "CreateProduct", &[("ProductName", "abc")]).await,
        "iot.prod.InvalidFormattedProductName"
    );
    // Batch registration, then a restart: the ApplyId still names its devices.
    let v = ok(&b, "BatchRegisterDevice", &[("ProductKey", &pk), ("Count", "3")]).await;
    let apply = v["Data"]["ApplyId"].as_u64().expect("a number");
    assert_eq!(apply, crate::registry::FIRST_APPLY_ID);
    let v = ok(
        &b,
        "BatchCheckDeviceNames",
        &[("ProductKey", &pk), ("DeviceName.1", "x y")],
    )
    .await;
    assert_eq!(v["Data"]["ApplyId"], apply + 1, "{v}");
    b.service().registry().close().await;
    drop(b);
    let b = broker(dir.path()).await;
    let id = apply.to_string();
    let v = ok(&b, "QueryBatchRegisterDeviceStatus", &[("ApplyId", &id)]).await;
    assert_eq!(v["Data"]["Status"], "CREATE_SUCCESS", "{v}");
    let v = ok(&b, "QueryPageByApplyId", &[("ApplyId", &id), ("PageSize", "50")]).await;
    assert_eq!(v["Total"], 3, "{v}");
    assert!(
        v["ApplyDeviceList"]["ApplyDeviceInfo"][2]["DeviceSecret"].is_string(),
        "{v}"
    );
    let failed = (apply + 1).to_string();
    let v = ok(&b, "QueryBatchRegisterDeviceStatus", &[("ApplyId", &failed)]).await;
    assert_eq!(v["Data"]["Status"], "CHECK_FAILED", "{v}");
    assert_eq!(v["Data"]["InvalidList"]["Name"], json!(["x y"]), "{v}");
    assert_eq!(
        code(&b, "QueryBatchRegisterDeviceStatus", &[("ApplyId", "7")]).await,
        "iot.device.DeviceApplyIsNotFound"
    );
    // A thing model in, out as a string.
    let tsl = r#"{"properties":[{"identifier":"T","name":"t","accessMode":"rw","dataType":{"type":"int","specs":{}}}]}"#;
    ok(&b, "ImportThingModelTsl", &[("ProductKey", &pk), ("TslStr", tsl)]).await;
    let v = ok(&b, "GetThingModelTslPublished", &[("ProductKey", &pk)]).await;
    assert_eq!(v["Data"]["TslStr"], tsl, "{v}");
    // A shadow.
    let dn = b.service().devices(&pk).await.expect("devices")[0]
        .device_name
        .clone();
    let message = r#"{"method":"update","state":{"desired":{"T":3}},"version":4}"#;
    ok(
        &b,
        "UpdateDeviceShadow",
        &[
            ("ProductKey", &pk),
            ("DeviceName", &dn),
            ("ShadowMessage", message),
        ],
    )
    .await;
    let v = ok(&b, "GetDeviceShadow", &[("ProductKey", &pk), ("DeviceName", &dn)]).await;
    let doc: Value = serde_json::from_str(v["ShadowMessage"].as_str().expect("a string")).expect("JSON");
    assert_eq!(
        (doc["version"].as_i64(), &doc["state"]["desired"]),
        (Some(4), &json!({"T": 3}))
    );
    // What the hub does not build.
    assert_eq!(
        code(&b, "GenerateOTAUploadURL", &[]).await,
        "iot.system.IllegalRequest"
    );
    assert!(call_unknown(&b).await);
}

async fn call_unknown(b: &Broker) -> bool {
    let params = Params::default();
    let ctx = Ctx {
        service: b.service(),
        params: &params,
        access_key_id: "test",
    };
    run("NoSuchAction", ctx).await.is_none()
}
