//! Table-driven checks of every topology rule: each case edits a valid file and lists the
//! diagnostics it must produce (field path and a piece of the message), no more and no fewer.
//! Reference: docs/design.md section 5.

use dsss_topology::{
    Diagnostics, GRANT_CLIENT_CHARS_MAX, GRANT_OBJECT_PREFIX_BYTES_MAX, GRANTS_MAX, Grant,
    GrantRight, Link, Topology, parse,
};

/// A case: its name, the text to parse, and the expected (field path, message fragment)s.
type Case = (
    &'static str,
    String,
    &'static [(&'static str, &'static str)],
);

const VALID: &str = r#"[cluster]
name = "test"
epoch_ms = 10
suspicion_timeout_ms = 2000
max_clock_skew_ms = 250
intra_region_delay_ms = 0.2
intra_region_jitter_ms = 0.05

[coordinator]
replicas = [11, 21, 31]
preferred_leader = 11

[[regions]]
id = "region-a"
nodes = [
  { id = 11, address = "127.0.0.1:7111", data_dir = "data/a/11" },
  { id = 12, address = "127.0.0.1:7112", data_dir = "data/a/12" },
  { id = 13, address = "127.0.0.1:7113", data_dir = "data/a/13" },
]

[[regions]]
id = "region-b"
nodes = [{ id = 21, address = "127.0.0.1:7121", data_dir = "data/b/21" }]

[[regions]]
id = "region-c"
nodes = [{ id = 31, address = "node-31.example:7131", data_dir = "data/c/31" }]

[[latency]]
between = ["region-a", "region-b"]
one_way_ms = 20.0
jitter_ms = 1.0

[[latency]]
between = ["region-a", "region-c"]
one_way_ms = 35
jitter_ms = 1.5

[[latency]]
between = ["region-c", "region-b"]
one_way_ms = 25.5
"#;

/// The valid file with `from` replaced by `to` (exactly one occurrence).
fn edited(from: &str, to: &str) -> String {
    assert_eq!(
        VALID.matches(from).count(),
        1,
        "the edit {from:?} must match exactly once"
    );
    VALID.replacen(from, to, 1)
}

fn diagnostics_of(text: &str) -> Diagnostics {
    match parse("test.toml", text) {
        Ok(_) => panic!("expected diagnostics for:\n{text}"),
        Err(diagnostics) => diagnostics,
    }
}

/// Asserts that the diagnostics are exactly the expected ones, in order: field path equal and
/// message containing the fragment.
fn assert_diagnostics(case: &str, text: &str, expected: &[(&str, &str)]) {
    let diagnostics = diagnostics_of(text);
    let actual: Vec<(&str, &str)> = diagnostics
        .iter()
        .map(|diagnostic| (diagnostic.field_path.as_str(), diagnostic.message.as_str()))
        .collect();
    let matches = actual.len() == expected.len()
        && actual
            .iter()
            .zip(expected)
            .all(|((path, message), (expected_path, fragment))| {
                path == expected_path && message.contains(fragment)
            });
    assert!(
        matches,
        "case {case}: expected {expected:#?}\ngot:\n{diagnostics}"
    );
}

#[test]
fn the_valid_file_becomes_a_model_in_microseconds() {
    let topology: Topology = parse("test.toml", VALID).expect("valid");
    assert_eq!(topology.cluster.name, "test");
    assert_eq!(topology.cluster.epoch_us, 10_000);
    assert_eq!(topology.cluster.suspicion_timeout_us, 2_000_000);
    assert_eq!(topology.cluster.max_clock_skew_us, 250_000);
    assert_eq!(topology.cluster.intra_region_delay_us, 200);
    assert_eq!(topology.cluster.intra_region_jitter_us, 50);
    assert_eq!(topology.tls, None);
    assert_eq!(topology.coordinator.replicas, vec![11, 21, 31]);
    assert_eq!(topology.coordinator.preferred_leader, 11);
    assert_eq!(topology.regions.len(), 3);
    assert_eq!(topology.node_count(), 5);

    let a = topology.region_index("region-a").expect("region-a");
    let b = topology.region_index("region-b").expect("region-b");
    let c = topology.region_index("region-c").expect("region-c");
    assert_eq!((a, b, c), (0, 1, 2));
    assert_eq!(topology.region_index("region-z"), None);
    assert_eq!(
        topology.region_of(12).map(|region| region.id.as_str()),
        Some("region-a")
    );
    assert_eq!(topology.region_of(99), None);
    let node = topology.node(31).expect("node 31");
    assert_eq!(node.address, "node-31.example:7131");
    assert_eq!(node.data_dir, std::path::Path::new("data/c/31"));

    let link = |one_way_us, jitter_us| Link {
        one_way_us,
        jitter_us,
    };
    assert_eq!(topology.latency.link(a, b), link(20_000, 1_000));
    assert_eq!(topology.latency.link(b, a), link(20_000, 1_000));
    assert_eq!(topology.latency.link(a, c), link(35_000, 1_500));
    // The entry was written as ["region-c", "region-b"]; the matrix is symmetric and jitter
    // defaults to 0.
    assert_eq!(topology.latency.link(b, c), link(25_500, 0));
    assert_eq!(topology.latency.link(c, c), link(200, 50));
    assert_eq!(topology.link_between_nodes(11, 13), Some(link(200, 50)));
    assert_eq!(
        topology.link_between_nodes(13, 31),
        Some(link(35_000, 1_500))
    );
    assert_eq!(topology.latency.d_max_us(), 35_000);
    assert_eq!(topology.latency.d_max_pair(), Some((a, c)));
    assert!(topology.is_coordinator_replica(21));
    assert!(!topology.is_coordinator_replica(12));
}

