//! The credential doctor: says whether hand-built CONNECT fields would be accepted and, when
//! not, names the most likely mistake (what `aliot verify` prints; the hub may log it too).
//!
//! The verdict itself is the platform's ([`crate::auth::parse_connect`] then
//! [`ConnectRequest::verify`](crate::auth::ConnectRequest::verify)), so the doctor and the hub
//! never disagree. When the signature does not match, the doctor recomputes it with one
//! known mistake at a time (another algorithm, `signmethod` in the content, unsorted keys, a
//! different timestamp, productKey and deviceName swapped, a secret with stray white space, …)
//! and reports the first that reproduces the password.
//!
//! Cost: a valid CONNECT costs one HMAC; a mismatch costs up to a few thousand (2–3 ms, see
//! docs/PERFORMANCE.md), mostly trying nearby timestamps. A server should run it on demand or
//! rate-limited (say once per device and minute), never on every refused CONNECT of a storm.
//!
//! ```
//! use aliot_protocol::diagnose::{diagnose, ConnectAttempt, Mistake};
//!
//! let attempt = ConnectAttempt {
//!     client_id: "SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|",
//!     username: "a14Xib5kdYd&light1983432", // productKey&deviceName: reversed
//!     password: "b2488041f64f425016b467ee1c94959ebd592ad1",
//! };
//! let d = diagnose(&attempt, Some("oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq"));
//! assert!(!d.valid);
//! assert_eq!(d.mistake, Some(Mistake::UsernameReversed));
//! ```

use std::fmt;

use base64::Engine as _;

use crate::auth::{ConnectFields, parse_connect, parse_username};
use crate::client_id::{ClientId, SecureMode};
use crate::error::ClientIdError;
use crate::identity::{validate_device_name, validate_product_key};
use crate::sign::{HexCase, SignMethod, dynreg_content, sign_content};

/// The three CONNECT fields a user builds by hand.
#[derive(Clone, Copy)]
pub struct ConnectAttempt<'a> {
    /// The MQTT clientId, `prefix|securemode=..,signmethod=..,timestamp=..|`.
    pub client_id: &'a str,
    /// The MQTT username, `deviceName&productKey`.
    pub username: &'a str,
    /// The MQTT password, hex.
    pub password: &'a str,
}

impl fmt::Debug for ConnectAttempt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectAttempt")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The mistake the doctor found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mistake {
    /// The clientId does not follow `prefix|key=value,...|`.
    MalformedClientId(ClientIdError),
    /// `securemode` has a value outside spec §1.4.
    UnknownSecureMode(String),
    /// The username is not `deviceName&productKey`.
    MalformedUsername(String),
    /// The username is `productKey&deviceName`; the sign content has them right.
    UsernameReversed,
    /// productKey and deviceName are swapped in the sign content (or everywhere).
    ProductKeyDeviceNameSwapped,
    /// The username names another device than the one whose secret was given.
    WrongDevice,
    /// `signmethod` names an algorithm the platform does not support.
    UnsupportedSignMethod(String),
    /// No `signmethod` (the platform then checks HMAC-MD5), but the password uses another algorithm.
    MissingSignMethod {
        /// The algorithm the password was made with.
        actual: SignMethod,
    },
    /// The password is made with another algorithm than the one declared.
    WrongAlgorithm {
        /// `signmethod` in the clientId.
        declared: SignMethod,
        /// The algorithm the password was made with.
        actual: SignMethod,
    },
    /// The Node SDK's `signAlgorithm` bug: it declares hmacsha256 (or hmacmd5) but always signs
    /// with HMAC-SHA1 (spec §1.3, §13).
    NodeSignAlgorithmBug {
        /// `signmethod` in the clientId.
        declared: SignMethod,
    },
    /// `signmethod` (or `securemode`) was included in the sign content.
    SignMethodInContent,
    /// The sign content's keys are not in alphabetical order.
    KeysUnsorted {
        /// The order that was signed, e.g. `productKey,deviceName,clientId,timestamp`.
        order: String,
    },
    /// The timestamp in the sign content is not the clientId's.
    TimestampMismatch {
        /// The clientId's `timestamp`.
        client_id: Option<String>,
        /// The timestamp that was signed (`None`: none).
        signed: Option<String>,
    },
    /// The sign content's `clientId` value is not the clientId prefix.
    ClientIdMismatch {
        /// What was signed as the clientId (`None`: the `clientId` key was left out).
        signed: Option<String>,
    },
    /// The password is base64, not hex.
    Base64Password,
    /// The password has leading or trailing white space (an `echo` newline?).
    PasswordWhitespace,
    /// The password is not hex of the declared algorithm's length.
    PasswordNotHex,
    /// The password was signed with the secret plus stray white space.
    SecretWhitespace,
    /// The password was signed with the hex-decoded secret (the key is the secret's text).
    SecretHexDecoded,
    /// A dynamic registration signature (`authType=register|regnwl`) that does not match.
    DynregSignatureMismatch,
    /// Dynamic registration (`authType=register|regnwl`) without a `random` parameter.
    MissingRandom,
    /// A dynamic registration signed without `random{random}` in the content.
    RandomNotSigned,
    /// A dynamic registration signed like a login (`clientId…deviceName…productKey…timestamp…`)
    /// instead of `deviceName…productKey…random…`.
    DynregSignedAsLogin,
    /// An `authType` the doctor cannot check (`connwl` logs in with a deviceToken).
    UncheckableAuthType(String),
    /// No mistake the doctor knows reproduces the password: most likely another secret.
    SignatureMismatch,
    /// Not a mistake in the fields: they are well-formed, but the password cannot be checked
    /// without the secret.
    SecretMissing,
}

