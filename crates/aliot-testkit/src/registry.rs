//! [`MemoryRegistry`]: the hub's registry in a `HashMap`, for brokers that tests start and stop
//! themselves.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use aliot_hub::BoxFuture;
use aliot_hub::registry::{
    AccessKey, AccessKeyInfo, CallRecord, ConfigFile, Cursor, DesiredChange, DesiredOutcome,
    DesiredProperties, Device, DeviceAuth, DeviceRef, Error, EventRecord, LatestProperty, NewDevice, Page,
    Product, Properties, PropertyLimits, PropertyPoint, Records, Registry, RegistryCounts, RemoteConfig,
    Result, ShadowChange, ShadowDocument, ShadowRefusal, TopoRefusal, Window, plan_topology_add,
    plan_topology_remove,
};
use serde_json::{Map, Value};

#[derive(Debug, Default)]
struct State {
    products: BTreeMap<String, Product>,
    devices: BTreeMap<(String, String), Device>,
    /// Bounded per device by `limits`, with the hub's rule ([`Properties::remember`]).
    properties: BTreeMap<(String, String), Properties>,
    /// The last [`MAX_LOGINS`] `device_online` calls, in order.
    online: VecDeque<(String, String, IpAddr)>,
    /// Desired properties, with the hub's rules ([`DesiredProperties::apply`]).
    desired: BTreeMap<(String, String), DesiredProperties>,
    /// Shadows, with the hub's rules ([`ShadowDocument::apply`]).
    shadows: BTreeMap<(String, String), ShadowDocument>,
    /// productKey → remote configuration and its file's bytes.
    configs: BTreeMap<String, (RemoteConfig, Option<Vec<u8>>)>,
    /// Ids given to uploaded configuration files.
    next_config_id: u64,
    /// Each device's history, each list at most [`MAX_HISTORY_ROWS`] long (the oldest go).
    history: BTreeMap<(String, String), DeviceHistory>,
    /// The next history row's sequence number.
    seq: u64,
    /// Gateway → its sub-devices, with the hub's rules ([`plan_topology_add`]).
    topology: BTreeMap<DeviceRef, Vec<DeviceRef>>,
    /// AccessKeyId → the key.
    access_keys: BTreeMap<String, AccessKey>,
}

/// One device's history, each list sorted by (time, seq).
#[derive(Debug, Default)]
struct DeviceHistory {
    points: BTreeMap<String, Vec<(Cursor, PropertyPoint)>>,
    events: Vec<(Cursor, EventRecord)>,
    calls: Vec<(Cursor, CallRecord)>,
}

/// Rows kept per property, and events and calls per device.
const MAX_HISTORY_ROWS: usize = 10_000;

/// Inserts a row in time order and drops the oldest beyond [`MAX_HISTORY_ROWS`].
fn keep<T>(rows: &mut Vec<(Cursor, T)>, cursor: Cursor, row: T) {
    let at = rows.partition_point(|(c, _)| *c < cursor);
    rows.insert(at, (cursor, row));
    if rows.len() > MAX_HISTORY_ROWS {
        rows.remove(0);
    }
}

/// Logins kept for [`MemoryRegistry::logins`]: the oldest are forgotten beyond it, so that a
/// long test's registry does not grow with every login.
const MAX_LOGINS: usize = 10_000;

/// A registry in memory. Products are created on demand by [`MemoryRegistry::add`].
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    state: Mutex<State>,
    limits: PropertyLimits,
}

fn key(pk: &str, dn: &str) -> (String, String) {
    (pk.to_owned(), dn.to_owned())
}

