//! Gateway topology (cloud-side §5): which sub-devices a gateway speaks for. The rule
//! ([`plan_add`], [`plan_remove`]) is shared by every registry implementation; this file also
//! keeps the topology in redb.
//!
//! - A sub-device belongs to one gateway at a time: adding it to another is refused (6619).
//! - A gateway cannot be its own sub-device (6402).
//! - A gateway has at most [`MAX_SUBS_PER_GATEWAY`] sub-devices (6400).
//! - Adding or removing several sub-devices is all or nothing.
//! - Node types ([`node_type_refusal`]): a device of a `sub` product cannot act as a gateway,
//!   and a device of a `gateway` product cannot be a sub-device (460). A `direct` product (the
//!   default, and every product made before node types existed) may be either.
//!
//! # On disk (redb)
//!
//! Two tables: `gateway_topology`, (gwPk, gwDn) → JSON `[[subPk, subDn], …]`, and
//! `gateway_of`, (subPk, subDn) → JSON `[gwPk, gwDn]`; one durable transaction per change.

use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};

use super::{Error, Result};

/// (gwPk, gwDn) → JSON list of (subPk, subDn).
pub(super) const TOPOLOGY: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("gateway_topology");
/// (subPk, subDn) → JSON (gwPk, gwDn).
pub(super) const GATEWAY_OF: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("gateway_of");

/// The most sub-devices in one gateway's topology (the platform's device error table: 1500).
pub const MAX_SUBS_PER_GATEWAY: usize = 1500;

/// A device named by (productKey, deviceName).
pub type DeviceRef = (String, String);

/// Why the platform refuses a topology change (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopoRefusal {
    /// A gateway cannot be its own sub-device (6402).
    #[error("a gateway cannot add itself as a sub-device")]
    Itself,
    /// The gateway would have too many sub-devices (6400).
    #[error("a gateway has at most {limit} sub-devices ({would_have} asked)")]
    TooMany {
        /// Sub-devices the gateway would have.
        would_have: usize,
        /// [`MAX_SUBS_PER_GATEWAY`].
        limit: usize,
    },
    /// The sub-device belongs to another gateway (6619).
    #[error("sub-device {}/{} belongs to gateway {}/{}", .sub.0, .sub.1, .gateway.0, .gateway.1)]
    OtherGateway {
        /// The sub-device.
        sub: DeviceRef,
        /// Its gateway.
        gateway: DeviceRef,
    },
    /// The device is not in the gateway's topology (6401).
    #[error("sub-device {}/{} is not in the gateway's topology", .0.0, .0.1)]
    NotInTopology(DeviceRef),
    /// The device's product is a sub-device product: it cannot act as a gateway (460).
    #[error("{}/{} is not a gateway (its product's node type is sub)", .0.0, .0.1)]
    NotAGateway(DeviceRef),
    /// The device's product is a gateway product: it cannot be a sub-device (460).
    #[error("{}/{} cannot be a sub-device (its product's node type is gateway)", .0.0, .0.1)]
    NotASubDevice(DeviceRef),
}

impl TopoRefusal {
    /// The platform's code.
    pub fn code(&self) -> u32 {
        match self {
            TopoRefusal::Itself => 6402,
            TopoRefusal::TooMany { .. } => 6400,
            TopoRefusal::OtherGateway { .. } => 6619,
            TopoRefusal::NotInTopology(_) => 6401,
            TopoRefusal::NotAGateway(_) | TopoRefusal::NotASubDevice(_) => 460,
        }
    }
}

/// The node-type rule of a gateway acting for `subs` (module docs): `None` when it holds. A
/// product the registry does not know counts as `direct` (the device checks come after).
pub async fn node_type_refusal(
    registry: &dyn super::Registry,
    gateway: &DeviceRef,
    subs: &[DeviceRef],
) -> Option<TopoRefusal> {
    let node_type = |pk: String| async move {
        match registry.product(&pk).await {
            Ok(Some(p)) => p.node_type,
            _ => super::NodeType::Direct,
        }
    };
    if node_type(gateway.0.clone()).await == super::NodeType::Sub {
        return Some(TopoRefusal::NotAGateway(gateway.clone()));
    }
    let mut seen: Vec<&str> = Vec::new();
    for sub in subs {
        if seen.contains(&sub.0.as_str()) {
            continue;
        }
        if node_type(sub.0.clone()).await == super::NodeType::Gateway {
            return Some(TopoRefusal::NotASubDevice(sub.clone()));
        }
        seen.push(&sub.0);
    }
    None
}

