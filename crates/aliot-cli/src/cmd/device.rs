//! `aliot device`: a simulated device (`run`) and one-shot device commands (`publish`,
//! `post-property`, `post-event`, `ntp`), all on the aliot-device SDK.
//!
//! Identity: `--profile FILE`, the identity flags, or `ALIOT_PRODUCT_KEY`, `ALIOT_DEVICE_NAME`,
//! `ALIOT_DEVICE_SECRET` (flag > environment > profile, field by field). Endpoint: `--host`,
//! `--region` or `--instance-id` (else the profile's, else a local `aliot hub` on 127.0.0.1).

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aliot_device::{
    CallVia, Connected, Device, DeviceOptions, Disconnected, Error as DeviceError, Event, Events, Handlers,
    QoS, ReplyError,
};
use aliot_protocol::codes::alink as code;
use aliot_protocol::{DeviceProfile, Endpoint, SignMethod};
use anyhow::{Context as _, anyhow};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use super::usage;
use crate::identity_args::IdentityArgs;

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
    Run(RunArgs),
    /// Connect, publish one message on a topic, exit.
    Publish(PublishArgs),
    /// Connect, post properties (thing.event.property.post), print the platform's reply, exit.
    PostProperty(PostPropertyArgs),
    /// Connect, post an event (thing.event.{id}.post), print the platform's reply, exit.
    PostEvent(PostEventArgs),
    /// Connect, synchronise with the platform's clock over NTP, print the offset, exit.
    Ntp(NtpArgs),
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

Example:
  aliot device run --profile light.toml --subscribe /a1B2c3D4e5F/light-01/user/get \\
    --post-property '{\"LightSwitch\":1}' --every 30s --exec ./on-command.sh";

/// How the device connects (shared by every `aliot device` command).
#[derive(Debug, Clone, clap::Args)]
struct ConnArgs {
    #[command(flatten)]
    identity: IdentityArgs,
    /// MQTT host (e.g. the local hub) [default: the profile's, else 127.0.0.1].
    #[arg(long, value_name = "H", group = "endpoint")]
    host: Option<String>,
    /// Region of a legacy public instance: host `{productKey}.iot-as-mqtt.{region}.aliyuncs.com`.
    #[arg(long, value_name = "R", group = "endpoint")]
    region: Option<String>,
    /// Instance id of a new public or Enterprise instance: host `{id}.mqtt.iothub.aliyuncs.com`.
    #[arg(long, value_name = "I", group = "endpoint")]
    instance_id: Option<String>,
    /// Port [default: 1883 for TCP; 443 (region) or 8883 (host, instance) for TLS].
    #[arg(long, value_name = "P")]
    port: Option<u16>,
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
    /// clientId prefix [default: the profile's, else {productKey}.{deviceName}].
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
    /// Validated SDK options; every problem here is a usage error (exit status 2).
    fn options(&self) -> anyhow::Result<DeviceOptions> {
        let (identity, profile) = self.identity.resolve()?;
        let p = profile.unwrap_or_default();
        let tls = self.tls || self.ca_file.is_some() || p.tls.unwrap_or(false);
        let endpoint = endpoint(self, &p, identity.product_key(), tls).map_err(|e| usage(e.to_string()))?;
        let mut o = DeviceOptions::new(identity, endpoint).request_timeout(self.timeout);
        if let Some(ca) = self
            .ca_file
            .clone()
            .or_else(|| p.ca_file.clone().map(PathBuf::from))
        {
            o = o.ca_file(ca);
        }
        if let Some(name) = &self.server_name {
            o = o.server_name(name.clone());
        }
        let method = match (self.sign_method, &p.sign_method) {
            (Some(m), _) => Some(m),
            (None, Some(m)) => Some(m.parse::<SignMethod>().map_err(|e| usage(e.to_string()))?),
            (None, None) => None,
        };
        if let Some(m) = method {
            o = o.sign_method(m);
        }
        if let Some(prefix) = self.client_id.clone().or_else(|| p.client_id.clone()) {
            o = o.client_id_prefix(prefix);
        }
        if let Some(k) = self.keepalive.or(p.keepalive) {
            o = o.keepalive(Duration::from_secs(u64::from(k)));
        }
        o = o
            .clean_session(!self.persistent_session)
            .auto_subscribe(!self.no_auto_subscribe)
            .ext_rrpc(!self.no_ext_rrpc);
        o.validate().map_err(|e| usage(e.to_string()))?;
        Ok(o)
    }
}

