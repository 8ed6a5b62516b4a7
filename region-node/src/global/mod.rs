//! The region side of the global tier (docs/design.md section 2; the protocol is
//! docs/global-protocol.md, the region side in sections 3, 6 and 7), sans-IO.
//!
//! A global-scope record is durable in its origin region as soon as it is applied there as a
//! pending entry, but nothing applies it until the coordinator seals it into an epoch. The
//! region keeps, as replicated state of its log ([`GlobalState`]):
//! - the records it still waits to see sealed, each in the open batch or in an outgoing
//!   batch;
//! - the outgoing batches, made by `CloseBatch` entries the leader proposes every epoch, each
//!   with the closed timestamp that every later record of the region exceeds;
//! - how far it appended the coordinator's sealed epochs, their watermark, and whether the
//!   coordinator still counts the region in its membership (with the region's incarnation).
//!
//! The leader ships the outgoing batches to the coordinator and resends them from the
//! acknowledged point ([`Shipping`], soft state: resending is idempotent), and proposes every
//! part of a sealed epoch it receives as one raft entry ([`entry`]). A region that missed
//! epochs the coordinator released reads them back from another region's log ([`catch_up`]),
//! or skips them when no log holds them any longer ([`skip`]).

/// How long one call to a coordinator replica may go unanswered (a batch's submission, a
/// read of the newest sealed epoch) before the region node gives up on that replica, in
/// microseconds. Shared by the production driver and the simulator's, so that a slow WAN link
/// holds a `sync()` up alike in both.
pub const COORDINATOR_CALL_TIMEOUT_US: u64 = 2_000_000;

/// The most coordinator replicas one message to the coordinator tries (a batch's submission,
/// a sealed-epoch read) before it is given up and left to the resend timers: a failed attempt
/// moves to the next replica at once. Shared by the production driver and the simulator's.
pub const COORDINATOR_ATTEMPTS_MAX: usize = 4;

pub mod adoption;
pub mod catch_up;
pub mod entry;
pub mod shipping;
pub mod skip;
pub mod state;

pub use entry::{
    EPOCH_PART_BYTES_MAX, EPOCH_PART_RECORDS_MAX, EpochPart, MEMBER_REGIONS_MAX,
    encode_close_batch, encode_epoch_part,
};
pub use shipping::{BATCHES_PER_RESEND_MAX, EPOCH_PARTS_PROPOSED_MAX, Shipping};
pub use state::{
    GLOBAL_UNSEALED_RECORDS_MAX, GLOBAL_UNSEALED_SIZE_BYTES_MAX, GlobalState, MembershipChange,
    OUTGOING_BATCHES_MAX, OutgoingBatch, UnsealedRecord,
};
