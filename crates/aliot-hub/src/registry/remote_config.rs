//! Remote configuration (cloud-side §4.3): per product, one configuration file of at most
//! [`MAX_CONFIG_SIZE`] bytes, and the product's switch for the feature.
//!
//! # On disk (redb)
//!
//! Two tables of the registry's file: `product_config`, productKey → the switch and the
//! file's metadata (JSON [`RemoteConfig`]), and `product_config_files`, productKey → the file's
//! bytes. An upload or a deletion writes both in one durable transaction, so a crash leaves the
//! old configuration or the new one, never a file without its metadata or the reverse. Memory
//! holds the metadata of every product (read for every `thing.config.get`); the files stay on
//! disk and are read when downloaded.

use std::collections::HashMap;

use aliot_protocol::config::{MAX_CONFIG_SIZE, sha256_hex};
use redb::{Database, ReadTransaction, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// productKey → JSON [`RemoteConfig`].
pub(super) const CONFIGS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("product_config");
/// productKey → the configuration file's bytes.
pub(super) const CONFIG_FILES: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("product_config_files");

/// A product's remote configuration file, as described to devices (without its bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// `configId`: a new one for every upload.
    pub config_id: String,
    /// `configSize`, bytes.
    pub size: u64,
    /// `sign`: lower-case hex SHA-256 of the file.
    pub sign: String,
    /// When it was uploaded, epoch ms.
    pub uploaded_ms: u64,
}

impl ConfigFile {
    /// The metadata of `bytes`, uploaded now as `config_id`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty file or one above [`MAX_CONFIG_SIZE`].
    pub fn describe(config_id: String, bytes: &[u8], uploaded_ms: u64) -> Result<Self> {
        check_size(bytes)?;
        Ok(Self {
            config_id,
            size: bytes.len() as u64,
            sign: sha256_hex(bytes),
            uploaded_ms,
        })
    }
}

/// The platform's rule on a configuration file's size: not empty, at most 64 KB.
///
/// # Errors
/// [`Error::InvalidArgument`] saying which.
pub fn check_size(bytes: &[u8]) -> Result<()> {
    if bytes.is_empty() {
        return Err(Error::InvalidArgument("the configuration file is empty".into()));
    }
    if bytes.len() > MAX_CONFIG_SIZE {
        return Err(Error::InvalidArgument(format!(
            "the configuration file has {} bytes; the platform keeps at most {MAX_CONFIG_SIZE} (64 KB)",
            bytes.len()
        )));
    }
    Ok(())
}

/// A configuration file's metadata and bytes.
pub type ConfigDownload = (ConfigFile, Vec<u8>);

/// A product's remote configuration: its switch and its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteConfig {
    /// Whether the feature is on for the product; off, devices asking get code 6713. On by
    /// default (the console's switch starts off; the hub starts on so that an upload is enough).
    pub enabled: bool,
    /// The file, when one was uploaded.
    #[serde(default)]
    pub file: Option<ConfigFile>,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            file: None,
        }
    }
}

/// productKey → its remote configuration (only products whose configuration was ever set).
pub(super) type RemoteConfigs = HashMap<String, RemoteConfig>;

/// Reads every product's remote configuration (not the files), noting undecodable records.
pub(super) fn read(txn: &ReadTransaction, skipped: &mut dyn FnMut(&str, &Error)) -> Result<RemoteConfigs> {
    let mut out = RemoteConfigs::new();
    let table = match txn.open_table(CONFIGS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(out),
        Err(e) => return Err(Error::storage("reading the remote config table", e)),
    };
    for row in table
        .iter()
        .map_err(|e| Error::storage("reading the remote config table", e))?
    {
        let (k, v) = row.map_err(|e| Error::storage("reading a remote config", e))?;
        let record = format!("config/{}", k.value());
        match serde_json::from_slice::<RemoteConfig>(v.value()) {
            Ok(c) => {
                out.insert(k.value().to_owned(), c);
            }
            Err(source) => skipped(
                &record,
                &Error::Corrupt {
                    record: record.clone(),
                    source,
                },
            ),
        }
    }
    Ok(out)
}

/// How a write changes the file.
pub(super) enum FileChange<'a> {
    /// Keep it.
    Keep,
    /// Replace it with these bytes.
    Put(&'a [u8]),
    /// Delete it.
    Delete,
}

/// Stores `config` and applies `file` in one durable transaction (blocking).
pub(super) fn write(
    db: &Database,
    product_key: &str,
    config: &RemoteConfig,
    file: FileChange<'_>,
) -> Result<()> {
    let encoded = serde_json::to_vec(config).map_err(|source| Error::Corrupt {
        record: format!("config/{product_key}"),
        source,
    })?;
    let txn = db
        .begin_write()
        .map_err(|e| Error::storage("starting a remote config update", e))?;
    {
        let mut table = txn
            .open_table(CONFIGS)
            .map_err(|e| Error::storage("opening the remote config table", e))?;
        table
            .insert(product_key, encoded.as_slice())
            .map_err(|e| Error::storage("writing a remote config", e))?;
        let mut files = txn
            .open_table(CONFIG_FILES)
            .map_err(|e| Error::storage("opening the remote config files table", e))?;
        match file {
            FileChange::Keep => {}
            FileChange::Put(bytes) => {
                files
                    .insert(product_key, bytes)
                    .map_err(|e| Error::storage("writing a remote config file", e))?;
            }
            FileChange::Delete => {
                files
                    .remove(product_key)
                    .map_err(|e| Error::storage("deleting a remote config file", e))?;
            }
        }
    }
    txn.commit()
        .map_err(|e| Error::storage("committing a remote config", e))
}

/// The bytes of the product's configuration file (blocking); `None` when it has none.
pub(super) fn read_file(db: &Database, product_key: &str) -> Result<Option<Vec<u8>>> {
    let txn = db
        .begin_read()
        .map_err(|e| Error::storage("reading a remote config file", e))?;
    let table = match txn.open_table(CONFIG_FILES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(Error::storage("reading the remote config files table", e)),
    };
    let value = table
        .get(product_key)
        .map_err(|e| Error::storage("reading a remote config file", e))?;
    Ok(value.map(|v| v.value().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_from_one_byte_to_64_kb_are_accepted() {
        assert!(check_size(b"x").is_ok());
        assert!(check_size(&vec![b'x'; MAX_CONFIG_SIZE]).is_ok());
        let err = check_size(&vec![b'x'; MAX_CONFIG_SIZE + 1]).expect_err("too big");
        assert!(err.to_string().contains("65537 bytes"), "{err}");
        assert!(check_size(b"").is_err());
    }

    #[test]
    fn a_record_without_a_file_reads_back() {
        let c: RemoteConfig = serde_json::from_str(r#"{"enabled":false}"#).expect("reads");
        assert_eq!(
            c,
            RemoteConfig {
                enabled: false,
                file: None
            }
        );
    }
}
