//! [`GlobalState`]: the replicated state of the region's side of the global tier.
//!
//! It changes only in apply (so every member holds the same), is written in the batch of the
//! entry that changed it, and travels in snapshots. Store layout, in the region state key
//! space: `global` holds everything but the records (a few kilobytes at most: the bounded
//! list of outgoing batch headers), and `global/record/<position>` holds each record still
//! waiting to be sealed, keyed by the big-endian position of its pending entry.
//!
//! The records a batch holds are never listed: batches take records in log order, so the
//! open batch is every unsealed record after the last batch's position, and an outgoing
//! batch is every unsealed record between its bounds. A sealed record leaves the state at
//! once: the coordinator sealed it, so it already holds the whole batch it came in, and a
//! resend of that batch (without it) is a duplicate by number there.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use dsss_raft_group::{DurableStore, KeySpace, StoreError, WriteBatch};
use dsss_wire::ids::REGION_ID_CHARS_MAX;
use dsss_wire::{Record, RegionId, Timestamp};

use crate::bytes::{Reader, corrupt, put_bytes};
use crate::global::catch_up::HeldEpochEnd;
use crate::global::entry::{EpochPart, MEMBER_REGIONS_MAX};
use crate::global::skip::EpochsSkip;
use crate::record::{RECORD_BYTES_MAX, decode_record, encode_record};

/// The most global records a region holds unsealed; beyond, new global calls are refused
/// as overloaded.
pub const GLOBAL_UNSEALED_RECORDS_MAX: usize = 16_384;

/// The most bytes of unsealed global records a region holds; beyond, new global calls are
/// refused as overloaded. One batch holds at most this much, far below the gRPC bound, and
/// snapshots keep room for it.
pub const GLOBAL_UNSEALED_SIZE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// The most outgoing batches the coordinator has not yet acknowledged; beyond, the region
/// closes no further batch and refuses new global calls as overloaded.
pub const OUTGOING_BATCHES_MAX: usize = 1_024;

/// The key of the state (without its records).
pub(crate) const GLOBAL_KEY: &[u8] = b"global";

/// The prefix of the keys of unsealed records.
pub(crate) const GLOBAL_RECORD_PREFIX: &[u8] = b"global/record/";

/// The end of the range of record keys: the prefix with its last byte raised by one.
const GLOBAL_RECORD_END: &[u8] = b"global/record0";

const STATE_FORMAT: u8 = 1;

/// How many keys one scan of the store returns while recovering.
const RECOVERY_SCAN_CHUNK_MAX: usize = 1_024;

/// A batch the region closed and ships until the coordinator acknowledges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutgoingBatch {
    /// The region's incarnation when the batch was closed.
    pub incarnation: u64,
    /// Its number in the incarnation, from 1.
    pub batch_number: u64,
    /// The closed timestamp: every record applied later in the region has a greater one.
    pub closed: Timestamp,
    /// The batch holds the unsealed records after this position...
    pub after_position: u64,
    /// ...and at or before this one.
    pub through_position: u64,
}

/// A global record of this region that no applied epoch holds yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsealedRecord {
    /// The record, with the timestamp assigned at apply.
    pub record: Record,
    /// The size of its encoding.
    pub size_bytes: u64,
}

/// The epoch whose parts are being appended.
#[derive(Clone, Debug, PartialEq, Eq)]
struct EpochInProgress {
    epoch_number: u64,
    part_count: u32,
    parts_applied: u32,
    watermark: Timestamp,
    previous_watermark: Option<Timestamp>,
    member_regions: Vec<RegionId>,
    record_count: u32,
}

/// What appending an epoch's last part concluded about the region's membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Nothing changed.
    Unchanged,
    /// The epoch no longer lists the region: it took the next incarnation and reships its
    /// unsealed records.
    Removed {
        /// The new incarnation.
        incarnation: u64,
    },
    /// The epoch lists the region again.
    Readmitted,
}

