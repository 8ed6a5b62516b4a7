//! Adopting another region's checkpoint of a global object (docs/design.md section 2.8,
//! "Adopting a global object's checkpoint"), sans-IO.
//!
//! A region releases the records of objects nobody in it follows, so that its log can be
//! truncated (`CheckpointState::release_through`). For a global object opened later in that
//! region, the region's own log can no longer rebuild it. But every region applies the same
//! global records in the same order: a global object's state after the global records up to
//! a place in the global order is the same in every region, whatever positions they took in
//! each log. So the region asks another region for the object's checkpoint, with the stretch
//! of the global order over which that state is the object's, and adopts it as its own
//! checkpoint at its current position when its own log stands inside that stretch.
//!
//! A place in the global order is a [`GlobalPoint`]: how far a log has appended the sealed
//! epochs (the epoch in progress, and how many of its records are appended). The region
//! asked (S) answers with the object's newest checkpoint only when nothing of the object lies
//! above it in S's log: no record of it above the checkpoint, no release past it, no untracked
//! record. Then the state is the object's at every point from the one S's log reached at the
//! checkpoint's position (`valid_from`: the point before the first global entry after that
//! position, or after the truncation point when the entries between are gone, since the
//! object has no record there either) through the point S's log has reached now
//! (`valid_through`). The asking region (R) proposes the state as an entry of its raft group;
//! applying it takes the checkpoint at R's last position when R's point lies inside
//! `[valid_from, valid_through]`, and lifts the release mark, since the state holds every
//! record of the object at or below that position. Outside the stretch it is refused alike on
//! every member, and the proposer asks again.
//!
//! The exchange is soft state on the node that took the `FetchCheckpoint` of a released
//! global object ([`Adoptions`]): at most [`ADOPTIONS_IN_FLIGHT_MAX`] objects at once, each
//! given up after [`ADOPTION_ATTEMPTS_MAX`] reads. The SDK asks for the checkpoint again, with
//! its backoff, while the open may still complete, so a fetch after the adoption applied
//! finds the adopted checkpoint, and a new fetch after an adoption was given up starts a new
//! one.

use std::collections::{BTreeMap, VecDeque};

use dsss_raft_group::{DurableStore, StoreError};
use dsss_wire::ids::OBJECT_ID_BYTES_MAX;
use dsss_wire::{ObjectId, RegionId, proto};
use sha2::{Digest, Sha256};

use crate::bytes::{Reader, put_bytes};
use crate::checkpoint::{CHECKPOINT_STATE_BYTES_MAX, FetchedCheckpoint, STATE_HASH_BYTES};
use crate::record::LogEntry;
use crate::region_log::RegionLog;

/// The most objects a node adopts a checkpoint for at once; a fetch of another released
/// global object while that many wait starts no adoption (the SDK asks again).
pub const ADOPTIONS_IN_FLIGHT_MAX: usize = 64;

/// The most reads one adoption makes (each to the next region in turn, and again when the
/// asking region's log stood outside the stretch the answer was valid for) before it is given
/// up.
pub const ADOPTION_ATTEMPTS_MAX: u32 = 8;

/// How long a read waits for its answer before the next region is asked, in microseconds.
pub const ADOPTION_READ_TIMEOUT_US: u64 = 2_000_000;

/// How many entries after a checkpoint the answering node reads at most to find the place in
/// the global order its log had reached there.
pub const ADOPTION_SCAN_ENTRIES_MAX: usize = 65_536;

/// How many bytes of entries that scan reads at most.
pub const ADOPTION_SCAN_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// The format byte of an adoption entry in the raft log.
pub(crate) const ADOPTION_FORMAT: u8 = 8;

/// How far a log has appended the sealed epochs: every record of the epochs before
/// `epoch_number`, and the first `records` records of that one. Ordered as the global order
/// is. Between epochs a log stands at `(next epoch, 0)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GlobalPoint {
    /// The epoch in progress, or the next one.
    pub epoch_number: u64,
    /// Its records appended.
    pub records: u32,
}