/// The endpoint: flags first, then the profile, then the local hub.
fn endpoint(a: &ConnArgs, p: &DeviceProfile, pk: &str, tls: bool) -> aliot_protocol::Result<Endpoint> {
    let mut e = if let Some(h) = &a.host {
        Endpoint::custom(h, None, tls)?
    } else if let Some(i) = &a.instance_id {
        Endpoint::instance(i, tls)?
    } else if let Some(r) = &a.region {
        Endpoint::region(pk, r, tls)?
    } else if let Some(h) = &p.host {
        Endpoint::custom(h, None, tls)?
    } else if let Some(i) = &p.instance_id {
        Endpoint::instance(i, tls)?
    } else if let Some(r) = &p.region {
        Endpoint::region(pk, r, tls)?
    } else {
        Endpoint::custom("127.0.0.1", None, tls)?
    };
    if let Some(port) = a.port.or(p.port) {
        e.port = port;
    }
    Ok(e)
}

fn parse_sign_method(s: &str) -> Result<SignMethod, String> {
    s.parse::<SignMethod>().map_err(|e| e.to_string())
}

/// `500ms`, `10s`, `5m`, `1h`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 10s, 5m)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {s:?} (use ms, s, m or h)")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("{s:?} must be positive"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
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
    /// Run CMD for every downlink (see below).
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// Kill CMD after this long and answer with an error.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    exec_timeout: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
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

#[derive(Debug, clap::Args)]
struct NtpArgs {
    #[command(flatten)]
    conn: ConnArgs,
}

/// Runs `aliot device`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Sub::Run(a) => current_thread(run_device(a)),
        Sub::Publish(a) => current_thread(publish(a)),
        Sub::PostProperty(a) => current_thread(post_property(a)),
        Sub::PostEvent(a) => current_thread(post_event(a)),
        Sub::Ntp(a) => current_thread(ntp(a)),
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
        DeviceError::Options(_) | DeviceError::Protocol(_) => usage(e.to_string()),
        other => anyhow!(other),
    }
}

async fn connect(conn: &ConnArgs) -> anyhow::Result<(Device, Events)> {
    let options = conn.options()?;
    Device::connect(options).await.map_err(connect_error)
}

#[allow(clippy::print_stdout, reason = "the CLI prints its result on stdout")]
fn print_line(line: &str) {
    println!("{line}");
}

#[allow(clippy::print_stderr, reason = "the CLI prints status on stderr")]
fn print_status(line: &str) {
    eprintln!("{line}");
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
            print_line(&format!(
                "published {len} bytes on {} (QoS {qos}{acked})",
                a.topic
            ));
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ DeviceError::InvalidTopic(_)) => Err(usage(e.to_string())),
        Err(e) => Err(anyhow!(e)),
    }
}