/// The region's side of the global tier. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalState {
    incarnation: u64,
    member: bool,
    last_batch_number: u64,
    /// Every unsealed record at or before this position is in an outgoing batch (or was in a
    /// pruned one); the open batch holds those after it.
    batched_through_position: u64,
    outgoing: VecDeque<OutgoingBatch>,
    unsealed: BTreeMap<u64, UnsealedRecord>,
    unsealed_by_key: BTreeMap<(u64, u64), u64>,
    unsealed_size_bytes: u64,
    epochs_applied_through: u64,
    watermark: Timestamp,
    in_progress: Option<EpochInProgress>,
}

impl Default for GlobalState {
    fn default() -> Self {
        GlobalState {
            incarnation: 1,
            member: true,
            last_batch_number: 0,
            batched_through_position: 0,
            outgoing: VecDeque::new(),
            unsealed: BTreeMap::new(),
            unsealed_by_key: BTreeMap::new(),
            unsealed_size_bytes: 0,
            epochs_applied_through: 0,
            watermark: Timestamp::ZERO,
            in_progress: None,
        }
    }
}

/// The key of an unsealed record.
fn record_key(position: u64) -> Vec<u8> {
    let mut key = GLOBAL_RECORD_PREFIX.to_vec();
    key.extend_from_slice(&position.to_be_bytes());
    key
}

impl GlobalState {
    // Getters.

    /// The region's incarnation in the global membership, from 1.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// False from the first applied epoch that no longer lists the region until one lists it
    /// again.
    pub fn is_member(&self) -> bool {
        self.member
    }

    /// The number of the last batch closed in this incarnation, 0 before the first.
    pub fn last_batch_number(&self) -> u64 {
        self.last_batch_number
    }

    /// The outgoing batches, oldest first.
    pub fn outgoing(&self) -> impl Iterator<Item = &OutgoingBatch> {
        self.outgoing.iter()
    }

    /// The unsealed records a batch holds, in log order.
    pub fn batch_records(&self, batch: &OutgoingBatch) -> impl Iterator<Item = &Record> {
        self.unsealed
            .range((
                Bound::Excluded(batch.after_position),
                Bound::Included(batch.through_position),
            ))
            .map(|(_, unsealed)| &unsealed.record)
    }

    /// The records of the open batch, in log order.
    pub fn open_batch(&self) -> impl Iterator<Item = &Record> {
        self.unsealed
            .range((
                Bound::Excluded(self.batched_through_position),
                Bound::Unbounded,
            ))
            .map(|(_, unsealed)| &unsealed.record)
    }

    /// Every unsealed record by the position of its pending entry.
    pub fn unsealed(&self) -> impl Iterator<Item = (u64, &UnsealedRecord)> {
        self.unsealed
            .iter()
            .map(|(&position, unsealed)| (position, unsealed))
    }

    /// The position of the pending entry of `(client_id, request_sequence)` while no applied
    /// epoch holds it.
    pub fn unsealed_position(&self, client_id: u64, request_sequence: u64) -> Option<u64> {
        self.unsealed_by_key
            .get(&(client_id, request_sequence))
            .copied()
    }

    /// True when a record of `client_id` waits for its epoch.
    pub fn has_unsealed_of(&self, client_id: u64) -> bool {
        self.unsealed_by_key
            .range((client_id, 0)..=(client_id, u64::MAX))
            .next()
            .is_some()
    }

    /// The bytes of the unsealed records.
    pub fn unsealed_size_bytes(&self) -> u64 {
        self.unsealed_size_bytes
    }

    /// Every epoch at or below this number is wholly appended.
    pub fn epochs_applied_through(&self) -> u64 {
        self.epochs_applied_through
    }

    /// How many parts of the next epoch are appended.
    pub fn parts_applied_of_next(&self) -> u32 {
        self.in_progress
            .as_ref()
            .map_or(0, |progress| progress.parts_applied)
    }