impl GlobalPoint {
    /// The point `log` stands at.
    pub fn of(log: &RegionLog) -> GlobalPoint {
        let global = log.global();
        GlobalPoint {
            epoch_number: global.epochs_applied_through() + 1,
            records: global.epoch_in_progress().map_or(0, |(_, records)| records),
        }
    }

    /// The point just before `entry`, when it is a global one: a sequenced record stands at
    /// its index in its epoch, an epoch's end after all of the epoch's records.
    fn before(entry: &LogEntry) -> Option<GlobalPoint> {
        match entry {
            LogEntry::SequencedGlobal {
                epoch_number,
                index_in_epoch,
                ..
            } => Some(GlobalPoint {
                epoch_number: *epoch_number,
                records: *index_in_epoch,
            }),
            // All of the epoch's records lie below its end: the same state as the start of
            // the next epoch, which is where an appending log stands once it applied it.
            LogEntry::EpochSealed { epoch_number, .. } => Some(GlobalPoint {
                epoch_number: epoch_number + 1,
                records: 0,
            }),
            LogEntry::Regional(_) | LogEntry::PendingGlobal(_) => None,
        }
    }

    fn to_wire(self) -> proto::GlobalPoint {
        proto::GlobalPoint {
            epoch_number: self.epoch_number,
            records: self.records,
        }
    }

    fn from_wire(point: Option<proto::GlobalPoint>, what: &str) -> Result<GlobalPoint, String> {
        let point = point.ok_or_else(|| format!("{what} is missing"))?;
        if point.epoch_number == 0 {
            return Err(format!("{what}.epoch_number is 0; epochs start at 1"));
        }
        Ok(GlobalPoint {
            epoch_number: point.epoch_number,
            records: point.records,
        })
    }
}

impl std::fmt::Display for GlobalPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "epoch {} after {} records",
            self.epoch_number, self.records
        )
    }
}

/// A checkpoint of a global object made in another region, and the stretch of the global
/// order over which its state is the object's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdoptedCheckpoint {
    /// The object.
    pub object_id: ObjectId,
    /// The state bytes, as the other region keeps them.
    pub state: Vec<u8>,
    /// Their SHA-256.
    pub state_hash: [u8; STATE_HASH_BYTES],
    /// The first point at which the state is the object's.
    pub valid_from: GlobalPoint,
    /// The last point at which it is known to be (the other region's point when it answered).
    pub valid_through: GlobalPoint,
}

/// What applying an adoption entry did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AdoptionOutcome {
    /// Kept as the object's newest checkpoint at this position; its release mark is lifted.
    Adopted {
        /// The position of the checkpoint: the region's last position when it applied it.
        position: u64,
    },
    /// Nothing to adopt: the object is not released (any more) in this region.
    NotReleased,
    /// The region's log stands before `valid_from`: it has not applied every record the state
    /// holds yet.
    Behind,
    /// The region's log stands past `valid_through`: records of the object may have come
    /// since.
    Ahead,
}

/// Encodes an adoption entry for the raft log, with who proposed it (a node and the read's
/// number there).
pub(crate) fn encode_adoption_entry(adopted: &AdoptedCheckpoint, proposer: (u64, u64)) -> Vec<u8> {
    let mut data = Vec::with_capacity(adopted.state.len() + 128);
    data.push(ADOPTION_FORMAT);
    data.extend_from_slice(&proposer.0.to_be_bytes());
    data.extend_from_slice(&proposer.1.to_be_bytes());
    put_bytes(&mut data, adopted.object_id.as_str().as_bytes());
    data.extend_from_slice(&adopted.state_hash);
    for point in [adopted.valid_from, adopted.valid_through] {
        data.extend_from_slice(&point.epoch_number.to_be_bytes());
        data.extend_from_slice(&point.records.to_be_bytes());
    }
    put_bytes(&mut data, &adopted.state);
    data
}

