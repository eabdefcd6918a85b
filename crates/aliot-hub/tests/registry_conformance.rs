//! The registry's behaviour, the same for every implementation: each check runs against the
//! embedded registry (`RedbRegistry`, a temporary directory) and the registry on PostgreSQL
//! (`PgRegistry`, on a PostgreSQL started for the test by `scripts/local-infra.sh`). Then what
//! only PostgreSQL has: two processes sharing one database, and an outage.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use aliot_hub::config::RegistryConfig;
use aliot_hub::registry::{
    Enrolment, Error, NewDevice, PgRegistry, ProductTsl, RedbRegistry, Registry, SavedMessage, SessionChange,
};
use aliot_testkit::guard;
use aliot_testkit::infra::Infra;
use bytes::Bytes;

/// Where a registry lives, so that it can be opened again.
enum Backend {
    Redb(tempfile::TempDir),
    Pg(Infra),
}

impl Backend {
    fn redb() -> Backend {
        Backend::Redb(tempfile::tempdir().expect("tempdir"))
    }

    fn pg() -> Backend {
        Backend::Pg(Infra::postgres())
    }

    async fn open(&self) -> Arc<dyn Registry> {
        match self {
            Backend::Redb(dir) => Arc::new(RedbRegistry::open(dir.path()).await.expect("open redb")),
            Backend::Pg(infra) => Arc::new(
                PgRegistry::connect(infra.pg(), &RegistryConfig::default(), None)
                    .await
                    .expect("connect to PostgreSQL"),
            ),
        }
    }
}

/// Waits (guarded) until `check` holds: for what a registry does in the background.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    guard(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

async fn products_and_devices(b: Backend) {
    let r = b.open().await;
    let p = r.create_product("lamps", None).await.expect("product");
    assert!(p.product_key.starts_with("a1") && p.product_key.len() == 11);
    assert_eq!(p.product_secret.len(), 32);
    assert!(!p.dynamic_registration);
    let given = r
        .create_product("given", Some("a1given0001"))
        .await
        .expect("given key");
    assert_eq!(given.product_key, "a1given0001");
    assert!(matches!(
        r.create_product("again", Some("a1given0001")).await,
        Err(Error::ProductExists { .. })
    ));
    assert!(matches!(
        r.create_product("", None).await,
        Err(Error::InvalidArgument(_))
    ));
    let pk = p.product_key.clone();
    let made = r
        .create_devices(
            &pk,
            vec![
                NewDevice::named("b"),
                NewDevice {
                    device_name: "a".into(),
                    device_secret: Some("s".repeat(32)),
                },
            ],
            false,
        )
        .await
        .expect("batch");
    assert_eq!(
        made.iter().map(|d| d.device_name.as_str()).collect::<Vec<_>>(),
        ["b", "a"],
        "in the order given"
    );
    assert_eq!(made[1].device_secret, "s".repeat(32));
    assert!(made.iter().all(|d| d.enabled && d.last_online_ms.is_none()));
    // A batch with an existing device creates nothing.
    let clash = r
        .create_devices(&pk, vec![NewDevice::named("c"), NewDevice::named("a")], false)
        .await;
    assert!(matches!(clash, Err(Error::DeviceExists { ref device_name, .. }) if device_name == "a"));
    assert!(r.device(&pk, "c").await.expect("read").is_none());
    // skip_existing returns the existing one as it is.
    let skipped = r
        .create_devices(&pk, vec![NewDevice::named("a"), NewDevice::named("c")], true)
        .await
        .expect("skip existing");
    assert_eq!(skipped[0], made[1]);
    assert_eq!(skipped[1].device_name, "c");
    assert!(matches!(
        r.create_devices(&pk, vec![NewDevice::named("x"), NewDevice::named("x")], false)
            .await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        r.create_devices("a1nosuchpk1", vec![NewDevice::named("x")], false)
            .await,
        Err(Error::ProductNotFound { .. })
    ));
    let names: Vec<String> = r
        .devices(&pk)
        .await
        .expect("devices")
        .into_iter()
        .map(|d| d.device_name)
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(matches!(
        r.devices("a1nosuchpk1").await,
        Err(Error::ProductNotFound { .. })
    ));
    let again = r.product(&pk).await.expect("read").expect("product");
    assert_eq!(again.device_count, 3);
    assert_eq!(again.product_secret, p.product_secret);
    let all: Vec<String> = r
        .products()
        .await
        .expect("products")
        .into_iter()
        .map(|p| p.product_key)
        .collect();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
    assert_eq!(all.len(), 2);

    // What was acknowledged is there after a reopen.
    r.close().await;
    drop(r);
    let r = b.open().await;
    assert_eq!(r.devices(&pk).await.expect("devices").len(), 3);
    let a = r.device(&pk, "a").await.expect("read").expect("a");
    assert_eq!(a, made[1]);
    r.close().await;
}

