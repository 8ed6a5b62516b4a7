//! Wire types shared by every part of DSSS: the regional raft groups, the global coordinator,
//! the SDK and the simulator.
//!
//! This crate holds
//! - [`proto`]: the protocol buffer messages of package `dsss.v1` (the client API of a region,
//!   raft traffic inside a region and inside the coordinator group, region batches and sealed
//!   epochs), generated from the `.proto` files in `proto/dsss/v1/`;
//! - [`hlc`]: the hybrid logical clock that timestamps every record and every message between
//!   nodes, as a pure core that reads no clock plus an injectable physical clock;
//! - [`ids`] and [`record`]: validated domain types for identifiers and operation records, with
//!   conversions from the wire that reject malformed input with errors naming the field, and the
//!   one encoding of a record that the region log and the coordinator store and replicate;
//! - [`route`]: the [`LeaderTracker`] every caller of a raft group routes its requests with;
//! - [`version`]: the protocol version that nodes and clients exchange, so that different
//!   releases refuse each other clearly;
//! - `grpc` (feature `grpc`, on by default): the tonic clients and servers, the interceptors that
//!   send and check the protocol version, and constructors that apply the message size limit.
//!
//! The sans-IO protocol crates depend on this crate with `default-features = false`: they get
//! the messages, the clock and the domain types, and no tonic or tokio.
//!
//! # The hybrid logical clock
//!
//! A node timestamps its own events with [`HybridLogicalClock::now`] and merges the timestamps
//! it receives with [`HybridLogicalClock::update`]. Time comes in as an argument, so the same
//! code runs on the system clock and on the simulator's virtual clock:
//!
//! ```
//! use dsss_wire::{HybridLogicalClock, Timestamp};
//!
//! let max_skew_us = 500_000;
//! let mut clock = HybridLogicalClock::new(max_skew_us);
//!
//! // A local event takes the physical time.
//! let first = clock.now(1_000_000);
//! assert_eq!(first, Timestamp::new(1_000_000, 0));
//!
//! // Physical time stalls: the logical counter orders the next event after the first.
//! let second = clock.now(1_000_000);
//! assert_eq!(second, Timestamp::new(1_000_000, 1));
//!
//! // A message from a node whose clock runs slightly ahead moves this clock forward, so the
//! // receive event is ordered after the send event.
//! let received = Timestamp::new(1_200_000, 7);
//! let merged = clock.update(received, 1_000_050).expect("within the tolerated skew");
//! assert_eq!(merged, Timestamp::new(1_200_000, 8));
//!
//! // A timestamp further ahead than the tolerated skew is refused and changes nothing.
//! let from_the_future = Timestamp::new(9_000_000, 0);
//! assert!(clock.update(from_the_future, 1_000_100).is_err());
//! assert_eq!(clock.last(), merged);
//! ```
//!
//! [`Clock`] wraps the same core with a [`PhysicalClock`] source ([`SystemClock`] in production,
//! [`ManualClock`] in tests).

#![deny(missing_docs)]

pub mod hlc;
pub mod ids;
pub mod latency;
pub mod record;
pub mod resend_timeout;
pub mod route;
pub mod version;

#[cfg(feature = "grpc")]
pub mod access;
#[cfg(feature = "grpc")]
pub mod call_metrics;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "grpc")]
pub mod limits;
#[cfg(feature = "grpc")]
pub mod tls;

/// The protocol buffer messages of DSSS, generated from `proto/dsss/v1/*.proto`.
///
/// The messages of the current package `dsss.v1` are re-exported here, so `proto::Record` and
/// `proto::v1::Record` name the same type. With the `grpc` feature the package also holds the
/// tonic clients and servers (modules `region_client_client`, `region_client_server`, and so on).
pub mod proto {
    /// Package `dsss.v1`.
    pub mod v1 {
        // Generated code: its documentation comes from the comments in the .proto files, and
        // lints that the hand-written code follows do not apply to it.
        #![allow(missing_docs, clippy::all, clippy::pedantic)]
        include!(concat!(env!("OUT_DIR"), "/dsss.v1.rs"));
    }
    pub use v1::*;
}

