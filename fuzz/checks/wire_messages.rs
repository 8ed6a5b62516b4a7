//! Every message of `dsss-wire` survives decode, re-encode, decode: the protocol buffer messages
//! of package `dsss.v1` and the hand-written validation on top of them (records, ids,
//! timestamps, scopes, the protocol version header). Decoding arbitrary bytes never panics,
//! and whatever decodes encodes to bytes that decode to the same value.
//!
//! The first byte of the input picks what the rest is decoded as ([`DECODERS`]).
//!
//! Shared by the fuzz target `wire_messages` and the corpus replay in
//! `wire/tests/fuzz_corpus.rs`.

use std::fmt::Debug;

use dsss_wire::proto;
use dsss_wire::{ObjectId, RegionId, Scope, Timestamp};
use prost::Message;

/// Decodes `bytes` as `M`; when that succeeds, the re-encoding must decode to an equal message
/// and encode to the same bytes again.
fn round_trip<M: Message + Default + PartialEq + Debug>(bytes: &[u8]) {
    let Ok(first) = M::decode(bytes) else {
        return;
    };
    let encoded = first.encode_to_vec();
    assert_eq!(
        encoded.len(),
        first.encoded_len(),
        "encoded_len disagrees with the encoding of {first:?}"
    );
    let second = match M::decode(encoded.as_slice()) {
        Ok(second) => second,
        Err(error) => panic!("re-encoded {first:?} does not decode: {error}"),
    };
    assert_eq!(
        first, second,
        "a decoded message changed through re-encoding"
    );
    assert_eq!(
        second.encode_to_vec(),
        encoded,
        "the encoding of a decoded message is not stable"
    );
}

/// A record that validates re-encodes to one that validates to the same record.
fn record(bytes: &[u8]) {
    let Ok(record) = dsss_wire::decode_record(bytes) else {
        return;
    };
    let encoded = dsss_wire::encode_record(&record);
    assert_eq!(encoded.len(), dsss_wire::encoded_record_len(&record));
    assert_eq!(dsss_wire::decode_record(&encoded), Ok(record));
}

/// A wire timestamp that validates converts back to the same wire timestamp.
fn timestamp(bytes: &[u8]) {
    let Ok(wire) = proto::Timestamp::decode(bytes) else {
        return;
    };
    if let Ok(timestamp) = Timestamp::try_from(wire) {
        assert_eq!(proto::Timestamp::from(timestamp), wire);
        assert!(timestamp.successor() > timestamp || timestamp.physical_us == u64::MAX);
    }
}

/// Ids: what validates keeps its text and validates again.
fn ids(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(region) = RegionId::new(text.as_ref()) {
        assert_eq!(region.as_str(), text);
        assert_eq!(RegionId::new(region.as_str()).as_ref(), Ok(&region));
    }
    if let Ok(object) = ObjectId::new(text.as_ref()) {
        assert_eq!(object.as_str(), text);
        assert_eq!(ObjectId::new(object.as_str()).as_ref(), Ok(&object));
    }
}

/// A scope value that validates converts back to the same value.
fn scope(bytes: &[u8]) {
    let mut raw = [0u8; 4];
    let length = bytes.len().min(4);
    raw[..length].copy_from_slice(&bytes[..length]);
    let value = i32::from_le_bytes(raw);
    if let Ok(scope) = Scope::try_from(value) {
        assert_eq!(i32::from(proto::Scope::from(scope)), value);
    }
}

/// The protocol version header: any text is accepted or refused, never a panic.
fn version_header(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ =
        dsss_wire::check_protocol_version(Some(text.as_ref())).map_err(|error| error.to_string());
}

