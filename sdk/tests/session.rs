//! The client session, sans-IO, driven by hand: one stream feeds every open object, a copy
//! opened later joins at the client's position, a member that stalls is left when something
//! waits on it, a member that lies is left without harm, retries keep their sequence, a
//! barrier waits for its position (docs/design.md section 2, "SDK client session"), every
//! subscription names its stream, calls go in a session the region holds, and a committed call
//! is never reported failed when its copy jumps over its record.
#![deny(missing_docs)]

use std::sync::Arc;

use dsss::replica::{RECENT_OUTCOMES_MAX, RecordRef, Replica, ReplicaConfig, SharedReplica};
use dsss::session::{
    ClientSession, Event, FetchedCheckpoint, LATE_SYNC_ATTEMPTS_MAX, LogEntry, LogRecord,
    PositionedEntry, Request, Response, SessionConfig, Transmit, new_copy,
};
use dsss::{CallError, Codec, Postcard, SharedObject};
use dsss_wire::Scope;

/// A register whose write returns the value it replaced.
#[dsss::shared_object]
#[derive(Default, Debug, serde::Serialize, serde::Deserialize)]
pub struct Register {
    value: u64,
}

#[dsss::methods]
impl Register {
    /// Writes `value`; returns the value replaced.
    #[mutate(id = 1)]
    pub fn write(&mut self, value: u64) -> u64 {
        std::mem::replace(&mut self.value, value)
    }

    /// The value.
    pub fn value(&self) -> u64 {
        self.value
    }
}

const CLIENT: u64 = 7;
const MEMBERS: [u64; 3] = [1, 2, 3];
const STALL_US: u64 = 1_000_000;
const ATTEMPT_US: u64 = 2_000_000;

/// A session whose region session (id [`SESSION`]) the region has confirmed.
fn session() -> ClientSession {
    let mut session = unopened_session(SESSION);
    open_region_session(&mut session, 0);
    session
}

/// The session id of the sessions of these tests, unless a test says otherwise.
const SESSION: u64 = 0x5e55;

fn unopened_session(session_id: u64) -> ClientSession {
    let mut config = SessionConfig::new(CLIENT, MEMBERS.to_vec());
    config.stream_stall_timeout_us = STALL_US;
    config.attempt_timeout_us = ATTEMPT_US;
    // These tests follow the session's deadlines one by one; the idle checkpoint has a test
    // of its own.
    config.idle_checkpoint_after_us = 0;
    ClientSession::new(config, session_id).expect("a valid configuration")
}

/// Lets the session ask the region to open its session, and confirms it; returns the id it
/// asked for.
fn open_region_session(session: &mut ClientSession, now: u64) -> u64 {
    session.handle_timeout(now);
    let sent = transmits(session);
    let [transmit] = &sent[..] else {
        panic!("one open expected: {sent:?}");
    };
    let Request::OpenSession { session_id } = transmit.request else {
        panic!("an open expected: {transmit:?}");
    };
    session.handle_response(
        now,
        transmit.node_id,
        transmit.request_id,
        Response::SessionOpened { log_session_id: 0 },
    );
    session_id
}

fn copy(name: &str) -> Arc<SharedReplica<Register>> {
    Arc::new(new_copy::<Register>(name, ReplicaConfig::default()))
}

fn transmits(session: &mut ClientSession) -> Vec<Transmit> {
    std::iter::from_fn(|| session.poll_transmit()).collect()
}

fn events(session: &mut ClientSession) -> Vec<Event> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

/// Answers a checkpoint fetch: the region keeps no checkpoint of the object, with its
/// truncation point and the position it released records through.
fn answer_without_checkpoint(
    session: &mut ClientSession,
    now: u64,
    fetch: &Transmit,
    truncated_through_position: u64,
    released_through_position: u64,
) {
    session.handle_response(
        now,
        fetch.node_id,
        fetch.request_id,
        Response::Checkpoint {
            checkpoint: None,
            truncated_through_position,
            released_through_position,
        },
    );
}

/// Drives the opens just started: answers every checkpoint fetch with "no checkpoint" (fresh
/// objects) at `now` and hands each other request, in the order they come, to `other`.
fn drive_opens(session: &mut ClientSession, now: u64, mut other: impl FnMut(Transmit)) {
    let mut pending = transmits(session);
    while let Some(transmit) = pending.pop() {
        if let Request::FetchCheckpoint { .. } = &transmit.request {
            answer_without_checkpoint(session, now, &transmit, 0, 0);
            pending.extend(transmits(session));
        } else {
            other(transmit);
        }
    }
}

fn record(
    object: &str,
    client_id: u64,
    sequence: u64,
    method_id: u32,
    arguments: Vec<u8>,
) -> LogRecord {
    LogRecord {
        object_id: object.to_owned(),
        client_id,
        request_sequence: sequence,
        method_id,
        arguments,
    }
}

fn write_entry(
    position: u64,
    object: &str,
    client_id: u64,
    sequence: u64,
    value: u64,
) -> PositionedEntry {
    PositionedEntry {
        position,
        entry: LogEntry::SequencedGlobal(record(
            object,
            client_id,
            sequence,
            1,
            Postcard::encode(&(value,)).expect("encodes"),
        )),
    }
}

/// The one live subscription among `sent`, if the batch opened one.
fn subscription(sent: &[Transmit]) -> Option<(u64, u64, u64, Vec<String>)> {
    sent.iter()
        .rev()
        .find_map(|transmit| match &transmit.request {
            Request::Subscribe {
                from_position,
                object_ids,
                ..
            } => Some((
                transmit.node_id,
                transmit.request_id,
                *from_position,
                object_ids.clone(),
            )),
            _ => None,
        })
}

/// Opens `names` (fresh objects, no checkpoint) and completes their schema declarations at
/// the positions that follow `first_position - 1`; returns the live stream (node, request id)
/// and the next free position.
fn open_all(
    session: &mut ClientSession,
    names: &[&str],
    copies: &[Arc<SharedReplica<Register>>],
    first_position: u64,
) -> (u64, u64, u64) {
    let now = 0;
    for (name, copy) in names.iter().zip(copies) {
        session
            .open(now, name, Scope::Global, Arc::clone(copy) as _)
            .expect("opens");
    }
    let mut stream = None;
    let mut position = first_position;
    let mut proposals = Vec::new();
    drive_opens(session, now, |transmit| match &transmit.request {
        Request::Subscribe { .. } => {
            stream = Some((transmit.node_id, transmit.request_id));
        }
        Request::Propose {
            object_id,
            method_id,
            arguments,
            request_sequence,
            ..
        } => {
            assert_eq!(
                *method_id, 0,
                "only schema declarations are proposed at open"
            );
            proposals.push((
                transmit.clone(),
                object_id.clone(),
                arguments.clone(),
                *request_sequence,
            ));
        }
        other => panic!("unexpected request at open: {other:?}"),
    });
    let (node, stream_id) = stream.expect("a stream was opened");
    let mut entries = Vec::new();
    for (transmit, object_id, arguments, sequence) in &proposals {
        session.handle_response(
            now,
            transmit.node_id,
            transmit.request_id,
            Response::Proposed { position },
        );
        entries.push(PositionedEntry {
            position,
            entry: LogEntry::SequencedGlobal(record(
                object_id,
                SESSION,
                *sequence,
                0,
                arguments.clone(),
            )),
        });
        position += 1;
    }
    session.handle_response(
        now,
        node,
        stream_id,
        Response::LogPiece {
            entries,
            through_position: position - 1,
        },
    );
    let opened = events(session)
        .into_iter()
        .filter(|event| {
            matches!(
                event,
                Event::Opened {
                    outcome: Ok(()),
                    ..
                }
            )
        })
        .count();
    assert_eq!(opened, names.len(), "every object opened");
    let live = subscription(&transmits(session)).map_or((node, stream_id), |(n, id, _, _)| (n, id));
    (live.0, live.1, position)
}

