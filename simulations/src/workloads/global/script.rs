//! Faults placed by a script at set times of the fault window, beside (or instead of) the
//! faults a seed draws: what a researcher's fault file asks for (`dsss sim run --faults`).
//!
//! Each fault starts `at` after the window begins and, when it has a length, ends by itself;
//! whatever still stands when the window ends is healed with everything else.

use std::time::Duration;

use dsss_topology::Topology;

use crate::network::{LINK_DELAY_MAX, LINK_JITTER_MAX, NetworkFaults, NodeId, REORDER_DELAY_MAX};

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
    /// Whichever node leads `region`'s raft group at that moment crashes and restarts after
    /// `downtime` (nothing happens when no member leads): a fault that hits the same role in
    /// every run, whichever node elections gave it.
    CrashRegionLeader {
        /// The region's name.
        region: String,
        /// How long it stays down.
        downtime: Duration,
    },
    /// Whichever node leads `region` at that moment handles nothing for `length` while its
    /// links stay up (SIGSTOP, then SIGCONT).
    PauseRegionLeader {
        /// The region's name.
        region: String,
        /// How long.
        length: Duration,
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
    /// The link from the nodes of `from` to the nodes of `to` (and back, when `both_ways`)
    /// takes a one-way delay drawn uniformly from `[delay - jitter, delay + jitter]` instead
    /// of the topology's, for `length`; then the topology's delay again.
    LinkDelay {
        /// The sending region.
        from: String,
        /// The receiving region.
        to: String,
        /// Whether the link from `to` to `from` changes too.
        both_ways: bool,
        /// The mean one-way delay, at most [`LINK_DELAY_MAX`].
        delay: Duration,
        /// The jitter around it, at most `delay`.
        jitter: Duration,
        /// How long.
        length: Duration,
    },
    /// The link from the nodes of `from` to the nodes of `to` (and back, when `both_ways`)
    /// loses, duplicates and reorders messages as `faults` says, on top of the packet faults
    /// of the whole network, for `length`.
    LinkLoss {
        /// The sending region.
        from: String,
        /// The receiving region.
        to: String,
        /// Whether the link from `to` to `from` changes too.
        both_ways: bool,
        /// The link's own packet faults; its loss is below 1 (losing everything is a cut).
        faults: NetworkFaults,
        /// How long.
        length: Duration,
    },
}

/// Checks the delay and jitter of a `link_delay` fault, naming the key, the value and what
/// is accepted.
pub fn check_link_delay(delay: Duration, jitter: Duration) -> Result<(), String> {
    if delay > LINK_DELAY_MAX {
        return Err(format!(
            "delay = {delay:?} is more than the maximum of {LINK_DELAY_MAX:?} (a one-way delay \
             of 0 to {LINK_DELAY_MAX:?})"
        ));
    }
    if jitter > delay || jitter > LINK_JITTER_MAX {
        return Err(format!(
            "jitter = {jitter:?} is more than the delay of {delay:?} (a jitter of 0 up to the \
             delay)"
        ));
    }
    Ok(())
}

/// Checks the packet faults of a `link_loss` fault, naming the key, the value and what is
/// accepted.
pub fn check_link_faults(faults: &NetworkFaults) -> Result<(), String> {
    let loss = faults.loss_probability;
    if !(0.0..1.0).contains(&loss) {
        return Err(format!(
            "loss = {loss} is outside 0 <= loss < 1 (a link that loses every message is cut: \
             use cut_one_way or cut_regions)"
        ));
    }
    for (key, value) in [
        ("duplicate", faults.duplication_probability),
        ("reorder", faults.reorder_probability),
    ] {
        if !(0.0..=1.0).contains(&value) {
            return Err(format!(
                "{key} = {value} is outside 0 <= {key} <= 1 (a probability)"
            ));
        }
    }
    if faults.reorder_delay_max > REORDER_DELAY_MAX {
        return Err(format!(
            "reorder_delay_max = {:?} is more than the maximum of {REORDER_DELAY_MAX:?}",
            faults.reorder_delay_max
        ));
    }
    if loss == 0.0 && faults.duplication_probability == 0.0 && faults.reorder_probability == 0.0 {
        return Err(
            "loss, duplicate and reorder are all 0, so the fault changes nothing; give at least \
             one of them a probability above 0"
                .to_owned(),
        );
    }
    Ok(())
}