async fn enable_disable_delete(b: Backend) {
    let r = b.open().await;
    let pk = r.create_product("p", None).await.expect("product").product_key;
    assert!(r.device_auth(&pk, "d").await.is_none(), "unknown before");
    let d = r
        .create_devices(&pk, vec![NewDevice::named("d")], false)
        .await
        .expect("device")
        .remove(0);
    let auth = r.device_auth(&pk, "d").await.expect("known once registered");
    assert_eq!(auth.device_secret, d.device_secret);
    assert_eq!(auth.iot_id, d.iot_id);
    assert!(auth.enabled);
    let off = r.set_enabled(&pk, "d", false).await.expect("disable");
    assert!(!off.enabled);
    assert!(!r.device_auth(&pk, "d").await.expect("still known").enabled);
    r.set_enabled(&pk, "d", true).await.expect("enable");
    assert!(r.device_auth(&pk, "d").await.expect("known").enabled);
    let gone = r.delete_device(&pk, "d").await.expect("delete");
    assert_eq!(gone.device_name, "d");
    assert!(r.device_auth(&pk, "d").await.is_none());
    assert!(r.device(&pk, "d").await.expect("read").is_none());
    assert!(matches!(
        r.delete_device(&pk, "d").await,
        Err(Error::DeviceNotFound { .. })
    ));
    assert!(matches!(
        r.set_enabled(&pk, "d", true).await,
        Err(Error::DeviceNotFound { .. })
    ));
    r.close().await;
}

