//! [`RegionLog`]: the region's log, the state machine of its raft group.
//!
//! The log holds four kinds of entry ([`LogEntry`]): regional records, pending global records
//! (durable here, applying nothing), sequenced global records (a sealed epoch's records, of
//! every region) and epoch ends. A raft entry is one of three things:
//! - a batch of proposed records. Each runs through the dedup table ([`crate::dedup`]): a
//!   retry of an applied (client, sequence) pair gets the first copy's position and appends
//!   nothing; a new pair gets the next dense position (1, 2, 3, ...). Each new record gets its
//!   final timestamp here, `max(proposed, last_assigned.successor())`, so timestamps increase
//!   strictly in log order on every member alike, whatever leader stamped them. A regional
//!   record is appended as such; a global one as pending, joining the open batch
//!   ([`GlobalState`]);
//! - a `CloseBatch`: the outgoing batches the coordinator acknowledged to the proposing
//!   leader are forgotten; the closed timestamp becomes `max(proposed, last_assigned)` and the
//!   new `last_assigned`, so every later record exceeds it; the open batch becomes an outgoing
//!   batch;
//! - one part of a sealed epoch, taken only when it is the next expected: its records are
//!   appended as sequenced records, a record of this region completes its call there (the
//!   dedup table then answers retries with this position), and after the last part an epoch
//!   end is appended and the region follows the epoch's membership.
//!
//! Every write goes into the batch the raft group persists with its own, so the log, the dedup
//! table, the global state and the raft applied index never disagree after a crash.
//!
//! Store layout:
//! - [`REGION_LOG`]: one entry per key, the key being its position as 8 big-endian bytes, the
//!   value its [`dsss_wire::proto::LogEntry`] encoding;
//! - [`REGION_STATE`]: `meta` (next position, first retained position, the log digest, the
//!   last assigned timestamp), one `client/<id>` key per client of the dedup table, the
//!   global state (`global`, `global/record/<position>`), and the checkpoints (`truncation`,
//!   `checkpoint/<object>`, `state/<object>`, `uncovered/<object>`, `limit/...`, `alarm/...`,
//!   `released/...`; see [`crate::checkpoint`]).
//!
//! A raft entry may also be a checkpoint upload ([`crate::checkpoint`]): a command that takes
//! no log position and changes only the replicated checkpoints.
//!
//! Truncation follows the checkpoints alone: after every entry, the log drops the entries at or
//! below the truncation point that [`CheckpointState`] allows (below the newest checkpoint of
//! every object that has records, never while a divergence alarm stands), decided in apply, so
//! every member drops the same entries at the same point. Nothing is dropped for size: the
//! [`RegionLogRetention`] bounds only make the node refuse new proposals when the log above
//! the truncation point grows too large (see [`crate::node`]).
//!
//! The entries live in the store, not in memory: a node keeps the newest of them in a cache
//! bounded by [`LOG_CACHE_BYTES_MAX`] and [`LOG_CACHE_RECORDS_MAX`], which serves the readers
//! that keep up, and reads older ones from the store ([`RegionLog::read`]). What the log
//! holds above its truncation point, in bytes and by age, is counted by blocks of positions
//! ([`LogBlocks`], replicated state), so a node's memory does not grow with the retained log.
//! At start a node reads its counters and the newest entries back, not the whole log.
//!
//! Snapshots carry the whole replicated state (dedup table, positions, digest, global state,
//! checkpoints, log blocks) and no entry: a log above its truncation point may hold far more
//! than one raft message. A member takes a snapshot only once it holds every entry the
//! snapshot's state stands on, above the truncation point and below its next position: it
//! fetches those it lacks from a peer first, in bounded reads ([`crate::snapshot_catch_up`]).
//! Restoring then keeps the entries the member holds in that range, so every member holds the
//! whole retained log and no retained entry is ever on no member.
//!
//! The digest chains a 64-bit hash over every record ever applied, with its position: two
//! members with the same next position and the same digest applied the same records, even
//! those no longer retained.

use std::collections::VecDeque;

use dsss_raft_group::{
    DurableStore, KeyRange, KeySpace, RAFT_MESSAGE_BYTES_MAX, SnapshotError, StateMachine,
    StoreError, WriteBatch,
};
use dsss_wire::{ClientId, ObjectId, Record, RegionId, RequestSequence, Scope, Timestamp};

use crate::bytes::{FNV_OFFSET, Reader, corrupt, fnv1a};
use crate::checkpoint::transfer::StateStaging;
use crate::checkpoint::{
    ALARM_CLEAR_FORMAT, CHECKPOINT_FORMAT, CheckpointBounds, CheckpointOutcome, CheckpointRefusal,
    CheckpointSpace, CheckpointState, Header, SnapshotCheckpoints, decode_alarm_clear_entry,
    decode_checkpoint_entry,
};
use crate::dedup::{
    DedupLimits, DedupTable, DedupVerdict, SessionRefusal, decode_window, encode_window,
};
use crate::global::adoption::{
    ADOPTION_FORMAT, AdoptionOutcome, GlobalPoint, decode_adoption_entry,
};
use crate::global::entry::{
    CLOSE_BATCH_FORMAT, EPOCH_PART_FORMAT, EpochPart, decode_close_batch, decode_epoch_part,
};
use crate::global::skip::{EpochsSkip, SKIP_FORMAT, decode_skip_entry};
use crate::global::state::{GlobalState, MembershipChange, OutgoingBatch};
use crate::log_blocks::LogBlocks;
use crate::record::{
    BATCH_FORMAT, LogEntry, STORED_ENTRY_BYTES_MAX, decode_batch, decode_entry, encode_entry,
    encode_record,
};

/// The records of the region log, keyed by big-endian position.
pub const REGION_LOG: KeySpace = KeySpace::new("region_log");

/// The region log's state: positions, digest and the dedup table.
pub const REGION_STATE: KeySpace = KeySpace::new("region_state");

/// The key of the log's counters in [`REGION_STATE`].
pub const META_KEY: &[u8] = b"meta";

/// The key in [`REGION_STATE`] that names where this node keeps its checkpoint state
/// ([`CheckpointSpace`]): the node's own, not replicated.
const CHECKPOINT_SPACE_KEY: &[u8] = b"checkpoint_space";

/// The largest `records_max` a [`RegionLogRetention`] may set.
pub const RETAINED_RECORDS_MAX: u64 = 10_000_000;

/// The largest `size_bytes_max` a [`RegionLogRetention`] may set.
pub const RETAINED_SIZE_BYTES_MAX: u64 = 64 * 1024 * 1024 * 1024;

/// The share of the quota past which a region releases records that no checkpoint covers,
/// unless the topology says otherwise (`region_log_release_share_percent`).
pub const RELEASE_SHARE_PERCENT_DEFAULT: u8 = 75;

/// The log age past which a region releases records that no checkpoint covers, unless the
/// topology says otherwise (`region_log_release_age_s`): seven days.
pub const RELEASE_AGE_US_DEFAULT: u64 = 7 * 24 * 3_600 * 1_000_000;

/// The largest `release_age_us`: a year.
pub const RELEASE_AGE_US_MAX: u64 = 365 * 24 * 3_600 * 1_000_000;

/// The most bytes of entries a node keeps in memory to serve readers that keep up; older
/// entries are read from the store.
pub const LOG_CACHE_BYTES_MAX: u64 = 32 * 1024 * 1024;

/// The most entries a node keeps in memory (see [`LOG_CACHE_BYTES_MAX`]).
pub const LOG_CACHE_RECORDS_MAX: usize = 65_536;

/// The largest snapshot, in bytes: it travels in one raft message.
pub const SNAPSHOT_BYTES_MAX: usize = RAFT_MESSAGE_BYTES_MAX - 1024 * 1024;

/// The bytes of the counters a snapshot carries after its format byte: next position, first
/// retained position, digest, last assigned timestamp.
const META_FIELDS_BYTES: usize = 8 + 8 + 8 + 8 + 4;

/// The largest session table in a snapshot: every session with a full window.
const DEDUP_SNAPSHOT_BYTES_MAX: usize =
    4 + crate::dedup::SESSIONS_MAX * (8 + 20 + 16 * crate::dedup::DEDUP_WINDOW_MAX);

/// The format byte of an entry that opens a client session.
pub(crate) const SESSION_OPEN_FORMAT: u8 = 5;

/// The format byte of an entry that closes a client session at its client's request.
pub(crate) const SESSION_CLOSE_FORMAT: u8 = 6;

/// The largest global state in a snapshot: its header (read back with a bound of 1 MiB) and
/// every unsealed record the bounds allow.
const GLOBAL_SNAPSHOT_BYTES_MAX: usize = 4
    + 1024 * 1024
    + 8
    + crate::global::GLOBAL_UNSEALED_RECORDS_MAX * (8 + 4)
    + crate::global::GLOBAL_UNSEALED_SIZE_BYTES_MAX as usize
    + crate::record::RECORD_BYTES_MAX;

// With every bound of the replicated state reached, a snapshot still fits in one raft message.
const _: () = assert!(
    1 + META_FIELDS_BYTES
        + DEDUP_SNAPSHOT_BYTES_MAX
        + GLOBAL_SNAPSHOT_BYTES_MAX
        + crate::checkpoint::SNAPSHOT_PART_BYTES_MAX
        + crate::log_blocks::SNAPSHOT_PART_BYTES_MAX
        <= SNAPSHOT_BYTES_MAX
);

/// How many keys one scan of the store returns while recovering.
const RECOVERY_SCAN_CHUNK_MAX: usize = 1_024;

const META_FORMAT: u8 = 2;
const SNAPSHOT_FORMAT: u8 = 8;

/// A key greater than every 8-byte position key.
const LOG_END_KEY: [u8; 9] = [0xff; 9];

/// How large the region log may grow above its truncation point, and when it releases records
/// that no checkpoint covers.
///
/// At the quota (`records_max`, `size_bytes_max`; the topology's `region_log_quota_mb`) a node
/// refuses new proposals with [`crate::ProposeError::LogFull`], naming the objects that hold
/// truncation back. Before that, past `release_share_percent` of the quota, or for entries
/// older than `release_age_us` of log time, truncation releases the objects that hold it
/// back (see [`crate::checkpoint`], "Releasing records nobody follows"), oldest blocks
/// first, down to seven eighths of that share. Every count is replicated state (see
/// [`LogBlocks`]), so every member refuses and releases at the same point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionLogRetention {
    /// The most entries above the truncation point (at most [`RETAINED_RECORDS_MAX`]).
    pub records_max: u64,
    /// The most bytes of encoded entries above the truncation point, counted by whole blocks
    /// of positions (at most [`RETAINED_SIZE_BYTES_MAX`]).
    pub size_bytes_max: u64,
    /// The share of both bounds, in percent, past which truncation releases records that no
    /// checkpoint covers; 0 never releases for size (then the quota refuses writes instead).
    pub release_share_percent: u8,
    /// The log time, in microseconds, after which an entry's block is released even below
    /// the share; 0 never releases for age.
    pub release_age_us: u64,
}

impl Default for RegionLogRetention {
    fn default() -> Self {
        RegionLogRetention {
            records_max: 4_000_000,
            size_bytes_max: 1024 * 1024 * 1024,
            release_share_percent: RELEASE_SHARE_PERCENT_DEFAULT,
            release_age_us: RELEASE_AGE_US_DEFAULT,
        }
    }
}

impl RegionLogRetention {
    /// Checks both bounds, naming the first out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.records_max == 0 || self.records_max > RETAINED_RECORDS_MAX {
            return Err(format!(
                "retention records_max {} is outside 1..={RETAINED_RECORDS_MAX}",
                self.records_max
            ));
        }
        if self.size_bytes_max == 0 || self.size_bytes_max > RETAINED_SIZE_BYTES_MAX {
            return Err(format!(
                "retention size_bytes_max {} is outside 1..={RETAINED_SIZE_BYTES_MAX}",
                self.size_bytes_max
            ));
        }
        if self.release_share_percent > 100 {
            return Err(format!(
                "retention release_share_percent {} is outside 0..=100",
                self.release_share_percent
            ));
        }
        if self.release_age_us > RELEASE_AGE_US_MAX {
            return Err(format!(
                "retention release_age_us {} is outside 0..={RELEASE_AGE_US_MAX} (a year)",
                self.release_age_us
            ));
        }
        Ok(())
    }
}

/// An entry in the log with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Its position, from 1.
    pub position: u64,
    /// The entry.
    pub entry: LogEntry,
    /// The size of its stored form, in bytes.
    pub size_bytes: u64,
}

/// What happened to one record of an applied entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    /// An entry was appended at `position`: a proposed record (regional or pending global),
    /// or a sequenced global record or an epoch end from a sealed epoch.
    Appended {
        /// Its position.
        position: u64,
        /// The entry.
        entry: LogEntry,
    },
    /// The pair was applied before, at `position`; nothing appended.
    Duplicate {
        /// The client.
        client_id: ClientId,
        /// The client's sequence.
        request_sequence: RequestSequence,
        /// The position of the first copy.
        position: u64,
    },
    /// The record's session is not open (never opened, or ended by idleness); nothing
    /// appended. The call may have been applied while the session lived, so it is refused
    /// rather than applied again.
    UnknownSession {
        /// The session.
        client_id: ClientId,
        /// The session's sequence.
        request_sequence: RequestSequence,
    },
    /// The sequence is below the client's dedup window; nothing appended.
    TooOld {
        /// The client.
        client_id: ClientId,
        /// The client's sequence.
        request_sequence: RequestSequence,
        /// The lowest sequence the window can still judge.
        floor: u64,
    },
    /// The record's object cannot be tracked for truncation (too many objects lack a
    /// checkpoint); nothing appended.
    LogFull {
        /// The client.
        client_id: ClientId,
        /// The client's sequence.
        request_sequence: RequestSequence,
        /// Why, naming the objects that hold truncation back.
        reason: String,
    },
    /// A global record that would pass the region's bounds on unsealed records; nothing
    /// appended.
    Overloaded {
        /// The client.
        client_id: ClientId,
        /// The client's sequence.
        request_sequence: RequestSequence,
        /// The bound that is reached.
        bound: String,
    },
}

