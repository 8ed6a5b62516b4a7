//! When a leader that is not the topology's preferred replica hands leadership back to it.
//!
//! The preferred leader is where the operator placed the coordinator's leader because the
//! order costs least there (on `global.toml`, the replica with the shortest round trips to a
//! quorum and to the regions). After a failover another replica leads, and raft alone never
//! moves leadership back: a replica that restarts, catches up and hears heartbeats never
//! campaigns. Every global call then pays the longer path for as long as the process lives.
//!
//! So a leader that is not the preferred replica hands leadership back (raft's leader
//! transfer) once the preferred replica has been a healthy follower for a while:
//! - it has held, for [`READY_FOR_ELECTION_TIMEOUTS`] election timeouts without a break,
//!   every entry the leader held half an election timeout before (the leader appends every
//!   epoch, so "the whole log" is never true of a follower a round trip away; what it held a
//!   while ago is, unless the follower lags or is cut off), the leader replicates to it
//!   steadily, and it answered the leader within the last election timeout (raft clears its
//!   "recently active" flag at every check of the quorum, once per election timeout, and a
//!   live follower sets it again at its next heartbeat answer: it is not true at every tick);
//! - its clock is within the skew bound of the leader's, as the leader's fresh samples say (a
//!   replica whose clock is fenced sends no vote requests, so a transfer to it would only
//!   hold proposals until the transfer times out).
//!
//! A transfer drops proposals until it completes (about a round trip to the preferred replica
//! and the vote's round trip), and regions resend their batches. A transfer that does not
//! take (the preferred replica failed meanwhile, or judges its own clock otherwise) is
//! retried after [`RETRY_AFTER_ELECTION_TIMEOUTS`] election timeouts, doubled after each
//! attempt up to [`RETRY_AFTER_ELECTION_TIMEOUTS_MAX`]: a preferred replica that keeps
//! failing costs at most one election timeout of held proposals in each such interval.
//!
//! Sans-IO: the node feeds it ticks and what raft and the clock samples say.

use dsss_raft_group::FollowerProgress;

/// Election timeouts the preferred replica must stay ready before the first transfer.
pub const READY_FOR_ELECTION_TIMEOUTS: u64 = 2;
/// Election timeouts between the first transfer and the next, if the first did not take.
pub const RETRY_AFTER_ELECTION_TIMEOUTS: u64 = 4;
/// The longest wait between two transfers, in election timeouts.
pub const RETRY_AFTER_ELECTION_TIMEOUTS_MAX: u64 = 64;

/// What the leader knows of the preferred replica at one tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreferredReplica {
    /// What raft's progress says of it (`RaftGroup::follower_progress`); `None` when the
    /// leader knows nothing of it.
    pub progress: Option<FollowerProgress>,
    /// Whether a fresh sample puts the replica's clock within the skew bound of the leader's.
    pub clock_within_bound: bool,
}

/// One leadership's policy for handing leadership back; a new leadership starts a new one.
#[derive(Clone, Debug)]
pub struct LeadershipReturn {
    election_tick: u64,
    /// The tick and the leader's last index at the newest mark, and the index at the mark
    /// before it (what the preferred replica must hold).
    mark: (u64, u64),
    must_hold_through: Option<u64>,
    heard_at_tick: Option<u64>,
    ready_since_tick: Option<u64>,
    attempts: u32,
    next_attempt_tick: u64,
}

impl LeadershipReturn {
    /// The policy of a leadership that began at `tick`, with the leader's log ending at
    /// `last_index`, in a group whose election timeout is `election_tick` ticks.
    pub fn new(tick: u64, last_index: u64, election_tick: u64) -> Self {
        LeadershipReturn {
            election_tick: election_tick.max(1),
            mark: (tick, last_index),
            must_hold_through: None,
            heard_at_tick: None,
            ready_since_tick: None,
            attempts: 0,
            next_attempt_tick: 0,
        }
    }

