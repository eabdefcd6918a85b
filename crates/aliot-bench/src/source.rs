//! Where the simulated devices come from: generated names (`product_key`, `prefix`, `count`,
//! registered through the admin API with `register`), or a CSV of
//! `productKey,deviceName,deviceSecret`.

use std::fmt;
use std::path::Path;

use aliot_admin::{CreateBatch, CreateProduct};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::settings::{AdminTarget, FleetSource};

/// One device of the fleet. The secret is `None` under plain auth.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct DeviceSpec {
    pub(crate) product_key: String,
    pub(crate) device_name: String,
    pub(crate) device_secret: Option<String>,
}

impl fmt::Debug for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceSpec")
            .field("product_key", &self.product_key)
            .field("device_name", &self.device_name)
            .field(
                "device_secret",
                &self.device_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Resolves the fleet: reads the CSV, or generates the names (and registers them on the hub).
pub(crate) async fn resolve(source: &FleetSource, admin: Option<&AdminTarget>) -> Result<Vec<DeviceSpec>> {
    match source {
        FleetSource::Csv { path, limit } => {
            let mut devices = read_csv(path)?;
            if let Some(n) = limit {
                devices.truncate(*n);
            }
            if devices.is_empty() {
                return Err(Error::EmptyDeviceList { path: path.clone() });
            }
            Ok(devices)
        }
        FleetSource::Generated {
            product_key,
            prefix,
            count,
            register,
        } => {
            if *register {
                let admin = admin.ok_or(Error::NoAdminApi)?;
                register_batch(admin, product_key, prefix, *count).await
            } else {
                Ok((0..*count)
                    .map(|i| DeviceSpec {
                        product_key: product_key.clone(),
                        device_name: format!("{prefix}{i}"),
                        device_secret: None,
                    })
                    .collect())
            }
        }
    }
}

/// Reads `productKey,deviceName,deviceSecret` rows; a first line naming the columns is skipped,
/// and so are blank lines and `#` comments.
fn read_csv(path: &Path) -> Result<Vec<DeviceSpec>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    parse_csv(&text).map_err(|reason| Error::DeviceList {
        path: path.to_owned(),
        reason,
    })
}

fn parse_csv(text: &str) -> Result<Vec<DeviceSpec>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(|c| c.trim().trim_matches('"')).collect();
        if n == 0 && cols.first().is_some_and(|c| c.eq_ignore_ascii_case("productKey")) {
            continue;
        }
        let [pk, dn, secret, ..] = cols.as_slice() else {
            return Err(format!(
                "line {}: expected productKey,deviceName,deviceSecret",
                n + 1
            ));
        };
        if pk.is_empty() || dn.is_empty() || secret.is_empty() {
            return Err(format!(
                "line {}: an empty productKey, deviceName or deviceSecret",
                n + 1
            ));
        }
        out.push(DeviceSpec {
            product_key: (*pk).to_owned(),
            device_name: (*dn).to_owned(),
            device_secret: Some((*secret).to_owned()),
        });
    }
    Ok(out)
}

/// Devices registered per batch call (the hub takes larger batches; smaller calls keep each
/// answer small).
const BATCH: usize = 1000;

/// `POST /api/v1/products/{pk}/devices:batch {"prefix","count","start","skipExisting":true}` →
/// 201 with the devices and their secrets (existing ones listed too, so a second run reuses
/// them). Creates the product first when the hub does not know it.
async fn register_batch(
    admin: &AdminTarget,
    pk: &str,
    prefix: &str,
    count: usize,
) -> Result<Vec<DeviceSpec>> {
    let client = admin.client()?;
    let mut out: Vec<DeviceSpec> = Vec::with_capacity(count);
    let mut product_created = false;
    while out.len() < count {
        let start = out.len();
        let n = (count - start).min(BATCH);
        let batch = CreateBatch::prefixed(prefix, n as u64, Some(start as u64)).skip_existing(true);
        let created = match client.create_devices(pk, &batch).await {
            Ok(created) => created,
            Err(e) if e.status() == Some(404) && !product_created => {
                product_created = true;
                let product = CreateProduct {
                    name: format!("aliot bench {pk}"),
                    product_key: Some(pk.to_owned()),
                };
                client
                    .create_product(&product)
                    .await
                    .map_err(|e| Error::admin(format!("creating product {pk} failed"), e))?;
                continue;
            }
            Err(e) => {
                return Err(Error::admin(
                    format!("registering devices on {} failed", client.base_url()),
                    e,
                ));
            }
        };
        if created.len() != n {
            return Err(admin_answer(format!(
                "the hub answered {} devices for a batch of {n}",
                created.len()
            )));
        }
        out.extend(created.into_iter().map(|c| DeviceSpec {
            product_key: c.product_key,
            device_name: c.device_name,
            device_secret: Some(c.device_secret),
        }));
    }
    Ok(out)
}

/// An admin answer the bench cannot use.
fn admin_answer(message: String) -> Error {
    Error::Admin {
        message,
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_should_skip_the_header_blank_lines_and_comments() {
        let text = "productKey,deviceName,deviceSecret\n\n# a comment\npk,dev1,s1\n\"pk\",dev2 , s2\n";
        let d = parse_csv(text).expect("valid");
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].device_name, "dev2");
        assert_eq!(d[1].device_secret.as_deref(), Some("s2"));
    }

    #[test]
    fn csv_should_name_the_line_of_a_short_row() {
        let err = parse_csv("pk,dev1,s1\npk,dev2\n").expect_err("short row");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn debug_should_redact_the_secret() {
        let d = DeviceSpec {
            product_key: "pk".into(),
            device_name: "d".into(),
            device_secret: Some("hunter2".into()),
        };
        assert!(!format!("{d:?}").contains("hunter2"));
    }
}
