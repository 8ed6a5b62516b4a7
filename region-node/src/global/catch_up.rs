//! Catching up on sealed epochs the coordinator released (docs/global-protocol.md section 7,
//! "A region that missed released epochs"), sans-IO.
//!
//! Every region's log holds every sealed epoch at its own positions: the epoch's records as
//! sequenced entries (`index_in_epoch` 0, 1, ...), then an `EpochSealed` entry with the
//! epoch's watermarks and member regions, until its checkpoints truncate them. A region that
//! missed epochs the coordinator no longer holds reads them back from another region's log:
//! [`read_epochs`] serves such a read on any member of the other region, from what that member
//! applied, as parts cut the way the asking region needs them, up to [`EPOCHS_READ_PARTS_MAX`]
//! parts and [`EPOCHS_READ_REPLY_BYTES_MAX`] bytes per reply; the asking region's leader
//! proposes them exactly as it proposes the coordinator's parts, so the same checks apply (the
//! next epoch and part, the previous watermark equal to the watermark of the last epoch
//! appended), a bounded number at a time, holding the rest of the reply until earlier ones
//! apply.
//!
//! Finding where an epoch starts takes a scan of the log. Each node keeps an index of the
//! positions of the epoch ends it applied or scanned ([`EpochEndIndex`], soft state, bounded
//! by thinning), so a scan starts just after the end of the epoch before, and a scan is cut
//! off after [`EPOCHS_READ_ENTRIES_MAX`] entries: the answer is then "still searching", the
//! index has moved on, and the next read goes further.

use std::collections::BTreeMap;

use dsss_raft_group::DurableStore;
use dsss_wire::{Record, RegionId, Timestamp, proto};

use crate::global::entry::{EPOCH_PART_RECORDS_MAX, EpochPart, MEMBER_REGIONS_MAX};
use crate::record::{LogEntry, encode_record};
use crate::region_log::RegionLog;

/// The most bytes one reply to an epochs read carries, counted as its parts' wire form
/// (records and headers, [`EpochPart::wire_len`]); the first part always goes, whatever its
/// size, so that a reader always moves on. The asking leader holds the parts of a reply until
/// it has proposed them all, so this bounds what a catch-up holds in memory; with a first part
/// of at most [`EPOCH_READ_PART_BYTES_MAX`] of records (or one larger record), a reply stays
/// far below the gRPC message bound (`GRPC_MESSAGE_BYTES_MAX`, 32 MiB).
pub const EPOCHS_READ_REPLY_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// The most parts one reply carries. The asking leader reads one reply per round trip to the
/// other region and proposes its parts as they fit under `EPOCH_PARTS_PROPOSED_MAX` (more as
/// earlier ones apply), so for the small epochs of a lightly loaded tier (one part of a few
/// hundred bytes each) this sets the catch-up pace: a day of epochs at one a second is about
/// 21 replies. It also bounds the entries one read makes its server scan (with
/// [`EPOCHS_READ_ENTRIES_MAX`]).
pub const EPOCHS_READ_PARTS_MAX: usize = 4_096;

// A reply, with the sender's fields of each part and its own, fits a gRPC message with room
// to spare: the parts' wire form is at most the byte bound, or one part of at most
// EPOCH_READ_PART_BYTES_MAX of records (one record beyond) and its header.
const _: () = assert!(
    EPOCHS_READ_REPLY_BYTES_MAX + EPOCH_READ_PART_BYTES_MAX + EPOCHS_READ_PARTS_MAX as u64 * 64
        <= dsss_wire::GRPC_MESSAGE_BYTES_MAX as u64 / 4
);

/// The most log entries one read scans, searching and reading together.
pub const EPOCHS_READ_ENTRIES_MAX: usize = 262_144;

/// The most bytes of records of one epoch a read holds in memory.
pub const EPOCH_READ_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// The most bytes of records in one part a read cuts (a larger record alone), as the
/// coordinator cuts its parts.
pub const EPOCH_READ_PART_BYTES_MAX: u64 = 2 * 1024 * 1024;

/// The most epoch ends a node indexes; beyond, every other one is forgotten.
pub const EPOCH_END_INDEX_MAX: usize = 4_096;

