//! Encodings: raft messages for the wire, and raft state for the durable store.
//!
//! raft-rs 0.7 speaks rust-protobuf 2, so raft messages travel as its protocol buffer bytes
//! (the `eraftpb.Message` schema of raft-rs). Bytes from the network are untrusted: [`decode_message`]
//! bounds their size, never panics, and names what was wrong. Bytes read back from the store
//! are checked the same way and reported as [`StoreError::Corrupt`] with the key that held
//! them, because a store that returns garbage is damaged, not merely unlucky.

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Message, MessageType};

use crate::store::{KeySpace, StoreError};

/// The largest encoded raft message, in bytes, that a node sends or accepts. A snapshot
/// message is the largest kind: state machines bound their snapshots below this.
pub const RAFT_MESSAGE_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Why bytes from the network are not a raft message this node accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message is larger than [`RAFT_MESSAGE_BYTES_MAX`].
    #[error(
        "raft message of {size_bytes} bytes is larger than the maximum of \
         {RAFT_MESSAGE_BYTES_MAX} bytes"
    )]
    TooLarge {
        /// The size received.
        size_bytes: usize,
    },
    /// The bytes are not a protocol buffer `eraftpb.Message`.
    #[error("raft message of {size_bytes} bytes does not decode: {reason}")]
    Malformed {
        /// The size received.
        size_bytes: usize,
        /// What the decoder reported.
        reason: String,
    },
    /// The message decoded but a field breaks a rule of the protocol.
    #[error("raft message field {field}: {reason}")]
    InvalidField {
        /// The field, as spelled in `eraftpb.proto`.
        field: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// Encodes a raft message for the wire.
///
/// # Panics
///
/// Never for messages raft-rs produces: proto3 messages have no required fields, and their
/// size stays far below the 2 GiB the encoder can count, because entries and snapshots are
/// bounded by the group's limits.
pub fn encode_message(message: &Message) -> Vec<u8> {
    message
        .write_to_bytes()
        .expect("a proto3 raft message always encodes")
}

/// Decodes a raft message received from the network, checking its size first and the fields
/// raft-rs relies on afterwards. Never panics, whatever the bytes.
pub fn decode_message(bytes: &[u8]) -> Result<Message, DecodeError> {
    if bytes.len() > RAFT_MESSAGE_BYTES_MAX {
        return Err(DecodeError::TooLarge {
            size_bytes: bytes.len(),
        });
    }
    let message = Message::parse_from_bytes(bytes).map_err(|error| DecodeError::Malformed {
        size_bytes: bytes.len(),
        reason: error.to_string(),
    })?;
    validate_message(&message)?;
    Ok(message)
}

/// Checks the fields of a decoded message that a peer must always set.
fn validate_message(message: &Message) -> Result<(), DecodeError> {
    if message.from == raft::INVALID_ID {
        return Err(DecodeError::InvalidField {
            field: "from",
            reason: "the sender id is 0, which raft reserves for \"no node\"".to_owned(),
        });
    }
    if message.to == raft::INVALID_ID {
        return Err(DecodeError::InvalidField {
            field: "to",
            reason: "the receiver id is 0, which raft reserves for \"no node\"".to_owned(),
        });
    }
    if raft::raw_node::is_local_msg(message.get_msg_type()) {
        return Err(DecodeError::InvalidField {
            field: "msg_type",
            reason: format!(
                "{:?} is local to a node and never crosses the network",
                message.get_msg_type()
            ),
        });
    }
    if message.get_msg_type() == MessageType::MsgSnapshot && !message.has_snapshot() {
        return Err(DecodeError::InvalidField {
            field: "snapshot",
            reason: "a snapshot message carries no snapshot".to_owned(),
        });
    }
    Ok(())
}

/// The hex form of a key, for error messages.
pub(crate) fn key_hex(key: &[u8]) -> String {
    key.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A [`StoreError::Corrupt`] for `key` in `space`.
pub(crate) fn corrupt(space: KeySpace, key: &[u8], reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        space,
        key_hex: key_hex(key),
        reason: reason.into(),
    }
}

/// The store key of the raft log entry at `index`: the index, big-endian, so that key order
/// is index order.
pub fn entry_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The index a raft log key holds, or an error naming the key.
pub(crate) fn decode_entry_key(space: KeySpace, key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| {
        corrupt(
            space,
            key,
            format!("a log key is 8 bytes, not {}", key.len()),
        )
    })?;
    Ok(u64::from_be_bytes(bytes))
}

pub(crate) fn encode_entry(entry: &Entry) -> Vec<u8> {
    entry
        .write_to_bytes()
        .expect("a proto3 raft entry always encodes")
}

pub(crate) fn decode_entry(space: KeySpace, key: &[u8], value: &[u8]) -> Result<Entry, StoreError> {
    Entry::parse_from_bytes(value)
        .map_err(|error| corrupt(space, key, format!("raft entry does not decode: {error}")))
}

pub(crate) fn encode_hard_state(hard_state: &HardState) -> Vec<u8> {
    hard_state
        .write_to_bytes()
        .expect("a proto3 hard state always encodes")
}

pub(crate) fn decode_hard_state(
    space: KeySpace,
    key: &[u8],
    value: &[u8],
) -> Result<HardState, StoreError> {
    HardState::parse_from_bytes(value)
        .map_err(|error| corrupt(space, key, format!("hard state does not decode: {error}")))
}

