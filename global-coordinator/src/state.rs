//! [`CoordinatorState`]: the replicated state of the coordinator group, its state machine
//! (docs/global-protocol.md sections 4 to 7; the store layout below is section 9).
//!
//! Every replica applies the same entries in the same order and so holds the same regions,
//! watermark, pending records and sealed epochs: sealing happens INSIDE apply, so a new leader
//! derives byte-identical epochs from the log. Invariants checked with `assert!` on every
//! change: the watermark only grows; epoch numbers are dense and a sealed epoch is never
//! changed, only dropped once every region has acknowledged it; every pending record lies
//! above the watermark; epoch `k` holds only records in `(W(k-1), W(k)]`, so no record is
//! sealed twice.
//!
//! Store layout (written in the same batch as the raft group's own writes):
//! - [`COORDINATOR_STATE`] key [`STATE_KEY`]: watermark, next epoch number, every region's
//!   state and the flag of a membership change no epoch shows yet;
//! - [`COORDINATOR_PENDING`]: one pending record per key (its timestamp, region and request
//!   sequence), the value its protocol buffer encoding;
//! - [`COORDINATOR_EPOCHS`]: one retained sealed epoch per key (its number, 8 big-endian
//!   bytes).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;

use dsss_raft_group::{
    DurableStore, KeySpace, RAFT_MESSAGE_BYTES_MAX, SnapshotError, StateMachine, StoreError,
    WriteBatch,
};
use dsss_wire::{Record, RegionId, Timestamp, decode_record, encode_record};

use crate::codec::{
    LENGTH_PREFIX_BYTES, ReadValues, Reader, corrupt, put_bytes, put_count, put_region,
    put_timestamp, put_u64, record_size_bytes,
};
use crate::entry::{BatchEntry, CoordinatorEntry, check_batch};

/// The coordinator's counters and regions.
pub const COORDINATOR_STATE: KeySpace = KeySpace::new("coordinator_state");

/// The pending records, keyed by (timestamp, region, request sequence).
pub const COORDINATOR_PENDING: KeySpace = KeySpace::new("coordinator_pending");

/// The retained sealed epochs, keyed by big-endian epoch number.
pub const COORDINATOR_EPOCHS: KeySpace = KeySpace::new("coordinator_epochs");

/// The key of the counters and regions in [`COORDINATOR_STATE`].
pub const STATE_KEY: &[u8] = b"state";

/// The most regions the coordinator tracks (the topology's own maximum).
pub const REGIONS_MAX: usize = 64;

/// The most bytes of pending records (encoded, with their length prefixes).
pub const PENDING_RECORDS_BYTES_MAX: u64 = 8 * 1024 * 1024;

/// The most sealed epochs retained until every region has acknowledged them.
pub const RETAINED_EPOCHS_MAX: usize = 65_536;

// A topology may set the retention up to the coordinator's own bound.
const _: () =
    assert!(dsss_topology::COORDINATOR_RETAINED_EPOCHS_MAX as usize == RETAINED_EPOCHS_MAX);

/// The most bytes of retained sealed epochs (encoded).
pub const RETAINED_EPOCHS_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// The largest encoded epoch header (numbers, watermarks, counts, the most member regions).
pub const EPOCH_HEADER_BYTES_MAX: u64 =
    8 + 12 + 12 + 4 + 4 + REGIONS_MAX as u64 * (LENGTH_PREFIX_BYTES + 63);

/// The largest snapshot, in bytes: it travels in one raft message.
pub const SNAPSHOT_BYTES_MAX: usize = RAFT_MESSAGE_BYTES_MAX - 1024 * 1024;

// The state a snapshot carries stays below its bound: pending records, retained epochs (which
// may pass their byte bound by the headers of epochs sealed by removals, at most one per
// region), and the regions.
const _: () = assert!(
    PENDING_RECORDS_BYTES_MAX
        + RETAINED_EPOCHS_BYTES_MAX
        + 2 * REGIONS_MAX as u64 * EPOCH_HEADER_BYTES_MAX
        + 1024 * 1024
        <= SNAPSHOT_BYTES_MAX as u64
);

/// How many keys one scan of the store returns while recovering.
const RECOVERY_SCAN_CHUNK_MAX: usize = 1_024;

/// Format 3 adds each region's newest sealed record ([`SealedRecordMark`]); format 2 adds the
/// flag of a membership change no epoch shows yet. Formats 1 and 2 are still read: the flag is
/// then set, which seals one epoch more at worst, and no region's mark is known, which only a
/// region catching up past every retained log needs (it then waits for the next record sealed
/// of it, docs/global-protocol.md section 7).
const STATE_FORMAT: u8 = 3;
const STATE_FORMAT_WITHOUT_SEALED_MARKS: u8 = 2;
const STATE_FORMAT_WITHOUT_MEMBERSHIP_FLAG: u8 = 1;
const SNAPSHOT_FORMAT: u8 = 3;
const SNAPSHOT_FORMAT_WITHOUT_MEMBERSHIP_FLAG: u8 = 1;

/// How a region's sealed mark is written in format 3: none sealed yet, a mark, or not known
/// (read from an older format and no record of the region sealed since).
const SEALED_MARK_NONE: u8 = 0;
const SEALED_MARK_KEPT: u8 = 1;
const SEALED_MARK_UNKNOWN: u8 = 2;

/// The smallest encoded region state, to refuse impossible counts early.
const REGION_ENCODED_BYTES_MIN: usize = 4 + 1 + 8 + 1 + 8 + 12 + 12 + 8;

/// A key greater than every key the coordinator writes in its key spaces.
const KEYS_END: [u8; 1] = [0xff];

/// The bounds of the replicated state. Every replica MUST use the same values, because the
/// bounds are enforced in apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoordinatorLimits {
    /// The most bytes of pending records (at most [`PENDING_RECORDS_BYTES_MAX`]).
    pub pending_records_bytes_max: u64,
    /// The most retained epochs (at most [`RETAINED_EPOCHS_MAX`]).
    pub retained_epochs_max: usize,
    /// The most bytes of retained epochs (at most [`RETAINED_EPOCHS_BYTES_MAX`]).
    pub retained_epochs_bytes_max: u64,
    /// A planted bug for the simulator's checks to catch, never set in production: SEAL
    /// leaves out the closed timestamp of the last member region (by id), and records that
    /// region ships below the watermark are not lifted above it.
    #[doc(hidden)]
    pub planted_seal_without_a_region: bool,
}

impl Default for CoordinatorLimits {
    fn default() -> Self {
        CoordinatorLimits {
            pending_records_bytes_max: PENDING_RECORDS_BYTES_MAX,
            retained_epochs_max: RETAINED_EPOCHS_MAX,
            retained_epochs_bytes_max: RETAINED_EPOCHS_BYTES_MAX,
            planted_seal_without_a_region: false,
        }
    }
}

impl CoordinatorLimits {
    /// Checks every bound, naming the first out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.pending_records_bytes_max == 0
            || self.pending_records_bytes_max > PENDING_RECORDS_BYTES_MAX
        {
            return Err(format!(
                "pending_records_bytes_max {} is outside 1..={PENDING_RECORDS_BYTES_MAX}",
                self.pending_records_bytes_max
            ));
        }
        if self.retained_epochs_max == 0 || self.retained_epochs_max > RETAINED_EPOCHS_MAX {
            return Err(format!(
                "retained_epochs_max {} is outside 1..={RETAINED_EPOCHS_MAX}",
                self.retained_epochs_max
            ));
        }
        if self.retained_epochs_bytes_max <= EPOCH_HEADER_BYTES_MAX
            || self.retained_epochs_bytes_max > RETAINED_EPOCHS_BYTES_MAX
        {
            return Err(format!(
                "retained_epochs_bytes_max {} is outside {}..={RETAINED_EPOCHS_BYTES_MAX}",
                self.retained_epochs_bytes_max,
                EPOCH_HEADER_BYTES_MAX + 1
            ));
        }
        Ok(())
    }
}

/// What the coordinator knows of one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionState {
    /// The region's incarnation in the membership, from 1.
    pub incarnation: u64,
    /// Whether the region's closed timestamp counts for the watermark.
    pub member: bool,
    /// The batch number expected next from this incarnation, from 1.
    pub next_batch_number: u64,
    /// The region's closed timestamp as the coordinator holds it.
    pub closed: Timestamp,
    /// The timestamp every next record of the region is lifted above.
    pub floor: Timestamp,
    /// The highest epoch the region has wholly appended.
    pub acknowledged_epoch: u64,
    /// The region's newest record that a sealed epoch holds, none before the first.
    pub last_sealed: Option<SealedRecordMark>,
    /// False when the state was written by a release that kept no marks, until the next
    /// record of the region is sealed: `last_sealed` then says nothing.
    pub last_sealed_known: bool,
}

/// A region's newest record that a sealed epoch holds. A region's records are sealed in the
/// order it shipped them (each batch in log order, timestamps rising, the watermark sealing
/// every pending record at or below it), so every record the region shipped up to this one
/// was sealed and, while it is out of the membership, none after it: a region that skips
/// epochs no log holds any longer tells by this mark which of its records those epochs took
/// (docs/global-protocol.md section 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedRecordMark {
    /// The record's client.
    pub client_id: u64,
    /// Its request sequence.
    pub request_sequence: u64,
    /// The epoch that holds it.
    pub epoch_number: u64,
}

impl RegionState {
    fn new() -> Self {
        RegionState {
            incarnation: 1,
            member: true,
            next_batch_number: 1,
            closed: Timestamp::ZERO,
            floor: Timestamp::ZERO,
            acknowledged_epoch: 0,
            last_sealed: None,
            last_sealed_known: true,
        }
    }

    /// The highest batch number of the current incarnation taken, 0 before the first.
    pub fn acknowledged_through(&self) -> u64 {
        self.next_batch_number - 1
    }
}

/// The order of records in an epoch: timestamp, then origin region, then request sequence.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PendingKey {
    /// The record's timestamp (after lifting).
    pub timestamp: Timestamp,
    /// Its origin region.
    pub region: RegionId,
    /// Its request sequence.
    pub request_sequence: u64,
}

impl PendingKey {
    /// The key of `record`.
    pub fn of(record: &Record) -> Self {
        PendingKey {
            timestamp: record.timestamp,
            region: record.origin_region.clone(),
            request_sequence: record.request_sequence.get(),
        }
    }

    /// The key's bytes in [`COORDINATOR_PENDING`]. Region ids hold no zero byte, so the
    /// terminator keeps the byte order equal to the key order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(8 + 4 + self.region.as_str().len() + 1 + 8);
        put_timestamp(&mut bytes, self.timestamp);
        bytes.extend_from_slice(self.region.as_str().as_bytes());
        bytes.push(0);
        put_u64(&mut bytes, self.request_sequence);
        bytes
    }
}

