//! `aliot device`: a simulated device (`run`), one-shot device commands (`publish`,
//! `post-property`, `post-event`, `ntp`, `config get`) and dynamic registration (`register`, in
//! [`register`]), all on the aliot-device SDK.
//!
//! Identity: `--profile FILE`, the identity flags, or `ALIOT_PRODUCT_KEY`, `ALIOT_DEVICE_NAME`,
//! `ALIOT_DEVICE_SECRET` (flag > environment > profile, field by field). Login (`--auth`): the
//! deviceSecret's signature, or the deviceToken of a device registered without pre-registration
//! (`--device-token`, `ALIOT_DEVICE_TOKEN` or the profile's `device_token`, with `--client-id` or
//! the profile's `client_id`); or HTTPS pre-authentication with the deviceSecret (`--auth https`,
//! `--auth-url`, then MQTT with `securemode=-1`); by default pre-authentication when there is
//! an auth URL, else the token when there is a token and no secret.
//! Endpoint: `--host`, `--region` or `--instance-id` (else the profile's, else a local
//! `aliot hub` on 127.0.0.1).

mod config;
mod gateway;
mod ota;
mod register;
mod simulate;
mod target;

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aliot_device::{
    CallVia, Device, DeviceOptions, Error as DeviceError, Event, Events, Exec, ExecOutcome, Handlers, Login,
    QoS, ReplyError,
};
use aliot_protocol::http_auth::default_auth_url;
use aliot_protocol::register::{RegisteredWithToken, token_client_id};
use aliot_protocol::{Endpoint, SignMethod};
use anyhow::{Context as _, anyhow};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use self::target::Target;
use super::usage;
use crate::args::{EndpointArgs, IdentityArgs, Redacted, parse_duration, parse_redacted, parse_sign_method};
use crate::{clock, output, signal};

/// Arguments of `aliot device`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Run a simulated device: connect, print every downlink, answer property sets, service
    /// calls and RRPC (with --exec: through a command), until Ctrl-C.
    #[command(after_help = RUN_HELP)]
    Run(Box<RunArgs>),
    /// Connect, publish one message on a topic, exit.
    Publish(PublishArgs),
    /// Connect, post properties (thing.event.property.post), print the platform's reply, exit.
    PostProperty(PostPropertyArgs),
    /// Connect, post an event (thing.event.{id}.post), print the platform's reply, exit.
    PostEvent(PostEventArgs),
    /// Connect, synchronise with the platform's clock over NTP, print the offset, exit.
    Ntp(NtpArgs),
    /// Connect, get or update the device shadow, print the platform's reply, exit.
    #[command(subcommand)]
    Shadow(ShadowSub),
    /// The product's remote configuration: `get` its description (and with --save, the file).
    #[command(subcommand)]
    Config(config::ConfigSub),
    /// Register a device dynamically with its product's productSecret (MQTT, spec §5.2, or
    /// HTTPS, spec §5.1), print
    /// what the platform answered (deviceSecret, or clientId and deviceToken) as JSON, and
    /// optionally save it as a device profile.
    #[command(after_help = register::HELP)]
    Register(register::RegisterArgs),
}

/// How `aliot device` logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Auth {
    /// Sign every CONNECT with the deviceSecret.
    Secret,
    /// Send the deviceToken from a registration without pre-registration (authType=connwl).
    Token,
    /// HTTPS pre-authentication with the deviceSecret (POST {auth-url}/auth/devicename), then
    /// MQTT with the iotId and iotToken it answers (securemode=-1), where it says.
    Https,
}

