//! A throwaway load tool for the hub's MQTT engine: memory per idle device, signed CONNECTs per
//! second, QoS 1 property posts answered per second. Not a test and not `aliot bench`.
//!
//! ```text
//! cargo run --release -p aliot-hub --example hub_load -- memory [DEVICES] [--subscribe]
//! cargo run --release -p aliot-hub --example hub_load -- posts [DEVICES] [SECONDS] [WINDOW]
//! ```
//!
//! Both commands start the hub as a child process (`serve`, same binary, 2 worker threads, an
//! in-memory registry of `DEVICES` devices), drive it from this process over loopback from the
//! source addresses 127.0.0.2..=127.0.0.9, and read the child's RSS from /proc.
// A measurement tool: printing its results is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aliot_hub::directory::{DeviceAuth, Directory};
use aliot_hub::{Broker, BrokerConfig};
use aliot_protocol::sign::{HexCase, SignMethod, sign_content};
use bytes::{Bytes, BytesMut};
use rmqtt_codec::types::Publish;
use rmqtt_codec::v3::{Codec, Connect, Packet, QoS};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::codec::{Decoder, Encoder};

const PK: &str = "benchPk01";

fn secret(i: usize) -> String {
    format!("secret-{i:08}-0123456789abcdef")
}

fn dn(i: usize) -> String {
    format!("bench-{i}")
}

struct Registry(HashMap<String, DeviceAuth>);

impl Directory for Registry {
    fn device(&self, product_key: &str, device_name: &str) -> Option<DeviceAuth> {
        if product_key != PK {
            return None;
        }
        self.0.get(device_name).cloned()
    }
    fn device_online(&self, _: &str, _: &str, _: IpAddr, _: u64) {}
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = args.first().map(String::as_str).unwrap_or("");
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    match cmd {
        "serve" => serve(n),
        "memory" => client(|hub| memory(hub, args.iter().any(|a| a == "--subscribe")), n),
        "posts" => {
            let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
            let window: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(16);
            client(move |d| posts(d, secs, window), n)
        }
        _ => eprintln!("usage: hub_load memory [DEVICES] [--subscribe] | posts [DEVICES] [SECONDS] [WINDOW]"),
    }
}

/// The hub side: prints its address, then serves until stdin closes.
fn serve(n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let registry: HashMap<String, DeviceAuth> = (0..n)
            .map(|i| {
                (
                    dn(i),
                    DeviceAuth {
                        device_secret: secret(i),
                        enabled: true,
                        iot_id: format!("iot-{i}"),
                    },
                )
            })
            .collect();
        let config = BrokerConfig {
            max_connections: 100_000,
            ..BrokerConfig::default()
        };
        let broker = Broker::new(config, Arc::new(Registry(registry)));
        let listener = aliot_hub::bind_listener("127.0.0.1:0".parse().expect("addr")).expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        let stop = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
            })
            .await;
        };
        broker.serve(listener, None, stop).await.expect("serve");
    });
}

struct Child {
    child: Option<tokio::process::Child>,
    addr: SocketAddr,
    pid: u32,
}

fn client<F, Fut>(f: F, n: usize)
where
    F: FnOnce(Child) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // HUB_LOAD_EXTERNAL=addr,pid drives a hub started by hand (e.g. under heaptrack).
        if let Ok(ext) = std::env::var("HUB_LOAD_EXTERNAL") {
            let (addr, pid) = ext.split_once(',').expect("addr,pid");
            let child = Child {
                child: None,
                addr: addr.parse().expect("addr"),
                pid: pid.parse().expect("pid"),
            };
            return f(child).await;
        }
        let exe = std::env::current_exe().expect("exe");
        let mut child = tokio::process::Command::new(exe)
            .args(["serve", &n.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn hub");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).await.expect("hub address");
        let addr: SocketAddr = line.trim().parse().expect("address");
        let pid = child.id().expect("pid");
        f(Child {
            child: Some(child),
            addr,
            pid,
        })
        .await;
    });
}

fn connect_packet(i: usize, keep_alive: u16) -> Packet {
    let dn = dn(i);
    let prefix = format!("{PK}.{dn}");
    let ts = "2524608000000";
    let content = sign_content(&prefix, &dn, PK, Some(ts));
    let password = SignMethod::HmacSha256.hex(secret(i).as_bytes(), content.as_bytes(), HexCase::Upper);
    Packet::Connect(Box::new(Connect {
        clean_session: true,
        keep_alive,
        client_id: format!("{prefix}|timestamp={ts},_ss=1,securemode=3,signmethod=hmacsha256,ext=3,|").into(),
        username: Some(format!("{dn}&{PK}").into()),
        password: Some(Bytes::from(password)),
        ..Connect::default()
    }))
}

struct Lean {
    stream: TcpStream,
    codec: Codec,
    buf: BytesMut,
}

