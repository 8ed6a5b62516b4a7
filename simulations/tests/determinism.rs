//! One seed, one run: a busy workload with every fault the kernel has produces the same trace
//! hash twice, and different seeds produce different runs.

use std::time::Duration;

use dsss_simulations::{
    Context, Link, NetworkConfig, NetworkFaults, NodeId, Process, RegionId, SimDisk, SimTime,
    Simulation, TimerId, assert_deterministic, run_seeds,
};

#[derive(Clone, Debug)]
enum Gossip {
    Rumour { origin: NodeId, counter: u64 },
    Acknowledge { counter: u64 },
}

/// A node that counts on a jittery timer, persists its counter (syncing only sometimes),
/// spreads rumours to random peers, acknowledges them, and juggles extra timers.
struct Gossiper {
    peers: Vec<NodeId>,
    counter: u64,
    rumours_heard: u64,
    highest_acknowledged: u64,
    spare_timer: Option<TimerId>,
}

const COUNTER_KEY: &[u8] = b"counter";

impl Gossiper {
    fn new(node: NodeId, disk: &SimDisk, node_ids: &[NodeId]) -> Gossiper {
        let counter = disk
            .get(COUNTER_KEY)
            .map(|bytes| u64::from_le_bytes(bytes.try_into().expect("an 8-byte counter")))
            .unwrap_or(0);
        Gossiper {
            peers: node_ids
                .iter()
                .copied()
                .filter(|&peer| peer != node)
                .collect(),
            counter,
            rumours_heard: 0,
            highest_acknowledged: 0,
            spare_timer: None,
        }
    }

    fn arm(&mut self, cx: &mut Context<'_, Gossip>) {
        let after_us = cx.rng().range_inclusive(500, 20_000);
        cx.set_timer(Duration::from_micros(after_us));
    }
}

impl Process for Gossiper {
    type Message = Gossip;

    fn handle_start(&mut self, cx: &mut Context<'_, Gossip>) {
        self.arm(cx);
    }

    fn handle_message(&mut self, cx: &mut Context<'_, Gossip>, from: NodeId, message: Gossip) {
        match message {
            Gossip::Rumour { origin, counter } => {
                self.rumours_heard += 1;
                let key = format!("heard/{origin}");
                cx.disk()
                    .put(key.as_bytes(), &counter.to_le_bytes())
                    .unwrap();
                cx.send(from, Gossip::Acknowledge { counter });
            }
            Gossip::Acknowledge { counter } => {
                self.highest_acknowledged = self.highest_acknowledged.max(counter);
            }
        }
    }

    fn handle_timer(&mut self, cx: &mut Context<'_, Gossip>, timer: TimerId) {
        if self.spare_timer == Some(timer) {
            self.spare_timer = None;
            return;
        }
        self.counter += 1;
        cx.disk()
            .put(COUNTER_KEY, &self.counter.to_le_bytes())
            .unwrap();
        if cx.rng().chance(0.5) {
            cx.disk().sync();
        }
        let peer = *cx.rng().choose(&self.peers).expect("at least one peer");
        let origin = cx.node();
        cx.send(
            peer,
            Gossip::Rumour {
                origin,
                counter: self.counter,
            },
        );
        // Juggle a spare timer: cancel the old one or let it fire.
        if let Some(spare) = self.spare_timer.take() {
            if cx.rng().chance(0.5) {
                cx.cancel_timer(spare);
            } else {
                self.spare_timer = Some(spare);
            }
        } else {
            self.spare_timer = Some(cx.set_timer(Duration::from_millis(3)));
        }
        self.arm(cx);
    }
}

fn network() -> NetworkConfig {
    let local = Link::new(Duration::from_millis(1), Duration::from_micros(300));
    let mut config = NetworkConfig::new();
    let regions: Vec<RegionId> = ["eu-west", "us-east", "ap-south"]
        .into_iter()
        .map(|name| config.add_region(name, local))
        .collect();
    let wide = Link::new(Duration::from_millis(40), Duration::from_millis(8));
    config.set_link_symmetric(regions[0], regions[1], wide);
    config.set_link_symmetric(regions[0], regions[2], wide);
    config.set_link_symmetric(regions[1], regions[2], wide);
    for node in 1..=9 {
        config.add_node(node, regions[(node as usize - 1) % 3]);
    }
    config
}

