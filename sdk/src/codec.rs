//! Codecs turn method arguments, method results and object state into bytes and back.
//!
//! Every replica decodes the arguments of a call with the codec its method declares, so a
//! codec is part of the log format: changing the codec of an existing method id makes the
//! schema incompatible (see [`crate::schema`]). [`Postcard`] is the default; [`Json`] is there
//! for readable logs; an application can implement [`Codec`] for its own type and name it in
//! `#[mutate(id = N, codec = path::ToTheType)]`.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{codec} codec: {reason}")]
pub struct CodecError {
    /// The codec's [`Codec::NAME`].
    pub codec: &'static str,
    /// What went wrong, as the codec reported it.
    pub reason: String,
}

/// Turns values into bytes and back. Encoding MUST be deterministic: the same value gives the
/// same bytes in every process, because state hashes of checkpoints are compared across
/// replicas (prefer `BTreeMap` to `HashMap` in shared objects for the same reason).
pub trait Codec {
    /// The codec's name, recorded in the object's schema.
    const NAME: &'static str;
    /// Encodes a value.
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError>;
    /// Decodes a value, failing on malformed or trailing bytes.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError>;
}

/// The default codec: postcard, compact and fast.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl Codec for Postcard {
    const NAME: &'static str = "postcard";

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
        postcard::to_stdvec(value).map_err(|error| CodecError {
            codec: Self::NAME,
            reason: error.to_string(),
        })
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        let (value, rest) = postcard::take_from_bytes(bytes).map_err(|error| CodecError {
            codec: Self::NAME,
            reason: error.to_string(),
        })?;
        if !rest.is_empty() {
            return Err(CodecError {
                codec: Self::NAME,
                reason: format!("{} trailing bytes after the value", rest.len()),
            });
        }
        Ok(value)
    }
}

/// JSON through serde_json: larger and slower than [`Postcard`], readable in a log dump.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Codec for Json {
    const NAME: &'static str = "json";

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(|error| CodecError {
            codec: Self::NAME,
            reason: error.to_string(),
        })
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|error| CodecError {
            codec: Self::NAME,
            reason: error.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postcard_round_trips_and_rejects_trailing_bytes() {
        let bytes = Postcard::encode(&("ann".to_string(), 7u32)).unwrap();
        let value: (String, u32) = Postcard::decode(&bytes).unwrap();
        assert_eq!(value, ("ann".to_string(), 7));
        let mut longer = bytes.clone();
        longer.push(0);
        let error = Postcard::decode::<(String, u32)>(&longer).unwrap_err();
        assert!(error.reason.contains("trailing"), "{error}");
        assert!(Postcard::decode::<(String, u32)>(&bytes[..2]).is_err());
    }

    #[test]
    fn json_round_trips_and_names_itself_in_errors() {
        let bytes = Json::encode(&vec![1u8, 2]).unwrap();
        assert_eq!(bytes, b"[1,2]");
        let error = Json::decode::<Vec<u8>>(b"[1,").unwrap_err();
        assert!(error.to_string().starts_with("json codec:"), "{error}");
    }
}
