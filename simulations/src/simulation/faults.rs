//! The fault commands of a [`Simulation`]: crashes and restarts, pauses and resumes, packet
//! faults, partitions and clock faults. Each acts at the current virtual time and writes one
//! trace line.

use std::time::Duration;

use super::{DropReason, Event, Simulation};
use crate::network::{LINK_DELAY_MAX, LINK_JITTER_MAX, Link, NetworkFaults, NodeId, RegionId};
use crate::process::Process;
use crate::time::SimTime;

impl<P: Process> Simulation<P> {
    // Faults: crashes.

    /// Crashes `node`: drops its process, its pending timers and every unsynced write. Returns
    /// false if it was already down.
    ///
    /// # Panics
    ///
    /// If `node` is unknown.
    pub fn crash(&mut self, node: NodeId) -> bool {
        let now = self.now;
        let slot = self.slot_mut(node);
        if slot.process.take().is_none() {
            return false;
        }
        slot.timers_pending.clear();
        // The work it was at dies with it, and what waited for that work is lost as messages
        // that reach a down node are.
        slot.busy_until = SimTime::ZERO;
        slot.wake_queued = false;
        let waiting = std::mem::take(&mut slot.inbox);
        let unsent: Vec<(u64, u8)> = std::mem::take(&mut slot.departures)
            .into_iter()
            .filter(|departure| departure.departs > now)
            .map(|departure| (departure.message_id, departure.copies))
            .collect();
        let writes_lost = slot.disk.discard_unsynced();
        self.record(format_args!(
            "crash {node} unsynced_writes_lost={writes_lost}"
        ));
        // What it sent after work it had not finished never left.
        self.lost_departures.extend(unsent);
        // Its connections die with it: what its next incarnation sends, and what is sent to
        // that, is ordered afresh.
        self.in_order_arrivals
            .retain(|&(from, to), _| from != node && to != node);
        // A paused process can be killed: what was held for it is lost with it, as messages
        // that reach a down node are.
        let held = self.paused.remove(&node).unwrap_or_default();
        for event in waiting.into_iter().chain(held) {
            if let Event::Deliver {
                from, message_id, ..
            } = event
            {
                self.drop_message(from, node, message_id, DropReason::NodeDown);
            }
        }
        true
    }

    // Faults: pauses.

    /// Pauses `node`, as SIGSTOP does: from now on it handles nothing (messages that reach it
    /// and timers that come due are held), so it sends nothing either, while its links stay up
    /// and its state stays as it is. Messages it sent before are still delivered. Returns
    /// false if it was down or already paused.
    ///
    /// # Panics
    ///
    /// If `node` is unknown.
    pub fn pause(&mut self, node: NodeId) -> bool {
        if self.slot(node).process.is_none() || self.paused.contains_key(&node) {
            return false;
        }
        self.paused.insert(node, Vec::new());
        self.record(format_args!("pause {node}"));
        true
    }

    /// Resumes a paused `node`, as SIGCONT does: everything held for it is handled now, in the
    /// order it came due, with its state as it was. Returns false if it was not paused.
    ///
    /// # Panics
    ///
    /// If `node` is unknown.
    pub fn resume(&mut self, node: NodeId) -> bool {
        self.slot(node);
        let Some(held) = self.paused.remove(&node) else {
            return false;
        };
        self.record(format_args!("resume {node} held={}", held.len()));
        for event in held {
            self.schedule(self.now, event);
        }
        true
    }

    /// Restarts a crashed `node` now: creates its process with the factory from its synced
    /// disk and calls `handle_start`. Returns false if it was already up.
    ///
    /// # Panics
    ///
    /// If `node` is unknown.
    pub fn restart(&mut self, node: NodeId) -> bool {
        if self.slot(node).process.is_some() {
            return false;
        }
        let slot = self
            .nodes
            .get_mut(&node)
            .expect("the node was found just above");
        let process = (self.factory)(node, &slot.disk);
        slot.process = Some(process);
        slot.incarnation += 1;
        self.record(format_args!("restart {node}"));
        self.invoke(node, crate::WorkKind::Timer, |process, cx| {
            process.handle_start(cx)
        });
        true
    }

    // Faults: packets.

    /// Replaces every packet fault setting.
    ///
    /// # Panics
    ///
    /// If a probability is outside `[0, 1]` or the reorder delay is beyond its bound.
    pub fn set_faults(&mut self, faults: NetworkFaults) {
        if let Err(error) = faults.validate() {
            panic!("invalid network faults: {error}");
        }
        self.network.set_faults(faults);
        self.record(format_args!("faults {faults}"));
    }

    /// Sets the probability that a message is lost.
    pub fn set_loss_probability(&mut self, probability: f64) {
        let faults = NetworkFaults {
            loss_probability: probability,
            ..*self.network.faults()
        };
        self.set_faults(faults);
    }