    /// The watermark of the last wholly appended epoch, zero before the first.
    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// Whether a new global record of `size_bytes` fits the bounds; the error names the
    /// bound that is reached.
    pub fn admit(&self, size_bytes: u64) -> Result<(), String> {
        if self.unsealed.len() >= GLOBAL_UNSEALED_RECORDS_MAX {
            return Err(format!(
                "{} global records wait to be sealed, the most a region holds \
                 (GLOBAL_UNSEALED_RECORDS_MAX)",
                self.unsealed.len()
            ));
        }
        if self.unsealed_size_bytes + size_bytes > GLOBAL_UNSEALED_SIZE_BYTES_MAX {
            return Err(format!(
                "{} bytes of global records wait to be sealed; {size_bytes} more would pass \
                 the bound of {GLOBAL_UNSEALED_SIZE_BYTES_MAX} bytes \
                 (GLOBAL_UNSEALED_SIZE_BYTES_MAX)",
                self.unsealed_size_bytes
            ));
        }
        if self.outgoing.len() >= OUTGOING_BATCHES_MAX {
            return Err(format!(
                "{} batches wait for the coordinator, the most a region holds \
                 (OUTGOING_BATCHES_MAX)",
                self.outgoing.len()
            ));
        }
        Ok(())
    }

    /// True when another batch may be closed.
    pub fn can_close_batch(&self) -> bool {
        self.outgoing.len() < OUTGOING_BATCHES_MAX
    }

    // Applying.

    /// A pending global record was appended at `position`; it joins the open batch.
    pub(crate) fn add_pending(
        &mut self,
        space: KeySpace,
        position: u64,
        record: Record,
        batch: &mut WriteBatch,
    ) {
        let bytes = encode_record(&record);
        let key = (record.client_id.get(), record.request_sequence.get());
        assert!(
            !self.unsealed_by_key.contains_key(&key),
            "a call has one pending record"
        );
        batch.put(space, record_key(position), bytes.clone());
        self.unsealed_size_bytes += bytes.len() as u64;
        self.unsealed_by_key.insert(key, position);
        self.unsealed.insert(
            position,
            UnsealedRecord {
                record,
                size_bytes: bytes.len() as u64,
            },
        );
    }

    /// A `CloseBatch` with the closed timestamp already decided: the open batch becomes the
    /// next outgoing batch. Returns it, or none when the outgoing bound is reached (nothing
    /// changes then).
    pub(crate) fn close_batch(&mut self, closed: Timestamp) -> Option<OutgoingBatch> {
        if !self.can_close_batch() {
            return None;
        }
        let through_position = self
            .unsealed
            .last_key_value()
            .map_or(0, |(&position, _)| position)
            .max(self.batched_through_position);
        self.last_batch_number += 1;
        let outgoing = OutgoingBatch {
            incarnation: self.incarnation,
            batch_number: self.last_batch_number,
            closed,
            after_position: self.batched_through_position,
            through_position,
        };
        self.batched_through_position = through_position;
        self.outgoing.push_back(outgoing);
        Some(outgoing)
    }

    /// The coordinator acknowledged every batch at or below (incarnation, batch number)
    /// `acknowledged`: it took them, so they need no resend, and their records (those not
    /// sealed yet) are pending there. Those outgoing batches are forgotten; their unsealed
    /// records stay until their sealed copies are appended. Returns how many were forgotten.
    pub(crate) fn batches_acknowledged(&mut self, acknowledged: (u64, u64)) -> usize {
        let mut forgotten = 0;
        while self
            .outgoing
            .front()
            .is_some_and(|batch| (batch.incarnation, batch.batch_number) <= acknowledged)
        {
            self.outgoing.pop_front();
            forgotten += 1;
        }
        forgotten
    }

    /// True when a `CloseBatch` carrying `acknowledged` would forget an outgoing batch.
    pub fn acknowledgement_prunes(&self, acknowledged: (u64, u64)) -> bool {
        self.outgoing
            .front()
            .is_some_and(|batch| (batch.incarnation, batch.batch_number) <= acknowledged)
    }