/// What applying one raft entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryOutcome {
    /// The entry's records, in order.
    Records(Vec<RecordOutcome>),
    /// A `CloseBatch`: the batch it closed, or none when the outgoing bound is reached.
    BatchClosed(Option<OutgoingBatch>),
    /// A part of a sealed epoch.
    EpochPart {
        /// The epoch.
        epoch_number: u64,
        /// The part.
        part_index: u32,
        /// Why it was not taken (a duplicate, or not the next part), or none when it was.
        ignored: Option<String>,
        /// The sequenced records and epoch end appended, in order.
        appended: Vec<RecordOutcome>,
        /// What the epoch's end changed in the region's membership.
        membership: MembershipChange,
    },
    /// A skip of sealed epochs no log held any longer.
    EpochsSkipped {
        /// The first epoch skipped.
        first_skipped: u64,
        /// The last.
        through_epoch: u64,
        /// Why it was not taken (it does not start at the epoch the region appends next), or
        /// none when it was.
        ignored: Option<String>,
        /// The epoch end appended, then one [`RecordOutcome::Duplicate`] at its position for
        /// each record of this region that the skipped epochs sealed.
        appended: Vec<RecordOutcome>,
        /// What the skip changed in the region's membership.
        membership: MembershipChange,
    },
    /// A checkpoint upload: what the region did with it. It takes no log position.
    Checkpoint {
        /// The node that proposed it and its number there.
        proposer: (u64, u64),
        /// The object.
        object_id: ObjectId,
        /// The outcome, or why it was refused.
        outcome: Result<CheckpointOutcome, CheckpointRefusal>,
    },
    /// A global object's checkpoint adopted from another region (or why not). It takes no
    /// log position.
    Adoption {
        /// The node that proposed it and its read number there.
        proposer: (u64, u64),
        /// The object.
        object_id: ObjectId,
        /// What applying it did, or why it was refused.
        outcome: Result<AdoptionOutcome, CheckpointRefusal>,
    },
    /// A client session open: whether the session lives now. It takes no log position.
    SessionOpened {
        /// The node that proposed it and its number there.
        proposer: (u64, u64),
        /// The session.
        session_id: u64,
        /// Open, or why not.
        outcome: Result<(), SessionRefusal>,
    },
    /// A client session close: whether the session lived until this entry. It takes no log
    /// position.
    SessionClosed {
        /// The node that proposed it and its number there.
        proposer: (u64, u64),
        /// The session.
        session_id: u64,
        /// The session lived and is closed now; false when it had ended or never opened.
        was_open: bool,
    },
    /// The entry did not decode; every member refuses it alike and nothing changes.
    Refused {
        /// Why.
        reason: String,
    },
}

/// The region log. See the module documentation. Two logs are equal when their state is
/// (the cache of the newest entries, a copy of what the store holds, is left out).
#[derive(Clone, Debug)]
pub struct RegionLog {
    retention: RegionLogRetention,
    region: RegionId,
    next_position: u64,
    first_retained_position: u64,
    digest: u64,
    last_assigned: Timestamp,
    /// The newest entries, ending just before `next_position`.
    cache: VecDeque<LogRecord>,
    cache_size_bytes: u64,
    blocks: LogBlocks,
    dedup: DedupTable,
    global: GlobalState,
    checkpoints: CheckpointState,
    /// Where this node keeps the checkpoint state (its own choice, not replicated).
    checkpoint_space: CheckpointSpace,
    /// A snapshot's checkpoint state fetched whole into the other space, waiting for raft to
    /// restore the snapshot: where, and the counters it adds up to.
    staged: Option<(CheckpointSpace, Header)>,
}

impl PartialEq for RegionLog {
    fn eq(&self, other: &Self) -> bool {
        self.retention == other.retention
            && self.region == other.region
            && self.next_position == other.next_position
            && self.first_retained_position == other.first_retained_position
            && self.digest == other.digest
            && self.last_assigned == other.last_assigned
            && self.blocks == other.blocks
            && self.dedup == other.dedup
            && self.global == other.global
            && self.checkpoints == other.checkpoints
    }
}

impl Eq for RegionLog {}

/// A decoded snapshot, checked.
struct DecodedSnapshot {
    next_position: u64,
    digest: u64,
    last_assigned: Timestamp,
    dedup: DedupTable,
    global: GlobalState,
    checkpoints: SnapshotCheckpoints,
    blocks: LogBlocks,
}

/// What a snapshot's state stands on: a member must hold every entry in
/// `(truncated_through, next_position)`, and the checkpoint state when it has any, before it
/// takes the snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotSpan {
    /// The snapshot's truncation point.
    pub truncated_through: u64,
    /// The position the next record takes after the snapshot.
    pub next_position: u64,
    /// The checkpoint state to fetch from the sender's view, when the snapshot keeps any
    /// ([`crate::checkpoint::transfer`]).
    pub state: Option<StateToFetch>,
}

/// The checkpoint state a snapshot counts, to fetch from the view its sender pinned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateToFetch {
    /// Where the sender keeps the state, so where its view holds it.
    pub sender_space: CheckpointSpace,
    expected: Header,
}

/// The key of `position` in [`REGION_LOG`].
pub fn position_key(position: u64) -> [u8; 8] {
    position.to_be_bytes()
}

impl RegionLog {
    /// An empty log of `region`: the first record will be at position 1.
    ///
    /// # Panics
    ///
    /// If `retention` is out of range (the node's configuration checks it first).
    pub fn new(retention: RegionLogRetention, region: RegionId) -> Self {
        if let Err(reason) = retention.validate() {
            panic!("invalid region log retention: {reason}");
        }
        RegionLog {
            retention,
            region,
            next_position: 1,
            first_retained_position: 1,
            digest: FNV_OFFSET,
            last_assigned: Timestamp::ZERO,
            cache: VecDeque::new(),
            cache_size_bytes: 0,
            blocks: LogBlocks::default(),
            dedup: DedupTable::new(DedupLimits::STANDARD),
            global: GlobalState::default(),
            checkpoints: CheckpointState::new(CheckpointBounds::for_quota(
                retention.size_bytes_max,
            )),
            checkpoint_space: CheckpointSpace::A,
            staged: None,
        }
    }

    // Getters.

    /// Where this node keeps its checkpoint state.
    pub fn checkpoint_space(&self) -> CheckpointSpace {
        self.checkpoint_space
    }

    /// A fetch of the checkpoint state `to_fetch` of a snapshot whose next position is
    /// `next_position`, into the space this node does not use.
    pub fn stage_state(&self, to_fetch: &StateToFetch, next_position: u64) -> StateStaging {
        StateStaging::new(
            self.checkpoint_space.other(),
            to_fetch.expected,
            next_position,
        )
    }

    /// The snapshot's state was fetched whole by `staging`: a snapshot whose counters are its
    /// counters may now be taken. False (and nothing noted) when this node switched spaces
    /// since the fetch began.
    pub fn note_staged(&mut self, staging: &StateStaging, to_fetch: &StateToFetch) -> bool {
        if staging.space() == self.checkpoint_space {
            return false;
        }
        self.staged = Some((staging.space(), to_fetch.expected));
        true
    }

    /// The position the next record will take.
    pub fn next_position(&self) -> u64 {
        self.next_position
    }

    /// The position of the last record applied, 0 before the first.
    pub fn last_position(&self) -> u64 {
        self.next_position - 1
    }

    /// The position of the oldest record this node still keeps: above the region's
    /// truncation point, or further up after a snapshot that could not carry every entry.
    pub fn first_retained_position(&self) -> u64 {
        self.first_retained_position
    }

    /// The region's truncation point: every member may drop the entries at or below it.
    pub fn truncated_through(&self) -> u64 {
        self.checkpoints.truncated_through()
    }

    /// The region's checkpoints and what they allow to truncate.
    pub fn checkpoints(&self) -> &CheckpointState {
        &self.checkpoints
    }

    /// The newest checkpoint of `object_id` as a caller starts from it, read from `store`.
    pub fn fetch_checkpoint(
        &self,
        store: &dyn DurableStore,
        object_id: &ObjectId,
    ) -> Result<crate::checkpoint::CheckpointFetch, StoreError> {
        self.checkpoints
            .fetch(store, self.checkpoint_space.key_space(), object_id)
    }

    /// For a global object: the position of the region's latest skip of sealed epochs when
    /// the newest checkpoint kept of it lies below it (see
    /// [`CheckpointState::stale_by_skip`]), read from `store`.
    pub fn checkpoint_stale_by_skip(
        &self,
        store: &dyn DurableStore,
        object_id: &ObjectId,
    ) -> Result<Option<u64>, StoreError> {
        self.checkpoints
            .stale_by_skip(store, self.checkpoint_space.key_space(), object_id)
    }

    /// Whether `object_id` has a record above its newest checkpoint (or, without one, above
    /// the truncation point), read from `store`.
    pub fn checkpoint_is_uncovered(
        &self,
        store: &dyn DurableStore,
        object_id: &ObjectId,
    ) -> Result<bool, StoreError> {
        self.checkpoints
            .is_uncovered(store, self.checkpoint_space.key_space(), object_id)
    }

    /// The digest chained over every record applied so far.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// The last timestamp the region assigned (to a record or as a closed timestamp): every
    /// record applied later gets a greater one.
    pub fn last_assigned(&self) -> Timestamp {
        self.last_assigned
    }

    /// The region whose log this is.
    pub fn region(&self) -> &RegionId {
        &self.region
    }

    /// The region's side of the global tier.
    pub fn global(&self) -> &GlobalState {
        &self.global
    }

    /// The newest entries, oldest first, as the node holds them in memory: every retained
    /// entry while the log is small, the newest [`LOG_CACHE_BYTES_MAX`] of it otherwise. The
    /// whole retained log is in the store ([`RegionLog::read`]).
    pub fn cached_records(&self) -> impl Iterator<Item = &LogRecord> {
        self.cache.iter()
    }

    /// Whether every entry this node retains is also in memory: true while the retained log
    /// fits in the cache. A check that walks [`RegionLog::cached_records`] as the whole log
    /// must hold this, or read the store.
    pub fn cache_holds_every_retained_entry(&self) -> bool {
        self.cache.front().map_or(
            self.first_retained_position == self.next_position,
            |first| first.position == self.first_retained_position,
        )
    }

    /// The entry at `position`, if the node holds it in memory.
    pub fn cached_record(&self, position: u64) -> Option<&LogRecord> {
        let first = self.cache.front()?.position;
        let offset = position.checked_sub(first)?;
        self.cache.get(usize::try_from(offset).ok()?)
    }

    /// The bytes of the entries in memory.
    pub fn cache_size_bytes(&self) -> u64 {
        self.cache_size_bytes
    }

    /// The bytes of the log above the truncation point (counted by whole blocks of positions,
    /// see [`LogBlocks`]), the same on every member.
    pub fn retained_size_bytes(&self) -> u64 {
        self.blocks
            .size_bytes_above(self.truncated_through(), self.last_position())
    }

    /// The log's blocks of positions above the truncation point.
    pub fn blocks(&self) -> &LogBlocks {
        &self.blocks
    }

    /// Reads the retained entries from `from_position` on, from memory or from `store` (the
    /// store this log persists to), in order: at most `records_max`, and no more than
    /// `bytes_max` bytes beyond the first entry (the first is read whatever its size, so a
    /// reader always moves on). Empty when `from_position` is below the first retained
    /// position or not applied yet.
    ///
    /// # Errors
    ///
    /// A store error, or [`StoreError::Corrupt`] naming the key when a stored entry does not
    /// decode or is missing.
    pub fn read(
        &self,
        store: &dyn DurableStore,
        from_position: u64,
        records_max: usize,
        bytes_max: u64,
    ) -> Result<Vec<LogRecord>, StoreError> {
        let mut records = Vec::new();
        if from_position < self.first_retained_position || from_position >= self.next_position {
            return Ok(records);
        }
        let mut size_bytes = 0u64;
        let mut position = from_position;
        let cache_first = self
            .cache
            .front()
            .map_or(self.next_position, |first| first.position);
        let full = |records: &Vec<LogRecord>, size_bytes: u64, next_size: u64| {
            records.len() >= records_max
                || (!records.is_empty() && size_bytes + next_size > bytes_max)
        };
        while position < cache_first && records.len() < records_max {
            let limit = (records_max - records.len()).min(RECOVERY_SCAN_CHUNK_MAX);
            let chunk = store.scan(
                REGION_LOG,
                &position_key(position),
                &position_key(cache_first),
                limit,
            )?;
            if chunk.is_empty() {
                return Err(self.missing_entry(position));
            }
            for (key, value) in chunk {
                let log_record = decode_stored(position, &key, &value)?;
                if full(&records, size_bytes, log_record.size_bytes) {
                    return Ok(records);
                }
                size_bytes += log_record.size_bytes;
                records.push(log_record);
                position += 1;
            }
        }
        // Positions in the cache are dense, so the first wanted entry is found by its offset
        // rather than by walking the (up to LOG_CACHE_RECORDS_MAX) entries before it.
        let cache_offset =
            usize::try_from(position.saturating_sub(cache_first)).unwrap_or(usize::MAX);
        // (Still short of the cache here only when the store's part filled the read.)
        debug_assert!(
            position < cache_first
                || self
                    .cache
                    .get(cache_offset)
                    .is_none_or(|cached| cached.position == position),
            "the log cache holds dense positions"
        );
        for log_record in self.cache.range(cache_offset.min(self.cache.len())..) {
            if full(&records, size_bytes, log_record.size_bytes) {
                break;
            }
            size_bytes += log_record.size_bytes;
            records.push(log_record.clone());
        }
        Ok(records)
    }

    /// The dedup table.
    pub fn dedup(&self) -> &DedupTable {
        &self.dedup
    }

    /// The bounds on the log above its truncation point.
    pub fn retention(&self) -> RegionLogRetention {
        self.retention
    }

    /// Whether the log takes a new record now, by the bounds of this node: the log above the
    /// truncation point holds fewer entries and bytes than [`RegionLogRetention`] allows. The
    /// error says which bound is reached and names the objects that hold truncation back.
    /// Whether the record's object can be tracked takes a read of the store: apply decides
    /// it ([`RecordOutcome::LogFull`]).
    pub fn admit(&self) -> Result<(), String> {
        let entries = self.last_position() - self.truncated_through();
        if entries >= self.retention.records_max
            || self.retained_size_bytes() >= self.retention.size_bytes_max
        {
            return Err(format!(
                "the region log is at its quota: it holds {entries} entries ({} bytes) above \
                 its truncation point {}, the most it may (at most {} entries, and \
                 region_log_quota_mb = {} MiB in the topology), because objects lack a \
                 checkpoint covering their records: {}",
                self.retained_size_bytes(),
                self.truncated_through(),
                self.retention.records_max,
                self.retention.size_bytes_max / (1024 * 1024),
                self.checkpoints
                    .blocking_objects(crate::checkpoint::NAMED_OBJECTS_MAX)
                    .join(", ")
            ));
        }
        Ok(())
    }

    // Applying.

    /// Ends the sessions idle past the timeout at log time `now_us`, except those with a
    /// global call waiting for its epoch (see [`DedupTable::expire_keeping`]).
    fn expire_sessions(&mut self, now_us: u64, batch: &mut WriteBatch) {
        let global = &self.global;
        self.dedup
            .expire_keeping(now_us, REGION_STATE, batch, |session_id| {
                global.has_unsealed_of(session_id)
            });
    }