impl Mistake {
    /// A short stable name (`username_reversed`, `wrong_algorithm`, …) for logs and events.
    pub fn code(&self) -> &'static str {
        match self {
            Mistake::MalformedClientId(_) => "malformed_client_id",
            Mistake::UnknownSecureMode(_) => "unknown_securemode",
            Mistake::MalformedUsername(_) => "malformed_username",
            Mistake::UsernameReversed => "username_reversed",
            Mistake::ProductKeyDeviceNameSwapped => "product_key_device_name_swapped",
            Mistake::WrongDevice => "wrong_device",
            Mistake::UnsupportedSignMethod(_) => "unsupported_signmethod",
            Mistake::MissingSignMethod { .. } => "missing_signmethod",
            Mistake::WrongAlgorithm { .. } => "wrong_algorithm",
            Mistake::NodeSignAlgorithmBug { .. } => "node_sign_algorithm_bug",
            Mistake::SignMethodInContent => "signmethod_in_content",
            Mistake::KeysUnsorted { .. } => "keys_unsorted",
            Mistake::TimestampMismatch { .. } => "timestamp_mismatch",
            Mistake::ClientIdMismatch { .. } => "client_id_mismatch",
            Mistake::Base64Password => "base64_password",
            Mistake::PasswordWhitespace => "password_whitespace",
            Mistake::PasswordNotHex => "password_not_hex",
            Mistake::SecretWhitespace => "secret_whitespace",
            Mistake::SecretHexDecoded => "secret_hex_decoded",
            Mistake::DynregSignatureMismatch => "dynreg_signature_mismatch",
            Mistake::MissingRandom => "missing_random",
            Mistake::RandomNotSigned => "random_not_signed",
            Mistake::DynregSignedAsLogin => "dynreg_signed_as_login",
            Mistake::UncheckableAuthType(_) => "uncheckable_auth_type",
            Mistake::SignatureMismatch => "signature_mismatch",
            Mistake::SecretMissing => "secret_missing",
        }
    }
}

/// The doctor's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Diagnosis {
    /// Whether the platform would accept these fields (as far as credentials go: the device
    /// must also exist and be enabled, and the keepalive be within 30..1200 s).
    pub valid: bool,
    /// The mistake, when not valid.
    pub mistake: Option<Mistake>,
    /// One sentence: what is right or wrong.
    pub reason: String,
    /// One sentence: what to do.
    pub hint: String,
    /// The password the fields call for (declared algorithm, or hmacmd5 when none is declared),
    /// when a secret was given and the clientId and username could be read. In the case of the
    /// given password (uppercase when it was uppercase).
    pub expected_password: Option<String>,
    /// The sign content the fields call for, when the clientId and username could be read.
    pub expected_sign_content: Option<String>,
}

impl Diagnosis {
    fn invalid(mistake: Mistake, reason: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            valid: false,
            mistake: Some(mistake),
            reason: reason.into(),
            hint: hint.into(),
            expected_password: None,
            expected_sign_content: None,
        }
    }
}

/// Diagnoses CONNECT fields; `secret` is the deviceSecret (the productSecret for dynamic
/// registration). Without a secret only the shape of the fields is checked.
pub fn diagnose(fields: &ConnectAttempt<'_>, secret: Option<&str>) -> Diagnosis {
    diagnose_device(fields, secret, None)
}

/// [`diagnose`], knowing which device (`(productKey, deviceName)`) the fields are meant for,
/// e.g. from a device profile: this tells a reversed username from a swapped sign content and
/// catches fields built for another device.
pub fn diagnose_device(
    fields: &ConnectAttempt<'_>,
    secret: Option<&str>,
    device: Option<(&str, &str)>,
) -> Diagnosis {
    // Device secrets never contain white space: a stray one in what the user gave us is an
    // accident of copying, not part of the key.
    let secret = secret.map(str::trim).filter(|s| !s.is_empty());
    let cid = match ClientId::parse(fields.client_id) {
        Ok(c) => c,
        Err(e) => return malformed_client_id(fields, e, secret),
    };
    if let Some(sm) = cid.get("securemode")
        && sm.parse::<SecureMode>().is_err()
    {
        return Diagnosis::invalid(
            Mistake::UnknownSecureMode(sm.to_owned()),
            format!("securemode={sm} is not a value the platform knows (CONNACK 2)"),
            "use securemode=3 for plain TCP or securemode=2 for TLS",
        );
    }
    let (dn, pk) = match parse_username(fields.username) {
        Ok(v) => v,
        Err(_) => return malformed_username(fields.username, &cid),
    };
    if let Some(auth_type) = cid.get("authType") {
        return dynamic_registration(fields, &cid, auth_type, dn, pk, secret);
    }
    let declared = match cid.get("signmethod").map(|m| (m, m.parse::<SignMethod>())) {
        None => None,
        Some((_, Ok(m))) => Some(m),
        Some((m, Err(_))) => return unsupported_sign_method(fields, &cid, m, dn, pk, secret),
    };
    let method = declared.unwrap_or(SignMethod::HmacMd5);
    let content = sign_content(cid.prefix(), dn, pk, cid.timestamp());
    let Some(secret) = secret else {
        let mut d = Diagnosis::invalid(
            Mistake::SecretMissing,
            format!(
                "the fields are well-formed (device {pk}/{dn}, {method} over {content:?}), but the password \
                 cannot be checked without the device secret"
            ),
            "give the device secret (--device-secret or a --profile with device_secret)",
        );
        d.expected_sign_content = Some(content);
        return d;
    };
    let ctx = Ctx {
        fields,
        cid: &cid,
        dn,
        pk,
        secret,
        declared,
        method,
        device,
    };
    let mut d = ctx.judge(&content);
    // What the password should be: for the profile's device when there is one, for the
    // corrected username when it is reversed, else for the username as given.
    let reversed = matches!(d.mistake, Some(Mistake::UsernameReversed))
        || matches!(ctx.identity_problem(), Some(IdentityProblem::Reversed));
    let (tpk, tdn) = match device {
        Some(known) => known,
        None if reversed => (dn, pk),
        None => (pk, dn),
    };
    let content = sign_content(cid.prefix(), tdn, tpk, cid.timestamp());
    let case = if is_upper_hex(fields.password) {
        HexCase::Upper
    } else {
        HexCase::Lower
    };
    d.expected_password = Some(method.hex(secret.as_bytes(), content.as_bytes(), case));
    d.expected_sign_content = Some(content);
    d
}