    /// Sets the probability that a message is delivered twice.
    pub fn set_duplication_probability(&mut self, probability: f64) {
        let faults = NetworkFaults {
            duplication_probability: probability,
            ..*self.network.faults()
        };
        self.set_faults(faults);
    }

    /// Sets reordering: with `probability`, a message is delayed by up to `delay_max` more.
    pub fn set_reordering(&mut self, probability: f64, delay_max: Duration) {
        let faults = NetworkFaults {
            reorder_probability: probability,
            reorder_delay_max: delay_max,
            ..*self.network.faults()
        };
        self.set_faults(faults);
    }

    // Faults: partitions. All of them act on messages sent from now on; messages in flight
    // still arrive (see the network module).

    /// Cuts the link between `a` and `b` in both directions.
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        self.cut_pair(a, b, true);
        self.record(format_args!("cut {a}<->{b}"));
    }

    /// Cuts the link from `from` to `to` only: `to` can still reach `from`.
    pub fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        self.cut_pair(from, to, false);
        self.record(format_args!("cut {from}->{to}"));
    }

    /// Cuts `node` from every other node, both directions.
    pub fn isolate(&mut self, node: NodeId) {
        self.slot(node);
        for other in self.node_ids() {
            self.cut_pair(node, other, true);
        }
        self.record(format_args!("isolate {node}"));
    }

    /// Cuts every link between the nodes of two regions, both directions.
    pub fn cut_regions(&mut self, a: RegionId, b: RegionId) {
        self.cut_region_pair(a, b, true);
        self.record(format_args!("cut-regions {a}<->{b}"));
    }

    /// Cuts every link from the nodes of `from` to the nodes of `to`, one way.
    pub fn cut_regions_one_way(&mut self, from: RegionId, to: RegionId) {
        self.cut_region_pair(from, to, false);
        self.record(format_args!("cut-regions {from}->{to}"));
    }

    /// Cuts `region` from every other region, both directions; links inside it stay up.
    pub fn isolate_region(&mut self, region: RegionId) {
        let region_count = self.region_count();
        self.assert_region(region);
        for other in (0..region_count).map(RegionId) {
            if other != region {
                self.cut_region_pair(region, other, true);
            }
        }
        self.record(format_args!("isolate-region {region}"));
    }

    /// Restores the link between `a` and `b` in both directions.
    pub fn heal(&mut self, a: NodeId, b: NodeId) {
        self.heal_pair(a, b, true);
        self.record(format_args!("heal {a}<->{b}"));
    }

    /// Restores the link from `from` to `to`.
    pub fn heal_one_way(&mut self, from: NodeId, to: NodeId) {
        self.heal_pair(from, to, false);
        self.record(format_args!("heal {from}->{to}"));
    }

    /// Restores every link between the nodes of two regions, both directions.
    pub fn heal_regions(&mut self, a: RegionId, b: RegionId) {
        self.assert_region(a);
        self.assert_region(b);
        for from in self.network.nodes_in_region(a) {
            for to in self.network.nodes_in_region(b) {
                self.heal_pair(from, to, true);
            }
        }
        self.record(format_args!("heal-regions {a}<->{b}"));
    }

    /// Restores every link.
    pub fn heal_all(&mut self) {
        self.network.heal_all();
        self.record(format_args!("heal-all"));
    }

    // Faults: changed links. Like partitions, they act on messages sent from now on.

    /// Replaces the delay and jitter of the link from the nodes of `from` to the nodes of
    /// `to`, one way, until [`Simulation::restore_link_delay`] or
    /// [`Simulation::restore_links`].
    ///
    /// # Panics
    ///
    /// If a region is unknown, or the delay or jitter is beyond
    /// [`LINK_DELAY_MAX`] or [`LINK_JITTER_MAX`].
    pub fn set_link_delay(&mut self, from: RegionId, to: RegionId, link: Link) {
        self.assert_region(from);
        self.assert_region(to);
        assert!(
            link.delay <= LINK_DELAY_MAX && link.jitter <= LINK_JITTER_MAX,
            "link delay {:?} or jitter {:?} is beyond its maximum ({LINK_DELAY_MAX:?}, \
             {LINK_JITTER_MAX:?})",
            link.delay,
            link.jitter
        );
        self.network.set_link_delay(from, to, Some(link));
        self.record(format_args!(
            "link {from}->{to} delay={:?} jitter={:?}",
            link.delay, link.jitter
        ));
    }

    /// Gives the link `from -> to` back its configured delay and jitter.
    pub fn restore_link_delay(&mut self, from: RegionId, to: RegionId) {
        self.assert_region(from);
        self.assert_region(to);
        self.network.set_link_delay(from, to, None);
        self.record(format_args!("link {from}->{to} delay restored"));
    }

    /// Adds packet faults to the link from the nodes of `from` to the nodes of `to`, one way,
    /// on top of the network-wide ones, until [`Simulation::restore_link_faults`] or
    /// [`Simulation::restore_links`].
    ///
    /// # Panics
    ///
    /// If a region is unknown, a probability is outside `[0, 1]` or the reorder delay is
    /// beyond its bound.
    pub fn set_link_faults(&mut self, from: RegionId, to: RegionId, faults: NetworkFaults) {
        self.assert_region(from);
        self.assert_region(to);
        if let Err(error) = faults.validate() {
            panic!("invalid faults for link {from}->{to}: {error}");
        }
        self.network.set_link_faults(from, to, Some(faults));
        self.record(format_args!("link {from}->{to} faults {faults}"));
    }

    /// Takes the packet faults of the link `from -> to` away.
    pub fn restore_link_faults(&mut self, from: RegionId, to: RegionId) {
        self.assert_region(from);
        self.assert_region(to);
        self.network.set_link_faults(from, to, None);
        self.record(format_args!("link {from}->{to} faults restored"));
    }

    /// Lifts every link change: every link has its configured delay and no packet faults of
    /// its own. Returns false, and writes nothing to the trace, when no link was changed.
    pub fn restore_links(&mut self) -> bool {
        if !self.network.restore_links() {
            return false;
        }
        self.record(format_args!("links restored"));
        true
    }

    // Faults: clocks.

    /// Steps the clock of `node` to read `skew_us` away from its drifted time; a smaller value
    /// than before steps it backwards.
    ///
    /// # Panics
    ///
    /// If `node` is unknown or the skew is beyond
    /// [`CLOCK_SKEW_US_MAX`](crate::CLOCK_SKEW_US_MAX).
    pub fn set_clock_skew_us(&mut self, node: NodeId, skew_us: i64) {
        self.slot_mut(node).clock.set_skew_us(skew_us);
        self.record(format_args!("clock {node} skew_us={skew_us}"));
    }

    /// Changes the rate of the clock of `node` from now on.
    ///
    /// # Panics
    ///
    /// If `node` is unknown or the drift is beyond
    /// [`CLOCK_DRIFT_PPM_MAX`](crate::CLOCK_DRIFT_PPM_MAX).
    pub fn set_clock_drift_ppm(&mut self, node: NodeId, drift_ppm: i64) {
        let now = self.now;
        self.slot_mut(node).clock.set_drift_ppm(now, drift_ppm);
        self.record(format_args!("clock {node} drift_ppm={drift_ppm}"));
    }

    /// Gives every node a skew drawn uniformly from `[-skew_us_max, skew_us_max]` and a drift
    /// from `[-drift_ppm_max, drift_ppm_max]`, in node id order.
    ///
    /// # Panics
    ///
    /// If a bound is negative or beyond its maximum.
    pub fn randomize_clocks(&mut self, skew_us_max: i64, drift_ppm_max: i64) {
        assert!(
            skew_us_max >= 0 && drift_ppm_max >= 0,
            "randomize_clocks: bounds must not be negative"
        );
        for node in self.node_ids() {
            let skew_us = self.rng.range_inclusive_i64(-skew_us_max, skew_us_max);
            let drift_ppm = self.rng.range_inclusive_i64(-drift_ppm_max, drift_ppm_max);
            self.set_clock_skew_us(node, skew_us);
            self.set_clock_drift_ppm(node, drift_ppm);
        }
    }

    // Internals.

    fn region_count(&self) -> usize {
        self.network.config().regions.len()
    }

    fn assert_region(&self, region: RegionId) {
        assert!(
            region.0 < self.region_count(),
            "region {region} is not in the simulated network ({} regions)",
            self.region_count()
        );
    }

    fn cut_pair(&mut self, a: NodeId, b: NodeId, both_ways: bool) {
        self.slot(a);
        self.slot(b);
        self.network.cut_one_way(a, b);
        if both_ways {
            self.network.cut_one_way(b, a);
        }
    }

    fn heal_pair(&mut self, a: NodeId, b: NodeId, both_ways: bool) {
        self.slot(a);
        self.slot(b);
        self.network.heal_one_way(a, b);
        if both_ways {
            self.network.heal_one_way(b, a);
        }
    }

    fn cut_region_pair(&mut self, a: RegionId, b: RegionId, both_ways: bool) {
        self.assert_region(a);
        self.assert_region(b);
        for from in self.network.nodes_in_region(a) {
            for to in self.network.nodes_in_region(b) {
                self.cut_pair(from, to, both_ways);
            }
        }
    }
}
