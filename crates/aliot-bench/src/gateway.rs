//! The `gateway` workload: G gateways, each speaking for S sub-devices over its one
//! connection (cloud-side §5).
//!
//! 1. Through the admin API: a gateway product and a sub-device product (created when missing,
//!    node types set), G gateways and G × S sub-devices (batch, existing ones kept).
//! 2. Each gateway connects (signed, `_ss=1`) and adds its S sub-devices to its topology with one
//!    signed `thing.topo.add` (the device path, exercised once per gateway).
//! 3. Login: every gateway logs its sub-devices in with `combine.batch_login`, at most 50 a
//!    batch, one batch in flight per gateway, all gateways at once; then subscribes, for each
//!    sub-device, its `post_reply` and `property/set` topics. Measured: the time until every
//!    sub-device is online, each batch's round trip.
//! 4. Posts: each gateway posts `posts_per_sub` property posts for each of its sub-devices on
//!    the sub-device's own topic (QoS 0, `window` waiting for their `post_reply` per gateway).
//!    Measured: replies per second, each post's round trip.
//! 5. Downlinks: `downlinks` property sets through the admin API to sub-devices (`concurrency`
//!    at once); the gateway answers each `set_reply` on the sub-device's behalf. Measured: the
//!    admin call's round trip.
//!
//! The hub's RSS (its `/metrics` on the admin API) is sampled once the topology is in place
//! and again once every sub-device is online: their difference over G × S is the memory of a
//! logged-in sub-device.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aliot_admin::{Call, CreateBatch, CreateProduct, NodeType};
use aliot_protocol::gateway::{BatchLogin, LoginParams, MAX_BATCH, SubSignMethod, TopoAddItem, topic};
use aliot_protocol::{DeviceIdentity, SignOptions};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{Barrier, Semaphore, watch};

use crate::error::{Error, Result};
use crate::report::{Format, Percentiles};
use crate::settings::AdminTarget;
use crate::stats::{new_hist, percentiles, round1, round3, unix_us};
use crate::wire::{
    ConnectAckReason, ConnectBuilder, Connection, Packet, QoS, SubscribeReturnCode, publish_packet,
};

/// Settings of the `gateway` workload.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// The hub's admin API (registration, property sets, `/metrics`).
    pub admin: AdminTarget,
    /// productKey of the gateway product (created when missing).
    pub gateway_product_key: String,
    /// productKey of the sub-device product (created when missing).
    pub sub_product_key: String,
    /// Name prefix of the devices: gateways `{prefix}gw-{i}`, sub-devices `{prefix}sub-{i}`.
    pub prefix: String,
    /// Number of gateways.
    pub gateways: usize,
    /// Sub-devices per gateway.
    pub subs_per_gateway: usize,
    /// Property posts per sub-device.
    pub posts_per_sub: usize,
    /// Posts a gateway may have waiting for their reply.
    pub window: usize,
    /// Property sets to sub-devices through the admin API.
    pub downlinks: usize,
    /// Admin calls in flight at once.
    pub concurrency: usize,
    /// Give up on a phase after this long.
    pub timeout: Duration,
    /// Notes on stderr while it runs.
    pub progress: bool,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 1883,
            admin: AdminTarget::new("http://127.0.0.1:8080", None),
            gateway_product_key: "a1GwBench".into(),
            sub_product_key: "a1SubBench".into(),
            prefix: "bench-".into(),
            gateways: 10,
            subs_per_gateway: 20,
            posts_per_sub: 10,
            window: 32,
            downlinks: 1000,
            concurrency: 32,
            timeout: Duration::from_secs(120),
            progress: false,
        }
    }
}