#[test]
fn one_stream_feeds_every_open_object_and_they_advance_together() {
    let mut session = session();
    let copies = [copy("a"), copy("b")];
    session
        .open(0, "a", Scope::Global, Arc::clone(&copies[0]) as _)
        .expect("opens");
    session
        .open(0, "b", Scope::Global, Arc::clone(&copies[1]) as _)
        .expect("opens");
    let mut subscriptions = Vec::new();
    for transmit in transmits(&mut session) {
        assert!(matches!(transmit.request, Request::FetchCheckpoint { .. }));
        answer_without_checkpoint(&mut session, 0, &transmit, 0, 0);
        let sent = transmits(&mut session);
        if let Some(subscribe) = subscription(&sent) {
            subscriptions.push(subscribe);
        }
    }
    // Each subscription replaces the one before; the last one carries both objects.
    let (_, _, from, objects) = subscriptions.last().cloned().expect("subscribed");
    assert_eq!(from, 1);
    assert_eq!(objects, vec!["a".to_owned(), "b".to_owned()]);

    let mut session = self::session();
    let (node, stream, next) = open_all(&mut session, &["a", "b"], &copies_fresh(), 1);
    assert_eq!(next, 3);
    // Another client writes a then b: one piece moves both copies to one position.
    session.handle_response(
        0,
        node,
        stream,
        Response::LogPiece {
            entries: vec![
                write_entry(3, "a", 99, 1, 10),
                write_entry(4, "b", 99, 2, 20),
            ],
            through_position: 6,
        },
    );
    assert_eq!(session.position(), 6);
}

fn copies_fresh() -> Vec<Arc<SharedReplica<Register>>> {
    vec![copy("a"), copy("b")]
}

#[test]
fn a_copy_opened_later_joins_at_the_client_position_without_moving_the_others() {
    let mut session = session();
    let a = copy("a");
    let (node, stream, _) = open_all(&mut session, &["a"], std::slice::from_ref(&a), 1);
    session.handle_response(
        0,
        node,
        stream,
        Response::LogPiece {
            entries: vec![write_entry(2, "a", 99, 1, 5), write_entry(3, "b", 99, 2, 6)],
            through_position: 10,
        },
    );
    assert_eq!(a.lock_read().position(), 10);
    assert_eq!(a.read(Register::value), 5);
    let b = copy("b");
    session
        .open(1, "b", Scope::Global, Arc::clone(&b) as _)
        .expect("opens");
    let fetch = transmits(&mut session).pop().expect("a fetch");
    answer_without_checkpoint(&mut session, 1, &fetch, 0, 0);
    let (node, stream, from, objects) =
        subscription(&transmits(&mut session)).expect("resubscribed");
    assert_eq!(from, 1, "the stream starts below the new copy");
    assert_eq!(objects, vec!["a".to_owned(), "b".to_owned()]);
    // The stream repeats a's write at 2: a must not apply it again (the replica would panic).
    session.handle_response(
        2,
        node,
        stream,
        Response::LogPiece {
            entries: vec![write_entry(2, "a", 99, 1, 5), write_entry(3, "b", 99, 2, 6)],
            through_position: 10,
        },
    );
    assert_eq!(b.read(Register::value), 6);
    assert_eq!(b.lock_read().position(), 10);
    assert_eq!(a.lock_read().position(), 10);
    // Joined: b declares its schema now.
    let declaration = transmits(&mut session)
        .into_iter()
        .find(|transmit| matches!(transmit.request, Request::Propose { method_id: 0, .. }));
    assert!(
        declaration.is_some(),
        "b declares its schema once it joined"
    );
}

#[test]
fn a_stalled_member_is_left_when_a_call_waits_on_it() {
    let mut session = session();
    let a = copy("a");
    let (stream_node, _, next) = open_all(&mut session, &["a"], std::slice::from_ref(&a), 1);
    let now = 10_000_000;
    let call = session
        .call(now, "a", 1, Postcard::encode(&(42u64,)).expect("encodes"))
        .expect("called");
    let propose = transmits(&mut session).pop().expect("a proposal");
    session.handle_response(
        now,
        propose.node_id,
        propose.request_id,
        Response::Proposed { position: next },
    );
    // The stream's member says nothing more (paused with its connection open).
    assert!(transmits(&mut session).is_empty());
    let due = session.poll_timeout().expect("a stall deadline");
    assert!(due <= now + STALL_US);
    session.handle_timeout(due);
    // A backoff may come first; then a new subscription at another member.
    let mut resubscribed = subscription(&transmits(&mut session));
    if resubscribed.is_none() {
        let again = session.poll_timeout().expect("a reopen time");
        session.handle_timeout(again);
        resubscribed = subscription(&transmits(&mut session));
    }
    let (node, stream, from, _) = resubscribed.expect("the stream moved");
    assert_ne!(node, stream_node);
    assert_eq!(from, next, "it resumes after what the copy applied");
    let arguments = Postcard::encode(&(42u64,)).expect("encodes");
    session.handle_response(
        due + 1,
        node,
        stream,
        Response::LogPiece {
            entries: vec![PositionedEntry {
                position: next,
                entry: LogEntry::SequencedGlobal(record("a", SESSION, 2, 1, arguments)),
            }],
            through_position: next,
        },
    );
    let done = events(&mut session);
    assert_eq!(
        done,
        vec![Event::CallDone {
            call_id: call,
            outcome: Ok(Postcard::encode(&0u64).expect("encodes")),
        }]
    );
    assert_eq!(a.read(Register::value), 42);
}

#[test]
fn a_member_that_sends_a_broken_stream_is_left_and_nothing_is_applied_twice() {
    let mut session = session();
    let a = copy("a");
    let (node, stream, next) = open_all(&mut session, &["a"], std::slice::from_ref(&a), 1);
    session.handle_response(
        0,
        node,
        stream,
        Response::LogPiece {
            entries: vec![write_entry(next, "a", 99, 1, 7)],
            through_position: next,
        },
    );
    // Positions going backwards, then an entry beyond the piece's own bound.
    for entries in [
        vec![
            write_entry(next + 2, "a", 99, 3, 9),
            write_entry(next + 1, "a", 99, 2, 8),
        ],
        vec![write_entry(next + 5, "a", 99, 4, 9)],
    ] {
        session.handle_response(
            1,
            node,
            stream,
            Response::LogPiece {
                entries,
                through_position: next + 3,
            },
        );
    }
    assert_eq!(a.read(Register::value), 7);
    assert_eq!(a.lock_read().position(), next);
    let reopen = session.poll_timeout().expect("the stream reopens");
    session.handle_timeout(reopen);
    let (moved_to, _, from, _) = subscription(&transmits(&mut session)).expect("resubscribed");
    assert_ne!(moved_to, node);
    assert_eq!(from, next + 1);
}

#[test]
fn an_unanswered_call_is_retried_at_another_member_with_the_same_sequence() {
    let mut session = session();
    let a = copy("a");
    open_all(&mut session, &["a"], std::slice::from_ref(&a), 1);
    session
        .call(0, "a", 1, Postcard::encode(&(1u64,)).expect("encodes"))
        .expect("called");
    let first = transmits(&mut session).pop().expect("a proposal");
    session.handle_timeout(ATTEMPT_US);
    let mut retry = transmits(&mut session).pop();
    if retry.is_none() {
        let at = session.poll_timeout().expect("a retry time");
        session.handle_timeout(at);
        retry = transmits(&mut session).pop();
    }
    let retry = retry.expect("retried");
    let sequence = |transmit: &Transmit| match transmit.request {
        Request::Propose {
            request_sequence, ..
        } => request_sequence,
        _ => panic!("not a proposal"),
    };
    assert_eq!(sequence(&first), sequence(&retry));
    assert_ne!(first.node_id, retry.node_id);
    assert_ne!(first.request_id, retry.request_id);
    // A late answer to the first attempt is ignored.
    session.handle_response(
        ATTEMPT_US + 1,
        first.node_id,
        first.request_id,
        Response::Refused {
            reason: "late".to_owned(),
        },
    );
    assert!(events(&mut session).is_empty());
}

/// The region's dedup window: the highest sequences of a session it still judges.
const REGION_DEDUP_WINDOW: u64 = 32;

