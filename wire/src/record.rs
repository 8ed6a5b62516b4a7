//! Operation records: one call of a mutating method on a shared object, the unit that DSSS
//! orders, persists and delivers.
//!
//! [`Record`] is the validated form of [`proto::Record`]: every field of a record received from
//! the wire is checked once, at the boundary, by `Record::try_from`, and the error names the
//! field and what was wrong with it.

use crate::hlc::{Timestamp, TimestampError};
use crate::ids::{
    ClientId, MethodId, ObjectId, ObjectIdError, RegionId, RegionIdError, RequestSequence,
};
use crate::proto;
use prost::Message as _;

/// The largest argument payload of one call, in bytes (1 MiB).
pub const ARGUMENTS_BYTES_MAX: usize = 1024 * 1024;

/// The largest encoded record: the largest arguments plus room for every other field.
pub const RECORD_BYTES_MAX: usize = ARGUMENTS_BYTES_MAX + 4 * 1024;

/// Where an object's copies live and who orders its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Copies in every region; records are ordered by the global coordinator in sealed epochs.
    Global,
    /// Copies in the origin region only; records are ordered by that region's raft group alone.
    Regional,
}

impl From<Scope> for proto::Scope {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::Global => proto::Scope::Global,
            Scope::Regional => proto::Scope::Regional,
        }
    }
}

impl TryFrom<proto::Scope> for Scope {
    type Error = ScopeError;

    fn try_from(scope: proto::Scope) -> Result<Self, Self::Error> {
        match scope {
            proto::Scope::Global => Ok(Scope::Global),
            proto::Scope::Regional => Ok(Scope::Regional),
            proto::Scope::Unspecified => Err(ScopeError::Unspecified),
        }
    }
}

impl TryFrom<i32> for Scope {
    type Error = ScopeError;

    /// Converts the raw value of a protocol buffer `Scope` field, which may hold any number.
    fn try_from(value: i32) -> Result<Self, Self::Error> {
        let scope = proto::Scope::try_from(value).map_err(|_| ScopeError::Unknown { value })?;
        Scope::try_from(scope)
    }
}

/// Why a protocol buffer scope value is not a [`Scope`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The scope was not set (value 0).
    #[error("scope is unspecified (0); expected SCOPE_GLOBAL (1) or SCOPE_REGIONAL (2)")]
    Unspecified,
    /// The value names no scope this release knows.
    #[error("scope {value} is unknown; expected SCOPE_GLOBAL (1) or SCOPE_REGIONAL (2)")]
    Unknown {
        /// The value received.
        value: i32,
    },
}

/// The encoded arguments of one call: opaque bytes, at most [`ARGUMENTS_BYTES_MAX`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Arguments(Vec<u8>);

/// Why bytes are not valid [`Arguments`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentsError {
    /// The payload is larger than [`ARGUMENTS_BYTES_MAX`].
    #[error(
        "arguments are {length_bytes} bytes, more than the maximum of {ARGUMENTS_BYTES_MAX} bytes"
    )]
    TooLarge {
        /// The size of the payload, in bytes.
        length_bytes: usize,
    },
}

impl Arguments {
    /// Checks the size of an encoded argument payload and wraps it.
    pub fn new(bytes: Vec<u8>) -> Result<Self, ArgumentsError> {
        if bytes.len() > ARGUMENTS_BYTES_MAX {
            return Err(ArgumentsError::TooLarge {
                length_bytes: bytes.len(),
            });
        }
        Ok(Arguments(bytes))
    }

    /// The payload.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The payload, as an owned vector.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }

