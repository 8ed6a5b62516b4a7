//! DSSS topology files: the model of one deployment, its parsing and validation, and the
//! latency matrix between regions (docs/design.md section 5).
//!
//! One TOML file describes a deployment for SREs and for simulations alike: `dsss up` starts a
//! local multi-region cluster from it, the simulator takes its latency matrix, and production
//! nodes take their addresses, data directories and TLS material from it.
//!
//! # The file format
//!
//! ```toml
//! [cluster]
//! name = "local"                # 1..=63 characters of letters, digits, '-', '_' and '.'
//! epoch_ms = 10                 # global epoch length, integer 1..=10000
//! suspicion_timeout_ms = 2000   # a region silent this long leaves the watermark;
//!                               # integer, >= 2 * epoch_ms, <= 600000
//! max_clock_skew_ms = 250       # HLC: received timestamps further ahead are refused;
//!                               # integer 1..=60000
//! intra_region_delay_ms = 0.2   # one-way delay between nodes of one region; 0..=1000
//! intra_region_jitter_ms = 0.05 # optional, default 0; <= intra_region_delay_ms
//! region_log_quota_mb = 1024    # optional, default 1024; integer 1..=65536: the most MiB a
//!                               # region's log may hold above its truncation point before
//!                               # the region refuses new records
//! region_log_release_share_percent = 75
//!                               # optional, default 75; integer 0..=100: past this share of
//!                               # the quota the region releases records that no checkpoint
//!                               # covers (0: never, the quota refuses writes instead)
//! region_log_release_age_s = 604800
//!                               # optional, default 604800 (7 days); 0..=31536000: records
//!                               # older than this that no checkpoint covers are released
//!                               # (0: never)
//!
//! [tls]                         # optional; without it nodes start only with --insecure
//! ca_cert = "certs/ca.crt"      # required in [tls]: the CA every certificate is checked with
//! cert_dir = "certs"            # required in [tls]: node N uses cert_dir/node-N.crt and
//!                               # cert_dir/node-N.key; operators' commands admin.crt/.key
//! client_cert = "app.crt"       # optional, with client_key: what applications present
//! client_key = "app.key"        # (default cert_dir/client.crt and cert_dir/client.key)
//!
//! [coordinator]
//! replicas = [11, 21, 31]       # nodes that also host a coordinator replica; odd count 1..=9
//! preferred_leader = 11         # one of the replicas
//! retained_epochs = 65536       # optional, default 65536; integer 16..=65536: sealed epochs
//!                               # the coordinator keeps for regions that have not
//!                               # acknowledged them
//!
//! [[regions]]
//! id = "region-a"               # 1..=63 characters of a-z, 0-9 and '-', not starting or
//!                               # ending with '-'
//! nodes = [                     # an odd number of nodes, 1..=9
//!   { id = 11, address = "127.0.0.1:7111", data_dir = "data/region-a/node-11" },
//!   { id = 12, address = "127.0.0.1:7112", data_dir = "data/region-a/node-12" },
//!   { id = 13, address = "127.0.0.1:7113", data_dir = "data/region-a/node-13" },
//! ]                             # a node may add listen = "0.0.0.0:7113": the host:port it
//!                               # binds, when peers and clients reach it at `address`
//!                               # through NAT or a container's service; and
//!                               # metrics_listen = "0.0.0.0:9100": where it serves plain
//!                               # HTTP for monitoring (/metrics, /healthz, /readyz)
//!
//! [[latency]]                   # one entry per unordered pair of distinct regions
//! between = ["region-a", "region-b"]
//! one_way_ms = 20.0             # 0..=5000
//! jitter_ms = 2.0               # optional, default 0; 0..=one_way_ms: a message takes
//!                               # one_way_ms +- jitter_ms
//!
//! [[grants]]                    # optional, at most 1024, needs [tls]; without any, every
//!                               # client may do everything a client may; with some, a client
//!                               # may do only what its grants say
//! client = "app"                # the name its certificate gives it (dsss://client/app)
//! objects = ["bank/", "board/"] # 1..=64 object-name prefixes; "" is every object
//! rights = ["call", "read"]     # call (sessions, calls), read (subscribe, fetch checkpoints,
//!                               # sync), upload (checkpoints)
//!
//! [[tokens]]                    # optional, at most 1024, needs [tls]: bearer tokens for
//!                               # clients behind a gateway that ends their TLS
//! client = "app"                # the client a call carrying the token is made as
//! sha256 = "b46d...d182"        # the SHA-256 of the token, 64 hex digits (dsss certs token)
//!
//! [limits]                      # optional; every key optional, defaults shown
//! connections_per_address = 512 # 1..=65536 open connections from one IP address
//! handshakes_in_flight = 256    # 1..=65536 TLS handshakes at once
//! handshake_timeout_ms = 10000  # 100..=3600000
//! keepalive_interval_ms = 10000 # 100..=3600000: HTTP/2 pings; a connection whose ping goes
//! keepalive_timeout_ms = 20000  # unanswered for keepalive_timeout_ms is closed
//! connection_idle_timeout_s = 600
//!                               # 1..=604800: a connection with no request is closed
//! streams_per_connection = 1024 # 1..=65536 requests in flight on one connection
//! request_mb_per_connection = 64
//! request_mb_per_caller = 128   # 33..=1048576 MiB of requests in flight per connection, per
//! request_mb_per_server = 512   # caller (identity, or address over plaintext), per node
//! ```
//!
//! Rules beyond the comments above:
//! - There are 1..=64 regions; region ids are unique.
//! - Node ids are integers >= 1, unique across the whole cluster. Addresses are `host:port`
//!   with an IPv4 literal, an IPv6 literal in brackets (`[::1]:7000`) or a host name, and a
//!   port 1..=65535; they are unique (host names compared without case); `listen` and
//!   `metrics_listen` addresses follow the same form and may repeat (`0.0.0.0:7000` on every
//!   host). Data directories are
//!   non-empty and unique (`data/a`, `./data/a` and `data/a/` are the same directory).
//! - Relative paths (`data_dir`, `ca_cert`, `cert_dir`) resolve against the working directory
//!   of the process that uses them, not against the directory of the topology file.
//! - Every coordinator replica is a node of some region, listed once.
//! - The latency matrix has exactly one entry for every unordered pair of distinct regions.
//!   DSSS models one-way delays as symmetric, so `["a", "b"]` also gives the delay from `b` to
//!   `a`; a pair given twice is an error, and two entries for one pair that disagree are
//!   reported as an asymmetric matrix. The delay within a region is `intra_region_delay_ms`,
//!   never a `[[latency]]` entry. With a single region, `[[latency]]` is left out.
//! - Millisecond values accept integers or floats and are kept as whole microseconds, rounded
//!   to the nearest one. NaN and infinities are refused.
//! - Unknown keys anywhere are errors, so that a misspelt key is never silently ignored.
//! - A file is at most [`TOPOLOGY_FILE_BYTES_MAX`] bytes of UTF-8.
//!
//! # Errors
//!
//! [`parse`] and [`load`] report every problem at once, each as
//! `file:line:column: field path: message`, for example
//! `bad.toml:14:11: regions[1].nodes[2].address: "127.0.0.1:99999" is not a valid host:port
//! (port out of range)`. Indices in field paths count from 0; lines and columns from 1.
//! Malformed or hostile input yields diagnostics, never a panic.
//!
//! ```
//! let text = dsss_topology::LOCAL_TOPOLOGY_TOML.replace("epoch_ms = 10", "epoch_ms = 0");
//! let diagnostics = dsss_topology::parse("local.toml", &text).unwrap_err();
//! let first = diagnostics.iter().next().unwrap();
//! assert_eq!(first.field_path, "cluster.epoch_ms");
//! assert!(first.message.contains("out of range"));
//!
//! let topology = dsss_topology::local_default();
//! let a = topology.region_index("local-a").unwrap();
//! let c = topology.region_index("local-c").unwrap();
//! assert!(topology.latency.link(a, c).one_way_us > 0);
//! assert_eq!(topology.region_of(21).unwrap().id, "local-b");
//! ```
#![deny(missing_docs)]