#[test]
fn a_call_left_unanswered_never_falls_out_of_the_region_dedup_window() {
    let mut session = session();
    let a = copy("a");
    let (node, stream, mut position) = open_all(&mut session, &["a"], std::slice::from_ref(&a), 1);
    for value in 0..100u64 {
        session
            .call(0, "a", 1, Postcard::encode(&(value,)).expect("encodes"))
            .expect("queued");
    }
    // The first proposal is never answered; every other one is committed and applied at once.
    let mut stuck = None;
    let mut highest_applied = 0;
    for _ in 0..200 {
        let mut entries = Vec::new();
        for transmit in transmits(&mut session) {
            let Request::Propose {
                request_sequence,
                arguments,
                ..
            } = &transmit.request
            else {
                continue;
            };
            let sequence = *request_sequence;
            if *stuck.get_or_insert(sequence) == sequence {
                continue;
            }
            session.handle_response(
                0,
                transmit.node_id,
                transmit.request_id,
                Response::Proposed { position },
            );
            entries.push(PositionedEntry {
                position,
                entry: LogEntry::SequencedGlobal(record(
                    "a",
                    SESSION,
                    sequence,
                    1,
                    arguments.clone(),
                )),
            });
            highest_applied = highest_applied.max(sequence);
            position += 1;
        }
        if entries.is_empty() {
            break;
        }
        session.handle_response(
            0,
            node,
            stream,
            Response::LogPiece {
                entries,
                through_position: position - 1,
            },
        );
        events(&mut session);
    }
    let stuck = stuck.expect("a call was proposed");
    assert!(highest_applied > stuck, "the other calls went on");
    assert!(
        highest_applied < stuck + REGION_DEDUP_WINDOW,
        "sequence {highest_applied} was applied while {stuck} may still be retried: the region \
         would refuse the retry as too old"
    );
    // The retry of the unanswered call still carries its sequence, inside the window.
    session.handle_timeout(ATTEMPT_US);
    let mut retried = transmits(&mut session);
    if retried.is_empty() {
        let at = session.poll_timeout().expect("a retry time");
        session.handle_timeout(at);
        retried = transmits(&mut session);
    }
    let (_, _, sequence) = proposal(&retried);
    assert_eq!(sequence, stuck);
}

#[test]
fn a_committed_call_that_no_member_delivers_fails_at_its_deadline_and_is_still_applied_later() {
    let mut session = session();
    let a = copy("a");
    let (stream_node, stream_id, next) =
        open_all(&mut session, &["a"], std::slice::from_ref(&a), 1);
    let mut stream = (stream_node, stream_id);
    let start = 10_000_000;
    let call = session
        .call(start, "a", 1, Postcard::encode(&(42u64,)).expect("encodes"))
        .expect("called");
    let (propose, _, sequence) = proposal(&transmits(&mut session));
    session.handle_response(
        start,
        propose.node_id,
        propose.request_id,
        Response::Proposed { position: next },
    );
    // Every member the stream moves to stays silent (packets dropped): follow the session's
    // deadlines, answering nothing, until the call's own deadline passes.
    let deadline = start + SessionConfig::new(CLIENT, MEMBERS.to_vec()).call_timeout_us;
    let mut now = start;
    let mut done = Vec::new();
    while done.is_empty() {
        now = session.poll_timeout().expect("something waits");
        assert!(now <= deadline, "the call waited past its deadline");
        session.handle_timeout(now);
        if let Some((node, request_id, from, _)) = subscription(&transmits(&mut session)) {
            assert_eq!(from, next, "the stream resumes where the copy stands");
            stream = (node, request_id);
        }
        done = events(&mut session);
    }
    assert_eq!(now, deadline);
    let [Event::CallDone { call_id, outcome }] = &done[..] else {
        panic!("the call's end expected: {done:?}");
    };
    assert_eq!(*call_id, call);
    assert!(
        matches!(
            outcome,
            Err(CallError::NotApplied { object, position, waited_ms })
                if object == "a" && *position == next && *waited_ms == (deadline - start) / 1_000
        ),
        "{outcome:?}"
    );
    assert!(
        session.overdue(now).is_empty(),
        "{:?}",
        session.overdue(now)
    );
    // When the stream's member serves the log again, the record is applied like any other.
    session.handle_response(
        now + 1,
        stream.0,
        stream.1,
        Response::LogPiece {
            entries: vec![write_entry(next, "a", SESSION, sequence, 42)],
            through_position: next,
        },
    );
    assert_eq!(a.read(Register::value), 42);
    assert!(
        events(&mut session).is_empty(),
        "the call was answered once"
    );
}

#[test]
fn a_barrier_completes_only_when_the_client_position_reaches_it() {
    let mut session = session();
    let copies = copies_fresh();
    let (node, stream, next) = open_all(&mut session, &["a", "b"], &copies, 1);
    let sync = session.sync(0).expect("a barrier");
    let ask = transmits(&mut session).pop().expect("a barrier request");
    assert!(matches!(ask.request, Request::Sync { .. }));
    session.handle_response(
        0,
        ask.node_id,
        ask.request_id,
        Response::Barrier {
            apply_through_position: next + 5,
        },
    );
    assert!(events(&mut session).is_empty());
    session.handle_response(
        1,
        node,
        stream,
        Response::LogPiece {
            entries: vec![write_entry(next + 2, "b", 99, 1, 3)],
            through_position: next + 4,
        },
    );
    assert!(events(&mut session).is_empty());
    session.handle_response(
        2,
        node,
        stream,
        Response::LogPiece {
            entries: Vec::new(),
            through_position: next + 5,
        },
    );
    assert_eq!(
        events(&mut session),
        vec![Event::SyncDone {
            sync_id: sync,
            outcome: Ok(())
        }]
    );
    for copy in &copies {
        assert_eq!(copy.lock_read().position(), next + 5);
    }
}

/// The `sync()` requests among `sent`.
fn sync_requests(sent: Vec<Transmit>) -> Vec<Transmit> {
    sent.into_iter()
        .filter(|transmit| matches!(transmit.request, Request::Sync { .. }))
        .collect()
}

/// A link slower than the attempt timeout: the answer to a `sync()` attempt arrives after the
/// session gave up on it. Every attempt was asked after the barrier began, so the late answer
/// still names a valid barrier: the barrier completes with it and no further attempt is sent,
/// instead of each attempt timing out in turn.
#[test]
fn a_barrier_answered_after_its_attempt_timed_out_completes_with_that_answer() {
    let mut session = session();
    let copies = copies_fresh();
    let (node, stream, next) = open_all(&mut session, &["a", "b"], &copies, 1);
    let sync = session.sync(0).expect("a barrier");
    let [first] = &sync_requests(transmits(&mut session))[..] else {
        panic!("one barrier request");
    };
    session.handle_timeout(ATTEMPT_US);
    // The first attempt's answer comes late.
    session.handle_response(
        ATTEMPT_US + 1,
        first.node_id,
        first.request_id,
        Response::Barrier {
            apply_through_position: next + 1,
        },
    );
    assert_eq!(session.counters().late_sync_barriers, 1);
    session.handle_response(
        ATTEMPT_US + 2,
        node,
        stream,
        Response::LogPiece {
            entries: Vec::new(),
            through_position: next + 1,
        },
    );
    assert_eq!(
        events(&mut session),
        vec![Event::SyncDone {
            sync_id: sync,
            outcome: Ok(())
        }]
    );
    // Nothing is asked again.
    let mut now = ATTEMPT_US + 2;
    for _ in 0..4 {
        let Some(deadline) = session.poll_timeout() else {
            break;
        };
        now = deadline.max(now);
        session.handle_timeout(now);
        assert!(sync_requests(transmits(&mut session)).is_empty());
    }
}

/// Attempts given up on are remembered up to [`LATE_SYNC_ATTEMPTS_MAX`]: the answer to one
/// forgotten past the bound names no barrier, the answer to the newest does.
#[test]
fn late_barrier_answers_are_taken_for_the_newest_attempts_up_to_the_bound() {
    let mut config = SessionConfig::new(CLIENT, MEMBERS.to_vec());
    config.stream_stall_timeout_us = STALL_US;
    config.idle_checkpoint_after_us = 0;
    // Attempts that time out one after another, for longer than the bound covers.
    config.attempt_timeout_us = 10;
    config.retry_wait_us = 1;
    config.retry_wait_max_us = 1;
    config.call_timeout_us = 1_000_000_000;
    let mut session = ClientSession::new(config, SESSION).expect("a valid configuration");
    open_region_session(&mut session, 0);
    let copies = copies_fresh();
    let (_, _, next) = open_all(&mut session, &["a"], &copies, 1);
    session.sync(0).expect("a barrier");
    let mut attempts = sync_requests(transmits(&mut session));
    let mut now = 0;
    while attempts.len() <= LATE_SYNC_ATTEMPTS_MAX + 1 {
        now = session.poll_timeout().expect("a deadline").max(now);
        session.handle_timeout(now);
        attempts.extend(sync_requests(transmits(&mut session)));
    }
    // The oldest attempt was forgotten: its answer names nothing.
    let oldest = &attempts[0];
    session.handle_response(
        now,
        oldest.node_id,
        oldest.request_id,
        Response::Barrier {
            apply_through_position: next + 1,
        },
    );
    assert_eq!(session.counters().late_sync_barriers, 0);
    // The newest one given up on is still taken.
    let newest = &attempts[LATE_SYNC_ATTEMPTS_MAX];
    session.handle_response(
        now,
        newest.node_id,
        newest.request_id,
        Response::Barrier {
            apply_through_position: next + 1,
        },
    );
    assert_eq!(session.counters().late_sync_barriers, 1);
}

