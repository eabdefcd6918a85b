//! `aliot device run --gateway --sub-devices subs.csv`: the device is a gateway; every line of
//! the file (`productKey,deviceName,deviceSecret`) is a sub-device added to its topology and
//! logged in through it (in batches of 50), then simulated like a direct device.

use std::path::Path;

use aliot_device::gateway::{Gateway, SubDevice};
use aliot_device::{Device, Events};
use aliot_protocol::DeviceIdentity;
use aliot_protocol::gateway::MAX_BATCH;
use anyhow::{Context as _, anyhow};

use crate::cmd::usage;

/// Reads `productKey,deviceName,deviceSecret` lines; blank lines and `#` comments are skipped.
pub(super) fn read_csv(path: &Path) -> anyhow::Result<Vec<DeviceIdentity>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_csv(&text).map_err(|e| usage(format!("{}: {e}", path.display())))
}

fn parse_csv(text: &str) -> Result<Vec<DeviceIdentity>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [pk, dn, secret] = fields[..] else {
            return Err(format!(
                "line {}: expected productKey,deviceName,deviceSecret",
                n + 1
            ));
        };
        if pk.eq_ignore_ascii_case("productKey") {
            continue; // a header line
        }
        out.push(DeviceIdentity::new(pk, dn, secret).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    if out.is_empty() {
        return Err("no sub-devices".into());
    }
    Ok(out)
}

/// Adds the sub-devices to the gateway's topology and logs them in, 50 at a time.
pub(super) async fn log_in_all(
    device: &Device,
    subs: Vec<DeviceIdentity>,
) -> anyhow::Result<Vec<(SubDevice, Events)>> {
    let gateway = Gateway::new(device.clone())
        .await
        .map_err(|e| anyhow!(e).context("gateway topics not subscribed"))?;
    let mut out = Vec::with_capacity(subs.len());
    for chunk in subs.chunks(MAX_BATCH) {
        gateway
            .add_topo(chunk)
            .await
            .map_err(|e| anyhow!(e).context("topo add refused"))?;
        let logged = gateway
            .login_batch(chunk.to_vec())
            .await
            .map_err(|e| anyhow!(e).context("sub-device login refused"))?;
        out.extend(logged);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse_csv;

    #[test]
    fn csv_lines_header_and_errors() {
        let subs = parse_csv(
            "productKey,deviceName,deviceSecret\n# c\na1B2c3D4e5F, s1 ,secret1\n\na1B2c3D4e5F,s2,secret2\n",
        )
        .expect("valid");
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].device_name(), "s1");
        assert!(parse_csv("a,b").expect_err("two fields").contains("line 1"));
        assert!(parse_csv("").is_err());
    }
}
