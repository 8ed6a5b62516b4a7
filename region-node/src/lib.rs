//! The regional tier of DSSS (docs/design.md section 2): one raft group per region that orders,
//! stores and serves the region's operation records.
//!
//! This crate is the sans-IO core (docs/design.md section 3): [`RegionNode`] takes proposals, raft
//! messages and ticks, and hands back replies, log events, raft messages and writes through
//! the one [`RegionNode::handle_ready`] path that the simulator and the production driver
//! both call. It reads no clock (time comes in as `now_us`), draws no randomness of its own
//! (election timeouts come from the configured seed), and touches no disk or socket.
//!
//! - [`node`]: [`RegionNode`], proposals, batching, forwarding, replies.
//! - [`region_log`]: [`RegionLog`], the state machine: dense positions, truncation, snapshots.
//! - [`checkpoint`]: the objects' checkpoints as replicated state, their agreement rules, the
//!   divergence alarms, and the truncation point they allow.
//! - [`dedup`]: the bounded dedup table behind exactly-once.
//! - [`record`]: records as proposed (in batches) and stored (the four kinds of log entry).
//! - [`global`]: the region's side of the global tier: the open and outgoing batches of
//!   global records, the sealed epochs, the membership, the shipping to the coordinator.
//! - `driver` and `service` (feature `driver`): the production node: a node loop on its own
//!   thread over RocksDB, the peer transport, and the gRPC services.
//!
//! The failover client of a region lives in the SDK (`dsss::region_client`).
//!
//! # Example: a one-node region orders a call
//!
//! ```
//! use dsss_raft_group::{MemoryStore, StoreIo};
//! use dsss_region_node::{ProposeRequest, RegionNode, RegionNodeConfig, RegionOutput, Reply};
//! use dsss_wire::{Arguments, ClientId, MethodId, ObjectId, RegionId, RequestSequence, Scope};
//!
//! let mut store = MemoryStore::new();
//! let config = RegionNodeConfig::new(1, vec![1], RegionId::new("eu-west")?);
//! let mut node = RegionNode::open(config, &mut store)?;
//! // A one-member group elects itself after an election timeout.
//! let mut now_us = 1_700_000_000_000_000;
//! while !node.is_leader() {
//!     now_us += 10_000;
//!     node.handle_tick(now_us);
//!     node.handle_ready(&mut StoreIo::new(&mut store))?;
//! }
//! // The client opens its session (id 7, drawn at random by real clients) first.
//! node.handle_open_session(now_us, 1, 7);
//! node.handle_ready(&mut StoreIo::new(&mut store))?;
//! // The open's answer first, then the log event of its applied entry.
//! assert!(matches!(
//!     node.poll_output(),
//!     Some(RegionOutput::SessionReply(reply)) if reply.result == Ok(())
//! ));
//! while node.poll_output().is_some() {}
//! let call = ProposeRequest {
//!     client_id: ClientId(7),
//!     request_sequence: RequestSequence(1),
//!     object_id: ObjectId::new("lobby/main")?,
//!     method_id: MethodId(1),
//!     arguments: Arguments::new(b"ann".to_vec())?,
//!     scope: Scope::Regional,
//! };
//! node.handle_propose(now_us, call.clone());
//! node.handle_ready(&mut StoreIo::new(&mut store))?;
//! assert_eq!(
//!     node.poll_output(),
//!     Some(RegionOutput::Reply(Reply::Proposed {
//!         client_id: ClientId(7),
//!         request_sequence: RequestSequence(1),
//!         position: 1,
//!     }))
//! );
//! while node.poll_output().is_some() {}
//! // A retry of the same call gets the same position and appends nothing.
//! node.handle_propose(now_us, call);
//! assert!(matches!(
//!     node.poll_output(),
//!     Some(RegionOutput::Reply(reply)) if reply.key().1 == RequestSequence(1)
//! ));
//! assert_eq!(node.region_log().next_position(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod bytes;
pub mod checkpoint;
pub mod dedup;
#[cfg(feature = "driver")]
pub mod driver;
pub mod global;
pub mod log_blocks;
pub mod node;
pub mod record;
pub mod region_log;
#[cfg(feature = "driver")]
pub mod service;
pub mod snapshot_catch_up;
pub mod topology_config;

pub use checkpoint::transfer::{STATE_PIECE_BYTES_MAX, STATE_PIECE_PAIRS_MAX, StatePiece};
pub use checkpoint::{
    ALARMS_LISTED_MAX, CHECKPOINT_STATE_BYTES_MAX, CHECKPOINTS_A, CHECKPOINTS_B, CheckpointBounds,
    CheckpointFetch, CheckpointOutcome, CheckpointRefusal, CheckpointSpace, CheckpointUpload,
    DivergenceAlarm,
};
pub use dedup::{
    DEDUP_WINDOW_MAX, DedupLimits, DedupTable, DedupVerdict, SESSION_IDLE_TIMEOUT_US, SESSIONS_MAX,
    SessionRefusal, SessionWindow,
};
pub use node::{
    CHECKPOINT_UPLOADS_IN_FLIGHT_MAX, CheckpointReply, CheckpointStatus, ClockFence, ClockSample,
    ClockStatus, ClockVerdict, CloseSessionError, EpochsRead, GlobalMessageError, GlobalStatus,
    LOG_EVENTS_PENDING_MAX, LogEvent, MAX_CLOCK_SKEW_US_DEFAULT, MessageError, NodeCounters,
    OpenSessionError, PROPOSALS_PENDING_MAX, ProposeError, REGION_HEARTBEAT_TICKS,
    REPLIES_PENDING_MAX, RegionNode, RegionNodeConfig, RegionNodeError, RegionOutput, RegionStatus,
    Reply, SESSION_CLOSES_IN_FLIGHT_MAX, SESSION_OPENS_IN_FLIGHT_MAX, SYNCS_IN_FLIGHT_MAX,
    SealedEpochRead, SessionCloseReply, SessionReply, SnapshotCatchUpStatus, SyncError, SyncReply,
    TO_COORDINATOR_PENDING_MAX, ToCoordinator, UploadError, WAITERS_MAX,
};
pub use record::{BATCH_BYTES_MAX, BATCH_RECORDS_MAX, LogEntry, LogEntryKind, ProposeRequest};
pub use region_log::{
    EntryOutcome, LogRecord, REGION_LOG, REGION_STATE, RecordOutcome, RegionLog, RegionLogRetention,
};
pub use snapshot_catch_up::{LogRangeFetch, LogRangeReply, LogRangeRequest, StateRequest};
pub use topology_config::{
    TICK_INTERVAL_US_DEFAULT, TopologyConfigError, proposal_timeout_ticks, region_node_config,
};
