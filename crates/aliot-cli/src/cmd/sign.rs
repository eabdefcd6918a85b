//! `aliot sign`: everything a device needs to connect (host, port, clientId, username,
//! password), for use from any MQTT client.

use std::process::ExitCode;

use aliot_protocol::http_auth;
use aliot_protocol::register::{Mode, registration_credentials};
use aliot_protocol::sign::{dynreg_http_body, dynreg_sign};
use aliot_protocol::{DeviceIdentity, DeviceProfile, Endpoint, HexCase, SecureMode, SignMethod, SignOptions};
use anyhow::Context;
use serde::Serialize;

use super::usage;
use crate::args::{EndpointArgs, IdentityArgs, parse_sign_method};
use crate::output::shell_quote;
use crate::{clock, output};

/// Region used when neither a host, an instance id nor a region is given.
const DEFAULT_REGION: &str = "cn-shanghai";
/// Keepalive put in the `mosquitto_sub` line when the profile names none.
const DEFAULT_KEEPALIVE: u16 = 60;

/// Arguments of `aliot sign`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The device triple may also come from ALIOT_PRODUCT_KEY, ALIOT_DEVICE_NAME and ALIOT_DEVICE_SECRET, \
                  or from a TOML profile (--profile); flags win over the environment, which wins over the profile.\n\n\
                  Example:\n  aliot sign --product-key a14Xib5kdYd --device-name light1983432 \\\n    \
                  --device-secret oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq --client-id SN1928339 \\\n    \
                  --timestamp 1539421321846 --format json",
    mut_arg("region", |a| a.help(
        "Region of a legacy public instance: host `{productKey}.iot-as-mqtt.{region}.aliyuncs.com` \
         [default: cn-shanghai]"
    )),
)]
pub(crate) struct Args {
    #[command(flatten)]
    identity: IdentityArgs,
    /// clientId prefix (the text before the first '|'); default `{productKey}.{deviceName}`.
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// `timestamp` parameter, signed verbatim; default: the current time in milliseconds.
    #[arg(long, value_name = "TS", conflicts_with = "no_timestamp")]
    timestamp: Option<String>,
    /// Sign without a timestamp (the parameter and its part of the sign content are left out).
    #[arg(long)]
    no_timestamp: bool,
    /// HMAC algorithm, declared as `signmethod` [default: hmacsha1]
    #[arg(long, value_name = "hmacsha1|hmacsha256|hmacmd5", value_parser = parse_sign_method)]
    sign_method: Option<SignMethod>,
    /// `securemode`: 3 = plain TCP, 2 = TLS [default: 3, or 2 when the profile says tls = true]
    #[arg(long, value_name = "3|2", value_parser = parse_secure_mode)]
    secure_mode: Option<SecureMode>,
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Uppercase hex password (as the C SDKs send it; the platform accepts either case).
    #[arg(long)]
    uppercase: bool,
    /// Extra clientId parameter after securemode, signmethod and timestamp (not signed), e.g.
    /// `--param _ss=1` (the platform subscribes the device to its system topics) or `--param ext=1`;
    /// repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Sign another request than the MQTT login: `register` (dynamic registration of a device
    /// registered beforehand; MQTT, and the HTTPS form with --format curl), `regnwl` (MQTT, without
    /// pre-registration), both with --product-secret and no deviceSecret; or `preauth` (HTTPS
    /// pre-authentication with the deviceSecret: the form, or --format curl).
    #[arg(long, value_enum, value_name = "register|regnwl|preauth")]
    request: Option<Request>,
    /// productSecret, for --request (or ALIOT_PRODUCT_SECRET, or the profile's product_secret).
    #[arg(long, value_name = "PS", env = "ALIOT_PRODUCT_SECRET", hide_env_values = true)]
    product_secret: Option<String>,
    /// The registration's `random` [default: 15 random letters and digits].
    #[arg(long, value_name = "TEXT")]
    random: Option<String>,
    /// Base URL of the HTTPS registration and pre-authentication [default:
    /// https://iot-auth.{region}.aliyuncs.com; `aliot hub --device-http`'s URL for the hub].
    #[arg(long, value_name = "URL")]
    auth_url: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// A request other than the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Request {
    /// Dynamic registration of a device registered beforehand (`authType=register`).
    Register,
    /// Dynamic registration without pre-registration (`authType=regnwl`).
    Regnwl,
    /// HTTPS pre-authentication (`POST /auth/devicename`), then MQTT with the iotToken.
    Preauth,
}

