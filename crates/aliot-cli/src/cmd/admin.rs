//! `aliot admin`: talk to a running hub's admin API.
//!
//! The hub is found by `--url`/`--token`, else `ALIOT_ADMIN_URL`/`ALIOT_ADMIN_TOKEN`, else the
//! hub's data directory (`--data-dir`, or the default one): `admin.url` (written by `aliot hub`
//! on every start) and `admin-token` (generated on first start). Answers are printed as pretty
//! JSON (or CSV with `device list --format csv`); an error answer is one line on stderr and exit
//! status 1.

use std::fmt;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use aliot_hub::config::{TOKEN_FILE, URL_FILE, default_data_dir};
use anyhow::{Context as _, anyhow};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::usage;

/// Arguments of `aliot admin`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Admin API base URL (e.g. http://127.0.0.1:8080) [default: DATA_DIR/admin.url].
    #[arg(long, value_name = "URL", env = "ALIOT_ADMIN_URL", global = true)]
    url: Option<String>,
    /// Bearer token [default: DATA_DIR/admin-token].
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ALIOT_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// The hub's data directory, to find its URL and token
    /// [default: $XDG_DATA_HOME/aliot/hub or ~/.local/share/aliot/hub].
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: AdminCommand,
}

impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Args")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("data_dir", &self.data_dir)
            .field("command", &self.command)
            .finish()
    }
}

#[derive(Debug, clap::Subcommand)]
enum AdminCommand {
    /// Register or list products.
    #[command(subcommand)]
    Product(ProductCommand),
    /// Register, list, show, enable, disable or delete devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Send a message to a device on one of its topics (the platform's Pub).
    Publish(PublishArgs),
    /// Set properties on a device and print its set_reply.
    SetProperty(SetPropertyArgs),
    /// Call a device's service synchronously and print its reply.
    Invoke(InvokeArgs),
    /// Send a raw RRPC request and print the device's answer.
    Rrpc(RrpcArgs),
    /// Follow the hub's events (online/offline, uplinks, replies, refusals), one JSON a line.
    Events(EventsArgs),
}

#[derive(Debug, clap::Subcommand)]
enum ProductCommand {
    /// Register a product (the productKey is generated unless given).
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// productKey to use instead of a generated one.
        #[arg(long, value_name = "PK")]
        product_key: Option<String>,
    },
    /// List the products.
    List,
}

/// productKey + deviceName.
#[derive(Debug, clap::Args)]
struct DeviceRef {
    /// productKey.
    #[arg(long, value_name = "PK")]
    product_key: String,
    /// deviceName.
    #[arg(long, value_name = "DN")]
    device_name: String,
}

#[derive(Debug, clap::Subcommand)]
enum DeviceCommand {
    /// Register one device (--device-name) or many (--prefix + --count, or --names).
    Create(CreateDeviceArgs),
    /// List a product's devices.
    List {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: String,
        /// Only online or only offline devices.
        #[arg(long, value_parser = ["online", "offline"])]
        status: Option<String>,
        /// json, or csv: `productKey,deviceName,deviceSecret` lines (what `aliot bench` reads).
        #[arg(long, default_value = "json", value_parser = ["json", "csv"])]
        format: String,
    },
    /// Show a device: status, session, last login, last reported properties.
    Show(DeviceRef),
    /// Enable a device.
    Enable(DeviceRef),
    /// Disable a device (refused at CONNECT with 5; disconnected if online).
    Disable(DeviceRef),
    /// Delete a device (disconnected if online).
    Delete(DeviceRef),
}

#[derive(clap::Args)]
struct CreateDeviceArgs {
    /// productKey.
    #[arg(long, value_name = "PK")]
    product_key: String,
    /// deviceName of one device.
    #[arg(long, value_name = "DN", conflicts_with_all = ["prefix", "names"])]
    device_name: Option<String>,
    /// deviceSecret of that device [default: generated].
    #[arg(long, value_name = "DS", requires = "device_name")]
    device_secret: Option<String>,
    /// Batch: names PREFIX0, PREFIX1, … (with --count).
    #[arg(long, requires = "count", conflicts_with = "names")]
    prefix: Option<String>,
    /// Batch: how many devices.
    #[arg(long, requires = "prefix")]
    count: Option<u64>,
    /// Batch: first number after the prefix.
    #[arg(long, requires = "prefix")]
    start: Option<u64>,
    /// Batch: these names (comma-separated).
    #[arg(long, value_delimiter = ',')]
    names: Option<Vec<String>>,
    /// Batch: leave devices that exist alone (and list them) instead of failing.
    #[arg(long)]
    skip_existing: bool,
    /// Batch output: json, or csv (`productKey,deviceName,deviceSecret` lines).
    #[arg(long, default_value = "json", value_parser = ["json", "csv"])]
    format: String,
}