async fn dynamic_registration(b: Backend) {
    let r = b.open().await;
    let pk = r.create_product("p", None).await.expect("product").product_key;
    assert!(!r.product_auth(&pk).await.expect("known").dynamic_registration);
    assert!(
        r.set_dynamic_registration(&pk, true)
            .await
            .expect("allow")
            .dynamic_registration
    );
    assert!(r.product_auth(&pk).await.expect("known").dynamic_registration);
    assert!(matches!(
        r.enrol(&pk, "pre", Enrolment::PreRegistered).await,
        Err(Error::DeviceNotFound { .. })
    ));
    let first = r
        .enrol(&pk, "new", Enrolment::NoPreRegistration)
        .await
        .expect("regnwl creates");
    let token = first.device_token.clone().expect("a token");
    assert_eq!(
        first.device.dynamic_registration,
        Some(Enrolment::NoPreRegistration)
    );
    assert_eq!(r.device_token(&pk, "new").await.as_deref(), Some(token.as_str()));
    let second = r
        .enrol(&pk, "new", Enrolment::NoPreRegistration)
        .await
        .expect("again before login");
    assert_ne!(second.device_token, Some(token));
    assert_eq!(r.device_token(&pk, "new").await, second.device_token);

    let pre = r
        .create_devices(&pk, vec![NewDevice::named("pre")], false)
        .await
        .expect("device")
        .remove(0);
    let enrolled = r
        .enrol(&pk, "pre", Enrolment::PreRegistered)
        .await
        .expect("register");
    assert_ne!(enrolled.device.device_secret, pre.device_secret, "a new secret");
    assert_eq!(
        r.device_auth(&pk, "pre").await.expect("known").device_secret,
        enrolled.device.device_secret
    );
    // Once it logged in, it is activated.
    r.device_online(&pk, "pre", IpAddr::V4(Ipv4Addr::LOCALHOST), 1_700_000_000_000);
    eventually("the login to be recorded", || {
        let r = r.clone();
        let pk = pk.clone();
        async move {
            r.device(&pk, "pre")
                .await
                .ok()
                .flatten()
                .is_some_and(|d| d.last_online_ms == Some(1_700_000_000_000))
        }
    })
    .await;
    let d = r.device(&pk, "pre").await.expect("read").expect("pre");
    assert_eq!(d.last_ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert!(matches!(
        r.enrol(&pk, "pre", Enrolment::PreRegistered).await,
        Err(Error::AlreadyActivated { .. })
    ));
    let reset = r.reset_device(&pk, "pre").await.expect("reset");
    assert_eq!(reset.last_online_ms, None);
    r.enrol(&pk, "pre", Enrolment::PreRegistered)
        .await
        .expect("registrable again");
    r.set_enabled(&pk, "pre", false).await.expect("disable");
    assert!(matches!(
        r.enrol(&pk, "pre", Enrolment::PreRegistered).await,
        Err(Error::DeviceDisabled { .. })
    ));
    r.close().await;
}

fn message(id: u64, topic: &str) -> SavedMessage {
    SavedMessage {
        id,
        topic: topic.into(),
        payload: Bytes::from(format!("payload {id}")),
        queued_ms: 1_700_000_000_000 + id,
    }
}

async fn saved_sessions(b: Backend) {
    let r = b.open().await;
    let (pk, dn) = ("a1session01".to_owned(), "dev".to_owned());
    let put = |replace| SessionChange::Put {
        product_key: pk.clone(),
        device_name: dn.clone(),
        subscriptions: vec![("/a1session01/dev/user/get".into(), 1)],
        auto_subscribe: true,
        replace,
    };
    let add = |id| SessionChange::AddMessage {
        product_key: pk.clone(),
        device_name: dn.clone(),
        message: message(id, "/a1session01/dev/user/get"),
    };
    r.save_sessions(vec![put(true), add(1), add(2), add(3)])
        .await
        .expect("save");
    r.save_sessions(vec![SessionChange::RemoveMessage {
        product_key: pk.clone(),
        device_name: dn.clone(),
        id: 2,
    }])
    .await
    .expect("acknowledged");
    r.save_sessions(vec![SessionChange::Put {
        product_key: "a1session01".into(),
        device_name: "other".into(),
        subscriptions: vec![],
        auto_subscribe: false,
        replace: true,
    }])
    .await
    .expect("other");
    r.save_sessions(vec![SessionChange::Delete {
        product_key: "a1session01".into(),
        device_name: "other".into(),
    }])
    .await
    .expect("delete");
    r.close().await;
    drop(r);

    let r = b.open().await;
    let sessions = r.sessions().await.expect("sessions");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let s = &sessions[0];
    assert_eq!(
        (s.product_key.as_str(), s.device_name.as_str()),
        ("a1session01", "dev")
    );
    assert_eq!(s.subscriptions, [("/a1session01/dev/user/get".to_owned(), 1)]);
    assert!(s.auto_subscribe);
    assert_eq!(
        s.messages,
        [
            message(1, "/a1session01/dev/user/get"),
            message(3, "/a1session01/dev/user/get")
        ]
    );
    // A session started afresh drops its messages.
    r.save_sessions(vec![put(true)]).await.expect("fresh");
    assert!(r.sessions().await.expect("sessions")[0].messages.is_empty());
    r.close().await;
}

const TSL: &str = include_str!("../../aliot-protocol/tests/data/tsl-lamp.json");

async fn thing_models(b: Backend) {
    let r = b.open().await;
    let pk = r.create_product("p", None).await.expect("product").product_key;
    assert!(r.tsl(&pk).is_none());
    let tsl = ProductTsl::from_json(TSL.to_owned()).expect("the lamp's TSL");
    r.set_tsl(&pk, Some(tsl.clone())).await.expect("import");
    assert_eq!(r.tsl(&pk).expect("imported").json, TSL);
    assert!(matches!(
        r.set_tsl("a1nosuchpk1", Some(tsl)).await,
        Err(Error::ProductNotFound { .. })
    ));
    r.close().await;
    drop(r);
    let r = b.open().await;
    assert_eq!(r.tsl(&pk).expect("kept").json, TSL);
    r.set_tsl(&pk, None).await.expect("remove");
    assert!(r.tsl(&pk).is_none());
    r.close().await;
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod redb {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(super::Backend::redb()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(super::Backend::pg()).await;
                }
            )*
        }
    };
}