impl ScriptedFaultKind {
    /// How long the fault lasts, when it ends by itself.
    pub fn length(&self) -> Option<Duration> {
        match self {
            ScriptedFaultKind::IsolateRegion { length, .. }
            | ScriptedFaultKind::CutRegions { length, .. }
            | ScriptedFaultKind::CutOneWay { length, .. }
            | ScriptedFaultKind::PauseNode { length, .. }
            | ScriptedFaultKind::PauseRegionLeader { length, .. }
            | ScriptedFaultKind::LinkDelay { length, .. }
            | ScriptedFaultKind::LinkLoss { length, .. } => Some(*length),
            ScriptedFaultKind::CrashNode { downtime, .. }
            | ScriptedFaultKind::CrashRegionLeader { downtime, .. }
            | ScriptedFaultKind::CrashCoordinatorLeader { downtime } => Some(*downtime),
            ScriptedFaultKind::ClockSkew { .. } => None,
        }
    }

    /// A short description, for the shading of plots: `local-c isolated`,
    /// `local-a -> local-b 120ms`, `local-a <-> local-b loss 20%`.
    pub fn label(&self) -> String {
        let link = |from: &str, to: &str, both_ways: bool| {
            format!("{from} {} {to}", if both_ways { "<->" } else { "->" })
        };
        match self {
            ScriptedFaultKind::IsolateRegion { region, .. } => format!("{region} isolated"),
            ScriptedFaultKind::CutRegions { a, b, .. } => format!("{a} | {b}"),
            ScriptedFaultKind::CutOneWay { from, to, .. } => format!("{from} -> {to} cut"),
            ScriptedFaultKind::CrashNode { node, .. } => format!("node {node} down"),
            ScriptedFaultKind::CrashCoordinatorLeader { .. } => {
                "coordinator leader down".to_owned()
            }
            ScriptedFaultKind::PauseNode { node, .. } => format!("node {node} paused"),
            ScriptedFaultKind::CrashRegionLeader { region, .. } => format!("{region} leader down"),
            ScriptedFaultKind::PauseRegionLeader { region, .. } => {
                format!("{region} leader paused")
            }
            ScriptedFaultKind::ClockSkew { node, .. } => format!("node {node} clock"),
            ScriptedFaultKind::LinkDelay {
                from,
                to,
                both_ways,
                delay,
                ..
            } => format!("{} {delay:?}", link(from, to, *both_ways)),
            ScriptedFaultKind::LinkLoss {
                from,
                to,
                both_ways,
                faults,
                ..
            } => {
                let mut label = link(from, to, *both_ways);
                for (name, probability) in [
                    ("loss", faults.loss_probability),
                    ("dup", faults.duplication_probability),
                    ("reorder", faults.reorder_probability),
                ] {
                    if probability > 0.0 {
                        // In tenths of a percent, so that 0.07 reads 7%, not 7.000000000000001%.
                        let percent = (probability * 1_000.0).round() / 10.0;
                        label += &format!(" {name} {percent}%");
                    }
                }
                label
            }
        }
    }

