//! [`ClientSession`]: an application instance's session with its region, sans-IO.
//!
//! One session serves every object a [`crate::Client`] has open. It follows ONE ordered stream
//! of the region log and feeds every open copy from it, so all copies advance together through
//! one client-wide position (the cursor). That is what makes sequential consistency hold across
//! objects: a read of any object reflects a prefix of the log that includes everything the
//! client observed through any object (its completed calls, earlier reads, `sync()`s). A stream
//! per object would let one copy lag another inside one process, and a read of the lagging
//! one could miss a call that a read of the other already showed.
//!
//! The session reads no clock (time comes in as `now_us`, microseconds on any monotonic
//! clock), opens no socket and spawns nothing. A driver pumps it, in this order:
//! 1. commands: [`ClientSession::open`], [`ClientSession::call`], [`ClientSession::sync`],
//!    [`ClientSession::close`], [`ClientSession::close_session`];
//! 2. inputs: [`ClientSession::handle_response`] for every answer and every piece of the log
//!    stream, [`ClientSession::handle_timeout`] when [`ClientSession::poll_timeout`] passes;
//! 3. outputs, after EVERY command or input: drain [`ClientSession::poll_transmit`] (send each
//!    to the member it names; a [`Request::Subscribe`] replaces the stream of its key opened
//!    before) and [`ClientSession::poll_event`] (complete the application's waits), then wait
//!    until [`ClientSession::poll_timeout`].
//!
//! Production runs it under tokio and gRPC (`crate::client`); the simulator runs the same
//! session over simulated networks and crashing nodes.
//!
//! # What the session decides
//! - Opening: fetch the object's newest checkpoint, restore the copy from it, then bring the
//!   copy to the cursor before it serves anything: the stream is reopened from the lowest
//!   position any copy needs, copies skip what they applied already, and the new copy joins
//!   when it stands at the cursor. Then the type's schema is declared in the object's log.
//! - Calls: each gets the client's next request sequence; every retry reuses it, so the region
//!   applies the call once. A call completes when the local copy applies its record, with the
//!   method's result computed there. A call the region acknowledged is never reported failed:
//!   the session waits for its record however long the stream takes.
//! - `sync()`: a barrier for the whole client. A member names a position (raft ReadIndex in the
//!   region and the newest sealed epoch from the coordinator); the barrier completes when the
//!   cursor reaches it.
//! - Closing: [`ClientSession::close_session`] ends the client's session in the region once
//!   no call waits for its acknowledgement (a call acknowledged still completes from the
//!   stream), so the region refuses the session's calls from then on and frees its room at
//!   once instead of after its idle timeout. No call or open is taken after it begins.
//! - Routing: proposals follow a [`LeaderTracker`]; a member that does not answer within the
//!   attempt timeout is passed over. The stream moves to the next member when it ended, or
//!   when something waits on it (a call's record, a barrier, a joining copy) and it made no
//!   progress for the stall timeout: a paused member that keeps its connections open is left
//!   behind as surely as a dead one.
//!
//! # Two clients in one process
//! Each [`crate::Client`] has its own session and cursor. Each is sequentially consistent on
//! its own; between two clients there is no promise beyond what the log order gives every
//! reader (one client may stand behind the other).
//!
//! # Bounds
//! [`OPEN_OBJECTS_MAX`] objects, [`CALLS_WAITING_MAX`] calls (of which at most
//! `calls_in_flight_max` proposed at once, numbered within [`SEQUENCE_SPAN_MAX`] of the
//! oldest call not yet in the log), [`SYNCS_WAITING_MAX`] barriers; beyond, commands are
//! refused with [`CallError::Overloaded`].

mod copy;
mod lost;
pub mod messages;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, RwLock};

use dsss_wire::Scope;

pub use copy::{ObjectCopy, new_copy};
pub use dsss_wire::route::{LeaderTracker, NextAttempt};
pub use messages::{
    FetchedCheckpoint, LogEntry, LogRecord, PositionedEntry, Request, Response, Transmit,
};

use crate::error::CallError;
use crate::object::{MethodError, SCHEMA_METHOD_ID};
use crate::replica::{Checkpoint, RecordRef};
use crate::session::lost::LostObjects;

/// The most objects one session may have open (the region's filter bound too).
pub const OPEN_OBJECTS_MAX: usize = 1_024;
/// The most calls one session may have waiting, proposed or not.
pub const CALLS_WAITING_MAX: usize = 4_096;
/// The most calls one session may have proposed at once. It stays below what a node accepts
/// in flight per client, so the session queues instead of being refused.
pub const CALLS_IN_FLIGHT_MAX: usize = 16;
/// How far past the lowest sequence of a call not yet in the log a session may number new
/// calls. The region judges only the 32 highest sequences of a session it applied (its dedup
/// window) and refuses anything older as too old; a call that is retried for a long time while
/// the others go on must stay inside that window, so new calls wait behind it instead.
pub const SEQUENCE_SPAN_MAX: u64 = CALLS_IN_FLIGHT_MAX as u64;
/// The most `sync()` barriers one session may have waiting.
pub const SYNCS_WAITING_MAX: usize = 1_024;

/// The most `sync()` attempts given up on (past the attempt timeout) whose answers the
/// session still takes; beyond, the oldest is forgotten. An answer to any attempt is a valid
/// barrier, since every attempt was asked after its `sync()` began: over a link slower than
/// the attempt timeout, the late answers are the ones that come.
pub const LATE_SYNC_ATTEMPTS_MAX: usize = 1_024;
/// The most attempts to upload one checkpoint; a lost one is no loss, the next comes later.
pub const UPLOAD_ATTEMPTS_MAX: u32 = 6;

/// How a session reaches its region and how long it waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Names the client to the region in what it reports (a checkpoint's uploader). Calls
    /// carry the session id instead, which is fresh for every [`ClientSession`], so that a
    /// process that restarts with the same client id never has its calls taken for the old
    /// process's.
    pub client_id: u64,
    /// The node ids of the region's members.
    pub members: Vec<u64>,
    /// The most calls proposed at once, 1 to [`CALLS_IN_FLIGHT_MAX`].
    pub calls_in_flight_max: usize,
    /// How long a call may take to be acknowledged over all its attempts and applied by this
    /// client's copy ([`CallError::NotApplied`] past it), and how long an open
    /// or a barrier may take, in microseconds.
    pub call_timeout_us: u64,
    /// How long one attempt may go unanswered before the next member is tried.
    pub attempt_timeout_us: u64,
    /// How long the log stream may make no progress while something waits on it before the
    /// next member is tried.
    pub stream_stall_timeout_us: u64,
    /// The first wait before a retry; it doubles with consecutive failures up to
    /// `retry_wait_max_us`.
    pub retry_wait_us: u64,
    /// The longest wait before a retry.
    pub retry_wait_max_us: u64,
    /// How long an open object may go without a new record before its copy checkpoints the
    /// records applied since its last checkpoint (0: never). Without it, an object whose
    /// writes stop holds the region's log until `checkpoint_every_records` more records (or
    /// `checkpoint_every_argument_bytes` of arguments) come, which may be never.
    pub idle_checkpoint_after_us: u64,
    /// A deliberately broken mode for the simulator's self-test: every object follows the log
    /// with a stream of its own, as releases before the client session did. Never set it
    /// elsewhere: it breaks the single order across objects.
    #[doc(hidden)]
    pub planted_stream_per_object: bool,
}

/// How long one attempt may go unanswered before the next member is tried, for a client of a
/// topology whose widest one-way delay is `d_max`: a global call is answered once its epoch
/// is sealed, which takes a WAN round trip to the coordinator, its quorum, the watermark and
/// the way back (about four `d_max`), and 200 ms more cover the region's own rounds. A retry
/// keeps the call's sequence, so an early one costs a message, never a second application;
/// a late one is how long a paused member holds its clients. Clients built from a topology
/// (`Config::from_parsed_topology`) and the simulator's instances both use it.
pub fn attempt_timeout_us_for_d_max(d_max_us: u64) -> u64 {
    d_max_us.saturating_mul(4).saturating_add(200_000)
}

/// How long the log stream of a client built from a topology may make no progress while
/// something waits on it before the client follows the log from the next member: about as
/// long as the region takes to replace a leader that stopped (200 to 400 ms with the
/// production tick), so that a paused member holds its readers no longer than its region
/// holds its writers.
pub const TOPOLOGY_STREAM_STALL_TIMEOUT_US: u64 = 500_000;

impl SessionConfig {
    /// A session of `client_id` with `members`, and the default waits.
    pub fn new(client_id: u64, members: Vec<u64>) -> SessionConfig {
        SessionConfig {
            client_id,
            members,
            calls_in_flight_max: CALLS_IN_FLIGHT_MAX,
            call_timeout_us: 30_000_000,
            attempt_timeout_us: 2_000_000,
            stream_stall_timeout_us: 1_000_000,
            retry_wait_us: 20_000,
            retry_wait_max_us: 1_000_000,
            idle_checkpoint_after_us: 10_000_000,
            planted_stream_per_object: false,
        }
    }

    /// Checks the bounds; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.members.is_empty() {
            return Err("members: the region has no members".to_owned());
        }
        if self.client_id == 0 {
            return Err("client_id: 0 is reserved".to_owned());
        }
        if !(1..=CALLS_IN_FLIGHT_MAX).contains(&self.calls_in_flight_max) {
            return Err(format!(
                "calls_in_flight_max {} is outside 1..={CALLS_IN_FLIGHT_MAX}",
                self.calls_in_flight_max
            ));
        }
        for (name, value) in [
            ("call_timeout_us", self.call_timeout_us),
            ("attempt_timeout_us", self.attempt_timeout_us),
            ("stream_stall_timeout_us", self.stream_stall_timeout_us),
            ("retry_wait_us", self.retry_wait_us),
            ("retry_wait_max_us", self.retry_wait_max_us),
        ] {
            if value == 0 {
                return Err(format!("{name} is zero"));
            }
        }
        if self.retry_wait_us > self.retry_wait_max_us {
            return Err(format!(
                "retry_wait_us {} is above retry_wait_max_us {}",
                self.retry_wait_us, self.retry_wait_max_us
            ));
        }
        Ok(())
    }
}

