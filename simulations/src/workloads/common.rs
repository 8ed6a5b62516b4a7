//! Small pieces the workloads share: seeds for election timeouts, uniform durations, and the
//! content hash that names an opaque message in the trace.

use std::collections::BTreeMap;
use std::time::Duration;

use dsss_raft_group::peer_clocks::CLOCK_PROBE_INTERVAL_US;
use dsss_raft_group::{ClockProbe, ClockVerdict, PeerClocks};

use crate::network::NodeId;
use crate::time::SimTime;

/// What a node knows of its peers' clocks in one raft group, as the production driver keeps
/// it: the probes it sends, the samples it takes, and when it last sent each peer something.
/// Lost on a crash, as the driver's is.
pub(crate) struct NodeClocks {
    pub(crate) clocks: PeerClocks,
    /// The node's clock when it last sent each peer a probe.
    probed_at_us: BTreeMap<u64, u64>,
}

impl NodeClocks {
    pub(crate) fn new(max_skew_us: u64) -> Self {
        NodeClocks {
            clocks: PeerClocks::new(max_skew_us),
            probed_at_us: BTreeMap::new(),
        }
    }

    /// The probe that goes with a message to `peer` now.
    pub(crate) fn probe_for(&mut self, peer: u64, now_us: u64) -> ClockProbe {
        self.probed_at_us.insert(peer, now_us);
        self.clocks.probe_for(peer, now_us)
    }

    /// The verdict on the node's clock, as the driver gives it before every tick and call:
    /// `now_us` is the node's (skewed) clock, `now` the virtual time, its monotonic clock.
    pub(crate) fn verdict(
        &mut self,
        own_id: u64,
        voters: &[u64],
        now_us: u64,
        now: SimTime,
    ) -> ClockVerdict {
        let monotonic_us = u64::try_from(now.since_start().as_micros()).unwrap_or(u64::MAX);
        self.clocks.observe_local_clock(now_us, monotonic_us);
        self.clocks.verdict(own_id, voters, now_us)
    }