struct Ctx<'a> {
    fields: &'a ConnectAttempt<'a>,
    cid: &'a ClientId,
    dn: &'a str,
    pk: &'a str,
    secret: &'a str,
    declared: Option<SignMethod>,
    method: SignMethod,
    device: Option<(&'a str, &'a str)>,
}

/// How the password was encoded, when it decodes to a MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Hex,
    Base64,
}

/// A way the password was produced, found by recomputing it.
#[derive(Debug, Clone, Copy)]
struct Found {
    method: SignMethod,
    encoding: Encoding,
}

impl Ctx<'_> {
    /// The platform's verdict, then the search for the mistake.
    fn judge(&self, content: &str) -> Diagnosis {
        let platform_ok = parse_connect(&ConnectFields {
            client_id: self.fields.client_id,
            username: Some(self.fields.username),
            password: Some(self.fields.password.as_bytes()),
            keep_alive: 60,
        })
        .and_then(|req| req.verify(self.secret, self.fields.password.as_bytes()))
        .is_ok();
        let identity_problem = self.identity_problem();
        if platform_ok {
            return match identity_problem {
                Some(p) => p.into_diagnosis(true),
                None => self.valid(content),
            };
        }
        let targets = decode_password(self.fields.password);
        if targets.is_empty() {
            return self.password_shape();
        }
        self.search(content, &targets, identity_problem)
    }

    fn valid(&self, content: &str) -> Diagnosis {
        let mut notes: Vec<String> = Vec::new();
        if self.declared.is_none() {
            notes.push(
                "no signmethod is declared, so the platform checks HMAC-MD5 (declaring it is clearer)".into(),
            );
        }
        if is_upper_hex(self.fields.password) {
            notes.push("uppercase hex is fine: the platform accepts either case".into());
        }
        if self.cid.timestamp().is_none() {
            notes.push("no timestamp: fine, it is optional and then not signed".into());
        }
        notes.push("the keepalive (not part of these fields) must be within 30..1200 s".into());
        Diagnosis {
            valid: true,
            mistake: None,
            reason: format!(
                "valid: the password is HMAC-{} of {content:?} keyed by the device secret",
                algo_name(self.method)
            ),
            hint: notes.join("; "),
            expected_password: None,
            expected_sign_content: None,
        }
    }

    /// productKey/deviceName problems visible without the HMAC: a profile naming another
    /// device, or a "productKey" that cannot be one.
    fn identity_problem(&self) -> Option<IdentityProblem> {
        let (dn, pk) = (self.dn, self.pk);
        if let Some((kpk, kdn)) = self.device {
            if (pk, dn) == (kpk, kdn) {
                return None;
            }
            if (pk, dn) == (kdn, kpk) {
                return Some(IdentityProblem::Reversed);
            }
            return Some(IdentityProblem::WrongDevice {
                pk: kpk.to_owned(),
                dn: kdn.to_owned(),
            });
        }
        let as_is = validate_product_key(pk).and_then(|()| validate_device_name(dn));
        let swapped = validate_product_key(dn).is_ok() && validate_device_name(pk).is_ok();
        match as_is {
            Ok(()) => None,
            Err(_) if swapped => Some(IdentityProblem::Reversed),
            Err(e) => Some(IdentityProblem::Invalid {
                username: self.fields.username.to_owned(),
                why: e.to_string(),
            }),
        }
    }

    fn mac_matches(&self, key: &[u8], content: &str, targets: &[Target]) -> Option<Found> {
        // The declared algorithm first, then the others; only those whose MAC length fits.
        let order =
            std::iter::once(self.method).chain(SignMethod::ALL.into_iter().filter(|m| *m != self.method));
        for method in order {
            let fitting: Vec<&Target> = targets
                .iter()
                .filter(|t| t.bytes.len() == method.hex_len() / 2)
                .collect();
            if fitting.is_empty() {
                continue;
            }
            let mac = method.mac(key, content.as_bytes());
            if let Some(t) = fitting.iter().find(|t| t.bytes == mac) {
                return Some(Found {
                    method,
                    encoding: t.encoding,
                });
            }
        }
        None
    }

    fn search(&self, content: &str, targets: &[Target], identity: Option<IdentityProblem>) -> Diagnosis {
        let key = self.secret.as_bytes();
        let (pk, dn, prefix, ts) = (self.pk, self.dn, self.cid.prefix(), self.cid.timestamp());

        // 1. The right content and key: the algorithm or the encoding is off.
        if let Some(found) = self.mac_matches(key, content, targets) {
            if let Some(p) = identity {
                // The password signs the username's reading of the device: both agree.
                return self.with_algo_note(p.into_diagnosis(true), found);
            }
            if found.method != self.method {
                return self.wrong_algorithm(found);
            }
            if found.encoding == Encoding::Base64 {
                return Diagnosis::invalid(
                    Mistake::Base64Password,
                    format!(
                        "the password is base64; the platform expects the HMAC-{} in hex",
                        algo_name(found.method)
                    ),
                    "encode the HMAC as hex (40/64/32 hex digits), not base64",
                );
            }
            // Hex of the right MAC that the platform still refused: white space around it.
            return Diagnosis::invalid(
                Mistake::PasswordWhitespace,
                "the password is right but has leading or trailing white space",
                "strip the white space (a newline from `echo`, a space from copying)",
            );
        }

        // 2. One mistake in the sign content.
        for (candidate, mistake) in self.content_variants(prefix, dn, pk, ts) {
            if let Some(found) = self.mac_matches(key, &candidate, targets) {
                let mistake = match (mistake, identity.as_ref()) {
                    // The content treats the username's deviceName as the productKey: either
                    // the username or the content is reversed. A username whose productKey
                    // cannot be one is the reversed one.
                    (Mistake::ProductKeyDeviceNameSwapped, Some(IdentityProblem::Reversed)) => {
                        Mistake::UsernameReversed
                    }
                    (Mistake::ProductKeyDeviceNameSwapped, _) => self.which_is_swapped(),
                    (m, _) => m,
                };
                return self.content_mistake(mistake, &candidate, content, found);
            }
        }

        // 3. The secret is off.
        for (candidate_key, mistake) in secret_variants(self.secret) {
            if let Some(found) = self.mac_matches(&candidate_key, content, targets) {
                let (reason, hint) = match mistake {
                    Mistake::SecretHexDecoded => (
                        "the password was signed with the hex-decoded secret",
                        "use the secret's text as the HMAC key (its UTF-8 bytes), not the bytes it spells in hex",
                    ),
                    _ => (
                        "the password was signed with the secret plus stray white space",
                        "trim the secret: a newline or space came with it (read from a file or copied from the console?)",
                    ),
                };
                return self.with_algo_note(Diagnosis::invalid(mistake, reason, hint), found);
            }
        }

        if let Some(p) = identity {
            return p.into_diagnosis(false);
        }
        let len_note = if targets.iter().any(|t| t.bytes.len() == self.method.hex_len() / 2) {
            String::new()
        } else {
            format!(
                " (and its length fits no HMAC-{}: {} hex digits expected)",
                algo_name(self.method),
                self.method.hex_len()
            )
        };
        Diagnosis::invalid(
            Mistake::SignatureMismatch,
            format!(
                "signature mismatch: the password is not HMAC-{} of {content:?} with this secret, nor any known \
                 mistake of it{len_note}",
                algo_name(self.method)
            ),
            "check that the secret is this device's deviceSecret (not the productSecret) and that the device \
             signs exactly the content shown",
        )
    }

    /// Sign contents with one mistake each, in the order they are tried.
    fn content_variants(&self, prefix: &str, dn: &str, pk: &str, ts: Option<&str>) -> Vec<(String, Mistake)> {
        let mut v: Vec<(String, Mistake)> = Vec::new();
        let ts_part = ts.map(|t| format!("timestamp{t}")).unwrap_or_default();
        let base = format!("clientId{prefix}deviceName{dn}productKey{pk}");
        // signmethod (and securemode) in the content, at their sorted place and at the end.
        let sm_value = self.cid.get("signmethod").unwrap_or(self.method.as_str());
        let sm = format!("signmethod{sm_value}");
        let secm = self
            .cid
            .get("securemode")
            .map(|s| format!("securemode{s}"))
            .unwrap_or_default();
        for c in [
            format!("{base}{secm}{sm}{ts_part}"),
            format!("{base}{sm}{ts_part}"),
            format!("{base}{ts_part}{sm}"),
            format!("{base}{secm}{ts_part}"),
        ] {
            v.push((c, Mistake::SignMethodInContent));
        }
        // Keys in another order.
        let mut segs: Vec<(&str, String)> = vec![
            ("clientId", prefix.to_owned()),
            ("deviceName", dn.to_owned()),
            ("productKey", pk.to_owned()),
        ];
        if let Some(t) = ts {
            segs.push(("timestamp", t.to_owned()));
        }
        for perm in permutations(segs.len()) {
            if perm.windows(2).all(|w| w[0] < w[1]) {
                continue;
            }
            let content: String = perm
                .iter()
                .map(|&i| format!("{}{}", segs[i].0, segs[i].1))
                .collect();
            let order = perm.iter().map(|&i| segs[i].0).collect::<Vec<_>>().join(",");
            v.push((content, Mistake::KeysUnsorted { order }));
        }
        // productKey and deviceName swapped.
        v.push((
            sign_content(prefix, pk, dn, ts),
            Mistake::ProductKeyDeviceNameSwapped,
        ));
        // The timestamp: left out, or another value (a second call to the clock, seconds vs ms).
        let tmis = |signed: Option<String>| Mistake::TimestampMismatch {
            client_id: ts.map(str::to_owned),
            signed,
        };
        if let Some(t) = ts {
            v.push((base.clone(), tmis(None)));
            for other in timestamp_neighbours(t) {
                v.push((format!("{base}timestamp{other}"), tmis(Some(other))));
            }
        }
        // The clientId value: the whole MQTT clientId, the default pk.dn, nothing at all.
        let cmis = |signed: Option<String>| Mistake::ClientIdMismatch { signed };
        let full = self.fields.client_id.to_owned();
        let rest = format!("deviceName{dn}productKey{pk}{ts_part}");
        for other in [
            full,
            format!("{pk}.{dn}"),
            format!("{pk}&{dn}"),
            format!("{dn}.{pk}"),
            String::new(),
        ] {
            if other != prefix {
                v.push((format!("clientId{other}{rest}"), cmis(Some(other))));
            }
        }
        v.push((rest, cmis(None)));
        v
    }

    /// Both "the username is reversed" and "the content is swapped" reproduce the password;
    /// the profile, the clientId prefix and the shape of a productKey tell which.
    fn which_is_swapped(&self) -> Mistake {
        let (u1, u2) = (self.dn, self.pk); // username = u1&u2
        if let Some((kpk, kdn)) = self.device {
            if (u1, u2) == (kpk, kdn) {
                return Mistake::UsernameReversed;
            }
            return Mistake::ProductKeyDeviceNameSwapped;
        }
        let prefix = self.cid.prefix();
        if prefix == format!("{u1}.{u2}") || prefix == format!("{u1}&{u2}") {
            return Mistake::UsernameReversed;
        }
        if prefix == format!("{u2}.{u1}") || prefix == format!("{u2}&{u1}") {
            return Mistake::ProductKeyDeviceNameSwapped;
        }
        if looks_like_product_key(u1) && !looks_like_product_key(u2) {
            return Mistake::UsernameReversed;
        }
        Mistake::ProductKeyDeviceNameSwapped
    }

    fn content_mistake(&self, mistake: Mistake, signed: &str, expected: &str, found: Found) -> Diagnosis {
        let (reason, hint): (String, String) = match &mistake {
            Mistake::SignMethodInContent => (
                format!(
                    "signmethod (or securemode) was included in the sign content: the password signs {signed:?}"
                ),
                format!(
                    "sign only clientId, deviceName, productKey and timestamp (not signmethod or securemode): \
                     {expected:?}"
                ),
            ),
            Mistake::KeysUnsorted { order } => (
                format!(
                    "the sign content's keys are not sorted: the password signs them in the order {order}"
                ),
                format!("concatenate the keys in alphabetical order: {expected:?}"),
            ),
            Mistake::TimestampMismatch {
                client_id,
                signed: ts,
            } => (
                match ts {
                    None => format!(
                        "the clientId carries timestamp={} but the sign content has no timestamp",
                        client_id.as_deref().unwrap_or_default()
                    ),
                    Some(t) => format!(
                        "the timestamp in the sign content ({t}) differs from the clientId's ({})",
                        client_id.as_deref().unwrap_or_default()
                    ),
                },
                "read the clock once and use the same string in the clientId and the sign content".into(),
            ),
            Mistake::ClientIdMismatch { signed: None } => (
                "the sign content leaves out clientId".into(),
                format!("sign clientId + the clientId prefix too: {expected:?}"),
            ),
            Mistake::ClientIdMismatch { signed: Some(s) } if s == self.fields.client_id => (
                "the whole MQTT clientId (with its |...| parameters) was signed as the clientId".into(),
                format!("sign only the prefix (the text before the first '|'): {expected:?}"),
            ),
            Mistake::ClientIdMismatch { signed: Some(s) } => (
                format!(
                    "the sign content's clientId is {s:?}, but the MQTT clientId's prefix is {:?}",
                    self.cid.prefix()
                ),
                "sign the same prefix that the MQTT clientId starts with".into(),
            ),
            Mistake::UsernameReversed => (
                format!(
                    "the username is productKey&deviceName ({:?}); the sign content has them right",
                    self.fields.username
                ),
                format!("the username is deviceName&productKey: {}&{}", self.pk, self.dn),
            ),
            _ => (
                format!(
                    "productKey and deviceName are swapped in the sign content: it says deviceName{}productKey{}",
                    self.pk, self.dn
                ),
                format!(
                    "sign deviceName{}productKey{} (the username has them right): {expected:?}",
                    self.dn, self.pk
                ),
            ),
        };
        self.with_algo_note(Diagnosis::invalid(mistake, reason, hint), found)
    }

    /// Adds "(and also …)" when the password also uses another algorithm or base64.
    fn with_algo_note(&self, mut d: Diagnosis, found: Found) -> Diagnosis {
        if found.method != self.method {
            d.reason.push_str(&format!(
                "; also, it is HMAC-{} while the platform will check HMAC-{}",
                algo_name(found.method),
                algo_name(self.method)
            ));
        }
        if found.encoding == Encoding::Base64 {
            d.reason.push_str("; also, it is base64 instead of hex");
        }
        d
    }

    fn wrong_algorithm(&self, found: Found) -> Diagnosis {
        let actual = found.method;
        let mut d = match self.declared {
            None => Diagnosis::invalid(
                Mistake::MissingSignMethod { actual },
                format!(
                    "the clientId declares no signmethod, so the platform checks HMAC-MD5, but the password is \
                     HMAC-{}",
                    algo_name(actual)
                ),
                format!("add signmethod={actual} to the clientId parameters"),
            ),
            Some(declared) if actual == SignMethod::HmacSha1 => Diagnosis::invalid(
                Mistake::NodeSignAlgorithmBug { declared },
                format!(
                    "the password is HMAC-SHA1 although the clientId declares signmethod={declared}: this is the \
                     Node SDK's signAlgorithm bug (alibabacloud-iot-device-sdk always signs with SHA-1)"
                ),
                format!(
                    "with the Node SDK leave signAlgorithm at its default (sha1); otherwise sign with HMAC-{} or \
                     declare signmethod=hmacsha1",
                    algo_name(declared)
                ),
            ),
            Some(declared) => Diagnosis::invalid(
                Mistake::WrongAlgorithm { declared, actual },
                format!(
                    "the password is HMAC-{} but the clientId declares signmethod={declared}",
                    algo_name(actual)
                ),
                format!(
                    "declare signmethod={actual}, or sign with HMAC-{}",
                    algo_name(declared)
                ),
            ),
        };
        if found.encoding == Encoding::Base64 {
            d.reason.push_str("; also, it is base64 instead of hex");
        }
        d
    }

    /// No encoding of the password decodes to a MAC.
    fn password_shape(&self) -> Diagnosis {
        let p = self.fields.password;
        let reason = if p.is_empty() {
            "the password is empty".to_owned()
        } else if let Some(c) = p.trim().chars().find(|c| !c.is_ascii_hexdigit()) {
            format!("the password is not hex: it contains {c:?}")
        } else {
            format!(
                "the password has {} hex digits; HMAC-{} has {}",
                p.trim().len(),
                algo_name(self.method),
                self.method.hex_len()
            )
        };
        Diagnosis::invalid(
            Mistake::PasswordNotHex,
            reason,
            format!(
                "the password is the HMAC-{} of the sign content, in hex",
                algo_name(self.method)
            ),
        )
    }
}

