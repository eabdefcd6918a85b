//! Hostile peers (hardening issue 9): the caps on topics, filters and echoed Alink fields over
//! real sockets, and property tests that feed arbitrary bytes and arbitrary packet sequences to
//! a connection. Whatever a peer sends, the hub never panics or hangs: each case ends within its
//! limit (the hub answers, or closes the connection once the peer has finished), and a fresh,
//! well-behaved device still connects and gets its property post answered.
//!
//! The property tests run a bounded number of cases (`PROPTEST_CASES` raises it for a longer
//! run); the cargo-fuzz targets in `fuzz/` search the parsers for longer.

use std::num::NonZeroU16;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aliot_bench::wire::{Connection, publish_packet};
use aliot_hub::events::Event;
use aliot_hub::service::Error;
use aliot_protocol::alink::MAX_ID_LEN;
use aliot_protocol::topic::{MAX_PLATFORM_TOPIC_LEN, MAX_TOPIC_LEN, MAX_TOPIC_LEVELS};
use aliot_testkit::*;
use bytes::Bytes;
use proptest::prelude::*;
use rmqtt_codec::v3::{Packet, QoS, SubscribeReturnCode};

fn post_topic(dn: &str) -> String {
    format!("/sys/{PK}/{dn}/thing/event/property/post")
}

/// A custom topic of device `dn` of exactly `len` bytes.
fn custom_of_len(dn: &str, len: usize) -> String {
    let head = format!("/{PK}/{dn}/user/");
    format!("{head}{}", "x".repeat(len - head.len()))
}

// ----- the caps over a socket -----

#[tokio::test]
async fn a_publish_topic_beyond_the_cap_closes_the_connection() {
    let mut hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    dev.publish(&custom_of_len("dev1", MAX_TOPIC_LEN), "x", QoS::AtLeastOnce, 1)
        .await;
    assert!(matches!(dev.recv().await, Some(Packet::PublishAck { .. })));
    let deep = format!("/{PK}/dev1/user{}", "/a".repeat(MAX_TOPIC_LEVELS - 3));
    dev.publish(&deep, "x", QoS::AtMostOnce, 0).await;
    dev.closed().await;
    let e = hub.event(|e| matches!(e, Event::AclDenied(_))).await;
    let Event::AclDenied(d) = &*e else { unreachable!() };
    assert_eq!(d.action, "publish");

    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    dev.publish(&custom_of_len("dev1", MAX_TOPIC_LEN + 1), "x", QoS::AtMostOnce, 0)
        .await;
    dev.closed().await;
}

#[tokio::test]
async fn a_filter_beyond_the_cap_gets_suback_0x80() {
    let hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    let at = custom_of_len("dev1", MAX_TOPIC_LEN);
    let over = custom_of_len("dev1", MAX_TOPIC_LEN + 1);
    let deep = format!("/{PK}/dev1/user{}/#", "/+".repeat(MAX_TOPIC_LEVELS - 4));
    let status = dev
        .subscribe(
            1,
            &[
                (at.as_str(), QoS::AtMostOnce),
                (over.as_str(), QoS::AtMostOnce),
                (deep.as_str(), QoS::AtMostOnce),
            ],
        )
        .await;
    assert_eq!(
        status,
        vec![
            SubscribeReturnCode::Success(QoS::AtMostOnce),
            SubscribeReturnCode::Failure,
            SubscribeReturnCode::Failure,
        ]
    );
    dev.ping().await;
}

/// The admin's "Pub" (400 `invalid_argument` over HTTP) refuses a topic whose `_reply` the
/// device could not publish.
#[tokio::test]
async fn the_platform_sends_only_topics_whose_reply_fits() {
    let hub = BrokerHub::start().await;
    let _dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    let s = hub.service();
    let at = custom_of_len("dev1", MAX_PLATFORM_TOPIC_LEN);
    assert!(s.publish(PK, "dev1", &at, Bytes::new(), 0).await.is_ok());
    for topic in [
        custom_of_len("dev1", MAX_PLATFORM_TOPIC_LEN + 1),
        custom_of_len("dev1", 70_000),
    ] {
        assert!(matches!(
            s.publish(PK, "dev1", &topic, Bytes::new(), 0).await,
            Err(Error::InvalidArgument(_))
        ));
    }
}

