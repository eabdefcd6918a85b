//! The registry: durability across restarts, the platform's view (`device_auth`), concurrency,
//! bounded properties, storage failures (with the `fault-injection` feature the hub's tests
//! enable) and damaged files.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use aliot_hub::admin::{AdminState, AdminToken, router};
use aliot_hub::config::RegistryConfig;
use aliot_hub::registry::{Error, NewDevice, RedbRegistry, Registry as _, RegistryCounts, StorageFault};
use aliot_hub::{Broker, BrokerConfig};
use aliot_testkit::{PK, Raw, SECRET, TOKEN, TestDevice, TestHub, creds, guard, http, http_json};
use hyper::StatusCode;
use serde_json::json;

/// Registers one device.
async fn create_device(
    store: &RedbRegistry,
    pk: &str,
    dn: &str,
    secret: Option<&str>,
) -> Result<aliot_hub::registry::Device, Error> {
    let new = NewDevice {
        device_name: dn.to_owned(),
        device_secret: secret.map(str::to_owned),
    };
    let mut created = store.create_devices(pk, vec![new], false).await?;
    Ok(created.pop().expect("one device"))
}

fn counts(products: u64, devices: u64) -> RegistryCounts {
    RegistryCounts {
        products,
        devices,
        online_updates_dropped: 0,
    }
}

#[tokio::test]
async fn registrations_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pk, secret, iot_id) = {
        let store = RedbRegistry::open(dir.path()).await.expect("open");
        let p = store.create_product("lamps", None).await.expect("product");
        let d = create_device(&store, &p.product_key, "lamp-1", None)
            .await
            .expect("device");
        store
            .create_devices(
                &p.product_key,
                vec![NewDevice::named("a"), NewDevice::named("b")],
                false,
            )
            .await
            .expect("batch");
        store
            .set_enabled(&p.product_key, "a", false)
            .await
            .expect("disable");
        store.delete_device(&p.product_key, "b").await.expect("delete");
        store.device_online(
            &p.product_key,
            "lamp-1",
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            1_700_000_000_000,
        );
        store.close().await;
        (p.product_key, d.device_secret, d.iot_id)
    };
    let store = RedbRegistry::open(dir.path()).await.expect("reopen");
    assert_eq!(store.counts(), counts(1, 2));
    let p = store.product(&pk).await.expect("read").expect("product kept");
    assert_eq!(p.name, "lamps");
    let d = store
        .device(&pk, "lamp-1")
        .await
        .expect("read")
        .expect("device kept");
    assert_eq!(
        (d.device_secret.as_str(), d.iot_id.as_str()),
        (secret.as_str(), iot_id.as_str())
    );
    assert_eq!(d.last_online_ms, Some(1_700_000_000_000));
    assert_eq!(d.last_ip, Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))));
    assert!(!store.device_auth(&pk, "a").await.expect("a kept").enabled);
    assert!(store.device_auth(&pk, "b").await.is_none());
}

#[tokio::test]
async fn device_auth_answers_from_memory_and_unknown_logins_are_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbRegistry::open(dir.path()).await.expect("open");
    store.create_product("p", Some("a1P")).await.expect("product");
    let d = create_device(&store, "a1P", "d", Some("s3cret"))
        .await
        .expect("device");
    let auth = store.device_auth("a1P", "d").await.expect("found");
    assert_eq!(auth.device_secret, "s3cret");
    assert_eq!(auth.iot_id, d.iot_id);
    assert!(auth.enabled);
    assert!(store.device_auth("a1P", "other").await.is_none());
    assert!(store.device_auth("a1Q", "d").await.is_none());
    store.device_online("a1P", "ghost", IpAddr::V4(Ipv4Addr::LOCALHOST), 5);
    assert_eq!(store.counts(), counts(1, 1));
    assert!(!format!("{auth:?}").contains("s3cret"));
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_create_one_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbRegistry::open(dir.path()).await.expect("open");
    store.create_product("p", Some("a1P")).await.expect("product");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { create_device(&s, "a1P", "same", None).await })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => created += 1,
            Err(Error::DeviceExists { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(created, 1);
    let p = store.product("a1P").await.expect("read").expect("product");
    assert_eq!(p.device_count, 1);
}

#[tokio::test]
async fn a_registry_open_elsewhere_is_reported_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = RedbRegistry::open(dir.path()).await.expect("open");
    let err = RedbRegistry::open(dir.path())
        .await
        .expect_err("second open refused");
    assert!(matches!(err, Error::Storage { .. }), "{err:?}");
    assert!(err.to_string().contains("registry.redb"), "{err}");
}

