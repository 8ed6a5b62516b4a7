//! Many seeded random sequences of region batches (fresh, resent, out of order, of stale
//! incarnations), suspicions, acknowledgements and garbage entries, applied to the
//! coordinator's state machine, checking the invariants of docs/global-protocol.md sections 4
//! to 6 after every step: the watermark only grows, epochs are dense and never change, every
//! pending record is above the watermark, every epoch is sorted and within its watermarks, no
//! record is sealed twice, records are conserved, and snapshots and recovery reproduce the
//! state. At the end every region closes far ahead and every record a region sent is sealed
//! exactly once. A failure prints the seed.

use std::collections::{BTreeMap, BTreeSet};

use dsss_global_coordinator::{
    BatchEntry, BatchVerdict, CoordinatorEntry, CoordinatorLimits, CoordinatorState, EntryEffect,
    Epoch, PendingKey, SuspectVerdict,
};
use dsss_raft_group::{DurableStore, MemoryStore, StateMachine, WriteBatch};
use dsss_wire::{
    Arguments, ClientId, MethodId, ObjectId, Record, RegionId, RequestSequence, Scope, Timestamp,
};

const SEEDS: u64 = 150;
const STEPS: usize = 250;
const NAMES: [&str; 3] = ["a", "b", "c"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut value = self.0;
        value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        value ^ (value >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// A region as docs/global-protocol.md sections 3 and 6 have it, simplified: it stamps records
/// above its closed timestamp, ships numbered batches, and after learning of its removal
/// re-sends its unsealed records as batch 1 of a new incarnation.
struct Region {
    id: RegionId,
    incarnation: u64,
    next_batch_number: u64,
    clock_us: u64,
    next_sequence: u64,
    /// Every batch sent in the current incarnation, for resends.
    sent: Vec<BatchEntry>,
    /// Records sent and not yet seen in a sealed epoch, by sequence.
    unsealed: BTreeMap<u64, Record>,
}

impl Region {
    fn record(&mut self, rng: &mut Rng) -> Record {
        self.clock_us += 1 + rng.below(3);
        self.next_sequence += 1;
        Record {
            object_id: ObjectId::new("counter").unwrap(),
            method_id: MethodId(1),
            arguments: Arguments::new(vec![0; rng.below(40) as usize]).unwrap(),
            client_id: ClientId(1),
            request_sequence: RequestSequence(self.next_sequence),
            timestamp: Timestamp::new(self.clock_us, 0),
            scope: Scope::Global,
            origin_region: self.id.clone(),
        }
    }

    fn new_batch(&mut self, rng: &mut Rng, resent: Vec<Record>) -> BatchEntry {
        let fresh = rng.below(4);
        self.batch_of(rng, resent, fresh)
    }

    fn batch_of(&mut self, rng: &mut Rng, resent: Vec<Record>, fresh: u64) -> BatchEntry {
        let mut records = resent;
        for _ in 0..fresh {
            records.push(self.record(rng));
        }
        for record in &records {
            self.unsealed
                .insert(record.request_sequence.get(), record.clone());
        }
        self.clock_us += rng.below(30);
        let batch = BatchEntry {
            region: self.id.clone(),
            incarnation: self.incarnation,
            batch_number: self.next_batch_number,
            records,
            closed: Timestamp::new(self.clock_us, 0),
        };
        self.next_batch_number += 1;
        self.sent.push(batch.clone());
        batch
    }
}

struct Run {
    seed: u64,
    rng: Rng,
    state: CoordinatorState,
    store: MemoryStore,
    index: u64,
    regions: Vec<Region>,
    /// Every epoch ever sealed, by number, as first seen.
    sealed: BTreeMap<u64, Epoch>,
    /// (region, sequence) of every record ever sealed.
    sealed_records: BTreeSet<(RegionId, u64)>,
    watermark: Timestamp,
    accepted_records: usize,
    dropped_records: usize,
}

impl Run {
    fn new(seed: u64) -> Run {
        let ids: Vec<RegionId> = NAMES
            .iter()
            .map(|name| RegionId::new(*name).unwrap())
            .collect();
        let limits = CoordinatorLimits {
            retained_epochs_max: 40,
            ..CoordinatorLimits::default()
        };
        Run {
            seed,
            rng: Rng(seed),
            state: CoordinatorState::new(&ids, limits),
            store: MemoryStore::new(),
            index: 0,
            regions: ids
                .into_iter()
                .map(|id| Region {
                    id,
                    incarnation: 1,
                    next_batch_number: 1,
                    clock_us: 1_000,
                    next_sequence: 0,
                    sent: Vec::new(),
                    unsealed: BTreeMap::new(),
                })
                .collect(),
            sealed: BTreeMap::new(),
            sealed_records: BTreeSet::new(),
            watermark: Timestamp::ZERO,
            accepted_records: 0,
            dropped_records: 0,
        }
    }

    /// Applies one entry; `batch_records` is how many records it carries if it is a batch.
    fn apply_counted(&mut self, data: &[u8], batch_records: usize) -> EntryEffect {
        self.index += 1;
        let mut batch = WriteBatch::new();
        let outcome = self
            .state
            .apply(self.index, data, &self.store, &mut batch)
            .unwrap();
        self.store.write(batch, true).unwrap();
        match &outcome.effect {
            EntryEffect::Batch {
                verdict: BatchVerdict::Accepted { .. },
                ..
            } => self.accepted_records += batch_records,
            EntryEffect::Suspect {
                verdict: SuspectVerdict::Removed { records_dropped },
                ..
            } => self.dropped_records += records_dropped,
            _ => {}
        }
        self.check(outcome.sealed_epoch);
        outcome.effect
    }

    fn apply(&mut self, data: &[u8]) -> EntryEffect {
        self.apply_counted(data, 0)
    }

    fn step(&mut self) {
        let choice = self.rng.below(100);
        let region_index = self.rng.below(NAMES.len() as u64) as usize;
        match choice {
            0..=59 => self.region_sends(region_index),
            60..=69 => self.region_resends(region_index),
            70..=74 => {
                let region = &self.regions[region_index];
                let incarnation = self.state.region(&region.id).unwrap().incarnation;
                let entry = CoordinatorEntry::Suspect {
                    region: region.id.clone(),
                    incarnation,
                };
                self.apply(&entry.encode());
            }
            75..=89 => {
                let newest = self.state.newest_epoch_number();
                let through = self.rng.below(newest + 1);
                let entry = CoordinatorEntry::EpochsAcknowledged {
                    region: self.regions[region_index].id.clone(),
                    through,
                };
                self.apply(&entry.encode());
            }
            90..=94 => self.region_learns(region_index),
            _ => {
                let length = self.rng.below(40) as usize;
                let mut garbage: Vec<u8> = (0..length).map(|_| self.rng.next() as u8).collect();
                if length > 1 {
                    garbage[0] = 1;
                }
                let before = self.state.clone();
                let effect = self.apply(&garbage);
                if matches!(effect, EntryEffect::Refused { .. }) {
                    assert_eq!(
                        self.state, before,
                        "seed {}: a refused entry changed the state",
                        self.seed
                    );
                }
            }
        }
    }

    fn region_sends(&mut self, region_index: usize) {
        let region = &mut self.regions[region_index];
        let batch = region.new_batch(&mut self.rng, Vec::new());
        let records = batch.records.len();
        if let EntryEffect::Batch { verdict, .. } =
            self.apply_counted(&CoordinatorEntry::Batch(batch).encode(), records)
        {
            self.after_batch(region_index, verdict);
        }
    }

    fn region_resends(&mut self, region_index: usize) {
        let region = &self.regions[region_index];
        if region.sent.is_empty() {
            return;
        }
        let pick = self.rng.below(region.sent.len() as u64) as usize;
        let batch = region.sent[pick].clone();
        let records = batch.records.len();
        if let EntryEffect::Batch { verdict, .. } =
            self.apply_counted(&CoordinatorEntry::Batch(batch).encode(), records)
        {
            self.after_batch(region_index, verdict);
        }
    }

    fn after_batch(&mut self, region_index: usize, verdict: BatchVerdict) {
        if matches!(
            verdict,
            BatchVerdict::Gap { .. } | BatchVerdict::Overloaded { .. }
        ) && self.rng.below(2) == 0
        {
            self.catch_up(region_index);
        }
    }

    /// What a region does with an acknowledgement that is behind: it resends, in order, every
    /// batch of its incarnation from the coordinator's next expected one.
    fn catch_up(&mut self, region_index: usize) {
        let region = &self.regions[region_index];
        let coordinator = self.state.region(&region.id).unwrap().clone();
        let from = if coordinator.incarnation == region.incarnation && coordinator.member {
            coordinator.next_batch_number
        } else if coordinator.incarnation < region.incarnation && !coordinator.member {
            // The batch that readmits the region was not taken: resend from batch 1.
            1
        } else {
            return;
        };
        let batches: Vec<BatchEntry> = region
            .sent
            .iter()
            .filter(|batch| batch.batch_number >= from)
            .cloned()
            .collect();
        for batch in batches {
            let records = batch.records.len();
            let effect = self.apply_counted(&CoordinatorEntry::Batch(batch).encode(), records);
            if !matches!(
                effect,
                EntryEffect::Batch {
                    verdict: BatchVerdict::Accepted { .. },
                    ..
                }
            ) {
                return;
            }
        }
    }

    /// The region learns of its removal (from an epoch that does not list it): a new
    /// incarnation whose batch 1 carries every record not yet sealed.
    fn region_learns(&mut self, region_index: usize) {
        let id = self.regions[region_index].id.clone();
        let coordinator = self.state.region(&id).unwrap().clone();
        let region = &mut self.regions[region_index];
        if coordinator.member || coordinator.incarnation != region.incarnation {
            return;
        }
        region.incarnation += 1;
        region.next_batch_number = 1;
        region.sent.clear();
        let resent: Vec<Record> = region.unsealed.values().cloned().collect();
        let batch = region.new_batch(&mut self.rng, resent);
        let records = batch.records.len();
        if let EntryEffect::Batch { verdict, .. } =
            self.apply_counted(&CoordinatorEntry::Batch(batch).encode(), records)
        {
            self.after_batch(region_index, verdict);
        }
    }

    fn check(&mut self, sealed_epoch: Option<u64>) {
        let seed = self.seed;
        let state = &self.state;
        assert!(
            state.watermark() >= self.watermark,
            "seed {seed}: the watermark went down"
        );
        self.watermark = state.watermark();
        if let Some(number) = sealed_epoch {
            assert_eq!(number, state.newest_epoch_number(), "seed {seed}");
            let epoch = state.epoch(number).unwrap().clone();
            if number > 1 {
                assert_eq!(
                    epoch.previous_watermark,
                    self.sealed[&(number - 1)].watermark,
                    "seed {seed}: epoch {number} does not start where the previous ended"
                );
            }
            let keys: Vec<PendingKey> = epoch.records.iter().map(PendingKey::of).collect();
            assert!(
                keys.windows(2).all(|pair| pair[0] < pair[1]),
                "seed {seed}: unsorted epoch"
            );
            for record in &epoch.records {
                assert!(
                    record.timestamp > epoch.previous_watermark
                        && record.timestamp <= epoch.watermark
                );
                let key = (record.origin_region.clone(), record.request_sequence.get());
                assert!(
                    self.sealed_records.insert(key.clone()),
                    "seed {seed}: {key:?} sealed twice"
                );
                let region = self
                    .regions
                    .iter_mut()
                    .find(|region| region.id == key.0)
                    .unwrap();
                region.unsealed.remove(&key.1);
            }
            assert!(
                self.sealed.insert(number, epoch).is_none(),
                "seed {seed}: epoch {number} sealed twice"
            );
        }
        for epoch in state.retained_epochs() {
            assert_eq!(
                Some(epoch),
                self.sealed.get(&epoch.number),
                "seed {seed}: epoch {} changed",
                epoch.number
            );
        }
        assert!(
            state
                .pending_records()
                .all(|record| record.timestamp > state.watermark()),
            "seed {seed}: a pending record at or below the watermark"
        );
        assert_eq!(
            self.accepted_records,
            self.sealed_records.len() + state.pending_count() + self.dropped_records,
            "seed {seed}: records were lost or invented"
        );
    }

    fn check_persistence(&self) {
        let ids: Vec<RegionId> = self.state.regions().keys().cloned().collect();
        let mut recovered = CoordinatorState::new(&ids, self.state.limits());
        recovered.recover(&self.store).unwrap();
        assert_eq!(
            recovered, self.state,
            "seed {}: recovery differs",
            self.seed
        );
        let snapshot = self.state.snapshot(&self.store).unwrap();
        let mut restored = CoordinatorState::new(&ids, self.state.limits());
        let mut batch = WriteBatch::new();
        restored.restore(&snapshot, &mut batch).unwrap();
        assert_eq!(
            restored, self.state,
            "seed {}: the snapshot differs",
            self.seed
        );
        let mut store = MemoryStore::new();
        store.write(batch, true).unwrap();
        let mut from_snapshot_store = CoordinatorState::new(&ids, self.state.limits());
        from_snapshot_store.recover(&store).unwrap();
        assert_eq!(from_snapshot_store, self.state, "seed {}", self.seed);
    }

    /// Every region learns, rejoins, acknowledges and closes far ahead: everything it sent
    /// must then be sealed, once.
    fn drain(&mut self) {
        for round in 0..4 {
            for region_index in 0..NAMES.len() {
                self.region_learns(region_index);
                self.catch_up(region_index);
                let newest = self.state.newest_epoch_number();
                let entry = CoordinatorEntry::EpochsAcknowledged {
                    region: self.regions[region_index].id.clone(),
                    through: newest,
                };
                self.apply(&entry.encode());
            }
            for region_index in 0..NAMES.len() {
                self.regions[region_index].clock_us += 10_000 * (round + 1);
                self.region_sends(region_index);
            }
        }
        // A last empty batch from every region, closed above every clock, seals the rest.
        let far_us = self
            .regions
            .iter()
            .map(|region| region.clock_us)
            .max()
            .unwrap()
            + 1_000;
        for region_index in 0..NAMES.len() {
            self.catch_up(region_index);
            let region = &mut self.regions[region_index];
            region.clock_us = far_us;
            let batch = region.batch_of(&mut self.rng, Vec::new(), 0);
            let effect = self.apply(&CoordinatorEntry::Batch(batch).encode());
            assert!(
                matches!(
                    effect,
                    EntryEffect::Batch {
                        verdict: BatchVerdict::Accepted { .. },
                        ..
                    }
                ),
                "seed {}: {effect:?}",
                self.seed
            );
        }
        for region in &self.regions {
            assert!(
                region.unsealed.is_empty(),
                "seed {}: region {} still has unsealed records {:?}",
                self.seed,
                region.id,
                region.unsealed.keys().collect::<Vec<_>>()
            );
        }
        assert_eq!(self.state.pending_count(), 0, "seed {}", self.seed);
    }
}

#[test]
fn random_batch_and_suspect_sequences_keep_every_invariant() {
    let mut epochs_sealed = 0;
    let mut removals = 0;
    for seed in 0..SEEDS {
        let mut run = Run::new(seed);
        for step in 0..STEPS {
            run.step();
            if step % 50 == 49 {
                run.check_persistence();
            }
        }
        run.drain();
        run.check_persistence();
        epochs_sealed += run.sealed.len();
        removals += usize::from(run.dropped_records > 0);
    }
    // The generator must exercise what it claims to.
    assert!(epochs_sealed > SEEDS as usize * 20, "{epochs_sealed}");
    assert!(removals > 0);
}