/// What the `gateway` workload measured.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySummary {
    /// Always `gateway`.
    pub workload: &'static str,
    /// Gateways connected.
    pub gateways: usize,
    /// Sub-devices (G × S).
    pub sub_devices: usize,
    /// Topology adds answered 200 (one per gateway).
    pub topo_adds: usize,
    /// Sub-devices logged in (batch login answered 200).
    pub logged_in: usize,
    /// From the first batch login to the last sub-device online, seconds.
    pub login_seconds: f64,
    /// Sub-devices logged in per second over that time.
    pub logins_per_second: f64,
    /// Batch login round trips, ms.
    pub batch_login_ms: Percentiles,
    /// Property posts sent.
    pub posts: u64,
    /// Posts answered with a `post_reply` (any code).
    pub posts_answered: u64,
    /// Posts answered with code 200.
    pub posts_ok: u64,
    /// Replies per second over the post phase.
    pub posts_answered_per_second: f64,
    /// Post → `post_reply` round trips, ms.
    pub post_ms: Percentiles,
    /// Property sets made.
    pub downlinks: usize,
    /// Property sets the sub-device answered (through its gateway).
    pub downlinks_answered: usize,
    /// Property set round trips (admin call), ms.
    pub downlink_ms: Percentiles,
    /// Hub RSS once the topology is in place, KiB.
    pub hub_rss_before_login_kib: Option<u64>,
    /// Hub RSS once every sub-device is online, KiB.
    pub hub_rss_after_login_kib: Option<u64>,
    /// Hub RSS after the traffic, KiB.
    pub hub_rss_after_traffic_kib: Option<u64>,
    /// (after login − before login) / sub-devices, KiB.
    pub hub_rss_per_sub_device_kib: Option<f64>,
    /// The first failure seen, if any.
    pub first_failure: Option<String>,
}

impl GatewaySummary {
    /// The summary as a table or one JSON line.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => format!("{}\n", serde_json::to_string(self).unwrap_or_default()),
            Format::Table => {
                let kib = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v} KiB"));
                format!(
                    "gateway: {} gateways x {} sub-devices\n  \
                     topology adds      {} answered 200\n  \
                     logged in          {} in {:.2} s ({:.0}/s), batch round trip p50 {} ms p99 {} ms\n  \
                     posts              {} sent, {} answered ({} ok), {:.0} answered/s, p50 {} ms p99 {} ms\n  \
                     downlinks          {} of {} answered, p50 {} ms p99 {} ms\n  \
                     hub RSS            {} before login, {} after, {} after traffic; {} KiB per sub-device\n{}",
                    self.gateways,
                    self.sub_devices / self.gateways.max(1),
                    self.topo_adds,
                    self.logged_in,
                    self.login_seconds,
                    self.logins_per_second,
                    self.batch_login_ms.p50,
                    self.batch_login_ms.p99,
                    self.posts,
                    self.posts_answered,
                    self.posts_ok,
                    self.posts_answered_per_second,
                    self.post_ms.p50,
                    self.post_ms.p99,
                    self.downlinks_answered,
                    self.downlinks,
                    self.downlink_ms.p50,
                    self.downlink_ms.p99,
                    kib(self.hub_rss_before_login_kib),
                    kib(self.hub_rss_after_login_kib),
                    kib(self.hub_rss_after_traffic_kib),
                    self.hub_rss_per_sub_device_kib
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}")),
                    self.first_failure
                        .as_ref()
                        .map_or_else(String::new, |f| format!("  first failure      {f}\n")),
                )
            }
        }
    }
}

/// What one gateway reports back.
#[derive(Default)]
struct GatewayResult {
    topo_ok: bool,
    logged_in: usize,
    login_done_us: u64,
    batch_rtt: Option<Histogram<u64>>,
    post_rtt: Option<Histogram<u64>>,
    posts: u64,
    answered: u64,
    ok: u64,
    failure: Option<String>,
}

/// The phases the gateways wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Setup,
    Login,
    Post,
    Serve,
    Stop,
}