/// The gateway's new list of sub-devices once `adding` is added to `current`, or why not;
/// `gateway_of` tells the gateway each sub-device belongs to now.
///
/// # Errors
/// The [`TopoRefusal`] of the first sub-device refused.
pub fn plan_add(
    gateway: &DeviceRef,
    current: &[DeviceRef],
    adding: &[DeviceRef],
    gateway_of: &mut dyn FnMut(&DeviceRef) -> Option<DeviceRef>,
) -> std::result::Result<Vec<DeviceRef>, TopoRefusal> {
    let mut next = current.to_vec();
    for sub in adding {
        if sub == gateway {
            return Err(TopoRefusal::Itself);
        }
        if let Some(gw) = gateway_of(sub)
            && &gw != gateway
        {
            return Err(TopoRefusal::OtherGateway {
                sub: sub.clone(),
                gateway: gw,
            });
        }
        if !next.contains(sub) {
            next.push(sub.clone());
        }
    }
    if next.len() > MAX_SUBS_PER_GATEWAY {
        return Err(TopoRefusal::TooMany {
            would_have: next.len(),
            limit: MAX_SUBS_PER_GATEWAY,
        });
    }
    next.sort();
    Ok(next)
}

/// The gateway's list of sub-devices once `removing` is removed from `current`.
///
/// # Errors
/// [`TopoRefusal::NotInTopology`] for a device that is not in it.
pub fn plan_remove(
    current: &[DeviceRef],
    removing: &[DeviceRef],
) -> std::result::Result<Vec<DeviceRef>, TopoRefusal> {
    if let Some(missing) = removing.iter().find(|r| !current.contains(r)) {
        return Err(TopoRefusal::NotInTopology(missing.clone()));
    }
    Ok(current
        .iter()
        .filter(|d| !removing.contains(d))
        .cloned()
        .collect())
}

fn st<E: Into<redb::Error>>(action: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::storage(action, e.into())
}

fn decode<T: serde::de::DeserializeOwned>(record: String, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt { record, source: e })
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::storage("encoding a topology record", e))
}

/// A gateway's sub-devices as stored (blocking).
pub(super) fn subs(db: &redb::Database, gw: &DeviceRef) -> Result<Vec<DeviceRef>> {
    let txn = db.begin_read().map_err(st("reading a topology"))?;
    let table = match txn.open_table(TOPOLOGY) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(Error::storage("reading the topology table", e)),
    };
    match table
        .get((gw.0.as_str(), gw.1.as_str()))
        .map_err(st("reading a topology"))?
    {
        Some(v) => decode(format!("gateway_topology/{}/{}", gw.0, gw.1), v.value()),
        None => Ok(Vec::new()),
    }
}

/// The gateway of a sub-device as stored (blocking).
pub(super) fn gateway(db: &redb::Database, sub: &DeviceRef) -> Result<Option<DeviceRef>> {
    let txn = db.begin_read().map_err(st("reading a topology"))?;
    let table = match txn.open_table(GATEWAY_OF) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(Error::storage("reading the topology table", e)),
    };
    match table
        .get((sub.0.as_str(), sub.1.as_str()))
        .map_err(st("reading a topology"))?
    {
        Some(v) => decode(format!("gateway_of/{}/{}", sub.0, sub.1), v.value()).map(Some),
        None => Ok(None),
    }
}

