//! Topic parsing and topic rights: `Topic::parse`, `device_may_access`, `platform_may_send`,
//! `implicitly_subscribed` (the hub runs them on every PUBLISH, SUBSCRIBE and downlink).
//!
//! Must hold: no panic; the caps (`MAX_TOPIC_LEN`, `MAX_TOPIC_LEVELS`, ...) are respected by
//! whatever accepts a topic; a parsed topic prints back as itself.

#![no_main]

use aliot_protocol::topic::{
    Access, MAX_PLATFORM_TOPIC_LEN, MAX_REPLY_TOPIC_LEN, MAX_TOPIC_LEN, MAX_TOPIC_LEVELS, Topic,
    device_may_access, implicitly_subscribed, platform_may_send,
};
use libfuzzer_sys::fuzz_target;

fn levels(topic: &str) -> usize {
    topic.split('/').count()
}

fuzz_target!(|input: (&str, &str, &str, bool)| {
    let (pk, dn, topic, auto_subscribe) = input;
    if let Ok(parsed) = Topic::parse(topic) {
        assert!(topic.len() <= MAX_REPLY_TOPIC_LEN && levels(topic) <= MAX_TOPIC_LEVELS);
        assert_eq!(parsed.to_string(), topic, "a parsed topic prints differently");
    }
    for access in [Access::Publish, Access::Subscribe] {
        if device_may_access(pk, dn, topic, access) {
            assert!(topic.len() <= MAX_TOPIC_LEN && levels(topic) <= MAX_TOPIC_LEVELS);
        }
    }
    if platform_may_send(pk, dn, topic) {
        assert!(topic.len() <= MAX_PLATFORM_TOPIC_LEN && !topic.contains(['+', '#']));
    }
    let _ = implicitly_subscribed(pk, dn, auto_subscribe, topic);
});