pub use hlc::{
    Clock, ClockSkewError, HybridLogicalClock, ManualClock, PhysicalClock, SystemClock, Timestamp,
    TimestampError,
};
pub use ids::{
    BatchNumber, ClientId, EpochNumber, LogPosition, MethodId, NodeId, ObjectId, ObjectIdError,
    RegionId, RegionIdError, RequestSequence,
};
pub use record::{
    ARGUMENTS_BYTES_MAX, Arguments, ArgumentsError, RECORD_BYTES_MAX, Record, RecordError, Scope,
    ScopeError, decode_record, encode_record, encoded_record_len,
};
pub use resend_timeout::ResendTimeout;
pub use route::{LeaderTracker, NextAttempt};
pub use version::{
    PROTOCOL_VERSION, PROTOCOL_VERSION_HEADER, VersionError, check_protocol_version,
};

/// The largest gRPC message, in bytes, that a DSSS node or client sends or accepts.
///
/// It must hold the largest message the protocol builds: a checkpoint upload of
/// [`CHECKPOINT_STATE_BYTES_MAX`] bytes plus its envelope. Senders split everything else that
/// could grow past it (region batches into more batch numbers, sealed epochs into parts). A
/// receiver refuses a larger message before reading its body, so a faulty peer cannot make a node
/// allocate without bound.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 32 * 1024 * 1024;

/// The largest encoded object state, in bytes, that a checkpoint may carry.
///
/// One MiB below [`GRPC_MESSAGE_BYTES_MAX`], which leaves room for the checkpoint's object id,
/// position, hash and protocol buffer framing.
pub const CHECKPOINT_STATE_BYTES_MAX: usize = GRPC_MESSAGE_BYTES_MAX - 1024 * 1024;

/// The largest number of object ids that one subscribe or sync request may list.
pub const OBJECT_IDS_PER_REQUEST_MAX: usize = 1024;

/// The most calls one `ProposeBatch` request carries: a node refuses a larger batch, and a
/// client's batches stop there (a raft entry of a region holds at most 256 records too).
pub const PROPOSE_BATCH_CALLS_MAX: usize = 256;

/// The most bytes of arguments a client puts into one `ProposeBatch` request (a call alone may
/// have up to `ARGUMENTS_BYTES_MAX`, 1 MiB): well under [`GRPC_MESSAGE_BYTES_MAX`].
pub const PROPOSE_BATCH_ARGUMENTS_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The gRPC metadata key, in decimal, of the oldest position a node retains. A node sets it on
/// the `OUT_OF_RANGE` status that ends a subscription from below its log's start, and only
/// there: an `OUT_OF_RANGE` without it (a message over a size limit, say) says nothing about
/// truncation.
pub const FIRST_RETAINED_POSITION_HEADER: &str = "dsss-first-retained-position";

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn largest_record() -> proto::Record {
        proto::Record {
            object_id: "o".repeat(ids::OBJECT_ID_BYTES_MAX),
            method_id: u32::MAX,
            arguments: vec![0xff; ARGUMENTS_BYTES_MAX],
            client_id: u64::MAX,
            request_sequence: u64::MAX,
            timestamp: Some(proto::Timestamp {
                physical_us: u64::MAX,
                logical: u32::MAX,
            }),
            scope: proto::Scope::Regional.into(),
            origin_region: "r".repeat(ids::REGION_ID_CHARS_MAX),
        }
    }

    #[test]
    fn largest_checkpoint_upload_fits_in_one_message() {
        let upload = proto::UploadCheckpointRequest {
            checkpoint: Some(proto::Checkpoint {
                object_id: "o".repeat(ids::OBJECT_ID_BYTES_MAX),
                position: u64::MAX,
                state: vec![0xff; CHECKPOINT_STATE_BYTES_MAX],
                state_hash: vec![0xff; 32],
            }),
            client_id: u64::MAX,
        };
        assert!(upload.encoded_len() <= GRPC_MESSAGE_BYTES_MAX);
    }

    #[test]
    fn a_region_batch_holds_many_records_of_the_largest_size() {
        // A region leader fills a batch with whole records until the next one would not fit;
        // with the largest records that must still be a useful number.
        let record_bytes = largest_record().encoded_len();
        let records_per_message = GRPC_MESSAGE_BYTES_MAX / (record_bytes + 8);
        assert!(
            records_per_message >= 30,
            "only {records_per_message} largest records fit"
        );
        let batch = proto::RegionBatch {
            region: "r".repeat(ids::REGION_ID_CHARS_MAX),
            batch_number: u64::MAX,
            records: vec![largest_record(); records_per_message],
            closed_timestamp: Some(proto::Timestamp::default()),
            sender_node_id: u64::MAX,
            sender_time: Some(proto::Timestamp::default()),
            incarnation: u64::MAX,
        };
        assert!(batch.encoded_len() <= GRPC_MESSAGE_BYTES_MAX);
    }
}
