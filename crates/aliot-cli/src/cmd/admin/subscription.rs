//! `aliot admin consumer-group …` and `aliot admin product subscribe|unsubscribe|subscription`:
//! server-side subscription's consumer groups and each product's subscribe relation.

use aliot_admin::SetSubscribeRelation;

use super::{Job, json};

#[derive(Debug, clap::Subcommand)]
pub(super) enum ConsumerGroupCommand {
    /// Create a consumer group (DEFAULT_GROUP always exists).
    Create {
        /// The group's id: 1 to 64 letters, digits, `_` or `-`.
        #[arg(long, value_name = "ID")]
        group_id: String,
    },
    /// List the groups with their backlog, consumers and dropped messages.
    List,
    /// Delete a group and its backlog (and take it out of every product's relation).
    Delete {
        /// The group's id.
        #[arg(long, value_name = "ID")]
        group_id: String,
    },
}

/// `aliot admin product subscribe`: set a product's relation.
#[derive(Debug, clap::Args)]
pub(super) struct SubscribeArgs {
    /// productKey.
    #[arg(long, value_name = "PK")]
    product_key: String,
    /// Consumer groups (repeat or comma-separate; default DEFAULT_GROUP).
    #[arg(
        long = "group",
        value_name = "ID",
        value_delimiter = ',',
        default_value = "DEFAULT_GROUP"
    )]
    groups: Vec<String>,
    /// Families to forward (repeat or comma-separate): DeviceDataFlag, DeviceStatusChangeFlag,
    /// DeviceLifeCycleFlag, DeviceTopoLifeCycleFlag, FoundDeviceListFlag, ThingHistoryFlag,
    /// OtaEventFlag, OtaVersionFlag, OtaJobFlag (the `Flag` suffix is optional)
    /// [default: DeviceData, DeviceStatusChange, DeviceLifeCycle].
    #[arg(long = "flag", value_name = "FLAG", value_delimiter = ',')]
    flags: Vec<String>,
}

pub(super) fn groups(command: ConsumerGroupCommand) -> anyhow::Result<Job> {
    match command {
        ConsumerGroupCommand::Create { group_id } => {
            json(move |c| async move { c.create_consumer_group(&group_id).await })
        }
        ConsumerGroupCommand::List => json(|c| async move { c.consumer_groups().await }),
        ConsumerGroupCommand::Delete { group_id } => {
            json(move |c| async move { c.delete_consumer_group(&group_id).await })
        }
    }
}

pub(super) fn subscribe(args: SubscribeArgs) -> anyhow::Result<Job> {
    let flags = if args.flags.is_empty() {
        ["DeviceDataFlag", "DeviceStatusChangeFlag", "DeviceLifeCycleFlag"]
            .map(str::to_owned)
            .to_vec()
    } else {
        args.flags
    };
    let (pk, relation) = (
        args.product_key,
        SetSubscribeRelation {
            consumer_group_ids: args.groups,
            flags,
        },
    );
    json(move |c| async move { c.set_subscribe_relation(&pk, &relation).await })
}

pub(super) fn unsubscribe(product_key: String) -> anyhow::Result<Job> {
    json(move |c| async move { c.delete_subscribe_relation(&product_key).await })
}

pub(super) fn show(product_key: String) -> anyhow::Result<Job> {
    json(move |c| async move { c.subscribe_relation(&product_key).await })
}
