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
//! Pure arithmetic: the caller passes the bounds.

/// The backoff of one sender. The default waits the lower bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResendTimeout {
    /// Resends since the acknowledged point last moved; each doubles the timeout.
    backoff: u32,
}

/// The most doublings of the timeout; the upper bound caps it long before.
const BACKOFF_DOUBLINGS_MAX: u32 = 16;

impl ResendTimeout {
    /// The acknowledged point moved: the receiver takes what it is sent, so the backoff ends.
    pub fn progressed(&mut self) {
        self.backoff = 0;
    }

    /// A resend went out: the next waits twice as long, up to the upper bound.
    pub fn backed_off(&mut self) {
        self.backoff = (self.backoff + 1).min(BACKOFF_DOUBLINGS_MAX);
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
        timeout.backed_off();
        assert_eq!(timeout.timeout_us(MIN_US, MAX_US), 2 * MIN_US);
        timeout.backed_off();
        assert_eq!(timeout.timeout_us(MIN_US, MAX_US), 4 * MIN_US);
        for _ in 0..40 {
            timeout.backed_off();
        }
        assert_eq!(timeout.timeout_us(MIN_US, MAX_US), MAX_US);
        timeout.progressed();
        assert_eq!(timeout.timeout_us(MIN_US, MAX_US), MIN_US);
    }

    #[test]
    fn extreme_bounds_do_not_overflow() {
        let mut timeout = ResendTimeout::default();
        for _ in 0..40 {
            timeout.backed_off();
        }
        assert_eq!(timeout.timeout_us(u64::MAX / 2, u64::MAX), u64::MAX);
        assert_eq!(timeout.timeout_us(MAX_US, MIN_US), MAX_US);
    }
}
