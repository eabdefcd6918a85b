//! `aliot hub`: run the offline Alibaba Cloud IoT platform (MQTT broker, registry, admin API).
//!
//! Settings come from the defaults, then `--config FILE`, then the flags. The hub prints its
//! endpoints (the real addresses, so port 0 works) and where the admin token is, then runs
//! until Ctrl-C or SIGTERM and shuts down gracefully.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use aliot_hub::admin::TokenSource;
use aliot_hub::config::{
    AmqpConfig, Config, DEFAULT_CONFIG, DeviceHttpConfig, MqttsConfig, StompConfig, default_data_dir,
};
use aliot_hub::{Error as HubError, RunningHub};
use anyhow::Context as _;

use super::usage;
use crate::output::{self, shell_quote};
use crate::signal;

/// Arguments of `aliot hub`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// TOML configuration file (`--print-config` shows every setting); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (registry, admin token, TLS certificates)
    /// [default: $XDG_DATA_HOME/aliot/hub or ~/.local/share/aliot/hub].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the registry on PostgreSQL (postgres://user@host:port/db) instead of
    /// DATA_DIR/registry.redb; several hubs can share it. See docs/hub.md.
    #[arg(long, value_name = "URL", env = "ALIOT_REGISTRY")]
    registry: Option<String>,
    /// Plain MQTT address [default: 127.0.0.1:1883]; port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    mqtt: Option<SocketAddr>,
    /// Also serve MQTT over TLS on this address (e.g. 127.0.0.1:8883). Without --tls-cert and
    /// --tls-key, a local CA and server certificate are created in the data directory.
    #[arg(long, value_name = "ADDR")]
    mqtts: Option<SocketAddr>,
    /// Server certificate chain (PEM) for MQTT over TLS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM) for MQTT over TLS.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve the device-facing HTTP endpoints on this address (e.g. 127.0.0.1:8081): HTTPS
    /// dynamic registration, pre-authentication, bootstrap and the HTTP data channel.
    #[arg(long, value_name = "ADDR", conflicts_with = "device_https")]
    device_http: Option<SocketAddr>,
    /// As --device-http, over TLS with the MQTT over TLS certificate (the local CA unless
    /// --tls-cert and --tls-key).
    #[arg(long, value_name = "ADDR")]
    device_https: Option<SocketAddr>,
    /// Aliyun OpenAPI address for the official server SDKs [default: 127.0.0.1:8082]; port 0
    /// picks a free port.
    #[arg(long, value_name = "ADDR")]
    openapi: Option<SocketAddr>,
    /// Serve server-side subscription consumers (AMQP 1.0 over TLS, the platform's 5671) on
    /// this address, with the MQTT over TLS certificate (the local CA unless --tls-cert and
    /// --tls-key).
    #[arg(long, value_name = "ADDR")]
    amqp: Option<SocketAddr>,
    /// Also serve plain AMQP (no TLS) on this address (e.g. 127.0.0.1:5672).
    #[arg(long, value_name = "ADDR")]
    amqp_plain: Option<SocketAddr>,
    /// Serve STOMP subscription consumers (the platform's Python 3 sample, stomp.py on 61614)
    /// over TLS on this address, with the same certificate as --amqp.
    #[arg(long, value_name = "ADDR")]
    stomp: Option<SocketAddr>,
    /// Also serve plain STOMP (no TLS) on this address (e.g. 127.0.0.1:61613).
    #[arg(long, value_name = "ADDR")]
    stomp_plain: Option<SocketAddr>,
    /// Admin API address [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Admin API bearer token [default: generated once into DATA_DIR/admin-token].
    #[arg(long, value_name = "TOKEN")]
    admin_token: Option<String>,
    /// Print the default configuration file (commented) and exit.
    #[arg(long)]
    print_config: bool,
}

impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Args")
            .field("config", &self.config)
            .field("data_dir", &self.data_dir)
            .field(
                "registry",
                &self.registry.as_deref().map(aliot_hub::config::redact_url),
            )
            .field("mqtt", &self.mqtt)
            .field("mqtts", &self.mqtts)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("device_http", &self.device_http)
            .field("device_https", &self.device_https)
            .field("openapi", &self.openapi)
            .field("amqp", &self.amqp)
            .field("amqp_plain", &self.amqp_plain)
            .field("stomp", &self.stomp)
            .field("stomp_plain", &self.stomp_plain)
            .field("admin", &self.admin)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<redacted>"))
            .field("print_config", &self.print_config)
            .finish()
    }
}