/// A sealed epoch: the records with timestamps in `(previous_watermark, watermark]`, sorted
/// by [`PendingKey`]. Once sealed it never changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Epoch {
    /// Its number, from 1.
    pub number: u64,
    /// The watermark of the epoch before ([`Timestamp::ZERO`] for the first).
    pub previous_watermark: Timestamp,
    /// The minimum closed timestamp of the members when it was sealed.
    pub watermark: Timestamp,
    /// The members when it was sealed, sorted.
    pub member_regions: Vec<RegionId>,
    /// The records, in epoch order.
    pub records: Vec<Record>,
    /// The encoded size of each record, with its length prefix.
    record_sizes_bytes: Vec<u64>,
    /// The encoded size of the whole epoch.
    size_bytes: u64,
}

impl Epoch {
    /// The encoded size of the epoch, in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Cuts the records into parts of at most `part_bytes_max` encoded bytes each (a record
    /// larger than that alone). An empty epoch is one empty part. The cut depends only on the
    /// epoch, so every leader sends the same parts.
    pub fn part_ranges(&self, part_bytes_max: u64) -> Vec<Range<usize>> {
        let mut parts = Vec::new();
        let mut start = 0;
        let mut size_bytes = 0;
        for (index, record_bytes) in self.record_sizes_bytes.iter().enumerate() {
            if index > start && size_bytes + record_bytes > part_bytes_max {
                parts.push(start..index);
                start = index;
                size_bytes = 0;
            }
            size_bytes += record_bytes;
        }
        parts.push(start..self.records.len());
        parts
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u64(&mut out, self.number);
        put_timestamp(&mut out, self.previous_watermark);
        put_timestamp(&mut out, self.watermark);
        put_count(&mut out, self.member_regions.len());
        for region in &self.member_regions {
            put_region(&mut out, region);
        }
        put_count(&mut out, self.records.len());
        for record in &self.records {
            put_bytes(&mut out, &encode_record(record));
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Epoch, String> {
        let mut reader = Reader::new(bytes);
        let number = reader.u64("epoch number")?;
        let previous_watermark = reader.timestamp("epoch previous watermark")?;
        let watermark = reader.timestamp("epoch watermark")?;
        let member_count = reader.count(REGIONS_MAX, 5, "epoch member count")?;
        let mut member_regions = Vec::with_capacity(member_count);
        for _ in 0..member_count {
            member_regions.push(reader.region("epoch member region")?);
        }
        let record_count = reader.count(usize::MAX, 4, "epoch record count")?;
        let mut records = Vec::with_capacity(record_count);
        let mut record_sizes_bytes = Vec::with_capacity(record_count);
        for number in 0..record_count {
            let (record, size_bytes) = reader.record(&format!("epoch record {number}"))?;
            records.push(record);
            record_sizes_bytes.push(size_bytes);
        }
        reader.finish()?;
        let epoch = Epoch {
            number,
            previous_watermark,
            watermark,
            member_regions,
            records,
            record_sizes_bytes,
            size_bytes: bytes.len() as u64,
        };
        epoch.check()?;
        Ok(epoch)
    }

    /// The rules every sealed epoch obeys.
    fn check(&self) -> Result<(), String> {
        let number = self.number;
        if number == 0 {
            return Err("epoch number 0: epochs count from 1".to_owned());
        }
        if self.watermark <= self.previous_watermark {
            return Err(format!(
                "epoch {number}: watermark {} is not above the previous watermark {}",
                self.watermark, self.previous_watermark
            ));
        }
        if self.member_regions.is_empty()
            || self
                .member_regions
                .windows(2)
                .any(|pair| pair[0] >= pair[1])
        {
            return Err(format!(
                "epoch {number}: member regions are empty, unsorted or repeated"
            ));
        }
        let mut previous: Option<PendingKey> = None;
        for record in &self.records {
            let key = PendingKey::of(record);
            if key.timestamp <= self.previous_watermark || key.timestamp > self.watermark {
                return Err(format!(
                    "epoch {number}: a record at {} lies outside ({}, {}]",
                    key.timestamp, self.previous_watermark, self.watermark
                ));
            }
            if previous.as_ref().is_some_and(|previous| *previous >= key) {
                return Err(format!(
                    "epoch {number}: records are not in strictly increasing order"
                ));
            }
            previous = Some(key);
        }
        Ok(())
    }
}

/// What a batch entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchVerdict {
    /// The batch's records joined the pending records.
    Accepted {
        /// Whether the batch readmitted the region into the membership.
        readmitted: bool,
    },
    /// The batch was taken before; nothing changed.
    Duplicate,
    /// The batch number is beyond the next expected; nothing changed.
    Gap {
        /// The batch number expected.
        expected: u64,
    },
    /// The batch is of an older incarnation; nothing changed.
    Stale,
    /// The batch is of a newer incarnation while the region is still a member, which a
    /// correct region never sends; nothing changed.
    IncarnationAhead,
    /// The region is out of the membership and has not yet learned it; nothing changed.
    NotMember,
    /// Taking the batch would pass a bound of the state; nothing changed. The region resends.
    Overloaded {
        /// Which bound.
        reason: String,
    },
    /// The batch would readmit a region that has not appended epochs the coordinator has
    /// since released (it held them only for that region while it was out of the
    /// membership): readmitted, the region could not append the epochs that follow, so it
    /// stays out; nothing changed. It needs a state transfer the coordinator cannot give
    /// (docs/global-protocol.md section 7).
    EpochsReleased {
        /// The newest epoch the region appended.
        acknowledged_epoch: u64,
        /// The oldest epoch the coordinator holds.
        first_retained_epoch: u64,
    },
}

/// What a suspect entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SuspectVerdict {
    /// The region left the membership; its pending records were dropped.
    Removed {
        /// How many pending records were dropped.
        records_dropped: usize,
    },
    /// The region was already out, or in another incarnation; nothing changed.
    Ignored,
    /// The region is the last member, which is never removed; nothing changed.
    LastMember,
}

/// What one entry did, beside sealing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryEffect {
    /// A batch entry.
    Batch {
        /// The region.
        region: RegionId,
        /// The incarnation the batch carried.
        incarnation: u64,
        /// What happened.
        verdict: BatchVerdict,
    },
    /// A suspect entry.
    Suspect {
        /// The region.
        region: RegionId,
        /// What happened.
        verdict: SuspectVerdict,
    },
    /// An acknowledgement entry.
    EpochsAcknowledged {
        /// The region.
        region: RegionId,
        /// Its acknowledged epoch after the entry.
        acknowledged_epoch: u64,
    },
    /// The entry does not decode or names an unknown region; every replica refuses it alike
    /// and nothing changes.
    Refused {
        /// Why.
        reason: String,
    },
}

/// What applying one entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryOutcome {
    /// The entry's own effect.
    pub effect: EntryEffect,
    /// The epoch the entry sealed, if it moved the watermark.
    pub sealed_epoch: Option<u64>,
}

/// The replicated state of the coordinator. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorState {
    limits: CoordinatorLimits,
    regions: BTreeMap<RegionId, RegionState>,
    watermark: Timestamp,
    next_epoch_number: u64,
    pending: BTreeMap<PendingKey, (Record, u64)>,
    pending_size_bytes: u64,
    epochs: VecDeque<Epoch>,
    retained_size_bytes: u64,
    /// The membership changed (a removal or a readmission) since the newest epoch was sealed:
    /// the next rise of the watermark seals an epoch even without records, so that every
    /// region learns the membership.
    membership_unsealed: bool,
}

impl CoordinatorState {
    /// The initial state: every region a member in incarnation 1, nothing sealed.
    ///
    /// # Panics
    ///
    /// If `regions` is empty, holds more than [`REGIONS_MAX`] or repeats one, or `limits` is
    /// out of range (the node's configuration checks both first).
    pub fn new(regions: &[RegionId], limits: CoordinatorLimits) -> Self {
        if let Err(reason) = check_regions(regions) {
            panic!("invalid coordinator regions: {reason}");
        }
        if let Err(reason) = limits.validate() {
            panic!("invalid coordinator limits: {reason}");
        }
        CoordinatorState {
            limits,
            regions: regions
                .iter()
                .map(|region| (region.clone(), RegionState::new()))
                .collect(),
            watermark: Timestamp::ZERO,
            next_epoch_number: 1,
            pending: BTreeMap::new(),
            pending_size_bytes: 0,
            epochs: VecDeque::new(),
            retained_size_bytes: 0,
            membership_unsealed: false,
        }
    }

    // Getters.

    /// The watermark of the newest sealed epoch ([`Timestamp::ZERO`] before the first).
    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The newest sealed epoch's number, 0 before the first.
    pub fn newest_epoch_number(&self) -> u64 {
        self.next_epoch_number - 1
    }

    /// The regions, sorted by id.
    pub fn regions(&self) -> &BTreeMap<RegionId, RegionState> {
        &self.regions
    }

    /// One region.
    pub fn region(&self, region: &RegionId) -> Option<&RegionState> {
        self.regions.get(region)
    }

    /// The members, sorted.
    pub fn member_regions(&self) -> Vec<RegionId> {
        self.regions
            .iter()
            .filter(|(_, state)| state.member)
            .map(|(region, _)| region.clone())
            .collect()
    }

    /// The pending records, in epoch order.
    pub fn pending_records(&self) -> impl Iterator<Item = &Record> {
        self.pending.values().map(|(record, _)| record)
    }

    /// How many records are pending.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// The bytes of pending records.
    pub fn pending_size_bytes(&self) -> u64 {
        self.pending_size_bytes
    }

    /// The retained sealed epochs, oldest first.
    pub fn retained_epochs(&self) -> impl Iterator<Item = &Epoch> {
        self.epochs.iter()
    }

    /// How many sealed epochs are retained.
    pub fn retained_epoch_count(&self) -> usize {
        self.epochs.len()
    }

    /// The bytes of retained sealed epochs.
    pub fn retained_size_bytes(&self) -> u64 {
        self.retained_size_bytes
    }

    /// The retained epoch `number`, if it is still retained.
    pub fn epoch(&self, number: u64) -> Option<&Epoch> {
        let first = self.epochs.front()?.number;
        let offset = number.checked_sub(first)?;
        self.epochs.get(usize::try_from(offset).ok()?)
    }

    /// The oldest retained epoch, or the next to be sealed when none is retained: every epoch
    /// below it was released.
    pub fn first_retained_epoch_number(&self) -> u64 {
        self.epochs
            .front()
            .map_or(self.next_epoch_number, |epoch| epoch.number)
    }

    /// True when the membership changed since the newest epoch: the next rise of the
    /// watermark seals an epoch that shows it, records or not.
    pub fn membership_unsealed(&self) -> bool {
        self.membership_unsealed
    }

    /// Whether `region` has appended every epoch the coordinator released, so that it can
    /// catch up from the retained ones.
    pub fn can_catch_up(&self, region: &RegionId) -> bool {
        self.regions
            .get(region)
            .is_some_and(|state| state.acknowledged_epoch + 1 >= self.first_retained_epoch_number())
    }

