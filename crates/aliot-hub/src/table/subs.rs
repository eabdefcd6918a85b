//! Sub-device sessions (cloud-side §5): which gateway connection speaks for which logged-in
//! sub-device. Shared by the platform (combine login/logout, the ACL, uplinks) and the
//! delivery path (a downlink for a sub-device goes on its gateway's connection).
//!
//! Bounded: a gateway holds at most `max_per_gateway` logged-in sub-devices (the login beyond
//! is refused with 428), and only a connected gateway holds any (its entries go when its
//! connection ends, [`SubSessions::gateway_gone`]). A sub-device logs in at most
//! `max_logins_per_minute` times in any 60 s (429 beyond): the times of its recent logins are
//! kept, at most that many per sub-device, and sub-devices without a login in the last minute
//! are forgotten once the record holds more than [`LOGIN_RECORD_SWEEP`] of them.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{Session, device_key, lock};

/// A device named by (productKey, deviceName).
pub(crate) type SubRef = (String, String);

/// Why a login was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoginRefused {
    /// The login would take the gateway past its limit of online sub-devices (428).
    TooManyOnline {
        /// The limit.
        limit: usize,
    },
    /// The sub-device logged in too often in the last minute (429).
    Throttled {
        /// The sub-device.
        sub: SubRef,
        /// Logins per minute allowed.
        limit: u32,
    },
}

/// The sliding window of the login rate.
const MINUTE_MS: u64 = 60_000;

/// Sub-devices in the login record beyond which those idle for a minute are swept out.
pub(crate) const LOGIN_RECORD_SWEEP: usize = 100_000;

#[derive(Debug, Default)]
struct Inner {
    /// Sub-device key → the gateway session speaking for it.
    by_sub: HashMap<Box<str>, Arc<Session>>,
    /// Gateway key → its logged-in sub-devices.
    by_gateway: HashMap<Box<str>, BTreeSet<SubRef>>,
    /// Sub-device key → the times (ms) of its logins in the last minute, oldest first.
    logins: HashMap<Box<str>, VecDeque<u64>>,
}

/// The logged-in sub-devices of every connected gateway.
#[derive(Debug)]
pub(crate) struct SubSessions {
    inner: Mutex<Inner>,
    max_per_gateway: usize,
    /// Logins per sub-device per minute (0: no limit).
    max_logins_per_minute: u32,
    /// How many sub-devices are logged in (`by_sub.len()`, stored under the lock after each
    /// change): lets the hot paths of devices that are no sub-device skip the lock.
    logged_in: AtomicUsize,
}

impl SubSessions {
    pub(crate) fn new(max_per_gateway: usize, max_logins_per_minute: u32) -> Self {
        Self {
            inner: Mutex::default(),
            max_per_gateway,
            max_logins_per_minute,
            logged_in: AtomicUsize::new(0),
        }
    }