mod diagnostics;
mod model;
mod parse;
mod report;
mod rules;

use std::fs::File;
use std::io::Read;
use std::path::Path;

pub use diagnostics::{DIAGNOSTICS_MAX, Diagnostic, Diagnostics, Location};
pub use model::{
    ClientToken, ClusterSettings, CoordinatorSettings, Grant, GrantRight, LatencyMatrix,
    LimitsSettings, Link, NodeSettings, Region, TlsSettings, Topology,
};
pub use report::{d_max_line, render_report};
pub use rules::{
    CLUSTER_NAME_CHARS_MAX, GRANT_CLIENT_CHARS_MAX, GRANT_OBJECT_PREFIX_BYTES_MAX,
    GRANT_OBJECTS_MAX, GRANTS_MAX, HOST_NAME_BYTES_MAX, PATH_BYTES_MAX, REGION_ID_CHARS_MAX,
    TOKENS_MAX, check_client_name, parse_sha256_hex,
};

/// Largest topology file [`load`] reads, in bytes (1 MiB). A deployment description is a few
/// kilobytes; anything near this size is a mistake or an attack.
pub const TOPOLOGY_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// The most a `[limits]` count may be (connections per address, handshakes, streams).
pub const LIMITS_COUNT_MAX: u64 = 65_536;