#[tokio::test]
async fn a_registered_device_still_authenticates_after_a_hub_restart() {
    let hub = TestHub::start().await;
    let (pk, dn, secret) = hub.device("persist").await;
    drop(TestDevice::connect(hub.mqtt, &pk, &dn, &secret).await);
    let dir = hub.stop().await;

    let hub = TestHub::start_in(dir).await;
    let (s, d) = hub
        .call("GET", &format!("/api/v1/products/{pk}/devices/{dn}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["deviceSecret"], secret.as_str());
    assert!(d["lastOnline"].as_u64().is_some(), "last login recorded: {d}");
    let _dev = TestDevice::connect(hub.mqtt, &pk, &dn, &secret).await;
    let (s, _) = hub
        .call(
            "POST",
            &format!("/api/v1/products/{pk}/devices"),
            Some(json!({"deviceName": dn})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    hub.stop().await;
}

/// Hardening 8: the registry holds every secret; other local users can read neither it nor the
/// directory it lives in.
#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_the_registry_are_private_to_the_hub_user() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let store = RedbRegistry::open(&data).await.expect("open");
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join(aliot_hub::registry::DB_FILE)), 0o600);
    store.close().await;
    drop(store);
    // An existing directory is tightened too, and the hub's generated token is private.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let hub = TestHub::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.data_dir = Some(data.clone());
        c.admin.token = None;
    })
    .await;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join(aliot_hub::config::TOKEN_FILE)), 0o600);
    hub.stop().await;
}

// ----- hardening 2, 7, 16, 19: bounded properties, storage failures, durability, damage -----

/// The stored last-online time of a device in a copy of a registry file, as redb reads it
/// after a crash (the copy is "open by a writer", so redb recovers it to its last durable
/// commit).
fn stored_last_online(copy: &std::path::Path, pk: &str, dn: &str) -> Option<u64> {
    const DEVICES: redb::TableDefinition<'_, (&str, &str), &[u8]> = redb::TableDefinition::new("devices");
    use redb::ReadableDatabase as _;
    let db = redb::Database::create(copy).expect("the copy opens");
    let txn = db.begin_read().expect("read");
    let table = txn.open_table(DEVICES).expect("the devices table");
    let record = table.get((pk, dn)).expect("read").expect("the device");
    let json: serde_json::Value = serde_json::from_slice(record.value()).expect("a JSON record");
    json["last_online_ms"].as_u64()
}

/// Hardening 16: the last login of a burst reaches the disk on the writer's 1 s timer, without
/// any later write. Time is tokio's paused clock: it moves only when every task is idle, and
/// never while a blocking commit runs, so "3 s later" means "after everything the timer
/// triggered has finished". The file is then copied, which is what a `kill -9` would leave, and
/// the copy opened with redb, which keeps only durable commits.
#[tokio::test(start_paused = true)]
async fn a_lone_login_becomes_durable_without_another_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbRegistry::open(dir.path()).await.expect("open");
    store.create_product("p", Some("a1P")).await.expect("product");
    create_device(&store, "a1P", "d", None).await.expect("device");
    // Within the first second after the last durable commit: written without an fsync.
    store.device_online("a1P", "d", IpAddr::V4(Ipv4Addr::LOCALHOST), 1_700_000_000_000);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let copy = dir.path().join("crash-copy.redb");
    std::fs::copy(store.path(), &copy).expect("copy");
    assert_eq!(
        stored_last_online(&copy, "a1P", "d"),
        Some(1_700_000_000_000),
        "the login is durable"
    );
    store.close().await;
}