/// Decodes the payload of an adoption entry (after its format byte).
pub(crate) fn decode_adoption_entry(
    payload: &[u8],
) -> Result<(AdoptedCheckpoint, (u64, u64)), String> {
    let mut reader = Reader::new(payload);
    let proposer = (
        reader.u64("adoption proposer")?,
        reader.u64("adoption read number")?,
    );
    let id = reader.bytes(OBJECT_ID_BYTES_MAX, "adoption object id")?;
    let object_id = std::str::from_utf8(id)
        .ok()
        .and_then(|id| ObjectId::new(id).ok())
        .ok_or_else(|| "adoption object id is not a valid object id".to_owned())?;
    let hash = reader.take(STATE_HASH_BYTES, "adoption state hash")?;
    let state_hash: [u8; STATE_HASH_BYTES] = hash.try_into().expect("read exactly");
    let mut points = [GlobalPoint::default(); 2];
    for (point, what) in points.iter_mut().zip(["valid from", "valid through"]) {
        point.epoch_number = reader.u64(what)?;
        point.records = reader.u32(what)?;
    }
    let state = reader
        .bytes(CHECKPOINT_STATE_BYTES_MAX, "adoption state")?
        .to_vec();
    reader.finish()?;
    Ok((
        AdoptedCheckpoint {
            object_id,
            state,
            state_hash,
            valid_from: points[0],
            valid_through: points[1],
        },
        proposer,
    ))
}

/// Serves another region's read of `object_id`'s checkpoint from `log` (any member, from what
/// it applied; `store` is the store the log persists to). The error says why it cannot.
pub fn serve_checkpoint_read(
    log: &RegionLog,
    store: &dyn DurableStore,
    object_id: &ObjectId,
) -> Result<AdoptedCheckpoint, String> {
    let read = |error: StoreError| format!("reading the checkpoint of {object_id}: {error}");
    let fetched = log.fetch_checkpoint(store, object_id).map_err(read)?;
    let region = log.region();
    if fetched.released_through > 0 {
        return Err(format!(
            "region {region} released records of {object_id} through position {} without a \
             checkpoint covering them",
            fetched.released_through
        ));
    }
    if let Some(skipped) = log
        .checkpoint_stale_by_skip(store, object_id)
        .map_err(read)?
    {
        return Err(format!(
            "region {region} skipped sealed epochs no log held (at position {skipped}) after \
             its newest checkpoint of {object_id}; it is adopting one itself"
        ));
    }
    // Without a checkpoint, the object has no record at or below the truncation point; with
    // none above it either (checked below), it never had one: its state is the default one,
    // sent as an empty state (no client's encoding is empty).
    let checkpoint = fetched.checkpoint.unwrap_or_else(|| FetchedCheckpoint {
        position: fetched.truncated_through,
        uploaded_position: fetched.truncated_through,
        state: Vec::new(),
        state_hash: Sha256::digest([]).into(),
    });
    if log
        .checkpoint_is_uncovered(store, object_id)
        .map_err(read)?
    {
        return Err(format!(
            "region {region} holds records of {object_id} above its newest checkpoint (at \
             position {}); ask again once one covers them",
            checkpoint.uploaded_position
        ));
    }
    if let Some(untracked_from) = log.checkpoints().untracked_from() {
        return Err(format!(
            "region {region} keeps records from position {untracked_from} on without tracking \
             their objects, so it cannot say that none of {object_id} lies above its checkpoint"
        ));
    }
    let valid_through = GlobalPoint::of(log);
    // The object has no record above the checkpoint: its state is the one at every position
    // from there, so the point before the first global entry above it is where it starts to
    // hold (entries at or below the truncation point are gone, and the object has none there).
    let mut position = checkpoint.position.max(log.first_retained_position() - 1) + 1;
    let (mut entries, mut bytes) = (0usize, 0u64);
    let valid_from = loop {
        if position > log.last_position() {
            break valid_through;
        }
        if entries >= ADOPTION_SCAN_ENTRIES_MAX || bytes >= ADOPTION_SCAN_BYTES_MAX {
            return Err(format!(
                "region {region} read {entries} entries ({bytes} bytes) after the checkpoint \
                 of {object_id} at position {} without finding a global one; ask another \
                 region",
                checkpoint.uploaded_position
            ));
        }
        let chunk = log
            .read(
                store,
                position,
                ADOPTION_SCAN_ENTRIES_MAX - entries,
                ADOPTION_SCAN_BYTES_MAX - bytes,
            )
            .map_err(read)?;
        if chunk.is_empty() {
            return Err(format!(
                "region {region} no longer holds position {position} of its log"
            ));
        }
        let mut found = None;
        for record in &chunk {
            entries += 1;
            bytes += record.size_bytes;
            if let Some(point) = GlobalPoint::before(&record.entry) {
                found = Some(point);
                break;
            }
        }
        if let Some(point) = found {
            break point;
        }
        position += chunk.len() as u64;
    };
    Ok(AdoptedCheckpoint {
        object_id: object_id.clone(),
        state_hash: checkpoint.state_hash,
        state: checkpoint.state,
        valid_from,
        valid_through,
    })
}