    /// Why `part` is not the next expected part, if it is not.
    pub(crate) fn check_next_part(&self, part: &EpochPart) -> Result<(), String> {
        let expected_epoch = self.epochs_applied_through + 1;
        if part.epoch_number != expected_epoch {
            return Err(format!(
                "epoch {} part {}: the region expects epoch {expected_epoch}",
                part.epoch_number, part.part_index
            ));
        }
        let expected_part = self.parts_applied_of_next();
        if part.part_index != expected_part {
            return Err(format!(
                "epoch {} part {}: the region expects part {expected_part}",
                part.epoch_number, part.part_index
            ));
        }
        let previous = part.previous_watermark.unwrap_or(Timestamp::ZERO);
        if previous != self.watermark {
            return Err(format!(
                "epoch {} starts after {previous}, but the region's last epoch ended at {}",
                part.epoch_number, self.watermark
            ));
        }
        if let Some(progress) = &self.in_progress
            && (progress.part_count != part.part_count
                || progress.watermark != part.watermark
                || progress.member_regions != part.member_regions)
        {
            return Err(format!(
                "epoch {} part {} disagrees with the epoch's first part",
                part.epoch_number, part.part_index
            ));
        }
        Ok(())
    }

    /// The epoch whose parts are being appended, as (parts it has, records appended so far),
    /// none between epochs.
    pub fn epoch_in_progress(&self) -> Option<(u32, u32)> {
        self.in_progress
            .as_ref()
            .map(|progress| (progress.part_count, progress.record_count))
    }

    /// The index in the epoch of the next record of the epoch in progress.
    pub(crate) fn next_index_in_epoch(&self) -> u32 {
        self.in_progress
            .as_ref()
            .map_or(0, |progress| progress.record_count)
    }

    /// A sequenced copy of this region's record `(client_id, request_sequence)` was appended:
    /// it is sealed. Returns the position of its pending entry, if it was unsealed.
    pub(crate) fn seal(
        &mut self,
        space: KeySpace,
        client_id: u64,
        request_sequence: u64,
        batch: &mut WriteBatch,
    ) -> Option<u64> {
        let position = self
            .unsealed_by_key
            .remove(&(client_id, request_sequence))?;
        let unsealed = self
            .unsealed
            .remove(&position)
            .expect("the key index and the records agree");
        self.unsealed_size_bytes -= unsealed.size_bytes;
        batch.delete(space, record_key(position));
        Some(position)
    }

    /// Why `skip` does not apply to this state, if it does not: it starts at the epoch the
    /// region appends next and ends past it.
    pub(crate) fn check_skip(&self, skip: &EpochsSkip) -> Result<(), String> {
        let expected = self.epochs_applied_through + 1;
        if skip.first_skipped != expected {
            return Err(format!(
                "a skip from epoch {}: the region appends epoch {expected} next",
                skip.first_skipped
            ));
        }
        if skip.end.epoch_number < skip.first_skipped {
            return Err(format!(
                "a skip to the end of epoch {}, before epoch {}",
                skip.end.epoch_number, skip.first_skipped
            ));
        }
        if skip.end.watermark <= self.watermark {
            return Err(format!(
                "a skip to the end of epoch {} at {}, not above the region's watermark {}",
                skip.end.epoch_number, skip.end.watermark, self.watermark
            ));
        }
        Ok(())
    }

    /// For a checked skip: every unsealed record at or before the one the coordinator sealed
    /// last, `(client_id, request_sequence)`, was sealed in the skipped epochs (see
    /// [`crate::global::skip`]); they leave the unsealed set. Returns their keys, in log
    /// order. None leaves when that record is not unsealed here: the region appended it, and
    /// every record sealed before it, from epochs it did not skip.
    pub(crate) fn take_sealed_through(
        &mut self,
        space: KeySpace,
        sealed_through: Option<(u64, u64)>,
        batch: &mut WriteBatch,
    ) -> Vec<(u64, u64)> {
        let Some(through) = sealed_through.and_then(|key| self.unsealed_by_key.get(&key).copied())
        else {
            return Vec::new();
        };
        let keys: Vec<(u64, u64)> = self
            .unsealed
            .range(..=through)
            .map(|(_, unsealed)| {
                (
                    unsealed.record.client_id.get(),
                    unsealed.record.request_sequence.get(),
                )
            })
            .collect();
        for &(client_id, request_sequence) in &keys {
            self.seal(space, client_id, request_sequence, batch);
        }
        keys
    }

