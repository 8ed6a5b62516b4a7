//! The live view `dsss up` shows after its demo, until Ctrl-C: the demo's bank keeps making one
//! global transfer per region every [`CALL_INTERVAL`], and every [`VIEW_INTERVAL`] a line per
//! region says how many calls completed per second, their p50 and p99 latency, how many failed,
//! how many epochs the region's log trails the coordinator's newest, and which of its nodes run.
//! Kill a node from another terminal (`dsss kill-node 12`) and the view shows the failover: the
//! node marked down, a latency spike while the region elects a leader, calls going on.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsss::region_client::RegionConnections;
use dsss_examples::Bank;
use dsss_topology::Topology;
use dsss_wire::proto;
use dsss_wire::tls::Security;

/// How often each region's demo instance makes a transfer.
pub const CALL_INTERVAL: Duration = Duration::from_millis(500);

/// How often the view prints.
pub const VIEW_INTERVAL: Duration = Duration::from_secs(2);

/// The demo's bank handle in one region.
pub type BankHandle = <Bank as dsss::SharedObject>::Handle;

/// What one region's calls did since the last line.
#[derive(Debug, Default)]
struct Window {
    latencies: Vec<Duration>,
    failed: u64,
    last_error: Option<String>,
}

/// One region's workload and connections.
struct RegionLive {
    region: String,
    node_ids: Vec<u64>,
    connections: RegionConnections,
    window: Arc<Mutex<Window>>,
}

/// Keeps every region's transfers going while the returned future runs.
fn start_calls(
    banks: &[(String, Arc<BankHandle>)],
) -> (Vec<Arc<Mutex<Window>>>, Vec<tokio::task::JoinHandle<()>>) {
    let mut windows = Vec::new();
    let mut tasks = Vec::new();
    for (index, (region, bank)) in banks.iter().enumerate() {
        let window = Arc::new(Mutex::new(Window::default()));
        let payee = banks[(index + 1) % banks.len()].0.clone();
        let (region, bank, recorded) = (region.clone(), Arc::clone(bank), Arc::clone(&window));
        tasks.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(CALL_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let started = Instant::now();
                // Every region pays the next one 1 each round: the balances stay where the demo
                // left them.
                let outcome = bank.transfer(region.clone(), payee.clone(), 1).await;
                let elapsed = started.elapsed();
                let mut window = recorded.lock().unwrap_or_else(|poison| poison.into_inner());
                match outcome {
                    Ok(_) => window.latencies.push(elapsed),
                    Err(error) => {
                        window.failed += 1;
                        window.last_error = Some(error.to_string());
                    }
                }
            }
        }));
        windows.push(window);
    }
    (windows, tasks)
}

/// The `quantile` (0..=1) of `sorted` latencies, in milliseconds.
fn quantile_ms(sorted: &[Duration], quantile: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 * quantile).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1].as_secs_f64() * 1_000.0)
}

/// The newest sealed epoch a region's log holds, from the first node that says it leads.
async fn region_sealed_epoch(connections: &RegionConnections) -> Option<u64> {
    for node_id in connections.node_ids() {
        if let Ok(status) = connections.status(node_id).await
            && status.role == proto::NodeRole::Leader as i32
        {
            return Some(status.sealed_epoch_number);
        }
    }
    None
}