/// Settings from the file, then the flags; validated.
fn settings(args: Args) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| usage(e.to_string()))?,
        None => Config::default(),
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = Some(dir);
    }
    if let Some(url) = args.registry {
        config.registry.url = Some(url);
    }
    if let Some(addr) = args.mqtt {
        config.mqtt.listen = addr;
    }
    if let Some(addr) = args.mqtts {
        config.mqtts.get_or_insert_with(MqttsConfig::default).listen = addr;
    }
    if args.tls_cert.is_some() || args.tls_key.is_some() {
        let Some(tls) = config.mqtts.as_mut() else {
            return Err(usage(
                "--tls-cert and --tls-key need --mqtts ADDR (or [mqtts] in the config file)",
            ));
        };
        tls.cert = args.tls_cert;
        tls.key = args.tls_key;
    }
    if let Some(addr) = args.admin {
        config.admin.listen = addr;
    }
    if let Some(addr) = args.amqp {
        config.amqp.get_or_insert_with(AmqpConfig::default).listen = addr;
    }
    if let Some(addr) = args.amqp_plain {
        config.amqp.get_or_insert_with(AmqpConfig::default).plain_listen = Some(addr);
    }
    if let Some(addr) = args.stomp {
        config.stomp.get_or_insert_with(StompConfig::default).listen = addr;
    }
    if let Some(addr) = args.stomp_plain {
        config.stomp.get_or_insert_with(StompConfig::default).plain_listen = Some(addr);
    }
    if let Some(addr) = args.openapi {
        config.openapi.enabled = true;
        config.openapi.listen = addr;
    }
    for (addr, tls) in [(args.device_http, false), (args.device_https, true)] {
        if let Some(addr) = addr {
            let d = config.device_http.get_or_insert_with(DeviceHttpConfig::default);
            d.listen = addr;
            d.tls = tls;
        }
    }
    if let Some(token) = args.admin_token {
        config.admin.token = Some(token);
    }
    if config.data_dir.is_none() {
        config.data_dir = Some(default_data_dir());
    }
    config.validate().map_err(|e| usage(e.to_string()))?;
    Ok(config)
}