const RUN_HELP: &str = "\
With --exec CMD, every downlink runs `sh -c CMD` with the payload on stdin and ALIOT_TOPIC,
ALIOT_METHOD (Alink method, when there is one), ALIOT_MESSAGE_ID (Alink id, or the RRPC message
id) and ALIOT_RRPC_ID (RRPC only) in the environment (ALIOT_DEVICE_SECRET is removed). For
property sets, service calls and RRPC, CMD's stdout is the reply data: JSON as is, other text as a
JSON string, nothing as {} (RRPC: the bytes as they are). A non-zero exit sends an error reply
(code 500) with the tail of CMD's stderr.
Without --exec, property sets and service calls are answered with code 200 and {}, and raw RRPC
requests are echoed.
With --tsl MODEL (the console's TSL export), the device is simulated from its thing model: every
--post-interval it posts random but valid values of its properties (and now and then one of its
events), and it answers property sets (applied, then posted back), property gets (the current
values) and every service (random valid outputs), each checked against the model first: bad input
gets the platform's code (6306, 6320, 6302…). --exec still answers requests when given.

Examples:
  aliot device run --profile light.toml --subscribe /a1B2c3D4e5F/light-01/user/get \\
    --post-property '{\"LightSwitch\":1}' --every 30s --exec ./on-command.sh
  aliot device run --profile light.toml --tsl model.json --post-interval 5s";

/// How the device connects (shared by every `aliot device` command).
#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg("host", |a| a.help("MQTT host (e.g. the local hub) [default: the profile's, else 127.0.0.1].")))]
struct ConnArgs {
    #[command(flatten)]
    identity: IdentityArgs,
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// How to log in [default: https when --auth-url is given, token when a deviceToken is
    /// given and no deviceSecret, else secret].
    #[arg(long, value_enum)]
    auth: Option<Auth>,
    /// Base URL of the auth service for --auth https (e.g. http://127.0.0.1:8081 for `aliot hub
    /// --device-http 127.0.0.1:8081`) [default: https://iot-auth.{region}.aliyuncs.com].
    #[arg(long, value_name = "URL", env = "ALIOT_AUTH_URL")]
    auth_url: Option<String>,
    /// deviceToken of a device registered without pre-registration (`aliot device register
    /// --no-preregister`); sent verbatim, with --client-id (the clientId the platform gave).
    #[arg(long, value_name = "TOKEN", env = "ALIOT_DEVICE_TOKEN", hide_env_values = true, value_parser = parse_redacted)]
    device_token: Option<Redacted>,
    /// Connect over TLS (securemode=2), trusting the built-in Alibaba Cloud IoT root CAs unless
    /// --ca-file is given.
    #[arg(long)]
    tls: bool,
    /// CA certificate(s) to trust (PEM), e.g. the hub's `tls/ca.pem`; implies --tls.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// TLS server name (SNI) when it differs from the host.
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// signmethod [default: the profile's, else hmacsha256].
    #[arg(long, value_name = "hmacsha1|hmacsha256|hmacmd5", value_parser = parse_sign_method)]
    sign_method: Option<SignMethod>,
    /// clientId prefix; with --auth token, the clientId the platform gave [default: the
    /// profile's, else {productKey}.{deviceName}].
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// MQTT keepalive in seconds, 30..=1200 [default: the profile's, else 60].
    #[arg(long, value_name = "SECONDS")]
    keepalive: Option<u16>,
    /// Keep the session (clean session 0): the platform queues QoS 1 downlinks while offline.
    #[arg(long)]
    persistent_session: bool,
    /// Do not announce `_ss=1`; subscribe to the system topics explicitly instead.
    #[arg(long)]
    no_auto_subscribe: bool,
    /// Announce `ext=0`: synchronous services arrive on /sys/{pk}/{dn}/rrpc/request/{id}.
    #[arg(long)]
    no_ext_rrpc: bool,
    /// How long to wait for the platform's replies (e.g. 10s, 500ms, 1m).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
}

impl ConnArgs {
    /// Validated SDK options: the flags, else the profile's, else the SDK's defaults (and a
    /// local `aliot hub`); every problem here is a usage error (exit status 2).
    fn options(&self) -> anyhow::Result<DeviceOptions> {
        let p = self.identity.load_profile()?.unwrap_or_default();
        let login = self.login(&p)?;
        let tls = self.tls || self.ca_file.is_some() || p.tls.unwrap_or(false);
        let local = || Endpoint::custom("127.0.0.1", None, tls);
        let endpoint = self.endpoint.resolve(login.product_key(), Some(&p), tls, local)?;
        let login = match login {
            Login::PreAuth { identity, auth_url } if auth_url.is_empty() => Login::PreAuth {
                identity,
                auth_url: default_auth_url(&endpoint.host),
            },
            other => other,
        };
        let mut o = DeviceOptions::with_login(login, endpoint)
            .profile_settings(&p)
            .map_err(|e| usage(e.to_string()))?
            .request_timeout(self.timeout)
            .clean_session(!self.persistent_session)
            .auto_subscribe(!self.no_auto_subscribe)
            .ext_rrpc(!self.no_ext_rrpc);
        if let Some(ca) = &self.ca_file {
            o = o.ca_file(ca.clone());
        }
        if let Some(name) = &self.server_name {
            o = o.server_name(name.clone());
        }
        if let Some(m) = self.sign_method {
            o = o.sign_method(m);
        }
        if let Some(prefix) = &self.client_id {
            o = o.client_id_prefix(prefix.clone());
        }
        if let Some(k) = self.keepalive {
            o = o.keepalive(Duration::from_secs(u64::from(k)));
        }
        o.validate().map_err(|e| usage(e.to_string()))?;
        Ok(o)
    }

    /// The login: `--auth`, else pre-authentication when `--auth-url` is given, else the token
    /// when one is given (flag, environment or profile) and no secret is, else the secret. A
    /// pre-auth login without `--auth-url` has an empty URL, for the caller to default.
    fn login(&self, p: &aliot_protocol::DeviceProfile) -> anyhow::Result<Login> {
        let token = self
            .device_token
            .as_ref()
            .map(|t| t.0.clone())
            .or_else(|| p.device_token.clone());
        let auth = self.auth.unwrap_or(if self.auth_url.is_some() {
            Auth::Https
        } else if token.is_some() && !self.identity.has_secret(Some(p)) {
            Auth::Token
        } else {
            Auth::Secret
        });
        match auth {
            Auth::Secret => Ok(Login::Secret(self.identity.identity(Some(p))?)),
            Auth::Https => Ok(Login::PreAuth {
                identity: self.identity.identity(Some(p))?,
                auth_url: self.auth_url.clone().unwrap_or_default(),
            }),
            Auth::Token => {
                let (product_key, device_name) = self.identity.names(Some(p))?;
                let device_token = token.ok_or_else(|| {
                    usage(
                        "missing the device's device_token: pass --device-token, set ALIOT_DEVICE_TOKEN or put \
                         device_token in --profile",
                    )
                })?;
                let client_id = self
                    .client_id
                    .clone()
                    .or_else(|| p.client_id.clone())
                    .unwrap_or_else(|| token_client_id(&product_key, &device_name));
                Ok(Login::Token(RegisteredWithToken {
                    client_id,
                    product_key,
                    device_name,
                    device_token,
                }))
            }
        }
    }
}

fn parse_json(what: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).map_err(|e| usage(format!("{what}: not valid JSON: {e}")))
}

