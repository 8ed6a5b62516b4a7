//! Faults placed by a script at set times of the fault window, beside (or instead of) the
//! faults a seed draws: what a researcher's fault file asks for (`dsss sim run --faults`).
//!
//! Each fault starts `at` after the window begins and, when it has a length, ends by itself;
//! whatever still stands when the window ends is healed with everything else.

use std::time::Duration;

use dsss_topology::Topology;

use crate::network::{NetworkFaults, NodeId};

/// The most scripted faults one run takes.
pub const SCRIPTED_FAULTS_MAX: usize = 1_024;

/// What a script does to a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultScript {
    /// Packet faults in force through the whole window, instead of those the seed draws.
    pub network: Option<NetworkFaults>,
    /// The faults, in any order.
    pub faults: Vec<ScriptedFault>,
}

/// One fault of a script.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptedFault {
    /// When it begins, after the fault window starts.
    pub at: Duration,
    /// What it is.
    pub kind: ScriptedFaultKind,
}

/// The faults a script can place.
#[derive(Clone, Debug, PartialEq)]
pub enum ScriptedFaultKind {
    /// Every link between `region` and every other region is cut for `length`.
    IsolateRegion {
        /// The region's name.
        region: String,
        /// How long.
        length: Duration,
    },
    /// Every link between two regions is cut, both ways, for `length`.
    CutRegions {
        /// One region's name.
        a: String,
        /// The other's.
        b: String,
        /// How long.
        length: Duration,
    },
    /// Every link from the nodes of `from` to the nodes of `to` is cut for `length`; the other
    /// way stays up.
    CutOneWay {
        /// The sending region.
        from: String,
        /// The receiving region.
        to: String,
        /// How long.
        length: Duration,
    },
    /// A node crashes (losing what it had not synced) and restarts after `downtime`.
    CrashNode {
        /// The node's id in the topology.
        node: NodeId,
        /// How long it stays down.
        downtime: Duration,
    },
    /// Whichever node leads the coordinator at that moment crashes and restarts after
    /// `downtime` (nothing happens when no replica leads).
    CrashCoordinatorLeader {
        /// How long it stays down.
        downtime: Duration,
    },
    /// A node handles nothing for `length` while its links stay up (SIGSTOP, then SIGCONT).
    PauseNode {
        /// The node's id in the topology.
        node: NodeId,
        /// How long.
        length: Duration,
    },
    /// A node's clock steps to read `skew_us` away from true time, for the rest of the run
    /// (until the heal).
    ClockSkew {
        /// The node's id in the topology.
        node: NodeId,
        /// The skew, in microseconds, either direction.
        skew_us: i64,
    },
}

impl ScriptedFaultKind {
    /// How long the fault lasts, when it ends by itself.
    pub fn length(&self) -> Option<Duration> {
        match self {
            ScriptedFaultKind::IsolateRegion { length, .. }
            | ScriptedFaultKind::CutRegions { length, .. }
            | ScriptedFaultKind::CutOneWay { length, .. }
            | ScriptedFaultKind::PauseNode { length, .. } => Some(*length),
            ScriptedFaultKind::CrashNode { downtime, .. }
            | ScriptedFaultKind::CrashCoordinatorLeader { downtime } => Some(*downtime),
            ScriptedFaultKind::ClockSkew { .. } => None,
        }
    }
}

impl FaultScript {
    /// No scripted fault.
    pub fn none() -> Self {
        FaultScript::default()
    }

