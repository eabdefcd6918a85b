//! OpenAPI `Pub` calls per second against an in-process hub (docs/PERFORMANCE.md, "OpenAPI").
//!
//! Starts a hub on loopback (temporary data directory), registers a device and connects it
//! (subscribed to its `/user/get` topic, counting what it receives), creates an access key, then
//! runs CONCURRENCY clients, each on its own kept-alive connection, sending signature-V1 `Pub`
//! requests (QoS 0, a 64-byte message) back to back for SECONDS. Prints calls/s, latency
//! percentiles (request written → answer read) and the messages the device received.
//!
//!     cargo run --release -p aliot-hub --example openapi_pub -- [CONCURRENCY=32] [SECONDS=10]
//!
//! `benches/openapi.sh` runs it and keeps the output.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aliot_protocol::openapi as sig;
use aliot_testkit::TestDevice;
use base64::Engine as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

struct Target {
    addr: SocketAddr,
    id: String,
    secret: String,
    pk: String,
    topic: String,
}

fn encode(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", sig::percent_encode(k), sig::percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn timestamp() -> String {
    let t = aliot_hub::clock::format_utc(aliot_hub::clock::now_ms());
    format!("{}Z", &t[..19])
}

/// One signed `Pub` request (V1, POST, form body).
fn request(t: &Target, nonce: &str, content: &str) -> Vec<u8> {
    let mut q: Vec<(String, String)> = [
        ("Action", "Pub"),
        ("Format", "JSON"),
        ("Version", "2018-01-20"),
        ("AccessKeyId", t.id.as_str()),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
        ("Timestamp", &timestamp()),
        ("ProductKey", t.pk.as_str()),
        ("TopicFullName", t.topic.as_str()),
        ("Qos", "0"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let body = vec![("MessageContent".to_owned(), content.to_owned())];
    let sts = sig::v1_string_to_sign(
        "POST",
        q.iter().chain(&body).map(|(k, v)| (k.as_str(), v.as_str())),
    );
    q.push(("Signature".into(), sig::v1_sign(&t.secret, &sts)));
    let body = encode(&body);
    format!(
        "POST /?{} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
        encode(&q),
        t.addr,
        body.len()
    )
    .into_bytes()
}

/// Reads one answer; its status.
async fn answer(r: &mut BufReader<TcpStream>) -> std::io::Result<u16> {
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).await?;
    Ok(status)
}

async fn client(t: Arc<Target>, n: usize, stop: Arc<AtomicBool>) -> (Vec<u32>, u64) {
    let stream = TcpStream::connect(t.addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut r = BufReader::new(stream);
    let content = base64::engine::general_purpose::STANDARD.encode([b'x'; 64]);
    let (mut latencies, mut errors) = (Vec::new(), 0u64);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let req = request(&t, &format!("c{n}-{i}"), &content);
        let started = Instant::now();
        r.get_mut().write_all(&req).await.expect("write");
        match answer(&mut r).await {
            Ok(200) => {
                latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            Ok(_) => errors += 1,
            Err(e) => panic!("connection failed: {e}"),
        }
    }
    (latencies, errors)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(concurrency, seconds));
}

#[allow(clippy::print_stdout, reason = "an example printing its measurements")]
async fn run(concurrency: usize, seconds: u64) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = aliot_hub::Config {
        data_dir: Some(dir.path().to_owned()),
        ..aliot_hub::Config::default()
    };
    config.mqtt.listen = "127.0.0.1:0".parse().expect("an address");
    config.admin.listen = "127.0.0.1:0".parse().expect("an address");
    config.openapi.listen = "127.0.0.1:0".parse().expect("an address");
    config.openapi.max_connections = concurrency + 16;
    let hub = aliot_hub::start(config, std::future::pending())
        .await
        .expect("the hub starts");
    let service = hub.service().clone();
    let pk = service
        .create_product("bench", None)
        .await
        .expect("a product")
        .product_key;
    let device = service
        .create_device(&pk, "bench-device", None)
        .await
        .expect("a device");
    let topic = format!("/{pk}/bench-device/user/get");
    let mut dev = TestDevice::connect(hub.mqtt_addr(), &pk, "bench-device", &device.device_secret).await;
    dev.subscribe(&topic).await;
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        while let Some(e) = dev.rx.recv().await {
            if matches!(e, aliot_testkit::DevEvent::Publish { .. }) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let key = service
        .create_access_key(Some("bench".into()))
        .await
        .expect("an access key");
    let addr = hub
        .openapi_url()
        .expect("the OpenAPI is on")
        .trim_start_matches("http://")
        .parse()
        .expect("an address");
    let target = Arc::new(Target {
        addr,
        id: key.access_key_id,
        secret: key.access_key_secret,
        pk,
        topic,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|n| tokio::spawn(client(target.clone(), n, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("a client");
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        f64::from(latencies.get(i).copied().unwrap_or(0)) / 1000.0
    };
    // Let the last messages reach the device.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "openapi Pub: concurrency {concurrency}, {seconds} s: {} calls ({:.0} calls/s), {errors} errors; \
         latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}; device received {}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
        received.load(Ordering::Relaxed)
    );
    let _ = hub.stop().await;
}
