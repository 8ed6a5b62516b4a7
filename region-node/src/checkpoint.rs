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
//! records were released, see below) and nothing more while an alarm stands. An object without a checkpoint has position 0, so it
//! blocks truncation at 0 as long as it has a record in the log. The
//! truncation point only grows. It is replicated state; a member that restored a snapshot may
//! hold fewer entries above it (see [`crate::region_log`]).
//!
//! The uncovered map holds at most [`OBJECTS_UNCOVERED_MAX`] objects. At the bound, a proposal
//! of a record for another object is refused (before raft and again in apply, alike on every
//! member) with a message naming the objects that lack a covering checkpoint. A sequenced
//! global record was ordered by the coordinator and cannot be refused: if its object cannot be
//! tracked, the region remembers the position of the first such record and never truncates at
//! or above it, which keeps every record of an untracked object.
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
//! # Store layout (region state key space)
//!
//! - `truncation`: the truncation point, the alarm counter, the first untracked position and
//!   the release counter;
//! - `checkpoint/<object id>`: one object's checkpoint, agreed position and alarm;
//! - `uncovered/<object id>`: the position of an uncovered object's newest record and its
//!   covering position;
//! - `released/<digest of the object id>`: the position through which an object's records
//!   were released without a checkpoint.

use std::collections::{BTreeMap, BTreeSet};

use dsss_raft_group::{DurableStore, KeySpace, StoreError, WriteBatch};
use dsss_wire::ids::OBJECT_ID_BYTES_MAX;
use dsss_wire::{ClientId, ObjectId};

use crate::bytes::{Reader, corrupt, put_bytes, scan_range};

/// The largest state a checkpoint may carry, in bytes. The gRPC messages of both directions
/// (upload and fetch) hold it with room to spare ([`dsss_wire::GRPC_MESSAGE_BYTES_MAX`]), and
/// so does one raft entry.
pub const CHECKPOINT_STATE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// The most bytes of state the region keeps over all its checkpoints; beyond, an upload that
/// would add more is refused as resource exhausted. Checkpoints travel in raft snapshots,
/// which are one raft message: the bound keeps room there for everything else.
pub const CHECKPOINT_STATES_BYTES_MAX: u64 = 12 * 1024 * 1024;

/// The most objects the region keeps checkpoints of; an upload for another object is refused
/// as resource exhausted.
pub const OBJECTS_WITH_CHECKPOINTS_MAX: usize = 4_096;

/// The most objects whose newest record lies above their newest checkpoint (see the module
/// documentation for what happens at the bound).
pub const OBJECTS_UNCOVERED_MAX: usize = 4_096;

/// The most objects the region remembers as released without a checkpoint (see "Releasing
/// records nobody follows" in the module documentation). Each is 24 bytes in memory, in the
/// store and in snapshots (a digest of its id and a position). At the bound, truncation stops
/// before the next object it would have to release, so the quota guard refuses writes again
/// rather than forget a release.
pub const RELEASED_OBJECTS_MAX: usize = 49_152;

/// The most client ids kept per checkpoint as having reported it; later reporters still agree
/// but are not listed.
pub const REPORTING_CLIENTS_MAX: usize = 8;

/// The length of a state hash (SHA-256), in bytes.
pub const STATE_HASH_BYTES: usize = 32;

/// How many object names an error message lists at most.
pub const NAMED_OBJECTS_MAX: usize = 4;

/// The format byte of a checkpoint entry in the raft log.
pub(crate) const CHECKPOINT_FORMAT: u8 = 4;

/// The key of the truncation state.
const TRUNCATION_KEY: &[u8] = b"truncation";

/// The prefix of each object's checkpoint key.
const CHECKPOINT_KEY_PREFIX: &[u8] = b"checkpoint/";

/// The end of the range of checkpoint keys: the prefix with its last byte raised by one.
const CHECKPOINT_KEYS_END: &[u8] = b"checkpoint0";

/// The prefix of each uncovered object's key.
const UNCOVERED_KEY_PREFIX: &[u8] = b"uncovered/";

/// The end of the range of uncovered keys.
const UNCOVERED_KEYS_END: &[u8] = b"uncovered0";

/// The prefix of each released object's key (followed by the digest of its id).
const RELEASED_KEY_PREFIX: &[u8] = b"released/";

/// The end of the range of released keys.
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

/// Format 2 adds the release counter to format 1.
const TRUNCATION_FORMAT: u8 = 2;
const OBJECT_FORMAT: u8 = 1;

/// The largest encoded object entry, for bounded reads: the state, the hash, the reporters,
/// the agreed position and an alarm.
const OBJECT_BYTES_MAX: usize = CHECKPOINT_STATE_BYTES_MAX + 1024;

/// The largest snapshot part of this state, in bytes, when every bound is reached: each
/// object's id, hash, reporters, positions and alarm, the states, and the uncovered map.
pub const SNAPSHOT_PART_BYTES_MAX: usize = 64
    + OBJECTS_WITH_CHECKPOINTS_MAX
        * (4 + OBJECT_ID_BYTES_MAX + 4 + 128 + 8 * REPORTING_CLIENTS_MAX)
    + CHECKPOINT_STATES_BYTES_MAX as usize
    + OBJECTS_UNCOVERED_MAX * (4 + OBJECT_ID_BYTES_MAX + 16)
    + 4
    + RELEASED_OBJECTS_MAX * (OBJECT_DIGEST_BYTES + 8);

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

/// The newest checkpoint of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The position the state reflects.
    pub position: u64,
    /// The state bytes.
    pub state: Vec<u8>,
    /// Their hash, as reported.
    pub state_hash: [u8; STATE_HASH_BYTES],
    /// The clients that reported this checkpoint, in the order they did (at most
    /// [`REPORTING_CLIENTS_MAX`]).
    pub reporting_clients: Vec<u64>,
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

