//! Alink payloads: `Request::parse`, `read_id`, `error_reply_id`, `DeviceReply::parse` and the
//! NTP answer (the hub runs them on every uplink it answers).
//!
//! Must hold: no panic; an echoed id or method is within its cap; what the hub would send back
//! is JSON.

#![no_main]

use aliot_protocol::alink::{
    DeviceReply, MAX_ID_LEN, MAX_METHOD_LEN, Reply, Request, error_reply_id, ntp, read_id,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Request::parse(data) {
        Ok(request) => {
            assert!(request.id.raw().len() <= MAX_ID_LEN);
            assert!(request.method.as_ref().is_none_or(|m| m.len() <= MAX_METHOD_LEN));
            assert_eq!(read_id(data).as_ref(), Some(&request.id));
            let _ = request.wants_reply();
            let reply = Reply::success(request.id.clone(), request.method.clone()).to_vec();
            assert!(serde_json::from_slice::<serde_json::Value>(&reply).is_ok());
        }
        Err(_) => {
            if let Some(id) = error_reply_id(data) {
                assert!(id.raw().len() <= MAX_ID_LEN);
                let reply = Reply::error(id, None, 460, "x").to_vec();
                assert!(serde_json::from_slice::<serde_json::Value>(&reply).is_ok());
            }
        }
    }
    if let Some(id) = read_id(data) {
        assert!(id.raw().len() <= MAX_ID_LEN);
        let _ = id.as_text();
    }
    if let Ok(reply) = DeviceReply::parse(data) {
        assert!(serde_json::from_slice::<serde_json::Value>(&reply.to_vec()).is_ok());
    }
    if let Ok(answer) = ntp::response(data, 1, 2) {
        assert!(serde_json::from_slice::<serde_json::Value>(&answer).is_ok());
        let _ = ntp::server_time(&answer, 3);
    }
    let _ = ntp::server_time(data, 3);
});
