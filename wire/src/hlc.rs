//! The hybrid logical clock (HLC) of DSSS.
//!
//! Region leaders timestamp records with it, region leaders promise closed timestamps with it,
//! and every message between nodes carries its sender's HLC timestamp so that the receiver can
//! move its own clock past it. That is what keeps causality between regions from ever being
//! inverted: if event `e` happened before event `f` (on one node, or through a message), the
//! timestamp of `e` is lower than the timestamp of `f`.
//!
//! The algorithm is the one of Kulkarni, Demirbas, Madappa, Avva and Leone, "Logical Physical
//! Clocks" (2014). A timestamp is a pair `(l, c)`: `l` is the largest physical time the clock
//! has heard of, `c` a counter that orders events sharing the same `l`.
//! - Local or send event at physical time `pt`: `l' = max(l, pt)`; `c' = c + 1` when `l' == l`,
//!   else `0`.
//! - Receive event of `(l_m, c_m)` at physical time `pt`: `l' = max(l, l_m, pt)`; `c'` is
//!   `max(c, c_m) + 1` when `l' == l == l_m`, `c + 1` when only `l' == l`, `c_m + 1` when only
//!   `l' == l_m`, and `0` when `l' == pt` is larger than both.
//!
//! DSSS adds three rules to the paper's:
//! - A received timestamp whose physical part is more than `max_skew_us` ahead of the local
//!   physical time is rejected and never adopted: a node with a runaway clock must not drag the
//!   whole system's clocks into the future. The clock is left unchanged.
//! - When the logical counter would overflow, it carries into the physical part (`(l, u32::MAX)`
//!   is followed by `(l + 1, 0)`), so the clock never panics and never goes backwards.
//! - Physical times are capped at [`PHYSICAL_US_MAX`] and received timestamps above it are
//!   rejected. The cap is about 146,000 years after 1970, and the range above it is left for
//!   carries, which therefore can never exhaust the `u64`.
//!
//! Every timestamp a clock returns is strictly greater than every timestamp it returned before,
//! whatever the physical time does (stall, jump backwards, jump forwards).
//!
//! [`HybridLogicalClock`] is the pure core: it reads no clock, time is an argument, which is what
//! the sans-IO protocol state machines and the simulator need. [`Clock`] pairs the core with a
//! [`PhysicalClock`] source for drivers.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::proto;

/// The largest physical time, in microseconds since the UNIX epoch, that a clock uses or accepts.
///
/// Physical readings above it are treated as this value and received timestamps above it are
/// rejected, so the physical part can only pass it through logical carries, each of which takes
/// 2^32 events: the `u64` range above the cap can never be used up.
pub const PHYSICAL_US_MAX: u64 = 1 << 62;

/// A hybrid logical clock timestamp.
///
/// Timestamps are totally ordered by `physical_us`, then by `logical` (the derived order, which
/// follows the field order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// The physical part: microseconds since the UNIX epoch, the largest physical time the clock
    /// that made this timestamp had seen or heard of.
    pub physical_us: u64,
    /// The logical part: orders the events that share the same physical part.
    pub logical: u32,
}

impl Timestamp {
    /// The lowest timestamp, lower than every timestamp a clock returns.
    pub const ZERO: Timestamp = Timestamp {
        physical_us: 0,
        logical: 0,
    };

    /// Makes a timestamp from its two parts.
    pub const fn new(physical_us: u64, logical: u32) -> Self {
        Timestamp {
            physical_us,
            logical,
        }
    }

    /// The smallest timestamp greater than this one: the logical part plus one, or, when the
    /// logical part is at its maximum, the next physical microsecond with logical part zero.
    ///
    /// Saturates at `(u64::MAX, u32::MAX)`, which a clock can never reach (see
    /// [`PHYSICAL_US_MAX`]).
    pub const fn successor(self) -> Timestamp {
        match self.logical.checked_add(1) {
            Some(logical) => Timestamp::new(self.physical_us, logical),
            None => match self.physical_us.checked_add(1) {
                Some(physical_us) => Timestamp::new(physical_us, 0),
                None => self,
            },
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}us+{}", self.physical_us, self.logical)
    }
}