/// How many entries one store read of a scan returns.
const SCAN_CHUNK_RECORDS: usize = 1_024;

/// The positions of epoch ends a node applied or scanned. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochEndIndex {
    ends: BTreeMap<u64, u64>,
}

impl EpochEndIndex {
    /// Epoch `epoch_number` ends at `position`.
    pub fn note(&mut self, epoch_number: u64, position: u64) {
        if self.ends.len() >= EPOCH_END_INDEX_MAX && !self.ends.contains_key(&epoch_number) {
            // Every other end goes: the index stays spread over the log, and a scan covers at
            // most the gap between two kept ends.
            let mut keep = false;
            self.ends.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
        self.ends.insert(epoch_number, position);
    }

    /// How many ends are indexed.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when no end is indexed.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Where a search for the start of `epoch_number` begins: after the nearest indexed end
    /// of an earlier epoch, never below `first_retained`.
    fn search_from(&self, epoch_number: u64, first_retained: u64) -> u64 {
        self.ends
            .range(..epoch_number)
            .next_back()
            .map_or(first_retained, |(_, &position)| position + 1)
            .max(first_retained)
    }
}

/// Why a node does not serve an epochs read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochsUnavailable {
    /// The kind.
    pub reason: proto::EpochsUnavailableReason,
    /// What, in words.
    pub detail: String,
    /// With [`proto::EpochsUnavailableReason::Truncated`], when the read asked where it may
    /// skip to: the end of the first epoch at or above the one it named that the log holds.
    pub held_from: Option<HeldEpochEnd>,
}

/// The end of a sealed epoch in a region's log, which holds every entry after it: a region
/// that no log serves the epochs it lacks may skip to it (docs/global-protocol.md section 7,
/// "When no region holds them").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldEpochEnd {
    /// The epoch that ends there.
    pub epoch_number: u64,
    /// Its watermark.
    pub watermark: Timestamp,
    /// The member regions when it was sealed, sorted.
    pub member_regions: Vec<RegionId>,
}

impl HeldEpochEnd {
    /// The wire form.
    pub fn to_wire(&self) -> proto::HeldEpochEnd {
        proto::HeldEpochEnd {
            epoch_number: self.epoch_number,
            watermark: Some(self.watermark.into()),
            member_regions: self
                .member_regions
                .iter()
                .map(|region| region.as_str().to_owned())
                .collect(),
        }
    }

