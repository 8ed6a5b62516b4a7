//! Where a global call's time goes: the stages every global write passes through, stamped
//! with simulated time as its messages cross the simulated network, for the epoch statistics
//! of `dsss sim run` (docs/simulator.md, "Epoch statistics").
//!
//! A global call is followed by its key (session id, request sequence), which every record
//! of it carries. Each stage ends at the first time something shows it happened; later
//! copies (retries, resent batches and epoch parts) change nothing:
//!
//! 1. `batch_wait`: from the call reaching a node of its region to the region leader shipping
//!    the batch that holds its record (the region's raft round and the batch interval);
//! 2. `to_coordinator`: the batch's trip to the coordinator replica that took it;
//! 3. `coordinator_round`: until a coordinator replica first applied the batch, that is once
//!    it was committed: the leader applies it once a quorum stored it, a follower of three
//!    replicas once it stored it itself (docs/global-protocol.md section 7, "Delivery by
//!    followers"), whichever comes first;
//! 4. `watermark_wait`: until the epoch that holds the record is sealed and its first part
//!    leaves a coordinator replica: waiting for every member region's closed timestamp to
//!    pass the record's, and the seal's own round;
//! 5. `fan_out`: from there to the first part reaching the call's region (from the replica
//!    whose copy arrives first, not always the one that sent first);
//! 6. `apply`: until the region answers the call (appending the epoch to its log, applying it).
//!
//! Only the stamps are watched here: nothing of this changes what the nodes do.

use std::collections::BTreeMap;
use std::time::Duration;

use dsss_wire::proto;

use crate::time::SimTime;

/// The stages, in the order a call passes them.
pub const STAGES: [&str; 6] = [
    "batch_wait",
    "to_coordinator",
    "coordinator_round",
    "watermark_wait",
    "fan_out",
    "apply",
];

/// The most calls followed at once; calls beyond it are not followed (the count says how
/// many), so that a run whose calls are never answered cannot grow the table without limit.
pub const CALLS_FOLLOWED_MAX: usize = 1 << 18;

/// The most batches remembered at the coordinator until acknowledged.
pub const BATCHES_FOLLOWED_MAX: usize = 1 << 16;

/// A call's key: its session id and request sequence.
type CallKey = (u64, u64);

/// When a followed call passed each stage.
#[derive(Clone, Debug, Default)]
struct Stamps {
    region: String,
    arrived: Option<SimTime>,
    batched: Option<SimTime>,
    at_coordinator: Option<SimTime>,
    replicated: Option<SimTime>,
    sealed: Option<SimTime>,
    delivered: Option<SimTime>,
}

/// One finished call: its region, when it reached the region, and each stage's length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallStages {
    /// The call's region.
    pub region: String,
    /// When the call first reached a node of its region.
    pub arrived: SimTime,
    /// The length of each stage, in the order of [`STAGES`].
    pub stages: [Duration; 6],
}

/// The stamps of the global calls of a run.
#[derive(Debug, Default)]
pub struct StageTracker {
    calls: BTreeMap<CallKey, Stamps>,
    /// Batches the coordinator took and has not applied yet, by region, then incarnation and
    /// batch number: the calls in each.
    batches: BTreeMap<String, BTreeMap<(u64, u64), Vec<CallKey>>>,
    batches_held: usize,
    finished: Vec<CallStages>,
    /// Calls not followed because [`CALLS_FOLLOWED_MAX`] were followed already.
    pub calls_not_followed: u64,
}

impl StageTracker {
    /// A global call reached a node of `region`.
    pub fn call_arrived(&mut self, now: SimTime, region: &str, key: CallKey) {
        if self.calls.contains_key(&key) {
            return;
        }
        if self.calls.len() >= CALLS_FOLLOWED_MAX {
            self.calls_not_followed += 1;
            return;
        }
        self.calls.insert(
            key,
            Stamps {
                region: region.to_owned(),
                arrived: Some(now),
                ..Stamps::default()
            },
        );
    }

