//! Every known-answer vector of `tests/data/sign-vectors.json`, read at test time.
//!
//! That file is the repository's copy of the project's shared vectors
//! (`../shared/vectors/sign-vectors.json`, beside the repository in CI): a clone of this
//! repository alone runs every vector. When the shared file is there too,
//! [`the_repository_copy_is_identical_to_the_shared_vectors`] checks that the two are the same.

use aliot_protocol::auth::{ConnectFields, parse_connect};
use aliot_protocol::diagnose::{ConnectAttempt, Mistake, diagnose};
use aliot_protocol::sign::{dynreg_content, dynreg_http_body, dynreg_sign, sign_content};
use aliot_protocol::{ClientId, DeviceIdentity, HexCase, SecureMode, SignMethod, SignOptions, sign};
use serde::Deserialize;

/// The repository's copy of the vectors.
const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sign-vectors.json");

/// The shared original, present when the `shared` checkout sits beside the repository.
const SHARED_VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/vectors/sign-vectors.json"
);

#[derive(Debug, Deserialize)]
struct Vectors {
    mqtt_password: Vec<MqttVector>,
    raw_hmac: Vec<RawVector>,
    dynreg: Vec<DynregVector>,
    negative: Vec<NegativeVector>,
}

#[derive(Debug, Deserialize)]
struct MqttVector {
    source: String,
    sign_method: String,
    product_key: String,
    device_name: String,
    device_secret: String,
    client_id_prefix: String,
    timestamp: Option<String>,
    sign_content: String,
    password: String,
    mqtt_client_id: Option<String>,
    username: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawVector {
    source: String,
    sign_method: String,
    key: String,
    message: String,
    hex: String,
}

#[derive(Debug, Deserialize)]
struct DynregVector {
    source: String,
    sign_method: String,
    product_key: String,
    device_name: String,
    product_secret: String,
    random: String,
    sign_content: String,
    sign: String,
    mqtt_client_id: Option<String>,
    username: Option<String>,
    http_body: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NegativeVector {
    about: String,
    sign_method: String,
    key: String,
    message: String,
    hex: String,
}

fn load() -> Vectors {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("cannot read the sign vectors at {VECTORS}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{VECTORS} is not valid vector JSON: {e}"))
}

/// The copy must not drift from the shared original. Without the `shared` checkout beside the
/// repository (a user's clone) there is nothing to compare, and the copy alone is used.
#[test]
fn the_repository_copy_is_identical_to_the_shared_vectors() {
    let shared = std::path::Path::new(SHARED_VECTORS);
    if !shared.exists() {
        // A user's clone: nothing to compare; the copy is used alone.
        return;
    }
    let original = std::fs::read(shared).unwrap_or_else(|e| panic!("cannot read {SHARED_VECTORS}: {e}"));
    let copy = std::fs::read(VECTORS).unwrap_or_else(|e| panic!("cannot read {VECTORS}: {e}"));
    assert!(
        original == copy,
        "{VECTORS} differs from {SHARED_VECTORS}: copy the shared file into the repository again"
    );
}

fn method(name: &str) -> SignMethod {
    name.parse()
        .unwrap_or_else(|e| panic!("vector names an unknown sign method {name:?}: {e}"))
}

/// The hex case a vector was published in.
fn case_of(hex: &str) -> HexCase {
    if hex.chars().any(|c| c.is_ascii_uppercase()) {
        HexCase::Upper
    } else {
        HexCase::Lower
    }
}

/// The parameters of a clientId string in their order, split by hand (not with the parser under
/// test): text between the first and the last `|`, `,`-separated, empty segments skipped.
fn params_in_order(cid: &str) -> (String, Vec<(String, String)>) {
    let first = cid.find('|').expect("vector clientId has a '|'");
    let last = cid.rfind('|').expect("vector clientId has a '|'");
    let params = cid[first + 1..last]
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("vector parameter is key=value");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    (cid[..first].to_owned(), params)
}

#[test]
fn the_vector_file_has_every_section() {
    let v = load();
    assert!(
        v.mqtt_password.len() >= 10,
        "{} mqtt_password vectors",
        v.mqtt_password.len()
    );
    assert!(!v.raw_hmac.is_empty() && !v.dynreg.is_empty() && !v.negative.is_empty());
}

#[test]
fn mqtt_password_vectors() {
    for v in load().mqtt_password {
        let ctx = format!(
            "{} ({} {}/{})",
            v.source, v.sign_method, v.product_key, v.device_name
        );
        let m = method(&v.sign_method);
        let case = case_of(&v.password);

        // The sign content and the password, in the vector's case.
        let content = sign_content(
            &v.client_id_prefix,
            &v.device_name,
            &v.product_key,
            v.timestamp.as_deref(),
        );
        assert_eq!(content, v.sign_content, "sign content: {ctx}");
        assert_eq!(
            m.hex(v.device_secret.as_bytes(), content.as_bytes(), case),
            v.password,
            "password: {ctx}"
        );

        // The same through the public signing API.
        let id = DeviceIdentity::new(&v.product_key, &v.device_name, &v.device_secret)
            .unwrap_or_else(|e| panic!("identity: {ctx}: {e}"));
        let secure_mode = match &v.mqtt_client_id {
            Some(cid) => ClientId::parse(cid)
                .ok()
                .and_then(|c| c.secure_mode().ok().flatten())
                .unwrap_or(SecureMode::Tcp),
            None => SecureMode::Tcp,
        };
        let creds = sign(
            &id,
            &SignOptions {
                client_id_prefix: Some(v.client_id_prefix.clone()),
                timestamp: v.timestamp.clone(),
                sign_method: m,
                secure_mode,
                extra_params: Vec::new(),
                hex_case: case,
            },
        )
        .unwrap_or_else(|e| panic!("sign: {ctx}: {e}"));
        assert_eq!(creds.password, v.password, "sign(): {ctx}");
        assert_eq!(creds.sign_content, v.sign_content, "sign(): {ctx}");
        assert_eq!(creds.username, id.username(), "sign(): {ctx}");
        if let Some(u) = &v.username {
            assert_eq!(&id.username(), u, "username: {ctx}");
        }

        // The clientId, built in the vector's parameter order, and parsed back.
        if let Some(cid) = &v.mqtt_client_id {
            let (prefix, params) = params_in_order(cid);
            assert_eq!(prefix, v.client_id_prefix, "prefix: {ctx}");
            let mut built = ClientId::new(&prefix).unwrap_or_else(|e| panic!("ClientId::new: {ctx}: {e}"));
            for (k, val) in &params {
                built = built
                    .with_param(k, val)
                    .unwrap_or_else(|e| panic!("with_param {k}: {ctx}: {e}"));
            }
            // The C SDK 4.x sends a trailing comma (`ext=3,|`); a built clientId has none.
            let canonical = match cid.strip_suffix(",|") {
                Some(head) => format!("{head}|"),
                None => cid.clone(),
            };
            assert_eq!(built.to_string(), canonical, "built clientId: {ctx}");
            let parsed = ClientId::parse(cid).unwrap_or_else(|e| panic!("parse clientId: {ctx}: {e}"));
            assert_eq!(parsed, built, "parsed clientId: {ctx}");
            assert_eq!(
                parsed.timestamp(),
                v.timestamp.as_deref(),
                "clientId timestamp: {ctx}"
            );
            assert_eq!(parsed.sign_method(), Ok(Some(m)), "clientId signmethod: {ctx}");
        }

        // The platform's verdict accepts it: the vector's clientId, or the one `sign` built.
        let client_id = v
            .mqtt_client_id
            .clone()
            .unwrap_or_else(|| creds.client_id.clone());
        let username = v.username.clone().unwrap_or_else(|| id.username());
        let fields = ConnectFields {
            client_id: &client_id,
            username: Some(&username),
            password: Some(v.password.as_bytes()),
            keep_alive: 60,
        };
        let req = parse_connect(&fields).unwrap_or_else(|e| panic!("parse_connect: {ctx}: {e}"));
        assert_eq!(
            (req.product_key.as_str(), req.device_name.as_str()),
            (v.product_key.as_str(), v.device_name.as_str())
        );
        assert_eq!(req.sign_method, m, "{ctx}");
        assert_eq!(req.sign_content(), v.sign_content, "verdict content: {ctx}");
        assert_eq!(
            req.verify(&v.device_secret, v.password.as_bytes()),
            Ok(()),
            "verify: {ctx}"
        );
        let other_case = if case == HexCase::Upper {
            v.password.to_ascii_lowercase()
        } else {
            v.password.to_ascii_uppercase()
        };
        assert_eq!(
            req.verify(&v.device_secret, other_case.as_bytes()),
            Ok(()),
            "verify, other case: {ctx}"
        );
        assert!(
            req.verify("not-the-secret", v.password.as_bytes()).is_err(),
            "wrong secret: {ctx}"
        );

        // And the doctor agrees.
        let d = diagnose(
            &ConnectAttempt {
                client_id: &client_id,
                username: &username,
                password: &v.password,
            },
            Some(&v.device_secret),
        );
        assert!(d.valid, "diagnose: {ctx}: {d:?}");
    }
}

#[test]
fn raw_hmac_vectors() {
    for v in load().raw_hmac {
        let got = method(&v.sign_method).hex(v.key.as_bytes(), v.message.as_bytes(), HexCase::Lower);
        assert_eq!(got, v.hex.to_ascii_lowercase(), "{} {}", v.source, v.sign_method);
        assert!(method(&v.sign_method).verify_hex(v.key.as_bytes(), v.message.as_bytes(), v.hex.as_bytes()));
    }
}

#[test]
fn dynreg_vectors() {
    for v in load().dynreg {
        let ctx = format!("{} ({})", v.source, v.sign_method);
        let m = method(&v.sign_method);
        assert_eq!(
            dynreg_content(&v.device_name, &v.product_key, &v.random),
            v.sign_content,
            "content: {ctx}"
        );
        let sign = dynreg_sign(
            m,
            &v.product_secret,
            &v.device_name,
            &v.product_key,
            &v.random,
            case_of(&v.sign),
        );
        assert_eq!(sign, v.sign, "sign: {ctx}");
        if let Some(cid) = &v.mqtt_client_id {
            let c = ClientId::parse(cid).unwrap_or_else(|e| panic!("parse: {ctx}: {e}"));
            assert_eq!(c.get("random"), Some(v.random.as_str()), "{ctx}");
            assert_eq!(c.sign_method(), Ok(Some(m)), "{ctx}");
            assert!(matches!(c.get("authType"), Some("register" | "regnwl")), "{ctx}");
            assert_eq!(
                c.prefix(),
                format!("{}.{}", v.device_name, v.product_key),
                "dn.pk prefix: {ctx}"
            );
            // The doctor checks registrations against the productSecret.
            let user = v
                .username
                .clone()
                .unwrap_or_else(|| format!("{}&{}", v.device_name, v.product_key));
            let d = diagnose(
                &ConnectAttempt {
                    client_id: cid,
                    username: &user,
                    password: &v.sign,
                },
                Some(&v.product_secret),
            );
            assert!(d.valid, "diagnose: {ctx}: {d:?}");
            // The platform's verdict: a registration, keyed by the productSecret.
            let fields = ConnectFields {
                client_id: cid,
                username: Some(&user),
                password: Some(v.sign.as_bytes()),
                keep_alive: 0,
            };
            let req = parse_connect(&fields).unwrap_or_else(|e| panic!("verdict: {ctx}: {e}"));
            assert!(req.auth.is_registration(), "{ctx}");
            assert_eq!(req.sign_content(), v.sign_content, "verdict content: {ctx}");
            assert_eq!(req.verify(&v.product_secret, v.sign.as_bytes()), Ok(()), "{ctx}");
            assert!(req.verify("not-the-secret", v.sign.as_bytes()).is_err(), "{ctx}");
        }
        if let Some(u) = &v.username {
            assert_eq!(u, &format!("{}&{}", v.device_name, v.product_key), "{ctx}");
        }
        if let Some(body) = &v.http_body {
            assert_eq!(
                &dynreg_http_body(&v.product_key, &v.device_name, &v.random, m, &sign),
                body,
                "{ctx}"
            );
        }
    }
}

#[test]
fn negative_vectors_compute_but_never_verify_as_the_documented_password() {
    let v = load();
    for n in &v.negative {
        let m = method(&n.sign_method);
        assert_eq!(
            m.hex(n.key.as_bytes(), n.message.as_bytes(), HexCase::Lower),
            n.hex.to_ascii_lowercase(),
            "{}",
            n.about
        );
        // The documented password(s) for this key and algorithm.
        let documented: Vec<&MqttVector> = v
            .mqtt_password
            .iter()
            .filter(|p| p.device_secret == n.key && method(&p.sign_method) == m)
            .collect();
        assert!(
            !documented.is_empty(),
            "no documented password to compare with: {}",
            n.about
        );
        for doc in documented {
            assert!(!n.hex.eq_ignore_ascii_case(&doc.password), "{}", n.about);
            assert!(
                !m.verify_hex(n.key.as_bytes(), n.message.as_bytes(), doc.password.as_bytes()),
                "{}",
                n.about
            );
            // Sent as the password of the documented CONNECT, the platform refuses it.
            let Some(cid) = &doc.mqtt_client_id else { continue };
            let username = format!("{}&{}", doc.device_name, doc.product_key);
            let fields = ConnectFields {
                client_id: cid,
                username: Some(&username),
                password: Some(n.hex.as_bytes()),
                keep_alive: 60,
            };
            let req = parse_connect(&fields).unwrap_or_else(|e| panic!("{}: {e}", n.about));
            assert!(
                req.verify(&doc.device_secret, n.hex.as_bytes()).is_err(),
                "{}",
                n.about
            );
            let d = diagnose(
                &ConnectAttempt {
                    client_id: cid,
                    username: &username,
                    password: &n.hex,
                },
                Some(&doc.device_secret),
            );
            assert!(!d.valid, "{}", n.about);
            if n.message.contains("signmethod") {
                assert_eq!(d.mistake, Some(Mistake::SignMethodInContent), "{}", n.about);
            }
        }
    }
}