/// Hardening 2: the registry keeps a bounded number of identifiers and bytes per device; a post
/// past either limit is refused whole.
#[tokio::test]
async fn remembered_properties_are_bounded_per_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = RegistryConfig {
        max_properties_per_device: 3,
        max_property_bytes_per_device: 1024,
        ..RegistryConfig::default()
    };
    let store = RedbRegistry::open_with(dir.path(), &config).await.expect("open");
    store.create_product("p", Some("a1P")).await.expect("product");
    create_device(&store, "a1P", "d", None).await.expect("device");
    let map = |v: serde_json::Value| v.as_object().cloned().expect("an object");
    store
        .remember_properties("a1P", "d", map(json!({"a": 1, "b": 2})))
        .expect("kept");
    let err = store
        .remember_properties("a1P", "d", map(json!({"a": 5, "c": 3, "e": 4})))
        .expect_err("a fourth identifier");
    assert!(
        matches!(
            err,
            Error::PropertyLimit {
                would_keep: 4,
                limit: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = store
        .remember_properties("a1P", "d", map(json!({"a": "x".repeat(2000)})))
        .expect_err("too many bytes");
    assert!(matches!(err, Error::PropertyLimit { limit: 1024, .. }), "{err}");
    // Neither refused post left anything behind.
    let kept = store.last_properties("a1P", "d").await.expect("kept");
    assert_eq!(serde_json::Value::Object(kept), json!({"a": 1, "b": 2}));
    assert_eq!(store.health().properties_refused, 2);
    // Settings that cannot work are refused.
    let bad = RegistryConfig {
        max_properties_per_device: 0,
        ..RegistryConfig::default()
    };
    let other = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        RedbRegistry::open_with(other.path(), &bad).await,
        Err(Error::InvalidArgument(_))
    ));
}