#[test]
fn bounds_and_bad_requests_are_refused_with_what_was_wrong() {
    let mut session = session();
    let error = session
        .call(0, "missing", 1, Vec::new())
        .expect_err("not open");
    assert!(error.to_string().contains("missing is not open"), "{error}");
    let error = session
        .open(0, "", Scope::Global, copy("x") as _)
        .expect_err("empty name");
    assert!(error.to_string().contains("configuration"), "{error}");
    session
        .open(0, "a", Scope::Global, copy("a") as _)
        .expect("opens");
    let error = session
        .open(0, "a", Scope::Global, copy("a") as _)
        .expect_err("twice");
    assert!(
        error.to_string().contains("open in this client already"),
        "{error}"
    );
    let mut config = SessionConfig::new(0, MEMBERS.to_vec());
    assert!(ClientSession::new(config.clone(), 1).is_err());
    config.client_id = 1;
    config.members.clear();
    assert!(ClientSession::new(config, 1).is_err());
    assert_eq!(Register::schema().methods.len(), 1);
}

/// The one proposal among `sent`: (transmit, session id, sequence).
fn proposal(sent: &[Transmit]) -> (Transmit, u64, u64) {
    let found: Vec<_> = sent
        .iter()
        .filter_map(|transmit| match &transmit.request {
            Request::Propose {
                client_id,
                request_sequence,
                ..
            } => Some((transmit.clone(), *client_id, *request_sequence)),
            _ => None,
        })
        .collect();
    let [one] = &found[..] else {
        panic!("one proposal expected: {sent:?}");
    };
    one.clone()
}

#[test]
fn calls_carry_the_session_id_and_a_restarted_process_never_takes_its_predecessors_records() {
    // Two processes in turn with the same configured client id: each session draws a fresh
    // session id, and its calls carry it.
    let (first, second) = (0x1111, 0x2222);
    let mut before = unopened_session(first);
    assert_eq!(open_region_session(&mut before, 0), first);
    let mut after = unopened_session(second);
    assert_eq!(open_region_session(&mut after, 0), second);
    let a = copy("a");
    let (node, stream, next) = open_all_as(&mut after, second, "a", &a);
    let call = after
        .call(0, "a", 1, Postcard::encode(&(9u64,)).expect("encodes"))
        .expect("calls");
    let (transmit, session_id, sequence) = proposal(&transmits(&mut after));
    assert_eq!(session_id, second);
    after.handle_response(
        0,
        transmit.node_id,
        transmit.request_id,
        Response::Proposed { position: next + 1 },
    );
    // The record of the process before, with the same sequence, is someone else's call.
    let write = |position, session, value: u64| PositionedEntry {
        position,
        entry: LogEntry::SequencedGlobal(record(
            "a",
            session,
            sequence,
            1,
            Postcard::encode(&(value,)).expect("encodes"),
        )),
    };
    after.handle_response(
        0,
        node,
        stream,
        Response::LogPiece {
            entries: vec![write(next, first, 5)],
            through_position: next,
        },
    );
    assert!(events(&mut after).is_empty(), "not this process's call");
    after.handle_response(
        0,
        node,
        stream,
        Response::LogPiece {
            entries: vec![write(next + 1, second, 9)],
            through_position: next + 1,
        },
    );
    assert_eq!(
        events(&mut after),
        vec![Event::CallDone {
            call_id: call,
            outcome: Ok(Postcard::encode(&5u64).expect("encodes")),
        }],
        "the call replaced the value the earlier process wrote"
    );
}

#[test]
fn calls_name_the_chosen_session_id_and_are_found_under_the_id_the_region_keeps() {
    // Under mutual TLS the region keeps the session under an id of the client's identity:
    // requests keep naming the id the client chose, records carry the region's.
    const KEPT: u64 = 0x0123_4567_89ab_cdef;
    let mut session = unopened_session(SESSION);
    session.handle_timeout(0);
    let sent = transmits(&mut session);
    let [open] = &sent[..] else {
        panic!("one open expected: {sent:?}");
    };
    session.handle_response(
        0,
        open.node_id,
        open.request_id,
        Response::SessionOpened {
            log_session_id: KEPT,
        },
    );
    let a = copy("a");
    let (node, stream, next) = open_all_kept(&mut session, SESSION, KEPT, "a", &a);
    let call = session
        .call(0, "a", 1, Postcard::encode(&(4u64,)).expect("encodes"))
        .expect("calls");
    let (transmit, session_id, sequence) = proposal(&transmits(&mut session));
    assert_eq!(session_id, SESSION, "requests name the id the client chose");
    session.handle_response(
        0,
        transmit.node_id,
        transmit.request_id,
        Response::Proposed { position: next },
    );
    // A record under the chosen id is someone else's; the call's record carries the kept id.
    session.handle_response(
        0,
        node,
        stream,
        Response::LogPiece {
            entries: vec![write_entry(next, "a", KEPT, sequence, 4)],
            through_position: next,
        },
    );
    assert_eq!(
        events(&mut session),
        vec![Event::CallDone {
            call_id: call,
            outcome: Ok(Postcard::encode(&0u64).expect("encodes")),
        }]
    );
    // A close names the chosen id too.
    let _ = session.close_session(0);
    let sent = transmits(&mut session);
    assert!(
        sent.iter().any(|transmit| matches!(
            transmit.request,
            Request::CloseSession { session_id } if session_id == SESSION
        )),
        "the close names the chosen id: {sent:?}"
    );
}

/// Opens `name` on a session whose region session is `session_id`; the live stream and the
/// next free position.
fn open_all_as(
    session: &mut ClientSession,
    session_id: u64,
    name: &str,
    copy: &Arc<SharedReplica<Register>>,
) -> (u64, u64, u64) {
    open_all_kept(session, session_id, session_id, name, copy)
}

/// [`open_all_as`] for a session whose requests name `chosen` and whose records carry `kept`.
fn open_all_kept(
    session: &mut ClientSession,
    chosen: u64,
    session_id: u64,
    name: &str,
    copy: &Arc<SharedReplica<Register>>,
) -> (u64, u64, u64) {
    session
        .open(0, name, Scope::Global, Arc::clone(copy) as _)
        .expect("opens");
    let mut stream = None;
    let mut declaration = None;
    drive_opens(session, 0, |transmit| match &transmit.request {
        Request::Subscribe { .. } => stream = Some((transmit.node_id, transmit.request_id)),
        Request::Propose {
            client_id,
            request_sequence,
            arguments,
            ..
        } => {
            assert_eq!(*client_id, chosen);
            declaration = Some((transmit.clone(), *request_sequence, arguments.clone()));
        }
        other => panic!("unexpected request at open: {other:?}"),
    });
    let (node, stream) = stream.expect("a stream was opened");
    let (transmit, sequence, arguments) = declaration.expect("the schema was declared");
    session.handle_response(
        0,
        transmit.node_id,
        transmit.request_id,
        Response::Proposed { position: 1 },
    );
    session.handle_response(
        0,
        node,
        stream,
        Response::LogPiece {
            entries: vec![PositionedEntry {
                position: 1,
                entry: LogEntry::SequencedGlobal(record(name, session_id, sequence, 0, arguments)),
            }],
            through_position: 1,
        },
    );
    assert!(matches!(
        events(session)[..],
        [Event::Opened {
            outcome: Ok(()),
            ..
        }]
    ));
    (node, stream, 2)
}