/// A productKey/deviceName problem seen without the HMAC.
enum IdentityProblem {
    Reversed,
    WrongDevice { pk: String, dn: String },
    Invalid { username: String, why: String },
}

impl IdentityProblem {
    fn into_diagnosis(self, signature_consistent: bool) -> Diagnosis {
        match self {
            IdentityProblem::Reversed if signature_consistent => Diagnosis::invalid(
                Mistake::ProductKeyDeviceNameSwapped,
                "productKey and deviceName are swapped everywhere: the username and the sign content both use \
                 the deviceName as productKey (the signature is consistent, but the platform knows no such device)",
                "swap the two values where the device is configured",
            ),
            IdentityProblem::Reversed => Diagnosis::invalid(
                Mistake::UsernameReversed,
                "the username is productKey&deviceName",
                "the username is deviceName&productKey",
            ),
            IdentityProblem::Invalid { username, why } => Diagnosis::invalid(
                Mistake::MalformedUsername(username.clone()),
                format!("the username {username:?} names no device the platform could have: {why}"),
                "the username is deviceName&productKey, exactly as the console shows them",
            ),
            IdentityProblem::WrongDevice { pk, dn } => Diagnosis::invalid(
                Mistake::WrongDevice,
                format!("the username names another device than the profile's ({dn}&{pk})"),
                "use the clientId, username and password of the profile's device, or the profile of this device",
            ),
        }
    }
}

