//! The SDK's codecs never panic on arbitrary bytes, and what they decode round-trips: postcard
//! and JSON for a few representative types, schema records, checkpoint envelopes
//! (`Replica::from_checkpoint`), and the arguments of calls applied by a replica of an object
//! built with `#[dsss::shared_object]` (whose checkpoints must start equal replicas).
//!
//! The first byte of the input picks the decoder ([`DECODERS`]); the rest is its input.
//!
//! Shared by the fuzz target `sdk_codecs` and the corpus replay in `sdk/tests/fuzz_corpus.rs`.

use std::collections::BTreeMap;
use std::fmt::Debug;

use dsss::replica::{RecordRef, Replica, ReplicaConfig};
use dsss::{Codec, Json, ObjectSchema, Postcard};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A value with the shapes applications use: nested structs, enums, options, maps, sequences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sample {
    /// A unit variant.
    Empty,
    /// A newtype variant.
    Count(u64),
    /// A struct variant.
    Player {
        /// A string.
        name: String,
        /// An optional signed number.
        score: Option<i64>,
        /// A sequence of pairs.
        seats: Vec<(u32, bool)>,
    },
    /// A map.
    Scores(BTreeMap<String, i32>),
}

/// Seats of a game lobby: the shared object whose replicas the fuzzed calls are applied to.
#[dsss::shared_object]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Lobby {
    seats: BTreeMap<String, u32>,
    capacity: u32,
    reserved: Vec<(u32, String)>,
}

#[dsss::methods(retired = [4])]
impl Lobby {
    /// Seats a player and returns the seat, or the capacity when the lobby is full.
    #[mutate(id = 1)]
    pub fn join(&mut self, player: String) -> Result<u32, u32> {
        if self.seats.len() as u32 >= self.capacity {
            return Err(self.capacity);
        }
        let seat = self.seats.len() as u32;
        self.seats.insert(player, seat);
        Ok(seat)
    }

    /// Frees a player's seat and returns it.
    #[mutate(id = 2, codec = "json")]
    pub fn leave(&mut self, player: String) -> Option<u32> {
        self.seats.remove(&player)
    }

    /// Sets the capacity and reserves seats.
    #[mutate(id = 3)]
    pub fn reserve(&mut self, capacity: u32, pairs: Vec<(u32, String)>) -> usize {
        self.capacity = capacity;
        self.reserved.extend(pairs);
        self.reserved.len()
    }
}

/// Decodes `bytes` as `T` with codec `C`; what decodes must encode and decode to itself, and
/// encode to the same bytes again.
fn round_trip<C: Codec, T: Serialize + DeserializeOwned + PartialEq + Debug>(bytes: &[u8]) {
    let Ok(first) = C::decode::<T>(bytes) else {
        return;
    };
    let encoded = match C::encode(&first) {
        Ok(encoded) => encoded,
        Err(error) => panic!("decoded {first:?} does not encode: {error}"),
    };
    let second = match C::decode::<T>(&encoded) {
        Ok(second) => second,
        Err(error) => panic!("re-encoded {first:?} does not decode: {error}"),
    };
    assert_eq!(first, second, "a decoded value changed through re-encoding");
    assert_eq!(
        C::encode(&second).ok(),
        Some(encoded),
        "encoding is not stable"
    );
}

fn schema(bytes: &[u8]) {
    if let Ok(schema) = ObjectSchema::decode(bytes) {
        assert_eq!(ObjectSchema::decode(&schema.encode()), Ok(schema));
    }
}

fn config() -> ReplicaConfig {
    ReplicaConfig {
        checkpoint_every_records: 2,
        checkpoint_every_argument_bytes: 0,
        restore_point_every_records: 3,
        retained_argument_bytes_max: 1024,
    }
}

/// A checkpoint's state bytes, with their true hash: decoded or refused, never a panic; a
/// replica started from them checkpoints to the same bytes.
fn checkpoint(bytes: &[u8]) {
    let hash = Sha256::digest(bytes);
    let Ok(replica) = Replica::<Lobby>::from_checkpoint("lobby", config(), 7, bytes, &hash) else {
        return;
    };
    let again = Replica::<Lobby>::from_checkpoint("lobby", config(), 7, bytes, &hash);
    let again = match again {
        Ok(again) => again,
        Err(error) => panic!("a checkpoint that started a replica is refused: {error}"),
    };
    assert_eq!(again.state_hash(), replica.state_hash());
    assert_eq!(again.object(), replica.object());
}

/// Calls applied to a replica: each a method id byte (255 is the schema record, others
/// modulo 8) and arguments with a 2-byte big-endian length. Every checkpoint the replica
/// makes starts a replica with the same state.
fn calls(mut bytes: &[u8]) {
    let mut replica = Replica::<Lobby>::new("lobby", config());
    let mut position = 0;
    while let Some((&method, rest)) = bytes.split_first() {
        bytes = rest;
        let length = match bytes {
            [high, low, ..] => usize::from(u16::from_be_bytes([*high, *low])),
            _ => bytes.len(),
        };
        bytes = &bytes[bytes.len().min(2)..];
        let (arguments, rest) = bytes.split_at(length.min(bytes.len()));
        bytes = rest;
        position += 1;
        let method_id = if method == 255 {
            dsss::object::SCHEMA_METHOD_ID
        } else {
            u32::from(method % 8)
        };
        let record = RecordRef {
            client_id: 1,
            request_sequence: position,
            method_id,
            arguments,
        };
        if replica.handle_record(position, record).is_err() {
            // A stopped replica applies nothing more.
            return;
        }
        if let Some(made) = replica.poll_checkpoint() {
            let started = Replica::<Lobby>::from_checkpoint(
                "lobby",
                config(),
                made.position,
                &made.state,
                &made.state_hash,
            );
            match started {
                Ok(started) => assert_eq!(started.object(), replica.object()),
                Err(error) => panic!("the replica's own checkpoint is refused: {error}"),
            }
        }
    }
}

/// A decoder's name and the function that decodes and checks its input.
pub type Decoder = (&'static str, fn(&[u8]));

/// What the first input byte selects, modulo the length.
pub const DECODERS: &[Decoder] = &[
    (
        "postcard (String, u32)",
        round_trip::<Postcard, (String, u32)>,
    ),
    ("postcard Vec<u8>", round_trip::<Postcard, Vec<u8>>),
    (
        "postcard BTreeMap<String, i64>",
        round_trip::<Postcard, BTreeMap<String, i64>>,
    ),
    (
        "postcard Option<(u64, bool)>",
        round_trip::<Postcard, Option<(u64, bool)>>,
    ),
    ("postcard Sample", round_trip::<Postcard, Vec<Sample>>),
    ("json (String, u32)", round_trip::<Json, (String, u32)>),
    ("json Vec<u8>", round_trip::<Json, Vec<u8>>),
    (
        "json BTreeMap<String, i64>",
        round_trip::<Json, BTreeMap<String, i64>>,
    ),
    (
        "json Option<(u64, bool)>",
        round_trip::<Json, Option<(u64, bool)>>,
    ),
    ("json Sample", round_trip::<Json, Vec<Sample>>),
    ("ObjectSchema::decode", schema),
    ("Replica::from_checkpoint", checkpoint),
    ("Replica::handle_record", calls),
];

/// Runs the decoder the first byte selects on the rest of the input.
pub fn check(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let (_, decode) = DECODERS[usize::from(selector) % DECODERS.len()];
    decode(bytes);
}
