//! Shared by the examples: device options from a profile or the environment.
//!
//! - `ALIOT_PROFILE=device.toml` (see `aliot_protocol::profile`), or
//! - `ALIOT_PRODUCT_KEY`, `ALIOT_DEVICE_NAME`, `ALIOT_DEVICE_SECRET`, plus optional
//!   `ALIOT_HOST` (default 127.0.0.1, i.e. `aliot hub` on this machine), `ALIOT_PORT`,
//!   `ALIOT_TLS=1` and `ALIOT_CA_FILE` (the hub's `tls/ca.pem`; default: the Aliyun root CAs).

use std::env;
use std::error::Error;

use aliot_device::DeviceOptions;
use aliot_protocol::{DeviceIdentity, DeviceProfile, Endpoint};

/// Options from `ALIOT_PROFILE` or the `ALIOT_*` variables.
pub(crate) fn options() -> Result<DeviceOptions, Box<dyn Error>> {
    if let Ok(path) = env::var("ALIOT_PROFILE") {
        let profile = DeviceProfile::from_toml(&std::fs::read_to_string(&path)?)?;
        return Ok(DeviceOptions::from_profile(&profile)?);
    }
    let var = |name: &str| env::var(name).map_err(|_| format!("set {name} (or ALIOT_PROFILE)"));
    let identity = DeviceIdentity::new(
        var("ALIOT_PRODUCT_KEY")?,
        var("ALIOT_DEVICE_NAME")?,
        var("ALIOT_DEVICE_SECRET")?,
    )?;
    let tls = env::var("ALIOT_TLS").is_ok_and(|v| v == "1" || v == "true");
    let host = env::var("ALIOT_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = env::var("ALIOT_PORT").ok().map(|p| p.parse()).transpose()?;
    let mut options = DeviceOptions::new(identity, Endpoint::custom(&host, port, tls)?);
    if let Ok(ca) = env::var("ALIOT_CA_FILE") {
        options = options.ca_file(ca);
    }
    Ok(options)
}