/// The wire answer to a checkpoint read: the checkpoint, or why there is none.
pub fn checkpoint_read_reply(
    region: &RegionId,
    object_id: &str,
    served: Result<AdoptedCheckpoint, String>,
    sender_time: proto::Timestamp,
) -> proto::ReadCheckpointReply {
    let mut reply = proto::ReadCheckpointReply {
        region: region.as_str().to_owned(),
        object_id: object_id.to_owned(),
        sender_time: Some(sender_time),
        ..Default::default()
    };
    match served {
        Ok(adopted) => {
            reply.state = adopted.state;
            reply.state_hash = adopted.state_hash.to_vec();
            reply.valid_from = Some(adopted.valid_from.to_wire());
            reply.valid_through = Some(adopted.valid_through.to_wire());
        }
        Err(reason) => reply.unavailable = reason,
    }
    reply
}

/// Checks an answer to a read of `object_id`'s checkpoint asked of `region`: it names both,
/// serves a checkpoint, its state is within the bound and has the hash it claims, and its
/// stretch is in order. The error says what was wrong.
pub fn check_checkpoint_reply(
    region: &RegionId,
    object_id: &ObjectId,
    reply: proto::ReadCheckpointReply,
) -> Result<Result<AdoptedCheckpoint, String>, String> {
    if reply.region != region.as_str() {
        return Err(format!(
            "the answer names region {:?}, but region {region} was asked",
            reply.region
        ));
    }
    if reply.object_id != object_id.as_str() {
        return Err(format!(
            "the answer is for object {:?}, but {object_id} was asked",
            reply.object_id
        ));
    }
    if !reply.unavailable.is_empty() {
        return Ok(Err(reply.unavailable));
    }
    if reply.state.len() > CHECKPOINT_STATE_BYTES_MAX {
        return Err(format!(
            "the state holds {} bytes, more than the maximum of {CHECKPOINT_STATE_BYTES_MAX}",
            reply.state.len()
        ));
    }
    let state_hash: [u8; STATE_HASH_BYTES] =
        reply.state_hash.as_slice().try_into().map_err(|_| {
            format!(
                "state_hash holds {} bytes, not {STATE_HASH_BYTES}",
                reply.state_hash.len()
            )
        })?;
    let computed: [u8; STATE_HASH_BYTES] = Sha256::digest(&reply.state).into();
    if computed != state_hash {
        return Err("the state does not have the SHA-256 state_hash says".to_owned());
    }
    let valid_from = GlobalPoint::from_wire(reply.valid_from, "valid_from")?;
    let valid_through = GlobalPoint::from_wire(reply.valid_through, "valid_through")?;
    if valid_from > valid_through {
        return Err(format!(
            "valid_from ({valid_from}) lies past valid_through ({valid_through})"
        ));
    }
    Ok(Ok(AdoptedCheckpoint {
        object_id: object_id.clone(),
        state: reply.state,
        state_hash,
        valid_from,
        valid_through,
    }))
}