    /// A checked skip was applied: the region's sequence stands at the end of the last epoch
    /// skipped, whose membership it follows. An epoch whose first parts were appended is
    /// abandoned with the rest.
    pub(crate) fn skip_applied(
        &mut self,
        end: &HeldEpochEnd,
        region: &RegionId,
    ) -> MembershipChange {
        assert!(
            end.epoch_number > self.epochs_applied_through && end.watermark > self.watermark,
            "a skip moves the global sequence forward"
        );
        self.in_progress = None;
        self.epoch_applied(end.epoch_number, end.watermark, &end.member_regions, region)
    }

    /// A checked part (see [`GlobalState::check_next_part`]) was appended with its records.
    /// Returns the epoch's description when this was its last part, for the epoch's end
    /// entry: (epoch number, watermark, previous watermark, record count).
    pub(crate) fn part_applied(
        &mut self,
        part: &EpochPart,
    ) -> Option<(u64, Timestamp, Option<Timestamp>, u32)> {
        let progress = self.in_progress.get_or_insert_with(|| EpochInProgress {
            epoch_number: part.epoch_number,
            part_count: part.part_count,
            parts_applied: 0,
            watermark: part.watermark,
            previous_watermark: part.previous_watermark,
            member_regions: part.member_regions.clone(),
            record_count: 0,
        });
        progress.parts_applied += 1;
        progress.record_count = progress
            .record_count
            .saturating_add(u32::try_from(part.records.len()).unwrap_or(u32::MAX));
        if progress.parts_applied < progress.part_count {
            return None;
        }
        let done = self.in_progress.take().expect("set above");
        Some((
            done.epoch_number,
            done.watermark,
            done.previous_watermark,
            done.record_count,
        ))
    }

    /// The epoch `epoch_number` with watermark `watermark` is wholly appended: follow the
    /// membership it lists.
    pub(crate) fn epoch_applied(
        &mut self,
        epoch_number: u64,
        watermark: Timestamp,
        member_regions: &[RegionId],
        region: &RegionId,
    ) -> MembershipChange {
        self.epochs_applied_through = epoch_number;
        self.watermark = watermark;
        let listed = member_regions.contains(region);
        if listed {
            // Outgoing batches are not pruned here: an epoch's watermark does not show that
            // the coordinator took a batch. After a readmission the coordinator holds the
            // region's closed timestamp at or above the watermark it had reached, so epochs
            // pass the closed timestamps of batches it has not taken yet; they leave only
            // once acknowledged (`batches_acknowledged`).
            if self.member {
                return MembershipChange::Unchanged;
            }
            self.member = true;
            return MembershipChange::Readmitted;
        }
        if !self.member {
            return MembershipChange::Unchanged;
        }
        // The coordinator removed the region and dropped every record of it that no earlier
        // epoch holds: exactly the unsealed ones. They go out again, first in the open batch,
        // as batch 1 of the next incarnation.
        self.member = false;
        self.incarnation += 1;
        self.last_batch_number = 0;
        self.outgoing.clear();
        self.batched_through_position = 0;
        MembershipChange::Removed {
            incarnation: self.incarnation,
        }
    }

    // Storage.

    /// Writes the state without its records (they are written as they change).
    pub(crate) fn write(&self, space: KeySpace, batch: &mut WriteBatch) {
        batch.put(space, GLOBAL_KEY, self.encode_header());
    }

    /// Writes the whole state, after a snapshot replaced it.
    pub(crate) fn write_all(&self, space: KeySpace, batch: &mut WriteBatch) {
        self.write(space, batch);
        for (&position, unsealed) in &self.unsealed {
            batch.put(space, record_key(position), encode_record(&unsealed.record));
        }
    }

