//! The OpenAPI's product, batch registration, thing data, thing model, shadow, OTA and topology
//! actions (issue 14) over HTTP, signed with `aliot_protocol::openapi` (V1), with the types the
//! Tea models want (numbers where they say int, strings where they say str).

use aliot_protocol::gateway::{SubSignMethod, sub_sign};
use aliot_protocol::openapi as sig;
use aliot_protocol::sign::HexCase;
use aliot_testkit::{Raw, Signing, TOKEN, TestHub, creds_with, http, http_post, json};
use hyper::StatusCode;
use rmqtt_codec::v3::QoS;
use serde_json::{Value, json};

/// A V1 client with an access key of the hub.
struct Api {
    url: String,
    id: String,
    secret: String,
    nonce: std::cell::Cell<u64>,
}

impl Api {
    async fn new(hub: &TestHub) -> Api {
        let key = hub
            .service()
            .create_access_key(Some("actions".into()))
            .await
            .expect("an access key");
        Api {
            url: hub.hub().openapi_url().expect("the OpenAPI is on").to_owned(),
            id: key.access_key_id,
            secret: key.access_key_secret,
            nonce: std::cell::Cell::new(0),
        }
    }

    /// A signed V1 POST with every parameter in the query (as the Java core sends them):
    /// (HTTP status, JSON answer).
    async fn call(&self, action: &str, params: &[(&str, &str)]) -> (StatusCode, Value) {
        self.nonce.set(self.nonce.get() + 1);
        let nonce = format!("actions-{}-{}", self.nonce.get(), aliot_hub::clock::now_ms());
        let ts = aliot_hub::clock::format_utc(aliot_hub::clock::now_ms());
        let timestamp = format!("{}Z", &ts[..19]);
        let mut all: Vec<(String, String)> = [
            ("Action", action),
            ("Format", "JSON"),
            ("Version", "2018-01-20"),
            ("AccessKeyId", self.id.as_str()),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", nonce.as_str()),
            ("Timestamp", timestamp.as_str()),
        ]
        .iter()
        .chain(params)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let sts = sig::v1_string_to_sign("POST", all.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        all.push(("Signature".into(), sig::v1_sign(&self.secret, &sts)));
        let query: Vec<String> = all
            .iter()
            .map(|(k, v)| format!("{}={}", sig::percent_encode(k), sig::percent_encode(v)))
            .collect();
        let url = format!("{}/?{}", self.url.trim_end_matches('/'), query.join("&"));
        let (status, text) =
            http_post(&url, &[("content-type", "application/x-www-form-urlencoded")], "").await;
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (status, v)
    }

    /// A call that must succeed: its answer.
    async fn ok(&self, action: &str, params: &[(&str, &str)]) -> Value {
        let (status, v) = self.call(action, params).await;
        assert_eq!(status, StatusCode::OK, "{action}: {v}");
        assert_eq!(v["Success"], true, "{action}: {v}");
        assert!(v.get("Code").is_none(), "no Code on success: {v}");
        v
    }

    /// A call that must fail with a business error: its code.
    async fn refused(&self, action: &str, params: &[(&str, &str)]) -> String {
        let (status, v) = self.call(action, params).await;
        assert_eq!(status, StatusCode::OK, "{action}: {v}");
        assert_eq!(v["Success"], false, "{action}: {v}");
        assert!(v["ErrorMessage"].is_string(), "{v}");
        v["Code"].as_str().expect("a Code").to_owned()
    }
}

const TSL: &str = r#"{"schema":"https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
 "properties":[
  {"identifier":"Temperature","name":"Temp","accessMode":"rw","dataType":{"type":"float","specs":{"min":"-40","max":"85","unit":"°C"}}},
  {"identifier":"Power","name":"Power","accessMode":"rw","dataType":{"type":"bool","specs":{"0":"off","1":"on"}}}],
 "events":[{"identifier":"Overheat","name":"Too hot","type":"alert","outputData":[
   {"identifier":"Temperature","name":"t","dataType":{"type":"float","specs":{"min":"60","max":"120"}}}]}],
 "services":[]}"#;

/// Device `dn` of product `pk` online over the raw client, subscribed to its post replies.
async fn online(hub: &TestHub, pk: &str, dn: &str, secret: &str) -> Raw {
    let c = creds_with(&Signing {
        product_key: pk,
        device_name: dn,
        secret,
        ..Signing::default()
    });
    let mut dev = Raw::online(hub.mqtt, &c).await;
    let filter = format!("/sys/{pk}/{dn}/thing/event/+/post_reply");
    dev.subscribe(1, &[(filter.as_str(), QoS::AtMostOnce)]).await;
    dev
}

