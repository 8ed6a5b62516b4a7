//! The contract between a shared object's type and the SDK. `#[dsss::shared_object]` and
//! `#[dsss::methods]` implement it; nothing else in an application needs to.

use crate::codec::CodecError;
use crate::schema::ObjectSchema;

/// Method id 0 is reserved: a record with it declares the schema of the client that opens the
/// object (see [`crate::schema`]). Application methods take ids from 1.
pub const SCHEMA_METHOD_ID: u32 = 0;

/// Why a record of a mutating method could not be applied. Every replica reaches the same
/// failure for the same record, so the call is skipped in every copy alike and its caller gets
/// this error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MethodError {
    /// No method of the type has this id.
    #[error("no mutating method has id {method_id} in {type_name}")]
    UnknownMethod {
        /// The object's type.
        type_name: &'static str,
        /// The id the record carries.
        method_id: u32,
    },
    /// The argument bytes do not decode with the method's codec.
    #[error("arguments of {type_name}::{method} do not decode: {source}")]
    Arguments {
        /// The object's type.
        type_name: &'static str,
        /// The method's name.
        method: &'static str,
        /// The codec's complaint.
        source: CodecError,
    },
    /// The method's result could not be encoded.
    #[error("result of {type_name}::{method} does not encode: {source}")]
    Result {
        /// The object's type.
        type_name: &'static str,
        /// The method's name.
        method: &'static str,
        /// The codec's complaint.
        source: CodecError,
    },
    /// The method panicked. The replica restored the state from before the call.
    #[error("{type_name}::{method} panicked: {message}; the call was skipped in every copy")]
    Panicked {
        /// The object's type.
        type_name: &'static str,
        /// The method's name.
        method: &'static str,
        /// The panic's message.
        message: String,
    },
    /// The schema this record declares cannot be used with the object's log (see
    /// [`crate::schema::ObjectSchema::check_compatible`]).
    #[error("{0}")]
    IncompatibleSchema(String),
}

/// A type whose mutating methods DSSS orders and applies in every copy.
///
/// Implemented by `#[dsss::methods]` on the type's impl block; `#[dsss::shared_object]` on the
/// type adds the handle type. The state must be `Default` (the state of a new object) and
/// serde-encodable (checkpoints).
pub trait SharedObject: Default + Send + Sync + 'static {
    /// The typed handle that `Client::open` returns: one async method per mutating method, plus
    /// reads and `sync` through `Deref` to [`crate::Object`].
    type Handle;

    /// The type's name, its methods' ids, names, argument and result types and codecs, and the
    /// ids it retired. Stable for a given version of the type's source.
    fn schema() -> &'static ObjectSchema;

    /// Applies one call: decodes `arguments` with the method's codec, runs the method on `self`
    /// and returns its encoded result. Does not catch panics: the replica does.
    fn apply(&mut self, method_id: u32, arguments: &[u8]) -> Result<Vec<u8>, MethodError>;

    /// Encodes the whole state for a checkpoint, with the default codec.
    fn encode_state(&self) -> Result<Vec<u8>, CodecError>;

    /// Decodes a state that [`SharedObject::encode_state`] made.
    fn decode_state(bytes: &[u8]) -> Result<Self, CodecError>;

    /// Wraps an opened object in the typed handle.
    fn handle(object: crate::Object<Self>) -> Self::Handle;
}