/// Parses `--param KEY=VALUE`.
fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// How `aliot sign` prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Aligned `name value` lines.
    Text,
    /// One JSON object.
    Json,
    /// `ALIOT_MQTT_HOST=...` lines, shell-quoted (for `eval` or `source`).
    Env,
    /// A ready `mosquitto_sub` command line.
    Mosquitto,
    /// A ready `curl` command line (with --request register: the HTTPS registration).
    Curl,
}

fn parse_secure_mode(s: &str) -> Result<SecureMode, String> {
    match s {
        "3" => Ok(SecureMode::Tcp),
        "2" => Ok(SecureMode::Tls),
        _ => Err("expected 3 (plain TCP) or 2 (TLS)".to_owned()),
    }
}

/// What `aliot sign` prints, in the JSON key order. (No `Debug`: it holds the password.)
#[derive(Serialize)]
struct Output {
    host: String,
    port: u16,
    client_id: String,
    username: String,
    password: String,
    sign_method: &'static str,
    secure_mode: i8,
    timestamp: Option<String>,
    sign_content: String,
    #[serde(skip)]
    tls: bool,
    #[serde(skip)]
    product_key: String,
    #[serde(skip)]
    device_name: String,
}

/// Runs `aliot sign`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.request == Some(Request::Preauth) {
        output::write(&pre_authentication(&args)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(request) = args.request {
        let text = registration(&args, request)?;
        output::write(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.format == Format::Curl {
        return Err(usage("--format curl goes with --request register"));
    }
    let (identity, profile) = args.identity.resolve()?;
    let output = compute(&args, &identity, profile.as_ref())?;
    let text = match args.format {
        Format::Text => render_text(&output),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&output).context("cannot encode JSON")?;
            s.push('\n');
            s
        }
        Format::Env => render_env(&output),
        Format::Mosquitto | Format::Curl => render_mosquitto(&output, profile.as_ref(), None),
    };
    output::write(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn compute(
    args: &Args,
    identity: &DeviceIdentity,
    profile: Option<&DeviceProfile>,
) -> anyhow::Result<Output> {
    let sign_method = match (args.sign_method, profile.and_then(|p| p.sign_method.as_deref())) {
        (Some(m), _) => m,
        (None, Some(m)) => parse_sign_method(m).map_err(usage)?,
        (None, None) => SignMethod::HmacSha1,
    };
    let secure_mode = match (args.secure_mode, profile.and_then(|p| p.tls)) {
        (Some(m), _) => m,
        (None, Some(true)) => SecureMode::Tls,
        (None, _) => SecureMode::Tcp,
    };
    let tls = secure_mode == SecureMode::Tls;
    let pk = identity.product_key();
    let endpoint = args
        .endpoint
        .resolve(pk, profile, tls, || Endpoint::region(pk, DEFAULT_REGION, tls))?;
    let timestamp = match (&args.timestamp, args.no_timestamp) {
        (_, true) => None,
        (Some(ts), false) => Some(ts.clone()),
        (None, false) => Some(
            clock::now_ms()
                .context("the system clock is set before 1970; pass --timestamp")?
                .to_string(),
        ),
    };
    if timestamp.as_deref() == Some("") {
        return Err(usage(
            "--timestamp is empty (use --no-timestamp to sign without one)",
        ));
    }
    let options = SignOptions {
        client_id_prefix: args
            .client_id
            .clone()
            .or_else(|| profile.and_then(|p| p.client_id.clone())),
        timestamp,
        sign_method,
        secure_mode,
        extra_params: args.params.clone(),
        hex_case: if args.uppercase {
            HexCase::Upper
        } else {
            HexCase::Lower
        },
    };
    let creds = aliot_protocol::sign(identity, &options).map_err(|e| usage(e.to_string()))?;
    Ok(Output {
        host: endpoint.host,
        port: endpoint.port,
        client_id: creds.client_id,
        username: creds.username,
        password: creds.password,
        sign_method: creds.sign_method.as_str(),
        secure_mode: creds.secure_mode.value(),
        timestamp: creds.timestamp,
        sign_content: creds.sign_content,
        tls,
        product_key: identity.product_key().to_owned(),
        device_name: identity.device_name().to_owned(),
    })
}

impl Output {
    /// The printed fields by their JSON names, as text (`None`: no timestamp).
    fn rows(&self) -> [(&'static str, Option<String>); 9] {
        [
            ("host", Some(self.host.clone())),
            ("port", Some(self.port.to_string())),
            ("client_id", Some(self.client_id.clone())),
            ("username", Some(self.username.clone())),
            ("password", Some(self.password.clone())),
            ("sign_method", Some(self.sign_method.to_owned())),
            ("secure_mode", Some(self.secure_mode.to_string())),
            ("timestamp", self.timestamp.clone()),
            ("sign_content", Some(self.sign_content.clone())),
        ]
    }
}

fn render_text(o: &Output) -> String {
    let rows = o
        .rows()
        .map(|(k, v)| format!("{k:<13}{}\n", v.as_deref().unwrap_or("(none)")));
    rows.concat()
}

fn render_env(o: &Output) -> String {
    let rows = o.rows().map(|(k, v)| {
        let value = shell_quote(v.as_deref().unwrap_or(""));
        format!("ALIOT_MQTT_{}={value}\n", k.to_uppercase())
    });
    rows.concat()
}

/// `aliot sign --request register|regnwl`: the MQTT registration's CONNECT fields, or the HTTPS
/// registration as a `curl` line.
fn registration(args: &Args, request: Request) -> anyhow::Result<String> {
    let profile = args.identity.load_profile()?;
    let (pk, dn) = args.identity.names(profile.as_ref())?;
    let product_secret = args
        .product_secret
        .clone()
        .or_else(|| profile.as_ref().and_then(|p| p.product_secret.clone()))
        .ok_or_else(|| {
            usage("--request needs the productSecret: --product-secret, ALIOT_PRODUCT_SECRET or the profile's product_secret")
        })?;
    let random = args.random.clone().unwrap_or_else(random_text);
    let mode = match request {
        Request::Register => Mode::PreRegistered,
        Request::Regnwl | Request::Preauth => Mode::NoPreRegistration,
    };
    let tls = match (args.secure_mode, profile.as_ref().and_then(|p| p.tls)) {
        (Some(m), _) => m == SecureMode::Tls,
        (None, t) => t.unwrap_or(false),
    };
    let secure_mode = if tls { SecureMode::Tls } else { SecureMode::Tcp };
    let creds = registration_credentials(&pk, &dn, &product_secret, &random, mode, secure_mode)
        .map_err(|e| usage(e.to_string()))?;
    if args.format == Format::Curl {
        if request == Request::Regnwl {
            return Err(usage(
                "the HTTPS registration is for devices registered beforehand: --request register",
            ));
        }
        let base = auth_base(args);
        let method = args.sign_method.unwrap_or(SignMethod::HmacSha256);
        let case = if args.uppercase {
            HexCase::Upper
        } else {
            HexCase::Lower
        };
        let sign = dynreg_sign(method, &product_secret, &dn, &pk, &random, case);
        let body = dynreg_http_body(&pk, &dn, &random, method, &sign);
        return Ok(format!(
            "curl -sS -X POST {} -H {} --data {}\n",
            shell_quote(&format!("{base}/auth/register/device")),
            shell_quote("Content-Type: application/x-www-form-urlencoded"),
            shell_quote(&body)
        ));
    }
    let endpoint = args.endpoint.resolve(&pk, profile.as_ref(), tls, || {
        Endpoint::region(&pk, DEFAULT_REGION, tls)
    })?;
    let output = Output {
        host: endpoint.host,
        port: endpoint.port,
        client_id: creds.client_id,
        username: creds.username,
        password: creds.password,
        sign_method: creds.sign_method.as_str(),
        secure_mode: creds.secure_mode.value(),
        timestamp: None,
        sign_content: creds.sign_content,
        tls,
        product_key: pk,
        device_name: dn,
    };
    Ok(match args.format {
        Format::Text => render_text(&output),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&output).context("cannot encode JSON")?;
            s.push('\n');
            s
        }
        Format::Env => render_env(&output),
        Format::Mosquitto | Format::Curl => {
            render_mosquitto(&output, profile.as_ref(), Some(mode.answer_topic()))
        }
    })
}

/// The base URL of the HTTPS auth service: --auth-url, else the region's.
fn auth_base(args: &Args) -> String {
    match &args.auth_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => http_auth::auth_url(args.endpoint.region.as_deref().unwrap_or(DEFAULT_REGION)),
    }
}

