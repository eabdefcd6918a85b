//! Remote configuration (aliyun-protocol §4.4, cloud-side §4.3): the file a product's devices
//! fetch, as `thing.config.get` answers it and `thing.config.push` announces it.
//!
//! One description, [`ConfigInfo`] (`configId`, `configSize`, `sign`, `signMethod`, `url`,
//! `getType`), the platform's limit ([`MAX_CONFIG_SIZE`], 64 KB) and the check a device makes
//! of what it downloaded ([`ConfigInfo::verify`]: size, then SHA-256). The hub and the SDK both
//! use them.
//!
//! ```
//! use aliot_protocol::config::{ConfigInfo, sha256_hex};
//!
//! let file = br#"{"interval":5}"#;
//! let info = ConfigInfo::for_file("1", file, "http://127.0.0.1:8080/config/pk/1?x".into());
//! assert_eq!(info.config_size, 14);
//! assert_eq!(info.sign, sha256_hex(file));
//! assert!(info.verify(file).is_ok());
//! assert!(info.verify(b"{}").is_err());
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The largest remote configuration file the platform keeps: 64 KB (limits doc 30527).
pub const MAX_CONFIG_SIZE: usize = 64 * 1024;

/// `signMethod` of every remote configuration: the platform signs the file with SHA-256.
pub const SIGN_METHOD: &str = "Sha256";

/// `getType` of a remote configuration fetched as a file over HTTP(S).
pub const GET_TYPE_FILE: &str = "file";

/// Alink code: the product has no remote configuration.
pub const CONFIG_NOT_FOUND: u32 = 6710;

/// Alink code: remote configuration is switched off for the product.
pub const CONFIG_DISABLED: u32 = 6713;

/// A remote configuration file as the platform describes it: the `data` of
/// `thing.config.get_reply`, and the `params` of `thing.config.push`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigInfo {
    /// The version of the file (a new upload gets a new id).
    pub config_id: String,
    /// Its size in bytes.
    pub config_size: u64,
    /// Its digest: lower-case hex SHA-256.
    pub sign: String,
    /// How `sign` was computed: `Sha256`.
    pub sign_method: String,
    /// Where to download it (on the platform, an expiring OSS URL).
    pub url: String,
    /// `file`.
    pub get_type: String,
}

/// Why a downloaded configuration is not the one described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigMismatch {
    /// Not the announced size.
    #[error("the file has {actual} bytes, the platform announced {expected}")]
    Size {
        /// `configSize`.
        expected: u64,
        /// What was downloaded.
        actual: u64,
    },
    /// A `signMethod` other than `Sha256`.
    #[error("unsupported signMethod {0:?} (the platform signs with Sha256)")]
    SignMethod(String),
    /// Not the announced digest.
    #[error("the file's SHA-256 is {actual}, the platform announced {expected}")]
    Sign {
        /// `sign`.
        expected: String,
        /// The digest of what was downloaded.
        actual: String,
    },
}

/// Lower-case hex SHA-256 of `bytes`: the `sign` of a remote configuration.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ConfigInfo {
    /// The description of `file`, downloadable at `url`.
    pub fn for_file(config_id: impl Into<String>, file: &[u8], url: String) -> Self {
        Self {
            config_id: config_id.into(),
            config_size: file.len() as u64,
            sign: sha256_hex(file),
            sign_method: SIGN_METHOD.to_owned(),
            url,
            get_type: GET_TYPE_FILE.to_owned(),
        }
    }

    /// Checks that `file` is the configuration described: its size, then its SHA-256 (hex in
    /// either case, as `signMethod` `Sha256` in any case).
    ///
    /// # Errors
    /// [`ConfigMismatch`] naming what differs.
    pub fn verify(&self, file: &[u8]) -> Result<(), ConfigMismatch> {
        if file.len() as u64 != self.config_size {
            return Err(ConfigMismatch::Size {
                expected: self.config_size,
                actual: file.len() as u64,
            });
        }
        if !self.sign_method.eq_ignore_ascii_case(SIGN_METHOD) {
            return Err(ConfigMismatch::SignMethod(self.sign_method.clone()));
        }
        let actual = sha256_hex(file);
        if !actual.eq_ignore_ascii_case(&self.sign) {
            return Err(ConfigMismatch::Sign {
                expected: self.sign.clone(),
                actual,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_known_answer_for_abc() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_wire_names_are_the_platforms() {
        let info = ConfigInfo::for_file("7", b"abc", "http://h/c".into());
        let json = serde_json::to_value(&info).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"configId":"7","configSize":3,
              "sign":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
              "signMethod":"Sha256","url":"http://h/c","getType":"file"})
        );
        let back: ConfigInfo = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, info);
    }

    #[test]
    fn verify_names_a_wrong_size_a_wrong_digest_and_accepts_upper_case_hex() {
        let mut info = ConfigInfo::for_file("7", b"abc", String::new());
        assert!(matches!(
            info.verify(b"abcd"),
            Err(ConfigMismatch::Size {
                expected: 3,
                actual: 4
            })
        ));
        assert!(matches!(info.verify(b"abd"), Err(ConfigMismatch::Sign { .. })));
        info.sign = info.sign.to_uppercase();
        info.sign_method = "SHA256".into();
        assert!(info.verify(b"abc").is_ok());
        info.sign_method = "Md5".into();
        assert!(matches!(info.verify(b"abc"), Err(ConfigMismatch::SignMethod(_))));
    }
}