    /// The bounds in force.
    pub fn limits(&self) -> CoordinatorLimits {
        self.limits
    }

    /// Whether a batch of `records_size_bytes` would be refused as overloaded now, and why.
    /// The leader asks before proposing, so that a full state does not fill its log.
    ///
    /// Retained epochs count only as far as a member region needs them: the oldest epochs
    /// every member has appended, held for regions out of the membership, are released to
    /// make room (see [`CoordinatorState::epochs_to_release`]).
    pub fn overload_reason(&self, records_size_bytes: u64) -> Option<String> {
        let pending = self.pending_size_bytes + records_size_bytes;
        if pending > self.limits.pending_records_bytes_max {
            return Some(format!(
                "pending records would hold {pending} bytes, more than the maximum of {}",
                self.limits.pending_records_bytes_max
            ));
        }
        self.epochs_to_release(records_size_bytes).err()
    }

    /// How many of the oldest retained epochs must be released before a batch of
    /// `records_size_bytes` is taken, so that the retained epochs stay within their bounds
    /// (counting the epoch that sealing everything pending would add). Only epochs every
    /// member region has appended may go. An error names the bound that releasing them
    /// cannot keep: a member region has not appended the epochs.
    fn epochs_to_release(&self, records_size_bytes: u64) -> Result<usize, String> {
        let pending = self.pending_size_bytes + records_size_bytes;
        let releasable_through = self.members_minimum_acknowledged_epoch();
        let mut count = self.epochs.len();
        let mut retained_bytes = self.retained_size_bytes;
        let mut released = 0;
        for epoch in &self.epochs {
            let fits = count < self.limits.retained_epochs_max
                && retained_bytes + pending + EPOCH_HEADER_BYTES_MAX
                    <= self.limits.retained_epochs_bytes_max;
            if fits || epoch.number > releasable_through {
                break;
            }
            count -= 1;
            retained_bytes -= epoch.size_bytes;
            released += 1;
        }
        if count >= self.limits.retained_epochs_max {
            return Err(format!(
                "{count} sealed epochs are retained, the maximum; a member region has not \
                 acknowledged them"
            ));
        }
        // Sealing everything pending must keep the retained epochs within their bound.
        let retained = retained_bytes + pending + EPOCH_HEADER_BYTES_MAX;
        if retained > self.limits.retained_epochs_bytes_max {
            return Err(format!(
                "retained epochs could reach {retained} bytes, more than the maximum of {}; a \
                 member region has not acknowledged them",
                self.limits.retained_epochs_bytes_max
            ));
        }
        Ok(released)
    }

    /// Releases the `count` oldest retained epochs, which every member region has appended;
    /// a region out of the membership that has not appended them can no longer catch up from
    /// the coordinator (it is not readmitted, see [`BatchVerdict::EpochsReleased`]).
    fn release_epochs(&mut self, count: usize, batch: &mut WriteBatch) {
        let Some(first) = self.epochs.front().map(|epoch| epoch.number) else {
            return;
        };
        let releasable_through = self.members_minimum_acknowledged_epoch();
        for _ in 0..count {
            let epoch = self
                .epochs
                .pop_front()
                .expect("count is within the retained epochs");
            assert!(
                epoch.number <= releasable_through,
                "an epoch is released only once every member region appended it"
            );
            self.retained_size_bytes -= epoch.size_bytes;
        }
        if count > 0 {
            batch.delete_range(
                COORDINATOR_EPOCHS,
                first.to_be_bytes().to_vec(),
                (first + count as u64).to_be_bytes().to_vec(),
            );
        }
        // A region that missed a released epoch holds nothing back any more.
        self.drop_acknowledged_epochs(batch);
    }

    // Applying.

    fn apply_entry(&mut self, entry: CoordinatorEntry, batch: &mut WriteBatch) -> EntryEffect {
        match entry {
            CoordinatorEntry::Batch(entry) => self.apply_batch(entry, batch),
            CoordinatorEntry::Suspect {
                region,
                incarnation,
            } => self.apply_suspect(region, incarnation, batch),
            CoordinatorEntry::EpochsAcknowledged { region, through } => {
                self.apply_acknowledged(region, through, batch)
            }
        }
    }

    fn apply_batch(&mut self, entry: BatchEntry, batch: &mut WriteBatch) -> EntryEffect {
        let region_id = entry.region.clone();
        let Some(region) = self.regions.get(&region_id) else {
            return unknown_region(&region_id);
        };
        let verdict = |verdict| EntryEffect::Batch {
            region: region_id.clone(),
            incarnation: entry.incarnation,
            verdict,
        };
        let readmission = entry.incarnation > region.incarnation && !region.member;
        if entry.incarnation < region.incarnation {
            return verdict(BatchVerdict::Stale);
        }
        if entry.incarnation > region.incarnation && region.member {
            return verdict(BatchVerdict::IncarnationAhead);
        }
        if entry.incarnation == region.incarnation && !region.member {
            return verdict(BatchVerdict::NotMember);
        }
        let expected = if readmission {
            1
        } else {
            region.next_batch_number
        };
        if entry.batch_number < expected {
            return verdict(BatchVerdict::Duplicate);
        }
        if entry.batch_number > expected {
            return verdict(BatchVerdict::Gap { expected });
        }
        let sent_size_bytes = entry.records.iter().map(record_size_bytes).sum();
        if let Err(reason) = check_batch(&entry, sent_size_bytes) {
            return EntryEffect::Refused { reason };
        }
        let watermark = self.watermark;
        let mut floor = if readmission { watermark } else { region.floor };
        let mut lifted = Vec::with_capacity(entry.records.len());
        for mut record in entry.records {
            // Identity in normal operation (a region stamps above its closed timestamp, which
            // is at or above the watermark); after a readmission it lifts the re-sent records
            // above the watermark, so that no sealed epoch ever changes. The watermark term
            // guards the same invariant against a region that breaks its promise.
            record.timestamp = record.timestamp.max(floor.successor());
            if !self.limits.planted_seal_without_a_region {
                record.timestamp = record.timestamp.max(watermark.successor());
            }
            floor = record.timestamp;
            let size_bytes = record_size_bytes(&record);
            lifted.push((record, size_bytes));
        }
        if readmission && !self.can_catch_up(&region_id) {
            return verdict(BatchVerdict::EpochsReleased {
                acknowledged_epoch: region.acknowledged_epoch,
                first_retained_epoch: self.first_retained_epoch_number(),
            });
        }
        let records_size_bytes: u64 = lifted.iter().map(|(_, size_bytes)| size_bytes).sum();
        if let Some(reason) = self.overload_reason(records_size_bytes) {
            return verdict(BatchVerdict::Overloaded { reason });
        }
        let release = self
            .epochs_to_release(records_size_bytes)
            .expect("overload_reason found the batch within the bounds");
        self.release_epochs(release, batch);
        let region = self
            .regions
            .get_mut(&region_id)
            .expect("the region was found above");
        if readmission {
            region.incarnation = entry.incarnation;
            region.member = true;
            region.next_batch_number = 1;
            region.closed = region.closed.max(watermark);
            self.membership_unsealed = true;
        }
        region.floor = floor;
        region.closed = region.closed.max(entry.closed).max(floor);
        region.next_batch_number += 1;
        for (record, size_bytes) in lifted {
            let key = PendingKey::of(&record);
            assert!(
                key.timestamp > self.watermark,
                "a pending record lies above the watermark"
            );
            batch.put(COORDINATOR_PENDING, key.to_bytes(), encode_record(&record));
            self.pending_size_bytes += size_bytes;
            let previous = self.pending.insert(key, (record, size_bytes));
            assert!(
                previous.is_none(),
                "lifted timestamps of one region strictly increase, so keys are unique"
            );
        }
        self.seal(batch);
        verdict(BatchVerdict::Accepted {
            readmitted: readmission,
        })
    }

    fn apply_suspect(
        &mut self,
        region_id: RegionId,
        incarnation: u64,
        batch: &mut WriteBatch,
    ) -> EntryEffect {
        let members = self.regions.values().filter(|state| state.member).count();
        let Some(region) = self.regions.get_mut(&region_id) else {
            return unknown_region(&region_id);
        };
        let verdict = if region.incarnation != incarnation || !region.member {
            SuspectVerdict::Ignored
        } else if members <= 1 {
            SuspectVerdict::LastMember
        } else {
            region.member = false;
            self.membership_unsealed = true;
            let doomed: Vec<PendingKey> = self
                .pending
                .keys()
                .filter(|key| key.region == region_id)
                .cloned()
                .collect();
            for key in &doomed {
                let (_, size_bytes) = self.pending.remove(key).expect("the key was just listed");
                self.pending_size_bytes -= size_bytes;
                batch.delete(COORDINATOR_PENDING, key.to_bytes());
            }
            self.seal(batch);
            SuspectVerdict::Removed {
                records_dropped: doomed.len(),
            }
        };
        EntryEffect::Suspect {
            region: region_id,
            verdict,
        }
    }

    fn apply_acknowledged(
        &mut self,
        region_id: RegionId,
        through: u64,
        batch: &mut WriteBatch,
    ) -> EntryEffect {
        let newest = self.newest_epoch_number();
        let Some(region) = self.regions.get_mut(&region_id) else {
            return unknown_region(&region_id);
        };
        if through > newest {
            return EntryEffect::Refused {
                reason: format!(
                    "region {region_id} acknowledges epoch {through}, beyond the newest sealed \
                     epoch {newest}"
                ),
            };
        }
        region.acknowledged_epoch = region.acknowledged_epoch.max(through);
        let acknowledged_epoch = region.acknowledged_epoch;
        self.drop_acknowledged_epochs(batch);
        EntryEffect::EpochsAcknowledged {
            region: region_id,
            acknowledged_epoch,
        }
    }

    /// Drops the epochs every region, member or not, has appended (leaving out the regions
    /// that missed released epochs and cannot append these).
    fn drop_acknowledged_epochs(&mut self, batch: &mut WriteBatch) {
        // The newest sealed epoch stays retained, however acknowledged: a region that comes
        // back having skipped to it through another region's log (it was out of the
        // membership while the epochs before were released) is told of nothing else while
        // no new epoch is sealed. Delivering it the newest one is how the coordinator learns
        // that the region holds it, and may readmit it (`can_catch_up`).
        let through = self
            .minimum_acknowledged_epoch()
            .min(self.newest_epoch_number().saturating_sub(1));
        let first_before = self.epochs.front().map(|epoch| epoch.number);
        while self
            .epochs
            .front()
            .is_some_and(|epoch| epoch.number <= through)
        {
            let epoch = self.epochs.pop_front().expect("checked non-empty");
            self.retained_size_bytes -= epoch.size_bytes;
        }
        if let Some(first) = first_before
            && first <= through
        {
            batch.delete_range(
                COORDINATOR_EPOCHS,
                first.to_be_bytes().to_vec(),
                (through + 1).to_be_bytes().to_vec(),
            );
        }
        self.assert_retained_window();
    }

