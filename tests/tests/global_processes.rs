//! Three regions of three `dsss node --emulate-wan` OS processes on loopback, laid out like
//! `topology/examples/local.toml` (one coordinator replica per region, its latency matrix),
//! under concurrent global calls from every region, with the coordinator leader killed by
//! SIGKILL mid-load and restarted (leadership then returns to it, the preferred replica). Reference: docs/design.md section 1 (durability, exactly once,
//! one order), section 2 (the global tier: sealed epochs appended to every region's log, a
//! coordinator leader loss is a raft election) and section 6 (how each guarantee is checked).
//!
//! Build the binary first (`cargo build --workspace`, or `cargo test --workspace`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use dsss::region_client::{Call, ClientError, RegionClient, RegionConnections};
use dsss_tests::processes::{
    Deadline, NodeProcesses, acknowledged_counts, local_topology_on_free_ports,
    wait_for_acknowledgements,
};
use dsss_wire::Scope;
use dsss_wire::grpc::{VersionedChannel, coordinator_client};
use dsss_wire::proto::coordinator_client::CoordinatorClient;
use dsss_wire::proto::{self, log_entry};
use tokio::time::{Instant, sleep};
use tonic::Request;
use tonic::transport::Endpoint;

/// Concurrent clients in each region.
const CLIENTS_PER_REGION: u64 = 3;

/// The most calls one client makes: the run is bounded in count as well as in time.
const CALLS_PER_CLIENT_MAX: u64 = 2_000;

/// The pause between two calls of one client, which keeps the logs of the run (and the load
/// on a small machine running nine nodes) moderate.
const CALL_PAUSE: Duration = Duration::from_millis(10);

/// How long one attempt of a call may take before the client tries another member.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the client retries one call before it hands back; the test then retries the call
/// again with the same sequence unless the load is over.
const PROPOSE_TIME: Duration = Duration::from_secs(5);

/// Acknowledgements every client must have before the coordinator leader is killed, and again
/// after the kill and after the restart.
const ACKS_PER_PHASE: usize = 10;

/// How long the load keeps running after the kill before the killed node is restarted.
const LOAD_AFTER_KILL: Duration = Duration::from_secs(3);

/// Generous bound on any one wait of the test (leaders elected, epochs sealed, a node caught
/// up). The test asserts nothing about how fast things happen, only that they happen within
/// this.
const WAIT_MAX: Duration = Duration::from_secs(45);

/// How long reading one piece of a log through Subscribe may take.
const READ_WAIT_MAX: Duration = Duration::from_secs(20);

/// How long connecting to a coordinator replica may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The test's cluster: the local topology with free loopback ports, its processes, and
/// connections to every region and coordinator replica.
struct GlobalCluster {
    processes: NodeProcesses,
    regions: Vec<RegionUnderTest>,
    replicas: Vec<(u64, CoordinatorClient<VersionedChannel>)>,
}

/// One region of the cluster.
struct RegionUnderTest {
    id: String,
    node_ids: Vec<u64>,
    connections: RegionConnections,
}

impl GlobalCluster {
    /// Writes `local.toml` with every node on a free loopback port into a temporary directory
    /// (its relative data directories resolve there).
    fn new() -> Self {
        Self::with_coordinator_settings("")
    }

    /// [`GlobalCluster::new`] with `extra` lines added to the topology's `[coordinator]`.
    fn with_coordinator_settings(extra: &str) -> Self {
        Self::with_settings("", extra)
    }