#[test]
fn tls_paths_and_node_certificates() {
    let text = edited(
        "[coordinator]",
        "[tls]\nca_cert = \"certs/ca.crt\"\ncert_dir = \"certs\"\n\n[coordinator]",
    );
    let topology = parse("test.toml", &text).expect("valid");
    let tls = topology.tls.expect("tls present");
    assert_eq!(tls.ca_cert, std::path::Path::new("certs/ca.crt"));
    assert_eq!(
        tls.node_cert_path(12),
        std::path::Path::new("certs/node-12.crt")
    );
    assert_eq!(
        tls.node_key_path(12),
        std::path::Path::new("certs/node-12.key")
    );
}

#[test]
fn a_single_region_needs_no_latency_entries() {
    let single = r#"
[cluster]
name = "solo"
epoch_ms = 1
suspicion_timeout_ms = 2
max_clock_skew_ms = 1
intra_region_delay_ms = 0.5

[coordinator]
replicas = [1]
preferred_leader = 1

[[regions]]
id = "only"
nodes = [{ id = 1, address = "[::1]:9000", data_dir = "d" }]
"#;
    let topology = parse("solo.toml", single).expect("valid");
    assert_eq!(topology.latency.region_count(), 1);
    assert_eq!(topology.latency.d_max_us(), 500);
    assert_eq!(topology.cluster.intra_region_jitter_us, 0);
}

