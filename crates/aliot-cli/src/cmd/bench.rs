//! `aliot bench`: load-test a platform with a fleet of signed devices.
//!
//! The load generator is the [`aliot_bench`] library; this module only turns the flags into its
//! [`Options`], runs it, and prints the [`Summary`](aliot_bench::Summary) on stdout (a table, or
//! one JSON line). `--processes K` re-executes this program as `aliot bench --worker` K times.

mod ota;

use std::io::BufRead as _;
use std::process::ExitCode;

use aliot_admin::data_dir::{self, URL_FILE, default_data_dir};
use aliot_bench::{AdminTarget, Options, Plan, WorkerCommand};
use anyhow::Context as _;
use clap::ValueEnum;

use crate::cmd::usage;
use crate::output;

/// Output format of the final summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// A readable table.
    Table,
    /// One JSON object on the last line of stdout.
    Json,
}

/// What the simulated devices do once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    /// Ramp to N at --rate, hold for --duration (PINGREQ keeps idle devices connected).
    Connect,
    /// Post properties every --interval at --qos; latency post → post_reply (or, with --plain-auth,
    /// publish → delivery to one subscriber).
    Telemetry,
    /// Property sets through the admin API; latency set → set_reply.
    Downlink,
    /// Synchronous service calls (RRPC) through the admin API; latency of the round trip.
    Rrpc,
    /// Each device tries to make the server hold memory for it (QoS 1 posts of 200 new
    /// properties, never reading; then a --packet-bytes PUBLISH left unfinished); with
    /// --hub-metrics or --server-pid, shows what the server holds.
    Exhaust,
    /// Each device registers itself once with --product-secret (dynamic registration over
    /// MQTT, or over HTTP(S) with --register-url); CONNACK latency is the time to the answer.
    Register,
    /// An upgrade wave: --count devices (registered through the admin API, on the aliot-device
    /// SDK) report --from-version, one job upgrades them to --to-version with a
    /// --package-bytes package; time to every task final, download throughput, push rate.
    Ota,
    /// Gateways: --gateways gateways (product --product-key, default a1GwBench) each add
    /// --sub-devices-per-gateway sub-devices (product --sub-product-key) to their topology, log
    /// them in by batches of 50, post --posts-per-sub properties for each, and answer --downlinks
    /// property sets made through the admin API; login time, posts answered/s, downlink round
    /// trip, hub RSS per sub-device.
    Gateway,
}

impl From<Workload> for aliot_bench::Workload {
    fn from(w: Workload) -> Self {
        match w {
            Workload::Connect => aliot_bench::Workload::Connect,
            Workload::Telemetry => aliot_bench::Workload::Telemetry,
            Workload::Downlink => aliot_bench::Workload::Downlink,
            Workload::Rrpc => aliot_bench::Workload::Rrpc,
            Workload::Exhaust => aliot_bench::Workload::Exhaust,
            Workload::Register => aliot_bench::Workload::Register,
            // Run by `ota::run` and `run_gateway` before any conversion; connect is the harmless stand-in.
            Workload::Ota | Workload::Gateway => aliot_bench::Workload::Connect,
        }
    }
}

impl From<Format> for aliot_bench::Format {
    fn from(f: Format) -> Self {
        match f {
            Format::Table => aliot_bench::Format::Table,
            Format::Json => aliot_bench::Format::Json,
        }
    }
}

/// Arguments of `aliot bench`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    aliot bench --register --product-key a1Bench --count 1000 --workload telemetry --interval 1s --duration 30s\n  \
    aliot bench --devices fleet.csv --workload connect --rate 2000 --duration 60s --format json\n  \
    aliot bench --plain-auth user:pass --product-key pk --count 5000 --port 1884 --workload telemetry")]
pub(crate) struct Args {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: String,
    /// Broker port (default 1883, or 8883 with --tls).
    #[arg(long)]
    pub(crate) port: Option<u16>,
    /// Connect over TLS (rustls); trusts --ca-file.
    #[arg(long)]
    pub(crate) tls: bool,
    /// PEM file of the CA that signed the server certificate (the hub prints where its CA is).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub(crate) ca_file: Option<std::path::PathBuf>,
    /// Name checked against the server certificate (default: --host).
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub(crate) server_name: Option<String>,