    /// A region leader shipped `batch`.
    pub fn batch_sent(&mut self, now: SimTime, batch: &proto::RegionBatch) {
        for record in &batch.records {
            if let Some(stamps) = self
                .calls
                .get_mut(&(record.client_id, record.request_sequence))
            {
                stamps.batched.get_or_insert(now);
            }
        }
    }

    /// A coordinator replica took `batch`.
    pub fn batch_arrived(&mut self, now: SimTime, batch: &proto::RegionBatch) {
        if batch.records.is_empty() {
            return;
        }
        let mut keys = Vec::with_capacity(batch.records.len());
        for record in &batch.records {
            let key = (record.client_id, record.request_sequence);
            if let Some(stamps) = self.calls.get_mut(&key) {
                stamps.at_coordinator.get_or_insert(now);
                keys.push(key);
            }
        }
        if keys.is_empty() || self.batches_held >= BATCHES_FOLLOWED_MAX {
            return;
        }
        let held = match self.batches.get_mut(batch.region.as_str()) {
            Some(held) => held,
            None => self.batches.entry(batch.region.clone()).or_default(),
        };
        if held
            .insert((batch.incarnation, batch.batch_number), keys)
            .is_none()
        {
            self.batches_held += 1;
        }
    }

    /// The leading coordinator replica has applied `region`'s batches through
    /// `batch_number` of `incarnation` (batches of earlier incarnations are never applied:
    /// they are forgotten).
    pub fn batches_applied(
        &mut self,
        now: SimTime,
        region: &str,
        incarnation: u64,
        batch_number: u64,
    ) {
        let Some(held) = self.batches.get_mut(region) else {
            return;
        };
        let Some(&first) = held.keys().next() else {
            return;
        };
        if first > (incarnation, batch_number) {
            return;
        }
        let later = held.split_off(&(incarnation, batch_number.saturating_add(1)));
        let applied = std::mem::replace(held, later);
        self.batches_held -= applied.len();
        for ((held_incarnation, _), keys) in applied {
            if held_incarnation != incarnation {
                continue;
            }
            for key in keys {
                if let Some(stamps) = self.calls.get_mut(&key) {
                    stamps.replicated.get_or_insert(now);
                }
            }
        }
    }

    /// A part of a sealed epoch left a coordinator replica.
    pub fn epoch_sent(&mut self, now: SimTime, epoch: &proto::SealedEpoch) {
        for record in &epoch.records {
            if let Some(stamps) = self
                .calls
                .get_mut(&(record.client_id, record.request_sequence))
            {
                stamps.sealed.get_or_insert(now);
            }
        }
    }

    /// A part of a sealed epoch reached a node of `region`.
    pub fn epoch_arrived(&mut self, now: SimTime, region: &str, epoch: &proto::SealedEpoch) {
        for record in &epoch.records {
            if record.origin_region != region {
                continue;
            }
            if let Some(stamps) = self
                .calls
                .get_mut(&(record.client_id, record.request_sequence))
            {
                stamps.delivered.get_or_insert(now);
            }
        }
    }

    /// A region node answered the call: it is done, and its stages are kept when every one
    /// of them was seen (a call answered from a region's memory of an earlier attempt, or
    /// whose record came through a path not watched here, is left out).
    pub fn call_answered(&mut self, now: SimTime, key: CallKey) {
        let Some(stamps) = self.calls.remove(&key) else {
            return;
        };
        let times = [
            stamps.arrived,
            stamps.batched,
            stamps.at_coordinator,
            stamps.replicated,
            stamps.sealed,
            stamps.delivered,
            Some(now),
        ];
        let Some(times) = times.into_iter().collect::<Option<Vec<SimTime>>>() else {
            return;
        };
        let mut stages = [Duration::ZERO; 6];
        for (index, stage) in stages.iter_mut().enumerate() {
            *stage = times[index + 1].saturating_duration_since(times[index]);
        }
        self.finished.push(CallStages {
            region: stamps.region,
            arrived: times[0],
            stages,
        });
    }

