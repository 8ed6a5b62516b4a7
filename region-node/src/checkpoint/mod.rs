//! Checkpoints of objects, kept as replicated state of the region, and the truncation point of
//! the region log that they allow (docs/design.md section 2, "Checkpoints").
//!
//! An SDK replica uploads `(object, position, state bytes, state hash)` every so many records.
//! The upload travels through raft as a command that takes NO log position (the region log's
//! positions stay the records' and the epochs' alone), so every member applies it at the same
//! point and serves `FetchCheckpoint` from its own applied state. The server never interprets
//! state bytes. Per object the region keeps the newest checkpoint (position, state, hash, the
//! clients that reported it) and the newest AGREED position. The rules, applied in apply:
//!
//! | upload against the newest kept          | outcome         | effect                      |
//! |-----------------------------------------|-----------------|-----------------------------|
//! | no checkpoint, or a higher position     | `Stored`        | replaces the newest, covers |
//! | same position, same hash, other client  | `Agreed`        | agreed position = position  |
//! | same position, same hash, same client   | `Stored`        | none (a retry)              |
//! | same position, different hash           | `HashMismatch`  | divergence alarm raised     |
//! | lower position                          | `Superseded`    | none                        |
//!
//! A hash mismatch means a method of the object is not deterministic: the alarm (object,
//! position, both clients) stays in the replicated state, and while any object has one the log
//! is never truncated again.
//!
//! One client's checkpoint is trusted for truncation: the newest checkpoint covers the object's
//! records at or below its position as soon as it is stored, agreed or not, so an object with a
//! single instance lets the log shrink like one with many. Divergence is still caught where it
//! can be: whenever a second client reports the same position (every replica of an object
//! uploads at the same positions of its records), its hash is compared with the kept one. What
//! this gives up is the check of a state that only one client ever computed: a replica that
//! starts later from that checkpoint inherits it, and the comparison resumes at the next
//! position both report.
//!
//! # Truncation
//!
//! Per object the region tracks the position of its newest record while that record lies above
//! the object's newest checkpoint ("uncovered"). Records are regional and sequenced global
//! records; pending global records and epoch ends belong to no object and never block. The
//! region may drop every entry at or below
//!
//! `P = min(applied position, min over uncovered objects of their covering position)`
//!
//! (an object's covering position is that of its newest checkpoint, or higher once its
//! records were released, see below) and nothing more while an alarm stands. An object
//! without a checkpoint has position 0, so it blocks truncation at 0 as long as it has a
//! record in the log. The truncation point only grows. It is replicated state; a member that restored a snapshot may
//! hold fewer entries above it (see [`crate::region_log`]).
//!
//! What the region tracks is bounded by bytes of storage, not by a count of objects or by
//! one raft message ([`CheckpointBounds`]: the checkpoints with their states may take as much
//! as the region log quota, the uncovered and released objects a quarter of it); a snapshot
//! carries only the counters, and a member taking one fetches the rest in pieces
//! ([`transfer`]). At the tracking bound, a record of an object the region does not track
//! yet is refused in apply (alike on every member) with a message that says so; at the
//! checkpoint bound, a checkpoint that would add bytes is. A sequenced global record was ordered by the coordinator
//! and cannot be refused: if its object cannot be tracked, the region remembers the position
//! of the first such record and never truncates at or above it, which keeps every record of
//! an untracked object.
//!
//! # Releasing records nobody follows
//!
//! Some objects never get a checkpoint in a region: records written with the raw region
//! client, a global object that no instance in this region has open, an object whose last
//! instance ended before it checkpointed. Past a share of the quota or a log age (the
//! region's [`crate::region_log::RegionLogRetention`], decided in apply from replicated state
//! alone), the region *releases* them: [`CheckpointState::release_through`] lets truncation
//! pass every object whose covering position is below a target, lowest first. An object whose
//! newest record lies at or below the target stops being tracked; one with newer records is
//! held back from the target on. Either is remembered as *released through* the last position
//! passed (by a 16-byte digest of its id, at most [`RELEASED_OBJECTS_MAX`] objects). A fetch
//! of a released object reports that position ([`CheckpointFetch::released_through`]) rather
//! than serve a state that misses records; a checkpoint at or above it (from an instance that
//! followed the object all along) lifts the mark. An object's covering position is never below
//! the truncation point: its records at or below it are covered or released.
//!
//! # Fetching
//!
//! A checkpoint kept at position `c` below the truncation point `T` is served at position `T`:
//! the object has no record in `(c, T]` (had it one, `T` could not have passed it before the
//! object's newest checkpoint did, and that is `c`), so the state at `c`
//! is its state at `T`, and the caller subscribes from `T + 1`, which the log holds. For the
//! same reason an object without a checkpoint has no record at or below `T`. Both hold for
//! every object the region has not released; for a released one the fetch says so.
//!
//! # Where the state lives
//!
//! In the store, not in memory: a node keeps the counters (the header below) and at most
//! [`ALARMS_LISTED_MAX`] divergence alarms, whatever the number of objects. Applying an entry
//! reads what it needs back from the store, over the writes of the batch being built (kept
//! until the raft group reports it written, [`CheckpointState::batch_written`]). The lowest
//! covering position, which bounds truncation, is the first key of an index kept in the store
//! (`limit/`), and the node remembers it until it changes.
//!
//! # Store layout
//!
//! In one of two key spaces, [`CHECKPOINTS_A`] or [`CHECKPOINTS_B`], the node's own choice
//! ([`CheckpointSpace`]): a member taking a snapshot fetches the state into the other and
//! switches when raft restores the snapshot. Stores of older releases keep it in the region
//! state key space until then.
//!
//! - `truncation`: the header: the truncation point, the alarm counter, the first untracked
//!   position, the release counter, and the counts and bytes of what is tracked;
//! - `checkpoint/<object id>`: one object's newest checkpoint without its state (position,
//!   hash, reporters, agreed position, alarm, state length);
//! - `state/<object id>`: that checkpoint's state bytes;
//! - `uncovered/<object id>`: the position of an uncovered object's newest record and its
//!   covering position;
//! - `limit/<covering position, 8 bytes big-endian><object id>`: empty, one per uncovered
//!   object: the index whose first key is the lowest covering position;
//! - `alarm/<object id>`: empty, one per object with a divergence alarm;
//! - `released/<digest of the object id>`: the position through which an object's records
//!   were released without a checkpoint.
//!
//! A store written by an older release (header format 1 or 2, states inside the checkpoint
//! values, no index) is read whole once at start and rewritten in this layout with the first
//! entry applied. A snapshot built before that entry describes the migrated state but its
//! view holds the old layout: a member fetching it finds the pieces do not add up to the
//! counters and waits for the next snapshot.

use std::cell::RefCell;
use std::collections::BTreeMap;

use dsss_raft_group::{DurableStore, KeySpace, KeyValuePairs, StoreError, WriteBatch};
use dsss_wire::ids::OBJECT_ID_BYTES_MAX;
use dsss_wire::{ClientId, ObjectId};

use crate::bytes::{Reader, corrupt, put_bytes, scan_range};
use crate::global::adoption::{AdoptedCheckpoint, AdoptionOutcome, GlobalPoint};

pub mod transfer;

/// The largest state a checkpoint may carry, in bytes. The gRPC messages of both directions
/// (upload and fetch) hold it with room to spare ([`dsss_wire::GRPC_MESSAGE_BYTES_MAX`]), and
/// so does one raft entry.
pub const CHECKPOINT_STATE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// What the checkpoint state of a region may hold, in bytes. Neither travels in one raft
/// message (a member taking a snapshot fetches the state in pieces), so both are shares of
/// the region's storage: [`CheckpointBounds::for_quota`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointBounds {
    /// The most bytes the checkpoints may take: each costs its id, its largest encoding
    /// without the state, and its state (see [`CheckpointState::checkpoint_bytes`]). At the
    /// bound, a checkpoint of a new object, or one with a larger state, is refused as resource
    /// exhausted; newer checkpoints whose state is no larger are still taken.
    pub checkpoint_bytes_max: u64,
    /// The most bytes the tracking of objects may take: every uncovered object (its id and 20
    /// bytes) and every released one (24 bytes). Apart from the checkpoints, so that at either
    /// bound the other still moves: checkpoints of uncovered objects free tracking bytes, and
    /// releases go on whatever the checkpoints take. At the bound a record of an object not
    /// tracked yet is refused, and a release stops before an object it would have to add.
    pub tracking_bytes_max: u64,
}

impl CheckpointBounds {
    /// The bounds of a region whose log quota is `quota_bytes`: the checkpoints may take as
    /// much as the log, the tracking of objects a quarter of it (with the default quota of
    /// 1 GiB, about 5 million uncovered objects with ids of 30 bytes).
    pub fn for_quota(quota_bytes: u64) -> CheckpointBounds {
        CheckpointBounds {
            checkpoint_bytes_max: quota_bytes,
            tracking_bytes_max: quota_bytes / 4,
        }
    }
}

impl Default for CheckpointBounds {
    /// The bounds of the default region log quota.
    fn default() -> Self {
        CheckpointBounds::for_quota(crate::region_log::RegionLogRetention::default().size_bytes_max)
    }
}

/// The most bytes the checkpoint state takes in a snapshot: the header, where it lives and
/// the listed alarms.
pub const SNAPSHOT_PART_BYTES_MAX: usize =
    4 + HEADER_BYTES_MAX + 1 + 4 + ALARMS_LISTED_MAX * (4 + OBJECT_ID_BYTES_MAX + 24);

/// How many divergence alarms a node keeps in memory to report (the lowest object ids); every
/// alarm stays in the store and in the count.
pub const ALARMS_LISTED_MAX: usize = 64;

/// The most client ids kept per checkpoint as having reported it; later reporters still agree
/// but are not listed.
pub const REPORTING_CLIENTS_MAX: usize = 8;

/// The length of a state hash (SHA-256), in bytes.
pub const STATE_HASH_BYTES: usize = 32;

/// How many object names an error message lists at most.
pub const NAMED_OBJECTS_MAX: usize = 4;

/// The reporting client of a checkpoint adopted from another region
/// ([`crate::global::adoption`]): no client of this region computed it.
pub const ADOPTED_CLIENT_ID: u64 = 0;

/// The format byte of a checkpoint entry in the raft log.
pub(crate) const CHECKPOINT_FORMAT: u8 = 4;

/// The format byte of an entry that clears an object's divergence alarm (an operator resolved
/// it: `dsss region clear-alarm`).
pub(crate) const ALARM_CLEAR_FORMAT: u8 = 7;

/// The key of the header.
const TRUNCATION_KEY: &[u8] = b"truncation";

/// One of the two key spaces the checkpoint state lives in. A member that takes a snapshot
/// fetches the state into the one not in use and switches to it when raft restores the
/// snapshot, so the state never has to fit in one raft message or one write batch (see
/// [`transfer`]).
pub const CHECKPOINTS_A: KeySpace = KeySpace::new("checkpoints_a");

/// The other of the two (see [`CHECKPOINTS_A`]).
pub const CHECKPOINTS_B: KeySpace = KeySpace::new("checkpoints_b");

/// The first key past every key of this module (they all start with ASCII letters).
pub(crate) const KEYS_END: &[u8] = &[0xff];

/// Where a node's checkpoint state lives. Stores written by older releases keep it in the
/// region state key space until the node first restores a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckpointSpace {
    /// The region state key space ([`crate::region_log::REGION_STATE`]), of older releases.
    Legacy,
    /// [`CHECKPOINTS_A`].
    A,
    /// [`CHECKPOINTS_B`].
    B,
}

impl CheckpointSpace {
    /// The key space.
    pub fn key_space(self) -> KeySpace {
        match self {
            CheckpointSpace::Legacy => crate::region_log::REGION_STATE,
            CheckpointSpace::A => CHECKPOINTS_A,
            CheckpointSpace::B => CHECKPOINTS_B,
        }
    }

    /// The space a snapshot's state is fetched into while this one is in use.
    pub fn other(self) -> CheckpointSpace {
        match self {
            CheckpointSpace::A => CheckpointSpace::B,
            CheckpointSpace::Legacy | CheckpointSpace::B => CheckpointSpace::A,
        }
    }

    /// Its byte in the store and in snapshots.
    pub fn tag(self) -> u8 {
        match self {
            CheckpointSpace::Legacy => 0,
            CheckpointSpace::A => 1,
            CheckpointSpace::B => 2,
        }
    }

    /// The space a byte names.
    pub fn from_tag(tag: u8) -> Result<CheckpointSpace, String> {
        match tag {
            0 => Ok(CheckpointSpace::Legacy),
            1 => Ok(CheckpointSpace::A),
            2 => Ok(CheckpointSpace::B),
            other => Err(format!("checkpoint space {other} is unknown (0 to 2)")),
        }
    }

    /// Where the state of a node lives, read from its store at start: the space named under
    /// `key` in `state_space`, else the region state key space when it holds a checkpoint
    /// header (a store of an older release), else [`CheckpointSpace::A`].
    pub(crate) fn recover(
        store: &dyn DurableStore,
        state_space: KeySpace,
        key: &[u8],
    ) -> Result<CheckpointSpace, StoreError> {
        if let Some(value) = store.get(state_space, key)? {
            let [tag] = value.as_slice() else {
                return Err(corrupt(
                    state_space,
                    key,
                    format!("a checkpoint space is 1 byte, not {}", value.len()),
                ));
            };
            return CheckpointSpace::from_tag(*tag)
                .map_err(|reason| corrupt(state_space, key, reason));
        }
        if store.get(state_space, TRUNCATION_KEY)?.is_some() {
            return Ok(CheckpointSpace::Legacy);
        }
        Ok(CheckpointSpace::A)
    }
}

/// The key prefixes of this module in the region state key space, each with the end of its
/// range (the prefix with its last byte raised by one).
const CHECKPOINT_KEY_PREFIX: &[u8] = b"checkpoint/";
const CHECKPOINT_KEYS_END: &[u8] = b"checkpoint0";
const STATE_KEY_PREFIX: &[u8] = b"state/";
const STATE_KEYS_END: &[u8] = b"state0";
const UNCOVERED_KEY_PREFIX: &[u8] = b"uncovered/";
const UNCOVERED_KEYS_END: &[u8] = b"uncovered0";
const LIMIT_KEY_PREFIX: &[u8] = b"limit/";
const LIMIT_KEYS_END: &[u8] = b"limit0";
const ALARM_KEY_PREFIX: &[u8] = b"alarm/";
const ALARM_KEYS_END: &[u8] = b"alarm0";
const RELEASED_KEY_PREFIX: &[u8] = b"released/";
const RELEASED_KEYS_END: &[u8] = b"released0";