    fn encode_header(&self) -> Vec<u8> {
        let mut bytes = vec![STATE_FORMAT];
        bytes.extend_from_slice(&self.incarnation.to_be_bytes());
        bytes.push(u8::from(self.member));
        bytes.extend_from_slice(&self.last_batch_number.to_be_bytes());
        bytes.extend_from_slice(&self.batched_through_position.to_be_bytes());
        bytes.extend_from_slice(&self.epochs_applied_through.to_be_bytes());
        put_timestamp(&mut bytes, self.watermark);
        match &self.in_progress {
            None => bytes.push(0),
            Some(progress) => {
                bytes.push(1);
                bytes.extend_from_slice(&progress.epoch_number.to_be_bytes());
                bytes.extend_from_slice(&progress.part_count.to_be_bytes());
                bytes.extend_from_slice(&progress.parts_applied.to_be_bytes());
                put_timestamp(&mut bytes, progress.watermark);
                match progress.previous_watermark {
                    None => bytes.push(0),
                    Some(previous) => {
                        bytes.push(1);
                        put_timestamp(&mut bytes, previous);
                    }
                }
                bytes.extend_from_slice(&progress.record_count.to_be_bytes());
                put_member_regions(&mut bytes, &progress.member_regions);
            }
        }
        bytes.extend_from_slice(&(self.outgoing.len() as u32).to_be_bytes());
        for batch in &self.outgoing {
            bytes.extend_from_slice(&batch.incarnation.to_be_bytes());
            bytes.extend_from_slice(&batch.batch_number.to_be_bytes());
            put_timestamp(&mut bytes, batch.closed);
            bytes.extend_from_slice(&batch.after_position.to_be_bytes());
            bytes.extend_from_slice(&batch.through_position.to_be_bytes());
        }
        bytes
    }

    fn decode_header(bytes: &[u8]) -> Result<GlobalState, String> {
        let mut reader = Reader::new(bytes);
        let format = reader.u8("global state format")?;
        if format != STATE_FORMAT {
            return Err(format!(
                "global state format {format} is unknown; this release reads format \
                 {STATE_FORMAT}"
            ));
        }
        let mut state = GlobalState {
            incarnation: reader.u64("incarnation")?,
            member: read_flag(&mut reader, "membership flag")?,
            last_batch_number: reader.u64("last batch number")?,
            batched_through_position: reader.u64("batched position")?,
            epochs_applied_through: reader.u64("epochs applied")?,
            watermark: read_timestamp(&mut reader, "watermark")?,
            ..GlobalState::default()
        };
        if state.incarnation == 0 {
            return Err("incarnation 0; incarnations start at 1".to_owned());
        }
        if read_flag(&mut reader, "epoch in progress")? {
            let epoch_number = reader.u64("epoch in progress")?;
            let part_count = reader.u32("part count")?;
            let parts_applied = reader.u32("parts applied")?;
            let watermark = read_timestamp(&mut reader, "epoch watermark")?;
            let previous_watermark = if read_flag(&mut reader, "previous watermark")? {
                Some(read_timestamp(&mut reader, "previous watermark")?)
            } else {
                None
            };
            let record_count = reader.u32("epoch record count")?;
            let member_regions = read_member_regions(&mut reader, "member regions")?;
            // The header may come from a peer's snapshot, so its counters may hold any value:
            // they are compared without adding to them unchecked.
            if state.epochs_applied_through.checked_add(1) != Some(epoch_number)
                || parts_applied == 0
                || parts_applied >= part_count
            {
                return Err(format!(
                    "epoch in progress {epoch_number} with {parts_applied} of {part_count} \
                     parts after epoch {}",
                    state.epochs_applied_through
                ));
            }
            state.in_progress = Some(EpochInProgress {
                epoch_number,
                part_count,
                parts_applied,
                watermark,
                previous_watermark,
                member_regions,
                record_count,
            });
        }
        let batch_count = reader.u32("outgoing batch count")? as usize;
        if batch_count > OUTGOING_BATCHES_MAX {
            return Err(format!(
                "{batch_count} outgoing batches, more than the maximum of {OUTGOING_BATCHES_MAX}"
            ));
        }
        for _ in 0..batch_count {
            let batch = OutgoingBatch {
                incarnation: reader.u64("batch incarnation")?,
                batch_number: reader.u64("batch number")?,
                closed: read_timestamp(&mut reader, "batch closed timestamp")?,
                after_position: reader.u64("batch position")?,
                through_position: reader.u64("batch position")?,
            };
            if batch.after_position > batch.through_position
                || batch.batch_number > state.last_batch_number
                || state.outgoing.back().is_some_and(|last| {
                    last.batch_number.checked_add(1) != Some(batch.batch_number)
                })
            {
                return Err(format!(
                    "outgoing batch {} is out of order",
                    batch.batch_number
                ));
            }
            state.outgoing.push_back(batch);
        }
        reader.finish()?;
        Ok(state)
    }

