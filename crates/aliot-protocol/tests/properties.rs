//! Property tests: the parsers never panic on arbitrary input, and what we build we parse back.

use aliot_protocol::ClientId;
use aliot_protocol::alink::{self, MAX_ID_LEN, MAX_METHOD_LEN, Request, error_reply_id, read_id};
use aliot_protocol::auth::{ConnectFields, parse_connect};
use aliot_protocol::diagnose::{ConnectAttempt, diagnose};
use aliot_protocol::topic::{
    Access, MAX_PLATFORM_TOPIC_LEN, MAX_REPLY_TOPIC_LEN, MAX_TOPIC_LEN, MAX_TOPIC_LEVELS, Topic,
    device_may_access, filter_matches, implicitly_subscribed, platform_may_send, reply_topic,
};
use proptest::prelude::*;

/// Strings rich in the characters the grammars care about.
fn tricky() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9|,=&/+#._ -]{0,40}",
        proptest::collection::vec(
            prop_oneof![
                Just("|"),
                Just(","),
                Just("="),
                Just("/"),
                Just("+"),
                Just("#"),
                Just("a"),
                Just("")
            ],
            0..24
        )
        .prop_map(|v| v.concat()),
    ]
}

/// First levels of the platform's topic families: a productKey named like one owns no custom
/// namespace (it would overlap theirs).
const RESERVED: &[&str] = &["sys", "ext", "ota", "shadow", "broadcast", "as"];

/// A productKey or deviceName level: no `/`, `+`, `#`, never empty; often a word that also
/// appears as a level of the platform's topics.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9_.@:-]{1,12}",
        2 => proptest::sample::select(vec![
            "sys", "ext", "ota", "shadow", "broadcast", "as", "user", "ntp", "rrpc", "error", "session",
            "device", "get", "update", "thing", "pk", "dn",
        ])
        .prop_map(str::to_owned),
    ]
}

