//! `aliot admin access-key …`: the access keys that sign Aliyun OpenAPI calls to the hub and
//! log AMQP consumers in. `create` prints the secret (its only appearance); `list` never does.

use aliot_admin::CreateAccessKey;

use super::{Job, json};

#[derive(Debug, clap::Subcommand)]
pub(super) enum AccessKeyCommand {
    /// Create an access key; prints its AccessKeyId and AccessKeySecret (shown this once).
    Create {
        /// What the key is for (shown in lists).
        #[arg(long)]
        description: Option<String>,
    },
    /// List the access keys (ids, creation times, descriptions; never secrets).
    List,
    /// Delete an access key: requests signed with it are refused from now.
    Delete {
        /// The AccessKeyId.
        #[arg(long, value_name = "ID")]
        id: String,
    },
}

/// The command, checked.
pub(super) fn job(command: AccessKeyCommand) -> anyhow::Result<Job> {
    match command {
        AccessKeyCommand::Create { description } => {
            let body = CreateAccessKey { description };
            json(|c| async move { c.create_access_key(&body).await })
        }
        AccessKeyCommand::List => json(|c| async move { c.access_keys().await }),
        AccessKeyCommand::Delete { id } => json(|c| async move { c.delete_access_key(&id).await }),
    }
}