#[test]
fn cluster_rules() {
    let cases: &[Case] = &[
        (
            "epoch zero",
            edited("epoch_ms = 10", "epoch_ms = 0"),
            &[(
                "cluster.epoch_ms",
                "0 is out of range (allowed: 1..=10000 ms)",
            )],
        ),
        (
            "epoch too long",
            edited("epoch_ms = 10", "epoch_ms = 10001"),
            &[("cluster.epoch_ms", "10001 is out of range")],
        ),
        (
            "epoch as string",
            edited("epoch_ms = 10", "epoch_ms = \"10\""),
            &[(
                "cluster.epoch_ms",
                "expected an integer, found a string \"10\"",
            )],
        ),
        (
            "epoch as float",
            edited("epoch_ms = 10", "epoch_ms = 10.5"),
            &[(
                "cluster.epoch_ms",
                "expected an integer, found a float 10.5",
            )],
        ),
        (
            "epoch negative",
            edited("epoch_ms = 10", "epoch_ms = -10"),
            &[("cluster.epoch_ms", "-10 is out of range")],
        ),
        (
            "epoch beyond 64 bits",
            edited(
                "epoch_ms = 10",
                "epoch_ms = 999999999999999999999999999999999999999",
            ),
            &[(
                "cluster.epoch_ms",
                "999999999999999999999999999999999999999 is out of range",
            )],
        ),
        (
            "suspicion shorter than two epochs",
            edited("suspicion_timeout_ms = 2000", "suspicion_timeout_ms = 19"),
            &[(
                "cluster.suspicion_timeout_ms",
                "at least twice epoch_ms (2 * 10 = 20 ms)",
            )],
        ),
        (
            "suspicion too long",
            edited(
                "suspicion_timeout_ms = 2000",
                "suspicion_timeout_ms = 600001",
            ),
            &[("cluster.suspicion_timeout_ms", "allowed: 1..=600000 ms")],
        ),
        (
            "clock skew zero",
            edited("max_clock_skew_ms = 250", "max_clock_skew_ms = 0"),
            &[("cluster.max_clock_skew_ms", "allowed: 1..=60000 ms")],
        ),
        (
            "intra delay nan",
            edited("intra_region_delay_ms = 0.2", "intra_region_delay_ms = nan"),
            &[(
                "cluster.intra_region_delay_ms",
                "nan is not a finite number",
            )],
        ),
        (
            "intra delay infinite",
            edited(
                "intra_region_delay_ms = 0.2",
                "intra_region_delay_ms = -inf",
            ),
            &[(
                "cluster.intra_region_delay_ms",
                "-inf is not a finite number",
            )],
        ),
        (
            "intra delay negative",
            edited(
                "intra_region_delay_ms = 0.2",
                "intra_region_delay_ms = -0.5",
            ),
            &[(
                "cluster.intra_region_delay_ms",
                "-0.5 is out of range (allowed: 0..=1000 ms)",
            )],
        ),
        (
            "intra delay as boolean",
            edited(
                "intra_region_delay_ms = 0.2",
                "intra_region_delay_ms = true",
            ),
            &[(
                "cluster.intra_region_delay_ms",
                "expected a number of milliseconds, found a boolean true",
            )],
        ),
        (
            "intra jitter above delay",
            edited(
                "intra_region_jitter_ms = 0.05",
                "intra_region_jitter_ms = 0.3",
            ),
            &[(
                "cluster.intra_region_jitter_ms",
                "0.3 ms is larger than intra_region_delay_ms (0.2 ms)",
            )],
        ),
        (
            "misspelt key",
            edited("epoch_ms = 10", "epoch_ms = 10\nepoch_msec = 10"),
            &[(
                "cluster.epoch_msec",
                "unknown key; did you mean \"epoch_ms\"?",
            )],
        ),
        (
            "unknown section",
            edited("[coordinator]", "[metrics]\nport = 1\n\n[coordinator]"),
            &[(
                "metrics",
                "unknown key (expected one of: cluster, tls, coordinator, regions, latency, grants, limits, tokens)",
            )],
        ),
        (
            "missing name",
            edited("name = \"test\"\n", ""),
            &[("cluster.name", "a required key is missing")],
        ),
        (
            "name with a space",
            edited("name = \"test\"", "name = \"my test\""),
            &[("cluster.name", "' ' is not allowed in a cluster name")],
        ),
        (
            "cluster is not a table",
            edited(
                "[cluster]\nname = \"test\"\nepoch_ms = 10\nsuspicion_timeout_ms = 2000\nmax_clock_skew_ms = 250\nintra_region_delay_ms = 0.2\nintra_region_jitter_ms = 0.05\n",
                "cluster = 3\n",
            ),
            &[(
                "cluster",
                "expected a table ([cluster]), found an integer 3",
            )],
        ),
    ];
    for (case, text, expected) in cases {
        assert_diagnostics(case, text, expected);
    }
}

#[test]
fn tls_rules() {
    let cases: &[Case] = &[
        (
            "cert_dir missing",
            edited(
                "[coordinator]",
                "[tls]\nca_cert = \"ca.crt\"\n\n[coordinator]",
            ),
            &[("tls.cert_dir", "a required key is missing")],
        ),
        (
            "empty path",
            edited(
                "[coordinator]",
                "[tls]\nca_cert = \"\"\ncert_dir = \"certs\"\n\n[coordinator]",
            ),
            &[("tls.ca_cert", "a path must not be empty")],
        ),
        (
            "tls is a number",
            edited("[coordinator]", "tls = 5\n\n[coordinator]")
                .replacen("tls = 5\n\n", "", 1)
                .replacen("[cluster]", "tls = 5\n\n[cluster]", 1),
            &[("tls", "expected a table ([tls]), found an integer 5")],
        ),
    ];
    for (case, text, expected) in cases {
        assert_diagnostics(case, text, expected);
    }
}

const TLS: &str = "[tls]\nca_cert = \"ca.crt\"\ncert_dir = \"certs\"\n\n[coordinator]";

/// The valid file with `[tls]` and `grants` (appended at its end).
fn with_grants(grants: &str) -> String {
    format!("{}\n{grants}", edited("[coordinator]", TLS))
}