/// The least a `[limits]` byte bound may be, in MiB: one request of the largest size gRPC
/// carries (32 MiB) with its framing.
pub const LIMITS_REQUEST_MB_MIN: u64 = 33;

/// The most a `[limits]` byte bound may be, in MiB.
pub const LIMITS_REQUEST_MB_MAX: u64 = 1_048_576;

/// The least a `[limits]` timeout or interval given in milliseconds may be.
pub const LIMITS_MS_MIN: u64 = 100;

/// The most a `[limits]` timeout or interval given in milliseconds may be (an hour).
pub const LIMITS_MS_MAX: u64 = 3_600_000;

/// The most a connection's idle timeout may be, in seconds (a week).
pub const LIMITS_IDLE_S_MAX: u64 = 7 * 24 * 3_600;

/// Most regions a topology may have.
pub const REGIONS_MAX: usize = 64;

/// Most nodes a region may have (an odd count from 1 up to this).
pub const REGION_NODES_MAX: usize = 9;

/// Most coordinator replicas (an odd count from 1 up to this).
pub const COORDINATOR_REPLICAS_MAX: usize = 9;

/// Longest global epoch, in milliseconds.
pub const EPOCH_MS_MAX: u64 = 10_000;

/// Largest region log quota, in MiB (64 GiB); the region node's own bound.
pub const REGION_LOG_QUOTA_MB_MAX: u64 = 65_536;

/// The region log quota when the file sets none, in MiB.
pub const REGION_LOG_QUOTA_MB_DEFAULT: u64 = 1_024;

/// The share of the quota past which a region releases records no checkpoint covers, in
/// percent, when the file sets none.
pub const REGION_LOG_RELEASE_SHARE_PERCENT_DEFAULT: u64 = 75;

/// The log age past which a region releases records no checkpoint covers, in seconds, when the
/// file sets none: seven days.
pub const REGION_LOG_RELEASE_AGE_S_DEFAULT: u64 = 7 * 24 * 3_600;

/// The largest release age, in seconds: a year.
pub const REGION_LOG_RELEASE_AGE_S_MAX: u64 = 365 * 24 * 3_600;

/// The most sealed epochs the coordinator may retain (its own bound,
/// `RETAINED_EPOCHS_MAX`), and the default.
pub const COORDINATOR_RETAINED_EPOCHS_MAX: u64 = 65_536;

