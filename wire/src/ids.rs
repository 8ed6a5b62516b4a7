//! Identifiers used across DSSS.
//!
//! Numeric ids are plain newtypes, so that a node id cannot be passed where a client id is
//! expected. The two string ids are validated when they are made: [`RegionId`] because it
//! appears in topology files, metrics and sort keys, [`ObjectId`] because it comes from
//! applications and crosses the wire.

use std::fmt;
use std::str::FromStr;

/// The longest region id, in characters (all of them ASCII), short enough to be a DNS label.
pub const REGION_ID_CHARS_MAX: usize = 63;

/// The longest object id, in bytes of UTF-8.
pub const OBJECT_ID_BYTES_MAX: usize = 256;

macro_rules! numeric_id {
    ($(#[$meta:meta])* $name:ident($inner:ty)) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);

        impl $name {
            /// Wraps a raw value.
            pub const fn new(value: $inner) -> Self {
                $name(value)
            }

            /// The raw value.
            pub const fn get(self) -> $inner {
                self.0
            }
        }

        impl From<$inner> for $name {
            fn from(value: $inner) -> Self {
                $name(value)
            }
        }

        impl From<$name> for $inner {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, formatter)
            }
        }
    };
}

numeric_id! {
    /// A server node (a member of a region's raft group or of the coordinator group), unique in
    /// the topology. raft-rs reserves 0 for "no node", so topologies use ids from 1.
    NodeId(u64)
}

numeric_id! {
    /// An application instance that makes calls; with [`RequestSequence`] it makes retries
    /// idempotent.
    ClientId(u64)
}

numeric_id! {
    /// A client's sequence number for one call, increasing with each call of that client; a
    /// retry reuses it.
    RequestSequence(u64)
}

numeric_id! {
    /// The stable id of a mutating method of a shared object type. Part of the log format: it
    /// must never be reused for another method.
    MethodId(u32)
}

numeric_id! {
    /// A position in a region's log. Entries are numbered from 1; position 0 means "before the
    /// first entry" (nothing applied yet).
    LogPosition(u64)
}

numeric_id! {
    /// The number of a sealed epoch of global records, from 1, one higher per epoch.
    EpochNumber(u64)
}

numeric_id! {
    /// The number of a batch of global records that a region sends to the coordinator, from 1,
    /// one higher per batch. Resending a batch under the same number is idempotent.
    BatchNumber(u64)
}

/// The name of a region: 1 to 63 characters of `a-z`, `0-9` and `-`, not starting or ending
/// with `-` (for example `eu-west`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionId(String);

/// Why a string is not a valid [`RegionId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionIdError {
    /// The string is empty.
    #[error(
        "region id is empty; expected 1 to {REGION_ID_CHARS_MAX} characters of a-z, 0-9 and '-'"
    )]
    Empty,
    /// The string is longer than [`REGION_ID_CHARS_MAX`].
    #[error(
        "region id is {length_bytes} bytes long; a region id has at most {REGION_ID_CHARS_MAX} characters"
    )]
    TooLong {
        /// The length of the string, in bytes.
        length_bytes: usize,
    },
    /// The string holds a character outside `a-z`, `0-9` and `-`.
    #[error(
        "region id has the character {character:?} at byte {byte_index}; only a-z, 0-9 and '-' \
         are allowed"
    )]
    InvalidCharacter {
        /// The first character that is not allowed.
        character: char,
        /// Where it is, in bytes from the start.
        byte_index: usize,
    },
    /// The string starts or ends with `-`.
    #[error("region id starts or ends with '-'; a hyphen may only separate letters and digits")]
    EdgeHyphen,
}

impl RegionId {
    /// Validates and wraps a region name.
    pub fn new(value: impl Into<String>) -> Result<Self, RegionIdError> {
        let value = value.into();
        validate_region_id(&value)?;
        Ok(RegionId(value))
    }

    /// The region name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The region name, as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

fn validate_region_id(value: &str) -> Result<(), RegionIdError> {
    if value.is_empty() {
        return Err(RegionIdError::Empty);
    }
    if value.len() > REGION_ID_CHARS_MAX {
        return Err(RegionIdError::TooLong {
            length_bytes: value.len(),
        });
    }
    let allowed = |character: char| {
        character.is_ascii_lowercase() || character.is_ascii_digit() || character == '-'
    };
    if let Some((byte_index, character)) = value.char_indices().find(|&(_, c)| !allowed(c)) {
        return Err(RegionIdError::InvalidCharacter {
            character,
            byte_index,
        });
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(RegionIdError::EdgeHyphen);
    }
    Ok(())
}

impl fmt::Display for RegionId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl AsRef<str> for RegionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for RegionId {
    type Err = RegionIdError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        RegionId::new(value)
    }
}

impl TryFrom<String> for RegionId {
    type Error = RegionIdError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        RegionId::new(value)
    }
}

impl TryFrom<&str> for RegionId {
    type Error = RegionIdError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        RegionId::new(value)
    }
}

impl From<RegionId> for String {
    fn from(id: RegionId) -> Self {
        id.0
    }
}

/// The name of a shared object: 1 to 256 bytes of UTF-8 without control characters (for example
/// `lobby/main`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(String);