impl From<Timestamp> for proto::Timestamp {
    fn from(timestamp: Timestamp) -> Self {
        proto::Timestamp {
            physical_us: timestamp.physical_us,
            logical: timestamp.logical,
        }
    }
}

impl TryFrom<proto::Timestamp> for Timestamp {
    type Error = TimestampError;

    /// Checks a timestamp from the wire: its physical part must not exceed [`PHYSICAL_US_MAX`].
    fn try_from(timestamp: proto::Timestamp) -> Result<Self, Self::Error> {
        check_physical_range(Timestamp::new(timestamp.physical_us, timestamp.logical))
    }
}

fn check_physical_range(timestamp: Timestamp) -> Result<Timestamp, TimestampError> {
    if timestamp.physical_us > PHYSICAL_US_MAX {
        return Err(TimestampError::PhysicalOutOfRange {
            physical_us: timestamp.physical_us,
        });
    }
    Ok(timestamp)
}

/// A timestamp that no DSSS clock could have produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// The physical part is beyond [`PHYSICAL_US_MAX`].
    #[error(
        "timestamp physical part {physical_us}us is beyond the largest physical time a DSSS \
         clock uses ({PHYSICAL_US_MAX}us)"
    )]
    PhysicalOutOfRange {
        /// The physical part that was received.
        physical_us: u64,
    },
}

/// A received timestamp that is too far ahead of the local physical clock to be adopted.
///
/// The clock that refused it is unchanged. A steady stream of these means that the sender's
/// physical clock (or this node's) is off by more than the configured maximum skew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockSkewError {
    /// The timestamp that was refused.
    pub received: Timestamp,
    /// The local physical time when it was refused.
    pub physical_now_us: u64,
    /// The configured maximum skew of the clock that refused it.
    pub max_skew_us: u64,
}

impl fmt::Display for ClockSkewError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "received timestamp {} is {}us ahead of the local physical clock ({}us), more than \
             the tolerated maximum skew of {}us; it was rejected and the local clock is unchanged",
            self.received,
            self.ahead_us(),
            self.physical_now_us,
            self.max_skew_us
        )
    }
}

impl std::error::Error for ClockSkewError {}

impl ClockSkewError {
    /// By how many microseconds the received timestamp's physical part was ahead of the local
    /// physical time.
    pub fn ahead_us(&self) -> u64 {
        self.received
            .physical_us
            .saturating_sub(self.physical_now_us)
    }
}

/// The pure core of the hybrid logical clock: it reads no clock, the caller passes the physical
/// time in.
///
/// Call [`now`](Self::now) for local events and before sending a message, and
/// [`update`](Self::update) with the timestamp of each message received. Every timestamp either
/// returns is strictly greater than all timestamps this clock returned before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HybridLogicalClock {
    last: Timestamp,
    max_skew_us: u64,
}

impl HybridLogicalClock {
    /// A clock that has returned nothing yet, which refuses received timestamps more than
    /// `max_skew_us` microseconds ahead of its physical time.
    pub fn new(max_skew_us: u64) -> Self {
        HybridLogicalClock {
            last: Timestamp::ZERO,
            max_skew_us,
        }
    }

    /// A clock that continues after `last`, for a node that restarts: it persisted a timestamp
    /// at least as high as any it handed out (for example its closed timestamp) and must never
    /// hand out a lower one.
    ///
    /// Fails when `last` is beyond [`PHYSICAL_US_MAX`], which means the persisted value is
    /// corrupt.
    pub fn resume(last: Timestamp, max_skew_us: u64) -> Result<Self, TimestampError> {
        let last = check_physical_range(last)?;
        Ok(HybridLogicalClock { last, max_skew_us })
    }

    /// The last timestamp this clock returned, or the one it resumed from, or
    /// [`Timestamp::ZERO`].
    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// The configured maximum skew, in microseconds.
    pub fn max_skew_us(&self) -> u64 {
        self.max_skew_us
    }