/// A read of a global object's checkpoint from another region, for an adoption. The driver
/// sends `request` to a node of `region` (`RegionEpochs.ReadCheckpoint` in production) and
/// hands the answer to `RegionNode::handle_checkpoint_read_reply` with `read_id`.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointRead {
    /// The node's id of the read.
    pub read_id: u64,
    /// The region to ask.
    pub region: RegionId,
    /// The request to send.
    pub request: proto::ReadCheckpointRequest,
}

/// Where one adoption stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Stage {
    /// A read went to `region` at `asked_at_us`.
    Reading { region: RegionId, asked_at_us: u64 },
    /// The answer was proposed; it is given up when not applied by `deadline_ticks`.
    Proposed { deadline_ticks: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Adoption {
    read_id: u64,
    attempts: u32,
    stage: Stage,
}

/// What the adoptions of a node did, for its status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdoptionCounters {
    /// Checkpoint reads this node sent to other regions.
    pub reads_sent: u64,
    /// Checkpoint reads of other regions this node served (with a checkpoint or without).
    pub reads_served: u64,
    /// Answers refused (they broke a rule of [`check_checkpoint_reply`]).
    pub replies_refused: u64,
    /// Adoption entries this node proposed.
    pub proposed: u64,
    /// Checkpoints adopted through entries this node proposed.
    pub adopted: u64,
    /// Adoptions given up after [`ADOPTION_ATTEMPTS_MAX`] reads, or whose entry was not
    /// applied in time.
    pub given_up: u64,
    /// Fetches of released global objects that started no adoption because
    /// [`ADOPTIONS_IN_FLIGHT_MAX`] waited.
    pub refused_full: u64,
}

/// The adoptions a node runs, soft state: a restart forgets them, and the clients' next
/// fetches start them again.
#[derive(Clone, Debug, PartialEq)]
pub struct Adoptions {
    /// The asking node and its region, as the reads name them.
    node_id: u64,
    region: RegionId,
    /// The regions asked, in turn.
    regions: Vec<RegionId>,
    waiting: BTreeMap<ObjectId, Adoption>,
    queued: VecDeque<CheckpointRead>,
    last_read_id: u64,
    /// The next region to ask, an index into the regions the node was given.
    next_region: usize,
    /// Why the last adoption given up or refused failed.
    last_error: Option<String>,
    counters: AdoptionCounters,
}

impl Adoptions {
    /// The adoptions of node `node_id` of `region`, which asks `regions` in turn.
    pub fn new(node_id: u64, region: RegionId, regions: Vec<RegionId>) -> Adoptions {
        Adoptions {
            node_id,
            region,
            regions,
            waiting: BTreeMap::new(),
            queued: VecDeque::new(),
            last_read_id: 0,
            next_region: 0,
            last_error: None,
            counters: AdoptionCounters::default(),
        }
    }

    /// What the adoptions did.
    pub fn counters(&self) -> AdoptionCounters {
        self.counters
    }

    /// How many adoptions wait.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Why the last adoption that failed did.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The next read to send, if any.
    pub fn poll_read(&mut self) -> Option<CheckpointRead> {
        self.queued.pop_front()
    }

    /// A fetch found `object_id` released: adopt a checkpoint of it from one of the regions,
    /// unless an adoption of it waits already or too many do.
    pub fn start(&mut self, object_id: &ObjectId, sender_time: proto::Timestamp, now_us: u64) {
        if self.regions.is_empty() || self.waiting.contains_key(object_id) {
            return;
        }
        if self.waiting.len() >= ADOPTIONS_IN_FLIGHT_MAX {
            self.counters.refused_full += 1;
            return;
        }
        self.waiting.insert(
            object_id.clone(),
            Adoption {
                read_id: 0,
                attempts: 0,
                stage: Stage::Proposed { deadline_ticks: 0 },
            },
        );
        self.ask(object_id, sender_time, now_us);
    }