/// A MAC the password decodes to.
struct Target {
    bytes: Vec<u8>,
    encoding: Encoding,
}

/// Decodes the password as hex (either case) or base64, trimmed, keeping MAC-sized results.
fn decode_password(password: &str) -> Vec<Target> {
    let p = password.trim();
    let mut out = Vec::new();
    let mac_len = |n: usize| matches!(n, 16 | 20 | 32);
    if let Ok(bytes) = hex::decode(p)
        && mac_len(bytes.len())
    {
        out.push(Target {
            bytes,
            encoding: Encoding::Hex,
        });
    }
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    if let Some(bytes) = engines
        .iter()
        .find_map(|e| e.decode(p).ok().filter(|b| mac_len(b.len())))
    {
        out.push(Target {
            bytes,
            encoding: Encoding::Base64,
        });
    }
    out
}

/// Keys with one mistake each: stray white space, the hex-decoded secret.
fn secret_variants(secret: &str) -> Vec<(Vec<u8>, Mistake)> {
    let mut v: Vec<(Vec<u8>, Mistake)> = ["\n", "\r\n", " ", "\t", "\r"]
        .iter()
        .flat_map(|w| [format!("{secret}{w}"), format!("{w}{secret}")])
        .chain([format!(" {secret} "), format!("{secret} \n")])
        .map(|k| (k.into_bytes(), Mistake::SecretWhitespace))
        .collect();
    if let Ok(bytes) = hex::decode(secret) {
        v.push((bytes, Mistake::SecretHexDecoded));
    }
    v
}