/// Runs the view until the future is dropped (Ctrl-C), starting again the nodes that
/// `dsss restart-node` asks for between lines.
pub async fn run(
    topology: &Topology,
    security: &Security,
    banks: &[(String, Arc<BankHandle>)],
    mut between_lines: impl FnMut(&mut dyn Write) -> Vec<(u64, bool)>,
    stdout: &mut dyn Write,
) {
    let (windows, tasks) = start_calls(banks);
    // The tasks end with the view.
    struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            for task in &self.0 {
                task.abort();
            }
        }
    }
    let _tasks = AbortOnDrop(tasks);
    let mut regions = Vec::new();
    for (region, window) in topology.regions.iter().zip(windows) {
        let members: Vec<(u64, String)> = region
            .nodes
            .iter()
            .map(|node| (node.id, node.address.clone()))
            .collect();
        let Ok(connections) = RegionConnections::with_security(&members, security) else {
            return;
        };
        regions.push(RegionLive {
            region: region.id.clone(),
            node_ids: region.nodes.iter().map(|node| node.id).collect(),
            connections,
            window,
        });
    }
    let replicas: Vec<String> = topology
        .coordinator
        .replicas
        .iter()
        .filter_map(|replica| {
            topology
                .nodes()
                .find(|(_, node)| node.id == *replica)
                .map(|(_, node)| node.address.clone())
        })
        .collect();
    let _ = writeln!(
        stdout,
        "\nLive view: each region's demo instance makes a global transfer every {} ms; a line per \
         region every {} s. In another terminal: `dsss status`, `dsss kill-node 12`, \
         `dsss restart-node 12`, `dsss down`. Ctrl-C stops every node.",
        CALL_INTERVAL.as_millis(),
        VIEW_INTERVAL.as_secs()
    );
    let _ = writeln!(
        stdout,
        "  {:>8}  {:<16} {:>8} {:>8} {:>8} {:>7} {:>10}  nodes (x: down)",
        "time", "region", "calls/s", "p50 ms", "p99 ms", "failed", "epoch lag"
    );
    let _ = stdout.flush();
    let started = Instant::now();
    let mut interval = tokio::time::interval(VIEW_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let running = between_lines(stdout);
        let mut newest_epoch = None;
        for address in &replicas {
            if let Ok(status) = crate::status_command::ask_replica(address, security).await {
                newest_epoch = newest_epoch.max(Some(status.newest_epoch));
            }
        }
        let elapsed = started.elapsed().as_secs();
        for (index, region) in regions.iter().enumerate() {
            let window = std::mem::take(
                &mut *region
                    .window
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner()),
            );
            let mut latencies = window.latencies;
            latencies.sort_unstable();
            let format_ms =
                |value: Option<f64>| value.map_or("-".to_owned(), |ms| format!("{ms:.1}"));
            let lag = match (newest_epoch, region_sealed_epoch(&region.connections).await) {
                (Some(newest), Some(sealed)) => newest.saturating_sub(sealed).to_string(),
                (_, None) => "no leader".to_owned(),
                (None, _) => "-".to_owned(),
            };
            let nodes: Vec<String> = region
                .node_ids
                .iter()
                .map(|node_id| {
                    let up = running
                        .iter()
                        .find(|(id, _)| id == node_id)
                        .is_none_or(|(_, up)| *up);
                    if up {
                        node_id.to_string()
                    } else {
                        format!("{node_id}x")
                    }
                })
                .collect();
            let time = if index == 0 {
                format!(
                    "{:02}:{:02}:{:02}",
                    elapsed / 3_600,
                    elapsed / 60 % 60,
                    elapsed % 60
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                stdout,
                "  {time:>8}  {:<16} {:>8.1} {:>8} {:>8} {:>7} {:>10}  {}{}",
                region.region,
                latencies.len() as f64 / VIEW_INTERVAL.as_secs_f64(),
                format_ms(quantile_ms(&latencies, 0.5)),
                format_ms(quantile_ms(&latencies, 0.99)),
                window.failed,
                lag,
                nodes.join(" "),
                window
                    .last_error
                    .map(|error| format!("  (last failure: {error})"))
                    .unwrap_or_default()
            );
        }
        let _ = stdout.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_rank_that_covers_the_share() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&sorted, 0.5), Some(50.0));
        assert_eq!(quantile_ms(&sorted, 0.99), Some(99.0));
        assert_eq!(quantile_ms(&sorted[..1], 0.99), Some(1.0));
        assert_eq!(quantile_ms(&[], 0.5), None);
    }
}
