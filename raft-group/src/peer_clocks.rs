//! [`PeerClocks`]: how far this node's physical clock is from its peers', and whether it is
//! too far to be trusted with timestamps.
//!
//! Every batch of raft messages carries a [`ClockProbe`]: the sender's clock when it sent the
//! batch, and an echo of the last probe it received from the receiver with how long it held
//! it. From the echo the receiver knows the round trip, measured on its own clock and so free
//! of any offset; from the sender's time and half the round trip it estimates the sender's
//! offset, with half the round trip as its uncertainty (the NTP calculation, on traffic that
//! flows anyway; an idle transport sends an empty batch now and then so that every pair of
//! members keeps measuring).
//!
//! The verdict ([`ClockVerdict`]) rests on a majority, as everything in a raft group does: a
//! node whose clock is within the bound of enough peers to make a majority with itself is
//! [`ClockVerdict::Within`]; a node that knows of peers beyond the bound and cannot make
//! such a majority is [`ClockVerdict::Beyond`] and must stop stamping and leading; a node
//! that has not heard enough yet is [`ClockVerdict::Unknown`]. A peer counts as beyond only
//! when it is beyond even after the uncertainty is taken off, and as within when it may be
//! within, so a slow network never fences a node. Lying peers can fence a node only when they
//! are a majority of the group, which could stop the group anyway.
//!
//! A clock that steps (an operator or a time daemon setting it) is caught at once, before any
//! probe: the driver also gives the node's monotonic time ([`PeerClocks::observe_local_clock`]),
//! and a jump of the wall clock against it by more than half the bound drops every sample
//! (measured against the old clock) and makes the verdict [`ClockVerdict::Stepped`], which
//! fences like [`ClockVerdict::Beyond`], until fresh samples make it within again. Without
//! this a node would stamp calls with its new time for up to a probe interval.
//!
//! Sans-IO: every method takes the time; the driver or the simulator reads the clock.

use std::collections::HashMap;

/// How long a peer's last sample counts, in microseconds: a peer not heard from for longer
/// (down, cut off) neither vouches for this node's clock nor accuses it.
pub const CLOCK_SAMPLE_FRESH_US: u64 = 10_000_000;

/// The longest round trip a sample may come from, in microseconds. Longer ones (an echo from
/// before a long pause) say too little to count: their uncertainty is half of it.
pub const CLOCK_ROUND_TRIP_US_MAX: u64 = 10_000_000;

/// How often an idle transport sends an empty batch so that its peer can measure, in
/// microseconds.
pub const CLOCK_PROBE_INTERVAL_US: u64 = 1_000_000;

/// The smallest jump of the wall clock against the monotonic one that counts as a step, in
/// microseconds, whatever the bound: a thread preempted between its two clock readings must
/// not look like a step.
pub const CLOCK_STEP_US_MIN: u64 = 50_000;

/// The most peers whose clocks one node follows: the most members a raft group may have.
pub const CLOCK_PEERS_MAX: usize = 16;

/// What one batch of raft messages says about its sender's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockProbe {
    /// The sender's physical clock when it sent the batch, in microseconds since the UNIX
    /// epoch.
    pub sent_at_us: u64,
    /// `sent_at_us` of the last probe the sender received from the receiver; 0 when none.
    pub echo_sent_at_us: u64,
    /// How long the sender held that probe before this one left, on the sender's clock.
    pub echo_held_us: u64,
}

/// One measurement of a peer's clock against this node's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockSample {
    /// The peer's clock minus this node's, in microseconds: positive when the peer is ahead.
    pub offset_us: i64,
    /// How far the true offset may be from `offset_us`: half the round trip.
    pub uncertainty_us: u64,
    /// When this node took the sample, on its own clock.
    pub taken_at_us: u64,
}

impl ClockSample {
    /// True when the offset is beyond `bound_us` even with the uncertainty taken off.
    fn surely_beyond(&self, bound_us: u64) -> bool {
        self.offset_us.unsigned_abs() > bound_us.saturating_add(self.uncertainty_us)
    }
}

/// Whether this node's clock is close enough to its group's to stamp time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClockVerdict {
    /// Not enough fresh samples to tell either way.
    Unknown,
    /// A majority of the group (this node included) is within the bound of this node.
    Within,
    /// This node cannot make a majority with peers within the bound, and these peers are
    /// beyond it.
    Beyond {
        /// The peers beyond the bound and their samples, by node id.
        peers: Vec<(u64, ClockSample)>,
    },
    /// This node's wall clock jumped against its monotonic clock by more than half the bound,
    /// and no majority has vouched for it since.
    Stepped {
        /// How far it jumped, in microseconds: positive forwards.
        step_us: i64,
    },
}