    fn apply_record(
        &mut self,
        mut record: Record,
        store: &dyn DurableStore,
        batch: &mut WriteBatch,
    ) -> Result<RecordOutcome, StoreError> {
        let position = self.next_position;
        let client_id = record.client_id;
        let request_sequence = record.request_sequence;
        // The record's final timestamp (below) is at least this; its physical part is the
        // log time that session lifetimes are counted in.
        let now_us = record.timestamp.max(self.last_assigned).physical_us;
        self.expire_sessions(now_us, batch);
        let global = record.scope == Scope::Global;
        if global
            && let Some(position) = self
                .global
                .unsealed_position(client_id.get(), request_sequence.get())
        {
            // A call whose pending record waits for its epoch keeps it, even when its
            // session ended meanwhile (the coordinator was away longer than the idle
            // timeout): the retry is answered once the epoch is sealed.
            return Ok(RecordOutcome::Duplicate {
                client_id,
                request_sequence,
                position,
            });
        }
        match self.dedup.check(client_id.get(), request_sequence.get()) {
            DedupVerdict::Duplicate { position } => {
                return Ok(RecordOutcome::Duplicate {
                    client_id,
                    request_sequence,
                    position,
                });
            }
            DedupVerdict::TooOld { floor } => {
                return Ok(RecordOutcome::TooOld {
                    client_id,
                    request_sequence,
                    floor,
                });
            }
            DedupVerdict::UnknownSession => {
                return Ok(RecordOutcome::UnknownSession {
                    client_id,
                    request_sequence,
                });
            }
            DedupVerdict::New => {}
        }
        if let Err(reason) = self.checkpoints.admit_record(
            store,
            self.checkpoint_space.key_space(),
            &record.object_id,
        )? {
            return Ok(RecordOutcome::LogFull {
                client_id,
                request_sequence,
                reason,
            });
        }
        if global && let Err(bound) = self.global.admit(encode_record(&record).len() as u64) {
            return Ok(RecordOutcome::Overloaded {
                client_id,
                request_sequence,
                bound,
            });
        }
        // The timestamp is final here, in log order, the same on every member.
        record.timestamp = record.timestamp.max(self.last_assigned.successor());
        self.last_assigned = record.timestamp;
        self.dedup.record(
            client_id.get(),
            request_sequence.get(),
            position,
            record.timestamp.physical_us,
            REGION_STATE,
            batch,
        );
        let entry = if global {
            self.global
                .add_pending(REGION_STATE, position, record.clone(), batch);
            LogEntry::PendingGlobal(record)
        } else {
            LogEntry::Regional(record)
        };
        self.append(position, entry.clone(), store, batch)?;
        Ok(RecordOutcome::Appended { position, entry })
    }

    fn apply_session_open(&mut self, payload: &[u8], batch: &mut WriteBatch) -> EntryOutcome {
        let decoded = decode_session_open(payload);
        let (session_id, proposed, proposer) = match decoded {
            Ok(fields) => fields,
            Err(reason) => return EntryOutcome::Refused { reason },
        };
        // An open takes no position and assigns no timestamp; the log time it counts from is
        // the leader's clock when it proposed the open, never below what the log assigned.
        let now_us = proposed.max(self.last_assigned).physical_us;
        self.expire_sessions(now_us, batch);
        let outcome = self.dedup.open(session_id, now_us, REGION_STATE, batch);
        EntryOutcome::SessionOpened {
            proposer,
            session_id,
            outcome,
        }
    }

    fn apply_session_close(&mut self, payload: &[u8], batch: &mut WriteBatch) -> EntryOutcome {
        let (session_id, proposer) = match decode_session_close(payload) {
            Ok(fields) => fields,
            Err(reason) => return EntryOutcome::Refused { reason },
        };
        let was_open = self.dedup.close(session_id, REGION_STATE, batch);
        EntryOutcome::SessionClosed {
            proposer,
            session_id,
            was_open,
        }
    }

    fn apply_close_batch(
        &mut self,
        proposed_closed: Timestamp,
        acknowledged: (u64, u64),
    ) -> EntryOutcome {
        self.global.batches_acknowledged(acknowledged);
        if !self.global.can_close_batch() {
            return EntryOutcome::BatchClosed(None);
        }
        let closed = proposed_closed.max(self.last_assigned);
        self.last_assigned = closed;
        EntryOutcome::BatchClosed(self.global.close_batch(closed))
    }

    fn apply_epoch_part(
        &mut self,
        part: EpochPart,
        store: &dyn DurableStore,
        batch: &mut WriteBatch,
    ) -> Result<EntryOutcome, StoreError> {
        let (epoch_number, part_index) = (part.epoch_number, part.part_index);
        if let Err(reason) = self.global.check_next_part(&part) {
            return Ok(EntryOutcome::EpochPart {
                epoch_number,
                part_index,
                ignored: Some(reason),
                appended: Vec::new(),
                membership: MembershipChange::Unchanged,
            });
        }
        let mut appended = Vec::with_capacity(part.records.len() + 1);
        let mut index_in_epoch = self.global.next_index_in_epoch();
        for record in &part.records {
            let position = self.next_position;
            if record.origin_region == self.region {
                let key = (record.client_id.get(), record.request_sequence.get());
                if self
                    .global
                    .seal(REGION_STATE, key.0, key.1, batch)
                    .is_some()
                {
                    // From now on a retry of the call learns its sequenced position.
                    let now_us = record.timestamp.physical_us;
                    self.dedup
                        .relocate(key.0, key.1, position, now_us, REGION_STATE, batch);
                }
            }
            let entry = LogEntry::SequencedGlobal {
                epoch_number,
                index_in_epoch,
                record: record.clone(),
            };
            index_in_epoch = index_in_epoch.saturating_add(1);
            self.append(position, entry.clone(), store, batch)?;
            appended.push(RecordOutcome::Appended { position, entry });
        }
        let mut membership = MembershipChange::Unchanged;
        if let Some((epoch_number, watermark, previous_watermark, record_count)) =
            self.global.part_applied(&part)
        {
            let position = self.next_position;
            let entry = LogEntry::EpochSealed {
                epoch_number,
                watermark,
                previous_watermark,
                record_count,
                member_regions: part.member_regions.clone(),
                skipped_from: 0,
            };
            self.append(position, entry.clone(), store, batch)?;
            appended.push(RecordOutcome::Appended { position, entry });
            membership = self.global.epoch_applied(
                epoch_number,
                watermark,
                &part.member_regions,
                &self.region,
            );
        }
        Ok(EntryOutcome::EpochPart {
            epoch_number,
            part_index,
            ignored: None,
            appended,
            membership,
        })
    }

    /// Applies a skip of sealed epochs no log held any longer (see [`crate::global::skip`]).
    fn apply_skip(
        &mut self,
        skip: EpochsSkip,
        store: &dyn DurableStore,
        batch: &mut WriteBatch,
    ) -> Result<EntryOutcome, StoreError> {
        if let Err(reason) = self.global.check_skip(&skip) {
            return Ok(EntryOutcome::EpochsSkipped {
                first_skipped: skip.first_skipped,
                through_epoch: skip.end.epoch_number,
                ignored: Some(reason),
                appended: Vec::new(),
                membership: MembershipChange::Unchanged,
            });
        }
        let position = self.next_position;
        let entry = LogEntry::EpochSealed {
            epoch_number: skip.end.epoch_number,
            watermark: skip.end.watermark,
            previous_watermark: (skip.first_skipped > 1).then(|| self.global.watermark()),
            record_count: 0,
            member_regions: skip.end.member_regions.clone(),
            skipped_from: skip.first_skipped,
        };
        self.append(position, entry.clone(), store, batch)?;
        let mut appended = vec![RecordOutcome::Appended { position, entry }];
        // The records the skipped epochs sealed: a retry of their calls learns this position,
        // through which their effects are in every checkpoint adopted from now on.
        let now_us = skip.end.watermark.physical_us;
        for (client_id, request_sequence) in
            self.global
                .take_sealed_through(REGION_STATE, skip.sealed_through, batch)
        {
            self.dedup.relocate(
                client_id,
                request_sequence,
                position,
                now_us,
                REGION_STATE,
                batch,
            );
            appended.push(RecordOutcome::Duplicate {
                client_id: ClientId(client_id),
                request_sequence: RequestSequence(request_sequence),
                position,
            });
        }
        self.checkpoints
            .note_global_skip(self.checkpoint_space.key_space(), batch, position);
        let membership = self.global.skip_applied(&skip.end, &self.region);
        Ok(EntryOutcome::EpochsSkipped {
            first_skipped: skip.first_skipped,
            through_epoch: skip.end.epoch_number,
            ignored: None,
            appended,
            membership,
        })
    }

    fn append(
        &mut self,
        position: u64,
        entry: LogEntry,
        store: &dyn DurableStore,
        batch: &mut WriteBatch,
    ) -> Result<(), StoreError> {
        // Positions are dense and only grow, and a position is written once: an applied
        // record never changes.
        assert_eq!(
            position, self.next_position,
            "positions are assigned in order"
        );
        assert!(
            self.cache
                .back()
                .is_none_or(|last| last.position + 1 == position),
            "the retained log has no gap before position {position}"
        );
        let entry_time_us = match &entry {
            LogEntry::Regional(record)
            | LogEntry::PendingGlobal(record)
            | LogEntry::SequencedGlobal { record, .. } => record.timestamp.physical_us,
            LogEntry::EpochSealed { watermark, .. } => watermark.physical_us,
        };
        if let LogEntry::Regional(record) | LogEntry::SequencedGlobal { record, .. } = &entry {
            self.checkpoints.record_appended(
                store,
                self.checkpoint_space.key_space(),
                batch,
                &record.object_id,
                position,
            )?;
        }
        let bytes = encode_entry(position, &entry);
        let size_bytes = bytes.len() as u64;
        self.digest = fnv1a(fnv1a(self.digest, &position.to_be_bytes()), &bytes);
        self.next_position += 1;
        self.blocks.appended(
            position,
            size_bytes,
            entry_time_us.max(self.last_assigned.physical_us),
            REGION_STATE,
            batch,
        );
        batch.put(REGION_LOG, position_key(position).to_vec(), bytes);
        self.cache_push(LogRecord {
            position,
            entry,
            size_bytes,
        });
        Ok(())
    }

    /// Adds the newest entry to the cache and drops the oldest beyond its bounds (the newest
    /// always stays).
    fn cache_push(&mut self, log_record: LogRecord) {
        self.cache_size_bytes += log_record.size_bytes;
        self.cache.push_back(log_record);
        while self.cache.len() > 1
            && (self.cache.len() > LOG_CACHE_RECORDS_MAX
                || self.cache_size_bytes > LOG_CACHE_BYTES_MAX)
        {
            let dropped = self.cache.pop_front().expect("more than one entry");
            self.cache_size_bytes -= dropped.size_bytes;
        }
    }

    fn apply_checkpoint(
        &mut self,
        payload: &[u8],
        store: &dyn DurableStore,
        batch: &mut WriteBatch,
    ) -> Result<EntryOutcome, StoreError> {
        let (upload, proposer) = match decode_checkpoint_entry(payload) {
            Ok(decoded) => decoded,
            Err(reason) => {
                return Ok(EntryOutcome::Refused {
                    reason: format!("checkpoint entry: {reason}"),
                });
            }
        };
        let object_id = upload.object_id.clone();
        let last_position = self.last_position();
        let space = self.checkpoint_space.key_space();
        let outcome = self
            .checkpoints
            .apply_upload(upload, last_position, store, space, batch)?;
        Ok(EntryOutcome::Checkpoint {
            proposer,
            object_id,
            outcome,
        })
    }

    /// Drops the retained entries at or below the truncation point, once the checkpoints
    /// allow it to rise.
    fn truncate(
        &mut self,
        store: &dyn DurableStore,
        batch: &mut WriteBatch,
    ) -> Result<(), StoreError> {
        let first_before = self.first_retained_position;
        let space = self.checkpoint_space.key_space();
        if let Some(target) = self.release_target(store)? {
            self.checkpoints
                .release_through(store, space, batch, target)?;
        }
        if let Some(truncated_through) =
            self.checkpoints
                .advance_truncation(store, space, batch, self.last_position())?
        {
            while let Some(front) = self.cache.front()
                && front.position <= truncated_through
            {
                let dropped = self.cache.pop_front().expect("checked above");
                self.cache_size_bytes -= dropped.size_bytes;
            }
            self.blocks
                .truncated(truncated_through, REGION_STATE, batch);
            self.first_retained_position = self.first_retained_position.max(truncated_through + 1);
        }
        if self.first_retained_position > first_before {
            batch.delete_range(
                REGION_LOG,
                position_key(first_before).to_vec(),
                position_key(self.first_retained_position).to_vec(),
            );
        }
        assert!(
            self.cache
                .back()
                .is_none_or(|last| last.position + 1 == self.next_position),
            "the cached records end just before the next position"
        );
        assert!(
            self.cache
                .front()
                .is_none_or(|first| first.position >= self.first_retained_position),
            "the cache holds no entry below the first retained position"
        );
        Ok(())
    }

    /// The position through which truncation should release records that no checkpoint
    /// covers, when the log is past the release share of its quota or its oldest blocks are
    /// past the release age (see [`RegionLogRetention`]); none otherwise, and none while an
    /// alarm stands (a diverged region keeps everything until the quota stops it).
    fn release_target(&self, store: &dyn DurableStore) -> Result<Option<u64>, StoreError> {
        let retention = self.retention;
        let last_position = self.last_position();
        let Some(limit) = self.checkpoints.truncation_limit(
            store,
            self.checkpoint_space.key_space(),
            last_position,
        )?
        else {
            return Ok(None);
        };
        if limit >= last_position {
            return Ok(None);
        }
        let truncated_through = self.truncated_through();
        let mut target = 0u64;
        let share = u64::from(retention.release_share_percent);
        if share > 0 {
            let share_bytes = retention.size_bytes_max / 100 * share;
            let mut remaining = self.retained_size_bytes();
            if remaining > share_bytes {
                // Down to seven eighths of the share, so that releases come in steps rather
                // than at every record.
                let low_bytes = share_bytes - share_bytes / 8;
                for span in self.blocks.spans_above(truncated_through, last_position) {
                    if remaining <= low_bytes {
                        break;
                    }
                    let needed = remaining - low_bytes;
                    if span.size_bytes <= needed {
                        remaining -= span.size_bytes;
                        target = span.last;
                        continue;
                    }
                    // Part of this block is enough: its positions in proportion to its bytes.
                    let positions = span.last - span.first + 1;
                    let part = (u128::from(needed) * u128::from(positions))
                        .div_ceil(u128::from(span.size_bytes))
                        as u64;
                    target = span.first + part.clamp(1, positions) - 1;
                    break;
                }
            }
            let share_records = retention.records_max / 100 * share;
            let entries = last_position - truncated_through;
            if entries > share_records {
                target = target.max(last_position - (share_records - share_records / 8));
            }
        }
        if retention.release_age_us > 0 {
            let now_us = self.last_assigned.physical_us;
            for span in self.blocks.spans_above(truncated_through, last_position) {
                if span.newest_us.saturating_add(retention.release_age_us) > now_us {
                    break;
                }
                target = target.max(span.last);
            }
        }
        if let Some(untracked_from) = self.checkpoints.untracked_from() {
            target = target.min(untracked_from - 1);
        }
        let target = target.min(last_position);
        Ok((target > limit).then_some(target))
    }

