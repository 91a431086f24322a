//! Standby mode (`DhcpPolicy::standby`): a second bootgate on the segment answers a client on the
//! DHCP port only when the primary evidently did not, the way WDS / ConfigMgr PXE response delay
//! works. Evidence, for a request that would be answered:
//!
//! - the client's `secs` field (seconds since it began, RFC 2131) is at least the delay; or
//! - the same client (MAC) asks again in the same transaction (same `xid`) at least the delay
//!   after this server first saw that transaction: a client that got the primary's offer moves
//!   on instead of retransmitting; or
//! - this server already answered that MAC as standby within the last [`ANSWERED_MEMORY_MS`]
//!   (its next stage, e.g. iPXE's own DHCP after the firmware's, is answered at once).
//!
//! Everything else is left to the primary (the first sighting is remembered). Firmware that takes
//! the site DHCP offer and never retransmits its DISCOVER is served by the standby only on its
//! next attempt with the same xid, or once its secs field is high enough.
//!
//! Sans-I/O: the caller passes the time in milliseconds of a monotonic clock.

use std::collections::HashMap;

/// How long a MAC answered as standby keeps being answered at once.
pub const ANSWERED_MEMORY_MS: u64 = 60_000;
/// A first sighting older than the delay plus this is forgotten (a new attempt starts over).
pub const FORGET_AFTER_MS: u64 = 60_000;

/// Why the standby answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyAnswer {
    /// `secs` reached the delay.
    SecsElapsed,
    /// The same transaction asked again after the delay.
    Retransmitted,
    /// This MAC was answered as standby a moment ago.
    AnsweredBefore,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    xid: u32,
    first_ms: u64,
    /// Answer this MAC at once until then (0: never answered).
    answered_until_ms: u64,
}

/// First sightings and recent standby answers, per MAC, bounded.
#[derive(Debug)]
pub struct StandbyTracker {
    seen: HashMap<[u8; 6], Seen>,
    capacity: usize,
}

impl StandbyTracker {
    /// A tracker that remembers at most `capacity` clients (stale ones are pruned first; under a
    /// flood of distinct MACs the table is cleared, which only makes the standby quieter).
    pub fn new(capacity: usize) -> Self {
        Self { seen: HashMap::new(), capacity: capacity.max(1) }
    }

    /// Clients remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Whether a standby with `delay_ms` answers this request now (Some) or stays silent (None).
    pub fn check(&mut self, mac: [u8; 6], xid: u32, secs: u16, now_ms: u64, delay_ms: u64) -> Option<StandbyAnswer> {
        let answered = |s: &mut Seen, why| {
            s.answered_until_ms = now_ms + ANSWERED_MEMORY_MS;
            Some(why)
        };
        if let Some(s) = self.seen.get_mut(&mac) {
            if s.answered_until_ms > now_ms {
                return answered(s, StandbyAnswer::AnsweredBefore);
            }
            let age = now_ms.saturating_sub(s.first_ms);
            if u64::from(secs) * 1000 >= delay_ms {
                return answered(s, StandbyAnswer::SecsElapsed);
            }
            if s.xid == xid && age <= delay_ms + FORGET_AFTER_MS {
                return if age >= delay_ms { answered(s, StandbyAnswer::Retransmitted) } else { None };
            }
            *s = Seen { xid, first_ms: now_ms, answered_until_ms: 0 };
            return None;
        }
        if self.seen.len() >= self.capacity {
            self.seen.retain(|_, s| {
                s.answered_until_ms > now_ms || now_ms.saturating_sub(s.first_ms) <= delay_ms + FORGET_AFTER_MS
            });
            if self.seen.len() >= self.capacity {
                self.seen.clear();
            }
        }
        let mut s = Seen { xid, first_ms: now_ms, answered_until_ms: 0 };
        if u64::from(secs) * 1000 >= delay_ms {
            let why = answered(&mut s, StandbyAnswer::SecsElapsed);
            self.seen.insert(mac, s);
            return why;
        }
        self.seen.insert(mac, s);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    #[test]
    fn silent_while_the_primary_can_answer_then_answers_the_retransmission() {
        let mut t = StandbyTracker::new(16);
        assert_eq!(t.check(A, 7, 0, 1_000, 3_000), None, "first sighting: the primary's turn");
        assert_eq!(t.check(A, 7, 0, 2_000, 3_000), None, "retransmitted too early");
        assert_eq!(t.check(A, 7, 0, 4_000, 3_000), Some(StandbyAnswer::Retransmitted));
        // iPXE's own DHCP (a new xid) right after: answered at once.
        assert_eq!(t.check(A, 99, 0, 9_000, 3_000), Some(StandbyAnswer::AnsweredBefore));
        // Long after, a new boot starts over.
        assert_eq!(t.check(A, 100, 0, 200_000, 3_000), None);
    }

    #[test]
    fn a_client_that_moved_on_is_not_answered() {
        let mut t = StandbyTracker::new(16);
        assert_eq!(t.check(B, 1, 0, 0, 3_000), None);
        // The primary answered: the client's next transaction has another xid, and starts over.
        assert_eq!(t.check(B, 2, 0, 10_000, 3_000), None);
        assert_eq!(t.check(B, 2, 0, 11_000, 3_000), None);
        // The same xid much later than the forget window counts as a new sighting.
        assert_eq!(t.check(B, 2, 0, 11_000 + 3_000 + FORGET_AFTER_MS + 1, 3_000), None);
    }

    #[test]
    fn secs_field_reaching_the_delay_answers_at_once() {
        let mut t = StandbyTracker::new(16);
        assert_eq!(t.check(A, 1, 2, 0, 3_000), None);
        assert_eq!(t.check(B, 1, 3, 0, 3_000), Some(StandbyAnswer::SecsElapsed));
        assert_eq!(t.check(A, 1, 4, 100, 3_000), Some(StandbyAnswer::SecsElapsed));
    }

    #[test]
    fn bounded_under_a_flood_of_macs() {
        let mut t = StandbyTracker::new(8);
        for i in 0..100u8 {
            let _ = t.check([2, 0, 0, 0, 1, i], 1, 0, u64::from(i), 3_000);
            assert!(t.len() <= 8);
        }
    }
}