    /// The newest epoch every region has appended, leaving out the regions out of the
    /// membership that missed released epochs (they cannot catch up from the coordinator, so
    /// nothing is held for them).
    fn minimum_acknowledged_epoch(&self) -> u64 {
        let first = self.first_retained_epoch_number();
        self.regions
            .values()
            .filter(|state| state.member || state.acknowledged_epoch + 1 >= first)
            .map(|state| state.acknowledged_epoch)
            .min()
            .unwrap_or(0)
    }

    /// The newest epoch every member region has appended.
    fn members_minimum_acknowledged_epoch(&self) -> u64 {
        self.regions
            .values()
            .filter(|state| state.member)
            .map(|state| state.acknowledged_epoch)
            .min()
            .unwrap_or(0)
    }

    /// SEAL (docs/global-protocol.md section 5): the new watermark is the minimum closed
    /// timestamp of the members; when it rose past a pending record, or the membership
    /// changed since the newest epoch, the pending records at or below it become the next
    /// epoch.
    fn seal(&mut self, batch: &mut WriteBatch) {
        let left_out = if self.limits.planted_seal_without_a_region {
            self.regions
                .iter()
                .filter(|(_, state)| state.member)
                .map(|(region, _)| region.clone())
                .next_back()
        } else {
            None
        };
        let Some(new_watermark) = self
            .regions
            .iter()
            .filter(|(region, state)| state.member && Some(*region) != left_out.as_ref())
            .map(|(_, state)| state.closed)
            .min()
        else {
            return;
        };
        if new_watermark <= self.watermark {
            return;
        }
        // An epoch without records is sealed only as the first epoch (it shows the tier is
        // up) or to show a membership change: while nothing waits, closed timestamps rise
        // without sealing (and the watermark stays with the newest epoch). Every pending
        // record stays above the minimum closed timestamp, so the epoch sealed later covers
        // the whole stretch in one.
        let carries_record = self
            .pending
            .first_key_value()
            .is_some_and(|(key, _)| key.timestamp <= new_watermark);
        let first = self.next_epoch_number == 1;
        if !carries_record && !first && !self.membership_unsealed {
            return;
        }
        self.membership_unsealed = false;
        let mut records = Vec::new();
        let mut record_sizes_bytes = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().timestamp > new_watermark {
                break;
            }
            let key_bytes = entry.key().to_bytes();
            let (record, size_bytes) = entry.remove();
            assert!(
                record.timestamp > self.watermark,
                "a record is sealed in one epoch only: it lies above the previous watermark"
            );
            self.pending_size_bytes -= size_bytes;
            batch.delete(COORDINATOR_PENDING, key_bytes);
            let origin = self
                .regions
                .get_mut(&record.origin_region)
                .expect("a pending record comes from a configured region");
            assert!(
                origin
                    .last_sealed
                    .is_none_or(|mark| mark.epoch_number <= self.next_epoch_number),
                "a region's sealed records only move forward in the global order"
            );
            origin.last_sealed = Some(SealedRecordMark {
                client_id: record.client_id.get(),
                request_sequence: record.request_sequence.get(),
                epoch_number: self.next_epoch_number,
            });
            origin.last_sealed_known = true;
            records.push(record);
            record_sizes_bytes.push(size_bytes);
        }
        let mut epoch = Epoch {
            number: self.next_epoch_number,
            previous_watermark: self.watermark,
            watermark: new_watermark,
            member_regions: self.member_regions(),
            records,
            record_sizes_bytes,
            size_bytes: 0,
        };
        let encoded = epoch.encode();
        epoch.size_bytes = encoded.len() as u64;
        debug_assert_eq!(epoch.check(), Ok(()));
        assert!(
            self.epochs
                .back()
                .is_none_or(|last| last.number + 1 == epoch.number
                    && last.watermark == epoch.previous_watermark),
            "epoch numbers are dense and each epoch starts where the previous one ended"
        );
        batch.put(
            COORDINATOR_EPOCHS,
            epoch.number.to_be_bytes().to_vec(),
            encoded,
        );
        assert!(new_watermark > self.watermark, "the watermark only grows");
        self.watermark = new_watermark;
        self.next_epoch_number += 1;
        self.retained_size_bytes += epoch.size_bytes;
        self.epochs.push_back(epoch);
        assert!(
            self.pending
                .keys()
                .next()
                .is_none_or(|key| key.timestamp > self.watermark),
            "every pending record lies above the watermark"
        );
        // The epoch before is no longer the newest: if every region appended it, it goes.
        self.drop_acknowledged_epochs(batch);
    }

    /// The retained epochs are dense up to the newest; they hold every epoch some member
    /// region has not appended and no epoch every region has appended.
    fn assert_retained_window(&self) {
        if let Err(reason) = self.check_retained_window() {
            panic!("{reason}");
        }
    }

    fn check_retained_window(&self) -> Result<(), String> {
        let first = self.first_retained_epoch_number();
        if self.epochs.len() as u64 != self.next_epoch_number - first {
            return Err(format!(
                "{} retained epochs from epoch {first}, but the newest is {}: retained epochs \
                 are dense up to the newest",
                self.epochs.len(),
                self.next_epoch_number - 1
            ));
        }
        let needed_by_member = self.members_minimum_acknowledged_epoch() + 1;
        if first > needed_by_member {
            return Err(format!(
                "retained epochs start at {first}, past epoch {needed_by_member} that a member \
                 region has not appended"
            ));
        }
        // The newest sealed epoch is kept whoever appended it (`drop_acknowledged_epochs`).
        let droppable_through = self
            .minimum_acknowledged_epoch()
            .min(self.newest_epoch_number().saturating_sub(1));
        if first <= droppable_through {
            return Err(format!(
                "epoch {first} is retained, but every region that can still append it did"
            ));
        }
        Ok(())
    }

    // Persistence.

    fn encode_state(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_timestamp(&mut out, self.watermark);
        put_u64(&mut out, self.next_epoch_number);
        put_count(&mut out, self.regions.len());
        for (region, state) in &self.regions {
            put_region(&mut out, region);
            put_u64(&mut out, state.incarnation);
            out.push(u8::from(state.member));
            put_u64(&mut out, state.next_batch_number);
            put_timestamp(&mut out, state.closed);
            put_timestamp(&mut out, state.floor);
            put_u64(&mut out, state.acknowledged_epoch);
        }
        out.push(u8::from(self.membership_unsealed));
        for state in self.regions.values() {
            match state.last_sealed {
                _ if !state.last_sealed_known => out.push(SEALED_MARK_UNKNOWN),
                None => out.push(SEALED_MARK_NONE),
                Some(mark) => {
                    out.push(SEALED_MARK_KEPT);
                    put_u64(&mut out, mark.client_id);
                    put_u64(&mut out, mark.request_sequence);
                    put_u64(&mut out, mark.epoch_number);
                }
            }
        }
        out
    }

    fn write_state(&self, batch: &mut WriteBatch) {
        let mut value = vec![STATE_FORMAT];
        value.extend_from_slice(&self.encode_state());
        batch.put(COORDINATOR_STATE, STATE_KEY, value);
    }

    /// A state with the counters and regions read from `reader`, nothing pending or retained,
    /// in state or snapshot format `format` (1 to 3, numbered alike).
    fn decode_state(
        &self,
        reader: &mut Reader<'_>,
        format: u8,
    ) -> Result<CoordinatorState, String> {
        let watermark = reader.timestamp("watermark")?;
        let next_epoch_number = reader.u64("next epoch number")?;
        if next_epoch_number == 0 {
            return Err("next epoch number 0: epochs count from 1".to_owned());
        }
        let count = reader.count(REGIONS_MAX, REGION_ENCODED_BYTES_MIN, "region count")?;
        let mut regions = BTreeMap::new();
        for _ in 0..count {
            let region = reader.region("region")?;
            let what = |field: &str| format!("region {region} {field}");
            let state = RegionState {
                incarnation: reader.u64(&what("incarnation"))?,
                member: reader.bool(&what("member"))?,
                next_batch_number: reader.u64(&what("next batch number"))?,
                closed: reader.timestamp(&what("closed timestamp"))?,
                floor: reader.timestamp(&what("floor"))?,
                acknowledged_epoch: reader.u64(&what("acknowledged epoch"))?,
                last_sealed: None,
                // Formats before 3 kept no marks.
                last_sealed_known: format >= STATE_FORMAT,
            };
            if state.incarnation == 0 || state.next_batch_number == 0 {
                return Err(what("incarnation or next batch number is 0"));
            }
            if state.acknowledged_epoch >= next_epoch_number {
                return Err(what("acknowledged epoch is beyond the newest sealed epoch"));
            }
            if state.member && state.closed < watermark {
                return Err(what("closed timestamp is below the watermark"));
            }
            if regions.insert(region.clone(), state).is_some() {
                return Err(format!("region {region} is listed twice"));
            }
        }
        let configured: Vec<&RegionId> = self.regions.keys().collect();
        if regions.keys().collect::<Vec<_>>() != configured {
            return Err(format!(
                "the regions {:?} differ from the configured regions {configured:?}",
                regions.keys().collect::<Vec<_>>()
            ));
        }
        if !regions.values().any(|state| state.member) {
            return Err("no region is a member".to_owned());
        }
        let membership_unsealed = if format >= STATE_FORMAT_WITHOUT_SEALED_MARKS {
            reader.bool("membership flag")?
        } else {
            true
        };
        if format >= STATE_FORMAT {
            for (region, state) in &mut regions {
                let what = |field: &str| format!("region {region} {field}");
                match reader.u8(&what("sealed mark kind"))? {
                    SEALED_MARK_NONE => continue,
                    SEALED_MARK_UNKNOWN => {
                        state.last_sealed_known = false;
                        continue;
                    }
                    SEALED_MARK_KEPT => {}
                    other => {
                        return Err(what(&format!(
                            "sealed mark kind {other} is unknown; this release writes \
                             {SEALED_MARK_NONE} to {SEALED_MARK_UNKNOWN}"
                        )));
                    }
                }
                let mark = SealedRecordMark {
                    client_id: reader.u64(&what("sealed mark client"))?,
                    request_sequence: reader.u64(&what("sealed mark request sequence"))?,
                    epoch_number: reader.u64(&what("sealed mark epoch"))?,
                };
                if mark.epoch_number == 0 || mark.epoch_number >= next_epoch_number {
                    return Err(what(&format!(
                        "sealed mark names epoch {}, not one of the sealed epochs 1 to {}",
                        mark.epoch_number,
                        next_epoch_number - 1
                    )));
                }
                state.last_sealed = Some(mark);
            }
        }
        Ok(CoordinatorState {
            limits: self.limits,
            regions,
            watermark,
            next_epoch_number,
            pending: BTreeMap::new(),
            pending_size_bytes: 0,
            epochs: VecDeque::new(),
            retained_size_bytes: 0,
            membership_unsealed,
        })
    }

    /// Adds a pending record read back from a snapshot or the store, checking it belongs.
    fn insert_recovered_pending(&mut self, record: Record, size_bytes: u64) -> Result<(), String> {
        let key = PendingKey::of(&record);
        let Some(region) = self.regions.get(&key.region) else {
            return Err(format!("a pending record of unknown region {}", key.region));
        };
        if !region.member || key.timestamp > region.floor {
            return Err(format!(
                "a pending record of region {} at {} is not accounted for by the region's \
                 membership and floor",
                key.region, key.timestamp
            ));
        }
        if key.timestamp <= self.watermark {
            return Err(format!(
                "a pending record at {} is not above the watermark {}",
                key.timestamp, self.watermark
            ));
        }
        self.pending_size_bytes += size_bytes;
        if self
            .pending
            .insert(key.clone(), (record, size_bytes))
            .is_some()
        {
            return Err(format!("the pending record {key:?} is listed twice"));
        }
        Ok(())
    }

    /// Adds a retained epoch read back from a snapshot or the store, checking it continues
    /// the ones before.
    fn push_recovered_epoch(&mut self, epoch: Epoch) -> Result<(), String> {
        // The first retained epoch follows the epochs every region appended (or is the newest
        // epoch, kept whoever appended it), or, when epochs were released for regions out of
        // the membership, follows those every member appended (`check_retained_window` checks
        // which).
        let expected = match self.epochs.back() {
            Some(last) => last.number + 1,
            None => {
                let all_appended = self
                    .regions
                    .values()
                    .map(|state| state.acknowledged_epoch)
                    .min()
                    .unwrap_or(0);
                // The newest epoch stays retained even when every region appended it.
                let lowest = (all_appended + 1)
                    .min(self.next_epoch_number.saturating_sub(1))
                    .max(1);
                epoch.number.clamp(lowest, self.next_epoch_number)
            }
        };
        if epoch.number != expected {
            return Err(format!(
                "epoch {} where epoch {expected} was expected",
                epoch.number
            ));
        }
        if let Some(last) = self.epochs.back()
            && last.watermark != epoch.previous_watermark
        {
            return Err(format!(
                "epoch {} starts at {}, not where epoch {} ended ({})",
                epoch.number, epoch.previous_watermark, last.number, last.watermark
            ));
        }
        self.retained_size_bytes += epoch.size_bytes;
        self.epochs.push_back(epoch);
        Ok(())
    }

    /// The checks that tie the parts of a recovered state together.
    fn check_recovered(&self) -> Result<(), String> {
        self.check_retained_window()?;
        if let Some(last) = self.epochs.back()
            && last.watermark != self.watermark
        {
            return Err(format!(
                "the newest epoch ends at {}, not at the watermark {}",
                last.watermark, self.watermark
            ));
        }
        Ok(())
    }

    fn encode_snapshot(&self) -> Vec<u8> {
        let mut out = vec![SNAPSHOT_FORMAT];
        out.extend_from_slice(&self.encode_state());
        put_count(&mut out, self.pending.len());
        for (record, _) in self.pending.values() {
            put_bytes(&mut out, &encode_record(record));
        }
        put_count(&mut out, self.epochs.len());
        for epoch in &self.epochs {
            put_bytes(&mut out, &epoch.encode());
        }
        out
    }

    fn decode_snapshot(&self, data: &[u8]) -> Result<CoordinatorState, String> {
        if data.len() > SNAPSHOT_BYTES_MAX {
            return Err(format!(
                "{} bytes, more than the maximum of {SNAPSHOT_BYTES_MAX}",
                data.len()
            ));
        }
        let mut reader = Reader::new(data);
        let format = reader.u8("snapshot format")?;
        if !(SNAPSHOT_FORMAT_WITHOUT_MEMBERSHIP_FLAG..=SNAPSHOT_FORMAT).contains(&format) {
            return Err(format!(
                "format {format} is unknown; this release reads formats \
                 {SNAPSHOT_FORMAT_WITHOUT_MEMBERSHIP_FLAG} to {SNAPSHOT_FORMAT}"
            ));
        }
        let mut state = self.decode_state(&mut reader, format)?;
        let pending_count = reader.count(usize::MAX, 4, "pending record count")?;
        for number in 0..pending_count {
            let (record, size_bytes) = reader.record(&format!("pending record {number}"))?;
            state.insert_recovered_pending(record, size_bytes)?;
        }
        let epoch_count = reader.count(RETAINED_EPOCHS_MAX + REGIONS_MAX, 4, "epoch count")?;
        for _ in 0..epoch_count {
            let bytes = reader.bytes(SNAPSHOT_BYTES_MAX, "epoch")?;
            state.push_recovered_epoch(Epoch::decode(bytes)?)?;
        }
        reader.finish()?;
        state.check_recovered()?;
        Ok(state)
    }

    fn recover_pending(&mut self, store: &dyn DurableStore) -> Result<(), StoreError> {
        let mut start = Vec::new();
        loop {
            let chunk = store.scan(
                COORDINATOR_PENDING,
                &start,
                &KEYS_END,
                RECOVERY_SCAN_CHUNK_MAX,
            )?;
            let chunk_len = chunk.len();
            for (key, value) in chunk {
                let record = decode_record(&value)
                    .map_err(|reason| corrupt(COORDINATOR_PENDING, &key, reason))?;
                if PendingKey::of(&record).to_bytes() != key {
                    return Err(corrupt(
                        COORDINATOR_PENDING,
                        &key,
                        "the key does not match the record's timestamp, region and sequence",
                    ));
                }
                let size_bytes = value.len() as u64 + LENGTH_PREFIX_BYTES;
                self.insert_recovered_pending(record, size_bytes)
                    .map_err(|reason| corrupt(COORDINATOR_PENDING, &key, reason))?;
                start = key;
                start.push(0);
            }
            if chunk_len < RECOVERY_SCAN_CHUNK_MAX {
                return Ok(());
            }
        }
    }

    fn recover_epochs(&mut self, store: &dyn DurableStore) -> Result<(), StoreError> {
        let mut start = Vec::new();
        loop {
            let chunk = store.scan(
                COORDINATOR_EPOCHS,
                &start,
                &KEYS_END,
                RECOVERY_SCAN_CHUNK_MAX,
            )?;
            let chunk_len = chunk.len();
            for (key, value) in chunk {
                let epoch = Epoch::decode(&value)
                    .map_err(|reason| corrupt(COORDINATOR_EPOCHS, &key, reason))?;
                if epoch.number.to_be_bytes().as_slice() != key.as_slice() {
                    return Err(corrupt(
                        COORDINATOR_EPOCHS,
                        &key,
                        format!("the key does not hold epoch {}", epoch.number),
                    ));
                }
                self.push_recovered_epoch(epoch)
                    .map_err(|reason| corrupt(COORDINATOR_EPOCHS, &key, reason))?;
                start = key;
                start.push(0);
            }
            if chunk_len < RECOVERY_SCAN_CHUNK_MAX {
                return Ok(());
            }
        }
    }
}