#[tokio::test]
async fn a_250_kib_alink_id_gets_a_460_that_does_not_carry_it() {
    let hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "_ss=1")).await;
    let huge = "7".repeat(250 * 1024);
    let body = format!(r#"{{"id":"{huge}","version":"1.0","params":{{"a":1}}}}"#);
    dev.publish(&post_topic("dev1"), &body, QoS::AtMostOnce, 0).await;
    let reply = dev.publish_in().await;
    assert_eq!(&*reply.topic, format!("{}_reply", post_topic("dev1")));
    let v = json(&reply);
    assert_eq!(v["code"], 460, "{v}");
    assert_eq!(v["id"], "", "the over-long id is not echoed");
    assert!(reply.payload.len() < 1024, "{} bytes", reply.payload.len());

    // At the cap the id is echoed; a method beyond its cap makes the request unusable too,
    // answered with the request's own id.
    let at = "7".repeat(MAX_ID_LEN - 2);
    let body = format!(r#"{{"id":"{at}","params":{{}}}}"#);
    dev.publish(&post_topic("dev1"), &body, QoS::AtMostOnce, 0).await;
    let v = json(&dev.publish_in().await);
    assert_eq!(
        (v["code"].as_u64(), v["id"].as_str()),
        (Some(200), Some(at.as_str()))
    );
    let body = format!(
        r#"{{"id":"8","method":"{}","params":{{}}}}"#,
        "m".repeat(64 * 1024)
    );
    dev.publish(&post_topic("dev1"), &body, QoS::AtMostOnce, 0).await;
    let reply = dev.publish_in().await;
    let v = json(&reply);
    assert_eq!((v["code"].as_u64(), v["id"].as_str()), (Some(460), Some("8")));
    assert!(reply.payload.len() < 1024, "{} bytes", reply.payload.len());
}

// ----- hostile peers, as properties -----

/// How long one hostile case may take before it counts as a hang: far above what a case needs
/// (milliseconds), far below the hub's own deadlines (CONNECT 10 s, keepalive 90 s), so a case
/// that ends only through a deadline fails.
const CASE_LIMIT: Duration = Duration::from_secs(8);

/// Set by the panic hook: a connection task's panic is caught by tokio and would otherwise go
/// unnoticed.
static PANICKED: AtomicBool = AtomicBool::new(false);

/// A runtime and a hub shared by every case of one property: state that one case leaves behind
/// (sessions, offline queues, subscriptions) is what the next case meets.
struct Bench {
    runtime: tokio::runtime::Runtime,
    hub: BrokerHub,
}

impl Bench {
    fn new() -> Bench {
        static HOOK: OnceLock<()> = OnceLock::new();
        HOOK.get_or_init(|| {
            let default = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                PANICKED.store(true, Ordering::SeqCst);
                default(info);
            }));
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let hub = runtime.block_on(BrokerHub::start());
        Bench { runtime, hub }
    }

    /// Plays one case, then checks the hub still serves a well-behaved device.
    fn check(&self, case: &Case) -> Result<(), TestCaseError> {
        let addr = self.hub.addr;
        let outcome = self.runtime.block_on(async {
            match tokio::time::timeout(CASE_LIMIT, play(addr, case)).await {
                Ok(r) => r,
                Err(_) => Err("the case did not end: neither answered nor closed".to_owned()),
            }
        });
        outcome.map_err(TestCaseError::fail)?;
        self.runtime
            .block_on(async {
                tokio::time::timeout(CASE_LIMIT, well_behaved(addr))
                    .await
                    .map_err(|_| "a well-behaved device was not served in time".to_owned())?
            })
            .map_err(TestCaseError::fail)?;
        if PANICKED.swap(false, Ordering::SeqCst) {
            return Err(TestCaseError::fail("something panicked (see stderr)"));
        }
        Ok(())
    }
}

