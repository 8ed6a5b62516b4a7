//! Nodes on separate network hosts: each of three `dsss node` processes runs in a Linux network
//! namespace of its own, with its own address on a virtual switch (a bridge in a fourth
//! namespace), and binds `0.0.0.0` on the same port as the others, as machines do. A node can
//! reach its peers only at the addresses the topology advertises; the region forms, and
//! `dsss status` run from the switch's namespace, a fourth host, finds it healthy over mutual
//! TLS.
//!
//! Namespaces need root and the `ip` command (iproute2). Where either is missing the test says
//! so on standard error and passes without running the nodes, since a machine that cannot make
//! namespaces cannot run this check at all.

use std::process::{Command, Output};
use std::time::Duration;

use dsss_tests::processes::{Deadline, NodeProcesses};

/// Generous bound on every wait; nothing is asserted about speed.
const WAIT_MAX: Duration = Duration::from_secs(90);

/// The port every node binds (each in its own namespace, so they do not collide).
const PORT: u16 = 7100;

/// The private subnet of the test's virtual switch: it exists only inside the namespaces this
/// test makes, and no traffic leaves them.
const SUBNET: &str = "10.213.7";

fn ip(arguments: &[&str]) -> Output {
    Command::new("ip")
        .args(arguments)
        .output()
        .unwrap_or_else(|error| panic!("run ip {arguments:?}: {error}"))
}

fn ip_ok(arguments: &[&str]) {
    let output = ip(arguments);
    assert!(
        output.status.success(),
        "ip {}: {}",
        arguments.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The namespaces of one run, deleted when dropped (which also removes their links).
struct Namespaces {
    names: Vec<String>,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Why namespaces cannot be made here, if they cannot.
fn namespaces_unavailable() -> Option<String> {
    let probe = format!("dsss-probe-{}", std::process::id());
    match Command::new("ip").args(["netns", "add", &probe]).output() {
        Err(error) => Some(format!("the ip command is missing ({error})")),
        Ok(output) if !output.status.success() => Some(format!(
            "ip netns add failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Ok(_) => {
            let _ = ip(&["netns", "del", &probe]);
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_in_separate_network_namespaces_form_a_region_through_advertised_addresses() {
    if let Some(reason) = namespaces_unavailable() {
        eprintln!("skipped: network namespaces are not available here: {reason}");
        return;
    }
    let tag = std::process::id() % 100_000;
    let switch = format!("dsss-sw-{tag}");
    let hosts: Vec<String> = (1..=3).map(|host| format!("dsss-h{host}-{tag}")).collect();
    let namespaces = Namespaces {
        names: std::iter::once(switch.clone())
            .chain(hosts.iter().cloned())
            .collect(),
    };
    for name in &namespaces.names {
        ip_ok(&["netns", "add", name]);
        ip_ok(&["-n", name, "link", "set", "lo", "up"]);
    }
    ip_ok(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
    ip_ok(&[
        "-n",
        &switch,
        "addr",
        "add",
        &format!("{SUBNET}.254/24"),
        "dev",
        "br0",
    ]);
    ip_ok(&["-n", &switch, "link", "set", "br0", "up"]);
    for (index, host) in hosts.iter().enumerate() {
        let number = index + 1;
        // The pair is made in the host's namespace: no link ever appears in the machine's own.
        let outside = format!("sw{number}");
        ip_ok(&[
            "-n", host, "link", "add", "eth0", "type", "veth", "peer", "name", &outside,
        ]);
        ip_ok(&["-n", host, "link", "set", &outside, "netns", &switch]);
        ip_ok(&["-n", &switch, "link", "set", &outside, "master", "br0"]);
        ip_ok(&["-n", &switch, "link", "set", &outside, "up"]);
        ip_ok(&[
            "-n",
            host,
            "addr",
            "add",
            &format!("{SUBNET}.{number}/24"),
            "dev",
            "eth0",
        ]);
        ip_ok(&["-n", host, "link", "set", "eth0", "up"]);
    }

    let nodes: Vec<String> = (1..=3)
        .map(|node_id| {
            format!(
                "  {{ id = {node_id}, address = \"{SUBNET}.{node_id}:{PORT}\", listen = \
                 \"0.0.0.0:{PORT}\", data_dir = \"data/node-{node_id}\" }},"
            )
        })
        .collect();
    let text = format!(
        "[cluster]\nname = \"hosts\"\nepoch_ms = 10\nsuspicion_timeout_ms = 2000\n\
         max_clock_skew_ms = 250\nintra_region_delay_ms = 0.2\n\n\
         [tls]\nca_cert = \"certs/ca.crt\"\ncert_dir = \"certs\"\n\n\
         [coordinator]\nreplicas = [1]\npreferred_leader = 1\n\n\
         [[regions]]\nid = \"region-a\"\nnodes = [\n{}\n]\n",
        nodes.join("\n")
    );
    let mut processes = NodeProcesses::new(&text);
    for (index, host) in hosts.iter().enumerate() {
        processes.start_wrapped(index as u64 + 1, &["ip", "netns", "exec", host], &[]);
    }
    let topology = processes.topology().to_str().expect("UTF-8").to_owned();
    // Every call of the test goes from inside the namespaces: the machine's own namespace has
    // no route to the switch's subnet, and nothing is sent toward it from there.
    let deadline = Deadline::new(
        "dsss status from the switch's namespace finds the region healthy",
        WAIT_MAX,
    );
    loop {
        let output = Command::new("ip")
            .args(["netns", "exec", &switch])
            .arg(dsss_tests::dsss_binary())
            .args(["status", "--topology", &topology])
            .current_dir(processes.directory())
            .output()
            .expect("run dsss status in the switch's namespace");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.code() == Some(0) {
            assert!(stdout.contains(&format!("{SUBNET}.1:{PORT}")), "{stdout}");
            assert!(stdout.contains("region region-a: leader"), "{stdout}");
            eprintln!("dsss status from the switch's namespace:\n{stdout}");
            break;
        }
        if deadline.expired() {
            processes.print_logs();
            panic!("the region never formed across the namespaces; last status:\n{stdout}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(processes);
    drop(namespaces);
}
