//! Reading a topology from TOML text: the document is parsed into span-carrying values, and
//! every field is extracted by hand so that each problem becomes its own diagnostic instead of
//! the first type error ending the check.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use crate::diagnostics::{Diagnostics, DiagnosticsCollector, Location, SourceMap};
use crate::model::{
    ClientToken, ClusterSettings, CoordinatorSettings, Grant, GrantRight, LatencyMatrix,
    LimitsSettings, Link, NodeSettings, Region, TlsSettings, Topology, normalized_path,
};
use crate::rules;
use crate::{
    CLOCK_SKEW_MS_MAX, COORDINATOR_REPLICAS_MAX, COORDINATOR_RETAINED_EPOCHS_MAX,
    COORDINATOR_RETAINED_EPOCHS_MIN, EPOCH_MS_MAX, GRANT_OBJECT_PREFIX_BYTES_MAX,
    GRANT_OBJECTS_MAX, GRANTS_MAX, INTER_REGION_DELAY_MS_MAX, INTRA_REGION_DELAY_MS_MAX,
    LIMITS_COUNT_MAX, LIMITS_IDLE_S_MAX, LIMITS_MS_MAX, LIMITS_MS_MIN, LIMITS_REQUEST_MB_MAX,
    LIMITS_REQUEST_MB_MIN, REGION_LOG_QUOTA_MB_DEFAULT, REGION_LOG_QUOTA_MB_MAX,
    REGION_LOG_RELEASE_AGE_S_DEFAULT, REGION_LOG_RELEASE_AGE_S_MAX,
    REGION_LOG_RELEASE_SHARE_PERCENT_DEFAULT, REGION_NODES_MAX, REGIONS_MAX,
    SUSPICION_TIMEOUT_MS_MAX,
};

type Value<'i> = Spanned<DeValue<'i>>;

/// Longest excerpt of the file quoted in a message, in characters.
const SNIPPET_CHARS_MAX: usize = 60;

/// Microseconds per millisecond, for turning file values (ms) into model values (us).
const MICROSECONDS_PER_MILLISECOND: u64 = 1_000;

const ROOT_KEYS: &[&str] = &[
    "cluster",
    "tls",
    "coordinator",
    "regions",
    "latency",
    "grants",
    "limits",
    "tokens",
];
const TOKEN_KEYS: &[&str] = &["client", "sha256"];
/// The keys of `[limits]`.
const LIMITS_KEYS: &[&str] = &[
    "connections_per_address",
    "handshakes_in_flight",
    "handshake_timeout_ms",
    "keepalive_interval_ms",
    "keepalive_timeout_ms",
    "connection_idle_timeout_s",
    "streams_per_connection",
    "request_mb_per_connection",
    "request_mb_per_caller",
    "request_mb_per_server",
];
const GRANT_KEYS: &[&str] = &["client", "objects", "rights"];
const CLUSTER_KEYS: &[&str] = &[
    "name",
    "epoch_ms",
    "suspicion_timeout_ms",
    "max_clock_skew_ms",
    "intra_region_delay_ms",
    "intra_region_jitter_ms",
    "region_log_quota_mb",
    "region_log_release_share_percent",
    "region_log_release_age_s",
];
const TLS_KEYS: &[&str] = &["ca_cert", "cert_dir", "client_cert", "client_key"];
const COORDINATOR_KEYS: &[&str] = &["replicas", "preferred_leader", "retained_epochs"];
const REGION_KEYS: &[&str] = &["id", "nodes"];
const NODE_KEYS: &[&str] = &["id", "address", "listen", "metrics_listen", "data_dir"];
const LATENCY_KEYS: &[&str] = &["between", "one_way_ms", "jitter_ms"];

/// Parses and validates topology text; see the crate documentation for the rules.
pub(crate) fn parse_text(source_name: &str, text: &str) -> Result<Topology, Diagnostics> {
    let source_map = SourceMap::new(text);
    let mut diagnostics = DiagnosticsCollector::new(source_name);
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(error) => {
            let location = error.span().map(|span| source_map.location(span.start));
            diagnostics.report(location, "syntax", error.message().to_owned());
            return Err(diagnostics.finish());
        }
    };
    let mut reader = Reader {
        source_map,
        diagnostics,
    };
    let topology = reader.topology(root.get_ref(), root.span());
    match topology {
        Some(topology) if reader.diagnostics.is_empty() => Ok(topology),
        _ => {
            if reader.diagnostics.is_empty() {
                // Every path that yields no value reports why; this guards against an empty
                // error should one ever be missed.
                reader.diagnostics.report(
                    None,
                    "file",
                    "the topology is incomplete, but no single field was found at fault",
                );
            }
            Err(reader.diagnostics.finish())
        }
    }
}

/// A table being read: its entries, where it is, and its field path.
struct Fields<'v, 'i> {
    table: &'v DeTable<'i>,
    span: Range<usize>,
    path: String,
}

impl<'v, 'i> Fields<'v, 'i> {
    fn get(&self, key: &str) -> Option<&'v Value<'i>> {
        self.table.get(key)
    }

    fn path_of(&self, key: &str) -> String {
        join_key(&self.path, key)
    }
}

/// The `[coordinator]` values as read, with positions for the checks that need the nodes.
struct CoordinatorDraft {
    /// The replica ids that could be read, each once; `None` when the list itself is missing
    /// or is not an array.
    replicas: Option<Vec<(u64, Range<usize>)>>,
    /// True when every element of the list is a node id, so that the list can be compared
    /// with the preferred leader even if its size is wrong.
    replicas_all_read: bool,
    /// False when the replica list has a problem already reported.
    replicas_valid: bool,
    preferred_leader: Option<(u64, Range<usize>)>,
    /// The retention bound as read (the default when absent); `None` when it was invalid.
    retained_epochs: Option<u64>,
}

/// The regions as read. Checks that need every id (replica placement, matrix completeness)
/// run only when those ids are all known, so that one problem is not reported again as its
/// consequences.
struct RegionsDraft {
    regions: Vec<Option<Region>>,
    /// Each region's id when it is a string seen for the first time (valid or not).
    ids: Vec<Option<String>>,
    /// Position of each region's id value, or of the region itself when the id is absent.
    id_spans: Vec<Range<usize>>,
    /// Region id to its index in `regions`, for every id in `ids`.
    index_by_id: HashMap<String, usize>,
    /// Every node id read, with the node that uses it.
    node_ids: HashMap<u64, FirstUse>,
    /// Every address read (lowercase, since host names ignore case), with its node.
    addresses: HashMap<String, FirstUse>,
    /// Every data directory read (normalized), with its node.
    data_dirs: HashMap<PathBuf, FirstUse>,
    /// False when some node id could not be read.
    node_ids_complete: bool,
}