impl fmt::Debug for CreateDeviceArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateDeviceArgs")
            .field("product_key", &self.product_key)
            .field("device_name", &self.device_name)
            .field(
                "device_secret",
                &self.device_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("prefix", &self.prefix)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, clap::Args)]
struct PublishArgs {
    #[command(flatten)]
    device: DeviceRef,
    /// Topic (one of the device's, e.g. /{pk}/{dn}/user/get).
    #[arg(long)]
    topic: String,
    /// Payload text (with --base64: base64 of the bytes).
    #[arg(long, default_value = "")]
    payload: String,
    /// QoS 0 or 1.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// The payload is base64.
    #[arg(long)]
    base64: bool,
}

#[derive(Debug, clap::Args)]
struct SetPropertyArgs {
    #[command(flatten)]
    device: DeviceRef,
    /// Property values as a JSON object, e.g. '{"LightSwitch":1}'.
    #[arg(long, value_name = "JSON")]
    params: String,
    /// How long to wait for the device's answer, ms [default: the hub's, 8000].
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
}

#[derive(Debug, clap::Args)]
struct InvokeArgs {
    #[command(flatten)]
    device: DeviceRef,
    /// Service identifier (thing.service.{identifier}).
    #[arg(long, value_name = "ID")]
    service: String,
    /// Input parameters as a JSON object.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    params: String,
    /// How long to wait for the device's answer, ms [default: the hub's, 8000].
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
}

#[derive(Debug, clap::Args)]
struct RrpcArgs {
    #[command(flatten)]
    device: DeviceRef,
    /// Request payload text (with --base64: base64 of the bytes).
    #[arg(long)]
    payload: String,
    /// The payload is base64.
    #[arg(long)]
    base64: bool,
    /// How long to wait for the device's answer, ms [default: the hub's, 8000].
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
}

#[derive(Debug, clap::Args)]
struct EventsArgs {
    /// Only this product's events.
    #[arg(long, value_name = "PK")]
    product_key: Option<String>,
    /// Only this device's events.
    #[arg(long, value_name = "DN")]
    device_name: Option<String>,
    /// Only these types (comma-separated: status,uplink,reply,refused,kicked,acl_denied,problem).
    #[arg(long = "type", value_name = "TYPES")]
    types: Option<String>,
}

/// Where the hub is.
struct Target {
    url: String,
    token: String,
}

fn read_trimmed(path: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// URL and token from flags or environment, else the data directory.
fn target(url: Option<String>, token: Option<String>, data_dir: Option<PathBuf>) -> anyhow::Result<Target> {
    let dir = data_dir.unwrap_or_else(default_data_dir);
    let url = match url {
        Some(u) => u,
        None => read_trimmed(&dir.join(URL_FILE)).ok_or_else(|| {
            usage(format!(
                "no hub URL: pass --url or set ALIOT_ADMIN_URL (no {} in {}; is `aliot hub` running with this data directory?)",
                URL_FILE,
                dir.display()
            ))
        })?,
    };
    let url = url.trim_end_matches('/').to_owned();
    if !url.starts_with("http://") {
        return Err(usage(format!("--url must be an http:// URL, not {url:?}")));
    }
    let token = match token {
        Some(t) => t,
        None => read_trimmed(&dir.join(TOKEN_FILE)).ok_or_else(|| {
            usage(format!(
                "no admin token: pass --token or set ALIOT_ADMIN_TOKEN (no {} in {})",
                TOKEN_FILE,
                dir.display()
            ))
        })?,
    };
    Ok(Target { url, token })
}

/// A JSON object given on the command line.
fn json_object(flag: &str, text: &str) -> anyhow::Result<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(usage(format!(
            "{flag} must be a JSON object, e.g. '{{\"Power\":1}}'"
        ))),
        Err(e) => Err(usage(format!("{flag} is not valid JSON: {e}"))),
    }
}