/// Posts `body` on `…/thing/event/{path}` and waits for the reply (the history is durable then).
async fn post(dev: &mut Raw, pk: &str, dn: &str, path: &str, body: Value) -> Value {
    let topic = format!("/sys/{pk}/{dn}/thing/event/{path}");
    dev.publish(&topic, &body.to_string(), QoS::AtMostOnce, 1).await;
    json(&dev.publish_in().await)
}

#[tokio::test]
async fn products_are_created_and_queried_with_the_models_types() {
    let hub = TestHub::start().await;
    let api = Api::new(&hub).await;
    let v = api
        .ok(
            "CreateProduct",
            &[("ProductName", "gateway product"), ("NodeType", "1")],
        )
        .await;
    let pk = v["ProductKey"].as_str().expect("top-level ProductKey").to_owned();
    assert_eq!(v["Data"]["ProductKey"], pk.as_str(), "{v}");
    assert_eq!(v["Data"]["NodeType"], 1, "{v}");
    assert_eq!(v["Data"]["DataFormat"], 1, "{v}");
    assert!(v["Data"]["ProductSecret"].is_string(), "{v}");
    assert_eq!(
        hub.service().product(&pk).await.expect("stored").node_type,
        aliot_hub::registry::NodeType::Gateway
    );
    let v = api.ok("QueryProduct", &[("ProductKey", &pk)]).await;
    assert!(v["Data"]["GmtCreate"].is_u64(), "GmtCreate is int ms: {v}");
    assert_eq!(v["Data"]["DeviceCount"], 0, "{v}");
    assert_eq!(v["Data"]["ProductName"], "gateway product", "{v}");
    // A sub-device product: node type 0 with the protocol it speaks to its gateway.
    let v = api
        .ok(
            "CreateProduct",
            &[
                ("ProductName", "sub product"),
                ("NodeType", "0"),
                ("ProtocolType", "modbus"),
            ],
        )
        .await;
    let sub_pk = v["ProductKey"].as_str().expect("pk");
    assert_eq!(
        hub.service().product(sub_pk).await.expect("stored").node_type,
        aliot_hub::registry::NodeType::Sub
    );
    let v = api.ok("QueryProductList", &[("PageSize", "1")]).await;
    assert_eq!(v["Data"]["Total"], 2, "{v}");
    assert_eq!(v["Data"]["PageCount"], 2, "{v}");
    assert_eq!(v["Data"]["List"]["ProductInfo"].as_array().map(Vec::len), Some(1));
    // Refusals.
    let code = api
        .refused("CreateProduct", &[("ProductName", "gateway product")])
        .await;
    assert_eq!(code, "iot.prod.AlreadyExistedProductName");
    let code = api
        .refused("CreateProduct", &[("ProductName", "other"), ("NodeType", "7")])
        .await;
    assert_eq!(code, "iot.prod.InvalidNodeType");
    let code = api
        .refused("QueryProduct", &[("ProductKey", "nope12345ab")])
        .await;
    assert_eq!(code, "iot.prod.NotExistedProduct");
    let code = api.refused("QueryProductList", &[("PageSize", "500")]).await;
    assert_eq!(code, "iot.common.InvalidPageParams");
}