struct Shared {
    addr: SocketAddr,
    posts_per_sub: usize,
    window: usize,
    timeout: Duration,
    phase: watch::Receiver<Phase>,
    topo_done: Barrier,
    login_done: Barrier,
    post_done: Barrier,
    downlinks_answered: AtomicU64,
}

/// Runs the `gateway` workload against a hub.
///
/// # Errors
/// [`Error::Admin`] when the admin API refuses the setup, [`Error::InvalidOptions`] for zero
/// gateways or sub-devices, [`Error::Resolve`]/[`Error::NoAddress`] for the host.
pub async fn run_gateway(o: &GatewayOptions) -> Result<GatewaySummary> {
    if o.gateways == 0 || o.subs_per_gateway == 0 {
        return Err(Error::InvalidOptions(
            "--gateways and --sub-devices-per-gateway must be at least 1".into(),
        ));
    }
    let admin = o.admin.client()?;
    // Notes on stderr: a spinner line, hidden with `quiet` or when stderr is no terminal.
    let bar = if o.progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr_with_hz(4))
    } else {
        indicatif::ProgressBar::hidden()
    };
    let note = |s: &str| bar.set_message(format!("gateway bench: {s}"));
    ensure_product(&admin, &o.gateway_product_key, NodeType::Gateway).await?;
    ensure_product(&admin, &o.sub_product_key, NodeType::Sub).await?;
    let batch = |prefix: String, count: usize| CreateBatch {
        prefix: Some(prefix),
        count: Some(count as u64),
        skip_existing: true,
        ..CreateBatch::default()
    };
    let gateways = admin
        .create_devices(
            &o.gateway_product_key,
            &batch(format!("{}gw-", o.prefix), o.gateways),
        )
        .await
        .map_err(|e| Error::admin("registering the gateways", e))?;
    let subs = admin
        .create_devices(
            &o.sub_product_key,
            &batch(format!("{}sub-", o.prefix), o.gateways * o.subs_per_gateway),
        )
        .await
        .map_err(|e| Error::admin("registering the sub-devices", e))?;
    note(&format!(
        "{} gateways and {} sub-devices registered",
        gateways.len(),
        subs.len()
    ));
    let addr = resolve(&o.host, o.port).await?;
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let n = gateways.len();
    let shared = Arc::new(Shared {
        addr,
        posts_per_sub: o.posts_per_sub,
        window: o.window.max(1),
        timeout: o.timeout,
        phase: phase_rx,
        topo_done: Barrier::new(n + 1),
        login_done: Barrier::new(n + 1),
        post_done: Barrier::new(n + 1),
        downlinks_answered: AtomicU64::new(0),
    });
    let mut tasks = Vec::with_capacity(n);
    for (i, gw) in gateways.iter().enumerate() {
        let mine: Vec<DeviceIdentity> = subs
            .iter()
            .skip(i * o.subs_per_gateway)
            .take(o.subs_per_gateway)
            .filter_map(|c| DeviceIdentity::new(&c.product_key, &c.device_name, &c.device_secret).ok())
            .collect();
        let identity = DeviceIdentity::new(&gw.product_key, &gw.device_name, &gw.device_secret)
            .map_err(|e| Error::InvalidOptions(format!("gateway {}: {e}", gw.device_name)))?;
        tasks.push(tokio::spawn(run_one(shared.clone(), identity, mine)));
    }
    let rss = || async { hub_rss_kib(&admin).await };

    // Every gateway connected with its topology (or failed): the memory before the logins.
    shared.topo_done.wait().await;
    let rss_before = rss().await;
    note("topology added; logging in");
    let login_start = Instant::now();
    let login_start_us = unix_us();
    let _ = phase_tx.send(Phase::Login);
    shared.login_done.wait().await;
    let login_wall = login_start.elapsed();
    let rss_after = rss().await;
    note(&format!("logins done in {login_wall:.2?}; posting"));
    let post_start = Instant::now();
    let _ = phase_tx.send(Phase::Post);
    shared.post_done.wait().await;
    let post_secs = post_start.elapsed().as_secs_f64();
    note("posts done; property sets");
    let _ = phase_tx.send(Phase::Serve);
    let (downlink_rtt, made) = downlinks(&admin, o, &subs).await;
    let _ = phase_tx.send(Phase::Stop);
    let mut results = Vec::with_capacity(n);
    for t in tasks {
        match t.await {
            Ok(r) => results.push(r),
            Err(e) => results.push(GatewayResult {
                failure: Some(format!("gateway task: {e}")),
                ..GatewayResult::default()
            }),
        }
    }
    let rss_traffic = rss().await;
    bar.finish_and_clear();

    let mut batch_rtt = new_hist();
    let mut post_rtt = new_hist();
    let mut summary = GatewaySummary {
        workload: "gateway",
        gateways: n,
        sub_devices: subs.len(),
        topo_adds: 0,
        logged_in: 0,
        login_seconds: 0.0,
        logins_per_second: 0.0,
        batch_login_ms: Percentiles::default(),
        posts: 0,
        posts_answered: 0,
        posts_ok: 0,
        posts_answered_per_second: 0.0,
        post_ms: Percentiles::default(),
        downlinks: made,
        downlinks_answered: shared.downlinks_answered.load(Ordering::Relaxed) as usize,
        downlink_ms: percentiles(&downlink_rtt),
        hub_rss_before_login_kib: rss_before,
        hub_rss_after_login_kib: rss_after,
        hub_rss_after_traffic_kib: rss_traffic,
        hub_rss_per_sub_device_kib: None,
        first_failure: None,
    };
    let mut last_login_us = login_start_us;
    for r in results {
        summary.topo_adds += usize::from(r.topo_ok);
        summary.logged_in += r.logged_in;
        last_login_us = last_login_us.max(r.login_done_us);
        if let Some(h) = r.batch_rtt {
            let _ = batch_rtt.add(h);
        }
        if let Some(h) = r.post_rtt {
            let _ = post_rtt.add(h);
        }
        summary.posts += r.posts;
        summary.posts_answered += r.answered;
        summary.posts_ok += r.ok;
        if summary.first_failure.is_none() {
            summary.first_failure = r.failure;
        }
    }
    let login_secs = if summary.logged_in == summary.sub_devices {
        (last_login_us.saturating_sub(login_start_us)) as f64 / 1e6
    } else {
        login_wall.as_secs_f64()
    };
    summary.login_seconds = round3(login_secs);
    summary.logins_per_second = round1(summary.logged_in as f64 / login_secs.max(1e-9));
    summary.batch_login_ms = percentiles(&batch_rtt);
    summary.post_ms = percentiles(&post_rtt);
    summary.posts_answered_per_second = round1(summary.posts_answered as f64 / post_secs.max(1e-9));
    if let (Some(b), Some(a)) = (rss_before, rss_after)
        && summary.logged_in > 0
    {
        summary.hub_rss_per_sub_device_kib =
            Some(round3(a.saturating_sub(b) as f64 / summary.logged_in as f64));
    }
    Ok(summary)
}