fn print_reply(result: aliot_device::Result<aliot_protocol::alink::Reply>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(reply) => {
            print_line(&serde_json::to_string(&reply).context("reply")?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(anyhow!(e)),
    }
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

async fn ntp(a: NtpArgs) -> anyhow::Result<ExitCode> {
    let (device, _events) = connect(&a.conn).await?;
    let result = device.ntp().await;
    device.disconnect().await;
    let sync = result.map_err(|e| anyhow!(e))?;
    let server = chrono::DateTime::from_timestamp_millis(sync.server_time_ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S%.3f %:z")
                .to_string()
        })
        .unwrap_or_default();
    print_line(&format!(
        "platform time {server} ({} ms): local clock offset {:+} ms, round trip {} ms",
        sync.server_time_ms,
        sync.offset_ms,
        sync.round_trip.as_millis()
    ));
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// `aliot device run`

/// Prints downlinks, replies and status in the chosen format.
#[derive(Debug, Clone, Copy)]
struct Out(Format);

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
    fn now_text() -> String {
        chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
    }

    fn json(&self, mut v: Value) {
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "time".into(),
                json!(chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false)),
            );
        }
        print_line(&v.to_string());
    }

    fn payload_fields(payload: &[u8]) -> (&'static str, Value) {
        match std::str::from_utf8(payload) {
            Ok(s) => ("payload", json!(s)),
            Err(_) => ("payloadBase64", json!(base64_encode(payload))),
        }
    }

    /// A downlink: `time: topic qos payload` (the classic simulator's line).
    fn downlink(&self, kind: &str, topic: &str, qos: QoS, payload: &[u8], extra: Value) {
        match self.0 {
            Format::Text => print_line(&format!(
                "{}: {topic} {qos} {}",
                Self::now_text(),
                payload_text(payload)
            )),
            Format::Json => {
                let mut v = json!({"type": kind, "topic": topic, "qos": qos.level()});
                let (k, p) = Self::payload_fields(payload);
                v[k] = p;
                if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                    o.extend(e.clone());
                }
                self.json(v);
            }
        }
    }

    fn answered(&self, to: &str, id: &str, result: &Result<Value, ReplyError>) {
        match (self.0, result) {
            (Format::Text, Ok(data)) => print_line(&format!(
                "{}:   answered {to} {id}: code 200 {data}",
                Self::now_text()
            )),
            (Format::Text, Err(e)) => print_line(&format!("{}:   answered {to} {id}: {e}", Self::now_text())),
            (Format::Json, Ok(data)) => {
                self.json(json!({"type": "reply", "to": to, "id": id, "code": 200, "data": data}))
            }
            (Format::Json, Err(e)) => {
                self.json(json!({"type": "reply", "to": to, "id": id, "code": e.code, "message": e.message}));
            }
        }
    }

    fn answered_bytes(&self, id: &str, payload: &[u8]) {
        match self.0 {
            Format::Text => {
                print_line(&format!(
                    "{}:   answered rrpc {id}: {}",
                    Self::now_text(),
                    payload_text(payload).trim_end()
                ));
            }
            Format::Json => {
                let mut v = json!({"type": "reply", "to": "rrpc", "id": id});
                let (k, p) = Self::payload_fields(payload);
                v[k] = p;
                self.json(v);
            }
        }
    }

    fn exec_output(&self, topic: &str, outcome: &ExecOutcome) {
        match self.0 {
            Format::Text => {
                let text = String::from_utf8_lossy(&outcome.stdout);
                let text = text.trim_end();
                if !text.is_empty() {
                    print_line(text);
                }
                if !outcome.success {
                    print_status(&format!(
                        "{}: command failed ({}): {}",
                        Self::now_text(),
                        outcome.status,
                        outcome.stderr_tail
                    ));
                }
            }
            Format::Json => self.json(json!({
                "type": "exec",
                "topic": topic,
                "success": outcome.success,
                "status": outcome.status,
                "stdout": String::from_utf8_lossy(&outcome.stdout),
                "stderr": outcome.stderr_tail,
            })),
        }
    }

    /// An event as it arrives: a downlink line, or the connection status.
    fn event(&self, event: &Event) {
        match event {
            Event::Connected(c) => self.connected(c),
            Event::Disconnected(d) => self.disconnected(d),
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
            _ => {}
        }
    }

    fn connected(&self, c: &Connected) {
        match self.0 {
            Format::Text => print_status(&format!("{}: connected as {}", Self::now_text(), c.client_id)),
            Format::Json => {
                self.json(json!({"type": "connected", "clientId": c.client_id, "connections": c.connections}))
            }
        }
    }

    fn disconnected(&self, d: &Disconnected) {
        let retry = d.retry_in.map(|r| r.as_millis());
        match self.0 {
            Format::Text => {
                let next =
                    retry.map_or_else(|| "not retrying".to_owned(), |ms| format!("retrying in {ms} ms"));
                print_status(&format!(
                    "{}: disconnected: {} ({next})",
                    Self::now_text(),
                    d.reason
                ));
            }
            Format::Json => {
                self.json(json!({"type": "disconnected", "reason": d.reason, "retryInMs": retry}))
            }
        }
    }

    fn post_reply(&self, result: &aliot_device::Result<aliot_protocol::alink::Reply>) {
        match (self.0, result) {
            (Format::Text, Ok(r)) => print_status(&format!(
                "{}: property post {}: code {}",
                Self::now_text(),
                r.id,
                r.code
            )),
            (Format::Text, Err(e)) => {
                print_status(&format!("{}: property post failed: {e}", Self::now_text()))
            }
            (Format::Json, Ok(r)) => self.json(json!({"type": "post_reply", "reply": r})),
            (Format::Json, Err(e)) => self.json(json!({"type": "post_error", "error": e.to_string()})),
        }
    }
}