    /// Rejects a script the run cannot honour on `topology` within a window of `window`,
    /// naming the fault (by its index in the script) and what is wrong with it.
    pub fn validate(&self, topology: &Topology, window: Duration) -> Result<(), String> {
        if let Some(network) = &self.network {
            network
                .validate()
                .map_err(|error| format!("network: {error}"))?;
        }
        if self.faults.len() > SCRIPTED_FAULTS_MAX {
            return Err(format!(
                "{} scripted faults; a run takes at most {SCRIPTED_FAULTS_MAX}",
                self.faults.len()
            ));
        }
        let region = |name: &str, index: usize| -> Result<(), String> {
            if topology.regions.iter().any(|region| region.id == name) {
                Ok(())
            } else {
                Err(format!(
                    "fault {index}: region {name:?} is not in the topology (its regions: {})",
                    topology
                        .regions
                        .iter()
                        .map(|region| region.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        };
        let node = |node: NodeId, index: usize| -> Result<(), String> {
            if topology.nodes().any(|(_, known)| known.id == node) {
                Ok(())
            } else {
                Err(format!(
                    "fault {index}: node {node} is not in the topology (its nodes: {})",
                    topology
                        .nodes()
                        .map(|(_, known)| known.id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        };
        for (index, fault) in self.faults.iter().enumerate() {
            if fault.at >= window {
                return Err(format!(
                    "fault {index}: at {:?} is not within the run's {window:?} of operations",
                    fault.at
                ));
            }
            if fault.kind.length().is_some_and(|length| length.is_zero()) {
                return Err(format!("fault {index}: it lasts no time; give it a length"));
            }
            match &fault.kind {
                ScriptedFaultKind::IsolateRegion { region: name, .. } => region(name, index)?,
                ScriptedFaultKind::CutRegions { a, b, .. } => {
                    region(a, index)?;
                    region(b, index)?;
                    if a == b {
                        return Err(format!(
                            "fault {index}: cuts {a:?} from itself; name two regions"
                        ));
                    }
                }
                ScriptedFaultKind::CutOneWay { from, to, .. } => {
                    region(from, index)?;
                    region(to, index)?;
                    if from == to {
                        return Err(format!(
                            "fault {index}: cuts {from:?} from itself; name two regions"
                        ));
                    }
                }
                ScriptedFaultKind::CrashNode { node: id, .. }
                | ScriptedFaultKind::PauseNode { node: id, .. } => node(*id, index)?,
                ScriptedFaultKind::ClockSkew { node: id, skew_us } => {
                    node(*id, index)?;
                    // The guarantees assume clocks within the bound; a larger skew tests
                    // something DSSS does not promise.
                    let bound = topology.cluster.max_clock_skew_us;
                    if skew_us.unsigned_abs() > bound {
                        return Err(format!(
                            "fault {index}: a skew of {skew_us} us is beyond the topology's \
                             max_clock_skew of {bound} us, which the guarantees assume"
                        ));
                    }
                }
                ScriptedFaultKind::CrashCoordinatorLeader { .. } => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(at_ms: u64, kind: ScriptedFaultKind) -> FaultScript {
        FaultScript {
            network: None,
            faults: vec![ScriptedFault {
                at: Duration::from_millis(at_ms),
                kind,
            }],
        }
    }

    #[test]
    fn a_script_is_checked_against_the_topology_and_the_window() {
        let topology = dsss_topology::local_default();
        let window = Duration::from_secs(10);
        let second = Duration::from_secs(1);
        let (_, first) = topology.nodes().next().expect("the topology has nodes");
        let first = first.id;
        let ok = fault(
            1_000,
            ScriptedFaultKind::CutRegions {
                a: "local-a".to_owned(),
                b: "local-b".to_owned(),
                length: second,
            },
        );
        assert_eq!(ok.validate(&topology, window), Ok(()));
        let cases = [
            (
                fault(
                    10_000,
                    ScriptedFaultKind::CrashCoordinatorLeader { downtime: second },
                ),
                "fault 0: at 10s is not within",
            ),
            (
                fault(
                    0,
                    ScriptedFaultKind::IsolateRegion {
                        region: "mars".to_owned(),
                        length: second,
                    },
                ),
                "region \"mars\" is not in the topology",
            ),
            (
                fault(
                    0,
                    ScriptedFaultKind::CrashNode {
                        node: 999,
                        downtime: second,
                    },
                ),
                "node 999 is not in the topology",
            ),
            (
                fault(
                    0,
                    ScriptedFaultKind::PauseNode {
                        node: first,
                        length: Duration::ZERO,
                    },
                ),
                "lasts no time",
            ),
            (
                fault(
                    0,
                    ScriptedFaultKind::CutOneWay {
                        from: "local-a".to_owned(),
                        to: "local-a".to_owned(),
                        length: second,
                    },
                ),
                "from itself",
            ),
            (
                fault(
                    0,
                    ScriptedFaultKind::ClockSkew {
                        node: first,
                        skew_us: 1 + topology.cluster.max_clock_skew_us as i64,
                    },
                ),
                "beyond the topology's max_clock_skew",
            ),
        ];
        for (script, expected) in cases {
            let error = script.validate(&topology, window).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }
}