/// Output format of `aliot device run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// `2024-05-01 12:00:00: topic qos payload` lines on stdout, status on stderr.
    Text,
    /// One JSON object per line on stdout (downlinks, replies, status).
    Json,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Subscribe to a topic (repeatable), e.g. /{pk}/{dn}/user/get.
    #[arg(long = "subscribe", value_name = "TOPIC")]
    subscribe: Vec<String>,
    /// Post these properties (JSON object) after connecting, and every --every.
    #[arg(long, value_name = "JSON")]
    post_property: Option<String>,
    /// Repeat --post-property at this interval (e.g. 30s).
    #[arg(long, value_name = "DURATION", requires = "post_property", value_parser = parse_duration)]
    every: Option<Duration>,
    /// Simulate the device from this thing model (the console's TSL export; see below).
    #[arg(long, value_name = "FILE", conflicts_with = "post_property")]
    tsl: Option<PathBuf>,
    /// With --tsl: post new property values at this interval.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    post_interval: Duration,
    /// With --tsl: the seed of the random values (printed at start; replays a run).
    #[arg(long, value_name = "N", requires = "tsl")]
    seed: Option<u64>,
    /// Run CMD for every downlink (see below).
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// Kill CMD after this long and answer with an error.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    exec_timeout: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// The device is a gateway: simulate the sub-devices of --sub-devices through it.
    #[arg(long, requires = "sub_devices")]
    gateway: bool,
    /// With --gateway: a CSV of sub-devices, one `productKey,deviceName,deviceSecret` a line;
    /// each is added to the topology, logged in, and simulated with --tsl/--exec/--post-property.
    #[arg(long, value_name = "FILE", requires = "gateway")]
    sub_devices: Option<PathBuf>,
    /// OTA: the firmware version built in, reported at start until an upgrade installs another
    /// (then the one persisted in --ota-dir is reported).
    #[arg(long, value_name = "V", requires = "ota_dir")]
    firmware_version: Option<String>,
    /// OTA: download upgrades here (and persist the installed version in DIR/version).
    #[arg(long, value_name = "DIR", requires = "firmware_version")]
    ota_dir: Option<PathBuf>,
    /// OTA: install a verified firmware with `sh -c CMD sh FILE VERSION`; non-zero fails the
    /// task (step -4, its stderr's tail as the description).
    #[arg(long, value_name = "CMD", requires = "ota_dir")]
    ota_exec: Option<String>,
    /// OTA: kill the install command after this long.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    ota_exec_timeout: Duration,
    /// OTA: the module reported and upgraded (default: the default module).
    #[arg(long, value_name = "NAME", requires = "ota_dir")]
    ota_module: Option<String>,
}

#[derive(Debug, clap::Args)]
struct PublishArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Topic, e.g. /{pk}/{dn}/user/update.
    #[arg(long, value_name = "T")]
    topic: String,
    /// Payload; `-` reads it from stdin.
    #[arg(long, value_name = "P")]
    payload: String,
    /// QoS 0 or 1 (1 waits for the platform's acknowledgement).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
}