    /// Adds an unsealed record read back from a store or a snapshot.
    fn insert_recovered(&mut self, position: u64, bytes: &[u8]) -> Result<(), String> {
        if self.unsealed.len() >= GLOBAL_UNSEALED_RECORDS_MAX {
            return Err(format!(
                "more than {GLOBAL_UNSEALED_RECORDS_MAX} unsealed global records"
            ));
        }
        let record = decode_record(bytes)?;
        // Sizes count a record's own encoding, which every writer of the store and of
        // snapshots uses: a record encoded otherwise would count one size here and another
        // once written again, so members would enforce the bounds on different sums.
        let own_len = dsss_wire::record::encoded_record_len(&record);
        if own_len != bytes.len() {
            return Err(format!(
                "{} bytes that decode to a record whose own encoding is {own_len} bytes; \
                 records are kept in their own encoding only",
                bytes.len()
            ));
        }
        let key = (record.client_id.get(), record.request_sequence.get());
        if self.unsealed_by_key.insert(key, position).is_some() {
            return Err(format!(
                "client {} sequence {} is unsealed twice",
                key.0, key.1
            ));
        }
        self.unsealed_size_bytes += bytes.len() as u64;
        self.unsealed.insert(
            position,
            UnsealedRecord {
                record,
                size_bytes: bytes.len() as u64,
            },
        );
        Ok(())
    }

    /// The state in a snapshot: the header, then each record with its position.
    pub(crate) fn encode_snapshot(&self, out: &mut Vec<u8>) {
        put_bytes(out, &self.encode_header());
        out.extend_from_slice(&(self.unsealed.len() as u64).to_be_bytes());
        for (&position, unsealed) in &self.unsealed {
            out.extend_from_slice(&position.to_be_bytes());
            put_bytes(out, &encode_record(&unsealed.record));
        }
    }

    /// Reads the state from a snapshot; positions must lie below `next_position`.
    pub(crate) fn decode_snapshot(
        reader: &mut Reader<'_>,
        next_position: u64,
    ) -> Result<GlobalState, String> {
        let header = reader.bytes(1024 * 1024, "global state")?;
        let mut state = GlobalState::decode_header(header)?;
        let count = reader.u64("unsealed record count")?;
        if count > GLOBAL_UNSEALED_RECORDS_MAX as u64 {
            return Err(format!(
                "{count} unsealed global records, more than the maximum of \
                 {GLOBAL_UNSEALED_RECORDS_MAX}"
            ));
        }
        for _ in 0..count {
            let position = reader.u64("unsealed record position")?;
            if position >= next_position || state.unsealed.contains_key(&position) {
                return Err(format!(
                    "unsealed record at position {position} is misplaced"
                ));
            }
            let bytes = reader.bytes(RECORD_BYTES_MAX, "unsealed record")?;
            state
                .insert_recovered(position, bytes)
                .map_err(|reason| format!("unsealed record at {position}: {reason}"))?;
        }
        Ok(state)
    }

    /// Reads the state back from the store.
    pub(crate) fn recover(
        space: KeySpace,
        store: &dyn DurableStore,
    ) -> Result<GlobalState, StoreError> {
        let Some(header) = store.get(space, GLOBAL_KEY)? else {
            return Ok(GlobalState::default());
        };
        let mut state = GlobalState::decode_header(&header)
            .map_err(|reason| corrupt(space, GLOBAL_KEY, reason))?;
        let mut start = GLOBAL_RECORD_PREFIX.to_vec();
        loop {
            let chunk = store.scan(space, &start, GLOBAL_RECORD_END, RECOVERY_SCAN_CHUNK_MAX)?;
            let chunk_len = chunk.len();
            for (key, value) in chunk {
                let position = key
                    .strip_prefix(GLOBAL_RECORD_PREFIX)
                    .and_then(|suffix| <[u8; 8]>::try_from(suffix).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| corrupt(space, &key, "not an unsealed record key"))?;
                state
                    .insert_recovered(position, &value)
                    .map_err(|reason| corrupt(space, &key, reason))?;
                start = key;
                start.push(0);
            }
            if chunk_len < RECOVERY_SCAN_CHUNK_MAX {
                return Ok(state);
            }
        }
    }
}