#[test]
fn a_call_whose_only_attempt_met_an_ended_session_goes_again_in_a_new_session() {
    let mut session = session();
    let a = copy("a");
    open_all_as(&mut session, SESSION, "a", &a);
    let call = session
        .call(0, "a", 1, Postcard::encode(&(3u64,)).expect("encodes"))
        .expect("calls");
    let (transmit, session_id, _) = proposal(&transmits(&mut session));
    assert_eq!(session_id, SESSION);
    session.handle_response(
        0,
        transmit.node_id,
        transmit.request_id,
        Response::SessionUnknown {
            session_id: SESSION,
        },
    );
    assert!(
        events(&mut session).is_empty(),
        "nothing of the call was applied: it is not failed"
    );
    // A new session, under a new id, then the same call in it.
    let renewed = open_region_session(&mut session, 1);
    assert_ne!(renewed, SESSION);
    let (_, session_id, sequence) = proposal(&transmits(&mut session));
    assert_eq!(session_id, renewed);
    assert_eq!(session.counters().sessions_opened, 2);
    assert!(sequence >= 1);
    let _ = call;
}

/// Attempts a member refused before proposing anything (overloaded) cannot have been applied:
/// when the next one meets an ended session, the call goes again in a new session rather than
/// fail as possibly applied.
#[test]
fn a_call_refused_as_overloaded_whose_retry_meets_an_ended_session_goes_again_in_a_new_one() {
    let mut session = session();
    let a = copy("a");
    open_all_as(&mut session, SESSION, "a", &a);
    session
        .call(0, "a", 1, Postcard::encode(&(3u64,)).expect("encodes"))
        .expect("calls");
    let mut now = 0;
    for _ in 0..3 {
        let (attempt, session_id, _) = proposal(&transmits(&mut session));
        assert_eq!(session_id, SESSION);
        session.handle_response(
            now,
            attempt.node_id,
            attempt.request_id,
            Response::Busy {
                reason: "overloaded: 1024 batches wait for the coordinator".to_owned(),
            },
        );
        now = session.poll_timeout().expect("a retry time");
        session.handle_timeout(now);
    }
    let (attempt, _, _) = proposal(&transmits(&mut session));
    session.handle_response(
        now,
        attempt.node_id,
        attempt.request_id,
        Response::SessionUnknown {
            session_id: SESSION,
        },
    );
    assert!(
        events(&mut session).is_empty(),
        "nothing of the call was applied: it is not failed"
    );
    let renewed = open_region_session(&mut session, now + 1);
    assert_ne!(renewed, SESSION);
    let (_, session_id, _) = proposal(&transmits(&mut session));
    assert_eq!(session_id, renewed, "the same call, in the new session");
}

#[test]
fn a_retried_call_whose_session_ended_is_reported_as_possibly_applied() {
    let mut session = session();
    let a = copy("a");
    open_all_as(&mut session, SESSION, "a", &a);
    let call = session
        .call(0, "a", 1, Postcard::encode(&(3u64,)).expect("encodes"))
        .expect("calls");
    let (transmit, _, sequence) = proposal(&transmits(&mut session));
    // The first attempt's answer is lost; the retry meets the ended session.
    session.handle_response(
        0,
        transmit.node_id,
        transmit.request_id,
        Response::Failed {
            reason: "connection reset".to_owned(),
        },
    );
    let due = session.poll_timeout().expect("a retry time");
    session.handle_timeout(due);
    let (retry, session_id, retried_sequence) = proposal(&transmits(&mut session));
    assert_eq!((session_id, retried_sequence), (SESSION, sequence));
    session.handle_response(
        due,
        retry.node_id,
        retry.request_id,
        Response::SessionUnknown {
            session_id: SESSION,
        },
    );
    let done = events(&mut session);
    assert!(
        matches!(
            &done[..],
            [Event::CallDone {
                call_id,
                outcome: Err(dsss::CallError::SessionEnded { session_id: SESSION }),
            }] if *call_id == call
        ),
        "{done:?}"
    );
    // Later calls go in a new session.
    let renewed = open_region_session(&mut session, due + 1);
    assert_ne!(renewed, SESSION);
}

/// The stream key of every subscription sent while `names` open (no checkpoints), with the
/// objects each asked for.
fn subscriptions_while_opening(
    session: &mut ClientSession,
    names: &[&str],
) -> Vec<(u64, Vec<String>)> {
    for name in names {
        session
            .open(0, name, Scope::Global, copy(name) as _)
            .expect("opens");
    }
    let mut subscriptions = Vec::new();
    drive_opens(session, 0, |transmit| {
        if let Request::Subscribe {
            stream, object_ids, ..
        } = transmit.request
        {
            subscriptions.push((stream, object_ids));
        }
    });
    subscriptions
}

#[test]
fn every_subscription_names_its_stream_one_for_the_client_or_one_per_object_when_planted() {
    let names = ["game/a", "game/b", "game/c"];
    let mut correct = session();
    let subscriptions = subscriptions_while_opening(&mut correct, &names);
    assert!(!subscriptions.is_empty());
    assert!(
        subscriptions
            .iter()
            .all(|(stream, _)| *stream == subscriptions[0].0),
        "a correct session follows one stream: {subscriptions:?}"
    );

    let mut config = SessionConfig::new(CLIENT, MEMBERS.to_vec());
    config.planted_stream_per_object = true;
    let mut planted = ClientSession::new(config, SESSION).expect("a valid configuration");
    open_region_session(&mut planted, 0);
    let subscriptions = subscriptions_while_opening(&mut planted, &names);
    let mut objects_of_stream = std::collections::BTreeMap::new();
    for (stream, object_ids) in &subscriptions {
        assert_eq!(object_ids.len(), 1, "{subscriptions:?}");
        let previous = objects_of_stream.insert(*stream, object_ids[0].clone());
        assert!(
            previous.is_none_or(|previous| previous == object_ids[0]),
            "one stream carried two objects: {subscriptions:?}"
        );
    }
    let mut objects: Vec<&String> = objects_of_stream.values().collect();
    objects.sort();
    assert_eq!(objects, names, "{subscriptions:?}");
}

/// Answers every subscription the session opens with "truncated below `first_retained`",
/// until it asks for a checkpoint of `object`; returns that request.
fn truncate_under_the_stream(
    session: &mut ClientSession,
    mut now: u64,
    first_retained: u64,
    object: &str,
) -> Transmit {
    let mut sent = transmits(session);
    for _ in 0..20 {
        if let Some(fetch) = sent.iter().find(|transmit| {
            matches!(&transmit.request, Request::FetchCheckpoint { object_id, .. } if object_id == object)
        }) {
            return fetch.clone();
        }
        match subscription(&sent) {
            Some((node, stream, _, _)) => session.handle_response(
                now,
                node,
                stream,
                Response::StreamEnded {
                    first_retained_position: Some(first_retained),
                    reason: "truncated".to_owned(),
                },
            ),
            None => {
                now = session.poll_timeout().expect("a deadline").max(now);
                session.handle_timeout(now);
            }
        }
        sent = transmits(session);
    }
    panic!("the session never fetched a checkpoint of {object}");
}

/// The log of register `a` as another copy applied it: the schema declaration at 1, then
/// `writes` (position, session, sequence, value); the checkpoint it made after the last.
fn checkpoint_of_another_copy(writes: &[(u64, u64, u64, u64)]) -> FetchedCheckpoint {
    let config = ReplicaConfig {
        checkpoint_every_records: writes.len() as u64 + 1,
        ..ReplicaConfig::default()
    };
    let mut other = Replica::<Register>::new("a", config);
    let schema = Register::schema().encode();
    other
        .handle_record(
            1,
            RecordRef {
                client_id: 99,
                request_sequence: 1,
                method_id: 0,
                arguments: &schema,
            },
        )
        .expect("declared");
    for (position, session, sequence, value) in writes {
        let arguments = Postcard::encode(&(*value,)).expect("encodes");
        other
            .handle_record(
                *position,
                RecordRef {
                    client_id: *session,
                    request_sequence: *sequence,
                    method_id: 1,
                    arguments: &arguments,
                },
            )
            .expect("applies");
    }
    let checkpoint = other
        .poll_checkpoint()
        .expect("a checkpoint after the last write");
    FetchedCheckpoint {
        position: checkpoint.position,
        state: checkpoint.state,
        state_hash: checkpoint.state_hash.to_vec(),
    }
}