    /// Logs `subs` in on `gateway` at `now_ms`, all or none. Returns, for each sub-device that
    /// was logged in on another gateway connection, that connection (it was kicked: 427).
    ///
    /// # Errors
    /// [`LoginRefused`]: the gateway would hold more than its limit, or a sub-device logged in
    /// too often in the last minute (nothing changed, no login counted).
    pub(crate) fn login(
        &self,
        gateway: &Arc<Session>,
        subs: &[SubRef],
        now_ms: u64,
    ) -> Result<Vec<(SubRef, Arc<Session>)>, LoginRefused> {
        let mut inner = lock(&self.inner);
        let rate = self.max_logins_per_minute;
        if rate > 0 {
            // Each sub-device's logins of this batch count too (a name given twice counts twice).
            let mut asked: HashMap<Box<str>, u32> = HashMap::new();
            for sub in subs {
                *asked.entry(device_key(&sub.0, &sub.1)).or_default() += 1;
            }
            for sub in subs {
                let key = device_key(&sub.0, &sub.1);
                let recent = inner.logins.get(&key).map_or(0, |times| {
                    times
                        .iter()
                        .filter(|t| now_ms.saturating_sub(**t) < MINUTE_MS)
                        .count()
                });
                if recent as u64 + u64::from(asked.get(&key).copied().unwrap_or(1)) > u64::from(rate) {
                    return Err(LoginRefused::Throttled {
                        sub: sub.clone(),
                        limit: rate,
                    });
                }
            }
        }
        let gw_key: Box<str> = gateway.key().into();
        let held = inner.by_gateway.get(&gw_key).map_or(0, BTreeSet::len);
        let new = subs
            .iter()
            .filter(|s| inner.by_gateway.get(&gw_key).is_none_or(|set| !set.contains(*s)))
            .collect::<BTreeSet<_>>()
            .len();
        if held + new > self.max_per_gateway {
            return Err(LoginRefused::TooManyOnline {
                limit: self.max_per_gateway,
            });
        }
        if rate > 0 {
            if inner.logins.len() > LOGIN_RECORD_SWEEP {
                inner.logins.retain(|_, times| {
                    times
                        .back()
                        .is_some_and(|t| now_ms.saturating_sub(*t) < MINUTE_MS)
                });
            }
            for sub in subs {
                let times = inner.logins.entry(device_key(&sub.0, &sub.1)).or_default();
                while times
                    .front()
                    .is_some_and(|t| now_ms.saturating_sub(*t) >= MINUTE_MS)
                {
                    times.pop_front();
                }
                times.push_back(now_ms);
                // Only the last `rate` logins can matter.
                while times.len() > rate as usize {
                    times.pop_front();
                }
            }
        }
        let mut kicked = Vec::new();
        for sub in subs {
            let key = device_key(&sub.0, &sub.1);
            if let Some(old) = inner.by_sub.insert(key, Arc::clone(gateway))
                && !Arc::ptr_eq(&old, gateway)
            {
                if let Some(set) = inner.by_gateway.get_mut(old.key()) {
                    set.remove(sub);
                }
                kicked.push((sub.clone(), old));
            }
            inner
                .by_gateway
                .entry(gw_key.clone())
                .or_default()
                .insert(sub.clone());
        }
        self.count(&inner);
        Ok(kicked)
    }

    fn count(&self, inner: &Inner) {
        self.logged_in.store(inner.by_sub.len(), Ordering::Release);
    }

    fn none_logged_in(&self) -> bool {
        self.logged_in.load(Ordering::Acquire) == 0
    }

    /// Logs a sub-device out of `gateway`; returns whether it was logged in there.
    pub(crate) fn logout(&self, gateway: &Session, sub: &SubRef) -> bool {
        let mut inner = lock(&self.inner);
        let key = device_key(&sub.0, &sub.1);
        match inner.by_sub.get(&key) {
            Some(s) if std::ptr::eq(Arc::as_ptr(s), gateway) => {
                inner.by_sub.remove(&key);
                if let Some(set) = inner.by_gateway.get_mut(gateway.key()) {
                    set.remove(sub);
                }
                self.count(&inner);
                true
            }
            _ => false,
        }
    }

    /// Logs a sub-device out wherever it is logged in; returns the gateway session it was on.
    pub(crate) fn kick(&self, sub: &SubRef) -> Option<Arc<Session>> {
        if self.none_logged_in() {
            return None;
        }
        let mut inner = lock(&self.inner);
        let gw = inner.by_sub.remove(&device_key(&sub.0, &sub.1))?;
        if let Some(set) = inner.by_gateway.get_mut(gw.key()) {
            set.remove(sub);
        }
        self.count(&inner);
        Some(gw)
    }

    /// The gateway session speaking for a sub-device, when it is logged in.
    pub(crate) fn gateway(&self, product_key: &str, device_name: &str) -> Option<Arc<Session>> {
        if self.none_logged_in() {
            return None;
        }
        lock(&self.inner)
            .by_sub
            .get(&device_key(product_key, device_name))
            .cloned()
    }

    /// Whether `gateway` speaks for the sub-device.
    pub(crate) fn speaks_for(&self, gateway: &Session, product_key: &str, device_name: &str) -> bool {
        lock(&self.inner)
            .by_sub
            .get(&device_key(product_key, device_name))
            .is_some_and(|s| std::ptr::eq(Arc::as_ptr(s), gateway))
    }

    /// How many sub-devices are logged in on `gateway`.
    pub(crate) fn online_on(&self, gateway: &Session) -> usize {
        lock(&self.inner)
            .by_gateway
            .get(gateway.key())
            .map_or(0, BTreeSet::len)
    }

    /// Whether this connection has logged a sub-device in since it connected (it is a
    /// gateway's).
    pub(crate) fn is_gateway(&self, gateway: &Session) -> bool {
        lock(&self.inner).by_gateway.contains_key(gateway.key())
    }