#[derive(Debug, clap::Args)]
struct PostPropertyArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The properties, as a JSON object: '{"LightSwitch":1}'.
    #[arg(value_name = "JSON")]
    params: String,
}

#[derive(Debug, clap::Args)]
struct PostEventArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Event identifier (thing.event.{ID}.post).
    #[arg(value_name = "ID")]
    event: String,
    /// The event's output values, as a JSON object (sent as {"value": JSON, "time": now}).
    #[arg(value_name = "JSON")]
    values: String,
}

#[derive(Debug, clap::Subcommand)]
enum ShadowSub {
    /// Print the shadow document (`{"method":"get"}`).
    Get(NtpArgs),
    /// Report the device's state (`{"method":"update","state":{"reported":JSON},"version":N}`).
    Update {
        #[command(flatten)]
        conn: ConnArgs,
        /// The reported state, as a JSON object: '{"color":"red"}'.
        #[arg(value_name = "JSON")]
        reported: String,
        /// The update's version: above the shadow's, or -1 to reset it.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        shadow_version: i64,
    },
}

#[derive(Debug, clap::Args)]
struct NtpArgs {
    #[command(flatten)]
    conn: ConnArgs,
}

/// Runs `aliot device`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Sub::Run(a) => current_thread(run_device(*a)),
        Sub::Publish(a) => current_thread(publish(a)),
        Sub::PostProperty(a) => current_thread(post_property(a)),
        Sub::PostEvent(a) => current_thread(post_event(a)),
        Sub::Ntp(a) => current_thread(ntp(a)),
        Sub::Shadow(s) => current_thread(shadow(s)),
        Sub::Config(a) => current_thread(config::run(a)),
        Sub::Register(a) => current_thread(register::run(a)),
    }
}

/// Every `aliot device` command runs on a current-thread runtime, `run` included: one device is
/// IO-bound (the network loop, the handlers and the `--exec` children all wait on IO), so worker
/// threads would only cost memory: their stacks, their malloc arenas, and libm, which the
/// multi-thread scheduler alone needs (docs/PERFORMANCE.md, "Idle `aliot device run`").
fn current_thread(f: impl Future<Output = anyhow::Result<ExitCode>>) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start tokio")?;
    rt.block_on(f)
}

/// A connection error as the user should read it: a refusal with its code, cause and fix.
fn connect_error(e: DeviceError) -> anyhow::Error {
    match e {
        DeviceError::Refused { code } => {
            anyhow!(
                "connection refused: CONNACK {code}\n  cause: {}\n  fix: {}",
                code.cause(),
                code.hint()
            )
        }
        DeviceError::PreAuthRefused { code, message } => anyhow!(
            "pre-authentication refused: code {code}: {message}\n  fix: {}",
            code.hint()
        ),
        DeviceError::Options(_) | DeviceError::Protocol(_) => usage(e.to_string()),
        other => anyhow!(other),
    }
}

async fn connect(conn: &ConnArgs) -> anyhow::Result<(Device, Events)> {
    let options = conn.options()?;
    Device::connect(options).await.map_err(connect_error)
}

