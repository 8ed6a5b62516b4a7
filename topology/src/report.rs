//! A plain-text report of a topology, for `dsss topology show`.

use crate::model::{Link, Topology};
use crate::parse::format_ms;

/// Columns of a table are separated by this many spaces.
const COLUMN_GAP: &str = "  ";

/// Renders a readable report: the cluster settings, every region with its nodes (marking the
/// coordinator replicas and the preferred leader), the one-way latency matrix as a square table
/// in milliseconds with jitter, and the line `d_max = X ms (between A and B)`.
pub fn render_report(topology: &Topology) -> String {
    let mut report = String::new();
    render_cluster(topology, &mut report);
    report.push('\n');
    render_regions(topology, &mut report);
    report.push('\n');
    render_latency(topology, &mut report);
    report.push('\n');
    report.push_str(&d_max_line(topology));
    report.push('\n');
    report
}

/// The line `d_max = X ms (between A and B)`, naming the first pair of regions with the
/// largest one-way delay, or the single region when there is only one.
pub fn d_max_line(topology: &Topology) -> String {
    let d_max = format_ms(topology.latency.d_max_us());
    match topology.latency.d_max_pair() {
        Some((region_a_index, region_b_index)) => format!(
            "d_max = {d_max} ms (between {} and {})",
            topology.regions[region_a_index].id, topology.regions[region_b_index].id
        ),
        None => match topology.regions.first() {
            Some(region) => format!(
                "d_max = {d_max} ms (within {}, the only region: its intra-region delay)",
                region.id
            ),
            None => format!("d_max = {d_max} ms (no regions)"),
        },
    }
}