/// The length of an object id's digest in the released set.
const OBJECT_DIGEST_BYTES: usize = 16;

/// The first 16 bytes of the SHA-256 of an object id: the released set keys objects by it so
/// that each costs a fixed 24 bytes whatever the length of its id (a collision, with 2^-128
/// odds per pair, would only make an open of one object fail as released).
type ObjectDigest = [u8; OBJECT_DIGEST_BYTES];

fn object_digest(object_id: &ObjectId) -> ObjectDigest {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(object_id.as_str().as_bytes());
    let mut digest = [0; OBJECT_DIGEST_BYTES];
    digest.copy_from_slice(&hash[..OBJECT_DIGEST_BYTES]);
    digest
}

/// Format 3 adds the counts and bytes of what is tracked (formats 1 and 2, of older releases,
/// are read and migrated; see the module documentation).
/// Format 4 adds the position of the region's latest skip of epochs; format 3 the counters
/// (formats 1 and 2 are rebuilt from the rest of the state).
const TRUNCATION_FORMAT: u8 = 4;
const TRUNCATION_FORMAT_WITH_COUNTERS: u8 = 3;
/// Format 2 keeps the state under its own key; format 1 (older releases) held it inline.
const OBJECT_FORMAT: u8 = 2;

/// The largest encoded object entry of format 1, for bounded reads.
const LEGACY_OBJECT_BYTES_MAX: usize = CHECKPOINT_STATE_BYTES_MAX + 1024;

/// The largest encoded checkpoint without its state.
const OBJECT_META_BYTES_MAX: usize =
    1 + 8 + STATE_HASH_BYTES + 4 + 8 * REPORTING_CLIENTS_MAX + 8 + 25 + 8;

/// The largest header.
const HEADER_BYTES_MAX: usize = 64 + 7 * 8;

/// What one item costs, in bytes (see [`CheckpointState::checkpoint_bytes`]): its key and
/// value with room to spare. A checkpoint counts its largest encoding without the state, so
/// that a reporter or an alarm added later never passes the bound.
fn object_snapshot_bytes(object_id: &ObjectId, state_bytes: u64) -> u64 {
    (4 + object_id.as_str().len() + 4 + OBJECT_META_BYTES_MAX + 4) as u64 + state_bytes
}

fn uncovered_snapshot_bytes(object_id: &ObjectId) -> u64 {
    (4 + object_id.as_str().len() + 16) as u64
}

const RELEASED_SNAPSHOT_BYTES: u64 = (OBJECT_DIGEST_BYTES + 8) as u64;

/// A checkpoint offered by a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointUpload {
    /// The object.
    pub object_id: ObjectId,
    /// The log position the state reflects.
    pub position: u64,
    /// The state, as the SDK encoded it; never interpreted here.
    pub state: Vec<u8>,
    /// The SHA-256 of `state`, as the client computed it.
    pub state_hash: [u8; STATE_HASH_BYTES],
    /// The client that made it.
    pub client_id: ClientId,
}

/// What the region did with an upload (the `CheckpointOutcome` of the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckpointOutcome {
    /// Kept as the object's newest checkpoint (or a retry of the same report).
    Stored,
    /// Another client reported the same hash at this position: the agreed position is this.
    Agreed,
    /// Another client reported a different hash at this position: a divergence alarm.
    HashMismatch,
    /// The region keeps a newer checkpoint; this one was dropped.
    Superseded,
    /// (An operator's `ClearAlarm`, answered through the upload path.) The object's
    /// divergence alarm was cleared: truncation may move past it again.
    AlarmCleared,
    /// (An operator's `ClearAlarm`.) The object had no divergence alarm; nothing changed.
    NoAlarm,
}

/// Why an upload was not taken, decided alike on every member.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointRefusal {
    /// A bound of the region's checkpoints is reached.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// A field is out of range; the message names it.
    #[error("invalid checkpoint: {0}")]
    Invalid(String),
}

/// The newest checkpoint of an object, without its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The position the state reflects.
    pub position: u64,
    /// The length of the state, in bytes.
    pub state_bytes: u64,
    /// The hash of the state, as reported.
    pub state_hash: [u8; STATE_HASH_BYTES],
    /// The clients that reported this checkpoint, in the order they did (at most
    /// [`REPORTING_CLIENTS_MAX`]).
    pub reporting_clients: Vec<u64>,
}

impl StoredCheckpoint {
    /// True for the default state adopted from a region that kept no checkpoint of a global
    /// object with no record: an empty state, reported by [`ADOPTED_CLIENT_ID`] alone. No
    /// client's encoding of a state is empty.
    pub fn is_adopted_default(&self) -> bool {
        self.state_bytes == 0 && self.reporting_clients == [ADOPTED_CLIENT_ID]
    }
}

/// Two clients reported different hashes for one object at one position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DivergenceAlarm {
    /// The object whose copies diverged.
    pub object_id: ObjectId,
    /// The position at which they did.
    pub position: u64,
    /// The first client that reported the kept hash.
    pub first_client_id: u64,
    /// The client that reported a different one.
    pub second_client_id: u64,
}

/// What the region keeps of one object, its state apart.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ObjectCheckpoints {
    newest: StoredCheckpoint,
    /// The newest position two clients agreed on, 0 when none.
    agreed_position: u64,
    /// The newest divergence, if any: (position, first client, second client).
    alarm: Option<(u64, u64, u64)>,
}

/// An object whose newest record lies above its newest checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Uncovered {
    last_record_position: u64,
    /// The position of its newest checkpoint (or the release point), 0 when it has none.
    covering_position: u64,
}

/// A checkpoint as a caller fetches it (see the module documentation on positions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedCheckpoint {
    /// The position to start from: the kept position, or the truncation point when that is
    /// higher.
    pub position: u64,
    /// The position the checkpoint was uploaded at.
    pub uploaded_position: u64,
    /// The state bytes.
    pub state: Vec<u8>,
    /// Their hash.
    pub state_hash: [u8; STATE_HASH_BYTES],
}

/// What a node answers to `FetchCheckpoint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointFetch {
    /// The object's newest checkpoint, if the region keeps one.
    pub checkpoint: Option<FetchedCheckpoint>,
    /// The region's truncation point: without a checkpoint, the caller starts from the default
    /// state at this position (the object has no record at or below it).
    pub truncated_through: u64,
    /// Non-zero when the region released records of the object through this position
    /// without a checkpoint covering them, and keeps no checkpoint at or above it: its state
    /// cannot be rebuilt from this region (neither `checkpoint` nor the default state is it).
    pub released_through: u64,
}

/// The counters of the checkpoint state: all a node holds in memory of it, besides the
/// alarms it lists. Persisted under `truncation`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Header {
    truncated_through: u64,
    alarms_raised: u64,
    /// The first sequenced global record whose object could not be tracked, 0 when none.
    untracked_from: u64,
    /// How many times an object was released (the same object may be released again).
    releases: u64,
    object_count: u64,
    states_size_bytes: u64,
    uncovered_count: u64,
    released_count: u64,
    alarm_count: u64,
    /// What the checkpoints take, bounded by [`CheckpointBounds::checkpoint_bytes_max`].
    checkpoint_bytes: u64,
    /// What the uncovered and released objects take, bounded by
    /// [`CheckpointBounds::tracking_bytes_max`].
    tracking_bytes: u64,
    /// The position of the epoch end by which the region last skipped sealed epochs no log
    /// held any longer, 0 when it never did: a global object's checkpoint below it misses
    /// the object's records in those epochs (docs/global-protocol.md section 7).
    global_skipped_through: u64,
}

impl Header {
    /// Whether anything per object is kept: checkpoints, uncovered or released objects. The
    /// counts of a snapshot's header come from the network and may be anything, so they are
    /// not summed (a sum can overflow, or wrap to 0 and hide the objects).
    pub(crate) fn has_items(&self) -> bool {
        self.object_count > 0 || self.uncovered_count > 0 || self.released_count > 0
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![TRUNCATION_FORMAT];
        for value in [
            self.truncated_through,
            self.alarms_raised,
            self.untracked_from,
            self.releases,
            self.object_count,
            self.states_size_bytes,
            self.uncovered_count,
            self.released_count,
            self.alarm_count,
            self.checkpoint_bytes,
            self.tracking_bytes,
            self.global_skipped_through,
        ] {
            bytes.extend_from_slice(&value.to_be_bytes());
        }
        bytes
    }

    /// Decodes a header; `Ok(false)` when it is of an older format, whose counts must be
    /// rebuilt from the rest of the state.
    fn decode(bytes: &[u8], next_position: u64) -> Result<(Header, bool), String> {
        let mut reader = Reader::new(bytes);
        let format = reader.u8("truncation format")?;
        if !(1..=TRUNCATION_FORMAT).contains(&format) {
            return Err(format!(
                "truncation format {format} is unknown; this release reads formats 1 to \
                 {TRUNCATION_FORMAT}"
            ));
        }
        let mut header = Header {
            truncated_through: reader.u64("truncation point")?,
            alarms_raised: reader.u64("alarm count")?,
            untracked_from: reader.u64("first untracked position")?,
            ..Header::default()
        };
        if format >= 2 {
            header.releases = reader.u64("release count")?;
        }
        if format >= TRUNCATION_FORMAT_WITH_COUNTERS {
            header.object_count = reader.u64("checkpointed object count")?;
            header.states_size_bytes = reader.u64("state bytes")?;
            header.uncovered_count = reader.u64("uncovered object count")?;
            header.released_count = reader.u64("released object count")?;
            header.alarm_count = reader.u64("alarmed object count")?;
            header.checkpoint_bytes = reader.u64("checkpoint bytes")?;
            header.tracking_bytes = reader.u64("tracking bytes")?;
        }
        if format >= 4 {
            header.global_skipped_through = reader.u64("skip position")?;
        }
        reader.finish()?;
        if header.truncated_through >= next_position {
            return Err(format!(
                "truncation point {} is not below the next position {next_position}",
                header.truncated_through
            ));
        }
        if header.untracked_from >= next_position {
            return Err(format!(
                "first untracked position {} is not below the next position {next_position}",
                header.untracked_from
            ));
        }
        if header.global_skipped_through >= next_position {
            return Err(format!(
                "skip position {} is not below the next position {next_position}",
                header.global_skipped_through
            ));
        }
        // The byte counters sum what the counted objects take: a header from a peer that
        // counts bytes of no object would hold the bounds against state that does not exist,
        // and no fetch would ever correct it (a state without objects fetches nothing).
        if header.object_count == 0 && (header.checkpoint_bytes > 0 || header.states_size_bytes > 0)
        {
            return Err(format!(
                "no checkpointed object, but {} checkpoint bytes and {} state bytes",
                header.checkpoint_bytes, header.states_size_bytes
            ));
        }
        if header.states_size_bytes > header.checkpoint_bytes {
            return Err(format!(
                "{} state bytes, more than the {} checkpoint bytes that include them",
                header.states_size_bytes, header.checkpoint_bytes
            ));
        }
        if header.uncovered_count == 0 && header.released_count == 0 && header.tracking_bytes > 0 {
            return Err(format!(
                "no uncovered or released object, but {} tracking bytes",
                header.tracking_bytes
            ));
        }
        if header.alarm_count > header.alarms_raised {
            return Err(format!(
                "{} objects have alarms but only {} were raised",
                header.alarm_count, header.alarms_raised
            ));
        }
        Ok((header, format >= TRUNCATION_FORMAT_WITH_COUNTERS))
    }
}

/// The lowest covering position among uncovered objects, as the node last read it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FirstLimit {
    /// Must be read from the store.
    Unknown,
    /// No object is uncovered.
    None,
    /// This one.
    Known(u64, ObjectId),
}

/// The replicated checkpoints and truncation state of a region, kept in the store. See the
/// module documentation.
#[derive(Clone, Debug)]
pub struct CheckpointState {
    header: Header,
    /// The alarms of the lowest object ids, at most [`ALARMS_LISTED_MAX`].
    alarms: BTreeMap<ObjectId, (u64, u64, u64)>,
    /// The alarm the last hash mismatch raised.
    newest_alarm: Option<DivergenceAlarm>,
    /// The writes of the batch being built, which the store does not hold yet: a key's new
    /// value, or `None` when it is deleted.
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Writes a migration from an older layout still owes the store: they go into the next
    /// batch (see [`CheckpointState::take_migration`]).
    migration: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The first key of the limit index, remembered (the node's own cache; it changes
    /// nothing that is replicated).
    first_limit: RefCell<FirstLimit>,
    /// What the state may hold (configuration, alike on every member).
    bounds: CheckpointBounds,
}

impl Default for CheckpointState {
    fn default() -> Self {
        CheckpointState::new(CheckpointBounds::default())
    }
}

/// Two states are equal when their counters and listed alarms are (the store holds the rest).
impl PartialEq for CheckpointState {
    fn eq(&self, other: &Self) -> bool {
        self.header == other.header && self.alarms == other.alarms
    }
}

impl Eq for CheckpointState {}

fn object_key(prefix: &[u8], object_id: &ObjectId) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(object_id.as_str().as_bytes());
    key
}

fn limit_key(covering_position: u64, object_id: &ObjectId) -> Vec<u8> {
    let mut key = LIMIT_KEY_PREFIX.to_vec();
    key.extend_from_slice(&covering_position.to_be_bytes());
    key.extend_from_slice(object_id.as_str().as_bytes());
    key
}

fn released_key(digest: &ObjectDigest) -> Vec<u8> {
    let mut key = RELEASED_KEY_PREFIX.to_vec();
    key.extend_from_slice(digest);
    key
}

fn object_from_key(prefix: &[u8], key: &[u8]) -> Option<ObjectId> {
    let suffix = key.strip_prefix(prefix)?;
    ObjectId::new(std::str::from_utf8(suffix).ok()?).ok()
}

