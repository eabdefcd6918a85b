//! `aliot admin gateway topo …` and `aliot admin device show` against a hub process, and the
//! topology surviving `kill -9` (issue 13).

use aliot_testkit::{HubProcess, admin, ok_json, stderr};
use serde_json::json;

#[test]
fn topology_is_managed_from_the_command_line_and_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut hub = HubProcess::start(d, &[]);
    let v = ok_json(&admin(
        d,
        &[
            "product",
            "create",
            "--name",
            "gw",
            "--product-key",
            "a1GwCli",
            "--node-type",
            "gateway",
        ],
    ));
    assert_eq!(v["nodeType"], "gateway", "{v}");
    ok_json(&admin(
        d,
        &["product", "create", "--name", "sub", "--product-key", "a1SubCli"],
    ));
    let v = ok_json(&admin(
        d,
        &[
            "product",
            "update",
            "--product-key",
            "a1SubCli",
            "--node-type",
            "sub",
        ],
    ));
    assert_eq!(v["nodeType"], "sub", "{v}");
    for (pk, dn) in [("a1GwCli", "gw"), ("a1SubCli", "s1"), ("a1SubCli", "s2")] {
        ok_json(&admin(
            d,
            &["device", "create", "--product-key", pk, "--device-name", dn],
        ));
    }
    let gw = ["--product-key", "a1GwCli", "--device-name", "gw"];
    let v = ok_json(&admin(
        d,
        &[
            &["gateway", "topo", "add"][..],
            &gw[..],
            &["--sub", "a1SubCli/s1,a1SubCli/s2"],
        ]
        .concat(),
    ));
    assert_eq!(v["subDevices"].as_array().map(Vec::len), Some(2), "{v}");
    let v = ok_json(&admin(
        d,
        &[
            &["gateway", "topo", "remove"][..],
            &gw[..],
            &["--sub", "a1SubCli/s2"],
        ]
        .concat(),
    ));
    assert_eq!(
        v["subDevices"],
        json!([{"productKey": "a1SubCli", "deviceName": "s1", "online": false}])
    );
    // Adding the gateway to itself: the platform's code, exit status 1.
    let out = admin(
        d,
        &[&["gateway", "topo", "add"][..], &gw[..], &["--sub", "a1GwCli/gw"]].concat(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("6402"), "{}", stderr(&out));
    let out = admin(
        d,
        &[&["gateway", "topo", "add"][..], &gw[..], &["--sub", "bad"]].concat(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Acknowledged = durable: kill -9, restart, the topology is there.
    hub.kill_9();
    let _hub = HubProcess::start(d, &[]);
    let v = ok_json(&admin(d, &["product", "list"]));
    assert_eq!(v[0]["nodeType"], "gateway", "{v}");
    assert_eq!(v[1]["nodeType"], "sub", "{v}");
    let v = ok_json(&admin(d, &[&["gateway", "topo", "list"][..], &gw[..]].concat()));
    assert_eq!(v["subDevices"][0]["deviceName"], "s1", "{v}");
    let v = ok_json(&admin(
        d,
        &[
            "device",
            "show",
            "--product-key",
            "a1SubCli",
            "--device-name",
            "s1",
        ],
    ));
    assert_eq!(
        v["gateway"],
        json!({"productKey": "a1GwCli", "deviceName": "gw"}),
        "{v}"
    );
}
