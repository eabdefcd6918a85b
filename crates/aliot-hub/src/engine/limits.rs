//! Per-source limits before a device is authenticated: how many connections one address may
//! have in its handshake, and how often its refusals are logged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::table::lock;

/// Connections per IP address that have not finished their CONNECT yet. The map holds an entry
/// only while an address has one, so it is bounded by the connection limit.
#[derive(Debug)]
pub(crate) struct PendingConnects {
    /// At most this many per address (0: no limit).
    max: usize,
    /// std Mutex: a map lookup at accept and at the end of a handshake, never across `.await`.
    counts: Mutex<HashMap<IpAddr, u32>>,
}

/// One pending handshake; the count goes down when it is dropped.
#[derive(Debug)]
pub(crate) struct PendingGuard {
    owner: Arc<PendingConnects>,
    ip: IpAddr,
}

impl PendingConnects {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more handshake from `ip`, or `None` when it has `max` already.
    pub(crate) fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<PendingGuard> {
        let mut counts = lock(&self.counts);
        let n = counts.entry(ip).or_insert(0);
        if self.max != 0 && *n as usize >= self.max {
            if *n == 0 {
                counts.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(PendingGuard {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut counts = lock(&self.owner.counts);
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// At most one refusal log line per source address per second: a flood of bad CONNECTs from
/// one address cannot flood the log. The lines it holds back are counted and the next line of
/// that address says how many.
#[derive(Debug, Default)]
pub(crate) struct LogLimiter {
    /// Address → (start of its current second, lines held back). Cleared when it grows past
    /// [`LogLimiter::MAX_SOURCES`] (a few held-back counts are then lost, never a line).
    sources: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl LogLimiter {
    const MAX_SOURCES: usize = 4096;
    const WINDOW: Duration = Duration::from_secs(1);

    /// `Some(n)`: log this line, mentioning the `n` lines held back before it; `None`: hold it
    /// back.
    pub(crate) fn allow(&self, ip: IpAddr) -> Option<u32> {
        let now = Instant::now();
        let mut sources = lock(&self.sources);
        if sources.len() >= Self::MAX_SOURCES && !sources.contains_key(&ip) {
            sources.clear();
        }
        match sources.get_mut(&ip) {
            Some((start, held)) if now.duration_since(*start) < Self::WINDOW => {
                *held += 1;
                None
            }
            Some((start, held)) => {
                *start = now;
                Some(std::mem::take(held))
            }
            None => {
                sources.insert(ip, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_handshakes_are_counted_per_address() {
        let p = PendingConnects::new(2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let g1 = p.enter(a).expect("room");
        let _g2 = p.enter(a).expect("room");
        assert!(p.enter(a).is_none());
        assert!(p.enter(b).is_some());
        drop(g1);
        assert!(p.enter(a).is_some());
        assert!(PendingConnects::new(0).enter(a).is_some());
    }

    /// Hardening 13: one line per address per second, the rest counted.
    #[test]
    fn refusal_lines_are_held_back_within_a_second() {
        let l = LogLimiter::default();
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        assert_eq!(l.allow(a), Some(0));
        for _ in 0..1000 {
            assert_eq!(l.allow(a), None);
        }
        assert_eq!(l.allow("10.0.0.2".parse().expect("ip")), Some(0));
    }
}