fn limit_from_key(key: &[u8]) -> Option<(u64, ObjectId)> {
    let suffix = key.strip_prefix(LIMIT_KEY_PREFIX)?;
    let (position, id) = suffix.split_first_chunk::<8>()?;
    let object_id = ObjectId::new(std::str::from_utf8(id).ok()?).ok()?;
    Some((u64::from_be_bytes(*position), object_id))
}

/// Encodes a checkpoint entry for the raft log: the upload and who proposed it (a node and
/// its upload number), so that the proposer can answer its caller once it is applied.
pub(crate) fn encode_checkpoint_entry(upload: &CheckpointUpload, proposer: (u64, u64)) -> Vec<u8> {
    let mut data = Vec::with_capacity(upload.state.len() + 128);
    data.push(CHECKPOINT_FORMAT);
    data.extend_from_slice(&proposer.0.to_be_bytes());
    data.extend_from_slice(&proposer.1.to_be_bytes());
    put_bytes(&mut data, upload.object_id.as_str().as_bytes());
    data.extend_from_slice(&upload.position.to_be_bytes());
    data.extend_from_slice(&upload.state_hash);
    data.extend_from_slice(&upload.client_id.get().to_be_bytes());
    put_bytes(&mut data, &upload.state);
    data
}

/// Encodes an entry that clears `object_id`'s divergence alarm, with who proposed it (a node
/// and its upload number: the answer goes back as an upload's does).
pub(crate) fn encode_alarm_clear_entry(object_id: &ObjectId, proposer: (u64, u64)) -> Vec<u8> {
    let mut data = Vec::with_capacity(64 + object_id.as_str().len());
    data.push(ALARM_CLEAR_FORMAT);
    data.extend_from_slice(&proposer.0.to_be_bytes());
    data.extend_from_slice(&proposer.1.to_be_bytes());
    put_bytes(&mut data, object_id.as_str().as_bytes());
    data
}

/// Decodes the payload of an alarm-clearing entry (after its format byte).
pub(crate) fn decode_alarm_clear_entry(payload: &[u8]) -> Result<(ObjectId, (u64, u64)), String> {
    let mut reader = Reader::new(payload);
    let proposer = (
        reader.u64("alarm clear proposer")?,
        reader.u64("alarm clear number")?,
    );
    let object_id = read_object_id(&mut reader, "alarm clear object id")?;
    reader.finish()?;
    Ok((object_id, proposer))
}

/// Decodes the payload of a checkpoint entry (after its format byte).
pub(crate) fn decode_checkpoint_entry(
    payload: &[u8],
) -> Result<(CheckpointUpload, (u64, u64)), String> {
    let mut reader = Reader::new(payload);
    let proposer = (
        reader.u64("checkpoint proposer")?,
        reader.u64("checkpoint upload number")?,
    );
    let object_id = read_object_id(&mut reader, "checkpoint object id")?;
    let position = reader.u64("checkpoint position")?;
    let state_hash = read_hash(&mut reader, "checkpoint state hash")?;
    let client_id = ClientId(reader.u64("checkpoint client id")?);
    let state = reader
        .bytes(CHECKPOINT_STATE_BYTES_MAX, "checkpoint state")?
        .to_vec();
    reader.finish()?;
    Ok((
        CheckpointUpload {
            object_id,
            position,
            state,
            state_hash,
            client_id,
        },
        proposer,
    ))
}

fn read_object_id(reader: &mut Reader<'_>, what: &str) -> Result<ObjectId, String> {
    let bytes = reader.bytes(OBJECT_ID_BYTES_MAX, what)?;
    let text = std::str::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8"))?;
    ObjectId::new(text).map_err(|error| format!("{what}: {error}"))
}

fn read_hash(reader: &mut Reader<'_>, what: &str) -> Result<[u8; STATE_HASH_BYTES], String> {
    let bytes = reader.take(STATE_HASH_BYTES, what)?;
    Ok(bytes.try_into().expect("took exactly the hash length"))
}

fn decode_position(value: &[u8], what: &str) -> Result<u64, String> {
    <[u8; 8]>::try_from(value)
        .map(u64::from_be_bytes)
        .map_err(|_| format!("{what} is 8 bytes, not {}", value.len()))
}

fn encode_uncovered(uncovered: Uncovered) -> Vec<u8> {
    let mut value = uncovered.last_record_position.to_be_bytes().to_vec();
    value.extend_from_slice(&uncovered.covering_position.to_be_bytes());
    value
}

fn decode_uncovered(value: &[u8]) -> Result<Uncovered, String> {
    let mut reader = Reader::new(value);
    let last_record_position = reader.u64("uncovered newest record position")?;
    let covering_position = reader.u64("uncovered covering position")?;
    reader.finish()?;
    if last_record_position <= covering_position {
        return Err(format!(
            "newest record position {last_record_position} is not above the covering \
             position {covering_position}"
        ));
    }
    Ok(Uncovered {
        last_record_position,
        covering_position,
    })
}

/// The checkpoint state of a snapshot, decoded and checked, to restore: the counters and the
/// listed alarms; everything per object is fetched apart (see
/// [`transfer`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotCheckpoints {
    pub(crate) header: Header,
    /// Where the sender keeps the state, so where its view holds it.
    pub(crate) sender_space: CheckpointSpace,
    alarms: BTreeMap<ObjectId, (u64, u64, u64)>,
}

impl SnapshotCheckpoints {
    /// The snapshot's truncation point.
    pub(crate) fn truncated_through(&self) -> u64 {
        self.header.truncated_through
    }
}

impl CheckpointState {
    /// An empty state held within `bounds`.
    pub fn new(bounds: CheckpointBounds) -> CheckpointState {
        CheckpointState {
            header: Header::default(),
            alarms: BTreeMap::new(),
            newest_alarm: None,
            pending: BTreeMap::new(),
            migration: Vec::new(),
            first_limit: RefCell::new(FirstLimit::None),
            bounds,
        }
    }

    /// What the state may hold.
    pub fn bounds(&self) -> CheckpointBounds {
        self.bounds
    }

    // Reads: the batch being built over the store.

    fn get(
        &self,
        store: &dyn DurableStore,
        space: KeySpace,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match self.pending.get(key) {
            Some(value) => Ok(value.clone()),
            None => store.get(space, key),
        }
    }

    /// Up to `limit` pairs with `start <= key < end`, in key order, the pending writes over the
    /// store.
    fn scan(
        &self,
        store: &dyn DurableStore,
        space: KeySpace,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<KeyValuePairs, StoreError> {
        const CHUNK: usize = 64;
        let mut found = Vec::new();
        let mut from = start.to_vec();
        loop {
            let chunk = store.scan(space, &from, end, CHUNK)?;
            let exhausted = chunk.len() < CHUNK;
            let upper = match chunk.last() {
                Some((key, _)) if !exhausted => {
                    let mut next = key.clone();
                    next.push(0);
                    next
                }
                _ => end.to_vec(),
            };
            let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = chunk.into_iter().collect();
            for (key, value) in self.pending.range(from.clone()..upper.clone()) {
                match value {
                    Some(value) => merged.insert(key.clone(), value.clone()),
                    None => merged.remove(key),
                };
            }
            for pair in merged {
                found.push(pair);
                if found.len() >= limit {
                    return Ok(found);
                }
            }
            if exhausted {
                return Ok(found);
            }
            from = upper;
        }
    }

    fn object(
        &self,
        store: &dyn DurableStore,
        space: KeySpace,
        object_id: &ObjectId,
    ) -> Result<Option<ObjectCheckpoints>, StoreError> {
        let key = object_key(CHECKPOINT_KEY_PREFIX, object_id);
        let Some(value) = self.get(store, space, &key)? else {
            return Ok(None);
        };
        let mut reader = Reader::new(&value);
        decode_meta(&mut reader)
            .and_then(|object| reader.finish().map(|()| object))
            .map(Some)
            .map_err(|reason| corrupt(space, &key, reason))
    }

    fn uncovered(
        &self,
        store: &dyn DurableStore,
        space: KeySpace,
        object_id: &ObjectId,
    ) -> Result<Option<Uncovered>, StoreError> {
        let key = object_key(UNCOVERED_KEY_PREFIX, object_id);
        match self.get(store, space, &key)? {
            None => Ok(None),
            Some(value) => decode_uncovered(&value)
                .map(Some)
                .map_err(|reason| corrupt(space, &key, reason)),
        }
    }

    fn released(
        &self,
        store: &dyn DurableStore,
        space: KeySpace,
        digest: &ObjectDigest,
    ) -> Result<Option<u64>, StoreError> {
        let key = released_key(digest);
        match self.get(store, space, &key)? {
            None => Ok(None),
            Some(value) => decode_position(&value, "a released position")
                .map(Some)
                .map_err(|reason| corrupt(space, &key, reason)),
        }
    }

    /// The lowest covering position among uncovered objects, and the object.
    fn first_limit(
        &self,
        store: &dyn DurableStore,
        space: KeySpace,
    ) -> Result<Option<(u64, ObjectId)>, StoreError> {
        if let FirstLimit::Known(position, object_id) = &*self.first_limit.borrow() {
            return Ok(Some((*position, object_id.clone())));
        }
        if *self.first_limit.borrow() == FirstLimit::None {
            return Ok(None);
        }
        // No covering position lies below the truncation point: the scan starts there.
        let mut start = LIMIT_KEY_PREFIX.to_vec();
        start.extend_from_slice(&self.header.truncated_through.to_be_bytes());
        let first = self.scan(store, space, &start, LIMIT_KEYS_END, 1)?;
        let first = match first.first() {
            None => None,
            Some((key, _)) => Some(
                limit_from_key(key)
                    .ok_or_else(|| corrupt(space, key, "not a limit key".to_owned()))?,
            ),
        };
        *self.first_limit.borrow_mut() = match &first {
            None => FirstLimit::None,
            Some((position, object_id)) => FirstLimit::Known(*position, object_id.clone()),
        };
        Ok(first)
    }

    // Getters.

    /// The newest checkpoint kept for `object_id`, without its state.
    pub fn newest(
        &self,
        store: &dyn DurableStore,
        space: KeySpace,
        object_id: &ObjectId,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        Ok(self
            .object(store, space, object_id)?
            .map(|object| object.newest))
    }

    /// The newest agreed position of `object_id`, 0 when none.
    pub fn agreed_position(
        &self,
        store: &dyn DurableStore,
        space: KeySpace,
        object_id: &ObjectId,
    ) -> Result<u64, StoreError> {
        Ok(self
            .object(store, space, object_id)?
            .map_or(0, |object| object.agreed_position))
    }

    /// The region's truncation point: entries at or below it may be dropped.
    pub fn truncated_through(&self) -> u64 {
        self.header.truncated_through
    }

    /// The position of the first sequenced global record whose object could not be tracked:
    /// the log is never truncated at or above it.
    pub fn untracked_from(&self) -> Option<u64> {
        (self.header.untracked_from > 0).then_some(self.header.untracked_from)
    }

    /// How many objects have a checkpoint.
    pub fn object_count(&self) -> u64 {
        self.header.object_count
    }

    /// The bytes of state over every kept checkpoint.
    pub fn states_size_bytes(&self) -> u64 {
        self.header.states_size_bytes
    }

    /// How many objects have a record above their newest checkpoint (or have records and no
    /// checkpoint).
    pub fn uncovered_count(&self) -> u64 {
        self.header.uncovered_count
    }

    /// What the checkpoints take, out of [`CheckpointBounds::checkpoint_bytes_max`].
    pub fn checkpoint_bytes(&self) -> u64 {
        self.header.checkpoint_bytes
    }

    /// What the uncovered and released objects take, out of
    /// [`CheckpointBounds::tracking_bytes_max`].
    pub fn tracking_bytes(&self) -> u64 {
        self.header.tracking_bytes
    }

    /// True when `object_id` has a record above its newest checkpoint.
    pub fn is_uncovered(
        &self,
        store: &dyn DurableStore,
        space: KeySpace,
        object_id: &ObjectId,
    ) -> Result<bool, StoreError> {
        Ok(self.uncovered(store, space, object_id)?.is_some())
    }

    /// The position through which the region released records of `object_id` without a
    /// checkpoint, when it keeps no checkpoint at or above it (see the module documentation).
    pub fn released_through(
        &self,
        store: &dyn DurableStore,
        space: KeySpace,
        object_id: &ObjectId,
    ) -> Result<Option<u64>, StoreError> {
        let Some(released) = self.released(store, space, &object_digest(object_id))? else {
            return Ok(None);
        };
        let covering = self
            .object(store, space, object_id)?
            .map_or(0, |object| object.newest.position);
        Ok((released > covering).then_some(released))
    }

    /// The position of the epoch end by which the region last skipped sealed epochs that no
    /// log held any longer, 0 when it never did.
    pub fn global_skipped_through(&self) -> u64 {
        self.header.global_skipped_through
    }

    /// For a global object: the position of the region's latest skip when the newest
    /// checkpoint kept of it lies below it, or none is kept. Its state here then misses
    /// its records in the skipped epochs, and only a checkpoint adopted from another region
    /// rebuilds it (docs/global-protocol.md section 7, "When no region holds them").
    pub fn stale_by_skip(
        &self,
        store: &dyn DurableStore,
        space: KeySpace,
        object_id: &ObjectId,
    ) -> Result<Option<u64>, StoreError> {
        let skipped = self.header.global_skipped_through;
        if skipped == 0 {
            return Ok(None);
        }
        let covering = self
            .object(store, space, object_id)?
            .map_or(0, |object| object.newest.position);
        Ok((covering < skipped).then_some(skipped))
    }

    /// Notes that the epoch end at `position` skipped epochs no log held.
    pub(crate) fn note_global_skip(
        &mut self,
        space: KeySpace,
        batch: &mut WriteBatch,
        position: u64,
    ) {
        assert!(
            position > self.header.global_skipped_through,
            "skips only move forward"
        );
        self.header.global_skipped_through = position;
        self.write_header(space, batch);
    }

    /// How many objects the region remembers as released without a checkpoint.
    pub fn released_count(&self) -> u64 {
        self.header.released_count
    }

    /// How many times the region released an object's records without a checkpoint.
    pub fn releases(&self) -> u64 {
        self.header.releases
    }

    /// How many hash mismatches the region has seen.
    pub fn alarms_raised(&self) -> u64 {
        self.header.alarms_raised
    }

    /// The divergence alarms of the lowest object ids (at most [`ALARMS_LISTED_MAX`]), in
    /// object order: the newest alarm of each.
    pub fn alarms(&self) -> impl Iterator<Item = DivergenceAlarm> + '_ {
        self.alarms.iter().map(
            |(object_id, (position, first_client_id, second_client_id))| DivergenceAlarm {
                object_id: object_id.clone(),
                position: *position,
                first_client_id: *first_client_id,
                second_client_id: *second_client_id,
            },
        )
    }