/// A change of one gateway's topology.
pub(super) enum Change<'a> {
    /// Add these sub-devices.
    Add(&'a [DeviceRef]),
    /// Remove these sub-devices.
    Remove(&'a [DeviceRef]),
}

/// Applies a change to a gateway's topology in one durable transaction (blocking). Returns the
/// gateway's sub-devices afterwards.
pub(super) fn change(
    db: &redb::Database,
    gw: &DeviceRef,
    change: Change<'_>,
) -> Result<std::result::Result<Vec<DeviceRef>, TopoRefusal>> {
    let txn = db.begin_write().map_err(st("starting a topology change"))?;
    {
        let mut topo = txn
            .open_table(TOPOLOGY)
            .map_err(st("opening the topology table"))?;
        let mut of = txn
            .open_table(GATEWAY_OF)
            .map_err(st("opening the topology table"))?;
        let current: Vec<DeviceRef> = match topo
            .get((gw.0.as_str(), gw.1.as_str()))
            .map_err(st("reading a topology"))?
        {
            Some(v) => decode(format!("gateway_topology/{}/{}", gw.0, gw.1), v.value())?,
            None => Vec::new(),
        };
        let mut failure = None;
        let planned = match change {
            Change::Add(adding) => plan_add(gw, &current, adding, &mut |sub| match of
                .get((sub.0.as_str(), sub.1.as_str()))
            {
                Ok(Some(v)) => decode(format!("gateway_of/{}/{}", sub.0, sub.1), v.value())
                    .map_err(|e| failure = Some(e))
                    .ok(),
                Ok(None) => None,
                Err(e) => {
                    failure = Some(Error::storage("reading a topology", e));
                    None
                }
            }),
            Change::Remove(removing) => plan_remove(&current, removing),
        };
        if let Some(e) = failure {
            return Err(e);
        }
        let next = match planned {
            Ok(next) => next,
            Err(refusal) => return Ok(Err(refusal)),
        };
        for gone in current.iter().filter(|d| !next.contains(d)) {
            of.remove((gone.0.as_str(), gone.1.as_str()))
                .map_err(st("writing a topology"))?;
        }
        let value = encode(gw)?;
        for added in next.iter().filter(|d| !current.contains(d)) {
            of.insert((added.0.as_str(), added.1.as_str()), value.as_slice())
                .map_err(st("writing a topology"))?;
        }
        if next.is_empty() {
            topo.remove((gw.0.as_str(), gw.1.as_str()))
                .map_err(st("writing a topology"))?;
        } else {
            topo.insert((gw.0.as_str(), gw.1.as_str()), encode(&next)?.as_slice())
                .map_err(st("writing a topology"))?;
        }
        drop((topo, of));
        txn.commit().map_err(st("committing a topology change"))?;
        Ok(Ok(next))
    }
}

/// Forgets a deleted device's place in any topology, as a gateway and as a sub-device.
pub(super) fn forget(txn: &redb::WriteTransaction, pk: &str, dn: &str) -> Result<()> {
    let mut topo = txn
        .open_table(TOPOLOGY)
        .map_err(st("opening the topology table"))?;
    let mut of = txn
        .open_table(GATEWAY_OF)
        .map_err(st("opening the topology table"))?;
    // As a gateway: its sub-devices become free.
    let subs: Vec<DeviceRef> = match topo.remove((pk, dn)).map_err(st("deleting a topology"))? {
        Some(v) => decode(format!("gateway_topology/{pk}/{dn}"), v.value())?,
        None => Vec::new(),
    };
    for sub in &subs {
        of.remove((sub.0.as_str(), sub.1.as_str()))
            .map_err(st("deleting a topology"))?;
    }
    // As a sub-device: out of its gateway's list.
    let gw: Option<DeviceRef> = match of.remove((pk, dn)).map_err(st("deleting a topology"))? {
        Some(v) => Some(decode(format!("gateway_of/{pk}/{dn}"), v.value())?),
        None => None,
    };
    if let Some(gw) = gw {
        let list: Vec<DeviceRef> = match topo
            .get((gw.0.as_str(), gw.1.as_str()))
            .map_err(st("reading a topology"))?
        {
            Some(v) => decode(format!("gateway_topology/{}/{}", gw.0, gw.1), v.value())?,
            None => Vec::new(),
        };
        let next: Vec<DeviceRef> = list.into_iter().filter(|d| d.0 != pk || d.1 != dn).collect();
        topo.insert((gw.0.as_str(), gw.1.as_str()), encode(&next)?.as_slice())
            .map_err(st("writing a topology"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(pk: &str, dn: &str) -> DeviceRef {
        (pk.to_owned(), dn.to_owned())
    }

    #[test]
    fn the_platform_rules_on_topology() {
        let gw = d("gp", "gw");
        let mut none = |_: &DeviceRef| None;
        assert_eq!(
            plan_add(&gw, &[], std::slice::from_ref(&gw), &mut none),
            Err(TopoRefusal::Itself)
        );
        let next = plan_add(&gw, &[], &[d("sp", "b"), d("sp", "a"), d("sp", "a")], &mut none).expect("added");
        assert_eq!(next, [d("sp", "a"), d("sp", "b")]);
        let mut other = |_: &DeviceRef| Some(d("gp", "other"));
        let refused = plan_add(&gw, &[], &[d("sp", "a")], &mut other).expect_err("another gateway's");
        assert_eq!(refused.code(), 6619);
        let many: Vec<DeviceRef> = (0..=MAX_SUBS_PER_GATEWAY)
            .map(|i| d("sp", &format!("s{i}")))
            .collect();
        assert_eq!(
            plan_add(&gw, &[], &many, &mut none).map_err(|r| r.code()),
            Err(6400)
        );
        assert_eq!(
            plan_remove(&next, &[d("sp", "z")]).map_err(|r| r.code()),
            Err(6401)
        );
        assert_eq!(
            plan_remove(&next, &[d("sp", "a")]).expect("removed"),
            [d("sp", "b")]
        );
    }
}