/// Timestamps a device may have signed instead of `ts`: a few seconds around it (two reads of
/// the clock), and seconds for milliseconds or the other way round.
fn timestamp_neighbours(ts: &str) -> Vec<String> {
    let Ok(n) = ts.parse::<u64>() else {
        return Vec::new();
    };
    let mut v: Vec<u64> = (1..=2000)
        .flat_map(|d| [n.checked_add(d), n.checked_sub(d)])
        .flatten()
        .collect();
    if ts.len() >= 12 {
        v.push(n / 1000);
    } else if let Some(ms) = n.checked_mul(1000) {
        v.extend((0..1000).filter_map(|d| ms.checked_add(d)));
    }
    v.into_iter().map(|x| x.to_string()).collect()
}

/// Every order of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn go(rest: &mut Vec<usize>, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if rest.is_empty() {
            out.push(cur.clone());
            return;
        }
        for i in 0..rest.len() {
            let x = rest.remove(i);
            cur.push(x);
            go(rest, cur, out);
            cur.pop();
            rest.insert(i, x);
        }
    }
    let mut out = Vec::new();
    go(&mut (0..n).collect(), &mut Vec::new(), &mut out);
    out
}

/// Product keys issued by the platform look like `a1B2c3D4e5F`: 11 letters and digits, starting
/// with a letter and a digit.
fn looks_like_product_key(s: &str) -> bool {
    let b = s.as_bytes();
    (10..=12).contains(&b.len())
        && b.iter().all(u8::is_ascii_alphanumeric)
        && b[0].is_ascii_alphabetic()
        && b[1].is_ascii_digit()
}

fn is_upper_hex(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
}

fn algo_name(m: SignMethod) -> &'static str {
    match m {
        SignMethod::HmacMd5 => "MD5",
        SignMethod::HmacSha1 => "SHA1",
        SignMethod::HmacSha256 => "SHA256",
    }
}