    /// The alarm the newest hash mismatch raised, if any.
    pub fn newest_alarm(&self) -> Option<&DivergenceAlarm> {
        self.newest_alarm.as_ref()
    }

    /// How many objects have a divergence alarm.
    pub fn alarm_count(&self) -> u64 {
        self.header.alarm_count
    }

    /// The objects that hold truncation back as this node last read them, for messages:
    /// listed alarms first, then the object with the lowest covering position when the node
    /// knows it, at most `count`.
    pub fn blocking_objects(&self, count: usize) -> Vec<String> {
        let mut named: Vec<String> = self
            .alarms
            .keys()
            .map(|object_id| format!("{object_id} (divergence alarm)"))
            .collect();
        if let FirstLimit::Known(covering, object_id) = &*self.first_limit.borrow() {
            named.push(if *covering == 0 {
                format!("{object_id} (no checkpoint)")
            } else {
                format!("{object_id} (checkpoint at {covering})")
            });
        }
        let others = self.header.alarm_count + self.header.uncovered_count;
        named.truncate(count);
        let left = others.saturating_sub(named.len() as u64);
        if left > 0 {
            named.push(format!("{left} more"));
        }
        named
    }

    /// Whether a record of `object_id` can be tracked: the object is tracked already, or the
    /// state has room for it within its bounds. The error says why not.
    pub fn admit_record(
        &self,
        store: &dyn DurableStore,
        space: KeySpace,
        object_id: &ObjectId,
    ) -> Result<Result<(), String>, StoreError> {
        let added = uncovered_snapshot_bytes(object_id);
        if self.header.tracking_bytes + added <= self.bounds.tracking_bytes_max
            || self.uncovered(store, space, object_id)?.is_some()
        {
            return Ok(Ok(()));
        }
        Ok(Err(format!(
            "the region tracks {} objects with records above their checkpoint and {} \
             released ones, which take {} bytes: a record of another object would pass the \
             maximum of {} (tracking_bytes_max, a quarter of the region log quota); records \
             of objects tracked already are still taken, and checkpoints of uncovered objects \
             make room",
            self.header.uncovered_count,
            self.header.released_count,
            self.header.tracking_bytes,
            self.bounds.tracking_bytes_max,
        )))
    }

    /// The highest position the log may be truncated through now, given the applied position
    /// `last_position`; none while an alarm stands.
    pub fn truncation_limit(
        &self,
        store: &dyn DurableStore,
        space: KeySpace,
        last_position: u64,
    ) -> Result<Option<u64>, StoreError> {
        if self.header.alarm_count > 0 {
            return Ok(None);
        }
        let mut limit = last_position;
        if let Some((covering, _)) = self.first_limit(store, space)? {
            limit = limit.min(covering);
        }
        if let Some(untracked_from) = self.untracked_from() {
            limit = limit.min(untracked_from - 1);
        }
        Ok(Some(limit))
    }

    /// The newest checkpoint of `object_id` as a caller starts from it.
    pub fn fetch(
        &self,
        store: &dyn DurableStore,
        space: KeySpace,
        object_id: &ObjectId,
    ) -> Result<CheckpointFetch, StoreError> {
        let checkpoint = match self.object(store, space, object_id)? {
            None => None,
            Some(object) => {
                let key = object_key(STATE_KEY_PREFIX, object_id);
                let state = self.get(store, space, &key)?.ok_or_else(|| {
                    corrupt(
                        space,
                        &key,
                        "the state of a kept checkpoint is missing".to_owned(),
                    )
                })?;
                Some(FetchedCheckpoint {
                    position: object.newest.position.max(self.header.truncated_through),
                    uploaded_position: object.newest.position,
                    state,
                    state_hash: object.newest.state_hash,
                })
            }
        };
        Ok(CheckpointFetch {
            checkpoint,
            truncated_through: self.header.truncated_through,
            released_through: self.released_through(store, space, object_id)?.unwrap_or(0),
        })
    }

    // Writes: into the batch, and kept until it is written.

    fn put(&mut self, space: KeySpace, batch: &mut WriteBatch, key: Vec<u8>, value: Vec<u8>) {
        batch.put(space, key.clone(), value.clone());
        self.pending.insert(key, Some(value));
    }

    fn delete(&mut self, space: KeySpace, batch: &mut WriteBatch, key: Vec<u8>) {
        batch.delete(space, key.clone());
        self.pending.insert(key, None);
    }

    fn write_header(&mut self, space: KeySpace, batch: &mut WriteBatch) {
        let header = self.header.encode();
        self.put(space, batch, TRUNCATION_KEY.to_vec(), header);
    }

    fn write_object(
        &mut self,
        space: KeySpace,
        batch: &mut WriteBatch,
        object_id: &ObjectId,
        object: &ObjectCheckpoints,
    ) {
        self.put(
            space,
            batch,
            object_key(CHECKPOINT_KEY_PREFIX, object_id),
            encode_meta(object),
        );
    }

    fn add_limit(
        &mut self,
        space: KeySpace,
        batch: &mut WriteBatch,
        covering: u64,
        object_id: &ObjectId,
    ) {
        self.put(space, batch, limit_key(covering, object_id), Vec::new());
        let mut first = self.first_limit.borrow_mut();
        let lower = match &*first {
            FirstLimit::None => true,
            FirstLimit::Known(position, known) => (covering, object_id) < (*position, known),
            FirstLimit::Unknown => false,
        };
        if lower {
            *first = FirstLimit::Known(covering, object_id.clone());
        }
    }

    fn remove_limit(
        &mut self,
        space: KeySpace,
        batch: &mut WriteBatch,
        covering: u64,
        object_id: &ObjectId,
    ) {
        self.delete(space, batch, limit_key(covering, object_id));
        let mut first = self.first_limit.borrow_mut();
        if let FirstLimit::Known(position, known) = &*first
            && *position == covering
            && known == object_id
        {
            *first = FirstLimit::Unknown;
        }
    }

    fn write_uncovered(
        &mut self,
        space: KeySpace,
        batch: &mut WriteBatch,
        object_id: &ObjectId,
        uncovered: Uncovered,
    ) {
        self.put(
            space,
            batch,
            object_key(UNCOVERED_KEY_PREFIX, object_id),
            encode_uncovered(uncovered),
        );
    }

    fn note_alarm(&mut self, object_id: &ObjectId, alarm: (u64, u64, u64)) {
        self.newest_alarm = Some(DivergenceAlarm {
            object_id: object_id.clone(),
            position: alarm.0,
            first_client_id: alarm.1,
            second_client_id: alarm.2,
        });
        self.list_alarm(object_id, alarm);
    }

    /// Lists an alarm if it is among the lowest object ids.
    fn list_alarm(&mut self, object_id: &ObjectId, alarm: (u64, u64, u64)) {
        self.alarms.insert(object_id.clone(), alarm);
        if self.alarms.len() > ALARMS_LISTED_MAX {
            self.alarms.pop_last();
        }
    }

    /// The batch the writes went into is in the store now (see the module documentation).
    pub(crate) fn batch_written(&mut self) {
        // Writes a migration still owes are not in that batch: they stay readable until the
        // batch that takes them is written.
        if self.migration.is_empty() {
            self.pending.clear();
        }
    }

    /// Writes a migration from an older layout still owes into `batch`, once.
    pub(crate) fn take_migration(&mut self, space: KeySpace, batch: &mut WriteBatch) {
        for (key, value) in std::mem::take(&mut self.migration) {
            match value {
                Some(value) => batch.put(space, key, value),
                None => batch.delete(space, key),
            }
        }
    }

    // Applying.

    /// Clears `object_id`'s divergence alarm, writing what changed into `batch`: an operator
    /// says the divergence is resolved (the method fixed and every copy restarted), so the
    /// object no longer holds truncation back for it. Its newest checkpoint stays; the next
    /// uploads are compared again as usual, so a divergence that persists raises a new alarm.
    pub(crate) fn apply_alarm_clear(
        &mut self,
        object_id: &ObjectId,
        store: &dyn DurableStore,
        space: KeySpace,
        batch: &mut WriteBatch,
    ) -> Result<CheckpointOutcome, StoreError> {
        let Some(mut object) = self.object(store, space, object_id)? else {
            return Ok(CheckpointOutcome::NoAlarm);
        };
        if object.alarm.take().is_none() {
            return Ok(CheckpointOutcome::NoAlarm);
        }
        self.write_object(space, batch, object_id, &object);
        self.delete(space, batch, object_key(ALARM_KEY_PREFIX, object_id));
        self.header.alarm_count -= 1;
        self.write_header(space, batch);
        if self
            .newest_alarm
            .as_ref()
            .is_some_and(|alarm| alarm.object_id == *object_id)
        {
            self.newest_alarm = None;
        }
        // The listed alarms are the lowest object ids: list again from the store (its pending
        // writes included), so that one beyond the list takes the cleared one's place.
        self.alarms.clear();
        let alarmed = self.scan(
            store,
            space,
            ALARM_KEY_PREFIX,
            ALARM_KEYS_END,
            ALARMS_LISTED_MAX,
        )?;
        for (key, _) in alarmed {
            let Some(listed) = object_from_key(ALARM_KEY_PREFIX, &key) else {
                return Err(corrupt(space, &key, "not an alarm key".to_owned()));
            };
            let alarm = self
                .object(store, space, &listed)?
                .and_then(|object| object.alarm)
                .ok_or_else(|| corrupt(space, &key, "an alarmed object has no alarm".to_owned()))?;
            self.list_alarm(&listed, alarm);
        }
        Ok(CheckpointOutcome::AlarmCleared)
    }

    /// Applies an upload when the log's last position is `last_position`, writing what
    /// changed into `batch`.
    pub(crate) fn apply_upload(
        &mut self,
        upload: CheckpointUpload,
        last_position: u64,
        store: &dyn DurableStore,
        space: KeySpace,
        batch: &mut WriteBatch,
    ) -> Result<Result<CheckpointOutcome, CheckpointRefusal>, StoreError> {
        let CheckpointUpload {
            object_id,
            position,
            state,
            state_hash,
            client_id,
        } = upload;
        let client_id = client_id.get();
        if position == 0 || position > last_position {
            return Ok(Err(CheckpointRefusal::Invalid(format!(
                "checkpoint.position {position} is outside 1..={last_position} (the applied \
                 position)"
            ))));
        }
        if state.len() > CHECKPOINT_STATE_BYTES_MAX {
            return Ok(Err(CheckpointRefusal::Invalid(format!(
                "checkpoint.state holds {} bytes, more than the maximum of \
                 {CHECKPOINT_STATE_BYTES_MAX}",
                state.len()
            ))));
        }
        let kept = self.object(store, space, &object_id)?;
        // An adopted default state (no checkpoint anywhere, see
        // `crate::global::adoption::serve_checkpoint_read`) is kept as an empty state: a
        // client's encoding of the same state at the same position replaces it rather than
        // disagreeing with it.
        let replaces = kept.as_ref().is_none_or(|object| {
            position > object.newest.position
                || (position == object.newest.position && object.newest.is_adopted_default())
        });
        if replaces {
            let newest = StoredCheckpoint {
                position,
                state_bytes: state.len() as u64,
                state_hash,
                reporting_clients: vec![client_id],
            };
            return Ok(self
                .store_newest(store, space, batch, &object_id, kept, newest, state)?
                .map(|()| CheckpointOutcome::Stored));
        }
        let mut object = kept.expect("a checkpoint that is not replaced is kept");
        if position < object.newest.position {
            return Ok(Ok(CheckpointOutcome::Superseded));
        }
        if state_hash != object.newest.state_hash {
            let first_client_id = object.newest.reporting_clients[0];
            let alarm = (position, first_client_id, client_id);
            if object.alarm.is_none() {
                self.header.alarm_count += 1;
                self.put(
                    space,
                    batch,
                    object_key(ALARM_KEY_PREFIX, &object_id),
                    Vec::new(),
                );
            }
            object.alarm = Some(alarm);
            self.header.alarms_raised += 1;
            self.note_alarm(&object_id, alarm);
            self.write_object(space, batch, &object_id, &object);
            self.write_header(space, batch);
            return Ok(Ok(CheckpointOutcome::HashMismatch));
        }
        if object.newest.reporting_clients.contains(&client_id) {
            return Ok(Ok(CheckpointOutcome::Stored));
        }
        if object.newest.reporting_clients.len() < REPORTING_CLIENTS_MAX {
            object.newest.reporting_clients.push(client_id);
        }
        object.agreed_position = object.agreed_position.max(position);
        self.write_object(space, batch, &object_id, &object);
        Ok(Ok(CheckpointOutcome::Agreed))
    }