#[test]
fn grants_are_read_in_full() {
    let topology = parse(
        "test.toml",
        &with_grants(
            "[[grants]]\nclient = \"app\"\nobjects = [\"bank/\", \"\"]\nrights = [\"read\", \"call\", \"read\"]\n\n\
             [[grants]]\nclient = \"uploader\"\nobjects = [\"board/\"]\nrights = [\"upload\"]\n",
        ),
    )
    .expect("valid grants");
    assert_eq!(
        topology.grants,
        vec![
            Grant {
                client: "app".to_owned(),
                objects: vec!["bank/".to_owned(), String::new()],
                rights: vec![GrantRight::Call, GrantRight::Read],
            },
            Grant {
                client: "uploader".to_owned(),
                objects: vec!["board/".to_owned()],
                rights: vec![GrantRight::Upload],
            },
        ]
    );
    assert!(parse("test.toml", VALID).expect("valid").grants.is_empty());
}

#[test]
fn grant_rules() {
    let grant = |client: &str, objects: &str, rights: &str| {
        with_grants(&format!(
            "[[grants]]\nclient = {client}\nobjects = {objects}\nrights = {rights}\n"
        ))
    };
    let many_objects = format!("[{}]", vec!["\"a\""; 65].join(", "));
    let cases: &[Case] = &[
        (
            "grants without tls",
            format!(
                "{VALID}\n[[grants]]\nclient = \"app\"\nobjects = [\"\"]\nrights = [\"call\"]\n"
            ),
            &[("grants", "they need a [tls] table")],
        ),
        (
            "bad client name",
            grant("\"app/1\"", "[\"\"]", "[\"call\"]"),
            &[("grants[0].client", "'/' is not allowed in a client name")],
        ),
        (
            "no objects",
            grant("\"app\"", "[]", "[\"call\"]"),
            &[("grants[0].objects", "a grant names 1 to 64")],
        ),
        (
            "too many objects",
            grant("\"app\"", &many_objects, "[\"call\"]"),
            &[("grants[0].objects", "65 prefixes")],
        ),
        (
            "unknown right",
            grant("\"app\"", "[\"\"]", "[\"call\", \"admin\"]"),
            &[(
                "grants[0].rights[1]",
                "\"admin\" is not a right (rights: call, read, upload)",
            )],
        ),
        (
            "no rights",
            grant("\"app\"", "[\"\"]", "[]"),
            &[("grants[0].rights", "no rights")],
        ),
        (
            "missing client",
            with_grants("[[grants]]\nobjects = [\"\"]\nrights = [\"call\"]\n"),
            &[("grants[0].client", "a required key is missing")],
        ),
        (
            "client name too long",
            grant(
                &format!("\"{}\"", "a".repeat(GRANT_CLIENT_CHARS_MAX + 1)),
                "[\"\"]",
                "[\"call\"]",
            ),
            &[("grants[0].client", "at most 63 characters, this one has 64")],
        ),
        (
            "object prefix too long",
            grant(
                "\"app\"",
                &format!("[\"{}\"]", "b".repeat(GRANT_OBJECT_PREFIX_BYTES_MAX + 1)),
                "[\"call\"]",
            ),
            &[(
                "grants[0].objects[0]",
                "257 bytes; an object prefix has at most 256",
            )],
        ),
        (
            "too many grants",
            with_grants(
                &"[[grants]]\nclient = \"app\"\nobjects = [\"\"]\nrights = [\"call\"]\n"
                    .repeat(GRANTS_MAX + 1),
            ),
            &[("grants", "1025 grants; at most 1024")],
        ),
    ];
    for (case, text, expected) in cases {
        assert_diagnostics(case, text, expected);
    }
}

