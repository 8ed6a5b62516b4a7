//! [`ResendTimeout`]: how long a sender waits, after the acknowledged point last moved, before
//! it sends what is unacknowledged again: a lower bound, doubled after each resend that the
//! acknowledged point did not follow, up to an upper bound.
//!
//! A region leader resends the batches the coordinator has not acknowledged, and the
//! coordinator resends the epochs a region has not acknowledged. Resending every interval
//! whatever the receiver does turns a slow receiver into a swamped one: a coordinator whose
//! round grew to 700 ms under load was sent every unacknowledged batch again every 105 ms, each
//! copy cost it as much as the original, and its rounds grew longer still (in the simulator,
//! 84% of the batches it was sent were copies and the cluster fell to a fifth of its
//! throughput; `a_loaded_coordinator_is_sent_few_copies_and_sends_few` in
//! `simulations/tests/global_sim.rs`). A receiver whose acknowledgements move takes what it is
//! sent, so it is sent nothing again; one whose acknowledgements stand still is sent the window
//! again, less and less often.
//!
//! Not an estimate of the acknowledgement delay (RFC 6298's SRTT): waiting what
//! acknowledgements had been taking lengthened the stalls of a region behind a slow link in the
//! simulator, where a lost batch then waited for a timeout learned from slow answers.
//!
//! The state and the arithmetic only: the caller passes the times and the bounds.

/// When one sender sends its unacknowledged messages again. The default has nothing waiting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResendTimeout {
    /// Resends since the acknowledged point last moved; each doubles the timeout.
    backoff: u32,
    /// Since when sent messages have waited without the acknowledged point moving: its last
    /// move, the last resend, or the first send while everything was acknowledged. `None`
    /// while every sent message is acknowledged.
    waiting_since_us: Option<u64>,
    /// When unacknowledged messages were last resent.
    resent_at_us: Option<u64>,
    /// A receiver answered, since the last resend, that it does not lead: what it was sent
    /// is lost, so the resend is due at the lower bound after the last one, whatever the
    /// backoff (which is for a leader that does not acknowledge).
    refused: bool,
}

/// The most doublings of the timeout; the upper bound caps it long before.
const BACKOFF_DOUBLINGS_MAX: u32 = 16;

impl ResendTimeout {
    /// A sender that knows nothing of what its receiver holds: a resend is due at once.
    pub fn due_at_once() -> Self {
        Self {
            waiting_since_us: Some(0),
            ..Self::default()
        }
    }

    /// Something was sent at `now_us`: if nothing waited, the wait starts now.
    pub fn sent(&mut self, now_us: u64) {
        self.waiting_since_us.get_or_insert(now_us);
    }

    /// The receiver has everything sent: nothing waits.
    pub fn settled(&mut self) {
        self.waiting_since_us = None;
    }

    /// The acknowledged point moved at `now_us`: the receiver takes what it is sent, so the
    /// backoff ends, and what is still unacknowledged (`still_waiting`) waits from now.
    pub fn progressed(&mut self, now_us: u64, still_waiting: bool) {
        self.backoff = 0;
        self.waiting_since_us = still_waiting.then_some(now_us);
    }

    /// A receiver answered that it does not lead: see [`Self::resend_at_us`].
    pub fn refused(&mut self) {
        self.refused = true;
    }

    /// Since when sent messages have waited, `None` while nothing waits.
    pub fn waiting_since_us(&self) -> Option<u64> {
        self.waiting_since_us
    }

    /// When the unacknowledged messages are due again, `None` while nothing waits: the
    /// timeout after the wait began, or, once a receiver refused, the lower bound after the
    /// last resend.
    pub fn resend_at_us(&self, min_us: u64, max_us: u64) -> Option<u64> {
        let since_us = self.waiting_since_us?;
        if self.refused {
            return Some(
                self.resent_at_us
                    .map_or(since_us, |at_us| at_us.saturating_add(min_us)),
            );
        }
        Some(since_us.saturating_add(self.timeout_us(min_us, max_us)))
    }

    /// A resend went out at `now_us`: the next waits twice as long, up to the upper bound.
    pub fn resent(&mut self, now_us: u64) {
        self.backoff = (self.backoff + 1).min(BACKOFF_DOUBLINGS_MAX);
        self.waiting_since_us = Some(now_us);
        self.resent_at_us = Some(now_us);
        self.refused = false;
    }