/// A well-behaved device (`dev2`, `_ss=1`) connects, posts a property at QoS 1, gets the PUBACK
/// and the reply, and leaves.
async fn well_behaved(addr: std::net::SocketAddr) -> Result<(), String> {
    let mut dev = Raw::online(addr, &creds("dev2", "_ss=1")).await;
    let body =
        r#"{"id":"4242","version":"1.0","params":{"Power":"on"},"method":"thing.event.property.post"}"#;
    dev.publish(&post_topic("dev2"), body, QoS::AtLeastOnce, 1).await;
    let mut acked = false;
    let mut answered = false;
    while !(acked && answered) {
        match dev.recv().await {
            Some(Packet::PublishAck { .. }) => acked = true,
            Some(Packet::Publish(p)) => {
                let v: serde_json::Value = serde_json::from_slice(&p.payload).map_err(|e| e.to_string())?;
                if v["id"] == "4242" {
                    if v["code"] != 200 {
                        return Err(format!("the post was answered {v}"));
                    }
                    answered = true;
                }
                if let Some(pid) = p.packet_id {
                    dev.puback(pid).await;
                }
            }
            Some(other) => return Err(format!("unexpected {other:?}")),
            None => return Err("the well-behaved device was disconnected".into()),
        }
    }
    dev.send(Packet::Disconnect).await;
    Ok(())
}

/// Plays `case` on a new connection: everything is written (a failed write means the hub has
/// closed: the rest is skipped), then a PINGREQ and the end of the stream (FIN). The hub must
/// then close the connection, every packet it sent on the way being well-formed.
async fn play(addr: std::net::SocketAddr, case: &Case) -> Result<(), String> {
    let mut conn = Connection::open(addr, None)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    // Whatever the hub sends is read, however large.
    conn.set_max_packet(0);
    let mut items: Vec<Item> = Vec::new();
    if !case.before.is_empty() {
        items.push(Item::Bytes(case.before.clone()));
    }
    if let Some(connect) = &case.connect {
        items.push(Item::Packet(connect.packet()));
    }
    items.extend(case.steps.iter().map(Step::item));
    if !case.after.is_empty() {
        items.push(Item::Bytes(case.after.clone()));
    }
    items.push(Item::Packet(Packet::PingRequest));
    for item in items {
        let written = match item {
            Item::Bytes(b) => conn.write_raw(&b).await,
            // A packet our own encoder refuses (e.g. a topic past 65,535 bytes) is skipped.
            Item::Packet(p) => match conn.feed(p) {
                Ok(()) => conn.flush().await,
                Err(_) => continue,
            },
        };
        if written.is_err() {
            break;
        }
    }
    let _ = conn.shutdown().await;
    loop {
        match conn.recv().await {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(aliot_bench::Error::Decode(e)) => {
                return Err(format!("the hub sent a malformed packet: {e:?}"));
            }
            // A reset is a close too.
            Err(_) => return Ok(()),
        }
    }
}

/// What is written: raw bytes or an encoded packet.
enum Item {
    Bytes(Vec<u8>),
    Packet(Packet),
}

/// One hostile connection.
#[derive(Debug, Clone)]
struct Case {
    /// Bytes before the CONNECT (most often none).
    before: Vec<u8>,
    /// The CONNECT, if any.
    connect: Option<Connect>,
    /// What follows it.
    steps: Vec<Step>,
    /// Bytes at the end.
    after: Vec<u8>,
}

/// A CONNECT as device `dev1`.
#[derive(Debug, Clone)]
enum Connect {
    /// Correctly signed (`_ss=1`), clean session or not.
    Good { clean: bool, keep_alive: u16 },
    /// Signed with another secret.
    WrongSecret,
    /// A clientId of `len` bytes of `|k=v` parameters (the grammar's worst case).
    HugeClientId { len: usize },
}

impl Connect {
    fn packet(&self) -> Packet {
        match self {
            // `_ss=1`: the platform's replies come back without a SUBSCRIBE.
            Connect::Good { clean, keep_alive } => {
                connect_packet(&creds("dev1", "_ss=1"), *keep_alive, *clean)
            }
            Connect::WrongSecret => connect_packet(
                &creds_with(&Signing {
                    secret: "not-the-secret",
                    ..Signing::default()
                }),
                60,
                true,
            ),
            Connect::HugeClientId { len } => {
                let mut c = creds("dev1", "");
                c.client_id = format!("x|{}|", "a=b,".repeat(len / 4));
                connect_packet(&c, 60, true)
            }
        }
    }
}

/// One thing a hostile device does after its CONNECT.
#[derive(Debug, Clone)]
enum Step {
    Bytes(Vec<u8>),
    Publish {
        topic: String,
        payload: Bytes,
        qos: u8,
        pid: u16,
    },
    Subscribe {
        pid: u16,
        filters: Vec<(String, u8)>,
    },
    Unsubscribe {
        pid: u16,
        filters: Vec<String>,
    },
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    SecondConnect,
    Ping,
    Disconnect,
    /// Packets only a server sends.
    ServerPacket(u8),
}