pub(crate) fn encode_conf_state(conf_state: &ConfState) -> Vec<u8> {
    conf_state
        .write_to_bytes()
        .expect("a proto3 conf state always encodes")
}

pub(crate) fn decode_conf_state(
    space: KeySpace,
    key: &[u8],
    value: &[u8],
) -> Result<ConfState, StoreError> {
    ConfState::parse_from_bytes(value)
        .map_err(|error| corrupt(space, key, format!("conf state does not decode: {error}")))
}

/// Two big-endian `u64`s, the form of the compaction point (index, term).
pub(crate) fn encode_u64_pair(first: u64, second: u64) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&first.to_be_bytes());
    bytes[8..].copy_from_slice(&second.to_be_bytes());
    bytes
}

pub(crate) fn decode_u64_pair(
    space: KeySpace,
    key: &[u8],
    value: &[u8],
) -> Result<(u64, u64), StoreError> {
    let bytes: [u8; 16] = value.try_into().map_err(|_| {
        corrupt(
            space,
            key,
            format!("expected 16 bytes (two numbers), found {}", value.len()),
        )
    })?;
    let (first, second) = bytes.split_at(8);
    Ok((
        u64::from_be_bytes(first.try_into().expect("split at 8 of 16")),
        u64::from_be_bytes(second.try_into().expect("split at 8 of 16")),
    ))
}

pub(crate) fn decode_u64(space: KeySpace, key: &[u8], value: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| {
        corrupt(
            space,
            key,
            format!("expected 8 bytes (a number), found {}", value.len()),
        )
    })?;
    Ok(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Snapshot;

    fn append_message() -> Message {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgAppend);
        message.from = 1;
        message.to = 2;
        message.term = 7;
        message.index = 41;
        message.log_term = 6;
        message.commit = 40;
        let entry = Entry {
            index: 42,
            term: 7,
            data: b"record batch".to_vec().into(),
            ..Entry::default()
        };
        message.set_entries(vec![entry].into());
        message
    }

    #[test]
    fn a_message_survives_the_round_trip() {
        let message = append_message();
        let decoded = decode_message(&encode_message(&message)).expect("valid message");
        assert_eq!(decoded, message);
        assert_eq!(decoded.get_entries()[0].data.as_ref(), b"record batch");
    }

    #[test]
    fn every_truncation_of_a_message_is_an_error_or_a_smaller_message_never_a_panic() {
        let bytes = encode_message(&append_message());
        for length in 0..bytes.len() {
            // A protocol buffer prefix may happen to decode (fields are optional); what
            // matters is that nothing panics and nothing decodes to the full message.
            if let Ok(decoded) = decode_message(&bytes[..length]) {
                assert_ne!(decoded, append_message(), "a truncation decoded in full");
            }
        }
        assert!(matches!(
            decode_message(&bytes[..bytes.len() / 2]),
            Err(DecodeError::Malformed { .. } | DecodeError::InvalidField { .. })
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        // A deterministic byte stream (xorshift) rather than a random one, so a failure
        // replays.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut errors = 0;
        for length in 0..2_000usize {
            let bytes: Vec<u8> = (0..length % 300)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            if decode_message(&bytes).is_err() {
                errors += 1;
            }
        }
        assert!(errors > 1_000, "only {errors} garbage inputs were refused");
        // A length prefix that claims far more bytes than follow.
        let lying_length = [0x32, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01];
        assert!(decode_message(&lying_length).is_err());
    }

    #[test]
    fn a_message_over_the_size_limit_is_refused_before_decoding() {
        let bytes = vec![0u8; RAFT_MESSAGE_BYTES_MAX + 1];
        assert_eq!(
            decode_message(&bytes),
            Err(DecodeError::TooLarge {
                size_bytes: RAFT_MESSAGE_BYTES_MAX + 1
            })
        );
    }

    #[test]
    fn messages_without_sender_or_receiver_or_local_types_are_refused() {
        let mut message = append_message();
        message.from = 0;
        let error = decode_message(&encode_message(&message)).unwrap_err();
        assert!(error.to_string().contains("from"), "{error}");

        let mut message = append_message();
        message.to = 0;
        let error = decode_message(&encode_message(&message)).unwrap_err();
        assert!(error.to_string().contains("to"), "{error}");

        let mut message = append_message();
        message.set_msg_type(MessageType::MsgHup);
        let error = decode_message(&encode_message(&message)).unwrap_err();
        assert!(error.to_string().contains("msg_type"), "{error}");

        let mut message = append_message();
        message.set_msg_type(MessageType::MsgSnapshot);
        let error = decode_message(&encode_message(&message)).unwrap_err();
        assert!(error.to_string().contains("snapshot"), "{error}");
        message.set_snapshot(Snapshot::default());
        assert!(decode_message(&encode_message(&message)).is_ok());
    }

    #[test]
    fn stored_values_that_do_not_decode_name_their_key() {
        let error = decode_u64_pair(crate::RAFT_STATE, b"compacted", &[1, 2, 3]).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("raft_state"), "{text}");
        assert!(text.contains(&key_hex(b"compacted")), "{text}");
        assert!(decode_entry_key(crate::RAFT_LOG, &[0; 7]).is_err());
        assert_eq!(decode_entry_key(crate::RAFT_LOG, &entry_key(9)).unwrap(), 9);
        assert!(decode_entry(crate::RAFT_LOG, &entry_key(1), &[0xff, 0xff, 0xff]).is_err());
    }
}