/// Creates the product when it does not exist and sets its node type.
async fn ensure_product(admin: &aliot_admin::Client, product_key: &str, node_type: NodeType) -> Result<()> {
    if admin.product(product_key).await.is_err() {
        admin
            .create_product(&CreateProduct {
                name: format!("bench {}", node_type.as_str()),
                product_key: Some(product_key.to_owned()),
            })
            .await
            .map_err(|e| Error::admin(format!("creating product {product_key}"), e))?;
    }
    admin
        .set_node_type(product_key, node_type)
        .await
        .map_err(|e| Error::admin(format!("setting the node type of {product_key}"), e))?;
    Ok(())
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| Error::Resolve {
            host: host.to_owned(),
            source,
        })?
        .next()
        .ok_or_else(|| Error::NoAddress {
            host: host.to_owned(),
        })
}

async fn hub_rss_kib(admin: &aliot_admin::Client) -> Option<u64> {
    let text = admin.metrics().await.ok()?;
    crate::sysinfo::metric(&text, "process_resident_memory_bytes").map(|b| b as u64 / 1024)
}

/// The property sets: `o.downlinks` calls spread over the sub-devices, `o.concurrency` at once.
async fn downlinks(
    admin: &aliot_admin::Client,
    o: &GatewayOptions,
    subs: &[aliot_admin::Credentials],
) -> (Histogram<u64>, usize) {
    let mut h = new_hist();
    if subs.is_empty() || o.downlinks == 0 {
        return (h, 0);
    }
    let permits = Arc::new(Semaphore::new(o.concurrency.max(1)));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..o.downlinks {
        // A stride through the fleet: consecutive calls go to different gateways.
        let sub = &subs[(i * 7919) % subs.len()];
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (admin, pk, dn) = (admin.clone(), sub.product_key.clone(), sub.device_name.clone());
        calls.spawn(async move {
            let call = Call {
                params: Some(json!({"Level": i % 100})),
                timeout_ms: Some(10_000),
            };
            let t = Instant::now();
            let r = admin.set_properties(&pk, &dn, &call).await;
            drop(permit);
            r.ok().map(|_| t.elapsed().as_micros() as u64)
        });
    }
    while let Some(r) = calls.join_next().await {
        if let Ok(Some(us)) = r {
            let _ = h.record(us.max(1));
        }
    }
    (h, o.downlinks)
}

