//! The argument groups and value parsers that several subcommands share: who the device is
//! ([`IdentityArgs`]: `--product-key`, `--device-name`, `--device-secret`, `--profile`) and
//! where it connects ([`EndpointArgs`]: `--host`, `--instance-id`, `--region`, `--port`).
//!
//! Identity precedence, field by field: a flag wins over its environment variable
//! (`ALIOT_PRODUCT_KEY`, `ALIOT_DEVICE_NAME`, `ALIOT_DEVICE_SECRET`), which wins over the
//! profile file. Endpoint precedence: the flags name the endpoint, else the profile does, else
//! the command's default; an endpoint named by a flag takes no port from the profile.
//!
//! ```ignore
//! #[derive(Debug, clap::Args)]
//! pub(crate) struct Args {
//!     #[command(flatten)]
//!     identity: IdentityArgs,
//! }
//! let (device, profile) = args.identity.resolve()?; // usage errors (exit 2) for anything missing or bad
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aliot_protocol::{DeviceIdentity, DeviceProfile, Endpoint, SignMethod};

use crate::cmd::usage;

/// The device triple from flags, environment or a TOML device profile.
#[derive(Clone, Default, clap::Args)]
pub(crate) struct IdentityArgs {
    /// productKey of the device.
    #[arg(long, value_name = "PK", env = "ALIOT_PRODUCT_KEY")]
    pub(crate) product_key: Option<String>,
    /// deviceName of the device.
    #[arg(long, value_name = "DN", env = "ALIOT_DEVICE_NAME")]
    pub(crate) device_name: Option<String>,
    /// deviceSecret of the device (the HMAC key of the CONNECT password).
    #[arg(long, value_name = "DS", env = "ALIOT_DEVICE_SECRET", hide_env_values = true)]
    pub(crate) device_secret: Option<String>,
    /// TOML device profile (product_key, device_name, device_secret, host, port, tls, ...);
    /// flags and environment variables win over it.
    #[arg(long, value_name = "FILE")]
    pub(crate) profile: Option<PathBuf>,
}

impl fmt::Debug for IdentityArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityArgs")
            .field("product_key", &self.product_key)
            .field("device_name", &self.device_name)
            .field(
                "device_secret",
                &self.device_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("profile", &self.profile)
            .finish()
    }
}

impl IdentityArgs {
    /// The device identity, and the profile when `--profile` was given (so that the caller can
    /// take its connection settings: host, port, tls, sign_method, client_id, …).
    ///
    /// # Errors
    /// A usage error (exit status 2) when the profile cannot be read or parsed, a field is
    /// missing from all three sources, or a field is invalid.
    pub(crate) fn resolve(&self) -> anyhow::Result<(DeviceIdentity, Option<DeviceProfile>)> {
        let profile = self.load_profile()?;
        let identity = self.identity(profile.as_ref())?;
        Ok((identity, profile))
    }

    /// The `--profile`, read and parsed, when one was given.
    ///
    /// # Errors
    /// A usage error when it cannot be read or parsed.
    pub(crate) fn load_profile(&self) -> anyhow::Result<Option<DeviceProfile>> {
        self.profile.as_deref().map(load_profile).transpose()
    }

    /// productKey and deviceName: flag, else environment, else `profile`.
    ///
    /// # Errors
    /// A usage error naming what is missing.
    pub(crate) fn names(&self, profile: Option<&DeviceProfile>) -> anyhow::Result<(String, String)> {
        let product_key = pick(
            &self.product_key,
            profile.and_then(|p| p.product_key.clone()),
            "product-key",
            "ALIOT_PRODUCT_KEY",
            "product_key",
        )?;
        let device_name = pick(
            &self.device_name,
            profile.and_then(|p| p.device_name.clone()),
            "device-name",
            "ALIOT_DEVICE_NAME",
            "device_name",
        )?;
        Ok((product_key, device_name))
    }

    /// Whether a deviceSecret is given by a flag, the environment or `profile`.
    pub(crate) fn has_secret(&self, profile: Option<&DeviceProfile>) -> bool {
        self.device_secret.is_some() || profile.is_some_and(|p| p.device_secret.is_some())
    }

    /// The device identity from the flags, the environment and `profile`.
    ///
    /// # Errors
    /// A usage error when a field is missing from all three sources or is invalid.
    pub(crate) fn identity(&self, profile: Option<&DeviceProfile>) -> anyhow::Result<DeviceIdentity> {
        let (product_key, device_name) = self.names(profile)?;
        let device_secret = pick(
            &self.device_secret,
            profile.and_then(|p| p.device_secret.clone()),
            "device-secret",
            "ALIOT_DEVICE_SECRET",
            "device_secret",
        )?;
        DeviceIdentity::new(product_key, device_name, device_secret).map_err(|e| usage(e.to_string()))
    }
}

/// A field from its flag (or environment variable), else from the profile; a usage error
/// naming the three ways to give it when it is in neither.
pub(crate) fn pick(
    flag: &Option<String>,
    from_profile: Option<String>,
    flag_name: &str,
    env: &str,
    key: &str,
) -> anyhow::Result<String> {
    flag.clone().or(from_profile).ok_or_else(|| {
        usage(format!(
            "missing the device's {key}: pass --{flag_name}, set {env} or put {key} in --profile"
        ))
    })
}