impl ClockVerdict {
    /// True when the node must fence itself: [`ClockVerdict::Beyond`] or
    /// [`ClockVerdict::Stepped`].
    pub fn fences(&self) -> bool {
        matches!(
            self,
            ClockVerdict::Beyond { .. } | ClockVerdict::Stepped { .. }
        )
    }

    /// The offset of this node's clock from the group's as the verdict sees it, in
    /// microseconds: the negated median offset of the peers beyond the bound (positive when
    /// this node is ahead), or the step; 0 unless fenced.
    pub fn own_offset_us(&self) -> i64 {
        match self {
            ClockVerdict::Stepped { step_us } => *step_us,
            ClockVerdict::Beyond { peers } if !peers.is_empty() => {
                let mut offsets: Vec<i64> = peers.iter().map(|(_, s)| s.offset_us).collect();
                offsets.sort_unstable();
                offsets[offsets.len() / 2].saturating_neg()
            }
            _ => 0,
        }
    }
}

/// The last probe heard from a peer, kept to echo it back.
#[derive(Clone, Copy, Debug)]
struct Heard {
    sent_at_us: u64,
    received_at_us: u64,
}

/// This node's view of its peers' clocks.
#[derive(Clone, Debug)]
pub struct PeerClocks {
    max_skew_us: u64,
    heard: HashMap<u64, Heard>,
    samples: HashMap<u64, ClockSample>,
    /// The wall clock minus the monotonic one at the last observation.
    local_offset_us: Option<i128>,
    /// Set by a step of the wall clock until a majority vouches for it again.
    stepped_by_us: Option<i64>,
}

impl PeerClocks {
    /// No samples yet; clocks more than `max_skew_us` apart are beyond the bound.
    pub fn new(max_skew_us: u64) -> Self {
        PeerClocks {
            max_skew_us,
            heard: HashMap::new(),
            samples: HashMap::new(),
            local_offset_us: None,
            stepped_by_us: None,
        }
    }

    /// Takes this node's wall clock and monotonic clock, read together (the driver does before
    /// every input that may stamp time). Returns the step, when the wall clock jumped against
    /// the monotonic one by more than half the bound (and at least [`CLOCK_STEP_US_MIN`])
    /// since the last call: every sample and
    /// echo is dropped then, and the verdict is [`ClockVerdict::Stepped`] until a majority
    /// vouches for the new clock.
    pub fn observe_local_clock(&mut self, wall_us: u64, monotonic_us: u64) -> Option<i64> {
        let offset_us = i128::from(wall_us) - i128::from(monotonic_us);
        let previous = self.local_offset_us.replace(offset_us)?;
        let step_us = offset_us - previous;
        if step_us.unsigned_abs() <= u128::from((self.max_skew_us / 2).max(CLOCK_STEP_US_MIN)) {
            return None;
        }
        let step_us =
            i64::try_from(step_us).unwrap_or(if step_us < 0 { i64::MIN } else { i64::MAX });
        self.heard.clear();
        self.samples.clear();
        self.stepped_by_us = Some(step_us);
        Some(step_us)
    }

    /// The bound, in microseconds.
    pub fn max_skew_us(&self) -> u64 {
        self.max_skew_us
    }

    /// The probe for a batch to `peer` sent at `now_us`.
    pub fn probe_for(&self, peer: u64, now_us: u64) -> ClockProbe {
        match self.heard.get(&peer) {
            Some(heard) => ClockProbe {
                sent_at_us: now_us,
                echo_sent_at_us: heard.sent_at_us,
                echo_held_us: now_us.saturating_sub(heard.received_at_us),
            },
            None => ClockProbe {
                sent_at_us: now_us,
                ..ClockProbe::default()
            },
        }
    }