async fn publish(a: PublishArgs) -> anyhow::Result<ExitCode> {
    let payload = if a.payload == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read the payload from stdin")?;
        buf
    } else {
        a.payload.into_bytes()
    };
    let qos = QoS::from_level(a.qos).ok_or_else(|| usage("QoS must be 0 or 1"))?;
    let (device, _events) = connect(&a.conn).await?;
    let len = payload.len();
    let result = device.publish(&a.topic, payload, qos).await;
    device.disconnect().await;
    match result {
        Ok(()) => {
            let acked = if qos == QoS::AtLeastOnce {
                ", acknowledged"
            } else {
                ""
            };
            output::line(&format!(
                "published {len} bytes on {} (QoS {qos}{acked})",
                a.topic
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ DeviceError::InvalidTopic(_)) => Err(usage(e.to_string())),
        Err(e) => Err(anyhow!(e)),
    }
}

fn print_reply(result: aliot_device::Result<aliot_protocol::alink::Reply>) -> anyhow::Result<ExitCode> {
    let reply = result.map_err(|e| anyhow!(e))?;
    output::line(&serde_json::to_string(&reply).context("reply")?)?;
    Ok(ExitCode::SUCCESS)
}

async fn post_property(a: PostPropertyArgs) -> anyhow::Result<ExitCode> {
    let params = parse_json("the properties", &a.params)?;
    let (device, _events) = connect(&a.conn).await?;
    let result = device.post_property(params).await;
    device.disconnect().await;
    print_reply(result)
}

async fn post_event(a: PostEventArgs) -> anyhow::Result<ExitCode> {
    let values = parse_json("the event values", &a.values)?;
    let (device, _events) = connect(&a.conn).await?;
    let result = device.post_event(&a.event, values).await;
    device.disconnect().await;
    if let Err(e @ DeviceError::InvalidTopic(_)) = &result {
        return Err(usage(format!("bad event identifier: {e}")));
    }
    print_reply(result)
}

async fn shadow(s: ShadowSub) -> anyhow::Result<ExitCode> {
    let reply = match s {
        ShadowSub::Get(a) => {
            let (device, _events) = connect(&a.conn).await?;
            let result = device.shadow_get().await;
            device.disconnect().await;
            result.map_err(|e| anyhow!(e))?.body
        }
        ShadowSub::Update {
            conn,
            reported,
            shadow_version,
        } => {
            let reported = parse_json("the reported state", &reported)?;
            let (device, _events) = connect(&conn).await?;
            let result = device.shadow_update(reported, shadow_version).await;
            device.disconnect().await;
            json!({"version": result.map_err(|e| anyhow!(e))?})
        }
    };
    output::line(&serde_json::to_string(&reply).context("reply")?)?;
    Ok(ExitCode::SUCCESS)
}

async fn ntp(a: NtpArgs) -> anyhow::Result<ExitCode> {
    let (device, _events) = connect(&a.conn).await?;
    let result = device.ntp().await;
    device.disconnect().await;
    let sync = result.map_err(|e| anyhow!(e))?;
    output::line(&format!(
        "platform time {} ({} ms): local clock offset {:+} ms, round trip {} ms",
        clock::local_ms(sync.server_time_ms),
        sync.server_time_ms,
        sync.offset_ms,
        sync.round_trip.as_millis()
    ))?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// `aliot device run`

/// Prints downlinks, replies and status in the chosen format. The first write to stdout that
/// fails (the reader is gone) is sent on `failed`, which stops the command; the channel holds
/// one error and later ones are dropped: one is enough to stop.
#[derive(Debug, Clone)]
struct Out {
    format: Format,
    failed: mpsc::Sender<std::io::Error>,
    /// The OTA loop's queue (with --ota-dir).
    ota: Option<mpsc::Sender<aliot_device::ota::Upgrade>>,
}

/// A payload as text: UTF-8 as it is, anything else as `base64:…`.
fn payload_text(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(s) => s.to_owned(),
        Err(_) => format!("base64:{}", base64_encode(payload)),
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Out {
    /// A line of the text format on stdout.
    fn line(&self, text: &str) {
        if let Err(e) = output::line(text) {
            let _ = self.failed.try_send(e);
        }
    }

    /// A status line of the text format on stderr, stamped.
    fn status(text: &str) {
        output::note(&format!("{}: {text}", clock::local_now()));
    }

    /// A record of the JSON format: `v` with its `time`, one line on stdout.
    fn json(&self, mut v: Value) {
        if let Some(o) = v.as_object_mut() {
            o.insert("time".into(), json!(clock::local_now_rfc3339()));
        }
        self.line(&v.to_string());
    }

    /// Adds the payload to a JSON record: `payload` (UTF-8) or `payloadBase64`.
    fn with_payload(mut v: Value, payload: &[u8]) -> Value {
        let (key, value) = match std::str::from_utf8(payload) {
            Ok(s) => ("payload", json!(s)),
            Err(_) => ("payloadBase64", json!(base64_encode(payload))),
        };
        v[key] = value;
        v
    }

    /// A downlink: `time: topic qos payload` (the classic simulator's line).
    fn downlink(&self, kind: &str, topic: &str, qos: QoS, payload: &[u8], extra: Value) {
        match self.format {
            Format::Text => self.line(&format!(
                "{}: {topic} {qos} {}",
                clock::local_now(),
                payload_text(payload)
            )),
            Format::Json => {
                let mut v =
                    Self::with_payload(json!({"type": kind, "topic": topic, "qos": qos.level()}), payload);
                if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                    o.extend(e.clone());
                }
                self.json(v);
            }
        }
    }

    fn answered(&self, to: &str, id: &str, result: &Result<Value, ReplyError>) {
        let now = clock::local_now();
        match (self.format, result) {
            (Format::Text, Ok(data)) => self.line(&format!("{now}:   answered {to} {id}: code 200 {data}")),
            (Format::Text, Err(e)) => self.line(&format!("{now}:   answered {to} {id}: {e}")),
            (Format::Json, Ok(data)) => {
                self.json(json!({"type": "reply", "to": to, "id": id, "code": 200, "data": data}))
            }
            (Format::Json, Err(e)) => {
                self.json(json!({"type": "reply", "to": to, "id": id, "code": e.code, "message": e.message}));
            }
        }
    }

    fn answered_bytes(&self, id: &str, payload: &[u8]) {
        match self.format {
            Format::Text => self.line(&format!(
                "{}:   answered rrpc {id}: {}",
                clock::local_now(),
                payload_text(payload).trim_end()
            )),
            Format::Json => self.json(Self::with_payload(
                json!({"type": "reply", "to": "rrpc", "id": id}),
                payload,
            )),
        }
    }

    fn exec_output(&self, topic: &str, outcome: &ExecOutcome) {
        let stdout = String::from_utf8_lossy(outcome.stdout());
        match self.format {
            Format::Text => {
                if !stdout.trim_end().is_empty() {
                    self.line(stdout.trim_end());
                }
                if !outcome.success() {
                    let (status, tail) = (outcome.status(), outcome.stderr_tail());
                    Self::status(&format!("command failed ({status}): {tail}"));
                }
            }
            Format::Json => self.json(json!({
                "type": "exec",
                "topic": topic,
                "success": outcome.success(),
                "status": outcome.status(),
                "stdout": stdout,
                "stderr": outcome.stderr_tail(),
            })),
        }
    }

    /// An event as it arrives: a downlink line, or the connection status.
    fn event(&self, event: &Event) {
        match event {
            Event::Connected(c) => match self.format {
                Format::Text => Self::status(&format!("connected as {}", c.client_id)),
                Format::Json => self.json(
                    json!({"type": "connected", "clientId": c.client_id, "connections": c.connections}),
                ),
            },
            Event::Disconnected(d) => {
                let retry = d.retry_in.map(|r| r.as_millis());
                match self.format {
                    Format::Text => {
                        let next = retry
                            .map_or_else(|| "not retrying".to_owned(), |ms| format!("retrying in {ms} ms"));
                        Self::status(&format!("disconnected: {} ({next})", d.reason));
                    }
                    Format::Json => {
                        self.json(json!({"type": "disconnected", "reason": d.reason, "retryInMs": retry}))
                    }
                }
            }
            Event::Message(m) => self.downlink("message", &m.topic, m.qos, &m.payload, json!({})),
            Event::PropertySet(r) => {
                let extra = json!({"id": r.id()});
                self.downlink("property_set", r.topic(), r.qos(), &r.request().to_vec(), extra);
            }
            Event::ServiceCall(r) => {
                let via = match r.via() {
                    CallVia::Async => "async",
                    CallVia::Rrpc { .. } => "rrpc",
                    CallVia::ExtRrpc { .. } => "ext_rrpc",
                    _ => "other",
                };
                let extra = json!({"id": r.id(), "service": r.service(), "via": via});
                self.downlink("service_call", r.topic(), r.qos(), &r.request().to_vec(), extra);
            }
            Event::Rrpc(r) => {
                let extra = json!({"messageId": r.message_id()});
                self.downlink("rrpc", r.topic(), r.qos(), r.payload(), extra);
            }
            Event::ConfigPush(info) => match self.format {
                Format::Text => Self::status(&format!(
                    "remote config pushed: {} ({} bytes, sha256 {}), answered; download: {}",
                    info.config_id, info.config_size, info.sign, info.url
                )),
                Format::Json => self.json(json!({"type": "config_push", "config": info})),
            },
            Event::OtaUpgrade(upgrade) => match &self.ota {
                Some(tasks) => {
                    if tasks.try_send(upgrade.clone()).is_err() {
                        self.ota_line(
                            format!(
                                "ota: upgrade to {} dropped: {} already wait",
                                upgrade.version,
                                ota::QUEUE
                            ),
                            json!({"type": "ota_dropped", "version": upgrade.version}),
                        );
                    }
                }
                None => self.ota_line(
                    format!(
                        "ota: upgrade to {} pushed (no --ota-dir: ignored)",
                        upgrade.version
                    ),
                    json!({"type": "ota_push", "version": upgrade.version, "size": upgrade.size}),
                ),
            },
            _ => {}
        }
    }

    /// An OTA record: a status line, or a JSON record.
    fn ota_line(&self, text: String, record: Value) {
        match self.format {
            Format::Text => Self::status(&text),
            Format::Json => self.json(record),
        }
    }

    /// The simulator's start: its seed.
    fn simulating(&self, seed: u64) {
        match self.format {
            Format::Text => Self::status(&format!("simulating the thing model (--seed {seed})")),
            Format::Json => self.json(json!({"type": "simulating", "seed": seed})),
        }
    }

    fn event_reply(&self, event: &str, result: &aliot_device::Result<aliot_protocol::alink::Reply>) {
        match (self.format, result) {
            (Format::Text, Ok(r)) => {
                Self::status(&format!(
                    "event {event} post {}: code {}{}",
                    r.id,
                    r.code,
                    rejected(r)
                ));
            }
            (Format::Text, Err(e)) => Self::status(&format!("event {event} post failed: {e}")),
            (Format::Json, Ok(r)) => self.json(json!({"type": "event_reply", "event": event, "reply": r})),
            (Format::Json, Err(e)) => {
                self.json(json!({"type": "event_error", "event": event, "error": e.to_string()}))
            }
        }
    }

    fn post_reply(&self, result: &aliot_device::Result<aliot_protocol::alink::Reply>) {
        match (self.format, result) {
            (Format::Text, Ok(r)) => {
                Self::status(&format!("property post {}: code {}{}", r.id, r.code, rejected(r)))
            }
            (Format::Text, Err(e)) => Self::status(&format!("property post failed: {e}")),
            (Format::Json, Ok(r)) => self.json(json!({"type": "post_reply", "reply": r})),
            (Format::Json, Err(e)) => self.json(json!({"type": "post_error", "error": e.to_string()})),
        }
    }
}

/// What a code-200 post reply says was rejected (the platform names each rejected identifier in
/// `data`, cloud-side §3.3), as ` rejected {…}`; nothing when `data` is empty.
fn rejected(reply: &aliot_protocol::alink::Reply) -> String {
    match reply.data.as_object() {
        Some(data) if !data.is_empty() => format!(", rejected {}", reply.data),
        _ => String::new(),
    }
}

/// Most commands running at once; further downlinks wait (and the SDK's queue absorbs them).
const MAX_EXEC: usize = 16;

async fn run_device(a: RunArgs) -> anyhow::Result<ExitCode> {
    let shutdown = signal::shutdown().context("cannot listen for Ctrl-C and SIGTERM")?;
    let post = a
        .post_property
        .as_deref()
        .map(|p| parse_json("--post-property", p))
        .transpose()?;
    let (failed_tx, mut failed) = mpsc::channel(1);
    let ota_settings = match (a.firmware_version, a.ota_dir) {
        (Some(firmware_version), Some(dir)) => Some(ota::Settings {
            firmware_version,
            dir,
            exec: a.ota_exec,
            exec_timeout: a.ota_exec_timeout,
            module: a.ota_module,
        }),
        _ => None,
    };
    let ota_version = ota_settings.as_ref().map(ota::prepare).transpose()?;
    let (ota_tx, ota_rx) = mpsc::channel(ota::QUEUE);
    let mut out = Out {
        format: a.format,
        failed: failed_tx,
        ota: None,
    };
    let exec = a.exec.map(|command| Exec::shell(command).timeout(a.exec_timeout));
    let subs = a.sub_devices.as_deref().map(gateway::read_csv).transpose()?;
    let load_sim = |i: u64| {
        a.tsl
            .as_deref()
            .map(|path| simulate::Simulator::load(path, a.seed.map(|s| s.wrapping_add(i))))
            .transpose()
    };
    // A gateway's own events are answered plainly (or by --exec); its sub-devices are simulated.
    let sim = if subs.is_some() { None } else { load_sim(0)? };
    let (device, events) = connect(&a.conn).await?;
    if let (Some(settings), Some(version)) = (ota_settings, ota_version) {
        out.ota = Some(ota_tx);
        let report: ota::Report = {
            let out = out.clone();
            Arc::new(move |text, record| out.ota_line(text, record))
        };
        tokio::spawn(ota::run(device.clone(), settings, version, ota_rx, report));
    }
    for topic in &a.subscribe {
        device
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .map_err(|e| match e {
                DeviceError::InvalidTopic(_) => usage(e.to_string()),
                other => anyhow!(other),
            })?;
    }
    let mut targets = vec![(Target::Device(device.clone()), sim)];
    if let Some(subs) = subs {
        let n = subs.len();
        for (i, (sub, sub_events)) in gateway::log_in_all(&device, subs).await?.into_iter().enumerate() {
            let target = Target::Sub(sub);
            let sim = load_sim(i as u64 + 1)?;
            let run = handlers(&out, exec.clone(), sim.clone().map(|s| (s, target.clone()))).run(sub_events);
            tokio::spawn(async move {
                if let Some(e) = run.await {
                    output::note(&format!("sub-device stopped: {e}"));
                }
            });
            targets.push((target, sim));
        }
        if out.format == Format::Text {
            Out::status(&format!("{n} sub-devices logged in"));
        }
    }
    let sim = targets.first().and_then(|(_, s)| s.clone());
    for (target, target_sim) in &targets {
        if let Some(params) = &post {
            let (target, params, every, out) = (target.clone(), params.clone(), a.every, out.clone());
            tokio::spawn(async move {
                loop {
                    out.post_reply(&target.post_property(params.clone()).await);
                    let Some(every) = every else { break };
                    tokio::time::sleep(every).await;
                }
            });
        }
        if let Some(sim) = target_sim {
            out.simulating(sim.seed());
            let (sim, target, every, out) = (sim.clone(), target.clone(), a.post_interval, out.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let (post, event) = sim.post_round(&target).await;
                    if matches!(post, Err(DeviceError::Closed)) {
                        break; // stopping: nothing to report
                    }
                    out.post_reply(&post);
                    if let Some((id, reply)) = event {
                        out.event_reply(&id, &reply);
                    }
                }
            });
        }
    }
    tokio::select! {
        () = shutdown => {
            device.disconnect().await;
            if out.format == Format::Text {
                Out::status("disconnected");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(e) = failed.recv() => {
            device.disconnect().await;
            Err(anyhow::Error::new(e).context("cannot write on stdout"))
        }
        stopped = handlers(&out, exec, sim.map(|sim| (sim, Target::Device(device.clone())))).run(events) => match stopped {
            None => Ok(ExitCode::SUCCESS),
            Some(e) => Err(connect_error(e)),
        },
    }
}

/// What `aliot device run` does with each event: print it as it arrives, then answer it (with
/// `--exec`: through the command; with `--tsl`: as the model's simulated device), printing the
/// answer.
fn handlers(out: &Out, exec: Option<Exec>, sim: Option<(Arc<simulate::Simulator>, Target)>) -> Handlers {
    let handlers = Handlers::new()
        .max_concurrency(MAX_EXEC)
        .on_event({
            let out = out.clone();
            move |event| out.event(event)
        })
        .on_reply_error(|e| output::note(&format!("answer not sent: {e}")))
        .on_property_set_request({
            let (out, exec, sim) = (out.clone(), exec.clone(), sim.clone());
            move |set| {
                let outcome = exec.as_ref().map(|x| x.property_set(set));
                let (fallback, post_back) = match (&sim, &outcome) {
                    (Some((sim, device)), None) => match sim.property_set(set) {
                        Ok(values) => (
                            Ok(json!({})),
                            Some((sim.clone(), device.clone(), values, out.clone())),
                        ),
                        Err(e) => (Err(e), None),
                    },
                    _ => (Ok(json!({})), None),
                };
                let answer = answer_alink(out.clone(), outcome, fallback, "property_set", set.id());
                async move {
                    let result = answer.await;
                    // Posted back once applied (after the answer is printed; it is sent as this
                    // future returns, the post waits its turn in the SDK's queue).
                    if let Some((sim, device, values, out)) = post_back {
                        tokio::spawn(async move { out.post_reply(&sim.post_back(&device, values).await) });
                    }
                    result
                }
            }
        })
        .on_any_service_request({
            let (out, exec) = (out.clone(), exec.clone());
            move |call| {
                let outcome = exec.as_ref().map(|x| x.service_call(call));
                let fallback = match (&sim, &outcome) {
                    (Some((sim, _)), None) => sim.service_call(call),
                    _ => Ok(json!({})),
                };
                answer_alink(out.clone(), outcome, fallback, "service_call", call.id())
            }
        })
        .on_rrpc({
            let (out, exec) = (out.clone(), exec.clone());
            move |req| {
                let (out, outcome) = (out.clone(), exec.as_ref().map(|x| x.rrpc(&req)));
                async move {
                    let answer = match outcome {
                        Some(outcome) => outcome.await.rrpc_reply(),
                        None => req.payload().to_vec(),
                    };
                    out.answered_bytes(req.message_id(), &answer);
                    if let Err(e) = req.reply(answer).await {
                        output::note(&format!("answer not sent: {e}"));
                    }
                }
            }
        });
    match exec {
        // Plain messages are only printed, unless a command runs for them.
        None => handlers,
        Some(x) => {
            let out = out.clone();
            handlers.on_message(move |m| {
                let (out, outcome) = (out.clone(), x.message(&m));
                async move { out.exec_output(&m.topic, &outcome.await) }
            })
        }
    }
}

/// The answer to a property set or service call: the command's (stdin: the request), else
/// `fallback` (the simulator's, or code 200 with `{}`); printed before it is sent.
async fn answer_alink(
    out: Out,
    outcome: Option<impl Future<Output = ExecOutcome>>,
    fallback: Result<Value, ReplyError>,
    to: &'static str,
    id: String,
) -> Result<Value, ReplyError> {
    let result = match outcome {
        Some(outcome) => outcome.await.alink_reply(),
        None => fallback,
    };
    out.answered(to, &id, &result);
    result
}