    fn encode_meta(&self) -> Vec<u8> {
        let mut bytes = vec![META_FORMAT];
        bytes.extend_from_slice(&self.next_position.to_be_bytes());
        bytes.extend_from_slice(&self.first_retained_position.to_be_bytes());
        bytes.extend_from_slice(&self.digest.to_be_bytes());
        bytes.extend_from_slice(&self.last_assigned.physical_us.to_be_bytes());
        bytes.extend_from_slice(&self.last_assigned.logical.to_be_bytes());
        bytes
    }

    fn write_meta(&self, batch: &mut WriteBatch) {
        batch.put(REGION_STATE, META_KEY, self.encode_meta());
        self.global.write(REGION_STATE, batch);
    }

    // Snapshots.

    /// The snapshot: the replicated state whole, without entries (see the module
    /// documentation).
    fn encode_snapshot(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.push(SNAPSHOT_FORMAT);
        bytes.extend_from_slice(&self.next_position.to_be_bytes());
        bytes.extend_from_slice(&(self.truncated_through() + 1).to_be_bytes());
        bytes.extend_from_slice(&self.digest.to_be_bytes());
        bytes.extend_from_slice(&self.last_assigned.physical_us.to_be_bytes());
        bytes.extend_from_slice(&self.last_assigned.logical.to_be_bytes());
        bytes.extend_from_slice(&(self.dedup.session_count() as u32).to_be_bytes());
        for (client_id, window) in self.dedup.sessions() {
            bytes.extend_from_slice(&client_id.to_be_bytes());
            bytes.extend_from_slice(&encode_window(window));
        }
        self.global.encode_snapshot(&mut bytes);
        self.checkpoints
            .encode_snapshot(self.checkpoint_space, &mut bytes);
        self.blocks.encode_snapshot(&mut bytes);
        debug_assert!(bytes.len() <= SNAPSHOT_BYTES_MAX);
        bytes
    }

    /// What a snapshot's state stands on, once the snapshot is checked whole.
    pub fn snapshot_span(&self, data: &[u8]) -> Result<SnapshotSpan, String> {
        self.decode_snapshot(data).map(|decoded| SnapshotSpan {
            truncated_through: decoded.checkpoints.truncated_through(),
            next_position: decoded.next_position,
            state: decoded
                .checkpoints
                .header
                .has_items()
                .then_some(StateToFetch {
                    sender_space: decoded.checkpoints.sender_space,
                    expected: decoded.checkpoints.header,
                }),
        })
    }

    fn decode_snapshot(&self, data: &[u8]) -> Result<DecodedSnapshot, String> {
        if data.len() > SNAPSHOT_BYTES_MAX {
            return Err(format!(
                "{} bytes, more than the maximum of {SNAPSHOT_BYTES_MAX}",
                data.len()
            ));
        }
        let mut reader = Reader::new(data);
        let format = reader.u8("snapshot format")?;
        if format != SNAPSHOT_FORMAT {
            return Err(format!(
                "format {format} is unknown; this release reads format {SNAPSHOT_FORMAT}"
            ));
        }
        let (next_position, first_retained_position, digest, last_assigned) =
            decode_meta_fields(&mut reader)?;
        let session_count = reader.u32("session count")? as usize;
        let limits = DedupLimits::STANDARD;
        if session_count > limits.sessions_max {
            return Err(format!(
                "{session_count} sessions, more than the maximum of {}",
                limits.sessions_max
            ));
        }
        let mut dedup = DedupTable::new(limits);
        for _ in 0..session_count {
            let session_id = reader.u64("session id")?;
            let window = decode_window(&mut reader, limits.window_max)
                .map_err(|reason| format!("session {session_id}: {reason}"))?;
            if let Some((sequence, position)) = window
                .applied
                .iter()
                .find(|(_, position)| **position >= next_position)
            {
                return Err(format!(
                    "session {session_id}: sequence {sequence} at position {position}, not below \
                     the next position {next_position}"
                ));
            }
            dedup.insert_recovered(session_id, window)?;
        }
        let global = GlobalState::decode_snapshot(&mut reader, next_position)?;
        let checkpoints = CheckpointState::decode_snapshot(&mut reader, next_position)?;
        let blocks = LogBlocks::decode_snapshot(&mut reader)?;
        reader.finish()?;
        blocks.check_span(checkpoints.truncated_through(), next_position)?;
        if first_retained_position != checkpoints.truncated_through() + 1 {
            return Err(format!(
                "its log starts at position {first_retained_position}, not just above its \
                 truncation point {}",
                checkpoints.truncated_through()
            ));
        }
        Ok(DecodedSnapshot {
            next_position,
            digest,
            last_assigned,
            dedup,
            global,
            checkpoints,
            blocks,
        })
    }

    /// A snapshot that keeps anything per object is taken only once its checkpoint state was
    /// fetched whole into the space this node does not use (see
    /// [`crate::checkpoint::transfer`]).
    fn check_staged(&self, decoded: &DecodedSnapshot) -> Result<(), SnapshotError> {
        let header = decoded.checkpoints.header;
        if header.has_items()
            && self
                .staged
                .is_none_or(|(space, staged)| staged != header || space == self.checkpoint_space)
        {
            return Err(SnapshotError::new(
                "region log checkpoint state of the snapshot was not fetched: this node holds \
                 no copy of its checkpoints, released and uncovered objects",
            ));
        }
        Ok(())
    }

    // Recovery.

    /// The error for an entry the log retains at `position` but the store lacks.
    fn missing_entry(&self, position: u64) -> StoreError {
        corrupt(
            REGION_LOG,
            &position_key(position),
            format!(
                "the log should hold positions {} to {}, but position {position} is missing",
                self.first_retained_position,
                self.next_position - 1
            ),
        )
    }

    /// A copy of this log whose cache holds every entry it retains, read back from `store`
    /// beyond the cache's bounds: for checks that walk whole logs (tests and the simulator's
    /// final checks), never for a serving node. An entry the log retains but the store lacks
    /// is an error naming it.
    pub fn with_every_entry_cached(
        &self,
        store: &dyn DurableStore,
    ) -> Result<RegionLog, StoreError> {
        let mut copy = self.clone();
        copy.cache.clear();
        copy.cache_size_bytes = 0;
        let mut position = self.first_retained_position;
        while position < self.next_position {
            let records = self.read(store, position, RECOVERY_SCAN_CHUNK_MAX, u64::MAX)?;
            if records.is_empty() {
                return Err(self.missing_entry(position));
            }
            for log_record in records {
                position = log_record.position + 1;
                copy.cache_size_bytes += log_record.size_bytes;
                copy.cache.push_back(log_record);
            }
        }
        Ok(copy)
    }

    /// Reads the newest entries back into the cache: at most [`LOG_CACHE_RECORDS_MAX`] of
    /// them are read, never the whole log.
    fn recover_cache(&mut self, store: &dyn DurableStore) -> Result<(), StoreError> {
        let from = self.first_retained_position.max(
            self.next_position
                .saturating_sub(LOG_CACHE_RECORDS_MAX as u64),
        );
        let mut position = from;
        // The scan ends at the log's end: entries beyond it are those a snapshot catch-up
        // fetched before the node stopped or dropped the snapshot (crate::snapshot_catch_up),
        // the very entries this member applies at those positions later, or a restore drops.
        // They are not part of the log yet.
        let end = position_key(self.next_position);
        while position < self.next_position {
            let chunk = store.scan(
                REGION_LOG,
                &position_key(position),
                &end,
                RECOVERY_SCAN_CHUNK_MAX,
            )?;
            if chunk.is_empty() {
                break;
            }
            for (key, value) in chunk {
                let log_record = decode_stored(position, &key, &value)?;
                self.cache_push(log_record);
                position += 1;
            }
        }
        if position != self.next_position {
            return Err(corrupt(
                REGION_STATE,
                META_KEY,
                format!(
                    "the log should hold positions {} to {}, but position {position} is missing",
                    self.first_retained_position,
                    self.next_position - 1
                ),
            ));
        }
        Ok(())
    }
}

/// Decodes the stored entry at `key`, which should be the one at `position`.
/// Checks an entry a peer sent for `position` (see [`crate::snapshot_catch_up`]): it decodes
/// and names that position.
pub(crate) fn decode_fetched(position: u64, bytes: &[u8]) -> Result<(), String> {
    if bytes.len() > STORED_ENTRY_BYTES_MAX {
        return Err(format!(
            "{} bytes, more than the maximum of {STORED_ENTRY_BYTES_MAX}",
            bytes.len()
        ));
    }
    let (stored_position, _) = decode_entry(bytes)?;
    if stored_position != position {
        return Err(format!(
            "the entry says it is at position {stored_position}"
        ));
    }
    Ok(())
}

fn decode_stored(position: u64, key: &[u8], value: &[u8]) -> Result<LogRecord, StoreError> {
    let key_position = <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt(REGION_LOG, key, "a position key is 8 bytes"))?;
    if key_position != position {
        return Err(corrupt(
            REGION_LOG,
            key,
            format!("expected position {position}, found {key_position}"),
        ));
    }
    let (stored_position, entry) =
        decode_entry(value).map_err(|error| corrupt(REGION_LOG, key, error))?;
    if stored_position != position {
        return Err(corrupt(
            REGION_LOG,
            key,
            format!("the entry says it is at position {stored_position}"),
        ));
    }
    Ok(LogRecord {
        position,
        entry,
        size_bytes: value.len() as u64,
    })
}

/// Encodes the entry that opens `session_id`: its format byte, the session, the proposing
/// leader's timestamp, and the proposer (node id, its number for the open) that waits for it.
pub(crate) fn encode_session_open(
    session_id: u64,
    proposed: Timestamp,
    proposer: (u64, u64),
) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + 8 + 12 + 16);
    bytes.push(SESSION_OPEN_FORMAT);
    bytes.extend_from_slice(&session_id.to_be_bytes());
    bytes.extend_from_slice(&proposed.physical_us.to_be_bytes());
    bytes.extend_from_slice(&proposed.logical.to_be_bytes());
    bytes.extend_from_slice(&proposer.0.to_be_bytes());
    bytes.extend_from_slice(&proposer.1.to_be_bytes());
    bytes
}

/// Decodes the body of a session open entry (after its format byte).
fn decode_session_open(payload: &[u8]) -> Result<(u64, Timestamp, (u64, u64)), String> {
    let mut reader = Reader::new(payload);
    let fields = (|| {
        let session_id = reader.u64("session id")?;
        if session_id == 0 {
            return Err("session id 0 is never valid".to_owned());
        }
        let physical_us = reader.u64("timestamp")?;
        let logical = reader.u32("timestamp")?;
        let proposer = (reader.u64("proposer node")?, reader.u64("proposer number")?);
        reader.finish()?;
        Ok((session_id, Timestamp::new(physical_us, logical), proposer))
    })();
    fields.map_err(|reason| format!("session open entry: {reason}"))
}

/// Encodes the entry that closes `session_id`: its format byte, the session, and the proposer
/// (node id, its number for the close) that waits for it. It carries no timestamp: a close
/// counts no log time.
pub(crate) fn encode_session_close(session_id: u64, proposer: (u64, u64)) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + 8 + 16);
    bytes.push(SESSION_CLOSE_FORMAT);
    bytes.extend_from_slice(&session_id.to_be_bytes());
    bytes.extend_from_slice(&proposer.0.to_be_bytes());
    bytes.extend_from_slice(&proposer.1.to_be_bytes());
    bytes
}

/// Decodes the body of a session close entry (after its format byte).
fn decode_session_close(payload: &[u8]) -> Result<(u64, (u64, u64)), String> {
    let mut reader = Reader::new(payload);
    let fields = (|| {
        let session_id = reader.u64("session id")?;
        if session_id == 0 {
            return Err("session id 0 is never valid".to_owned());
        }
        let proposer = (reader.u64("proposer node")?, reader.u64("proposer number")?);
        reader.finish()?;
        Ok((session_id, proposer))
    })();
    fields.map_err(|reason| format!("session close entry: {reason}"))
}

fn decode_meta_fields(reader: &mut Reader<'_>) -> Result<(u64, u64, u64, Timestamp), String> {
    let next_position = reader.u64("next position")?;
    let first_retained_position = reader.u64("first retained position")?;
    let digest = reader.u64("digest")?;
    let physical_us = reader.u64("timestamp")?;
    let logical = reader.u32("timestamp")?;
    if next_position == 0 || first_retained_position == 0 || first_retained_position > next_position
    {
        return Err(format!(
            "positions out of order: first retained {first_retained_position}, next \
             {next_position}"
        ));
    }
    Ok((
        next_position,
        first_retained_position,
        digest,
        Timestamp::new(physical_us, logical),
    ))
}

impl StateMachine for RegionLog {
    type Output = EntryOutcome;

