//! Replay protection: the signature nonces seen in the last [`WINDOW_MS`], per access key.
//!
//! A request whose `Timestamp` (V1) or `x-acs-date` (V3) is more than [`WINDOW_MS`] away from
//! the hub's clock is refused (`InvalidTimeStamp.Expired`), so a nonce only needs remembering for
//! that long. The set is bounded by [`MAX_NONCES`]: when full, the oldest entry is dropped
//! (its request could then be replayed within its time window; the bound keeps memory flat under
//! any request rate). Entries are SHA-256 digests of (AccessKeyId, nonce): fixed size whatever
//! the client sends.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// How far a request's time may be from the hub's clock, and how long a nonce is remembered.
pub(crate) const WINDOW_MS: u64 = 15 * 60 * 1000;

/// Nonces remembered at most (about 80 bytes each).
pub(crate) const MAX_NONCES: usize = 200_000;

/// The nonces seen recently.
#[derive(Debug, Default)]
pub(crate) struct Nonces {
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    set: HashSet<[u8; 32]>,
    /// In arrival order, with the time each may be forgotten.
    order: VecDeque<([u8; 32], u64)>,
}

impl Nonces {
    /// Records `nonce` for `access_key_id` at `now_ms`; `false` when it was seen already (a
    /// replay).
    pub(crate) fn check_and_record(&self, access_key_id: &str, nonce: &str, now_ms: u64) -> bool {
        let mut h = Sha256::new();
        h.update(access_key_id.as_bytes());
        h.update([0]);
        h.update(nonce.as_bytes());
        let digest: [u8; 32] = h.finalize().into();
        // A std mutex: held for a few hash operations, never across an await.
        let mut seen = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(&(old, until)) = seen.order.front() {
            if until > now_ms && seen.order.len() < MAX_NONCES {
                break;
            }
            seen.order.pop_front();
            seen.set.remove(&old);
        }
        if !seen.set.insert(digest) {
            return false;
        }
        seen.order.push_back((digest, now_ms.saturating_add(WINDOW_MS)));
        true
    }

    /// Nonces remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|s| s.set.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_refused_the_second_time_within_the_window() {
        let n = Nonces::default();
        assert!(n.check_and_record("ak", "n1", 1000));
        assert!(!n.check_and_record("ak", "n1", 2000));
        assert!(n.check_and_record("other", "n1", 2000), "per access key");
        assert!(
            n.check_and_record("ak", "n1", 1000 + WINDOW_MS),
            "forgotten after the window"
        );
    }

    #[test]
    fn the_set_is_bounded_and_drops_the_oldest() {
        let n = Nonces::default();
        for i in 0..MAX_NONCES + 10 {
            assert!(n.check_and_record("ak", &i.to_string(), 5));
        }
        assert!(n.len() <= MAX_NONCES);
        assert!(n.check_and_record("ak", "0", 5), "the oldest was dropped");
        assert!(!n.check_and_record("ak", &(MAX_NONCES + 9).to_string(), 5));
    }
}
