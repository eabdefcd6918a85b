//! Request/reply correlation, pure: which waiter gets which reply.
//!
//! Alink replies are matched by the echoed `id` (one waiter per id); NTP responses by the
//! echoed `deviceSendTime` (several waiters may share one, any of them may take it); shadow
//! replies by the echoed `clientToken`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use aliot_protocol::alink::Reply;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::error::Error;

/// What an NTP waiter receives: the response payload and the local receive time (epoch ms).
pub(crate) type NtpAnswer = (Vec<u8>, u64);

/// Waiters for replies.
#[derive(Debug, Default)]
pub(crate) struct Correlator {
    replies: HashMap<String, oneshot::Sender<Result<Reply, Error>>>,
    ntp: HashMap<String, Vec<oneshot::Sender<NtpAnswer>>>,
    shadow: HashMap<String, oneshot::Sender<Value>>,
}

impl Correlator {
    /// Registers a waiter for the reply with this id; a previous waiter with the same id (an id
    /// reused after 2³² requests) is dropped and sees the device as closed.
    pub(crate) fn expect_reply(&mut self, id: &str) -> oneshot::Receiver<Result<Reply, Error>> {
        let (tx, rx) = oneshot::channel();
        self.replies.insert(id.to_owned(), tx);
        rx
    }

    /// Hands a reply to its waiter; gives the reply back when nobody waits for that id.
    pub(crate) fn complete_reply(&mut self, reply: Reply) -> Option<Reply> {
        match self.replies.remove(&reply.id.as_text()) {
            Some(tx) => match tx.send(Ok(reply)) {
                Ok(()) => None,
                // The waiter gave up between our lookup and the send.
                Err(Ok(reply)) => Some(reply),
                Err(Err(_)) => None,
            },
            None => Some(reply),
        }
    }

    /// Fails the waiter of `id` (an unreadable reply that still carried its id).
    pub(crate) fn fail_reply(&mut self, id: &str, error: Error) -> bool {
        self.replies
            .remove(id)
            .is_some_and(|tx| tx.send(Err(error)).is_ok())
    }

    /// Forgets a waiter (timed out or dropped).
    pub(crate) fn forget_reply(&mut self, id: &str) {
        self.replies.remove(id);
    }

    /// Registers a waiter for the shadow reply echoing `token` as its `clientToken`.
    pub(crate) fn expect_shadow(&mut self, token: &str) -> oneshot::Receiver<Value> {
        let (tx, rx) = oneshot::channel();
        self.shadow.insert(token.to_owned(), tx);
        rx
    }

    /// Hands a shadow reply to the waiter of `token`; gives it back when nobody waits.
    pub(crate) fn complete_shadow(&mut self, token: &str, message: Value) -> Option<Value> {
        match self.shadow.remove(token) {
            Some(tx) => tx.send(message).err(),
            None => Some(message),
        }
    }

    /// Forgets a shadow waiter (timed out or dropped).
    pub(crate) fn forget_shadow(&mut self, token: &str) {
        self.shadow.remove(token);
    }

    /// Registers an NTP waiter for a request sent with `device_send_time`.
    pub(crate) fn expect_ntp(&mut self, device_send_time: &str) -> oneshot::Receiver<NtpAnswer> {
        let (tx, rx) = oneshot::channel();
        self.ntp.entry(device_send_time.to_owned()).or_default().push(tx);
        rx
    }

    /// Hands an NTP response to a waiter of its `deviceSendTime`; false when nobody waits.
    pub(crate) fn complete_ntp(&mut self, device_send_time: &str, answer: NtpAnswer) -> bool {
        let Some(waiters) = self.ntp.get_mut(device_send_time) else {
            return false;
        };
        let mut delivered = false;
        while let Some(tx) = waiters.pop() {
            if tx.send(answer.clone()).is_ok() {
                delivered = true;
                break;
            }
        }
        if waiters.is_empty() {
            self.ntp.remove(device_send_time);
        }
        delivered
    }

    /// Drops NTP waiters that gave up.
    pub(crate) fn prune_ntp(&mut self) {
        self.ntp.retain(|_, waiters| {
            waiters.retain(|tx| !tx.is_closed());
            !waiters.is_empty()
        });
    }

    /// How many replies are awaited.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.replies.len() + self.ntp.values().map(Vec::len).sum::<usize>() + self.shadow.len()
    }
}

/// Alink message ids: decimal strings in 1..=4294967295, unique per device for 2³² requests.
#[derive(Debug)]
pub(crate) struct IdGenerator(AtomicU32);

impl IdGenerator {
    /// Starts at a random point, so that a restarted device does not take late replies meant
    /// for its previous run as its own.
    pub(crate) fn new(start: u32) -> Self {
        Self(AtomicU32::new(start.max(1)))
    }

    pub(crate) fn next_id(&self) -> String {
        // Relaxed: the ids only need to be distinct, not ordered with other memory.
        let id = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(if v == u32::MAX { 1 } else { v + 1 })
            })
            .unwrap_or(1);
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aliot_protocol::alink::MessageId;

    fn reply(id: &str) -> Reply {
        Reply::success(MessageId::new(id), Some("thing.event.property.post".into()))
    }

    #[test]
    fn a_reply_reaches_the_waiter_of_its_id_only() {
        let mut c = Correlator::default();
        let mut a = c.expect_reply("1");
        let mut b = c.expect_reply("2");
        assert!(c.complete_reply(reply("2")).is_none());
        assert_eq!(b.try_recv().expect("delivered").expect("ok").id.as_text(), "2");
        assert!(a.try_recv().is_err());
        assert!(c.complete_reply(reply("3")).is_some(), "unknown ids come back");
        assert_eq!(c.waiting(), 1);
    }

    #[test]
    fn a_reply_for_a_waiter_that_gave_up_comes_back() {
        let mut c = Correlator::default();
        drop(c.expect_reply("1"));
        assert!(c.complete_reply(reply("1")).is_some());
        let _keep = c.expect_reply("2");
        c.forget_reply("2");
        assert_eq!(c.waiting(), 0);
    }

    #[test]
    fn ntp_responses_match_their_send_time() {
        let mut c = Correlator::default();
        let mut first = c.expect_ntp("100");
        let gone = c.expect_ntp("100");
        drop(gone);
        assert!(!c.complete_ntp("99", (b"x".to_vec(), 1)));
        assert!(c.complete_ntp("100", (b"r".to_vec(), 5)));
        assert_eq!(first.try_recv().expect("delivered").1, 5);
        let lost = c.expect_ntp("200");
        drop(lost);
        c.prune_ntp();
        assert_eq!(c.waiting(), 0);
    }

    #[test]
    fn ids_wrap_without_zero() {
        let g = IdGenerator::new(u32::MAX);
        assert_eq!(g.next_id(), u32::MAX.to_string());
        assert_eq!(g.next_id(), "1");
        assert_eq!(IdGenerator::new(0).next_id(), "1");
    }
}