    /// [`GlobalCluster::new`] with `cluster_extra` lines added to the topology's `[cluster]`
    /// and `coordinator_extra` lines to its `[coordinator]`.
    fn with_settings(cluster_extra: &str, coordinator_extra: &str) -> Self {
        let (text, _) = local_topology_on_free_ports();
        let text = text
            .replacen("[cluster]\n", &format!("[cluster]\n{cluster_extra}"), 1)
            .replacen(
                "[coordinator]\n",
                &format!("[coordinator]\n{coordinator_extra}"),
                1,
            );
        let processes = NodeProcesses::new(&text);
        let topology = processes.topology_model().clone();
        let security = processes.client_security();
        let admin = processes.admin_security();
        assert_eq!(topology.regions.len(), 3, "the test runs three regions");
        let regions = topology
            .regions
            .iter()
            .map(|region| {
                let members: Vec<(u64, String)> = region
                    .nodes
                    .iter()
                    .map(|node| (node.id, node.address.clone()))
                    .collect();
                RegionUnderTest {
                    id: region.id.clone(),
                    node_ids: members.iter().map(|(node_id, _)| *node_id).collect(),
                    connections: RegionConnections::with_security(&members, &security)
                        .expect("valid members"),
                }
            })
            .collect();
        let replicas = topology
            .nodes()
            .filter(|(_, node)| topology.is_coordinator_replica(node.id))
            .map(|(_, node)| {
                let endpoint = Endpoint::from_shared(format!("http://{}", node.address))
                    .expect("a valid address")
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true);
                // The barrier read the test probes the coordinator with is an operator's.
                (node.id, coordinator_client(admin.connect_lazy(endpoint)))
            })
            .collect();
        GlobalCluster {
            processes,
            regions,
            replicas,
        }
    }

    fn node_ids(&self) -> Vec<u64> {
        self.regions
            .iter()
            .flat_map(|region| region.node_ids.iter().copied())
            .collect()
    }

    fn start(&mut self, node_id: u64) {
        self.processes.start(node_id, &["--emulate-wan"]);
    }

    fn region_of(&self, node_id: u64) -> &RegionUnderTest {
        self.regions
            .iter()
            .find(|region| region.node_ids.contains(&node_id))
            .expect("every node is in a region")
    }

    /// The coordinator replica among `candidates` that answers ReadSealedEpoch as leader with
    /// a sealed epoch, if any.
    async fn coordinator_leader(&self, candidates: &[u64]) -> Option<u64> {
        for (node_id, client) in &self.replicas {
            if !candidates.contains(node_id) {
                continue;
            }
            // Every message between nodes carries its sender's clock; the replicas refuse a
            // read without one.
            let physical_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_micros() as u64);
            let mut request = Request::new(proto::ReadSealedEpochRequest {
                sender_node_id: 0,
                sender_time: Some(proto::Timestamp {
                    physical_us,
                    logical: 0,
                }),
            });
            request.set_timeout(CONNECT_TIMEOUT);
            if let Ok(reply) = client.clone().read_sealed_epoch(request).await {
                let reply = reply.into_inner();
                if reply.not_leader.is_none() && reply.epoch_number > 0 {
                    return Some(*node_id);
                }
            }
        }
        None
    }

    async fn wait_for_coordinator_leader(&self, what: &'static str, candidates: &[u64]) -> u64 {
        let deadline = Deadline::new(what, WAIT_MAX);
        loop {
            if let Some(leader) = self.coordinator_leader(candidates).await {
                return leader;
            }
            deadline.check().await;
        }
    }
}

/// Held by each test of this file for its whole run: each test runs nine node processes, and
/// three clusters at once on a machine of two cores starved them until a region's catch-up
/// after its return did not finish within the tests' waits.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The status of a region's leader, when one member reports itself leader.
/// The status of each of `nodes` of `region` that answers.
async fn statuses_of(region: &RegionUnderTest, nodes: &[u64]) -> Vec<proto::StatusReply> {
    let mut statuses = Vec::new();
    for &node_id in nodes {
        if let Ok(status) = region.connections.status(node_id).await {
            statuses.push(status);
        }
    }
    statuses
}

async fn region_leader_status(region: &RegionUnderTest) -> Option<proto::StatusReply> {
    for &node_id in &region.node_ids {
        if let Ok(status) = region.connections.status(node_id).await
            && status.role == proto::NodeRole::Leader as i32
            && status.node_id == status.leader_node_id
        {
            return Some(status);
        }
    }
    None
}

/// Waits until every region has a leader whose log holds sealed epochs.
async fn wait_until_ready(regions: &[RegionUnderTest]) {
    let deadline = Deadline::new(
        "every region has a leader and appends sealed epochs",
        WAIT_MAX,
    );
    loop {
        let mut ready = 0;
        for region in regions {
            if let Some(status) = region_leader_status(region).await
                && status.sealed_epoch_number > 0
            {
                ready += 1;
            }
        }
        if ready == regions.len() {
            return;
        }
        deadline.check().await;
    }
}

/// One acknowledged call.
#[derive(Clone, Copy, Debug)]
struct Acknowledged {
    sequence: u64,
    /// Where the call sits, pending, in its own region's log.
    position: u64,
    /// When the client first proposed the call.
    started: Instant,
}

/// What one client saw.
#[derive(Debug)]
struct ClientHistory {
    /// The id the region keeps the client's session under: what its records carry.
    client_id: u64,
    /// The id the client chose, which names its region and its calls' arguments.
    chosen_id: u64,
    region_index: usize,
    acknowledged: Vec<Acknowledged>,
    /// A call still being retried when the load stopped: the region may hold it once or not
    /// at all.
    unacknowledged: Option<(u64, ClientError)>,
    /// A call the region refused outright, which no call of this test should be.
    refused: Option<(u64, ClientError)>,
}

/// Client ids are numbered per region: the clients of region index i have ids from
/// `(i + 1) * CLIENT_IDS_PER_REGION + 1`, so that a record's client names its region.
const CLIENT_IDS_PER_REGION: u64 = 100;

fn client_id_of(region_index: usize, index: u64) -> u64 {
    (region_index as u64 + 1) * CLIENT_IDS_PER_REGION + index + 1
}

fn region_index_of_client(client_id: u64) -> Option<usize> {
    (client_id / CLIENT_IDS_PER_REGION)
        .checked_sub(1)
        .map(|index| index as usize)
}

fn global_call(client_id: u64, sequence: u64) -> Call {
    Call {
        object_id: "global/counter".to_owned(),
        method_id: 1,
        arguments: format!("client {client_id} call {sequence}").into_bytes(),
        scope: Scope::Global,
    }
}