    fn apply(
        &mut self,
        _index: u64,
        data: &[u8],
        store: &dyn DurableStore,
        batch: &mut WriteBatch,
    ) -> Result<EntryOutcome, StoreError> {
        self.checkpoints
            .take_migration(self.checkpoint_space.key_space(), batch);
        let outcome = match data.first().copied() {
            Some(BATCH_FORMAT) => match decode_batch(data) {
                Ok(records) => {
                    let mut outcomes = Vec::with_capacity(records.len());
                    for (record, _) in records {
                        outcomes.push(self.apply_record(record, store, batch)?);
                    }
                    EntryOutcome::Records(outcomes)
                }
                Err(reason) => return Ok(EntryOutcome::Refused { reason }),
            },
            Some(CLOSE_BATCH_FORMAT) => match decode_close_batch(&data[1..]) {
                Ok((proposed_closed, acknowledged)) => {
                    self.apply_close_batch(proposed_closed, acknowledged)
                }
                Err(reason) => return Ok(EntryOutcome::Refused { reason }),
            },
            Some(EPOCH_PART_FORMAT) => match decode_epoch_part(&data[1..]) {
                Ok(part) => self.apply_epoch_part(part, store, batch)?,
                Err(reason) => return Ok(EntryOutcome::Refused { reason }),
            },
            Some(CHECKPOINT_FORMAT) => match self.apply_checkpoint(&data[1..], store, batch)? {
                refused @ EntryOutcome::Refused { .. } => return Ok(refused),
                outcome => outcome,
            },
            Some(SESSION_OPEN_FORMAT) => match self.apply_session_open(&data[1..], batch) {
                refused @ EntryOutcome::Refused { .. } => return Ok(refused),
                outcome => outcome,
            },
            Some(SESSION_CLOSE_FORMAT) => match self.apply_session_close(&data[1..], batch) {
                refused @ EntryOutcome::Refused { .. } => return Ok(refused),
                outcome => outcome,
            },
            Some(ALARM_CLEAR_FORMAT) => match decode_alarm_clear_entry(&data[1..]) {
                Ok((object_id, proposer)) => {
                    let space = self.checkpoint_space.key_space();
                    let outcome = self
                        .checkpoints
                        .apply_alarm_clear(&object_id, store, space, batch)?;
                    EntryOutcome::Checkpoint {
                        proposer,
                        object_id,
                        outcome: Ok(outcome),
                    }
                }
                Err(reason) => {
                    return Ok(EntryOutcome::Refused {
                        reason: format!("alarm clear entry: {reason}"),
                    });
                }
            },
            Some(ADOPTION_FORMAT) => match decode_adoption_entry(&data[1..]) {
                Ok((adopted, proposer)) => {
                    let object_id = adopted.object_id.clone();
                    let space = self.checkpoint_space.key_space();
                    let point = GlobalPoint::of(self);
                    let last_position = self.last_position();
                    let outcome = self.checkpoints.apply_adoption(
                        adopted,
                        point,
                        last_position,
                        store,
                        space,
                        batch,
                    )?;
                    EntryOutcome::Adoption {
                        proposer,
                        object_id,
                        outcome,
                    }
                }
                Err(reason) => {
                    return Ok(EntryOutcome::Refused {
                        reason: format!("adoption entry: {reason}"),
                    });
                }
            },
            Some(SKIP_FORMAT) => match decode_skip_entry(&data[1..]) {
                Ok(skip) => self.apply_skip(skip, store, batch)?,
                Err(reason) => {
                    return Ok(EntryOutcome::Refused {
                        reason: format!("skip entry: {reason}"),
                    });
                }
            },
            Some(format) => {
                return Ok(EntryOutcome::Refused {
                    reason: format!(
                        "entry format {format} is unknown; this release reads formats \
                         {BATCH_FORMAT} to {SKIP_FORMAT}"
                    ),
                });
            }
            None => {
                return Ok(EntryOutcome::Refused {
                    reason: "an empty entry".to_owned(),
                });
            }
        };
        self.truncate(store, batch)?;
        self.write_meta(batch);
        Ok(outcome)
    }

    fn batch_written(&mut self) {
        self.checkpoints.batch_written();
    }

    fn snapshot(&self, _store: &dyn DurableStore) -> Result<Vec<u8>, StoreError> {
        // Everything per object stays in the store: a member taking the snapshot fetches it
        // from the view the group pins now (snapshot_view_ranges).
        Ok(self.encode_snapshot())
    }

    fn snapshot_view_ranges(&self) -> Vec<KeyRange> {
        if self.checkpoints.has_items() {
            crate::checkpoint::transfer::view_ranges(self.checkpoint_space.key_space())
        } else {
            Vec::new()
        }
    }

    fn validate_snapshot(&self, data: &[u8]) -> Result<(), SnapshotError> {
        let decoded = self
            .decode_snapshot(data)
            .map_err(|reason| SnapshotError::new(format!("region log {reason}")))?;
        // A snapshot that keeps anything per object is taken only once its state was fetched
        // whole into the space this node does not use (see crate::checkpoint::transfer).
        self.check_staged(&decoded)
    }

    fn restore(&mut self, data: &[u8], batch: &mut WriteBatch) -> Result<(), SnapshotError> {
        let decoded = self
            .decode_snapshot(data)
            .map_err(|reason| SnapshotError::new(format!("region log {reason}")))?;
        self.check_staged(&decoded)?;
        // The entries above the truncation point and below the next position stay: the node
        // took the snapshot only once it held every one of them (see the module
        // documentation). Anything else goes.
        let first_retained_position = decoded.checkpoints.truncated_through() + 1;
        batch.delete_range(
            REGION_LOG,
            Vec::new(),
            position_key(first_retained_position).to_vec(),
        );
        batch.delete_range(
            REGION_LOG,
            position_key(decoded.next_position).to_vec(),
            LOG_END_KEY.to_vec(),
        );
        batch.delete_range(REGION_STATE, Vec::new(), LOG_END_KEY.to_vec());
        self.next_position = decoded.next_position;
        self.first_retained_position = first_retained_position;
        self.digest = decoded.digest;
        self.last_assigned = decoded.last_assigned;
        self.dedup = decoded.dedup;
        self.global = decoded.global;
        self.blocks = decoded.blocks;
        // The cache starts empty: older entries are read from the store.
        self.cache.clear();
        self.cache_size_bytes = 0;
        self.dedup.write_all(REGION_STATE, batch);
        self.global.write_all(REGION_STATE, batch);
        let staged = self.staged.take().map(|(space, _)| space);
        self.checkpoint_space =
            self.checkpoints
                .restore(decoded.checkpoints, self.checkpoint_space, staged, batch);
        batch.put(
            REGION_STATE,
            CHECKPOINT_SPACE_KEY,
            vec![self.checkpoint_space.tag()],
        );
        self.blocks.write_all(REGION_STATE, batch);
        self.write_meta(batch);
        Ok(())
    }