/// `aliot sign --request preauth`: the pre-authentication request (`POST /auth/devicename`),
/// signed with the deviceSecret: its URL and form, or a `curl` line.
fn pre_authentication(args: &Args) -> anyhow::Result<String> {
    let (identity, profile) = args.identity.resolve()?;
    let method = match (
        args.sign_method,
        profile.as_ref().and_then(|p| p.sign_method.as_deref()),
    ) {
        (Some(m), _) => m,
        (None, Some(m)) => parse_sign_method(m).map_err(usage)?,
        (None, None) => SignMethod::HmacSha256,
    };
    let timestamp = match &args.timestamp {
        Some(ts) if !ts.is_empty() => ts.clone(),
        Some(_) => return Err(usage("--timestamp is empty")),
        None => clock::now_ms()
            .context("the system clock is set before 1970; pass --timestamp")?
            .to_string(),
    };
    let url = format!("{}/auth/devicename", auth_base(args));
    let body = http_auth::preauth_body(&identity, method, &timestamp);
    Ok(match args.format {
        Format::Curl => format!(
            "curl -sS -X POST {} -H {} --data {}\n",
            shell_quote(&url),
            shell_quote("Content-Type: application/x-www-form-urlencoded"),
            shell_quote(&body)
        ),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&serde_json::json!({"url": url, "body": body}))
                .context("cannot encode JSON")?;
            s.push('\n');
            s
        }
        Format::Env => format!(
            "ALIOT_HTTP_URL={}\nALIOT_HTTP_BODY={}\n",
            shell_quote(&url),
            shell_quote(&body)
        ),
        Format::Text => format!("url          {url}\nbody         {body}\n"),
        Format::Mosquitto => {
            return Err(usage(
                "--request preauth is an HTTPS request: --format curl, json, env or text",
            ));
        }
    })
}

