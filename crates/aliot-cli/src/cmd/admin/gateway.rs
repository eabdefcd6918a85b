//! `aliot admin gateway topo …`: a gateway's sub-devices (list, add, remove, notify).

use aliot_admin::{ChangeTopology, DeviceKey};

use super::{Job, json, usage};

#[derive(Debug, clap::Subcommand)]
pub(super) enum GatewayCommand {
    /// The gateway's topology: list, add or remove sub-devices, ask the gateway to add some.
    #[command(subcommand)]
    Topo(TopoCommand),
}

/// The gateway, and sub-devices as `PK/DN` (repeat `--sub`, or comma-separate).
#[derive(Debug, clap::Args)]
pub(super) struct TopoArgs {
    /// The gateway's productKey.
    #[arg(long, value_name = "PK")]
    product_key: String,
    /// The gateway's deviceName.
    #[arg(long, value_name = "DN")]
    device_name: String,
    /// Sub-devices, `PK/DN` (repeatable, or comma-separated).
    #[arg(long = "sub", value_name = "PK/DN", value_delimiter = ',', required = true)]
    subs: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum TopoCommand {
    /// The gateway's sub-devices, with whether each is logged in.
    List {
        /// The gateway's productKey.
        #[arg(long, value_name = "PK")]
        product_key: String,
        /// The gateway's deviceName.
        #[arg(long, value_name = "DN")]
        device_name: String,
    },
    /// Add sub-devices (all or none; the gateway is told with thing.topo.change).
    Add(TopoArgs),
    /// Remove sub-devices (all or none; they are logged out, the gateway is told).
    Remove(TopoArgs),
    /// Ask the gateway to add sub-devices (thing.topo.add.notify).
    Notify(TopoArgs),
}

fn change(subs: &[String]) -> anyhow::Result<ChangeTopology> {
    let sub_devices = subs
        .iter()
        .map(|s| match s.split_once('/') {
            Some((pk, dn)) if !pk.is_empty() && !dn.is_empty() && !dn.contains('/') => Ok(DeviceKey {
                product_key: pk.to_owned(),
                device_name: dn.to_owned(),
            }),
            _ => Err(usage(format!("--sub {s:?} is not PK/DN"))),
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(ChangeTopology { sub_devices })
}

pub(super) fn job(command: GatewayCommand) -> anyhow::Result<Job> {
    let GatewayCommand::Topo(command) = command;
    match command {
        TopoCommand::List {
            product_key,
            device_name,
        } => json(move |c| async move { c.topology(&product_key, &device_name).await }),
        TopoCommand::Add(a) => {
            let body = change(&a.subs)?;
            json(move |c| async move { c.add_topology(&a.product_key, &a.device_name, &body).await })
        }
        TopoCommand::Remove(a) => {
            let body = change(&a.subs)?;
            json(move |c| async move { c.remove_topology(&a.product_key, &a.device_name, &body).await })
        }
        TopoCommand::Notify(a) => {
            let body = change(&a.subs)?;
            json(move |c| async move { c.notify_topology(&a.product_key, &a.device_name, &body).await })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_devices_are_pk_slash_dn() {
        let c = change(&["pk/a".into(), "pk/b".into()]).expect("parsed");
        assert_eq!(c.sub_devices[1].device_name, "b");
        assert!(change(&["nodn".into()]).is_err());
        assert!(change(&["pk/".into()]).is_err());
    }
}
