//! OTA from the command line against a hub process (issue 12): `aliot admin ota package
//! upload|list|show|delete`, `aliot admin ota job create|list|show|cancel`; what the hub
//! acknowledged (packages, jobs, task states) survives `kill -9`.

use std::path::Path;

use aliot_testkit::{HubProcess, admin, ok_json, stderr};

const PK: &str = "a1OtaCli01";

fn ota(d: &Path, args: &[&str]) -> serde_json::Value {
    ok_json(&admin(d, &[&["ota"], args].concat()))
}

#[test]
fn packages_and_jobs_from_the_cli_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut hub = HubProcess::start(d, &[]);
    ok_json(&admin(
        d,
        &["product", "create", "--name", "p", "--product-key", PK],
    ));
    for dn in ["dev-a", "dev-b"] {
        ok_json(&admin(
            d,
            &["device", "create", "--product-key", PK, "--device-name", dn],
        ));
    }
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("fw.bin");
    let body: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &body).expect("the file");
    let package = ota(
        d,
        &[
            "package",
            "upload",
            "--product-key",
            PK,
            "--file",
            file.to_str().expect("utf8"),
            "--version",
            "2.0.0",
            "--module",
            "mcu",
            "--sign-method",
            "sha256",
        ],
    );
    assert_eq!(package["firmwareSize"], 70_000, "{package}");
    assert_eq!(package["signMethod"], "SHA256", "{package}");
    assert_eq!(package["moduleName"], "mcu", "{package}");
    let fw = package["firmwareId"].as_str().expect("id").to_owned();
    let listed = ota(d, &["package", "list", "--product-key", PK]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    let a = ota(
        d,
        &[
            "job",
            "create",
            "--firmware-id",
            &fw,
            "--device",
            "dev-a",
            "--max-per-minute",
            "10",
        ],
    );
    assert_eq!(a["counts"]["QUEUED"], 1, "{a}");
    let b = ota(
        d,
        &[
            "job",
            "create",
            "--product-key",
            PK,
            "--version",
            "2.0.0",
            "--module",
            "mcu",
            "--device",
            "dev-b",
        ],
    );
    let b_id = b["jobId"].as_str().expect("id").to_owned();
    let canceled = ota(d, &["job", "cancel", &b_id]);
    assert_eq!(canceled["jobStatus"], "CANCELED", "{canceled}");
    assert_eq!(canceled["counts"]["CANCELED"], 1, "{canceled}");
    // Unknown version: refused with the hub's message.
    let out = admin(
        d,
        &[
            "ota",
            "job",
            "create",
            "--product-key",
            PK,
            "--version",
            "9.9",
            "--module",
            "mcu",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("9.9"), "{}", stderr(&out));

    hub.kill_9();
    let _hub = HubProcess::start(d, &[]);
    let shown = ota(d, &["package", "show", &fw]);
    assert_eq!(shown["firmwareSign"], package["firmwareSign"], "{shown}");
    let a = ota(d, &["job", "show", a["jobId"].as_str().expect("id")]);
    assert_eq!(a["counts"]["QUEUED"], 1, "{a}");
    assert_eq!(a["maximumPerMinute"], 10, "{a}");
    let b = ota(d, &["job", "show", &b_id]);
    assert_eq!(b["jobStatus"], "CANCELED", "{b}");
    assert_eq!(b["tasks"][0]["taskStatus"], "CANCELED", "{b}");
    let jobs = ota(d, &["job", "list"]);
    assert_eq!(jobs.as_array().map(Vec::len), Some(2), "{jobs}");
    let device = ok_json(&admin(
        d,
        &["device", "show", "--product-key", PK, "--device-name", "dev-a"],
    ));
    assert!(device["otaModules"].is_object(), "{device}");
    // A package a running job uses cannot go; once its job is canceled it can.
    let out = admin(d, &["ota", "package", "delete", &fw]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    ota(d, &["job", "cancel", a["jobId"].as_str().expect("id")]);
    ota(d, &["package", "delete", &fw]);
}