#[tokio::test]
async fn batch_registrations_keep_their_apply_ids_across_a_restart() {
    let hub = TestHub::start().await;
    let pk = hub.product().await;
    hub.register(&pk, "taken").await;
    let api = Api::new(&hub).await;
    // Names with a bad one, a taken one and a repeat: checked, and nothing registrable.
    let v = api
        .ok(
            "BatchCheckDeviceNames",
            &[
                ("ProductKey", &pk),
                ("DeviceName.1", "good-1"),
                ("DeviceName.2", "bad name!"),
                ("DeviceName.3", "taken"),
                ("DeviceName.4", "good-1"),
            ],
        )
        .await;
    let failed = v["Data"]["ApplyId"]
        .as_u64()
        .expect("ApplyId is a number")
        .to_string();
    assert_eq!(
        v["Data"]["InvalidDeviceNameList"]["InvalidDeviceName"],
        json!(["bad name!", "taken"]),
        "{v}"
    );
    assert_eq!(
        v["Data"]["RepeatedDeviceNameList"]["RepeatDevieNameList"],
        json!(["good-1"])
    );
    let v = api
        .ok(
            "QueryBatchRegisterDeviceStatus",
            &[("ProductKey", &pk), ("ApplyId", &failed)],
        )
        .await;
    assert_eq!(v["Data"]["Status"], "CHECK_FAILED", "{v}");
    let code = api
        .refused(
            "BatchRegisterDeviceWithApplyId",
            &[("ProductKey", &pk), ("ApplyId", &failed)],
        )
        .await;
    assert_eq!(code, "iot.device.InvalidFormattedDeviceName");
    // Good names (the list form of the body), then registered with the ApplyId.
    let v = api
        .ok(
            "BatchCheckDeviceNames",
            &[
                ("ProductKey", &pk),
                ("DeviceNameList.1.DeviceName", "line-1"),
                ("DeviceNameList.2.DeviceName", "line-2"),
            ],
        )
        .await;
    let named = v["Data"]["ApplyId"].as_u64().expect("ApplyId").to_string();
    let v = api
        .ok(
            "BatchRegisterDeviceWithApplyId",
            &[("ProductKey", &pk), ("ApplyId", &named)],
        )
        .await;
    assert_eq!(v["Data"]["ApplyId"].to_string(), named);
    hub.service().device(&pk, "line-2").await.expect("registered");
    // Generated names.
    let v = api
        .ok("BatchRegisterDevice", &[("ProductKey", &pk), ("Count", "3")])
        .await;
    let generated = v["Data"]["ApplyId"].as_u64().expect("ApplyId").to_string();
    let code = api
        .refused("BatchRegisterDevice", &[("ProductKey", &pk), ("Count", "10001")])
        .await;
    assert_eq!(code, "iot.device.DeviceCountExceeded");
    // After a restart the ApplyIds still name their devices.
    let dir = hub.stop().await;
    let hub = TestHub::start_in(dir).await;
    let api = Api::new(&hub).await;
    let v = api
        .ok(
            "QueryBatchRegisterDeviceStatus",
            &[("ProductKey", &pk), ("ApplyId", &named)],
        )
        .await;
    assert_eq!(v["Data"]["Status"], "CREATE_SUCCESS", "{v}");
    assert_eq!(v["Data"]["ValidList"]["Name"], json!(["line-1", "line-2"]), "{v}");
    let v = api
        .ok(
            "QueryPageByApplyId",
            &[("ApplyId", &generated), ("PageSize", "2")],
        )
        .await;
    assert_eq!(
        (v["Total"].as_u64(), v["PageCount"].as_u64()),
        (Some(3), Some(2)),
        "{v}"
    );
    let rows = v["ApplyDeviceList"]["ApplyDeviceInfo"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{v}");
    let dn = rows[0]["DeviceName"].as_str().expect("name");
    let stored = hub.service().device(&pk, dn).await.expect("registered");
    assert_eq!(rows[0]["DeviceSecret"], stored.device_secret.as_str());
    assert_eq!(rows[0]["IotId"], stored.iot_id.as_str());
    let code = api.refused("QueryPageByApplyId", &[("ApplyId", "42")]).await;
    assert_eq!(code, "iot.device.DeviceApplyIsNotFound");
}

#[tokio::test]
async fn thing_models_and_the_data_devices_post_read_back_as_strings() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("sensor").await;
    let api = Api::new(&hub).await;
    // No model yet: the platform's empty one.
    let v = api.ok("GetThingModelTsl", &[("ProductKey", &pk)]).await;
    let empty: Value =
        serde_json::from_str(v["Data"]["TslStr"].as_str().expect("TslStr is a string")).expect("JSON");
    assert_eq!(empty["properties"], json!([]), "{empty}");
    api.ok("ImportThingModelTsl", &[("ProductKey", &pk), ("TslStr", TSL)])
        .await;
    api.ok("PublishThingModel", &[("ProductKey", &pk)]).await;
    for action in ["GetThingModelTsl", "GetThingModelTslPublished"] {
        let v = api.ok(action, &[("ProductKey", &pk)]).await;
        let tsl: Value = serde_json::from_str(v["Data"]["TslStr"].as_str().expect("TslStr")).expect("JSON");
        assert_eq!(tsl["properties"][0]["identifier"], "Temperature", "{tsl}");
    }
    let code = api
        .refused(
            "ImportThingModelTsl",
            &[("ProductKey", &pk), ("TslStr", "{\"properties\":7}")],
        )
        .await;
    assert_eq!(code, "iot.common.InvalidFormattedParameter");
    // A device posts.
    let mut dev = online(&hub, &pk, &dn, &ds).await;
    let t0 = aliot_hub::clock::now_ms() - 60_000;
    for (i, t) in [20.5, 21.5, 22.5].iter().enumerate() {
        let body = json!({"id": format!("{i}"), "version": "1.0",
            "params": {"Temperature": {"value": t, "time": t0 + i as u64 * 1000}}});
        let reply = post(&mut dev, &pk, &dn, "property/post", body).await;
        assert_eq!(reply["code"], 200, "{reply}");
    }
    let body =
        json!({"id": "9", "version": "1.0", "params": {"value": {"Temperature": 99.5}, "time": t0 + 5000}});
    let reply = post(&mut dev, &pk, &dn, "Overheat/post", body).await;
    assert_eq!(reply["code"], 200, "{reply}");
    // The latest values: strings everywhere; a property never posted is listed without a value.
    let v = api
        .ok(
            "QueryDevicePropertyStatus",
            &[("ProductKey", &pk), ("DeviceName", &dn)],
        )
        .await;
    let rows = v["Data"]["List"]["PropertyStatusInfo"]
        .as_array()
        .expect("rows")
        .clone();
    let temp = rows
        .iter()
        .find(|r| r["Identifier"] == "Temperature")
        .expect("Temperature");
    assert_eq!(temp["Value"], "22.5", "{v}");
    assert_eq!(temp["Time"], (t0 + 2000).to_string(), "{v}");
    assert_eq!(
        (temp["Name"].as_str(), temp["DataType"].as_str()),
        (Some("Temp"), Some("float"))
    );
    assert_eq!(temp["Unit"], "°C", "{v}");
    let power = rows
        .iter()
        .find(|r| r["Identifier"] == "Power")
        .expect("Power listed");
    assert!(power.get("Value").is_none(), "{v}");
    // The kept values, newest first, two a page, continued with NextTime.
    let (start, end) = ((t0 + 10_000).to_string(), t0.to_string());
    let page = |start: String| {
        let (api, pk, dn, end) = (&api, pk.clone(), dn.clone(), end.clone());
        async move {
            api.ok(
                "QueryDevicePropertyData",
                &[
                    ("ProductKey", &pk),
                    ("DeviceName", &dn),
                    ("Identifier", "Temperature"),
                    ("StartTime", &start),
                    ("EndTime", &end),
                    ("PageSize", "2"),
                    ("Asc", "0"),
                ],
            )
            .await
        }
    };
    let v = page(start).await;
    assert_eq!(v["Data"]["NextValid"], true, "{v}");
    let values: Vec<&str> = v["Data"]["List"]["PropertyInfo"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["Value"].as_str())
        .collect();
    assert_eq!(values, ["22.5", "21.5"], "{v}");
    let next = v["Data"]["NextTime"].as_u64().expect("NextTime is a number");
    let v = page(next.to_string()).await;
    assert_eq!(v["Data"]["NextValid"], false, "{v}");
    assert_eq!(v["Data"]["List"]["PropertyInfo"][0]["Value"], "20.5", "{v}");
    // The plural form: Time is a number there.
    let v = api
        .ok(
            "QueryDevicePropertiesData",
            &[
                ("ProductKey", &pk),
                ("DeviceName", &dn),
                ("Identifier.1", "Temperature"),
                ("Identifier.2", "Power"),
                ("StartTime", &t0.to_string()),
                ("EndTime", &(t0 + 10_000).to_string()),
                ("PageSize", "10"),
                ("Asc", "1"),
            ],
        )
        .await;
    let infos = &v["PropertyDataInfos"]["PropertyDataInfo"];
    assert_eq!(infos[0]["List"]["PropertyInfo"][0]["Time"], t0, "{v}");
    assert_eq!(infos[0]["List"]["PropertyInfo"][0]["Value"], "20.5", "{v}");
    assert_eq!(infos[1]["List"]["PropertyInfo"], json!([]), "{v}");
    // Events: OutputData is a JSON string.
    let v = api
        .ok(
            "QueryDeviceEventData",
            &[
                ("ProductKey", &pk),
                ("DeviceName", &dn),
                ("StartTime", &t0.to_string()),
                ("EndTime", &(t0 + 10_000).to_string()),
                ("EventType", "alert"),
                ("Asc", "1"),
            ],
        )
        .await;
    let event = &v["Data"]["List"]["EventInfo"][0];
    assert_eq!(event["Identifier"], "Overheat", "{v}");
    assert_eq!(event["EventType"], "alert", "{v}");
    assert_eq!(event["Name"], "Too hot", "{v}");
    let output: Value = serde_json::from_str(event["OutputData"].as_str().expect("a string")).expect("JSON");
    assert_eq!(output, json!({"Temperature": 99.5}));
    assert_eq!(event["Time"], (t0 + 5000).to_string(), "{v}");
    // Bad ranges and pages.
    let code = api
        .refused(
            "QueryDevicePropertyData",
            &[
                ("ProductKey", &pk),
                ("DeviceName", &dn),
                ("Identifier", "Temperature"),
                ("StartTime", "1"),
            ],
        )
        .await;
    assert_eq!(code, "iot.common.InvalidFormattedParameter");
    let code = api
        .refused(
            "QueryDeviceEventData",
            &[("IotId", "nobody"), ("StartTime", "1"), ("EndTime", "2")],
        )
        .await;
    assert_eq!(code, "iot.device.NotExistedDevice");
}