/// Runs `aliot hub`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.print_config {
        output::write(DEFAULT_CONFIG)?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = settings(args)?;
    // Every connection is an open file: take all the system allows before the hub sizes itself.
    if let Err(e) = aliot_hub::capacity::raise_open_file_limit() {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("aliot-hub")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = signal::shutdown().context("cannot listen for Ctrl-C and SIGTERM")?;
        let hub = aliot_hub::start(config, shutdown).await.map_err(|e| match e {
            HubError::Config(_) => usage(e.to_string()),
            other => anyhow::Error::new(other).context("the hub could not start"),
        })?;
        let lines: String = endpoint_lines(&hub).iter().map(|l| format!("  {l}\n")).collect();
        let version = env!("CARGO_PKG_VERSION");
        output::write(&format!(
            "aliot hub {version} running\n{lines}Ctrl-C or SIGTERM stops the hub.\n"
        ))?;
        hub.wait().await.context("the hub stopped with an error")?;
        output::line("aliot hub stopped")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The endpoints, one `name: value` a line (tests and scripts read the `admin:` line).
fn endpoint_lines(hub: &RunningHub) -> Vec<String> {
    let mut lines = vec![format!("mqtt:        {}", hub.mqtt_addr())];
    if let Some(addr) = hub.mqtts_addr() {
        let trust = match hub.tls_files().and_then(|f| f.ca.as_deref()) {
            Some(ca) => format!(" (local CA for devices to trust: {})", ca.display()),
            None => String::new(),
        };
        lines.push(format!("mqtts:       {addr}{trust}"));
    }
    if let Some(url) = hub.device_http_url() {
        lines.push(format!(
            "device http: {url} (/auth/register/device, /auth/devicename, /auth/bootstrap, /auth, /topic/…)"
        ));
    }
    lines.push(format!("admin:       {}", hub.admin_url()));
    if let Some(addr) = hub.amqps_addr() {
        let trust = match hub.tls_files().and_then(|f| f.ca.as_deref()) {
            Some(ca) => format!(" (consumers trust: {})", ca.display()),
            None => String::new(),
        };
        lines.push(format!("amqps:       {addr}{trust}"));
    }
    if let Some(addr) = hub.amqp_plain_addr() {
        lines.push(format!("amqp:        {addr} (plain)"));
    }
    if let Some(addr) = hub.stomps_addr() {
        let trust = match hub.tls_files().and_then(|f| f.ca.as_deref()) {
            Some(ca) => format!(" (consumers trust: {})", ca.display()),
            None => String::new(),
        };
        lines.push(format!("stomp+ssl:   {addr}{trust}"));
    }
    if let Some(addr) = hub.stomp_plain_addr() {
        lines.push(format!("stomp:       {addr} (plain)"));
    }
    if let Some(url) = hub.openapi_url() {
        lines.push(format!(
            "openapi:     {url} (Aliyun OpenAPI 2018-01-20; access keys: aliot admin access-key create)"
        ));
    }
    lines.push(format!(
        "config urls: {}/config/… (remote config downloads, signed; [remote_config] public_url)",
        hub.config_url_base().trim_end_matches('/')
    ));
    lines.push(match hub.token_source() {
        TokenSource::File(path) => format!("admin token: in {}", path.display()),
        TokenSource::Configured => "admin token: the one given (--admin-token or the config file)".to_owned(),
    });
    lines.push(format!("capacity:    {}", hub.capacity()));
    lines.push(format!("data dir:    {}", hub.data_dir().display()));
    lines.push(format!(
        "admin CLI:   aliot admin --data-dir {} product list",
        shell_quote(&hub.data_dir().display().to_string())
    ));
    lines
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: Args,
    }

    fn parse(flags: &[&str]) -> anyhow::Result<Config> {
        let w = Wrapper::try_parse_from(std::iter::once("hub").chain(flags.iter().copied()))?;
        settings(w.args)
    }

    #[test]
    fn the_device_http_listener_is_off_unless_asked() {
        assert!(parse(&[]).expect("ok").device_http.is_none());
        let d = parse(&["--device-http", "127.0.0.1:8081"])
            .expect("ok")
            .device_http
            .expect("on");
        assert_eq!((d.listen.port(), d.tls), (8081, false));
        let d = parse(&["--device-https", "127.0.0.1:8443"])
            .expect("ok")
            .device_http
            .expect("on");
        assert_eq!((d.listen.port(), d.tls), (8443, true));
        assert!(parse(&["--device-http", "127.0.0.1:1", "--device-https", "127.0.0.1:2"]).is_err());
    }

    #[test]
    fn flags_override_the_defaults() {
        let c = parse(&[
            "--mqtt",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--data-dir",
            "/tmp/x",
        ])
        .expect("ok");
        assert_eq!(c.mqtt.listen.port(), 0);
        assert_eq!(c.data_dir.as_deref(), Some(Path::new("/tmp/x")));
        assert!(c.mqtts.is_none());
        let c = parse(&["--mqtts", "127.0.0.1:8884"]).expect("ok");
        assert_eq!(c.mqtts.expect("tls").listen.port(), 8884);
    }

    #[test]
    fn tls_files_need_a_tls_listener() {
        let e = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).expect_err("refused");
        assert!(e.is::<super::super::UsageError>());
        assert!(e.to_string().contains("--mqtts"));
        let c = parse(&[
            "--mqtts",
            "127.0.0.1:0",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ])
        .expect("ok");
        assert_eq!(c.mqtts.expect("tls").cert.as_deref(), Some(Path::new("c.pem")));
    }

    #[test]
    fn a_bad_token_is_a_usage_error() {
        let e = parse(&["--admin-token", "has space"]).expect_err("refused");
        assert!(e.is::<super::super::UsageError>());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let w = Wrapper::try_parse_from(["hub", "--admin-token", "sekrit-token"]).expect("ok");
        assert!(!format!("{:?}", w.args).contains("sekrit"));
    }
}