/// Hardening 19: one record that does not decode no longer stops the hub from starting: it is
/// skipped, logged, counted in /metrics and named in /healthz, and every other record works.
#[tokio::test]
async fn an_undecodable_record_is_skipped_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = {
        let store = RedbRegistry::open(dir.path()).await.expect("open");
        store.create_product("p", Some("a1P")).await.expect("product");
        let good = create_device(&store, "a1P", "good", None).await.expect("device");
        create_device(&store, "a1P", "bad", None).await.expect("device");
        store.close().await;
        good.device_secret
    };
    // Damage one device record and add an undecodable product, with redb itself.
    {
        const PRODUCTS: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("products");
        const DEVICES: redb::TableDefinition<'_, (&str, &str), &[u8]> = redb::TableDefinition::new("devices");
        let db = redb::Database::create(dir.path().join(aliot_hub::registry::DB_FILE)).expect("open");
        let txn = db.begin_write().expect("write");
        {
            let mut devices = txn.open_table(DEVICES).expect("devices");
            devices
                .insert(("a1P", "bad"), b"{\"device_secret\": 12".as_slice())
                .expect("insert");
            let mut products = txn.open_table(PRODUCTS).expect("products");
            products
                .insert("a1Broken", b"\xff\x00".as_slice())
                .expect("insert");
        }
        txn.commit().expect("commit");
    }

    let hub = TestHub::start_in(dir).await;
    let (s, d) = hub.call("GET", "/api/v1/products/a1P/devices/good", None).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let _dev = TestDevice::connect(hub.mqtt, "a1P", "good", &secret).await;
    let (s, _) = hub.call("GET", "/api/v1/products/a1P/devices/bad", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, health) = http_json("GET", &format!("{}/healthz", hub.base), None, None).await;
    assert_eq!(s, StatusCode::OK, "{health}");
    assert_eq!(health["status"], "ok");
    let warning = health["warnings"][0].as_str().expect("a warning");
    assert!(
        warning.contains("2 record(s)")
            && warning.contains("devices/a1P/bad")
            && warning.contains("products/a1Broken"),
        "{warning}"
    );
    let (_, metrics) = http("GET", &format!("{}/metrics", hub.base), None, None).await;
    assert!(
        metrics.contains("\naliot_hub_registry_records_skipped 2\n"),
        "{metrics}"
    );
    // Registering the device again overwrites the bad record.
    let (s, d) = hub
        .call(
            "POST",
            "/api/v1/products/a1P/devices",
            Some(json!({"deviceName": "bad"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    hub.stop().await;
}

/// A broker over a registry whose storage fails on demand, its MQTT listener on loopback, and
/// the admin API without a socket.
struct FaultyHub {
    fault: StorageFault,
    registry: Arc<RedbRegistry>,
    mqtt: std::net::SocketAddr,
    admin: axum::Router,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<aliot_hub::Result<()>>,
}

impl FaultyHub {
    /// Devices `dev1` and `dev2` of [`PK`] with [`SECRET`] registered.
    async fn start(dir: &std::path::Path) -> FaultyHub {
        let fault = StorageFault::new();
        let registry = Arc::new(
            RedbRegistry::open_with_fault(dir, &RegistryConfig::default(), fault.clone())
                .await
                .expect("open"),
        );
        registry.create_product("p", Some(PK)).await.expect("product");
        for dn in ["dev1", "dev2"] {
            create_device(&registry, PK, dn, Some(SECRET))
                .await
                .expect("device");
        }
        let broker = Broker::new(BrokerConfig::default(), registry.clone());
        let admin = router(AdminState::new(
            broker.service().clone(),
            AdminToken::new(TOKEN).expect("a token"),
        ));
        let listener = aliot_hub::bind_listener("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let mqtt = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            broker
                .serve(listener, None, async {
                    let _ = stopped.await;
                })
                .await
        });
        FaultyHub {
            fault,
            registry,
            mqtt,
            admin,
            stop: Some(stop),
            task,
        }
    }

    /// One admin request through the router: (status, JSON body or the text as a JSON string).
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        use tower::ServiceExt as _;
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            ))
            .expect("a request");
        let resp = self.admin.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("the body");
        let text = String::from_utf8(bytes.to_vec()).expect("utf8");
        let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, value)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        guard("the broker to stop", self.task)
            .await
            .expect("the serve task")
            .expect("a clean stop");
        self.registry.close().await;
    }
}