    /// Sends the next read of the adoption of `object_id`, or gives it up after
    /// [`ADOPTION_ATTEMPTS_MAX`] reads.
    fn ask(&mut self, object_id: &ObjectId, sender_time: proto::Timestamp, now_us: u64) {
        let Some(adoption) = self.waiting.get_mut(object_id) else {
            return;
        };
        if adoption.attempts >= ADOPTION_ATTEMPTS_MAX || self.regions.is_empty() {
            self.waiting.remove(object_id);
            self.counters.given_up += 1;
            return;
        }
        let region = self.regions[self.next_region % self.regions.len()].clone();
        self.last_read_id += 1;
        adoption.read_id = self.last_read_id;
        adoption.attempts += 1;
        adoption.stage = Stage::Reading {
            region: region.clone(),
            asked_at_us: now_us,
        };
        self.queued.push_back(CheckpointRead {
            read_id: self.last_read_id,
            region,
            request: proto::ReadCheckpointRequest {
                region: self.region.as_str().to_owned(),
                sender_node_id: self.node_id,
                object_id: object_id.as_str().to_owned(),
                sender_time: Some(sender_time),
            },
        });
        self.counters.reads_sent += 1;
    }

    /// The object and region of the read `read_id`, when it is the one an adoption waits for.
    pub fn reading(&self, read_id: u64) -> Option<(ObjectId, RegionId)> {
        self.waiting
            .iter()
            .find_map(|(object_id, adoption)| match &adoption.stage {
                Stage::Reading { region, .. } if adoption.read_id == read_id => {
                    Some((object_id.clone(), region.clone()))
                }
                _ => None,
            })
    }

    /// The read of `object_id` failed (no answer, a refused answer, or a region that could
    /// not serve it, `reason`): the next region is asked.
    pub fn read_failed(
        &mut self,
        object_id: &ObjectId,
        reason: String,
        refused: bool,
        sender_time: proto::Timestamp,
        now_us: u64,
    ) {
        if refused {
            self.counters.replies_refused += 1;
        }
        self.last_error = Some(reason);
        self.next_region = self.next_region.wrapping_add(1);
        self.ask(object_id, sender_time, now_us);
    }

    /// The answer for `object_id` was proposed; the entry names `read_id`.
    pub fn proposed(&mut self, object_id: &ObjectId, deadline_ticks: u64) {
        if let Some(adoption) = self.waiting.get_mut(object_id) {
            adoption.stage = Stage::Proposed { deadline_ticks };
            self.counters.proposed += 1;
        }
    }

    /// The adoption entry `read_id` of `object_id`, proposed by this node, applied with
    /// `outcome`. Returns whether the adoption goes on (the caller asks again).
    pub fn applied(
        &mut self,
        object_id: &ObjectId,
        read_id: u64,
        outcome: Result<AdoptionOutcome, String>,
    ) -> bool {
        if self
            .waiting
            .get(object_id)
            .is_none_or(|adoption| adoption.read_id != read_id)
        {
            return false;
        }
        match outcome {
            Ok(AdoptionOutcome::Adopted { .. }) => {
                self.counters.adopted += 1;
                self.waiting.remove(object_id);
                false
            }
            Ok(AdoptionOutcome::NotReleased) => {
                self.waiting.remove(object_id);
                false
            }
            Ok(stand @ (AdoptionOutcome::Behind | AdoptionOutcome::Ahead)) => {
                self.last_error = Some(format!(
                    "the region's log stood {} the stretch the answer was valid for",
                    if stand == AdoptionOutcome::Behind {
                        "before"
                    } else {
                        "past"
                    }
                ));
                true
            }
            Err(reason) => {
                self.last_error = Some(reason);
                self.counters.given_up += 1;
                self.waiting.remove(object_id);
                false
            }
        }
    }

    /// Asks again for an adoption that goes on after [`Adoptions::applied`].
    pub fn ask_again(&mut self, object_id: &ObjectId, sender_time: proto::Timestamp, now_us: u64) {
        self.ask(object_id, sender_time, now_us);
    }