#[test]
fn coordinator_rules() {
    let cases: &[Case] = &[
        (
            "even replica count",
            edited("replicas = [11, 21, 31]", "replicas = [11, 21]"),
            &[(
                "coordinator.replicas",
                "2 replicas given; the coordinator needs an odd number of replicas from 1 to 9",
            )],
        ),
        (
            "no replicas",
            edited("replicas = [11, 21, 31]", "replicas = []"),
            &[("coordinator.replicas", "0 replicas given")],
        ),
        (
            "eleven replicas",
            edited(
                "replicas = [11, 21, 31]",
                "replicas = [11, 12, 13, 21, 31, 41, 42, 43, 44, 45, 46]",
            ),
            &[
                ("coordinator.replicas", "11 replicas given"),
                (
                    "coordinator.replicas[5]",
                    "node 41 is not a node of any region",
                ),
                (
                    "coordinator.replicas[6]",
                    "node 42 is not a node of any region",
                ),
                (
                    "coordinator.replicas[7]",
                    "node 43 is not a node of any region",
                ),
                (
                    "coordinator.replicas[8]",
                    "node 44 is not a node of any region",
                ),
                (
                    "coordinator.replicas[9]",
                    "node 45 is not a node of any region",
                ),
                (
                    "coordinator.replicas[10]",
                    "node 46 is not a node of any region",
                ),
            ],
        ),
        (
            "replica that is not a node",
            edited("replicas = [11, 21, 31]", "replicas = [11, 21, 41]"),
            &[(
                "coordinator.replicas[2]",
                "node 41 is not a node of any region",
            )],
        ),
        (
            "replica listed twice",
            edited("replicas = [11, 21, 31]", "replicas = [11, 21, 11]"),
            &[(
                "coordinator.replicas[2]",
                "node 11 is listed twice (also at coordinator.replicas[0])",
            )],
        ),
        (
            "replica id zero",
            edited("replicas = [11, 21, 31]", "replicas = [11, 21, 0]"),
            &[("coordinator.replicas[2]", "0 is out of range")],
        ),
        (
            "leader that is not a replica",
            edited("preferred_leader = 11", "preferred_leader = 12"),
            &[(
                "coordinator.preferred_leader",
                "node 12 is not one of the coordinator replicas [11, 21, 31]",
            )],
        ),
        (
            "leader that is not a node",
            edited("preferred_leader = 11", "preferred_leader = 99"),
            &[(
                "coordinator.preferred_leader",
                "node 99 is not one of the coordinator replicas [11, 21, 31], nor a node of any region",
            )],
        ),
        (
            "leader missing",
            edited("preferred_leader = 11\n", ""),
            &[("coordinator.preferred_leader", "a required key is missing")],
        ),
    ];
    for (case, text, expected) in cases {
        assert_diagnostics(case, text, expected);
    }
}

#[test]
fn region_and_node_rules() {
    let cases: &[Case] = &[
        (
            // Entries that name the invalid id still resolve, so only the id is reported.
            "invalid region id",
            VALID.replace("region-b", "Region-B"),
            &[(
                "regions[1].id",
                "\"Region-B\": 'R' is not allowed in a region id",
            )],
        ),
        (
            "duplicate region id",
            edited("id = \"region-c\"", "id = \"region-b\""),
            &[
                (
                    "regions[2].id",
                    "region id \"region-b\" is already used by regions[1] (line 22)",
                ),
                (
                    "latency[1].between[1]",
                    "\"region-c\" is not a region of this topology (regions: \"region-a\", \"region-b\")",
                ),
                (
                    "latency[2].between[0]",
                    "\"region-c\" is not a region of this topology",
                ),
            ],
        ),
        (
            "even region",
            edited(
                "nodes = [{ id = 21, address = \"127.0.0.1:7121\", data_dir = \"data/b/21\" }]",
                "nodes = [{ id = 21, address = \"127.0.0.1:7121\", data_dir = \"data/b/21\" }, { id = 22, address = \"127.0.0.1:7122\", data_dir = \"data/b/22\" }]",
            ),
            &[(
                "regions[1].nodes",
                "2 nodes given; a region needs an odd number of nodes from 1 to 9",
            )],
        ),
        (
            "empty region",
            edited(
                "nodes = [{ id = 21, address = \"127.0.0.1:7121\", data_dir = \"data/b/21\" }]",
                "nodes = []",
            ),
            &[
                // The replica on node 21 now names no node.
                (
                    "coordinator.replicas[1]",
                    "node 21 is not a node of any region",
                ),
                ("regions[1].nodes", "0 nodes given"),
            ],
        ),
        (
            "no regions",
            // A root key must come before the first table header.
            "regions = []\n".to_owned() + VALID.split("[[regions]]").next().expect("head"),
            &[("regions", "at least one region is required")],
        ),
        (
            "regions as one table",
            VALID.split("[[regions]]").next().expect("head").to_owned() + "[regions]\nid = \"x\"\n",
            &[(
                "regions",
                "expected an array of tables ([[regions]]), found a table",
            )],
        ),
        (
            "duplicate node id",
            edited("{ id = 13,", "{ id = 21,"),
            &[(
                "regions[1].nodes[0].id",
                "node id 21 is already used by regions[0].nodes[2] (line 18)",
            )],
        ),
        (
            "duplicate address",
            edited("127.0.0.1:7121", "127.0.0.1:7112"),
            &[(
                "regions[1].nodes[0].address",
                "address \"127.0.0.1:7112\" is already used by regions[0].nodes[1] (line 17)",
            )],
        ),
        (
            "duplicate host name differing in case",
            edited("127.0.0.1:7121", "NODE-31.example:7131"),
            &[(
                "regions[2].nodes[0].address",
                "address \"node-31.example:7131\" is already used by regions[1].nodes[0] (line 23)",
            )],
        ),
        (
            "duplicate data dir spelled differently",
            edited("data_dir = \"data/b/21\"", "data_dir = \"./data/a/12/\""),
            &[(
                "regions[1].nodes[0].data_dir",
                "data directory \"./data/a/12/\" is already used by regions[0].nodes[1] (line 17)",
            )],
        ),
        (
            "port out of range",
            edited("127.0.0.1:7113", "127.0.0.1:99999"),
            &[(
                "regions[0].nodes[2].address",
                "\"127.0.0.1:99999\" is not a valid host:port (port out of range)",
            )],
        ),
        (
            "node id zero",
            edited("{ id = 12,", "{ id = 0,"),
            &[(
                "regions[0].nodes[1].id",
                "0 is out of range (allowed: 1..=18446744073709551615)",
            )],
        ),
        (
            "node id beyond 64 bits",
            edited("{ id = 12,", "{ id = 18446744073709551616,"),
            &[(
                "regions[0].nodes[1].id",
                "18446744073709551616 is out of range",
            )],
        ),
        (
            "node without data dir",
            edited(", data_dir = \"data/a/12\"", ""),
            &[("regions[0].nodes[1].data_dir", "a required key is missing")],
        ),
        (
            "node with a misspelt key",
            edited(
                "address = \"127.0.0.1:7112\"",
                "adress = \"127.0.0.1:7112\"",
            ),
            &[
                ("regions[0].nodes[1].address", "a required key is missing"),
                (
                    "regions[0].nodes[1].adress",
                    "unknown key; did you mean \"address\"?",
                ),
            ],
        ),
        (
            "node as a string",
            edited(
                "{ id = 12, address = \"127.0.0.1:7112\", data_dir = \"data/a/12\" }",
                "\"node-12\"",
            ),
            &[(
                "regions[0].nodes[1]",
                "expected a node table, found a string \"node-12\"",
            )],
        ),
    ];
    for (case, text, expected) in cases {
        assert_diagnostics(case, text, expected);
    }
}