#[tokio::test]
async fn shadows_and_desired_properties_are_set_and_read_as_json_strings() {
    let hub = TestHub::start().await;
    let (pk, dn, _) = hub.device("shadowed").await;
    let api = Api::new(&hub).await;
    let id = [("ProductKey", pk.as_str()), ("DeviceName", dn.as_str())];
    let v = api.ok("GetDeviceShadow", &id).await;
    let doc: Value = serde_json::from_str(v["ShadowMessage"].as_str().expect("a string")).expect("JSON");
    assert_eq!(doc["version"], 0, "{doc}");
    let message = r#"{"method":"update","state":{"desired":{"color":"green"}},"version":1}"#;
    api.ok("UpdateDeviceShadow", &[id[0], id[1], ("ShadowMessage", message)])
        .await;
    let merge = r#"{"method":"update","state":{"desired":{"size":3}},"version":2}"#;
    api.ok(
        "UpdateDeviceShadow",
        &[id[0], id[1], ("ShadowMessage", merge), ("DeltaUpdate", "True")],
    )
    .await;
    let v = api.ok("GetDeviceShadow", &id).await;
    let doc: Value = serde_json::from_str(v["ShadowMessage"].as_str().expect("a string")).expect("JSON");
    assert_eq!(
        doc["state"]["desired"],
        json!({"color": "green", "size": 3}),
        "{doc}"
    );
    assert_eq!(doc["version"], 2, "{doc}");
    for (message, code) in [
        ("not json", "iot.messagebroker.ShadowMessageIsNotJson"),
        (
            r#"{"method":"get","state":{"desired":{}},"version":3}"#,
            "iot.messagebroker.MethodValueIsNotUpdate",
        ),
        (
            r#"{"method":"update","version":3}"#,
            "iot.messagebroker.NotFoundStateInShadowMessage",
        ),
        (
            r#"{"method":"update","state":{"desired":{"a":1}},"version":2}"#,
            "iot.messagebroker.InvalidVersionValueInShadowMessage",
        ),
    ] {
        let got = api
            .refused("UpdateDeviceShadow", &[id[0], id[1], ("ShadowMessage", message)])
            .await;
        assert_eq!(got, code, "{message}");
    }
    let got = api.refused("UpdateDeviceShadow", &id).await;
    assert_eq!(got, "iot.messagebroker.NullShadowMessage");
    // Desired properties: Versions is a JSON string both ways.
    let v = api
        .ok(
            "SetDeviceDesiredProperty",
            &[id[0], id[1], ("Items", r#"{"Light":1,"Mode":"eco"}"#)],
        )
        .await;
    assert!(v["Data"]["MessageId"].is_string(), "{v}");
    let versions: Value =
        serde_json::from_str(v["Data"]["Versions"].as_str().expect("a string")).expect("JSON");
    assert_eq!(versions, json!({"Light": 1, "Mode": 1}));
    let code = api
        .refused(
            "SetDeviceDesiredProperty",
            &[
                id[0],
                id[1],
                ("Items", r#"{"Light":2}"#),
                ("Versions", r#"{"Light":7}"#),
            ],
        )
        .await;
    assert_eq!(code, "iot.common.InvalidFormattedParameter");
    let v = api
        .ok(
            "QueryDeviceDesiredProperty",
            &[id[0], id[1], ("Identifier.1", "Light")],
        )
        .await;
    let rows = v["Data"]["List"]["DesiredPropertyInfo"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(
        (rows[0]["Value"].as_str(), rows[0]["Version"].as_u64()),
        (Some("1"), Some(1))
    );
    let v = api
        .ok(
            "ClearDeviceDesiredProperty",
            &[id[0], id[1], ("Identifies.1", "Mode")],
        )
        .await;
    let versions: Value =
        serde_json::from_str(v["Data"]["Versions"].as_str().expect("a string")).expect("JSON");
    assert_eq!(versions, json!({"Mode": 2}));
}

#[tokio::test]
async fn topology_is_changed_with_signed_items_and_read_back() {
    let hub = TestHub::start().await;
    let (gw_pk, gw_dn, _) = hub.device("gw").await;
    let sub_pk = hub.product().await;
    let secret = hub.register(&sub_pk, "sub-1").await;
    let api = Api::new(&hub).await;
    let ts = "1524448722000";
    let sign = sub_sign(
        SubSignMethod::HMAC_SHA1,
        &secret,
        "sub-1-client",
        "sub-1",
        &sub_pk,
        ts,
        None,
        HexCase::Lower,
    );
    let mut item = vec![
        ("GwProductKey", gw_pk.as_str()),
        ("GwDeviceName", gw_dn.as_str()),
        ("TopoAddItem.1.ProductKey", sub_pk.as_str()),
        ("TopoAddItem.1.DeviceName", "sub-1"),
        ("TopoAddItem.1.ClientId", "sub-1-client"),
        ("TopoAddItem.1.Timestamp", ts),
        ("TopoAddItem.1.SignMethod", "hmacSha1"),
        ("TopoAddItem.1.Sign", "00"),
    ];
    let code = api.refused("BatchAddThingTopo", &item).await;
    assert_eq!(code, "iot.common.InvalidFormattedParameter");
    item[7].1 = &sign;
    api.ok("BatchAddThingTopo", &item).await;
    let v = api
        .ok(
            "GetThingTopo",
            &[
                ("ProductKey", &gw_pk),
                ("DeviceName", &gw_dn),
                ("PageNo", "1"),
                ("PageSize", "10"),
            ],
        )
        .await;
    assert_eq!(v["Data"]["Total"], 1, "{v}");
    let row = &v["Data"]["List"]["deviceInfo"][0];
    assert_eq!(
        (row["ProductKey"].as_str(), row["DeviceName"].as_str()),
        (Some(sub_pk.as_str()), Some("sub-1"))
    );
    let sub = hub.service().device(&sub_pk, "sub-1").await.expect("sub");
    assert_eq!(row["IotId"], sub.iot_id.as_str(), "{v}");
    let v = api.ok("GetGatewayBySubDevice", &[("IotId", &sub.iot_id)]).await;
    assert_eq!(v["Data"]["DeviceName"], gw_dn.as_str(), "{v}");
    assert_eq!(v["Data"]["Status"], "UNACTIVE", "{v}");
    assert!(v["Data"]["iotId"].is_string(), "lower-case iotId: {v}");
    let v = api
        .ok(
            "RemoveThingTopo",
            &[("ProductKey", &sub_pk), ("DeviceName", "sub-1")],
        )
        .await;
    assert_eq!(v["Data"], true, "{v}");
    let v = api
        .ok(
            "RemoveThingTopo",
            &[("ProductKey", &sub_pk), ("DeviceName", "sub-1")],
        )
        .await;
    assert_eq!(v["Data"], false, "{v}");
    let v = api
        .ok("GetThingTopo", &[("ProductKey", &gw_pk), ("DeviceName", &gw_dn)])
        .await;
    assert_eq!(v["Data"]["Total"], 0, "{v}");
    // The gateway is offline: nothing to notify.
    let list = json!([{"productKey": sub_pk, "deviceName": "sub-1"}]).to_string();
    let code = api
        .refused(
            "NotifyAddThingTopo",
            &[
                ("GwProductKey", &gw_pk),
                ("GwDeviceName", &gw_dn),
                ("DeviceListStr", &list),
            ],
        )
        .await;
    assert_eq!(code, "iot.messagebroker.OFFLINE");
}

#[tokio::test]
async fn ota_firmware_and_jobs_work_over_packages_uploaded_to_the_hub() {
    let hub = TestHub::start().await;
    let (pk, dn, _) = hub.device("ota-dev").await;
    let (s, text) = http(
        "POST",
        &format!("{}/api/v1/ota/packages?productKey={pk}&destVersion=2.0", hub.base),
        Some(TOKEN),
        Some("firmware bytes".repeat(100)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let package: Value = serde_json::from_str(&text).expect("JSON");
    let fw = package["firmwareId"].as_str().expect("firmwareId").to_owned();
    let api = Api::new(&hub).await;
    let code = api
        .refused(
            "CreateOTAFirmware",
            &[
                ("ProductKey", &pk),
                ("DestVersion", "2.0"),
                ("FirmwareUrl", "https://oss.example/a.bin"),
            ],
        )
        .await;
    assert_eq!(code, "iot.common.InvalidFormattedParameter");
    let url = format!("aliot://package/{fw}");
    let v = api
        .ok(
            "CreateOTAFirmware",
            &[
                ("ProductKey", &pk),
                ("DestVersion", "2.0"),
                ("FirmwareUrl", &url),
                ("FirmwareName", "fw"),
            ],
        )
        .await;
    assert_eq!(v["Data"]["FirmwareId"], fw.as_str(), "{v}");
    let v = api.ok("ListOTAFirmware", &[("ProductKey", &pk)]).await;
    assert_eq!(v["Total"], 1, "{v}");
    let info = &v["FirmwareInfo"]["SimpleFirmwareInfo"][0];
    assert_eq!(info["FirmwareSize"], 1400, "{v}");
    assert!(info["UtcCreate"].is_string(), "{v}");
    let v = api.ok("QueryOTAFirmware", &[("FirmwareId", &fw)]).await;
    assert!(
        v["FirmwareInfo"]["FirmwareUrl"]
            .as_str()
            .is_some_and(|u| u.contains(&fw)),
        "{v}"
    );
    // A static job for the one device.
    let v = api
        .ok(
            "CreateOTAStaticUpgradeJob",
            &[
                ("FirmwareId", &fw),
                ("ProductKey", &pk),
                ("TargetSelection", "SPECIFIC"),
                ("TargetDeviceName.1", &dn),
            ],
        )
        .await;
    let job = v["Data"]["JobId"].as_str().expect("JobId").to_owned();
    let v = api.ok("QueryOTAJob", &[("JobId", &job)]).await;
    assert_eq!(v["Data"]["JobStatus"], "IN_PROGRESS", "{v}");
    assert_eq!(v["Data"]["DestVersion"], "2.0", "{v}");
    let v = api.ok("ListOTAJobByFirmware", &[("FirmwareId", &fw)]).await;
    assert_eq!(v["Data"]["SimpleOTAJobInfo"][0]["JobId"], job.as_str(), "{v}");
    let v = api.ok("ListOTATaskByJob", &[("JobId", &job)]).await;
    let task = &v["Data"]["SimpleOTATaskInfo"][0];
    assert_eq!(
        (task["DeviceName"].as_str(), task["TaskStatus"].as_str()),
        (Some(dn.as_str()), Some("QUEUED"))
    );
    assert!(task["Progress"].is_string(), "{v}");
    let code = api.refused("DeleteOTAFirmware", &[("FirmwareId", &fw)]).await;
    assert_eq!(code, "iot.system.IllegalRequest");
    let code = api.refused("CancelOTATaskByJob", &[("JobId", &job)]).await;
    assert_eq!(code, "iot.common.InvalidFormattedParameter");
    api.ok(
        "CancelOTATaskByJob",
        &[("JobId", &job), ("CancelQueuedTask", "true")],
    )
    .await;
    let v = api
        .ok("ListOTATaskByJob", &[("JobId", &job), ("TaskStatus", "CANCELED")])
        .await;
    assert_eq!(v["Total"], 1, "{v}");
    api.ok("DeleteOTAFirmware", &[("FirmwareId", &fw)]).await;
    let v = api
        .ok(
            "ListOTAModuleVersionsByDevice",
            &[("ProductKey", &pk), ("DeviceName", &dn)],
        )
        .await;
    assert_eq!(v["Total"], 0, "{v}");
    // What the hub does not build is the platform's refusal, not an unknown action.
    let code = api.refused("GenerateOTAUploadURL", &[]).await;
    assert_eq!(code, "iot.system.IllegalRequest");
}

#[tokio::test]
async fn the_official_python_tea_sdk_parses_every_answer_with_its_models_types() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("tea-dev").await;
    let mut dev = online(&hub, &pk, &dn, &ds).await;
    let body = json!({"id": "1", "version": "1.0", "params": {"Temperature": 21.5, "Label": "x"}});
    let reply = post(&mut dev, &pk, &dn, "property/post", body).await;
    assert_eq!(reply["code"], 200, "{reply}");
    let (gw_pk, gw_dn, _) = hub.device("tea-gw").await;
    hub.register(&pk, "tea-sub").await;
    hub.service()
        .add_topology(&gw_pk, &gw_dn, vec![(pk.clone(), "tea-sub".to_owned())])
        .await
        .expect("topology");
    let tsl_pk = hub.product().await;
    let api = Api::new(&hub).await;
    let port = api
        .url
        .rsplit(':')
        .next()
        .expect("a port")
        .trim_end_matches('/')
        .to_owned();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/tea_actions.py");
    let mut cmd = std::process::Command::new(aliot_testkit::sdk_python());
    cmd.arg(script)
        .args([&port, &api.id, &api.secret, &pk, &dn, &gw_pk, &gw_dn, &tsl_pk]);
    let out = tokio::task::spawn_blocking(move || aliot_testkit::run_guarded(cmd))
        .await
        .expect("the SDK run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the script's JSON line");
    assert_eq!(report["mismatches"], json!([]), "{report}");
    let a = &report["answers"];
    assert!(a["CreateProduct"]["ProductKey"].is_string(), "{a}");
    let rows = &a["QueryDevicePropertyStatus"]["Data"]["List"]["PropertyStatusInfo"];
    let temp = rows
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["Identifier"] == "Temperature")
        .expect("Temperature");
    assert_eq!(temp["Value"], "21.5", "{a}");
    let tsl: Value = serde_json::from_str(a["GetThingModelTsl"]["Data"]["TslStr"].as_str().expect("TslStr"))
        .expect("JSON");
    assert_eq!(tsl["properties"][0]["identifier"], "Temperature", "{tsl}");
    let shadow: Value =
        serde_json::from_str(a["GetDeviceShadow"]["ShadowMessage"].as_str().expect("a string"))
            .expect("JSON");
    assert_eq!(shadow["state"]["desired"]["color"], "blue", "{shadow}");
    assert_eq!(
        a["GetThingTopo"]["Data"]["List"]["deviceInfo"][0]["DeviceName"], "tea-sub",
        "{a}"
    );
    assert_eq!(a["QueryPageByApplyId"]["Total"], 2, "{a}");
    assert_eq!(
        a["QueryProductMissing"]["Code"], "iot.prod.NotExistedProduct",
        "{a}"
    );
}

/// Publishes an OTA report (`inform` or `progress`) of the default module, then waits for the
/// answer to a `thing.ota.firmware.get`: uplinks of one connection are handled in order, so the
/// report was handled too.
async fn ota_report(dev: &mut Raw, pk: &str, dn: &str, kind: &str, params: Value) {
    let body = json!({"id": 1, "params": params}).to_string();
    dev.publish(
        &format!("/ota/device/{kind}/{pk}/{dn}"),
        &body,
        QoS::AtMostOnce,
        0,
    )
    .await;
    dev.publish(
        &format!("/sys/{pk}/{dn}/thing/ota/firmware/get"),
        r#"{"id":"9","version":"1.0","params":{},"method":"thing.ota.firmware.get"}"#,
        QoS::AtMostOnce,
        0,
    )
    .await;
    while !dev.publish_in().await.topic.ends_with("/firmware/get_reply") {}
}

#[tokio::test]
async fn an_ota_job_made_through_the_api_upgrades_an_online_device() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("ota-online").await;
    let mut dev = Raw::online(
        hub.mqtt,
        &creds_with(&Signing {
            product_key: &pk,
            device_name: &dn,
            secret: &ds,
            ..Signing::default()
        }),
    )
    .await;
    let upgrade = format!("/ota/device/upgrade/{pk}/{dn}");
    let reply = format!("/sys/{pk}/{dn}/thing/ota/firmware/get_reply");
    dev.subscribe(
        1,
        &[
            (upgrade.as_str(), QoS::AtLeastOnce),
            (reply.as_str(), QoS::AtMostOnce),
        ],
    )
    .await;
    ota_report(&mut dev, &pk, &dn, "inform", json!({"version": "1.0"})).await;
    let (s, text) = http(
        "POST",
        &format!("{}/api/v1/ota/packages?productKey={pk}&destVersion=2.0", hub.base),
        Some(TOKEN),
        Some("new firmware".to_owned()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let fw = serde_json::from_str::<Value>(&text).expect("JSON")["firmwareId"]
        .as_str()
        .expect("firmwareId")
        .to_owned();
    let api = Api::new(&hub).await;
    let v = api
        .ok(
            "ListOTAModuleVersionsByDevice",
            &[("ProductKey", &pk), ("DeviceName", &dn)],
        )
        .await;
    assert_eq!(v["Data"]["SimpleOTAModuleInfo"][0]["ModuleVersion"], "1.0", "{v}");
    let v = api
        .ok(
            "CreateOTADynamicUpgradeJob",
            &[("FirmwareId", &fw), ("ProductKey", &pk), ("SrcVersion.1", "1.0")],
        )
        .await;
    let job = v["Data"]["JobId"].as_str().expect("JobId").to_owned();
    // The push reaches the device; it reports progress, then the new version.
    let push = loop {
        let p = dev.publish_in().await;
        if p.topic.starts_with("/ota/device/upgrade/") {
            break json(&p);
        }
    };
    assert_eq!(push["data"]["version"], "2.0", "{push}");
    ota_report(
        &mut dev,
        &pk,
        &dn,
        "progress",
        json!({"step": "50", "desc": "half"}),
    )
    .await;
    let v = api.ok("ListOTATaskByJob", &[("JobId", &job)]).await;
    let task = &v["Data"]["SimpleOTATaskInfo"][0];
    assert_eq!(
        (task["TaskStatus"].as_str(), task["Progress"].as_str()),
        (Some("IN_PROGRESS"), Some("50")),
        "{v}"
    );
    assert_eq!(task["SrcVersion"], "1.0", "{v}");
    ota_report(&mut dev, &pk, &dn, "inform", json!({"version": "2.0"})).await;
    let v = api
        .ok(
            "ListOTATaskByJob",
            &[("JobId", &job), ("TaskStatus", "SUCCEEDED")],
        )
        .await;
    assert_eq!(v["Total"], 1, "{v}");
    // A dynamic job runs on until its strategy is canceled.
    api.ok("CancelOTAStrategyByJob", &[("JobId", &job)]).await;
    let v = api.ok("QueryOTAJob", &[("JobId", &job)]).await;
    assert_eq!(v["Data"]["JobStatus"], "CANCELED", "{v}");
    assert_eq!(v["Data"]["SelectionType"], "DYNAMIC", "{v}");
    let v = api
        .ok(
            "ListOTATaskByJob",
            &[("JobId", &job), ("TaskStatus", "SUCCEEDED")],
        )
        .await;
    assert_eq!(v["Total"], 1, "the finished task stays: {v}");
}