/// Reads and parses a TOML device profile.
///
/// # Errors
/// A usage error naming the file when it cannot be read or is not a valid profile.
pub(crate) fn load_profile(path: &Path) -> anyhow::Result<DeviceProfile> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read profile {}: {e}", path.display())))?;
    DeviceProfile::from_toml(&text).map_err(|e| usage(format!("profile {}: {e}", path.display())))
}

/// Where the device connects: one of `--host`, `--instance-id` or `--region`, and `--port`.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct EndpointArgs {
    /// MQTT host (the local hub, a proxy).
    #[arg(long, value_name = "H", group = "endpoint")]
    pub(crate) host: Option<String>,
    /// Region of a legacy public instance: host `{productKey}.iot-as-mqtt.{region}.aliyuncs.com`.
    #[arg(long, value_name = "R", group = "endpoint")]
    pub(crate) region: Option<String>,
    /// Instance id of a new public or Enterprise instance: host `{id}.mqtt.iothub.aliyuncs.com`.
    #[arg(long, value_name = "I", group = "endpoint")]
    pub(crate) instance_id: Option<String>,
    /// Port [default: 1883 for TCP; 443 (region) or 8883 (host, instance) for TLS].
    #[arg(long, value_name = "P")]
    pub(crate) port: Option<u16>,
}

impl EndpointArgs {
    /// The endpoint the flags name (with `--port` alone), else the one the profile names, else
    /// `default()` (both with `--port`, else the profile's port). Every problem is a usage error
    /// (exit status 2).
    pub(crate) fn resolve(
        &self,
        product_key: &str,
        profile: Option<&DeviceProfile>,
        tls: bool,
        default: impl FnOnce() -> aliot_protocol::Result<Endpoint>,
    ) -> anyhow::Result<Endpoint> {
        let named = |host: &Option<String>, instance: &Option<String>, region: &Option<String>, port| {
            let (h, i, r) = (host.as_deref(), instance.as_deref(), region.as_deref());
            Endpoint::named(product_key, h, i, r, port, tls)
        };
        let resolved = (|| {
            if let Some(e) = named(&self.host, &self.instance_id, &self.region, self.port)? {
                return Ok(e);
            }
            let p = profile.cloned().unwrap_or_default();
            let port = self.port.or(p.port);
            if let Some(e) = named(&p.host, &p.instance_id, &p.region, port)? {
                return Ok(e);
            }
            let mut e = default()?;
            e.port = port.unwrap_or(e.port);
            Ok(e)
        })();
        resolved.map_err(|e: aliot_protocol::Error| usage(e.to_string()))
    }
}

/// A secret given on the command line (productSecret, deviceToken): `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Redacted(pub(crate) String);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Takes a secret flag's value as it is.
pub(crate) fn parse_redacted(s: &str) -> Result<Redacted, String> {
    Ok(Redacted(s.to_owned()))
}

/// Parses a `signmethod` (`hmacsha1`, `hmacsha256`, `hmacmd5`).
pub(crate) fn parse_sign_method(s: &str) -> Result<SignMethod, String> {
    s.parse::<SignMethod>().map_err(|e| e.to_string())
}

/// `500ms`, `10s`, `5m`, `1h`, or a bare number of seconds; positive.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
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
    fn an_endpoint_flag_replaces_the_profile_endpoint_and_its_port() {
        let profile = DeviceProfile {
            host: Some("profile-host".into()),
            port: Some(1999),
            ..DeviceProfile::default()
        };
        let local = || Endpoint::custom("127.0.0.1", None, false);
        let resolve = |a: EndpointArgs, p: Option<&DeviceProfile>| {
            let e = a.resolve("pk", p, false, local).expect("valid");
            (e.host, e.port)
        };
        assert_eq!(
            resolve(EndpointArgs::default(), Some(&profile)),
            ("profile-host".into(), 1999)
        );
        assert_eq!(resolve(EndpointArgs::default(), None), ("127.0.0.1".into(), 1883));
        let port_only = DeviceProfile {
            port: Some(1999),
            ..DeviceProfile::default()
        };
        assert_eq!(
            resolve(EndpointArgs::default(), Some(&port_only)),
            ("127.0.0.1".into(), 1999)
        );
        let host = EndpointArgs {
            host: Some("flag-host".into()),
            ..EndpointArgs::default()
        };
        assert_eq!(resolve(host, Some(&profile)), ("flag-host".into(), 1883));
        let port = EndpointArgs {
            port: Some(8443),
            ..EndpointArgs::default()
        };
        assert_eq!(resolve(port, Some(&profile)), ("profile-host".into(), 8443));
        let bad = EndpointArgs {
            region: Some("cn/x".into()),
            ..EndpointArgs::default()
        };
        let e = bad.resolve("pk", None, false, local).expect_err("bad region");
        assert!(e.is::<crate::cmd::UsageError>());
    }
}