fn unknown_region(region: &RegionId) -> EntryEffect {
    EntryEffect::Refused {
        reason: format!("region {region} is not in the topology"),
    }
}

/// Checks a list of regions: 1 to [`REGIONS_MAX`], sorted, none repeated.
pub(crate) fn check_regions(regions: &[RegionId]) -> Result<(), String> {
    if regions.is_empty() || regions.len() > REGIONS_MAX {
        return Err(format!(
            "{} regions; the coordinator tracks 1 to {REGIONS_MAX}",
            regions.len()
        ));
    }
    if regions.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err("regions must be sorted and unique".to_owned());
    }
    Ok(())
}

impl StateMachine for CoordinatorState {
    type Output = EntryOutcome;

    fn apply(
        &mut self,
        _index: u64,
        data: &[u8],
        _store: &dyn DurableStore,
        batch: &mut WriteBatch,
    ) -> Result<EntryOutcome, StoreError> {
        let epochs_before = self.next_epoch_number;
        let effect = match CoordinatorEntry::decode(data) {
            Ok(entry) => self.apply_entry(entry, batch),
            Err(reason) => EntryEffect::Refused { reason },
        };
        self.write_state(batch);
        let sealed_epoch = (self.next_epoch_number > epochs_before).then_some(epochs_before);
        Ok(EntryOutcome {
            effect,
            sealed_epoch,
        })
    }

    fn snapshot(&self, _store: &dyn DurableStore) -> Result<Vec<u8>, StoreError> {
        Ok(self.encode_snapshot())
    }

    fn validate_snapshot(&self, data: &[u8]) -> Result<(), SnapshotError> {
        self.decode_snapshot(data)
            .map(|_| ())
            .map_err(|reason| SnapshotError::new(format!("coordinator state {reason}")))
    }

    fn restore(&mut self, data: &[u8], batch: &mut WriteBatch) -> Result<(), SnapshotError> {
        let decoded = self
            .decode_snapshot(data)
            .map_err(|reason| SnapshotError::new(format!("coordinator state {reason}")))?;
        for space in [COORDINATOR_STATE, COORDINATOR_PENDING, COORDINATOR_EPOCHS] {
            batch.delete_range(space, Vec::new(), KEYS_END.to_vec());
        }
        *self = decoded;
        for (key, (record, _)) in &self.pending {
            batch.put(COORDINATOR_PENDING, key.to_bytes(), encode_record(record));
        }
        for epoch in &self.epochs {
            batch.put(
                COORDINATOR_EPOCHS,
                epoch.number.to_be_bytes().to_vec(),
                epoch.encode(),
            );
        }
        self.write_state(batch);
        Ok(())
    }

