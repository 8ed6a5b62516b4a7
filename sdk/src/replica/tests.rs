//! Tests of the replica with a hand-written shared object (the macros have their own tests).

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::*;
use crate::codec::CodecError;
use crate::schema::MethodSchema;

/// A counter written without the macros: method 1 adds, method 2 panics on odd arguments.
#[derive(Default, Serialize, Deserialize, Debug, PartialEq)]
struct Tally {
    total: i64,
    adds: u64,
}

const ADD: u32 = 1;
const FRAGILE_ADD: u32 = 2;
/// Returns its argument bytes as they came, to make results of any size.
const ECHO: u32 = 3;

fn method(id: u32, name: &str) -> MethodSchema {
    MethodSchema {
        id,
        name: name.into(),
        arguments: "amount: i64".into(),
        result: "i64".into(),
        codec: "postcard".into(),
    }
}

fn tally_schema(methods: Vec<MethodSchema>) -> ObjectSchema {
    ObjectSchema {
        type_name: "Tally".into(),
        methods,
        retired_ids: vec![],
    }
}

impl SharedObject for Tally {
    type Handle = crate::Object<Tally>;

    fn schema() -> &'static ObjectSchema {
        static SCHEMA: OnceLock<ObjectSchema> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            tally_schema(vec![
                method(ADD, "add"),
                method(FRAGILE_ADD, "fragile_add"),
                method(ECHO, "echo"),
            ])
        })
    }

    fn apply(&mut self, method_id: u32, arguments: &[u8]) -> Result<Vec<u8>, MethodError> {
        if method_id == ECHO {
            return Ok(arguments.to_vec());
        }
        let amount: i64 = Postcard::decode(arguments).map_err(|source| MethodError::Arguments {
            type_name: "Tally",
            method: "add",
            source,
        })?;
        match method_id {
            ADD => {}
            FRAGILE_ADD => {
                // Changes the state before it panics, so a replica that did not restore would
                // keep the half-done change.
                self.total += amount;
                assert!(amount % 2 == 0, "odd amount {amount}");
                self.total -= amount;
            }
            _ => {
                return Err(MethodError::UnknownMethod {
                    type_name: "Tally",
                    method_id,
                });
            }
        }
        self.total += amount;
        self.adds += 1;
        Ok(Postcard::encode(&self.total).unwrap())
    }

    fn encode_state(&self) -> Result<Vec<u8>, CodecError> {
        Postcard::encode(self)
    }

    fn decode_state(bytes: &[u8]) -> Result<Self, CodecError> {
        Postcard::decode(bytes)
    }

    fn handle(object: crate::Object<Self>) -> Self::Handle {
        object
    }
}

fn config() -> ReplicaConfig {
    ReplicaConfig {
        checkpoint_every_records: 4,
        checkpoint_every_argument_bytes: 0,
        restore_point_every_records: 3,
        retained_argument_bytes_max: 1024,
    }
}

fn call(replica: &mut Replica<Tally>, position: u64, method_id: u32, amount: i64) -> Applied {
    let arguments = Postcard::encode(&amount).unwrap();
    replica
        .handle_record(
            position,
            RecordRef {
                client_id: 9,
                request_sequence: position,
                method_id,
                arguments: &arguments,
            },
        )
        .unwrap()
}

fn result_total(applied: &Applied) -> i64 {
    Postcard::decode(applied.outcome.as_ref().unwrap()).unwrap()
}

#[test]
fn copies_fed_the_same_log_agree_on_state_results_and_hash() {
    let mut first = Replica::<Tally>::new("tally", config());
    let mut second = Replica::<Tally>::new("tally", config());
    for position in 1..=10 {
        let a = call(&mut first, position * 2, ADD, position as i64);
        // The second copy sees gaps between the object's records, as a filtered stream sends.
        second.handle_gap(position * 2 - 1);
        let b = call(&mut second, position * 2, ADD, position as i64);
        assert_eq!(a, b);
    }
    assert_eq!(first.object().total, 55);
    assert_eq!(first.state_hash(), second.state_hash());
    assert_eq!(first.position(), 20);
}

