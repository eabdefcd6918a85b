//! Consumer groups and subscribe relations as stored and shown (admin API JSON).

use serde::{Deserialize, Serialize};

/// A forwarded message family: one of `CreateSubscribeRelation`'s flags (cloud-side spec §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Family {
    /// `DeviceDataFlag`: uplinks on custom topics, property and event posts.
    DeviceDataFlag,
    /// `DeviceStatusChangeFlag`: `/as/mqtt/status/…` online/offline.
    DeviceStatusChangeFlag,
    /// `DeviceLifeCycleFlag`: `…/thing/lifecycle` (create, delete, enable, disable).
    DeviceLifeCycleFlag,
    /// `DeviceTopoLifeCycleFlag`: `…/thing/topo/lifecycle`.
    DeviceTopoLifeCycleFlag,
    /// `FoundDeviceListFlag`: `…/thing/list/found`.
    FoundDeviceListFlag,
    /// `ThingHistoryFlag`: history posts.
    ThingHistoryFlag,
    /// `OtaEventFlag`: OTA progress and results.
    OtaEventFlag,
    /// `OtaVersionFlag`: version reports.
    OtaVersionFlag,
    /// `OtaJobFlag`: job status.
    OtaJobFlag,
}

impl Family {
    /// Every family, in the flags' documented order.
    pub const ALL: [Family; 9] = [
        Family::DeviceDataFlag,
        Family::DeviceStatusChangeFlag,
        Family::DeviceLifeCycleFlag,
        Family::DeviceTopoLifeCycleFlag,
        Family::FoundDeviceListFlag,
        Family::ThingHistoryFlag,
        Family::OtaEventFlag,
        Family::OtaVersionFlag,
        Family::OtaJobFlag,
    ];

    /// The flag's name (`DeviceDataFlag`…).
    pub fn name(self) -> &'static str {
        match self {
            Family::DeviceDataFlag => "DeviceDataFlag",
            Family::DeviceStatusChangeFlag => "DeviceStatusChangeFlag",
            Family::DeviceLifeCycleFlag => "DeviceLifeCycleFlag",
            Family::DeviceTopoLifeCycleFlag => "DeviceTopoLifeCycleFlag",
            Family::FoundDeviceListFlag => "FoundDeviceListFlag",
            Family::ThingHistoryFlag => "ThingHistoryFlag",
            Family::OtaEventFlag => "OtaEventFlag",
            Family::OtaVersionFlag => "OtaVersionFlag",
            Family::OtaJobFlag => "OtaJobFlag",
        }
    }

    /// The family of a flag name (case-insensitive, `Flag` suffix optional).
    pub fn parse(name: &str) -> Option<Family> {
        let want = name.trim().to_ascii_lowercase();
        Family::ALL.into_iter().find(|f| {
            let n = f.name().to_ascii_lowercase();
            n == want || n.strip_suffix("flag") == Some(want.as_str())
        })
    }
}

/// A consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRecord {
    /// When it was created, epoch ms.
    pub create_time: u64,
}

/// A product's subscribe relation (type AMQP): which groups receive which families.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Relation {
    /// The consumer groups.
    pub consumer_group_ids: Vec<String>,
    /// The families forwarded.
    pub flags: Vec<Family>,
}

impl Relation {
    /// Whether `family` is forwarded.
    pub fn has(&self, family: Family) -> bool {
        self.flags.contains(&family)
    }
}

/// A group as the admin API shows it: the admin API's own type.
pub type GroupInfo = aliot_admin::ConsumerGroupView;