/// The platform's reply: its id and code.
fn reply_of(payload: &[u8]) -> Option<(String, u64)> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let id = match v.get("id")? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some((id, v.get("code").and_then(Value::as_u64).unwrap_or(0)))
}

/// One gateway, through every phase. Never fails: what went wrong is in its result.
async fn run_one(shared: Arc<Shared>, gw: DeviceIdentity, subs: Vec<DeviceIdentity>) -> GatewayResult {
    let mut r = GatewayResult::default();
    let mut conn = None;
    match setup(&shared, &gw, &subs).await {
        Ok(c) => {
            r.topo_ok = true;
            conn = Some(c);
        }
        Err(e) => r.failure = Some(format!("{}: {e}", gw.device_name())),
    }
    shared.topo_done.wait().await;
    let mut phase = shared.phase.clone();
    let _ = phase.wait_for(|p| *p >= Phase::Login).await;
    if let Some(c) = conn.as_mut() {
        match login(&shared, c, &gw, &subs).await {
            Ok(h) => {
                r.logged_in = subs.len();
                r.login_done_us = unix_us();
                r.batch_rtt = Some(h);
            }
            Err(e) => {
                r.failure
                    .get_or_insert(format!("{}: login: {e}", gw.device_name()));
                conn = None;
            }
        }
    }
    shared.login_done.wait().await;
    let _ = phase.wait_for(|p| *p >= Phase::Post).await;
    let mut signalled = false;
    if let Some(mut c) = conn {
        if let Err(e) = traffic(&shared, &mut c, &subs, &mut r, &mut phase, &mut signalled).await {
            r.failure.get_or_insert(format!("{}: {e}", gw.device_name()));
        }
        let _ = c.disconnect().await;
    }
    if !signalled {
        shared.post_done.wait().await;
    }
    r
}