/// A call committed at `position`, whose copy then falls behind the truncation point: the
/// fetch of the checkpoint it moves to, and the call's id and sequence.
fn a_committed_call_whose_copy_falls_behind(
    session: &mut ClientSession,
    a: &Arc<SharedReplica<Register>>,
    position: u64,
    first_retained: u64,
) -> (Transmit, u64, u64) {
    open_all(session, &["a"], std::slice::from_ref(a), 1);
    let call = session
        .call(0, "a", 1, Postcard::encode(&(42u64,)).expect("encodes"))
        .expect("calls");
    let (transmit, _, sequence) = proposal(&transmits(session));
    session.handle_response(
        0,
        transmit.node_id,
        transmit.request_id,
        Response::Proposed { position },
    );
    assert!(events(session).is_empty(), "the call waits for its record");
    let fetch = truncate_under_the_stream(session, 1, first_retained, "a");
    (fetch, call, sequence)
}

#[test]
fn a_committed_call_whose_copy_jumps_to_a_later_checkpoint_gets_its_result_from_it() {
    let mut session = session();
    let a = copy("a");
    let (fetch, call, sequence) = a_committed_call_whose_copy_falls_behind(&mut session, &a, 5, 9);
    // Another copy applied 7 at 3, the call (42, replacing 7) at 5 and 8 at 6, then made the
    // checkpoint every member keeps.
    let checkpoint =
        checkpoint_of_another_copy(&[(3, 77, 1, 7), (5, SESSION, sequence, 42), (6, 77, 2, 8)]);
    session.handle_response(
        2,
        fetch.node_id,
        fetch.request_id,
        Response::Checkpoint {
            checkpoint: Some(checkpoint),
            truncated_through_position: 6,
            released_through_position: 0,
        },
    );
    assert_eq!(
        events(&mut session),
        vec![Event::CallDone {
            call_id: call,
            outcome: Ok(Postcard::encode(&7u64).expect("encodes")),
        }],
        "the call took effect: it gets the value it replaced, never a failure"
    );
    assert_eq!(a.read(Register::value), 8);
    assert_eq!(session.counters().results_from_checkpoints, 1);
}

#[test]
fn a_committed_call_whose_result_the_checkpoint_no_longer_carries_is_reported_applied() {
    let mut session = session();
    let a = copy("a");
    let later = RECENT_OUTCOMES_MAX as u64 + 1;
    let (fetch, call, sequence) =
        a_committed_call_whose_copy_falls_behind(&mut session, &a, 5, 7 + later);
    let mut writes = vec![(5, SESSION, sequence, 42)];
    writes.extend((0..later).map(|index| (6 + index, 77, index + 1, 100 + index)));
    let checkpoint = checkpoint_of_another_copy(&writes);
    let through = checkpoint.position;
    session.handle_response(
        2,
        fetch.node_id,
        fetch.request_id,
        Response::Checkpoint {
            checkpoint: Some(checkpoint),
            truncated_through_position: through,
            released_through_position: 0,
        },
    );
    assert_eq!(
        events(&mut session),
        vec![Event::CallDone {
            call_id: call,
            outcome: Err(CallError::ResultLost {
                object: "a".to_owned(),
                position: 5,
            }),
        }]
    );
}

/// The region skipped sealed epochs no region's log held any longer (docs/global-protocol.md
/// section 7): a copy of a global object below the skip stops there (it applies nothing past
/// it), fetches again, waits while the region adopts a checkpoint from another region, and
/// restarts from it; a call the skipped epochs sealed, answered at the skip, gets its result
/// from that checkpoint. A global object that never had a record comes back as its default
/// state (an empty state in the checkpoint).
#[test]
fn a_global_copy_behind_skipped_epochs_restarts_from_the_checkpoint_its_region_adopts() {
    let mut session = session();
    let copies = copies_fresh();
    let (node, stream, next) = open_all(&mut session, &["a", "b"], &copies, 1);
    assert_eq!(next, 3);
    let call = session
        .call(0, "a", 1, Postcard::encode(&(42u64,)).expect("encodes"))
        .expect("calls");
    let (transmit, _, sequence) = proposal(&transmits(&mut session));
    // The region took the call as sealed in the skipped epochs: it answers with the skip's
    // position.
    session.handle_response(
        0,
        transmit.node_id,
        transmit.request_id,
        Response::Proposed { position: 4 },
    );
    session.handle_response(
        0,
        node,
        stream,
        Response::LogPiece {
            entries: vec![
                write_entry(3, "a", 77, 1, 7),
                PositionedEntry {
                    position: 4,
                    entry: LogEntry::EpochsSkipped,
                },
                write_entry(5, "a", 77, 2, 8),
            ],
            through_position: 5,
        },
    );
    assert_eq!(copies[0].read(Register::value), 7, "nothing past the skip");
    assert_eq!(copies[0].lock_read().position(), 3);
    assert_eq!(
        copies[1].lock_read().position(),
        2,
        "no gap is taken over the skip"
    );
    assert_eq!(session.counters().copies_behind_skipped_epochs, 2);
    assert!(events(&mut session).is_empty(), "the call waits");
    let fetches: Vec<Transmit> = transmits(&mut session)
        .into_iter()
        .filter(|transmit| matches!(transmit.request, Request::FetchCheckpoint { .. }))
        .collect();
    assert_eq!(fetches.len(), 2, "{fetches:?}");
    // First the region says the checkpoints it keeps miss the skipped records.
    for fetch in &fetches {
        let Request::FetchCheckpoint { scope, .. } = &fetch.request else {
            unreachable!()
        };
        assert_eq!(*scope, Scope::Global);
        answer_without_checkpoint(&mut session, 1, fetch, 0, 4);
    }
    assert!(
        events(&mut session).is_empty(),
        "nothing fails while the fetches retry"
    );
    // They ask again with their backoff.
    let mut now = 1;
    let mut retries: Vec<Transmit> = Vec::new();
    for _ in 0..50 {
        if retries.len() == 2 {
            break;
        }
        now = session.poll_timeout().expect("a retry is due").max(now);
        session.handle_timeout(now);
        retries.extend(
            transmits(&mut session)
                .into_iter()
                .filter(|transmit| matches!(transmit.request, Request::FetchCheckpoint { .. })),
        );
    }
    assert_eq!(retries.len(), 2, "{retries:?}");
    // Then the checkpoints the region adopted: another region's state of each object.
    for retry in retries {
        let Request::FetchCheckpoint { object_id, .. } = &retry.request else {
            unreachable!()
        };
        let checkpoint = if object_id == "a" {
            checkpoint_of_another_copy(&[(3, 77, 1, 7), (4, SESSION, sequence, 42), (5, 77, 2, 8)])
        } else {
            FetchedCheckpoint {
                position: 5,
                state: Vec::new(),
                state_hash: Vec::new(),
            }
        };
        session.handle_response(
            now,
            retry.node_id,
            retry.request_id,
            Response::Checkpoint {
                checkpoint: Some(checkpoint),
                truncated_through_position: 0,
                released_through_position: 0,
            },
        );
    }
    assert_eq!(copies[0].read(Register::value), 8);
    assert_eq!(copies[0].lock_read().position(), 5);
    assert_eq!(copies[1].read(Register::value), 0, "the default state");
    assert_eq!(copies[1].lock_read().position(), 5);
    assert_eq!(
        events(&mut session),
        vec![Event::CallDone {
            call_id: call,
            outcome: Ok(Postcard::encode(&7u64).expect("encodes")),
        }],
        "the call sealed in the skipped epochs gets the value it replaced"
    );
    let (_, _, from, objects) = subscription(&transmits(&mut session)).expect("the stream reopens");
    assert_eq!(from, 6);
    assert_eq!(objects, vec!["a".to_owned(), "b".to_owned()]);
}

/// Answers the checkpoint fetch of `object` that the session sends by `now` (after handing it
/// the time) with "released through `released`", or with no checkpoint when `released` is 0.
fn answer_fetch(session: &mut ClientSession, now: u64, object: &str, released: u64) {
    session.handle_timeout(now);
    let fetch = transmits(session)
        .into_iter()
        .find(|transmit| {
            matches!(&transmit.request, Request::FetchCheckpoint { object_id, .. } if object_id == object)
        })
        .unwrap_or_else(|| panic!("no fetch of {object} by {now} us"));
    answer_without_checkpoint(session, now, &fetch, 900, released);
}

