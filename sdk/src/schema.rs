//! The schema of a shared object's type, kept in the object's log.
//!
//! The schema names the type, and for every mutating method its stable id, name, argument and
//! result types (as written in the source) and codec, plus the ids the type retired. The first
//! client that opens an object appends its schema to the log as a record with method id
//! [`crate::object::SCHEMA_METHOD_ID`]; every later opener appends its own, and each replica
//! checks it against the schema in force when it applies that record, so every copy decides the
//! same way. A compatible schema (the same methods, possibly more) replaces the one in force; an
//! incompatible one is refused, and the opener's `open` fails with the reason, naming the
//! method that changed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::{Codec, CodecError, Postcard};

/// The most methods a type may declare.
pub const METHODS_MAX: usize = 1024;
/// The longest type, method, argument or result description, in bytes.
pub const SCHEMA_TEXT_BYTES_MAX: usize = 4096;

/// One mutating method as the schema records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodSchema {
    /// The stable id, from 1.
    pub id: u32,
    /// The method's name.
    pub name: String,
    /// The arguments as declared, for example `player: String, seats: u32`.
    pub arguments: String,
    /// The result type as declared, `()` when the method returns nothing.
    pub result: String,
    /// The [`Codec::NAME`] of the method's codec.
    pub codec: String,
}

/// A type's schema: what a replica needs to know to apply the object's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSchema {
    /// The type's name.
    pub type_name: String,
    /// The mutating methods, in increasing id order.
    pub methods: Vec<MethodSchema>,
    /// Ids of methods the type removed; they may never be used again.
    pub retired_ids: Vec<u32>,
}

/// A schema record that does not decode or breaks a bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The bytes are not a schema.
    #[error("schema record does not decode: {0}")]
    Decode(#[from] CodecError),
    /// The schema breaks a bound or repeats an id.
    #[error("schema of {type_name} is invalid: {reason}")]
    Invalid {
        /// The type the schema describes.
        type_name: String,
        /// What is wrong.
        reason: String,
    },
}

impl ObjectSchema {
    /// The method with this id.
    pub fn method(&self, id: u32) -> Option<&MethodSchema> {
        self.methods
            .binary_search_by_key(&id, |method| method.id)
            .ok()
            .map(|index| &self.methods[index])
    }

    /// The bytes of the schema record (postcard; the same schema gives the same bytes).
    pub fn encode(&self) -> Vec<u8> {
        Postcard::encode(self).expect("a schema of strings and integers always encodes")
    }

    /// Decodes and validates a schema record.
    pub fn decode(bytes: &[u8]) -> Result<ObjectSchema, SchemaError> {
        let schema: ObjectSchema = Postcard::decode(bytes)?;
        schema.validate()?;
        Ok(schema)
    }

    /// Checks the bounds and that ids are increasing, non-zero and not retired.
    pub fn validate(&self) -> Result<(), SchemaError> {
        let invalid = |reason: String| SchemaError::Invalid {
            type_name: self.type_name.clone(),
            reason,
        };
        if self.methods.len() > METHODS_MAX {
            return Err(invalid(format!(
                "{} methods, at most {METHODS_MAX}",
                self.methods.len()
            )));
        }
        let texts = std::iter::once(&self.type_name).chain(
            self.methods
                .iter()
                .flat_map(|m| [&m.name, &m.arguments, &m.result, &m.codec].into_iter()),
        );
        for text in texts {
            if text.len() > SCHEMA_TEXT_BYTES_MAX {
                return Err(invalid(format!(
                    "a description of {} bytes, at most {SCHEMA_TEXT_BYTES_MAX}",
                    text.len()
                )));
            }
        }
        let mut previous = 0;
        for method in &self.methods {
            if method.id <= previous {
                return Err(invalid(format!(
                    "method ids must be increasing and from 1; {} ({}) follows {previous}",
                    method.id, method.name
                )));
            }
            if self.retired_ids.contains(&method.id) {
                return Err(invalid(format!(
                    "method {} ({}) uses a retired id",
                    method.id, method.name
                )));
            }
            previous = method.id;
        }
        Ok(())
    }

