//! `aliot admin product config …`: a product's remote configuration file (at most 64 KB):
//! upload, show, download, delete, push to the online devices, switch on or off.

use std::io::Read as _;
use std::path::PathBuf;

use aliot_protocol::config::MAX_CONFIG_SIZE;
use anyhow::Context as _;

use super::{Job, json, usage};
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub(super) enum ConfigCommand {
    /// Upload (replace) the configuration file (at most 64 KB; `-` for stdin): devices asking
    /// get its new configId, size, SHA-256 and a download URL.
    Upload {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: String,
        /// The file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Then push it to the product's online devices (thing.config.push).
        #[arg(long)]
        push: bool,
    },
    /// Show the switch and the file's configId, size, sign (SHA-256), upload time and a fresh
    /// download URL.
    Show {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: String,
    },
    /// Write the file to FILE (default: stdout).
    Download {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: String,
        /// Where to write it.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Delete the file (devices asking get code 6710).
    Delete {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: String,
    },
    /// Push the file to the product's online devices (thing.config.push); prints how many
    /// were online and how many it reached.
    Push {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: String,
    },
    /// Switch remote configuration on for the product (the default).
    Enable {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: String,
    },
    /// Switch remote configuration off for the product (devices asking get code 6713).
    Disable {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: String,
    },
}

/// Reads at most 64 KB from `file` (`-`: stdin); more is a usage error before any request.
fn read_limited(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let limit = MAX_CONFIG_SIZE as u64 + 1;
    if file.as_os_str() == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut bytes)
            .context("cannot read the configuration from stdin")?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(limit).read_to_end(&mut bytes))
            .map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
    }
    if bytes.len() > MAX_CONFIG_SIZE {
        return Err(usage(format!(
            "{} is larger than {MAX_CONFIG_SIZE} bytes: the platform keeps configuration files of at most 64 KB",
            file.display()
        )));
    }
    Ok(bytes)
}

pub(super) fn job(command: ConfigCommand) -> anyhow::Result<Job> {
    match command {
        ConfigCommand::Upload {
            product_key,
            file,
            push,
        } => {
            let bytes = read_limited(&file)?;
            json(move |c| async move { c.upload_config(&product_key, bytes, push).await })
        }
        ConfigCommand::Show { product_key } => {
            json(move |c| async move { c.remote_config(&product_key).await })
        }
        ConfigCommand::Download {
            product_key,
            output: path,
        } => Ok(Box::new(move |c| {
            Box::pin(async move {
                let bytes = c.download_config(&product_key).await?;
                match path {
                    Some(path) => std::fs::write(&path, &bytes)
                        .with_context(|| format!("cannot write {}", path.display()))?,
                    None => output::write_bytes(&bytes)?,
                }
                Ok(())
            })
        })),
        ConfigCommand::Delete { product_key } => {
            json(move |c| async move { c.delete_config(&product_key).await })
        }
        ConfigCommand::Push { product_key } => {
            json(move |c| async move { c.push_config(&product_key).await })
        }
        ConfigCommand::Enable { product_key } => {
            json(move |c| async move { c.set_config_enabled(&product_key, true).await })
        }
        ConfigCommand::Disable { product_key } => {
            json(move |c| async move { c.set_config_enabled(&product_key, false).await })
        }
    }
}