/// Closed-loop global clients ([`run_client`]) running until [`ClientLoad::stop`].
struct ClientLoad {
    stopping: Arc<AtomicBool>,
    /// Each client's acknowledged calls so far, in start order.
    counters: Vec<Arc<AtomicUsize>>,
    clients: Vec<tokio::task::JoinHandle<ClientHistory>>,
}

impl ClientLoad {
    /// Starts `per_region` clients in each region of `region_indexes`, spread over its members.
    fn start(cluster: &GlobalCluster, region_indexes: &[usize], per_region: u64) -> ClientLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let mut counters = Vec::new();
        let mut clients = Vec::new();
        for &region_index in region_indexes {
            let region = &cluster.regions[region_index];
            for index in 0..per_region {
                let counter = Arc::new(AtomicUsize::new(0));
                counters.push(counter.clone());
                let plan = ClientPlan {
                    connections: region.connections.clone(),
                    client_id: client_id_of(region_index, index),
                    region_index,
                    first_member: region.node_ids[index as usize % region.node_ids.len()],
                };
                clients.push(tokio::spawn(run_client(plan, stop.clone(), counter)));
            }
        }
        ClientLoad {
            stopping: stop,
            counters,
            clients,
        }
    }

    /// Stops the clients and returns their histories once each ended.
    async fn stop(self) -> Vec<ClientHistory> {
        self.stopping.store(true, Ordering::SeqCst);
        let mut histories = Vec::new();
        for client in self.clients {
            histories.push(client.await.expect("client task"));
        }
        histories
    }
}

struct ClientPlan {
    connections: RegionConnections,
    client_id: u64,
    region_index: usize,
    first_member: u64,
}

/// Makes calls one after the other, each retried with the same sequence until it is
/// acknowledged, until `stop` is set or [`CALLS_PER_CLIENT_MAX`] calls are made.
async fn run_client(
    plan: ClientPlan,
    stop: Arc<AtomicBool>,
    acknowledged_count: Arc<AtomicUsize>,
) -> ClientHistory {
    let mut client = RegionClient::new(plan.connections, plan.client_id)
        .with_timeouts(ATTEMPT_TIMEOUT, PROPOSE_TIME);
    client
        .prefer(plan.first_member)
        .expect("the first member is in the region");
    let mut history = ClientHistory {
        client_id: plan.client_id,
        chosen_id: plan.client_id,
        region_index: plan.region_index,
        acknowledged: Vec::new(),
        unacknowledged: None,
        refused: None,
    };
    'calls: for sequence in 1..=CALLS_PER_CLIENT_MAX {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let call = global_call(plan.client_id, sequence);
        let started = Instant::now();
        loop {
            match client.propose_with_sequence(sequence, &call).await {
                Ok(committed) => {
                    history.acknowledged.push(Acknowledged {
                        sequence,
                        position: committed.position,
                        started,
                    });
                    acknowledged_count.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Err(error @ ClientError::GaveUp { .. }) => {
                    if stop.load(Ordering::SeqCst) {
                        history.unacknowledged = Some((sequence, error));
                        break 'calls;
                    }
                    // Not acknowledged yet: the same (client, sequence) again, applied once.
                }
                Err(error) => {
                    history.refused = Some((sequence, error));
                    break 'calls;
                }
            }
        }
        sleep(CALL_PAUSE).await;
    }
    // The log knows the client by the id the region keeps its session under.
    history.client_id = client.log_session_id();
    history
}

/// A call's identity: (client id, request sequence).
type CallKey = (u64, u64);

fn key_of(record: &proto::Record) -> CallKey {
    (record.client_id, record.request_sequence)
}

/// Reads more of `node_id`'s log, from the entry after `entries` (or from the first position
/// the node retains: the region drops the leading entries that hold no object's record, such
/// as the first epochs' ends), through the position the node has applied; checks that
/// positions follow one another.
async fn read_more(
    connections: &RegionConnections,
    node_id: u64,
    entries: &mut Vec<proto::LogEntry>,
) -> Result<(), ClientError> {
    let status = connections.status(node_id).await?;
    let from = match entries.last() {
        Some(last) => last.position + 1,
        None => status.first_retained_position.max(1),
    };
    if status.applied_position < from {
        return Ok(());
    }
    let more = connections
        .read_log(node_id, from, status.applied_position, READ_WAIT_MAX)
        .await?;
    for entry in more {
        if let Some(last) = entries.last() {
            assert_eq!(
                entry.position,
                last.position + 1,
                "node {node_id}'s log stream skips or repeats a position"
            );
        }
        entries.push(entry);
    }
    Ok(())
}

/// How many times each call appears as a sequenced global record in `entries`.
fn sequenced_counts(entries: &[proto::LogEntry]) -> HashMap<CallKey, usize> {
    let mut counts = HashMap::new();
    for entry in entries {
        if let Some(log_entry::Entry::Global(sequenced)) = &entry.entry {
            let record = sequenced.record.as_ref().unwrap_or_else(|| {
                panic!("position {}: a global entry without record", entry.position)
            });
            *counts.entry(key_of(record)).or_insert(0) += 1;
        }
    }
    counts
}