/// 15 letters and digits for a registration's `random`: it only varies the signature, so the
/// process's random hash state over a counter is enough.
fn random_text() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let state = std::collections::hash_map::RandomState::new();
    let mut out = String::with_capacity(15);
    let mut n = 0u64;
    while out.len() < 15 {
        let mut h = state.build_hasher();
        h.write_u64(n);
        for b in h.finish().to_le_bytes() {
            let c = b % 62;
            out.push(char::from(match c {
                0..=9 => b'0' + c,
                10..=35 => b'a' + c - 10,
                _ => b'A' + c - 36,
            }));
            if out.len() == 15 {
                break;
            }
        }
        n += 1;
    }
    out
}

/// The `mosquitto_sub` line: the device's system topics, or `answer` (a registration's answer
/// topic: the first message, then the hub closes).
fn render_mosquitto(o: &Output, profile: Option<&DeviceProfile>, answer: Option<&str>) -> String {
    let keepalive = profile.and_then(|p| p.keepalive).unwrap_or(DEFAULT_KEEPALIVE);
    let topic = match answer {
        Some(t) => t.to_owned(),
        None => format!("/sys/{}/{}/thing/#", o.product_key, o.device_name),
    };
    let mut out = String::new();
    let mut words: Vec<String> = vec!["mosquitto_sub".into()];
    let mut push = |flag: &str, value: &str| {
        words.push(flag.to_owned());
        words.push(shell_quote(value));
    };
    push("-h", &o.host);
    push("-p", &o.port.to_string());
    push("-i", &o.client_id);
    push("-u", &o.username);
    push("-P", &o.password);
    push("-V", "mqttv311");
    push("-k", &keepalive.to_string());
    push("-t", &topic);
    if answer.is_some() {
        push("-C", "1");
    }
    if o.tls {
        match profile.and_then(|p| p.ca_file.as_deref()) {
            Some(ca) => push("--cafile", ca),
            None => {
                out.push_str(
                    "# TLS: replace ca.pem by the server's root CA (Aliyun: GlobalSign Root CA R1 on 443/1883, \
                     Aliyun IoT Root CA on 8883; aliot hub: its CA file)\n",
                );
                push("--cafile", "ca.pem");
            }
        }
    }
    out.push_str(&words.join(" "));
    out.push('\n');
    out
}