    /// productKey of the generated devices ({prefix}{index}).
    #[arg(long, value_name = "PK")]
    pub(crate) product_key: Option<String>,
    /// deviceName prefix of the generated devices.
    #[arg(long, default_value = "bench-")]
    pub(crate) prefix: String,
    /// Number of devices (with --devices: use only the first N rows).
    #[arg(long, short = 'n')]
    pub(crate) count: Option<usize>,
    /// Register the generated devices first through the hub's admin API (batch endpoint).
    #[arg(long, conflicts_with_all = ["devices", "plain_auth"])]
    pub(crate) register: bool,
    /// Admin API of the hub, for --register, the downlink and rrpc workloads.
    #[arg(long, env = "ALIOT_ADMIN_URL", value_name = "URL")]
    pub(crate) admin_url: Option<String>,
    /// Bearer token of the admin API.
    #[arg(long, env = "ALIOT_ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// Data directory of a local hub: where the admin URL and token are read from when neither flag
    /// nor environment gives them [default: the hub's default data directory].
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<std::path::PathBuf>,
    /// CSV of productKey,deviceName,deviceSecret (a header line is skipped); `aliot admin device list --format csv`
    /// writes one.
    #[arg(long, value_name = "FILE", conflicts_with = "plain_auth")]
    pub(crate) devices: Option<std::path::PathBuf>,
    /// Plain MQTT username:password for every device, for a general broker (no Aliyun signing, no platform
    /// replies). telemetry then publishes to `aliot-bench/w{process}/{pk}/{dn}` and measures PUBACK plus
    /// delivery to one subscriber per bench process.
    #[arg(long, value_name = "USER:PASS")]
    pub(crate) plain_auth: Option<String>,
    /// HMAC of the CONNECT signature.
    #[arg(long, default_value = "hmacsha256", value_name = "METHOD")]
    pub(crate) sign_method: String,

    /// What the devices do.
    #[arg(long, short = 'w', value_enum, default_value = "connect")]
    pub(crate) workload: Workload,
    /// Connects started per second while ramping up (in total, over all processes).
    #[arg(long, default_value_t = 1000.0)]
    pub(crate) rate: f64,
    /// Handshakes (TCP connect → CONNACK) in flight at once, per process; 0 = no limit. A limit
    /// below the server's listen backlog measures its maximum connect rate without SYN drops.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) max_pending: usize,
    /// How long to hold the fleet once it is connected (and run the workload): e.g. 30s, 2m, 500ms.
    #[arg(long, default_value = "10s", value_parser = aliot_bench::parse_duration)]
    pub(crate) duration: std::time::Duration,
    /// telemetry: each device posts properties this often; 0 posts as fast as --inflight allows.
    #[arg(long, default_value = "1s", value_parser = aliot_bench::parse_duration)]
    pub(crate) interval: std::time::Duration,
    /// telemetry: QoS of the property posts.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub(crate) qos: u8,
    /// telemetry: posts a device may have waiting for their reply (1..=8).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub(crate) inflight: u8,
    /// MQTT keepalive in seconds (the hub accepts 30..=1200); idle devices send PINGREQ.
    #[arg(long, default_value_t = 60)]
    pub(crate) keepalive: u16,
    /// downlink/rrpc: admin API calls in flight at once (per process).
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// rrpc: the service identifier called.
    #[arg(long, default_value = "bench")]
    pub(crate) service_id: String,
    /// exhaust: remaining length of the PUBLISH each device leaves one byte short (the hub's
    /// default max_packet_size).
    #[arg(long, default_value_t = 263_168, value_name = "BYTES")]
    pub(crate) packet_bytes: u32,
    /// How devices log in: secret (the signed CONNECT), token (each registers without
    /// pre-registration first, with --product-secret, then logs in with its deviceToken) or https
    /// (pre-authentication at --auth-url, then MQTT with the iotToken).
    #[arg(long, default_value = "secret", value_parser = ["secret", "token", "https"])]
    pub(crate) auth: String,
    /// telemetry: post every property of this thing model (the console's TSL export) with valid
    /// values drawn from it.
    #[arg(long, value_name = "FILE")]
    pub(crate) tsl: Option<std::path::PathBuf>,
    /// --auth https: the base URL of the pre-authentication (the hub's --device-http URL).
    #[arg(long, value_name = "URL")]
    pub(crate) auth_url: Option<String>,
    /// register and --auth token: the productSecret the devices sign their registration with.
    #[arg(
        long,
        value_name = "SECRET",
        env = "ALIOT_PRODUCT_SECRET",
        hide_env_values = true
    )]
    pub(crate) product_secret: Option<String>,
    /// register: regnwl (no pre-registration: the hub creates the devices) or register (devices
    /// registered beforehand, e.g. with --register).
    #[arg(long, default_value = "regnwl", value_parser = ["regnwl", "register"])]
    pub(crate) register_auth_type: String,
    /// register: register over HTTP(S) at this base URL (the hub's --device-http address,
    /// e.g. http://127.0.0.1:8081) instead of MQTT; with --register-auth-type register.
    #[arg(long, value_name = "URL")]
    pub(crate) register_url: Option<String>,
    /// Give up on a CONNACK after this long.
    #[arg(long, default_value = "10s", value_parser = aliot_bench::parse_duration)]
    pub(crate) connect_timeout: std::time::Duration,
    /// After --duration, wait at most this long for outstanding replies before counting them lost.
    #[arg(long, default_value = "5s", value_parser = aliot_bench::parse_duration)]
    pub(crate) drain: std::time::Duration,

    /// Run K worker processes of this program, each with a disjoint slice of the fleet (one process holds at
    /// most ~19.9k sockets under a 20000 open-files limit).
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub(crate) processes: usize,
    /// Local addresses to connect from, spread round-robin: a list (127.0.0.2,127.0.0.3) or a range
    /// (127.0.0.2-127.0.0.9); avoids running out of ephemeral ports.
    #[arg(long, value_name = "ADDRS")]
    pub(crate) source_ip: Option<String>,
    /// The hub's Prometheus /metrics URL: report its RSS and CPU seconds.
    #[arg(long, value_name = "URL")]
    pub(crate) hub_metrics: Option<String>,
    /// PID of the server (any broker on this machine): report its RSS and CPU seconds from /proc.
    #[arg(long, value_name = "PID")]
    pub(crate) server_pid: Option<u32>,

    /// ota: the package's size in bytes.
    #[arg(long, default_value_t = 1_048_576, value_name = "BYTES")]
    pub(crate) package_bytes: usize,
    /// ota: the version the devices report at start.
    #[arg(long, default_value = "1.0.0", value_name = "V")]
    pub(crate) from_version: String,
    /// ota: the version of the package.
    #[arg(long, default_value = "2.0.0", value_name = "V")]
    pub(crate) to_version: String,
    /// ota: the job's maximum pushes per minute (default: the hub's, no limit).
    #[arg(long, value_name = "N")]
    pub(crate) max_per_minute: Option<u32>,
    /// ota: give up on the wave after this long; gateway: on a phase (topology, login, posts).
    #[arg(long, default_value = "10m", value_parser = aliot_bench::parse_duration)]
    pub(crate) ota_timeout: std::time::Duration,

    /// gateway: number of gateways.
    #[arg(long, default_value_t = 10, value_name = "G")]
    pub(crate) gateways: usize,
    /// gateway: sub-devices per gateway.
    #[arg(long, default_value_t = 20, value_name = "S")]
    pub(crate) sub_devices_per_gateway: usize,
    /// gateway: productKey of the sub-device product (created when missing).
    #[arg(long, default_value = "a1SubBench", value_name = "PK")]
    pub(crate) sub_product_key: String,
    /// gateway: property posts per sub-device.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub(crate) posts_per_sub: usize,
    /// gateway: property sets to sub-devices through the admin API.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub(crate) downlinks: usize,

    /// Summary format on stdout.
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
    /// No live progress on stderr.
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
    /// Internal: run as a worker process, reading its settings from stdin.
    #[arg(long, hide = true)]
    pub(crate) worker: bool,
}