    /// How far, in microseconds, the last timestamp runs ahead of `physical_now_us` when that
    /// is more than the maximum skew; `None` within it. The clock never moves back, so after
    /// the physical clock leapt forward and back, every timestamp it gives stays that far
    /// ahead: a node whose clock runs ahead fences itself until physical time catches up.
    pub fn runs_ahead_of(&self, physical_now_us: u64) -> Option<u64> {
        let ahead_us = self.last.physical_us.saturating_sub(physical_now_us);
        (ahead_us > self.max_skew_us).then_some(ahead_us)
    }

    /// Timestamps a local or send event that happens at physical time `physical_now_us`.
    ///
    /// The result is strictly greater than every timestamp returned before, and its physical
    /// part is at least `physical_now_us` (capped at [`PHYSICAL_US_MAX`]).
    pub fn now(&mut self, physical_now_us: u64) -> Timestamp {
        let physical_now_us = physical_now_us.min(PHYSICAL_US_MAX);
        self.last = advance(self.last, physical_now_us);
        self.last
    }

    /// Checks, without changing the clock, whether [`update`](Self::update) would accept
    /// `received` at physical time `physical_now_us`.
    ///
    /// `received` is refused when its physical part exceeds `physical_now_us + max_skew_us`, or
    /// exceeds [`PHYSICAL_US_MAX`].
    pub fn check_skew(
        &self,
        received: Timestamp,
        physical_now_us: u64,
    ) -> Result<(), ClockSkewError> {
        let physical_now_us = physical_now_us.min(PHYSICAL_US_MAX);
        let accepted_us_max = physical_now_us
            .saturating_add(self.max_skew_us)
            .min(PHYSICAL_US_MAX);
        if received.physical_us > accepted_us_max {
            return Err(ClockSkewError {
                received,
                physical_now_us,
                max_skew_us: self.max_skew_us,
            });
        }
        Ok(())
    }

    /// Timestamps the receive event of a message that carried `received`, at physical time
    /// `physical_now_us`.
    ///
    /// On success the result is strictly greater than `received` and than every timestamp this
    /// clock returned before. When `received` is too far ahead (see
    /// [`check_skew`](Self::check_skew)) it returns the error and the clock is unchanged: the
    /// caller drops the message, as if it had been lost.
    pub fn update(
        &mut self,
        received: Timestamp,
        physical_now_us: u64,
    ) -> Result<Timestamp, ClockSkewError> {
        self.check_skew(received, physical_now_us)?;
        let physical_now_us = physical_now_us.min(PHYSICAL_US_MAX);
        // The paper's case analysis on (l, l_m, pt) amounts to this: start from the larger of the
        // two timestamps and advance it like a local event. When the physical parts are equal,
        // the larger timestamp carries max(c, c_m), so its successor is max(c, c_m) + 1.
        let floor = self.last.max(received);
        self.last = advance(floor, physical_now_us);
        Ok(self.last)
    }
}

/// The timestamp of an event at physical time `physical_now_us` that must be ordered after
/// `floor`.
fn advance(floor: Timestamp, physical_now_us: u64) -> Timestamp {
    if physical_now_us > floor.physical_us {
        Timestamp::new(physical_now_us, 0)
    } else {
        floor.successor()
    }
}

/// A source of physical time, in microseconds since the UNIX epoch.
///
/// Production reads the system clock ([`SystemClock`]); tests set the time by hand
/// ([`ManualClock`]); the simulator gives every node its own skewed virtual time by implementing
/// this trait. A source may stall or jump backwards: the hybrid logical clock stays monotonic.
pub trait PhysicalClock {
    /// The current physical time, in microseconds since the UNIX epoch.
    fn now_us(&self) -> u64;
}

impl<T: PhysicalClock + ?Sized> PhysicalClock for &T {
    fn now_us(&self) -> u64 {
        (**self).now_us()
    }
}

impl<T: PhysicalClock + ?Sized> PhysicalClock for Arc<T> {
    fn now_us(&self) -> u64 {
        (**self).now_us()
    }
}

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

