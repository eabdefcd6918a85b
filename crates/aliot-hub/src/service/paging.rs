//! A page of a product's devices, searched and filtered on the hub (the console's device
//! list: ten thousand devices, one page rendered).

use super::{Result, Service};
use crate::registry::Device;

/// Most devices in one page.
pub const MAX_DEVICE_PAGE: usize = 500;

/// Which devices a page shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatusFilter {
    /// Every device.
    #[default]
    Any,
    /// Devices connected now.
    Online,
    /// Devices not connected.
    Offline,
    /// Disabled devices.
    Disabled,
}

/// A page of devices: the page's devices (each with whether it is online) and how many match.
#[derive(Debug, Clone, Default)]
pub struct DevicePage {
    /// The page's devices, sorted by deviceName, with their online status.
    pub devices: Vec<(Device, bool)>,
    /// How many devices match the search (all pages).
    pub total: usize,
}

impl Service {
    /// The devices of a product whose deviceName contains `search` (ASCII case-insensitive;
    /// empty: all) and that pass `status`, sorted by deviceName: `limit` of them (at most
    /// [`MAX_DEVICE_PAGE`]) from `offset`.
    ///
    /// # Errors
    /// [`registry::Error::ProductNotFound`](crate::registry::Error::ProductNotFound).
    pub async fn device_page(
        &self,
        product_key: &str,
        search: &str,
        status: StatusFilter,
        offset: usize,
        limit: usize,
    ) -> Result<DevicePage> {
        let devices = self.inner.registry.devices(product_key).await?;
        let online: std::collections::HashSet<String> =
            self.online_devices(product_key).into_iter().collect();
        let needle = search.trim().to_ascii_lowercase();
        let mut page = DevicePage::default();
        let limit = limit.clamp(1, MAX_DEVICE_PAGE);
        for d in devices {
            let is_online = online.contains(&d.device_name);
            let keep = match status {
                StatusFilter::Any => true,
                StatusFilter::Online => is_online,
                StatusFilter::Offline => !is_online,
                StatusFilter::Disabled => !d.enabled,
            };
            if !keep || (!needle.is_empty() && !d.device_name.to_ascii_lowercase().contains(&needle)) {
                continue;
            }
            if page.total >= offset && page.devices.len() < limit {
                page.devices.push((d, is_online));
            }
            page.total += 1;
        }
        Ok(page)
    }
}