/// The grants in one line: who may do what with which objects.
fn grants_line(topology: &Topology) -> String {
    if topology.grants.is_empty() {
        return "none: every client may call, read and upload any object".to_owned();
    }
    topology
        .grants
        .iter()
        .map(|grant| {
            let rights: Vec<&str> = grant.rights.iter().map(|right| right.name()).collect();
            let objects: Vec<String> = grant
                .objects
                .iter()
                .map(|prefix| {
                    if prefix.is_empty() {
                        "every object".to_owned()
                    } else {
                        format!("{prefix}*")
                    }
                })
                .collect();
            format!(
                "client {} may {} {}",
                grant.client,
                rights.join("+"),
                objects.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Which clients bearer tokens stand for.
fn tokens_line(topology: &Topology) -> String {
    if topology.tokens.is_empty() {
        return "none: clients are known by their certificates".to_owned();
    }
    let mut clients: Vec<&str> = topology
        .tokens
        .iter()
        .map(|token| token.client.as_str())
        .collect();
    clients.sort_unstable();
    clients.dedup();
    format!(
        "{} for clients {}",
        topology.tokens.len(),
        clients.join(", ")
    )
}

/// The `[limits]` the file sets; the rest keep each node's defaults (`dsss node --help`).
fn limits_line(topology: &Topology) -> String {
    let limits = &topology.limits;
    const MIB: u64 = 1024 * 1024;
    let set: Vec<String> = [
        (
            "connections per address",
            limits.connections_per_address,
            1,
            "",
        ),
        ("handshakes in flight", limits.handshakes_in_flight, 1, ""),
        (
            "handshake timeout",
            limits.handshake_timeout_us,
            1_000,
            " ms",
        ),
        (
            "keepalive interval",
            limits.keepalive_interval_us,
            1_000,
            " ms",
        ),
        (
            "keepalive timeout",
            limits.keepalive_timeout_us,
            1_000,
            " ms",
        ),
        (
            "idle connection timeout",
            limits.connection_idle_timeout_us,
            1_000_000,
            " s",
        ),
        (
            "streams per connection",
            limits.streams_per_connection,
            1,
            "",
        ),
        (
            "request bytes per connection",
            limits.request_bytes_per_connection,
            MIB,
            " MiB",
        ),
        (
            "request bytes per caller",
            limits.request_bytes_per_caller,
            MIB,
            " MiB",
        ),
        (
            "request bytes per node",
            limits.request_bytes_per_server,
            MIB,
            " MiB",
        ),
    ]
    .into_iter()
    .filter_map(|(name, value, divisor, unit)| {
        value.map(|value| format!("{name} {}{unit}", value / divisor))
    })
    .collect();
    if set.is_empty() {
        "the defaults (no [limits])".to_owned()
    } else {
        format!("{}; the rest default", set.join(", "))
    }
}

fn render_cluster(topology: &Topology, report: &mut String) {
    let cluster = &topology.cluster;
    let tls = match &topology.tls {
        Some(tls) => format!(
            "mutual TLS: CA {}, node certificates {} and keys {}, client certificate {} and key {}",
            tls.ca_cert.display(),
            tls.cert_dir.join("node-N.crt").display(),
            tls.cert_dir.join("node-N.key").display(),
            tls.client_cert.display(),
            tls.client_key.display()
        ),
        None => "none ([tls] absent: nodes start only with --insecure)".to_owned(),
    };
    let replicas: Vec<String> = topology
        .coordinator
        .replicas
        .iter()
        .map(u64::to_string)
        .collect();
    let rows = vec![
        vec![
            "epoch".to_owned(),
            format!("{} ms", format_ms(cluster.epoch_us)),
        ],
        vec![
            "suspicion timeout".to_owned(),
            format!("{} ms", format_ms(cluster.suspicion_timeout_us)),
        ],
        vec![
            "max clock skew".to_owned(),
            format!("{} ms", format_ms(cluster.max_clock_skew_us)),
        ],
        vec![
            "intra-region delay".to_owned(),
            format_link_ms(Link {
                one_way_us: cluster.intra_region_delay_us,
                jitter_us: cluster.intra_region_jitter_us,
            }) + " ms",
        ],
        vec![
            "region log quota".to_owned(),
            format!("{} MiB", cluster.region_log_quota_bytes / (1024 * 1024)),
        ],
        vec![
            "release without checkpoint".to_owned(),
            release_rule(cluster),
        ],
        vec!["tls".to_owned(), tls],
        vec!["grants".to_owned(), grants_line(topology)],
        vec!["tokens".to_owned(), tokens_line(topology)],
        vec!["limits".to_owned(), limits_line(topology)],
        vec![
            "coordinator".to_owned(),
            format!(
                "replicas on nodes {}; preferred leader {}",
                replicas.join(", "),
                topology.coordinator.preferred_leader
            ),
        ],
    ];
    report.push_str(&format!("cluster {:?}\n", cluster.name));
    report.push_str(&render_table(&rows, "  "));
}

fn render_regions(topology: &Topology, report: &mut String) {
    report.push_str(&format!(
        "regions: {}, nodes: {}\n",
        topology.regions.len(),
        topology.node_count()
    ));
    let mut rows = vec![vec![
        "region".to_owned(),
        "node".to_owned(),
        "address".to_owned(),
        "data dir".to_owned(),
        "coordinator".to_owned(),
    ]];
    for region in &topology.regions {
        for (node_index, node) in region.nodes.iter().enumerate() {
            let role = if node.id == topology.coordinator.preferred_leader {
                "replica, preferred leader"
            } else if topology.is_coordinator_replica(node.id) {
                "replica"
            } else {
                ""
            };
            let region_cell = if node_index == 0 {
                region.id.clone()
            } else {
                String::new()
            };
            let mut address = match &node.listen {
                Some(listen) => format!("{} (binds {listen})", node.address),
                None => node.address.clone(),
            };
            if let Some(metrics) = &node.metrics_listen {
                address.push_str(&format!(", metrics on {metrics}"));
            }
            rows.push(vec![
                region_cell,
                node.id.to_string(),
                address,
                node.data_dir.display().to_string(),
                role.to_owned(),
            ]);
        }
    }
    report.push_str(&render_table(&rows, "  "));
}

fn render_latency(topology: &Topology, report: &mut String) {
    report
        .push_str("one-way latency in ms (+- jitter); the diagonal is the delay within a region\n");
    let mut header = vec![String::new()];
    header.extend(topology.regions.iter().map(|region| region.id.clone()));
    let mut rows = vec![header];
    for (region_a_index, region) in topology.regions.iter().enumerate() {
        let mut row = vec![region.id.clone()];
        for region_b_index in 0..topology.regions.len() {
            row.push(format_link_ms(
                topology.latency.link(region_a_index, region_b_index),
            ));
        }
        rows.push(row);
    }
    report.push_str(&render_table(&rows, "  "));
}

/// `20 +- 0.4`, or just `20` without jitter.
fn format_link_ms(link: Link) -> String {
    if link.jitter_us == 0 {
        format_ms(link.one_way_us)
    } else {
        format!(
            "{} +- {}",
            format_ms(link.one_way_us),
            format_ms(link.jitter_us)
        )
    }
}

/// Left-aligned columns, each as wide as its widest cell, one line per row, with trailing
/// spaces removed.
fn render_table(rows: &[Vec<String>], indent: &str) -> String {
    let column_count = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..column_count)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut table = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (column, cell) in row.iter().enumerate() {
            if column > 0 {
                line.push_str(COLUMN_GAP);
            }
            line.push_str(cell);
            let padding = widths[column].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', padding));
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

/// The region's rule for releasing records that no checkpoint covers, in words.
fn release_rule(cluster: &crate::ClusterSettings) -> String {
    let share = match cluster.region_log_release_share_percent {
        0 => None,
        percent => Some(format!("past {percent}% of the quota")),
    };
    let age = match cluster.region_log_release_age_us / 1_000_000 {
        0 => None,
        seconds if seconds % 86_400 == 0 => Some(format!("after {} days", seconds / 86_400)),
        seconds if seconds % 3_600 == 0 => Some(format!("after {} h", seconds / 3_600)),
        seconds => Some(format!("after {seconds} s")),
    };
    match (share, age) {
        (None, None) => "never (the quota refuses writes)".to_owned(),
        (Some(rule), None) | (None, Some(rule)) => rule,
        (Some(share), Some(age)) => format!("{share}, or {age}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    const TWO_REGIONS: &str = r#"
[cluster]
name = "pair"
epoch_ms = 5
suspicion_timeout_ms = 1000
max_clock_skew_ms = 100
intra_region_delay_ms = 0.25

[tls]
ca_cert = "certs/ca.crt"
cert_dir = "certs"

[coordinator]
replicas = [2]
preferred_leader = 2

[[regions]]
id = "north"
nodes = [{ id = 1, address = "127.0.0.1:7001", data_dir = "data/n1" }]

[[regions]]
id = "south"
nodes = [{ id = 2, address = "127.0.0.1:7002", data_dir = "data/s2" }]

[[latency]]
between = ["south", "north"]
one_way_ms = 12.5
jitter_ms = 0.5
"#;

    #[test]
    fn report_shows_settings_nodes_matrix_and_d_max() {
        let topology = parse("pair.toml", TWO_REGIONS).expect("valid topology");
        let report = render_report(&topology);
        let expected = r#"cluster "pair"
  epoch                       5 ms
  suspicion timeout           1000 ms
  max clock skew              100 ms
  intra-region delay          0.25 ms
  region log quota            1024 MiB
  release without checkpoint  past 75% of the quota, or after 7 days
  tls                         mutual TLS: CA certs/ca.crt, node certificates certs/node-N.crt and keys certs/node-N.key, client certificate certs/client.crt and key certs/client.key
  grants                      none: every client may call, read and upload any object
  tokens                      none: clients are known by their certificates
  limits                      the defaults (no [limits])
  coordinator                 replicas on nodes 2; preferred leader 2

regions: 2, nodes: 2
  region  node  address         data dir  coordinator
  north   1     127.0.0.1:7001  data/n1
  south   2     127.0.0.1:7002  data/s2   replica, preferred leader

one-way latency in ms (+- jitter); the diagonal is the delay within a region
         north        south
  north  0.25         12.5 +- 0.5
  south  12.5 +- 0.5  0.25

d_max = 12.5 ms (between north and south)
"#;
        assert_eq!(report, expected);
    }

    #[test]
    fn d_max_line_of_a_single_region_names_it() {
        let single = TWO_REGIONS
            .replace("replicas = [2]", "replicas = [1]")
            .replace("preferred_leader = 2", "preferred_leader = 1");
        let single = single
            .split("[[regions]]\nid = \"south\"")
            .next()
            .expect("split keeps the head")
            .to_owned();
        let topology = parse("single.toml", &single).expect("valid topology");
        assert_eq!(
            d_max_line(&topology),
            "d_max = 0.25 ms (within north, the only region: its intra-region delay)"
        );
    }

    #[test]
    fn tables_align_columns_by_characters() {
        let rows = vec![
            vec!["é".to_owned(), "x".to_owned()],
            vec!["abc".to_owned(), "y".to_owned()],
        ];
        assert_eq!(render_table(&rows, ""), "é    x\nabc  y\n");
    }
}