/// What a command run for a downlink did.
#[derive(Debug)]
struct ExecOutcome {
    success: bool,
    status: String,
    stdout: Vec<u8>,
    stderr_tail: String,
}

impl ExecOutcome {
    fn failed(status: String) -> Self {
        Self {
            success: false,
            stderr_tail: status.clone(),
            status,
            stdout: Vec::new(),
        }
    }

    /// The reply for an Alink request: stdout as data on success, else code 500 with the stderr
    /// tail (or the exit status).
    fn alink(&self) -> Result<Value, ReplyError> {
        if self.success {
            let text = String::from_utf8_lossy(&self.stdout);
            let text = text.trim();
            Ok(if text.is_empty() {
                json!({})
            } else {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
            })
        } else {
            let why = if self.stderr_tail.is_empty() {
                self.status.clone()
            } else {
                self.stderr_tail.clone()
            };
            Err(ReplyError::new(code::SYSTEM_ERROR, why))
        }
    }

    /// The reply bytes for a raw RRPC request.
    fn bytes(&self) -> Vec<u8> {
        if self.success {
            self.stdout.clone()
        } else {
            self.stderr_tail.clone().into_bytes()
        }
    }
}

/// The last `n` characters of `text`, trimmed.
fn tail(text: &str, n: usize) -> String {
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(n);
    text.chars().skip(skip).collect()
}

/// `--exec CMD` and its `--exec-timeout`.
#[derive(Debug, Clone)]
struct Exec {
    command: Arc<str>,
    timeout: Duration,
}

impl Exec {
    /// Runs `sh -c CMD` for one downlink with `payload` on stdin and `env`, capturing its output.
    async fn run(&self, payload: &[u8], env: &[(&str, String)]) -> ExecOutcome {
        let (command, timeout) = (&*self.command, self.timeout);
        #[cfg(unix)]
        let mut cmd = {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c").arg(command);
            c
        };
        #[cfg(not(unix))]
        let mut cmd = {
            let mut c = tokio::process::Command::new("cmd");
            c.arg("/C").arg(command);
            c
        };
        // The child never sees the device secret.
        cmd.env_remove("ALIOT_DEVICE_SECRET")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return ExecOutcome::failed(format!("cannot run {command:?}: {e}")),
        };
        if let Some(mut stdin) = child.stdin.take() {
            let payload = payload.to_vec();
            // Written from its own task: a command that does not read stdin must not block us.
            tokio::spawn(async move {
                let _ = stdin.write_all(&payload).await;
            });
        }
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => ExecOutcome {
                success: out.status.success(),
                status: out.status.to_string(),
                stdout: out.stdout,
                stderr_tail: tail(&String::from_utf8_lossy(&out.stderr), 400),
            },
            Ok(Err(e)) => ExecOutcome::failed(format!("{command:?} failed: {e}")),
            Err(_) => ExecOutcome::failed(format!("{command:?} did not finish within {timeout:?}")),
        }
    }
}

/// Ctrl-C, or SIGTERM on unix.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Most commands running at once; further downlinks wait (and the SDK's queue absorbs them).
const MAX_EXEC: usize = 16;

async fn run_device(a: RunArgs) -> anyhow::Result<ExitCode> {
    let post = a
        .post_property
        .as_deref()
        .map(|p| parse_json("--post-property", p))
        .transpose()?;
    let out = Out(a.format);
    let exec = a.exec.as_deref().map(|command| Exec {
        command: Arc::from(command),
        timeout: a.exec_timeout,
    });
    let (device, events) = connect(&a.conn).await?;
    for topic in &a.subscribe {
        device
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .map_err(|e| match e {
                DeviceError::InvalidTopic(_) => usage(e.to_string()),
                other => anyhow!(other),
            })?;
    }
    if let Some(params) = post {
        let (device, every) = (device.clone(), a.every);
        tokio::spawn(async move {
            loop {
                out.post_reply(&device.post_property(params.clone()).await);
                let Some(every) = every else { break };
                tokio::time::sleep(every).await;
            }
        });
    }
    tokio::select! {
        () = shutdown_signal() => {
            device.disconnect().await;
            if out.0 == Format::Text {
                print_status(&format!("{}: disconnected", Out::now_text()));
            }
            Ok(ExitCode::SUCCESS)
        }
        stopped = handlers(out, exec).run(events) => match stopped {
            None => Ok(ExitCode::SUCCESS),
            Some(e) => Err(connect_error(e)),
        },
    }
}

