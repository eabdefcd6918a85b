//! `aliot admin set-property` / `invoke` against a product with a thing model (issue 11): a call
//! that breaks the model is refused by the hub before it is sent, and the command prints the
//! platform's code and the identifier.

use aliot_testkit::{HubProcess, admin, ok_json, stderr};

const TSL: &str = r#"{"properties":[
  {"identifier":"Brightness","name":"b","accessMode":"rw","dataType":{"type":"int","specs":{"min":"0","max":"100"}}}],
 "services":[{"identifier":"Blink","name":"b","callType":"sync",
   "inputData":[{"identifier":"Times","name":"t","dataType":{"type":"int","specs":{"min":"1","max":"10"}}}],
   "outputData":[]}]}"#;

#[test]
fn set_property_and_invoke_print_the_thing_models_refusal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _hub = HubProcess::start(dir.path(), &[]);
    let d = dir.path();
    ok_json(&admin(
        d,
        &["product", "create", "--name", "p", "--product-key", "a1Model"],
    ));
    ok_json(&admin(
        d,
        &[
            "device",
            "create",
            "--product-key",
            "a1Model",
            "--device-name",
            "lamp",
        ],
    ));
    let file = d.join("model.json");
    std::fs::write(&file, TSL).expect("TSL file");
    let file = file.to_str().expect("utf-8 path");
    ok_json(&admin(
        d,
        &[
            "product",
            "tsl",
            "import",
            "--product-key",
            "a1Model",
            "--file",
            file,
        ],
    ));
    let target = ["--product-key", "a1Model", "--device-name", "lamp"];

    let out = admin(
        d,
        &[
            &["set-property"],
            &target[..],
            &["--params", r#"{"Brightness":"50"}"#],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("400 thing_model"), "{text}");
    assert!(text.contains("code 6306"), "{text}");
    assert!(text.contains("Brightness"), "{text}");

    let out = admin(
        d,
        &[
            &["invoke"],
            &target[..],
            &["--service", "Blink", "--params", r#"{"Times":0}"#],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("400 thing_model"), "{text}");
    assert!(text.contains("code 6306") && text.contains("Times"), "{text}");

    // A valid call passes the model and meets the offline device.
    let out = admin(
        d,
        &[
            &["set-property"],
            &target[..],
            &["--params", r#"{"Brightness":50}"#],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("device_offline"), "{}", stderr(&out));
}