/// Connects the gateway and adds its topology.
async fn setup(shared: &Shared, gw: &DeviceIdentity, subs: &[DeviceIdentity]) -> Result<Connection> {
    let creds = aliot_protocol::sign(
        gw,
        &SignOptions {
            timestamp: Some((unix_us() / 1000).to_string()),
            extra_params: vec![("_ss".into(), "1".into())],
            ..SignOptions::default()
        },
    )
    .map_err(|e| Error::InvalidOptions(format!("signing {}: {e}", gw.device_name())))?;
    let mut conn = Connection::open(shared.addr, None).await?;
    let ack = conn
        .handshake(ConnectBuilder::signed(&creds).keep_alive(1200).build())
        .await?;
    if ack.return_code != ConnectAckReason::ConnectionAccepted {
        return Err(Error::InvalidOptions(format!("CONNACK {:?}", ack.return_code)));
    }
    let ts = (unix_us() / 1000).to_string();
    let items: Vec<TopoAddItem> = subs
        .iter()
        .map(|s| TopoAddItem::signed(s, &ts, SubSignMethod::HMAC_SHA256))
        .collect();
    let (pk, dn) = (gw.product_key(), gw.device_name());
    let request = json!({"id": "1", "version": "1.0", "params": items, "method": "thing.topo.add"});
    conn.publish(&topic::topo_add(pk, dn), request.to_string(), QoS::AtMostOnce, 0)
        .await?;
    let want = topic::reply(&topic::topo_add(pk, dn));
    let code = tokio::time::timeout(shared.timeout, await_reply(&mut conn, &want))
        .await
        .map_err(|_| Error::InvalidOptions("no topo add reply".into()))??;
    if code != 200 {
        return Err(Error::InvalidOptions(format!("topo add answered {code}")));
    }
    Ok(conn)
}

/// Reads until a reply on `want` (acknowledging QoS 1 messages); its code.
async fn await_reply(conn: &mut Connection, want: &str) -> Result<u64> {
    loop {
        match conn.recv().await? {
            Some(Packet::Publish(p)) => {
                if let Some(id) = p.packet_id {
                    conn.puback(id).await?;
                }
                if &*p.topic == want {
                    return Ok(reply_of(&p.payload).map_or(0, |(_, code)| code));
                }
            }
            Some(_) => {}
            None => return Err(Error::Closed { expected: "a reply" }),
        }
    }
}

/// Logs the sub-devices in (≤ 50 a batch, one at a time) and subscribes their topics.
async fn login(
    shared: &Shared,
    conn: &mut Connection,
    gw: &DeviceIdentity,
    subs: &[DeviceIdentity],
) -> Result<Histogram<u64>> {
    let mut h = new_hist();
    let (pk, dn) = (gw.product_key(), gw.device_name());
    let t = topic::session(pk, dn, "batch_login");
    let want = topic::reply(&t);
    for (n, chunk) in subs.chunks(MAX_BATCH).enumerate() {
        let ts = (unix_us() / 1000).to_string();
        let batch = BatchLogin {
            sign_method: None,
            device_list: chunk
                .iter()
                .map(|s| LoginParams::signed(s, &ts, SubSignMethod::HMAC_SHA256))
                .collect(),
        };
        let request = json!({"id": (n + 2).to_string(), "version": "1.0", "params": batch, "method": "combine.batch_login"});
        let started = Instant::now();
        conn.publish(&t, request.to_string(), QoS::AtMostOnce, 0).await?;
        let code = tokio::time::timeout(shared.timeout, await_reply(conn, &want))
            .await
            .map_err(|_| Error::InvalidOptions("no batch login reply".into()))??;
        if code != 200 {
            return Err(Error::InvalidOptions(format!("batch login answered {code}")));
        }
        let _ = h.record((started.elapsed().as_micros() as u64).max(1));
    }
    // Each sub-device's post replies and property sets, 100 filters a SUBSCRIBE.
    let filters: Vec<String> = subs
        .iter()
        .flat_map(|s| {
            let p = format!("/sys/{}/{}", s.product_key(), s.device_name());
            [
                format!("{p}/thing/event/property/post_reply"),
                format!("{p}/thing/service/property/set"),
            ]
        })
        .collect();
    let mut pending = 0usize;
    for (i, chunk) in filters.chunks(100).enumerate() {
        let list: Vec<(&str, QoS)> = chunk.iter().map(|f| (f.as_str(), QoS::AtMostOnce)).collect();
        let id = NonZeroU16::new((i % 60_000 + 1) as u16).unwrap_or(NonZeroU16::MIN);
        conn.subscribe(id, &list).await?;
        pending += 1;
    }
    while pending > 0 {
        match conn.recv().await? {
            Some(Packet::SubscribeAck { status, .. }) => {
                if status.iter().any(|s| matches!(s, SubscribeReturnCode::Failure)) {
                    return Err(Error::InvalidOptions(
                        "a sub-device topic subscription was refused".into(),
                    ));
                }
                pending -= 1;
            }
            Some(_) => {}
            None => return Err(Error::Closed { expected: "SUBACK" }),
        }
    }
    Ok(h)
}