/// What `aliot device run` does with each event: print it as it arrives, then answer it (with
/// `--exec`: through the command), printing the answer.
fn handlers(out: Out, exec: Option<Exec>) -> Handlers {
    let (set_exec, call_exec, rrpc_exec) = (exec.clone(), exec.clone(), exec.clone());
    let handlers = Handlers::new()
        .max_concurrency(MAX_EXEC)
        .on_event(move |event| out.event(event))
        .on_reply_error(|e| print_status(&format!("answer not sent: {e}")))
        .on_property_set_request(move |set| {
            let env = vec![
                ("ALIOT_TOPIC", set.topic().to_owned()),
                ("ALIOT_METHOD", "thing.service.property.set".to_owned()),
                ("ALIOT_MESSAGE_ID", set.id()),
            ];
            let request = set.request().to_vec();
            answer_alink(out, set_exec.clone(), "property_set", set.id(), request, env)
        })
        .on_any_service_request(move |call| {
            let mut env = vec![
                ("ALIOT_TOPIC", call.topic().to_owned()),
                ("ALIOT_METHOD", call.method()),
                ("ALIOT_MESSAGE_ID", call.id()),
            ];
            if let Some(rrpc) = call.via().message_id() {
                env.push(("ALIOT_RRPC_ID", rrpc.to_owned()));
            }
            let request = call.request().to_vec();
            answer_alink(out, call_exec.clone(), "service_call", call.id(), request, env)
        })
        .on_rrpc(move |req| {
            let exec = rrpc_exec.clone();
            async move {
                let id = req.message_id().to_owned();
                let answer = match exec {
                    Some(x) => {
                        let env = [
                            ("ALIOT_TOPIC", req.topic().to_owned()),
                            ("ALIOT_MESSAGE_ID", id.clone()),
                            ("ALIOT_RRPC_ID", id.clone()),
                        ];
                        x.run(req.payload(), &env).await.bytes()
                    }
                    None => req.payload().to_vec(),
                };
                out.answered_bytes(&id, &answer);
                if let Err(e) = req.reply(answer).await {
                    print_status(&format!("answer not sent: {e}"));
                }
            }
        });
    match exec {
        // Plain messages are only printed, unless a command runs for them.
        None => handlers,
        Some(x) => handlers.on_message(move |m| {
            let x = x.clone();
            async move {
                let outcome = x.run(&m.payload, &[("ALIOT_TOPIC", m.topic.clone())]).await;
                out.exec_output(&m.topic, &outcome);
            }
        }),
    }
}

/// The answer to a property set or service call: the command's (stdin: the request), else code
/// 200 with `{}`; printed before it is sent.
async fn answer_alink(
    out: Out,
    exec: Option<Exec>,
    to: &'static str,
    id: String,
    request: Vec<u8>,
    env: Vec<(&'static str, String)>,
) -> Result<Value, ReplyError> {
    let result = match exec {
        Some(x) => x.run(&request, &env).await.alink(),
        None => Ok(json!({})),
    };
    out.answered(to, &id, &result);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn command_output_becomes_the_reply() {
        let ok = |s: &str| ExecOutcome {
            success: true,
            status: "exit status: 0".into(),
            stdout: s.into(),
            stderr_tail: String::new(),
        };
        assert_eq!(ok("").alink(), Ok(json!({})));
        assert_eq!(ok("{\"a\":1}\n").alink(), Ok(json!({"a": 1})));
        assert_eq!(ok("done\n").alink(), Ok(json!("done")));
        let failed = ExecOutcome {
            success: false,
            status: "exit status: 3".into(),
            stdout: Vec::new(),
            stderr_tail: "boom".into(),
        };
        assert_eq!(failed.alink(), Err(ReplyError::new(500, "boom")));
        assert_eq!(failed.bytes(), b"boom");
        assert_eq!(tail("  abcdef \n", 3), "def");
    }
}