/// The fewest sealed epochs a topology may have the coordinator retain.
pub const COORDINATOR_RETAINED_EPOCHS_MIN: u64 = 16;

/// Longest suspicion timeout, in milliseconds.
pub const SUSPICION_TIMEOUT_MS_MAX: u64 = 600_000;

/// Largest tolerated clock skew, in milliseconds.
pub const CLOCK_SKEW_MS_MAX: u64 = 60_000;

/// Largest one-way delay (and jitter) within a region, in milliseconds.
pub const INTRA_REGION_DELAY_MS_MAX: f64 = 1_000.0;

/// Largest one-way delay (and jitter) between two regions, in milliseconds.
pub const INTER_REGION_DELAY_MS_MAX: f64 = 5_000.0;

/// The embedded default topology: three regions of three nodes on 127.0.0.1, with delays of a
/// few tens of milliseconds between regions so that a local cluster behaves like a WAN. It is
/// the text of `examples/local.toml`.
pub const LOCAL_TOPOLOGY_TOML: &str = include_str!("../examples/local.toml");

/// Parses and validates a topology. `source_name` names the text in diagnostics (usually the
/// file name).
///
/// # Errors
///
/// Every problem found, each with its position and field path.
pub fn parse(source_name: &str, text: &str) -> Result<Topology, Diagnostics> {
    parse::parse_text(source_name, text)
}

/// Reads, parses and validates a topology file. Files larger than
/// [`TOPOLOGY_FILE_BYTES_MAX`] are refused without being read whole.
///
/// # Errors
///
/// An unreadable, oversized or non-UTF-8 file is one diagnostic; otherwise every problem
/// found, as with [`parse`].
pub fn load(path: &Path) -> Result<Topology, Diagnostics> {
    let source_name = path.display().to_string();
    let text = read_text(path).map_err(|(location, message)| {
        let mut collector = diagnostics::DiagnosticsCollector::new(&source_name);
        collector.report(location, "file", message);
        collector.finish()
    })?;
    parse(&source_name, &text)
}

/// The embedded local topology ([`LOCAL_TOPOLOGY_TOML`]), parsed.
pub fn local_default() -> Topology {
    match parse("local.toml", LOCAL_TOPOLOGY_TOML) {
        Ok(topology) => topology,
        // The embedded file is checked by this crate's tests, so this cannot happen in a
        // released build; if it does, the diagnostics say exactly what to fix.
        Err(diagnostics) => panic!("the embedded local topology is invalid:\n{diagnostics}"),
    }
}

/// Reads a file of at most [`TOPOLOGY_FILE_BYTES_MAX`] bytes as UTF-8. On failure, returns
/// where (for bad UTF-8) and what went wrong.
fn read_text(path: &Path) -> Result<String, (Option<Location>, String)> {
    let file = File::open(path).map_err(|error| (None, format!("cannot open: {error}")))?;
    let mut bytes = Vec::new();
    // Reading one byte past the limit tells an oversized file from one exactly at the limit,
    // without trusting the size reported by metadata (pipes and special files have none).
    file.take(TOPOLOGY_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| (None, format!("cannot read: {error}")))?;
    if bytes.len() as u64 > TOPOLOGY_FILE_BYTES_MAX {
        return Err((
            None,
            format!(
                "the file is larger than {TOPOLOGY_FILE_BYTES_MAX} bytes; a topology file is at \
                 most 1 MiB"
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|error| {
        let valid_up_to = error.utf8_error().valid_up_to();
        let valid_prefix = std::str::from_utf8(&error.as_bytes()[..valid_up_to]).unwrap_or("");
        let location = diagnostics::SourceMap::new(valid_prefix).location(valid_up_to);
        (
            Some(location),
            format!("the file is not valid UTF-8 (invalid byte at offset {valid_up_to})"),
        )
    })
}
