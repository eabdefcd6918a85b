//! The flags of `aliot bench`, validated into a [`Plan`] (parent) and [`Settings`] (what every
//! process, parent or worker, needs to run its slice of the fleet).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use aliot_protocol::SignMethod;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::{Args, Format};
use crate::cmd::usage;

/// What the simulated devices do once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
}

impl Workload {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Workload::Connect => "connect",
            Workload::Telemetry => "telemetry",
            Workload::Downlink => "downlink",
            Workload::Rrpc => "rrpc",
        }
    }
}

/// Where the admin API is.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct AdminTarget {
    pub(crate) url: String,
    pub(crate) token: Option<String>,
}

impl std::fmt::Debug for AdminTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTarget")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Plain MQTT credentials (`--plain-auth`).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PlainAuth {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for PlainAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// TLS settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TlsSettings {
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) server_name: String,
}

/// What one process needs to run its slice of the fleet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Settings {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: Option<TlsSettings>,
    pub(crate) workload: Workload,
    /// Connects per second for this process.
    pub(crate) rate: f64,
    /// Handshakes in flight at once (0 = no limit).
    pub(crate) max_pending: usize,
    pub(crate) duration: Duration,
    pub(crate) interval: Duration,
    pub(crate) qos: u8,
    pub(crate) inflight: u8,
    pub(crate) keepalive: u16,
    pub(crate) concurrency: usize,
    pub(crate) service_id: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) drain: Duration,
    pub(crate) sign_method: String,
    pub(crate) plain_auth: Option<PlainAuth>,
    pub(crate) admin: Option<AdminTarget>,
    pub(crate) source_ips: Vec<IpAddr>,
    /// Index of this process among the workers (0 for a single process); names its subscriber's topics.
    pub(crate) worker_index: usize,
}

impl Settings {
    pub(crate) fn sign_method(&self) -> SignMethod {
        self.sign_method.parse().unwrap_or(SignMethod::HmacSha256)
    }
}

/// Where the devices come from (resolved by the parent into a list).
#[derive(Debug, Clone)]
pub(crate) enum FleetSource {
    /// `{prefix}{i}` for i in 0..count under `product_key`, optionally registered first.
    Generated {
        product_key: String,
        prefix: String,
        count: usize,
        register: bool,
    },
    /// Rows of a CSV file, at most `limit`.
    Csv { path: PathBuf, limit: Option<usize> },
}

/// Everything the parent process needs.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) settings: Settings,
    pub(crate) fleet: FleetSource,
    pub(crate) processes: usize,
    pub(crate) format: Format,
    pub(crate) quiet: bool,
    pub(crate) hub_metrics: Option<String>,
    pub(crate) server_pid: Option<u32>,
}

