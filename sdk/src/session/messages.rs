//! What a [`super::ClientSession`] sends and receives, independent of any transport: the tokio
//! driver maps these to gRPC calls of the region's client API, the simulator to its messages.

use dsss_wire::Scope;

/// A request the session wants sent to one member of its region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The member to send it to.
    pub node_id: u64,
    /// The session's name for the request; the answer must carry it back
    /// ([`super::ClientSession::handle_response`]). For [`Request::Subscribe`] it names the
    /// stream: every piece of the stream carries it.
    pub request_id: u64,
    /// What to send.
    pub request: Request,
}

/// One request to a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Open the log stream from `from_position` on, for records of `object_ids` (entries of
    /// other objects may be left out). It REPLACES the stream of the same `stream` key opened
    /// before: the driver drops that earlier stream and forwards only this one's pieces.
    Subscribe {
        /// The session's key of the stream. A correct session has one stream, so every
        /// subscription carries the same key; the simulator's planted stream-per-object mode
        /// follows several streams at once, and a driver tells them apart by it.
        stream: u64,
        /// The first position wanted.
        from_position: u64,
        /// The objects whose records are wanted.
        object_ids: Vec<String>,
    },
    /// Open the client's session in the region (before its first call, and again under a new
    /// id after the region ended the last one).
    OpenSession {
        /// The session id: 64 random bits, fresh for each session.
        session_id: u64,
    },
    /// Close the client's session in the region (the client makes no more calls in it).
    CloseSession {
        /// The session id the client opened.
        session_id: u64,
    },
    /// Order one call.
    Propose {
        /// The object called.
        object_id: String,
        /// Its scope.
        scope: Scope,
        /// The mutating method, or the schema declaration.
        method_id: u32,
        /// The encoded arguments.
        arguments: Vec<u8>,
        /// The calling client's session (sent on the wire as the client id).
        client_id: u64,
        /// The call's sequence in its session; every retry of the call reuses it.
        request_sequence: u64,
    },
    /// The newest checkpoint the region keeps of an object.
    FetchCheckpoint {
        /// The object.
        object_id: String,
        /// Its scope: a global object the region released is then adopted from another
        /// region, so that asking again finds its checkpoint.
        scope: Scope,
    },
    /// Offer a checkpoint of an object.
    UploadCheckpoint {
        /// The object.
        object_id: String,
        /// The position the state reflects.
        position: u64,
        /// The encoded state envelope.
        state: Vec<u8>,
        /// SHA-256 of `state`.
        state_hash: [u8; 32],
        /// The uploading client.
        client_id: u64,
    },
    /// A barrier: the position through which the log must be applied for a linearizable read.
    Sync {
        /// The objects read after the barrier.
        object_ids: Vec<String>,
    },
}

/// One record of an object, as the log carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// The object.
    pub object_id: String,
    /// The calling client.
    pub client_id: u64,
    /// The caller's sequence.
    pub request_sequence: u64,
    /// The method, or the schema declaration.
    pub method_id: u32,
    /// The encoded arguments.
    pub arguments: Vec<u8>,
}

/// One entry of the region log, as far as a client cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEntry {
    /// A regional record: applied at its position by copies of regional objects.
    Regional(LogRecord),
    /// A global record at its place in a sealed epoch: applied by copies of global objects.
    SequencedGlobal(LogRecord),
    /// The end of sealed epochs the region skipped because no region's log held them any
    /// longer: a copy of a global object that applied records below it missed some, and
    /// restarts from a checkpoint at or after it.
    EpochsSkipped,
    /// Anything else (a pending global record, the end of an epoch): applies nothing.
    Other,
}

/// An entry and its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionedEntry {
    /// The entry's log position.
    pub position: u64,
    /// The entry.
    pub entry: LogEntry,
}

/// A checkpoint the region kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedCheckpoint {
    /// The position it reflects.
    pub position: u64,
    /// The encoded state envelope.
    pub state: Vec<u8>,
    /// SHA-256 of `state`, as the region reports it.
    pub state_hash: Vec<u8>,
}

/// What came back for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// A piece of the log stream: entries in increasing position order, and the position
    /// through which the stream has delivered everything that matches its filter.
    LogPiece {
        /// The entries.
        entries: Vec<PositionedEntry>,
        /// Everything matching the filter at or below this position was delivered.
        through_position: u64,
    },
    /// The log stream ended. `first_retained_position` is set when the member no longer keeps
    /// the position the stream needed.
    StreamEnded {
        /// The member's oldest kept position, when that ended the stream.
        first_retained_position: Option<u64>,
        /// What happened, for the record.
        reason: String,
    },
    /// The call is in the region log at `position` (for a global call: the position of its
    /// sequenced copy).
    Proposed {
        /// The position.
        position: u64,
    },
    /// The session is open in the region.
    SessionOpened {
        /// The id the region keeps the session under, which the session's records carry in
        /// the log; 0 when it is the id the client asked for.
        log_session_id: u64,
    },
    /// The region holds the session no more (closed now, or it had ended before).
    SessionClosed,
    /// The region holds no such session (never opened, or ended by idleness): the call was
    /// not applied now.
    SessionUnknown {
        /// The session the call named.
        session_id: u64,
    },
    /// The member does not lead and cannot take the request; `leader_hint` may name who does.
    NotLeader {
        /// A member that may lead.
        leader_hint: Option<u64>,
    },
    /// The member is overloaded; the same request may be retried there after a wait.
    Busy {
        /// What the member said.
        reason: String,
    },
    /// The member refused the request itself; retrying cannot help.
    Refused {
        /// What the member said.
        reason: String,
    },
    /// The request failed on the way (unreachable, timed out, dropped); retrying elsewhere
    /// may help.
    Failed {
        /// What happened.
        reason: String,
    },
    /// The answer to [`Request::FetchCheckpoint`].
    Checkpoint {
        /// The newest checkpoint, if the region keeps one.
        checkpoint: Option<FetchedCheckpoint>,
        /// The region's truncation point.
        truncated_through_position: u64,
        /// Non-zero when the region released the object's records through this position
        /// without a checkpoint: its state cannot be rebuilt from the region.
        released_through_position: u64,
    },
    /// The answer to [`Request::UploadCheckpoint`].
    Uploaded {
        /// Another copy reported a different hash at the same position.
        hash_mismatch: bool,
    },
    /// The answer to [`Request::Sync`].
    Barrier {
        /// Apply through this position, then read.
        apply_through_position: u64,
    },
}
