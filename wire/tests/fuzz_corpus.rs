//! Replays the corpus of fuzz target `wire_messages` (`fuzz/corpus/wire_messages/`) through the
//! check the target runs (`fuzz/checks/wire_messages.rs`): decode, re-encode, decode again for
//! every protocol buffer message and hand-written validation of this crate.

#[path = "../../fuzz/checks/wire_messages.rs"]
mod check;
#[path = "../../fuzz/checks/replay.rs"]
mod replay;

use dsss_wire::proto;
use prost::Message;

const TARGET: &str = "wire_messages";

#[test]
fn every_corpus_input_round_trips() {
    replay::replay(TARGET, check::check);
}

/// The input that selects `name` and carries `message`.
fn seed(name: &str, message: &impl Message) -> (String, Vec<u8>) {
    let selector = check::DECODERS
        .iter()
        .position(|(decoder, _)| *decoder == name)
        .unwrap_or_else(|| panic!("no decoder {name}"));
    let mut data = vec![u8::try_from(selector).expect("fewer than 256 decoders")];
    data.extend_from_slice(&message.encode_to_vec());
    (name.to_owned(), data)
}

fn record() -> proto::Record {
    proto::Record {
        object_id: "lobby/main".to_owned(),
        method_id: 1,
        arguments: vec![1, 2, 3],
        client_id: 42,
        request_sequence: 7,
        timestamp: Some(proto::Timestamp {
            physical_us: 1_700_000_000_000_000,
            logical: 3,
        }),
        scope: proto::Scope::Global.into(),
        origin_region: "eu-west".to_owned(),
    }
}

/// Writes the seed corpus: one valid input per decoder, populated where the message has
/// nested parts. Run with `cargo test -p dsss-wire --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus/wire_messages; run by hand to reseed"]
fn write_seed_corpus() {
    let timestamp = proto::Timestamp {
        physical_us: 1_700_000_000_000_000,
        logical: 3,
    };
    let mut seeds = vec![
        seed("Record", &record()),
        seed("decode_record", &record()),
        seed("Timestamp::try_from", &timestamp),
        seed(
            "LogEntry",
            &proto::LogEntry {
                position: 9,
                entry: Some(proto::log_entry::Entry::Global(
                    proto::SequencedGlobalRecord {
                        epoch_number: 3,
                        index_in_epoch: 1,
                        record: Some(record()),
                    },
                )),
            },
        ),
        seed(
            "SealedEpoch",
            &proto::SealedEpoch {
                epoch_number: 3,
                watermark: Some(timestamp),
                previous_watermark: None,
                records: vec![record()],
                part_index: 0,
                part_count: 1,
                member_regions: vec!["eu-west".to_owned(), "us-east".to_owned()],
                sender_node_id: 4,
                sender_time: Some(timestamp),
            },
        ),
        seed(
            "RegionBatch",
            &proto::RegionBatch {
                region: "eu-west".to_owned(),
                batch_number: 2,
                records: vec![record()],
                closed_timestamp: Some(timestamp),
                sender_node_id: 1,
                sender_time: Some(timestamp),
                incarnation: 1,
            },
        ),
        seed(
            "ProposeRequest",
            &proto::ProposeRequest {
                object_id: "lobby/main".to_owned(),
                method_id: 1,
                arguments: vec![9; 4],
                client_id: 42,
                request_sequence: 8,
                scope: proto::Scope::Regional.into(),
            },
        ),
    ];
    for (index, (name, _)) in check::DECODERS.iter().enumerate() {
        if !seeds.iter().any(|(seeded, _)| seeded == name) {
            seeds.push((name.to_string(), vec![index as u8]));
        }
    }
    replay::write_seeds(TARGET, &seeds);
}
