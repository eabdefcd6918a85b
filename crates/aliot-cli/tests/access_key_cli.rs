//! `aliot admin access-key …` against a hub process (issue 14): the secret is printed once at
//! creation, never listed, survives `kill -9`, and a deleted key is gone.

use aliot_testkit::{HubProcess, admin, ok_json, stderr};

#[test]
fn access_keys_are_created_listed_and_deleted_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut hub = HubProcess::start(d, &[]);
    assert!(
        hub.banner.iter().any(|l| l.trim_start().starts_with("openapi:")),
        "{:?}",
        hub.banner
    );
    let created = ok_json(&admin(d, &["access-key", "create", "--description", "backend"]));
    let id = created["accessKeyId"].as_str().expect("an id").to_owned();
    let secret = created["accessKeySecret"].as_str().expect("a secret").to_owned();
    assert!(id.starts_with("LTAI"), "{created}");
    assert_eq!(secret.len(), 30);

    let out = admin(d, &["access-key", "list"]);
    let listed = ok_json(&out);
    assert_eq!(listed[0]["accessKeyId"], id.as_str(), "{listed}");
    assert_eq!(listed[0]["description"], "backend");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&secret),
        "{listed}"
    );

    // Acknowledged = durable.
    hub.kill_9();
    let _hub = HubProcess::start(d, &[]);
    let listed = ok_json(&admin(d, &["access-key", "list"]));
    assert_eq!(listed[0]["accessKeyId"], id.as_str(), "{listed}");

    let v = ok_json(&admin(d, &["access-key", "delete", "--id", &id]));
    assert_eq!(v["deleted"], true, "{v}");
    let out = admin(d, &["access-key", "delete", "--id", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not_found"), "{}", stderr(&out));
    let listed = ok_json(&admin(d, &["access-key", "list"]));
    assert_eq!(listed, serde_json::json!([]));
}