    fn recover(&mut self, store: &dyn DurableStore) -> Result<(), StoreError> {
        *self = RegionLog::new(self.retention, self.region.clone());
        let Some(meta) = store.get(REGION_STATE, META_KEY)? else {
            return Ok(());
        };
        let mut reader = Reader::new(&meta);
        let format = reader
            .u8("meta format")
            .map_err(|reason| corrupt(REGION_STATE, META_KEY, reason))?;
        if format != META_FORMAT {
            return Err(corrupt(
                REGION_STATE,
                META_KEY,
                format!("format {format} is unknown; this release reads format {META_FORMAT}"),
            ));
        }
        let (next_position, first_retained_position, digest, last_assigned) =
            decode_meta_fields(&mut reader)
                .and_then(|fields| reader.finish().map(|()| fields))
                .map_err(|reason| corrupt(REGION_STATE, META_KEY, reason))?;
        self.next_position = next_position;
        self.first_retained_position = first_retained_position;
        self.digest = digest;
        self.last_assigned = last_assigned;
        self.recover_cache(store)?;
        self.dedup = DedupTable::recover(DedupLimits::STANDARD, store, REGION_STATE)?;
        self.global = GlobalState::recover(REGION_STATE, store)?;
        self.checkpoint_space =
            CheckpointSpace::recover(store, REGION_STATE, CHECKPOINT_SPACE_KEY)?;
        self.checkpoints = CheckpointState::recover(
            self.checkpoint_space.key_space(),
            store,
            self.next_position,
            self.checkpoints.bounds(),
        )?;
        self.blocks = LogBlocks::recover(REGION_STATE, store)?;
        if let Err(reason) = self
            .blocks
            .check_span(self.checkpoints.truncated_through(), self.next_position)
        {
            return Err(self.blocks.span_error(REGION_STATE, reason));
        }
        if self.first_retained_position <= self.checkpoints.truncated_through() {
            return Err(corrupt(
                REGION_STATE,
                META_KEY,
                format!(
                    "the log starts at position {}, at or below the truncation point {}",
                    self.first_retained_position,
                    self.checkpoints.truncated_through()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{CheckpointOutcome, CheckpointRefusal};
    use crate::record::encode_batch;
    use crate::record::tests::record;
    use dsss_raft_group::MemoryStore;

    /// Writes into `to` the entries `log` retains, read from `from`: what a member fetches
    /// before it takes a snapshot ([`crate::snapshot_catch_up`]).
    fn hold_entries(log: &RegionLog, from: &MemoryStore, to: &mut MemoryStore) {
        let whole = log.with_every_entry_cached(from).unwrap();
        let mut batch = WriteBatch::new();
        for log_record in whole.cached_records() {
            batch.put(
                REGION_LOG,
                position_key(log_record.position).to_vec(),
                encode_entry(log_record.position, &log_record.entry),
            );
        }
        to.write(batch, true).unwrap();
    }

    /// Fetches into `to` the checkpoint state of `snapshot`, made by `log` over `from`, as a
    /// member does before it takes a snapshot ([`crate::checkpoint::transfer`]): from a view of
    /// `from` pinned with the snapshot, in pieces, into the space `to_log` does not use.
    fn hold_state(
        log: &RegionLog,
        from: &MemoryStore,
        snapshot: &[u8],
        to_log: &mut RegionLog,
        to: &mut MemoryStore,
    ) {
        let span = to_log.snapshot_span(snapshot).unwrap();
        let Some(to_fetch) = span.state else {
            return;
        };
        from.pin_view(1, &log.snapshot_view_ranges()).unwrap();
        let view = from.pinned_view(1).unwrap();
        let mut staging = to_log.stage_state(&to_fetch, span.next_position);
        loop {
            let piece = crate::checkpoint::transfer::answer_state_piece(
                &*view,
                to_fetch.sender_space.key_space(),
                staging.after_key(),
            )
            .unwrap();
            let mut batch = WriteBatch::new();
            let whole = staging.take_piece(&piece, to, &mut batch).unwrap();
            to.write(batch, false).unwrap();
            if whole {
                break;
            }
        }
        assert!(to_log.note_staged(&staging, &to_fetch));
    }

    fn new_log(retention: RegionLogRetention) -> RegionLog {
        RegionLog::new(retention, RegionId::new("eu-west").unwrap())
    }

    fn batch_of(records: &[Record]) -> Vec<u8> {
        let encoded: Vec<Vec<u8>> = records.iter().map(encode_record).collect();
        encode_batch(encoded.iter().map(Vec::as_slice))
    }

    /// Applies the records in one entry, after opening the session of every record whose
    /// session is not open yet (each in an entry of its own, as clients do).
    fn apply(log: &mut RegionLog, store: &mut MemoryStore, records: &[Record]) -> EntryOutcome {
        for record in records {
            if log.dedup().session(record.client_id.get()).is_none() {
                let outcome = open_session(log, store, record.client_id.get(), record.timestamp);
                assert!(
                    matches!(
                        outcome,
                        EntryOutcome::SessionOpened {
                            outcome: Ok(()),
                            ..
                        }
                    ),
                    "{outcome:?}"
                );
            }
        }
        apply_only(log, store, records)
    }

    /// Applies the records in one entry, opening nothing.
    fn apply_only(
        log: &mut RegionLog,
        store: &mut MemoryStore,
        records: &[Record],
    ) -> EntryOutcome {
        let mut batch = WriteBatch::new();
        let outcome = log
            .apply(0, &batch_of(records), &*store, &mut batch)
            .unwrap();
        store.write(batch, true).unwrap();
        log.batch_written();
        outcome
    }

    fn open_session(
        log: &mut RegionLog,
        store: &mut MemoryStore,
        session_id: u64,
        proposed: Timestamp,
    ) -> EntryOutcome {
        let mut batch = WriteBatch::new();
        let outcome = log
            .apply(
                0,
                &encode_session_open(session_id, proposed, (1, session_id)),
                &*store,
                &mut batch,
            )
            .unwrap();
        store.write(batch, true).unwrap();
        log.batch_written();
        outcome
    }

    fn at(record: Record, physical_us: u64) -> Record {
        Record {
            timestamp: Timestamp::new(physical_us, 0),
            ..record
        }
    }

    #[test]
    fn a_record_of_a_session_never_opened_or_ended_is_refused_and_never_applied() {
        let mut log = new_log(RegionLogRetention::default());
        let mut store = MemoryStore::new();
        let outcome = apply_only(&mut log, &mut store, &[record(5, 1)]);
        assert!(
            matches!(
                &outcome,
                EntryOutcome::Records(outcomes)
                    if matches!(outcomes[..], [RecordOutcome::UnknownSession { .. }])
            ),
            "{outcome:?}"
        );
        assert_eq!(log.next_position(), 1, "nothing appended");
        // A session lives while it calls; once idle past the timeout (in the leader's
        // timestamps, whatever the positions), a retry of its applied call is refused.
        let start = 1_700_000_000_000_000;
        open_session(&mut log, &mut store, 5, Timestamp::new(start, 0));
        assert_eq!(
            positions(&apply_only(
                &mut log,
                &mut store,
                &[at(record(5, 1), start)]
            )),
            [1]
        );
        let idle = crate::SESSION_IDLE_TIMEOUT_US;
        open_session(&mut log, &mut store, 6, Timestamp::new(start, 0));
        apply_only(&mut log, &mut store, &[at(record(6, 1), start + idle)]);
        assert_eq!(
            positions(&apply_only(
                &mut log,
                &mut store,
                &[at(record(5, 1), start + idle)]
            )),
            [1],
            "idle for exactly the timeout: the retry gets its first position"
        );
        apply_only(&mut log, &mut store, &[at(record(6, 2), start + idle + 1)]);
        let outcome = apply_only(&mut log, &mut store, &[at(record(5, 1), start + idle + 1)]);
        let EntryOutcome::Records(outcomes) = &outcome else {
            panic!("{outcome:?}");
        };
        assert!(
            matches!(outcomes[..], [RecordOutcome::UnknownSession { .. }]),
            "an ended session's retry is refused, never applied again: {outcome:?}"
        );
        assert_eq!(log.next_position(), 4, "records 5/1, 6/1 and 6/2 only");
    }

    #[test]
    fn session_opens_are_replicated_state_and_damaged_ones_change_nothing() {
        let mut log = new_log(RegionLogRetention::default());
        let mut store = MemoryStore::new();
        let outcome = open_session(&mut log, &mut store, 9, Timestamp::new(5, 0));
        assert!(matches!(
            outcome,
            EntryOutcome::SessionOpened {
                proposer: (1, 9),
                session_id: 9,
                outcome: Ok(())
            }
        ));
        apply(&mut log, &mut store, &[record(9, 1)]);
        let mut recovered = new_log(RegionLogRetention::default());
        recovered.recover(&store).unwrap();
        assert_eq!(recovered, log);
        let mut restored = new_log(RegionLogRetention::default());
        let snapshot = log.snapshot(&store).unwrap();
        hold_state(
            &log,
            &store,
            &snapshot,
            &mut restored,
            &mut MemoryStore::new(),
        );
        restored.restore(&snapshot, &mut WriteBatch::new()).unwrap();
        assert_eq!(restored.dedup(), log.dedup());
        let entry = encode_session_open(9, Timestamp::new(5, 0), (1, 2));
        for length in 1..entry.len() {
            let before = log.clone();
            let outcome = log
                .apply(0, &entry[..length], &store, &mut WriteBatch::new())
                .unwrap();
            assert!(
                matches!(&outcome, EntryOutcome::Refused { reason } if reason.contains("session open entry")),
                "{outcome:?}"
            );
            assert_eq!(log, before);
        }
        let outcome = log
            .apply(
                0,
                &encode_session_open(0, Timestamp::new(5, 0), (1, 2)),
                &store,
                &mut WriteBatch::new(),
            )
            .unwrap();
        assert!(
            matches!(outcome, EntryOutcome::Refused { .. }),
            "{outcome:?}"
        );
    }

    fn positions(outcome: &EntryOutcome) -> Vec<u64> {
        let EntryOutcome::Records(outcomes) = outcome else {
            panic!("refused: {outcome:?}");
        };
        outcomes
            .iter()
            .map(|outcome| match outcome {
                RecordOutcome::Appended { position, .. }
                | RecordOutcome::Duplicate { position, .. } => *position,
                RecordOutcome::TooOld { .. }
                | RecordOutcome::UnknownSession { .. }
                | RecordOutcome::Overloaded { .. }
                | RecordOutcome::LogFull { .. } => 0,
            })
            .collect()
    }

    #[test]
    fn records_get_dense_positions_and_retries_their_first_position() {
        let mut store = MemoryStore::new();
        let mut log = new_log(RegionLogRetention::default());
        let outcome = apply(
            &mut log,
            &mut store,
            &[record(1, 1), record(2, 1), record(1, 2)],
        );
        assert_eq!(positions(&outcome), vec![1, 2, 3]);
        // A retry of (2, 1) in a later batch, and a duplicate inside one batch.
        let outcome = apply(
            &mut log,
            &mut store,
            &[record(2, 1), record(3, 1), record(3, 1)],
        );
        assert_eq!(positions(&outcome), vec![2, 4, 4]);
        let EntryOutcome::Records(outcomes) = &outcome else {
            unreachable!()
        };
        assert!(matches!(outcomes[0], RecordOutcome::Duplicate { .. }));
        assert!(matches!(outcomes[2], RecordOutcome::Duplicate { .. }));
        assert_eq!(log.next_position(), 5);
        let stored = log
            .cached_record(4)
            .unwrap()
            .entry
            .record()
            .unwrap()
            .clone();
        assert_eq!(
            (stored.client_id, stored.request_sequence),
            (ClientId(3), RequestSequence(1))
        );
    }

    #[test]
    fn a_sequence_below_the_window_is_refused_as_too_old() {
        let mut store = MemoryStore::new();
        let mut log = new_log(RegionLogRetention::default());
        let window = crate::dedup::DEDUP_WINDOW_MAX as u64;
        for sequence in 1..=window + 1 {
            apply(&mut log, &mut store, &[record(5, sequence)]);
        }
        let outcome = apply(&mut log, &mut store, &[record(5, 1)]);
        assert_eq!(
            outcome,
            EntryOutcome::Records(vec![RecordOutcome::TooOld {
                client_id: ClientId(5),
                request_sequence: RequestSequence(1),
                floor: 2,
            }])
        );
        assert_eq!(log.next_position(), window + 2, "nothing appended");
    }

    #[test]
    fn a_batch_that_does_not_decode_changes_nothing() {
        let mut log = new_log(RegionLogRetention::default());
        let before = log.clone();
        let mut batch = WriteBatch::new();
        let outcome = log
            .apply(0, &[1, 0, 0, 0, 1, 0xff], &MemoryStore::new(), &mut batch)
            .unwrap();
        assert!(matches!(outcome, EntryOutcome::Refused { .. }));
        assert!(batch.is_empty());
        assert_eq!(log, before);
    }

    fn object_record(object: &str, client: u64, sequence: u64) -> Record {
        let mut record = record(client, sequence);
        record.object_id = ObjectId::new(object).unwrap();
        record
    }

    /// A region serves a checkpoint for adoption only when it finds, within
    /// `ADOPTION_SCAN_ENTRIES_MAX` entries after it, where in the global order it stands (or
    /// reaches the end of its log first): past the bound it answers that it cannot.
    #[test]
    fn a_checkpoint_is_served_for_adoption_only_within_the_scan_bound() {
        use crate::global::adoption::{ADOPTION_SCAN_ENTRIES_MAX, serve_checkpoint_read};
        use crate::record::BATCH_RECORDS_MAX;
        let mut log = new_log(RegionLogRetention::default());
        let mut store = MemoryStore::new();
        apply(&mut log, &mut store, &[object_record("lobby/main", 7, 1)]);
        assert_eq!(
            checkpoint(&mut log, &mut store, "lobby/main", 1, 3, 7),
            Ok(CheckpointOutcome::Stored)
        );
        let object = ObjectId::new("lobby/main").unwrap();
        // No global entry after it: the state holds at the point the log stands at now.
        let served = serve_checkpoint_read(&log, &store, &object).expect("served");
        assert_eq!(served.valid_from, GlobalPoint::of(&log));
        assert_eq!(served.valid_through, GlobalPoint::of(&log));
        assert_eq!(served.state, vec![3; 16]);
        // More regional entries after it than the scan reads, and none global.
        let mut sequence = 1;
        while log.last_position() <= ADOPTION_SCAN_ENTRIES_MAX as u64 + 1 {
            let records: Vec<Record> = (0..BATCH_RECORDS_MAX)
                .map(|index| object_record("lobby/other", 8, sequence + index as u64))
                .collect();
            sequence += BATCH_RECORDS_MAX as u64;
            apply(&mut log, &mut store, &records);
        }
        let refused = serve_checkpoint_read(&log, &store, &object).unwrap_err();
        assert!(
            refused.contains(&format!("read {ADOPTION_SCAN_ENTRIES_MAX} entries")),
            "{refused}"
        );
    }

    /// Reference: docs/global-protocol.md section 7, "When no region holds them". A skip moves
    /// the global sequence to the epoch end another region holds, answers the region's records
    /// that the coordinator sealed (through its mark) at the skip and keeps the others to ship
    /// again; checkpoints of global objects from before it are stale, and it is not applied
    /// twice.
    #[test]
    fn a_skip_takes_the_records_the_skipped_epochs_sealed_and_leaves_older_checkpoints_stale() {
        use crate::global::adoption::serve_checkpoint_read;
        use crate::global::catch_up::HeldEpochEnd;
        use crate::global::skip::{EpochsSkip, encode_skip_entry};
        let mut store = MemoryStore::new();
        let mut log = new_log(RegionLogRetention::default());
        let globals: Vec<Record> = (1..=3)
            .map(|sequence| {
                let mut global = object_record("lobby/main", 4, sequence);
                global.scope = Scope::Global;
                global
            })
            .collect();
        apply(&mut log, &mut store, &globals);
        assert_eq!(log.global().unsealed().count(), 3);
        assert_eq!(
            checkpoint(&mut log, &mut store, "lobby/main", 3, 9, 7),
            Ok(CheckpointOutcome::Stored)
        );
        let object = ObjectId::new("lobby/main").unwrap();
        let never_written = ObjectId::new("lobby/quiet").unwrap();
        // Before any skip a region serves the default state of an object that never had a
        // record (an empty state).
        let served = serve_checkpoint_read(&log, &store, &never_written).expect("served");
        assert!(served.state.is_empty());
        let end = HeldEpochEnd {
            epoch_number: 7,
            watermark: Timestamp::new(1_800_000_000_000_000, 0),
            member_regions: vec![RegionId::new("us-east").unwrap()],
        };
        let skip = EpochsSkip {
            first_skipped: 1,
            end: end.clone(),
            sealed_through: Some((4, 2)),
            source: RegionId::new("us-east").unwrap(),
        };
        let apply_skip = |log: &mut RegionLog, store: &mut MemoryStore, skip: &EpochsSkip| {
            let mut batch = WriteBatch::new();
            let outcome = log
                .apply(0, &encode_skip_entry(skip), &*store, &mut batch)
                .unwrap();
            store.write(batch, true).unwrap();
            log.batch_written();
            outcome
        };
        let EntryOutcome::EpochsSkipped {
            ignored: None,
            appended,
            membership,
            ..
        } = apply_skip(&mut log, &mut store, &skip)
        else {
            panic!("the skip was not taken");
        };
        assert_eq!(
            appended[0],
            RecordOutcome::Appended {
                position: 4,
                entry: LogEntry::EpochSealed {
                    epoch_number: 7,
                    watermark: end.watermark,
                    previous_watermark: None,
                    record_count: 0,
                    member_regions: end.member_regions.clone(),
                    skipped_from: 1,
                },
            }
        );
        let answered: Vec<(u64, u64)> = appended[1..]
            .iter()
            .map(|outcome| match outcome {
                RecordOutcome::Duplicate {
                    client_id,
                    request_sequence,
                    position: 4,
                } => (client_id.get(), request_sequence.get()),
                other => panic!("not answered at the skip: {other:?}"),
            })
            .collect();
        assert_eq!(answered, vec![(4, 1), (4, 2)], "the calls through the mark");
        assert_eq!(
            membership,
            MembershipChange::Removed { incarnation: 2 },
            "the epoch skipped to no longer lists the region"
        );
        assert_eq!(log.global().epochs_applied_through(), 7);
        assert_eq!(log.global().watermark(), end.watermark);
        let left: Vec<u64> = log
            .global()
            .unsealed()
            .map(|(_, unsealed)| unsealed.record.request_sequence.get())
            .collect();
        assert_eq!(left, vec![3], "the record after the mark ships again");
        assert_eq!(
            log.dedup().check(4, 1),
            DedupVerdict::Duplicate { position: 4 }
        );
        // Global checkpoints from before the skip are stale; a fetch says so, the region
        // serves neither them nor a default state to other regions.
        assert_eq!(log.checkpoints().global_skipped_through(), 4);
        assert_eq!(
            log.checkpoint_stale_by_skip(&store, &object).unwrap(),
            Some(4)
        );
        assert_eq!(
            log.checkpoint_stale_by_skip(&store, &never_written)
                .unwrap(),
            Some(4)
        );
        let refused = serve_checkpoint_read(&log, &store, &never_written).unwrap_err();
        assert!(refused.contains("skipped sealed epochs"), "{refused}");
        // A checkpoint at or after the skip is not.
        assert_eq!(
            checkpoint(&mut log, &mut store, "lobby/main", 4, 5, 7),
            Ok(CheckpointOutcome::Stored)
        );
        assert_eq!(log.checkpoint_stale_by_skip(&store, &object).unwrap(), None);
        // The same skip again, or one that does not start at the next epoch: ignored.
        for again in [
            skip.clone(),
            EpochsSkip {
                first_skipped: 9,
                end: HeldEpochEnd {
                    epoch_number: 12,
                    ..end.clone()
                },
                ..skip.clone()
            },
        ] {
            let before = log.clone();
            let outcome = apply_skip(&mut log, &mut store, &again);
            assert!(
                matches!(
                    outcome,
                    EntryOutcome::EpochsSkipped {
                        ignored: Some(_),
                        ..
                    }
                ),
                "{outcome:?}"
            );
            assert_eq!(log, before);
        }
        let mut recovered = new_log(log.retention());
        recovered.recover(&store).unwrap();
        assert_eq!(recovered, log, "the skip is persisted");
    }

    /// The scan that finds where a served checkpoint stands in the global order reads at most
    /// `ADOPTION_SCAN_BYTES_MAX` too: past it, with fewer entries than the entry bound, the
    /// region answers that it cannot.
    #[test]
    fn a_checkpoint_is_served_for_adoption_only_within_the_scan_byte_bound() {
        use crate::global::adoption::{
            ADOPTION_SCAN_BYTES_MAX, ADOPTION_SCAN_ENTRIES_MAX, serve_checkpoint_read,
        };
        let mut log = new_log(RegionLogRetention::default());
        let mut store = MemoryStore::new();
        apply(&mut log, &mut store, &[object_record("lobby/main", 7, 1)]);
        assert_eq!(
            checkpoint(&mut log, &mut store, "lobby/main", 1, 3, 7),
            Ok(CheckpointOutcome::Stored)
        );
        // Regional records of another object, a MiB of arguments each, past the byte bound.
        let record_bytes = dsss_wire::ARGUMENTS_BYTES_MAX - 1024;
        let mut sequence = 1;
        while log.retained_size_bytes() <= ADOPTION_SCAN_BYTES_MAX + 2 * record_bytes as u64 {
            let large = Record {
                arguments: dsss_wire::Arguments::new(vec![7; record_bytes]).unwrap(),
                ..object_record("lobby/other", 8, sequence)
            };
            apply(&mut log, &mut store, &[large]);
            sequence += 1;
        }
        let object = ObjectId::new("lobby/main").unwrap();
        let refused = serve_checkpoint_read(&log, &store, &object).unwrap_err();
        assert!(
            refused.contains(" bytes) after the checkpoint"),
            "{refused}"
        );
        assert!(
            log.last_position() < ADOPTION_SCAN_ENTRIES_MAX as u64,
            "the byte bound, not the entry bound, stopped the scan"
        );
    }

    /// Offers a checkpoint of `object` at `position` whose state and hash are `hash` repeated.
    fn checkpoint(
        log: &mut RegionLog,
        store: &mut MemoryStore,
        object: &str,
        position: u64,
        hash: u8,
        client: u64,
    ) -> Result<CheckpointOutcome, CheckpointRefusal> {
        let upload = crate::checkpoint::CheckpointUpload {
            object_id: ObjectId::new(object).unwrap(),
            position,
            state: vec![hash; 16],
            state_hash: [hash; 32],
            client_id: ClientId(client),
        };
        let data = crate::checkpoint::encode_checkpoint_entry(&upload, (1, position));
        let mut batch = WriteBatch::new();
        let outcome = log.apply(0, &data, &*store, &mut batch).unwrap();
        store.write(batch, true).unwrap();
        log.batch_written();
        match outcome {
            EntryOutcome::Checkpoint { outcome, .. } => outcome,
            other => panic!("not a checkpoint outcome: {other:?}"),
        }
    }

    /// Reference: docs/design.md section 2, "Checkpoints": the log is truncated below the newest
    /// checkpoint of every object with records (one client's suffices), never below an
    /// uncovered record.
    #[test]
    fn truncation_follows_checkpoints_and_never_drops_an_uncovered_record() {
        let mut store = MemoryStore::new();
        let mut log = new_log(RegionLogRetention::default());
        // Positions 1 to 6 alternate objects a and b.
        for sequence in 1..=6 {
            let object = if sequence % 2 == 1 { "a" } else { "b" };
            apply(&mut log, &mut store, &[object_record(object, 1, sequence)]);
        }
        assert_eq!(
            log.first_retained_position(),
            1,
            "no checkpoint: nothing dropped"
        );
        // a's one instance checkpoints at 5 (its newest record): b still lacks a checkpoint.
        assert_eq!(
            checkpoint(&mut log, &mut store, "a", 5, 1, 10),
            Ok(CheckpointOutcome::Stored)
        );
        assert_eq!(log.first_retained_position(), 1, "b blocks at 0");
        assert_eq!(log.next_position(), 7, "a checkpoint takes no log position");
        // b's one instance checkpoints at 4, below its newest record at 6: the log keeps 5
        // and above.
        checkpoint(&mut log, &mut store, "b", 4, 2, 10).unwrap();
        assert_eq!(log.truncated_through(), 4);
        assert_eq!(log.first_retained_position(), 5);
        assert_eq!(store.keys(REGION_LOG).len(), 2);
        assert!(log.cached_record(4).is_none() && log.cached_record(6).is_some());
        // A new object c without checkpoints holds the point where it is.
        apply(&mut log, &mut store, &[object_record("c", 1, 7)]);
        checkpoint(&mut log, &mut store, "b", 6, 2, 10).unwrap();
        assert_eq!(log.truncated_through(), 4, "c has no checkpoint");
        // A second instance of b reports another state at 6: the divergence alarm stops
        // truncation even once c is covered.
        assert_eq!(
            checkpoint(&mut log, &mut store, "b", 6, 9, 11),
            Ok(CheckpointOutcome::HashMismatch)
        );
        checkpoint(&mut log, &mut store, "c", 7, 3, 10).unwrap();
        assert_eq!(
            checkpoint(&mut log, &mut store, "c", 7, 3, 12),
            Ok(CheckpointOutcome::Agreed)
        );
        assert_eq!(log.truncated_through(), 4, "an alarm holds truncation back");
        assert_eq!(log.checkpoints().alarm_count(), 1);
        // Pending global records and epoch ends never hold it back: nothing above changes.
        let mut recovered = new_log(log.retention());
        recovered.recover(&store).unwrap();
        assert_eq!(
            recovered, log,
            "a restart keeps the log, the checkpoints and the alarm"
        );
    }

    #[test]
    fn a_region_without_alarms_drops_everything_its_checkpoints_cover() {
        let mut store = MemoryStore::new();
        let mut log = new_log(RegionLogRetention::default());
        for sequence in 1..=4 {
            apply(&mut log, &mut store, &[object_record("a", 1, sequence)]);
        }
        checkpoint(&mut log, &mut store, "a", 4, 1, 10).unwrap();
        assert_eq!(log.truncated_through(), 4);
        assert_eq!(log.cached_records().count(), 0);
        assert_eq!(log.first_retained_position(), 5);
        // A checkpoint made below the truncation point is fetched at it.
        let fetch = log
            .fetch_checkpoint(&store, &ObjectId::new("a").unwrap())
            .unwrap();
        assert_eq!(fetch.checkpoint.unwrap().position, 4);
        apply(&mut log, &mut store, &[object_record("b", 1, 5)]);
        assert_eq!(
            log.fetch_checkpoint(&store, &ObjectId::new("b").unwrap())
                .unwrap()
                .truncated_through,
            4
        );
        let mut recovered = new_log(log.retention());
        recovered.recover(&store).unwrap();
        assert_eq!(recovered, log);
    }

    /// Reported: a region refused records of new objects once 4,096 objects had records and
    /// no checkpoint. The bound is now what they take in bytes: ten thousand objects
    /// with one record each and no checkpoint are all taken, and a checkpoint of each lets
    /// the log go.
    #[test]
    fn ten_thousand_objects_without_a_checkpoint_are_all_taken() {
        const OBJECTS: u64 = 10_000;
        let mut store = MemoryStore::new();
        let mut log = new_log(RegionLogRetention::default());
        let mut sequence = 0;
        for chunk in (0..OBJECTS).collect::<Vec<_>>().chunks(200) {
            let records: Vec<Record> = chunk
                .iter()
                .map(|index| {
                    sequence += 1;
                    object_record(&format!("user/{index}"), 1, sequence)
                })
                .collect();
            let outcome = apply(&mut log, &mut store, &records);
            assert!(
                positions(&outcome).iter().all(|position| *position > 0),
                "{outcome:?}"
            );
        }
        assert_eq!(log.checkpoints().uncovered_count(), OBJECTS);
        assert_eq!(log.truncated_through(), 0);
        // As raft rounds apply them: many entries to a batch, read back over its writes.
        let mut batch = WriteBatch::new();
        for index in 0..OBJECTS {
            let upload = crate::checkpoint::CheckpointUpload {
                object_id: ObjectId::new(format!("user/{index}")).unwrap(),
                position: index + 1,
                state: vec![1; 16],
                state_hash: [1; 32],
                client_id: ClientId(7),
            };
            let data = crate::checkpoint::encode_checkpoint_entry(&upload, (1, index));
            let outcome = log.apply(0, &data, &store, &mut batch).unwrap();
            assert!(
                matches!(
                    outcome,
                    EntryOutcome::Checkpoint {
                        outcome: Ok(CheckpointOutcome::Stored),
                        ..
                    }
                ),
                "{outcome:?}"
            );
            if index % 1_000 == 999 {
                store.write(std::mem::take(&mut batch), true).unwrap();
                log.batch_written();
            }
        }
        store.write(batch, true).unwrap();
        log.batch_written();
        assert_eq!(log.checkpoints().uncovered_count(), 0);
        assert_eq!(log.checkpoints().object_count(), OBJECTS);
        assert_eq!(log.truncated_through(), OBJECTS);
        let mut recovered = new_log(log.retention());
        recovered.recover(&store).unwrap();
        assert_eq!(recovered, log);
    }

    #[test]
    fn the_size_guard_refuses_new_records_but_drops_nothing() {
        let mut store = MemoryStore::new();
        let mut log = new_log(RegionLogRetention {
            records_max: 3,
            size_bytes_max: RETAINED_SIZE_BYTES_MAX,
            release_share_percent: 0,
            release_age_us: 0,
        });
        for sequence in 1..=3 {
            assert!(log.admit().is_ok());
            apply(&mut log, &mut store, &[record(1, sequence)]);
        }
        let error = log.admit().unwrap_err();
        assert!(error.contains("lobby/main (no checkpoint)"), "{error}");
        assert_eq!(log.cached_records().count(), 3, "the guard drops nothing");
        checkpoint(&mut log, &mut store, "lobby/main", 3, 1, 10).unwrap();
        assert!(log.admit().is_ok(), "truncation made room");
    }

    /// The quota with releases: objects that no checkpoint covers (raw records, an object whose
    /// instance is gone) no longer make the region refuse writes. Past the release share the
    /// region releases them oldest first, the log stays under the share, a fetch of a released
    /// object says so instead of serving a state without its records, a checkpoint at or above
    /// the release point lifts it, and the marks survive a snapshot and a recovery.
    #[test]
    fn past_the_release_share_records_nobody_covers_are_released_and_marked() {
        const QUOTA_BYTES: u64 = 256 * 1024;
        let mut store = MemoryStore::new();
        let mut log = new_log(RegionLogRetention {
            records_max: RETAINED_RECORDS_MAX,
            size_bytes_max: QUOTA_BYTES,
            release_share_percent: 50,
            release_age_us: 0,
        });
        // Ten objects, 1 KiB records: about 2,000 records cross the quota eight times.
        let objects: Vec<String> = (0..10).map(|index| format!("sensor/{index}")).collect();
        for sequence in 1..=2_000u64 {
            let object = &objects[(sequence % 10) as usize];
            let mut record = object_record(object, 1, sequence);
            record.arguments = dsss_wire::Arguments::new(vec![7; 1024]).unwrap();
            log.admit()
                .unwrap_or_else(|error| panic!("record {sequence} refused: {error}"));
            apply(&mut log, &mut store, &[record]);
            assert!(
                log.retained_size_bytes() <= QUOTA_BYTES / 2 + 1100,
                "record {sequence}: {} bytes retained",
                log.retained_size_bytes()
            );
        }
        assert!(
            log.truncated_through() > 1_000,
            "{}",
            log.truncated_through()
        );
        assert_eq!(log.checkpoints().released_count(), 10);
        assert!(log.checkpoints().releases() >= 10);
        let released = ObjectId::new("sensor/3").unwrap();
        let fetch = log.fetch_checkpoint(&store, &released).unwrap();
        assert!(fetch.checkpoint.is_none());
        assert!(
            fetch.released_through > 0 && fetch.released_through <= log.truncated_through(),
            "{fetch:?}"
        );
        let never_written = ObjectId::new("sensor/never").unwrap();
        assert_eq!(
            log.fetch_checkpoint(&store, &never_written)
                .unwrap()
                .released_through,
            0
        );
        // Every entry above the truncation point is still in the store.
        let retained = log
            .read(&store, log.first_retained_position(), usize::MAX, u64::MAX)
            .unwrap();
        assert_eq!(
            retained.len() as u64,
            log.last_position() - log.truncated_through()
        );

        // A snapshot and a recovery carry the marks.
        let snapshot = log.snapshot(&store).unwrap();
        let mut other_store = MemoryStore::new();
        let mut other = new_log(log.retention());
        hold_state(&log, &store, &snapshot, &mut other, &mut other_store);
        hold_entries(&log, &store, &mut other_store);
        let mut batch = WriteBatch::new();
        other.restore(&snapshot, &mut batch).unwrap();
        other_store.write(batch, true).unwrap();
        assert_eq!(other, log);
        let mut recovered = new_log(log.retention());
        recovered.recover(&store).unwrap();
        assert_eq!(recovered, log);
        assert_eq!(
            recovered
                .fetch_checkpoint(&store, &released)
                .unwrap()
                .released_through,
            fetch.released_through
        );

        // A checkpoint below the release point leaves it; one at or above lifts it.
        let below = fetch.released_through - 1;
        checkpoint(&mut log, &mut store, "sensor/3", below, 1, 10).unwrap();
        assert_eq!(
            log.fetch_checkpoint(&store, &released)
                .unwrap()
                .released_through,
            fetch.released_through
        );
        let last = log.last_position();
        checkpoint(&mut log, &mut store, "sensor/3", last, 2, 10).unwrap();
        let lifted = log.fetch_checkpoint(&store, &released).unwrap();
        assert_eq!(lifted.released_through, 0);
        assert_eq!(lifted.checkpoint.unwrap().uploaded_position, last);
        assert_eq!(log.checkpoints().released_count(), 9);
        let mut recovered = new_log(log.retention());
        recovered.recover(&store).unwrap();
        assert_eq!(recovered, log, "the lift is in the store");
    }

    /// With the share at 0 nothing is released for size, but entries older than the release
    /// age are, by whole blocks, once log time passes them; a covered object is never marked.
    #[test]
    fn entries_older_than_the_release_age_are_released_and_covered_objects_are_not_marked() {
        const AGE_US: u64 = 3_600 * 1_000_000;
        let mut store = MemoryStore::new();
        let mut log = new_log(RegionLogRetention {
            records_max: RETAINED_RECORDS_MAX,
            size_bytes_max: RETAINED_SIZE_BYTES_MAX,
            release_share_percent: 0,
            release_age_us: AGE_US,
        });
        let start_us = 1_000_000_000;
        for sequence in 1..=1_500u64 {
            let object = if sequence % 2 == 0 { "raw/a" } else { "app/b" };
            let record = at(object_record(object, 1, sequence), start_us + sequence);
            apply(&mut log, &mut store, &[record]);
        }
        // app/b has an instance that checkpoints; raw/a has none.
        checkpoint(&mut log, &mut store, "app/b", 1_499, 1, 10).unwrap();
        assert_eq!(log.truncated_through(), 0, "raw/a holds truncation at 0");
        // An hour of log time later, the first block (positions 1..=1024) is past the age.
        // (Another client: the first one's session ended in that hour of log time.)
        let later = at(object_record("app/b", 2, 1), start_us + AGE_US + 2_000);
        apply(&mut log, &mut store, &[later]);
        let block_positions = crate::log_blocks::BLOCK_POSITIONS;
        assert_eq!(log.truncated_through(), block_positions);
        let raw = log
            .fetch_checkpoint(&store, &ObjectId::new("raw/a").unwrap())
            .unwrap();
        assert_eq!(raw.released_through, block_positions);
        let app = log
            .fetch_checkpoint(&store, &ObjectId::new("app/b").unwrap())
            .unwrap();
        assert_eq!(app.released_through, 0, "a covered object is not released");
        assert_eq!(log.checkpoints().released_count(), 1);
        // raw/a still has records above the release point: it holds truncation there.
        assert!(
            log.checkpoints()
                .is_uncovered(
                    &store,
                    log.checkpoint_space().key_space(),
                    &ObjectId::new("raw/a").unwrap()
                )
                .unwrap()
        );
    }

    /// No release while a divergence alarm stands: a diverged region keeps every entry and
    /// the quota refuses writes (the operator's signal).
    #[test]
    fn a_divergence_alarm_stops_releases_and_the_quota_refuses() {
        let mut store = MemoryStore::new();
        let mut log = new_log(RegionLogRetention {
            records_max: 100,
            size_bytes_max: RETAINED_SIZE_BYTES_MAX,
            release_share_percent: 50,
            release_age_us: 0,
        });
        apply(&mut log, &mut store, &[object_record("app/x", 1, 1)]);
        checkpoint(&mut log, &mut store, "app/x", 1, 1, 10).unwrap();
        assert_eq!(
            checkpoint(&mut log, &mut store, "app/x", 1, 2, 11),
            Ok(CheckpointOutcome::HashMismatch)
        );
        let truncated_through = log.truncated_through();
        for sequence in 2..=101u64 {
            apply(&mut log, &mut store, &[object_record("raw/y", 1, sequence)]);
        }
        assert_eq!(log.checkpoints().released_count(), 0);
        assert_eq!(log.truncated_through(), truncated_through);
        let error = log.admit().unwrap_err();
        assert!(error.contains("divergence alarm"), "{error}");
    }

    /// A record of client 1 with `size_bytes` of arguments.
    fn large_record(sequence: u64, size_bytes: usize) -> Record {
        Record {
            arguments: dsss_wire::Arguments::new(vec![sequence as u8; size_bytes]).unwrap(),
            ..record(1, sequence)
        }
    }

    #[test]
    fn a_log_far_larger_than_its_cache_is_read_back_whole_from_the_store() {
        let mut store = MemoryStore::new();
        let mut log = new_log(RegionLogRetention::default());
        // 48 MiB of large records (past the cache's bytes), then 70,000 small ones (past its
        // count): nothing truncates, as no object has a checkpoint.
        let large = 192u64;
        for sequence in 1..=large {
            apply(&mut log, &mut store, &[large_record(sequence, 256 * 1024)]);
        }
        let small = 70_000u64;
        let mut sequence = large;
        while sequence < large + small {
            let records: Vec<Record> = (sequence + 1..=(sequence + 250).min(large + small))
                .map(|sequence| record(1, sequence))
                .collect();
            sequence += records.len() as u64;
            apply(&mut log, &mut store, &records);
        }
        let total = large + small;
        assert_eq!(log.last_position(), total);
        let check_memory = |log: &RegionLog| {
            assert!(log.cache_size_bytes() <= LOG_CACHE_BYTES_MAX);
            assert!(log.cached_records().count() <= LOG_CACHE_RECORDS_MAX);
            assert!(!log.cache_holds_every_retained_entry());
        };
        check_memory(&log);
        let stored_bytes: u64 = store
            .scan(REGION_LOG, &[], &LOG_END_KEY, usize::MAX)
            .unwrap()
            .iter()
            .map(|(_, value)| value.len() as u64)
            .sum();
        assert_eq!(
            log.retained_size_bytes(),
            stored_bytes,
            "the blocks count every byte"
        );

        // Every entry comes back in order, from the store and then from memory, in reads
        // bounded by count and bytes.
        let read_all = |log: &RegionLog| {
            let mut position = 1;
            let mut reads = 0;
            while position <= total {
                let records = log.read(&store, position, 1_000, 4 * 1024 * 1024).unwrap();
                assert!(!records.is_empty(), "a read from {position} found nothing");
                let bytes: u64 = records.iter().map(|stored| stored.size_bytes).sum();
                assert!(records.len() == 1 || bytes <= 4 * 1024 * 1024);
                for stored in &records {
                    assert_eq!(stored.position, position);
                    let expected = if position <= large {
                        large_record(position, 256 * 1024)
                    } else {
                        record(1, position)
                    };
                    assert_eq!(stored.entry.record().unwrap().arguments, expected.arguments);
                    position += 1;
                }
                reads += 1;
            }
            reads
        };
        let reads = read_all(&log);
        assert!(
            reads > total / 1_000,
            "reads are bounded by count and bytes"
        );
        // A read larger than any bound still returns the first entry.
        assert_eq!(log.read(&store, 1, 10, 1).unwrap().len(), 1);
        assert!(
            log.read(&store, total + 1, 10, u64::MAX)
                .unwrap()
                .is_empty()
        );

        // A restarted node reads back the newest entries only, and still serves all of them.
        let mut recovered = new_log(log.retention());
        recovered.recover(&store).unwrap();
        check_memory(&recovered);
        assert_eq!(recovered.retained_size_bytes(), log.retained_size_bytes());
        assert_eq!(read_all(&recovered), reads);
        assert_eq!(recovered.digest(), log.digest());

        // An entry missing from the store is named, never skipped.
        let mut damaged = store.clone();
        let mut batch = WriteBatch::new();
        batch.delete(REGION_LOG, position_key(7).to_vec());
        damaged.write(batch, true).unwrap();
        let error = log.read(&damaged, 5, 10, u64::MAX).unwrap_err();
        assert!(error.to_string().contains("expected position 7"), "{error}");
    }

    #[test]
    fn recovery_restores_the_log_and_the_dedup_table() {
        let mut store = MemoryStore::new();
        let mut log = new_log(RegionLogRetention::default());
        for sequence in 1..=9 {
            apply(&mut log, &mut store, &[record(1 + sequence % 3, sequence)]);
        }
        checkpoint(&mut log, &mut store, "lobby/main", 5, 1, 10).unwrap();
        checkpoint(&mut log, &mut store, "lobby/main", 5, 1, 11).unwrap();
        assert_eq!(log.first_retained_position(), 6);
        let mut recovered = new_log(log.retention());
        recovered.recover(&store).unwrap();
        assert_eq!(recovered, log);
        // A retry after the restart still finds its first position.
        assert_eq!(
            recovered.dedup().check(2, 7),
            DedupVerdict::Duplicate { position: 7 }
        );
    }

    #[test]
    fn a_snapshot_carries_the_whole_state_and_restores_it_alone() {
        let mut store = MemoryStore::new();
        let mut log = new_log(RegionLogRetention::default());
        for sequence in 1..=10 {
            apply(&mut log, &mut store, &[record(1 + sequence % 2, sequence)]);
        }
        checkpoint(&mut log, &mut store, "lobby/main", 4, 1, 10).unwrap();
        checkpoint(&mut log, &mut store, "lobby/main", 4, 1, 11).unwrap();
        let snapshot = log.snapshot(&store).unwrap();
        let mut other_store = MemoryStore::new();
        let mut other = new_log(log.retention());
        apply(
            &mut other,
            &mut other_store,
            &[record(99, 1), record(98, 1)],
        );
        hold_state(&log, &store, &snapshot, &mut other, &mut other_store);
        other.validate_snapshot(&snapshot).unwrap();
        hold_entries(&log, &store, &mut other_store);
        let mut batch = WriteBatch::new();
        other.restore(&snapshot, &mut batch).unwrap();
        other_store.write(batch, true).unwrap();
        assert_eq!(other, log);
        let mut recovered = new_log(log.retention());
        recovered.recover(&other_store).unwrap();
        assert_eq!(recovered, log, "the restored state was fully written");
        assert_eq!(
            other.dedup().check(99, 1),
            DedupVerdict::UnknownSession,
            "the sessions are the snapshot's"
        );
    }

    #[test]
    fn a_snapshot_carries_no_entry_and_restoring_keeps_the_entries_the_member_holds() {
        let mut store = MemoryStore::new();
        let mut log = new_log(RegionLogRetention::default());
        let entries = SNAPSHOT_BYTES_MAX / dsss_wire::ARGUMENTS_BYTES_MAX + 4;
        for sequence in 1..=entries as u64 {
            let mut large = record(1, sequence);
            large.arguments =
                dsss_wire::Arguments::new(vec![7; dsss_wire::ARGUMENTS_BYTES_MAX]).unwrap();
            apply(&mut log, &mut store, &[large]);
        }
        let snapshot = log.snapshot(&store).unwrap();
        assert!(snapshot.len() < 64 * 1024, "{} bytes", snapshot.len());
        assert_eq!(
            log.snapshot_span(&snapshot).unwrap(),
            SnapshotSpan {
                truncated_through: 0,
                next_position: log.next_position(),
                state: log.snapshot_span(&snapshot).unwrap().state,
            }
        );
        let state = log.snapshot_span(&snapshot).unwrap().state.unwrap();
        assert_eq!(state.sender_space, CheckpointSpace::A);
        // The member holds every entry the snapshot stands on (it fetched them), and stale
        // entries beyond the snapshot's end, which restoring drops.
        let mut other_store = MemoryStore::new();
        hold_entries(&log, &store, &mut other_store);
        let mut stale = WriteBatch::new();
        stale.put(
            REGION_LOG,
            position_key(log.next_position() + 3).to_vec(),
            vec![1, 2, 3],
        );
        other_store.write(stale, true).unwrap();
        let mut other = new_log(log.retention());
        hold_state(&log, &store, &snapshot, &mut other, &mut other_store);
        let mut batch = WriteBatch::new();
        other.restore(&snapshot, &mut batch).unwrap();
        other_store.write(batch, true).unwrap();
        assert_eq!(other.next_position(), log.next_position());
        assert_eq!(other.digest(), log.digest());
        assert_eq!(other.first_retained_position(), 1, "it holds the whole log");
        assert_eq!(other.cached_records().count(), 0, "the cache starts empty");
        let whole = other.with_every_entry_cached(&other_store).unwrap();
        assert!(
            whole.cached_records().eq(log
                .with_every_entry_cached(&store)
                .unwrap()
                .cached_records())
        );
        assert_eq!(
            other_store
                .scan(
                    REGION_LOG,
                    &position_key(log.next_position()),
                    &LOG_END_KEY,
                    8
                )
                .unwrap(),
            Vec::new(),
            "nothing beyond the snapshot's end is kept"
        );
        let mut recovered = new_log(log.retention());
        recovered.recover(&other_store).unwrap();
        assert_eq!(recovered, other);
    }

    #[test]
    fn damaged_snapshots_and_stores_are_errors_never_panics() {
        let mut store = MemoryStore::new();
        let mut log = new_log(RegionLogRetention::default());
        for sequence in 1..=3 {
            apply(&mut log, &mut store, &[record(1, sequence)]);
        }
        let snapshot = log.snapshot(&store).unwrap();
        for length in 0..snapshot.len() {
            assert!(log.validate_snapshot(&snapshot[..length]).is_err());
        }
        // The log's start right after the format byte and the next position: a snapshot
        // stands on the entries just above its truncation point, never elsewhere.
        let mut wrong_start = snapshot.clone();
        wrong_start[1 + 8 + 7] = 2;
        let error = log.validate_snapshot(&wrong_start).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("not just above its truncation point 0"),
            "{error}"
        );

        let mut damaged = store.clone();
        let mut batch = WriteBatch::new();
        batch.delete(REGION_LOG, position_key(2).to_vec());
        damaged.write(batch, true).unwrap();
        let mut recovered = new_log(log.retention());
        let error = recovered.recover(&damaged).unwrap_err();
        assert!(error.to_string().contains("expected position 2"), "{error}");

        // Entries beyond the end, as a snapshot catch-up leaves them when the node stops
        // before it restores the snapshot: not part of the log, and no reason to refuse it.
        let mut fetched_ahead = store.clone();
        let mut ahead = new_log(log.retention());
        let mut ahead_store = MemoryStore::new();
        for sequence in 1..=5 {
            apply(&mut ahead, &mut ahead_store, &[record(1, sequence)]);
        }
        let mut batch = WriteBatch::new();
        for position in 4..=5 {
            let bytes = ahead_store
                .get(REGION_LOG, &position_key(position))
                .unwrap()
                .unwrap();
            batch.put(REGION_LOG, position_key(position).to_vec(), bytes);
        }
        fetched_ahead.write(batch, true).unwrap();
        let mut recovered = new_log(log.retention());
        recovered.recover(&fetched_ahead).unwrap();
        assert_eq!(recovered.next_position(), 4);
        assert_eq!(recovered.digest(), log.digest());
        apply(&mut recovered, &mut fetched_ahead, &[record(1, 4)]);
        assert_eq!(recovered.next_position(), 5);

        let mut damaged = store.clone();
        let mut batch = WriteBatch::new();
        batch.put(REGION_STATE, META_KEY, vec![1, 2, 3]);
        damaged.write(batch, true).unwrap();
        let error = new_log(log.retention()).recover(&damaged).unwrap_err();
        assert!(error.to_string().contains("region_state"), "{error}");
    }

    #[test]
    fn snapshots_and_recovery_carry_the_global_state() {
        use crate::global::entry::{encode_close_batch, encode_epoch_part};
        let mut store = MemoryStore::new();
        let mut log = new_log(RegionLogRetention::default());
        let mut global = record(4, 1);
        global.scope = Scope::Global;
        let mut second = record(4, 2);
        second.scope = Scope::Global;
        apply(&mut log, &mut store, &[record(1, 1), global.clone()]);
        let mut batch = WriteBatch::new();
        let closed = Timestamp::new(1_700_000_001_000_000, 0);
        let outcome = log
            .apply(0, &encode_close_batch(closed, (0, 0)), &store, &mut batch)
            .unwrap();
        assert!(matches!(outcome, EntryOutcome::BatchClosed(Some(_))));
        store.write(batch, true).unwrap();
        apply(&mut log, &mut store, &[second]);
        assert!(
            log.cached_record(3)
                .unwrap()
                .entry
                .record()
                .unwrap()
                .timestamp
                > closed,
            "a record applied after the close exceeds the closed timestamp"
        );
        // The first part of an epoch sealing the first global record.
        let mut sealed = log
            .cached_record(2)
            .unwrap()
            .entry
            .record()
            .unwrap()
            .clone();
        sealed.timestamp = Timestamp::new(1_700_000_000_000_010, 0);
        let part = EpochPart {
            epoch_number: 1,
            watermark: closed,
            previous_watermark: None,
            records: vec![sealed],
            part_index: 0,
            part_count: 2,
            member_regions: vec![RegionId::new("eu-west").unwrap()],
        };
        let mut batch = WriteBatch::new();
        log.apply(0, &encode_epoch_part(&part), &store, &mut batch)
            .unwrap();
        store.write(batch, true).unwrap();
        assert_eq!(log.global().unsealed().count(), 1);
        assert_eq!(log.global().parts_applied_of_next(), 1);
        assert_eq!(
            log.dedup().check(4, 1),
            DedupVerdict::Duplicate { position: 4 }
        );

        let mut recovered = new_log(log.retention());
        recovered.recover(&store).unwrap();
        assert_eq!(recovered, log);
        let snapshot = log.snapshot(&store).unwrap();
        let mut other = new_log(log.retention());
        let mut other_store = MemoryStore::new();
        hold_state(&log, &store, &snapshot, &mut other, &mut other_store);
        other.validate_snapshot(&snapshot).unwrap();
        hold_entries(&log, &store, &mut other_store);
        let mut batch = WriteBatch::new();
        other.restore(&snapshot, &mut batch).unwrap();
        other_store.write(batch, true).unwrap();
        assert_eq!(other, log);
        let mut recovered = new_log(log.retention());
        recovered.recover(&other_store).unwrap();
        assert_eq!(recovered, log, "the restored state was fully written");
        for length in (0..snapshot.len()).step_by(7) {
            assert!(log.validate_snapshot(&snapshot[..length]).is_err());
        }
    }

    #[test]
    fn the_digest_tells_equal_histories_from_different_ones() {
        let (mut store_a, mut store_b) = (MemoryStore::new(), MemoryStore::new());
        let mut a = new_log(RegionLogRetention::default());
        let mut b = new_log(RegionLogRetention::default());
        apply(&mut a, &mut store_a, &[record(1, 1), record(2, 1)]);
        apply(&mut b, &mut store_b, &[record(1, 1)]);
        apply(&mut b, &mut store_b, &[record(2, 1)]);
        assert_eq!(
            a.digest(),
            b.digest(),
            "batching does not change the history"
        );
        let mut c = new_log(RegionLogRetention::default());
        let mut store_c = MemoryStore::new();
        apply(&mut c, &mut store_c, &[record(2, 1), record(1, 1)]);
        assert_ne!(a.digest(), c.digest());
    }
}
