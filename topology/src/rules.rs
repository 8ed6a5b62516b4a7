//! Checks of single string values (ids, names, addresses, paths). Each returns the reason a
//! value is refused; the parser adds the field path and position.

use std::net::{IpAddr, SocketAddr};

/// Longest region id, in characters: a region id must fit in a DNS label.
pub const REGION_ID_CHARS_MAX: usize = 63;

/// Longest cluster name, in characters.
pub const CLUSTER_NAME_CHARS_MAX: usize = 63;

/// Longest host name in an address, in bytes (the DNS limit).
pub const HOST_NAME_BYTES_MAX: usize = 253;

/// Longest label (the part between dots) of a host name, in bytes (the DNS limit).
const HOST_LABEL_BYTES_MAX: usize = 63;

/// Longest path (data directory, certificate file or directory), in bytes.
pub const PATH_BYTES_MAX: usize = 4096;

/// Checks a region id: 1 to 63 characters of `a-z`, `0-9` and `-`, not starting or ending
/// with `-`.
pub(crate) fn check_region_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("a region id must not be empty".to_owned());
    }
    let chars = id.chars().count();
    if chars > REGION_ID_CHARS_MAX {
        return Err(format!(
            "a region id has at most {REGION_ID_CHARS_MAX} characters, this one has {chars}"
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{bad:?} is not allowed in a region id (only a-z, 0-9 and '-')"
        ));
    }
    if id.starts_with('-') || id.ends_with('-') {
        return Err("a region id must not start or end with '-'".to_owned());
    }
    Ok(())
}

/// Checks a cluster name: 1 to 63 characters of ASCII letters, digits, `-`, `_` and `.`.
pub(crate) fn check_cluster_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the cluster name must not be empty".to_owned());
    }
    let chars = name.chars().count();
    if chars > CLUSTER_NAME_CHARS_MAX {
        return Err(format!(
            "a cluster name has at most {CLUSTER_NAME_CHARS_MAX} characters, this one has {chars}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{bad:?} is not allowed in a cluster name (only letters, digits, '-', '_' and '.')"
        ));
    }
    Ok(())
}

/// Longest client name in a grant, in characters.
pub const GRANT_CLIENT_CHARS_MAX: usize = 63;

/// The most `[[grants]]` a topology may hold.
pub const GRANTS_MAX: usize = 1_024;

/// The most `[[tokens]]` a topology may hold.
pub const TOKENS_MAX: usize = 1_024;

/// Reads a SHA-256 digest written as 64 hexadecimal digits.
pub fn parse_sha256_hex(text: &str) -> Result<[u8; 32], String> {
    if text.len() != 64 {
        return Err(format!(
            "a SHA-256 digest is 64 hexadecimal digits; this one has {} characters \
             (`dsss token generate` prints the line to use)",
            text.chars().count()
        ));
    }
    let mut digest = [0_u8; 32];
    for (index, byte) in digest.iter_mut().enumerate() {
        let pair = &text[2 * index..2 * index + 2];
        *byte = u8::from_str_radix(pair, 16)
            .map_err(|_| format!("{pair:?} at offset {} is not hexadecimal", 2 * index))?;
    }
    Ok(digest)
}

/// The most object prefixes one grant may name.
pub const GRANT_OBJECTS_MAX: usize = 64;

/// Longest object prefix in a grant, in bytes (an object id's own bound).
pub const GRANT_OBJECT_PREFIX_BYTES_MAX: usize = 256;

/// Checks a client name, of a grant or of `dsss certs generate --client`: 1 to 63 characters
/// of ASCII letters, digits, `-`, `_` and
/// `.` (what `dsss certs generate` writes after `dsss://client/`).
pub fn check_client_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the client name must not be empty".to_owned());
    }
    let chars = name.chars().count();
    if chars > GRANT_CLIENT_CHARS_MAX {
        return Err(format!(
            "a client name has at most {GRANT_CLIENT_CHARS_MAX} characters, this one has {chars}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{bad:?} is not allowed in a client name (only letters, digits, '-', '_' and '.')"
        ));
    }
    Ok(())
}

