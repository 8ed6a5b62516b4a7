//! Processes and networks shared by the kernel's integration tests.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::time::Duration;

use dsss_simulations::{
    Context, Link, NetworkConfig, NodeId, Process, RegionId, SimDisk, SimTime, Simulation, TimerId,
};

/// A test message: a numbered probe that carries the virtual time it was sent at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub sequence: u64,
    pub sent_at: SimTime,
}

/// One probe as a recorder saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub from: NodeId,
    pub probe: Probe,
    pub received_at: SimTime,
}

/// A process that records what happens to it and does nothing on its own.
#[derive(Debug, Default)]
pub struct Recorder {
    /// The synced disk contents the factory saw, in key order.
    pub recovered: Vec<(Vec<u8>, Vec<u8>)>,
    pub starts: u32,
    pub received: Vec<Received>,
    pub timers_fired: Vec<TimerId>,
    /// `now_us()` at every event.
    pub clock_readings_us: Vec<u64>,
}

impl Recorder {
    pub fn new(_node: NodeId, disk: &SimDisk) -> Recorder {
        Recorder {
            recovered: disk.scan_prefix(b""),
            ..Recorder::default()
        }
    }

    pub fn sequences_received(&self) -> Vec<u64> {
        self.received
            .iter()
            .map(|received| received.probe.sequence)
            .collect()
    }
}

impl Process for Recorder {
    type Message = Probe;

    fn handle_start(&mut self, cx: &mut Context<'_, Probe>) {
        self.starts += 1;
        self.clock_readings_us.push(cx.now_us());
    }

    fn handle_message(&mut self, cx: &mut Context<'_, Probe>, from: NodeId, probe: Probe) {
        self.clock_readings_us.push(cx.now_us());
        self.received.push(Received {
            from,
            probe,
            received_at: cx.now(),
        });
    }

    fn handle_timer(&mut self, cx: &mut Context<'_, Probe>, timer: TimerId) {
        self.clock_readings_us.push(cx.now_us());
        self.timers_fired.push(timer);
    }
}

pub fn link_us(delay_us: u64, jitter_us: u64) -> Link {
    Link::new(
        Duration::from_micros(delay_us),
        Duration::from_micros(jitter_us),
    )
}

pub const EU: RegionId = RegionId(0);
pub const US: RegionId = RegionId(1);
pub const AP: RegionId = RegionId(2);

/// Three regions: eu holds nodes 1 and 2, us holds 3 and 4, ap holds 5.
/// - eu internal: 1 ms +- 0.2 ms; us internal: 2 ms +- 0.5 ms; ap internal: 3 ms, no jitter.
/// - eu -> us: 40 ms +- 5 ms; us -> eu: 50 ms +- 5 ms; ap <-> both: 100 ms +- 10 ms.
pub fn three_regions() -> NetworkConfig {
    let mut config = NetworkConfig::new();
    let eu = config.add_region("eu-west", link_us(1_000, 200));
    let us = config.add_region("us-east", link_us(2_000, 500));
    let ap = config.add_region("ap-south", link_us(3_000, 0));
    config.set_link(eu, us, link_us(40_000, 5_000));
    config.set_link(us, eu, link_us(50_000, 5_000));
    config.set_link_symmetric(eu, ap, link_us(100_000, 10_000));
    config.set_link_symmetric(us, ap, link_us(100_000, 10_000));
    config.add_node(1, eu);
    config.add_node(2, eu);
    config.add_node(3, us);
    config.add_node(4, us);
    config.add_node(5, ap);
    config
}

/// A simulation of [`three_regions`] with recorders, already started.
pub fn recorders(seed: u64) -> Simulation<Recorder> {
    recorders_on(seed, three_regions())
}

pub fn recorders_on(seed: u64, config: NetworkConfig) -> Simulation<Recorder> {
    let mut simulation = Simulation::new(seed, config, Recorder::new).unwrap();
    simulation.run_until(SimTime::ZERO);
    simulation
}

/// Makes `from` send probe `sequence` to `to` now.
pub fn send_probe<P: Process<Message = Probe>>(
    simulation: &mut Simulation<P>,
    from: NodeId,
    to: NodeId,
    sequence: u64,
) {
    simulation
        .with_process(from, |_, cx| {
            let probe = Probe {
                sequence,
                sent_at: cx.now(),
            };
            cx.send(to, probe);
        })
        .expect("the sender is up");
}

/// True when a probe sent now from `from` to `to` arrives (the run advances by one second,
/// longer than any link of [`three_regions`]).
pub fn delivers(simulation: &mut Simulation<Recorder>, from: NodeId, to: NodeId) -> bool {
    let sequence = simulation.statistics().sent;
    send_probe(simulation, from, to, sequence);
    simulation.run_for(Duration::from_secs(1));
    simulation
        .process(to)
        .expect("the receiver is up")
        .received
        .iter()
        .any(|received| received.from == from && received.probe.sequence == sequence)
}