    /// The one-way links (sending region, receiving region) a link fault changes, and what
    /// it changes (`"delay"` or `"packet faults"`); `None` for the other kinds.
    fn changed_links(&self) -> Option<(&'static str, Vec<(&str, &str)>)> {
        let (what, from, to, both_ways) = match self {
            ScriptedFaultKind::LinkDelay {
                from,
                to,
                both_ways,
                ..
            } => ("delay", from, to, *both_ways),
            ScriptedFaultKind::LinkLoss {
                from,
                to,
                both_ways,
                ..
            } => ("packet faults", from, to, *both_ways),
            _ => return None,
        };
        let mut links = vec![(from.as_str(), to.as_str())];
        if both_ways {
            links.push((to.as_str(), from.as_str()));
        }
        Some((what, links))
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
        let link = |from: &str, to: &str, index: usize| -> Result<(), String> {
            region(from, index)?;
            region(to, index)?;
            if from == to {
                return Err(format!(
                    "fault {index}: changes the link of {from:?} to itself; name two regions \
                     (links inside a region do not change)"
                ));
            }
            Ok(())
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
                ScriptedFaultKind::CrashRegionLeader { region: name, .. }
                | ScriptedFaultKind::PauseRegionLeader { region: name, .. } => {
                    region(name, index)?;
                }
                ScriptedFaultKind::LinkDelay {
                    from,
                    to,
                    delay,
                    jitter,
                    ..
                } => {
                    link(from, to, index)?;
                    check_link_delay(*delay, *jitter)
                        .map_err(|error| format!("fault {index}: {error}"))?;
                }
                ScriptedFaultKind::LinkLoss {
                    from, to, faults, ..
                } => {
                    link(from, to, index)?;
                    check_link_faults(faults).map_err(|error| format!("fault {index}: {error}"))?;
                }
            }
        }
        self.check_link_overlaps()
    }

    /// Refuses two changes of the same part (delay, or packet faults) of one link at once:
    /// which would stand, and what the end of the first would give back, is not clear.
    fn check_link_overlaps(&self) -> Result<(), String> {
        let changes: Vec<LinkChange<'_>> = self
            .faults
            .iter()
            .enumerate()
            .filter_map(|(index, fault)| {
                let (what, links) = fault.kind.changed_links()?;
                let length = fault.kind.length().unwrap_or(Duration::ZERO);
                Some(LinkChange {
                    index,
                    begin: fault.at,
                    end: fault.at.saturating_add(length),
                    what,
                    links,
                })
            })
            .collect();
        for (position, change) in changes.iter().enumerate() {
            for earlier in &changes[..position] {
                if change.what != earlier.what
                    || change.begin >= earlier.end
                    || earlier.begin >= change.end
                {
                    continue;
                }
                let shared = change
                    .links
                    .iter()
                    .find(|link| earlier.links.contains(link));
                if let Some((from, to)) = shared {
                    return Err(format!(
                        "fault {}: changes the {} of the link {from} -> {to} from {:?} to \
                         {:?}, while fault {} does from {:?} to {:?}; changes of one link's {} \
                         may not overlap",
                        change.index,
                        change.what,
                        change.begin,
                        change.end,
                        earlier.index,
                        earlier.begin,
                        earlier.end,
                        change.what
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One link fault of a script, for [`FaultScript::check_link_overlaps`].
struct LinkChange<'a> {
    /// Its index in the script.
    index: usize,
    begin: Duration,
    end: Duration,
    /// What it changes: `"delay"` or `"packet faults"`.
    what: &'static str,
    /// The one-way links (sending region, receiving region) it changes.
    links: Vec<(&'a str, &'a str)>,
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

    fn slow(at_s: u64, from: &str, to: &str, both_ways: bool, length_s: u64) -> ScriptedFault {
        ScriptedFault {
            at: Duration::from_secs(at_s),
            kind: ScriptedFaultKind::LinkDelay {
                from: from.to_owned(),
                to: to.to_owned(),
                both_ways,
                delay: Duration::from_millis(100),
                jitter: Duration::ZERO,
                length: Duration::from_secs(length_s),
            },
        }
    }

    fn lossy(at_s: u64, from: &str, to: &str, loss: f64) -> ScriptedFault {
        ScriptedFault {
            at: Duration::from_secs(at_s),
            kind: ScriptedFaultKind::LinkLoss {
                from: from.to_owned(),
                to: to.to_owned(),
                both_ways: false,
                faults: NetworkFaults {
                    loss_probability: loss,
                    ..NetworkFaults::NONE
                },
                length: Duration::from_secs(2),
            },
        }
    }

    fn script(faults: Vec<ScriptedFault>) -> FaultScript {
        FaultScript {
            network: None,
            faults,
        }
    }

    #[test]
    fn link_faults_are_checked_against_the_topology_and_each_other() {
        let topology = dsss_topology::local_default();
        let window = Duration::from_secs(10);
        let check = |faults: Vec<ScriptedFault>| script(faults).validate(&topology, window);
        // One way each, both ways, a delay and a loss on one link at once, and a change that
        // begins as the other ends: all fine.
        assert_eq!(
            check(vec![
                slow(1, "local-a", "local-b", false, 2),
                slow(1, "local-b", "local-a", false, 2),
                slow(3, "local-a", "local-b", true, 2),
                lossy(1, "local-a", "local-b", 0.5),
            ]),
            Ok(())
        );
        let cases = [
            (
                vec![slow(1, "local-a", "mars", false, 2)],
                "fault 0: region \"mars\" is not in the topology",
            ),
            (
                vec![slow(1, "local-a", "local-a", true, 2)],
                "fault 0: changes the link of \"local-a\" to itself",
            ),
            (
                vec![slow(1, "local-a", "local-b", false, 0)],
                "fault 0: it lasts no time",
            ),
            (
                vec![lossy(1, "local-a", "local-b", 1.0)],
                "fault 0: loss = 1 is outside 0 <= loss < 1",
            ),
            (
                vec![
                    slow(1, "local-a", "local-b", false, 2),
                    slow(2, "local-b", "local-a", true, 2),
                ],
                "fault 1: changes the delay of the link local-a -> local-b from 2s to 4s, \
                 while fault 0 does from 1s to 3s",
            ),
            (
                vec![
                    lossy(5, "local-a", "local-c", 0.1),
                    lossy(4, "local-a", "local-c", 0.2),
                ],
                "fault 1: changes the packet faults of the link local-a -> local-c",
            ),
        ];
        for (faults, expected) in cases {
            let error = check(faults).unwrap_err();
            assert!(error.contains(expected), "{expected:?} not in {error}");
        }
        let mut delay = slow(1, "local-a", "local-b", false, 2);
        if let ScriptedFaultKind::LinkDelay { delay, jitter, .. } = &mut delay.kind {
            *delay = LINK_DELAY_MAX + Duration::from_nanos(1);
            *jitter = Duration::ZERO;
        }
        let error = check(vec![delay]).unwrap_err();
        assert!(error.contains("more than the maximum of 60s"), "{error}");
    }

    #[test]
    fn a_script_takes_at_most_its_maximum_of_link_faults() {
        let topology = dsss_topology::local_default();
        let window = Duration::from_secs(2_000);
        // One after the other, never overlapping.
        let faults = |count: u64| {
            script(
                (0..count)
                    .map(|index| slow(index, "local-a", "local-b", true, 1))
                    .collect(),
            )
        };
        assert_eq!(
            faults(SCRIPTED_FAULTS_MAX as u64).validate(&topology, window),
            Ok(())
        );
        let error = faults(SCRIPTED_FAULTS_MAX as u64 + 1)
            .validate(&topology, window)
            .unwrap_err();
        assert!(error.contains("a run takes at most 1024"), "{error}");
    }

    #[test]
    fn link_faults_have_labels() {
        assert_eq!(
            slow(1, "local-a", "local-b", false, 2).kind.label(),
            "local-a -> local-b 100ms"
        );
        assert_eq!(
            slow(1, "local-a", "local-b", true, 2).kind.label(),
            "local-a <-> local-b 100ms"
        );
        assert_eq!(
            lossy(1, "local-b", "local-c", 0.07).kind.label(),
            "local-b -> local-c loss 7%"
        );
        let mut both = lossy(1, "local-b", "local-c", 0.2);
        if let ScriptedFaultKind::LinkLoss { faults, .. } = &mut both.kind {
            faults.reorder_probability = 0.005;
        }
        assert_eq!(
            both.kind.label(),
            "local-b -> local-c loss 20% reorder 0.5%"
        );
    }
}
