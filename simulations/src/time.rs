//! Virtual time.
//!
//! A run has one clock, [`SimTime`], counted in nanoseconds from the start of the run. It moves
//! only when the kernel takes the next event from its queue, so a run of simulated hours takes
//! as long as its events take to process. Nothing in this crate reads the system clock: the
//! physical time a node sees is derived from virtual time by its [`NodeClock`](crate::NodeClock).
//!
//! Durations are [`std::time::Duration`], which is exact to the nanosecond and has no hidden
//! source of time, so it is safe to use in a deterministic run.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in virtual time: nanoseconds since the start of the run.
///
/// Adding a [`Duration`] saturates at [`SimTime::MAX`] (about 584 years of virtual time), so a
/// timer set absurdly far ahead simply never fires instead of wrapping around to the past.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimTime(u64);

impl SimTime {
    /// The start of every run.
    pub const ZERO: SimTime = SimTime(0);

    /// The largest representable time; nothing scheduled this late ever happens in practice.
    pub const MAX: SimTime = SimTime(u64::MAX);

    /// The time `nanos` nanoseconds after the start of the run.
    pub const fn from_nanos(nanos: u64) -> Self {
        SimTime(nanos)
    }

    /// The time `micros` microseconds after the start of the run (saturating).
    pub const fn from_micros(micros: u64) -> Self {
        SimTime(micros.saturating_mul(1_000))
    }

    /// The time `millis` milliseconds after the start of the run (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        SimTime(millis.saturating_mul(1_000_000))
    }

    /// The time `secs` seconds after the start of the run (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        SimTime(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the start of the run.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Whole microseconds since the start of the run.
    pub const fn as_micros(self) -> u64 {
        self.0 / 1_000
    }

    /// Whole milliseconds since the start of the run.
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// The time elapsed since the start of the run.
    pub const fn since_start(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// `self + duration`, or `None` past [`SimTime::MAX`].
    pub fn checked_add(self, duration: Duration) -> Option<SimTime> {
        let nanos = u64::try_from(duration.as_nanos()).ok()?;
        self.0.checked_add(nanos).map(SimTime)
    }

    /// `self + duration`, clamped to [`SimTime::MAX`].
    pub fn saturating_add(self, duration: Duration) -> SimTime {
        SimTime(self.0.saturating_add(duration_nanos_saturating(duration)))
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: SimTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// The nanoseconds in `duration`, clamped to `u64::MAX` (about 584 years).
pub fn duration_nanos_saturating(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for SimTime {
    type Output = SimTime;

    fn add(self, duration: Duration) -> SimTime {
        self.saturating_add(duration)
    }
}

impl AddAssign<Duration> for SimTime {
    fn add_assign(&mut self, duration: Duration) {
        *self = self.saturating_add(duration);
    }
}

impl Sub<SimTime> for SimTime {
    type Output = Duration;

    /// The time from `earlier` to `self`, saturating at zero like
    /// [`SimTime::saturating_duration_since`].
    fn sub(self, earlier: SimTime) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl fmt::Display for SimTime {
    /// Seconds with all nine decimals, so trace lines sort and compare as text.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}.{:09}s",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_agree() {
        assert_eq!(SimTime::from_secs(2), SimTime::from_millis(2_000));
        assert_eq!(SimTime::from_millis(3), SimTime::from_micros(3_000));
        assert_eq!(SimTime::from_micros(5).as_nanos(), 5_000);
        assert_eq!(SimTime::from_nanos(1_999).as_micros(), 1);
        assert_eq!(
            SimTime::from_millis(7).since_start(),
            Duration::from_millis(7)
        );
    }

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        assert_eq!(SimTime::MAX + Duration::from_secs(1), SimTime::MAX);
        assert_eq!(SimTime::ZERO + Duration::MAX, SimTime::MAX);
        assert_eq!(SimTime::ZERO.checked_add(Duration::MAX), None);
        assert_eq!(
            SimTime::from_secs(1) - SimTime::from_secs(2),
            Duration::ZERO
        );
        assert_eq!(
            SimTime::from_secs(3) - SimTime::from_secs(1),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn display_shows_seconds_with_nanoseconds() {
        assert_eq!(
            SimTime::from_nanos(1_000_000_123).to_string(),
            "1.000000123s"
        );
        assert_eq!(SimTime::ZERO.to_string(), "0.000000000s");
    }
}