/// What a session counted, for reports and coverage checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// Times the log stream moved to another member (it ended, stalled, or broke the protocol).
    pub stream_moves: u64,
    /// Of those, moves because the stream stalled while something waited on it.
    pub stream_stalls: u64,
    /// Attempts of calls beyond the first (same sequence).
    pub call_retries: u64,
    /// Copies that joined the client's position after opening.
    pub copies_joined: u64,
    /// Copies moved to a newer checkpoint because the log below them was truncated.
    pub copies_restored: u64,
    /// Sessions opened in the region (the first, and new ones after the region ended one).
    pub sessions_opened: u64,
    /// Calls answered from the outcomes a checkpoint carried, because their copy moved to
    /// the checkpoint over their record.
    pub results_from_checkpoints: u64,
    /// Checkpoints made because an object's writes stopped
    /// ([`SessionConfig::idle_checkpoint_after_us`]).
    pub idle_checkpoints: u64,
    /// Checkpoints uploaded by copies that were closed with records since their last one.
    pub closing_checkpoints: u64,
    /// Checkpoint fetches answered "released" and asked again, in case an instance that
    /// follows the object lifts the release with its next checkpoint.
    pub released_fetches_retried: u64,
    /// Copies of global objects that reached the end of sealed epochs the region skipped (no
    /// region's log held them any longer) and fetched their state again.
    pub copies_behind_skipped_epochs: u64,
    /// `sync()` barriers named by the answer to an attempt already given up on (past the
    /// attempt timeout), see [`LATE_SYNC_ATTEMPTS_MAX`].
    pub late_sync_barriers: u64,
}

/// What the session tells the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An open finished: the copy stands at the client's position and the schema is declared.
    Opened {
        /// The id [`ClientSession::open`] returned.
        open_id: u64,
        /// The outcome.
        outcome: Result<(), CallError>,
    },
    /// A call finished: the method's encoded result from the local copy, or why not.
    CallDone {
        /// The id [`ClientSession::call`] returned.
        call_id: u64,
        /// The outcome.
        outcome: Result<Vec<u8>, CallError>,
    },
    /// The close of the session in the region finished: the region holds the session no more,
    /// or why that is not known.
    SessionClosed {
        /// The id [`ClientSession::close_session`] returned.
        close_id: u64,
        /// The outcome.
        outcome: Result<(), CallError>,
    },
    /// A barrier finished: reads now see every call completed anywhere before it began.
    SyncDone {
        /// The id [`ClientSession::sync`] returned.
        sync_id: u64,
        /// The outcome.
        outcome: Result<(), CallError>,
    },
    /// The region found that another copy checkpointed a different state at the same position:
    /// a method of the object is not deterministic.
    CheckpointDiverged {
        /// The object.
        object_id: String,
        /// The position.
        position: u64,
    },
}

/// Where an open object stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Fetching the checkpoint to start from.
    Fetching,
    /// Restored; being brought to the cursor by the stream.
    Joining,
    /// At the cursor, following it; the schema declaration (the call with this id) is under
    /// way.
    Declaring { call_id: u64 },
    /// Open: serving reads and calls.
    Open,
}

/// One object of the session.
struct OpenObject {
    scope: Scope,
    copy: Arc<dyn ObjectCopy>,
    phase: Phase,
    open_id: u64,
    /// The stream that feeds the copy (always [`SHARED_STREAM`] unless the planted fault is on).
    stream: u64,
    /// The checkpoint fetch of an open, while `phase` is `Fetching`.
    fetch: Option<Attempts>,
    /// The checkpoint being uploaded, and the attempts made.
    upload: Option<(Checkpoint, u32)>,
    /// When the copy last applied a record (or the object opened).
    last_record_us: u64,
}

/// The key of the one stream of a correct session.
const SHARED_STREAM: u64 = 0;

/// The log stream that feeds a set of copies.
struct Stream {
    /// The subscription currently open, by its request id.
    subscription: Option<u64>,
    /// The member the stream reads from, as an index into the members.
    member_index: usize,
    /// Every copy this stream feeds that has joined stands at this position.
    cursor: u64,
    /// What the current subscription has delivered through.
    subscription_through: u64,
    /// When the current subscription last delivered something new (or something began to
    /// wait on it).
    last_progress_us: u64,
    /// When to open the stream again after it ended.
    reopen_at_us: Option<u64>,
    /// Consecutive failures, for the backoff.
    failures: u32,
    /// Members in a row that said they keep the log only above where the stream needs it.
    truncated_answers: usize,
}

/// The attempts of one unary request: what is in flight, and when to try again.
#[derive(Clone, Debug)]
struct Attempts {
    started_us: u64,
    attempts: u32,
    /// The attempt in flight: its request id and when it is given up.
    in_flight: Option<(u64, u64)>,
    /// When to send the next attempt, if none is in flight.
    retry_at_us: Option<u64>,
    failures: u32,
    /// Attempts a member refused before proposing anything (`ResourceExhausted`: overloaded,
    /// a full log, too many unsealed calls): none of them can have been applied.
    refused_unproposed: u32,
    last_error: String,
    /// For a checkpoint fetch: the position through which a member last said the region
    /// released the object's records, 0 when none did.
    released_through: u64,
}

impl Attempts {
    fn new(now_us: u64) -> Attempts {
        Attempts {
            started_us: now_us,
            attempts: 0,
            in_flight: None,
            retry_at_us: Some(now_us),
            failures: 0,
            refused_unproposed: 0,
            last_error: "no attempt made".to_owned(),
            released_through: 0,
        }
    }

    fn gave_up(&self, now_us: u64) -> CallError {
        CallError::GaveUp {
            attempts: self.attempts,
            elapsed_ms: now_us.saturating_sub(self.started_us) / 1_000,
            last_error: self.last_error.clone(),
        }
    }
}

/// The client's session in the region's replicated state: the region applies each of its
/// calls once while it lives.
struct RegionSession {
    /// The session id requests name: the one this client chose.
    id: u64,
    /// The id the region keeps the session under, which its records carry in the log: under
    /// mutual TLS one derived from the client's identity and `id`, so that no other client
    /// can use the session; `id` until the region says.
    log_id: u64,
    /// The region confirmed the open; calls may be sent.
    open: bool,
    /// The open under way while not open.
    attempts: Attempts,
}

/// The close of the client's session in the region, once asked for.
struct SessionClose {
    /// The id [`ClientSession::close_session`] returned.
    close_id: u64,
    attempts: Attempts,
    /// The close finished (the event went out).
    done: bool,
}

/// The error of an open or a call made after the client began to close.
fn client_closed(object_id: &str) -> CallError {
    CallError::Stopped {
        object: object_id.to_owned(),
        reason: "the client was closed".to_owned(),
    }
}

/// The session id after `id`: a step of SplitMix64, so that ids look random to the region
/// and the simulator's stay deterministic.
fn next_session_id(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

/// One call of the application (or a schema declaration).
struct CallState {
    object_id: String,
    method_id: u32,
    arguments: Vec<u8>,
    /// Given when the call leaves the queue, with the session it is sent in (the id the
    /// session's records carry in the log); every attempt reuses both.
    sequence: Option<(u64, u64)>,
    /// The session id the call's requests name (the id this client chose; the region may
    /// keep the session under another, `sequence`'s).
    request_session_id: u64,
    attempts: Attempts,
    /// The position the region acknowledged the call at.
    committed_at: Option<u64>,
}

/// One `sync()` barrier.
struct SyncState {
    attempts: Attempts,
    /// The position to apply through, once a member named it.
    barrier: Option<u64>,
}

/// What a unary request in flight serves.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pending {
    OpenSession,
    CloseSession,
    Call(u64),
    Fetch(String),
    Upload(String),
    Sync(u64),
}

/// A pending request, the member it went to, and when it is given up.
struct InFlight {
    pending: Pending,
    node_id: u64,
    deadline_us: u64,
}

/// An application instance's session with its region. See the module documentation.
pub struct ClientSession {
    config: SessionConfig,
    /// Taken for writing while a piece of the stream is applied to the copies, and for reading
    /// by every read of a copy: a reader never sees one copy ahead of another.
    view: Arc<RwLock<()>>,
    objects: BTreeMap<String, OpenObject>,
    /// Objects whose copy the session dropped while they were open (a checkpoint it had to
    /// move to could not be had: the region released the records), with why: a later call
    /// on one fails with that error rather than as "not open". At most
    /// [`OPEN_OBJECTS_MAX`], the oldest forgotten first; opening or closing the name again
    /// forgets it.
    lost: LostObjects,
    streams: BTreeMap<u64, Stream>,
    calls: BTreeMap<u64, CallState>,
    /// Calls by (session, request sequence), once proposed.
    call_by_sequence: BTreeMap<(u64, u64), u64>,
    /// Calls waiting for a slot in flight, oldest first.
    queued_calls: VecDeque<u64>,
    syncs: BTreeMap<u64, SyncState>,
    requests: BTreeMap<u64, InFlight>,
    /// `sync()` attempts past their attempt timeout, by request id, with their barrier's id:
    /// at most [`LATE_SYNC_ATTEMPTS_MAX`].
    late_sync_attempts: BTreeMap<u64, u64>,
    /// Uploads to send again, to the member the tracker names.
    pending_upload_retries: Vec<String>,
    leader: LeaderTracker,
    session: RegionSession,
    /// The close of the session, once asked for: no call or open is taken from then on.
    close: Option<SessionClose>,
    next_request_id: u64,
    next_sequence: u64,
    next_handle_id: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: SessionCounters,
}

impl ClientSession {
    /// A session with `config` that opens the session `session_id` in the region before its
    /// first call. `session_id` MUST be fresh: 64 random bits (the driver draws them; the
    /// simulator derives them from its seed). A session the region ends is replaced by one
    /// whose id follows from it.
    pub fn new(config: SessionConfig, session_id: u64) -> Result<ClientSession, CallError> {
        config.validate().map_err(CallError::Config)?;
        if session_id == 0 {
            return Err(CallError::Config("session id 0 is never valid".to_owned()));
        }
        let leader = LeaderTracker::new(config.members.clone(), config.client_id);
        Ok(ClientSession {
            config,
            view: Arc::new(RwLock::new(())),
            objects: BTreeMap::new(),
            lost: LostObjects::new(OPEN_OBJECTS_MAX),
            streams: BTreeMap::new(),
            calls: BTreeMap::new(),
            call_by_sequence: BTreeMap::new(),
            queued_calls: VecDeque::new(),
            syncs: BTreeMap::new(),
            requests: BTreeMap::new(),
            late_sync_attempts: BTreeMap::new(),
            pending_upload_retries: Vec::new(),
            leader,
            session: RegionSession {
                id: session_id,
                log_id: session_id,
                open: false,
                attempts: Attempts::new(0),
            },
            close: None,
            next_request_id: 1,
            next_sequence: 1,
            next_handle_id: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: SessionCounters::default(),
        })
    }

