//! Which topics a device may publish and subscribe to, and which downlinks reach it without a
//! SUBSCRIBE (spec §3.5, §3.6, §12 Q6).
//!
//! The namespace rules themselves live in `aliot_protocol::topic` (shared with the SDK); this
//! module adds the hub's side: subscription limits and the implicit subscriptions of `_ss=1`
//! and of RRPC.

use aliot_protocol::topic::{Access, device_may_access, filter_matches};

/// May the device publish on `topic`? When not, the hub closes the connection (spec §12 Q6).
pub(crate) fn may_publish(product_key: &str, device_name: &str, topic: &str) -> bool {
    device_may_access(product_key, device_name, topic, Access::Publish)
}

/// May the device subscribe to `filter`? When not, SUBACK carries 0x80 for it.
pub(crate) fn may_subscribe(product_key: &str, device_name: &str, filter: &str) -> bool {
    device_may_access(product_key, device_name, filter, Access::Subscribe)
}

/// May the platform send `topic` to this device (the admin's "Pub")? Any topic the device could
/// subscribe to, without wildcards.
pub(crate) fn may_deliver(product_key: &str, device_name: &str, topic: &str) -> bool {
    !topic.contains(['+', '#']) && may_subscribe(product_key, device_name, topic)
}

/// Downlinks that reach a device without any SUBSCRIBE.
///
/// - RRPC requests (`/sys/{pk}/{dn}/rrpc/request/{id}` and `/ext/rrpc/{id}/…`): the platform
///   documents that RRPC topics need no subscription (D-RRPC).
/// - With `_ss=1` in the clientId: the system downlinks and replies of spec §3.6, namely
///   `/sys/{pk}/{dn}/…`, `/ota/device/upgrade/{pk}/{dn}`, `/shadow/get/{pk}/{dn}`,
///   `/ext/ntp/{pk}/{dn}/response` and `/ext/error/{pk}/{dn}`.
pub(crate) fn implicitly_subscribed(
    product_key: &str,
    device_name: &str,
    auto_subscribe: bool,
    topic: &str,
) -> bool {
    let levels: Vec<&str> = topic.split('/').collect();
    let own = |pk: &str, dn: &str| pk == product_key && dn == device_name;
    match levels.as_slice() {
        ["", "sys", pk, dn, "rrpc", "request", id] if own(pk, dn) && !id.is_empty() => true,
        ["", "ext", "rrpc", id, ..] if !id.is_empty() => {
            // The inner topic must be one of the device's own.
            let inner = &topic["/ext/rrpc/".len() + id.len()..];
            inner.starts_with('/') && may_deliver(product_key, device_name, inner)
        }
        _ if !auto_subscribe => false,
        ["", "sys", pk, dn, _, ..] => own(pk, dn),
        ["", "ota", "device", "upgrade", pk, dn] => own(pk, dn),
        ["", "shadow", "get", pk, dn] => own(pk, dn),
        ["", "ext", "ntp", pk, dn, "response"] => own(pk, dn),
        ["", "ext", "error", pk, dn] => own(pk, dn),
        _ => false,
    }
}

/// Does one of `filters` match `topic`?
pub(crate) fn any_filter_matches<'a>(mut filters: impl Iterator<Item = &'a str>, topic: &str) -> bool {
    filters.any(|f| filter_matches(f, topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrpc_requests_need_no_subscription() {
        assert!(implicitly_subscribed(
            "pk",
            "dn",
            false,
            "/sys/pk/dn/rrpc/request/123"
        ));
        assert!(implicitly_subscribed(
            "pk",
            "dn",
            false,
            "/ext/rrpc/9/sys/pk/dn/thing/service/Reboot"
        ));
        assert!(!implicitly_subscribed(
            "pk",
            "dn",
            false,
            "/sys/pk/other/rrpc/request/123"
        ));
        assert!(!implicitly_subscribed(
            "pk",
            "dn",
            false,
            "/ext/rrpc/9/sys/pk/other/thing/service/x"
        ));
    }

    #[test]
    fn auto_subscribe_covers_system_downlinks_only() {
        for t in [
            "/sys/pk/dn/thing/event/property/post_reply",
            "/sys/pk/dn/thing/service/property/set",
            "/ota/device/upgrade/pk/dn",
            "/shadow/get/pk/dn",
            "/ext/ntp/pk/dn/response",
            "/ext/error/pk/dn",
        ] {
            assert!(implicitly_subscribed("pk", "dn", true, t), "{t}");
            assert!(!implicitly_subscribed("pk", "dn", false, t), "{t}");
        }
        for t in [
            "/pk/dn/user/get",
            "/sys/pk/other/thing/service/property/set",
            "/broadcast/pk/x",
        ] {
            assert!(!implicitly_subscribed("pk", "dn", true, t), "{t}");
        }
    }

    #[test]
    fn the_platform_delivers_only_inside_the_device_namespaces() {
        assert!(may_deliver("pk", "dn", "/pk/dn/user/get"));
        assert!(may_deliver("pk", "dn", "/broadcast/pk/news"));
        assert!(!may_deliver("pk", "dn", "/pk/dn/user/#"));
        assert!(!may_deliver("pk", "dn", "/pk/other/user/get"));
    }
}