impl RegionsDraft {
    /// True when every region has its own id, so that pairs of regions can be enumerated.
    fn ids_complete(&self) -> bool {
        self.ids.iter().all(Option::is_some)
    }
}

/// Where a value that must be unique was first used: the owner's field path and the
/// value's position.
type FirstUse = (String, Range<usize>);

/// One `[[latency]]` entry as read.
struct LatencyEntry {
    path: String,
    span: Range<usize>,
    region_a_index: usize,
    region_b_index: usize,
    link: Option<Link>,
}

struct Reader<'a> {
    source_map: SourceMap<'a>,
    diagnostics: DiagnosticsCollector,
}

impl Reader<'_> {
    // ---- Sections ---------------------------------------------------------------------------

    fn topology(&mut self, root: &DeTable<'_>, root_span: Range<usize>) -> Option<Topology> {
        let root = Fields {
            table: root,
            span: root_span,
            path: String::new(),
        };
        self.check_keys(&root, ROOT_KEYS);
        let cluster = self
            .required(&root, "cluster")
            .and_then(|value| self.cluster(value, "cluster"));
        // Absent is fine (`Some(None)`); present but broken is `None`, already reported.
        let tls = match root.get("tls") {
            None => Some(None),
            Some(value) => self.tls(value, "tls").map(Some),
        };
        let coordinator = self
            .required(&root, "coordinator")
            .and_then(|value| self.coordinator(value, "coordinator"));
        let regions = self
            .required(&root, "regions")
            .and_then(|value| self.regions(value, "regions"));
        let latency_entries = self.latency_entries(root.get("latency"), regions.as_ref());
        let grants = match root.get("grants") {
            None => Some(Vec::new()),
            Some(value) => self.grants(value, "grants", root.get("tls").is_some()),
        };
        let tokens = match root.get("tokens") {
            None => Some(Vec::new()),
            Some(value) => self.tokens(value, "tokens", root.get("tls").is_some()),
        };
        let limits = match root.get("limits") {
            None => Some(LimitsSettings::default()),
            Some(value) => self.limits(value, "limits"),
        };

        let coordinator =
            coordinator.and_then(|draft| self.check_coordinator(draft, regions.as_ref()));
        let regions = regions?;
        let latency = latency_entries.and_then(|(entries, all_resolved)| {
            self.latency_matrix(cluster.as_ref(), &regions, entries, all_resolved)
        });
        let regions: Vec<Region> = regions.regions.into_iter().collect::<Option<_>>()?;
        Some(Topology {
            cluster: cluster?,
            tls: tls?,
            coordinator: coordinator?,
            regions,
            latency: latency?,
            grants: grants?,
            limits: limits?,
            tokens: tokens?,
        })
    }

    fn tokens(&mut self, value: &Value<'_>, path: &str, has_tls: bool) -> Option<Vec<ClientToken>> {
        let array = self.array(value, path, "an array of tables ([[tokens]])")?;
        if !has_tls {
            self.report(
                value.span(),
                path,
                "tokens stand for clients behind a gateway that reaches the nodes over mutual \
                 TLS: they need a [tls] table",
            );
            return None;
        }
        if array.len() > rules::TOKENS_MAX {
            self.report(
                value.span(),
                path,
                format!("{} tokens; at most {}", array.len(), rules::TOKENS_MAX),
            );
            return None;
        }
        let mut tokens: Vec<ClientToken> = Vec::new();
        let mut all_read = true;
        for (index, token_value) in array.iter().enumerate() {
            let token_path = format!("{path}[{index}]");
            let Some(fields) =
                self.fields(token_value, &token_path, TOKEN_KEYS, "a table ([[tokens]])")
            else {
                all_read = false;
                continue;
            };
            let client = self.client_name(&fields);
            let sha256 = self.required(&fields, "sha256").and_then(|value| {
                let text = self.string(value, &fields.path_of("sha256"))?;
                let digest = self.check_rule(
                    value,
                    &fields.path_of("sha256"),
                    rules::parse_sha256_hex(text),
                )?;
                if let Some(first) = tokens.iter().position(|token| token.sha256 == digest) {
                    self.report(
                        value.span(),
                        &fields.path_of("sha256"),
                        format!("the same token as {path}[{first}]; a token stands for one client"),
                    );
                    return None;
                }
                Some(digest)
            });
            match (client, sha256) {
                (Some(client), Some(sha256)) => tokens.push(ClientToken { client, sha256 }),
                _ => all_read = false,
            }
        }
        all_read.then_some(tokens)
    }

    fn limits(&mut self, value: &Value<'_>, path: &str) -> Option<LimitsSettings> {
        let fields = self.fields(value, path, LIMITS_KEYS, "a table ([limits])")?;
        let mut all_read = true;
        // (key, least, most, unit, factor to the model's unit)
        let mut read =
            |reader: &mut Self, key: &str, least: u64, most: u64, unit: &str, factor: u64| {
                let value = fields.get(key)?;
                let read = reader.integer(value, &fields.path_of(key), least, most, unit);
                if read.is_none() {
                    all_read = false;
                }
                read.map(|value| value * factor)
            };
        const MIB: u64 = 1024 * 1024;
        let limits = LimitsSettings {
            connections_per_address: read(
                self,
                "connections_per_address",
                1,
                LIMITS_COUNT_MAX,
                "",
                1,
            ),
            handshakes_in_flight: read(self, "handshakes_in_flight", 1, LIMITS_COUNT_MAX, "", 1),
            handshake_timeout_us: read(
                self,
                "handshake_timeout_ms",
                LIMITS_MS_MIN,
                LIMITS_MS_MAX,
                "ms",
                MICROSECONDS_PER_MILLISECOND,
            ),
            keepalive_interval_us: read(
                self,
                "keepalive_interval_ms",
                LIMITS_MS_MIN,
                LIMITS_MS_MAX,
                "ms",
                MICROSECONDS_PER_MILLISECOND,
            ),
            keepalive_timeout_us: read(
                self,
                "keepalive_timeout_ms",
                LIMITS_MS_MIN,
                LIMITS_MS_MAX,
                "ms",
                MICROSECONDS_PER_MILLISECOND,
            ),
            connection_idle_timeout_us: read(
                self,
                "connection_idle_timeout_s",
                1,
                LIMITS_IDLE_S_MAX,
                "seconds",
                1_000_000,
            ),
            streams_per_connection: read(
                self,
                "streams_per_connection",
                1,
                LIMITS_COUNT_MAX,
                "",
                1,
            ),
            request_bytes_per_connection: read(
                self,
                "request_mb_per_connection",
                LIMITS_REQUEST_MB_MIN,
                LIMITS_REQUEST_MB_MAX,
                "MiB",
                MIB,
            ),
            request_bytes_per_caller: read(
                self,
                "request_mb_per_caller",
                LIMITS_REQUEST_MB_MIN,
                LIMITS_REQUEST_MB_MAX,
                "MiB",
                MIB,
            ),
            request_bytes_per_server: read(
                self,
                "request_mb_per_server",
                LIMITS_REQUEST_MB_MIN,
                LIMITS_REQUEST_MB_MAX,
                "MiB",
                MIB,
            ),
        };
        all_read.then_some(limits)
    }

    fn grants(&mut self, value: &Value<'_>, path: &str, has_tls: bool) -> Option<Vec<Grant>> {
        let array = self.array(value, path, "an array of tables ([[grants]])")?;
        if !has_tls {
            self.report(
                value.span(),
                path,
                "grants name clients by the identity in their certificates: they need a [tls] \
                 table (over plaintext nobody is identified)",
            );
            return None;
        }
        if array.len() > GRANTS_MAX {
            self.report(
                value.span(),
                path,
                format!("{} grants; at most {GRANTS_MAX}", array.len()),
            );
            return None;
        }
        let mut grants = Vec::new();
        let mut all_read = true;
        for (index, grant_value) in array.iter().enumerate() {
            match self.grant(grant_value, &format!("{path}[{index}]")) {
                Some(grant) => grants.push(grant),
                None => all_read = false,
            }
        }
        all_read.then_some(grants)
    }

    /// The required `client` of a grant or a token: a client name as certificates carry it.
    fn client_name(&mut self, fields: &Fields<'_, '_>) -> Option<String> {
        let value = self.required(fields, "client")?;
        let client = self.string(value, &fields.path_of("client"))?;
        self.check_rule(
            value,
            &fields.path_of("client"),
            rules::check_client_name(client),
        )?;
        Some(client.to_owned())
    }

    fn grant(&mut self, value: &Value<'_>, path: &str) -> Option<Grant> {
        let fields = self.fields(value, path, GRANT_KEYS, "a table ([[grants]])")?;
        let client = self.client_name(&fields);
        let objects = self.required(&fields, "objects").and_then(|value| {
            let objects_path = fields.path_of("objects");
            let array = self.array(value, &objects_path, "an array of object-name prefixes")?;
            if array.is_empty() || array.len() > GRANT_OBJECTS_MAX {
                self.report(
                    value.span(),
                    &objects_path,
                    format!(
                        "{} prefixes; a grant names 1 to {GRANT_OBJECTS_MAX} (\"\" is every object)",
                        array.len()
                    ),
                );
                return None;
            }
            let mut prefixes = Vec::new();
            for (index, prefix_value) in array.iter().enumerate() {
                let prefix_path = format!("{objects_path}[{index}]");
                let prefix = self.string(prefix_value, &prefix_path)?;
                if prefix.len() > GRANT_OBJECT_PREFIX_BYTES_MAX {
                    self.report(
                        prefix_value.span(),
                        &prefix_path,
                        format!(
                            "{} bytes; an object prefix has at most \
                             {GRANT_OBJECT_PREFIX_BYTES_MAX}",
                            prefix.len()
                        ),
                    );
                    return None;
                }
                prefixes.push(prefix.to_owned());
            }
            Some(prefixes)
        });
        let rights = self.required(&fields, "rights").and_then(|value| {
            let rights_path = fields.path_of("rights");
            let array = self.array(value, &rights_path, "an array of rights")?;
            if array.is_empty() {
                self.report(
                    value.span(),
                    &rights_path,
                    format!(
                        "no rights; a grant gives some of: {}",
                        GrantRight::NAMES.join(", ")
                    ),
                );
                return None;
            }
            let mut rights = Vec::new();
            for (index, right_value) in array.iter().enumerate() {
                let right_path = format!("{rights_path}[{index}]");
                let name = self.string(right_value, &right_path)?;
                let Some(right) = GrantRight::from_name(name) else {
                    self.report(
                        right_value.span(),
                        &right_path,
                        format!(
                            "{name:?} is not a right (rights: {})",
                            GrantRight::NAMES.join(", ")
                        ),
                    );
                    return None;
                };
                if !rights.contains(&right) {
                    rights.push(right);
                }
            }
            rights.sort();
            Some(rights)
        });
        Some(Grant {
            client: client?,
            objects: objects?,
            rights: rights?,
        })
    }

    fn cluster(&mut self, value: &Value<'_>, path: &str) -> Option<ClusterSettings> {
        let fields = self.fields(value, path, CLUSTER_KEYS, "a table ([cluster])")?;
        let name = self.required(&fields, "name").and_then(|value| {
            let name = self.string(value, &fields.path_of("name"))?;
            self.check_rule(
                value,
                &fields.path_of("name"),
                rules::check_cluster_name(name),
            )?;
            Some(name.to_owned())
        });
        let epoch_ms = self.required(&fields, "epoch_ms").and_then(|value| {
            self.integer(value, &fields.path_of("epoch_ms"), 1, EPOCH_MS_MAX, "ms")
        });
        let suspicion_timeout_ms =
            self.required(&fields, "suspicion_timeout_ms")
                .and_then(|value| {
                    self.suspicion_timeout(value, &fields.path_of("suspicion_timeout_ms"), epoch_ms)
                });
        let max_clock_skew_ms = self
            .required(&fields, "max_clock_skew_ms")
            .and_then(|value| {
                let path = fields.path_of("max_clock_skew_ms");
                self.integer(value, &path, 1, CLOCK_SKEW_MS_MAX, "ms")
            });
        let intra_region_delay_us =
            self.required(&fields, "intra_region_delay_ms")
                .and_then(|value| {
                    let path = fields.path_of("intra_region_delay_ms");
                    self.milliseconds(value, &path, INTRA_REGION_DELAY_MS_MAX)
                });
        let intra_region_jitter_us = self.jitter(
            &fields,
            "intra_region_jitter_ms",
            INTRA_REGION_DELAY_MS_MAX,
            intra_region_delay_us.map(|delay_us| (delay_us, "intra_region_delay_ms")),
        );
        let region_log_quota_mb = match fields.get("region_log_quota_mb") {
            None => Some(REGION_LOG_QUOTA_MB_DEFAULT),
            Some(value) => self.integer(
                value,
                &fields.path_of("region_log_quota_mb"),
                1,
                REGION_LOG_QUOTA_MB_MAX,
                "MiB",
            ),
        };
        let region_log_release_share_percent = match fields.get("region_log_release_share_percent")
        {
            None => Some(REGION_LOG_RELEASE_SHARE_PERCENT_DEFAULT),
            Some(value) => self.integer(
                value,
                &fields.path_of("region_log_release_share_percent"),
                0,
                100,
                "percent",
            ),
        };
        let region_log_release_age_s = match fields.get("region_log_release_age_s") {
            None => Some(REGION_LOG_RELEASE_AGE_S_DEFAULT),
            Some(value) => self.integer(
                value,
                &fields.path_of("region_log_release_age_s"),
                0,
                REGION_LOG_RELEASE_AGE_S_MAX,
                "seconds",
            ),
        };
        Some(ClusterSettings {
            name: name?,
            epoch_us: epoch_ms? * MICROSECONDS_PER_MILLISECOND,
            suspicion_timeout_us: suspicion_timeout_ms? * MICROSECONDS_PER_MILLISECOND,
            max_clock_skew_us: max_clock_skew_ms? * MICROSECONDS_PER_MILLISECOND,
            intra_region_delay_us: intra_region_delay_us?,
            intra_region_jitter_us: intra_region_jitter_us?,
            region_log_quota_bytes: region_log_quota_mb? * 1024 * 1024,
            region_log_release_share_percent: u8::try_from(region_log_release_share_percent?)
                .expect("checked to be at most 100"),
            region_log_release_age_us: region_log_release_age_s? * 1_000_000,
        })
    }

    /// Reads the suspicion timeout, which must cover at least two epochs.
    fn suspicion_timeout(
        &mut self,
        value: &Value<'_>,
        path: &str,
        epoch_ms: Option<u64>,
    ) -> Option<u64> {
        let timeout_ms = self.integer(value, path, 1, SUSPICION_TIMEOUT_MS_MAX, "ms")?;
        if let Some(epoch_ms) = epoch_ms
            && timeout_ms < 2 * epoch_ms
        {
            let message = format!(
                "{timeout_ms} ms is too short: it must be at least twice epoch_ms \
                 (2 * {epoch_ms} = {} ms), or a region would be suspected between two of its \
                 own epoch ticks",
                2 * epoch_ms
            );
            self.report(value.span(), path, message);
            return None;
        }
        Some(timeout_ms)
    }

    /// Reads an optional jitter (0 when absent) in microseconds. It must not exceed the delay
    /// it varies, given with that delay's key name when the delay could be read.
    fn jitter(
        &mut self,
        fields: &Fields<'_, '_>,
        key: &str,
        maximum_ms: f64,
        delay: Option<(u64, &str)>,
    ) -> Option<u64> {
        let Some(value) = fields.get(key) else {
            return Some(0);
        };
        let path = fields.path_of(key);
        let jitter_us = self.milliseconds(value, &path, maximum_ms)?;
        match delay {
            Some((delay_us, delay_key)) if jitter_us > delay_us => {
                let message = format!(
                    "{} ms is larger than {delay_key} ({} ms); a delay minus its jitter must \
                     not be negative",
                    format_ms(jitter_us),
                    format_ms(delay_us)
                );
                self.report(value.span(), &path, message);
                None
            }
            _ => Some(jitter_us),
        }
    }

    fn tls(&mut self, value: &Value<'_>, path: &str) -> Option<TlsSettings> {
        let fields = self.fields(value, path, TLS_KEYS, "a table ([tls])")?;
        let ca_cert = self
            .required(&fields, "ca_cert")
            .and_then(|value| self.path(value, &fields.path_of("ca_cert")));
        let cert_dir = self
            .required(&fields, "cert_dir")
            .and_then(|value| self.path(value, &fields.path_of("cert_dir")));
        let client_cert = fields
            .get("client_cert")
            .map(|value| self.path(value, &fields.path_of("client_cert")));
        let client_key = fields
            .get("client_key")
            .map(|value| self.path(value, &fields.path_of("client_key")));
        // A client certificate without its key (or the reverse) cannot be used: name the
        // missing one. Neither given: the client's pair in cert_dir. (An inner `None` is a
        // path already reported invalid.)
        let client_pair = match (client_cert, client_key) {
            (Some(cert), Some(key)) => Some((cert?, key?)),
            (None, None) => None,
            (given_cert, _) => {
                let (missing, given) = if given_cert.is_some() {
                    ("client_key", "client_cert")
                } else {
                    ("client_cert", "client_key")
                };
                self.report(
                    fields.span.clone(),
                    &fields.path_of(missing),
                    format!("a required key is missing (it goes with {path}.{given})"),
                );
                return None;
            }
        };
        let cert_dir = cert_dir?;
        let (client_cert, client_key) = client_pair.unwrap_or_else(|| {
            (
                cert_dir.join(TlsSettings::CLIENT_CERT_FILE),
                cert_dir.join(TlsSettings::CLIENT_KEY_FILE),
            )
        });
        Some(TlsSettings {
            ca_cert: ca_cert?,
            cert_dir,
            client_cert,
            client_key,
        })
    }

    fn coordinator(&mut self, value: &Value<'_>, path: &str) -> Option<CoordinatorDraft> {
        let fields = self.fields(value, path, COORDINATOR_KEYS, "a table ([coordinator])")?;
        let mut replicas_valid = true;
        let mut replicas_all_read = true;
        let replicas = self.required(&fields, "replicas").and_then(|value| {
            let path = fields.path_of("replicas");
            let array = self.array(value, &path, "an array of node ids")?;
            let count = array.len();
            if count == 0 || count > COORDINATOR_REPLICAS_MAX || count.is_multiple_of(2) {
                self.report(
                    value.span(),
                    &path,
                    format!(
                        "{count} replicas given; the coordinator needs an odd number of replicas \
                         from 1 to {COORDINATOR_REPLICAS_MAX} (an even-sized raft group \
                         tolerates no more failures than one replica fewer)"
                    ),
                );
                replicas_valid = false;
            }
            let mut replicas = Vec::new();
            let mut seen: HashMap<u64, usize> = HashMap::new();
            for (index, element) in array.iter().enumerate() {
                let element_path = format!("{path}[{index}]");
                let Some(node_id) = self.integer(element, &element_path, 1, u64::MAX, "") else {
                    replicas_valid = false;
                    replicas_all_read = false;
                    continue;
                };
                if let Some(first_index) = seen.insert(node_id, index) {
                    self.report(
                        element.span(),
                        &element_path,
                        format!("node {node_id} is listed twice (also at {path}[{first_index}])"),
                    );
                    replicas_valid = false;
                    continue;
                }
                replicas.push((node_id, element.span()));
            }
            Some(replicas)
        });
        if replicas.is_none() {
            replicas_valid = false;
            replicas_all_read = false;
        }
        let preferred_leader = self
            .required(&fields, "preferred_leader")
            .and_then(|value| {
                let node_id =
                    self.integer(value, &fields.path_of("preferred_leader"), 1, u64::MAX, "")?;
                Some((node_id, value.span()))
            });
        let retained_epochs = match fields.get("retained_epochs") {
            None => Some(COORDINATOR_RETAINED_EPOCHS_MAX),
            Some(value) => self.integer(
                value,
                &fields.path_of("retained_epochs"),
                COORDINATOR_RETAINED_EPOCHS_MIN,
                COORDINATOR_RETAINED_EPOCHS_MAX,
                "epochs",
            ),
        };
        Some(CoordinatorDraft {
            replicas,
            replicas_all_read,
            replicas_valid,
            preferred_leader,
            retained_epochs,
        })
    }

    fn regions(&mut self, value: &Value<'_>, path: &str) -> Option<RegionsDraft> {
        let array = self.array(value, path, "an array of tables ([[regions]])")?;
        if array.is_empty() {
            self.report(value.span(), path, "at least one region is required");
        } else if array.len() > REGIONS_MAX {
            self.report(
                value.span(),
                path,
                format!(
                    "{} regions given; at most {REGIONS_MAX} are allowed",
                    array.len()
                ),
            );
        }
        let mut draft = RegionsDraft {
            regions: Vec::new(),
            ids: Vec::new(),
            id_spans: Vec::new(),
            index_by_id: HashMap::new(),
            node_ids: HashMap::new(),
            addresses: HashMap::new(),
            data_dirs: HashMap::new(),
            // With no region at all, every node lookup would fail for that one reason, which is
            // reported once here instead.
            node_ids_complete: !array.is_empty(),
        };
        for (region_index, region_value) in array.iter().enumerate() {
            let region_path = format!("{path}[{region_index}]");
            let region = self.region(region_value, &region_path, region_index, &mut draft);
            draft.regions.push(region);
        }
        Some(draft)
    }

    fn region(
        &mut self,
        value: &Value<'_>,
        path: &str,
        region_index: usize,
        draft: &mut RegionsDraft,
    ) -> Option<Region> {
        let Some(fields) = self.fields(value, path, REGION_KEYS, "a table") else {
            draft.ids.push(None);
            draft.id_spans.push(value.span());
            draft.node_ids_complete = false;
            return None;
        };
        let id_value = self.required(&fields, "id");
        draft
            .id_spans
            .push(id_value.map_or(fields.span.clone(), |value| value.span()));
        let id = match id_value {
            Some(value) => self.region_id(value, &fields, region_index, draft),
            None => {
                draft.ids.push(None);
                None
            }
        };
        let nodes = self.required(&fields, "nodes").and_then(|value| {
            let nodes_path = fields.path_of("nodes");
            let array = self.array(value, &nodes_path, "an array of node tables")?;
            let count = array.len();
            if count == 0 || count > REGION_NODES_MAX || count.is_multiple_of(2) {
                self.report(
                    value.span(),
                    &nodes_path,
                    format!(
                        "{count} nodes given; a region needs an odd number of nodes from 1 to \
                         {REGION_NODES_MAX} (an even-sized raft group tolerates no more \
                         failures than one node fewer)"
                    ),
                );
            }
            let mut nodes = Vec::new();
            let mut all_read = true;
            for (node_index, node_value) in array.iter().enumerate() {
                let node_path = format!("{nodes_path}[{node_index}]");
                match self.node(node_value, &node_path, draft) {
                    Some(node) => nodes.push(node),
                    None => all_read = false,
                }
            }
            let size_valid = count % 2 == 1 && count <= REGION_NODES_MAX;
            (all_read && size_valid).then_some(nodes)
        });
        if fields
            .get("nodes")
            .is_none_or(|value| !value.get_ref().is_array())
        {
            draft.node_ids_complete = false;
        }
        Some(Region {
            id: id?,
            nodes: nodes?,
        })
    }

    /// Reads a region's id and records it, reporting a repeated one. Returns the id only when
    /// it is valid and new.
    fn region_id(
        &mut self,
        value: &Value<'_>,
        fields: &Fields<'_, '_>,
        region_index: usize,
        draft: &mut RegionsDraft,
    ) -> Option<String> {
        let id_path = fields.path_of("id");
        let Some(id) = self.string(value, &id_path) else {
            draft.ids.push(None);
            return None;
        };
        let valid = self
            .check_rule(value, &id_path, rules::check_region_id(id))
            .is_some();
        match draft.index_by_id.entry(id.to_owned()) {
            Entry::Occupied(first) => {
                let first_index = *first.get();
                let first_line = self.line_of(draft.id_spans[first_index].start);
                self.report(
                    value.span(),
                    &id_path,
                    format!(
                        "region id {id:?} is already used by {}[{first_index}] (line {first_line})",
                        path_parent(&fields.path)
                    ),
                );
                draft.ids.push(None);
                None
            }
            Entry::Vacant(slot) => {
                slot.insert(region_index);
                draft.ids.push(Some(id.to_owned()));
                valid.then(|| id.to_owned())
            }
        }
    }

    /// Reads one node; its id, address and data directory must each be unique in the cluster.
    fn node(
        &mut self,
        value: &Value<'_>,
        path: &str,
        draft: &mut RegionsDraft,
    ) -> Option<NodeSettings> {
        let Some(fields) = self.fields(value, path, NODE_KEYS, "a node table") else {
            draft.node_ids_complete = false;
            return None;
        };
        let id = self.required(&fields, "id").and_then(|value| {
            let id_path = fields.path_of("id");
            let Some(id) = self.integer(value, &id_path, 1, u64::MAX, "") else {
                draft.node_ids_complete = false;
                return None;
            };
            let what = format!("node id {id}");
            self.claim_unique(&mut draft.node_ids, id, value, &id_path, path, &what)
                .then_some(id)
        });
        let address = self.required(&fields, "address").and_then(|value| {
            let address_path = fields.path_of("address");
            let address = self.string(value, &address_path)?;
            if let Err(reason) = rules::check_address(address) {
                let snippet = self.snippet(value.span());
                self.report(
                    value.span(),
                    &address_path,
                    format!("{snippet} is not a valid host:port ({reason})"),
                );
                return None;
            }
            // Host names are case-insensitive, so two spellings of one address collide.
            let key = address.to_ascii_lowercase();
            let what = format!("address {address:?}");
            self.claim_unique(&mut draft.addresses, key, value, &address_path, path, &what)
                .then(|| address.to_owned())
        });
        // What the node binds is its own business: two nodes of one host may both bind
        // 0.0.0.0 on different ports, and containers reuse ports freely.
        let listen = self.optional_address(&fields, "listen");
        let metrics_listen = self.optional_address(&fields, "metrics_listen");
        let data_dir = self.required(&fields, "data_dir").and_then(|value| {
            let data_dir_path = fields.path_of("data_dir");
            let data_dir = self.path(value, &data_dir_path)?;
            let key = normalized_path(&data_dir);
            let what = format!("data directory {:?}", data_dir.display().to_string());
            self.claim_unique(
                &mut draft.data_dirs,
                key,
                value,
                &data_dir_path,
                path,
                &what,
            )
            .then_some(data_dir)
        });
        if fields.get("id").is_none() {
            draft.node_ids_complete = false;
        }
        Some(NodeSettings {
            id: id?,
            address: address?,
            listen: listen?,
            metrics_listen: metrics_listen?,
            data_dir: data_dir?,
        })
    }

    /// An optional `host:port` key of a node (`listen`, `metrics_listen`): `Some(None)` when
    /// absent, `None` when present and not an address (reported).
    fn optional_address(&mut self, fields: &Fields<'_, '_>, key: &str) -> Option<Option<String>> {
        let Some(value) = fields.get(key) else {
            return Some(None);
        };
        let key_path = fields.path_of(key);
        let address = self.string(value, &key_path)?;
        match rules::check_address(address) {
            Ok(()) => Some(Some(address.to_owned())),
            Err(reason) => {
                let snippet = self.snippet(value.span());
                self.report(
                    value.span(),
                    &key_path,
                    format!("{snippet} is not a valid host:port ({reason})"),
                );
                None
            }
        }
    }

    /// Checks the replicas and the preferred leader against the nodes. Node existence is only
    /// checked when every node id is known, so that a node whose id is broken is not reported
    /// a second time as a missing replica.
    fn check_coordinator(
        &mut self,
        draft: CoordinatorDraft,
        regions: Option<&RegionsDraft>,
    ) -> Option<CoordinatorSettings> {
        let mut valid = draft.replicas_valid;
        let known_node_ids = regions
            .filter(|regions| regions.node_ids_complete)
            .map(|regions| &regions.node_ids);
        let replicas = draft.replicas.unwrap_or_default();
        if let Some(node_ids) = known_node_ids {
            for (index, (node_id, span)) in replicas.iter().enumerate() {
                if !node_ids.contains_key(node_id) {
                    self.report(
                        span.clone(),
                        &format!("coordinator.replicas[{index}]"),
                        format!("node {node_id} is not a node of any region"),
                    );
                    valid = false;
                }
            }
        }
        let replica_ids: Vec<u64> = replicas.iter().map(|(node_id, _)| *node_id).collect();
        let (preferred_leader, leader_span) = draft.preferred_leader?;
        let retained_epochs = draft.retained_epochs?;
        // Comparing with a list that could not be read, or an empty one, would only repeat
        // its problem.
        let comparable = draft.replicas_all_read && !replica_ids.is_empty();
        if comparable && !replica_ids.contains(&preferred_leader) {
            let also = match known_node_ids {
                Some(node_ids) if !node_ids.contains_key(&preferred_leader) => {
                    ", nor a node of any region"
                }
                _ => "",
            };
            self.report(
                leader_span,
                "coordinator.preferred_leader",
                format!(
                    "node {preferred_leader} is not one of the coordinator replicas \
                     {replica_ids:?}{also}"
                ),
            );
            valid = false;
        }
        valid.then_some(CoordinatorSettings {
            replicas: replica_ids,
            preferred_leader,
            retained_epochs: usize::try_from(retained_epochs).expect("at most 65,536"),
        })
    }

    /// Reads the `[[latency]]` entries whose pair of regions could be resolved, and whether
    /// all of them could. Returns `None` when the list itself is broken, or when the regions
    /// are missing so that no entry can be resolved.
    fn latency_entries(
        &mut self,
        value: Option<&Value<'_>>,
        regions: Option<&RegionsDraft>,
    ) -> Option<(Vec<LatencyEntry>, bool)> {
        let Some(value) = value else {
            return Some((Vec::new(), true));
        };
        let path = "latency";
        let array = self.array(value, path, "an array of tables ([[latency]])")?;
        let mut entries = Vec::new();
        let mut all_read = true;
        for (index, entry_value) in array.iter().enumerate() {
            let entry_path = format!("{path}[{index}]");
            match self.latency_entry(entry_value, &entry_path, regions) {
                Some(entry) => entries.push(entry),
                None => all_read = false,
            }
        }
        regions.is_some().then_some((entries, all_read))
    }

    fn latency_entry(
        &mut self,
        value: &Value<'_>,
        path: &str,
        regions: Option<&RegionsDraft>,
    ) -> Option<LatencyEntry> {
        let fields = self.fields(value, path, LATENCY_KEYS, "a table ([[latency]])")?;
        let pair = self.required(&fields, "between").and_then(|value| {
            let between_path = fields.path_of("between");
            let array = self.array(value, &between_path, "an array of two region ids")?;
            if array.len() != 2 {
                self.report(
                    value.span(),
                    &between_path,
                    format!(
                        "{} region ids given; `between` names exactly two regions",
                        array.len()
                    ),
                );
                return None;
            }
            let mut indices = [None, None];
            for (slot, (index, element)) in indices.iter_mut().zip(array.iter().enumerate()) {
                let element_path = format!("{between_path}[{index}]");
                let Some(region_id) = self.string(element, &element_path) else {
                    continue;
                };
                let Some(regions) = regions else {
                    continue;
                };
                match regions.index_by_id.get(region_id) {
                    Some(region_index) => *slot = Some(*region_index),
                    None => {
                        let known = known_region_list(regions);
                        self.report(
                            element.span(),
                            &element_path,
                            format!("{region_id:?} is not a region of this topology ({known})"),
                        );
                    }
                }
            }
            let [Some(region_a_index), Some(region_b_index)] = indices else {
                return None;
            };
            if region_a_index == region_b_index {
                self.report(
                    value.span(),
                    &between_path,
                    "names the same region twice; the delay within a region is \
                     cluster.intra_region_delay_ms",
                );
                return None;
            }
            Some((region_a_index, region_b_index))
        });
        let one_way_us = self.required(&fields, "one_way_ms").and_then(|value| {
            self.milliseconds(
                value,
                &fields.path_of("one_way_ms"),
                INTER_REGION_DELAY_MS_MAX,
            )
        });
        let jitter_us = self.jitter(
            &fields,
            "jitter_ms",
            INTER_REGION_DELAY_MS_MAX,
            one_way_us.map(|one_way_us| (one_way_us, "one_way_ms")),
        );
        let (region_a_index, region_b_index) = pair?;
        let link = match (one_way_us, jitter_us) {
            (Some(one_way_us), Some(jitter_us)) => Some(Link {
                one_way_us,
                jitter_us,
            }),
            _ => None,
        };
        Some(LatencyEntry {
            path: path.to_owned(),
            span: fields.span.clone(),
            region_a_index,
            region_b_index,
            link,
        })
    }

    /// Checks that there is one entry per unordered pair of distinct regions, no more, no
    /// less, and builds the matrix when everything it needs is valid. Missing pairs are only
    /// looked for when every entry named known regions: an entry with a misspelt region is
    /// most likely the missing pair, already reported.
    fn latency_matrix(
        &mut self,
        cluster: Option<&ClusterSettings>,
        regions: &RegionsDraft,
        entries: Vec<LatencyEntry>,
        all_entries_resolved: bool,
    ) -> Option<LatencyMatrix> {
        let region_count = regions.regions.len();
        let mut by_pair: HashMap<(usize, usize), LatencyEntry> = HashMap::new();
        let mut valid = true;
        for entry in entries {
            let key = (
                entry.region_a_index.min(entry.region_b_index),
                entry.region_a_index.max(entry.region_b_index),
            );
            match by_pair.get(&key) {
                Some(first) => {
                    self.report_repeated_pair(first, &entry, regions);
                    valid = false;
                }
                None => {
                    valid &= entry.link.is_some();
                    by_pair.insert(key, entry);
                }
            }
        }
        // Completeness is only meaningful when every region has its own id and their number is
        // within bounds; otherwise the regions' own diagnostics say what to fix first.
        if all_entries_resolved && regions.ids_complete() && region_count <= REGIONS_MAX {
            for region_b_index in 0..region_count {
                for region_a_index in 0..region_b_index {
                    if !by_pair.contains_key(&(region_a_index, region_b_index)) {
                        let name_a = region_name(regions, region_a_index);
                        let name_b = region_name(regions, region_b_index);
                        self.report(
                            regions.id_spans[region_b_index].clone(),
                            "latency",
                            format!(
                                "no entry for the region pair {name_a:?} <-> {name_b:?}; add a \
                                 [[latency]] table with between = [{name_a:?}, {name_b:?}]"
                            ),
                        );
                        valid = false;
                    }
                }
            }
        }
        // The matrix is square in the number of regions, so it is only built for a valid
        // count: a hostile file with thousands of regions must not cost gigabytes.
        let buildable = valid
            && all_entries_resolved
            && region_count <= REGIONS_MAX
            && regions.regions.iter().all(Option::is_some);
        if !buildable {
            return None;
        }
        let cluster = cluster?;
        let mut matrix = LatencyMatrix::new(
            region_count,
            Link {
                one_way_us: cluster.intra_region_delay_us,
                jitter_us: cluster.intra_region_jitter_us,
            },
        );
        for ((region_a_index, region_b_index), entry) in by_pair {
            matrix.set_link(region_a_index, region_b_index, entry.link?);
        }
        Some(matrix)
    }

    fn report_repeated_pair(
        &mut self,
        first: &LatencyEntry,
        second: &LatencyEntry,
        regions: &RegionsDraft,
    ) {
        let first_line = self.line_of(first.span.start);
        let second_line = self.line_of(second.span.start);
        let describe = |entry: &LatencyEntry| {
            format!(
                "{:?} -> {:?}",
                region_name(regions, entry.region_a_index),
                region_name(regions, entry.region_b_index)
            )
        };
        let message = match (first.link, second.link) {
            (Some(first_link), Some(second_link)) if first_link != second_link => format!(
                "asymmetric latency matrix: {} is {} at line {first_line} ({}) but {} is {} at \
                 line {second_line}; DSSS models one-way delays as symmetric, so give each pair \
                 of regions once",
                describe(first),
                format_link(first_link),
                first.path,
                describe(second),
                format_link(second_link),
            ),
            _ => format!(
                "the region pair {} is given twice (first at line {first_line}, {}); give each \
                 pair of regions once",
                describe(second),
                first.path
            ),
        };
        self.report(second.span.clone(), &second.path, message);
    }

    // ---- Values -----------------------------------------------------------------------------

    /// Type-checks a table and reports its unknown keys.
    fn fields<'v, 'i>(
        &mut self,
        value: &'v Value<'i>,
        path: &str,
        known: &[&str],
        expected: &str,
    ) -> Option<Fields<'v, 'i>> {
        let DeValue::Table(table) = value.get_ref() else {
            self.report_type(value, path, expected);
            return None;
        };
        let fields = Fields {
            table,
            span: value.span(),
            path: path.to_owned(),
        };
        self.check_keys(&fields, known);
        Some(fields)
    }

    fn check_keys(&mut self, fields: &Fields<'_, '_>, known: &[&str]) {
        for (key, _) in fields.table.iter() {
            let name: &str = key.get_ref();
            if known.contains(&name) {
                continue;
            }
            let message = match rules::suggest_key(name, known) {
                Some(suggestion) => format!("unknown key; did you mean {suggestion:?}?"),
                None => format!("unknown key (expected one of: {})", known.join(", ")),
            };
            self.report(key.span(), &fields.path_of(name), message);
        }
    }

    fn required<'v, 'i>(&mut self, fields: &Fields<'v, 'i>, key: &str) -> Option<&'v Value<'i>> {
        let value = fields.get(key);
        if value.is_none() {
            let what = if fields.path.is_empty() {
                format!("the required section {key} is missing")
            } else {
                "a required key is missing".to_owned()
            };
            self.report(fields.span.clone(), &fields.path_of(key), what);
        }
        value
    }

    fn array<'v, 'i>(
        &mut self,
        value: &'v Value<'i>,
        path: &str,
        expected: &str,
    ) -> Option<&'v DeArray<'i>> {
        match value.get_ref() {
            DeValue::Array(array) => Some(array),
            _ => {
                self.report_type(value, path, expected);
                None
            }
        }
    }

    fn string<'v>(&mut self, value: &'v Value<'_>, path: &str) -> Option<&'v str> {
        match value.get_ref() {
            DeValue::String(text) => Some(text),
            _ => {
                self.report_type(value, path, "a string");
                None
            }
        }
    }

    fn path(&mut self, value: &Value<'_>, path: &str) -> Option<PathBuf> {
        let text = self.string(value, path)?;
        self.check_rule(value, path, rules::check_path(text))?;
        Some(PathBuf::from(text))
    }

    /// Reads an integer in `minimum..=maximum`. Integers of any size are accepted by the
    /// TOML parser as text, so out-of-range ones become diagnostics, never overflows.
    fn integer(
        &mut self,
        value: &Value<'_>,
        path: &str,
        minimum: u64,
        maximum: u64,
        unit: &str,
    ) -> Option<u64> {
        let DeValue::Integer(integer) = value.get_ref() else {
            self.report_type(value, path, "an integer");
            return None;
        };
        let parsed = i128::from_str_radix(integer.as_str(), integer.radix()).ok();
        match parsed.and_then(|parsed| u64::try_from(parsed).ok()) {
            Some(parsed) if (minimum..=maximum).contains(&parsed) => Some(parsed),
            _ => {
                let snippet = self.snippet(value.span());
                let unit = if unit.is_empty() {
                    String::new()
                } else {
                    format!(" {unit}")
                };
                self.report(
                    value.span(),
                    path,
                    format!("{snippet} is out of range (allowed: {minimum}..={maximum}{unit})"),
                );
                None
            }
        }
    }

    /// Reads a duration in milliseconds (an integer or a float) in `0..=maximum_ms` and
    /// returns it in microseconds, rounded to the nearest microsecond.
    fn milliseconds(&mut self, value: &Value<'_>, path: &str, maximum_ms: f64) -> Option<u64> {
        let parsed: Option<f64> = match value.get_ref() {
            DeValue::Float(float) => float.as_str().parse::<f64>().ok(),
            DeValue::Integer(integer) => i128::from_str_radix(integer.as_str(), integer.radix())
                .ok()
                // Precision loss for huge integers does not matter: they are out of range.
                .map(|parsed| parsed as f64),
            _ => {
                self.report_type(value, path, "a number of milliseconds");
                return None;
            }
        };
        let snippet = self.snippet(value.span());
        let Some(milliseconds) = parsed else {
            self.report(
                value.span(),
                path,
                format!("{snippet} is out of range (allowed: 0..={maximum_ms} ms)"),
            );
            return None;
        };
        if !milliseconds.is_finite() {
            self.report(
                value.span(),
                path,
                format!("{snippet} is not a finite number of milliseconds"),
            );
            return None;
        }
        if !(0.0..=maximum_ms).contains(&milliseconds) {
            self.report(
                value.span(),
                path,
                format!("{snippet} is out of range (allowed: 0..={maximum_ms} ms)"),
            );
            return None;
        }
        // In range 0..=maximum_ms, so the product is a small non-negative number: the cast
        // cannot saturate.
        Some((milliseconds * MICROSECONDS_PER_MILLISECOND as f64).round() as u64)
    }

    fn check_rule<T>(
        &mut self,
        value: &Value<'_>,
        path: &str,
        result: Result<T, String>,
    ) -> Option<T> {
        match result {
            Ok(checked) => Some(checked),
            Err(reason) => {
                let snippet = self.snippet(value.span());
                self.report(value.span(), path, format!("{snippet}: {reason}"));
                None
            }
        }
    }

    // ---- Reporting --------------------------------------------------------------------------

    fn report(&mut self, span: Range<usize>, path: &str, message: impl Into<String>) {
        let location: Location = self.source_map.location(span.start);
        self.diagnostics.report(Some(location), path, message);
    }

    fn report_type(&mut self, value: &Value<'_>, path: &str, expected: &str) {
        let found = match value.get_ref() {
            DeValue::String(_) => format!("a string {}", self.snippet(value.span())),
            DeValue::Integer(_) => format!("an integer {}", self.snippet(value.span())),
            DeValue::Float(_) => format!("a float {}", self.snippet(value.span())),
            DeValue::Boolean(_) => format!("a boolean {}", self.snippet(value.span())),
            DeValue::Datetime(_) => format!("a date-time {}", self.snippet(value.span())),
            DeValue::Array(_) => "an array".to_owned(),
            DeValue::Table(_) => "a table".to_owned(),
        };
        self.report(
            value.span(),
            path,
            format!("expected {expected}, found {found}"),
        );
    }

    /// Records the first use of a value that must be unique in the cluster, or reports the
    /// repeat, naming the first user and its line. Returns whether the value was new.
    fn claim_unique<K: Hash + Eq>(
        &mut self,
        first_uses: &mut HashMap<K, FirstUse>,
        key: K,
        value: &Value<'_>,
        path: &str,
        owner_path: &str,
        what: &str,
    ) -> bool {
        match first_uses.entry(key) {
            Entry::Occupied(first) => {
                let (first_owner, first_span) = first.get();
                let first_line = self.line_of(first_span.start);
                let message =
                    format!("{what} is already used by {first_owner} (line {first_line})");
                self.report(value.span(), path, message);
                false
            }
            Entry::Vacant(slot) => {
                slot.insert((owner_path.to_owned(), value.span()));
                true
            }
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.source_map.location(offset).line
    }

    /// The text of the file at a span, as the user wrote it, shortened and with control
    /// characters escaped so that a message stays on one line.
    fn snippet(&self, span: Range<usize>) -> String {
        let text = self.source_map.text().get(span).unwrap_or("");
        let mut snippet = String::new();
        for (count, character) in text.chars().enumerate() {
            if count == SNIPPET_CHARS_MAX {
                snippet.push_str("...");
                break;
            }
            if character.is_control() {
                snippet.extend(character.escape_debug());
            } else {
                snippet.push(character);
            }
        }
        snippet
    }
}