    /// The size of the payload, in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the payload is empty (a method without arguments may encode to nothing).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One call of a mutating method, validated.
///
/// Every field holds a type that cannot be invalid, so a `Record` converts to the wire without
/// checks and back with `Record::try_from`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    /// The object the method is called on.
    pub object_id: ObjectId,
    /// The stable id of the mutating method.
    pub method_id: MethodId,
    /// The encoded arguments.
    pub arguments: Arguments,
    /// The client that made the call.
    pub client_id: ClientId,
    /// The client's sequence number for this call.
    pub request_sequence: RequestSequence,
    /// The timestamp the region leader assigned.
    pub timestamp: Timestamp,
    /// The object's scope.
    pub scope: Scope,
    /// The region whose leader accepted the call.
    pub origin_region: RegionId,
}

/// Why a [`proto::Record`] is not a valid [`Record`]. Each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Field `object_id` is not a valid object id.
    #[error("record field object_id: {0}")]
    ObjectId(#[source] ObjectIdError),
    /// Field `arguments` is too large.
    #[error("record field arguments: {0}")]
    Arguments(#[source] ArgumentsError),
    /// Field `timestamp` is not set.
    #[error("record field timestamp: missing; the region leader must stamp every record")]
    MissingTimestamp,
    /// Field `timestamp` is out of range.
    #[error("record field timestamp: {0}")]
    Timestamp(#[source] TimestampError),
    /// Field `scope` is unset or unknown.
    #[error("record field scope: {0}")]
    Scope(#[source] ScopeError),
    /// Field `origin_region` is not a valid region id.
    #[error("record field origin_region: {0}")]
    OriginRegion(#[source] RegionIdError),
}

impl RecordError {
    /// The name of the field that was wrong, as spelled in the `.proto` file.
    pub fn field(&self) -> &'static str {
        match self {
            RecordError::ObjectId(_) => "object_id",
            RecordError::Arguments(_) => "arguments",
            RecordError::MissingTimestamp | RecordError::Timestamp(_) => "timestamp",
            RecordError::Scope(_) => "scope",
            RecordError::OriginRegion(_) => "origin_region",
        }
    }
}

impl TryFrom<proto::Record> for Record {
    type Error = RecordError;

    /// Validates every field of a record from the wire, in the order of the `.proto` file, and
    /// reports the first field that is wrong.
    fn try_from(record: proto::Record) -> Result<Self, Self::Error> {
        let object_id = ObjectId::new(record.object_id).map_err(RecordError::ObjectId)?;
        let arguments = Arguments::new(record.arguments).map_err(RecordError::Arguments)?;
        let timestamp = record.timestamp.ok_or(RecordError::MissingTimestamp)?;
        let timestamp = Timestamp::try_from(timestamp).map_err(RecordError::Timestamp)?;
        let scope = Scope::try_from(record.scope).map_err(RecordError::Scope)?;
        let origin_region =
            RegionId::new(record.origin_region).map_err(RecordError::OriginRegion)?;
        Ok(Record {
            object_id,
            method_id: MethodId(record.method_id),
            arguments,
            client_id: ClientId(record.client_id),
            request_sequence: RequestSequence(record.request_sequence),
            timestamp,
            scope,
            origin_region,
        })
    }
}

impl From<Record> for proto::Record {
    fn from(record: Record) -> Self {
        proto::Record {
            object_id: record.object_id.into_string(),
            method_id: record.method_id.get(),
            arguments: record.arguments.into_vec(),
            client_id: record.client_id.get(),
            request_sequence: record.request_sequence.get(),
            timestamp: Some(record.timestamp.into()),
            scope: proto::Scope::from(record.scope).into(),
            origin_region: record.origin_region.into_string(),
        }
    }
}

/// Encodes one record in the form the region log, the coordinator's state and their snapshots
/// store and replicate: its protocol buffer encoding.
pub fn encode_record(record: &Record) -> Vec<u8> {
    proto::Record::from(record.clone()).encode_to_vec()
}

/// The length of [`encode_record`]'s output for `record`.
pub fn encoded_record_len(record: &Record) -> usize {
    proto::Record::from(record.clone()).encoded_len()
}

/// Decodes and validates one record encoded by [`encode_record`].
///
/// The bytes come from a log, a store or a peer: decoding never panics, refuses more than
/// [`RECORD_BYTES_MAX`] bytes before reading them, and the error says what was wrong (the field
/// that does not validate, or where the encoding was cut).
pub fn decode_record(bytes: &[u8]) -> Result<Record, String> {
    if bytes.len() > RECORD_BYTES_MAX {
        return Err(format!(
            "record of {} bytes is larger than the maximum of {RECORD_BYTES_MAX}",
            bytes.len()
        ));
    }
    let wire = proto::Record::decode(bytes).map_err(|error| format!("record: {error}"))?;
    Record::try_from(wire).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::PHYSICAL_US_MAX;
    use prost::Message;

    fn valid_wire_record() -> proto::Record {
        proto::Record {
            object_id: "lobby/main".to_owned(),
            method_id: 1,
            arguments: vec![1, 2, 3],
            client_id: 42,
            request_sequence: 7,
            timestamp: Some(proto::Timestamp {
                physical_us: 1_700_000_000_000_000,
                logical: 3,
            }),
            scope: proto::Scope::Global.into(),
            origin_region: "eu-west".to_owned(),
        }
    }

    #[test]
    fn valid_record_converts_both_ways_without_loss() {
        let wire = valid_wire_record();
        let record = Record::try_from(wire.clone()).expect("valid record");
        assert_eq!(record.object_id.as_str(), "lobby/main");
        assert_eq!(record.method_id, MethodId(1));
        assert_eq!(record.arguments.as_bytes(), &[1, 2, 3]);
        assert_eq!(record.client_id, ClientId(42));
        assert_eq!(record.request_sequence, RequestSequence(7));
        assert_eq!(record.timestamp, Timestamp::new(1_700_000_000_000_000, 3));
        assert_eq!(record.scope, Scope::Global);
        assert_eq!(record.origin_region.as_str(), "eu-west");
        assert_eq!(proto::Record::from(record), wire);
    }

    #[test]
    fn record_survives_encoding_and_decoding() {
        let record = Record::try_from(valid_wire_record()).expect("valid record");
        let bytes = proto::Record::from(record.clone()).encode_to_vec();
        let decoded = proto::Record::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(Record::try_from(decoded), Ok(record));
    }

    #[test]
    fn arguments_of_exactly_the_maximum_size_are_accepted() {
        let mut wire = valid_wire_record();
        wire.arguments = vec![0; ARGUMENTS_BYTES_MAX];
        let record = Record::try_from(wire).expect("at the limit");
        assert_eq!(record.arguments.len(), ARGUMENTS_BYTES_MAX);
    }

    #[test]
    fn each_invalid_field_is_rejected_with_its_name_and_reason() {
        type Corruption = fn(&mut proto::Record);
        // (what is wrong, how to break the record, expected field, text the message must hold)
        let cases: [(&str, Corruption, &str, &str); 11] = [
            (
                "empty object id",
                |r| r.object_id.clear(),
                "object_id",
                "empty",
            ),
            (
                "object id too long",
                |r| r.object_id = "x".repeat(257),
                "object_id",
                "257 bytes",
            ),
            (
                "object id with a control character",
                |r| r.object_id = "lobby\tmain".to_owned(),
                "object_id",
                "'\\t' at byte 5",
            ),
            (
                "arguments too large",
                |r| r.arguments = vec![0; ARGUMENTS_BYTES_MAX + 1],
                "arguments",
                "1048577 bytes",
            ),
            (
                "missing timestamp",
                |r| r.timestamp = None,
                "timestamp",
                "missing",
            ),
            (
                "timestamp beyond the physical range",
                |r| {
                    r.timestamp = Some(proto::Timestamp {
                        physical_us: PHYSICAL_US_MAX + 1,
                        logical: 0,
                    })
                },
                "timestamp",
                "beyond the largest physical time",
            ),
            ("unspecified scope", |r| r.scope = 0, "scope", "unspecified"),
            (
                "unknown scope",
                |r| r.scope = 7,
                "scope",
                "scope 7 is unknown",
            ),
            (
                "negative scope",
                |r| r.scope = -1,
                "scope",
                "scope -1 is unknown",
            ),
            (
                "empty origin region",
                |r| r.origin_region.clear(),
                "origin_region",
                "empty",
            ),
            (
                "origin region with upper case",
                |r| r.origin_region = "EU-west".to_owned(),
                "origin_region",
                "'E' at byte 0",
            ),
        ];
        for (what, corrupt, field, reason) in cases {
            let mut wire = valid_wire_record();
            corrupt(&mut wire);
            let error = Record::try_from(wire).expect_err(what);
            assert_eq!(error.field(), field, "{what}");
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("record field {field}: ")),
                "{what}: {message}"
            );
            assert!(message.contains(reason), "{what}: {message}");
        }
    }

    #[test]
    fn arguments_constructor_enforces_the_limit() {
        assert!(
            Arguments::new(Vec::new())
                .expect("empty is fine")
                .is_empty()
        );
        assert_eq!(
            Arguments::new(vec![0; ARGUMENTS_BYTES_MAX + 1]),
            Err(ArgumentsError::TooLarge {
                length_bytes: ARGUMENTS_BYTES_MAX + 1
            })
        );
    }

    #[test]
    fn scope_converts_both_ways() {
        for scope in [Scope::Global, Scope::Regional] {
            let raw: i32 = proto::Scope::from(scope).into();
            assert_eq!(Scope::try_from(raw), Ok(scope));
        }
        assert_eq!(Scope::try_from(0), Err(ScopeError::Unspecified));
        assert_eq!(Scope::try_from(3), Err(ScopeError::Unknown { value: 3 }));
    }

    #[test]
    fn the_record_codec_round_trips_and_knows_its_length() {
        let record = Record::try_from(valid_wire_record()).expect("valid record");
        let bytes = encode_record(&record);
        assert_eq!(bytes.len(), encoded_record_len(&record));
        assert_eq!(decode_record(&bytes), Ok(record));
    }

    #[test]
    fn damaged_encoded_records_are_refused_with_a_reason_never_a_panic() {
        let bytes = encode_record(&Record::try_from(valid_wire_record()).unwrap());
        // Every cut is an error: inside a field the decoder says where it ran out, at a field
        // boundary the missing fields do not validate.
        for length in 0..bytes.len() {
            let error = decode_record(&bytes[..length]).unwrap_err();
            assert!(error.contains("record"), "prefix {length}: {error}");
        }
        let mut cut_inside = bytes.clone();
        cut_inside.truncate(3);
        let error = decode_record(&cut_inside).unwrap_err();
        assert!(error.starts_with("record: "), "{error}");
        // A field that does not validate is named.
        let mut wire = valid_wire_record();
        wire.scope = 0;
        let error = decode_record(&wire.encode_to_vec()).unwrap_err();
        assert!(error.contains("scope"), "{error}");
        // Too large is refused before decoding.
        let error = decode_record(&vec![0; RECORD_BYTES_MAX + 1]).unwrap_err();
        assert!(error.contains("maximum"), "{error}");
        // Garbage of every length.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for length in 0..500 {
            let garbage: Vec<u8> = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = decode_record(&garbage);
        }
    }

    #[test]
    fn the_largest_record_fits_its_bound() {
        let mut wire = valid_wire_record();
        wire.object_id = "o".repeat(crate::ids::OBJECT_ID_BYTES_MAX);
        wire.arguments = vec![0xff; ARGUMENTS_BYTES_MAX];
        wire.client_id = u64::MAX;
        wire.request_sequence = u64::MAX;
        wire.method_id = u32::MAX;
        wire.origin_region = "r".repeat(crate::ids::REGION_ID_CHARS_MAX);
        let record = Record::try_from(wire).expect("valid record");
        assert!(encoded_record_len(&record) <= RECORD_BYTES_MAX);
        assert_eq!(decode_record(&encode_record(&record)), Ok(record));
    }
}