#[test]
fn latency_rules() {
    let cases: &[Case] = &[
        (
            "missing pair",
            edited(
                "[[latency]]\nbetween = [\"region-c\", \"region-b\"]\none_way_ms = 25.5\n",
                "",
            ),
            &[(
                "latency",
                "no entry for the region pair \"region-b\" <-> \"region-c\"",
            )],
        ),
        (
            "pair given twice with the same values",
            format!(
                "{VALID}\n[[latency]]\nbetween = [\"region-b\", \"region-c\"]\none_way_ms = 25.5\n"
            ),
            &[(
                "latency[3]",
                "the region pair \"region-b\" -> \"region-c\" is given twice (first at line 39, latency[2])",
            )],
        ),
        (
            "asymmetric pair",
            format!(
                "{VALID}\n[[latency]]\nbetween = [\"region-b\", \"region-a\"]\none_way_ms = 22\njitter_ms = 1.0\n"
            ),
            &[(
                "latency[3]",
                "asymmetric latency matrix: \"region-a\" -> \"region-b\" is 20 ms +- 1 ms at line 29 \
                 (latency[0]) but \"region-b\" -> \"region-a\" is 22 ms +- 1 ms at line 43",
            )],
        ),
        (
            "unknown region",
            edited(
                "between = [\"region-a\", \"region-c\"]",
                "between = [\"region-a\", \"region-x\"]",
            ),
            &[(
                "latency[1].between[1]",
                "\"region-x\" is not a region of this topology (regions: \"region-a\", \"region-b\", \"region-c\")",
            )],
        ),
        (
            "same region twice",
            edited(
                "between = [\"region-a\", \"region-c\"]",
                "between = [\"region-a\", \"region-a\"]",
            ),
            &[("latency[1].between", "names the same region twice")],
        ),
        (
            "three regions in one entry",
            edited(
                "between = [\"region-a\", \"region-c\"]",
                "between = [\"region-a\", \"region-c\", \"region-b\"]",
            ),
            &[("latency[1].between", "3 region ids given")],
        ),
        (
            "absurd delay",
            edited("one_way_ms = 35", "one_way_ms = 1e12"),
            &[(
                "latency[1].one_way_ms",
                "1e12 is out of range (allowed: 0..=5000 ms)",
            )],
        ),
        (
            "negative delay",
            edited("one_way_ms = 35", "one_way_ms = -35"),
            &[("latency[1].one_way_ms", "-35 is out of range")],
        ),
        (
            "delay as string",
            edited("one_way_ms = 35", "one_way_ms = \"35ms\""),
            &[(
                "latency[1].one_way_ms",
                "expected a number of milliseconds, found a string \"35ms\"",
            )],
        ),
        (
            "jitter above delay",
            edited("jitter_ms = 1.5", "jitter_ms = 40"),
            &[(
                "latency[1].jitter_ms",
                "40 ms is larger than one_way_ms (35 ms)",
            )],
        ),
        (
            "misspelt delay key",
            edited("one_way_ms = 35", "one_way = 35"),
            &[
                ("latency[1].one_way_ms", "a required key is missing"),
                (
                    "latency[1].one_way",
                    "unknown key; did you mean \"one_way_ms\"?",
                ),
            ],
        ),
    ];
    for (case, text, expected) in cases {
        assert_diagnostics(case, text, expected);
    }
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let text = edited("epoch_ms = 10", "epoch_ms = 0")
        .replacen("127.0.0.1:7113", "127.0.0.1:99999", 1)
        .replacen("one_way_ms = 35", "one_way_ms = nan", 1)
        .replacen("id = \"region-c\"", "id = \"region-c\"\nzone = 3", 1);
    let diagnostics = diagnostics_of(&text);
    let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "test.toml:3:12: cluster.epoch_ms: 0 is out of range (allowed: 1..=10000 ms)",
            "test.toml:18:24: regions[0].nodes[2].address: \"127.0.0.1:99999\" is not a valid host:port (port out of range)",
            "test.toml:27:1: regions[2].zone: unknown key (expected one of: id, nodes)",
            "test.toml:37:14: latency[1].one_way_ms: nan is not a finite number of milliseconds",
        ]
    );
}