fn encoding(base64: bool) -> &'static str {
    if base64 { "base64" } else { "text" }
}

/// One request to the admin API.
struct Request {
    method: hyper::Method,
    path: String,
    body: Option<Value>,
    /// How long the hub may take (a call waits for the device).
    wait: Duration,
}

impl Request {
    fn get(path: String) -> Self {
        Self {
            method: hyper::Method::GET,
            path,
            body: None,
            wait: Duration::from_secs(30),
        }
    }

    fn post(path: String, body: Value) -> Self {
        Self {
            method: hyper::Method::POST,
            path,
            body: Some(body),
            wait: Duration::from_secs(30),
        }
    }

    fn with_call_timeout(mut self, timeout_ms: Option<u64>) -> Self {
        // The device's deadline (the hub's default is 8 s) plus room for the hub itself.
        self.wait = Duration::from_millis(timeout_ms.unwrap_or(8000)) + Duration::from_secs(30);
        self
    }
}

/// What to print.
enum Output {
    Json,
    Text,
}

/// Runs `aliot admin`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        url,
        token,
        data_dir,
        command,
    } = args;
    if let AdminCommand::Events(e) = command {
        let target = target(url, token, data_dir)?;
        return runtime()?.block_on(follow_events(&target, e));
    }
    let (request, output) = build(command)?;
    let target = target(url, token, data_dir)?;
    runtime()?.block_on(async {
        let body = send(&target, request).await?;
        print_answer(&body, &output)?;
        Ok(ExitCode::SUCCESS)
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn device_path(d: &DeviceRef) -> String {
    format!("/api/v1/products/{}/devices/{}", d.product_key, d.device_name)
}

/// The request a command makes (usage errors before any network traffic).
fn build(command: AdminCommand) -> anyhow::Result<(Request, Output)> {
    Ok(match command {
        AdminCommand::Product(ProductCommand::Create { name, product_key }) => {
            let mut body = json!({ "name": name });
            if let Some(pk) = product_key {
                body["productKey"] = json!(pk);
            }
            (Request::post("/api/v1/products".into(), body), Output::Json)
        }
        AdminCommand::Product(ProductCommand::List) => {
            (Request::get("/api/v1/products".into()), Output::Json)
        }
        AdminCommand::Device(DeviceCommand::Create(a)) => create_device(a)?,
        AdminCommand::Device(DeviceCommand::List {
            product_key,
            status,
            format,
        }) => {
            let mut query = vec![];
            if let Some(s) = status {
                query.push(format!("status={s}"));
            }
            if format == "csv" {
                query.push("format=csv".to_owned());
            }
            let q = if query.is_empty() {
                String::new()
            } else {
                format!("?{}", query.join("&"))
            };
            let output = if format == "csv" {
                Output::Text
            } else {
                Output::Json
            };
            (
                Request::get(format!("/api/v1/products/{product_key}/devices{q}")),
                output,
            )
        }
        AdminCommand::Device(DeviceCommand::Show(d)) => (Request::get(device_path(&d)), Output::Json),
        AdminCommand::Device(DeviceCommand::Enable(d)) => (
            Request {
                method: hyper::Method::PATCH,
                ..Request::post(device_path(&d), json!({"enabled": true}))
            },
            Output::Json,
        ),
        AdminCommand::Device(DeviceCommand::Disable(d)) => (
            Request {
                method: hyper::Method::PATCH,
                ..Request::post(device_path(&d), json!({"enabled": false}))
            },
            Output::Json,
        ),
        AdminCommand::Device(DeviceCommand::Delete(d)) => (
            Request {
                method: hyper::Method::DELETE,
                body: None,
                ..Request::get(device_path(&d))
            },
            Output::Json,
        ),
        AdminCommand::Publish(a) => {
            if a.base64 {
                base64::engine::general_purpose::STANDARD
                    .decode(a.payload.trim())
                    .map_err(|e| usage(format!("--payload is not valid base64: {e}")))?;
            }
            let body =
                json!({"topic": a.topic, "payload": a.payload, "qos": a.qos, "encoding": encoding(a.base64)});
            (
                Request::post(format!("{}/publish", device_path(&a.device)), body),
                Output::Json,
            )
        }
        AdminCommand::SetProperty(a) => {
            let mut body = json!({"params": json_object("--params", &a.params)?});
            if let Some(ms) = a.timeout_ms {
                body["timeout_ms"] = json!(ms);
            }
            let req = Request::post(format!("{}/properties", device_path(&a.device)), body);
            (req.with_call_timeout(a.timeout_ms), Output::Json)
        }
        AdminCommand::Invoke(a) => {
            if a.service.is_empty() || a.service.contains(['/', '+', '#', '?']) {
                return Err(usage(format!(
                    "--service {:?} is not a service identifier",
                    a.service
                )));
            }
            let mut body = json!({"params": json_object("--params", &a.params)?});
            if let Some(ms) = a.timeout_ms {
                body["timeout_ms"] = json!(ms);
            }
            let req = Request::post(format!("{}/services/{}", device_path(&a.device), a.service), body);
            (req.with_call_timeout(a.timeout_ms), Output::Json)
        }
        AdminCommand::Rrpc(a) => {
            let mut body = json!({"payload": a.payload, "encoding": encoding(a.base64)});
            if let Some(ms) = a.timeout_ms {
                body["timeout_ms"] = json!(ms);
            }
            let req = Request::post(format!("{}/rrpc", device_path(&a.device)), body);
            (req.with_call_timeout(a.timeout_ms), Output::Json)
        }
        AdminCommand::Events(_) => return Err(anyhow!("events are streamed, not requested")),
    })
}

fn create_device(a: CreateDeviceArgs) -> anyhow::Result<(Request, Output)> {
    let base = format!("/api/v1/products/{}/devices", a.product_key);
    if let Some(dn) = a.device_name {
        let mut body = json!({"deviceName": dn});
        if let Some(s) = a.device_secret {
            body["deviceSecret"] = json!(s);
        }
        return Ok((Request::post(base, body), Output::Json));
    }
    let mut body = match (a.prefix, a.count, a.names) {
        (Some(prefix), Some(count), None) => {
            let mut b = json!({"prefix": prefix, "count": count});
            if let Some(start) = a.start {
                b["start"] = json!(start);
            }
            b
        }
        (None, None, Some(names)) => json!({"deviceNames": names}),
        _ => return Err(usage("give --device-name, or --prefix with --count, or --names")),
    };
    if a.skip_existing {
        body["skipExisting"] = json!(true);
    }
    let (q, output) = if a.format == "csv" {
        ("?format=csv", Output::Text)
    } else {
        ("", Output::Json)
    };
    Ok((Request::post(format!("{base}:batch{q}"), body), output))
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new()).build(connector)
}

fn http_request(target: &Target, req: &Request) -> anyhow::Result<hyper::Request<Full<Bytes>>> {
    let url = format!("{}{}", target.url, req.path);
    let mut builder = hyper::Request::builder()
        .method(req.method.clone())
        .uri(&url)
        .header(hyper::header::AUTHORIZATION, format!("Bearer {}", target.token));
    let body = match &req.body {
        Some(b) => {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(b).context("cannot encode the request")?)
        }
        None => Bytes::new(),
    };
    builder
        .body(Full::new(body))
        .map_err(|e| usage(format!("bad URL {url}: {e}")))
}

