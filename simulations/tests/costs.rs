//! Node costs (`dsss_simulations::costs`): a handler's CPU time and its disk syncs delay what
//! it sends after them, and keep its node busy, so that what comes due meanwhile waits in
//! order. Without costs, nothing takes time but the network.

use std::time::Duration;

use dsss_simulations::{
    Context, Link, NetworkConfig, NodeCosts, NodeId, Process, SimDisk, SimTime, Simulation,
    TimerId, WorkKind,
};

/// A message of the test: a ping with a number, or one of the two answers to it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Message {
    Ping(u64),
    /// Sent before the answering node syncs its disk.
    BeforeSync(u64),
    /// Sent after it synced.
    AfterSync(u64),
}

/// Answers each ping twice, around a disk sync, as a raft node sends appends before its own
/// sync and acknowledgements after it; records when answers arrive.
#[derive(Default)]
struct Answerer {
    arrivals: Vec<(Message, SimTime)>,
    /// For each ping handled: its number, and whether another waiting event was to follow.
    pings: Vec<(u64, bool)>,
}

impl Process for Answerer {
    type Message = Message;

    /// A ping is a client's call; its answers are raft traffic.
    fn work_kind(message: &Message) -> WorkKind {
        match message {
            Message::Ping(_) => WorkKind::Client,
            Message::BeforeSync(_) | Message::AfterSync(_) => WorkKind::Raft,
        }
    }

