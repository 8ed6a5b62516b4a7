//! The global tier of DSSS (docs/design.md section 2): a raft group spread over regions that
//! seals HLC-ordered epochs of cross-region records and tracks which regions are members.
//!
//! This crate is the sans-IO core (docs/design.md section 3), built on `dsss-raft-group`:
//! - [`state`]: [`CoordinatorState`], the replicated state machine: regions with their
//!   incarnation and membership, pending records, the watermark, SEAL inside apply, retained
//!   epochs, snapshots and recovery;
//! - [`entry`]: the entries of the coordinator log and their versioned encoding;
//! - [`node`]: [`CoordinatorNode`], one replica: region batches in, acknowledgements and
//!   sealed epochs out, suspicion of silent regions, resends, bounded queues;
//! - [`leadership_return`]: when a leader hands leadership back to the preferred replica after
//!   a failover.
//!
//! The protocol both tiers follow is docs/global-protocol.md: the coordinator's side is
//! sections 4 to 8 (taking batches, sealing, membership, delivery, the sealed-epoch read), what
//! it persists section 9; the region side lives in `dsss-region-node`.
//!
//! # Example: a one-replica coordinator seals an epoch
//!
//! ```
//! use dsss_global_coordinator::{CoordinatorConfig, CoordinatorNode, CoordinatorOutput, RegionMessage};
//! use dsss_raft_group::{MemoryStore, StoreIo};
//! use dsss_wire::{RegionId, proto};
//!
//! let region = RegionId::new("eu-west")?;
//! let config = CoordinatorConfig::new(1, vec![1], vec![region.clone()]);
//! let mut store = MemoryStore::new();
//! let mut node = CoordinatorNode::open(config, &mut store)?;
//! let mut now_us = 1_700_000_000_000_000;
//! while !node.is_leader() {
//!     now_us += 10_000;
//!     node.handle_tick(now_us);
//!     node.handle_ready(&mut StoreIo::new(&mut store))?;
//! }
//! let time = |physical_us| Some(proto::Timestamp { physical_us, logical: 0 });
//! node.handle_region_batch(now_us, proto::RegionBatch {
//!     region: region.to_string(),
//!     incarnation: 1,
//!     batch_number: 1,
//!     records: Vec::new(),
//!     closed_timestamp: time(now_us),
//!     sender_node_id: 11,
//!     sender_time: time(now_us),
//! })?;
//! node.handle_ready(&mut StoreIo::new(&mut store))?;
//! let mut sealed = false;
//! while let Some(output) = node.poll_output() {
//!     match output {
//!         CoordinatorOutput::ToRegion { message, .. } => match message {
//!             RegionMessage::Epoch(epoch) => sealed = epoch.epoch_number == 1,
//!             RegionMessage::BatchAck(_) | RegionMessage::LeaderAnnouncement(_) => {}
//!         },
//!         CoordinatorOutput::SealedEpochReply { .. } | CoordinatorOutput::Notice(_) => {}
//!     }
//! }
//! assert!(sealed);
//! // The region's next submission is answered with what is applied.
//! let ack = node.current_batch_ack(now_us, "eu-west")?;
//! assert_eq!(ack.acknowledged_through_batch_number, 1);
//! assert_eq!(node.state().newest_epoch_number(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod codec;
#[cfg(feature = "driver")]
pub mod driver;
pub mod entry;
pub mod leadership_return;
pub mod node;
pub mod state;

pub use entry::{
    BatchEntry, CoordinatorEntry, ENTRY_FORMAT, REGION_BATCH_RECORDS_BYTES_MAX,
    REGION_BATCH_RECORDS_MAX,
};
pub use node::{
    CLOCK_SKEW_US_MAX, ConfigError, CoordinatorConfig, CoordinatorCounters, CoordinatorNode,
    CoordinatorNodeError, CoordinatorOutput, CoordinatorStatus, EPOCH_PART_BYTES_MAX,
    INTERVAL_US_MAX, InputError, MessageError, Notice, OUTPUTS_PENDING_MAX,
    PROPOSALS_PENDING_BYTES_MAX, PROPOSALS_PENDING_MAX, READY_ROUNDS_PER_CALL_MAX,
    REGION_DELIVERY_ATTEMPTS_MAX, RESEND_MESSAGES_PER_REGION_MAX, RegionMessage, RegionStatus,
    SEALED_EPOCH_READS_IN_FLIGHT_MAX, epoch_messages,
};
pub use state::{
    BatchVerdict, COORDINATOR_EPOCHS, COORDINATOR_PENDING, COORDINATOR_STATE, CoordinatorLimits,
    CoordinatorState, EPOCH_HEADER_BYTES_MAX, EntryEffect, EntryOutcome, Epoch,
    PENDING_RECORDS_BYTES_MAX, PendingKey, REGIONS_MAX, RETAINED_EPOCHS_BYTES_MAX,
    RETAINED_EPOCHS_MAX, RegionState, SNAPSHOT_BYTES_MAX, STATE_KEY, SealedRecordMark,
    SuspectVerdict,
};