    // Getters.

    /// The session's configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The lock that orders reads against the application of the log: hold its read side
    /// while reading a copy.
    pub fn view(&self) -> Arc<RwLock<()>> {
        Arc::clone(&self.view)
    }

    /// The position every open copy has applied through (with the planted fault, the lowest
    /// of the streams' positions).
    pub fn position(&self) -> u64 {
        self.streams
            .values()
            .map(|stream| stream.cursor)
            .min()
            .unwrap_or(0)
    }

    /// Whether `object_id` is open (its open completed).
    pub fn is_open(&self, object_id: &str) -> bool {
        self.objects
            .get(object_id)
            .is_some_and(|object| object.phase == Phase::Open)
    }

    /// What the session counted so far.
    pub fn counters(&self) -> SessionCounters {
        self.counters
    }

    /// The request sequence the next proposed call gets.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    // Commands.

    /// Opens `object_id` with `copy` (a fresh copy of the object's type). Completes with
    /// [`Event::Opened`]; the copy serves reads only after that.
    pub fn open(
        &mut self,
        now_us: u64,
        object_id: &str,
        scope: Scope,
        copy: Arc<dyn ObjectCopy>,
    ) -> Result<u64, CallError> {
        dsss_wire::ObjectId::new(object_id)
            .map_err(|error| CallError::Config(error.to_string()))?;
        if self.close.is_some() {
            return Err(client_closed(object_id));
        }
        if self.objects.contains_key(object_id) {
            return Err(CallError::Config(format!(
                "{object_id} is open in this client already: clone its handle instead"
            )));
        }
        self.lost.forget(object_id);
        if self.objects.len() >= OPEN_OBJECTS_MAX {
            return Err(CallError::Overloaded(format!(
                "this client already has {OPEN_OBJECTS_MAX} objects open"
            )));
        }
        let open_id = self.next_handle();
        let stream = if self.config.planted_stream_per_object {
            open_id
        } else {
            SHARED_STREAM
        };
        self.objects.insert(
            object_id.to_owned(),
            OpenObject {
                scope,
                copy,
                phase: Phase::Fetching,
                open_id,
                stream,
                fetch: Some(Attempts::new(now_us)),
                upload: None,
                last_record_us: now_us,
            },
        );
        self.send_due(now_us);
        Ok(open_id)
    }

    /// Closes `object_id`: its waiting calls fail, and the stream stops carrying its records.
    /// A copy that applied records since its last checkpoint uploads one more, once and
    /// without waiting for the answer: if it was the object's last instance, its newest
    /// records would otherwise be covered by no checkpoint, and the region would in time
    /// release them (docs/design.md section 2.8), after which the object no longer opens.
    pub fn close(&mut self, now_us: u64, object_id: &str) {
        self.lost.forget(object_id);
        let Some(object) = self.objects.remove(object_id) else {
            return;
        };
        if object.phase != Phase::Fetching
            && object.copy.records_since_checkpoint() > 0
            && object.copy.checkpoint_now()
            && let Some(checkpoint) = object.copy.poll_checkpoint()
        {
            self.counters.closing_checkpoints += 1;
            let node_id = self.leader.target();
            let request_id = self.next_request();
            self.requests.insert(
                request_id,
                InFlight {
                    pending: Pending::Upload(object_id.to_owned()),
                    node_id,
                    deadline_us: now_us + self.config.attempt_timeout_us,
                },
            );
            self.transmits.push_back(Transmit {
                node_id,
                request_id,
                request: Request::UploadCheckpoint {
                    object_id: object_id.to_owned(),
                    position: checkpoint.position,
                    state: checkpoint.state,
                    state_hash: checkpoint.state_hash,
                    client_id: self.config.client_id,
                },
            });
        }
        let reason = "the object was closed".to_owned();
        if object.phase != Phase::Open {
            self.events.push_back(Event::Opened {
                open_id: object.open_id,
                outcome: Err(CallError::Stopped {
                    object: object_id.to_owned(),
                    reason: reason.clone(),
                }),
            });
        }
        self.fail_calls_of(now_us, object_id, &reason);
        self.reopen_stream(now_us, object.stream);
    }

    /// Closes the client's session in the region: once no call waits for its acknowledgement
    /// (each is acknowledged, or gives up by its timeout), the close goes to the region, and
    /// from then on the region refuses every call of the session and no longer counts it
    /// against its bound on live sessions. No call or open is taken after this; calls already
    /// acknowledged still complete from the stream. Completes with [`Event::SessionClosed`]
    /// (a session that never asked the region for an open completes at once); a close that
    /// gets no answer within `call_timeout_us` gives up, and the region ends the session after
    /// its idle timeout instead. Asked again, it returns the same id.
    pub fn close_session(&mut self, now_us: u64) -> u64 {
        if let Some(close) = &self.close {
            return close.close_id;
        }
        let close_id = self.next_handle();
        let mut attempts = Attempts::new(now_us);
        attempts.retry_at_us = None;
        self.close = Some(SessionClose {
            close_id,
            attempts,
            done: false,
        });
        self.after_input(now_us);
        close_id
    }

    /// The one request that closes the session in the region at once, for a driver that stops
    /// and awaits no answer (a dropped client): calls still unacknowledged are left to the
    /// region, which applies each once or refuses it. No call or open is taken after this.
    /// `None` when the region never heard of the session or its close was sent already.
    pub fn close_session_now(&mut self, now_us: u64) -> Option<Transmit> {
        if self.close_under_way() {
            return None;
        }
        let close_id = self.close_session(now_us);
        if self.close_under_way() {
            // Nothing waited: the close went out as any other request.
            return self
                .transmits
                .drain(..)
                .find(|transmit| matches!(transmit.request, Request::CloseSession { .. }));
        }
        let close = self.close.as_mut().expect("asked for above");
        debug_assert_eq!(close.close_id, close_id);
        close.done = true;
        close.attempts.attempts = 1;
        Some(Transmit {
            node_id: self.leader.target(),
            request_id: self.next_request(),
            request: Request::CloseSession {
                session_id: self.session.id,
            },
        })
    }

    /// Whether [`ClientSession::close_session`] was asked for.
    pub fn is_closing(&self) -> bool {
        self.close.is_some()
    }

    /// How many calls wait for the region's acknowledgement (queued, or proposed and not yet
    /// answered).
    pub fn calls_unacknowledged(&self) -> usize {
        self.calls
            .values()
            .filter(|call| call.committed_at.is_none())
            .count()
    }

    /// Calls `method_id` of the open object `object_id` with encoded `arguments`. Completes
    /// with [`Event::CallDone`].
    pub fn call(
        &mut self,
        now_us: u64,
        object_id: &str,
        method_id: u32,
        arguments: Vec<u8>,
    ) -> Result<u64, CallError> {
        match self.objects.get(object_id) {
            Some(object) if object.phase == Phase::Open => {}
            Some(_) => {
                return Err(CallError::Config(format!("{object_id} is still opening")));
            }
            None => {
                if let Some(error) = self.lost.get(object_id) {
                    return Err(error.clone());
                }
                return Err(CallError::Config(format!(
                    "{object_id} is not open in this client"
                )));
            }
        }
        if method_id == SCHEMA_METHOD_ID {
            return Err(CallError::Config(format!(
                "method id {SCHEMA_METHOD_ID} is reserved for schema declarations"
            )));
        }
        self.add_call(now_us, object_id, method_id, arguments)
    }

    /// Begins a `sync()` barrier for the whole client. Completes with [`Event::SyncDone`].
    pub fn sync(&mut self, now_us: u64) -> Result<u64, CallError> {
        if self.syncs.len() >= SYNCS_WAITING_MAX {
            return Err(CallError::Overloaded(format!(
                "this client already waits on {SYNCS_WAITING_MAX} barriers"
            )));
        }
        let sync_id = self.next_handle();
        self.syncs.insert(
            sync_id,
            SyncState {
                attempts: Attempts::new(now_us),
                barrier: None,
            },
        );
        self.send_due(now_us);
        Ok(sync_id)
    }

    // Inputs.

    /// Hands in what came back for the request `request_id` from `node_id`: an answer, or a
    /// piece or the end of a log stream. Answers to requests the session gave up on are
    /// ignored; so is anything that breaks the protocol (the stream moves to another member).
    pub fn handle_response(
        &mut self,
        now_us: u64,
        node_id: u64,
        request_id: u64,
        response: Response,
    ) {
        if let Some(stream_key) = self.stream_of_subscription(request_id) {
            self.handle_stream(now_us, stream_key, response);
        } else if let Some(in_flight) = self.requests.remove(&request_id) {
            match in_flight.pending {
                Pending::OpenSession => {
                    self.handle_session_response(now_us, node_id, request_id, response);
                }
                Pending::CloseSession => {
                    self.handle_close_response(now_us, node_id, request_id, response);
                }
                Pending::Call(call_id) => {
                    self.handle_call_response(now_us, call_id, node_id, request_id, response);
                }
                Pending::Fetch(object_id) => {
                    self.handle_fetch_response(now_us, &object_id, node_id, request_id, response);
                }
                Pending::Upload(object_id) => {
                    self.handle_upload_response(&object_id, node_id, response);
                }
                Pending::Sync(sync_id) => {
                    self.handle_sync_response(now_us, sync_id, node_id, request_id, response);
                }
            }
        } else if let Some(sync_id) = self.late_sync_attempts.remove(&request_id)
            && let Response::Barrier {
                apply_through_position,
            } = response
        {
            self.counters.late_sync_barriers += 1;
            self.set_sync_barrier(now_us, sync_id, apply_through_position);
        }
        self.after_input(now_us);
    }