/// Checks a `host:port` address and returns why it is invalid, phrased to follow
/// "is not a valid host:port". The host is an IPv4 literal, an IPv6 literal in brackets or a
/// host name; the port is 1 to 65535.
pub(crate) fn check_address(address: &str) -> Result<(), String> {
    if let Ok(socket_address) = address.parse::<SocketAddr>() {
        if socket_address.port() == 0 {
            return Err("port 0 is not allowed".to_owned());
        }
        return Ok(());
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err("missing \":port\"".to_owned());
    };
    check_port(port)?;
    if host.is_empty() {
        return Err("missing host".to_owned());
    }
    if let Some(inner) = host.strip_prefix('[') {
        let literal = inner.strip_suffix(']').unwrap_or(inner);
        return match literal.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Err("unclosed '[' around the IPv6 address".to_owned()),
            Err(_) => Err(format!("{literal:?} is not an IPv6 address")),
        };
    }
    if host.contains(':') {
        return Err("an IPv6 address must be in brackets, as in [::1]:7000".to_owned());
    }
    if host.parse::<IpAddr>().is_ok() {
        // A valid IP with a valid port parses as a socket address above, so this cannot be
        // reached; it is kept as a plain error rather than a panic.
        return Err("unrecognised address".to_owned());
    }
    check_host_name(host)
}

fn check_port(port: &str) -> Result<(), String> {
    if port.is_empty() {
        return Err("missing port".to_owned());
    }
    if !port.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("port {port:?} is not a number"));
    }
    match port.parse::<u16>() {
        Ok(0) => Err("port 0 is not allowed".to_owned()),
        Ok(_) => Ok(()),
        Err(_) => Err("port out of range".to_owned()),
    }
}

fn check_host_name(host: &str) -> Result<(), String> {
    if host.len() > HOST_NAME_BYTES_MAX {
        return Err(format!("host name longer than {HOST_NAME_BYTES_MAX} bytes"));
    }
    let looks_like_ipv4 = host
        .bytes()
        .all(|byte| byte.is_ascii_digit() || byte == b'.');
    if looks_like_ipv4 {
        return Err(format!("{host:?} is not an IPv4 address"));
    }
    for label in host.split('.') {
        let valid = !label.is_empty()
            && label.len() <= HOST_LABEL_BYTES_MAX
            && label
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(format!("{host:?} is not a valid host name"));
        }
    }
    Ok(())
}

/// Checks a file system path given as a string: not empty, no NUL character, at most
/// [`PATH_BYTES_MAX`] bytes.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("a path must not be empty".to_owned());
    }
    if path.contains('\0') {
        return Err("a path must not contain a NUL character".to_owned());
    }
    if path.len() > PATH_BYTES_MAX {
        return Err(format!(
            "a path has at most {PATH_BYTES_MAX} bytes, this one has {}",
            path.len()
        ));
    }
    Ok(())
}