    /// Transfers started so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Called on every tick of the leader: true when it is time to hand leadership to the
    /// preferred replica (the caller then starts the transfer).
    pub fn on_tick(&mut self, tick: u64, last_index: u64, preferred: PreferredReplica) -> bool {
        let mark_interval = (self.election_tick / 2).max(1);
        if tick >= self.mark.0.saturating_add(mark_interval) {
            self.must_hold_through = Some(self.mark.1);
            self.mark = (tick, last_index);
        }
        if preferred
            .progress
            .is_some_and(|progress| progress.heard_recently)
        {
            self.heard_at_tick = Some(tick);
        }
        let heard = self
            .heard_at_tick
            .is_some_and(|heard_at| tick.saturating_sub(heard_at) <= self.election_tick);
        let through = preferred
            .progress
            .and_then(|progress| progress.replicated_through);
        let ready = preferred.clock_within_bound
            && heard
            && match (through, self.must_hold_through) {
                (Some(through), Some(needed)) => through >= needed,
                _ => false,
            };
        if !ready {
            self.ready_since_tick = None;
            return false;
        }
        let since = *self.ready_since_tick.get_or_insert(tick);
        let ready_for = READY_FOR_ELECTION_TIMEOUTS * self.election_tick;
        if tick.saturating_sub(since) < ready_for || tick < self.next_attempt_tick {
            return false;
        }
        let doublings = self.attempts.min(4);
        let retry_after = (RETRY_AFTER_ELECTION_TIMEOUTS << doublings)
            .min(RETRY_AFTER_ELECTION_TIMEOUTS_MAX)
            .saturating_mul(self.election_tick);
        self.attempts = self.attempts.saturating_add(1);
        self.next_attempt_tick = tick.saturating_add(retry_after);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ELECTION_TICK: u64 = 10;

    fn healthy(through: u64) -> PreferredReplica {
        PreferredReplica {
            progress: Some(FollowerProgress {
                replicated_through: Some(through),
                heard_recently: true,
            }),
            clock_within_bound: true,
        }
    }

    /// Ticks from `from` (a log growing by one entry a tick) until the policy says to hand
    /// leadership back, the replica holding everything but the last `lag` entries.
    fn first_return(policy: &mut LeadershipReturn, from: u64, lag: u64, until: u64) -> Option<u64> {
        (from..until).find(|&tick| policy.on_tick(tick, tick, healthy(tick.saturating_sub(lag))))
    }

    #[test]
    fn a_follower_that_stays_a_few_entries_behind_is_handed_leadership_after_the_wait() {
        let mut policy = LeadershipReturn::new(0, 0, ELECTION_TICK);
        // The second mark (half an election timeout in) sets the index to hold, then two
        // election timeouts of readiness.
        let tick = first_return(&mut policy, 0, 3, 1_000).expect("handed back");
        assert_eq!(
            tick,
            ELECTION_TICK / 2 + READY_FOR_ELECTION_TIMEOUTS * ELECTION_TICK
        );
        assert_eq!(policy.attempts(), 1);
    }

    #[test]
    fn a_follower_that_lags_further_than_the_marks_is_never_handed_leadership() {
        let mut policy = LeadershipReturn::new(0, 0, ELECTION_TICK);
        assert_eq!(first_return(&mut policy, 0, 40, 10_000), None);
        assert_eq!(policy.attempts(), 0);
    }

    #[test]
    fn a_follower_whose_clock_is_off_or_that_is_not_replicated_to_is_never_handed_leadership() {
        let mut policy = LeadershipReturn::new(0, 0, ELECTION_TICK);
        for tick in 0..1_000 {
            let clock_off = PreferredReplica {
                clock_within_bound: false,
                ..healthy(tick)
            };
            assert!(!policy.on_tick(tick, tick, clock_off));
            let probed = PreferredReplica {
                progress: Some(FollowerProgress {
                    replicated_through: None,
                    heard_recently: true,
                }),
                ..healthy(tick)
            };
            assert!(!policy.on_tick(tick, tick, probed));
            let unknown = PreferredReplica {
                progress: None,
                ..healthy(tick)
            };
            assert!(!policy.on_tick(tick, tick, unknown));
        }
    }

    /// raft clears the flag once per election timeout and a live follower's next answer sets
    /// it: a follower heard once per election timeout is ready, one silent for longer is not
    /// (an idle log does not grow, so its index alone would not tell).
    #[test]
    fn a_follower_heard_once_per_election_timeout_is_ready_and_a_silent_one_is_not() {
        let heard_every = |every: u64| {
            move |tick: u64| PreferredReplica {
                progress: Some(FollowerProgress {
                    replicated_through: Some(7),
                    heard_recently: tick.is_multiple_of(every),
                }),
                clock_within_bound: true,
            }
        };
        let mut policy = LeadershipReturn::new(0, 7, ELECTION_TICK);
        let view = heard_every(ELECTION_TICK);
        assert!((0..1_000).any(|tick| policy.on_tick(tick, 7, view(tick))));
        let mut policy = LeadershipReturn::new(0, 7, ELECTION_TICK);
        let view = heard_every(3 * ELECTION_TICK);
        assert!(!(0..1_000).any(|tick| policy.on_tick(tick, 7, view(tick))));
    }

    #[test]
    fn one_tick_of_lag_restarts_the_wait() {
        let mut policy = LeadershipReturn::new(0, 0, ELECTION_TICK);
        for tick in 0..25 {
            assert!(!policy.on_tick(tick, tick, healthy(tick)));
        }
        assert!(!policy.on_tick(25, 25, healthy(0)));
        let tick = first_return(&mut policy, 26, 0, 1_000).expect("handed back");
        assert_eq!(tick, 26 + READY_FOR_ELECTION_TIMEOUTS * ELECTION_TICK);
    }

    #[test]
    fn transfers_that_do_not_take_are_retried_less_and_less_often_down_to_the_bound() {
        let mut policy = LeadershipReturn::new(0, 0, ELECTION_TICK);
        let mut attempts = Vec::new();
        for tick in 0..20_000 {
            if policy.on_tick(tick, tick, healthy(tick)) {
                attempts.push(tick);
            }
        }
        let gaps: Vec<u64> = attempts.windows(2).map(|pair| pair[1] - pair[0]).collect();
        assert_eq!(gaps[..5], [40, 80, 160, 320, 640]);
        assert!(gaps[5..].iter().all(|gap| *gap == 640), "{gaps:?}");
        assert_eq!(policy.attempts() as usize, attempts.len());
    }
}
