//! The CONNECT verdict before any credential check: `ClientId::parse` and `auth::parse_connect`
//! on arbitrary fields (the hub runs them on every CONNECT, before the signature).
//!
//! Must hold: no panic; a clientId that parses prints back to a clientId that parses the same.

#![no_main]

use aliot_protocol::ClientId;
use aliot_protocol::auth::{ConnectFields, parse_connect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, Option<&str>, Option<&[u8]>, u16)| {
    let (client_id, username, password, keep_alive) = input;
    if let Ok(parsed) = ClientId::parse(client_id) {
        let printed = parsed.to_string();
        let again = ClientId::parse(&printed);
        assert_eq!(
            again.as_ref(),
            Ok(&parsed),
            "{client_id:?} printed as {printed:?}"
        );
    }
    let fields = ConnectFields {
        client_id,
        username,
        password,
        keep_alive,
    };
    if let Ok(request) = parse_connect(&fields) {
        let _ = request.sign_content();
        let _ = request.verify("oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq", password.unwrap_or_default());
    }
});