fn malformed_client_id(fields: &ConnectAttempt<'_>, e: ClientIdError, secret: Option<&str>) -> Diagnosis {
    let cid = fields.client_id;
    let hint = match &e {
        ClientIdError::MissingSeparator => {
            // Only the prefix was sent: did the password sign it without a timestamp?
            let matched = secret
                .zip(parse_username(fields.username).ok())
                .and_then(|(s, (dn, pk))| {
                    let content = sign_content(cid, dn, pk, None);
                    let targets = decode_password(fields.password);
                    SignMethod::ALL.into_iter().find(|m| {
                        let mac = m.mac(s.as_bytes(), content.as_bytes());
                        targets.iter().any(|t| t.bytes == mac)
                    })
                });
            match matched {
                Some(m) => format!(
                    "the password signs this prefix; send the parameters too: {cid}|securemode=3,signmethod={m}|"
                ),
                None => format!(
                    "the clientId is prefix|parameters|, e.g. {cid}|securemode=3,signmethod=hmacsha1,timestamp=<ms>|"
                ),
            }
        }
        ClientIdError::Unterminated => "close the parameter list with a final '|'".into(),
        ClientIdError::PrefixTooLong(_) => {
            "use a prefix of at most 64 characters (a serial number or MAC)".into()
        }
        ClientIdError::MissingEquals(_) | ClientIdError::EmptyKey(_) => {
            "each parameter is key=value, separated by ',' (e.g. securemode=3,signmethod=hmacsha1)".into()
        }
        ClientIdError::DuplicateKey(_) => "give each parameter once".into(),
        ClientIdError::TooLong(_) | ClientIdError::TooManyParams(_) => {
            "keep the clientId short: a prefix of at most 64 characters and the few parameters of spec §1.1 (at most 512 bytes, 32 parameters)".into()
        }
        _ => "the clientId is prefix|securemode=3,signmethod=hmacsha1,timestamp=<ms>|".into(),
    };
    Diagnosis::invalid(
        Mistake::MalformedClientId(e.clone()),
        format!("malformed clientId (CONNACK 2): {e}"),
        hint,
    )
}

fn malformed_username(username: &str, cid: &ClientId) -> Diagnosis {
    let reason = if username.is_empty() {
        "the username is empty".to_owned()
    } else if !username.contains('&') {
        format!("the username {username:?} has no '&'")
    } else {
        format!("the username {username:?} is not deviceName&productKey")
    };
    // The clientId prefix is often pk.dn or pk&dn: suggest the username it implies.
    let prefix = cid.prefix();
    let hint = match prefix.split_once(['.', '&']) {
        Some((pk, dn)) if validate_product_key(pk).is_ok() && validate_device_name(dn).is_ok() => {
            format!("the username is deviceName&productKey (for a clientId prefix {prefix}: {dn}&{pk})")
        }
        _ => "the username is deviceName&productKey".to_owned(),
    };
    Diagnosis::invalid(Mistake::MalformedUsername(username.to_owned()), reason, hint)
}

fn unsupported_sign_method(
    fields: &ConnectAttempt<'_>,
    cid: &ClientId,
    declared: &str,
    dn: &str,
    pk: &str,
    secret: Option<&str>,
) -> Diagnosis {
    let content = sign_content(cid.prefix(), dn, pk, cid.timestamp());
    let targets = decode_password(fields.password);
    let actual = secret.and_then(|s| {
        SignMethod::ALL.into_iter().find(|m| {
            let mac = m.mac(s.as_bytes(), content.as_bytes());
            targets.iter().any(|t| t.bytes == mac)
        })
    });
    let hint = match actual {
        Some(m) => format!("the password is HMAC-{}: declare signmethod={m}", algo_name(m)),
        None => "declare signmethod=hmacsha1, hmacsha256 or hmacmd5 and sign with that algorithm".into(),
    };
    let mut d = Diagnosis::invalid(
        Mistake::UnsupportedSignMethod(declared.to_owned()),
        format!(
            "signmethod={declared} is not supported (CONNACK 4): only hmacsha1, hmacsha256 and hmacmd5 are"
        ),
        hint,
    );
    d.expected_sign_content = Some(content);
    d
}

fn dynamic_registration(
    fields: &ConnectAttempt<'_>,
    cid: &ClientId,
    auth_type: &str,
    dn: &str,
    pk: &str,
    secret: Option<&str>,
) -> Diagnosis {
    if !matches!(auth_type, "register" | "regnwl") {
        return Diagnosis::invalid(
            Mistake::UncheckableAuthType(auth_type.to_owned()),
            format!(
                "authType={auth_type}: the password is a deviceToken the platform issued, which cannot be checked here"
            ),
            "check the deviceToken and clientId against the /ext/regnwl message the device received",
        );
    }
    let Some(random) = cid.get("random") else {
        return Diagnosis::invalid(
            Mistake::MissingRandom,
            format!("authType={auth_type} (dynamic registration) needs a random=... parameter"),
            "add random=<nonce> to the clientId and sign deviceName{dn}productKey{pk}random{nonce}",
        );
    };
    let method = match cid.get("signmethod").map(str::parse::<SignMethod>) {
        None => SignMethod::HmacMd5,
        Some(Ok(m)) => m,
        Some(Err(_)) => {
            return Diagnosis::invalid(
                Mistake::UnsupportedSignMethod(cid.get("signmethod").unwrap_or_default().to_owned()),
                "unsupported signmethod for dynamic registration",
                "declare signmethod=hmacsha256 (or hmacsha1, hmacmd5)",
            );
        }
    };
    let content = dynreg_content(dn, pk, random);
    let Some(secret) = secret else {
        let mut d = Diagnosis::invalid(
            Mistake::SecretMissing,
            format!(
                "dynamic registration ({auth_type}): the password cannot be checked without the productSecret"
            ),
            "give the productSecret as the secret",
        );
        d.expected_sign_content = Some(content);
        return d;
    };
    let case = if is_upper_hex(fields.password) {
        HexCase::Upper
    } else {
        HexCase::Lower
    };
    let expected = method.hex(secret.as_bytes(), content.as_bytes(), case);
    let mut d = if method.verify_hex(secret.as_bytes(), content.as_bytes(), fields.password.as_bytes()) {
        Diagnosis {
            valid: true,
            mistake: None,
            reason: format!(
                "valid MQTT dynamic registration (authType={auth_type}): the password is HMAC-{} of {content:?} \
                 keyed by the productSecret",
                algo_name(method)
            ),
            hint: "the platform answers on /ext/register or /ext/regnwl, then closes the connection".into(),
            expected_password: None,
            expected_sign_content: None,
        }
    } else if let Some(d) = dynreg_mistake(fields, cid, dn, pk, secret, method) {
        d
    } else {
        Diagnosis::invalid(
            Mistake::DynregSignatureMismatch,
            format!(
                "dynamic registration ({auth_type}): the password is not HMAC-{} of {content:?} with this secret",
                algo_name(method)
            ),
            "dynamic registration signs deviceName, productKey and random with the productSecret (not a deviceSecret)",
        )
    };
    d.expected_password = Some(expected);
    d.expected_sign_content = Some(content);
    d
}

