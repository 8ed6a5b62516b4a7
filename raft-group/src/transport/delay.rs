//! WAN delay emulation: what lets a cluster on one machine behave like one spread over
//! regions (docs/design.md section 4, `dsss up`).
//!
//! A [`DelayLine`] belongs to one sender and one destination. Every message gets a send time
//! `max(enqueued + sampled delay, previous send time)`: the delay is the link's one-way delay
//! plus or minus up to its jitter, drawn uniformly, and the maximum keeps the destination's
//! messages in the order they were queued, as a TCP connection over a real WAN would. The
//! sender waits until the send time, then sends over loopback.

use std::time::{Duration, Instant};

/// The longest one-way delay a line accepts, in microseconds: topology files allow up to
/// 5 s plus jitter, and a longer delay would only hide a misconfiguration.
pub const DELAY_US_MAX: u64 = 10_000_000;

/// The delay of one link: `one_way_us` plus or minus up to `jitter_us`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OneWayDelay {
    /// The typical one-way delay.
    pub one_way_us: u64,
    /// The largest deviation from `one_way_us`; clamped to `one_way_us`.
    pub jitter_us: u64,
}

/// The send times of the messages from one sender to one destination. See the module
/// documentation.
#[derive(Clone, Debug)]
pub struct DelayLine {
    delay: Option<OneWayDelay>,
    random_state: u64,
    last_send_at: Option<Instant>,
}

impl DelayLine {
    /// A line with `delay` (no delay when `None`), whose jitter is drawn from `seed`.
    pub fn new(delay: Option<OneWayDelay>, seed: u64) -> Self {
        DelayLine {
            delay,
            random_state: seed,
            last_send_at: None,
        }
    }

    /// A line that sends at once.
    pub fn off() -> Self {
        DelayLine::new(None, 0)
    }

    /// The delay of the line, if it has one.
    pub fn delay(&self) -> Option<OneWayDelay> {
        self.delay
    }

    /// Changes the delay (the destination moved to another region); the order of the
    /// messages already timed is kept.
    pub fn set_delay(&mut self, delay: Option<OneWayDelay>) {
        self.delay = delay;
    }

    /// When a message queued at `enqueued_at` may leave: never before the previous message of
    /// this line.
    pub fn send_at(&mut self, enqueued_at: Instant) -> Instant {
        if self.delay.is_none() {
            return enqueued_at;
        }
        let mut send_at = enqueued_at + self.sample();
        if let Some(last) = self.last_send_at {
            send_at = send_at.max(last);
        }
        self.last_send_at = Some(send_at);
        send_at
    }

    /// How long an answer to a call sent over this line travels back: the link's one-way delay
    /// with jitter, drawn afresh (zero without a delay). Answers are not kept in order: each
    /// call's answer travels on its own, and what they carry (acknowledged points) is
    /// cumulative.
    pub fn answer_delay(&mut self) -> Duration {
        if self.delay.is_none() {
            return Duration::ZERO;
        }
        self.sample()
    }

    /// One delay drawn from the line's link; the line has one.
    fn sample(&mut self) -> Duration {
        let delay = self.delay.unwrap_or_default();
        let one_way_us = delay.one_way_us.min(DELAY_US_MAX);
        let jitter_us = delay.jitter_us.min(one_way_us);
        let spread = 2 * jitter_us + 1;
        Duration::from_micros(one_way_us - jitter_us + self.next_random() % spread)
    }

    /// SplitMix64: a small, well mixed generator; jitter needs no more.
    fn next_random(&mut self) -> u64 {
        self.random_state = self.random_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.random_state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }
}

/// Below this, a wait is not worth a timer: tokio's timer fires on whole milliseconds, so a
/// shorter wait would end up to a millisecond later than asked (further from the emulated
/// delay than sending at once), and it costs the runtime a wake-up per message. Delays within
/// a region (0.2 ms in `local.toml`) are sent at once; delays between regions are waited for.
pub const WAIT_US_MIN: u64 = 500;

/// Waits until `send_at`. A send time that has come already, or that is less than
/// [`WAIT_US_MIN`] away, returns at once: the timer driver's resolution (a millisecond) would
/// otherwise add to every message sent without WAN emulation, or within a region.
pub async fn wait_until(send_at: Instant) {
    if needs_timer(send_at, Instant::now()) {
        tokio::time::sleep_until(send_at.into()).await;
    }
}

/// Whether a message due at `send_at` waits for a timer at `now`.
fn needs_timer(send_at: Instant, now: Instant) -> bool {
    send_at.saturating_duration_since(now) >= Duration::from_micros(WAIT_US_MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_waits_of_half_a_millisecond_or_more_take_a_timer() {
        let now = Instant::now();
        assert!(!needs_timer(now, now));
        assert!(!needs_timer(now - Duration::from_millis(1), now));
        // A delay within a region of local.toml.
        assert!(!needs_timer(now + Duration::from_micros(250), now));
        assert!(!needs_timer(
            now + Duration::from_micros(WAIT_US_MIN - 1),
            now
        ));
        assert!(needs_timer(now + Duration::from_micros(WAIT_US_MIN), now));
        // A delay between regions.
        assert!(needs_timer(now + Duration::from_millis(20), now));
    }

    #[test]
    fn a_line_without_delay_sends_at_once() {
        let mut line = DelayLine::off();
        let now = Instant::now();
        assert_eq!(line.send_at(now), now);
    }

    #[test]
    fn delays_stay_within_the_jitter_and_keep_the_order() {
        let delay = OneWayDelay {
            one_way_us: 20_000,
            jitter_us: 5_000,
        };
        let mut line = DelayLine::new(Some(delay), 7);
        let start = Instant::now();
        let mut previous = start;
        let mut distinct = std::collections::BTreeSet::new();
        for step in 0..1_000u64 {
            // Messages queued 100 us apart: jitter larger than the gap would reorder them
            // without the maximum.
            let enqueued = start + Duration::from_micros(step * 100);
            let send_at = line.send_at(enqueued);
            let delay_us = send_at.duration_since(enqueued).as_micros() as u64;
            assert!(
                send_at >= previous,
                "message {step} overtakes the one before"
            );
            assert!(
                delay_us >= 15_000,
                "message {step} left after {delay_us} us"
            );
            assert!(
                delay_us <= 25_000 + 5_000,
                "message {step} left after {delay_us} us"
            );
            distinct.insert(delay_us);
            previous = send_at;
        }
        assert!(distinct.len() > 10, "the jitter varies the delay");
    }

    #[test]
    fn answers_travel_back_over_the_links_delay_and_not_without_one() {
        assert_eq!(DelayLine::off().answer_delay(), Duration::ZERO);
        let delay = OneWayDelay {
            one_way_us: 20_000,
            jitter_us: 1_000,
        };
        let mut line = DelayLine::new(Some(delay), 3);
        for _ in 0..100 {
            let delay_us = line.answer_delay().as_micros();
            assert!((19_000..=21_000).contains(&delay_us), "{delay_us}");
        }
    }

    #[test]
    fn jitter_larger_than_the_delay_is_clamped() {
        let delay = OneWayDelay {
            one_way_us: 1_000,
            jitter_us: 50_000,
        };
        let mut line = DelayLine::new(Some(delay), 1);
        let now = Instant::now();
        for _ in 0..100 {
            let mut fresh = line.clone();
            fresh.last_send_at = None;
            let delay_us = fresh.send_at(now).duration_since(now).as_micros();
            assert!(delay_us <= 2_000, "{delay_us}");
            line.next_random();
        }
    }
}