/// Sends a request; the body of a 2xx answer, else an error made of the hub's message.
async fn send(target: &Target, req: Request) -> anyhow::Result<Bytes> {
    let http = http_request(target, &req)?;
    let url = format!("{}{}", target.url, req.path);
    let exchange = async {
        let resp = client()
            .request(http)
            .await
            .with_context(|| format!("cannot reach the hub at {}", target.url))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        anyhow::Ok((status, body.to_bytes()))
    };
    let (status, body) = tokio::time::timeout(req.wait, exchange)
        .await
        .map_err(|_| anyhow!("{url} did not answer within {:?}", req.wait))??;
    if status.is_success() {
        return Ok(body);
    }
    Err(answer_error(status, &body))
}

/// `HTTP 404 device_not_found: device a1/x not found`.
fn answer_error(status: hyper::StatusCode, body: &[u8]) -> anyhow::Error {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.get("message").is_some() => anyhow!(
            "HTTP {} {}: {}",
            status.as_u16(),
            v["code"].as_str().unwrap_or("error"),
            v["message"].as_str().unwrap_or_default()
        ),
        _ => anyhow!(
            "HTTP {}: {}",
            status.as_u16(),
            String::from_utf8_lossy(body).trim()
        ),
    }
}

#[allow(
    clippy::print_stdout,
    reason = "the admin API's answer is the command's output"
)]
fn print_answer(body: &[u8], output: &Output) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match output {
        Output::Text => out.write_all(body)?,
        Output::Json => match serde_json::from_slice::<Value>(body) {
            Ok(v) => writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?,
            Err(_) => out.write_all(body)?,
        },
    }
    out.flush()?;
    Ok(())
}