/// The mistakes that reproduce a wrong registration password with this secret: `random`
/// left out of the content, or the content of a login signed instead.
fn dynreg_mistake(
    fields: &ConnectAttempt<'_>,
    cid: &ClientId,
    dn: &str,
    pk: &str,
    secret: &str,
    method: SignMethod,
) -> Option<Diagnosis> {
    let password = fields.password.as_bytes();
    let without_random = format!("deviceName{dn}productKey{pk}");
    if method.verify_hex(secret.as_bytes(), without_random.as_bytes(), password) {
        return Some(Diagnosis::invalid(
            Mistake::RandomNotSigned,
            format!("the password signs {without_random:?}: the random is missing from the sign content"),
            "sign deviceName{dn}productKey{pk}random{random}, with the clientId's random",
        ));
    }
    let as_login = sign_content(cid.prefix(), dn, pk, cid.timestamp());
    if method.verify_hex(secret.as_bytes(), as_login.as_bytes(), password) {
        return Some(Diagnosis::invalid(
            Mistake::DynregSignedAsLogin,
            format!("the password signs a login's content {as_login:?}, not a registration's"),
            "a registration signs deviceName{dn}productKey{pk}random{random} with the productSecret",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|";
    const USER: &str = "light1983432&a14Xib5kdYd";
    const PW: &str = "b2488041f64f425016b467ee1c94959ebd592ad1";
    const SECRET: &str = "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq";

    fn run(cid: &str, user: &str, pw: &str) -> Diagnosis {
        diagnose(
            &ConnectAttempt {
                client_id: cid,
                username: user,
                password: pw,
            },
            Some(SECRET),
        )
    }

    #[test]
    fn the_documented_example_is_valid_in_either_case() {
        let d = run(CID, USER, PW);
        assert!(d.valid, "{d:?}");
        assert_eq!(d.expected_password.as_deref(), Some(PW));
        let d = run(CID, USER, &PW.to_uppercase());
        assert!(d.valid && d.hint.contains("uppercase"), "{d:?}");
        assert_eq!(d.expected_password, Some(PW.to_uppercase()));
    }

    #[test]
    fn a_secret_with_white_space_around_it_is_trimmed() {
        let d = diagnose(
            &ConnectAttempt {
                client_id: CID,
                username: USER,
                password: PW,
            },
            Some(" oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq\n"),
        );
        assert!(d.valid, "{d:?}");
    }

    #[test]
    fn without_a_secret_the_shape_is_still_checked() {
        let d = diagnose(
            &ConnectAttempt {
                client_id: CID,
                username: USER,
                password: PW,
            },
            None,
        );
        assert_eq!(d.mistake, Some(Mistake::SecretMissing));
        assert_eq!(d.expected_password, None);
        let d = diagnose(
            &ConnectAttempt {
                client_id: "SN1928339",
                username: USER,
                password: PW,
            },
            None,
        );
        assert!(matches!(d.mistake, Some(Mistake::MalformedClientId(_))));
    }

    #[test]
    fn a_username_naming_an_impossible_device_is_malformed() {
        let user = "light 1983432&a14Xib5kdYd";
        let content = sign_content("SN1928339", "light 1983432", "a14Xib5kdYd", Some("1539421321846"));
        let pw = SignMethod::HmacSha1.hex(SECRET.as_bytes(), content.as_bytes(), HexCase::Lower);
        let d = run(CID, user, &pw);
        assert_eq!(d.mistake, Some(Mistake::MalformedUsername(user.into())), "{d:?}");
        assert!(d.reason.contains("deviceName"), "{d:?}");
    }

    #[test]
    fn permutations_are_all_orders() {
        assert_eq!(permutations(3).len(), 6);
        assert_eq!(permutations(4).len(), 24);
    }

    #[test]
    fn registration_signatures_name_their_mistake() {
        let (pk, dn, ps) = ("a1Lamp0001", "lamp-7", "productsecret");
        let cid = format!("{dn}.{pk}|random=abc123,authType=regnwl,securemode=2,signmethod=hmacsha256|");
        let user = format!("{dn}&{pk}");
        let m = SignMethod::HmacSha256;
        let check = |password: String| {
            diagnose(
                &ConnectAttempt {
                    client_id: &cid,
                    username: &user,
                    password: &password,
                },
                Some(ps),
            )
        };
        let good = m.hex(
            ps.as_bytes(),
            format!("deviceName{dn}productKey{pk}randomabc123").as_bytes(),
            HexCase::Lower,
        );
        assert!(check(good).valid);
        let no_random = m.hex(
            ps.as_bytes(),
            format!("deviceName{dn}productKey{pk}").as_bytes(),
            HexCase::Lower,
        );
        assert_eq!(check(no_random).mistake, Some(Mistake::RandomNotSigned));
        let login = m.hex(
            ps.as_bytes(),
            format!("clientId{dn}.{pk}deviceName{dn}productKey{pk}").as_bytes(),
            HexCase::Lower,
        );
        assert_eq!(check(login).mistake, Some(Mistake::DynregSignedAsLogin));
        let other = m.hex(b"another", b"x", HexCase::Lower);
        assert_eq!(check(other).mistake, Some(Mistake::DynregSignatureMismatch));
    }

    #[test]
    fn product_key_shapes() {
        assert!(looks_like_product_key("a14Xib5kdYd"));
        assert!(looks_like_product_key("a1TestPk01"));
        assert!(!looks_like_product_key("light1983432"));
        assert!(!looks_like_product_key("light-01_x@home.1:2"));
    }
}
