//! Replays the corpus of fuzz target `sdk_codecs` (`fuzz/corpus/sdk_codecs/`) through the
//! check the target runs (`fuzz/checks/sdk_codecs.rs`): postcard and JSON values, schema
//! records, checkpoint envelopes and call arguments decoded or refused, never a panic.

#[path = "../../fuzz/checks/sdk_codecs.rs"]
mod check;
#[path = "../../fuzz/checks/replay.rs"]
mod replay;

use std::collections::BTreeMap;

use check::{Lobby, Sample};
use dsss::replica::{RecordRef, Replica};
use dsss::{Codec, Json, MethodSchema, ObjectSchema, Postcard, SharedObject};

const TARGET: &str = "sdk_codecs";

#[test]
fn every_corpus_input_decodes_or_is_refused() {
    replay::replay(TARGET, check::check);
}

fn seed(name: &str, variant: &str, data: &[u8]) -> (String, Vec<u8>) {
    replay::selected_seed(
        check::DECODERS.iter().map(|(decoder, _)| *decoder),
        name,
        variant,
        data,
    )
}

/// A call of the `calls` decoder: the method id byte and the arguments with their length.
fn call(method: u8, arguments: &[u8]) -> Vec<u8> {
    let mut data = vec![method];
    data.extend_from_slice(&u16::try_from(arguments.len()).unwrap().to_be_bytes());
    data.extend_from_slice(arguments);
    data
}

/// Writes the seed corpus: a value of every type in both codecs, a schema, a checkpoint and a
/// run of calls. Run with `cargo test -p dsss --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus/sdk_codecs; run by hand to reseed"]
fn write_seed_corpus() {
    let samples = vec![
        Sample::Empty,
        Sample::Count(7),
        Sample::Player {
            name: "ann".to_owned(),
            score: Some(-3),
            seats: vec![(1, true)],
        },
        Sample::Scores(BTreeMap::from([("bob".to_owned(), 4)])),
    ];
    let map = BTreeMap::from([("ann".to_owned(), 1i64), ("bob".to_owned(), -2)]);
    let pair = ("ann".to_owned(), 7u32);
    let option = Some((9u64, true));
    let bytes = vec![1u8, 2, 3];
    let schema = ObjectSchema {
        type_name: "Lobby".to_owned(),
        methods: vec![MethodSchema {
            id: 1,
            name: "join".to_owned(),
            arguments: "player: String".to_owned(),
            result: "Result<u32, u32>".to_owned(),
            codec: "postcard".to_owned(),
        }],
        retired_ids: vec![4],
    };
    let mut seeds = vec![
        seed(
            "postcard (String, u32)",
            "pair",
            &Postcard::encode(&pair).unwrap(),
        ),
        seed(
            "postcard Vec<u8>",
            "bytes",
            &Postcard::encode(&bytes).unwrap(),
        ),
        seed(
            "postcard BTreeMap<String, i64>",
            "map",
            &Postcard::encode(&map).unwrap(),
        ),
        seed(
            "postcard Option<(u64, bool)>",
            "some",
            &Postcard::encode(&option).unwrap(),
        ),
        seed(
            "postcard Sample",
            "all",
            &Postcard::encode(&samples).unwrap(),
        ),
        seed("json (String, u32)", "pair", &Json::encode(&pair).unwrap()),
        seed("json Vec<u8>", "bytes", &Json::encode(&bytes).unwrap()),
        seed(
            "json BTreeMap<String, i64>",
            "map",
            &Json::encode(&map).unwrap(),
        ),
        seed(
            "json Option<(u64, bool)>",
            "some",
            &Json::encode(&option).unwrap(),
        ),
        seed("json Sample", "all", &Json::encode(&samples).unwrap()),
        seed("ObjectSchema::decode", "lobby", &schema.encode()),
        seed(
            "ObjectSchema::decode",
            "generated",
            &Lobby::schema().encode(),
        ),
    ];

    // A run of calls of every method, through a checkpoint.
    // Postcard encodes an arguments struct as its fields in order, JSON as an object.
    let calls = [
        call(255, &Lobby::schema().encode()),
        call(
            3,
            &Postcard::encode(&(4u32, vec![(1u32, "cid".to_owned())])).unwrap(),
        ),
        call(1, &Postcard::encode(&("ann".to_owned(),)).unwrap()),
        call(2, br#"{"player":"ann"}"#),
        call(1, &Postcard::encode(&("bob".to_owned(),)).unwrap()),
    ]
    .concat();
    seeds.push(seed("Replica::handle_record", "every_method", &calls));

    let mut replica = Replica::<Lobby>::new("lobby", Default::default());
    let join = Postcard::encode(&("ann".to_owned(),)).unwrap();
    let record = RecordRef {
        client_id: 1,
        request_sequence: 1,
        method_id: 1,
        arguments: &join,
    };
    replica.handle_record(1, record).unwrap();
    replica.checkpoint_now();
    let checkpoint = replica.poll_checkpoint().unwrap();
    seeds.push(seed(
        "Replica::from_checkpoint",
        "one_join",
        &checkpoint.state,
    ));
    replay::write_seeds(TARGET, &seeds);
}
