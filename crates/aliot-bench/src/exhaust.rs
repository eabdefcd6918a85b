//! The `exhaust` workload: every device does what a hostile or broken device can do to make the
//! server hold memory for it, so that a run shows what a fleet of them costs (on `aliot hub`,
//! the configured budgets bound it; docs/hub.md lists them):
//!
//! - while the fleet runs, it posts properties at QoS 1 as fast as the socket takes them, each
//!   post naming [`PROPERTIES_PER_POST`] properties never named before, and it never reads:
//!   acknowledgements and replies pile up on the server;
//! - when the run ends, it starts a PUBLISH whose remaining length is `packet_bytes` and sends
//!   all of it but the last byte;
//! - it keeps the connection open, still reading nothing, until the fleet closes.
//!
//! The parent samples the server's memory meanwhile (`--hub-metrics`, `--server-pid`).

use std::fmt::Write as _;
use std::sync::OnceLock;

use tokio::sync::watch;

use crate::fleet::{Fleet, Phase};
use crate::stats::Stats;
use crate::wire::{Connection, QoS, publish_packet};

/// Properties named by one post (the platform's limit per post is 200).
pub(crate) const PROPERTIES_PER_POST: usize = 200;

/// Characters of each property's string value.
const VALUE_LEN: usize = 64;

/// A post naming properties `p{seq}_0` … `p{seq}_199`, each a 64-character string.
fn post(seq: u64) -> String {
    let value = "v".repeat(VALUE_LEN);
    let mut s = String::with_capacity(PROPERTIES_PER_POST * (VALUE_LEN + 24) + 96);
    let _ = write!(
        s,
        r#"{{"id":"{}","version":"1.0","params":{{"#,
        seq % 1_000_000_000
    );
    for i in 0..PROPERTIES_PER_POST {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, r#""p{seq}_{i}":"{value}""#);
    }
    s.push_str(r#"},"method":"thing.event.property.post"}"#);
    s
}

/// The bytes of a PUBLISH (QoS 0) to `topic` whose remaining length is `remaining`, all but the
/// last one. `None` when `remaining` cannot hold the topic or exceeds MQTT's 268,435,455.
pub(crate) fn unfinished_publish(topic: &str, remaining: u32) -> Option<Vec<u8>> {
    let topic_len = u16::try_from(topic.len()).ok()?;
    if remaining > 268_435_455 || (remaining as usize) < 2 + topic.len() + 1 {
        return None;
    }
    let mut out = Vec::with_capacity(remaining as usize + 4);
    out.push(0x30);
    let mut len = remaining;
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&topic_len.to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    let header = out.len();
    // The payload up to one byte short of the announced length.
    out.resize(header + remaining as usize - 2 - topic.len() - 1, b'x');
    Some(out)
}

/// The unfinished packet, built once per process (every device of a fleet sends the same).
fn unfinished(fleet: &Fleet, topic: &str) -> &'static [u8] {
    static PACKET: OnceLock<Vec<u8>> = OnceLock::new();
    PACKET.get_or_init(|| unfinished_publish(topic, fleet.settings.packet_bytes).unwrap_or_default())
}

/// The connected life of device `idx` under `exhaust`. Returns `true` when the fleet asked it to
/// close, `false` when writing failed (the server closed the connection).
pub(crate) async fn run(
    fleet: &Fleet,
    idx: usize,
    conn: &mut Connection,
    phase_rx: &mut watch::Receiver<Phase>,
) -> bool {
    let topic = fleet.post_topic(&fleet.devices[idx]);
    let mut seq: u64 = 0;
    // A write cut short by a phase change leaves a packet half sent: nothing more can follow it.
    let mut framing_broken = false;
    let mut unfinished_sent = false;
    loop {
        let phase = *phase_rx.borrow_and_update();
        match phase {
            Phase::Close => return true,
            Phase::Run if !framing_broken => {
                let pkid = u16::try_from(seq % 65_535 + 1).unwrap_or(1);
                if conn
                    .feed(publish_packet(&topic, post(seq), QoS::AtLeastOnce, pkid))
                    .is_err()
                {
                    return false;
                }
                Stats::inc(&fleet.stats.sent);
                seq += 1;
                tokio::select! {
                    r = conn.flush() => if r.is_err() { return false },
                    _ = phase_rx.changed() => framing_broken = true,
                }
            }
            Phase::Stop if !framing_broken && !unfinished_sent => {
                unfinished_sent = true;
                let bytes = unfinished(fleet, &topic);
                tokio::select! {
                    r = conn.write_raw(bytes) => if r.is_err() { return false },
                    _ = phase_rx.changed() => {}
                }
            }
            _ => {
                if phase_rx.changed().await.is_err() {
                    return true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_names_200_new_properties() {
        let v: serde_json::Value = serde_json::from_str(&post(7)).expect("json");
        let params = v["params"].as_object().expect("params");
        assert_eq!(params.len(), PROPERTIES_PER_POST);
        assert!(params.contains_key("p7_0") && params.contains_key("p7_199"));
        assert_ne!(post(7), post(8));
    }

    #[test]
    fn the_unfinished_publish_is_one_byte_short() {
        let p = unfinished_publish("/t", 300).expect("fits");
        // Fixed header (1 + 2 length bytes) + the 300 announced bytes, less one.
        assert_eq!(p.len(), 3 + 300 - 1);
        assert_eq!(&p[..3], &[0x30, 0xAC, 0x02]);
        assert_eq!(&p[3..7], &[0, 2, b'/', b't']);
        assert!(unfinished_publish("/t", 4).is_none());
        assert!(unfinished_publish("/t", 268_435_456).is_none());
    }
}
