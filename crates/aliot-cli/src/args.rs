//! The device identity flags shared by the subcommands that act as a device (`sign`, `device`,
//! `bench`, …): `--product-key`, `--device-name`, `--device-secret` and `--profile`.
//!
//! Precedence, field by field: a flag wins over its environment variable (`ALIOT_PRODUCT_KEY`,
//! `ALIOT_DEVICE_NAME`, `ALIOT_DEVICE_SECRET`), which wins over the profile file.
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

use aliot_protocol::{DeviceIdentity, DeviceProfile};

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
        let profile = self.profile.as_deref().map(load_profile).transpose()?;
        let from_profile =
            |f: fn(&DeviceProfile) -> &Option<String>| profile.as_ref().and_then(|p| f(p).clone());
        let pick = |flag: &Option<String>, from: Option<String>, flag_name: &str, env: &str, key: &str| {
            flag.clone().or(from).ok_or_else(|| {
                usage(format!(
                    "missing the device's {key}: pass --{flag_name}, set {env} or put {key} in --profile"
                ))
            })
        };
        let product_key = pick(
            &self.product_key,
            from_profile(|p| &p.product_key),
            "product-key",
            "ALIOT_PRODUCT_KEY",
            "product_key",
        )?;
        let device_name = pick(
            &self.device_name,
            from_profile(|p| &p.device_name),
            "device-name",
            "ALIOT_DEVICE_NAME",
            "device_name",
        )?;
        let device_secret = pick(
            &self.device_secret,
            from_profile(|p| &p.device_secret),
            "device-secret",
            "ALIOT_DEVICE_SECRET",
            "device_secret",
        )?;
        let identity =
            DeviceIdentity::new(product_key, device_name, device_secret).map_err(|e| usage(e.to_string()))?;
        Ok((identity, profile))
    }
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