/// Runs `aliot bench`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.worker {
        // The parent writes one line and closes the pipe: read it before starting the runtime.
        let mut spec = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut spec)
            .context("reading the worker spec on stdin")?;
        runtime()?
            .block_on(aliot_bench::run_worker(spec.as_bytes(), output::stdout()))
            .map_err(from_lib)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.workload == Workload::Ota {
        let settings = ota_settings(args)?;
        let summary = runtime()?.block_on(ota::run(settings))?;
        output::write(&summary)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.workload == Workload::Gateway {
        let format = args.format;
        let options = gateway_options(args)?;
        let summary = runtime()?
            .block_on(aliot_bench::run_gateway(&options))
            .map_err(from_lib)?;
        output::write(&summary.render(format.into()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let format = args.format;
    let plan = plan(args)?;
    let summary = runtime()?.block_on(aliot_bench::run(&plan)).map_err(from_lib)?;
    output::write(&summary.render(format.into()))?;
    // Refusals and losses are results, not failures of the tool: exit 0 whenever the run completed.
    Ok(ExitCode::SUCCESS)
}

/// The flags as the library's options, validated.
fn plan(a: Args) -> anyhow::Result<Plan> {
    let worker_command = if a.processes > 1 {
        let exe = std::env::current_exe().context("cannot find this program to start workers")?;
        Some(WorkerCommand::new(exe, ["bench", "--worker"]))
    } else {
        None
    };
    let data_dir = a.data_dir.clone().unwrap_or_else(default_data_dir);
    let mut options = Options {
        host: a.host,
        port: a.port,
        tls: a.tls,
        ca_file: a.ca_file,
        server_name: a.server_name,
        product_key: a.product_key,
        prefix: a.prefix,
        count: a.count,
        register: a.register,
        admin: None,
        devices: a.devices,
        plain_auth: a.plain_auth,
        sign_method: a.sign_method,
        workload: a.workload.into(),
        rate: a.rate,
        max_pending: a.max_pending,
        duration: a.duration,
        interval: a.interval,
        qos: a.qos,
        inflight: a.inflight,
        keepalive: a.keepalive,
        concurrency: a.concurrency,
        service_id: a.service_id,
        packet_bytes: a.packet_bytes,
        auth: match a.auth.as_str() {
            "token" => aliot_bench::Auth::Token,
            "https" => aliot_bench::Auth::Https,
            _ => aliot_bench::Auth::Secret,
        },
        tsl: a.tsl,
        auth_url: a.auth_url,
        product_secret: a.product_secret,
        register_auth_type: a.register_auth_type,
        register_url: a.register_url,
        connect_timeout: a.connect_timeout,
        drain: a.drain,
        processes: a.processes,
        worker_command,
        source_ip: a.source_ip,
        hub_metrics: a.hub_metrics,
        server_pid: a.server_pid,
        progress: !a.quiet,
    };
    if options.needs_admin() {
        options.admin = admin_target(a.admin_url, a.admin_token, &data_dir);
    }
    match Plan::new(options) {
        Err(e @ aliot_bench::Error::NoAdminApi) => {
            Err(usage(format!("{e} (no {URL_FILE} in {})", data_dir.display())))
        }
        r => r.map_err(from_lib),
    }
}

/// The flags of `--workload ota`.
fn ota_settings(a: Args) -> anyhow::Result<ota::Settings> {
    let data_dir = a.data_dir.clone().unwrap_or_else(default_data_dir);
    let admin = a.admin_url.or_else(|| data_dir::url(&data_dir)).ok_or_else(|| {
        usage(format!(
            "--workload ota needs the admin API: --admin-url, or a hub's {URL_FILE} in {}",
            data_dir.display()
        ))
    })?;
    let product_key = a
        .product_key
        .ok_or_else(|| usage("--workload ota needs --product-key (an existing product)"))?;
    Ok(ota::Settings {
        host: a.host,
        port: a.port.unwrap_or(1883),
        admin_url: admin,
        admin_token: a.admin_token.or_else(|| data_dir::token(&data_dir)),
        product_key,
        prefix: a.prefix,
        count: a.count.unwrap_or(100),
        rate: a.rate,
        concurrency: a.concurrency,
        package_bytes: a.package_bytes,
        from_version: a.from_version,
        to_version: a.to_version,
        max_per_minute: a.max_per_minute,
        timeout: a.ota_timeout,
        json: a.format == Format::Json,
        quiet: a.quiet,
    })
}

/// The flags of `--workload gateway`.
fn gateway_options(a: Args) -> anyhow::Result<aliot_bench::GatewayOptions> {
    let data_dir = a.data_dir.clone().unwrap_or_else(default_data_dir);
    let admin = admin_target(a.admin_url, a.admin_token, &data_dir).ok_or_else(|| {
        usage(format!(
            "--workload gateway needs the admin API: --admin-url, or a hub's {URL_FILE} in {}",
            data_dir.display()
        ))
    })?;
    Ok(aliot_bench::GatewayOptions {
        host: a.host,
        port: a.port.unwrap_or(1883),
        admin,
        gateway_product_key: a.product_key.unwrap_or_else(|| "a1GwBench".to_owned()),
        sub_product_key: a.sub_product_key,
        prefix: a.prefix,
        gateways: a.gateways,
        subs_per_gateway: a.sub_devices_per_gateway,
        posts_per_sub: a.posts_per_sub,
        window: 32,
        downlinks: a.downlinks,
        concurrency: a.concurrency,
        timeout: a.ota_timeout,
        progress: !a.quiet,
    })
}

/// The admin API: `--admin-url`/`--admin-token` (or their environment variables), else the files
/// a local hub writes into its data directory, as `aliot admin` does.
fn admin_target(url: Option<String>, token: Option<String>, dir: &std::path::Path) -> Option<AdminTarget> {
    let url = url.or_else(|| data_dir::url(dir))?;
    Some(AdminTarget::new(url, token.or_else(|| data_dir::token(dir))))
}

/// The library's mistakes-of-the-caller become usage errors (exit status 2).
fn from_lib(e: aliot_bench::Error) -> anyhow::Error {
    if e.is_usage() {
        usage(e.to_string())
    } else {
        anyhow::Error::new(e)
    }
}

/// A multi-thread runtime with one worker thread per core: the fleet is thousands of tasks.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the tokio runtime: {e}"))
}
