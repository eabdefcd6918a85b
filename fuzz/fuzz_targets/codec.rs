//! The hub's codec boundary: arbitrary bytes through the rmqtt-codec v3 decoder with the hub's
//! packet limit, fed in chunks as reads deliver them.
//!
//! Must hold: no panic; memory stays bounded by the limit; every packet that decodes encodes
//! again, and that encoding decodes to the same packet (the hub forwards what it decoded).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rmqtt_codec::v3::Codec;
use tokio_util::codec::{Decoder, Encoder};

/// The hub's default packet limit (`BrokerConfig::max_packet_size`: a 256 KiB payload plus
/// 1 KiB for the rest of the packet).
const MAX_PACKET: u32 = 256 * 1024 + 1024;

fuzz_target!(|data: &[u8]| {
    // The first byte sets how the rest arrives: in reads of 1 to 256 bytes, so the decoder's
    // state across partial packets is exercised too.
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(split) + 1;
    let mut codec = Codec::new(MAX_PACKET);
    let mut buf = BytesMut::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some((packet, _))) => round_trip(packet),
                Ok(None) => break,
                // The hub closes the connection here.
                Err(_) => return,
            }
        }
    }
});

fn round_trip(packet: rmqtt_codec::v3::Packet) {
    let mut out = BytesMut::new();
    let mut codec = Codec::new(0);
    if codec.encode(packet.clone(), &mut out).is_err() {
        // Some decoded packets cannot be encoded (e.g. a QoS 1 PUBLISH without a packet id
        // cannot decode in the first place); the hub never re-encodes a device's packet as is.
        return;
    }
    match codec.decode(&mut out) {
        Ok(Some((again, _))) => assert_eq!(again, packet, "decode(encode(p)) != p"),
        other => panic!("a re-encoded packet does not decode: {other:?}"),
    }
    assert!(out.is_empty(), "bytes left after the re-encoded packet");
}