    /// Keeps `newest` (with `state`) as `object_id`'s newest checkpoint in place of `kept`,
    /// lifts a release mark it reaches and covers the object's records up to it; refused at
    /// the checkpoint bound when it adds bytes.
    #[allow(clippy::too_many_arguments)]
    fn store_newest(
        &mut self,
        store: &dyn DurableStore,
        space: KeySpace,
        batch: &mut WriteBatch,
        object_id: &ObjectId,
        kept: Option<ObjectCheckpoints>,
        newest: StoredCheckpoint,
        state: Vec<u8>,
    ) -> Result<Result<(), CheckpointRefusal>, StoreError> {
        let position = newest.position;
        let object = ObjectCheckpoints {
            newest,
            agreed_position: kept.as_ref().map_or(0, |kept| kept.agreed_position),
            alarm: kept.as_ref().and_then(|kept| kept.alarm),
        };
        let kept_bytes = kept.as_ref().map_or(0, |kept| {
            object_snapshot_bytes(object_id, kept.newest.state_bytes)
        });
        let new_bytes = object_snapshot_bytes(object_id, state.len() as u64);
        let bytes_after = self.header.checkpoint_bytes - kept_bytes + new_bytes;
        if new_bytes > kept_bytes && bytes_after > self.bounds.checkpoint_bytes_max {
            return Ok(Err(CheckpointRefusal::ResourceExhausted(format!(
                "the checkpoint of {object_id} ({} bytes of state) would bring what the \
                 region's checkpoints take to {bytes_after} bytes, more than the maximum of \
                 {} (checkpoint_bytes_max, the region log quota); the region keeps {} \
                 checkpoints with {} bytes of state",
                state.len(),
                self.bounds.checkpoint_bytes_max,
                self.header.object_count,
                self.header.states_size_bytes
            ))));
        }
        self.header.checkpoint_bytes = bytes_after;
        self.header.states_size_bytes = self.header.states_size_bytes
            - kept.as_ref().map_or(0, |kept| kept.newest.state_bytes)
            + state.len() as u64;
        if kept.is_none() {
            self.header.object_count += 1;
        }
        self.write_object(space, batch, object_id, &object);
        self.put(space, batch, object_key(STATE_KEY_PREFIX, object_id), state);
        // A checkpoint at or above the release point holds every record released: the
        // object can be rebuilt again (from an instance that followed it all along, or from
        // another region's checkpoint of a global object).
        let digest = object_digest(object_id);
        if self
            .released(store, space, &digest)?
            .is_some_and(|released| released <= position)
        {
            self.delete(space, batch, released_key(&digest));
            self.header.released_count -= 1;
            self.header.tracking_bytes -= RELEASED_SNAPSHOT_BYTES;
        }
        // One client's checkpoint covers the object's records for truncation: an object
        // with a single instance must not hold the log forever. Agreement of a second
        // client at the same position is what detects divergence (see the module
        // documentation).
        self.cover(store, space, batch, object_id, position)?;
        self.write_header(space, batch);
        Ok(Ok(()))
    }

    /// Applies a global object's checkpoint made in another region, when the region's log
    /// stands at `point` with its last position `last_position` (see
    /// [`crate::global::adoption`]): kept as the object's newest checkpoint at `last_position`
    /// when the object is released here and `point` lies in the stretch the checkpoint is
    /// valid for. Its reporting client is [`ADOPTED_CLIENT_ID`].
    pub(crate) fn apply_adoption(
        &mut self,
        adopted: AdoptedCheckpoint,
        point: GlobalPoint,
        last_position: u64,
        store: &dyn DurableStore,
        space: KeySpace,
        batch: &mut WriteBatch,
    ) -> Result<Result<AdoptionOutcome, CheckpointRefusal>, StoreError> {
        let AdoptedCheckpoint {
            object_id,
            state,
            state_hash,
            valid_from,
            valid_through,
        } = adopted;
        let kept = self.object(store, space, &object_id)?;
        // Missing records: released here, or in epochs the region skipped after the newest
        // checkpoint kept.
        let skipped = self.header.global_skipped_through;
        let stale = skipped > 0
            && kept
                .as_ref()
                .is_none_or(|kept| kept.newest.position < skipped);
        if !stale
            && self
                .released(store, space, &object_digest(&object_id))?
                .is_none()
        {
            return Ok(Ok(AdoptionOutcome::NotReleased));
        }
        if kept
            .as_ref()
            .is_some_and(|kept| kept.newest.position >= last_position)
        {
            return Ok(Ok(AdoptionOutcome::NotReleased));
        }
        if point < valid_from {
            return Ok(Ok(AdoptionOutcome::Behind));
        }
        if point > valid_through {
            return Ok(Ok(AdoptionOutcome::Ahead));
        }
        // Every record of the object in this log up to `last_position` is a global record at
        // or before `point`, and the state holds exactly those: it is the object's state at
        // `last_position`.
        let newest = StoredCheckpoint {
            position: last_position,
            state_bytes: state.len() as u64,
            state_hash,
            reporting_clients: vec![ADOPTED_CLIENT_ID],
        };
        Ok(self
            .store_newest(store, space, batch, &object_id, kept, newest, state)?
            .map(|()| AdoptionOutcome::Adopted {
                position: last_position,
            }))
    }

    /// Notes a record of `object_id` appended at `position`.
    pub(crate) fn record_appended(
        &mut self,
        store: &dyn DurableStore,
        space: KeySpace,
        batch: &mut WriteBatch,
        object_id: &ObjectId,
        position: u64,
    ) -> Result<(), StoreError> {
        if let Some(mut uncovered) = self.uncovered(store, space, object_id)? {
            uncovered.last_record_position = position;
            self.write_uncovered(space, batch, object_id, uncovered);
            return Ok(());
        }
        let added = uncovered_snapshot_bytes(object_id);
        if self.header.tracking_bytes + added > self.bounds.tracking_bytes_max {
            // Only a sequenced global record gets here (a regional one was refused in
            // apply): every record from here on is kept.
            if self.header.untracked_from == 0 {
                self.header.untracked_from = position;
                self.write_header(space, batch);
            }
            return Ok(());
        }
        // The object's records at or below the truncation point are covered by its
        // checkpoint or released: what holds truncation back is the higher of the two.
        let covering_position = self
            .object(store, space, object_id)?
            .map_or(0, |object| object.newest.position)
            .max(self.header.truncated_through);
        debug_assert!(
            covering_position < position,
            "checkpoints lie below new records"
        );
        let uncovered = Uncovered {
            last_record_position: position,
            covering_position,
        };
        self.write_uncovered(space, batch, object_id, uncovered);
        self.add_limit(space, batch, covering_position, object_id);
        self.header.uncovered_count += 1;
        self.header.tracking_bytes += added;
        self.write_header(space, batch);
        Ok(())
    }

    /// Releases the records of every object without a checkpoint covering them at or below
    /// `target`, lowest first, so that truncation may pass them: an object whose newest record
    /// is at or below `target` stops being tracked, the others are held back from `target` on;
    /// each is remembered as released through the last position passed. Stops early, at the
    /// covering position of the first object it cannot remember (the state is at its bound).
    /// Returns how many objects it released.
    pub(crate) fn release_through(
        &mut self,
        store: &dyn DurableStore,
        space: KeySpace,
        batch: &mut WriteBatch,
        target: u64,
    ) -> Result<usize, StoreError> {
        let mut released_now = 0;
        while let Some((covering, object_id)) = self.first_limit(store, space)?
            && covering < target
        {
            let digest = object_digest(&object_id);
            let kept = self.released(store, space, &digest)?;
            let uncovered = self.uncovered(store, space, &object_id)?.ok_or_else(|| {
                corrupt(
                    space,
                    &object_key(UNCOVERED_KEY_PREFIX, &object_id),
                    "an object in the limit index is not uncovered".to_owned(),
                )
            })?;
            let gone = uncovered.last_record_position <= target;
            // Releasing an object that stops being tracked frees its uncovered entry; one
            // remembered already costs nothing more.
            let added = if kept.is_some() {
                0
            } else {
                RELEASED_SNAPSHOT_BYTES
            };
            let freed = if gone {
                uncovered_snapshot_bytes(&object_id)
            } else {
                0
            };
            if self.header.tracking_bytes + added > self.bounds.tracking_bytes_max + freed {
                break;
            }
            self.remove_limit(space, batch, covering, &object_id);
            let released_to = uncovered.last_record_position.min(target);
            if gone {
                self.delete(space, batch, object_key(UNCOVERED_KEY_PREFIX, &object_id));
                self.header.uncovered_count -= 1;
            } else {
                let held = Uncovered {
                    last_record_position: uncovered.last_record_position,
                    covering_position: target,
                };
                self.write_uncovered(space, batch, &object_id, held);
                self.add_limit(space, batch, target, &object_id);
            }
            if kept.is_none() {
                self.header.released_count += 1;
            }
            self.header.tracking_bytes = self.header.tracking_bytes + added - freed;
            let released = kept.unwrap_or(0).max(released_to);
            self.put(
                space,
                batch,
                released_key(&digest),
                released.to_be_bytes().to_vec(),
            );
            self.header.releases += 1;
            released_now += 1;
        }
        if released_now > 0 {
            self.write_header(space, batch);
        }
        Ok(released_now)
    }

    /// Raises the truncation point as far as the rules allow; returns the new point when it
    /// moved.
    pub(crate) fn advance_truncation(
        &mut self,
        store: &dyn DurableStore,
        space: KeySpace,
        batch: &mut WriteBatch,
        last_position: u64,
    ) -> Result<Option<u64>, StoreError> {
        let Some(limit) = self.truncation_limit(store, space, last_position)? else {
            return Ok(None);
        };
        if limit <= self.header.truncated_through {
            return Ok(None);
        }
        self.header.truncated_through = limit;
        self.write_header(space, batch);
        Ok(Some(limit))
    }

    /// The object's newest checkpoint rose to `covering_position`: it stops blocking when
    /// that covers its newest record.
    fn cover(
        &mut self,
        store: &dyn DurableStore,
        space: KeySpace,
        batch: &mut WriteBatch,
        object_id: &ObjectId,
        covering_position: u64,
    ) -> Result<(), StoreError> {
        let Some(uncovered) = self.uncovered(store, space, object_id)? else {
            return Ok(());
        };
        let covering_position = covering_position.max(uncovered.covering_position);
        self.remove_limit(space, batch, uncovered.covering_position, object_id);
        if uncovered.last_record_position <= covering_position {
            self.delete(space, batch, object_key(UNCOVERED_KEY_PREFIX, object_id));
            self.header.uncovered_count -= 1;
            self.header.tracking_bytes -= uncovered_snapshot_bytes(object_id);
        } else {
            let uncovered = Uncovered {
                last_record_position: uncovered.last_record_position,
                covering_position,
            };
            self.write_uncovered(space, batch, object_id, uncovered);
            self.add_limit(space, batch, covering_position, object_id);
        }
        Ok(())
    }

    // Start and snapshots.

    /// Reads the counters and the listed alarms back from the store; `next_position` bounds
    /// every position. A store of an older layout is read whole and migrated (see the module
    /// documentation).
    pub(crate) fn recover(
        space: KeySpace,
        store: &dyn DurableStore,
        next_position: u64,
        bounds: CheckpointBounds,
    ) -> Result<CheckpointState, StoreError> {
        let mut state = CheckpointState {
            first_limit: RefCell::new(FirstLimit::Unknown),
            ..CheckpointState::new(bounds)
        };
        let Some(header) = store.get(space, TRUNCATION_KEY)? else {
            state.first_limit = RefCell::new(FirstLimit::None);
            return Ok(state);
        };
        let (header, current) = Header::decode(&header, next_position)
            .map_err(|reason| corrupt(space, TRUNCATION_KEY, reason))?;
        state.header = header;
        if !current {
            state.migrate(space, store, next_position)?;
        }
        let alarmed = state.scan(
            store,
            space,
            ALARM_KEY_PREFIX,
            ALARM_KEYS_END,
            ALARMS_LISTED_MAX,
        )?;
        for (key, _) in alarmed {
            let object_id = object_from_key(ALARM_KEY_PREFIX, &key)
                .ok_or_else(|| corrupt(space, &key, "not an alarm key".to_owned()))?;
            let alarm = state
                .object(store, space, &object_id)?
                .and_then(|object| object.alarm)
                .ok_or_else(|| corrupt(space, &key, "an alarmed object has no alarm".to_owned()))?;
            state.list_alarm(&object_id, alarm);
        }
        Ok(state)
    }

    /// Rebuilds the counters and the indexes of a store of an older layout, as writes owed
    /// to the next batch (and seen by reads until then).
    fn migrate(
        &mut self,
        space: KeySpace,
        store: &dyn DurableStore,
        next_position: u64,
    ) -> Result<(), StoreError> {
        let mut header = Header {
            truncated_through: self.header.truncated_through,
            alarms_raised: self.header.alarms_raised,
            untracked_from: self.header.untracked_from,
            releases: self.header.releases,
            ..Header::default()
        };
        let mut writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let mut checkpoints = BTreeMap::new();
        scan_range(
            store,
            space,
            CHECKPOINT_KEY_PREFIX,
            CHECKPOINT_KEYS_END,
            |key, value| {
                let object_id = object_from_key(CHECKPOINT_KEY_PREFIX, key)
                    .ok_or_else(|| "not a checkpoint key".to_owned())?;
                let (object, state) = decode_legacy_object(value, next_position)?;
                header.object_count += 1;
                header.states_size_bytes += state.len() as u64;
                let meta = encode_meta(&object);
                header.checkpoint_bytes += object_snapshot_bytes(&object_id, state.len() as u64);
                if object.alarm.is_some() {
                    header.alarm_count += 1;
                    writes.push((object_key(ALARM_KEY_PREFIX, &object_id), Some(Vec::new())));
                }
                checkpoints.insert(object_id.clone(), object.newest.position);
                writes.push((object_key(CHECKPOINT_KEY_PREFIX, &object_id), Some(meta)));
                writes.push((object_key(STATE_KEY_PREFIX, &object_id), Some(state)));
                Ok(())
            },
        )?;
        scan_range(
            store,
            space,
            UNCOVERED_KEY_PREFIX,
            UNCOVERED_KEYS_END,
            |key, value| {
                let object_id = object_from_key(UNCOVERED_KEY_PREFIX, key)
                    .ok_or_else(|| "not an uncovered object key".to_owned())?;
                let mut reader = Reader::new(value);
                let last_record_position = reader.u64("uncovered newest record position")?;
                // Written by the oldest releases: the covering position is the checkpoint's.
                let covering_position = if value.len() == 8 {
                    checkpoints.get(&object_id).copied().unwrap_or(0)
                } else {
                    reader.u64("uncovered covering position")?
                };
                reader.finish()?;
                let uncovered = Uncovered {
                    last_record_position,
                    covering_position,
                };
                header.uncovered_count += 1;
                header.tracking_bytes += uncovered_snapshot_bytes(&object_id);
                writes.push((key.to_vec(), Some(encode_uncovered(uncovered))));
                writes.push((limit_key(covering_position, &object_id), Some(Vec::new())));
                Ok(())
            },
        )?;
        scan_range(
            store,
            space,
            RELEASED_KEY_PREFIX,
            RELEASED_KEYS_END,
            |_, value| {
                decode_position(value, "a released position")?;
                header.released_count += 1;
                header.tracking_bytes += RELEASED_SNAPSHOT_BYTES;
                Ok(())
            },
        )?;
        self.header = header;
        writes.push((TRUNCATION_KEY.to_vec(), Some(header.encode())));
        for (key, value) in &writes {
            self.pending.insert(key.clone(), value.clone());
        }
        self.migration = writes;
        Ok(())
    }