/// The known key closest to an unknown one, when it is close enough to be a likely typo.
pub(crate) fn suggest_key<'k>(unknown: &str, known: &[&'k str]) -> Option<&'k str> {
    // Keys are short; longer input cannot be a typo of one and would only cost time.
    const KEY_BYTES_COMPARED_MAX: usize = 64;
    if unknown.len() > KEY_BYTES_COMPARED_MAX {
        return None;
    }
    known
        .iter()
        .map(|candidate| (edit_distance(unknown, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edit distance over characters where a swap of two neighbours counts as one edit (optimal
/// string alignment), since swapped letters are the most common typo.
fn edit_distance(a: &str, b: &str) -> usize {
    let a_chars: Vec<char> = a.chars().collect();
    let b_chars: Vec<char> = b.chars().collect();
    let width = b_chars.len() + 1;
    // Three rolling rows: two rows back is needed to price a swap.
    let mut before_previous = vec![0; width];
    let mut previous: Vec<usize> = (0..width).collect();
    let mut current = vec![0; width];
    for a_index in 0..a_chars.len() {
        current[0] = a_index + 1;
        for b_index in 0..b_chars.len() {
            let cost = usize::from(a_chars[a_index] != b_chars[b_index]);
            let mut best = (previous[b_index] + cost)
                .min(previous[b_index + 1] + 1)
                .min(current[b_index] + 1);
            let swapped = a_index > 0
                && b_index > 0
                && a_chars[a_index] == b_chars[b_index - 1]
                && a_chars[a_index - 1] == b_chars[b_index];
            if swapped {
                best = best.min(before_previous[b_index - 1] + 1);
            }
            current[b_index + 1] = best;
        }
        std::mem::swap(&mut before_previous, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b_chars.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_ids() {
        let cases: &[(&str, Option<&str>)] = &[
            ("region-a", None),
            ("us-east-1", None),
            ("a", None),
            ("0", None),
            ("", Some("must not be empty")),
            ("Region-A", Some("'R' is not allowed")),
            ("eu_west", Some("'_' is not allowed")),
            ("eu west", Some("' ' is not allowed")),
            ("-east", Some("must not start or end with '-'")),
            ("east-", Some("must not start or end with '-'")),
            ("région", Some("'é' is not allowed")),
        ];
        for (id, expected) in cases {
            let result = check_region_id(id);
            match expected {
                None => assert_eq!(result, Ok(()), "{id:?}"),
                Some(fragment) => {
                    let message = result.expect_err(id);
                    assert!(message.contains(fragment), "{id:?}: {message}");
                }
            }
        }
        assert!(check_region_id(&"a".repeat(63)).is_ok());
        assert!(
            check_region_id(&"a".repeat(64))
                .expect_err("64 characters")
                .contains("at most 63")
        );
    }

    #[test]
    fn addresses() {
        let cases: &[(&str, Option<&str>)] = &[
            ("127.0.0.1:7111", None),
            ("[::1]:7000", None),
            ("node-1.eu-west.example.com:443", None),
            ("localhost:1", None),
            ("localhost:65535", None),
            ("127.0.0.1:99999", Some("port out of range")),
            ("127.0.0.1:0", Some("port 0 is not allowed")),
            ("localhost:0", Some("port 0 is not allowed")),
            ("127.0.0.1", Some("missing \":port\"")),
            ("127.0.0.1:", Some("missing port")),
            (":7000", Some("missing host")),
            ("host:http", Some("port \"http\" is not a number")),
            ("host:-1", Some("is not a number")),
            ("::1:7000", Some("must be in brackets")),
            ("[::1:7000", Some("unclosed '['")),
            ("[::1]x:7000", Some("is not an IPv6 address")),
            ("[zz]:7000", Some("\"zz\" is not an IPv6 address")),
            ("300.1.1.1:80", Some("is not an IPv4 address")),
            ("bad_host:80", Some("is not a valid host name")),
            ("-bad.example:80", Some("is not a valid host name")),
            ("a..b:80", Some("is not a valid host name")),
            ("", Some("missing \":port\"")),
        ];
        for (address, expected) in cases {
            let result = check_address(address);
            match expected {
                None => assert_eq!(result, Ok(()), "{address:?}"),
                Some(fragment) => {
                    let message = result.expect_err(address);
                    assert!(message.contains(fragment), "{address:?}: {message}");
                }
            }
        }
        let long_host = format!("{}:80", vec!["a".repeat(60); 5].join("."));
        assert!(
            check_address(&long_host)
                .expect_err("too long")
                .contains("longer than 253")
        );
    }

    #[test]
    fn cluster_names_and_paths() {
        assert!(check_cluster_name("local").is_ok());
        assert!(check_cluster_name("prod.eu_2-b").is_ok());
        assert!(check_cluster_name("").is_err());
        assert!(check_cluster_name("my cluster").is_err());
        assert!(check_cluster_name(&"n".repeat(64)).is_err());
        assert!(check_path("data/region-a/node-11").is_ok());
        assert!(check_path("/var/lib/dsss").is_ok());
        assert!(check_path("").is_err());
        assert!(check_path("data/\0x").is_err());
        assert!(check_path(&"p".repeat(PATH_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn typos_get_a_suggestion_and_strangers_do_not() {
        let known = ["epoch_ms", "suspicion_timeout_ms", "name"];
        assert_eq!(suggest_key("epoch_msec", &known), Some("epoch_ms"));
        assert_eq!(suggest_key("epoc_ms", &known), Some("epoch_ms"));
        assert_eq!(
            suggest_key("suspicion_timout_ms", &known),
            Some("suspicion_timeout_ms")
        );
        assert_eq!(suggest_key("nmae", &known), Some("name"));
        assert_eq!(suggest_key("colour", &known), None);
        assert_eq!(suggest_key(&"x".repeat(10_000), &known), None);
    }
}