fn pid(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

impl Step {
    fn item(&self) -> Item {
        Item::Packet(match self {
            Step::Bytes(b) => return Item::Bytes(b.clone()),
            Step::Publish {
                topic,
                payload,
                qos: q,
                pid: p,
            } => {
                // QoS 1 and 2 need a packet id; 0 carries none.
                let p = if *q == 0 { 0 } else { pid(*p).get() };
                publish_packet(topic, payload.clone(), qos(*q), p)
            }
            Step::Subscribe { pid: p, filters } => {
                let filters: Vec<(&str, QoS)> = filters.iter().map(|(f, q)| (f.as_str(), qos(*q))).collect();
                aliot_bench::wire::subscribe_packet(pid(*p), &filters)
            }
            Step::Unsubscribe { pid: p, filters } => Packet::Unsubscribe {
                packet_id: pid(*p),
                topic_filters: filters.iter().map(|f| f.as_str().into()).collect(),
            },
            Step::PubAck(p) => Packet::PublishAck { packet_id: pid(*p) },
            Step::PubRec(p) => Packet::PublishReceived { packet_id: pid(*p) },
            Step::PubRel(p) => Packet::PublishRelease { packet_id: pid(*p) },
            Step::PubComp(p) => Packet::PublishComplete { packet_id: pid(*p) },
            Step::SecondConnect => connect_packet(&creds("dev1", ""), 60, true),
            Step::Ping => Packet::PingRequest,
            Step::Disconnect => Packet::Disconnect,
            Step::ServerPacket(k) => match k % 3 {
                0 => Packet::PingResponse,
                1 => Packet::UnsubscribeAck { packet_id: pid(7) },
                _ => Packet::SubscribeAck {
                    packet_id: pid(7),
                    status: vec![SubscribeReturnCode::Failure],
                },
            },
        })
    }
}

/// Topics a hostile device uses: its own, other devices', invalid ones, and huge ones.
fn hostile_topic() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(post_topic("dev1")),
        2 => "[a-z]{1,8}".prop_map(|t| format!("/{PK}/dev1/user/{t}")),
        1 => Just(post_topic("dev2")),
        1 => Just(format!("/sys/{PK}/dev1/thing/service/property/set_reply")),
        1 => Just(format!("/ext/ntp/{PK}/dev1/request")),
        1 => Just(format!("/ext/rrpc/1/sys/{PK}/dev1/thing/service/x")),
        1 => "[/a-z+#\u{0}]{0,12}",
        1 => (MAX_TOPIC_LEN - 8..MAX_TOPIC_LEN + 8).prop_map(|n| custom_of_len("dev1", n)),
        1 => (0..65_000usize).prop_map(|n| format!("/{PK}/dev1/user/{}", "t".repeat(n))),
        1 => (0..2_000usize).prop_map(|n| format!("/sys/{PK}/dev1/thing{}", "/a".repeat(n))),
    ]
}

/// Filters a hostile device subscribes to.
fn hostile_filter() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => hostile_topic(),
        1 => Just("#".to_owned()),
        1 => Just(format!("/sys/{PK}/+/#")),
        1 => Just(format!("/sys/{PK}/dev1/#")),
        1 => (0..2_000usize).prop_map(|n| format!("/{PK}/dev1/user{}/#", "/+".repeat(n))),
    ]
}