/// What the region keeps of one object.
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
    /// The position of its newest checkpoint, 0 when it has none.
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

/// The replicated checkpoints and truncation state of a region. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointState {
    objects: BTreeMap<ObjectId, ObjectCheckpoints>,
    states_size_bytes: u64,
    uncovered: BTreeMap<ObjectId, Uncovered>,
    /// (covering position, object) of every uncovered object: the first is the limit.
    limits: BTreeSet<(u64, ObjectId)>,
    alarmed: BTreeSet<ObjectId>,
    alarms_raised: u64,
    truncated_through: u64,
    untracked_from: Option<u64>,
    /// Objects whose records the region released without a checkpoint, and the position
    /// through which it did.
    released: BTreeMap<ObjectDigest, u64>,
    /// How many times an object was released (the same object may be released again).
    releases: u64,
}

fn object_key(prefix: &[u8], object_id: &ObjectId) -> Vec<u8> {
    let mut key = prefix.to_vec();
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

impl CheckpointState {
    // Getters.

    /// The newest checkpoint kept for `object_id`.
    pub fn newest(&self, object_id: &ObjectId) -> Option<&StoredCheckpoint> {
        self.objects.get(object_id).map(|object| &object.newest)
    }

    /// The newest agreed position of `object_id`, 0 when none.
    pub fn agreed_position(&self, object_id: &ObjectId) -> u64 {
        self.objects
            .get(object_id)
            .map_or(0, |object| object.agreed_position)
    }

    /// The position of the newest checkpoint of `object_id` (agreed or reported by one
    /// client), 0 when none: the object's records at or below it are covered.
    pub fn covering_position(&self, object_id: &ObjectId) -> u64 {
        self.objects
            .get(object_id)
            .map_or(0, |object| object.newest.position)
    }

    /// The region's truncation point: entries at or below it may be dropped.
    pub fn truncated_through(&self) -> u64 {
        self.truncated_through
    }

    /// The position of the first sequenced global record whose object could not be tracked
    /// (the uncovered map was full): the log is never truncated at or above it.
    pub fn untracked_from(&self) -> Option<u64> {
        self.untracked_from
    }

    /// How many objects have a checkpoint.
    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    /// The bytes of state over every kept checkpoint.
    pub fn states_size_bytes(&self) -> u64 {
        self.states_size_bytes
    }

    /// How many objects have a record above their newest checkpoint (or have records and no
    /// checkpoint).
    pub fn uncovered_count(&self) -> usize {
        self.uncovered.len()
    }

    /// True when `object_id` has a record above its newest checkpoint.
    pub fn is_uncovered(&self, object_id: &ObjectId) -> bool {
        self.uncovered.contains_key(object_id)
    }

    /// The position through which the region released records of `object_id` without a
    /// checkpoint, when it keeps no checkpoint at or above it (see the module documentation).
    pub fn released_through(&self, object_id: &ObjectId) -> Option<u64> {
        let released = *self.released.get(&object_digest(object_id))?;
        (released > self.covering_position(object_id)).then_some(released)
    }

    /// How many objects the region remembers as released without a checkpoint.
    pub fn released_count(&self) -> usize {
        self.released.len()
    }

    /// How many times the region released an object's records without a checkpoint.
    pub fn releases(&self) -> u64 {
        self.releases
    }

    /// How many hash mismatches the region has seen.
    pub fn alarms_raised(&self) -> u64 {
        self.alarms_raised
    }

    /// The newest divergence alarm of every object that has one, in object order.
    pub fn alarms(&self) -> impl Iterator<Item = DivergenceAlarm> + '_ {
        self.alarmed.iter().filter_map(|object_id| {
            let (position, first_client_id, second_client_id) =
                self.objects.get(object_id)?.alarm?;
            Some(DivergenceAlarm {
                object_id: object_id.clone(),
                position,
                first_client_id,
                second_client_id,
            })
        })
    }

    /// How many objects have a divergence alarm.
    pub fn alarm_count(&self) -> usize {
        self.alarmed.len()
    }

    /// The objects that hold truncation back, lowest covering position first, at most
    /// `count`; objects with an alarm come first.
    pub fn blocking_objects(&self, count: usize) -> Vec<String> {
        self.alarmed
            .iter()
            .map(|object_id| format!("{object_id} (divergence alarm)"))
            .chain(self.limits.iter().map(|(covering, object_id)| {
                if *covering == 0 {
                    format!("{object_id} (no checkpoint)")
                } else {
                    format!("{object_id} (checkpoint at {covering})")
                }
            }))
            .take(count)
            .collect()
    }

    /// Whether a proposal of a record for `object_id` can be tracked: the object is tracked
    /// already, or the uncovered map has room. The error says why not.
    pub fn admit_record(&self, object_id: &ObjectId) -> Result<(), String> {
        if self.uncovered.contains_key(object_id) || self.uncovered.len() < OBJECTS_UNCOVERED_MAX {
            return Ok(());
        }
        Err(format!(
            "{} objects have records without a checkpoint covering them, the most the \
             region tracks (OBJECTS_UNCOVERED_MAX), among them {}; their replicas must upload \
             checkpoints before records of further objects are taken",
            self.uncovered.len(),
            self.blocking_objects(NAMED_OBJECTS_MAX).join(", ")
        ))
    }

    /// The highest position the log may be truncated through now, given the applied position
    /// `last_position`; none while an alarm stands.
    pub fn truncation_limit(&self, last_position: u64) -> Option<u64> {
        if !self.alarmed.is_empty() {
            return None;
        }
        let mut limit = last_position;
        if let Some((covering, _)) = self.limits.first() {
            limit = limit.min(*covering);
        }
        if let Some(untracked_from) = self.untracked_from {
            limit = limit.min(untracked_from - 1);
        }
        Some(limit)
    }

    /// The newest checkpoint of `object_id` as a caller starts from it.
    pub fn fetch(&self, object_id: &ObjectId) -> CheckpointFetch {
        let checkpoint = self.objects.get(object_id).map(|object| FetchedCheckpoint {
            position: object.newest.position.max(self.truncated_through),
            uploaded_position: object.newest.position,
            state: object.newest.state.clone(),
            state_hash: object.newest.state_hash,
        });
        CheckpointFetch {
            checkpoint,
            truncated_through: self.truncated_through,
            released_through: self.released_through(object_id).unwrap_or(0),
        }
    }

    // Applying.

    /// Applies an upload when the log's last position is `last_position`, writing what
    /// changed into `batch`.
    pub(crate) fn apply_upload(
        &mut self,
        upload: CheckpointUpload,
        last_position: u64,
        space: KeySpace,
        batch: &mut WriteBatch,
    ) -> Result<CheckpointOutcome, CheckpointRefusal> {
        let CheckpointUpload {
            object_id,
            position,
            state,
            state_hash,
            client_id,
        } = upload;
        let client_id = client_id.get();
        if position == 0 || position > last_position {
            return Err(CheckpointRefusal::Invalid(format!(
                "checkpoint.position {position} is outside 1..={last_position} (the applied \
                 position)"
            )));
        }
        if state.len() > CHECKPOINT_STATE_BYTES_MAX {
            return Err(CheckpointRefusal::Invalid(format!(
                "checkpoint.state holds {} bytes, more than the maximum of \
                 {CHECKPOINT_STATE_BYTES_MAX}",
                state.len()
            )));
        }
        let kept_size_bytes = self
            .objects
            .get(&object_id)
            .map_or(0, |object| object.newest.state.len() as u64);
        let replaces = self
            .objects
            .get(&object_id)
            .is_none_or(|object| position > object.newest.position);
        if replaces {
            if !self.objects.contains_key(&object_id)
                && self.objects.len() >= OBJECTS_WITH_CHECKPOINTS_MAX
            {
                return Err(CheckpointRefusal::ResourceExhausted(format!(
                    "the region keeps checkpoints of {} objects, the most it may \
                     (OBJECTS_WITH_CHECKPOINTS_MAX); no checkpoint of {object_id} is taken",
                    self.objects.len()
                )));
            }
            let size_after = self.states_size_bytes - kept_size_bytes + state.len() as u64;
            if size_after > CHECKPOINT_STATES_BYTES_MAX {
                return Err(CheckpointRefusal::ResourceExhausted(format!(
                    "the checkpoint of {object_id} would bring the states the region keeps to \
                     {size_after} bytes, more than the maximum of {CHECKPOINT_STATES_BYTES_MAX} \
                     (CHECKPOINT_STATES_BYTES_MAX)"
                )));
            }
            self.states_size_bytes = size_after;
            let newest = StoredCheckpoint {
                position,
                state,
                state_hash,
                reporting_clients: vec![client_id],
            };
            let object =
                self.objects
                    .entry(object_id.clone())
                    .or_insert_with(|| ObjectCheckpoints {
                        newest: newest.clone(),
                        agreed_position: 0,
                        alarm: None,
                    });
            object.newest = newest;
            self.write_object(&object_id, space, batch);
            // A checkpoint at or above the release point holds every record released: the
            // object can be rebuilt again (from an instance that followed it all along).
            let digest = object_digest(&object_id);
            if self
                .released
                .get(&digest)
                .is_some_and(|released| *released <= position)
            {
                self.released.remove(&digest);
                batch.delete(space, released_key(&digest));
            }
            // One client's checkpoint covers the object's records for truncation: an object
            // with a single instance must not hold the log forever. Agreement of a second
            // client at the same position is what detects divergence (see the module
            // documentation).
            self.cover(&object_id, position, space, batch);
            return Ok(CheckpointOutcome::Stored);
        }
        let object = self
            .objects
            .get_mut(&object_id)
            .expect("a checkpoint that is not replaced is kept");
        if position < object.newest.position {
            return Ok(CheckpointOutcome::Superseded);
        }
        if state_hash != object.newest.state_hash {
            let first_client_id = object.newest.reporting_clients[0];
            object.alarm = Some((position, first_client_id, client_id));
            self.alarmed.insert(object_id.clone());
            self.alarms_raised += 1;
            self.write_object(&object_id, space, batch);
            self.write_header(space, batch);
            return Ok(CheckpointOutcome::HashMismatch);
        }
        if object.newest.reporting_clients.contains(&client_id) {
            return Ok(CheckpointOutcome::Stored);
        }
        if object.newest.reporting_clients.len() < REPORTING_CLIENTS_MAX {
            object.newest.reporting_clients.push(client_id);
        }
        object.agreed_position = object.agreed_position.max(position);
        self.write_object(&object_id, space, batch);
        Ok(CheckpointOutcome::Agreed)
    }

    /// Notes a record of `object_id` appended at `position`.
    pub(crate) fn record_appended(
        &mut self,
        object_id: &ObjectId,
        position: u64,
        space: KeySpace,
        batch: &mut WriteBatch,
    ) {
        if let Some(uncovered) = self.uncovered.get_mut(object_id) {
            uncovered.last_record_position = position;
        } else if self.uncovered.len() < OBJECTS_UNCOVERED_MAX {
            // The object's records at or below the truncation point are covered by its
            // checkpoint or released: what holds truncation back is the higher of the two.
            let covering_position = self
                .covering_position(object_id)
                .max(self.truncated_through);
            debug_assert!(
                covering_position < position,
                "checkpoints lie below new records"
            );
            self.uncovered.insert(
                object_id.clone(),
                Uncovered {
                    last_record_position: position,
                    covering_position,
                },
            );
            self.limits.insert((covering_position, object_id.clone()));
        } else {
            if self.untracked_from.is_none() {
                self.untracked_from = Some(position);
                self.write_header(space, batch);
            }
            return;
        }
        self.write_uncovered(object_id, space, batch);
    }

    /// Releases the records of every object without a checkpoint covering them at or below
    /// `target`, lowest first, so that truncation may pass them: an object whose newest record
    /// is at or below `target` stops being tracked, the others are held back from `target` on;
    /// each is remembered as released through the last position passed. Stops early, at the
    /// covering position of the first object it cannot remember (the released set is full).
    /// Returns how many objects it released.
    pub(crate) fn release_through(
        &mut self,
        target: u64,
        space: KeySpace,
        batch: &mut WriteBatch,
    ) -> usize {
        let mut released_now = 0;
        while let Some((covering, object_id)) = self.limits.first().cloned()
            && covering < target
        {
            let digest = object_digest(&object_id);
            if !self.released.contains_key(&digest) && self.released.len() >= RELEASED_OBJECTS_MAX {
                break;
            }
            let uncovered = self.uncovered[&object_id];
            self.limits.remove(&(covering, object_id.clone()));
            let released_to = uncovered.last_record_position.min(target);
            if uncovered.last_record_position <= target {
                self.uncovered.remove(&object_id);
                batch.delete(space, object_key(UNCOVERED_KEY_PREFIX, &object_id));
            } else {
                self.uncovered
                    .get_mut(&object_id)
                    .expect("present")
                    .covering_position = target;
                self.limits.insert((target, object_id.clone()));
                self.write_uncovered(&object_id, space, batch);
            }
            let kept = self.released.entry(digest).or_insert(0);
            *kept = (*kept).max(released_to);
            batch.put(space, released_key(&digest), kept.to_be_bytes().to_vec());
            self.releases += 1;
            released_now += 1;
        }
        if released_now > 0 {
            self.write_header(space, batch);
        }
        released_now
    }

    /// Raises the truncation point as far as the rules allow; returns the new point when it
    /// moved.
    pub(crate) fn advance_truncation(
        &mut self,
        last_position: u64,
        space: KeySpace,
        batch: &mut WriteBatch,
    ) -> Option<u64> {
        let limit = self.truncation_limit(last_position)?;
        if limit <= self.truncated_through {
            return None;
        }
        self.truncated_through = limit;
        self.write_header(space, batch);
        Some(limit)
    }

    /// The object's newest checkpoint rose to `covering_position`: it stops blocking when
    /// that covers its newest record.
    fn cover(
        &mut self,
        object_id: &ObjectId,
        covering_position: u64,
        space: KeySpace,
        batch: &mut WriteBatch,
    ) {
        let Some(uncovered) = self.uncovered.get_mut(object_id) else {
            return;
        };
        let covering_position = covering_position.max(uncovered.covering_position);
        self.limits
            .remove(&(uncovered.covering_position, object_id.clone()));
        if uncovered.last_record_position <= covering_position {
            self.uncovered.remove(object_id);
            batch.delete(space, object_key(UNCOVERED_KEY_PREFIX, object_id));
        } else {
            uncovered.covering_position = covering_position;
            self.limits.insert((covering_position, object_id.clone()));
            self.write_uncovered(object_id, space, batch);
        }
    }

    // Store.

    fn write_uncovered(&self, object_id: &ObjectId, space: KeySpace, batch: &mut WriteBatch) {
        let uncovered = &self.uncovered[object_id];
        let mut value = uncovered.last_record_position.to_be_bytes().to_vec();
        value.extend_from_slice(&uncovered.covering_position.to_be_bytes());
        batch.put(space, object_key(UNCOVERED_KEY_PREFIX, object_id), value);
    }

    fn write_object(&self, object_id: &ObjectId, space: KeySpace, batch: &mut WriteBatch) {
        let object = &self.objects[object_id];
        batch.put(
            space,
            object_key(CHECKPOINT_KEY_PREFIX, object_id),
            encode_object(object),
        );
    }

    fn encode_header(&self) -> Vec<u8> {
        let mut bytes = vec![TRUNCATION_FORMAT];
        bytes.extend_from_slice(&self.truncated_through.to_be_bytes());
        bytes.extend_from_slice(&self.alarms_raised.to_be_bytes());
        bytes.extend_from_slice(&self.untracked_from.unwrap_or(0).to_be_bytes());
        bytes.extend_from_slice(&self.releases.to_be_bytes());
        bytes
    }

    fn write_header(&self, space: KeySpace, batch: &mut WriteBatch) {
        batch.put(space, TRUNCATION_KEY, self.encode_header());
    }

    /// Writes the whole state, after a snapshot replaced it.
    pub(crate) fn write_all(&self, space: KeySpace, batch: &mut WriteBatch) {
        self.write_header(space, batch);
        for object_id in self.objects.keys() {
            self.write_object(object_id, space, batch);
        }
        for object_id in self.uncovered.keys() {
            self.write_uncovered(object_id, space, batch);
        }
        for (digest, position) in &self.released {
            batch.put(space, released_key(digest), position.to_be_bytes().to_vec());
        }
    }

    /// Reads the state back from the store; `next_position` bounds every position.
    pub(crate) fn recover(
        space: KeySpace,
        store: &dyn DurableStore,
        next_position: u64,
    ) -> Result<CheckpointState, StoreError> {
        let mut state = CheckpointState::default();
        if let Some(header) = store.get(space, TRUNCATION_KEY)? {
            state
                .decode_header(&header, next_position)
                .map_err(|reason| corrupt(space, TRUNCATION_KEY, reason))?;
        }
        scan_range(
            store,
            space,
            CHECKPOINT_KEY_PREFIX,
            CHECKPOINT_KEYS_END,
            |key, value| {
                let object_id = object_from_key(CHECKPOINT_KEY_PREFIX, key)
                    .ok_or_else(|| "not a checkpoint key".to_owned())?;
                let object = decode_object(&mut Reader::new(value), next_position)?;
                state.insert_object(object_id, object)
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
                let position = reader.u64("uncovered newest record position")?;
                // Written by an older release: the covering position is the checkpoint's.
                let covering = if value.len() == 8 {
                    None
                } else {
                    Some(reader.u64("uncovered covering position")?)
                };
                reader.finish()?;
                state.insert_uncovered(object_id, position, covering, next_position)
            },
        )?;
        scan_range(
            store,
            space,
            RELEASED_KEY_PREFIX,
            RELEASED_KEYS_END,
            |key, value| {
                let digest = key
                    .strip_prefix(RELEASED_KEY_PREFIX)
                    .and_then(|digest| ObjectDigest::try_from(digest).ok())
                    .ok_or_else(|| "not a released object key".to_owned())?;
                let position = <[u8; 8]>::try_from(value)
                    .map(u64::from_be_bytes)
                    .map_err(|_| "a released position is 8 bytes".to_owned())?;
                state.insert_released(digest, position)
            },
        )?;
        state
            .check_alarms()
            .map_err(|reason| corrupt(space, TRUNCATION_KEY, reason))?;
        Ok(state)
    }

    // Snapshots.

    /// The state in a snapshot.
    pub(crate) fn encode_snapshot(&self, out: &mut Vec<u8>) {
        put_bytes(out, &self.encode_header());
        out.extend_from_slice(&(self.objects.len() as u32).to_be_bytes());
        for (object_id, object) in &self.objects {
            put_bytes(out, object_id.as_str().as_bytes());
            put_bytes(out, &encode_object(object));
        }
        out.extend_from_slice(&(self.uncovered.len() as u32).to_be_bytes());
        for (object_id, uncovered) in &self.uncovered {
            put_bytes(out, object_id.as_str().as_bytes());
            out.extend_from_slice(&uncovered.last_record_position.to_be_bytes());
            out.extend_from_slice(&uncovered.covering_position.to_be_bytes());
        }
        out.extend_from_slice(&(self.released.len() as u32).to_be_bytes());
        for (digest, position) in &self.released {
            out.extend_from_slice(digest);
            out.extend_from_slice(&position.to_be_bytes());
        }
    }

    /// Reads the state from a snapshot; positions must lie below `next_position`.
    pub(crate) fn decode_snapshot(
        reader: &mut Reader<'_>,
        next_position: u64,
    ) -> Result<CheckpointState, String> {
        let mut state = CheckpointState::default();
        let header = reader.bytes(64, "truncation state")?;
        state.decode_header(header, next_position)?;
        let object_count = reader.count(OBJECTS_WITH_CHECKPOINTS_MAX, 8, "checkpoint count")?;
        for _ in 0..object_count {
            let object_id = read_object_id(reader, "checkpoint object id")?;
            let bytes = reader.bytes(OBJECT_BYTES_MAX, "checkpoint")?;
            let mut object_reader = Reader::new(bytes);
            let object = decode_object(&mut object_reader, next_position)
                .and_then(|object| object_reader.finish().map(|()| object))
                .map_err(|reason| format!("checkpoint of {object_id}: {reason}"))?;
            state
                .insert_object(object_id.clone(), object)
                .map_err(|reason| format!("checkpoint of {object_id}: {reason}"))?;
        }
        let uncovered_count = reader.count(OBJECTS_UNCOVERED_MAX, 20, "uncovered count")?;
        for _ in 0..uncovered_count {
            let object_id = read_object_id(reader, "uncovered object id")?;
            let position = reader.u64("uncovered position")?;
            let covering = reader.u64("uncovered covering position")?;
            state
                .insert_uncovered(object_id.clone(), position, Some(covering), next_position)
                .map_err(|reason| format!("uncovered object {object_id}: {reason}"))?;
        }
        let released_count = reader.count(
            RELEASED_OBJECTS_MAX,
            OBJECT_DIGEST_BYTES + 8,
            "released object count",
        )?;
        for _ in 0..released_count {
            let digest: ObjectDigest = reader
                .take(OBJECT_DIGEST_BYTES, "released object digest")?
                .try_into()
                .expect("took exactly the digest length");
            let position = reader.u64("released position")?;
            state.insert_released(digest, position)?;
        }
        state.check_alarms()?;
        Ok(state)
    }

    fn decode_header(&mut self, bytes: &[u8], next_position: u64) -> Result<(), String> {
        let mut reader = Reader::new(bytes);
        let format = reader.u8("truncation format")?;
        if format != TRUNCATION_FORMAT && format != 1 {
            return Err(format!(
                "truncation format {format} is unknown; this release reads formats 1 and \
                 {TRUNCATION_FORMAT}"
            ));
        }
        self.truncated_through = reader.u64("truncation point")?;
        self.alarms_raised = reader.u64("alarm count")?;
        let untracked_from = reader.u64("first untracked position")?;
        if format == TRUNCATION_FORMAT {
            self.releases = reader.u64("release count")?;
        }
        reader.finish()?;
        if self.truncated_through >= next_position {
            return Err(format!(
                "truncation point {} is not below the next position {next_position}",
                self.truncated_through
            ));
        }
        if untracked_from >= next_position {
            return Err(format!(
                "first untracked position {untracked_from} is not below the next position \
                 {next_position}"
            ));
        }
        self.untracked_from = (untracked_from > 0).then_some(untracked_from);
        Ok(())
    }

    fn insert_object(
        &mut self,
        object_id: ObjectId,
        object: ObjectCheckpoints,
    ) -> Result<(), String> {
        if self.objects.len() >= OBJECTS_WITH_CHECKPOINTS_MAX {
            return Err(format!(
                "more than {OBJECTS_WITH_CHECKPOINTS_MAX} objects with checkpoints"
            ));
        }
        let size_after = self.states_size_bytes + object.newest.state.len() as u64;
        if size_after > CHECKPOINT_STATES_BYTES_MAX {
            return Err(format!(
                "states of {size_after} bytes, more than the maximum of \
                 {CHECKPOINT_STATES_BYTES_MAX}"
            ));
        }
        if object.alarm.is_some() {
            self.alarmed.insert(object_id.clone());
        }
        if self.objects.insert(object_id, object).is_some() {
            return Err("the object is listed twice".to_owned());
        }
        self.states_size_bytes = size_after;
        Ok(())
    }

    /// Adds an uncovered object read back; its checkpoint (if any) must be known already.
    fn insert_uncovered(
        &mut self,
        object_id: ObjectId,
        position: u64,
        covering: Option<u64>,
        next_position: u64,
    ) -> Result<(), String> {
        if self.uncovered.len() >= OBJECTS_UNCOVERED_MAX {
            return Err(format!(
                "more than {OBJECTS_UNCOVERED_MAX} uncovered objects"
            ));
        }
        let checkpoint_position = self.covering_position(&object_id);
        let covering_position = covering.unwrap_or(checkpoint_position);
        if covering_position < checkpoint_position {
            return Err(format!(
                "covering position {covering_position} is below its checkpoint at \
                 {checkpoint_position}"
            ));
        }
        if position >= next_position || position <= covering_position {
            return Err(format!(
                "newest record position {position} is not between the checkpoint position \
                 {covering_position} and the next position {next_position}"
            ));
        }
        if position <= self.truncated_through {
            return Err(format!(
                "newest record at {position} lies at or below the truncation point {}",
                self.truncated_through
            ));
        }
        self.limits.insert((covering_position, object_id.clone()));
        if self
            .uncovered
            .insert(
                object_id,
                Uncovered {
                    last_record_position: position,
                    covering_position,
                },
            )
            .is_some()
        {
            return Err("the object is listed twice".to_owned());
        }
        Ok(())
    }

    /// Adds a released object read back.
    fn insert_released(&mut self, digest: ObjectDigest, position: u64) -> Result<(), String> {
        if self.released.len() >= RELEASED_OBJECTS_MAX {
            return Err(format!("more than {RELEASED_OBJECTS_MAX} released objects"));
        }
        if position == 0 || position > self.truncated_through {
            return Err(format!(
                "an object released through position {position}, which is not in \
                 1..={} (the truncation point)",
                self.truncated_through
            ));
        }
        if self.released.insert(digest, position).is_some() {
            return Err("a released object is listed twice".to_owned());
        }
        Ok(())
    }

    /// An alarm counter below the number of alarmed objects means damaged state.
    fn check_alarms(&self) -> Result<(), String> {
        if (self.alarmed.len() as u64) > self.alarms_raised {
            return Err(format!(
                "{} objects have alarms but only {} were raised",
                self.alarmed.len(),
                self.alarms_raised
            ));
        }
        Ok(())
    }
}