    /// The state in a snapshot: the counters, where this node keeps the state (`space`), and
    /// the listed alarms. Everything per object stays in the store: a member that takes the
    /// snapshot fetches it in pieces from a view the group pins with the snapshot (see
    /// [`transfer`]).
    pub(crate) fn encode_snapshot(&self, space: CheckpointSpace, out: &mut Vec<u8>) {
        put_bytes(out, &self.header.encode());
        out.push(space.tag());
        out.extend_from_slice(&(self.alarms.len() as u32).to_be_bytes());
        for (object_id, (position, first, second)) in &self.alarms {
            put_bytes(out, object_id.as_str().as_bytes());
            out.extend_from_slice(&position.to_be_bytes());
            out.extend_from_slice(&first.to_be_bytes());
            out.extend_from_slice(&second.to_be_bytes());
        }
    }

    /// Whether the state holds anything per object, which a member taking a snapshot must
    /// fetch.
    pub(crate) fn has_items(&self) -> bool {
        self.header.has_items()
    }

    /// Reads the state from a snapshot, checked whole; positions must lie below
    /// `next_position`.
    pub(crate) fn decode_snapshot(
        reader: &mut Reader<'_>,
        next_position: u64,
    ) -> Result<SnapshotCheckpoints, String> {
        let header_bytes = reader.bytes(HEADER_BYTES_MAX, "truncation state")?;
        let (header, current) = Header::decode(header_bytes, next_position)?;
        if !current {
            return Err("the truncation state of a snapshot is of an older format".to_owned());
        }
        let sender_space = CheckpointSpace::from_tag(reader.u8("checkpoint space")?)?;
        let listed = reader.count(ALARMS_LISTED_MAX, 4 + 1 + 24, "listed alarm count")?;
        let expected = header.alarm_count.min(ALARMS_LISTED_MAX as u64);
        if listed as u64 != expected {
            return Err(format!(
                "{listed} alarms listed for {} objects with alarms (the lowest {expected} are)",
                header.alarm_count
            ));
        }
        let mut alarms = BTreeMap::new();
        let mut last_id: Option<ObjectId> = None;
        for _ in 0..listed {
            let object_id = read_object_id(reader, "alarmed object id")?;
            if last_id.as_ref().is_some_and(|last| *last >= object_id) {
                return Err(format!("the alarm of {object_id} is out of order"));
            }
            last_id = Some(object_id.clone());
            let alarm = (
                reader.u64("alarm position")?,
                reader.u64("alarm first client")?,
                reader.u64("alarm second client")?,
            );
            if alarm.0 >= next_position {
                return Err(format!(
                    "the alarm of {object_id} at position {}, not below the next position \
                     {next_position}",
                    alarm.0
                ));
            }
            alarms.insert(object_id, alarm);
        }
        Ok(SnapshotCheckpoints {
            header,
            sender_space,
            alarms,
        })
    }

    /// Replaces the whole state with a snapshot's, writing into `batch`; `live` is where the
    /// node keeps its state now and `staged` where it fetched the snapshot's (required when
    /// the snapshot has anything per object). Returns where the state lives from now on.
    pub(crate) fn restore(
        &mut self,
        decoded: SnapshotCheckpoints,
        live: CheckpointSpace,
        staged: Option<CheckpointSpace>,
        batch: &mut WriteBatch,
    ) -> CheckpointSpace {
        let target = match staged {
            Some(staged) if decoded.header.has_items() => staged,
            _ if live == CheckpointSpace::Legacy => CheckpointSpace::A,
            _ => live,
        };
        // The region state key space, where older releases kept the state, is cleared whole
        // by the region log's restore; the two spaces of this module are cleared here, but
        // for the one that holds the fetched state.
        for space in [CheckpointSpace::A, CheckpointSpace::B] {
            if space != target || !decoded.header.has_items() {
                batch.delete_range(space.key_space(), Vec::new(), KEYS_END.to_vec());
            }
        }
        batch.put(
            target.key_space(),
            TRUNCATION_KEY.to_vec(),
            decoded.header.encode(),
        );
        *self = CheckpointState {
            header: decoded.header,
            alarms: decoded.alarms,
            first_limit: RefCell::new(FirstLimit::Unknown),
            ..CheckpointState::new(self.bounds)
        };
        target
    }
}

fn encode_meta(object: &ObjectCheckpoints) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(OBJECT_META_BYTES_MAX);
    bytes.push(OBJECT_FORMAT);
    bytes.extend_from_slice(&object.newest.position.to_be_bytes());
    bytes.extend_from_slice(&object.newest.state_hash);
    let count = object.newest.reporting_clients.len() as u32;
    bytes.extend_from_slice(&count.to_be_bytes());
    for client_id in &object.newest.reporting_clients {
        bytes.extend_from_slice(&client_id.to_be_bytes());
    }
    bytes.extend_from_slice(&object.agreed_position.to_be_bytes());
    match object.alarm {
        None => bytes.push(0),
        Some((position, first, second)) => {
            bytes.push(1);
            bytes.extend_from_slice(&position.to_be_bytes());
            bytes.extend_from_slice(&first.to_be_bytes());
            bytes.extend_from_slice(&second.to_be_bytes());
        }
    }
    bytes.extend_from_slice(&object.newest.state_bytes.to_be_bytes());
    bytes
}

/// The fields both formats share: position, hash, reporters, and the state inline (format 1).
type CommonFields = (u64, [u8; STATE_HASH_BYTES], Vec<u64>, Option<Vec<u8>>);

/// The fields both formats share, up to the state (format 1) or before the state length.
fn decode_common(reader: &mut Reader<'_>, legacy: bool) -> Result<CommonFields, String> {
    let position = reader.u64("checkpoint position")?;
    let state_hash = read_hash(reader, "checkpoint state hash")?;
    let count = reader.count(REPORTING_CLIENTS_MAX, 8, "reporting client count")?;
    if count == 0 {
        return Err("a checkpoint lists no reporting client".to_owned());
    }
    let mut reporting_clients = Vec::with_capacity(count);
    for _ in 0..count {
        reporting_clients.push(reader.u64("reporting client")?);
    }
    let state = if legacy {
        Some(
            reader
                .bytes(CHECKPOINT_STATE_BYTES_MAX, "checkpoint state")?
                .to_vec(),
        )
    } else {
        None
    };
    Ok((position, state_hash, reporting_clients, state))
}

fn decode_alarm(reader: &mut Reader<'_>) -> Result<Option<(u64, u64, u64)>, String> {
    Ok(if reader.bool("alarm flag")? {
        Some((
            reader.u64("alarm position")?,
            reader.u64("alarm client")?,
            reader.u64("alarm client")?,
        ))
    } else {
        None
    })
}

fn decode_meta(reader: &mut Reader<'_>) -> Result<ObjectCheckpoints, String> {
    let format = reader.u8("checkpoint format")?;
    if format != OBJECT_FORMAT {
        return Err(format!(
            "checkpoint format {format} is unknown; this release reads format {OBJECT_FORMAT}"
        ));
    }
    let (position, state_hash, reporting_clients, _) = decode_common(reader, false)?;
    let agreed_position = reader.u64("agreed position")?;
    let alarm = decode_alarm(reader)?;
    let state_bytes = reader.u64("state length")?;
    if state_bytes > CHECKPOINT_STATE_BYTES_MAX as u64 {
        return Err(format!(
            "a state of {state_bytes} bytes, more than the maximum of \
             {CHECKPOINT_STATE_BYTES_MAX}"
        ));
    }
    Ok(ObjectCheckpoints {
        newest: StoredCheckpoint {
            position,
            state_bytes,
            state_hash,
            reporting_clients,
        },
        agreed_position,
        alarm,
    })
}

fn check_object(object: &ObjectCheckpoints, next_position: u64) -> Result<(), String> {
    let position = object.newest.position;
    if position == 0 || position >= next_position || object.agreed_position > position {
        return Err(format!(
            "positions out of order: checkpoint at {position}, agreed at {}, next position \
             {next_position}",
            object.agreed_position
        ));
    }
    Ok(())
}