impl Lean {
    async fn open(addr: SocketAddr, i: usize) -> std::io::Result<Lean> {
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8));
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(src, 0))?;
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Lean {
            stream,
            codec: Codec::new(0),
            buf: BytesMut::new(),
        })
    }

    async fn send(&mut self, p: Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        self.codec
            .encode(p, &mut out)
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        self.stream.write_all(&out).await
    }

    async fn recv(&mut self) -> std::io::Result<Packet> {
        loop {
            if let Some((p, _)) = self
                .codec
                .decode(&mut self.buf)
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?
            {
                return Ok(p);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    async fn login(addr: SocketAddr, i: usize, keep_alive: u16) -> std::io::Result<Lean> {
        let mut c = Lean::open(addr, i).await?;
        c.send(connect_packet(i, keep_alive)).await?;
        match c.recv().await? {
            Packet::ConnectAck(ack) if u8::from(ack.return_code) == 0 => Ok(c),
            other => Err(std::io::Error::other(format!("refused: {other:?}"))),
        }
    }
}

/// Opens `n` connections, 256 handshakes at a time; returns them and the elapsed time.
async fn fleet(addr: SocketAddr, n: usize, subscribe: bool) -> (Vec<Lean>, Duration) {
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        tasks.spawn(async move {
            let _permit = permit;
            let mut c = Lean::login(addr, i, 1200).await?;
            if subscribe {
                let filter = format!("/{PK}/{}/user/get", dn(i));
                c.send(Packet::Subscribe {
                    packet_id: NonZeroU16::MIN,
                    topic_filters: vec![(filter.into(), QoS::AtLeastOnce)],
                })
                .await?;
                c.recv().await?;
            }
            Ok::<_, std::io::Error>(c)
        });
    }
    let mut conns = Vec::with_capacity(n);
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => {
                failed += 1;
                if failed < 5 {
                    eprintln!("connect failed: {e}");
                }
            }
            Err(e) => eprintln!("task failed: {e}"),
        }
    }
    if failed > 0 {
        eprintln!("{failed} connections failed");
    }
    (conns, started.elapsed())
}

async fn settle(pid: u32) -> u64 {
    // Let the hub's allocator and the kernel settle before reading RSS.
    tokio::time::sleep(Duration::from_secs(2)).await;
    rss_kib(pid)
}

async fn memory(mut hub: Child, subscribe: bool) {
    let base = settle(hub.pid).await;
    let devices = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let cpu0 = cpu_ticks(hub.pid);
    let (conns, took) = fleet(hub.addr, devices, subscribe).await;
    let hub_cpu_s = cpu_ticks(hub.pid).saturating_sub(cpu0) as f64 / 100.0;
    let rss = settle(hub.pid).await;
    let per = (rss.saturating_sub(base)) as f64 / conns.len().max(1) as f64;
    println!(
        "devices={} subscribe={subscribe} connect_time={:.2}s connects_per_s={:.0} hub_cpu_per_connect={:.1}us hub_rss_base={}KiB hub_rss={}KiB per_device={:.2}KiB",
        conns.len(),
        took.as_secs_f64(),
        conns.len() as f64 / took.as_secs_f64(),
        hub_cpu_s * 1e6 / conns.len().max(1) as f64,
        base,
        rss,
        per
    );
    drop(conns);
    if let Some(child) = &mut hub.child {
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"\n").await;
        }
        let _ = child.wait().await;
    }
}

async fn posts(hub: Child, secs: u64, window: usize) {
    let devices = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let (conns, _) = fleet(hub.addr, devices, false).await;
    let answered = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut c) in conns.into_iter().enumerate() {
        let answered = answered.clone();
        tasks.spawn(async move {
            let topic = format!("/sys/{PK}/{}/thing/event/property/post", dn(i));
            let mut next: u16 = 0;
            let mut outstanding = 0usize;
            let mut id = 0u64;
            loop {
                while outstanding < window && Instant::now() < deadline {
                    next = next.wrapping_add(1).max(1);
                    id += 1;
                    let body = format!(r#"{{"id":"{id}","version":"1.0","params":{{"t":{id}}},"method":"thing.event.property.post"}}"#);
                    let p = Publish {
                        dup: false,
                        retain: false,
                        qos: QoS::AtLeastOnce,
                        topic: topic.clone().into(),
                        packet_id: NonZeroU16::new(next),
                        payload: Bytes::from(body),
                        properties: None,
                    };
                    if c.send(Packet::Publish(Box::new(p))).await.is_err() {
                        return;
                    }
                    outstanding += 2; // PUBACK + the post_reply (QoS 1, _ss=1)
                }
                if outstanding == 0 {
                    return;
                }
                match c.recv().await {
                    Ok(Packet::PublishAck { .. }) => outstanding -= 1,
                    Ok(Packet::Publish(reply)) => {
                        outstanding -= 1;
                        answered.fetch_add(1, Ordering::Relaxed);
                        if let Some(pid) = reply.packet_id
                            && c.send(Packet::PublishAck { packet_id: pid }).await.is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
    }
    let started = Instant::now();
    let cpu0 = cpu_ticks(hub.pid);
    while tasks.join_next().await.is_some() {}
    let took = started.elapsed();
    let cpu = cpu_ticks(hub.pid).saturating_sub(cpu0) as f64 / 100.0;
    let n = answered.load(Ordering::Relaxed);
    println!(
        "devices={devices} window={window} answered={n} in {:.1}s => {:.0} QoS1 posts answered/s, hub cpu {:.0}% of one core, hub rss {} KiB",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        100.0 * cpu / took.as_secs_f64(),
        rss_kib(hub.pid)
    );
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is [0]; utime [11], stime [12].
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}