/// A decoder's name and the function that decodes and checks its input.
pub type Decoder = (&'static str, fn(&[u8]));

/// What the first input byte selects, modulo the length.
pub const DECODERS: &[Decoder] = &[
    ("ProposeRequest", round_trip::<proto::ProposeRequest>),
    ("ProposeCommitted", round_trip::<proto::ProposeCommitted>),
    ("ProposeReply", round_trip::<proto::ProposeReply>),
    ("SessionUnknown", round_trip::<proto::SessionUnknown>),
    (
        "OpenSessionRequest",
        round_trip::<proto::OpenSessionRequest>,
    ),
    ("SessionOpened", round_trip::<proto::SessionOpened>),
    ("OpenSessionReply", round_trip::<proto::OpenSessionReply>),
    (
        "CloseSessionRequest",
        round_trip::<proto::CloseSessionRequest>,
    ),
    ("SessionClosed", round_trip::<proto::SessionClosed>),
    ("CloseSessionReply", round_trip::<proto::CloseSessionReply>),
    ("SubscribeRequest", round_trip::<proto::SubscribeRequest>),
    ("SubscribeReply", round_trip::<proto::SubscribeReply>),
    ("Checkpoint", round_trip::<proto::Checkpoint>),
    (
        "FetchCheckpointRequest",
        round_trip::<proto::FetchCheckpointRequest>,
    ),
    (
        "FetchCheckpointReply",
        round_trip::<proto::FetchCheckpointReply>,
    ),
    (
        "UploadCheckpointRequest",
        round_trip::<proto::UploadCheckpointRequest>,
    ),
    (
        "UploadCheckpointReply",
        round_trip::<proto::UploadCheckpointReply>,
    ),
    ("SyncRequest", round_trip::<proto::SyncRequest>),
    ("SyncReply", round_trip::<proto::SyncReply>),
    ("StatusRequest", round_trip::<proto::StatusRequest>),
    ("ClockHealth", round_trip::<proto::ClockHealth>),
    ("StatusReply", round_trip::<proto::StatusReply>),
    ("DivergedObject", round_trip::<proto::DivergedObject>),
    ("Timestamp", round_trip::<proto::Timestamp>),
    ("Record", round_trip::<proto::Record>),
    (
        "PendingGlobalRecord",
        round_trip::<proto::PendingGlobalRecord>,
    ),
    (
        "SequencedGlobalRecord",
        round_trip::<proto::SequencedGlobalRecord>,
    ),
    ("EpochSealed", round_trip::<proto::EpochSealed>),
    ("LogEntry", round_trip::<proto::LogEntry>),
    ("NotLeader", round_trip::<proto::NotLeader>),
    ("RaftBatch", round_trip::<proto::RaftBatch>),
    ("ClockProbe", round_trip::<proto::ClockProbe>),
    ("RaftBatchAck", round_trip::<proto::RaftBatchAck>),
    ("RegionBatch", round_trip::<proto::RegionBatch>),
    ("RegionBatchAck", round_trip::<proto::RegionBatchAck>),
    (
        "ReadSealedEpochRequest",
        round_trip::<proto::ReadSealedEpochRequest>,
    ),
    (
        "ReadSealedEpochReply",
        round_trip::<proto::ReadSealedEpochReply>,
    ),
    ("LogRangeRequest", round_trip::<proto::LogRangeRequest>),
    (
        "LogRangeStateRequest",
        round_trip::<proto::LogRangeStateRequest>,
    ),
    ("LogRangeReply", round_trip::<proto::LogRangeReply>),
    (
        "LogRangeStatePiece",
        round_trip::<proto::LogRangeStatePiece>,
    ),
    (
        "RegionBatchAckReceipt",
        round_trip::<proto::RegionBatchAckReceipt>,
    ),
    ("ReadEpochsRequest", round_trip::<proto::ReadEpochsRequest>),
    ("ReadEpochsReply", round_trip::<proto::ReadEpochsReply>),
    ("SealedEpoch", round_trip::<proto::SealedEpoch>),
    ("SealedEpochAck", round_trip::<proto::SealedEpochAck>),
    ("AddPeerRequest", round_trip::<proto::AddPeerRequest>),
    ("AddPeerReply", round_trip::<proto::AddPeerReply>),
    (
        "ChangeMembershipRequest",
        round_trip::<proto::ChangeMembershipRequest>,
    ),
    (
        "ChangeMembershipReply",
        round_trip::<proto::ChangeMembershipReply>,
    ),
    ("MembersRequest", round_trip::<proto::MembersRequest>),
    ("MembersReply", round_trip::<proto::MembersReply>),
    ("decode_record", record),
    ("Timestamp::try_from", timestamp),
    ("RegionId and ObjectId", ids),
    ("Scope::try_from", scope),
    ("check_protocol_version", version_header),
    (
        "ProposeBatchRequest",
        round_trip::<proto::ProposeBatchRequest>,
    ),
    ("ProposeBatchReply", round_trip::<proto::ProposeBatchReply>),
];

/// Decodes the input as the message its first byte selects. Never panics unless a decoder
/// does or a round trip changes a value.
pub fn check(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let (_, decode) = DECODERS[usize::from(selector) % DECODERS.len()];
    decode(bytes);
}