    /// Takes the probe of a batch from `peer` received at `now_us`, and returns the sample
    /// it gave, if any: none when it echoes nothing, when the round trip it implies is
    /// negative (a clock stepped back meanwhile, or a lie) or longer than
    /// [`CLOCK_ROUND_TRIP_US_MAX`], or when [`CLOCK_PEERS_MAX`] other peers are followed.
    pub fn observe(&mut self, peer: u64, probe: ClockProbe, now_us: u64) -> Option<ClockSample> {
        if probe.sent_at_us == 0
            || (!self.heard.contains_key(&peer) && self.heard.len() >= CLOCK_PEERS_MAX)
        {
            return None;
        }
        self.heard.insert(
            peer,
            Heard {
                sent_at_us: probe.sent_at_us,
                received_at_us: now_us,
            },
        );
        if probe.echo_sent_at_us == 0 {
            return None;
        }
        let round_trip_us = now_us
            .checked_sub(probe.echo_sent_at_us)?
            .checked_sub(probe.echo_held_us)?;
        if round_trip_us > CLOCK_ROUND_TRIP_US_MAX {
            return None;
        }
        let half_trip_us = round_trip_us / 2;
        // The peer's clock read `sent_at_us` about half a round trip before now.
        let peer_now_us = i128::from(probe.sent_at_us) + i128::from(half_trip_us);
        let offset_us = peer_now_us - i128::from(now_us);
        let sample = ClockSample {
            offset_us: i64::try_from(offset_us).unwrap_or(if offset_us < 0 {
                i64::MIN
            } else {
                i64::MAX
            }),
            uncertainty_us: half_trip_us,
            taken_at_us: now_us,
        };
        self.samples.insert(peer, sample);
        Some(sample)
    }

    /// Forgets a peer (it left the group).
    pub fn forget(&mut self, peer: u64) {
        self.heard.remove(&peer);
        self.samples.remove(&peer);
    }

    /// The fresh samples at `now_us`, by node id, in id order.
    pub fn fresh_samples(&self, now_us: u64) -> Vec<(u64, ClockSample)> {
        let mut fresh: Vec<(u64, ClockSample)> = self
            .samples
            .iter()
            .filter(|(_, sample)| {
                now_us.saturating_sub(sample.taken_at_us) <= CLOCK_SAMPLE_FRESH_US
            })
            .map(|(peer, sample)| (*peer, *sample))
            .collect();
        fresh.sort_unstable_by_key(|(peer, _)| *peer);
        fresh
    }