/// Prints each event of `GET /api/v1/events` as one JSON line until the hub ends the stream
/// or Ctrl-C.
async fn follow_events(target: &Target, a: EventsArgs) -> anyhow::Result<ExitCode> {
    let mut query = vec![];
    if let Some(pk) = a.product_key {
        query.push(format!("productKey={pk}"));
    }
    if let Some(dn) = a.device_name {
        query.push(format!("deviceName={dn}"));
    }
    if let Some(t) = a.types {
        query.push(format!("type={t}"));
    }
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    let req = Request::get(format!("/api/v1/events{q}"));
    let http = http_request(target, &req)?;
    let resp = tokio::time::timeout(req.wait, client().request(http))
        .await
        .map_err(|_| anyhow!("the hub did not answer within {:?}", req.wait))?
        .with_context(|| format!("cannot reach the hub at {}", target.url))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(answer_error(status, &body));
    }
    announce_stream(&target.url)?;
    let mut body = resp.into_body();
    let mut pending = Vec::new();
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        let Some(frame) = frame else {
            return Ok(ExitCode::SUCCESS);
        };
        let frame = frame.context("the event stream broke")?;
        if let Some(data) = frame.data_ref() {
            pending.extend_from_slice(data);
            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                print_event_line(&line)?;
            }
        }
    }
}

/// Says on stderr that the stream is open: from here on, no event is missed.
#[allow(
    clippy::print_stderr,
    reason = "a progress note for the user, apart from the events on stdout"
)]
fn announce_stream(url: &str) -> anyhow::Result<()> {
    let mut err = std::io::stderr().lock();
    writeln!(err, "following the events of {url} (Ctrl-C stops)")?;
    err.flush()?;
    Ok(())
}

#[allow(clippy::print_stdout, reason = "the events are the command's output")]
fn print_event_line(line: &[u8]) -> anyhow::Result<()> {
    let line = String::from_utf8_lossy(line);
    if let Some(data) = line.trim_end().strip_prefix("data:") {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", data.trim_start())?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_comes_from_flags_or_the_data_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = target(None, None, Some(dir.path().to_owned()))
            .err()
            .expect("nothing there");
        assert!(e.is::<super::super::UsageError>());
        assert!(e.to_string().contains("--url"), "{e}");
        std::fs::write(dir.path().join(URL_FILE), "http://127.0.0.1:9/\n").expect("write");
        let e = target(None, None, Some(dir.path().to_owned()))
            .err()
            .expect("no token");
        assert!(e.to_string().contains("--token"), "{e}");
        std::fs::write(dir.path().join(TOKEN_FILE), "tok\n").expect("write");
        let t = target(None, None, Some(dir.path().to_owned())).expect("found");
        assert_eq!((t.url.as_str(), t.token.as_str()), ("http://127.0.0.1:9", "tok"));
        let t = target(
            Some("http://h:1".into()),
            Some("x".into()),
            Some(dir.path().to_owned()),
        )
        .expect("flags");
        assert_eq!((t.url.as_str(), t.token.as_str()), ("http://h:1", "x"));
        assert!(target(Some("https://h".into()), Some("x".into()), None).is_err());
    }

    #[test]
    fn error_answers_become_one_line() {
        let e = answer_error(
            hyper::StatusCode::NOT_FOUND,
            br#"{"code":"device_not_found","message":"device a/b not found"}"#,
        );
        assert_eq!(e.to_string(), "HTTP 404 device_not_found: device a/b not found");
        let e = answer_error(hyper::StatusCode::BAD_GATEWAY, b"oops\n");
        assert_eq!(e.to_string(), "HTTP 502: oops");
    }

    #[test]
    fn command_line_json_must_be_an_object() {
        assert!(json_object("--params", r#"{"a":1}"#).is_ok());
        assert!(json_object("--params", "[1]").is_err());
        assert!(json_object("--params", "{").is_err());
    }
}