    /// Probes for the voters the node sent nothing for a probe interval, as the driver sends
    /// them alone.
    pub(crate) fn due_probes(
        &mut self,
        own_id: u64,
        voters: &[u64],
        now_us: u64,
    ) -> Vec<(u64, ClockProbe)> {
        voters
            .iter()
            .copied()
            .filter(|peer| *peer != own_id)
            .filter(|peer| {
                let probed_at_us = self.probed_at_us.get(peer).copied().unwrap_or(0);
                now_us.abs_diff(probed_at_us) >= CLOCK_PROBE_INTERVAL_US
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|peer| (peer, self.probe_for(peer, now_us)))
            .collect()
    }
}

/// One run's seed mixed with a node, its incarnation and the raft group it runs (0 for the
/// only one): the seed of that incarnation's election timeouts (splitmix64 finalizer).
pub(crate) fn election_seed(run_seed: u64, node: NodeId, incarnation: u64, group: u64) -> u64 {
    let mut value = run_seed ^ node.rotate_left(32) ^ incarnation.rotate_left(48) ^ group;
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// A duration drawn uniformly from `low..=high` (`high` below `low` counts as `low`).
/// Checks the settings every simulated application instance has: think times in order,
/// shares of operations within 0..=1 and no zero timeout, naming the first setting that is
/// wrong.
pub(crate) fn validate_instance_settings(
    think_time: (Duration, Duration),
    shares: &[(&str, f64)],
    durations: &[(&str, Duration)],
) -> Result<(), String> {
    let (think_time_min, think_time_max) = think_time;
    if think_time_min > think_time_max {
        return Err(format!(
            "think_time_min {think_time_min:?} is above think_time_max {think_time_max:?}"
        ));
    }
    if let Some((name, share)) = shares
        .iter()
        .find(|(_, share)| !(0.0..=1.0).contains(share))
    {
        return Err(format!("{name} {share} is outside 0..=1"));
    }
    if let Some((name, _)) = durations.iter().find(|(_, duration)| duration.is_zero()) {
        return Err(format!("{name} is zero"));
    }
    Ok(())
}

pub(crate) fn uniform_duration(rng: &mut crate::SimRng, low: Duration, high: Duration) -> Duration {
    let low = u64::try_from(low.as_nanos()).unwrap_or(u64::MAX);
    let high = u64::try_from(high.as_nanos()).unwrap_or(u64::MAX).max(low);
    Duration::from_nanos(rng.range_inclusive(low, high))
}

/// A 64-bit FNV-1a hash of `bytes`, so the trace names a message by its content without
/// printing it.
pub(crate) fn content_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A client's tracker learns from `from` refusing its call with `error`: a NotLeader refusal
/// names the leader perhaps; any other refusal passes over `from`, as production's region
/// client passes over a member that cannot take the call. The retry goes out after the
/// client's backoff either way.
pub(crate) fn follow_refusal(
    leader: &mut dsss_wire::LeaderTracker,
    from: NodeId,
    error: &dsss_region_node::ProposeError,
) {
    match error {
        dsss_region_node::ProposeError::NotLeader { leader_hint } => {
            let _ = leader.handle_not_leader(from, *leader_hint);
        }
        _ => leader.handle_failure(from),
    }
}

/// A tracker over `members` whose first guess `rng` draws, so that clients spread over the
/// members as production's clients do by their ids.
pub(crate) fn spread_tracker(
    members: &[NodeId],
    rng: &mut crate::SimRng,
) -> dsss_wire::LeaderTracker {
    let start = rng.below(members.len() as u64);
    dsss_wire::LeaderTracker::new(members.to_vec(), start)
}

/// A simulated client's session open: which open is current, which member it went to, and
/// whether the session is open. The same for the region and the global workloads' clients;
/// they only wrap the messages and set the timers.
#[derive(Debug)]
pub(crate) struct SessionOpening {
    open: bool,
    next_open_id: u64,
    /// The member the current open went to, until it answers.
    asked: Option<NodeId>,
}

/// What a session reply means for the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SessionOpened {
    /// The session is open: calls may go.
    Open,
    /// Refused or lost: try again after a backoff.
    Retry,
    /// An answer to an earlier open, or the session is open already: nothing to do.
    Stale,
}

impl SessionOpening {
    pub(crate) fn new() -> Self {
        SessionOpening {
            open: false,
            next_open_id: 1,
            asked: None,
        }
    }

    /// Whether the region confirmed the session.
    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    /// The member to ask and the open id to ask with; a member asked before that never
    /// answered counts as failed.
    pub(crate) fn next_open(
        &mut self,
        leader: &mut dsss_wire::route::LeaderTracker,
    ) -> (NodeId, u64) {
        if let Some(silent) = self.asked.take() {
            leader.handle_failure(silent);
        }
        let target = leader.target();
        self.asked = Some(target);
        let open_id = self.next_open_id;
        self.next_open_id += 1;
        (target, open_id)
    }

    /// Takes `from`'s answer to an open.
    pub(crate) fn handle_reply(
        &mut self,
        leader: &mut dsss_wire::route::LeaderTracker,
        from: NodeId,
        reply: &dsss_region_node::SessionReply,
    ) -> SessionOpened {
        if self.open || reply.open_id + 1 != self.next_open_id {
            return SessionOpened::Stale;
        }
        self.asked = None;
        match &reply.result {
            Ok(()) => {
                self.open = true;
                leader.handle_success(from);
                SessionOpened::Open
            }
            Err(dsss_region_node::OpenSessionError::NotLeader { leader_hint }) => {
                leader.handle_not_leader(from, *leader_hint);
                SessionOpened::Retry
            }
            Err(_) => {
                leader.handle_failure(from);
                SessionOpened::Retry
            }
        }
    }
}