    /// The gateway's connection ended: its sub-devices are logged out. Returns them.
    pub(crate) fn gateway_gone(&self, gateway: &Session) -> Vec<SubRef> {
        let mut inner = lock(&self.inner);
        let Some(set) = inner.by_gateway.remove(gateway.key()) else {
            return Vec::new();
        };
        let mut gone = Vec::new();
        for sub in set {
            let key = device_key(&sub.0, &sub.1);
            if inner
                .by_sub
                .get(&key)
                .is_some_and(|s| std::ptr::eq(Arc::as_ptr(s), gateway))
            {
                inner.by_sub.remove(&key);
                gone.push(sub);
            } else {
                // Another connection of the same gateway took it meanwhile.
                inner
                    .by_gateway
                    .entry(gateway.key().into())
                    .or_default()
                    .insert(sub);
            }
        }
        self.count(&inner);
        gone
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::net::IpAddr;

    use super::*;
    use crate::table::{DeviceNames, SessionId};

    fn gateway(dn: &str) -> Arc<Session> {
        let id = SessionId {
            names: DeviceNames::new("gp", dn, "iot", "c"),
            ip: IpAddr::from([127, 0, 0, 1]),
            connected_ms: 0,
            clean_session: true,
            keep_alive: 60,
            auto_subscribe: false,
            ext_rrpc: false,
        };
        Arc::new(Session::new(id, VecDeque::new(), Vec::new()))
    }

    fn sub(dn: &str) -> SubRef {
        ("sp".to_owned(), dn.to_owned())
    }

    #[test]
    fn sub_device_sessions_follow_their_gateway_connection() {
        let subs = SubSessions::new(2, 0);
        let (g1, g2) = (gateway("g1"), gateway("g2"));
        assert!(
            subs.login(&g1, &[sub("a"), sub("b")], 0)
                .expect("room")
                .is_empty()
        );
        // Over the limit: nothing changes.
        assert_eq!(
            subs.login(&g1, &[sub("c")], 0).err(),
            Some(LoginRefused::TooManyOnline { limit: 2 })
        );
        assert!(subs.gateway("sp", "c").is_none());
        // Logging in again on the same gateway takes no more room.
        assert!(subs.login(&g1, &[sub("a")], 0).expect("already in").is_empty());
        assert!(subs.speaks_for(&g1, "sp", "a") && !subs.speaks_for(&g2, "sp", "a"));
        // Another gateway connection takes "a": the first is named (427).
        let kicked = subs.login(&g2, &[sub("a")], 0).expect("room");
        assert_eq!(kicked.len(), 1);
        assert!(Arc::ptr_eq(&kicked[0].1, &g1));
        assert!(subs.speaks_for(&g2, "sp", "a"));
        assert!(!subs.logout(&g1, &sub("a")), "no longer g1's");
        // g1 goes away with "b" only.
        assert_eq!(subs.gateway_gone(&g1), [sub("b")]);
        assert!(subs.gateway("sp", "b").is_none() && subs.gateway("sp", "a").is_some());
        assert!(subs.is_gateway(&g2) && !subs.is_gateway(&g1));
        assert!(subs.kick(&sub("a")).is_some_and(|g| Arc::ptr_eq(&g, &g2)));
        assert!(subs.gateway("sp", "a").is_none());
    }

    #[test]
    fn a_sub_device_logs_in_at_most_its_rate_in_any_minute() {
        let subs = SubSessions::new(10, 2);
        let g = gateway("g");
        assert!(subs.login(&g, &[sub("a")], 1_000).is_ok());
        // A batch naming "a" once more than allowed is refused whole: "b" is not logged in.
        assert_eq!(
            subs.login(&g, &[sub("b"), sub("a"), sub("a")], 1_001).err(),
            Some(LoginRefused::Throttled {
                sub: sub("a"),
                limit: 2
            })
        );
        assert!(subs.gateway("sp", "b").is_none());
        assert!(subs.login(&g, &[sub("a"), sub("b")], 2_000).is_ok());
        assert!(matches!(
            subs.login(&g, &[sub("a")], 60_999),
            Err(LoginRefused::Throttled { .. })
        ));
        // A minute after the first login, one more is allowed.
        assert!(subs.login(&g, &[sub("a")], 61_000).is_ok());
        assert!(subs.login(&g, &[sub("a")], 61_001).is_err());
    }
}
