//! The SDK against real processes: three regions of three `dsss node --emulate-wan` processes on
//! loopback (`local.toml` with its latency matrix), application instances in every region using
//! the example `Bank` (global) and `Leaderboard` (regional) through `dsss::Client`, while a
//! region leader is killed with SIGKILL and restarted. Reference: docs/design.md section 1 (every
//! guarantee a user relies on) and section 6 (how each is checked: equal state hashes, money
//! conserved, exactly once, sync then read sees every completed call).
//!
//! Build the binary first (`cargo build --workspace`, or `cargo test --workspace`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dsss::replica::ReplicaConfig;
use dsss::{CallError, Client, Config};
use dsss_examples::{Bank, BankError, BankHandle, Leaderboard};
use dsss_tests::processes::{NodeProcesses, client_security_of, local_topology_on_free_ports};
use dsss_topology::Topology;
use dsss_wire::proto;
use tokio::time::sleep;

/// The accounts the bank opens, each with [`OPENING_BALANCE`].
const ACCOUNTS: [&str; 6] = ["ann", "bob", "cyd", "dee", "eve", "fay"];
const OPENING_BALANCE: u64 = 1_000;
/// Transfers each application instance makes.
const TRANSFERS_PER_INSTANCE: u64 = 40;
/// Application instances per region.
const INSTANCES_PER_REGION: usize = 2;
/// Generous bound on every wait; nothing is asserted about speed.
const WAIT_MAX: Duration = Duration::from_secs(60);

fn client_config(topology: &Topology, region: &str) -> Config {
    let mut config = Config::from_parsed_topology(topology, region).expect("the region exists");
    // Small checkpoint intervals, so that instances agree on checkpoints during the test and a
    // late instance can start from one.
    config.replica = ReplicaConfig {
        checkpoint_every_records: 20,
        ..ReplicaConfig::default()
    };
    config.call_timeout = WAIT_MAX;
    config
}

/// A transfer an instance made and its outcome.
#[derive(Clone, Debug)]
struct Transfer {
    from: String,
    to: String,
    amount: u64,
    outcome: Result<(), BankError>,
}

/// A small deterministic generator, so a failing run can be read back.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

async fn run_transfers(
    bank: BankHandle,
    seed: u64,
    stop_reading: Arc<AtomicBool>,
) -> Vec<Transfer> {
    let mut random = Lcg(seed);
    let mut transfers = Vec::new();
    for _ in 0..TRANSFERS_PER_INSTANCE {
        let from = ACCOUNTS[random.next(ACCOUNTS.len() as u64) as usize].to_owned();
        let to = ACCOUNTS[random.next(ACCOUNTS.len() as u64) as usize].to_owned();
        // Some amounts overdraw and must be refused by the method, in every copy alike.
        let amount = 1 + random.next(700);
        let outcome = match bank.transfer(from.clone(), to.clone(), amount).await {
            Ok(outcome) => outcome,
            Err(error) => panic!("transfer {from} -> {to} of {amount} failed: {error}"),
        };
        // Reads are local and must always see all the money.
        if !stop_reading.load(Ordering::Relaxed) {
            let total = bank.read(|bank| bank.total());
            assert_eq!(
                total,
                OPENING_BALANCE * ACCOUNTS.len() as u64,
                "money conserved"
            );
        }
        transfers.push(Transfer {
            from,
            to,
            amount,
            outcome,
        });
    }
    transfers
}