/// Posts for each sub-device (with a window of replies awaited), then answers property sets
/// until told to stop.
async fn traffic(
    shared: &Shared,
    conn: &mut Connection,
    subs: &[DeviceIdentity],
    r: &mut GatewayResult,
    phase: &mut watch::Receiver<Phase>,
    signalled: &mut bool,
) -> Result<()> {
    let topics: Vec<String> = subs
        .iter()
        .map(|s| {
            format!(
                "/sys/{}/{}/thing/event/property/post",
                s.product_key(),
                s.device_name()
            )
        })
        .collect();
    let total = (topics.len() * shared.posts_per_sub) as u64;
    let mut waiting: HashMap<u64, Instant> = HashMap::new();
    let mut rtt = new_hist();
    let mut next: u64 = 0;
    let mut posted_all = total == 0;
    let deadline = tokio::time::sleep(shared.timeout);
    tokio::pin!(deadline);
    loop {
        // Fill the window.
        while next < total && waiting.len() < shared.window {
            let topic = &topics[(next as usize) % topics.len()];
            let id = next + 1000;
            let body = format!(
                "{{\"id\":\"{id}\",\"version\":\"1.0\",\"params\":{{\"Level\":{{\"value\":{},\"time\":{}}}}},\"method\":\"thing.event.property.post\"}}",
                next % 100,
                unix_us() / 1000
            );
            conn.feed(publish_packet(topic, body, QoS::AtMostOnce, 0))?;
            waiting.insert(id, Instant::now());
            next += 1;
            r.posts += 1;
        }
        conn.flush().await?;
        if !posted_all && next >= total && waiting.is_empty() {
            posted_all = true;
        }
        if posted_all && !*signalled {
            *signalled = true;
            shared.post_done.wait().await;
        }
        tokio::select! {
            p = conn.recv() => match p? {
                Some(Packet::Publish(p)) => {
                    if let Some(id) = p.packet_id {
                        conn.puback(id).await?;
                    }
                    let t: &str = &p.topic;
                    if t.ends_with("/thing/event/property/post_reply") {
                        if let Some((id, code)) = reply_of(&p.payload)
                            && let Ok(n) = id.parse::<u64>()
                            && let Some(sent) = waiting.remove(&n)
                        {
                            r.answered += 1;
                            r.ok += u64::from(code == 200);
                            let _ = rtt.record((sent.elapsed().as_micros() as u64).max(1));
                        }
                    } else if t.ends_with("/thing/service/property/set")
                        && let Some((id, _)) = reply_of(&p.payload)
                    {
                        let reply = format!("{{\"id\":\"{id}\",\"code\":200,\"data\":{{}}}}");
                        conn.publish(&format!("{t}_reply"), reply, QoS::AtMostOnce, 0).await?;
                        shared.downlinks_answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(_) => {}
                None => return Err(Error::Closed { expected: "replies" }),
            },
            _ = async { phase.wait_for(|p| *p >= Phase::Stop).await.is_ok() } => break,
            () = &mut deadline, if !posted_all => {
                // Replies that never came: the post phase ends for this gateway.
                posted_all = true;
                next = total;
                waiting.clear();
            }
        }
    }
    r.post_rtt = Some(rtt);
    Ok(())
}
