//! Package uploads: the body streamed to a temporary file while its size, MD5 and SHA-256 are
//! computed (memory bounded by one chunk), the file synced and renamed into
//! `ota/packages/{firmwareId}.bin`, then the metadata committed. A crash before the commit leaves
//! a file no record names (removed at the next start when still in `tmp/`).

use futures_util::{Stream, StreamExt as _};
use md5::{Digest as _, Md5};
use sha2::Sha256;
use tokio::io::AsyncWriteExt as _;

use super::{DEFAULT_MODULE, Ota, OtaError, Package, SignMethod};
use crate::clock::now_ms;

/// What an upload says of its package.
#[derive(Debug, Clone, Default)]
pub struct PackageSpec {
    /// `ProductKey`.
    pub product_key: String,
    /// `DestVersion`.
    pub dest_version: String,
    /// `ModuleName` (default `default`).
    pub module_name: Option<String>,
    /// `SrcVersion` (differential packages).
    pub src_version: Option<String>,
    /// `FirmwareName` (default `{module}-{version}`).
    pub firmware_name: Option<String>,
    /// `SignMethod` (default MD5).
    pub sign_method: SignMethod,
    /// `Type` 1: differential.
    pub is_diff: bool,
    /// Pushed as `extData`.
    pub ext_data: Option<serde_json::Value>,
}

fn io(what: &str, e: impl std::fmt::Display) -> OtaError {
    OtaError::Storage(format!("{what}: {e}"))
}

impl Ota {
    /// Stores a package from a stream of chunks (durable on return).
    ///
    /// # Errors
    /// [`OtaError::TooLarge`] past the configured limit (the upload stops there),
    /// [`OtaError::InvalidArgument`] for an empty body or a bad version, storage, or the
    /// stream's own error.
    pub async fn upload_package<S, E>(&self, spec: PackageSpec, mut body: S) -> Result<Package, OtaError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if spec.dest_version.trim().is_empty() {
            return Err(OtaError::InvalidArgument("the package needs a version".into()));
        }
        let limit = self.settings().max_package_bytes;
        let temp = self.temp_path();
        for dir in [temp.parent(), self.package_path("x").parent()]
            .into_iter()
            .flatten()
        {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io("creating the OTA directory", e))?;
        }
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| io("creating an upload file", e))?;
        let (mut md5, mut sha) = (Md5::new(), Sha256::new());
        let mut size: u64 = 0;
        let result: Result<(), OtaError> = async {
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.map_err(|e| OtaError::InvalidArgument(format!("the upload broke off: {e}")))?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(OtaError::TooLarge { limit });
                }
                md5.update(&chunk);
                sha.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io("writing an upload", e))?;
            }
            if size == 0 {
                return Err(OtaError::InvalidArgument("the package is empty".into()));
            }
            file.sync_all().await.map_err(|e| io("syncing an upload", e))
        }
        .await;
        drop(file);
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
        let firmware_id = Ota::new_firmware_id();
        let path = self.package_path(&firmware_id);
        tokio::fs::rename(&temp, &path)
            .await
            .map_err(|e| io("storing a package", e))?;
        let md5 = hex::encode(md5.finalize());
        let sha = hex::encode(sha.finalize());
        let module = spec
            .module_name
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| DEFAULT_MODULE.to_owned());
        let package = Package {
            firmware_name: spec
                .firmware_name
                .unwrap_or_else(|| format!("{module}-{}", spec.dest_version)),
            firmware_id,
            product_key: spec.product_key,
            dest_version: spec.dest_version,
            src_version: spec.src_version.filter(|s| !s.is_empty()),
            module_name: module,
            firmware_size: size,
            sign_method: spec.sign_method,
            firmware_sign: match spec.sign_method {
                SignMethod::Md5 => md5.clone(),
                SignMethod::Sha256 => sha,
            },
            md5,
            is_diff: spec.is_diff,
            ext_data: spec.ext_data,
            utc_create: now_ms(),
        };
        self.add_package(package).await
    }
}
