//! What a node's work costs in simulated time: a disk sync and the CPU time of handling one
//! event.
//!
//! With no costs (the default) a node handles every event in no time and its disk syncs at
//! once, so every latency the simulator reports is a floor set by the network alone. With
//! costs, the kernel charges each handler call [`NodeCosts::cpu_per_event`] plus
//! [`NodeCosts::disk_sync`] for every sync the handler made, in that order:
//!
//! - a message the handler sends leaves when the work before it is done: the CPU time, plus
//!   one disk sync for every sync made before the send. A raft leader's appends, sent before
//!   its own sync, leave after the CPU time; the answers it sends after the sync leave after
//!   both, as they do from a real process;
//! - the node is busy until all of it is done: an event that comes due meanwhile waits, in
//!   order, as it waits in a real process's queue. When the node is free, the events that
//!   waited are handed to it in one run at that time (up to
//!   [`crate::simulation::EVENTS_PER_RUN_MAX`]), each told whether another follows
//!   ([`crate::Context::more_waiting`]), so that a process can make one raft round for all of
//!   them, as a production loop takes every queued event before its next round.
//!
//! A crash ends the work: the messages sent after work that was not done by then never leave
//! (they count as dropped, `sender-down`), the events that waited are lost, and the restarted
//! node starts free, on new connections (its links' order starts afresh).
//!
//! What it does not model: a crash in the middle of a handler's charged time still keeps what
//! the handler synced (the disk takes writes at once); a sync's latency does not depend on how
//! much it writes; and cores are not shared: every node has a CPU of its own, and one event's
//! CPU time is the same whatever the event.

use std::time::Duration;

/// The most one disk sync or one event may cost: beyond it a setting is surely a mistake (a
/// unit typed wrong).
pub const NODE_COST_MAX: Duration = Duration::from_secs(1);

/// What one node's work costs; see the module documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCosts {
    /// How long one disk sync (fsync) takes.
    pub disk_sync: Duration,
    /// The CPU time of handling one event (a message, a timer, the start).
    pub cpu_per_event: Duration,
}

impl NodeCosts {
    /// No costs: the network alone sets every latency.
    pub const FREE: NodeCosts = NodeCosts {
        disk_sync: Duration::ZERO,
        cpu_per_event: Duration::ZERO,
    };

    /// True when nothing costs time.
    pub fn is_free(&self) -> bool {
        self.disk_sync.is_zero() && self.cpu_per_event.is_zero()
    }

    /// How long a handler that made `syncs` disk syncs keeps its node busy.
    pub fn handler_time(&self, syncs: u64) -> Duration {
        self.cpu_per_event.saturating_add(
            self.disk_sync
                .saturating_mul(u32::try_from(syncs).unwrap_or(u32::MAX)),
        )
    }

    /// Rejects a cost beyond [`NODE_COST_MAX`], naming it.
    pub fn validate(&self) -> Result<(), String> {
        for (name, cost) in [
            ("disk sync", self.disk_sync),
            ("CPU per event", self.cpu_per_event),
        ] {
            if cost > NODE_COST_MAX {
                return Err(format!(
                    "the {name} cost of {cost:?} is beyond the bound of {NODE_COST_MAX:?}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handler_costs_its_cpu_time_and_one_sync_latency_per_sync() {
        let costs = NodeCosts {
            disk_sync: Duration::from_micros(200),
            cpu_per_event: Duration::from_micros(30),
        };
        assert_eq!(costs.handler_time(0), Duration::from_micros(30));
        assert_eq!(costs.handler_time(2), Duration::from_micros(430));
        assert!(NodeCosts::FREE.is_free());
        assert_eq!(NodeCosts::FREE.handler_time(5), Duration::ZERO);
    }

    #[test]
    fn a_cost_beyond_the_bound_is_refused_by_name() {
        let costs = NodeCosts {
            disk_sync: Duration::from_secs(2),
            cpu_per_event: Duration::ZERO,
        };
        let error = costs.validate().unwrap_err();
        assert!(error.contains("disk sync"), "{error}");
        assert!(NodeCosts::default().validate().is_ok());
    }
}
