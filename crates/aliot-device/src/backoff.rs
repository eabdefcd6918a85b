//! The reconnect schedule, pure: capped exponential backoff with jitter, and the refusal policy.

use std::time::Duration;

use rand::Rng;

use crate::options::{Backoff, RefusalPolicy};

/// What the network loop does after a failed attempt or a lost connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Try again after this delay.
    RetryIn(Duration),
    /// Give up (a refusal under [`RefusalPolicy::Stop`]).
    Stop,
}

/// Counts consecutive failures and turns them into delays.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    backoff: Backoff,
    refusal: RefusalPolicy,
    failures: u32,
}

impl Schedule {
    pub(crate) fn new(backoff: Backoff, refusal: RefusalPolicy) -> Self {
        Self {
            backoff,
            refusal,
            failures: 0,
        }
    }

    /// A connection that had been up for `lasted` was lost: a stable one restarts the count.
    pub(crate) fn connection_lost(&mut self, lasted: Duration) {
        if lasted >= self.backoff.stable_after {
            self.failures = 0;
        }
    }

    /// The delay before the next attempt, after a failure (`refused` when the platform sent a
    /// CONNACK refusal).
    #[cfg(test)]
    pub(crate) fn next(&mut self, refused: Option<aliot_protocol::ConnackCode>, rng: &mut impl Rng) -> Next {
        self.next_after(refused.is_some_and(crate::error::is_permanent), rng)
    }

    /// The delay before the next attempt, after a failure that retrying cannot fix
    /// (`permanent`: the refusal policy applies) or one that it may.
    pub(crate) fn next_after(&mut self, permanent: bool, rng: &mut impl Rng) -> Next {
        if permanent {
            return match self.refusal {
                RefusalPolicy::Stop => Next::Stop,
                RefusalPolicy::RetryEvery(every) => Next::RetryIn(jitter(every, rng)),
            };
        }
        let shift = self.failures.min(31);
        self.failures = self.failures.saturating_add(1);
        let factor = 1u32.checked_shl(shift).unwrap_or(u32::MAX);
        let ceiling = self
            .backoff
            .initial
            .checked_mul(factor)
            .map_or(self.backoff.max, |d| d.min(self.backoff.max));
        Next::RetryIn(jitter(ceiling, rng))
    }
}

/// "Equal jitter": a uniform delay in `[d/2, d]`, so that a fleet restarted together spreads
/// its reconnects while each device still waits at least half the nominal delay.
fn jitter(d: Duration, rng: &mut impl Rng) -> Duration {
    let half = d / 2;
    let spread = d - half;
    let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(rng.random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aliot_protocol::ConnackCode;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn schedule(refusal: RefusalPolicy) -> Schedule {
        Schedule::new(
            Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(8),
                stable_after: Duration::from_secs(30),
            },
            refusal,
        )
    }

    fn delay(n: Next) -> Duration {
        match n {
            Next::RetryIn(d) => d,
            Next::Stop => panic!("expected a retry"),
        }
    }

    #[test]
    fn delays_double_up_to_the_cap_and_stay_within_the_jitter_band() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut s = schedule(RefusalPolicy::Stop);
        for ceiling in [1, 2, 4, 8, 8, 8] {
            let d = delay(s.next(None, &mut rng));
            let c = Duration::from_secs(ceiling);
            assert!(d >= c / 2 && d <= c, "{d:?} not in [{:?}, {c:?}]", c / 2);
        }
    }

    #[test]
    fn a_stable_connection_restarts_the_count_and_a_short_one_does_not() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut s = schedule(RefusalPolicy::Stop);
        for _ in 0..4 {
            s.next(None, &mut rng);
        }
        s.connection_lost(Duration::from_secs(1));
        assert!(delay(s.next(None, &mut rng)) >= Duration::from_secs(4));
        s.connection_lost(Duration::from_secs(31));
        assert!(delay(s.next(None, &mut rng)) <= Duration::from_secs(1));
    }

    #[test]
    fn bad_credentials_stop_or_retry_slowly_never_fast() {
        let mut rng = StdRng::seed_from_u64(3);
        for code in [
            ConnackCode::BadUsernameOrPassword,
            ConnackCode::NotAuthorized,
            ConnackCode::IdentifierRejected,
            ConnackCode::UnacceptableProtocolVersion,
        ] {
            assert_eq!(
                schedule(RefusalPolicy::Stop).next(Some(code), &mut rng),
                Next::Stop
            );
            let every = Duration::from_secs(300);
            let mut s = schedule(RefusalPolicy::RetryEvery(every));
            for _ in 0..10 {
                let d = delay(s.next(Some(code), &mut rng));
                assert!(d >= every / 2 && d <= every, "{d:?}");
            }
        }
        // Server unavailable is transient: normal backoff.
        let d = delay(schedule(RefusalPolicy::Stop).next(Some(ConnackCode::ServerUnavailable), &mut rng));
        assert!(d <= Duration::from_secs(1));
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut s = schedule(RefusalPolicy::Stop);
        s.failures = u32::MAX;
        assert!(delay(s.next(None, &mut rng)) <= Duration::from_secs(8));
    }
}