    /// The verdict at `now_us` for node `own_id` in a group whose voters are `voters`. A
    /// verdict of within clears a step ([`PeerClocks::observe_local_clock`]).
    pub fn verdict(&mut self, own_id: u64, voters: &[u64], now_us: u64) -> ClockVerdict {
        let majority = voters.len() / 2 + 1;
        let mut within = usize::from(voters.contains(&own_id) || voters.is_empty());
        let mut beyond = Vec::new();
        for (peer, sample) in self.fresh_samples(now_us) {
            if peer == own_id || !voters.contains(&peer) {
                continue;
            }
            if sample.surely_beyond(self.max_skew_us) {
                beyond.push((peer, sample));
            } else {
                within += 1;
            }
        }
        if within >= majority {
            self.stepped_by_us = None;
            ClockVerdict::Within
        } else if !beyond.is_empty() {
            ClockVerdict::Beyond { peers: beyond }
        } else if let Some(step_us) = self.stepped_by_us {
            ClockVerdict::Stepped { step_us }
        } else {
            ClockVerdict::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW_US: u64 = 250_000;
    const HOUR_US: u64 = 3_600_000_000;
    const START_US: u64 = 1_800_000_000_000_000;
    const ONE_WAY_US: u64 = 20_000;

    /// Node `x` (clock at `x_at_us`) sends a probe to `y`, whose clock is `y_ahead_us` ahead
    /// of x's (negative: behind); `y` answers 5 ms later; each way takes 20 ms. Returns x's
    /// sample of y.
    fn exchange(
        (x_id, x): (u64, &mut PeerClocks),
        (y_id, y): (u64, &mut PeerClocks),
        x_at_us: u64,
        y_ahead_us: i64,
    ) -> ClockSample {
        let held_us = 5_000;
        let y_clock = |x_time: u64| x_time.checked_add_signed(y_ahead_us).expect("time");
        let to_y = x.probe_for(y_id, x_at_us);
        y.observe(x_id, to_y, y_clock(x_at_us + ONE_WAY_US));
        let to_x = y.probe_for(x_id, y_clock(x_at_us + ONE_WAY_US + held_us));
        x.observe(y_id, to_x, x_at_us + 2 * ONE_WAY_US + held_us)
            .expect("an echoed probe gives a sample")
    }

    #[test]
    fn a_round_trip_measures_the_offset_within_half_the_trip() {
        let mut a = PeerClocks::new(SKEW_US);
        let mut b = PeerClocks::new(SKEW_US);
        let sample = exchange((1, &mut a), (2, &mut b), START_US, 70_000);
        assert_eq!(sample.uncertainty_us, ONE_WAY_US);
        assert_eq!(sample.offset_us, 70_000);
        let sample = exchange((2, &mut b), (1, &mut a), START_US + 70_000, -70_000);
        assert_eq!(sample.offset_us, -70_000);
    }

    #[test]
    fn a_probe_without_an_echo_or_with_an_impossible_trip_gives_no_sample() {
        let mut a = PeerClocks::new(SKEW_US);
        let first = ClockProbe {
            sent_at_us: START_US,
            ..ClockProbe::default()
        };
        assert_eq!(a.observe(2, first, START_US), None);
        // The echo claims a hold longer than the time since a sent it: a negative trip.
        let lying = ClockProbe {
            sent_at_us: START_US,
            echo_sent_at_us: START_US,
            echo_held_us: 10 * HOUR_US,
        };
        assert_eq!(a.observe(2, lying, START_US + 1_000), None);
        let stale = ClockProbe {
            sent_at_us: START_US,
            echo_sent_at_us: START_US - CLOCK_ROUND_TRIP_US_MAX - 1,
            echo_held_us: 0,
        };
        assert_eq!(a.observe(2, stale, START_US), None);
        let from_the_far_future = ClockProbe {
            sent_at_us: u64::MAX,
            echo_sent_at_us: START_US,
            echo_held_us: 0,
        };
        let sample = a
            .observe(2, from_the_far_future, START_US + 10)
            .expect("sample");
        assert!(sample.offset_us > 0);
        assert_eq!(
            a.verdict(1, &[1, 2, 3], START_US),
            ClockVerdict::Beyond {
                peers: vec![(2, sample)]
            }
        );
    }

    #[test]
    fn a_node_an_hour_ahead_is_beyond_and_its_peers_are_within() {
        let ahead = HOUR_US as i64;
        let (mut a, mut b, mut c) = (
            PeerClocks::new(SKEW_US),
            PeerClocks::new(SKEW_US),
            PeerClocks::new(SKEW_US),
        );
        // Node 1 is an hour ahead of nodes 2 and 3, whose clocks agree.
        exchange((2, &mut b), (1, &mut a), START_US, ahead);
        exchange((3, &mut c), (1, &mut a), START_US, ahead);
        exchange(
            (1, &mut a),
            (2, &mut b),
            START_US + HOUR_US + 100_000,
            -ahead,
        );
        exchange(
            (1, &mut a),
            (3, &mut c),
            START_US + HOUR_US + 100_000,
            -ahead,
        );
        exchange((2, &mut b), (3, &mut c), START_US + 200_000, 0);
        exchange((3, &mut c), (2, &mut b), START_US + 200_000, 0);
        let now = START_US + 300_000;
        let voters = [1, 2, 3];
        let verdict = a.verdict(1, &voters, now + HOUR_US);
        assert!(verdict.fences(), "{verdict:?}");
        assert_eq!(verdict.own_offset_us(), ahead);
        assert_eq!(b.verdict(2, &voters, now), ClockVerdict::Within);
        assert_eq!(c.verdict(3, &voters, now), ClockVerdict::Within);
    }

    #[test]
    fn the_verdict_needs_a_majority_and_fresh_samples() {
        let mut own = PeerClocks::new(SKEW_US);
        let mut peer = PeerClocks::new(SKEW_US);
        exchange((1, &mut own), (2, &mut peer), START_US, 0);
        // Itself and node 2 make two of three.
        assert_eq!(own.verdict(1, &[1, 2, 3], START_US), ClockVerdict::Within);
        // Two of five is not a majority, and nobody accuses it.
        assert_eq!(
            own.verdict(1, &[1, 2, 3, 4, 5], START_US),
            ClockVerdict::Unknown
        );
        // A sole member is its own majority.
        assert_eq!(
            PeerClocks::new(SKEW_US).verdict(1, &[1], START_US),
            ClockVerdict::Within
        );
        // Samples go stale.
        let later = START_US + CLOCK_SAMPLE_FRESH_US + 100_000;
        assert_eq!(own.verdict(1, &[1, 2, 3], later), ClockVerdict::Unknown);
        // A peer that left no longer counts.
        own.forget(2);
        assert_eq!(own.verdict(1, &[1, 2, 3], START_US), ClockVerdict::Unknown);
    }

    #[test]
    fn two_members_beyond_each_other_with_the_third_away_both_stop() {
        let mut a = PeerClocks::new(SKEW_US);
        let mut b = PeerClocks::new(SKEW_US);
        exchange((1, &mut a), (2, &mut b), START_US, HOUR_US as i64);
        exchange(
            (2, &mut b),
            (1, &mut a),
            START_US + HOUR_US,
            -(HOUR_US as i64),
        );
        assert!(a.verdict(1, &[1, 2, 3], START_US).fences());
        assert!(b.verdict(2, &[1, 2, 3], START_US + HOUR_US).fences());
    }

    #[test]
    fn a_slow_network_does_not_make_a_peer_beyond() {
        let mut a = PeerClocks::new(SKEW_US);
        let mut b = PeerClocks::new(SKEW_US);
        // b is 300 ms ahead, but the round trip is 1 s: it may be within 250 ms.
        let to_b = a.probe_for(2, START_US);
        b.observe(1, to_b, START_US + 500_000 + 300_000);
        let back = b.probe_for(1, START_US + 500_000 + 300_000);
        let sample = a.observe(2, back, START_US + 1_000_000).expect("sample");
        assert_eq!(sample.uncertainty_us, 500_000);
        assert_eq!(sample.offset_us, 300_000);
        assert_eq!(
            a.verdict(1, &[1, 2, 3], START_US + 1_000_000),
            ClockVerdict::Within
        );
    }

    #[test]
    fn a_node_back_within_the_bound_is_within_again() {
        let mut a = PeerClocks::new(SKEW_US);
        let mut b = PeerClocks::new(SKEW_US);
        exchange((1, &mut a), (2, &mut b), START_US, HOUR_US as i64);
        assert!(a.verdict(1, &[1, 2, 3], START_US).fences());
        exchange((1, &mut a), (2, &mut b), START_US + 1_000_000, 0);
        assert_eq!(
            a.verdict(1, &[1, 2, 3], START_US + 1_000_000),
            ClockVerdict::Within
        );
    }

    #[test]
    fn at_most_clock_peers_max_peers_are_followed() {
        let mut a = PeerClocks::new(SKEW_US);
        let probe = ClockProbe {
            sent_at_us: START_US,
            echo_sent_at_us: START_US,
            echo_held_us: 0,
        };
        for peer in 0..CLOCK_PEERS_MAX as u64 {
            assert!(a.observe(peer + 10, probe, START_US + 10).is_some());
        }
        assert_eq!(a.observe(1_000, probe, START_US + 10), None);
        assert_eq!(a.fresh_samples(START_US + 10).len(), CLOCK_PEERS_MAX);
    }
}

#[cfg(test)]
mod step_tests {
    use super::*;

    #[test]
    fn a_step_of_the_wall_clock_fences_until_a_majority_vouches_again() {
        let skew_us = 250_000;
        let mut clocks = PeerClocks::new(skew_us);
        let start = 1_800_000_000_000_000;
        assert_eq!(clocks.observe_local_clock(start, 5_000), None);
        // Drift and small corrections within half the bound are no step.
        assert_eq!(
            clocks.observe_local_clock(start + 1_000_000 + 100_000, 1_005_000),
            None
        );
        let probe = ClockProbe {
            sent_at_us: start + 1_100_000,
            echo_sent_at_us: start + 1_100_000,
            echo_held_us: 0,
        };
        clocks.observe(2, probe, start + 1_100_000);
        assert_eq!(
            clocks.verdict(1, &[1, 2, 3], start + 1_100_000),
            ClockVerdict::Within
        );
        // An hour forwards, between two readings 10 ms apart.
        let hour = 3_600_000_000;
        let stepped = start + 1_110_000 + hour;
        assert_eq!(
            clocks.observe_local_clock(stepped, 1_015_000),
            Some(hour as i64)
        );
        assert!(clocks.fresh_samples(stepped).is_empty());
        let verdict = clocks.verdict(1, &[1, 2, 3], stepped);
        assert_eq!(
            verdict,
            ClockVerdict::Stepped {
                step_us: hour as i64
            }
        );
        assert!(verdict.fences());
        assert_eq!(verdict.own_offset_us(), hour as i64);
        // Its peers' probes then say how far off it is.
        let back = ClockProbe {
            sent_at_us: start + 1_200_000,
            echo_sent_at_us: 0,
            echo_held_us: 0,
        };
        assert_eq!(clocks.observe(2, back, stepped + 90_000), None);
        let answer = clocks.probe_for(2, stepped + 95_000);
        assert_eq!(answer.echo_sent_at_us, start + 1_200_000);
        // Once a majority vouches for it (the clock stepped back, say), the step is forgotten.
        let vouching = ClockProbe {
            sent_at_us: stepped + 100_000,
            echo_sent_at_us: stepped + 95_000,
            echo_held_us: 1_000,
        };
        clocks.observe(3, vouching, stepped + 101_000);
        assert_eq!(
            clocks.verdict(1, &[1, 2, 3], stepped + 101_000),
            ClockVerdict::Within
        );
        clocks.forget(3);
        assert_eq!(
            clocks.verdict(1, &[1, 2, 3], stepped + 101_000),
            ClockVerdict::Unknown
        );
    }
}