impl Plan {
    /// Validates the flags.
    pub(crate) fn from_args(a: Args) -> anyhow::Result<Plan> {
        let tls = if a.tls {
            Some(TlsSettings {
                ca_file: a.ca_file.clone(),
                server_name: a.server_name.clone().unwrap_or_else(|| a.host.clone()),
            })
        } else {
            None
        };
        let port = a.port.unwrap_or(if a.tls { 8883 } else { 1883 });
        let sign_method: SignMethod = a
            .sign_method
            .parse()
            .map_err(|_| usage(format!("unknown --sign-method {:?}", a.sign_method)))?;
        let plain_auth = match &a.plain_auth {
            None => None,
            Some(s) => {
                let (u, p) = s
                    .split_once(':')
                    .ok_or_else(|| usage("--plain-auth takes USER:PASS"))?;
                Some(PlainAuth {
                    username: u.to_owned(),
                    password: p.to_owned(),
                })
            }
        };
        if !(a.rate.is_finite() && a.rate > 0.0) {
            return Err(usage("--rate must be a positive number of connects per second"));
        }
        if a.processes == 0 || a.processes > 64 {
            return Err(usage("--processes must be between 1 and 64"));
        }
        if a.concurrency == 0 {
            return Err(usage("--concurrency must be at least 1"));
        }
        if plain_auth.is_none() && !(30..=1200).contains(&a.keepalive) {
            return Err(usage(
                "--keepalive must be within 30..=1200 s (the platform refuses others with CONNACK 2)",
            ));
        }
        if a.keepalive == 0 {
            return Err(usage("--keepalive must be at least 1 s"));
        }
        let needs_admin = matches!(a.workload, Workload::Downlink | Workload::Rrpc) || a.register;
        if needs_admin && plain_auth.is_some() {
            return Err(usage(
                "the downlink and rrpc workloads need the hub's admin API; they cannot run with --plain-auth",
            ));
        }
        let admin = if needs_admin {
            Some(admin_target(&a)?)
        } else {
            None
        };
        let fleet = match (&a.devices, &a.product_key) {
            (Some(path), _) => FleetSource::Csv {
                path: path.clone(),
                limit: a.count,
            },
            (None, Some(pk)) => {
                let count = a
                    .count
                    .ok_or_else(|| usage("--count is needed with --product-key"))?;
                if count == 0 {
                    return Err(usage("--count must be at least 1"));
                }
                if !a.register && plain_auth.is_none() {
                    return Err(usage(
                        "generated devices need their secrets: add --register (the hub creates them), or use --devices FILE, or --plain-auth",
                    ));
                }
                FleetSource::Generated {
                    product_key: pk.clone(),
                    prefix: a.prefix.clone(),
                    count,
                    register: a.register,
                }
            }
            (None, None) => {
                return Err(usage(
                    "say which devices: --product-key PK --count N [--register], or --devices FILE",
                ));
            }
        };
        let source_ips = match &a.source_ip {
            Some(s) => parse_source_ips(s).map_err(usage)?,
            None => Vec::new(),
        };
        if let Some(url) = &a.hub_metrics
            && !url.starts_with("http://")
        {
            return Err(usage("--hub-metrics takes an http:// URL"));
        }
        let settings = Settings {
            host: a.host,
            port,
            tls,
            workload: a.workload,
            rate: a.rate,
            max_pending: a.max_pending,
            duration: a.duration,
            interval: a.interval,
            qos: a.qos,
            inflight: a.inflight,
            keepalive: a.keepalive,
            concurrency: a.concurrency,
            service_id: a.service_id,
            connect_timeout: a.connect_timeout,
            drain: a.drain,
            sign_method: sign_method.as_str().to_owned(),
            plain_auth,
            admin,
            source_ips,
            worker_index: 0,
        };
        Ok(Plan {
            settings,
            fleet,
            processes: a.processes,
            format: a.format,
            quiet: a.quiet,
            hub_metrics: a.hub_metrics,
            server_pid: a.server_pid,
        })
    }
}

/// The admin API: `--admin-url`/`--admin-token` (or their environment variables), else the files
/// a local hub writes into its data directory, as `aliot admin` does.
fn admin_target(a: &Args) -> anyhow::Result<AdminTarget> {
    use aliot_hub::config::{TOKEN_FILE, URL_FILE, default_data_dir};
    let dir = a.data_dir.clone().unwrap_or_else(default_data_dir);
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let url = match a.admin_url.clone().or_else(|| read(URL_FILE)) {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            return Err(usage(format!(
                "--register and the downlink/rrpc workloads need the hub's admin API: pass --admin-url or set \
                 ALIOT_ADMIN_URL (no {URL_FILE} in {})",
                dir.display()
            )));
        }
    };
    if !url.starts_with("http://") {
        return Err(usage(format!("--admin-url must be an http:// URL, not {url:?}")));
    }
    Ok(AdminTarget {
        url,
        token: a.admin_token.clone().or_else(|| read(TOKEN_FILE)),
    })
}

/// Parses `5s`, `250ms`, `500us`, `2m`, `1h`, `1.5s` or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (try 30s, 500ms, 2m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "us" | "µs" => n / 1_000_000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (use us, ms, s, m, h)")),
    };
    if !secs.is_finite() || !(0.0..=7.0 * 24.0 * 3600.0).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `127.0.0.2,127.0.0.3` or `127.0.0.2-127.0.0.9` (IPv4 ranges within one /24… or any
/// range up to 1024 addresses), or a mix separated by commas.
pub(crate) fn parse_source_ips(s: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: std::net::Ipv4Addr = a
                .trim()
                .parse()
                .map_err(|_| format!("{a:?} is not an IPv4 address"))?;
            let b: std::net::Ipv4Addr = b
                .trim()
                .parse()
                .map_err(|_| format!("{b:?} is not an IPv4 address"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a >= 1024 {
                return Err(format!(
                    "the range {part:?} is empty or longer than 1024 addresses"
                ));
            }
            out.extend((a..=b).map(|x| IpAddr::V4(x.into())));
        } else {
            out.push(
                part.parse()
                    .map_err(|_| format!("{part:?} is not an IP address"))?,
            );
        }
    }
    if out.is_empty() {
        return Err("--source-ip names no address".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_should_accept_units_and_bare_seconds() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2900us"), Ok(Duration::from_micros(2900)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn source_ips_should_expand_ranges_and_lists() {
        let ips = parse_source_ips("127.0.0.2-127.0.0.4,127.0.0.9").expect("valid");
        let text: Vec<String> = ips.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.9"]);
        assert!(parse_source_ips("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_source_ips("nope").is_err());
    }
}