    /// Checks the wire form: an epoch number, a watermark, 1 to [`MEMBER_REGIONS_MAX`] valid
    /// region ids, sorted, none twice.
    pub fn from_wire(wire: proto::HeldEpochEnd) -> Result<HeldEpochEnd, String> {
        if wire.epoch_number == 0 {
            return Err("held epoch end names epoch 0; epochs start at 1".to_owned());
        }
        let watermark = wire
            .watermark
            .ok_or_else(|| "held epoch end has no watermark".to_owned())
            .and_then(|value| {
                Timestamp::try_from(value)
                    .map_err(|error| format!("held epoch end watermark: {error}"))
            })?;
        if wire.member_regions.is_empty() || wire.member_regions.len() > MEMBER_REGIONS_MAX {
            return Err(format!(
                "held epoch end names {} member regions; an epoch has 1 to {MEMBER_REGIONS_MAX}",
                wire.member_regions.len()
            ));
        }
        let member_regions = wire
            .member_regions
            .into_iter()
            .map(|name| {
                RegionId::new(name).map_err(|error| format!("held epoch end member: {error}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if member_regions.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err("held epoch end member regions are not sorted and unique".to_owned());
        }
        Ok(HeldEpochEnd {
            epoch_number: wire.epoch_number,
            watermark,
            member_regions,
        })
    }
}

fn unavailable(reason: proto::EpochsUnavailableReason, detail: String) -> EpochsUnavailable {
    EpochsUnavailable {
        reason,
        detail,
        held_from: None,
    }
}

fn other(detail: String) -> EpochsUnavailable {
    unavailable(proto::EpochsUnavailableReason::Other, detail)
}

/// One epoch read back from the log.
struct EpochRead {
    records: Vec<(Record, u64)>,
    watermark: Timestamp,
    previous_watermark: Option<Timestamp>,
    member_regions: Vec<RegionId>,
    end_position: u64,
}

/// Counts the entries a read scans.
struct Budget {
    entries: usize,
}

impl Budget {
    fn take(&mut self) -> bool {
        self.entries += 1;
        self.entries <= EPOCHS_READ_ENTRIES_MAX
    }
}

/// Serves an epochs read from `log` (persisted to `store`): the parts that follow the asker's
/// last appended part, at most [`EPOCHS_READ_PARTS_MAX`] and [`EPOCHS_READ_REPLY_BYTES_MAX`]
/// (the first part whatever its size), through the last epoch this node appended. Never
/// panics on any request.
pub fn read_epochs(
    log: &RegionLog,
    store: &dyn DurableStore,
    index: &mut EpochEndIndex,
    request: &proto::ReadEpochsRequest,
) -> Result<Vec<EpochPart>, EpochsUnavailable> {
    let appended = log.global().epochs_applied_through();
    let mut epoch_number = request.epoch_number;
    if epoch_number == 0 {
        return Err(other("epoch number 0; epochs start at 1".to_owned()));
    }
    if epoch_number > appended {
        return Err(unavailable(
            proto::EpochsUnavailableReason::NotAppended,
            format!(
                "region {} has appended epochs through {appended}, not epoch {epoch_number}",
                log.region()
            ),
        ));
    }
    let mut budget = Budget { entries: 0 };
    let mut position = match find_epoch_start(log, store, index, epoch_number, &mut budget) {
        Ok(position) => position,
        Err(mut truncated)
            if truncated.reason == proto::EpochsUnavailableReason::Truncated
                && request.skip_from_epoch_number > 0 =>
        {
            truncated.held_from = find_held_epoch_end(
                log,
                store,
                index,
                request.skip_from_epoch_number,
                &mut budget,
            );
            return Err(truncated);
        }
        Err(error) => return Err(error),
    };
    let (mut first_part, mut part_count, mut records_appended) = (
        request.part_index,
        request.part_count,
        request.records_appended,
    );
    let mut parts = Vec::new();
    let mut reply_bytes = 0u64;
    loop {
        let epoch = match read_epoch(log, store, index, epoch_number, position, &mut budget) {
            Ok(epoch) => epoch,
            // What was read so far is served; the next read goes on from there.
            Err(_) if !parts.is_empty() => return Ok(parts),
            Err(error) => return Err(error),
        };
        for part in cut_epoch(
            epoch_number,
            &epoch,
            first_part,
            part_count,
            records_appended,
        )? {
            let (part, wire_bytes) = part;
            if !parts.is_empty()
                && (parts.len() >= EPOCHS_READ_PARTS_MAX
                    || reply_bytes + wire_bytes > EPOCHS_READ_REPLY_BYTES_MAX)
            {
                return Ok(parts);
            }
            reply_bytes += wire_bytes;
            parts.push(part);
        }
        epoch_number += 1;
        position = epoch.end_position + 1;
        (first_part, part_count, records_appended) = (0, 0, 0);
        if epoch_number > appended
            || parts.len() >= EPOCHS_READ_PARTS_MAX
            || reply_bytes >= EPOCHS_READ_REPLY_BYTES_MAX
        {
            return Ok(parts);
        }
    }
}

/// The position of the first entry of epoch `epoch_number` (its record with index 0, or its
/// end when it holds no record).
fn find_epoch_start(
    log: &RegionLog,
    store: &dyn DurableStore,
    index: &mut EpochEndIndex,
    epoch_number: u64,
    budget: &mut Budget,
) -> Result<u64, EpochsUnavailable> {
    let first_retained = log.first_retained_position();
    let truncated = || {
        unavailable(
            proto::EpochsUnavailableReason::Truncated,
            format!(
                "region {}'s log no longer holds the start of epoch {epoch_number}: it holds \
                 positions {first_retained} to {}, its checkpoints truncated the entries below",
                log.region(),
                log.last_position()
            ),
        )
    };
    let mut position = index.search_from(epoch_number, first_retained);
    loop {
        let chunk = log
            .read(store, position, SCAN_CHUNK_RECORDS, u64::MAX)
            .map_err(|error| other(format!("reading the log: {error}")))?;
        if chunk.is_empty() {
            // The node appended the epoch, but no retained entry belongs to it.
            return Err(truncated());
        }
        for stored in chunk {
            if !budget.take() {
                return Err(unavailable(
                    proto::EpochsUnavailableReason::Searching,
                    format!(
                        "searched {EPOCHS_READ_ENTRIES_MAX} entries for the start of epoch \
                         {epoch_number}, up to position {}; ask again",
                        stored.position
                    ),
                ));
            }
            match &stored.entry {
                LogEntry::SequencedGlobal {
                    epoch_number: number,
                    index_in_epoch,
                    ..
                } if *number >= epoch_number => {
                    if *number == epoch_number && *index_in_epoch == 0 {
                        return Ok(stored.position);
                    }
                    return Err(truncated());
                }
                LogEntry::EpochSealed {
                    epoch_number: number,
                    record_count,
                    skipped_from,
                    ..
                } => {
                    index.note(*number, stored.position);
                    if *number >= epoch_number {
                        // A skipped epoch's records are in no entry of this log.
                        if *number == epoch_number && *record_count == 0 && *skipped_from == 0 {
                            return Ok(stored.position);
                        }
                        return Err(truncated());
                    }
                }
                _ => {}
            }
            position = stored.position + 1;
        }
    }
}

/// The end of the first epoch numbered `skip_from` or above that `log` holds with its member
/// regions, found by a scan that starts after the nearest indexed end of an earlier epoch;
/// none when the scan reaches the end of the log, runs out of `budget`, or cannot read.
fn find_held_epoch_end(
    log: &RegionLog,
    store: &dyn DurableStore,
    index: &mut EpochEndIndex,
    skip_from: u64,
    budget: &mut Budget,
) -> Option<HeldEpochEnd> {
    let mut position = index.search_from(skip_from, log.first_retained_position());
    loop {
        let chunk = log
            .read(store, position, SCAN_CHUNK_RECORDS, u64::MAX)
            .ok()?;
        if chunk.is_empty() {
            return None;
        }
        for stored in chunk {
            if !budget.take() {
                return None;
            }
            if let LogEntry::EpochSealed {
                epoch_number,
                watermark,
                member_regions,
                ..
            } = stored.entry
            {
                index.note(epoch_number, stored.position);
                if epoch_number >= skip_from && !member_regions.is_empty() {
                    return Some(HeldEpochEnd {
                        epoch_number,
                        watermark,
                        member_regions,
                    });
                }
            }
            position = stored.position + 1;
        }
    }
}

/// Reads epoch `epoch_number` from `start`, the position of its first entry, through its end.
fn read_epoch(
    log: &RegionLog,
    store: &dyn DurableStore,
    index: &mut EpochEndIndex,
    epoch_number: u64,
    start: u64,
    budget: &mut Budget,
) -> Result<EpochRead, EpochsUnavailable> {
    let mut records = Vec::new();
    let mut size_bytes = 0u64;
    let mut position = start;
    loop {
        let chunk = log
            .read(store, position, SCAN_CHUNK_RECORDS, u64::MAX)
            .map_err(|error| other(format!("reading the log: {error}")))?;
        if chunk.is_empty() {
            return Err(other(format!(
                "the end of epoch {epoch_number} was not found in region {}'s log",
                log.region()
            )));
        }
        for stored in chunk {
            if !budget.take() {
                return Err(unavailable(
                    proto::EpochsUnavailableReason::Searching,
                    format!(
                        "read {EPOCHS_READ_ENTRIES_MAX} entries of epoch {epoch_number}, up to \
                         position {}; ask again",
                        stored.position
                    ),
                ));
            }
            let at = stored.position;
            match stored.entry {
                LogEntry::SequencedGlobal {
                    epoch_number: number,
                    index_in_epoch,
                    record,
                } => {
                    if number != epoch_number || index_in_epoch as usize != records.len() {
                        return Err(other(format!(
                            "position {at} holds record {index_in_epoch} of epoch {number} \
                             where record {} of epoch {epoch_number} belongs",
                            records.len()
                        )));
                    }
                    let record_bytes = encode_record(&record).len() as u64;
                    size_bytes += record_bytes;
                    if size_bytes > EPOCH_READ_BYTES_MAX {
                        return Err(other(format!(
                            "epoch {epoch_number} holds more than {EPOCH_READ_BYTES_MAX} bytes \
                             of records, more than a read holds"
                        )));
                    }
                    records.push((record, record_bytes));
                }
                LogEntry::EpochSealed {
                    epoch_number: number,
                    watermark,
                    previous_watermark,
                    record_count,
                    member_regions,
                    skipped_from,
                } => {
                    index.note(number, at);
                    if skipped_from > 0 {
                        return Err(unavailable(
                            proto::EpochsUnavailableReason::Truncated,
                            format!(
                                "region {} skipped epochs {skipped_from} to {number} (position \
                                 {at}): no log held them when it caught up",
                                log.region()
                            ),
                        ));
                    }
                    if number != epoch_number || record_count as usize != records.len() {
                        return Err(other(format!(
                            "position {at} ends epoch {number} with {record_count} records, \
                             where epoch {epoch_number} ends after {} records",
                            records.len()
                        )));
                    }
                    if member_regions.is_empty() {
                        return Err(other(format!(
                            "the end of epoch {epoch_number} (position {at}) was written before \
                             epoch ends named their member regions"
                        )));
                    }
                    return Ok(EpochRead {
                        records,
                        watermark,
                        previous_watermark,
                        member_regions,
                        end_position: at,
                    });
                }
                LogEntry::Regional(_) | LogEntry::PendingGlobal(_) => {}
            }
            position = at + 1;
        }
    }
}

/// Cuts `epoch` into parts from `first_part` on, each with the length of its wire form. From
/// part 0 the cut is this node's (parts of at most [`EPOCH_READ_PART_BYTES_MAX`] and
/// [`EPOCH_PART_RECORDS_MAX`] records); from a later part, the asker holds the first parts of
/// the coordinator's cut, `part_count` parts with `records_appended` records in the first
/// ones, so the rest of the records go into the remaining parts (the last ones empty when
/// fewer are needed).
fn cut_epoch(
    epoch_number: u64,
    epoch: &EpochRead,
    first_part: u32,
    part_count: u32,
    records_appended: u32,
) -> Result<Vec<(EpochPart, u64)>, EpochsUnavailable> {
    let skip = records_appended as usize;
    if first_part > 0 && (part_count <= first_part || skip > epoch.records.len()) {
        return Err(other(format!(
            "epoch {epoch_number}: part {first_part} of {part_count} parts after \
             {records_appended} records does not fit an epoch of {} records",
            epoch.records.len()
        )));
    }
    let rest = &epoch.records[if first_part > 0 { skip } else { 0 }..];
    let mut ranges = Vec::new();
    let (mut start, mut size_bytes) = (0, 0);
    for (offset, (_, record_bytes)) in rest.iter().enumerate() {
        if offset > start
            && (size_bytes + record_bytes > EPOCH_READ_PART_BYTES_MAX
                || offset - start >= EPOCH_PART_RECORDS_MAX)
        {
            ranges.push(start..offset);
            (start, size_bytes) = (offset, 0);
        }
        size_bytes += record_bytes;
    }
    ranges.push(start..rest.len());
    let part_count = if first_part == 0 {
        u32::try_from(ranges.len()).map_err(|_| other("too many parts".to_owned()))?
    } else {
        let remaining = (part_count - first_part) as usize;
        if ranges.len() > remaining {
            return Err(other(format!(
                "epoch {epoch_number}: the {} records after the first {records_appended} do \
                 not fit the {remaining} parts the asker still needs",
                rest.len()
            )));
        }
        ranges.resize(remaining, rest.len()..rest.len());
        part_count
    };
    Ok(ranges
        .into_iter()
        .enumerate()
        .map(|(offset, range)| {
            let records = &rest[range];
            let part = EpochPart {
                epoch_number,
                watermark: epoch.watermark,
                previous_watermark: epoch.previous_watermark,
                records: records.iter().map(|(record, _)| record.clone()).collect(),
                part_index: first_part + offset as u32,
                part_count,
                member_regions: epoch.member_regions.clone(),
            };
            let wire_bytes = part.wire_len();
            (part, wire_bytes)
        })
        .collect())
}