/// The positions of the pending copies of each call in `entries`.
fn pending_positions(entries: &[proto::LogEntry]) -> HashMap<CallKey, Vec<u64>> {
    let mut positions: HashMap<CallKey, Vec<u64>> = HashMap::new();
    for entry in entries {
        if let Some(log_entry::Entry::PendingGlobal(pending)) = &entry.entry {
            let record = pending.record.as_ref().unwrap_or_else(|| {
                panic!(
                    "position {}: a pending entry without record",
                    entry.position
                )
            });
            positions
                .entry(key_of(record))
                .or_default()
                .push(entry.position);
        }
    }
    positions
}

/// The sealed epochs of a region's log, by epoch number: the calls each holds, in order. The
/// log may start after the first epochs (the region drops leading entries that hold no
/// object's record, and truncates), so numbering starts at the first epoch the log shows
/// whole. Checks on the way
/// that epochs are numbered without gaps, that every global record sits in
/// the epoch that is open at its position with the next index, and that each end-of-epoch
/// entry counts the epoch's records. The records of an epoch not yet ended are left out.
fn sealed_epochs(region: &str, entries: &[proto::LogEntry]) -> BTreeMap<u64, Vec<CallKey>> {
    let mut sealed: BTreeMap<u64, Vec<CallKey>> = BTreeMap::new();
    let mut open: Vec<CallKey> = Vec::new();
    let mut first_epoch: Option<u64> = None;
    for entry in entries {
        let Some(first) = first_epoch else {
            // A log read from the start holds every epoch from the first; one truncated may
            // start inside an epoch, so its numbering starts after the first end it shows.
            match &entry.entry {
                Some(log_entry::Entry::Global(sequenced))
                    if sequenced.index_in_epoch == 0 && entry.position == 1 =>
                {
                    first_epoch = Some(sequenced.epoch_number);
                }
                Some(log_entry::Entry::EpochSealed(end)) => {
                    first_epoch = Some(end.epoch_number + 1);
                    continue;
                }
                _ => continue,
            }
            let Some(log_entry::Entry::Global(sequenced)) = &entry.entry else {
                unreachable!("matched above")
            };
            open.push(key_of(
                sequenced.record.as_ref().expect("checked when counted"),
            ));
            continue;
        };
        let open_epoch = first + sealed.len() as u64;
        match &entry.entry {
            Some(log_entry::Entry::Global(sequenced)) => {
                assert_eq!(
                    (sequenced.epoch_number, sequenced.index_in_epoch as usize),
                    (open_epoch, open.len()),
                    "region {region}, position {}: a global record out of its epoch's order",
                    entry.position
                );
                let record = sequenced.record.as_ref().expect("checked when counted");
                open.push(key_of(record));
            }
            // The region skipped epochs no log held any longer: what follows starts after them.
            Some(log_entry::Entry::EpochSealed(end)) if end.first_skipped_epoch_number > 0 => {
                sealed.clear();
                open.clear();
                first_epoch = Some(end.epoch_number + 1);
            }
            Some(log_entry::Entry::EpochSealed(end)) => {
                assert_eq!(
                    (end.epoch_number, end.record_count as usize),
                    (open_epoch, open.len()),
                    "region {region}, position {}: the end of an epoch does not match its records",
                    entry.position
                );
                sealed.insert(open_epoch, std::mem::take(&mut open));
            }
            Some(_) => {}
            None => panic!(
                "region {region}, position {}: an empty entry",
                entry.position
            ),
        }
    }
    sealed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_coordinator_leader_loses_no_acknowledged_global_call_and_leads_again() {
    let _one_cluster_at_a_time = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = GlobalCluster::new();
    for node_id in cluster.node_ids() {
        cluster.start(node_id);
    }
    wait_until_ready(&cluster.regions).await;

    // Clients in every region, spread over its members (the one to be killed included), so
    // that some of them must fail over.
    let all_regions: Vec<usize> = (0..cluster.regions.len()).collect();
    let load = ClientLoad::start(&cluster, &all_regions, CLIENTS_PER_REGION);
    let counters = load.counters.clone();
    wait_for_acknowledgements(
        "every client has global calls acknowledged",
        &counters,
        &vec![0; counters.len()],
        ACKS_PER_PHASE,
        WAIT_MAX,
    )
    .await;

    // SIGKILL the coordinator leader in the middle of the load; the region node it hosts
    // dies with it, and its region keeps a majority.
    let replica_ids: Vec<u64> = cluster
        .replicas
        .iter()
        .map(|(node_id, _)| *node_id)
        .collect();
    let killed = cluster
        .wait_for_coordinator_leader("the coordinator has a leader", &replica_ids)
        .await;
    cluster.processes.kill(killed);
    let killed_at = Instant::now();
    let before_kill = acknowledged_counts(&counters);
    let survivors: Vec<u64> = replica_ids
        .iter()
        .copied()
        .filter(|&node_id| node_id != killed)
        .collect();
    let new_leader = cluster
        .wait_for_coordinator_leader(
            "the surviving coordinator replicas elect a leader that seals epochs",
            &survivors,
        )
        .await;
    wait_for_acknowledgements(
        "every client has global calls acknowledged after the kill",
        &counters,
        &before_kill,
        ACKS_PER_PHASE,
        WAIT_MAX,
    )
    .await;
    sleep(LOAD_AFTER_KILL.saturating_sub(killed_at.elapsed())).await;

    // The killed node comes back on its data directory, the load still running.
    cluster.start(killed);
    let before_restart = acknowledged_counts(&counters);
    wait_for_acknowledgements(
        "every client has global calls acknowledged after the restart",
        &counters,
        &before_restart,
        ACKS_PER_PHASE,
        WAIT_MAX,
    )
    .await;
    // Leadership goes back to the topology's preferred replica (the killed one, which leads
    // from the start) once it is a healthy follower again (docs/global-protocol.md section
    // 11), and calls go on completing in every region after the hand-over.
    let preferred = cluster
        .processes
        .topology_model()
        .coordinator
        .preferred_leader;
    cluster
        .wait_for_coordinator_leader(
            "leadership returns to the preferred coordinator replica",
            &[preferred],
        )
        .await;
    let before_return = acknowledged_counts(&counters);
    wait_for_acknowledgements(
        "every client has global calls acknowledged after leadership returned",
        &counters,
        &before_return,
        ACKS_PER_PHASE,
        WAIT_MAX,
    )
    .await;
    let histories = load.stop().await;
    for history in &histories {
        assert!(
            history.refused.is_none(),
            "client {} had a call refused: {:?}",
            history.client_id,
            history.refused
        );
        if let Some((sequence, error)) = &history.unacknowledged {
            eprintln!(
                "client {} stopped with call {sequence} unacknowledged: {error}",
                history.client_id
            );
        }
    }

    // Calls kept completing after the kill, in every region.
    for (region_index, region) in cluster.regions.iter().enumerate() {
        assert!(
            histories
                .iter()
                .filter(|history| history.region_index == region_index)
                .flat_map(|history| &history.acknowledged)
                .any(|call| call.started > killed_at),
            "region {}: no call started after the kill was acknowledged",
            region.id
        );
    }

    // Read one member of every region (not the restarted one) until its log holds every
    // acknowledged call, from every region, as a sequenced global record.
    let readers: Vec<u64> = cluster
        .regions
        .iter()
        .map(|region| {
            *region
                .node_ids
                .iter()
                .find(|&&node_id| node_id != killed)
                .expect("a region has more than one node")
        })
        .collect();
    let mut logs: Vec<Vec<proto::LogEntry>> = vec![Vec::new(); cluster.regions.len()];
    let deadline = Deadline::new(
        "every region's log holds every acknowledged call in a sealed epoch",
        WAIT_MAX,
    );
    loop {
        let mut complete = 0;
        for (index, region) in cluster.regions.iter().enumerate() {
            if let Err(error) =
                read_more(&region.connections, readers[index], &mut logs[index]).await
            {
                eprintln!("reading region {}'s log: {error}", region.id);
                continue;
            }
            let counts = sequenced_counts(&logs[index]);
            if histories.iter().all(|history| {
                history
                    .acknowledged
                    .iter()
                    .all(|call| counts.contains_key(&(history.client_id, call.sequence)))
            }) {
                complete += 1;
            }
        }
        if complete == cluster.regions.len() {
            break;
        }
        deadline.check().await;
    }

    // Every acknowledged call is in every region's log exactly once as a sequenced global
    // record, and no call is there twice.
    let mut acknowledged_total = 0;
    for (index, region) in cluster.regions.iter().enumerate() {
        let counts = sequenced_counts(&logs[index]);
        for (key, count) in &counts {
            assert_eq!(
                *count, 1,
                "region {}: call {key:?} is sequenced {count} times",
                region.id
            );
        }
        for history in &histories {
            for call in &history.acknowledged {
                assert_eq!(
                    counts.get(&(history.client_id, call.sequence)),
                    Some(&1),
                    "region {}: acknowledged call ({}, {}) is not sequenced once",
                    region.id,
                    history.client_id,
                    call.sequence
                );
            }
        }
    }

    // Every acknowledged call sits at its acknowledged position in its own region's log, as
    // the sequenced copy of that very call (a global call is answered when its sealed copy
    // is applied), and its pending copy was appended to that log before.
    for history in &histories {
        let region = &cluster.regions[history.region_index];
        let log = &logs[history.region_index];
        let pending = pending_positions(log);
        for call in &history.acknowledged {
            let key = (history.client_id, call.sequence);
            let first = log.first().map_or(1, |entry| entry.position);
            let entry = call
                .position
                .checked_sub(first)
                .and_then(|offset| log.get(offset as usize))
                .unwrap_or_else(|| panic!("region {}: no position {}", region.id, call.position));
            let Some(log_entry::Entry::Global(sequenced)) = &entry.entry else {
                panic!(
                    "region {}, position {}: expected the sequenced call {key:?}, got {:?}",
                    region.id, call.position, entry.entry
                );
            };
            let record = sequenced.record.as_ref().expect("checked when counted");
            assert_eq!(
                key_of(record),
                key,
                "region {}, position {}: another call than the acknowledged one",
                region.id,
                call.position
            );
            // The region drops leading entries that hold no object's record (epoch ends and
            // pending copies) once nothing needs them, so a pending copy below the first
            // retained position may be gone; one that is retained must come first.
            assert!(
                pending
                    .get(&key)
                    .is_some_and(|positions| positions.iter().any(|&at| at < call.position))
                    || (first > 1 && !pending.contains_key(&key)),
                "region {}: call {key:?} has no pending copy before its position {}",
                region.id,
                call.position
            );
        }
        acknowledged_total += history.acknowledged.len();
    }
    // Every global record names the region of the client that made it, carries that call's
    // arguments, and is pending only in its origin region's log.
    let chosen_ids: BTreeMap<u64, u64> = histories
        .iter()
        .map(|history| (history.client_id, history.chosen_id))
        .collect();
    let chosen = |log_id: u64| chosen_ids.get(&log_id).copied().unwrap_or(log_id);
    for (index, log) in logs.iter().enumerate() {
        let region = &cluster.regions[index].id;
        for entry in log {
            let (record, pending) = match &entry.entry {
                Some(log_entry::Entry::Global(sequenced)) => (sequenced.record.as_ref(), false),
                Some(log_entry::Entry::PendingGlobal(pending)) => (pending.record.as_ref(), true),
                _ => continue,
            };
            let record = record.expect("checked when counted");
            let origin = &region_index_of_client(chosen(record.client_id))
                .and_then(|origin| cluster.regions.get(origin))
                .unwrap_or_else(|| {
                    panic!(
                        "region {region}, position {}: a record of unknown client {}",
                        entry.position, record.client_id
                    )
                })
                .id;
            assert_eq!(
                &record.origin_region,
                origin,
                "region {region}, position {}: call {:?} names the wrong origin",
                entry.position,
                key_of(record)
            );
            assert!(
                !pending || origin == region,
                "region {region}, position {}: a pending copy of call {:?} from region {origin}",
                entry.position,
                key_of(record)
            );
            assert_eq!(
                record.arguments,
                global_call(chosen(record.client_id), record.request_sequence).arguments,
                "region {region}, position {}: the arguments of another call",
                entry.position
            );
        }
    }

    // Every region holds the same sealed epochs, epoch by epoch, as far as all have them.
    let epochs: Vec<BTreeMap<u64, Vec<CallKey>>> = cluster
        .regions
        .iter()
        .zip(&logs)
        .map(|(region, log)| sealed_epochs(&region.id, log))
        .collect();
    let mut common_epochs = 0;
    for (region, region_epochs) in cluster.regions.iter().zip(&epochs).skip(1) {
        for (number, calls) in region_epochs {
            if let Some(first_region_calls) = epochs[0].get(number) {
                common_epochs += 1;
                assert_eq!(
                    calls, first_region_calls,
                    "epoch {number} differs between regions {} and {}",
                    region.id, cluster.regions[0].id
                );
            }
        }
    }
    assert!(common_epochs > 0, "no epoch is sealed in every region");

    // The restarted node catches up: its log equals its region peer's up to the position the
    // peer was read through.
    let killed_region = cluster
        .regions
        .iter()
        .position(|region| region.node_ids.contains(&killed))
        .expect("the killed node is in a region");
    let reference = &logs[killed_region];
    let first = reference.first().map_or(1, |entry| entry.position);
    let through = reference.last().map_or(0, |entry| entry.position);
    let connections = &cluster.region_of(killed).connections;
    let deadline = Deadline::new("the restarted node catches up with its region", WAIT_MAX);
    loop {
        if let Ok(status) = connections.status(killed).await
            && status.applied_position >= through
        {
            break;
        }
        deadline.check().await;
    }
    let mut restarted_log = connections
        .read_log(killed, first, through, READ_WAIT_MAX)
        .await
        .unwrap_or_else(|error| panic!("read the restarted node {killed}'s log: {error}"));
    restarted_log.truncate(reference.len());
    assert!(
        restarted_log == *reference,
        "the restarted node {killed}'s log differs from node {}'s through position {through}",
        readers[killed_region]
    );

    eprintln!(
        "{acknowledged_total} global calls acknowledged; coordinator leader {killed} was killed \
         ({new_leader} took over) and restarted; {common_epochs} sealed epochs compared in \
         every region; logs read through positions {:?}",
        logs.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

/// Region local-c goes down whole (its three nodes killed, the coordinator replica it hosts
/// with them) while the other regions keep making global calls, long enough that the
/// coordinator, which retains only 32 sealed epochs here, releases the epochs local-c never
/// acknowledged. The others' calls keep completing; when local-c comes back it reads the
/// epochs it missed from another region's log, takes global calls again, and every region's log
/// holds the same sealed epochs with the same calls in the same order, local-c's included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_down_past_the_coordinators_retention_catches_up_from_another_region() {
    let _one_cluster_at_a_time = ONE_CLUSTER_AT_A_TIME.lock().await;
    const RETAINED_EPOCHS: u64 = 32;
    let mut cluster =
        GlobalCluster::with_coordinator_settings(&format!("retained_epochs = {RETAINED_EPOCHS}\n"));
    for node_id in cluster.node_ids() {
        cluster.start(node_id);
    }
    wait_until_ready(&cluster.regions).await;
    let down_index = 2;
    let down_nodes = cluster.regions[down_index].node_ids.clone();
    for &node_id in &down_nodes {
        cluster.processes.kill(node_id);
    }
    let sealed_of =
        |status: Option<proto::StatusReply>| status.map_or(0, |s| s.sealed_epoch_number);
    let sealed_at_kill = sealed_of(region_leader_status(&cluster.regions[0]).await);

    // One client in each of the two regions still up.
    let load = ClientLoad::start(&cluster, &[0, 1], 1);
    let counters = load.counters.clone();
    // The coordinator seals four times its retention while local-c is away.
    let deadline = Deadline::new(
        "the other regions' global calls seal four times the coordinator's retention",
        WAIT_MAX,
    );
    loop {
        let sealed = sealed_of(region_leader_status(&cluster.regions[0]).await);
        if sealed >= sealed_at_kill + 4 * RETAINED_EPOCHS
            && acknowledged_counts(&counters)
                .iter()
                .all(|&count| count >= ACKS_PER_PHASE)
        {
            break;
        }
        deadline.check().await;
    }

    // local-c returns on its data directories, the load still running.
    for &node_id in &down_nodes {
        cluster.start(node_id);
    }
    let sealed_at_return = sealed_of(region_leader_status(&cluster.regions[0]).await);
    let deadline = Deadline::new(
        "local-c applies the epochs sealed while it was away",
        WAIT_MAX,
    );
    while sealed_of(region_leader_status(&cluster.regions[down_index]).await) < sealed_at_return {
        deadline.check().await;
    }
    // It read them from another region's log: the coordinator no longer had them.
    let caught_up: u64 = statuses_of(&cluster.regions[down_index], &down_nodes)
        .await
        .iter()
        .map(|status| status.epoch_parts_caught_up)
        .sum();
    assert!(
        caught_up > 0,
        "local-c caught up without reading another region's log"
    );
    // It takes global calls again, the others' calls go on, and from where every log starts
    // (after local-c's skip, if it skipped) every region holds the same sealed epochs.
    let (first, last) = returned_region_agrees(&cluster, down_index, load).await;
    // The epochs all three logs hold reach back past what the coordinator still retained
    // when local-c returned: local-c got those from another region's log.
    assert!(
        first + RETAINED_EPOCHS < sealed_at_return && last >= sealed_at_return,
        "the logs have epochs {first}..={last} in common; local-c returned at epoch \
         {sealed_at_return} after going down at {sealed_at_kill}"
    );
}

/// local-c's three processes are killed while the other regions keep making global calls with
/// a log age bound of 2 s (they release the records nobody checkpoints and truncate their logs
/// past them) and a coordinator that retains only 32 sealed epochs. When local-c comes back no
/// log holds the epochs it missed: it skips them to an epoch end another region's log holds
/// (docs/global-protocol.md section 7, "When no region holds them"), takes global calls again,
/// and from the skip on every region's log holds the same sealed epochs with the same calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_down_past_every_regions_log_skips_the_epochs_it_missed() {
    let _one_cluster_at_a_time = ONE_CLUSTER_AT_A_TIME.lock().await;
    const RETAINED_EPOCHS: u64 = 32;
    let mut cluster = GlobalCluster::with_settings(
        "region_log_release_age_s = 2\n",
        &format!("retained_epochs = {RETAINED_EPOCHS}\n"),
    );
    for node_id in cluster.node_ids() {
        cluster.start(node_id);
    }
    wait_until_ready(&cluster.regions).await;
    let down_index = 2;
    let down_nodes = cluster.regions[down_index].node_ids.clone();
    for &node_id in &down_nodes {
        cluster.processes.kill(node_id);
    }
    let sealed_at_kill = region_leader_status(&cluster.regions[0])
        .await
        .map_or(0, |status| status.sealed_epoch_number);

    let load = ClientLoad::start(&cluster, &[0, 1], 1);
    // The coordinator seals four times its retention (it releases what only local-c lacks)...
    let deadline = Deadline::new(
        "the other regions' global calls seal four times the coordinator's retention",
        WAIT_MAX,
    );
    let applied_then = loop {
        let (a, b) = (
            region_leader_status(&cluster.regions[0]).await,
            region_leader_status(&cluster.regions[1]).await,
        );
        if let (Some(a), Some(b)) = (a, b)
            && a.sealed_epoch_number >= sealed_at_kill + 4 * RETAINED_EPOCHS
        {
            break [a.applied_position, b.applied_position];
        }
        deadline.check().await;
    };
    // ...and both regions up truncate past every entry they held then, the epochs local-c
    // lacks among them (they release the records no checkpoint covers after 2 s).
    let deadline = Deadline::new(
        "the regions up truncate past the epochs local-c lacks",
        WAIT_MAX,
    );
    loop {
        let mut truncated_past = true;
        for (region, applied) in applied_then.iter().enumerate() {
            let first_retained = region_leader_status(&cluster.regions[region])
                .await
                .map_or(0, |status| status.first_retained_position);
            truncated_past &= first_retained > applied + 1;
        }
        if truncated_past {
            break;
        }
        deadline.check().await;
    }

    // local-c returns on its data directories, the load still running.
    for &node_id in &down_nodes {
        cluster.start(node_id);
    }
    let sealed_at_return = region_leader_status(&cluster.regions[0])
        .await
        .map_or(0, |status| status.sealed_epoch_number);
    let deadline = Deadline::new(
        "local-c applies the epochs sealed while it was away",
        WAIT_MAX,
    );
    while region_leader_status(&cluster.regions[down_index])
        .await
        .map_or(0, |status| status.sealed_epoch_number)
        < sealed_at_return
    {
        deadline.check().await;
    }
    // It skipped them: no log held them any longer.
    let skips = statuses_of(&cluster.regions[down_index], &down_nodes)
        .await
        .iter()
        .map(|status| status.epoch_skips)
        .max()
        .unwrap_or(0);
    assert!(skips > 0, "local-c caught up without skipping epochs");
    // It takes global calls again, the others' calls go on, and from local-c's skip on every
    // region's log holds the same sealed epochs.
    let (first, last) = returned_region_agrees(&cluster, down_index, load).await;
    assert!(
        first <= last && last >= sealed_at_return,
        "the logs have epochs {first}..={last} in common; local-c returned at epoch \
         {sealed_at_return}"
    );
}

/// The region at `down_index`, back, acknowledges a global call; the other regions' clients
/// make more calls, then stop, none of them refused; and every region's log, read from its
/// leader until it seals the returned region's call, holds the same sealed epochs from the
/// latest first epoch any of them holds whole (after a skip, if the region skipped) to the
/// earliest last one. Returns that range.
async fn returned_region_agrees(
    cluster: &GlobalCluster,
    down_index: usize,
    load: ClientLoad,
) -> (u64, u64) {
    let counters = &load.counters.clone();
    let returned = &cluster.regions[down_index];
    let client_id = client_id_of(down_index, 0);
    let mut client = RegionClient::new(returned.connections.clone(), client_id)
        .with_timeouts(ATTEMPT_TIMEOUT, PROPOSE_TIME);
    let call = global_call(client_id, 1);
    let deadline = Deadline::new("the returned region acknowledges a global call", WAIT_MAX);
    loop {
        match client.propose_with_sequence(1, &call).await {
            Ok(_) => break,
            Err(ClientError::GaveUp { .. }) => deadline.check().await,
            Err(error) => panic!("the returned region refused a global call: {error}"),
        }
    }
    let before_stop = acknowledged_counts(counters);
    wait_for_acknowledgements(
        "the other regions' calls go on after the region's return",
        counters,
        &before_stop,
        ACKS_PER_PHASE,
        WAIT_MAX,
    )
    .await;
    for history in load.stop().await {
        assert!(
            history.refused.is_none(),
            "client {} had a call refused: {:?}",
            history.client_id,
            history.refused
        );
    }
    let own_call = (client.log_session_id(), 1);
    let mut epochs: Vec<BTreeMap<u64, Vec<CallKey>>> = Vec::new();
    for region in &cluster.regions {
        let leader = region_leader_status(region)
            .await
            .expect("a leader")
            .node_id;
        let mut entries = Vec::new();
        let deadline = Deadline::new(
            "every region's log seals the returned region's call",
            WAIT_MAX,
        );
        loop {
            read_more(&region.connections, leader, &mut entries)
                .await
                .expect("read the log");
            if sequenced_counts(&entries).contains_key(&own_call) {
                break;
            }
            deadline.check().await;
        }
        epochs.push(sealed_epochs(&region.id, &entries));
    }
    let first = epochs
        .iter()
        .map(|sealed| *sealed.keys().next().expect("sealed epochs"))
        .max()
        .expect("three regions");
    let last = epochs
        .iter()
        .map(|sealed| *sealed.keys().next_back().expect("sealed epochs"))
        .min()
        .expect("three regions");
    for (index, sealed) in epochs.iter().enumerate().skip(1) {
        for epoch in first..=last {
            assert_eq!(
                sealed.get(&epoch),
                epochs[0].get(&epoch),
                "regions {} and {} disagree on epoch {epoch}",
                cluster.regions[0].id,
                cluster.regions[index].id
            );
        }
    }
    (first, last)
}