    /// The calls answered so far with every stage seen, in the order they were answered.
    pub fn finished(&self) -> &[CallStages] {
        &self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(client: u64, sequence: u64, region: &str) -> proto::Record {
        proto::Record {
            client_id: client,
            request_sequence: sequence,
            origin_region: region.to_owned(),
            ..proto::Record::default()
        }
    }

    fn batch(number: u64, records: Vec<proto::Record>) -> proto::RegionBatch {
        proto::RegionBatch {
            region: "a".to_owned(),
            batch_number: number,
            incarnation: 1,
            records,
            ..proto::RegionBatch::default()
        }
    }

    #[test]
    fn each_stage_ends_at_the_first_sign_of_it() {
        let at = SimTime::from_millis;
        let mut tracker = StageTracker::default();
        tracker.call_arrived(at(1), "a", (7, 1));
        tracker.call_arrived(at(2), "a", (7, 1));
        let shipped = batch(1, vec![record(7, 1, "a")]);
        tracker.batch_sent(at(5), &shipped);
        tracker.batch_sent(at(6), &shipped);
        tracker.batch_arrived(at(20), &shipped);
        tracker.batches_applied(at(25), "a", 1, 0);
        tracker.batches_applied(at(40), "a", 1, 1);
        tracker.batches_applied(at(45), "a", 1, 1);
        let epoch = proto::SealedEpoch {
            records: vec![record(7, 1, "a"), record(8, 1, "b")],
            ..proto::SealedEpoch::default()
        };
        tracker.epoch_sent(at(50), &epoch);
        tracker.epoch_arrived(at(60), "b", &epoch);
        tracker.epoch_arrived(at(70), "a", &epoch);
        tracker.call_answered(at(75), (7, 1));
        // Answered again (a retry's answer): nothing more.
        tracker.call_answered(at(80), (7, 1));
        let ms = Duration::from_millis;
        assert_eq!(
            tracker.finished(),
            [CallStages {
                region: "a".to_owned(),
                arrived: at(1),
                stages: [ms(4), ms(15), ms(20), ms(10), ms(20), ms(5)],
            }]
        );
        assert_eq!(tracker.batches_held, 0);
    }

    #[test]
    fn batches_past_the_bound_are_not_remembered() {
        let mut tracker = StageTracker::default();
        for number in 1..=BATCHES_FOLLOWED_MAX as u64 + 2 {
            tracker.call_arrived(SimTime::ZERO, "a", (1, number));
            tracker.batch_arrived(SimTime::ZERO, &batch(number, vec![record(1, number, "a")]));
        }
        assert_eq!(tracker.batches_held, BATCHES_FOLLOWED_MAX);
        // Applying them all frees every place; an older incarnation's are forgotten.
        tracker.batches_applied(SimTime::ZERO, "a", 2, 0);
        assert_eq!(tracker.batches_held, 0);
    }

    #[test]
    fn calls_past_the_bound_are_counted_not_followed() {
        let mut tracker = StageTracker::default();
        for sequence in 0..CALLS_FOLLOWED_MAX as u64 + 3 {
            tracker.call_arrived(SimTime::ZERO, "a", (1, sequence));
        }
        assert_eq!(tracker.calls.len(), CALLS_FOLLOWED_MAX);
        assert_eq!(tracker.calls_not_followed, 3);
        // A call answered without every stage seen is dropped, freeing its place.
        tracker.call_answered(SimTime::ZERO, (1, 0));
        assert!(tracker.finished().is_empty());
        tracker.call_arrived(SimTime::ZERO, "a", (2, 0));
        assert_eq!(tracker.calls.len(), CALLS_FOLLOWED_MAX);
    }
}