/// Microseconds added to every [`SystemClock`] reading in this process (see
/// [`SystemClock::step_process_clock`]).
static SYSTEM_CLOCK_STEP_US: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

impl SystemClock {
    /// Makes every reading of the system clock in this process `step_us` microseconds later
    /// (earlier when negative) than the machine's clock: what a node on a machine whose
    /// clock is off sees, for drills and tests of clock fencing (`dsss node --clock-step-ms`).
    pub fn step_process_clock(step_us: i64) {
        SYSTEM_CLOCK_STEP_US.store(step_us, Ordering::SeqCst);
    }
}

impl PhysicalClock for SystemClock {
    /// Microseconds since the UNIX epoch. A system clock set before 1970 reads as 0; the hybrid
    /// logical clock still advances through its logical part.
    fn now_us(&self) -> u64 {
        let now_us = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since_epoch) => u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX),
            Err(_) => 0,
        };
        now_us.saturating_add_signed(SYSTEM_CLOCK_STEP_US.load(Ordering::Relaxed))
    }
}

/// A physical clock that moves only when told to, for tests.
///
/// Clones share the same time, so a test can keep one handle and give another to a [`Clock`].
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now_us: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock that reads `now_us` until it is set or advanced.
    pub fn new(now_us: u64) -> Self {
        ManualClock {
            now_us: Arc::new(AtomicU64::new(now_us)),
        }
    }

    /// Sets the time, forwards or backwards.
    pub fn set_us(&self, now_us: u64) {
        self.now_us.store(now_us, Ordering::SeqCst);
    }

    /// Moves the time forwards by `delta_us`, saturating at `u64::MAX`.
    pub fn advance_us(&self, delta_us: u64) {
        let mut current = self.now_us.load(Ordering::SeqCst);
        loop {
            let next = current.saturating_add(delta_us);
            match self.now_us.compare_exchange_weak(
                current,
                next,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }
}

impl PhysicalClock for ManualClock {
    fn now_us(&self) -> u64 {
        self.now_us.load(Ordering::SeqCst)
    }
}

/// A hybrid logical clock that reads its physical time from a [`PhysicalClock`] source: the
/// convenience form for drivers. Protocol state machines use [`HybridLogicalClock`] and take the
/// time as an argument.
#[derive(Debug, Clone)]
pub struct Clock<S: PhysicalClock> {
    core: HybridLogicalClock,
    source: S,
}

impl<S: PhysicalClock> Clock<S> {
    /// A clock reading `source`, refusing received timestamps more than `max_skew_us` ahead of
    /// it.
    pub fn new(source: S, max_skew_us: u64) -> Self {
        Clock {
            core: HybridLogicalClock::new(max_skew_us),
            source,
        }
    }

    /// A clock reading `source` that continues from an existing core, for example one made with
    /// [`HybridLogicalClock::resume`] after a restart.
    pub fn from_core(core: HybridLogicalClock, source: S) -> Self {
        Clock { core, source }
    }

    /// Timestamps a local or send event at the source's current time. See
    /// [`HybridLogicalClock::now`].
    pub fn now(&mut self) -> Timestamp {
        let physical_now_us = self.source.now_us();
        self.core.now(physical_now_us)
    }

    /// Timestamps the receive of a message that carried `received`, at the source's current
    /// time. See [`HybridLogicalClock::update`].
    pub fn update(&mut self, received: Timestamp) -> Result<Timestamp, ClockSkewError> {
        let physical_now_us = self.source.now_us();
        self.core.update(received, physical_now_us)
    }

    /// The last timestamp this clock returned.
    pub fn last(&self) -> Timestamp {
        self.core.last()
    }

    /// The pure core, for example to persist its last timestamp.
    pub fn core(&self) -> &HybridLogicalClock {
        &self.core
    }

    /// The physical time source.
    pub fn source(&self) -> &S {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW_US: u64 = 1_000;

    fn at(physical_us: u64, logical: u32) -> Timestamp {
        Timestamp::new(physical_us, logical)
    }

    fn clock_at(last: Timestamp) -> HybridLogicalClock {
        HybridLogicalClock::resume(last, SKEW_US).expect("test timestamps are in range")
    }

    #[test]
    fn timestamps_order_by_physical_then_logical() {
        assert!(at(1, 9) < at(2, 0));
        assert!(at(2, 0) < at(2, 1));
        assert_eq!(at(3, 3).cmp(&at(3, 3)), std::cmp::Ordering::Equal);
        assert!(Timestamp::ZERO < at(0, 1));
    }

    #[test]
    fn local_events_follow_the_paper_rules() {
        // (clock before, physical time, expected timestamp)
        let cases = [
            (at(0, 0), 100, at(100, 0)), // physical time ahead: take it, counter restarts
            (at(100, 0), 100, at(100, 1)), // physical time stalled: count
            (at(100, 4), 90, at(100, 5)), // physical time went backwards: count
            (at(100, 4), 101, at(101, 0)), // physical time moved on: counter restarts
        ];
        for (before, physical_now_us, expected) in cases {
            let mut clock = clock_at(before);
            assert_eq!(
                clock.now(physical_now_us),
                expected,
                "from {before} at {physical_now_us}"
            );
            assert_eq!(clock.last(), expected);
        }
    }

    #[test]
    fn receive_events_follow_the_paper_rules() {
        // (clock before, received, physical time, expected timestamp)
        let cases = [
            // l' == pt, above both: counter restarts.
            (at(100, 3), at(120, 9), 150, at(150, 0)),
            // l' == l == l_m: max of both counters plus one.
            (at(200, 3), at(200, 9), 150, at(200, 10)),
            (at(200, 9), at(200, 3), 150, at(200, 10)),
            // l' == l_m only: the message's counter plus one.
            (at(100, 3), at(200, 9), 150, at(200, 10)),
            // l' == l only: the local counter plus one.
            (at(200, 3), at(100, 9), 150, at(200, 4)),
            // pt equal to the larger physical part counts as that part.
            (at(150, 3), at(120, 9), 150, at(150, 4)),
        ];
        for (before, received, physical_now_us, expected) in cases {
            let mut clock = clock_at(before);
            let result = clock.update(received, physical_now_us);
            assert_eq!(
                result,
                Ok(expected),
                "{before} receiving {received} at {physical_now_us}"
            );
        }
    }

    /// Regression: the crate `hybrid-logical-clock` 0.0.2 returns (200, 0) here, a timestamp
    /// lower than the one its clock had already handed out, which would break monotonicity and
    /// causality. DSSS does not depend on that crate because of this defect.
    #[test]
    fn receive_of_older_timestamp_with_larger_counter_still_advances_past_the_local_clock() {
        let mut clock = clock_at(at(200, 5));
        let result = clock
            .update(at(150, 10), 100)
            .expect("the received timestamp is in the past");
        assert_eq!(result, at(200, 6));
        assert!(result > at(200, 5));
        assert!(result > at(150, 10));
    }

    #[test]
    fn received_timestamp_beyond_the_skew_bound_is_rejected_and_changes_nothing() {
        let mut clock = clock_at(at(500, 2));
        let before = clock.clone();
        let error = clock
            .update(at(1_000 + SKEW_US + 1, 0), 1_000)
            .expect_err("one microsecond beyond the bound");
        assert_eq!(clock, before);
        assert_eq!(error.ahead_us(), SKEW_US + 1);
        assert_eq!(error.max_skew_us, SKEW_US);
        let message = error.to_string();
        assert!(message.contains("rejected"), "{message}");
        assert!(message.contains(&format!("{}us", SKEW_US + 1)), "{message}");
    }

    #[test]
    fn received_timestamp_exactly_at_the_skew_bound_is_adopted() {
        let mut clock = clock_at(at(500, 2));
        let received = at(1_000 + SKEW_US, 7);
        assert_eq!(clock.update(received, 1_000), Ok(at(1_000 + SKEW_US, 8)));
    }

    /// After the physical clock leapt ahead and back, the clock runs ahead of it by the leap;
    /// within the skew bound it does not count as running ahead, and once physical time
    /// catches up it no longer does.
    #[test]
    fn a_clock_runs_ahead_of_physical_time_only_beyond_the_skew_bound() {
        let mut clock = clock_at(at(0, 0));
        let leap_us = 10 * SKEW_US;
        let _ = clock.now(1_000 + leap_us);
        assert_eq!(clock.runs_ahead_of(1_000), Some(leap_us));
        assert_eq!(clock.runs_ahead_of(1_000 + leap_us - SKEW_US), None);
        assert_eq!(
            clock.runs_ahead_of(1_000 + leap_us - SKEW_US - 1),
            Some(SKEW_US + 1)
        );
        assert_eq!(clock.runs_ahead_of(1_000 + 2 * leap_us), None);
    }

    #[test]
    fn logical_overflow_carries_into_the_physical_part() {
        let mut clock = clock_at(at(100, u32::MAX));
        assert_eq!(clock.now(50), at(101, 0));

        let mut clock = clock_at(at(100, 1));
        assert_eq!(clock.update(at(100, u32::MAX), 100), Ok(at(101, 0)));
    }

    #[test]
    fn physical_time_beyond_the_cap_is_capped_and_such_timestamps_are_refused() {
        let mut clock = HybridLogicalClock::new(u64::MAX);
        assert_eq!(clock.now(u64::MAX), at(PHYSICAL_US_MAX, 0));
        assert!(clock.update(at(PHYSICAL_US_MAX + 1, 0), u64::MAX).is_err());
        assert_eq!(clock.now(u64::MAX), at(PHYSICAL_US_MAX, 1));
        assert_eq!(
            HybridLogicalClock::resume(at(PHYSICAL_US_MAX + 1, 0), SKEW_US),
            Err(TimestampError::PhysicalOutOfRange {
                physical_us: PHYSICAL_US_MAX + 1
            })
        );
    }

    #[test]
    fn successor_saturates_only_at_the_very_top() {
        assert_eq!(at(7, 7).successor(), at(7, 8));
        assert_eq!(at(7, u32::MAX).successor(), at(8, 0));
        assert_eq!(at(u64::MAX, u32::MAX).successor(), at(u64::MAX, u32::MAX));
    }

    #[test]
    fn proto_conversion_round_trips_and_rejects_out_of_range_physical_time() {
        let timestamp = at(1_700_000_000_000_000, 42);
        let wire = proto::Timestamp::from(timestamp);
        assert_eq!(wire.physical_us, 1_700_000_000_000_000);
        assert_eq!(wire.logical, 42);
        assert_eq!(Timestamp::try_from(wire), Ok(timestamp));

        let corrupt = proto::Timestamp {
            physical_us: u64::MAX,
            logical: 0,
        };
        let error = Timestamp::try_from(corrupt).expect_err("beyond the cap");
        assert!(error.to_string().contains(&u64::MAX.to_string()));
    }

    #[test]
    fn clock_reads_its_source_and_survives_backward_jumps() {
        let physical = ManualClock::new(1_000);
        let mut clock = Clock::new(physical.clone(), SKEW_US);
        assert_eq!(clock.now(), at(1_000, 0));
        physical.set_us(400);
        assert_eq!(clock.now(), at(1_000, 1));
        physical.advance_us(1_000);
        assert_eq!(clock.now(), at(1_400, 0));
        assert_eq!(clock.update(at(1_400, 0)), Ok(at(1_400, 1)));
        assert!(clock.update(at(1_400 + SKEW_US + 1, 0)).is_err());
        assert_eq!(clock.last(), at(1_400, 1));
        assert_eq!(clock.source().now_us(), 1_400);
    }

    #[test]
    fn system_clock_reads_microseconds_since_the_unix_epoch() {
        // 2020-01-01T00:00:00Z in microseconds: any working system clock is past it, and a
        // reading in seconds or nanoseconds would be far off either way.
        let january_2020_us = 1_577_836_800_000_000;
        let year_2200_us = 7_258_118_400_000_000;
        let now_us = SystemClock.now_us();
        assert!(
            now_us > january_2020_us && now_us < year_2200_us,
            "{now_us}"
        );
    }
}