    /// Hands in the passing of time: attempts that went unanswered, retries that are due,
    /// streams that stalled.
    pub fn handle_timeout(&mut self, now_us: u64) {
        let expired: Vec<u64> = self
            .requests
            .keys()
            .copied()
            .filter(|request_id| {
                self.attempt_deadline(*request_id)
                    .is_some_and(|deadline| deadline <= now_us)
            })
            .collect();
        for request_id in expired {
            if let Some(in_flight) = self.requests.get(&request_id) {
                let node_id = in_flight.node_id;
                if let Pending::Sync(sync_id) = in_flight.pending {
                    if self.late_sync_attempts.len() >= LATE_SYNC_ATTEMPTS_MAX {
                        self.late_sync_attempts.pop_first();
                    }
                    self.late_sync_attempts.insert(request_id, sync_id);
                }
                self.handle_response(
                    now_us,
                    node_id,
                    request_id,
                    Response::Failed {
                        reason: format!("node {node_id}: no answer within the attempt timeout"),
                    },
                );
            }
        }
        let stalled: Vec<u64> = self
            .streams
            .iter()
            .filter(|(key, stream)| {
                stream.subscription.is_some()
                    && self.stream_waited_on(**key)
                    && now_us >= stream.last_progress_us + self.config.stream_stall_timeout_us
            })
            .map(|(key, _)| *key)
            .collect();
        for key in stalled {
            // A member that keeps its connection but delivers nothing (paused, cut off from
            // its leader) is left for the next one.
            self.counters.stream_stalls += 1;
            self.move_stream(now_us, key, "made no progress within the stall timeout");
        }
        for object in self.objects.values() {
            if self
                .idle_checkpoint_due_at(object)
                .is_some_and(|due| due <= now_us)
                && object.copy.checkpoint_now()
            {
                self.counters.idle_checkpoints += 1;
            }
        }
        self.after_input(now_us);
    }

    /// When an open object's copy checkpoints because its writes stopped, if it has records
    /// since its last checkpoint and nothing is being uploaded for it.
    fn idle_checkpoint_due_at(&self, object: &OpenObject) -> Option<u64> {
        let after = self.config.idle_checkpoint_after_us;
        (after > 0
            && object.phase != Phase::Fetching
            && object.upload.is_none()
            && object.copy.records_since_checkpoint() > 0)
            .then(|| object.last_record_us.saturating_add(after))
    }

    // Outputs.

