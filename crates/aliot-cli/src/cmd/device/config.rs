//! `aliot device config get [--save FILE]`: ask the platform for the product's remote
//! configuration (`thing.config.get`), print its description as JSON, and with `--save`
//! download it (size and SHA-256 checked) into FILE.

use std::path::PathBuf;
use std::process::ExitCode;

use aliot_device::Error as DeviceError;
use anyhow::{Context as _, anyhow};

use super::{ConnArgs, connect};
use crate::output;

/// `aliot device config …`.
#[derive(Debug, clap::Subcommand)]
pub(super) enum ConfigSub {
    /// Connect, ask for the product's remote configuration (thing.config.get), print its
    /// configId, size, sign and URL as JSON; with --save, download and check it into FILE.
    Get(GetArgs),
}

#[derive(Debug, clap::Args)]
pub(super) struct GetArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Download the file (checking its size and SHA-256) and write it here.
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
}

pub(super) async fn run(sub: ConfigSub) -> anyhow::Result<ExitCode> {
    let ConfigSub::Get(a) = sub;
    let (device, _events) = connect(&a.conn).await?;
    let result = async {
        let info = device.config_get().await.map_err(|e| match e {
            DeviceError::Alink { code: 6710, .. } => {
                anyhow!("the product has no remote configuration (code 6710)")
            }
            DeviceError::Alink { code: 6713, .. } => {
                anyhow!("remote configuration is switched off for the product (code 6713)")
            }
            other => anyhow!(other),
        })?;
        let file = match &a.save {
            Some(_) => Some(device.download_config(&info).await.map_err(|e| anyhow!(e))?),
            None => None,
        };
        Ok::<_, anyhow::Error>((info, file))
    }
    .await;
    device.disconnect().await;
    let (info, file) = result?;
    if let (Some(path), Some(bytes)) = (&a.save, &file) {
        std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        output::note(&format!(
            "saved configuration {} ({} bytes, SHA-256 checked) to {}",
            info.config_id,
            bytes.len(),
            path.display()
        ));
    }
    output::line(&serde_json::to_string_pretty(&info).context("the configuration's description")?)?;
    Ok(ExitCode::SUCCESS)
}