/// Why a string is not a valid [`ObjectId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectIdError {
    /// The string is empty.
    #[error("object id is empty; expected 1 to {OBJECT_ID_BYTES_MAX} bytes of UTF-8")]
    Empty,
    /// The string is longer than [`OBJECT_ID_BYTES_MAX`].
    #[error(
        "object id is {length_bytes} bytes long; an object id has at most {OBJECT_ID_BYTES_MAX} bytes"
    )]
    TooLong {
        /// The length of the string, in bytes.
        length_bytes: usize,
    },
    /// The string holds a control character.
    #[error(
        "object id has the control character {character:?} at byte {byte_index}; control characters are not allowed"
    )]
    ControlCharacter {
        /// The first control character.
        character: char,
        /// Where it is, in bytes from the start.
        byte_index: usize,
    },
}

impl ObjectId {
    /// Validates and wraps an object name.
    pub fn new(value: impl Into<String>) -> Result<Self, ObjectIdError> {
        let value = value.into();
        validate_object_id(&value)?;
        Ok(ObjectId(value))
    }

    /// The object name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The object name, as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

fn validate_object_id(value: &str) -> Result<(), ObjectIdError> {
    if value.is_empty() {
        return Err(ObjectIdError::Empty);
    }
    if value.len() > OBJECT_ID_BYTES_MAX {
        return Err(ObjectIdError::TooLong {
            length_bytes: value.len(),
        });
    }
    if let Some((byte_index, character)) = value.char_indices().find(|&(_, c)| c.is_control()) {
        return Err(ObjectIdError::ControlCharacter {
            character,
            byte_index,
        });
    }
    Ok(())
}

impl fmt::Display for ObjectId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for ObjectId {
    type Err = ObjectIdError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        ObjectId::new(value)
    }
}

impl TryFrom<String> for ObjectId {
    type Error = ObjectIdError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        ObjectId::new(value)
    }
}

impl TryFrom<&str> for ObjectId {
    type Error = ObjectIdError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        ObjectId::new(value)
    }
}

impl From<ObjectId> for String {
    fn from(id: ObjectId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_ids_follow_the_naming_rule() {
        let longest = "a".repeat(REGION_ID_CHARS_MAX);
        let too_long = "a".repeat(REGION_ID_CHARS_MAX + 1);
        // (input, expected result)
        let cases: Vec<(&str, Result<(), RegionIdError>)> = vec![
            ("eu-west", Ok(())),
            ("a", Ok(())),
            ("us-east-1", Ok(())),
            ("0", Ok(())),
            (&longest, Ok(())),
            ("", Err(RegionIdError::Empty)),
            (&too_long, Err(RegionIdError::TooLong { length_bytes: 64 })),
            (
                "EU-west",
                Err(RegionIdError::InvalidCharacter {
                    character: 'E',
                    byte_index: 0,
                }),
            ),
            (
                "eu_west",
                Err(RegionIdError::InvalidCharacter {
                    character: '_',
                    byte_index: 2,
                }),
            ),
            (
                "eu west",
                Err(RegionIdError::InvalidCharacter {
                    character: ' ',
                    byte_index: 2,
                }),
            ),
            (
                "zürich",
                Err(RegionIdError::InvalidCharacter {
                    character: 'ü',
                    byte_index: 1,
                }),
            ),
            ("-eu", Err(RegionIdError::EdgeHyphen)),
            ("eu-", Err(RegionIdError::EdgeHyphen)),
            ("-", Err(RegionIdError::EdgeHyphen)),
        ];
        for (input, expected) in cases {
            let result = RegionId::new(input).map(|id| assert_eq!(id.as_str(), input));
            assert_eq!(result, expected, "region id {input:?}");
        }
    }

    #[test]
    fn region_id_errors_say_what_is_wrong_and_where() {
        let error = "eu_west".parse::<RegionId>().expect_err("underscore");
        assert_eq!(
            error.to_string(),
            "region id has the character '_' at byte 2; only a-z, 0-9 and '-' are allowed"
        );
        let error = RegionId::new("a".repeat(100)).expect_err("too long");
        assert!(error.to_string().contains("100 bytes"), "{error}");
    }

    #[test]
    fn object_ids_follow_the_naming_rule() {
        let longest = "é".repeat(OBJECT_ID_BYTES_MAX / 2);
        let too_long = "x".repeat(OBJECT_ID_BYTES_MAX + 1);
        let cases: Vec<(&str, Result<(), ObjectIdError>)> = vec![
            ("lobby/main", Ok(())),
            ("Lobby Main #1", Ok(())),
            ("日本/ロビー", Ok(())),
            (&longest, Ok(())),
            ("", Err(ObjectIdError::Empty)),
            (&too_long, Err(ObjectIdError::TooLong { length_bytes: 257 })),
            (
                "lobby\nmain",
                Err(ObjectIdError::ControlCharacter {
                    character: '\n',
                    byte_index: 5,
                }),
            ),
            (
                "\u{0}",
                Err(ObjectIdError::ControlCharacter {
                    character: '\u{0}',
                    byte_index: 0,
                }),
            ),
            (
                "é\u{85}",
                Err(ObjectIdError::ControlCharacter {
                    character: '\u{85}',
                    byte_index: 2,
                }),
            ),
        ];
        for (input, expected) in cases {
            let result = ObjectId::new(input).map(|id| assert_eq!(id.as_str(), input));
            assert_eq!(result, expected, "object id {input:?}");
        }
    }

    #[test]
    fn numeric_ids_convert_and_order_like_their_values() {
        assert_eq!(NodeId::from(7).get(), 7);
        assert_eq!(u64::from(LogPosition::new(9)), 9);
        assert!(EpochNumber(1) < EpochNumber(2));
        assert_eq!(MethodId(3).to_string(), "3");
        assert_eq!(BatchNumber::default(), BatchNumber(0));
    }
}