#[test]
fn syntax_errors_are_one_diagnostic_with_a_position() {
    let text = edited("name = \"test\"", "name = \"test");
    let diagnostics = diagnostics_of(&text);
    assert_eq!(diagnostics.len(), 1, "{diagnostics}");
    let diagnostic = diagnostics.iter().next().expect("one");
    assert_eq!(diagnostic.field_path, "syntax");
    assert_eq!(diagnostic.location.map(|location| location.line), Some(2));

    let duplicate_key = edited("epoch_ms = 10", "epoch_ms = 10\nepoch_ms = 20");
    let diagnostics = diagnostics_of(&duplicate_key);
    assert_eq!(diagnostics.len(), 1, "{diagnostics}");
    assert_eq!(
        diagnostics.to_string(),
        "test.toml:4:1: syntax: duplicate key"
    );
}

#[test]
fn an_empty_file_names_every_missing_section() {
    for text in ["", "\n\n   \n", "# only a comment\n"] {
        assert_diagnostics(
            "empty",
            text,
            &[
                ("cluster", "the required section cluster is missing"),
                ("coordinator", "the required section coordinator is missing"),
                ("regions", "the required section regions is missing"),
            ],
        );
    }
}

#[test]
fn limits_are_read_in_model_units_and_unset_ones_keep_the_defaults() {
    let topology = parse("test.toml", &format!("{VALID}{}", LIMITS)).expect("valid");
    let limits = &topology.limits;
    assert_eq!(limits.connections_per_address, Some(64));
    assert_eq!(limits.handshake_timeout_us, Some(2_500_000));
    assert_eq!(limits.keepalive_interval_us, Some(5_000_000));
    assert_eq!(limits.connection_idle_timeout_us, Some(300_000_000));
    assert_eq!(limits.request_bytes_per_caller, Some(128 * 1024 * 1024));
    assert_eq!(limits.handshakes_in_flight, None);
    assert_eq!(limits.request_bytes_per_server, None);
    let report = dsss_topology::render_report(&topology);
    assert!(
        report.contains(
            "connections per address 64, handshake timeout 2500 ms, keepalive interval 5000 \
             ms, idle connection timeout 300 s, request bytes per caller 128 MiB; the rest \
             default"
        ),
        "{report}"
    );
    let unset = parse("test.toml", VALID).expect("valid");
    assert_eq!(unset.limits, dsss_topology::LimitsSettings::default());
    assert_diagnostics(
        "an unknown limit",
        &format!("{VALID}[limits]\nconnections = 5\n"),
        &[("limits.connections", "unknown key")],
    );
}

const LIMITS: &str = "[limits]
connections_per_address = 64
handshake_timeout_ms = 2500
keepalive_interval_ms = 5000
connection_idle_timeout_s = 300
request_mb_per_caller = 128
";