/// Encodes a list of member regions: a count, then each name.
pub(crate) fn put_member_regions(out: &mut Vec<u8>, regions: &[RegionId]) {
    out.extend_from_slice(&(regions.len() as u32).to_be_bytes());
    for region in regions {
        put_bytes(out, region.as_str().as_bytes());
    }
}

/// Decodes a list of member regions written by [`put_member_regions`]: at most
/// `MEMBER_REGIONS_MAX`, each a valid region id; `what` names the list in errors.
pub(crate) fn read_member_regions(
    reader: &mut Reader<'_>,
    what: &str,
) -> Result<Vec<RegionId>, String> {
    let count = reader.u32(what)? as usize;
    if count > MEMBER_REGIONS_MAX {
        return Err(format!(
            "{what}: {count} member regions, more than the maximum of {MEMBER_REGIONS_MAX}"
        ));
    }
    let mut regions = Vec::with_capacity(count);
    for _ in 0..count {
        let name = reader.bytes(REGION_ID_CHARS_MAX + 1, what)?;
        let name =
            std::str::from_utf8(name).map_err(|_| format!("{what}: a region is not UTF-8"))?;
        regions.push(RegionId::new(name).map_err(|error| format!("{what}: {error}"))?);
    }
    Ok(regions)
}

fn put_timestamp(out: &mut Vec<u8>, timestamp: Timestamp) {
    out.extend_from_slice(&timestamp.physical_us.to_be_bytes());
    out.extend_from_slice(&timestamp.logical.to_be_bytes());
}

pub(crate) fn read_timestamp(reader: &mut Reader<'_>, what: &str) -> Result<Timestamp, String> {
    let physical_us = reader.u64(what)?;
    let logical = reader.u32(what)?;
    Ok(Timestamp::new(physical_us, logical))
}

fn read_flag(reader: &mut Reader<'_>, what: &str) -> Result<bool, String> {
    match reader.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(format!("{what} is {other}, neither 0 nor 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsss_wire::proto;

    fn global_record() -> Record {
        Record::try_from(proto::Record {
            object_id: "lobby/main".to_owned(),
            method_id: 1,
            arguments: vec![1, 2, 3],
            client_id: 42,
            request_sequence: 7,
            timestamp: Some(proto::Timestamp {
                physical_us: 1_700_000_000_000_000,
                logical: 0,
            }),
            scope: proto::Scope::Global.into(),
            origin_region: "eu-west".to_owned(),
        })
        .expect("a valid record")
    }

    fn snapshot_with(record_bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes(&mut out, &GlobalState::default().encode_header());
        out.extend_from_slice(&1_u64.to_be_bytes());
        out.extend_from_slice(&5_u64.to_be_bytes());
        put_bytes(&mut out, record_bytes);
        out
    }

    #[test]
    fn a_snapshot_record_in_another_encoding_than_its_own_is_refused() {
        let own = encode_record(&global_record());
        let snapshot = snapshot_with(&own);
        let state = GlobalState::decode_snapshot(&mut Reader::new(&snapshot), 10)
            .expect("a record in its own encoding");
        assert_eq!(state.unsealed_size_bytes, own.len() as u64);
        // The same record with an unknown field (111, varint 1) after it: it decodes to the
        // same record, but counts three bytes more than its own encoding.
        let mut padded = own.clone();
        padded.extend_from_slice(&[0xf8, 0x06, 0x01]);
        assert_eq!(decode_record(&padded).expect("decodes"), global_record());
        let refused = GlobalState::decode_snapshot(&mut Reader::new(&snapshot_with(&padded)), 10)
            .map(|_| ())
            .expect_err("another encoding");
        assert!(refused.contains("own encoding"), "{refused}");
    }
}