    /// How long to wait now: `min_us` doubled per resend without progress, never above
    /// `max_us` (and never below `min_us`, which wins should the bounds cross).
    pub fn timeout_us(&self, min_us: u64, max_us: u64) -> u64 {
        min_us
            .saturating_mul(1u64 << self.backoff)
            .min(max_us)
            .max(min_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN_US: u64 = 100_000;
    const MAX_US: u64 = 1_000_000;

    #[test]
    fn at_first_the_timeout_is_the_lower_bound() {
        assert_eq!(ResendTimeout::default().timeout_us(MIN_US, MAX_US), MIN_US);
    }

    #[test]
    fn each_resend_doubles_the_wait_up_to_the_bound_and_progress_ends_it() {
        let mut timeout = ResendTimeout::default();
        timeout.sent(10);
        assert_eq!(timeout.resend_at_us(MIN_US, MAX_US), Some(10 + MIN_US));
        timeout.resent(10 + MIN_US);
        assert_eq!(timeout.timeout_us(MIN_US, MAX_US), 2 * MIN_US);
        assert_eq!(timeout.resend_at_us(MIN_US, MAX_US), Some(10 + 3 * MIN_US));
        timeout.resent(10 + 3 * MIN_US);
        assert_eq!(timeout.timeout_us(MIN_US, MAX_US), 4 * MIN_US);
        for _ in 0..40 {
            timeout.resent(0);
        }
        assert_eq!(timeout.timeout_us(MIN_US, MAX_US), MAX_US);
        timeout.progressed(5, true);
        assert_eq!(timeout.timeout_us(MIN_US, MAX_US), MIN_US);
        assert_eq!(timeout.resend_at_us(MIN_US, MAX_US), Some(5 + MIN_US));
        timeout.progressed(6, false);
        assert_eq!(timeout.resend_at_us(MIN_US, MAX_US), None);
    }

    #[test]
    fn nothing_is_due_until_something_is_sent_and_a_new_sender_is_due_at_once() {
        let mut timeout = ResendTimeout::default();
        assert_eq!(timeout.resend_at_us(MIN_US, MAX_US), None);
        timeout.sent(7);
        timeout.sent(9);
        assert_eq!(timeout.waiting_since_us(), Some(7));
        timeout.settled();
        assert_eq!(timeout.resend_at_us(MIN_US, MAX_US), None);
        assert_eq!(
            ResendTimeout::due_at_once().resend_at_us(MIN_US, MAX_US),
            Some(MIN_US)
        );
    }

    #[test]
    fn a_refusal_brings_the_resend_to_the_lower_bound_after_the_last_one() {
        let mut timeout = ResendTimeout::default();
        timeout.sent(0);
        for at_us in [MIN_US, 3 * MIN_US, 7 * MIN_US, 15 * MIN_US] {
            timeout.resent(at_us);
        }
        assert_eq!(
            timeout.resend_at_us(MIN_US, MAX_US),
            Some(15 * MIN_US + MAX_US)
        );
        timeout.refused();
        assert_eq!(timeout.resend_at_us(MIN_US, MAX_US), Some(16 * MIN_US));
        timeout.resent(16 * MIN_US);
        assert_eq!(
            timeout.resend_at_us(MIN_US, MAX_US),
            Some(16 * MIN_US + MAX_US)
        );
        let mut never_resent = ResendTimeout::default();
        never_resent.sent(4);
        never_resent.refused();
        assert_eq!(never_resent.resend_at_us(MIN_US, MAX_US), Some(4));
    }

    #[test]
    fn extreme_bounds_do_not_overflow() {
        let mut timeout = ResendTimeout::default();
        for _ in 0..40 {
            timeout.resent(u64::MAX);
        }
        assert_eq!(timeout.resend_at_us(MIN_US, u64::MAX), Some(u64::MAX));
        assert_eq!(timeout.timeout_us(u64::MAX / 2, u64::MAX), u64::MAX);
        assert_eq!(timeout.timeout_us(MAX_US, MIN_US), MAX_US);
    }
}