/// Runs the busy workload with `seed` and returns the simulation at its end.
fn busy_run(seed: u64) -> Simulation<Gossiper> {
    let node_ids: Vec<NodeId> = (1..=9).collect();
    let mut simulation = Simulation::new(seed, network(), move |node, disk: &SimDisk| {
        Gossiper::new(node, disk, &node_ids)
    })
    .unwrap();
    let maxima = NetworkFaults {
        loss_probability: 0.2,
        duplication_probability: 0.2,
        reorder_probability: 0.3,
        reorder_delay_max: Duration::from_millis(30),
    };
    let faults = NetworkFaults::random(simulation.rng(), &maxima);
    simulation.set_faults(faults);
    simulation.randomize_clocks(10_000, 100);
    for round in 0..1_000 {
        simulation.run_for(Duration::from_millis(5));
        // Every fault decision is drawn from the run's generator, so the seed decides it.
        let node = simulation.rng().range_inclusive(1, 9);
        let other = simulation.rng().range_inclusive(1, 9);
        match simulation.rng().below(12) {
            0 => {
                simulation.crash(node);
            }
            1 | 2 => {
                simulation.restart(node);
            }
            3 => simulation.cut(node, other),
            4 => simulation.cut_one_way(node, other),
            5 => simulation.isolate(node),
            6 => simulation.cut_regions(RegionId(node as usize % 3), RegionId(other as usize % 3)),
            7 => simulation.heal_all(),
            8 => {
                let faults = NetworkFaults::random(simulation.rng(), &maxima);
                simulation.set_faults(faults);
            }
            9 => {
                let skew_us = simulation.rng().range_inclusive_i64(-50_000, 50_000);
                simulation.set_clock_skew_us(node, skew_us);
            }
            10 => simulation.inject(
                simulation.now() + Duration::from_millis(1),
                node,
                Gossip::Rumour {
                    origin: 0,
                    counter: round,
                },
            ),
            _ => {}
        }
    }
    // Heal everything, bring every node back, and let the system settle.
    simulation.heal_all();
    simulation.set_faults(NetworkFaults::NONE);
    for node in simulation.node_ids() {
        simulation.restart(node);
    }
    simulation.run_for(Duration::from_secs(1));
    simulation
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    run_seeds("the_same_seed_gives_the_same_trace", 8, |seed| {
        assert_deterministic("the_same_seed_gives_the_same_trace", seed, |seed| {
            busy_run(seed).trace().clone()
        });
    });
}

#[test]
fn the_busy_workload_exercises_every_fault() {
    let simulation = busy_run(1);
    let statistics = simulation.statistics();
    assert!(statistics.sent > 1_000, "{statistics:?}");
    assert!(statistics.delivered > 1_000, "{statistics:?}");
    assert!(statistics.duplicated > 0, "{statistics:?}");
    assert!(statistics.dropped_loss > 0, "{statistics:?}");
    assert!(statistics.dropped_partition > 0, "{statistics:?}");
    assert!(statistics.dropped_node_down > 0, "{statistics:?}");
    assert!(statistics.injected > 0, "{statistics:?}");
    let lines = simulation.trace().lines();
    for kind in [
        " crash ",
        " restart ",
        " fire ",
        " cut ",
        " isolate ",
        " clock ",
    ] {
        assert!(
            lines.iter().any(|line| line.contains(kind)),
            "no{kind}line in the trace"
        );
    }
    // Nodes that crashed came back with their synced counter, so counters kept growing.
    for node in simulation.node_ids() {
        assert!(simulation.process(node).unwrap().counter > 0);
    }
    assert!(simulation.now() >= SimTime::from_millis(6_000));
}

#[test]
fn different_seeds_give_different_traces() {
    let hashes: Vec<String> = (0..5).map(|seed| busy_run(seed).trace_hash()).collect();
    for (index, hash) in hashes.iter().enumerate() {
        for other in &hashes[index + 1..] {
            assert_ne!(hash, other, "two seeds produced the same run");
        }
    }
}

#[test]
fn the_trace_hash_of_a_run_is_stable_when_read_twice() {
    let simulation = busy_run(3);
    assert_eq!(simulation.trace_hash(), simulation.trace_hash());
    assert_eq!(simulation.trace_hash().len(), 64);
}