fn encoded_object_size_bytes(object: &ObjectCheckpoints) -> usize {
    1 + 8
        + STATE_HASH_BYTES
        + 4
        + 8 * object.newest.reporting_clients.len()
        + 4
        + object.newest.state.len()
        + 8
        + 1
        + if object.alarm.is_some() { 24 } else { 0 }
}

fn encode_object(object: &ObjectCheckpoints) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(encoded_object_size_bytes(object));
    bytes.push(OBJECT_FORMAT);
    bytes.extend_from_slice(&object.newest.position.to_be_bytes());
    bytes.extend_from_slice(&object.newest.state_hash);
    let count = object.newest.reporting_clients.len() as u32;
    bytes.extend_from_slice(&count.to_be_bytes());
    for client_id in &object.newest.reporting_clients {
        bytes.extend_from_slice(&client_id.to_be_bytes());
    }
    put_bytes(&mut bytes, &object.newest.state);
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
    bytes
}

fn decode_object(reader: &mut Reader<'_>, next_position: u64) -> Result<ObjectCheckpoints, String> {
    let format = reader.u8("checkpoint format")?;
    if format != OBJECT_FORMAT {
        return Err(format!(
            "checkpoint format {format} is unknown; this release reads format {OBJECT_FORMAT}"
        ));
    }
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
    let state = reader
        .bytes(CHECKPOINT_STATE_BYTES_MAX, "checkpoint state")?
        .to_vec();
    let agreed_position = reader.u64("agreed position")?;
    let alarm = if reader.bool("alarm flag")? {
        Some((
            reader.u64("alarm position")?,
            reader.u64("alarm client")?,
            reader.u64("alarm client")?,
        ))
    } else {
        None
    };
    if position == 0 || position >= next_position || agreed_position > position {
        return Err(format!(
            "positions out of order: checkpoint at {position}, agreed at {agreed_position}, \
             next position {next_position}"
        ));
    }
    Ok(ObjectCheckpoints {
        newest: StoredCheckpoint {
            position,
            state,
            state_hash,
            reporting_clients,
        },
        agreed_position,
        alarm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsss_raft_group::MemoryStore;

    const SPACE: KeySpace = KeySpace::new("region_state");

    fn upload(object: &str, position: u64, hash: u8, client: u64) -> CheckpointUpload {
        CheckpointUpload {
            object_id: ObjectId::new(object).unwrap(),
            position,
            state: vec![hash; 10],
            state_hash: [hash; STATE_HASH_BYTES],
            client_id: ClientId(client),
        }
    }

    fn apply(
        state: &mut CheckpointState,
        upload: CheckpointUpload,
    ) -> Result<CheckpointOutcome, CheckpointRefusal> {
        state.apply_upload(upload, 10_000, SPACE, &mut WriteBatch::new())
    }

    /// The rules of the module documentation, one row per case, applied in order to one state.
    #[test]
    fn uploads_follow_the_rules_table() {
        use CheckpointOutcome::*;
        let mut state = CheckpointState::default();
        let object = ObjectId::new("lobby/main").unwrap();
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
            assert_eq!(apply(&mut state, upload), Ok(outcome), "row {row}");
            assert_eq!(state.newest(&object).unwrap().position, newest, "row {row}");
            assert_eq!(state.agreed_position(&object), agreed, "row {row}");
        }
        let alarms: Vec<DivergenceAlarm> = state.alarms().collect();
        assert_eq!(
            alarms,
            vec![DivergenceAlarm {
                object_id: object.clone(),
                position: 20,
                first_client_id: 8,
                second_client_id: 9,
            }]
        );
        assert_eq!(state.alarms_raised(), 1);
        assert_eq!(state.newest(&object).unwrap().reporting_clients, vec![8, 7]);
    }

    #[test]
    fn out_of_range_uploads_are_refused_naming_the_field_or_the_bound() {
        let mut state = CheckpointState::default();
        let error = state
            .apply_upload(upload("a", 11, 1, 1), 10, SPACE, &mut WriteBatch::new())
            .unwrap_err();
        assert!(error.to_string().contains("checkpoint.position"), "{error}");
        assert!(apply(&mut state, upload("a", 0, 1, 1)).is_err());
        let mut too_large = upload("a", 5, 1, 1);
        too_large.state = vec![0; CHECKPOINT_STATE_BYTES_MAX + 1];
        let error = apply(&mut state, too_large).unwrap_err();
        assert!(error.to_string().contains("checkpoint.state"), "{error}");

        for index in 0..OBJECTS_WITH_CHECKPOINTS_MAX {
            let mut small = upload(&format!("object/{index}"), 5, 1, 1);
            small.state = Vec::new();
            assert_eq!(apply(&mut state, small), Ok(CheckpointOutcome::Stored));
        }
        let error = apply(&mut state, upload("one/more", 5, 1, 1)).unwrap_err();
        assert!(matches!(error, CheckpointRefusal::ResourceExhausted(_)));
        assert!(error.to_string().contains("OBJECTS_WITH_CHECKPOINTS_MAX"));
        // A kept object still takes a newer checkpoint.
        assert_eq!(
            apply(&mut state, upload("object/0", 6, 1, 1)),
            Ok(CheckpointOutcome::Stored)
        );

        let mut state = CheckpointState::default();
        let mut large = upload("big/one", 5, 1, 1);
        large.state = vec![0; CHECKPOINT_STATE_BYTES_MAX];
        assert_eq!(
            apply(&mut state, large.clone()),
            Ok(CheckpointOutcome::Stored)
        );
        large.object_id = ObjectId::new("big/two").unwrap();
        let error = apply(&mut state, large).unwrap_err();
        assert!(
            error.to_string().contains("CHECKPOINT_STATES_BYTES_MAX"),
            "{error}"
        );
    }

    #[test]
    fn truncation_waits_for_a_checkpoint_of_every_object_with_records() {
        let mut state = CheckpointState::default();
        let mut batch = WriteBatch::new();
        let (a, b) = (ObjectId::new("a").unwrap(), ObjectId::new("b").unwrap());
        state.record_appended(&a, 1, SPACE, &mut batch);
        state.record_appended(&b, 2, SPACE, &mut batch);
        state.record_appended(&a, 3, SPACE, &mut batch);
        assert_eq!(state.truncation_limit(3), Some(0), "no checkpoint yet");
        apply(&mut state, upload("a", 2, 1, 1)).unwrap();
        assert!(
            state.is_uncovered(&a),
            "a has a record above its checkpoint"
        );
        apply(&mut state, upload("a", 3, 1, 1)).unwrap();
        assert!(
            !state.is_uncovered(&a),
            "one client's checkpoint covers a's records, agreed or not"
        );
        assert_eq!(state.agreed_position(&a), 0);
        assert_eq!(state.truncation_limit(3), Some(0), "b still lacks one");
        apply(&mut state, upload("b", 2, 1, 1)).unwrap();
        assert_eq!(state.truncation_limit(3), Some(3));
        // A second client at the same position agrees, or raises the alarm.
        assert_eq!(
            apply(&mut state, upload("a", 3, 1, 2)),
            Ok(CheckpointOutcome::Agreed)
        );
        assert_eq!(state.agreed_position(&a), 3);
        state.record_appended(&b, 4, SPACE, &mut batch);
        assert_eq!(
            state.truncation_limit(4),
            Some(2),
            "b's newest record lies above 2"
        );
        assert_eq!(state.advance_truncation(4, SPACE, &mut batch), Some(2));
        assert_eq!(state.advance_truncation(4, SPACE, &mut batch), None);
        // A checkpoint below the truncation point is served at it.
        let fetched = state.fetch(&a).checkpoint.unwrap();
        assert_eq!((fetched.position, fetched.uploaded_position), (3, 3));
        assert_eq!(
            state.fetch(&ObjectId::new("c").unwrap()).truncated_through,
            2
        );
        // An alarm freezes truncation.
        apply(&mut state, upload("b", 4, 1, 1)).unwrap();
        apply(&mut state, upload("b", 4, 9, 2)).unwrap();
        assert_eq!(state.truncation_limit(4), None);
        assert!(state.blocking_objects(4)[0].contains("divergence alarm"));
    }

    #[test]
    fn at_the_bound_new_objects_are_refused_and_untracked_ones_hold_truncation() {
        let mut state = CheckpointState::default();
        let mut batch = WriteBatch::new();
        for index in 0..OBJECTS_UNCOVERED_MAX as u64 {
            let object = ObjectId::new(format!("o/{index}")).unwrap();
            state.record_appended(&object, index + 1, SPACE, &mut batch);
        }
        let known = ObjectId::new("o/0").unwrap();
        let new = ObjectId::new("new").unwrap();
        assert!(state.admit_record(&known).is_ok());
        let error = state.admit_record(&new).unwrap_err();
        assert!(error.contains("OBJECTS_UNCOVERED_MAX"), "{error}");
        assert!(error.contains("o/0 (no checkpoint)"), "{error}");
        state.record_appended(&new, 5_000, SPACE, &mut batch);
        assert_eq!(state.untracked_from(), Some(5_000));
        // Every tracked object gets a checkpoint: truncation stops below the untracked
        // record.
        for index in 0..OBJECTS_UNCOVERED_MAX as u64 {
            let name = format!("o/{index}");
            apply(&mut state, upload(&name, index + 1, 1, 1)).unwrap();
        }
        assert_eq!(state.uncovered_count(), 0);
        assert_eq!(state.truncation_limit(6_000), Some(4_999));
    }

    /// The released set at its bound: once it remembers [`RELEASED_OBJECTS_MAX`] objects, a
    /// release stops before the next object it would have to add (truncation holds there and
    /// the quota guard takes over), while objects it remembers already are still released;
    /// a checkpoint that lifts a mark makes room again.
    #[test]
    fn at_the_released_bound_releases_stop_before_a_new_object() {
        let mut state = CheckpointState::default();
        let mut batch = WriteBatch::new();
        let mut position = 0u64;
        let rounds = RELEASED_OBJECTS_MAX.div_ceil(OBJECTS_UNCOVERED_MAX);
        for round in 0..rounds {
            let count =
                OBJECTS_UNCOVERED_MAX.min(RELEASED_OBJECTS_MAX - round * OBJECTS_UNCOVERED_MAX);
            for index in 0..count {
                position += 1;
                let object = ObjectId::new(format!("o/{round}/{index}")).unwrap();
                state.record_appended(&object, position, SPACE, &mut batch);
            }
            assert_eq!(state.release_through(position, SPACE, &mut batch), count);
            state.advance_truncation(position, SPACE, &mut batch);
            assert_eq!(state.truncated_through(), position);
        }
        assert_eq!(state.released_count(), RELEASED_OBJECTS_MAX);
        // One new object and one remembered: only the remembered one is released.
        // (Objects of one covering position are released in id order: "o/..." before "p/...".)
        let known = ObjectId::new("o/0/7").unwrap();
        let new = ObjectId::new("p/new").unwrap();
        state.record_appended(&known, position + 1, SPACE, &mut batch);
        state.record_appended(&new, position + 2, SPACE, &mut batch);
        assert_eq!(state.release_through(position + 2, SPACE, &mut batch), 1);
        assert_eq!(state.released_through(&known), Some(position + 1));
        assert!(state.is_uncovered(&new));
        assert_eq!(state.truncation_limit(position + 2), Some(position));
        assert_eq!(state.released_count(), RELEASED_OBJECTS_MAX);
        // A checkpoint of a released object at its release point lifts it: room for one more.
        let lifted = ObjectId::new("o/1/1").unwrap();
        let lifted_at = state.released_through(&lifted).unwrap();
        state
            .apply_upload(
                upload("o/1/1", lifted_at, 3, 9),
                position + 2,
                SPACE,
                &mut batch,
            )
            .unwrap();
        assert_eq!(state.released_through(&lifted), None);
        assert_eq!(state.release_through(position + 2, SPACE, &mut batch), 1);
        assert_eq!(state.released_through(&new), Some(position + 2));
        assert_eq!(state.released_count(), RELEASED_OBJECTS_MAX);
    }

    #[test]
    fn the_store_and_snapshots_keep_everything() {
        let mut store = MemoryStore::new();
        let mut state = CheckpointState::default();
        let mut batch = WriteBatch::new();
        let (a, b) = (ObjectId::new("a").unwrap(), ObjectId::new("b").unwrap());
        state.record_appended(&a, 1, SPACE, &mut batch);
        state.record_appended(&b, 2, SPACE, &mut batch);
        state
            .apply_upload(upload("a", 1, 1, 1), 2, SPACE, &mut batch)
            .unwrap();
        state
            .apply_upload(upload("a", 1, 1, 2), 2, SPACE, &mut batch)
            .unwrap();
        state
            .apply_upload(upload("b", 2, 1, 1), 2, SPACE, &mut batch)
            .unwrap();
        state
            .apply_upload(upload("b", 2, 2, 2), 2, SPACE, &mut batch)
            .unwrap();
        state.record_appended(&a, 3, SPACE, &mut batch);
        store.write(batch, true).unwrap();
        let recovered = CheckpointState::recover(SPACE, &store, 4).unwrap();
        assert_eq!(recovered, state);

        let mut bytes = Vec::new();
        state.encode_snapshot(&mut bytes);
        let mut reader = Reader::new(&bytes);
        let decoded = CheckpointState::decode_snapshot(&mut reader, 4).unwrap();
        reader.finish().unwrap();
        assert_eq!(decoded, state);
        for length in 0..bytes.len() {
            let mut reader = Reader::new(&bytes[..length]);
            let outcome =
                CheckpointState::decode_snapshot(&mut reader, 4).and_then(|_| reader.finish());
            assert!(
                outcome.is_err(),
                "a snapshot cut at {length} bytes is refused"
            );
        }
        let error = CheckpointState::decode_snapshot(&mut Reader::new(&bytes), 2).unwrap_err();
        assert!(error.contains("next position"), "{error}");
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
