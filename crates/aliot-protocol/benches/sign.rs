//! Micro-benchmarks of the CONNECT signature: sign (content built each time), verify and
//! clientId parsing. `cargo bench -p aliot-protocol --bench sign`; the figures and the Python /
//! Node baselines are in docs/PERFORMANCE.md.

use aliot_protocol::auth::{ConnectFields, parse_connect};
use aliot_protocol::sign::sign_content;
use aliot_protocol::{ClientId, DeviceIdentity, HexCase, SignMethod, SignOptions, sign};
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

// The documentation's example device (spec §9 V1).
const PK: &str = "a14Xib5kdYd";
const DN: &str = "light1983432";
const SECRET: &str = "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq";
const PREFIX: &str = "SN1928339";
const TS: &str = "1539421321846";
const CID: &str = "SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|";
const USER: &str = "light1983432&a14Xib5kdYd";
const PASSWORD: &str = "b2488041f64f425016b467ee1c94959ebd592ad1";
/// The C SDK 4.x clientId: more parameters and a trailing comma.
const CID_C4: &str = "a13FN5TplKq.mqtt_basic_demo|timestamp=2524608000000,_ss=1,_v=sdk-c-4.1.0,securemode=2,signmethod=hmacsha256,ext=3,|";

/// Sign content + HMAC + hex, what the Python baseline does per iteration.
#[divan::bench(args = [SignMethod::HmacSha1, SignMethod::HmacSha256, SignMethod::HmacMd5])]
fn sign_password(bencher: Bencher<'_, '_>, method: SignMethod) {
    bencher.bench(|| {
        let content = sign_content(
            black_box(PREFIX),
            black_box(DN),
            black_box(PK),
            Some(black_box(TS)),
        );
        method.hex(black_box(SECRET).as_bytes(), content.as_bytes(), HexCase::Lower)
    });
}

/// The whole CONNECT: clientId built, content, HMAC, hex, username.
#[divan::bench(args = [SignMethod::HmacSha1, SignMethod::HmacSha256])]
fn sign_connect(bencher: Bencher<'_, '_>, method: SignMethod) {
    let id = DeviceIdentity::new(PK, DN, SECRET).expect("valid identity");
    let options = SignOptions {
        client_id_prefix: Some(PREFIX.into()),
        timestamp: Some(TS.into()),
        sign_method: method,
        ..SignOptions::default()
    };
    bencher.bench(|| sign(black_box(&id), black_box(&options)).expect("signable"));
}

/// The hub's check of one CONNECT: parse clientId and username, content, constant-time verify.
#[divan::bench]
fn verify_connect(bencher: Bencher<'_, '_>) {
    bencher.bench(|| {
        let fields = ConnectFields {
            client_id: black_box(CID),
            username: Some(black_box(USER)),
            password: Some(black_box(PASSWORD).as_bytes()),
            keep_alive: 60,
        };
        let req = parse_connect(&fields).expect("well-formed");
        req.verify(black_box(SECRET), black_box(PASSWORD).as_bytes())
            .is_ok()
    });
}

/// Password check only (content built, HMAC, constant-time compare), clientId already parsed.
#[divan::bench]
fn verify_password(bencher: Bencher<'_, '_>) {
    bencher.bench(|| {
        let content = sign_content(
            black_box(PREFIX),
            black_box(DN),
            black_box(PK),
            Some(black_box(TS)),
        );
        SignMethod::HmacSha1.verify_hex(
            black_box(SECRET).as_bytes(),
            content.as_bytes(),
            black_box(PASSWORD).as_bytes(),
        )
    });
}

#[divan::bench(args = [CID, CID_C4])]
fn client_id_parse(bencher: Bencher<'_, '_>, cid: &str) {
    bencher.bench(|| ClientId::parse(black_box(cid)).expect("well-formed"));
}

/// The credential doctor: a valid CONNECT (one HMAC), and the worst case, a password no known
/// mistake reproduces (every variant tried).
#[divan::bench(args = ["valid", "mismatch"])]
fn diagnose(bencher: Bencher<'_, '_>, case: &str) {
    use aliot_protocol::diagnose::{ConnectAttempt, diagnose};
    let secret = if case == "valid" {
        SECRET
    } else {
        "AnotherSecret0000000000000000000"
    };
    bencher.bench(|| {
        let attempt = ConnectAttempt {
            client_id: black_box(CID),
            username: black_box(USER),
            password: black_box(PASSWORD),
        };
        diagnose(&attempt, Some(black_box(secret)))
    });
}

/// The worst clientId a CONNECT can carry (65,535 bytes of about 13,000 distinct short keys):
/// refused as too long before any parsing (issue "Hardening" 1: the duplicate-key scan used to
/// compare every key with every earlier one, ~10^8 comparisons). Compared with the largest
/// clientId that is parsed: 512 bytes, 32 parameters.
#[divan::bench(args = ["worst 64 KiB", "largest parsed"])]
fn refuse_hostile_client_id(bencher: Bencher<'_, '_>, which: &str) {
    let cid = if which == "worst 64 KiB" {
        let mut s = "p|".to_owned();
        let mut i = 0u32;
        loop {
            // Distinct keys in base 36: "0", "1", … "zz", "100"…
            let key = base36(i);
            if s.len() + key.len() + 3 > 65_535 {
                break;
            }
            s.push_str(&key);
            s.push_str("=,");
            i += 1;
        }
        s.push('|');
        s
    } else {
        format!(
            "p|{}|",
            (0..32)
                .map(|i| format!("k{i:02}=v{}", "x".repeat(8)))
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    bencher.bench(|| {
        let fields = ConnectFields {
            client_id: black_box(&cid),
            username: Some(black_box(USER)),
            password: Some(black_box(PASSWORD).as_bytes()),
            keep_alive: 60,
        };
        parse_connect(&fields).is_err()
    });
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}