/// Hardening 7: after a storage failure /healthz says 503 with the reason, disabling a device
/// still disconnects it (and answers the error, not 200), and the next write reopens the file.
#[tokio::test]
async fn a_storage_failure_is_reported_and_repaired_and_disable_still_kicks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = FaultyHub::start(dir.path()).await;
    let device = format!("/api/v1/products/{PK}/devices/dev1");
    let (s, _) = hub.send("GET", "/healthz", None).await;
    assert_eq!(s, StatusCode::OK);
    let mut dev = Raw::online(hub.mqtt, &creds("dev1", "")).await;

    hub.fault.fail(true);
    let (s, e) = hub.send("PATCH", &device, Some(json!({"enabled": false}))).await;
    assert_eq!(
        (s, &e["code"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("storage_failed")),
        "{e}"
    );
    // Kicked all the same.
    dev.closed().await;
    let (s, health) = hub.send("GET", "/healthz", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["status"], "unavailable");
    assert_eq!(health["code"], "storage_failed");
    let message = health["message"].as_str().expect("a reason");
    assert!(message.contains("injected storage fault"), "{message}");
    let (_, metrics) = hub.send("GET", "/metrics", None).await;
    let metrics = metrics.as_str().expect("text");
    assert!(
        metrics.contains("\naliot_hub_registry_storage_ok 0\n"),
        "{metrics}"
    );
    // Reads are served from memory meanwhile; the change was not saved and is not shown.
    let (s, d) = hub.send("GET", &device, None).await;
    assert_eq!((s, &d["enabled"]), (StatusCode::OK, &json!(true)), "{d}");
    // A deletion that cannot be saved kicks the device too, and keeps it.
    let mut other = Raw::online(hub.mqtt, &creds("dev2", "")).await;
    let other_path = format!("/api/v1/products/{PK}/devices/dev2");
    let (s, e) = hub.send("DELETE", &other_path, None).await;
    assert_eq!(
        (s, &e["code"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("storage_failed")),
        "{e}"
    );
    other.closed().await;
    let (s, _) = hub.send("GET", &other_path, None).await;
    assert_eq!(s, StatusCode::OK);

    hub.fault.fail(false);
    let (s, d) = hub.send("PATCH", &device, Some(json!({"enabled": false}))).await;
    assert_eq!(s, StatusCode::OK, "the next write reopens the file: {d}");
    assert_eq!(d["enabled"], false);
    let (s, health) = hub.send("GET", "/healthz", None).await;
    assert_eq!(s, StatusCode::OK, "{health}");
    let h = hub.registry.health();
    assert_eq!((h.reopens, h.storage_error), (1, None));
    assert!(h.storage_failures >= 1);
    // And the file holds it.
    hub.stop().await;
    let store = RedbRegistry::open(dir.path()).await.expect("reopen");
    assert!(!store.device_auth(PK, "dev1").await.expect("kept").enabled);
}

/// Hardening 7: with nothing written, the registry reopens its file in the background once the
/// storage works again (retrying with a growing delay meanwhile). Paused clock, as above.
#[tokio::test(start_paused = true)]
async fn a_failed_registry_reopens_in_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fault = StorageFault::new();
    let store = RedbRegistry::open_with_fault(dir.path(), &RegistryConfig::default(), fault.clone())
        .await
        .expect("open");
    store.create_product("p", Some("a1P")).await.expect("product");
    create_device(&store, "a1P", "d", None).await.expect("device");
    fault.fail(true);
    let err = store.set_enabled("a1P", "d", false).await.expect_err("fails");
    assert!(matches!(err, Error::Storage { .. }), "{err:?}");
    assert!(store.health().storage_error.is_some());
    // While the storage fails, so do the retries.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let h = store.health();
    assert!(h.storage_error.is_some() && h.storage_failures >= 2, "{h:?}");
    fault.fail(false);
    // Past the longest delay between two retries.
    tokio::time::sleep(Duration::from_secs(61)).await;
    let h = store.health();
    assert_eq!((h.storage_error, h.reopens), (None, 1));
    store.set_enabled("a1P", "d", false).await.expect("writes work");
    store.close().await;
}

/// Hardening 19: the file's integrity is checked when it is opened; a file damaged beyond
/// repair is refused with an error that names it and says what to do (and redb does not panic
/// on it, as a plain open may).
#[tokio::test]
async fn a_damaged_registry_file_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = RedbRegistry::open(dir.path()).await.expect("open");
        store.create_product("p", Some("a1P")).await.expect("product");
        create_device(&store, "a1P", "d", None).await.expect("device");
        store.close().await;
    }
    // Every page after the header overwritten: no commit verifies any more.
    let path = dir.path().join(aliot_hub::registry::DB_FILE);
    let mut bytes = std::fs::read(&path).expect("read");
    for b in bytes.iter_mut().skip(4096) {
        *b = 0xa5;
    }
    std::fs::write(&path, &bytes).expect("write");
    let err = RedbRegistry::open(dir.path())
        .await
        .expect_err("a damaged file is refused");
    let text = err.to_string();
    assert!(
        text.contains("registry.redb") && text.contains("damaged beyond repair"),
        "{text}"
    );
}