/// An object of an older release: its state inline.
fn decode_legacy_object(
    value: &[u8],
    next_position: u64,
) -> Result<(ObjectCheckpoints, Vec<u8>), String> {
    if value.len() > LEGACY_OBJECT_BYTES_MAX {
        return Err(format!("a checkpoint of {} bytes", value.len()));
    }
    let mut reader = Reader::new(value);
    let format = reader.u8("checkpoint format")?;
    if format != 1 {
        return Err(format!(
            "checkpoint format {format} in a store of an older release, which wrote format 1"
        ));
    }
    let (position, state_hash, reporting_clients, state) = decode_common(&mut reader, true)?;
    let state = state.expect("format 1 holds the state");
    let agreed_position = reader.u64("agreed position")?;
    let alarm = decode_alarm(&mut reader)?;
    reader.finish()?;
    let object = ObjectCheckpoints {
        newest: StoredCheckpoint {
            position,
            state_bytes: state.len() as u64,
            state_hash,
            reporting_clients,
        },
        agreed_position,
        alarm,
    };
    check_object(&object, next_position)?;
    Ok((object, state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsss_raft_group::MemoryStore;

    const SPACE: KeySpace = KeySpace::new("region_state");

    /// Bounds small enough for a test to reach.
    const CHECKPOINT_BYTES_MAX: u64 = 12 * 1024 * 1024;
    const TRACKING_BYTES_MAX: u64 = 4 * 1024 * 1024;
    const BOUNDS: CheckpointBounds = CheckpointBounds {
        checkpoint_bytes_max: CHECKPOINT_BYTES_MAX,
        tracking_bytes_max: TRACKING_BYTES_MAX,
    };

    #[test]
    fn a_header_whose_byte_counters_count_objects_it_does_not_have_is_refused() {
        let honest = Header {
            object_count: 1,
            states_size_bytes: 10,
            checkpoint_bytes: 80,
            uncovered_count: 2,
            tracking_bytes: 90,
            ..Header::default()
        };
        Header::decode(&honest.encode(), 10).expect("counters that add up");
        for (lie, fragment) in [
            (
                Header {
                    object_count: 0,
                    ..honest
                },
                "no checkpointed object, but 80 checkpoint bytes",
            ),
            (
                Header {
                    states_size_bytes: 81,
                    ..honest
                },
                "81 state bytes, more than the 80 checkpoint bytes",
            ),
            (
                Header {
                    uncovered_count: 0,
                    ..honest
                },
                "no uncovered or released object, but 90 tracking bytes",
            ),
        ] {
            let refused = Header::decode(&lie.encode(), 10).expect_err(fragment);
            assert!(refused.contains(fragment), "{refused}");
        }
    }

    fn upload(object: &str, position: u64, hash: u8, client: u64) -> CheckpointUpload {
        CheckpointUpload {
            object_id: ObjectId::new(object).unwrap(),
            position,
            state: vec![hash; 10],
            state_hash: [hash; STATE_HASH_BYTES],
            client_id: ClientId(client),
        }
    }

    fn id(name: &str) -> ObjectId {
        ObjectId::new(name).unwrap()
    }

    /// A checkpoint state over a store, as the region log drives it: writes go into a batch
    /// that reaches the store at `write`, or after every step when `write_each` is set (so
    /// that each test runs both over pending writes and over the store).
    struct Harness {
        state: CheckpointState,
        store: MemoryStore,
        batch: WriteBatch,
        write_each: bool,
        /// Where the state lives.
        space: KeySpace,
    }

    impl Harness {
        fn new(write_each: bool) -> Self {
            Harness {
                state: CheckpointState::new(BOUNDS),
                store: MemoryStore::new(),
                batch: WriteBatch::new(),
                write_each,
                space: SPACE,
            }
        }

        fn step(&mut self) {
            if self.write_each {
                self.write();
            }
        }

        fn write(&mut self) {
            self.store
                .write(std::mem::take(&mut self.batch), true)
                .unwrap();
            self.state.batch_written();
        }

        fn upload_at(
            &mut self,
            upload: CheckpointUpload,
            last_position: u64,
        ) -> Result<CheckpointOutcome, CheckpointRefusal> {
            let outcome = self
                .state
                .apply_upload(
                    upload,
                    last_position,
                    &self.store,
                    self.space,
                    &mut self.batch,
                )
                .unwrap();
            self.step();
            outcome
        }

        fn upload(
            &mut self,
            upload: CheckpointUpload,
        ) -> Result<CheckpointOutcome, CheckpointRefusal> {
            self.upload_at(upload, 10_000_000)
        }

        fn record(&mut self, object: &ObjectId, position: u64) {
            self.state
                .record_appended(&self.store, self.space, &mut self.batch, object, position)
                .unwrap();
            self.step();
        }

        fn admit(&self, object: &ObjectId) -> Result<(), String> {
            self.state
                .admit_record(&self.store, self.space, object)
                .unwrap()
        }

        fn release(&mut self, target: u64) -> usize {
            let released = self
                .state
                .release_through(&self.store, self.space, &mut self.batch, target)
                .unwrap();
            self.step();
            released
        }

        fn advance(&mut self, last_position: u64) -> Option<u64> {
            let moved = self
                .state
                .advance_truncation(&self.store, self.space, &mut self.batch, last_position)
                .unwrap();
            self.step();
            moved
        }

        fn limit(&self, last_position: u64) -> Option<u64> {
            self.state
                .truncation_limit(&self.store, self.space, last_position)
                .unwrap()
        }

        fn newest(&self, object: &ObjectId) -> Option<StoredCheckpoint> {
            self.state.newest(&self.store, self.space, object).unwrap()
        }

        fn agreed(&self, object: &ObjectId) -> u64 {
            self.state
                .agreed_position(&self.store, self.space, object)
                .unwrap()
        }

        fn uncovered(&self, object: &ObjectId) -> bool {
            self.state
                .is_uncovered(&self.store, self.space, object)
                .unwrap()
        }

        fn released_through(&self, object: &ObjectId) -> Option<u64> {
            self.state
                .released_through(&self.store, self.space, object)
                .unwrap()
        }

        fn clear_alarm(&mut self, object: &ObjectId) -> CheckpointOutcome {
            let outcome = self
                .state
                .apply_alarm_clear(object, &self.store, self.space, &mut self.batch)
                .unwrap();
            self.step();
            outcome
        }

        fn fetch(&self, object: &ObjectId) -> CheckpointFetch {
            self.state.fetch(&self.store, self.space, object).unwrap()
        }

        fn adopt(
            &mut self,
            adopted: AdoptedCheckpoint,
            point: GlobalPoint,
            last_position: u64,
        ) -> Result<AdoptionOutcome, CheckpointRefusal> {
            let outcome = self
                .state
                .apply_adoption(
                    adopted,
                    point,
                    last_position,
                    &self.store,
                    self.space,
                    &mut self.batch,
                )
                .unwrap();
            self.step();
            outcome
        }
    }

    fn point(epoch_number: u64, records: u32) -> GlobalPoint {
        GlobalPoint {
            epoch_number,
            records,
        }
    }

    /// A global object's checkpoint from another region, valid from epoch 5 after 1 record
    /// through epoch 8.
    fn adopted(object: &str, byte: u8) -> AdoptedCheckpoint {
        AdoptedCheckpoint {
            object_id: id(object),
            state: vec![byte; 12],
            state_hash: [byte; STATE_HASH_BYTES],
            valid_from: point(5, 1),
            valid_through: point(8, 0),
        }
    }

    #[test]
    fn an_adopted_checkpoint_is_taken_only_for_a_released_object_inside_its_stretch() {
        use AdoptionOutcome::*;
        both_ways(|harness| {
            let object = id("lobby/main");
            // Nothing released: nothing to adopt, whatever the stretch.
            assert_eq!(
                harness.adopt(adopted("lobby/main", 3), point(6, 0), 40),
                Ok(NotReleased)
            );
            assert_eq!(harness.newest(&object), None);
            harness.record(&object, 10);
            harness.record(&object, 20);
            assert_eq!(harness.release(15), 1);
            assert_eq!(harness.released_through(&object), Some(15));
            assert!(
                harness.uncovered(&object),
                "its record at 20 is still tracked"
            );
            // Outside the stretch, alike on every member: refused, nothing changes.
            assert_eq!(
                harness.adopt(adopted("lobby/main", 3), point(5, 0), 40),
                Ok(Behind)
            );
            assert_eq!(
                harness.adopt(adopted("lobby/main", 3), point(8, 1), 40),
                Ok(Ahead)
            );
            assert_eq!(harness.newest(&object), None);
            assert_eq!(harness.fetch(&object).released_through, 15);
            // Inside it: the checkpoint of the region's last position, the release lifted, the
            // records covered.
            assert_eq!(
                harness.adopt(adopted("lobby/main", 3), point(8, 0), 40),
                Ok(Adopted { position: 40 })
            );
            let newest = harness.newest(&object).expect("adopted");
            assert_eq!(newest.position, 40);
            assert_eq!(newest.reporting_clients, vec![ADOPTED_CLIENT_ID]);
            let fetch = harness.fetch(&object);
            assert_eq!(fetch.released_through, 0);
            assert_eq!(fetch.checkpoint.expect("kept").state, vec![3; 12]);
            assert!(!harness.uncovered(&object));
            assert_eq!(harness.state.released_count(), 0);
            // Adopting again finds nothing released.
            assert_eq!(
                harness.adopt(adopted("lobby/main", 4), point(6, 0), 41),
                Ok(NotReleased)
            );
            // A client of this region that applies the next records agrees or diverges with
            // the adopted state like any other reporter.
            harness.record(&object, 45);
            assert_eq!(
                harness.upload_at(upload("lobby/main", 40, 9, 7), 50),
                Ok(CheckpointOutcome::HashMismatch)
            );
            let alarm = harness.state.newest_alarm().expect("raised").clone();
            assert_eq!(
                (alarm.first_client_id, alarm.second_client_id),
                (ADOPTED_CLIENT_ID, 7)
            );
        });
    }

    #[test]
    fn an_adopted_checkpoint_is_refused_at_the_checkpoint_bound() {
        let mut harness = Harness::new(true);
        let object = id("lobby/main");
        harness.record(&object, 10);
        assert_eq!(harness.release(15), 1);
        let mut first = upload("lobby/other", 5, 1, 7);
        first.state = vec![1; CHECKPOINT_STATE_BYTES_MAX];
        assert_eq!(harness.upload(first), Ok(CheckpointOutcome::Stored));
        let mut large = adopted("lobby/main", 3);
        large.state = vec![3; CHECKPOINT_STATE_BYTES_MAX / 2];
        let refused = harness.adopt(large, point(6, 0), 40).unwrap_err();
        assert!(
            refused.to_string().contains("checkpoint_bytes_max"),
            "{refused}"
        );
        assert_eq!(harness.released_through(&object), Some(10));
    }

    /// Runs `test` with the writes kept pending until the end, and written after each step.
    fn both_ways(test: impl Fn(&mut Harness)) {
        for write_each in [false, true] {
            let mut harness = Harness::new(write_each);
            test(&mut harness);
        }
    }

    /// The rules of the module documentation, one row per case, applied in order to one state.
    #[test]
    fn uploads_follow_the_rules_table() {
        use CheckpointOutcome::*;
        both_ways(|harness| {
            let object = id("lobby/main");
            // (upload, outcome, newest position afterwards, agreed position afterwards)
            let table: [(CheckpointUpload, CheckpointOutcome, u64, u64); 9] = [
                (upload("lobby/main", 10, 1, 7), Stored, 10, 0),
                (upload("lobby/main", 10, 1, 7), Stored, 10, 0),
                (upload("lobby/main", 10, 1, 8), Agreed, 10, 10),
                (upload("lobby/main", 10, 1, 9), Agreed, 10, 10),
                (upload("lobby/main", 9, 1, 9), Superseded, 10, 10),
                (upload("lobby/main", 20, 2, 8), Stored, 20, 10),
                (upload("lobby/main", 20, 3, 9), HashMismatch, 20, 10),
                (upload("lobby/main", 20, 2, 7), Agreed, 20, 20),
                (upload("lobby/main", 15, 5, 7), Superseded, 20, 20),
            ];
            for (row, (upload, outcome, newest, agreed)) in table.into_iter().enumerate() {
                assert_eq!(harness.upload(upload), Ok(outcome), "row {row}");
                assert_eq!(
                    harness.newest(&object).unwrap().position,
                    newest,
                    "row {row}"
                );
                assert_eq!(harness.agreed(&object), agreed, "row {row}");
            }
            let expected = DivergenceAlarm {
                object_id: object.clone(),
                position: 20,
                first_client_id: 8,
                second_client_id: 9,
            };
            let alarms: Vec<DivergenceAlarm> = harness.state.alarms().collect();
            assert_eq!(alarms, vec![expected.clone()]);
            assert_eq!(harness.state.newest_alarm(), Some(&expected));
            assert_eq!(harness.state.alarms_raised(), 1);
            assert_eq!(harness.state.alarm_count(), 1);
            assert_eq!(
                harness.newest(&object).unwrap().reporting_clients,
                vec![8, 7]
            );
            assert_eq!(harness.state.object_count(), 1);
            assert_eq!(harness.state.states_size_bytes(), 10);
            let fetched = harness.fetch(&object).checkpoint.unwrap();
            assert_eq!(fetched.state, vec![2; 10]);
        });
    }

    #[test]
    fn a_cleared_alarm_lets_truncation_move_and_a_lasting_divergence_raises_a_new_one() {
        use CheckpointOutcome::*;
        both_ways(|harness| {
            let (lobby, board) = (id("lobby/main"), id("board/main"));
            harness.record(&lobby, 5);
            harness.record(&board, 6);
            assert_eq!(harness.upload(upload("lobby/main", 10, 1, 7)), Ok(Stored));
            assert_eq!(
                harness.upload(upload("lobby/main", 10, 2, 8)),
                Ok(HashMismatch)
            );
            assert_eq!(harness.upload(upload("board/main", 10, 1, 7)), Ok(Stored));
            assert_eq!(
                harness.upload(upload("board/main", 10, 3, 8)),
                Ok(HashMismatch)
            );
            assert_eq!(harness.state.alarm_count(), 2);
            assert_eq!(
                harness.limit(10),
                None,
                "no truncation while an alarm stands"
            );

            let cleared = harness.clear_alarm(&lobby);
            assert_eq!(cleared, AlarmCleared);
            assert_eq!(harness.state.alarm_count(), 1);
            let listed: Vec<ObjectId> = harness
                .state
                .alarms()
                .map(|alarm| alarm.object_id)
                .collect();
            assert_eq!(listed, vec![board.clone()]);
            assert_eq!(
                harness.limit(10),
                None,
                "the other alarm still holds truncation"
            );
            let again = harness.clear_alarm(&lobby);
            assert_eq!(again, NoAlarm);
            let unknown = harness.clear_alarm(&id("never/seen"));
            assert_eq!(unknown, NoAlarm);
            let cleared = harness.clear_alarm(&board);
            assert_eq!(cleared, AlarmCleared);
            assert_eq!(harness.state.alarm_count(), 0);
            assert_eq!(harness.state.alarms().count(), 0);
            assert_eq!(
                harness.state.alarms_raised(),
                2,
                "the count of alarms ever raised stays"
            );
            assert!(harness.limit(10).is_some(), "truncation may move again");

            // A divergence that lasts raises a new alarm at the next position both report.
            assert_eq!(harness.upload(upload("lobby/main", 20, 1, 7)), Ok(Stored));
            assert_eq!(
                harness.upload(upload("lobby/main", 20, 2, 8)),
                Ok(HashMismatch)
            );
            assert_eq!(harness.state.alarm_count(), 1);
        });
    }

    #[test]
    fn alarm_clear_entries_round_trip_and_damaged_ones_are_errors() {
        let object = id("lobby/main");
        let data = encode_alarm_clear_entry(&object, (12, 99));
        assert_eq!(data[0], ALARM_CLEAR_FORMAT);
        assert_eq!(decode_alarm_clear_entry(&data[1..]), Ok((object, (12, 99))));
        assert!(decode_alarm_clear_entry(&data[1..data.len() - 1]).is_err());
        let mut longer = data[1..].to_vec();
        longer.push(0);
        assert!(decode_alarm_clear_entry(&longer).is_err());
    }

    #[test]
    fn out_of_range_uploads_are_refused_naming_the_field() {
        both_ways(|harness| {
            let error = harness.upload_at(upload("a", 11, 1, 1), 10).unwrap_err();
            assert!(error.to_string().contains("checkpoint.position"), "{error}");
            assert!(harness.upload(upload("a", 0, 1, 1)).is_err());
            let mut too_large = upload("a", 5, 1, 1);
            too_large.state = vec![0; CHECKPOINT_STATE_BYTES_MAX + 1];
            let error = harness.upload(too_large).unwrap_err();
            assert!(error.to_string().contains("checkpoint.state"), "{error}");
            assert_eq!(harness.state.object_count(), 0);
        });
    }

    /// States fill their bound: a checkpoint that would pass it is refused, a smaller state
    /// for a kept object is taken, and that makes room again.
    #[test]
    fn checkpoints_stop_at_their_bound_and_smaller_states_make_room() {
        let mut harness = Harness::new(true);
        let mut large = upload("big/one", 5, 1, 1);
        large.state = vec![0; CHECKPOINT_STATE_BYTES_MAX];
        assert_eq!(harness.upload(large.clone()), Ok(CheckpointOutcome::Stored));
        let mut second = large.clone();
        second.object_id = id("big/two");
        second.state = vec![0; CHECKPOINT_BYTES_MAX as usize - CHECKPOINT_STATE_BYTES_MAX];
        let error = harness.upload(second.clone()).unwrap_err();
        assert!(matches!(error, CheckpointRefusal::ResourceExhausted(_)));
        assert!(
            error.to_string().contains("checkpoint_bytes_max"),
            "{error}"
        );
        assert!(harness.state.checkpoint_bytes() <= CHECKPOINT_BYTES_MAX);
        // A newer, smaller checkpoint of the kept object is taken and frees room.
        let mut smaller = upload("big/one", 6, 2, 1);
        smaller.state = vec![1; 1024];
        assert_eq!(harness.upload(smaller), Ok(CheckpointOutcome::Stored));
        assert_eq!(harness.upload(second), Ok(CheckpointOutcome::Stored));
        assert_eq!(harness.state.object_count(), 2);
        assert!(harness.state.checkpoint_bytes() <= CHECKPOINT_BYTES_MAX);
    }

    #[test]
    fn truncation_waits_for_a_checkpoint_of_every_object_with_records() {
        both_ways(|harness| {
            let (a, b) = (id("a"), id("b"));
            harness.record(&a, 1);
            harness.record(&b, 2);
            harness.record(&a, 3);
            assert_eq!(harness.limit(3), Some(0), "no checkpoint yet");
            harness.upload(upload("a", 2, 1, 1)).unwrap();
            assert!(harness.uncovered(&a), "a has a record above its checkpoint");
            harness.upload(upload("a", 3, 1, 1)).unwrap();
            assert!(
                !harness.uncovered(&a),
                "one client's checkpoint covers a's records, agreed or not"
            );
            assert_eq!(harness.agreed(&a), 0);
            assert_eq!(harness.limit(3), Some(0), "b still lacks one");
            harness.upload(upload("b", 2, 1, 1)).unwrap();
            assert_eq!(harness.limit(3), Some(3));
            // A second client at the same position agrees, or raises the alarm.
            assert_eq!(
                harness.upload(upload("a", 3, 1, 2)),
                Ok(CheckpointOutcome::Agreed)
            );
            assert_eq!(harness.agreed(&a), 3);
            harness.record(&b, 4);
            assert_eq!(harness.limit(4), Some(2), "b's newest record lies above 2");
            assert_eq!(harness.advance(4), Some(2));
            assert_eq!(harness.advance(4), None);
            // A checkpoint below the truncation point is served at it.
            let fetched = harness.fetch(&a).checkpoint.unwrap();
            assert_eq!((fetched.position, fetched.uploaded_position), (3, 3));
            assert_eq!(harness.fetch(&id("c")).truncated_through, 2);
            // An alarm freezes truncation.
            harness.upload(upload("b", 4, 1, 1)).unwrap();
            harness.upload(upload("b", 4, 9, 2)).unwrap();
            assert_eq!(harness.limit(4), None);
            assert!(harness.state.blocking_objects(4)[0].contains("divergence alarm"));
        });
    }

    /// Far more objects than the former bound of 4,096 have records and no checkpoint; the
    /// bound is what they take in bytes. At it, a record of a new object is refused
    /// while tracked ones still are taken, a sequenced record of an untracked object holds
    /// truncation below it, and checkpoints make room.
    #[test]
    fn objects_are_tracked_up_to_their_bound_and_untracked_ones_hold_truncation() {
        let mut harness = Harness::new(false);
        let long_id = |index: u64| id(&format!("{index:0>width$}", width = OBJECT_ID_BYTES_MAX));
        let mut position = 0;
        loop {
            let object = long_id(position);
            if harness.admit(&object).is_err() {
                break;
            }
            position += 1;
            harness.record(&object, position);
            if position % 4_096 == 0 {
                harness.write();
            }
        }
        harness.write();
        let tracked = position;
        assert!(tracked > 4_096 * 3, "{tracked} objects tracked");
        assert_eq!(harness.state.uncovered_count(), tracked);
        assert!(harness.state.tracking_bytes() <= TRACKING_BYTES_MAX);
        let new = long_id(tracked);
        let error = harness.admit(&new).unwrap_err();
        assert!(error.contains("tracking_bytes_max"), "{error}");
        assert!(
            harness.admit(&long_id(0)).is_ok(),
            "a tracked object is still taken"
        );
        // A sequenced global record of the new object cannot be refused: it is kept.
        harness.record(&new, tracked + 1);
        assert_eq!(harness.state.untracked_from(), Some(tracked + 1));
        // Every tracked object gets a checkpoint: truncation stops below the untracked record.
        for index in 0..tracked {
            let object = long_id(index);
            let mut covering = upload("x", index + 1, 1, 1);
            covering.object_id = object;
            covering.state = Vec::new();
            harness.upload(covering).unwrap();
            if index % 4_096 == 0 {
                harness.write();
            }
        }
        harness.write();
        assert_eq!(harness.state.uncovered_count(), 0);
        assert_eq!(harness.limit(tracked + 10), Some(tracked));
    }

    /// Releases stop at the tracking bound before an object they would have to add; a
    /// checkpoint that lifts a mark makes room for one more.
    #[test]
    fn at_the_tracking_bound_releases_stop_before_a_new_object() {
        let mut harness = Harness::new(false);
        let name = |index: u64| id(&format!("o/{index:06}"));
        // Objects with a record each, until the tracking bound refuses the next one.
        let mut count = 0;
        while harness.admit(&name(count)).is_ok() {
            count += 1;
            harness.record(&name(count - 1), count);
            if count % 4_096 == 0 {
                harness.write();
            }
        }
        // A second record of each, above the release target: a release holds each back and
        // remembers it (24 bytes more) rather than freeing its entry.
        for index in 0..count {
            harness.record(&name(index), count + 1 + index);
            if index % 4_096 == 0 {
                harness.write();
            }
        }
        harness.write();
        let room = TRACKING_BYTES_MAX - harness.state.tracking_bytes();
        assert!(room < uncovered_snapshot_bytes(&name(0)), "{room}");
        let fits = (room / RELEASED_SNAPSHOT_BYTES) as usize;
        assert_eq!(harness.release(count), fits);
        assert_eq!(harness.state.released_count(), fits as u64);
        assert!(harness.state.tracking_bytes() <= TRACKING_BYTES_MAX);
        assert_eq!(
            harness.limit(2 * count),
            Some(0),
            "an object the release could not remember holds truncation"
        );
        // A checkpoint of the first object through its newest record covers it (and lifts
        // its mark if it had one): room for at least one more release.
        let lifted = name(0);
        let mut covering = upload("x", count + 1, 3, 9);
        covering.object_id = lifted.clone();
        covering.state = Vec::new();
        harness.upload_at(covering, 2 * count).unwrap();
        harness.write();
        assert_eq!(harness.released_through(&lifted), None);
        let released_before = harness.state.released_count();
        let room = TRACKING_BYTES_MAX - harness.state.tracking_bytes();
        assert!(room >= RELEASED_SNAPSHOT_BYTES, "{room}");
        assert!(harness.release(count) >= 1);
        assert!(harness.state.released_count() > released_before);
        assert!(harness.state.tracking_bytes() <= TRACKING_BYTES_MAX);
        // The release stopped at an object it could not remember, so the truncation point
        // stays below the marks of those it released; a snapshot's state still moves whole.
        harness.advance(2 * count);
        assert!(harness.state.truncated_through() < count);
        harness.write();
        let mut other = Harness::new(true);
        transfer(&harness, &mut other, 2 * count + 1);
        assert_eq!(other.state, harness.state);
    }

    #[test]
    fn the_store_and_snapshots_keep_everything() {
        let mut harness = Harness::new(false);
        let (a, b) = (id("a"), id("b"));
        harness.record(&a, 1);
        harness.record(&b, 2);
        harness.upload_at(upload("a", 1, 1, 1), 2).unwrap();
        harness.upload_at(upload("a", 1, 1, 2), 2).unwrap();
        harness.upload_at(upload("b", 2, 1, 1), 2).unwrap();
        harness.upload_at(upload("b", 2, 2, 2), 2).unwrap();
        harness.record(&a, 3);
        harness.record(&id("c"), 4);
        harness.write();
        let recovered = CheckpointState::recover(SPACE, &harness.store, 5, BOUNDS).unwrap();
        assert_eq!(recovered, harness.state);
        assert_eq!(
            recovered.fetch(&harness.store, SPACE, &b).unwrap(),
            harness.fetch(&b)
        );
        assert_eq!(
            recovered
                .truncation_limit(&harness.store, SPACE, 4)
                .unwrap(),
            None
        );
        assert_eq!(recovered.alarms().count(), 1);

        // Moved into another store, over other state, it reads the same.
        let mut other = Harness::new(true);
        other.record(&id("stale"), 1);
        other.upload_at(upload("stale", 1, 1, 1), 1).unwrap();
        let bytes = transfer(&harness, &mut other, 5);
        assert_eq!(other.space, CHECKPOINTS_A);
        assert_eq!(other.state, harness.state);
        for object in [&a, &b, &id("c"), &id("stale")] {
            assert_eq!(other.fetch(object), harness.fetch(object), "{object}");
            assert_eq!(
                other.uncovered(object),
                harness.uncovered(object),
                "{object}"
            );
        }
        assert_eq!(
            other.store.keys(SPACE),
            Vec::<Vec<u8>>::new(),
            "the space left behind is cleared"
        );
        let mut again = Vec::new();
        other.state.encode_snapshot(CheckpointSpace::A, &mut again);
        let counters = |bytes: &[u8]| {
            let decoded = CheckpointState::decode_snapshot(&mut Reader::new(bytes), 5).unwrap();
            (decoded.header, decoded.alarms)
        };
        assert_eq!(
            counters(&again),
            counters(&bytes),
            "the restored state encodes as the original (but for where it lives)"
        );
        // The other direction: from A back into the region state space's successor, B.
        let mut third = Harness::new(true);
        third.space = CHECKPOINTS_A;
        third.record(&id("stale"), 1);
        transfer(&other, &mut third, 5);
        assert_eq!(third.space, CHECKPOINTS_B);
        assert_eq!(third.fetch(&b), harness.fetch(&b));
        assert!(third.store.keys(CHECKPOINTS_A).is_empty());
        for length in 0..bytes.len() {
            let mut reader = Reader::new(&bytes[..length]);
            let outcome =
                CheckpointState::decode_snapshot(&mut reader, 5).and_then(|_| reader.finish());
            assert!(
                outcome.is_err(),
                "a snapshot cut at {length} bytes is refused"
            );
        }
        let error = CheckpointState::decode_snapshot(&mut Reader::new(&bytes), 2).unwrap_err();
        assert!(error.contains("next position"), "{error}");
    }

    /// Moves `from`'s state into `to` as a member taking a snapshot does: the snapshot's
    /// counters, a view of `from`'s store pinned with them, pieces fetched from it into the
    /// space `to` does not use (the view is read after `from` changed, to show it holds the
    /// pinned state), and the restore that switches `to` over. Returns the snapshot's bytes.
    fn transfer(from: &Harness, to: &mut Harness, next_position: u64) -> Vec<u8> {
        let live = match from.space {
            CHECKPOINTS_A => CheckpointSpace::A,
            CHECKPOINTS_B => CheckpointSpace::B,
            _ => CheckpointSpace::Legacy,
        };
        let mut bytes = Vec::new();
        from.state.encode_snapshot(live, &mut bytes);
        let mut sender = from.store.clone();
        sender
            .pin_view(7, &transfer::view_ranges(from.space))
            .unwrap();
        // The sender moves on: the view does not.
        let mut batch = WriteBatch::new();
        batch.delete_range(from.space, Vec::new(), KEYS_END.to_vec());
        sender.write(batch, true).unwrap();
        let mut reader = Reader::new(&bytes);
        let decoded = CheckpointState::decode_snapshot(&mut reader, next_position).unwrap();
        reader.finish().unwrap();
        assert_eq!(decoded.sender_space, live);
        let to_live = match to.space {
            CHECKPOINTS_A => CheckpointSpace::A,
            CHECKPOINTS_B => CheckpointSpace::B,
            _ => CheckpointSpace::Legacy,
        };
        let mut staging =
            transfer::StateStaging::new(to_live.other(), decoded.header, next_position);
        let view = sender.pinned_view(7).unwrap();
        loop {
            let piece =
                transfer::answer_state_piece(&*view, from.space, staging.after_key()).unwrap();
            let mut batch = WriteBatch::new();
            let whole = staging.take_piece(&piece, &to.store, &mut batch).unwrap();
            to.store.write(batch, false).unwrap();
            if whole {
                break;
            }
        }
        let target = to
            .state
            .restore(decoded, to_live, Some(staging.space()), &mut to.batch);
        if to.space == SPACE {
            // The region log's restore clears the region state space whole.
            to.batch.delete_range(SPACE, Vec::new(), KEYS_END.to_vec());
        }
        to.space = target.key_space();
        to.write();
        bytes
    }

    /// A store written by the previous release (states inside the checkpoint values, no
    /// index, header format 2) is read and rewritten in the current layout.
    #[test]
    fn a_store_of_the_previous_layout_is_migrated() {
        let mut store = MemoryStore::new();
        let mut batch = WriteBatch::new();
        let mut header = vec![2];
        for value in [0u64, 0, 0, 0] {
            header.extend_from_slice(&value.to_be_bytes());
        }
        batch.put(SPACE, TRUNCATION_KEY.to_vec(), header);
        // Object "a": checkpoint at 2 with state [7; 5], one reporter, no alarm.
        let mut legacy = vec![1];
        legacy.extend_from_slice(&2u64.to_be_bytes());
        legacy.extend_from_slice(&[7; STATE_HASH_BYTES]);
        legacy.extend_from_slice(&1u32.to_be_bytes());
        legacy.extend_from_slice(&9u64.to_be_bytes());
        put_bytes(&mut legacy, &[7; 5]);
        legacy.extend_from_slice(&0u64.to_be_bytes());
        legacy.push(0);
        batch.put(SPACE, object_key(CHECKPOINT_KEY_PREFIX, &id("a")), legacy);
        // "a" has a record at 3 above it; "b" a record at 1 and no checkpoint.
        batch.put(
            SPACE,
            object_key(UNCOVERED_KEY_PREFIX, &id("a")),
            encode_uncovered(Uncovered {
                last_record_position: 3,
                covering_position: 2,
            }),
        );
        batch.put(
            SPACE,
            object_key(UNCOVERED_KEY_PREFIX, &id("b")),
            1u64.to_be_bytes().to_vec(),
        );
        store.write(batch, true).unwrap();

        let mut state = CheckpointState::recover(SPACE, &store, 4, BOUNDS).unwrap();
        // A round that writes before any entry applies leaves the migration owed, and read.
        state.batch_written();
        assert_eq!(
            (
                state.object_count(),
                state.uncovered_count(),
                state.states_size_bytes()
            ),
            (1, 2, 5)
        );
        assert_eq!(state.truncation_limit(&store, SPACE, 3).unwrap(), Some(0));
        let fetched = state
            .fetch(&store, SPACE, &id("a"))
            .unwrap()
            .checkpoint
            .unwrap();
        assert_eq!(fetched.state, vec![7; 5]);
        let mut batch = WriteBatch::new();
        state.take_migration(SPACE, &mut batch);
        store.write(batch, true).unwrap();
        state.batch_written();
        let again = CheckpointState::recover(SPACE, &store, 4, BOUNDS).unwrap();
        assert_eq!(again, state);
        assert_eq!(again.truncation_limit(&store, SPACE, 3).unwrap(), Some(0));
        assert_eq!(
            again
                .fetch(&store, SPACE, &id("a"))
                .unwrap()
                .checkpoint
                .unwrap()
                .state,
            vec![7; 5]
        );
    }

    #[test]
    fn checkpoint_entries_round_trip_and_damaged_ones_are_errors() {
        let original = upload("lobby/main", 42, 3, 9);
        let data = encode_checkpoint_entry(&original, (2, 77));
        assert_eq!(data[0], CHECKPOINT_FORMAT);
        assert_eq!(
            decode_checkpoint_entry(&data[1..]).unwrap(),
            (original, (2, 77))
        );
        for length in 1..data.len() {
            assert!(decode_checkpoint_entry(&data[1..length]).is_err());
        }
    }
}