async fn region_leader(topology: &Topology, region: &str) -> Option<u64> {
    let members: Vec<(u64, String)> = topology
        .regions
        .iter()
        .find(|candidate| candidate.id == region)?
        .nodes
        .iter()
        .map(|node| (node.id, node.address.clone()))
        .collect();
    let connections = dsss::region_client::RegionConnections::with_security(
        &members,
        &client_security_of(topology),
    )
    .ok()?;
    for (node_id, _) in &members {
        if let Ok(status) = connections.status(*node_id).await
            && status.role == proto::NodeRole::Leader as i32
        {
            return Some(*node_id);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_in_three_regions_keeps_every_copy_equal_through_a_leader_kill() {
    let (text, _) = local_topology_on_free_ports();
    let mut processes = NodeProcesses::new(&text);
    // The model's [tls] paths are absolute, for the test's own clients.
    let topology = processes.topology_model().clone();
    let node_ids: Vec<u64> = topology.nodes().map(|(_, node)| node.id).collect();
    for &node_id in &node_ids {
        processes.start(node_id, &["--emulate-wan"]);
    }
    let regions: Vec<String> = topology
        .regions
        .iter()
        .map(|region| region.id.clone())
        .collect();

    // Every instance opens the same global bank; the first one opens the accounts.
    let mut instances = Vec::new();
    for region in &regions {
        for _ in 0..INSTANCES_PER_REGION {
            let client = Client::connect(client_config(&topology, region))
                .await
                .expect("connect");
            let bank = client
                .open::<Bank>("bank/main")
                .await
                .unwrap_or_else(|error| {
                    processes.print_logs();
                    panic!("open the bank in {region}: {error}")
                });
            instances.push((region.clone(), client, bank));
        }
    }
    for account in ACCOUNTS {
        instances[0]
            .2
            .open_account(account.to_owned(), OPENING_BALANCE)
            .await
            .expect("the call completes")
            .expect("a new account opens");
    }
    // An account opened twice is refused by the method itself, and nothing changes.
    let again = instances[1]
        .2
        .open_account("ann".to_owned(), 5)
        .await
        .expect("completes");
    assert_eq!(again, Err(BankError::AccountExists("ann".to_owned())));

    // Load from every instance, with a region leader killed and restarted mid-way.
    let stop_reading = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for (index, (_, _, bank)) in instances.iter().enumerate() {
        load.push(tokio::spawn(run_transfers(
            bank.clone(),
            index as u64 + 1,
            Arc::clone(&stop_reading),
        )));
    }
    sleep(Duration::from_secs(2)).await;
    let victim_region = &regions[1];
    let victim = region_leader(&topology, victim_region)
        .await
        .expect("the region has a leader");
    processes.kill(victim);
    sleep(Duration::from_secs(3)).await;
    processes.start(victim, &["--emulate-wan"]);
    let mut transfers = Vec::new();
    for task in load {
        transfers.extend(task.await.expect("an instance's load completes"));
    }

    // Exactly once and atomic: the balances are the opening balances moved by exactly the
    // transfers that succeeded (a retry applied twice or a lost call would show).
    // Summed as signed numbers: the transfers are listed per instance, not in log order, so a
    // running balance may dip below zero in this sum while the real one never did.
    let mut moved: BTreeMap<String, i64> = BTreeMap::new();
    for transfer in &transfers {
        match &transfer.outcome {
            Ok(()) => {
                let amount = i64::try_from(transfer.amount).unwrap();
                *moved.entry(transfer.from.clone()).or_default() -= amount;
                *moved.entry(transfer.to.clone()).or_default() += amount;
            }
            Err(BankError::SameAccount(_) | BankError::InsufficientFunds { .. }) => {}
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert!(
        transfers.iter().any(|transfer| transfer.outcome.is_ok()),
        "some transfers succeed"
    );
    let expected: BTreeMap<String, u64> = ACCOUNTS
        .iter()
        .map(|account| {
            let balance =
                i64::try_from(OPENING_BALANCE).unwrap() + moved.get(*account).copied().unwrap_or(0);
            (
                (*account).to_owned(),
                u64::try_from(balance).expect("no balance below zero"),
            )
        })
        .collect();

    // Sync, then every copy holds the same accounts and the same state hash.
    let mut hashes = Vec::new();
    for (region, _, bank) in &instances {
        bank.sync()
            .await
            .unwrap_or_else(|error| panic!("sync in {region}: {error}"));
        let accounts = bank.read(|bank| bank.accounts().clone());
        assert_eq!(accounts, expected, "the bank as seen in {region}");
        hashes.push(bank.state_hash().1);
    }
    assert!(
        hashes.windows(2).all(|pair| pair[0] == pair[1]),
        "every copy has the same state hash"
    );

    // Sync then read is linearizable: a transfer completed in one region is seen by a sync
    // then read in another.
    let (first, second) = (&instances[0].2, &instances[4].2);
    let before = expected["ann"] + expected["bob"];
    first
        .transfer("ann".into(), "bob".into(), 0)
        .await
        .expect("completes")
        .expect("a zero transfer succeeds");
    let moved = expected["ann"].min(1);
    first
        .transfer("ann".into(), "bob".into(), moved)
        .await
        .expect("completes")
        .expect("ann has the money");
    second.sync().await.expect("sync");
    let seen = second.read(|bank| (bank.balance("ann").unwrap(), bank.balance("bob").unwrap()));
    assert_eq!(seen, (expected["ann"] - moved, expected["bob"] + moved));
    assert_eq!(seen.0 + seen.1, before);

    // A late instance starts from the region's checkpoint plus the log after it and agrees.
    let late = Client::connect(client_config(&topology, &regions[2]))
        .await
        .expect("connect");
    let late_bank = late.open::<Bank>("bank/main").await.expect("open late");
    late_bank.sync().await.expect("sync");
    assert_eq!(
        late_bank.read(|bank| bank.accounts().clone()),
        second.read(|bank| bank.accounts().clone())
    );

    // A build whose `transfer` changed (another application process, so another client)
    // cannot open the object, and says which method changed.
    let other_build = Client::connect(client_config(&topology, &regions[2]))
        .await
        .expect("connect");
    let refused = other_build
        .open::<changed::Bank>("bank/main")
        .await
        .err()
        .expect("refused");
    match refused {
        CallError::Schema { reason, .. } => {
            assert!(reason.contains("method 2 (transfer)"), "{reason}");
        }
        other => panic!("expected a schema refusal, got {other}"),
    }
    stop_reading.store(true, Ordering::Relaxed);

    // The instances uploaded checkpoints, the region compared their hashes, and no copy
    // diverged.
    for region in &topology.regions {
        let members: Vec<(u64, String)> = region
            .nodes
            .iter()
            .map(|node| (node.id, node.address.clone()))
            .collect();
        let connections = dsss::region_client::RegionConnections::with_security(
            &members,
            &client_security_of(&topology),
        )
        .unwrap();
        let status = connections.status(members[0].0).await.expect("status");
        assert!(
            status.checkpointed_objects >= 1,
            "{}: {status:?}",
            region.id
        );
        assert_eq!(status.divergence_alarms, 0, "{}: {status:?}", region.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regional_objects_stay_in_their_region() {
    let (text, _) = local_topology_on_free_ports();
    let mut processes = NodeProcesses::new(&text);
    // The model's [tls] paths are absolute, for the test's own clients.
    let topology = processes.topology_model().clone();
    for (_, node) in topology.nodes() {
        processes.start(node.id, &["--emulate-wan"]);
    }
    let mut boards = Vec::new();
    for region in &topology.regions {
        let client = Client::connect(client_config(&topology, &region.id))
            .await
            .expect("connect");
        let board = client
            .open_regional::<Leaderboard>("leaderboard")
            .await
            .unwrap_or_else(|error| {
                processes.print_logs();
                panic!("open the leaderboard in {}: {error}", region.id)
            });
        let rank = board
            .record(format!("{}-player", region.id), 10)
            .await
            .expect("completes");
        assert_eq!(rank, Some(1));
        boards.push((region.id.clone(), client, board));
    }
    for (region, _, board) in &boards {
        board.sync().await.expect("sync");
        let top = board.read(|board| board.top(10));
        assert_eq!(
            top,
            vec![(format!("{region}-player"), 10)],
            "{region} sees its own only"
        );
    }
}

/// A different build of `Bank` whose `transfer` takes a `u32` amount.
mod changed {
    use dsss_examples::BankError;
    use serde::{Deserialize, Serialize};

    #[dsss::shared_object]
    #[derive(Default, Serialize, Deserialize)]
    pub struct Bank {
        accounts: std::collections::BTreeMap<String, u64>,
    }

    #[dsss::methods]
    impl Bank {
        #[mutate(id = 1)]
        pub fn open_account(&mut self, name: String, balance: u64) -> Result<(), BankError> {
            self.accounts.insert(name, balance);
            Ok(())
        }

        #[mutate(id = 2)]
        pub fn transfer(&mut self, from: String, to: String, amount: u32) -> Result<(), BankError> {
            let _ = (from, to, amount);
            Ok(())
        }
    }
}