fn open_failure(events: &[Event]) -> Option<CallError> {
    events.iter().find_map(|event| match event {
        Event::Opened {
            outcome: Err(error),
            ..
        } => Some(error.clone()),
        _ => None,
    })
}

/// The region released the object's records without a checkpoint: an open asks again with
/// backoff (an instance that follows the object may lift the release with its next
/// checkpoint), goes on once it is lifted, and fails saying so when the call timeout runs out,
/// rather than start from a default state that misses those records.
#[test]
fn an_open_of_a_released_object_waits_for_a_lift_and_fails_saying_so_when_none_comes() {
    let mut session = session();
    let a = copy("a");
    session
        .open(0, "a", Scope::Global, Arc::clone(&a) as _)
        .expect("opens");
    answer_fetch(&mut session, 0, "a", 850);
    assert_eq!(open_failure(&events(&mut session)), None, "it asks again");
    assert_eq!(session.counters().released_fetches_retried, 1);
    // Lifted by the next answer: the open goes on (it subscribes from the truncation point).
    let retry_at = session.poll_timeout().expect("a retry");
    answer_fetch(&mut session, retry_at, "a", 0);
    assert_eq!(open_failure(&events(&mut session)), None);
    assert!(
        subscription(&transmits(&mut session)).is_some(),
        "the open subscribes once the release is lifted"
    );

    let mut session = self::session();
    let b = copy("b");
    session
        .open(0, "b", Scope::Global, Arc::clone(&b) as _)
        .expect("opens");
    let call_timeout = session.config().call_timeout_us;
    let mut now = 0;
    let error = loop {
        answer_fetch(&mut session, now, "b", 850);
        if let Some(error) = open_failure(&events(&mut session)) {
            break error;
        }
        now = session.poll_timeout().expect("a retry");
        assert!(now < call_timeout, "the open outlived its call timeout");
    };
    assert_eq!(
        error,
        CallError::Released {
            object: "b".to_owned(),
            position: 850,
        }
    );
    assert!(
        error
            .to_string()
            .contains("released its records through position 850")
    );
}

/// An open that a member answered "released" fails saying so when the call timeout runs out,
/// also when its last attempts went unanswered (a lost answer is no new verdict).
#[test]
fn an_open_of_a_released_object_whose_last_answers_are_lost_still_fails_as_released() {
    let mut session = session();
    let a = copy("a");
    session
        .open(0, "a", Scope::Global, Arc::clone(&a) as _)
        .expect("opens");
    answer_fetch(&mut session, 0, "a", 850);
    let call_timeout = session.config().call_timeout_us;
    // Every later attempt goes unanswered until the call timeout.
    let error = loop {
        let now = session.poll_timeout().expect("a timer");
        assert!(
            now <= call_timeout * 2,
            "the open outlived its call timeout"
        );
        session.handle_timeout(now);
        transmits(&mut session);
        if let Some(error) = open_failure(&events(&mut session)) {
            break error;
        }
    };
    assert_eq!(
        error,
        CallError::Released {
            object: "a".to_owned(),
            position: 850,
        }
    );
}

/// A copy that fell behind the truncation point while the region released records of its
/// object it had not applied asks again for as long as a call may take; when no checkpoint
/// lifts the release, its waiting call fails (it may have been applied) and the object stops,
/// instead of jumping over records it never saw.
#[test]
fn a_copy_behind_a_release_of_its_object_stops_and_fails_its_calls() {
    let mut session = session();
    let a = copy("a");
    let (fetch, call, _) = a_committed_call_whose_copy_falls_behind(&mut session, &a, 5, 9);
    answer_without_checkpoint(&mut session, 2, &fetch, 8, 6);
    // Answer every fetch alike, past the call timeout (30 s).
    let mut now = 2;
    let mut seen = Vec::new();
    while let Some(next) = session.poll_timeout().filter(|next| *next < 40_000_000) {
        now = next;
        session.handle_timeout(now);
        seen.extend(events(&mut session));
        let Some(fetch) = transmits(&mut session)
            .into_iter()
            .find(|transmit| matches!(transmit.request, Request::FetchCheckpoint { .. }))
        else {
            continue;
        };
        answer_without_checkpoint(&mut session, now, &fetch, 8, 6);
        seen.extend(events(&mut session));
    }
    // The call's deadline (which covers waiting for the local apply) and the copy's give-up
    // fall at about the same call timeout, and whichever comes first, the call fails once with
    // the reason: the records its copy needed were released (never a success, nor a log
    // stream that merely stopped, which the deadline alone would say).
    let ends: Vec<&Event> = seen
        .iter()
        .filter(|event| matches!(event, Event::CallDone { call_id, .. } if *call_id == call))
        .collect();
    assert!(
        matches!(
            ends[..],
            [Event::CallDone { outcome: Err(CallError::Stopped { reason, .. }), .. }]
                if reason.contains("released its records through position 6")
        ),
        "{seen:?}"
    );
    // The object is no longer open, and a later call says why.
    let error = session
        .call(now, "a", 1, Postcard::encode(&(1u64,)).expect("encodes"))
        .unwrap_err();
    assert!(
        matches!(&error, CallError::Released { object, .. } if object == "a"),
        "{error:?}"
    );
    assert!(!session.is_open("a"));
}

/// Closing a copy that applied records since its last checkpoint uploads one, so that the
/// object's newest records stay covered when this was its last instance.
#[test]
fn closing_a_copy_with_records_since_its_checkpoint_uploads_one() {
    let mut session = session();
    let a = copy("a");
    open_all(&mut session, &["a"], std::slice::from_ref(&a), 1);
    session.close(1, "a");
    let sent = transmits(&mut session);
    assert!(
        sent.iter().any(|transmit| matches!(
            &transmit.request,
            Request::UploadCheckpoint { object_id, position: 1, .. } if object_id == "a"
        )),
        "{sent:?}"
    );
    assert_eq!(session.counters().closing_checkpoints, 1);
}

#[test]
fn a_stream_end_that_names_no_truncation_moves_the_stream_after_a_bounded_backoff() {
    let mut session = session();
    let a = copy("a");
    let (mut node, mut stream, next) = open_all(&mut session, &["a"], std::slice::from_ref(&a), 1);
    let retry_wait_max_us = session.config().retry_wait_max_us;
    let mut now = 10_000_000;
    for round in 0..12 {
        // The member ends the stream as out of range, yet keeps the log from position 1, below
        // what the stream needs: not a truncation (a reply over a size limit ends this way).
        session.handle_response(
            now,
            node,
            stream,
            Response::StreamEnded {
                first_retained_position: Some(1),
                reason: "OutOfRange: decoded message length too large".to_owned(),
            },
        );
        let sent = transmits(&mut session);
        assert!(
            subscription(&sent).is_none(),
            "round {round}: the stream reopened at once, without a backoff: {sent:?}"
        );
        let ended_at = now;
        let (reopened_node, reopened, from) = loop {
            let due = session.poll_timeout().expect("a reopen time");
            assert!(due > ended_at, "round {round}");
            assert!(
                due - ended_at <= retry_wait_max_us,
                "round {round}: waited {} us",
                due - ended_at
            );
            now = due;
            session.handle_timeout(now);
            let sent = transmits(&mut session);
            assert!(
                sent.iter()
                    .all(|transmit| !matches!(transmit.request, Request::FetchCheckpoint { .. })),
                "round {round}: no checkpoint is fetched for a log that is not truncated"
            );
            if let Some((node, stream, from, _)) = subscription(&sent) {
                break (node, stream, from);
            }
        };
        assert_eq!(
            from, next,
            "round {round}: it resumes where the copy stands"
        );
        (node, stream) = (reopened_node, reopened);
    }
    // The stream goes on from there.
    session.handle_response(
        now,
        node,
        stream,
        Response::LogPiece {
            entries: vec![write_entry(next, "a", 99, 1, 5)],
            through_position: next,
        },
    );
    assert_eq!(a.read(Register::value), 5);
    assert_eq!(session.position(), next);
}