    /// Whether a client built with `self` may use an object whose log holds `in_force`. It may
    /// when it has the same type name, keeps every method of `in_force` with the same id, name,
    /// arguments, result and codec (adding methods is fine), and does not reuse an id that
    /// `in_force` retired. The error says which method changed and how.
    pub fn check_compatible(&self, in_force: &ObjectSchema) -> Result<(), String> {
        if self.type_name != in_force.type_name {
            return Err(format!(
                "the object holds a {}, not a {}",
                in_force.type_name, self.type_name
            ));
        }
        for old in &in_force.methods {
            let Some(new) = self.method(old.id) else {
                return Err(format!(
                    "method {} ({}) of {} was removed; the log still applies it (keep it)",
                    old.id, old.name, self.type_name
                ));
            };
            let changes = [
                ("name", &old.name, &new.name),
                ("arguments", &old.arguments, &new.arguments),
                ("result", &old.result, &new.result),
                ("codec", &old.codec, &new.codec),
            ];
            for (what, before, after) in changes {
                if before != after {
                    return Err(format!(
                        "method {} ({}) of {} changed its {what} from `{before}` to `{after}`",
                        old.id, old.name, self.type_name
                    ));
                }
            }
        }
        for new in &self.methods {
            if in_force.retired_ids.contains(&new.id) {
                return Err(format!(
                    "method {} ({}) of {} reuses an id retired in the object's log",
                    new.id, new.name, self.type_name
                ));
            }
        }
        Ok(())
    }

    /// The schema that applies after a compatible `self` is accepted over `in_force`: `self`'s
    /// methods, and the retired ids of both.
    pub fn merged_over(&self, in_force: &ObjectSchema) -> ObjectSchema {
        let mut merged = self.clone();
        for id in &in_force.retired_ids {
            if !merged.retired_ids.contains(id) {
                merged.retired_ids.push(*id);
            }
        }
        merged.retired_ids.sort_unstable();
        merged
    }

    /// A short fingerprint of the schema (the first 8 bytes of its SHA-256, in hex), for
    /// messages and status pages.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.encode());
        digest[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(id: u32, name: &str, arguments: &str) -> MethodSchema {
        MethodSchema {
            id,
            name: name.into(),
            arguments: arguments.into(),
            result: "()".into(),
            codec: "postcard".into(),
        }
    }

    fn lobby(methods: Vec<MethodSchema>, retired_ids: Vec<u32>) -> ObjectSchema {
        ObjectSchema {
            type_name: "Lobby".into(),
            methods,
            retired_ids,
        }
    }

    #[test]
    fn adding_a_method_is_compatible_and_changing_one_names_it() {
        let v1 = lobby(vec![method(1, "join", "player: String")], vec![]);
        let v2 = lobby(
            vec![
                method(1, "join", "player: String"),
                method(2, "leave", "player: String"),
            ],
            vec![],
        );
        assert_eq!(v2.check_compatible(&v1), Ok(()));
        let changed = lobby(vec![method(1, "join", "player: u64")], vec![]);
        let reason = changed.check_compatible(&v1).unwrap_err();
        assert!(
            reason.contains("method 1 (join)") && reason.contains("player: u64"),
            "{reason}"
        );
        let removed = v1.check_compatible(&v2).unwrap_err();
        assert!(removed.contains("method 2 (leave)"), "{removed}");
    }

    #[test]
    fn a_retired_id_cannot_come_back() {
        let in_force = lobby(vec![method(1, "join", "player: String")], vec![2]);
        let reuse = lobby(
            vec![method(1, "join", "player: String"), method(2, "kick", "")],
            vec![],
        );
        let reason = reuse.check_compatible(&in_force).unwrap_err();
        assert!(reason.contains("method 2 (kick)"), "{reason}");
        let merged =
            lobby(vec![method(1, "join", "player: String")], vec![]).merged_over(&in_force);
        assert_eq!(merged.retired_ids, vec![2]);
    }

    #[test]
    fn decode_validates_ids() {
        let bad = lobby(vec![method(2, "a", ""), method(2, "b", "")], vec![]);
        let error = ObjectSchema::decode(&bad.encode()).unwrap_err();
        assert!(error.to_string().contains("increasing"), "{error}");
        assert!(ObjectSchema::decode(b"\xff\xff").is_err());
        let good = lobby(vec![method(1, "join", "player: String")], vec![]);
        assert_eq!(ObjectSchema::decode(&good.encode()).unwrap(), good);
        assert_eq!(good.fingerprint().len(), 16);
    }
}