fn access() -> impl Strategy<Value = Access> {
    prop_oneof![Just(Access::Publish), Just(Access::Subscribe)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn client_id_parse_never_panics(s in tricky()) {
        let _ = ClientId::parse(&s);
    }

    #[test]
    fn topic_parse_never_panics(s in tricky()) {
        let _ = Topic::parse(&s);
    }

    #[test]
    fn device_may_access_never_panics(pk in tricky(), dn in tricky(), t in tricky(), a in access()) {
        let _ = device_may_access(&pk, &dn, &t, a);
    }

    #[test]
    fn parse_connect_never_panics(
        cid in tricky(),
        user in proptest::option::of(tricky()),
        pw in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
        keep_alive in any::<u16>(),
    ) {
        let fields = ConnectFields { client_id: &cid, username: user.as_deref(), password: pw.as_deref(), keep_alive };
        if let Ok(req) = parse_connect(&fields) {
            let _ = req.verify("secret", pw.as_deref().unwrap_or_default());
        }
    }

    /// Build from any encodable prefix and parameters (in any order), format, parse: the same.
    #[test]
    fn client_id_round_trips(
        prefix in "[^|]{0,64}",
        params in proptest::collection::vec(("[^,=|]{1,12}", "[^,|]{0,12}"), 0..8),
    ) {
        let mut built = ClientId::new(prefix.clone()).expect("prefix without '|' of at most 64 chars");
        let mut seen = Vec::new();
        for (k, v) in &params {
            if seen.contains(k) {
                continue;
            }
            seen.push(k.clone());
            match built.clone().with_param(k.clone(), v.clone()) {
                Ok(b) => built = b,
                // Past the length cap the builder refuses, as the parser would.
                Err(aliot_protocol::Error::ClientId(aliot_protocol::error::ClientIdError::TooLong(n))) => {
                    prop_assert!(n > aliot_protocol::client_id::MAX_CLIENT_ID_LEN);
                    break;
                }
                Err(e) => return Err(TestCaseError::fail(format!("encodable parameter refused: {e}"))),
            }
        }
        let text = built.to_string();
        let parsed = ClientId::parse(&text).expect("a built clientId parses");
        prop_assert_eq!(&parsed, &built);
        prop_assert_eq!(parsed.prefix(), prefix.as_str());
        prop_assert_eq!(parsed.to_string(), text);
    }

    /// Every topic family a device uses: format(parse(s)) == s, and parse is stable.
    #[test]
    fn topics_round_trip(t in valid_topic()) {
        let parsed = Topic::parse(&t).map_err(|e| TestCaseError::fail(format!("{t}: {e}")))?;
        prop_assert_eq!(parsed.to_string(), t.clone());
        prop_assert_eq!(Topic::parse(&parsed.to_string()).ok(), Some(parsed));
    }

    /// A device may publish on its own device topics, and no other device may (other
    /// productKey or other deviceName), whatever its names are.
    #[test]
    fn own_topics_belong_to_their_device_only(
        (pk, dn, t) in (level(), level()).prop_flat_map(|(pk, dn)| {
            (Just(pk.clone()), Just(dn.clone()), device_topic(pk, dn))
        }),
        other in level(),
    ) {
        prop_assert!(device_may_access(&pk, &dn, &t, Access::Publish), "{}", t);
        prop_assert!(device_may_access(&pk, &dn, &t, Access::Subscribe), "{}", t);
        if other != pk {
            prop_assert!(!device_may_access(&other, &dn, &t, Access::Publish), "{} {}", other, t);
            prop_assert!(!device_may_access(&other, &dn, &t, Access::Subscribe), "{} {}", other, t);
        }
        if other != dn {
            prop_assert!(!device_may_access(&pk, &other, &t, Access::Publish), "{} {}", other, t);
            prop_assert!(!device_may_access(&pk, &other, &t, Access::Subscribe), "{} {}", other, t);
        }
    }

    /// A filter a device may subscribe to never matches another device's topic (one that
    /// shares its productKey or its deviceName, or neither).
    #[test]
    fn allowed_filters_never_reach_another_device(
        ((pk, dn), victim) in (level(), level(), level(), level(), 0..3u8).prop_flat_map(|(pk, dn, opk, odn, share)| {
            let (vpk, vdn) = match share {
                0 => (pk.clone(), odn),
                1 => (opk, dn.clone()),
                _ => (opk, odn),
            };
            (Just((pk, dn)), device_topic(vpk, vdn))
        }),
        filter in filter_for(),
    ) {
        let filter = filter.replace("{pk}", &pk).replace("{dn}", &dn);
        let owner = Topic::parse(&victim).ok().and_then(|v| v.device().map(|(p, d)| (p.to_owned(), d.to_owned())));
        if device_may_access(&pk, &dn, &filter, Access::Subscribe)
            && let Some(owner) = owner
            && owner != (pk.clone(), dn.clone())
        {
            prop_assert!(!filter_matches(&filter, &victim), "{} matches {} (owner {:?})", filter, victim, owner);
        }
    }

    /// Whatever accepts a topic respects the caps, and a device's own topic within the caps is
    /// accepted: names and filters up to MAX_TOPIC_LEN bytes and MAX_TOPIC_LEVELS levels, the
    /// platform's downlinks short enough for their `_reply`, parsed topics up to the reply of
    /// the longest request.
    #[test]
    fn topic_caps_hold((pk, dn, t) in long_topic(), a in access(), ss in any::<bool>()) {
        let len = t.len();
        let levels = t.split('/').count();
        let within = len <= MAX_TOPIC_LEN && levels <= MAX_TOPIC_LEVELS;
        let allowed = device_may_access(&pk, &dn, &t, a);
        if allowed {
            prop_assert!(within, "{} bytes, {} levels accepted", len, levels);
        }
        if platform_may_send(&pk, &dn, &t) {
            prop_assert!(len <= MAX_PLATFORM_TOPIC_LEN && levels <= MAX_TOPIC_LEVELS);
            prop_assert!(aliot_protocol::topic::valid_topic(&reply_topic(&t)), "the reply to {} bytes is no valid topic", len);
        }
        if Topic::parse(&t).is_ok() {
            prop_assert!(len <= MAX_REPLY_TOPIC_LEN && levels <= MAX_TOPIC_LEVELS);
        }
        let _ = implicitly_subscribed(&pk, &dn, ss, &t);
        // The converse, for the one family the generator makes without wildcards or reserved
        // names: the device's own custom topics.
        if within && t.starts_with(&format!("/{pk}/{dn}/")) && !t.contains(['+', '#']) && !t.ends_with('/')
            && !RESERVED.contains(&pk.as_str())
        {
            prop_assert!(device_may_access(&pk, &dn, &t, Access::Publish), "{}", t);
        }
    }

    /// A request is usable only with an id and a method within their caps; an unusable one with
    /// an id is answered with an id that is never longer than the cap.
    #[test]
    fn alink_caps_hold(payload in alink_payload()) {
        match Request::parse(payload.as_bytes()) {
            Ok(r) => {
                prop_assert!(r.id.raw().len() <= MAX_ID_LEN);
                prop_assert!(r.method.as_ref().is_none_or(|m| m.len() <= MAX_METHOD_LEN));
                prop_assert_eq!(read_id(payload.as_bytes()), Some(r.id));
            }
            Err(_) => {
                if let Some(id) = error_reply_id(payload.as_bytes()) {
                    prop_assert!(id.raw().len() <= MAX_ID_LEN);
                }
            }
        }
        if let Some(id) = read_id(payload.as_bytes()) {
            prop_assert!(id.raw().len() <= MAX_ID_LEN);
        }
        let _ = alink::DeviceReply::parse(payload.as_bytes());
        let _ = alink::ntp::response(payload.as_bytes(), 1, 2);
    }

    /// The doctor never panics either (fewer cases: it recomputes thousands of HMACs).
    #[test]
    fn diagnose_never_panics(cid in tricky(), user in tricky(), pw in tricky(), secret in proptest::option::of(tricky())) {
        let _ = diagnose(&ConnectAttempt { client_id: &cid, username: &user, password: &pw }, secret.as_deref());
    }
}

/// A valid topic of any family.
fn valid_topic() -> impl Strategy<Value = String> {
    prop_oneof![
        (level(), level()).prop_flat_map(|(pk, dn)| device_topic(pk, dn)),
        (level(), "[a-z]{1,8}(/[a-z0-9]{1,8}){0,2}").prop_map(|(pk, rest)| format!("/broadcast/{pk}/{rest}")),
    ]
}

/// A topic owned by device (pk, dn).
fn device_topic(pk: String, dn: String) -> impl Strategy<Value = String> {
    let id = "[0-9]{1,12}";
    let name = "[A-Za-z][A-Za-z0-9_]{0,10}";
    let sys_path = prop_oneof![
        Just("thing/event/property/post".to_owned()),
        Just("thing/event/property/batch/post".to_owned()),
        Just("thing/event/property/pack/post".to_owned()),
        Just("thing/event/property/history/post".to_owned()),
        Just("thing/service/property/set".to_owned()),
        Just("thing/service/property/get".to_owned()),
        Just("thing/property/desired/get".to_owned()),
        Just("thing/property/desired/delete".to_owned()),
        Just("thing/deviceinfo/update".to_owned()),
        Just("thing/deviceinfo/delete".to_owned()),
        Just("thing/config/get".to_owned()),
        Just("thing/config/push".to_owned()),
        Just("thing/ota/firmware/get".to_owned()),
        Just("thing/model/up_raw".to_owned()),
        Just("thing/model/down_raw".to_owned()),
        name.prop_map(|e| format!("thing/event/{e}/post")),
        name.prop_map(|s| format!("thing/service/{s}")),
        id.prop_map(|i| format!("rrpc/request/{i}")),
        id.prop_map(|i| format!("rrpc/response/{i}")),
        id.prop_map(|i| format!("broadcast/request/{i}")),
        "[a-z]{1,6}(/[a-z]{1,6}){0,3}",
    ];
    let sys_path =
        (sys_path, any::<bool>()).prop_map(|(p, reply)| if reply { format!("{p}_reply") } else { p });
    let (p, d) = (pk.clone(), dn.clone());
    let sys = sys_path.prop_map(move |path| format!("/sys/{p}/{d}/{path}"));
    let (p, d) = (pk.clone(), dn.clone());
    let rrpc = (id, name).prop_map(move |(i, s)| format!("/ext/rrpc/{i}/sys/{p}/{d}/thing/service/{s}"));
    let (p, d) = (pk.clone(), dn.clone());
    // A productKey named like a platform family has no custom namespace: use its /sys one.
    let custom = "user(/[a-z]{1,8}){1,3}".prop_map(move |rest| {
        if RESERVED.contains(&p.as_str()) {
            format!("/sys/{p}/{d}/{rest}")
        } else {
            format!("/{p}/{d}/{rest}")
        }
    });
    let fixed = prop_oneof![
        Just(format!("/ext/ntp/{pk}/{dn}/request")),
        Just(format!("/ext/ntp/{pk}/{dn}/response")),
        Just(format!("/ext/error/{pk}/{dn}")),
        Just(format!("/shadow/update/{pk}/{dn}")),
        Just(format!("/shadow/get/{pk}/{dn}")),
        Just(format!("/ota/device/inform/{pk}/{dn}")),
        Just(format!("/ota/device/upgrade/{pk}/{dn}")),
        Just(format!("/ota/device/progress/{pk}/{dn}")),
        Just(format!("/ota/device/request/{pk}/{dn}")),
    ];
    prop_oneof![sys, rrpc, custom, fixed]
}

/// Subscription filters a device might try, with `{pk}`/`{dn}` placeholders.
fn filter_for() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/sys/{pk}/{dn}/#".to_owned()),
        Just("/sys/{pk}/{dn}/thing/event/+/post_reply".to_owned()),
        Just("/sys/{pk}/+/#".to_owned()),
        Just("/sys/+/{dn}/#".to_owned()),
        Just("/{pk}/{dn}/user/#".to_owned()),
        Just("/{pk}/+/user/#".to_owned()),
        Just("/+/{dn}/#".to_owned()),
        Just("/ota/device/+/{pk}/{dn}".to_owned()),
        Just("/ota/device/+/{pk}/+".to_owned()),
        Just("/shadow/+/{pk}/{dn}".to_owned()),
        Just("/ext/rrpc/+/sys/{pk}/{dn}/#".to_owned()),
        Just("/ext/rrpc/+/#".to_owned()),
        Just("/ext/ntp/{pk}/{dn}/+".to_owned()),
        Just("/ext/error/{pk}/{dn}".to_owned()),
        Just("/broadcast/{pk}/#".to_owned()),
        Just("#".to_owned()),
        Just("/#".to_owned()),
    ]
}