#[test]
fn tokens_name_a_client_by_the_digest_of_a_secret_and_need_tls() {
    let digest = "5e".repeat(32);
    let other = "A0".repeat(32);
    let topology = parse(
        "test.toml",
        &with_grants(&format!(
            "[[tokens]]\nclient = \"alice\"\nsha256 = \"{digest}\"\n\n\
             [[tokens]]\nclient = \"alice\"\nsha256 = \"{other}\"\n"
        )),
    )
    .expect("valid tokens");
    assert_eq!(topology.tokens.len(), 2);
    assert_eq!(topology.tokens[0].client, "alice");
    assert_eq!(topology.tokens[0].sha256, [0x5e; 32]);
    assert_eq!(topology.tokens[1].sha256, [0xa0; 32]);
    let report = dsss_topology::render_report(&topology);
    assert!(
        report.contains("tokens                      2 for clients alice"),
        "{report}"
    );

    let token = |client: &str, sha256: &str| {
        with_grants(&format!(
            "[[tokens]]\nclient = {client}\nsha256 = {sha256}\n"
        ))
    };
    let cases: Vec<Case> = vec![
        (
            "a digest too short",
            token("\"alice\"", "\"abc\""),
            &[("tokens[0].sha256", "64 hexadecimal digits")],
        ),
        (
            "not hexadecimal",
            token("\"alice\"", &format!("\"{}zz\"", "0".repeat(62))),
            &[("tokens[0].sha256", "\"zz\" at offset 62 is not hexadecimal")],
        ),
        (
            "a bad client name",
            token("\"a b\"", &format!("\"{digest}\"")),
            &[("tokens[0].client", "client name")],
        ),
        (
            "a token twice",
            with_grants(&format!(
                "[[tokens]]\nclient = \"alice\"\nsha256 = \"{digest}\"\n\
                 [[tokens]]\nclient = \"bob\"\nsha256 = \"{digest}\"\n"
            )),
            &[("tokens[1].sha256", "the same token as tokens[0]")],
        ),
        (
            "no client",
            with_grants(&format!("[[tokens]]\nsha256 = \"{digest}\"\n")),
            &[("tokens[0].client", "a required key is missing")],
        ),
        (
            "without tls",
            format!("{VALID}\n[[tokens]]\nclient = \"alice\"\nsha256 = \"{digest}\"\n"),
            &[("tokens", "need a [tls] table")],
        ),
        (
            "too many",
            with_grants(
                &(0..=dsss_topology::TOKENS_MAX)
                    .map(|index| format!("[[tokens]]\nclient = \"c\"\nsha256 = \"{index:064x}\"\n"))
                    .collect::<String>(),
            ),
            &[("tokens", "1025 tokens; at most 1024")],
        ),
    ];
    for (case, text, expected) in cases {
        assert_diagnostics(case, &text, expected);
    }
}

#[test]
fn a_node_may_bind_another_address_than_the_one_it_is_reached_at() {
    let text = edited(
        r#"{ id = 12, address = "127.0.0.1:7112", data_dir = "data/a/12" }"#,
        r#"{ id = 12, address = "node-12.example:7112", listen = "0.0.0.0:7112", data_dir = "data/a/12" }"#,
    )
    .replacen(
        r#"{ id = 13, address = "127.0.0.1:7113", data_dir"#,
        r#"{ id = 13, address = "127.0.0.1:7113", listen = "0.0.0.0:7112", data_dir"#,
        1,
    );
    let topology = parse("test.toml", &text).expect("valid: bound addresses may repeat");
    let nodes = &topology.regions[0].nodes;
    assert_eq!(nodes[0].listen, None);
    assert_eq!(nodes[0].listen_address(), "127.0.0.1:7111");
    assert_eq!(nodes[1].listen.as_deref(), Some("0.0.0.0:7112"));
    assert_eq!(nodes[1].listen_address(), "0.0.0.0:7112");
    assert_eq!(nodes[1].address, "node-12.example:7112");
    let report = dsss_topology::render_report(&topology);
    assert!(
        report.contains("node-12.example:7112 (binds 0.0.0.0:7112)"),
        "{report}"
    );
    assert_diagnostics(
        "a listen address without a port",
        &edited(
            r#"{ id = 12, address = "127.0.0.1:7112", data_dir"#,
            r#"{ id = 12, address = "127.0.0.1:7112", listen = "0.0.0.0", data_dir"#,
        ),
        &[("regions[0].nodes[1].listen", "is not a valid host:port")],
    );
}
