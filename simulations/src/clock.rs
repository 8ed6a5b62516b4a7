//! Per-node physical clocks derived from virtual time.
//!
//! What this model does: each node's clock reads
//! `WALL_CLOCK_START_US + drifted elapsed time + skew_us`, in microseconds, where the drifted
//! elapsed time runs `drift_ppm` parts per million faster (or slower, when negative) than
//! virtual time. Changing the drift changes only the rate from that moment on, so the clock
//! does not jump. Changing the skew is a step, forwards or backwards: exactly the fault a
//! hybrid logical clock must survive (an NTP correction, an operator setting the time).
//!
//! What it does not model: a clock that stops, reads that jitter between two calls at one
//! virtual instant, or leap seconds. A clock belongs to the machine, not the process, so a
//! crash and restart keeps its skew and drift.

use crate::time::SimTime;

/// What a node's clock reads at the start of a run, in microseconds since the Unix epoch
/// (13 September 2020). Starting far from zero keeps readings plausible for code that expects
/// wall-clock time and lets a negative skew never reach below zero.
pub const WALL_CLOCK_START_US: u64 = 1_600_000_000_000_000;

/// The largest skew, either sign, in microseconds: one day.
pub const CLOCK_SKEW_US_MAX: i64 = 86_400_000_000;

/// The largest drift, either sign, in parts per million. Real oscillators stay within about
/// 100 ppm; a tenth of virtual time allows harsh tests while the clock still moves forward.
pub const CLOCK_DRIFT_PPM_MAX: i64 = 100_000;

const PARTS_PER_MILLION: i128 = 1_000_000;

/// One node's physical clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeClock {
    skew_us: i64,
    drift_ppm: i64,
    /// The virtual time of the last drift change.
    anchor_time: SimTime,
    /// The drifted elapsed nanoseconds at `anchor_time`.
    anchor_drifted_nanos: i128,
}

impl Default for NodeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeClock {
    /// A clock without skew or drift.
    pub fn new() -> Self {
        NodeClock {
            skew_us: 0,
            drift_ppm: 0,
            anchor_time: SimTime::ZERO,
            anchor_drifted_nanos: 0,
        }
    }

    /// The current skew in microseconds.
    pub fn skew_us(&self) -> i64 {
        self.skew_us
    }

    /// The current drift in parts per million.
    pub fn drift_ppm(&self) -> i64 {
        self.drift_ppm
    }

    /// Steps the clock: from now on it reads `skew_us` away from its drifted time.
    ///
    /// # Panics
    ///
    /// If `|skew_us|` exceeds [`CLOCK_SKEW_US_MAX`].
    pub fn set_skew_us(&mut self, skew_us: i64) {
        assert!(
            skew_us.unsigned_abs() <= CLOCK_SKEW_US_MAX.unsigned_abs(),
            "clock skew {skew_us} us is beyond the maximum of {CLOCK_SKEW_US_MAX} us"
        );
        self.skew_us = skew_us;
    }

    /// Changes the clock's rate from virtual time `now` on, without a jump.
    ///
    /// # Panics
    ///
    /// If `|drift_ppm|` exceeds [`CLOCK_DRIFT_PPM_MAX`].
    pub fn set_drift_ppm(&mut self, now: SimTime, drift_ppm: i64) {
        assert!(
            drift_ppm.unsigned_abs() <= CLOCK_DRIFT_PPM_MAX.unsigned_abs(),
            "clock drift {drift_ppm} ppm is beyond the maximum of {CLOCK_DRIFT_PPM_MAX} ppm"
        );
        self.anchor_drifted_nanos = self.drifted_nanos(now);
        self.anchor_time = now;
        self.drift_ppm = drift_ppm;
    }

    /// What the clock reads at virtual time `now`, in microseconds since the Unix epoch.
    pub fn now_us(&self, now: SimTime) -> u64 {
        let drifted_us = self.drifted_nanos(now) / 1_000;
        let reading_us = i128::from(WALL_CLOCK_START_US) + drifted_us + i128::from(self.skew_us);
        // The bounds on skew and drift keep the reading far inside u64; clamping only guards
        // against a caller asking about a time before the last drift change.
        reading_us.clamp(0, i128::from(u64::MAX)) as u64
    }

    /// Elapsed nanoseconds as this clock's oscillator counts them.
    fn drifted_nanos(&self, now: SimTime) -> i128 {
        let since_anchor = i128::from(now.as_nanos()) - i128::from(self.anchor_time.as_nanos());
        let rate = PARTS_PER_MILLION + i128::from(self.drift_ppm);
        self.anchor_drifted_nanos + since_anchor * rate / PARTS_PER_MILLION
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_clock_follows_virtual_time() {
        let clock = NodeClock::new();
        assert_eq!(clock.now_us(SimTime::ZERO), WALL_CLOCK_START_US);
        assert_eq!(
            clock.now_us(SimTime::from_millis(5)),
            WALL_CLOCK_START_US + 5_000
        );
    }

    #[test]
    fn drift_changes_the_rate_without_a_jump() {
        let mut clock = NodeClock::new();
        clock.set_drift_ppm(SimTime::ZERO, 1_000);
        // 1000 ppm of 10 s is 10 ms.
        let at_ten = clock.now_us(SimTime::from_secs(10));
        assert_eq!(at_ten, WALL_CLOCK_START_US + 10_010_000);
        clock.set_drift_ppm(SimTime::from_secs(10), -1_000);
        assert_eq!(clock.now_us(SimTime::from_secs(10)), at_ten);
        assert_eq!(
            clock.now_us(SimTime::from_secs(20)),
            at_ten + 10_000_000 - 10_000
        );
    }

    #[test]
    fn skew_steps_both_ways() {
        let mut clock = NodeClock::new();
        let now = SimTime::from_secs(1);
        clock.set_skew_us(250);
        assert_eq!(clock.now_us(now), WALL_CLOCK_START_US + 1_000_250);
        clock.set_skew_us(-2_000_000);
        assert_eq!(clock.now_us(now), WALL_CLOCK_START_US - 1_000_000);
    }

    #[test]
    #[should_panic(expected = "beyond the maximum")]
    fn skew_beyond_the_bound_is_refused() {
        NodeClock::new().set_skew_us(CLOCK_SKEW_US_MAX + 1);
    }
}