#[test]
fn a_panicking_call_is_skipped_and_the_state_restored() {
    let mut replica = Replica::<Tally>::new("tally", config());
    let mut reference = Replica::<Tally>::new("tally", config());
    let mut position = 0;
    for amount in [2, 4, 6, 8] {
        position += 1;
        call(&mut replica, position, FRAGILE_ADD, amount);
        call(&mut reference, position, FRAGILE_ADD, amount);
    }
    position += 1;
    let failed = call(&mut replica, position, FRAGILE_ADD, 5);
    match &failed.outcome {
        Err(MethodError::Panicked {
            type_name,
            method,
            message,
        }) => {
            assert_eq!((*type_name, *method), ("Tally", "fragile_add"));
            assert!(message.contains("odd amount 5"), "{message}");
        }
        other => panic!("expected a panic outcome, got {other:?}"),
    }
    reference.handle_gap(position);
    assert_eq!(replica.object(), reference.object());
    position += 1;
    assert_eq!(result_total(&call(&mut replica, position, ADD, 1)), 21);
    call(&mut reference, position, ADD, 1);
    // The skipped call still counts as a record of the object, in every copy alike.
    assert_eq!(replica.records_applied(), 6);
    assert_eq!(replica.object(), reference.object());
}

#[test]
fn checkpoints_fall_on_the_same_positions_and_restore_to_the_same_hash() {
    let mut replica = Replica::<Tally>::new("tally", config());
    let mut checkpoints = Vec::new();
    for position in 1..=9 {
        call(&mut replica, position * 10, ADD, 1);
        if let Some(checkpoint) = replica.poll_checkpoint() {
            checkpoints.push(checkpoint);
        }
    }
    let positions: Vec<u64> = checkpoints.iter().map(|c| c.position).collect();
    assert_eq!(positions, vec![40, 80]);
    let last = checkpoints.last().unwrap();
    let mut restored = Replica::<Tally>::from_checkpoint(
        "tally",
        config(),
        last.position,
        &last.state,
        &last.state_hash,
    )
    .unwrap();
    assert_eq!(restored.object().total, 8);
    assert_eq!(restored.records_applied(), 8);
    call(&mut restored, 90, ADD, 1);
    assert_eq!(restored.state_hash(), replica.state_hash());

    let mut corrupt = last.state.clone();
    corrupt[0] ^= 1;
    let error =
        Replica::<Tally>::from_checkpoint("tally", config(), 80, &corrupt, &last.state_hash)
            .err()
            .unwrap();
    assert!(error.contains("does not match its hash"), "{error}");
}

fn declare(replica: &mut Replica<Tally>, position: u64, schema: &ObjectSchema) -> Applied {
    let arguments = schema.encode();
    replica
        .handle_record(
            position,
            RecordRef {
                client_id: 3,
                request_sequence: position,
                method_id: SCHEMA_METHOD_ID,
                arguments: &arguments,
            },
        )
        .unwrap()
}