impl MemoryRegistry {
    /// An empty registry that keeps at most `limits` of each device's properties (the default
    /// is the hub's default).
    pub fn with_property_limits(limits: PropertyLimits) -> Self {
        Self {
            state: Mutex::default(),
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a device (and its product when new) with this secret; iotId `iot-{dn}`.
    pub fn add(&self, product_key: &str, device_name: &str, secret: &str) {
        let mut s = self.lock();
        s.products
            .entry(product_key.to_owned())
            .or_insert_with(|| Product {
                product_key: product_key.to_owned(),
                name: "test".into(),
                product_secret: "productsecret0123456789".into(),
                created_ms: 0,
                device_count: 0,
                dynamic_registration: false,
                node_type: aliot_hub::registry::NodeType::Direct,
            });
        s.devices.insert(
            key(product_key, device_name),
            Device {
                product_key: product_key.to_owned(),
                device_name: device_name.to_owned(),
                device_secret: secret.to_owned(),
                iot_id: format!("iot-{device_name}"),
                enabled: true,
                created_ms: 0,
                last_online_ms: None,
                last_ip: None,
                dynamic_registration: None,
            },
        );
    }

    /// Enables or disables a device (without touching any connection).
    pub fn set_enabled_now(&self, product_key: &str, device_name: &str, enabled: bool) {
        if let Some(d) = self.lock().devices.get_mut(&key(product_key, device_name)) {
            d.enabled = enabled;
        }
    }

    /// The last 10,000 logins recorded through `device_online`: (productKey,
    /// deviceName, IP).
    pub fn logins(&self) -> Vec<(String, String, IpAddr)> {
        self.lock().online.iter().cloned().collect()
    }

    fn not_found(pk: &str, dn: &str) -> Error {
        Error::DeviceNotFound {
            product_key: pk.to_owned(),
            device_name: dn.to_owned(),
        }
    }
}

impl Registry for MemoryRegistry {
    fn create_product<'a>(
        &'a self,
        name: &'a str,
        product_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Product>> {
        let pk = product_key.unwrap_or("a1MemoryPk1").to_owned();
        let mut s = self.lock();
        let result = match s.products.entry(pk.clone()) {
            std::collections::btree_map::Entry::Occupied(_) => Err(Error::ProductExists { product_key: pk }),
            std::collections::btree_map::Entry::Vacant(v) => Ok(v
                .insert(Product {
                    product_key: pk,
                    name: name.to_owned(),
                    product_secret: "productsecret0123456789".into(),
                    created_ms: 0,
                    device_count: 0,
                    dynamic_registration: false,
                    node_type: aliot_hub::registry::NodeType::Direct,
                })
                .clone()),
        };
        Box::pin(std::future::ready(result))
    }

    fn products(&self) -> BoxFuture<'_, Result<Vec<Product>>> {
        let products = self.lock().products.values().cloned().collect();
        Box::pin(std::future::ready(Ok(products)))
    }

    fn product<'a>(&'a self, product_key: &'a str) -> BoxFuture<'a, Result<Option<Product>>> {
        let p = self.lock().products.get(product_key).cloned();
        Box::pin(std::future::ready(Ok(p)))
    }

    fn create_devices<'a>(
        &'a self,
        product_key: &'a str,
        devices: Vec<NewDevice>,
        skip_existing: bool,
    ) -> BoxFuture<'a, Result<Vec<Device>>> {
        let mut out = Vec::new();
        for d in devices {
            let k = key(product_key, &d.device_name);
            let existing = self.lock().devices.get(&k).cloned();
            match existing {
                Some(e) if skip_existing => out.push(e),
                Some(_) => {
                    return Box::pin(std::future::ready(Err(Error::DeviceExists {
                        product_key: product_key.to_owned(),
                        device_name: d.device_name,
                    })));
                }
                None => {
                    let secret = d.device_secret.unwrap_or_else(|| "devicesecret0123456789".into());
                    self.add(product_key, &d.device_name, &secret);
                    if let Some(dev) = self.lock().devices.get(&k).cloned() {
                        out.push(dev);
                    }
                }
            }
        }
        Box::pin(std::future::ready(Ok(out)))
    }

    fn device<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Device>>> {
        let d = self.lock().devices.get(&key(product_key, device_name)).cloned();
        Box::pin(std::future::ready(Ok(d)))
    }

    fn devices<'a>(&'a self, product_key: &'a str) -> BoxFuture<'a, Result<Vec<Device>>> {
        let s = self.lock();
        let result = if s.products.contains_key(product_key) {
            Ok(s.devices
                .values()
                .filter(|d| d.product_key == product_key)
                .cloned()
                .collect())
        } else {
            Err(Error::ProductNotFound {
                product_key: product_key.to_owned(),
            })
        };
        Box::pin(std::future::ready(result))
    }

    fn set_enabled<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        enabled: bool,
    ) -> BoxFuture<'a, Result<Device>> {
        let mut s = self.lock();
        let result = match s.devices.get_mut(&key(product_key, device_name)) {
            Some(d) => {
                d.enabled = enabled;
                Ok(d.clone())
            }
            None => Err(Self::not_found(product_key, device_name)),
        };
        Box::pin(std::future::ready(result))
    }

    fn delete_device<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Device>> {
        let mut s = self.lock();
        let k = key(product_key, device_name);
        s.properties.remove(&k);
        s.desired.remove(&k);
        s.shadows.remove(&k);
        s.history.remove(&k);
        s.topology.remove(&k);
        for subs in s.topology.values_mut() {
            subs.retain(|d| d != &k);
        }
        let result = s
            .devices
            .remove(&k)
            .ok_or_else(|| Self::not_found(product_key, device_name));
        Box::pin(std::future::ready(result))
    }

    fn device_auth<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Option<DeviceAuth>> {
        let auth = self
            .lock()
            .devices
            .get(&key(product_key, device_name))
            .map(|d| DeviceAuth {
                device_secret: d.device_secret.clone(),
                enabled: d.enabled,
                iot_id: d.iot_id.clone(),
            });
        Box::pin(std::future::ready(auth))
    }

    fn device_online(&self, product_key: &str, device_name: &str, ip: IpAddr, at_ms: u64) {
        let mut s = self.lock();
        if let Some(d) = s.devices.get_mut(&key(product_key, device_name)) {
            d.last_online_ms = Some(at_ms);
            d.last_ip = Some(ip);
        }
        if s.online.len() == MAX_LOGINS {
            s.online.pop_front();
        }
        s.online
            .push_back((product_key.to_owned(), device_name.to_owned(), ip));
    }

    fn remember_properties(
        &self,
        product_key: &str,
        device_name: &str,
        values: Map<String, Value>,
    ) -> Result<()> {
        let mut s = self.lock();
        let k = key(product_key, device_name);
        if !s.devices.contains_key(&k) {
            return Ok(());
        }
        let props = s.properties.entry(k.clone()).or_default();
        let result = props.remember(values, self.limits);
        if props.is_empty() {
            s.properties.remove(&k);
        }
        result
    }

    fn last_properties<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Option<Map<String, Value>>> {
        let p = self
            .lock()
            .properties
            .get(&key(product_key, device_name))
            .map(|p| p.values().clone());
        Box::pin(std::future::ready(p))
    }

    fn desired<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<DesiredProperties>> {
        let s = self.lock();
        let k = key(product_key, device_name);
        let result = if s.devices.contains_key(&k) {
            Ok(s.desired.get(&k).cloned().unwrap_or_default())
        } else {
            Err(Self::not_found(product_key, device_name))
        };
        Box::pin(std::future::ready(result))
    }

    fn change_desired<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        change: DesiredChange,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<DesiredOutcome>> {
        let mut s = self.lock();
        let k = key(product_key, device_name);
        let result = if s.devices.contains_key(&k) {
            s.desired.entry(k).or_default().apply(change, now_ms)
        } else {
            Err(Self::not_found(product_key, device_name))
        };
        Box::pin(std::future::ready(result))
    }

    fn shadow<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ShadowDocument>>> {
        let s = self.lock();
        let k = key(product_key, device_name);
        let result = if s.devices.contains_key(&k) {
            Ok(s.shadows.get(&k).cloned())
        } else {
            Err(Self::not_found(product_key, device_name))
        };
        Box::pin(std::future::ready(result))
    }

    fn change_shadow<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        change: ShadowChange,
        now_s: u64,
    ) -> BoxFuture<'a, Result<std::result::Result<ShadowDocument, ShadowRefusal>>> {
        let mut s = self.lock();
        let k = key(product_key, device_name);
        let result = if s.devices.contains_key(&k) {
            let applied = ShadowDocument::apply(s.shadows.get(&k), change, now_s);
            if let Ok(doc) = &applied {
                s.shadows.insert(k, doc.clone());
            }
            Ok(applied)
        } else {
            Err(Self::not_found(product_key, device_name))
        };
        Box::pin(std::future::ready(result))
    }

    fn remote_config(&self, product_key: &str) -> RemoteConfig {
        self.lock()
            .configs
            .get(product_key)
            .map(|(c, _)| c.clone())
            .unwrap_or_default()
    }

    fn set_config_file<'a>(
        &'a self,
        product_key: &'a str,
        file: Option<Vec<u8>>,
    ) -> BoxFuture<'a, Result<RemoteConfig>> {
        let mut s = self.lock();
        let result = (|| {
            if !s.products.contains_key(product_key) {
                return Err(Error::ProductNotFound {
                    product_key: product_key.to_owned(),
                });
            }
            let meta = match &file {
                Some(bytes) => {
                    s.next_config_id += 1;
                    Some(ConfigFile::describe(
                        format!("memcfg{}", s.next_config_id),
                        bytes,
                        0,
                    )?)
                }
                None => None,
            };
            let entry = s.configs.entry(product_key.to_owned()).or_default();
            entry.0.file = meta;
            entry.1 = file;
            Ok(entry.0.clone())
        })();
        Box::pin(std::future::ready(result))
    }

    fn set_config_enabled<'a>(
        &'a self,
        product_key: &'a str,
        enabled: bool,
    ) -> BoxFuture<'a, Result<RemoteConfig>> {
        let mut s = self.lock();
        let result = if s.products.contains_key(product_key) {
            let entry = s.configs.entry(product_key.to_owned()).or_default();
            entry.0.enabled = enabled;
            Ok(entry.0.clone())
        } else {
            Err(Error::ProductNotFound {
                product_key: product_key.to_owned(),
            })
        };
        Box::pin(std::future::ready(result))
    }

    fn config_file<'a>(
        &'a self,
        product_key: &'a str,
    ) -> BoxFuture<'a, Result<Option<aliot_hub::registry::ConfigDownload>>> {
        let file = self
            .lock()
            .configs
            .get(product_key)
            .and_then(|(c, bytes)| c.file.clone().zip(bytes.clone()));
        Box::pin(std::future::ready(Ok(file)))
    }

    fn set_node_type<'a>(
        &'a self,
        product_key: &'a str,
        node_type: aliot_hub::registry::NodeType,
    ) -> BoxFuture<'a, Result<Product>> {
        let result = match self.lock().products.get_mut(product_key) {
            Some(p) => {
                p.node_type = node_type;
                Ok(p.clone())
            }
            None => Err(Error::ProductNotFound {
                product_key: product_key.to_owned(),
            }),
        };
        Box::pin(std::future::ready(result))
    }

    fn add_topology<'a>(
        &'a self,
        gateway: DeviceRef,
        subs: Vec<DeviceRef>,
    ) -> BoxFuture<'a, Result<std::result::Result<Vec<DeviceRef>, TopoRefusal>>> {
        let mut s = self.lock();
        let current = s.topology.get(&gateway).cloned().unwrap_or_default();
        let topology = &s.topology;
        let mut of = |sub: &DeviceRef| {
            topology
                .iter()
                .find(|(_, subs)| subs.contains(sub))
                .map(|(gw, _)| gw.clone())
        };
        let planned = plan_topology_add(&gateway, &current, &subs, &mut of);
        if let Ok(next) = &planned {
            s.topology.insert(gateway, next.clone());
        }
        Box::pin(std::future::ready(Ok(planned)))
    }

    fn remove_topology<'a>(
        &'a self,
        gateway: DeviceRef,
        subs: Vec<DeviceRef>,
    ) -> BoxFuture<'a, Result<std::result::Result<Vec<DeviceRef>, TopoRefusal>>> {
        let mut s = self.lock();
        let current = s.topology.get(&gateway).cloned().unwrap_or_default();
        let planned = plan_topology_remove(&current, &subs);
        if let Ok(next) = &planned {
            s.topology.insert(gateway, next.clone());
        }
        Box::pin(std::future::ready(Ok(planned)))
    }

    fn topology<'a>(&'a self, gateway: DeviceRef) -> BoxFuture<'a, Result<Vec<DeviceRef>>> {
        let subs = self.lock().topology.get(&gateway).cloned().unwrap_or_default();
        Box::pin(std::future::ready(Ok(subs)))
    }

    fn gateway_of<'a>(&'a self, sub: DeviceRef) -> BoxFuture<'a, Result<Option<DeviceRef>>> {
        let gw = self
            .lock()
            .topology
            .iter()
            .find(|(_, subs)| subs.contains(&sub))
            .map(|(gw, _)| gw.clone());
        Box::pin(std::future::ready(Ok(gw)))
    }

    fn create_access_key(&self, description: Option<String>) -> BoxFuture<'_, Result<AccessKey>> {
        let key = AccessKey::generate(0, description);
        self.lock()
            .access_keys
            .insert(key.access_key_id.clone(), key.clone());
        Box::pin(std::future::ready(Ok(key)))
    }

    fn access_keys(&self) -> BoxFuture<'_, Result<Vec<AccessKeyInfo>>> {
        let keys = self.lock().access_keys.values().map(AccessKey::info).collect();
        Box::pin(std::future::ready(Ok(keys)))
    }

    fn delete_access_key<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, Result<bool>> {
        let existed = self.lock().access_keys.remove(access_key_id).is_some();
        Box::pin(std::future::ready(Ok(existed)))
    }

    fn access_key_secret(&self, access_key_id: &str) -> Option<String> {
        self.lock()
            .access_keys
            .get(access_key_id)
            .map(|k| k.access_key_secret.clone())
    }

    fn device_by_iot_id<'a>(&'a self, iot_id: &'a str) -> BoxFuture<'a, Result<Option<Device>>> {
        let device = self.lock().devices.values().find(|d| d.iot_id == iot_id).cloned();
        Box::pin(std::future::ready(Ok(device)))
    }

    fn counts(&self) -> RegistryCounts {
        let s = self.lock();
        RegistryCounts {
            products: s.products.len() as u64,
            devices: s.devices.len() as u64,
            online_updates_dropped: 0,
        }
    }

    fn record(
        &self,
        product_key: &str,
        device_name: &str,
        records: Records,
    ) -> BoxFuture<'static, Result<()>> {
        let mut s = self.lock();
        let mut seq = s.seq;
        let h = s.history.entry(key(product_key, device_name)).or_default();
        let mut next = |time| {
            seq += 1;
            Cursor { time, seq }
        };
        for p in records.properties {
            let cursor = next(p.time);
            let point = PropertyPoint {
                time: p.time,
                value: p.value,
            };
            keep(h.points.entry(p.identifier).or_default(), cursor, point);
        }
        for e in records.events {
            keep(&mut h.events, next(e.time), e);
        }
        for c in records.calls {
            keep(&mut h.calls, next(c.time), c);
        }
        s.seq = seq;
        Box::pin(std::future::ready(Ok(())))
    }

    fn latest_properties<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<LatestProperty>>> {
        let s = self.lock();
        let latest = s
            .history
            .get(&key(product_key, device_name))
            .map(|h| {
                h.points
                    .iter()
                    .filter_map(|(id, rows)| {
                        rows.last().map(|(_, p)| LatestProperty {
                            identifier: id.clone(),
                            value: p.value.clone(),
                            time: p.time,
                            name: None,
                            data_type: None,
                            unit: None,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(latest)))
    }

    fn property_history<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        identifier: &'a str,
        window: Window,
    ) -> BoxFuture<'a, Result<Page<PropertyPoint>>> {
        let s = self.lock();
        let rows = s
            .history
            .get(&key(product_key, device_name))
            .and_then(|h| h.points.get(identifier));
        let page = window.select(rows.map_or(&[][..], Vec::as_slice));
        Box::pin(std::future::ready(Ok(page)))
    }

    fn event_history<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        identifier: Option<String>,
        window: Window,
    ) -> BoxFuture<'a, Result<Page<EventRecord>>> {
        let s = self.lock();
        let rows: Vec<(Cursor, EventRecord)> = s
            .history
            .get(&key(product_key, device_name))
            .map(|h| {
                h.events
                    .iter()
                    .filter(|(_, e)| identifier.as_ref().is_none_or(|id| *id == e.identifier))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(window.select(&rows))))
    }

    fn call_log<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        window: Window,
    ) -> BoxFuture<'a, Result<Page<CallRecord>>> {
        let s = self.lock();
        let rows = s.history.get(&key(product_key, device_name));
        let page = window.select(rows.map_or(&[][..], |h| h.calls.as_slice()));
        Box::pin(std::future::ready(Ok(page)))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}
