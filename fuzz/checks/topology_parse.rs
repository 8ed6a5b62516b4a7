//! The topology parser never panics: any text parses into a validated topology or returns
//! diagnostics, each placed inside the text. A topology that parses can be reported on and
//! queried.
//!
//! The input is the file's text (bytes that are not UTF-8 are replaced, as the parser only
//! takes text; `dsss_topology::load` refuses non-UTF-8 files before parsing).
//!
//! Shared by the fuzz target `topology_parse` and the corpus replay in
//! `topology/tests/fuzz_corpus.rs`.

use dsss_topology::{DIAGNOSTICS_MAX, Topology};

fn query(topology: &Topology) {
    let _ = dsss_topology::render_report(topology);
    let _ = dsss_topology::d_max_line(topology);
    let _ = topology.latency.d_max_us();
    let node_ids: Vec<u64> = topology.nodes().map(|(_, node)| node.id).collect();
    assert_eq!(node_ids.len(), topology.node_count());
    for &node_a in &node_ids {
        assert!(topology.node(node_a).is_some(), "node {node_a} is listed");
        assert!(
            topology.region_of(node_a).is_some(),
            "node {node_a} has a region"
        );
        let _ = topology.is_coordinator_replica(node_a);
        for &node_b in &node_ids {
            assert!(
                topology.link_between_nodes(node_a, node_b).is_some(),
                "no link between nodes {node_a} and {node_b}"
            );
        }
    }
}

/// Parses the input as a topology file.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match dsss_topology::parse("fuzz.toml", &text) {
        Ok(topology) => query(&topology),
        Err(diagnostics) => {
            assert!(
                !diagnostics.is_empty(),
                "a refused topology names no problem"
            );
            assert!(diagnostics.len() <= DIAGNOSTICS_MAX);
            let lines = text.split('\n').count();
            for diagnostic in diagnostics.iter() {
                assert!(!diagnostic.message.is_empty(), "{diagnostic:?}");
                if let Some(location) = diagnostic.location {
                    assert!(
                        location.line >= 1 && location.line <= lines && location.column >= 1,
                        "{diagnostic:?} lies outside the {lines} lines of the text"
                    );
                }
            }
            let _ = diagnostics.to_string();
        }
    }
}
