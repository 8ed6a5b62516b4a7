//! The DSSS protocol version, which nodes and clients exchange so that different releases refuse
//! each other clearly instead of misreading each other's messages.
//!
//! Every gRPC request carries the header [`PROTOCOL_VERSION_HEADER`]; the receiving node checks
//! it with [`check_protocol_version`] before doing anything else. With the `grpc` feature,
//! `grpc::AttachProtocolVersion` and `grpc::RequireProtocolVersion` are the tonic interceptors
//! that do this; the check itself needs no tonic, so any transport (including the simulator's)
//! can apply it.

/// The version of the DSSS protocol this release speaks. It changes whenever a message or its
/// meaning changes in a way an older release would misread.
pub const PROTOCOL_VERSION: u32 = 1;

/// The gRPC metadata header that carries the sender's protocol version, in decimal.
pub const PROTOCOL_VERSION_HEADER: &str = "dsss-protocol-version";

/// The most characters of an unparsable header value that an error message repeats, so that a
/// peer cannot make a node log or return an arbitrarily long string.
pub const HEADER_ECHO_CHARS_MAX: usize = 32;

/// Why a peer's declared protocol version is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The peer sent no version header.
    #[error(
        "missing {PROTOCOL_VERSION_HEADER} header: this node speaks DSSS protocol \
         {PROTOCOL_VERSION} and refuses peers that do not declare theirs; connect with a DSSS \
         client or node of the same release"
    )]
    Missing,
    /// The header is not a decimal number.
    #[error(
        "unparsable {PROTOCOL_VERSION_HEADER} header {value:?}: expected a decimal protocol \
         version such as {PROTOCOL_VERSION}; run the same DSSS release on every node"
    )]
    Unparsable {
        /// The header value, cut to [`HEADER_ECHO_CHARS_MAX`] characters.
        value: String,
    },
    /// The peer speaks another protocol version.
    #[error(
        "protocol version mismatch: this node speaks DSSS protocol {PROTOCOL_VERSION}, the peer \
         speaks {peer}; run the same DSSS release on every node"
    )]
    Mismatch {
        /// The version the peer declared.
        peer: u32,
    },
}

/// Checks the value of a peer's [`PROTOCOL_VERSION_HEADER`] header (`None` when it sent none)
/// against [`PROTOCOL_VERSION`].
pub fn check_protocol_version(header: Option<&str>) -> Result<(), VersionError> {
    let header = header.ok_or(VersionError::Missing)?;
    let is_decimal = !header.is_empty() && header.bytes().all(|byte| byte.is_ascii_digit());
    let peer = if is_decimal {
        header.parse::<u32>().ok()
    } else {
        None
    };
    let Some(peer) = peer else {
        return Err(VersionError::Unparsable {
            value: header.chars().take(HEADER_ECHO_CHARS_MAX).collect(),
        });
    };
    if peer != PROTOCOL_VERSION {
        return Err(VersionError::Mismatch { peer });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_version_is_accepted() {
        assert_eq!(check_protocol_version(Some("1")), Ok(()));
        assert_eq!(
            check_protocol_version(Some("2")),
            Err(VersionError::Mismatch { peer: 2 })
        );
        assert_eq!(
            check_protocol_version(Some("0")),
            Err(VersionError::Mismatch { peer: 0 })
        );
        assert_eq!(check_protocol_version(None), Err(VersionError::Missing));
    }

    #[test]
    fn malformed_headers_are_unparsable() {
        for header in ["", "one", "+1", " 1", "1.0", "-1", "99999999999"] {
            assert_eq!(
                check_protocol_version(Some(header)),
                Err(VersionError::Unparsable {
                    value: header.to_owned()
                }),
                "header {header:?}"
            );
        }
    }

    #[test]
    fn messages_name_both_versions_and_the_remedy() {
        let mismatch = VersionError::Mismatch { peer: 2 }.to_string();
        assert_eq!(
            mismatch,
            "protocol version mismatch: this node speaks DSSS protocol 1, the peer speaks 2; run \
             the same DSSS release on every node"
        );
        let missing = VersionError::Missing.to_string();
        assert!(
            missing.starts_with("missing dsss-protocol-version header"),
            "{missing}"
        );
    }

    #[test]
    fn long_garbage_is_cut_in_the_error() {
        let garbage = "x".repeat(10_000);
        let Err(VersionError::Unparsable { value }) = check_protocol_version(Some(&garbage)) else {
            panic!("garbage must be unparsable");
        };
        assert_eq!(value.chars().count(), HEADER_ECHO_CHARS_MAX);
    }
}