/// `path.key`, quoting keys that are not bare TOML keys.
fn join_key(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// `regions` for `regions[3]`: the array a path's last index is into.
fn path_parent(path: &str) -> &str {
    path.rsplit_once('[').map_or(path, |(parent, _)| parent)
}

fn region_name(regions: &RegionsDraft, region_index: usize) -> String {
    match regions.ids.get(region_index) {
        Some(Some(id)) => id.clone(),
        _ => format!("regions[{region_index}]"),
    }
}

/// The region ids, for messages about an unknown one; shortened for large files.
fn known_region_list(regions: &RegionsDraft) -> String {
    const LISTED_REGIONS_MAX: usize = 8;
    let listed: Vec<String> = regions
        .ids
        .iter()
        .flatten()
        .take(LISTED_REGIONS_MAX)
        .map(|id| format!("{id:?}"))
        .collect();
    if listed.is_empty() {
        return "no region has an id".to_owned();
    }
    let named_count = regions.index_by_id.len();
    let more = if named_count > LISTED_REGIONS_MAX {
        format!(", and {} more", named_count - LISTED_REGIONS_MAX)
    } else {
        String::new()
    };
    format!("regions: {}{more}", listed.join(", "))
}

/// Microseconds as milliseconds, without trailing zeros: 20000 -> "20", 200 -> "0.2".
pub(crate) fn format_ms(microseconds: u64) -> String {
    let whole = microseconds / MICROSECONDS_PER_MILLISECOND;
    let fraction = microseconds % MICROSECONDS_PER_MILLISECOND;
    if fraction == 0 {
        whole.to_string()
    } else {
        let digits = format!("{fraction:03}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
}

fn format_link(link: Link) -> String {
    format!(
        "{} ms +- {} ms",
        format_ms(link.one_way_us),
        format_ms(link.jitter_us)
    )
}