    fn handle_start(&mut self, _cx: &mut Context<'_, Message>) {}

    fn handle_message(&mut self, cx: &mut Context<'_, Message>, from: NodeId, message: Message) {
        if let Message::Ping(number) = message {
            self.pings.push((number, cx.more_waiting()));
            cx.send(from, Message::BeforeSync(number));
            cx.disk().put(b"ping", &number.to_be_bytes()).unwrap();
            cx.disk().sync();
            cx.send(from, Message::AfterSync(number));
        } else {
            self.arrivals.push((message, cx.now()));
        }
    }

    fn handle_timer(&mut self, _cx: &mut Context<'_, Message>, _timer: TimerId) {}
}

/// Nodes 1 and 2, 1 ms apart without jitter; node 2 costs `costs`. Node 1 has just sent two
/// pings, at time zero.
fn two_pings(costs: NodeCosts) -> Simulation<Answerer> {
    let mut config = NetworkConfig::new();
    let region = config.add_region("here", Link::new(Duration::from_millis(1), Duration::ZERO));
    config.add_node(1, region);
    config.add_node(2, region);
    let mut simulation =
        Simulation::new(7, config, |_: NodeId, _: &SimDisk| Answerer::default()).unwrap();
    simulation.set_costs(2, costs);
    simulation.run_until(SimTime::ZERO);
    simulation
        .with_process(1, |_, cx| {
            cx.send(2, Message::Ping(1));
            cx.send(2, Message::Ping(2));
        })
        .unwrap();
    simulation
}

/// When each answer to [`two_pings`] reached node 1.
fn arrivals(costs: NodeCosts) -> Vec<(Message, SimTime)> {
    let mut simulation = two_pings(costs);
    simulation.run_until_quiet().unwrap();
    simulation.process(1).unwrap().arrivals.clone()
}

fn at_us(micros: u64) -> SimTime {
    SimTime::ZERO + Duration::from_micros(micros)
}

#[test]
fn without_costs_only_the_network_takes_time() {
    assert_eq!(
        arrivals(NodeCosts::FREE),
        [
            (Message::BeforeSync(1), at_us(2_000)),
            (Message::AfterSync(1), at_us(2_000)),
            (Message::BeforeSync(2), at_us(2_000)),
            (Message::AfterSync(2), at_us(2_000)),
        ]
    );
}

#[test]
fn a_send_waits_for_the_work_before_it_and_a_busy_node_handles_what_comes_in_order() {
    let costs = NodeCosts::uniform(Duration::from_micros(2_000), Duration::from_micros(100));
    assert_eq!(
        arrivals(costs),
        [
            // Ping 1 reaches node 2 at 1 ms: its first answer leaves after the CPU time
            // (1.1 ms), the second after the sync too (3.1 ms).
            (Message::BeforeSync(1), at_us(2_100)),
            (Message::AfterSync(1), at_us(4_100)),
            // Ping 2 reached node 2 at 1 ms too, and waited until 3.1 ms for ping 1's work.
            (Message::BeforeSync(2), at_us(4_200)),
            (Message::AfterSync(2), at_us(6_200)),
        ]
    );
}

/// A node that crashes while events wait for its work loses them (the messages count as
/// dropped at a down node), and after its restart it handles what comes at once: the work of
/// the crashed process does not hold up the new one.
#[test]
fn a_crash_drops_what_waited_for_the_work_and_the_restarted_node_starts_free() {
    let mut simulation = two_pings(NodeCosts::uniform(
        Duration::from_millis(10),
        Duration::ZERO,
    ));
    // Ping 1 is handled at 1 ms and keeps node 2 busy until 11 ms; ping 2 waits.
    simulation.run_until(at_us(5_000));
    assert!(simulation.crash(2));
    assert_eq!(simulation.statistics().dropped_node_down, 1);
    assert!(simulation.restart(2));
    simulation
        .with_process(1, |_, cx| cx.send(2, Message::Ping(3)))
        .unwrap();
    simulation.run_until_quiet().unwrap();
    let arrivals = &simulation.process(1).unwrap().arrivals;
    assert_eq!(
        arrivals
            .iter()
            .filter(|(message, _)| matches!(message, Message::BeforeSync(2)))
            .count(),
        0,
        "a ping that waited for the crashed process's work was answered: {arrivals:?}"
    );
    // Ping 3 reaches the restarted node at 6 ms and is answered at once.
    assert!(
        arrivals.contains(&(Message::BeforeSync(3), at_us(7_000))),
        "{arrivals:?}"
    );
}

/// A kind of work with a cost of its own costs that: the pings are client work, cheaper than
/// the cost per event, which the node's start (a timer's kind, not named) still costs.
#[test]
fn an_event_costs_the_cpu_time_of_its_kind_where_one_is_set() {
    let costs = NodeCosts::uniform(Duration::from_micros(2_000), Duration::from_micros(100))
        .with_kind(WorkKind::Client, Duration::from_micros(10))
        .with_kind(WorkKind::Raft, Duration::from_micros(900));
    assert_eq!(
        arrivals(costs),
        [
            (Message::BeforeSync(1), at_us(2_010)),
            (Message::AfterSync(1), at_us(4_010)),
            (Message::BeforeSync(2), at_us(4_020)),
            (Message::AfterSync(2), at_us(6_020)),
        ]
    );
    let mut simulation = two_pings(costs);
    simulation.run_until_quiet().unwrap();
    assert_eq!(
        simulation.busy_time(2),
        Duration::from_micros(100 + 2 * 2_010)
    );
}

/// A node's busy time adds up its handlers' costs: its start (a CPU time) and two pings (each a
/// CPU time and one sync).
#[test]
fn a_nodes_busy_time_is_the_sum_of_its_handlers_costs() {
    let costs = NodeCosts::uniform(Duration::from_micros(2_000), Duration::from_micros(100));
    let mut simulation = two_pings(costs);
    simulation.run_until_quiet().unwrap();
    assert_eq!(
        simulation.busy_time(2),
        Duration::from_micros(100 + 2 * 2_100)
    );
    assert_eq!(
        simulation.busy_time(1),
        Duration::ZERO,
        "node 1 has no costs"
    );
}

/// Events that waited for a busy node reach it in one run when it is free: each call but the
/// last is told that another follows, and the work of the run adds up, call after call.
#[test]
fn events_that_waited_reach_the_node_in_one_run_whose_work_adds_up() {
    let mut simulation = two_pings(NodeCosts::uniform(
        Duration::from_micros(2_000),
        Duration::from_micros(100),
    ));
    simulation
        .with_process(1, |_, cx| cx.send(2, Message::Ping(3)))
        .unwrap();
    simulation.run_until_quiet().unwrap();
    // Ping 1 alone at 1 ms; pings 2 and 3 waited until 3.1 ms and came in one run.
    assert_eq!(
        simulation.process(2).unwrap().pings,
        [(1, false), (2, true), (3, false)]
    );
    let arrivals = &simulation.process(1).unwrap().arrivals;
    for expected in [
        (Message::BeforeSync(2), at_us(4_200)),
        (Message::AfterSync(2), at_us(6_200)),
        // Ping 3's work starts where ping 2's ended (5.2 ms).
        (Message::BeforeSync(3), at_us(6_300)),
        (Message::AfterSync(3), at_us(8_300)),
    ] {
        assert!(arrivals.contains(&expected), "{expected:?} in {arrivals:?}");
    }
}

/// A run hands over at most `EVENTS_PER_RUN_MAX` waiting events: the last of them is told that
/// none follows, and the rest come in the next run.
#[test]
fn a_run_ends_at_its_bound_and_the_rest_come_in_the_next_run() {
    use dsss_simulations::simulation::EVENTS_PER_RUN_MAX;
    let mut simulation = two_pings(NodeCosts::uniform(Duration::ZERO, Duration::from_micros(1)));
    let last = EVENTS_PER_RUN_MAX as u64 + 3;
    simulation
        .with_process(1, |_, cx| {
            for number in 3..=last {
                cx.send(2, Message::Ping(number));
            }
        })
        .unwrap();
    simulation.run_until_quiet().unwrap();
    let pings = &simulation.process(2).unwrap().pings;
    // Ping 1 alone; pings 2 to EVENTS_PER_RUN_MAX + 1 in one run; the last two in the next.
    assert_eq!(pings.len() as u64, last);
    let run_end = EVENTS_PER_RUN_MAX;
    assert_eq!(pings[run_end - 1], (run_end as u64, true));
    assert_eq!(pings[run_end], (run_end as u64 + 1, false));
    assert_eq!(pings[run_end + 1], (run_end as u64 + 2, true));
    assert_eq!(pings[run_end + 2], (last, false));
}

/// A node that cannot keep up holds at most `EVENT_QUEUE_LEN_MAX` waiting events: the next one
/// stops the run with a message that names the seed, the node and why, rather than letting the
/// inbox grow without limit.
#[test]
#[should_panic(expected = "events waiting for it to finish its work")]
fn a_busy_nodes_inbox_stops_the_run_at_its_bound() {
    use dsss_simulations::{EVENT_QUEUE_LEN_MAX, NODE_COST_MAX};
    let mut simulation = two_pings(NodeCosts::uniform(Duration::ZERO, NODE_COST_MAX));
    // Node 2 takes the longest cost per event, so pings injected every microsecond pile up in
    // its inbox; they go in a chunk at a time, which keeps the kernel's own queue far below
    // its bound.
    const CHUNK: usize = 10_000;
    let mut number = 3;
    for chunk in 0..=EVENT_QUEUE_LEN_MAX / CHUNK {
        let at = at_us(10 + chunk as u64);
        for _ in 0..CHUNK {
            simulation.inject(at, 2, Message::Ping(number));
            number += 1;
        }
        simulation.run_until(at);
    }
}