/// Topics around the caps: one of a device's prefixes, then up to 40 levels of up to 16
/// characters (sometimes wildcards), for (pk, dn).
fn long_topic() -> impl Strategy<Value = (String, String, String)> {
    (
        level(),
        level(),
        0..5usize,
        proptest::collection::vec(
            prop_oneof![8 => "[a-z0-9_]{1,16}", 1 => Just("+".to_owned()), 1 => Just("#".to_owned())],
            0..40,
        ),
    )
        .prop_map(|(pk, dn, family, rest)| {
            let head = match family {
                0 => format!("/{pk}/{dn}/user"),
                1 => format!("/sys/{pk}/{dn}/thing"),
                2 => format!("/ext/rrpc/1/sys/{pk}/{dn}"),
                3 => format!("/broadcast/{pk}"),
                _ => format!("/ota/device/upgrade/{pk}/{dn}"),
            };
            let t = if rest.is_empty() {
                head
            } else {
                format!("{head}/{}", rest.join("/"))
            };
            (pk, dn, t)
        })
}

/// Alink payloads with ids and methods of every length around the caps, and arbitrary JSON.
fn alink_payload() -> impl Strategy<Value = String> {
    let id = prop_oneof![
        (0..2 * MAX_ID_LEN).prop_map(|n| format!("\"{}\"", "7".repeat(n))),
        (1..2 * MAX_ID_LEN).prop_map(|n| format!("1.{}", "0".repeat(n))),
        "\"[a-z|/\\\\]{0,40}\"",
        Just("{}".to_owned()),
        Just("null".to_owned()),
    ];
    let method = prop_oneof![
        (0..2 * MAX_METHOD_LEN).prop_map(|n| format!(",\"method\":\"{}\"", "m".repeat(n))),
        Just(",\"method\":5".to_owned()),
        Just(String::new()),
    ];
    prop_oneof![
        4 => (id, method).prop_map(|(id, m)| format!("{{\"id\":{id}{m},\"params\":{{}}}}")),
        1 => any::<String>(),
        1 => "[\\[\\]{}\":,0-9a-z]{0,40}",
    ]
}