    /// The objects whose read went unanswered past [`ADOPTION_READ_TIMEOUT_US`] (the caller
    /// asks the next region), after giving up those whose entry was not applied by
    /// `ticks`.
    pub fn expired(&mut self, now_us: u64, ticks: u64) -> Vec<ObjectId> {
        let before = self.waiting.len();
        self.waiting.retain(|_, adoption| match adoption.stage {
            Stage::Proposed { deadline_ticks } => ticks <= deadline_ticks,
            Stage::Reading { .. } => true,
        });
        self.counters.given_up += (before - self.waiting.len()) as u64;
        self.waiting
            .iter()
            .filter(|(_, adoption)| {
                matches!(adoption.stage, Stage::Reading { asked_at_us, .. }
                    if now_us >= asked_at_us.saturating_add(ADOPTION_READ_TIMEOUT_US))
            })
            .map(|(object_id, _)| object_id.clone())
            .collect()
    }

    /// Counts a read this node served.
    pub fn served(&mut self) {
        self.counters.reads_served += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ObjectId {
        ObjectId::new(name).expect("valid")
    }

    fn adopted() -> AdoptedCheckpoint {
        let state = b"state".to_vec();
        AdoptedCheckpoint {
            object_id: id("board"),
            state_hash: Sha256::digest(&state).into(),
            state,
            valid_from: GlobalPoint {
                epoch_number: 4,
                records: 2,
            },
            valid_through: GlobalPoint {
                epoch_number: 9,
                records: 0,
            },
        }
    }

    #[test]
    fn adoption_entries_round_trip_and_damaged_ones_are_errors() {
        let data = encode_adoption_entry(&adopted(), (3, 17));
        assert_eq!(data[0], ADOPTION_FORMAT);
        assert_eq!(
            decode_adoption_entry(&data[1..]).expect("decodes"),
            (adopted(), (3, 17))
        );
        for cut in [1, 10, 20, data.len() - 2] {
            assert!(
                decode_adoption_entry(&data[1..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(decode_adoption_entry(&longer[1..]).is_err());
    }

    fn reply() -> proto::ReadCheckpointReply {
        checkpoint_read_reply(
            &RegionId::new("east").expect("valid"),
            "board",
            Ok(adopted()),
            proto::Timestamp::default(),
        )
    }

    #[test]
    fn answers_that_break_a_rule_are_refused_naming_it() {
        let east = RegionId::new("east").expect("valid");
        let board = id("board");
        assert_eq!(
            check_checkpoint_reply(&east, &board, reply()),
            Ok(Ok(adopted()))
        );
        type Damage = Box<dyn Fn(&mut proto::ReadCheckpointReply)>;
        let cases: Vec<(&str, Damage)> = vec![
            ("names region", Box::new(|r| r.region = "west".to_owned())),
            (
                "is for object",
                Box::new(|r| r.object_id = "other".to_owned()),
            ),
            ("SHA-256", Box::new(|r| r.state.push(1))),
            (
                "state_hash holds 3 bytes",
                Box::new(|r| r.state_hash.truncate(3)),
            ),
            ("valid_from is missing", Box::new(|r| r.valid_from = None)),
            (
                "epochs start at 1",
                Box::new(|r| r.valid_through.as_mut().expect("set").epoch_number = 0),
            ),
            (
                "lies past valid_through",
                Box::new(|r| r.valid_from.as_mut().expect("set").epoch_number = 10),
            ),
            (
                "more than the maximum",
                Box::new(|r| r.state = vec![0; CHECKPOINT_STATE_BYTES_MAX + 1]),
            ),
        ];
        for (expected, damage) in cases {
            let mut damaged = reply();
            damage(&mut damaged);
            let error = check_checkpoint_reply(&east, &board, damaged).expect_err(expected);
            assert!(error.contains(expected), "{error} should say {expected}");
        }
        let mut unavailable = reply();
        unavailable.unavailable = "no checkpoint".to_owned();
        assert_eq!(
            check_checkpoint_reply(&east, &board, unavailable),
            Ok(Err("no checkpoint".to_owned()))
        );
    }

    #[test]
    fn an_adoption_asks_each_region_in_turn_and_is_given_up_after_its_attempts() {
        let regions = [
            RegionId::new("east").expect("valid"),
            RegionId::new("west").expect("valid"),
        ];
        let here = RegionId::new("north").expect("valid");
        let time = proto::Timestamp::default();
        let mut adoptions = Adoptions::new(1, here.clone(), regions.to_vec());
        let board = id("board");
        adoptions.start(&board, time, 0);
        // A second fetch while it waits starts nothing more.
        adoptions.start(&board, time, 10);
        let first = adoptions.poll_read().expect("a read");
        assert!(adoptions.poll_read().is_none());
        assert_eq!(first.region, regions[0]);
        assert_eq!(
            adoptions.reading(first.read_id),
            Some((board.clone(), regions[0].clone()))
        );
        for attempt in 1..ADOPTION_ATTEMPTS_MAX {
            let now = u64::from(attempt) * ADOPTION_READ_TIMEOUT_US;
            let expired = adoptions.expired(now, 0);
            assert_eq!(expired, vec![board.clone()]);
            adoptions.read_failed(&board, "silent".to_owned(), false, time, now);
            let read = adoptions.poll_read().expect("asked again");
            assert_eq!(
                read.region,
                regions[attempt as usize % 2],
                "attempt {attempt}"
            );
        }
        adoptions.read_failed(&board, "silent".to_owned(), false, time, 0);
        assert!(adoptions.poll_read().is_none());
        assert_eq!(adoptions.waiting(), 0);
        assert_eq!(adoptions.counters().given_up, 1);
        assert_eq!(
            adoptions.counters().reads_sent,
            u64::from(ADOPTION_ATTEMPTS_MAX)
        );
    }

    #[test]
    fn at_most_so_many_adoptions_wait() {
        let regions = [RegionId::new("east").expect("valid")];
        let here = RegionId::new("north").expect("valid");
        let mut adoptions = Adoptions::new(1, here.clone(), regions.to_vec());
        for n in 0..=ADOPTIONS_IN_FLIGHT_MAX {
            adoptions.start(&id(&format!("object-{n}")), proto::Timestamp::default(), 0);
        }
        assert_eq!(adoptions.waiting(), ADOPTIONS_IN_FLIGHT_MAX);
        assert_eq!(adoptions.counters().refused_full, 1);
    }

    #[test]
    fn an_applied_entry_ends_the_adoption_or_asks_again() {
        let regions = [RegionId::new("east").expect("valid")];
        let here = RegionId::new("north").expect("valid");
        let time = proto::Timestamp::default();
        let mut adoptions = Adoptions::new(1, here.clone(), regions.to_vec());
        let board = id("board");
        adoptions.start(&board, time, 0);
        let read = adoptions.poll_read().expect("a read");
        adoptions.proposed(&board, 100);
        // An entry of another read is not this adoption's.
        assert!(!adoptions.applied(&board, read.read_id + 1, Ok(AdoptionOutcome::Ahead)));
        assert!(adoptions.applied(&board, read.read_id, Ok(AdoptionOutcome::Ahead)));
        adoptions.ask_again(&board, time, 5);
        let again = adoptions.poll_read().expect("asked again");
        adoptions.proposed(&board, 100);
        assert!(!adoptions.applied(
            &board,
            again.read_id,
            Ok(AdoptionOutcome::Adopted { position: 40 })
        ));
        assert_eq!(adoptions.waiting(), 0);
        assert_eq!(adoptions.counters().adopted, 1);
        // An entry not applied in time is given up.
        adoptions.start(&board, time, 0);
        adoptions.poll_read().expect("a read");
        adoptions.proposed(&board, 100);
        assert!(adoptions.expired(0, 101).is_empty());
        assert_eq!(adoptions.waiting(), 0);
    }
}
