//! Device identity: the (productKey, deviceName, deviceSecret) triple.

use std::fmt;

use crate::error::{Error, Result};

/// Longest productKey the platform issues (C SDK `IOTX_PRODUCT_KEY_LEN`).
pub const MAX_PRODUCT_KEY_LEN: usize = 20;
/// Longest deviceName the platform accepts.
pub const MAX_DEVICE_NAME_LEN: usize = 32;
/// Longest deviceSecret / productSecret the platform issues.
pub const MAX_SECRET_LEN: usize = 64;

/// A device's identity: productKey, deviceName and deviceSecret.
///
/// `Debug` never shows the secret.
///
/// ```
/// use aliot_protocol::DeviceIdentity;
/// let id = DeviceIdentity::new("a14Xib5kdYd", "light1983432", "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq")?;
/// assert!(!format!("{id:?}").contains("oLya"));
/// # Ok::<(), aliot_protocol::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    product_key: String,
    device_name: String,
    device_secret: String,
}

impl DeviceIdentity {
    /// Builds an identity, checking each field against the platform's rules.
    ///
    /// # Errors
    /// [`Error::InvalidIdentity`] naming the field and what is wrong with it.
    pub fn new(
        product_key: impl Into<String>,
        device_name: impl Into<String>,
        device_secret: impl Into<String>,
    ) -> Result<Self> {
        let product_key = product_key.into();
        let device_name = device_name.into();
        let device_secret = device_secret.into();
        validate_product_key(&product_key)?;
        validate_device_name(&device_name)?;
        validate_secret("deviceSecret", &device_secret)?;
        Ok(Self {
            product_key,
            device_name,
            device_secret,
        })
    }

    /// The productKey.
    pub fn product_key(&self) -> &str {
        &self.product_key
    }

    /// The deviceName.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// The deviceSecret (the HMAC key of the CONNECT password). Keep it out of logs.
    pub fn device_secret(&self) -> &str {
        &self.device_secret
    }

    /// The MQTT username: `deviceName&productKey`.
    pub fn username(&self) -> String {
        format!("{}&{}", self.device_name, self.product_key)
    }
}

impl fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("product_key", &self.product_key)
            .field("device_name", &self.device_name)
            .field("device_secret", &"<redacted>")
            .finish()
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidIdentity {
        field,
        reason: reason.into(),
    }
}

/// Checks a productKey: 1 to 20 characters of letters, digits, `-` and `_`.
///
/// # Errors
/// [`Error::InvalidIdentity`] saying what is wrong.
pub fn validate_product_key(pk: &str) -> Result<()> {
    if pk.is_empty() {
        return Err(invalid("productKey", "is empty"));
    }
    if pk.len() > MAX_PRODUCT_KEY_LEN {
        return Err(invalid(
            "productKey",
            format!(
                "is {} bytes long, the platform allows {MAX_PRODUCT_KEY_LEN}",
                pk.len()
            ),
        ));
    }
    if let Some(c) = pk
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(invalid(
            "productKey",
            format!("contains {c:?}; only letters, digits, '-' and '_' are allowed"),
        ));
    }
    Ok(())
}

/// Checks a deviceName: 1 to 32 characters of letters, digits and `-_@.:`.
///
/// # Errors
/// [`Error::InvalidIdentity`] saying what is wrong.
pub fn validate_device_name(dn: &str) -> Result<()> {
    if dn.is_empty() {
        return Err(invalid("deviceName", "is empty"));
    }
    if dn.len() > MAX_DEVICE_NAME_LEN {
        return Err(invalid(
            "deviceName",
            format!(
                "is {} bytes long, the platform allows {MAX_DEVICE_NAME_LEN}",
                dn.len()
            ),
        ));
    }
    if let Some(c) = dn
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_@.:".contains(*c)))
    {
        return Err(invalid(
            "deviceName",
            format!("contains {c:?}; only letters, digits and - _ @ . : are allowed"),
        ));
    }
    Ok(())
}

/// Checks a deviceSecret or productSecret: 1 to 64 printable characters without white space.
///
/// # Errors
/// [`Error::InvalidIdentity`] saying what is wrong (never echoing the secret).
pub fn validate_secret(field: &'static str, secret: &str) -> Result<()> {
    if secret.is_empty() {
        return Err(invalid(field, "is empty"));
    }
    if secret.trim() != secret {
        return Err(invalid(
            field,
            "has leading or trailing white space (a copy-paste accident?)",
        ));
    }
    if secret.len() > MAX_SECRET_LEN {
        return Err(invalid(
            field,
            format!(
                "is {} bytes long, the platform allows {MAX_SECRET_LEN}",
                secret.len()
            ),
        ));
    }
    if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(field, "contains white space or control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let id = DeviceIdentity::new("pk", "dev", "s3cr3t-value").expect("valid");
        let dbg = format!("{id:?}");
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn device_names_with_the_allowed_punctuation_are_valid() {
        assert!(DeviceIdentity::new("a1B2c3D4e5F", "light-01_x@home.1:2", "x").is_ok());
    }

    #[test]
    fn each_bad_field_is_named() {
        let e = DeviceIdentity::new("", "d", "s").unwrap_err();
        assert!(e.to_string().contains("productKey"));
        let e = DeviceIdentity::new("pk", "d&x", "s").unwrap_err();
        assert!(e.to_string().contains("deviceName"));
        let e = DeviceIdentity::new("pk", "d", " s").unwrap_err();
        assert!(e.to_string().contains("white space"));
        let e = DeviceIdentity::new("pk", "d".repeat(33), "s").unwrap_err();
        assert!(e.to_string().contains("32"));
    }

    #[test]
    fn username_is_device_name_then_product_key() {
        let id = DeviceIdentity::new("pk", "dn", "s").expect("valid");
        assert_eq!(id.username(), "dn&pk");
    }
}