conformance!(
    products_and_devices,
    enable_disable_delete,
    dynamic_registration,
    saved_sessions,
    thing_models,
);

async fn pg_registry(infra: &Infra) -> Arc<dyn Registry> {
    Arc::new(
        PgRegistry::connect(infra.pg(), &RegistryConfig::default(), None)
            .await
            .expect("connect"),
    )
}

/// Two hub processes on one database: a change made through one reaches the other's cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_registries_share_changes() {
    let infra = Infra::postgres();
    let (a, b) = (pg_registry(&infra).await, pg_registry(&infra).await);
    let pk = a.create_product("p", None).await.expect("product").product_key;
    // B caches "unknown", then A registers the device.
    assert!(b.device_auth(&pk, "d").await.is_none());
    a.create_devices(&pk, vec![NewDevice::named("d")], false)
        .await
        .expect("device");
    eventually("B to see the new device", || {
        let (b, pk) = (b.clone(), pk.clone());
        async move { b.device_auth(&pk, "d").await.is_some() }
    })
    .await;
    assert!(b.device_auth(&pk, "d").await.expect("cached").enabled);
    a.set_enabled(&pk, "d", false).await.expect("disable on A");
    eventually("B to see the disable", || {
        let (b, pk) = (b.clone(), pk.clone());
        async move { b.device_auth(&pk, "d").await.is_some_and(|d| !d.enabled) }
    })
    .await;
    b.set_dynamic_registration(&pk, true).await.expect("on B");
    eventually("A to see the product change", || {
        let (a, pk) = (a.clone(), pk.clone());
        async move { a.product_auth(&pk).await.is_some_and(|p| p.dynamic_registration) }
    })
    .await;
    let tsl = ProductTsl::from_json(TSL.to_owned()).expect("the lamp's TSL");
    b.set_tsl(&pk, Some(tsl)).await.expect("a thing model on B");
    eventually("A to see the thing model", || {
        let (a, pk) = (a.clone(), pk.clone());
        async move { a.tsl(&pk).is_some() }
    })
    .await;
    a.delete_device(&pk, "d").await.expect("delete on A");
    eventually("B to see the deletion", || {
        let (b, pk) = (b.clone(), pk.clone());
        async move { b.device_auth(&pk, "d").await.is_none() }
    })
    .await;
    // Both started on the same schema: the second found the migrations applied.
    a.close().await;
    b.close().await;
}

/// PostgreSQL stops: the registry reports it, keeps answering CONNECTs of the devices it knows,
/// refuses writes; PostgreSQL comes back: healthy again and writes work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_reported_and_recovered() {
    let infra = Infra::postgres();
    let r = pg_registry(&infra).await;
    let pk = r.create_product("p", None).await.expect("product").product_key;
    r.create_devices(&pk, vec![NewDevice::named("d")], false)
        .await
        .expect("device");
    assert!(r.device_auth(&pk, "d").await.is_some());
    assert_eq!(r.health().storage_error, None);

    infra.stop_pg();
    eventually("the registry to report the outage", || {
        let r = r.clone();
        async move { r.health().storage_error.is_some() }
    })
    .await;
    assert!(r.health().storage_error.expect("an error").contains("PostgreSQL"));
    assert!(r.device_auth(&pk, "d").await.is_some(), "served from the cache");
    assert!(matches!(
        r.create_product("q", None).await,
        Err(Error::Storage { .. })
    ));

    infra.start_pg();
    eventually("the registry to recover", || {
        let r = r.clone();
        async move { r.health().storage_error.is_none() }
    })
    .await;
    assert!(r.health().reopens >= 1);
    r.create_devices(&pk, vec![NewDevice::named("e")], false)
        .await
        .expect("writes work again");
    assert!(r.device_auth(&pk, "e").await.is_some());
    r.close().await;
}