#[test]
fn an_object_whose_writes_stop_checkpoints_after_the_idle_interval() {
    // Fewer records than `checkpoint_every_records` and then nothing: without a checkpoint
    // the region would keep these records forever (its log truncates only below checkpoints).
    let mut config = SessionConfig::new(CLIENT, MEMBERS.to_vec());
    let idle_us = config.idle_checkpoint_after_us;
    assert!(idle_us > 0, "idle checkpoints are on by default");
    config.stream_stall_timeout_us = STALL_US;
    config.attempt_timeout_us = ATTEMPT_US;
    let mut session = ClientSession::new(config, SESSION).expect("a valid configuration");
    open_region_session(&mut session, 0);
    let copies = copies_fresh();
    let (node, stream, next) = open_all(&mut session, &["a", "b"], &copies, 1);
    let written_at = 1_000_000;
    session.handle_response(
        written_at,
        node,
        stream,
        Response::LogPiece {
            entries: vec![
                write_entry(next, "a", 99, 1, 10),
                write_entry(next + 1, "a", 99, 2, 11),
            ],
            through_position: next + 1,
        },
    );
    assert!(
        transmits(&mut session)
            .iter()
            .all(|transmit| !matches!(transmit.request, Request::UploadCheckpoint { .. })),
        "no checkpoint while writes may still come"
    );
    // Due when the object has been quiet for the interval; `b` (only its schema since open)
    // is due from its open.
    let due = session
        .poll_timeout()
        .expect("an idle checkpoint is due some time");
    assert!(due <= written_at + idle_us, "due at {due}");
    session.handle_timeout(written_at + idle_us);
    let mut uploads: Vec<(String, u64)> = Vec::new();
    for transmit in transmits(&mut session) {
        if let Request::UploadCheckpoint {
            object_id,
            position,
            ..
        } = transmit.request
        {
            uploads.push((object_id, position));
            session.handle_response(
                written_at + idle_us,
                transmit.node_id,
                transmit.request_id,
                Response::Uploaded {
                    hash_mismatch: false,
                },
            );
        }
    }
    assert!(
        uploads.contains(&("a".to_owned(), next + 1)),
        "a checkpoint of a at its last record: {uploads:?}"
    );
    assert!(session.counters().idle_checkpoints >= 1);
    // Nothing new since: no second checkpoint of a.
    session.handle_timeout(written_at + 3 * idle_us);
    assert!(
        transmits(&mut session).iter().all(|transmit| !matches!(
            &transmit.request,
            Request::UploadCheckpoint { object_id, .. } if object_id == "a"
        )),
        "one checkpoint for one quiet spell"
    );
}

#[test]
fn a_session_close_waits_for_unacknowledged_calls_then_ends_the_region_session() {
    let mut session = session();
    let a = copy("a");
    open_all_as(&mut session, SESSION, "a", &a);
    let call = session
        .call(0, "a", 1, Postcard::encode(&(3u64,)).expect("encodes"))
        .expect("calls");
    let (call_transmit, _, _) = proposal(&transmits(&mut session));
    let close_id = session.close_session(1);
    assert_eq!(
        session.close_session(1),
        close_id,
        "asked again: the same close"
    );
    assert!(
        transmits(&mut session).is_empty(),
        "no close while a call waits for its acknowledgement"
    );
    let refused = session
        .call(1, "a", 1, Postcard::encode(&(4u64,)).expect("encodes"))
        .expect_err("a closing client takes no call");
    assert!(refused.to_string().contains("closed"), "{refused}");
    assert!(session.open(1, "b", Scope::Regional, copy("b")).is_err());

    // The call is acknowledged: now the close goes, naming the session.
    session.handle_response(
        2,
        call_transmit.node_id,
        call_transmit.request_id,
        Response::Proposed { position: 4 },
    );
    let sent = transmits(&mut session);
    let [close] = &sent[..] else {
        panic!("one close expected: {sent:?}");
    };
    assert_eq!(
        close.request,
        Request::CloseSession {
            session_id: SESSION
        }
    );
    // A member without a leader sends it elsewhere; the region's answer completes it.
    session.handle_response(
        3,
        close.node_id,
        close.request_id,
        Response::NotLeader { leader_hint: None },
    );
    session.handle_timeout(3 + ATTEMPT_US);
    let sent = transmits(&mut session);
    let [again] = &sent[..] else {
        panic!("the close is retried: {sent:?}");
    };
    assert_eq!(again.request, close.request);
    session.handle_response(
        4 + ATTEMPT_US,
        again.node_id,
        again.request_id,
        Response::SessionClosed,
    );
    let closed = events(&mut session);
    assert!(
        closed.contains(&Event::SessionClosed {
            close_id,
            outcome: Ok(())
        }),
        "{closed:?}"
    );
    // Nothing goes to the region for the session any more.
    session.handle_timeout(100 * ATTEMPT_US);
    let later = transmits(&mut session);
    assert!(
        later.iter().all(|transmit| matches!(
            transmit.request,
            Request::Subscribe { .. } | Request::FetchCheckpoint { .. }
        )),
        "{later:?}"
    );
    let _ = call;
}

#[test]
fn a_session_the_region_never_heard_of_closes_without_a_request_and_a_dropped_one_at_once() {
    let mut never_opened = unopened_session(SESSION);
    let close_id = never_opened.close_session(0);
    assert!(transmits(&mut never_opened).is_empty());
    assert_eq!(
        events(&mut never_opened),
        vec![Event::SessionClosed {
            close_id,
            outcome: Ok(())
        }]
    );
    assert_eq!(never_opened.close_session_now(0), None);

    // A driver that stops closes at once, even with a call unacknowledged: the region applies
    // that call once or refuses it.
    let mut session = session();
    let a = copy("a");
    open_all_as(&mut session, SESSION, "a", &a);
    session
        .call(0, "a", 1, Postcard::encode(&(3u64,)).expect("encodes"))
        .expect("calls");
    let _ = transmits(&mut session);
    let close = session.close_session_now(1).expect("a close to send");
    assert_eq!(
        close.request,
        Request::CloseSession {
            session_id: SESSION
        }
    );
    assert_eq!(session.close_session_now(1), None, "sent once");
}

/// An open whose copy falls behind a release after its checkpoint arrived, while its schema
/// declaration waits for the log (the region released records the copy had not applied, with
/// no checkpoint to lift the release), ends once, with the release as its reason: the
/// application is never left waiting for an open that can no longer complete, nor told of
/// the declaration as a call of its own.
#[test]
fn an_open_whose_copy_is_released_while_it_declares_fails_saying_so() {
    let mut session = session();
    let a = copy("a");
    let open_id = session
        .open(0, "a", Scope::Global, Arc::clone(&a) as _)
        .expect("opens");
    let mut declaration = None;
    drive_opens(&mut session, 0, |transmit| {
        if let Request::Propose { .. } = &transmit.request {
            declaration = Some(transmit);
        }
    });
    let declaration = declaration.expect("the schema declaration was proposed");
    session.handle_response(
        0,
        declaration.node_id,
        declaration.request_id,
        Response::Proposed { position: 5 },
    );
    assert!(
        events(&mut session).is_empty(),
        "the open waits for its record"
    );
    let fetch = truncate_under_the_stream(&mut session, 1, 9, "a");
    let answer = |session: &mut ClientSession, now: u64, fetch: &Transmit| {
        answer_without_checkpoint(session, now, fetch, 8, 6);
    };
    answer(&mut session, 2, &fetch);
    let mut seen = events(&mut session);
    while let Some(now) = session.poll_timeout().filter(|next| *next < 60_000_000) {
        session.handle_timeout(now);
        seen.extend(events(&mut session));
        for fetch in transmits(&mut session)
            .iter()
            .filter(|transmit| matches!(transmit.request, Request::FetchCheckpoint { .. }))
        {
            answer(&mut session, now, fetch);
            seen.extend(events(&mut session));
        }
    }
    let opens: Vec<&Event> = seen
        .iter()
        .filter(|event| matches!(event, Event::Opened { .. }))
        .collect();
    assert!(
        matches!(
            opens[..],
            [Event::Opened { open_id: id, outcome: Err(error) }]
                if *id == open_id && error.to_string().contains("released its records through position 6")
        ),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|event| matches!(event, Event::CallDone { .. })),
        "the declaration is not the application's call: {seen:?}"
    );
    assert!(!session.is_open("a"));
}
