//! `aliot admin`: talk to a running hub's admin API.
//!
//! The hub is found by `--url`/`--token`, else `ALIOT_ADMIN_URL`/`ALIOT_ADMIN_TOKEN`, else the
//! hub's data directory (`--data-dir`, or the default one): `admin.url` (written by `aliot hub`
//! on every start) and `admin-token` (generated on first start). Answers are printed as pretty
//! JSON (or CSV with `device list --format csv`); an error answer is one line on stderr and exit
//! status 1.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;

use aliot_admin::{
    Call, ClearDesired, Client, CreateBatch, CreateDevice, CreateProduct, DesiredQuery, DeviceStatus,
    Encoding, EventFilter, Publish, Rrpc, SetDesired, UpdateShadow, data_dir,
};
use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;

use super::usage;
use crate::{output, signal};

mod access_key;
mod config;
mod gateway;
mod history;
mod ota;
mod subscription;

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
    /// Gateways: the topology of a gateway (its sub-devices).
    #[command(subcommand)]
    Gateway(gateway::GatewayCommand),
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
    /// OTA: firmware packages and upgrade jobs.
    #[command(subcommand)]
    Ota(ota::OtaCommand),
    /// Server-side subscription's consumer groups: create, list, delete.
    #[command(subcommand)]
    ConsumerGroup(subscription::ConsumerGroupCommand),
    /// Access keys for Aliyun's OpenAPI and AMQP: create (prints the secret once), list, delete.
    #[command(subcommand)]
    AccessKey(access_key::AccessKeyCommand),
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
        /// Allow dynamic registration (devices registering with the productSecret).
        #[arg(long)]
        dynamic_registration: bool,
        /// The node type: direct device, gateway, or sub-device (logs in through a gateway).
        #[arg(long, value_name = "TYPE", default_value = "direct", value_parser = ["direct", "gateway", "sub"])]
        node_type: String,
    },
    /// List the products.
    List,
    /// The product's remote configuration file: upload, show, download, delete, push, enable,
    /// disable.
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// The product's thing model (TSL): import the console's export, export it, delete it.
    Tsl {
        #[command(subcommand)]
        command: TslCommand,
    },
    /// Forward the product's device messages to consumer groups (server-side subscription):
    /// set its subscribe relation (groups and message families).
    Subscribe(subscription::SubscribeArgs),
    /// Stop forwarding the product's messages (delete its subscribe relation).
    Unsubscribe {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: String,
    },
    /// Show the product's subscribe relation.
    Subscription {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: String,
    },
    /// Change a product: allow or forbid dynamic registration.
    Update {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: String,
        /// Allow (`on`) or forbid (`off`) devices to register with the productSecret.
        #[arg(long, value_name = "on|off", value_parser = ["on", "off"])]
        dynamic_registration: Option<String>,
        /// The node type: direct device, gateway, or sub-device.
        #[arg(long, value_name = "TYPE", value_parser = ["direct", "gateway", "sub"])]
        node_type: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
enum TslCommand {
    /// Import (replace) the thing model from the console's TSL export (a JSON file, `-` for
    /// stdin); a fault names its JSON path and nothing is stored.
    Import {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: String,
        /// The TSL JSON file.
        #[arg(long, value_name = "FILE")]
        file: std::path::PathBuf,
    },
    /// Print the thing model as it was imported.
    Export {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: String,
    },
    /// Delete the thing model.
    Delete {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: String,
    },
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
    /// Show a device: status, session, last login, last reported properties, its gateway.
    Show(DeviceRef),
    /// Enable a device.
    Enable(DeviceRef),
    /// Disable a device (refused at CONNECT with 5; disconnected if online).
    Disable(DeviceRef),
    /// Delete a device (disconnected if online).
    Delete(DeviceRef),
    /// Make an activated device registrable again (dynamic registration), as ResetThing does.
    Reset(DeviceRef),
    /// Desired properties: set (with versions), get, clear.
    #[command(subcommand)]
    Desired(DesiredCommand),
    /// The device shadow: get, update desired.
    #[command(subcommand)]
    Shadow(ShadowCommand),
    /// The latest value and time of each property: `properties PK DN`.
    Properties(history::Device),
    /// A property's kept values, a page at a time: `history PK DN IDENTIFIER`.
    History(history::HistoryArgs),
    /// The events the device posted: `events PK DN`.
    Events(history::EventsArgs),
    /// The calls made to the device (property sets, services, RRPC, publishes): `calls PK DN`.
    Calls(history::CallsArgs),
}

#[derive(Debug, clap::Subcommand)]
enum DesiredCommand {
    /// Set desired values (pushed to the device when online); with --versions, only if each
    /// identifier has that version now.
    Set {
        #[command(flatten)]
        device: DeviceRef,
        /// Desired values as a JSON object, e.g. '{"power":1}'.
        #[arg(long, value_name = "JSON")]
        items: String,
        /// Expected current versions as a JSON object, e.g. '{"power":2}' (0: never set).
        #[arg(long, value_name = "JSON")]
        versions: Option<String>,
    },
    /// Print desired values with versions and times.
    Get {
        #[command(flatten)]
        device: DeviceRef,
        /// Only these identifiers (comma-separated).
        #[arg(long, value_name = "ID,...")]
        identifiers: Option<String>,
    },
    /// Clear desired values; with --versions, only those with that version now.
    Clear {
        #[command(flatten)]
        device: DeviceRef,
        /// Identifiers to clear (comma-separated).
        #[arg(long, value_name = "ID,...")]
        identifiers: String,
        /// Expected current versions as a JSON object.
        #[arg(long, value_name = "JSON")]
        versions: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ShadowCommand {
    /// Print the shadow document.
    Get(DeviceRef),
    /// Update the shadow's desired state (pushed to the device as `control` when online).
    Update {
        #[command(flatten)]
        device: DeviceRef,
        /// Desired state as a JSON object, e.g. '{"color":"green"}'.
        #[arg(long, value_name = "JSON")]
        desired: String,
        /// The update's version: 0 for no versioning, otherwise above the shadow's version.
        #[arg(long, value_name = "N", default_value_t = 0)]
        shadow_version: i64,
        /// Merge into the desired state instead of replacing it.
        #[arg(long)]
        delta: bool,
    },
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

/// URL and token from flags or environment, else the hub's data directory.
fn target(
    url: Option<String>,
    token: Option<String>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<(String, String)> {
    let dir = data_dir.unwrap_or_else(data_dir::default_data_dir);
    let url = url.or_else(|| data_dir::url(&dir)).ok_or_else(|| {
        usage(format!(
            "no hub URL: pass --url or set ALIOT_ADMIN_URL (no {} in {}; is `aliot hub` running with this data directory?)",
            data_dir::URL_FILE,
            dir.display()
        ))
    })?;
    let token = token.or_else(|| data_dir::token(&dir)).ok_or_else(|| {
        usage(format!(
            "no admin token: pass --token or set ALIOT_ADMIN_TOKEN (no {} in {})",
            data_dir::TOKEN_FILE,
            dir.display()
        ))
    })?;
    Ok((url, token))
}

/// The client of the hub at `url`; a URL or token that cannot be used is a usage error.
fn connect(url: &str, token: &str) -> anyhow::Result<Client> {
    let client = Client::new(url).map_err(|_| usage(format!("--url must be an http:// URL, not {url:?}")))?;
    client
        .with_token(token)
        .map_err(|e| usage(format!("--token: {e}")))
}

/// Identifier → version, given on the command line as a JSON object.
fn versions(text: Option<&str>) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let Some(text) = text else {
        return Ok(std::collections::BTreeMap::new());
    };
    serde_json::from_value(json_object("--versions", text)?).map_err(|e| {
        usage(format!(
            "--versions must map identifiers to versions (integers): {e}"
        ))
    })
}

/// A comma-separated list of identifiers.
fn identifiers(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `aliot admin device desired|shadow …`, checked.
fn state_job(command: DeviceCommand) -> anyhow::Result<Job> {
    match command {
        DeviceCommand::Desired(DesiredCommand::Set {
            device: d,
            items,
            versions: v,
        }) => {
            let Value::Object(items) = json_object("--items", &items)? else {
                return Err(usage("--items must be a JSON object"));
            };
            let body = SetDesired {
                items,
                versions: versions(v.as_deref())?,
            };
            json(|c| async move { c.set_desired(&d.product_key, &d.device_name, &body).await })
        }
        DeviceCommand::Desired(DesiredCommand::Get {
            device: d,
            identifiers,
        }) => {
            let q = DesiredQuery { identifiers };
            json(|c| async move { c.desired(&d.product_key, &d.device_name, &q).await })
        }
        DeviceCommand::Desired(DesiredCommand::Clear {
            device: d,
            identifiers: ids,
            versions: v,
        }) => {
            let body = ClearDesired {
                identifiers: identifiers(&ids),
                versions: versions(v.as_deref())?,
            };
            if body.identifiers.is_empty() {
                return Err(usage("--identifiers names no identifier"));
            }
            json(|c| async move { c.clear_desired(&d.product_key, &d.device_name, &body).await })
        }
        DeviceCommand::Shadow(ShadowCommand::Get(d)) => {
            json(|c| async move { c.shadow(&d.product_key, &d.device_name).await })
        }
        DeviceCommand::Shadow(ShadowCommand::Update {
            device: d,
            desired,
            shadow_version: version,
            delta,
        }) => {
            let body = UpdateShadow {
                method: "update".into(),
                state: serde_json::json!({ "desired": json_object("--desired", &desired)? }),
                version,
                delta_update: delta,
            };
            json(|c| async move { c.update_shadow(&d.product_key, &d.device_name, &body).await })
        }
        _ => Err(usage("not a desired or shadow command")),
    }
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

fn encoding(base64: bool) -> Encoding {
    if base64 { Encoding::Base64 } else { Encoding::Text }
}

/// A command checked and ready to run: its request to the admin API and how the answer is
/// printed. Usage errors come before it exists, so before any network traffic.
type Job = Box<dyn FnOnce(Client) -> Pin<Box<dyn Future<Output = anyhow::Result<()>>>>>;

/// A job whose answer is printed as pretty JSON.
fn json<F, Fut, T>(request: F) -> anyhow::Result<Job>
where
    F: FnOnce(Client) -> Fut + 'static,
    Fut: Future<Output = aliot_admin::Result<T>> + 'static,
    T: Serialize,
{
    Ok(Box::new(|client| {
        Box::pin(async move {
            let answer = serde_json::to_value(request(client).await?).context("cannot print the answer")?;
            Ok(output::line(&serde_json::to_string_pretty(&answer)?)?)
        })
    }))
}

/// A job whose answer is printed as the hub sent it (CSV).
fn text<F, Fut>(request: F) -> anyhow::Result<Job>
where
    F: FnOnce(Client) -> Fut + 'static,
    Fut: Future<Output = aliot_admin::Result<String>> + 'static,
{
    Ok(Box::new(|client| {
        Box::pin(async move { Ok(output::write(&request(client).await?)?) })
    }))
}

/// Runs `aliot admin`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        url,
        token,
        data_dir,
        command,
    } = args;
    let job = job(command)?;
    let (url, token) = target(url, token, data_dir)?;
    let client = connect(&url, &token)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(job(client))?;
    Ok(ExitCode::SUCCESS)
}

/// The command, checked.
fn job(command: AdminCommand) -> anyhow::Result<Job> {
    match command {
        AdminCommand::Product(ProductCommand::Create {
            name,
            product_key,
            dynamic_registration,
            node_type,
        }) => {
            let product = CreateProduct { name, product_key };
            let node_type = node_type_of(&node_type);
            json(move |c| async move {
                let mut created = c.create_product(&product).await?;
                if dynamic_registration {
                    created = c.set_dynamic_registration(&created.product_key, true).await?;
                }
                if !node_type.is_direct() {
                    created = c.set_node_type(&created.product_key, node_type).await?;
                }
                Ok(created)
            })
        }
        AdminCommand::Product(ProductCommand::Update {
            product_key,
            dynamic_registration,
            node_type,
        }) => {
            if dynamic_registration.is_none() && node_type.is_none() {
                return Err(usage(
                    "nothing to change: give --dynamic-registration or --node-type",
                ));
            }
            let on = dynamic_registration.map(|d| d == "on");
            let node_type = node_type.as_deref().map(node_type_of);
            json(move |c| async move {
                let mut product = c.product(&product_key).await?;
                if let Some(on) = on {
                    product = c.set_dynamic_registration(&product_key, on).await?;
                }
                if let Some(t) = node_type {
                    product = c.set_node_type(&product_key, t).await?;
                }
                Ok(product)
            })
        }
        AdminCommand::Product(ProductCommand::List) => json(|c| async move { c.products().await }),
        AdminCommand::Product(ProductCommand::Config { command }) => config::job(command),
        AdminCommand::Product(ProductCommand::Subscribe(a)) => subscription::subscribe(a),
        AdminCommand::Product(ProductCommand::Unsubscribe { product_key }) => {
            subscription::unsubscribe(product_key)
        }
        AdminCommand::Product(ProductCommand::Subscription { product_key }) => {
            subscription::show(product_key)
        }
        AdminCommand::ConsumerGroup(command) => subscription::groups(command),
        AdminCommand::Product(ProductCommand::Tsl {
            command: TslCommand::Import { product_key, file },
        }) => {
            let tsl = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("cannot read the TSL from stdin")?
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?
            };
            json(move |c| async move { c.import_tsl(&product_key, &tsl).await })
        }
        AdminCommand::Product(ProductCommand::Tsl {
            command: TslCommand::Export { product_key },
        }) => text(move |c| async move { c.export_tsl(&product_key).await.map(|t| format!("{t}\n")) }),
        AdminCommand::Product(ProductCommand::Tsl {
            command: TslCommand::Delete { product_key },
        }) => json(move |c| async move { c.delete_tsl(&product_key).await }),
        AdminCommand::Device(DeviceCommand::Create(a)) => create_device(a),
        AdminCommand::Device(DeviceCommand::List {
            product_key: pk,
            status,
            format,
        }) => {
            let status = status.map(|s| match s.as_str() {
                "online" => DeviceStatus::Online,
                _ => DeviceStatus::Offline,
            });
            match format.as_str() {
                "csv" => text(move |c| async move { c.devices_csv(&pk, status).await }),
                _ => json(move |c| async move { c.devices(&pk, status).await }),
            }
        }
        AdminCommand::Device(DeviceCommand::Show(d)) => json(|c| async move {
            let device = c.device(&d.product_key, &d.device_name).await?;
            let gateway = c.gateway_of(&d.product_key, &d.device_name).await?;
            let mut v = serde_json::to_value(&device).unwrap_or(Value::Null);
            if let (Some(obj), Some(gw)) = (v.as_object_mut(), gateway.gateway) {
                obj.insert("gateway".into(), serde_json::to_value(gw).unwrap_or_default());
            }
            // The module versions the device reported on /ota/device/inform (a hub without
            // OTA has none to give).
            if let Ok(m) = c.device_modules(&d.product_key, &d.device_name).await {
                v["otaModules"] = serde_json::to_value(m.modules).unwrap_or(Value::Null);
            }
            Ok(v)
        }),
        AdminCommand::Ota(command) => ota::job(command),
        AdminCommand::Gateway(g) => gateway::job(g),
        AdminCommand::AccessKey(k) => access_key::job(k),
        AdminCommand::Device(DeviceCommand::Reset(d)) => {
            json(|c| async move { c.reset_device(&d.product_key, &d.device_name).await })
        }
        AdminCommand::Device(DeviceCommand::Enable(d)) => {
            json(|c| async move { c.set_enabled(&d.product_key, &d.device_name, true).await })
        }
        AdminCommand::Device(DeviceCommand::Disable(d)) => {
            json(|c| async move { c.set_enabled(&d.product_key, &d.device_name, false).await })
        }
        AdminCommand::Device(c @ (DeviceCommand::Desired(_) | DeviceCommand::Shadow(_))) => state_job(c),
        AdminCommand::Device(DeviceCommand::Delete(d)) => {
            json(|c| async move { c.delete_device(&d.product_key, &d.device_name).await })
        }
        AdminCommand::Device(DeviceCommand::Properties(d)) => history::properties(d),
        AdminCommand::Device(DeviceCommand::History(a)) => history::history(a),
        AdminCommand::Device(DeviceCommand::Events(a)) => history::events(a),
        AdminCommand::Device(DeviceCommand::Calls(a)) => history::calls(a),
        AdminCommand::Publish(a) => {
            let encoding = encoding(a.base64);
            encoding
                .decode(&a.payload)
                .map_err(|e| usage(format!("--payload is not valid base64: {e}")))?;
            let (d, message) = (
                a.device,
                Publish {
                    topic: a.topic,
                    payload: a.payload,
                    qos: a.qos,
                    encoding,
                },
            );
            json(|c| async move { c.publish(&d.product_key, &d.device_name, &message).await })
        }
        AdminCommand::SetProperty(a) => {
            let (d, call) = (
                a.device,
                Call {
                    params: Some(json_object("--params", &a.params)?),
                    timeout_ms: a.timeout_ms,
                },
            );
            json(|c| async move { c.set_properties(&d.product_key, &d.device_name, &call).await })
        }
        AdminCommand::Invoke(a) => {
            if a.service.is_empty() || a.service.contains(['/', '+', '#', '?']) {
                return Err(usage(format!(
                    "--service {:?} is not a service identifier",
                    a.service
                )));
            }
            let (d, service, call) = (
                a.device,
                a.service,
                Call {
                    params: Some(json_object("--params", &a.params)?),
                    timeout_ms: a.timeout_ms,
                },
            );
            json(|c| async move {
                c.invoke_service(&d.product_key, &d.device_name, &service, &call)
                    .await
            })
        }
        AdminCommand::Rrpc(a) => {
            let (d, request) = (
                a.device,
                Rrpc {
                    payload: a.payload,
                    encoding: encoding(a.base64),
                    timeout_ms: a.timeout_ms,
                },
            );
            json(|c| async move { c.rrpc(&d.product_key, &d.device_name, &request).await })
        }
        AdminCommand::Events(e) => {
            let filter = EventFilter {
                product_key: e.product_key,
                device_name: e.device_name,
                types: e.types,
            };
            Ok(Box::new(|c| {
                Box::pin(async move { follow_events(&c, &filter).await })
            }))
        }
    }
}

/// `direct`, `gateway` or `sub` (clap checked it).
fn node_type_of(text: &str) -> aliot_admin::NodeType {
    match text {
        "gateway" => aliot_admin::NodeType::Gateway,
        "sub" => aliot_admin::NodeType::Sub,
        _ => aliot_admin::NodeType::Direct,
    }
}

fn create_device(a: CreateDeviceArgs) -> anyhow::Result<Job> {
    let pk = a.product_key;
    if let Some(device_name) = a.device_name {
        let device = CreateDevice {
            device_name,
            device_secret: a.device_secret,
        };
        return json(|c| async move { c.create_device(&pk, &device).await });
    }
    let batch = match (a.prefix, a.count, a.names) {
        (Some(prefix), Some(count), None) => CreateBatch::prefixed(prefix, count, a.start),
        (None, None, Some(names)) => CreateBatch::named(names),
        _ => return Err(usage("give --device-name, or --prefix with --count, or --names")),
    };
    let batch = batch.skip_existing(a.skip_existing);
    match a.format.as_str() {
        "csv" => text(|c| async move { c.create_devices_csv(&pk, &batch).await }),
        _ => json(|c| async move { c.create_devices(&pk, &batch).await }),
    }
}

/// Prints each event of `GET /api/v1/events` as one JSON line (reconnecting after a `lagged`
/// marker, which ends a stream that fell behind) until the hub ends the stream,
/// Ctrl-C or SIGTERM.
async fn follow_events(client: &Client, filter: &EventFilter) -> anyhow::Result<()> {
    let shutdown = signal::shutdown().context("cannot listen for Ctrl-C and SIGTERM")?;
    tokio::pin!(shutdown);
    let mut events = tokio::select! {
        e = client.events(filter) => e?,
        () = &mut shutdown => return Ok(()),
    };
    // From here on, no event is missed.
    output::note(&format!(
        "following the events of {} (Ctrl-C stops)",
        client.base_url()
    ));
    let mut lagged = false;
    loop {
        // `next` is cancel-safe: stopping loses nothing that was already printed.
        let event = tokio::select! {
            e = events.next() => e?,
            () = &mut shutdown => return Ok(()),
        };
        let Some(event) = event else {
            if !lagged {
                return Ok(());
            }
            // The hub ended the stream because this reader fell behind (the `lagged` line
            // says how many events were missed): follow the newest events again.
            lagged = false;
            events = tokio::select! {
                e = client.events(filter) => e?,
                () = &mut shutdown => return Ok(()),
            };
            continue;
        };
        lagged = event.json().ok().and_then(|v| v.get("type").cloned()) == Some("lagged".into());
        output::line(event.data())?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_comes_from_flags_or_the_data_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = target(None, None, Some(dir.path().to_owned())).expect_err("nothing there");
        assert!(e.is::<super::super::UsageError>());
        assert!(e.to_string().contains("--url"), "{e}");
        std::fs::write(dir.path().join(data_dir::URL_FILE), "http://127.0.0.1:9/\n").expect("write");
        let e = target(None, None, Some(dir.path().to_owned())).expect_err("no token");
        assert!(e.to_string().contains("--token"), "{e}");
        std::fs::write(dir.path().join(data_dir::TOKEN_FILE), "tok\n").expect("write");
        let (url, token) = target(None, None, Some(dir.path().to_owned())).expect("found");
        let client = connect(&url, &token).expect("usable");
        assert_eq!((client.base_url(), token.as_str()), ("http://127.0.0.1:9", "tok"));
        let (url, token) = target(
            Some("http://h:1".into()),
            Some("x".into()),
            Some(dir.path().to_owned()),
        )
        .expect("flags");
        assert_eq!((url.as_str(), token.as_str()), ("http://h:1", "x"));
        let e = connect("https://h", "x").expect_err("not http");
        assert!(e.is::<super::super::UsageError>());
    }

    #[test]
    fn command_line_json_must_be_an_object() {
        assert!(json_object("--params", r#"{"a":1}"#).is_ok());
        assert!(json_object("--params", "[1]").is_err());
        assert!(json_object("--params", "{").is_err());
    }
}