    fn recover(&mut self, store: &dyn DurableStore) -> Result<(), StoreError> {
        let regions: Vec<RegionId> = self.regions.keys().cloned().collect();
        *self = CoordinatorState::new(&regions, self.limits);
        let Some(value) = store.get(COORDINATOR_STATE, STATE_KEY)? else {
            return Ok(());
        };
        let mut reader = Reader::new(&value);
        let decoded = reader
            .u8("state format")
            .and_then(|format| {
                if (STATE_FORMAT_WITHOUT_MEMBERSHIP_FLAG..=STATE_FORMAT).contains(&format) {
                    Ok(format)
                } else {
                    Err(format!(
                        "format {format} is unknown; this release reads formats \
                         {STATE_FORMAT_WITHOUT_MEMBERSHIP_FLAG} to {STATE_FORMAT}"
                    ))
                }
            })
            .and_then(|format| self.decode_state(&mut reader, format))
            .and_then(|state| reader.finish().map(|()| state))
            .map_err(|reason| corrupt(COORDINATOR_STATE, STATE_KEY, reason))?;
        *self = decoded;
        self.recover_pending(store)?;
        self.recover_epochs(store)?;
        self.check_retained_window().map_err(|reason| {
            let first = self.first_retained_epoch_number();
            corrupt(COORDINATOR_EPOCHS, &first.to_be_bytes(), reason)
        })?;
        self.check_recovered()
            .map_err(|reason| corrupt(COORDINATOR_STATE, STATE_KEY, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::tests::global_record;
    use dsss_raft_group::MemoryStore;

    fn regions(names: &[&str]) -> Vec<RegionId> {
        names
            .iter()
            .map(|name| RegionId::new(*name).unwrap())
            .collect()
    }

    fn region(name: &str) -> RegionId {
        RegionId::new(name).unwrap()
    }

    fn at(physical_us: u64) -> Timestamp {
        Timestamp::new(physical_us, 0)
    }

    struct Harness {
        state: CoordinatorState,
        store: MemoryStore,
        index: u64,
    }

    impl Harness {
        fn new(names: &[&str]) -> Harness {
            Harness::with_limits(names, CoordinatorLimits::default())
        }

        fn with_limits(names: &[&str], limits: CoordinatorLimits) -> Harness {
            Harness {
                state: CoordinatorState::new(&regions(names), limits),
                store: MemoryStore::new(),
                index: 0,
            }
        }

        fn apply(&mut self, entry: &CoordinatorEntry) -> EntryOutcome {
            self.apply_bytes(&entry.encode())
        }

        fn apply_bytes(&mut self, data: &[u8]) -> EntryOutcome {
            self.index += 1;
            let mut batch = WriteBatch::new();
            let outcome = self
                .state
                .apply(self.index, data, &self.store, &mut batch)
                .unwrap();
            self.store.write(batch, true).unwrap();
            outcome
        }

        /// A batch of `region` whose records are (sequence, physical time) pairs.
        fn batch(
            &mut self,
            name: &str,
            incarnation: u64,
            batch_number: u64,
            records: &[(u64, u64)],
            closed_us: u64,
        ) -> EntryOutcome {
            let records = records
                .iter()
                .map(|&(sequence, physical_us)| global_record(name, sequence, at(physical_us)))
                .collect();
            self.apply(&CoordinatorEntry::Batch(BatchEntry {
                region: region(name),
                incarnation,
                batch_number,
                records,
                closed: at(closed_us),
            }))
        }

        fn suspect(&mut self, name: &str, incarnation: u64) -> EntryOutcome {
            self.apply(&CoordinatorEntry::Suspect {
                region: region(name),
                incarnation,
            })
        }

        fn acknowledge(&mut self, name: &str, through: u64) -> EntryOutcome {
            self.apply(&CoordinatorEntry::EpochsAcknowledged {
                region: region(name),
                through,
            })
        }

        /// (origin region, sequence, physical time) of every record of epoch `number`.
        fn epoch_records(&self, number: u64) -> Vec<(String, u64, u64)> {
            self.state
                .epoch(number)
                .unwrap()
                .records
                .iter()
                .map(|record| {
                    (
                        record.origin_region.to_string(),
                        record.request_sequence.get(),
                        record.timestamp.physical_us,
                    )
                })
                .collect()
        }

        fn recovered(&self) -> CoordinatorState {
            let names: Vec<RegionId> = self.state.regions().keys().cloned().collect();
            let mut recovered = CoordinatorState::new(&names, self.state.limits());
            recovered.recover(&self.store).unwrap();
            recovered
        }
    }

    fn verdict(outcome: &EntryOutcome) -> BatchVerdict {
        match &outcome.effect {
            EntryEffect::Batch { verdict, .. } => verdict.clone(),
            other => panic!("not a batch effect: {other:?}"),
        }
    }

    fn entry(name: &str, sequence: u64, physical_us: u64) -> (String, u64, u64) {
        (name.to_owned(), sequence, physical_us)
    }

    #[test]
    fn an_epoch_is_sealed_when_the_slowest_member_closes_and_is_sorted() {
        // Reference: docs/global-protocol.md section 5 (SEAL); ties broken by region id then
        // sequence.
        let mut harness = Harness::new(&["a", "b"]);
        let outcome = harness.batch("b", 1, 1, &[(1, 100), (2, 150), (3, 300)], 300);
        assert_eq!(
            verdict(&outcome),
            BatchVerdict::Accepted { readmitted: false }
        );
        assert_eq!(
            outcome.sealed_epoch, None,
            "region a has closed nothing yet"
        );
        // Within one region timestamps strictly increase (a repeated one is lifted), so ties
        // are between regions.
        let outcome = harness.batch("a", 1, 1, &[(9, 100), (4, 150), (5, 160)], 200);
        assert_eq!(outcome.sealed_epoch, Some(1));
        assert_eq!(harness.state.watermark(), at(200));
        assert_eq!(
            harness.epoch_records(1),
            vec![
                entry("a", 9, 100),
                entry("b", 1, 100),
                entry("a", 4, 150),
                entry("b", 2, 150),
                entry("a", 5, 160),
            ]
        );
        let epoch = harness.state.epoch(1).unwrap();
        assert_eq!(epoch.previous_watermark, Timestamp::ZERO);
        assert_eq!(epoch.member_regions, regions(&["a", "b"]));
        assert_eq!(harness.state.pending_count(), 1, "b's record at 300 waits");
    }

    #[test]
    fn empty_batches_move_closed_timestamps_and_seal_only_what_needs_an_epoch() {
        // Reference: docs/global-protocol.md section 5 (SEAL): an epoch without records is
        // sealed only to show a membership change.
        let mut harness = Harness::new(&["a", "b"]);
        harness.batch("a", 1, 1, &[], 100);
        // The first rise of the watermark seals the first epoch, empty: the tier is up.
        let outcome = harness.batch("b", 1, 1, &[], 50);
        assert_eq!(outcome.sealed_epoch, Some(1));
        assert!(harness.state.epoch(1).unwrap().records.is_empty());
        let outcome = harness.batch("b", 1, 2, &[], 120);
        assert_eq!(outcome.sealed_epoch, None, "nothing waits");
        assert_eq!(harness.state.watermark(), at(50));
        assert_eq!(harness.state.region(&region("b")).unwrap().closed, at(120));
        // A record seals one epoch covering the whole stretch since the last one.
        let outcome = harness.batch("a", 1, 2, &[(1, 110)], 130);
        assert_eq!(outcome.sealed_epoch, Some(2));
        let epoch = harness.state.epoch(2).unwrap();
        assert_eq!(
            (epoch.previous_watermark, epoch.watermark),
            (at(50), at(120))
        );
        assert_eq!(harness.epoch_records(2), vec![entry("a", 1, 110)]);
        // Closed timestamps rise again without an epoch...
        let outcome = harness.batch("b", 1, 3, &[], 200);
        assert_eq!(outcome.sealed_epoch, None);
        // ...until the membership changes: the removal seals an empty epoch without b.
        let outcome = harness.suspect("b", 1);
        assert_eq!(outcome.sealed_epoch, Some(3));
        let epoch = harness.state.epoch(3).unwrap();
        assert!(epoch.records.is_empty());
        assert_eq!(epoch.member_regions, regions(&["a"]));
        assert_eq!(
            (epoch.previous_watermark, epoch.watermark),
            (at(120), at(130))
        );
        // A closed timestamp that rises with nothing waiting seals nothing.
        let outcome = harness.batch("a", 1, 3, &[], 300);
        assert_eq!(outcome.sealed_epoch, None);
        assert_eq!(harness.state.newest_epoch_number(), 3);
        assert_eq!(harness.recovered(), harness.state);
    }

    #[test]
    fn duplicates_gaps_and_stale_incarnations_change_nothing() {
        let mut harness = Harness::new(&["a", "b"]);
        harness.batch("a", 1, 1, &[(1, 10)], 20);
        let before = harness.state.clone();
        let duplicate = harness.batch("a", 1, 1, &[(1, 10)], 20);
        assert_eq!(verdict(&duplicate), BatchVerdict::Duplicate);
        let gap = harness.batch("a", 1, 3, &[(2, 30)], 40);
        assert_eq!(verdict(&gap), BatchVerdict::Gap { expected: 2 });
        let ahead = harness.batch("a", 2, 1, &[(2, 30)], 40);
        assert_eq!(verdict(&ahead), BatchVerdict::IncarnationAhead);
        assert_eq!(harness.state, before);

        harness.batch("b", 1, 1, &[], 100);
        harness.suspect("a", 1);
        harness.batch("a", 2, 1, &[], 200);
        let stale = harness.batch("a", 1, 2, &[(2, 300)], 400);
        assert_eq!(verdict(&stale), BatchVerdict::Stale);
        let unknown = harness.batch("zz", 1, 1, &[], 400);
        assert!(matches!(unknown.effect, EntryEffect::Refused { .. }));
    }

    #[test]
    fn a_suspected_region_leaves_and_is_readmitted_above_the_watermark() {
        // Reference: docs/global-protocol.md section 6 (suspicion and READMIT); no sealed epoch
        // ever changes.
        let mut harness = Harness::new(&["a", "b", "c"]);
        harness.batch("a", 1, 1, &[(1, 100)], 150);
        harness.batch("b", 1, 1, &[(1, 120)], 160);
        harness.batch("c", 1, 1, &[(1, 90)], 100);
        assert_eq!(harness.state.watermark(), at(100));
        harness.batch("a", 1, 2, &[(2, 400)], 500);
        harness.batch("b", 1, 2, &[], 200);
        harness.batch("c", 1, 2, &[(2, 140), (3, 300)], 300);
        assert_eq!(harness.state.watermark(), at(200));
        assert_eq!(
            harness.epoch_records(2),
            vec![entry("b", 1, 120), entry("c", 2, 140)]
        );
        let sealed_before: Vec<Epoch> = harness.state.retained_epochs().cloned().collect();
        // c's record at 300 is not sealed yet: it leaves with c.
        let outcome = harness.suspect("c", 1);
        assert_eq!(
            outcome.effect,
            EntryEffect::Suspect {
                region: region("c"),
                verdict: SuspectVerdict::Removed { records_dropped: 1 }
            }
        );
        assert_eq!(
            outcome.sealed_epoch, None,
            "b still holds the watermark at 200"
        );
        harness.batch("b", 1, 3, &[(2, 450)], 500);
        assert_eq!(harness.state.watermark(), at(500));
        let newest = harness.state.newest_epoch_number();
        assert_eq!(
            harness.state.epoch(newest).unwrap().member_regions,
            regions(&["a", "b"])
        );
        assert!(
            harness
                .epoch_records(newest)
                .iter()
                .all(|(name, ..)| name != "c")
        );
        // c has not learned yet: its batches of incarnation 1 are refused.
        let outcome = harness.batch("c", 1, 4, &[], 600);
        assert_eq!(verdict(&outcome), BatchVerdict::NotMember);
        // A suspect for a removed region, or of another incarnation, changes nothing.
        assert_eq!(
            harness.suspect("c", 1).effect,
            EntryEffect::Suspect {
                region: region("c"),
                verdict: SuspectVerdict::Ignored
            }
        );
        // c returns in incarnation 2 with its unsealed record (stamped 300 < W = 500).
        let outcome = harness.batch("c", 2, 1, &[(3, 300)], 310);
        assert_eq!(
            verdict(&outcome),
            BatchVerdict::Accepted { readmitted: true }
        );
        let c = harness.state.region(&region("c")).unwrap();
        assert!(c.member && c.incarnation == 2 && c.next_batch_number == 2);
        assert!(c.closed >= at(500));
        let lifted: Vec<&Record> = harness.state.pending_records().collect();
        let c_record = lifted
            .iter()
            .find(|record| record.origin_region == region("c"))
            .unwrap();
        assert_eq!(lifted.len(), 1, "only c's re-sent record is pending");
        assert_eq!(c_record.timestamp, at(500).successor());
        // The earlier epochs are untouched.
        for epoch in &sealed_before {
            assert_eq!(harness.state.epoch(epoch.number), Some(epoch));
        }
        // Closing beyond the lift seals c's record in a later epoch.
        harness.batch("a", 1, 3, &[], 700);
        harness.batch("b", 1, 4, &[], 700);
        harness.batch("c", 2, 2, &[], 700);
        assert_eq!(harness.state.pending_count(), 0);
        let newest = harness.state.newest_epoch_number();
        let sealed: Vec<u64> = (1..=newest)
            .filter(|&number| harness.epoch_records(number).contains(&entry("c", 3, 500)))
            .collect();
        assert_eq!(sealed.len(), 1, "c's record is sealed exactly once");
        assert!(sealed[0] > sealed_before.last().unwrap().number);
    }

    #[test]
    fn each_regions_newest_sealed_record_is_marked_and_kept_after_its_removal() {
        // Reference: docs/global-protocol.md section 7 ("When no region holds them"): the mark
        // tells a region that skips epochs which of its records they sealed.
        let mut harness = Harness::new(&["a", "b", "c"]);
        let mark = |harness: &Harness, name: &str| {
            harness
                .state
                .region(&region(name))
                .unwrap()
                .last_sealed
                .map(|mark| (mark.request_sequence, mark.epoch_number))
        };
        harness.batch("a", 1, 1, &[(1, 100), (2, 300)], 300);
        harness.batch("b", 1, 1, &[], 200);
        harness.batch("c", 1, 1, &[(1, 120), (2, 400)], 400);
        assert_eq!(harness.state.newest_epoch_number(), 1);
        assert_eq!(mark(&harness, "a"), Some((1, 1)));
        assert_eq!(mark(&harness, "b"), None, "b has no sealed record");
        assert_eq!(mark(&harness, "c"), Some((1, 1)));
        // c leaves; its record at 400 was never sealed and is dropped; a's at 300 is sealed.
        harness.suspect("c", 1);
        harness.batch("b", 1, 2, &[(1, 350)], 500);
        harness.batch("a", 1, 2, &[], 500);
        let newest = harness.state.newest_epoch_number();
        assert!(newest > 1);
        let (sequence, epoch) = mark(&harness, "a").unwrap();
        assert_eq!(sequence, 2);
        assert!(harness.epoch_records(epoch).contains(&entry("a", 2, 300)));
        let (sequence, epoch) = mark(&harness, "b").unwrap();
        assert_eq!(sequence, 1);
        assert!(harness.epoch_records(epoch).contains(&entry("b", 1, 350)));
        assert_eq!(
            mark(&harness, "c"),
            Some((1, 1)),
            "the mark of a region out of the membership stays on its last sealed record"
        );
        assert_eq!(
            harness.recovered(),
            harness.state,
            "the marks are persisted"
        );
        let snapshot = harness.state.snapshot(&harness.store).unwrap();
        let mut other = Harness::new(&["a", "b", "c"]);
        let mut batch = WriteBatch::new();
        other.state.restore(&snapshot, &mut batch).unwrap();
        assert_eq!(other.state, harness.state, "a snapshot carries the marks");
        // A state written before the marks (format 2) is read with none known.
        let mut encoded = harness.state.encode_state();
        encoded.truncate(encoded.len() - 3 * (1 + 3 * 8));
        let mut older = vec![STATE_FORMAT_WITHOUT_SEALED_MARKS];
        older.extend_from_slice(&encoded);
        let mut batch = WriteBatch::new();
        batch.put(COORDINATOR_STATE, STATE_KEY, older);
        harness.store.write(batch, true).unwrap();
        let recovered = harness.recovered();
        assert!(
            recovered
                .regions()
                .values()
                .all(|state| state.last_sealed.is_none() && !state.last_sealed_known),
            "a state written before the marks knows none"
        );
        assert_eq!(recovered.watermark(), harness.state.watermark());
        // Unknown marks are persisted as such.
        let mut batch = WriteBatch::new();
        recovered.write_state(&mut batch);
        harness.store.write(batch, true).unwrap();
        assert!(
            harness
                .recovered()
                .regions()
                .values()
                .all(|state| !state.last_sealed_known)
        );
        // A mark naming an epoch not sealed is a damaged state.
        let mut encoded = harness.state.encode_state();
        let at_epoch = encoded.len() - 8;
        encoded[at_epoch..].copy_from_slice(&(newest + 1).to_be_bytes());
        let mut damaged = vec![STATE_FORMAT];
        damaged.extend_from_slice(&encoded);
        let mut batch = WriteBatch::new();
        batch.put(COORDINATOR_STATE, STATE_KEY, damaged);
        harness.store.write(batch, true).unwrap();
        let names = regions(&["a", "b", "c"]);
        let mut again = CoordinatorState::new(&names, CoordinatorLimits::default());
        let error = again.recover(&harness.store).unwrap_err().to_string();
        assert!(
            error.contains("region c sealed mark names epoch"),
            "{error}"
        );
    }

    #[test]
    fn the_last_member_is_never_removed() {
        let mut harness = Harness::new(&["a", "b"]);
        harness.suspect("a", 1);
        let outcome = harness.suspect("b", 1);
        assert_eq!(
            outcome.effect,
            EntryEffect::Suspect {
                region: region("b"),
                verdict: SuspectVerdict::LastMember
            }
        );
        assert_eq!(harness.state.member_regions(), regions(&["b"]));
    }

    #[test]
    fn acknowledged_epochs_are_dropped_once_every_region_appended_them() {
        let mut harness = Harness::new(&["a", "b"]);
        for number in 1..=4 {
            harness.batch("a", 1, number, &[(number, number * 100 - 50)], number * 100);
            harness.batch("b", 1, number, &[], number * 100);
        }
        assert_eq!(harness.state.newest_epoch_number(), 4);
        harness.acknowledge("a", 3);
        assert_eq!(
            harness.state.retained_epoch_count(),
            4,
            "b acknowledged nothing"
        );
        harness.acknowledge("b", 2);
        assert_eq!(harness.state.retained_epochs().next().unwrap().number, 3);
        harness.acknowledge("b", 1);
        assert_eq!(
            harness
                .state
                .region(&region("b"))
                .unwrap()
                .acknowledged_epoch,
            2
        );
        let beyond = harness.acknowledge("b", 9);
        assert!(matches!(beyond.effect, EntryEffect::Refused { .. }));
        harness.acknowledge("b", 4);
        assert_eq!(harness.state.retained_epoch_count(), 1);
        assert_eq!(harness.store.keys(COORDINATOR_EPOCHS).len(), 1);
        assert_eq!(harness.recovered(), harness.state);
    }

    #[test]
    fn batches_beyond_the_bounds_are_refused_as_overloaded() {
        let limits = CoordinatorLimits {
            pending_records_bytes_max: 400,
            retained_epochs_max: 2,
            retained_epochs_bytes_max: RETAINED_EPOCHS_BYTES_MAX,
            ..CoordinatorLimits::default()
        };
        let mut harness = Harness::with_limits(&["a", "b"], limits);
        let records: Vec<(u64, u64)> = (1..=20).map(|sequence| (sequence, sequence)).collect();
        let outcome = harness.batch("a", 1, 1, &records, 100);
        let BatchVerdict::Overloaded { reason } = verdict(&outcome) else {
            panic!("{outcome:?}");
        };
        assert!(reason.contains("pending records"), "{reason}");
        assert_eq!(
            harness
                .state
                .region(&region("a"))
                .unwrap()
                .next_batch_number,
            1
        );
        harness.batch("a", 1, 1, &[(1, 50)], 100);
        harness.batch("b", 1, 1, &[], 100);
        harness.batch("b", 1, 2, &[], 200);
        harness.batch("a", 1, 2, &[(2, 150)], 200);
        assert_eq!(harness.state.retained_epoch_count(), 2);
        let outcome = harness.batch("a", 1, 3, &[], 300);
        let BatchVerdict::Overloaded { reason } = verdict(&outcome) else {
            panic!("{outcome:?}");
        };
        assert!(reason.contains("retained"), "{reason}");
        harness.acknowledge("a", 2);
        harness.acknowledge("b", 1);
        let outcome = harness.batch("a", 1, 3, &[], 300);
        assert_eq!(
            verdict(&outcome),
            BatchVerdict::Accepted { readmitted: false }
        );
        assert!(
            CoordinatorLimits {
                retained_epochs_max: RETAINED_EPOCHS_MAX + 1,
                ..limits
            }
            .validate()
            .is_err()
        );
    }

    /// A region out of the membership for longer than the retention bound does not stop the
    /// others: once only it holds epochs back, the oldest are released and batches keep being
    /// taken. When it comes back it is not readmitted (it could not append the epochs that
    /// follow the released ones), and nothing is held for it any more; a region back before
    /// its epochs were released is readmitted as usual (docs/global-protocol.md section 7).
    #[test]
    fn a_region_out_of_the_membership_does_not_hold_epochs_past_the_bound() {
        let limits = CoordinatorLimits {
            retained_epochs_max: 8,
            ..CoordinatorLimits::default()
        };
        let mut harness = Harness::with_limits(&["a", "b", "c", "d"], limits);
        for name in ["a", "b", "c", "d"] {
            let records: &[(u64, u64)] = if name == "a" { &[(1_000, 50)] } else { &[] };
            harness.batch(name, 1, 1, records, 100);
        }
        assert_eq!(harness.state.newest_epoch_number(), 1);
        for name in ["a", "b", "c", "d"] {
            harness.acknowledge(name, 1);
        }
        // c and d fall silent and are removed; c has appended epoch 1, d epoch 1 as well.
        harness.suspect("c", 1);
        harness.suspect("d", 1);
        // a and b write for many more epochs than the bound, acknowledging as they go.
        let mut batch_number = 1;
        let mut sequence = 0;
        for round in 1..=40_u64 {
            batch_number += 1;
            for name in ["a", "b"] {
                sequence += 1;
                let time = 100 + round * 100;
                let outcome = harness.batch(name, 1, batch_number, &[(sequence, time - 50)], time);
                assert_eq!(
                    verdict(&outcome),
                    BatchVerdict::Accepted { readmitted: false },
                    "round {round}: {name}'s batch"
                );
            }
            let newest = harness.state.newest_epoch_number();
            harness.acknowledge("a", newest);
            harness.acknowledge("b", newest);
            if round == 2 {
                // d comes back while its epochs are still retained: readmitted.
                let outcome = harness.batch("d", 2, 1, &[], 150);
                assert_eq!(
                    verdict(&outcome),
                    BatchVerdict::Accepted { readmitted: true }
                );
                harness.suspect("d", 2);
            }
            assert!(harness.state.retained_epoch_count() <= 8, "round {round}");
        }
        let newest = harness.state.newest_epoch_number();
        assert!(newest > 30, "{newest} epochs sealed");
        let first_retained = harness.state.first_retained_epoch_number();
        assert!(first_retained > 2, "epochs c never appended were released");
        assert!(!harness.state.can_catch_up(&region("c")));
        // c comes back: it is not readmitted, and nothing changes.
        let before = harness.state.clone();
        let outcome = harness.batch("c", 2, 1, &[(1, 50)], 150);
        assert_eq!(
            verdict(&outcome),
            BatchVerdict::EpochsReleased {
                acknowledged_epoch: 1,
                first_retained_epoch: first_retained,
            }
        );
        assert_eq!(harness.state, before);
        assert!(!harness.state.region(&region("c")).unwrap().member);
        // a and b keep writing, and a replica restarted from its store holds the same state.
        let outcome = harness.batch("a", 1, batch_number + 1, &[], 100_000);
        assert_eq!(
            verdict(&outcome),
            BatchVerdict::Accepted { readmitted: false }
        );
        assert_eq!(harness.recovered(), harness.state);
        let snapshot = harness.state.snapshot(&harness.store).unwrap();
        let names: Vec<RegionId> = harness.state.regions().keys().cloned().collect();
        let mut restored = CoordinatorState::new(&names, limits);
        let mut batch = WriteBatch::new();
        restored.restore(&snapshot, &mut batch).unwrap();
        assert_eq!(restored, harness.state);
    }

    /// A region that missed released epochs and skipped to the newest through another
    /// region's log is readmitted once it acknowledges that epoch, even when nothing is sealed
    /// after it: the newest epoch stays retained, so the coordinator can deliver it and learn
    /// that the region holds it. (Dropping it left such a region refused for good while the
    /// other regions were idle, its outgoing batches piling up.)
    #[test]
    fn a_region_that_skipped_to_the_newest_epoch_is_readmitted_without_a_new_epoch() {
        let limits = CoordinatorLimits {
            retained_epochs_max: 4,
            ..CoordinatorLimits::default()
        };
        let mut harness = Harness::with_limits(&["a", "b", "c"], limits);
        for name in ["a", "b", "c"] {
            harness.batch(name, 1, 1, &[], 100);
        }
        harness.acknowledge("c", harness.state.newest_epoch_number());
        harness.suspect("c", 1);
        let mut sequence = 0;
        for round in 1..=12_u64 {
            for name in ["a", "b"] {
                sequence += 1;
                let time = 100 + round * 100;
                harness.batch(name, 1, round + 1, &[(sequence, time - 50)], time);
            }
            let newest = harness.state.newest_epoch_number();
            harness.acknowledge("a", newest);
            harness.acknowledge("b", newest);
        }
        // Every member appended everything, and no epoch is sealed from here on: the newest
        // stays retained all the same, and only it.
        let newest = harness.state.newest_epoch_number();
        assert!(newest > 8, "{newest} epochs sealed");
        assert_eq!(harness.state.first_retained_epoch_number(), newest);
        assert_eq!(harness.state.retained_epoch_count(), 1);
        // c comes back having skipped to the newest epoch: refused until it says so...
        assert!(!harness.state.can_catch_up(&region("c")));
        let outcome = harness.batch("c", 2, 1, &[], 150);
        assert!(
            matches!(verdict(&outcome), BatchVerdict::EpochsReleased { .. }),
            "{outcome:?}"
        );
        // ...which it does when the newest epoch is delivered to it; then it is readmitted.
        harness.acknowledge("c", newest);
        assert!(harness.state.can_catch_up(&region("c")));
        let outcome = harness.batch("c", 2, 1, &[], 150);
        assert_eq!(
            verdict(&outcome),
            BatchVerdict::Accepted { readmitted: true }
        );
        assert_eq!(harness.recovered(), harness.state);
    }

    fn busy_harness() -> Harness {
        let mut harness = Harness::new(&["a", "b", "c"]);
        harness.batch("a", 1, 1, &[(1, 100), (2, 300)], 300);
        harness.batch("b", 1, 1, &[(1, 150)], 200);
        harness.batch("c", 1, 1, &[(1, 120), (2, 400)], 400);
        harness.suspect("b", 1);
        harness.batch("a", 1, 2, &[(3, 500)], 600);
        harness.acknowledge("a", 1);
        harness.acknowledge("b", 1);
        harness.acknowledge("c", 1);
        harness.batch("b", 2, 1, &[(2, 250)], 260);
        harness
    }

    #[test]
    fn recovery_after_restart_rebuilds_the_same_state() {
        let harness = busy_harness();
        assert!(harness.state.pending_count() > 0 && harness.state.retained_epoch_count() > 0);
        assert_eq!(harness.recovered(), harness.state);
        // An empty store recovers the initial state.
        let mut fresh =
            CoordinatorState::new(&regions(&["a", "b", "c"]), CoordinatorLimits::default());
        fresh.recover(&MemoryStore::new()).unwrap();
        assert_eq!(fresh.newest_epoch_number(), 0);
    }

    #[test]
    fn a_snapshot_carries_the_whole_state_and_restores_it_alone() {
        let harness = busy_harness();
        let snapshot = harness.state.snapshot(&harness.store).unwrap();
        let mut other = Harness::new(&["a", "b", "c"]);
        other.batch("c", 1, 1, &[(7, 10)], 20);
        other.state.validate_snapshot(&snapshot).unwrap();
        let mut batch = WriteBatch::new();
        other.state.restore(&snapshot, &mut batch).unwrap();
        other.store.write(batch, true).unwrap();
        assert_eq!(other.state, harness.state);
        assert_eq!(
            other.recovered(),
            harness.state,
            "the restored state was fully written"
        );
        assert_eq!(other.state.snapshot(&other.store).unwrap(), snapshot);
    }

    #[test]
    fn damaged_snapshots_entries_and_stores_are_errors_never_panics() {
        let harness = busy_harness();
        let snapshot = harness.state.snapshot(&harness.store).unwrap();
        for length in 0..snapshot.len() {
            assert!(
                harness
                    .state
                    .validate_snapshot(&snapshot[..length])
                    .is_err()
            );
        }
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 0..2_000 {
            let mut damaged = snapshot.clone();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let position = (state as usize) % damaged.len();
            damaged[position] ^= (state >> 32) as u8 | 1;
            if round % 2 == 0 {
                let _ = harness.state.validate_snapshot(&damaged);
            } else {
                let mut copy = harness.clone_state();
                let before = copy.clone();
                let mut batch = WriteBatch::new();
                if copy.restore(&damaged, &mut batch).is_err() {
                    assert_eq!(copy, before, "a refused snapshot changes nothing");
                }
            }
        }
        let other_regions =
            CoordinatorState::new(&regions(&["a", "b"]), CoordinatorLimits::default());
        let error = other_regions.validate_snapshot(&snapshot).unwrap_err();
        assert!(error.to_string().contains("configured regions"), "{error}");

        // Garbage entries are refused alike and change nothing.
        let mut harness = busy_harness();
        let before = harness.state.clone();
        for garbage in [
            vec![],
            vec![1],
            vec![1, 1, 0, 0, 0, 9],
            vec![2, 1],
            vec![1, 9, 0],
        ] {
            let outcome = harness.apply_bytes(&garbage);
            assert!(
                matches!(outcome.effect, EntryEffect::Refused { .. }),
                "{outcome:?}"
            );
            assert_eq!(outcome.sealed_epoch, None);
        }
        assert_eq!(harness.state, before);

        // A damaged store is a named error.
        let mut damaged = harness.store.clone();
        let mut batch = WriteBatch::new();
        batch.put(COORDINATOR_STATE, STATE_KEY, vec![1, 2, 3]);
        damaged.write(batch, true).unwrap();
        let mut recovered =
            CoordinatorState::new(&regions(&["a", "b", "c"]), CoordinatorLimits::default());
        let error = recovered.recover(&damaged).unwrap_err();
        assert!(error.to_string().contains("coordinator_state"), "{error}");
        let mut damaged = harness.store.clone();
        let first = harness.state.retained_epochs().next().unwrap().number;
        let mut batch = WriteBatch::new();
        batch.delete(COORDINATOR_EPOCHS, first.to_be_bytes().to_vec());
        damaged.write(batch, true).unwrap();
        let error = recovered.recover(&damaged).unwrap_err();
        assert!(error.to_string().contains("coordinator_epochs"), "{error}");
    }

    impl Harness {
        fn clone_state(&self) -> CoordinatorState {
            self.state.clone()
        }
    }

    #[test]
    fn large_epochs_are_cut_into_parts_of_bounded_size() {
        let mut harness = Harness::new(&["a"]);
        let records: Vec<(u64, u64)> = (1..=40).map(|sequence| (sequence, sequence)).collect();
        harness.batch("a", 1, 1, &records, 100);
        let epoch = harness.state.epoch(1).unwrap();
        let bound_bytes = epoch.record_sizes_bytes.iter().max().unwrap() * 7;
        let parts = epoch.part_ranges(bound_bytes);
        assert!(parts.len() >= 6, "{parts:?}");
        assert_eq!(parts[0].start, 0);
        assert_eq!(parts.last().unwrap().end, 40);
        assert!(parts.windows(2).all(|pair| pair[0].end == pair[1].start));
        for part in &parts {
            let size_bytes: u64 = epoch.record_sizes_bytes[part.clone()].iter().sum();
            assert!(size_bytes <= bound_bytes && !part.is_empty());
        }
        assert_eq!(
            epoch.part_ranges(1).len(),
            40,
            "a record larger than the bound goes alone"
        );
        // An epoch without records (one that shows a membership change) is one empty part.
        let empty = Epoch {
            number: 2,
            previous_watermark: at(100),
            watermark: at(200),
            member_regions: regions(&["a"]),
            records: Vec::new(),
            record_sizes_bytes: Vec::new(),
            size_bytes: 0,
        };
        assert_eq!(empty.part_ranges(1), vec![0..0]);
    }
}