/// Payloads: Alink requests with ids and methods of every size, and garbage.
fn hostile_payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        2 => Just(Bytes::from_static(br#"{"id":"1","params":{"a":1}}"#)),
        2 => (0..2 * MAX_ID_LEN).prop_map(|n| Bytes::from(format!(r#"{{"id":"{}","params":{{}}}}"#, "9".repeat(n)))),
        1 => (0..200_000usize).prop_map(|n| Bytes::from(format!(r#"{{"id":"{}","params":{{}}}}"#, "9".repeat(n)))),
        1 => (0..1_000usize).prop_map(|n| Bytes::from(format!(r#"{{"id":"1","method":"{}"}}"#, "m".repeat(n)))),
        1 => Just(Bytes::from_static(br#"{"deviceSendTime":"1"}"#)),
        1 => Just(Bytes::from_static(br#"{"id":"1","code":200,"data":{}}"#)),
        1 => proptest::collection::vec(any::<u8>(), 0..256).prop_map(Bytes::from),
    ]
}

/// Arbitrary bytes, sometimes starting like a packet (a fixed header with a large remaining
/// length, an unknown packet type, a half-written varint).
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => proptest::collection::vec(any::<u8>(), 0..4096),
        1 => (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..5)).prop_map(|(t, mut v)| {
            v.insert(0, t);
            v
        }),
        1 => Just(vec![0x30, 0xff, 0xff, 0xff, 0x7f]),
        1 => Just(vec![0x82, 0x80, 0x80, 0x80, 0x80, 0x01]),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        // QoS 2 closes the connection: rarer, so that sequences go on.
        6 => (hostile_topic(), hostile_payload(), prop_oneof![5 => Just(0u8), 5 => Just(1), 1 => Just(2)], any::<u16>())
            .prop_map(|(topic, payload, qos, pid)| Step::Publish { topic, payload, qos, pid }),
        3 => (any::<u16>(), proptest::collection::vec((hostile_filter(), 0..=3u8), 1..8))
            .prop_map(|(pid, filters)| Step::Subscribe { pid, filters }),
        1 => (any::<u16>(), 100..600usize).prop_map(|(pid, n)| Step::Subscribe {
            pid,
            filters: (0..n).map(|i| (format!("/{PK}/dev1/user/f{i}"), (i % 3) as u8)).collect(),
        }),
        1 => (any::<u16>(), proptest::collection::vec(hostile_filter(), 0..8))
            .prop_map(|(pid, filters)| Step::Unsubscribe { pid, filters }),
        2 => any::<u16>().prop_map(Step::PubAck),
        1 => any::<u16>().prop_map(Step::PubRec),
        1 => any::<u16>().prop_map(Step::PubRel),
        1 => any::<u16>().prop_map(Step::PubComp),
        2 => Just(Step::Ping),
        // Each of these ends the connection.
        1 => prop_oneof![
            Just(Step::SecondConnect),
            Just(Step::Disconnect),
            any::<u8>().prop_map(Step::ServerPacket),
            hostile_bytes().prop_map(Step::Bytes),
        ],
    ]
}

fn connect() -> impl Strategy<Value = Connect> {
    prop_oneof![
        // Keepalives 0 and 5 are refused (CONNACK 2).
        8 => (any::<bool>(), prop_oneof![6 => Just(60u16), 2 => Just(30), 1 => Just(0), 1 => Just(5)])
            .prop_map(|(clean, keep_alive)| Connect::Good { clean, keep_alive }),
        1 => Just(Connect::WrongSecret),
        1 => (1_000..65_000usize).prop_map(|len| Connect::HugeClientId { len }),
    ]
}

/// Mostly bytes: arbitrary bytes alone, or around a valid CONNECT.
fn bytes_case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![2 => Just(Vec::new()), 1 => hostile_bytes()],
        proptest::option::weighted(0.7, connect()),
        hostile_bytes(),
    )
        .prop_map(|(before, connect, after)| Case {
            before,
            connect,
            steps: Vec::new(),
            after,
        })
}

/// Mostly packets: a CONNECT and a sequence of valid packets with hostile fields.
fn packets_case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![9 => Just(Vec::new()), 1 => hostile_bytes()],
        connect(),
        proptest::collection::vec(step(), 1..12),
    )
        .prop_map(|(before, connect, steps)| Case {
            before,
            connect: Some(connect),
            steps,
            after: Vec::new(),
        })
}

/// Cases per property: few enough for CI (each case is a connection and a check), more with
/// `PROPTEST_CASES`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn arbitrary_bytes_around_a_connect_never_break_the_hub() {
    let bench = Bench::new();
    let config = ProptestConfig {
        cases: cases(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest::test_runner::TestRunner::new(config)
        .run(&bytes_case(), |case| bench.check(&case))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn hostile_packet_sequences_never_break_the_hub() {
    let bench = Bench::new();
    let config = ProptestConfig {
        cases: cases(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest::test_runner::TestRunner::new(config)
        .run(&packets_case(), |case| bench.check(&case))
        .unwrap_or_else(|e| panic!("{e}"));
}
