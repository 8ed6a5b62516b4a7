//! What a shared object costs inside an application instance: a local read, applying one
// criterion_group! and criterion_main! generate undocumented functions.
#![allow(missing_docs)]
//! record, and encoding and decoding one call. Run with `cargo bench -p dsss-examples`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dsss::replica::{RecordRef, Replica, ReplicaConfig, SharedReplica};
use dsss::{Codec, Postcard, SharedObject};
use dsss_examples::{Bank, Counter};

const ADD: u32 = 1;
const OPEN_ACCOUNT: u32 = 1;
const TRANSFER: u32 = 2;

fn counter_replica() -> Replica<Counter> {
    Replica::new("bench/counter", ReplicaConfig::default())
}

fn bank_with_accounts() -> Bank {
    let mut bank = Bank::default();
    for name in ["ann", "bob"] {
        let arguments = Postcard::encode(&(name.to_owned(), 1_000_000_000u64)).unwrap();
        bank.apply(OPEN_ACCOUNT, &arguments).unwrap();
    }
    bank
}

/// `Object::read` is `SharedReplica::read`: a read lock and the closure.
fn local_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("local_read");
    let mut replica = counter_replica();
    let arguments = Postcard::encode(&5i64).unwrap();
    replica
        .handle_record(1, record(&arguments, 1))
        .expect("the counter applies");
    let shared = SharedReplica::new(replica);
    group.bench_function("counter_value", |b| {
        b.iter(|| shared.read(|counter| black_box(counter.value())))
    });
    let mut bank = Replica::<Bank>::new("bench/bank", ReplicaConfig::default());
    for (position, name) in ["ann", "bob"].into_iter().enumerate() {
        let arguments = Postcard::encode(&(name.to_owned(), 100u64)).unwrap();
        bank.handle_record(position as u64 + 1, record_of(OPEN_ACCOUNT, &arguments, 1))
            .unwrap();
    }
    let bank = SharedReplica::new(bank);
    group.bench_function("bank_balance", |b| {
        b.iter(|| bank.read(|bank| black_box(bank.balance(black_box("bob")))))
    });
    group.finish();
}

fn record(arguments: &[u8], sequence: u64) -> RecordRef<'_> {
    record_of(ADD, arguments, sequence)
}

fn record_of(method_id: u32, arguments: &[u8], sequence: u64) -> RecordRef<'_> {
    RecordRef {
        client_id: 7,
        request_sequence: sequence,
        method_id,
        arguments,
    }
}

/// One record through the replica: decode, run the method, encode the result, keep the record
/// for a restore, take restore points and checkpoints on schedule.
fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(1));
    let arguments = Postcard::encode(&1i64).unwrap();
    let mut replica = counter_replica();
    let mut position = 0u64;
    group.bench_function("counter_add", |b| {
        b.iter(|| {
            position += 1;
            let applied = replica
                .handle_record(position, record(&arguments, position))
                .expect("the counter applies");
            black_box(applied);
            // Keep the checkpoint queue empty, as the client's uploader does.
            black_box(replica.poll_checkpoint());
        })
    });
    group.finish();
}

/// The codec's share of a call: the handle encodes the arguments, every replica decodes them
/// and encodes the result, the caller decodes the result.
fn encode_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("call_codec");
    let transfer = ("ann".to_owned(), "bob".to_owned(), 1u64);
    group.bench_function("transfer_encode_arguments", |b| {
        b.iter(|| Postcard::encode(black_box(&transfer)).unwrap())
    });
    let arguments = Postcard::encode(&transfer).unwrap();
    group.bench_function("transfer_decode_arguments", |b| {
        b.iter(|| Postcard::decode::<(String, String, u64)>(black_box(&arguments)).unwrap())
    });
    let mut bank = bank_with_accounts();
    group.bench_function("transfer_apply_whole", |b| {
        b.iter(|| bank.apply(TRANSFER, black_box(&arguments)).unwrap())
    });
    let result = Postcard::encode(&Ok::<(), dsss_examples::BankError>(())).unwrap();
    group.bench_function("transfer_decode_result", |b| {
        b.iter(|| {
            Postcard::decode::<Result<(), dsss_examples::BankError>>(black_box(&result)).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, local_read, apply, encode_decode);
criterion_main!(benches);