#[test]
fn schema_records_accept_compatible_types_and_name_the_changed_method() {
    let mut replica = Replica::<Tally>::new("tally", config());
    assert_eq!(
        declare(&mut replica, 1, Tally::schema()).outcome,
        Ok(vec![])
    );
    let mut changed = Tally::schema().clone();
    changed.methods[0].arguments = "amount: u8".into();
    match declare(&mut replica, 2, &changed).outcome {
        Err(MethodError::IncompatibleSchema(reason)) => {
            assert!(reason.contains("method 1 (add)"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(replica.schema_in_force(), Some(Tally::schema()));
    assert!(replica.stopped().is_none());
}

#[test]
fn a_copy_whose_type_lacks_a_method_in_force_stops_instead_of_diverging() {
    let mut replica = Replica::<Tally>::new("tally", config());
    declare(&mut replica, 1, Tally::schema());
    let mut newer = Tally::schema().clone();
    newer.methods.push(method(7, "reset"));
    let error = replica
        .handle_record(
            2,
            RecordRef {
                client_id: 3,
                request_sequence: 2,
                method_id: SCHEMA_METHOD_ID,
                arguments: &newer.encode(),
            },
        )
        .unwrap_err();
    assert!(error.reason.contains("method 7 (reset)"), "{error}");
    assert!(replica.stopped().is_some());
}

#[test]
fn memory_since_the_restore_point_stays_bounded() {
    let mut replica = Replica::<Tally>::new(
        "tally",
        ReplicaConfig {
            checkpoint_every_records: 0,
            checkpoint_every_argument_bytes: 0,
            restore_point_every_records: 1_000,
            retained_argument_bytes_max: 4,
        },
    );
    for position in 1..=10 {
        call(&mut replica, position, ADD, 1_000_000);
    }
    // Each argument is 3 bytes of postcard: a restore point every second record.
    assert_eq!(replica.restore_point_position(), 10);
    assert_eq!(replica.poll_checkpoint(), None);
}

fn echo(replica: &mut Replica<Tally>, position: u64, bytes: usize) {
    let arguments = vec![7u8; bytes];
    let applied = replica
        .handle_record(
            position,
            RecordRef {
                client_id: 9,
                request_sequence: position,
                method_id: ECHO,
                arguments: &arguments,
            },
        )
        .unwrap();
    assert_eq!(applied.outcome.map(|result| result.len()), Ok(bytes));
}

#[test]
fn a_copy_restored_from_a_later_checkpoint_still_knows_what_the_last_calls_returned() {
    let config = ReplicaConfig {
        checkpoint_every_records: 8,
        ..config()
    };
    let mut replica = Replica::<Tally>::new("tally", config);
    for position in 1..=8 {
        if position == 3 {
            call(&mut replica, position, FRAGILE_ADD, 5);
        } else {
            call(&mut replica, position, ADD, 1);
        }
    }
    let checkpoint = replica
        .poll_checkpoint()
        .expect("a checkpoint after 8 records");
    let mut restored = Replica::<Tally>::from_checkpoint(
        "tally",
        config,
        checkpoint.position,
        &checkpoint.state,
        &checkpoint.state_hash,
    )
    .unwrap();
    // `call` gives the record at position p the sequence p of session 9.
    for sequence in 1..=8 {
        let kept = restored.recent_outcome(9, sequence).expect("kept");
        assert_eq!(Some(kept), replica.recent_outcome(9, sequence));
    }
    assert_eq!(
        restored.recent_outcome(8, 2),
        None,
        "another session's call"
    );
    let second = restored.recent_outcome(9, 2).unwrap().unwrap();
    assert_eq!(Postcard::decode::<i64>(&second).unwrap(), 2);
    match restored.recent_outcome(9, 3).unwrap() {
        Err(MethodError::Panicked {
            type_name,
            method,
            message,
        }) => {
            assert_eq!((type_name, method), ("Tally", "fragile_add"));
            assert!(message.contains("odd amount 5"), "{message}");
        }
        other => panic!("expected the panic again, got {other:?}"),
    }
    // The restored copy and the one that applied every record go on alike, table included.
    for position in 9..=12 {
        call(&mut replica, position, ADD, 1);
        call(&mut restored, position, ADD, 1);
    }
    assert_eq!(restored.state_hash(), replica.state_hash());
}

#[test]
fn recent_outcomes_stay_bounded_by_count_and_by_bytes() {
    let no_checkpoints = ReplicaConfig {
        checkpoint_every_records: 0,
        checkpoint_every_argument_bytes: 0,
        ..ReplicaConfig::default()
    };
    let mut replica = Replica::<Tally>::new("tally", no_checkpoints);
    let last = RECENT_OUTCOMES_MAX as u64 + 10;
    for position in 1..=last {
        call(&mut replica, position, ADD, 1);
    }
    assert!(replica.recent_outcome(9, 10).is_none());
    assert!(replica.recent_outcome(9, 11).is_some());
    assert!(replica.recent_outcome(9, last).is_some());

    let mut replica = Replica::<Tally>::new("tally", no_checkpoints);
    let third = RECENT_OUTCOME_BYTES_MAX / 3;
    for position in 1..=4 {
        echo(&mut replica, position, third);
    }
    assert!(
        replica.recent_outcome(9, 1).is_none(),
        "over the byte bound"
    );
    assert!((2..=4).all(|sequence| replica.recent_outcome(9, sequence).is_some()));
    // A result larger than the whole bound is not kept, and the others stay.
    echo(&mut replica, 5, RECENT_OUTCOME_BYTES_MAX + 1);
    assert!(replica.recent_outcome(9, 5).is_none());
    assert!(replica.recent_outcome(9, 4).is_some());
}

#[test]
fn a_checkpoint_that_carries_more_outcomes_than_records_is_refused() {
    let mut replica = Replica::<Tally>::new("tally", config());
    for position in 1..=4 {
        call(&mut replica, position * 10, ADD, 1);
    }
    let checkpoint = replica.poll_checkpoint().unwrap();
    let mut envelope: Envelope = Postcard::decode(&checkpoint.state).unwrap();
    envelope.records_applied = 2;
    let state = Postcard::encode(&envelope).unwrap();
    let hash: [u8; 32] = Sha256::digest(&state).into();
    let error = Replica::<Tally>::from_checkpoint("tally", config(), 40, &state, &hash)
        .err()
        .unwrap();
    assert!(
        error.contains("4 recent outcomes for an object of 2 records"),
        "{error}"
    );
}

#[test]
fn the_outcomes_a_checkpoint_carries_do_not_depend_on_where_the_records_fell() {
    // Copies of one object's records, at the positions the region log gave them and at dense
    // positions (as a checker replays an order), hold the same checkpoint.
    let mut sparse = Replica::<Tally>::new("tally", config());
    let mut dense = Replica::<Tally>::new("tally", config());
    for index in 1..=4 {
        let arguments = Postcard::encode(&1i64).unwrap();
        let record = RecordRef {
            client_id: 9,
            request_sequence: index,
            method_id: ADD,
            arguments: &arguments,
        };
        sparse.handle_record(index * 7, record).unwrap();
        dense.handle_record(index, record).unwrap();
    }
    assert_eq!(
        sparse.poll_checkpoint().unwrap().state_hash,
        dense.poll_checkpoint().unwrap().state_hash
    );
}

#[test]
fn a_checkpoint_made_now_covers_the_records_since_the_last_one_and_only_those() {
    // config(): a checkpoint every 4 records.
    let mut replica = Replica::<Tally>::new("tally", config());
    let mut other = Replica::<Tally>::new("tally", config());
    assert!(!replica.checkpoint_now(), "nothing applied yet");
    for position in 1..=6 {
        call(&mut replica, position, ADD, 1);
        call(&mut other, position, ADD, 1);
    }
    assert!(replica.poll_checkpoint().is_some(), "the regular one at 4");
    assert_eq!(replica.records_since_checkpoint(), 2);
    assert!(replica.checkpoint_now());
    let made = replica.poll_checkpoint().expect("made now");
    assert_eq!(made.position, 6, "at the last record applied");
    assert_eq!(replica.records_since_checkpoint(), 0);
    assert!(!replica.checkpoint_now(), "nothing new since");
    // Another copy at the same record makes the same checkpoint: the region can compare them.
    assert!(other.checkpoint_now());
    assert_eq!(other.poll_checkpoint().expect("made now"), made);
    // A copy started from it goes on alike.
    let restored = Replica::<Tally>::from_checkpoint(
        "tally",
        config(),
        made.position,
        &made.state,
        &made.state_hash,
    )
    .expect("restores");
    assert_eq!(restored.records_since_checkpoint(), 0);
    assert_eq!(restored.state_hash(), replica.state_hash());
}

#[test]
fn the_byte_interval_is_0_or_within_its_bounds() {
    let with = |bytes: u64| ReplicaConfig {
        checkpoint_every_argument_bytes: bytes,
        ..ReplicaConfig::default()
    };
    assert_eq!(ReplicaConfig::default().validate(), Ok(()));
    for fine in [
        0,
        CHECKPOINT_EVERY_ARGUMENT_BYTES_MIN,
        CHECKPOINT_EVERY_ARGUMENT_BYTES_MAX,
    ] {
        assert_eq!(with(fine).validate(), Ok(()), "{fine}");
    }
    for wrong in [
        1,
        CHECKPOINT_EVERY_ARGUMENT_BYTES_MIN - 1,
        CHECKPOINT_EVERY_ARGUMENT_BYTES_MAX + 1,
        u64::MAX,
    ] {
        let error = with(wrong).validate().unwrap_err();
        assert!(
            error.starts_with(&format!("checkpoint_every_argument_bytes {wrong} ")),
            "{error}"
        );
    }
}

/// A call of `ECHO` at `position` whose arguments are `bytes` bytes (session 9, sequence
/// `position`); returns the checkpoint it made, if any.
fn echo_and_poll(replica: &mut Replica<Tally>, position: u64, bytes: usize) -> Option<Checkpoint> {
    echo(replica, position, bytes);
    replica.poll_checkpoint()
}

/// 64 KiB, the smallest byte interval.
const BYTES_EVERY: u64 = CHECKPOINT_EVERY_ARGUMENT_BYTES_MIN;

#[test]
fn large_arguments_checkpoint_long_before_the_record_interval() {
    // The default record interval (10,000 records) would make no checkpoint in these 20.
    let config = ReplicaConfig {
        checkpoint_every_argument_bytes: BYTES_EVERY,
        ..ReplicaConfig::default()
    };
    let mut replica = Replica::<Tally>::new("tally", config);
    let mut positions = Vec::new();
    for position in 1..=20 {
        // 16 KiB: the sum reaches 64 KiB exactly with every fourth record.
        if let Some(checkpoint) = echo_and_poll(&mut replica, position, 16 * 1024) {
            positions.push(checkpoint.position);
        }
    }
    assert_eq!(positions, vec![4, 8, 12, 16, 20]);
    assert_eq!(replica.argument_bytes_applied(), 20 * 16 * 1024);

    // 20,000 bytes: the sum passes the multiples of 65,536 inside records 4, 7, 10, 14, 17
    // and 20. With a record interval of 5 besides, either trigger makes one, and a record both
    // fire on makes one checkpoint.
    let config = ReplicaConfig {
        checkpoint_every_records: 5,
        ..config
    };
    let mut replica = Replica::<Tally>::new("tally", config);
    let mut positions = Vec::new();
    for position in 1..=20 {
        if let Some(checkpoint) = echo_and_poll(&mut replica, position, 20_000) {
            positions.push(checkpoint.position);
        }
    }
    assert_eq!(positions, vec![4, 5, 7, 10, 14, 15, 17, 20]);

    // Without the byte trigger the record interval alone counts, as before.
    let config = ReplicaConfig {
        checkpoint_every_argument_bytes: 0,
        ..config
    };
    let mut replica = Replica::<Tally>::new("tally", config);
    let positions: Vec<u64> = (1..=20)
        .filter_map(|position| echo_and_poll(&mut replica, position, 20_000))
        .map(|checkpoint| checkpoint.position)
        .collect();
    assert_eq!(positions, vec![5, 10, 15, 20]);
}

/// The object's record at `position` in the log of the next test: echoes of varied sizes, and
/// now and then a call that panics (the copy restores and replays, and the record still
/// counts).
fn varied(replica: &mut Replica<Tally>, position: u64) -> Option<Checkpoint> {
    if position.is_multiple_of(9) {
        call(replica, position, FRAGILE_ADD, 3);
        return replica.poll_checkpoint();
    }
    echo_and_poll(replica, position, varied_bytes(position) as usize)
}

/// The argument bytes of the record at `position` in [`varied`]'s log.
fn varied_bytes(position: u64) -> u64 {
    if position.is_multiple_of(9) {
        Postcard::encode(&3i64).unwrap().len() as u64
    } else {
        position * 7_919 % 30_000 + 1
    }
}

/// The argument bytes of [`varied`]'s log through `position`.
fn varied_sum(position: u64) -> u64 {
    (1..=position).map(varied_bytes).sum()
}

#[test]
fn copies_started_from_any_checkpoint_count_bytes_alike_and_checkpoint_at_the_same_records() {
    let config = ReplicaConfig {
        checkpoint_every_records: 7,
        checkpoint_every_argument_bytes: BYTES_EVERY,
        restore_point_every_records: 3,
        retained_argument_bytes_max: 40_000,
    };
    let last = 60;
    // The copy that applies the whole log, from its start.
    let mut whole = Replica::<Tally>::new("tally", config);
    let mut scheduled = Vec::new();
    let mut idle = None;
    for position in 1..=last {
        if let Some(checkpoint) = varied(&mut whole, position) {
            scheduled.push(checkpoint);
        }
        // An idle checkpoint between two scheduled ones, which other copies do not make.
        if position == 23 && whole.records_since_checkpoint() > 0 {
            assert!(whole.checkpoint_now());
            idle = Some(whole.poll_checkpoint().expect("made now"));
        }
    }
    let idle = idle.expect("records since the checkpoint before 23");
    // The byte trigger fired between the record interval's checkpoints.
    let positions: Vec<u64> = scheduled.iter().map(|c| c.position).collect();
    assert!(
        positions.iter().any(|position| position % 7 != 0),
        "{positions:?}"
    );
    // Every record counts, the panicking ones too, as they count as records; the restore
    // point keeps the count at its record, as it keeps the record count.
    let sum = varied_sum(last);
    assert_eq!(whole.argument_bytes_applied(), sum);
    assert_eq!(
        whole.restore_point_argument_bytes_applied(),
        varied_sum(whole.restore_point_position())
    );

    // Copies started from a byte-triggered checkpoint and from the idle one apply the rest of
    // the log: they checkpoint at the same records as the whole copy, with the same hashes.
    let from_bytes = scheduled
        .iter()
        .find(|checkpoint| checkpoint.position % 7 != 0 && checkpoint.position < 40)
        .expect("a byte-triggered checkpoint")
        .clone();
    for start in [&from_bytes, &idle] {
        let mut copy = Replica::<Tally>::from_checkpoint(
            "tally",
            config,
            start.position,
            &start.state,
            &start.state_hash,
        )
        .unwrap();
        let mut made = Vec::new();
        for position in start.position + 1..=last {
            if let Some(checkpoint) = varied(&mut copy, position) {
                made.push(checkpoint);
            }
        }
        let expected: Vec<&Checkpoint> = scheduled
            .iter()
            .filter(|checkpoint| checkpoint.position > start.position)
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(
            made.iter().collect::<Vec<_>>(),
            expected,
            "from {}",
            start.position
        );
        assert_eq!(copy.argument_bytes_applied(), sum);
        assert_eq!(copy.state_hash(), whole.state_hash());
    }
}

/// A checkpoint's state bytes as the previous release encoded them (an envelope without
/// `argument_bytes_applied`): `Tally` after the schema declaration at 1, `add(5)` at 2, a
/// `fragile_add(3)` that panicked at 3, `add(7)` at 4.
const PREVIOUS_ENVELOPE: &str = "04010554616c6c790301036164640b616d6f756e743a2069363403693634\
    08706f737463617264020b66726167696c655f6164640b616d6f756e743a206936340369363408706f737463\
    61726403046563686f0b616d6f756e743a206936340369363408706f7374636172640002180204030100000009\
    020100010a090302040c6f646420616d6f756e742033090401000118";

fn from_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

#[test]
fn a_checkpoint_of_the_previous_envelope_form_still_restores_and_counts_bytes_from_there() {
    let state = from_hex(PREVIOUS_ENVELOPE);
    let hash: [u8; 32] = Sha256::digest(&state).into();
    // The forms cannot be mistaken for each other.
    assert!(Postcard::decode::<Envelope>(&state).is_err());
    let config = ReplicaConfig {
        checkpoint_every_argument_bytes: BYTES_EVERY,
        ..config()
    };
    let restore = || Replica::<Tally>::from_checkpoint("tally", config, 4, &state, &hash).unwrap();
    let mut restored = restore();
    assert_eq!(restored.object(), &Tally { total: 12, adds: 2 });
    assert_eq!(restored.records_applied(), 4);
    assert_eq!(restored.argument_bytes_applied(), 0);
    assert_eq!(restored.schema_in_force(), Some(Tally::schema()));
    match restored.recent_outcome(9, 3) {
        Some(Err(MethodError::Panicked { message, .. })) => {
            assert!(message.contains("odd amount 3"), "{message}")
        }
        other => panic!("expected the panic, got {other:?}"),
    }
    let second: i64 = Postcard::decode(&restored.recent_outcome(9, 2).unwrap().unwrap()).unwrap();
    assert_eq!(second, 5);
    // Its checkpoints are of the current form, and two copies started from it go on alike:
    // the byte count starts at that checkpoint.
    let mut other = restore();
    let mut made = Vec::new();
    for position in 5..=12 {
        let a = echo_and_poll(&mut restored, position, 20_000);
        let b = echo_and_poll(&mut other, position, 20_000);
        assert_eq!(a, b);
        made.extend(a);
    }
    // 8 and 12 by count (every 4); by bytes counted from 0 at 4, 8 (80,000 passes 65,536)
    // and 11 (140,000 passes 131,072).
    let positions: Vec<u64> = made.iter().map(|c| c.position).collect();
    assert_eq!(positions, vec![8, 11, 12]);
    let newer = &made[0].state;
    assert!(Postcard::decode::<PreviousEnvelope>(newer).is_err());
    let envelope: Envelope = Postcard::decode(newer).unwrap();
    assert_eq!(
        (envelope.records_applied, envelope.argument_bytes_applied),
        (8, 80_000)
    );
}