    /// The next request to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`ClientSession::handle_timeout`] is due next, if anything waits on time.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut consider = |at: Option<u64>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |current| current.min(at)));
            }
        };
        for request_id in self.requests.keys() {
            consider(self.attempt_deadline(*request_id));
        }
        if !self.session.open && self.open_wanted() {
            consider(self.session.attempts.retry_at_us);
        }
        if let Some(close) = self.close.as_ref().filter(|close| !close.done) {
            consider(close.attempts.retry_at_us);
            if close.attempts.attempts > 0 {
                consider(Some(
                    close.attempts.started_us + self.config.call_timeout_us,
                ));
            }
        }
        for call in self.calls.values() {
            consider(call.attempts.retry_at_us);
            // Acknowledged calls too: the deadline covers waiting for the local apply.
            if call.sequence.is_some() || !self.session.open {
                consider(Some(call.attempts.started_us + self.config.call_timeout_us));
            }
        }
        for sync in self.syncs.values() {
            consider(sync.attempts.retry_at_us);
            consider(Some(sync.attempts.started_us + self.config.call_timeout_us));
        }
        for object in self.objects.values() {
            consider(self.idle_checkpoint_due_at(object));
            if let Some(fetch) = &object.fetch {
                consider(fetch.retry_at_us);
                // Only an open gives up; a copy moving to a newer checkpoint keeps trying.
                if object.phase == Phase::Fetching {
                    consider(Some(fetch.started_us + self.config.call_timeout_us));
                }
            }
        }
        for (key, stream) in &self.streams {
            // A stream waiting for a copy's newer checkpoint reopens when the fetch answers.
            if !self.stream_restoring(*key) {
                consider(stream.reopen_at_us);
            }
            if stream.subscription.is_some() && self.stream_waited_on(*key) {
                consider(Some(
                    stream.last_progress_us + self.config.stream_stall_timeout_us,
                ));
            }
        }
        next
    }

    /// Every deadline at or before `now_us`, described: after [`Self::handle_timeout`] there
    /// are none (a driver may assert it).
    #[doc(hidden)]
    pub fn overdue(&self, now_us: u64) -> Vec<String> {
        let mut overdue = Vec::new();
        for (id, request) in &self.requests {
            if request.deadline_us <= now_us {
                overdue.push(format!("request {id} {:?}", request.pending));
            }
        }
        for (id, call) in &self.calls {
            if call.attempts.retry_at_us.is_some_and(|at| at <= now_us) {
                overdue.push(format!("call {id} retry (sequence {:?})", call.sequence));
            }
            if call.sequence.is_some()
                && call.attempts.started_us + self.config.call_timeout_us <= now_us
            {
                overdue.push(format!("call {id} timeout"));
            }
        }
        for (id, sync) in &self.syncs {
            if sync.attempts.retry_at_us.is_some_and(|at| at <= now_us) {
                overdue.push(format!("sync {id} retry"));
            }
        }
        for (name, object) in &self.objects {
            if let Some(fetch) = &object.fetch
                && (fetch.retry_at_us.is_some_and(|at| at <= now_us)
                    || (object.phase == Phase::Fetching
                        && fetch.started_us + self.config.call_timeout_us <= now_us))
            {
                overdue.push(format!("fetch of {name} in phase {:?}", object.phase));
            }
        }
        for (key, stream) in &self.streams {
            if stream.reopen_at_us.is_some_and(|at| at <= now_us) && !self.stream_restoring(*key) {
                overdue.push(format!("stream {key} reopen"));
            }
            if stream.subscription.is_some()
                && self.stream_waited_on(*key)
                && stream.last_progress_us + self.config.stream_stall_timeout_us <= now_us
            {
                overdue.push(format!("stream {key} stall"));
            }
        }
        overdue
    }

    // The log stream.

    fn stream_of_subscription(&self, request_id: u64) -> Option<u64> {
        self.streams
            .iter()
            .find(|(_, stream)| stream.subscription == Some(request_id))
            .map(|(key, _)| *key)
    }

    fn handle_stream(&mut self, now_us: u64, key: u64, response: Response) {
        match response {
            Response::LogPiece {
                entries,
                through_position,
            } => {
                if let Err(reason) = self.check_piece(key, &entries, through_position) {
                    // A member that sends a broken stream is not trusted with it any longer.
                    self.move_stream(now_us, key, &reason);
                    return;
                }
                self.apply_piece(now_us, key, &entries, through_position);
            }
            // The member keeps the log only above what the stream needs. A claimed start at
            // or below it is no truncation: the stream failed, and moves like any other.
            Response::StreamEnded {
                first_retained_position: Some(first_retained),
                ..
            } if first_retained > self.streams[&key].subscription_through + 1 => {
                self.handle_truncated(now_us, key, first_retained);
            }
            Response::StreamEnded { reason, .. }
            | Response::Failed { reason }
            | Response::Refused { reason }
            | Response::Busy { reason } => self.move_stream(now_us, key, &reason),
            other => {
                let reason = format!("the stream carried an unexpected answer: {other:?}");
                self.move_stream(now_us, key, &reason);
            }
        }
    }

    /// A piece must hold increasing positions above what the subscription delivered, none
    /// above its own `through_position`.
    fn check_piece(
        &self,
        key: u64,
        entries: &[PositionedEntry],
        through_position: u64,
    ) -> Result<(), String> {
        let stream = &self.streams[&key];
        let mut last = stream.subscription_through;
        for entry in entries {
            if entry.position <= last {
                return Err(format!(
                    "the stream sent position {} after position {last}",
                    entry.position
                ));
            }
            last = entry.position;
        }
        if through_position < last {
            return Err(format!(
                "the stream said it delivered through {through_position} but sent position \
                 {last}"
            ));
        }
        Ok(())
    }

    fn apply_piece(
        &mut self,
        now_us: u64,
        key: u64,
        entries: &[PositionedEntry],
        through_position: u64,
    ) {
        // The sessions this client's calls went out in: the current one, and ended ones
        // whose calls still wait.
        let sessions: BTreeSet<u64> = self.call_by_sequence.keys().map(|(id, _)| *id).collect();
        let mut completed = Vec::new();
        let mut stopped = Vec::new();
        let mut touched: Vec<String> = Vec::new();
        let mut skipped_copies = 0u64;
        {
            // Readers see the copies before this piece or after it, never in between.
            let view = Arc::clone(&self.view);
            let _applying = view
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for positioned in entries {
                let (record, scope) = match &positioned.entry {
                    LogEntry::Regional(record) => (record, Scope::Regional),
                    LogEntry::SequencedGlobal(record) => (record, Scope::Global),
                    LogEntry::EpochsSkipped => {
                        // The region skipped sealed epochs no region's log held any longer:
                        // a global copy below this entry missed records, and restarts from a
                        // checkpoint the region adopts from another region.
                        for object in self.objects.values_mut() {
                            if object.stream == key
                                && object.scope == Scope::Global
                                && object.phase != Phase::Fetching
                                && object.fetch.is_none()
                                && object.copy.position() < positioned.position
                            {
                                object.fetch = Some(Attempts::new(now_us));
                                skipped_copies += 1;
                            }
                        }
                        continue;
                    }
                    LogEntry::Other => continue,
                };
                let Some(object) = self.objects.get(&record.object_id) else {
                    continue;
                };
                if object.stream != key
                    || object.scope != scope
                    || object.phase == Phase::Fetching
                    || object.fetch.is_some()
                    || positioned.position <= object.copy.position()
                    || object.copy.stopped().is_some()
                {
                    continue;
                }
                touched.push(record.object_id.clone());
                let applied = object.copy.handle_record(
                    positioned.position,
                    RecordRef {
                        client_id: record.client_id,
                        request_sequence: record.request_sequence,
                        method_id: record.method_id,
                        arguments: &record.arguments,
                    },
                );
                match applied {
                    Ok(applied) if sessions.contains(&applied.client_id) => {
                        completed.push((record.object_id.clone(), applied));
                    }
                    Ok(_) => {}
                    Err(error) => stopped.push((record.object_id.clone(), error.to_string())),
                }
            }
            for object in self.objects.values() {
                // A copy waiting for a checkpoint does not move past what it missed.
                if object.stream == key
                    && object.phase != Phase::Fetching
                    && object.fetch.is_none()
                    && object.copy.position() < through_position
                {
                    object.copy.handle_gap(through_position);
                }
            }
            let stream = self.streams.get_mut(&key).expect("the stream exists");
            stream.cursor = stream.cursor.max(through_position);
            if through_position > stream.subscription_through {
                stream.subscription_through = through_position;
                stream.last_progress_us = now_us;
                stream.failures = 0;
                stream.truncated_answers = 0;
            }
        }
        for object_id in touched {
            if let Some(object) = self.objects.get_mut(&object_id) {
                object.last_record_us = now_us;
            }
        }
        for (object_id, applied) in completed {
            let Some(call_id) = self
                .call_by_sequence
                .get(&(applied.client_id, applied.request_sequence))
                .copied()
            else {
                continue;
            };
            if self.calls[&call_id].object_id != object_id {
                continue;
            }
            let outcome = applied.outcome.map_err(CallError::from);
            self.finish_call(now_us, call_id, outcome);
        }
        for (object_id, reason) in stopped {
            self.fail_calls_of(now_us, &object_id, &reason);
        }
        if skipped_copies > 0 {
            // The copies that fetch leave the stream's filter: it opens again without them,
            // and with them once they are restored.
            self.counters.copies_behind_skipped_epochs += skipped_copies;
            let stream = self.streams.get_mut(&key).expect("the stream exists");
            stream.subscription = None;
            stream.reopen_at_us = Some(now_us);
        }
    }

    /// Every member may say the log is truncated below where the stream needs it: the
    /// objects behind it move to their newest checkpoints.
    fn handle_truncated(&mut self, now_us: u64, key: u64, first_retained: u64) {
        let members = self.config.members.len();
        let stream = self.streams.get_mut(&key).expect("the stream exists");
        stream.truncated_answers += 1;
        if stream.truncated_answers < members {
            // This member may have restored a snapshot that starts higher; another may not.
            self.move_stream(
                now_us,
                key,
                "the member keeps the log only above the stream",
            );
            return;
        }
        stream.truncated_answers = 0;
        let behind: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, object)| {
                object.stream == key
                    && object.phase != Phase::Fetching
                    && object.copy.position() + 1 < first_retained
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in behind {
            let object = self.objects.get_mut(&name).expect("listed above");
            object.fetch = Some(Attempts::new(now_us));
        }
        let stream = self.streams.get_mut(&key).expect("the stream exists");
        stream.subscription = None;
        stream.reopen_at_us = Some(now_us);
    }

    /// Ends the current subscription of stream `key` and reopens it on the next member after
    /// a backoff.
    fn move_stream(&mut self, now_us: u64, key: u64, _reason: &str) {
        self.counters.stream_moves += 1;
        let members = self.config.members.len();
        let wait = self.retry_wait(self.streams[&key].failures);
        let stream = self.streams.get_mut(&key).expect("the stream exists");
        stream.subscription = None;
        stream.failures = stream.failures.saturating_add(1);
        stream.member_index = (stream.member_index + 1) % members;
        stream.reopen_at_us = Some(now_us + wait);
    }

    /// Opens stream `key` again from the lowest position any of its copies needs, with a
    /// filter of every copy it feeds; closes it when it feeds none.
    fn reopen_stream(&mut self, now_us: u64, key: u64) {
        let feeding: Vec<(&String, &OpenObject)> = self
            .objects
            .iter()
            .filter(|(_, object)| object.stream == key && object.fetch.is_none())
            .collect();
        if feeding.is_empty() {
            if let Some(stream) = self.streams.get_mut(&key) {
                stream.subscription = None;
                stream.reopen_at_us = None;
            }
            if self.objects.values().all(|object| object.stream != key) {
                self.streams.remove(&key);
            }
            return;
        }
        let from_position = feeding
            .iter()
            .map(|(_, object)| object.copy.position())
            .min()
            .expect("not empty")
            + 1;
        let object_ids: Vec<String> = feeding.iter().map(|(name, _)| (*name).clone()).collect();
        let joined = feeding
            .iter()
            .any(|(_, object)| matches!(object.phase, Phase::Declaring { .. } | Phase::Open));
        let request_id = self.next_request();
        let members = self.config.members.len();
        let start = (self.config.client_id as usize).wrapping_add(key as usize) % members;
        let stream = self.streams.entry(key).or_insert_with(|| Stream {
            subscription: None,
            member_index: start,
            cursor: 0,
            subscription_through: 0,
            last_progress_us: now_us,
            reopen_at_us: None,
            failures: 0,
            truncated_answers: 0,
        });
        if !joined {
            // No copy follows the stream yet: it starts where the lowest copy stands.
            stream.cursor = from_position - 1;
        }
        stream.subscription = Some(request_id);
        stream.subscription_through = from_position - 1;
        stream.last_progress_us = now_us;
        stream.reopen_at_us = None;
        let node_id = self.config.members[stream.member_index];
        self.transmits.push_back(Transmit {
            node_id,
            request_id,
            request: Request::Subscribe {
                stream: key,
                from_position,
                object_ids,
            },
        });
    }

    /// Whether something waits on stream `key` to move: a joining copy, an acknowledged call
    /// whose record is not applied yet, a barrier not reached.
    fn stream_waited_on(&self, key: u64) -> bool {
        let Some(stream) = self.streams.get(&key) else {
            return false;
        };
        let joining = self
            .objects
            .values()
            .any(|object| object.stream == key && object.phase == Phase::Joining);
        let calls = self.calls.values().any(|call| {
            call.committed_at.is_some()
                && self
                    .objects
                    .get(&call.object_id)
                    .is_some_and(|object| object.stream == key)
        });
        let syncs = self
            .syncs
            .values()
            .any(|sync| sync.barrier.is_some_and(|barrier| barrier > stream.cursor));
        joining || calls || syncs
    }

    /// Something new waits on stream `key`: when nothing did before, the stall clock starts
    /// now, not at the stream's last (perhaps long past) progress.
    fn start_waiting_on(&mut self, now_us: u64, key: u64, was_waited_on: bool) {
        if !was_waited_on && let Some(stream) = self.streams.get_mut(&key) {
            stream.last_progress_us = stream.last_progress_us.max(now_us);
        }
    }

    // Calls.

    fn add_call(
        &mut self,
        now_us: u64,
        object_id: &str,
        method_id: u32,
        arguments: Vec<u8>,
    ) -> Result<u64, CallError> {
        if self.close.is_some() {
            return Err(client_closed(object_id));
        }
        if self.calls.len() >= CALLS_WAITING_MAX {
            return Err(CallError::Overloaded(format!(
                "this client already waits on {CALLS_WAITING_MAX} calls"
            )));
        }
        let call_id = self.next_handle();
        let mut attempts = Attempts::new(now_us);
        attempts.retry_at_us = None;
        self.calls.insert(
            call_id,
            CallState {
                object_id: object_id.to_owned(),
                method_id,
                arguments,
                sequence: None,
                request_session_id: 0,
                attempts,
                committed_at: None,
            },
        );
        self.queued_calls.push_back(call_id);
        self.send_due(now_us);
        Ok(call_id)
    }

    fn handle_call_response(
        &mut self,
        now_us: u64,
        call_id: u64,
        node_id: u64,
        request_id: u64,
        response: Response,
    ) {
        let retry_wait_us = self.config.retry_wait_us;
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if call.attempts.in_flight.map(|(id, _)| id) != Some(request_id) {
            return;
        }
        call.attempts.in_flight = None;
        match response {
            Response::Proposed { position } => {
                self.leader.handle_success(node_id);
                let object_id = call.object_id.clone();
                let Some(object) = self.objects.get(&object_id) else {
                    return;
                };
                let key = object.stream;
                let applied_through = object.copy.position();
                let was_waited_on = self.stream_waited_on(key);
                let call = self.calls.get_mut(&call_id).expect("looked up above");
                call.committed_at = Some(position);
                if applied_through >= position {
                    // The copy is past the record and did not apply it for this call: it
                    // moved to a newer checkpoint over it.
                    self.finish_passed_call(now_us, call_id, &object_id, position);
                } else {
                    self.start_waiting_on(now_us, key, was_waited_on);
                }
            }
            Response::NotLeader { leader_hint } => {
                call.attempts.last_error = format!("node {node_id} is not the leader");
                let wait = self.wait_after_not_leader(node_id, leader_hint);
                self.calls
                    .get_mut(&call_id)
                    .expect("looked up above")
                    .attempts
                    .retry_at_us = Some(now_us + wait);
            }
            Response::Busy { reason } => {
                call.attempts.last_error = format!("node {node_id}: {reason}");
                call.attempts.failures += 1;
                call.attempts.refused_unproposed += 1;
                call.attempts.retry_at_us = Some(now_us + retry_wait_us);
            }
            Response::Refused { reason } => {
                self.finish_call(now_us, call_id, Err(CallError::Refused { node_id, reason }));
            }
            Response::SessionUnknown { session_id } => {
                // Only the region's answers are known: when every earlier attempt was refused
                // before anything was proposed (or there was none), nothing of the call was
                // applied, and it goes again in a new session; after an attempt whose fate is
                // unknown, it may have been applied while the session lived.
                let first_attempt = call.attempts.attempts == call.attempts.refused_unproposed + 1;
                let sequence = call.sequence.take();
                if let Some(sequence) = sequence {
                    self.call_by_sequence.remove(&sequence);
                }
                if session_id == self.session.log_id {
                    self.renew_session(now_us);
                }
                if first_attempt {
                    let call = self.calls.get_mut(&call_id).expect("looked up above");
                    call.attempts = Attempts::new(now_us);
                    call.attempts.retry_at_us = None;
                    self.queued_calls.push_front(call_id);
                } else {
                    self.finish_call(now_us, call_id, Err(CallError::SessionEnded { session_id }));
                }
            }
            other => {
                call.attempts.last_error = match other {
                    Response::Failed { reason } => reason,
                    other => format!("node {node_id} answered a call with {other:?}"),
                };
                call.attempts.failures += 1;
                let failures = call.attempts.failures;
                let wait = self.retry_wait(failures.saturating_sub(1));
                self.calls
                    .get_mut(&call_id)
                    .expect("looked up above")
                    .attempts
                    .retry_at_us = Some(now_us + wait);
                self.leader.handle_failure(node_id);
            }
        }
    }

    /// The region answered an open of the session.
    fn handle_session_response(
        &mut self,
        now_us: u64,
        node_id: u64,
        request_id: u64,
        response: Response,
    ) {
        if self.session.open
            || self.session.attempts.in_flight.map(|(id, _)| id) != Some(request_id)
        {
            return;
        }
        self.session.attempts.in_flight = None;
        match response {
            Response::SessionOpened { log_session_id } => {
                self.leader.handle_success(node_id);
                if log_session_id != 0 {
                    self.session.log_id = log_session_id;
                }
                self.session.open = true;
                self.counters.sessions_opened += 1;
            }
            Response::NotLeader { leader_hint } => {
                self.session.attempts.last_error = format!("node {node_id} is not the leader");
                let wait = self.wait_after_not_leader(node_id, leader_hint);
                self.session.attempts.retry_at_us = Some(now_us + wait);
            }
            other => {
                // Refused (the region holds as many sessions as it may), busy or lost: the
                // calls wait in their queue, and give up by their own timeout.
                self.session.attempts.last_error = format!("node {node_id}: {other:?}");
                self.session.attempts.failures += 1;
                let wait = self.retry_wait(self.session.attempts.failures.saturating_sub(1));
                self.session.attempts.retry_at_us = Some(now_us + wait);
                self.leader.handle_failure(node_id);
            }
        }
    }

    /// The region answered a close of the session.
    fn handle_close_response(
        &mut self,
        now_us: u64,
        node_id: u64,
        request_id: u64,
        response: Response,
    ) {
        let Some(close) = self.close.as_mut().filter(|close| {
            !close.done && close.attempts.in_flight.map(|(id, _)| id) == Some(request_id)
        }) else {
            return;
        };
        close.attempts.in_flight = None;
        let close_id = close.close_id;
        match response {
            Response::SessionClosed => {
                close.done = true;
                self.leader.handle_success(node_id);
                self.events.push_back(Event::SessionClosed {
                    close_id,
                    outcome: Ok(()),
                });
            }
            Response::NotLeader { leader_hint } => {
                close.attempts.last_error = format!("node {node_id} is not the leader");
                let wait = self.wait_after_not_leader(node_id, leader_hint);
                self.set_close_retry(now_us + wait);
            }
            other => {
                close.attempts.last_error = format!("node {node_id}: {other:?}");
                close.attempts.failures += 1;
                let failures = close.attempts.failures;
                let wait = self.retry_wait(failures.saturating_sub(1));
                self.set_close_retry(now_us + wait);
                self.leader.handle_failure(node_id);
            }
        }
    }

    fn set_close_retry(&mut self, at_us: u64) {
        if let Some(close) = self.close.as_mut() {
            close.attempts.retry_at_us = Some(at_us);
        }
    }

    /// Whether the close of the session went (or goes now) to the region: no open is sent any
    /// more.
    fn close_under_way(&self) -> bool {
        self.close
            .as_ref()
            .is_some_and(|close| close.done || close.attempts.attempts > 0)
    }

    /// Whether the session still has a use for an open region session: always until its close
    /// is asked for; after, only for the calls made before that wait for it.
    fn open_wanted(&self) -> bool {
        match &self.close {
            None => true,
            Some(_) => !self.close_under_way() && self.calls_unacknowledged() > 0,
        }
    }

    /// Sends the close of the session when it is due: asked for, and no call waits for its
    /// acknowledgement (so none can go in the session after the close).
    fn send_close_due(&mut self, now_us: u64) {
        let unacknowledged = self.calls_unacknowledged();
        let never_opened = !self.session.open && self.session.attempts.attempts == 0;
        let Some(close) = self.close.as_mut() else {
            return;
        };
        if close.done || close.attempts.in_flight.is_some() || unacknowledged > 0 {
            return;
        }
        if close.attempts.attempts == 0 {
            if never_opened {
                // The region never heard of the session: nothing to close.
                close.done = true;
                let close_id = close.close_id;
                self.events.push_back(Event::SessionClosed {
                    close_id,
                    outcome: Ok(()),
                });
                return;
            }
            // The bound on the close counts from when it can go, not from when it was asked
            // for: the calls before it had their own.
            close.attempts.started_us = now_us;
            close.attempts.retry_at_us = Some(now_us);
        }
        if now_us >= close.attempts.started_us + self.config.call_timeout_us {
            close.done = true;
            let close_id = close.close_id;
            let error = close.attempts.gave_up(now_us);
            self.events.push_back(Event::SessionClosed {
                close_id,
                outcome: Err(error),
            });
            return;
        }
        if close.attempts.retry_at_us.is_none_or(|at| at > now_us) {
            return;
        }
        let node_id = self.leader.target();
        let request_id = self.next_request();
        let deadline = now_us + self.config.attempt_timeout_us;
        let close = self.close.as_mut().expect("looked up above");
        close.attempts.retry_at_us = None;
        close.attempts.attempts += 1;
        close.attempts.in_flight = Some((request_id, deadline));
        self.requests.insert(
            request_id,
            InFlight {
                pending: Pending::CloseSession,
                node_id,
                deadline_us: deadline,
            },
        );
        self.transmits.push_back(Transmit {
            node_id,
            request_id,
            request: Request::CloseSession {
                session_id: self.session.id,
            },
        });
    }

    /// `node_id` said it does not lead: how long to wait before the next attempt, which goes
    /// where the tracker now points.
    fn wait_after_not_leader(&mut self, node_id: u64, leader_hint: Option<u64>) -> u64 {
        match self.leader.handle_not_leader(node_id, leader_hint) {
            NextAttempt::Now => 0,
            NextAttempt::AfterWait => self.config.retry_wait_us,
        }
    }

    /// The region ended the session: calls from now on go in a new one.
    fn renew_session(&mut self, now_us: u64) {
        if let Some((request_id, _)) = self.session.attempts.in_flight {
            self.requests.remove(&request_id);
        }
        let id = next_session_id(self.session.id);
        self.session = RegionSession {
            id,
            log_id: id,
            open: false,
            attempts: Attempts::new(now_us),
        };
    }

    fn finish_call(&mut self, now_us: u64, call_id: u64, outcome: Result<Vec<u8>, CallError>) {
        let Some(call) = self.calls.remove(&call_id) else {
            return;
        };
        if let Some(sequence) = call.sequence {
            self.call_by_sequence.remove(&sequence);
        }
        if let Some((request_id, _)) = call.attempts.in_flight {
            self.requests.remove(&request_id);
        }
        self.queued_calls.retain(|queued| *queued != call_id);
        let declaring = self.objects.iter().find_map(|(name, object)| {
            (object.phase == Phase::Declaring { call_id }).then(|| name.clone())
        });
        match declaring {
            Some(name) => self.finish_declaration(now_us, &name, outcome),
            None => self.events.push_back(Event::CallDone { call_id, outcome }),
        }
    }

    fn finish_declaration(&mut self, now_us: u64, name: &str, outcome: Result<Vec<u8>, CallError>) {
        let object = self.objects.get_mut(name).expect("declaring");
        let open_id = object.open_id;
        let outcome = match outcome {
            Ok(_) => match object.copy.stopped() {
                Some(stopped) => Err(CallError::Stopped {
                    object: name.to_owned(),
                    reason: stopped.to_string(),
                }),
                None => {
                    object.phase = Phase::Open;
                    Ok(())
                }
            },
            Err(CallError::Method(MethodError::IncompatibleSchema(reason))) => {
                Err(CallError::Schema {
                    object: name.to_owned(),
                    reason,
                })
            }
            Err(error) => Err(error),
        };
        if outcome.is_err() {
            let stream = object.stream;
            self.objects.remove(name);
            self.reopen_stream(now_us, stream);
        }
        self.events.push_back(Event::Opened { open_id, outcome });
    }

    fn fail_calls_of(&mut self, now_us: u64, object_id: &str, reason: &str) {
        let failing: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, call)| call.object_id == object_id)
            .map(|(call_id, _)| *call_id)
            .collect();
        for call_id in failing {
            let error = CallError::Stopped {
                object: object_id.to_owned(),
                reason: reason.to_owned(),
            };
            // Declarations of objects still opening end their open too.
            self.finish_call(now_us, call_id, Err(error));
        }
    }

    // Opens, uploads, barriers.

    fn handle_fetch_response(
        &mut self,
        now_us: u64,
        object_id: &str,
        node_id: u64,
        request_id: u64,
        response: Response,
    ) {
        let Some(object) = self.objects.get_mut(object_id) else {
            return;
        };
        let Some(fetch) = object.fetch.as_mut() else {
            return;
        };
        if fetch.in_flight.map(|(id, _)| id) != Some(request_id) {
            return;
        }
        fetch.in_flight = None;
        match response {
            Response::Checkpoint {
                checkpoint,
                truncated_through_position,
                released_through_position,
            } => {
                // The region released records of the object without a checkpoint: a copy that
                // did not apply them itself cannot be rebuilt from this region.
                let released = released_through_position > 0
                    && (object.phase == Phase::Fetching
                        || object.copy.position() < released_through_position);
                // An instance that follows the object may still lift the release with its next
                // checkpoint (every N records, or once its writes pause): ask again, with the
                // usual backoff, for as long as a call may take.
                if released {
                    fetch.released_through = released_through_position;
                    fetch.failures += 1;
                    fetch.last_error = format!(
                        "node {node_id}: the region released the records through position \
                         {released_through_position}"
                    );
                    let factor = 1u64 << fetch.failures.saturating_sub(1).min(16);
                    let wait = (self.config.retry_wait_us.saturating_mul(factor))
                        .min(self.config.retry_wait_max_us);
                    if now_us.saturating_add(wait) < fetch.started_us + self.config.call_timeout_us
                    {
                        fetch.retry_at_us = Some(now_us + wait);
                        self.counters.released_fetches_retried += 1;
                        return;
                    }
                }
                let restored = if released {
                    Err(CallError::Released {
                        object: object_id.to_owned(),
                        position: released_through_position,
                    })
                } else if object.phase == Phase::Fetching {
                    object
                        .copy
                        .restore(checkpoint.as_ref(), truncated_through_position)
                        .map_err(|reason| CallError::Schema {
                            object: object_id.to_owned(),
                            reason,
                        })
                } else {
                    // A copy that follows the log moves only forward: to a newer checkpoint
                    // over the truncated part, or past the truncation point when the object has
                    // no record there.
                    let current = object.copy.position();
                    match checkpoint.as_ref() {
                        Some(newer) if newer.position > current => {
                            self.counters.copies_restored += 1;
                            object
                                .copy
                                .restore(Some(newer), truncated_through_position)
                                .map_err(|reason| CallError::Schema {
                                    object: object_id.to_owned(),
                                    reason,
                                })
                        }
                        _ => {
                            object.copy.handle_gap(truncated_through_position);
                            Ok(())
                        }
                    }
                };
                object.fetch = None;
                let open_id = object.open_id;
                let key = object.stream;
                let phase = object.phase;
                if let Err(error) = restored {
                    let reason = match &error {
                        CallError::Schema { reason, .. } => reason.clone(),
                        other => other.to_string(),
                    };
                    if let Phase::Declaring { call_id } = phase {
                        // The open still waits on its schema declaration: it ends here, with
                        // the reason (the declaration is the session's call, never one the
                        // application sees as its own).
                        self.finish_call(now_us, call_id, Err(error));
                        self.fail_calls_of(now_us, object_id, &reason);
                        return;
                    }
                    self.objects.remove(object_id);
                    if phase == Phase::Open {
                        // The application still holds the object: its next call says why it
                        // is gone.
                        self.lost.insert(object_id, error.clone());
                    }
                    self.fail_calls_of(now_us, object_id, &reason);
                    if phase != Phase::Open {
                        // Fetching or joining: the open ends with the reason.
                        self.events.push_back(Event::Opened {
                            open_id,
                            outcome: Err(error),
                        });
                    }
                    self.reopen_stream(now_us, key);
                    return;
                }
                if phase == Phase::Fetching {
                    let was_waited_on = self.stream_waited_on(key);
                    self.objects.get_mut(object_id).expect("present").phase = Phase::Joining;
                    self.start_waiting_on(now_us, key, was_waited_on);
                }
                self.check_passed_calls(now_us);
                // The stream waits while any of its copies fetches (it must start below them
                // all); once none does, it opens again with the new filter.
                if self.objects.values().all(|object| {
                    object.stream != key
                        || object.fetch.is_none()
                        || object.phase == Phase::Fetching
                }) {
                    self.reopen_stream(now_us, key);
                }
            }
            Response::Refused { reason } => {
                let open_id = object.open_id;
                let key = object.stream;
                let opening = object.phase == Phase::Fetching;
                self.objects.remove(object_id);
                let error = CallError::Refused { node_id, reason };
                self.fail_calls_of(now_us, object_id, &error.to_string());
                if opening {
                    self.events.push_back(Event::Opened {
                        open_id,
                        outcome: Err(error),
                    });
                }
                self.reopen_stream(now_us, key);
            }
            other => {
                fetch.last_error = format!("node {node_id}: {other:?}");
                fetch.failures += 1;
                let failures = fetch.failures;
                let wait = self.retry_wait(failures.saturating_sub(1));
                let object = self.objects.get_mut(object_id).expect("present");
                object.fetch.as_mut().expect("present").retry_at_us = Some(now_us + wait);
                self.leader.handle_failure(node_id);
            }
        }
    }

    fn handle_upload_response(&mut self, object_id: &str, node_id: u64, response: Response) {
        let retry = match response {
            Response::Uploaded { hash_mismatch } => {
                self.leader.handle_success(node_id);
                if hash_mismatch
                    && let Some((checkpoint, _)) = self
                        .objects
                        .get(object_id)
                        .and_then(|object| object.upload.as_ref())
                {
                    self.events.push_back(Event::CheckpointDiverged {
                        object_id: object_id.to_owned(),
                        position: checkpoint.position,
                    });
                }
                false
            }
            Response::NotLeader { leader_hint } => {
                self.leader.handle_not_leader(node_id, leader_hint);
                true
            }
            Response::Refused { .. } => false,
            _ => {
                self.leader.handle_failure(node_id);
                true
            }
        };
        let Some(object) = self.objects.get_mut(object_id) else {
            return;
        };
        match object.upload.take() {
            // Sent again by `queue_uploads`, to the member the tracker names now.
            Some((checkpoint, attempts)) if retry && attempts < UPLOAD_ATTEMPTS_MAX => {
                object.upload = Some((checkpoint, attempts));
                self.pending_upload_retries.push(object_id.to_owned());
            }
            // Done, refused, or tried enough: the next checkpoint comes N records later.
            _ => {}
        }
    }

    fn handle_sync_response(
        &mut self,
        now_us: u64,
        sync_id: u64,
        node_id: u64,
        request_id: u64,
        response: Response,
    ) {
        let retry_wait_us = self.config.retry_wait_us;
        let Some(sync) = self.syncs.get_mut(&sync_id) else {
            return;
        };
        if sync.attempts.in_flight.map(|(id, _)| id) != Some(request_id) {
            return;
        }
        sync.attempts.in_flight = None;
        match response {
            Response::Barrier {
                apply_through_position,
            } => self.set_sync_barrier(now_us, sync_id, apply_through_position),
            Response::Refused { reason } => {
                self.syncs.remove(&sync_id);
                self.events.push_back(Event::SyncDone {
                    sync_id,
                    outcome: Err(CallError::Refused { node_id, reason }),
                });
            }
            other => {
                sync.attempts.last_error = format!("node {node_id}: {other:?}");
                sync.attempts.failures += 1;
                if sync.barrier.is_none() {
                    sync.attempts.retry_at_us = Some(now_us + retry_wait_us);
                }
                // Any member gives a barrier: move on from this one.
                self.leader.handle_failure(node_id);
            }
        }
    }

    /// A member named the position `sync_id` applies through, in the answer to one of its
    /// attempts (a late one included). Every attempt was asked after the barrier began, so
    /// any answer is a valid barrier; with two, the lower is reached first. No further
    /// attempt is sent.
    fn set_sync_barrier(&mut self, now_us: u64, sync_id: u64, apply_through_position: u64) {
        let keys: Vec<u64> = self.streams.keys().copied().collect();
        let waited: Vec<(u64, bool)> = keys
            .iter()
            .map(|key| (*key, self.stream_waited_on(*key)))
            .collect();
        let Some(sync) = self.syncs.get_mut(&sync_id) else {
            return;
        };
        sync.barrier = Some(sync.barrier.map_or(apply_through_position, |barrier| {
            barrier.min(apply_through_position)
        }));
        sync.attempts.retry_at_us = None;
        for (key, was_waited_on) in waited {
            self.start_waiting_on(now_us, key, was_waited_on);
        }
    }

    // After every input: finish what is complete, send what is due.

    fn after_input(&mut self, now_us: u64) {
        self.join_copies(now_us);
        self.check_passed_calls(now_us);
        self.finish_barriers();
        self.give_up_expired(now_us);
        self.queue_uploads(now_us);
        self.send_due(now_us);
    }

    /// Copies that reached their stream's cursor join it and declare their schema.
    fn join_copies(&mut self, now_us: u64) {
        let joined: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, object)| {
                object.phase == Phase::Joining
                    && self
                        .streams
                        .get(&object.stream)
                        .is_some_and(|stream| object.copy.position() == stream.cursor)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in joined {
            let schema = self.objects[&name].copy.encoded_schema();
            match self.add_call(now_us, &name, SCHEMA_METHOD_ID, schema) {
                Ok(call_id) => {
                    self.counters.copies_joined += 1;
                    self.objects.get_mut(&name).expect("listed").phase =
                        Phase::Declaring { call_id }
                }
                Err(error) => {
                    let object = self.objects.remove(&name).expect("listed");
                    self.events.push_back(Event::Opened {
                        open_id: object.open_id,
                        outcome: Err(error),
                    });
                    self.reopen_stream(now_us, object.stream);
                }
            }
        }
    }

    /// A call whose copy moved past its acknowledged position without applying it: the copy
    /// jumped to a newer checkpoint over the record.
    fn check_passed_calls(&mut self, now_us: u64) {
        let passed: Vec<(u64, String, u64)> = self
            .calls
            .iter()
            .filter_map(|(call_id, call)| {
                let position = call.committed_at?;
                let object = self.objects.get(&call.object_id)?;
                (object.copy.position() >= position)
                    .then(|| (*call_id, call.object_id.clone(), position))
            })
            .collect();
        for (call_id, object_id, position) in passed {
            self.finish_passed_call(now_us, call_id, &object_id, position);
        }
    }

    /// Answers a committed call whose record the copy passed over: the call took effect, so it
    /// gets the outcome the checkpoint carried for its record, or [`CallError::ResultLost`]
    /// when the checkpoint no longer carries it. Never a failure.
    fn finish_passed_call(&mut self, now_us: u64, call_id: u64, object_id: &str, position: u64) {
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        let recorded = call.sequence.and_then(|(session_id, sequence)| {
            let object = self.objects.get(object_id)?;
            object.copy.recent_outcome(session_id, sequence)
        });
        let outcome = match recorded {
            Some(recorded) => {
                self.counters.results_from_checkpoints += 1;
                recorded.map_err(CallError::Method)
            }
            None => Err(CallError::ResultLost {
                object: object_id.to_owned(),
                position,
            }),
        };
        self.finish_call(now_us, call_id, outcome);
    }

    fn finish_barriers(&mut self) {
        let position = self.position();
        let reached: Vec<u64> = self
            .syncs
            .iter()
            .filter(|(_, sync)| {
                sync.barrier.is_some_and(|barrier| {
                    barrier <= position || self.objects.values().all(|o| o.phase != Phase::Open)
                })
            })
            .map(|(sync_id, _)| *sync_id)
            .collect();
        for sync_id in reached {
            self.syncs.remove(&sync_id);
            self.events.push_back(Event::SyncDone {
                sync_id,
                outcome: Ok(()),
            });
        }
    }

    fn give_up_expired(&mut self, now_us: u64) {
        let timeout = self.config.call_timeout_us;
        let calls: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, call)| {
                // A call gives up when it waited too long for its acknowledgement, for the
                // region to open the session it would go in, or, acknowledged, for this
                // client's copy to apply it (a log stream that every member stopped serving).
                (call.sequence.is_some() || !self.session.open)
                    && now_us >= call.attempts.started_us + timeout
            })
            .map(|(call_id, _)| *call_id)
            .collect();
        for call_id in calls {
            let call = &self.calls[&call_id];
            // A member said the region released records this copy had not applied, without a
            // checkpoint covering them: the copy will never apply the call. That is the reason
            // to give, as the copy's own give-up at about the same deadline gives it, rather
            // than a log stream that merely stopped.
            let released_through = self
                .objects
                .get(&call.object_id)
                .and_then(|object| object.fetch.as_ref())
                .map(|fetch| fetch.released_through)
                .filter(|through| *through > 0);
            let error = match (call.committed_at, released_through) {
                (Some(position), Some(through)) => {
                    let released = CallError::Released {
                        object: call.object_id.clone(),
                        position: through,
                    };
                    CallError::Stopped {
                        object: call.object_id.clone(),
                        reason: format!(
                            "{released}; the call was committed at position {position} and \
                             takes effect in the copies that apply it"
                        ),
                    }
                }
                (Some(position), None) => CallError::NotApplied {
                    object: call.object_id.clone(),
                    position,
                    waited_ms: now_us.saturating_sub(call.attempts.started_us) / 1_000,
                },
                (None, _) => call.attempts.gave_up(now_us),
            };
            self.finish_call(now_us, call_id, Err(error));
        }
        let syncs: Vec<u64> = self
            .syncs
            .iter()
            .filter(|(_, sync)| now_us >= sync.attempts.started_us + timeout)
            .map(|(sync_id, _)| *sync_id)
            .collect();
        for sync_id in syncs {
            let sync = self.syncs.remove(&sync_id).expect("listed");
            if let Some((request_id, _)) = sync.attempts.in_flight {
                self.requests.remove(&request_id);
            }
            self.events.push_back(Event::SyncDone {
                sync_id,
                outcome: Err(sync.attempts.gave_up(now_us)),
            });
        }
        let opens: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, object)| {
                object.phase == Phase::Fetching
                    && object
                        .fetch
                        .as_ref()
                        .is_some_and(|fetch| now_us >= fetch.started_us + timeout)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in opens {
            let object = self.objects.remove(&name).expect("listed");
            let fetch = object.fetch.expect("fetching");
            if let Some((request_id, _)) = fetch.in_flight {
                self.requests.remove(&request_id);
            }
            // A member said the records are released: that is why the open fails, even when
            // the last attempt went unanswered.
            let error = if fetch.released_through > 0 {
                CallError::Released {
                    object: name.clone(),
                    position: fetch.released_through,
                }
            } else {
                fetch.gave_up(now_us)
            };
            self.events.push_back(Event::Opened {
                open_id: object.open_id,
                outcome: Err(error),
            });
        }
    }

    fn queue_uploads(&mut self, now_us: u64) {
        let mut sending: Vec<String> = std::mem::take(&mut self.pending_upload_retries);
        for (name, object) in &mut self.objects {
            if object.phase == Phase::Fetching {
                continue;
            }
            // Polled even while an upload is under way, so that a stale checkpoint is dropped
            // (the next one comes N records later anyway).
            let Some(checkpoint) = object.copy.poll_checkpoint() else {
                continue;
            };
            if object.upload.is_none() {
                object.upload = Some((checkpoint, 0));
                sending.push(name.clone());
            }
        }
        for object_id in sending {
            let client_id = self.config.client_id;
            let node_id = self.leader.target();
            let request_id = self.next_request();
            let deadline_us = now_us + self.config.attempt_timeout_us;
            let Some((checkpoint, attempts)) = self
                .objects
                .get_mut(&object_id)
                .and_then(|object| object.upload.as_mut())
            else {
                continue;
            };
            *attempts += 1;
            let request = Request::UploadCheckpoint {
                object_id: object_id.clone(),
                position: checkpoint.position,
                state: checkpoint.state.clone(),
                state_hash: checkpoint.state_hash,
                client_id,
            };
            self.requests.insert(
                request_id,
                InFlight {
                    pending: Pending::Upload(object_id),
                    node_id,
                    deadline_us,
                },
            );
            self.transmits.push_back(Transmit {
                node_id,
                request_id,
                request,
            });
        }
    }

    /// Sends every attempt that is due: queued calls while slots are free, retries, fetches,
    /// barriers, and streams to reopen.
    fn send_due(&mut self, now_us: u64) {
        let in_flight = self
            .calls
            .values()
            .filter(|call| call.sequence.is_some())
            .count();
        let mut free = self.config.calls_in_flight_max.saturating_sub(in_flight);
        // Calls not yet in the log may still be retried: none may fall out of the region's
        // dedup window, whatever the others do meanwhile.
        let session_id = self.session.log_id;
        let lowest_open = self
            .calls
            .values()
            .filter(|call| call.committed_at.is_none())
            .filter_map(|call| call.sequence)
            .filter(|(id, _)| *id == session_id)
            .map(|(_, sequence)| sequence)
            .min();
        if let Some(lowest) = lowest_open {
            let room = (lowest + SEQUENCE_SPAN_MAX).saturating_sub(self.next_sequence);
            free = free.min(usize::try_from(room).unwrap_or(usize::MAX));
        }
        if !self.session.open {
            // No call leaves the queue before the region holds the session.
            free = 0;
            if self.open_wanted()
                && self.session.attempts.in_flight.is_none()
                && self
                    .session
                    .attempts
                    .retry_at_us
                    .is_some_and(|at| at <= now_us)
            {
                let node_id = self.leader.target();
                let request_id = self.next_request();
                let deadline = now_us + self.config.attempt_timeout_us;
                self.session.attempts.retry_at_us = None;
                self.session.attempts.attempts += 1;
                self.session.attempts.in_flight = Some((request_id, deadline));
                self.requests.insert(
                    request_id,
                    InFlight {
                        pending: Pending::OpenSession,
                        node_id,
                        deadline_us: deadline,
                    },
                );
                self.transmits.push_back(Transmit {
                    node_id,
                    request_id,
                    request: Request::OpenSession {
                        session_id: self.session.id,
                    },
                });
            }
        }
        while free > 0 {
            let Some(call_id) = self.queued_calls.pop_front() else {
                break;
            };
            let sequence = self.next_sequence;
            self.next_sequence += 1;
            let call = self.calls.get_mut(&call_id).expect("queued calls exist");
            call.sequence = Some((self.session.log_id, sequence));
            call.request_session_id = self.session.id;
            call.attempts.started_us = now_us;
            call.attempts.retry_at_us = Some(now_us);
            self.call_by_sequence
                .insert((self.session.log_id, sequence), call_id);
            free -= 1;
        }
        let due_calls: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, call)| call.attempts.retry_at_us.is_some_and(|at| at <= now_us))
            .map(|(call_id, _)| *call_id)
            .collect();
        for call_id in due_calls {
            let node_id = self.leader.target();
            let request_id = self.next_request();
            let deadline = now_us + self.config.attempt_timeout_us;
            let call = self.calls.get_mut(&call_id).expect("listed");
            let scope = self
                .objects
                .get(&call.object_id)
                .map_or(Scope::Global, |object| object.scope);
            call.attempts.retry_at_us = None;
            call.attempts.attempts += 1;
            if call.attempts.attempts > 1 {
                self.counters.call_retries += 1;
            }
            call.attempts.in_flight = Some((request_id, deadline));
            let (_, request_sequence) = call.sequence.expect("proposed calls have a sequence");
            let session_id = call.request_session_id;
            self.requests.insert(
                request_id,
                InFlight {
                    pending: Pending::Call(call_id),
                    node_id,
                    deadline_us: deadline,
                },
            );
            self.transmits.push_back(Transmit {
                node_id,
                request_id,
                request: Request::Propose {
                    object_id: call.object_id.clone(),
                    scope,
                    method_id: call.method_id,
                    arguments: call.arguments.clone(),
                    client_id: session_id,
                    request_sequence,
                },
            });
        }
        let due_fetches: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, object)| {
                object
                    .fetch
                    .as_ref()
                    .is_some_and(|fetch| fetch.retry_at_us.is_some_and(|at| at <= now_us))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for object_id in due_fetches {
            let node_id = self.leader.target();
            let request_id = self.next_request();
            let deadline = now_us + self.config.attempt_timeout_us;
            let object = self.objects.get_mut(&object_id).expect("listed");
            let scope = object.scope;
            let fetch = object.fetch.as_mut().expect("listed");
            fetch.retry_at_us = None;
            fetch.attempts += 1;
            fetch.in_flight = Some((request_id, deadline));
            self.requests.insert(
                request_id,
                InFlight {
                    pending: Pending::Fetch(object_id.clone()),
                    node_id,
                    deadline_us: deadline,
                },
            );
            self.transmits.push_back(Transmit {
                node_id,
                request_id,
                request: Request::FetchCheckpoint { object_id, scope },
            });
        }
        let due_syncs: Vec<u64> = self
            .syncs
            .iter()
            .filter(|(_, sync)| sync.attempts.retry_at_us.is_some_and(|at| at <= now_us))
            .map(|(sync_id, _)| *sync_id)
            .collect();
        let object_ids: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, object)| object.phase == Phase::Open)
            .map(|(name, _)| name.clone())
            .collect();
        for sync_id in due_syncs {
            let node_id = self.leader.target();
            let request_id = self.next_request();
            let deadline = now_us + self.config.attempt_timeout_us;
            let sync = self.syncs.get_mut(&sync_id).expect("listed");
            sync.attempts.retry_at_us = None;
            sync.attempts.attempts += 1;
            sync.attempts.in_flight = Some((request_id, deadline));
            self.requests.insert(
                request_id,
                InFlight {
                    pending: Pending::Sync(sync_id),
                    node_id,
                    deadline_us: deadline,
                },
            );
            self.transmits.push_back(Transmit {
                node_id,
                request_id,
                request: Request::Sync {
                    object_ids: object_ids.clone(),
                },
            });
        }
        let reopen: Vec<u64> = self
            .streams
            .iter()
            .filter(|(_, stream)| stream.reopen_at_us.is_some_and(|at| at <= now_us))
            .map(|(key, _)| *key)
            .collect();
        for key in reopen {
            if !self.stream_restoring(key) {
                self.reopen_stream(now_us, key);
            }
        }
        // A stream that does not exist yet opens once its first copy fetched.
        let keys: Vec<u64> = self
            .objects
            .values()
            .filter(|object| object.fetch.is_none())
            .map(|object| object.stream)
            .collect();
        for key in keys {
            if !self.streams.contains_key(&key) {
                self.reopen_stream(now_us, key);
            }
        }
        self.send_close_due(now_us);
    }

    // Helpers.

    /// Whether a copy fed by stream `key` is moving to a newer checkpoint: it must be in place
    /// before the stream starts below it (a copy still opening joins later and holds nothing
    /// back).
    fn stream_restoring(&self, key: u64) -> bool {
        self.objects.values().any(|object| {
            object.stream == key && object.fetch.is_some() && object.phase != Phase::Fetching
        })
    }

    fn attempt_deadline(&self, request_id: u64) -> Option<u64> {
        self.requests
            .get(&request_id)
            .map(|in_flight| in_flight.deadline_us)
    }

    fn retry_wait(&self, failures: u32) -> u64 {
        let factor = 1u64 << failures.min(16);
        (self.config.retry_wait_us.saturating_mul(factor)).min(self.config.retry_wait_max_us)
    }

    fn next_request(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    fn next_handle(&mut self) -> u64 {
        let id = self.next_handle_id;
        self.next_handle_id += 1;
        id
    }
}

#[cfg(test)]
mod tests;
