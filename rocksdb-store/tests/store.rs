//! Behaviour of `RocksDbStore` against the `DurableStore` contract, on real RocksDB databases
//! in temporary directories.

use std::path::Path;

use dsss_raft_group::{
    DurableStore, KeyRange, KeySpace, PINNED_VIEWS_MAX, RAFT_LOG, RAFT_STATE, StoreError,
    WriteBatch,
};
use dsss_rocksdb_store::{
    BATCH_OPERATIONS_MAX, BATCH_SIZE_BYTES_MAX, RocksDbStore, SCAN_LIMIT_MAX,
};

const REGION_LOG: KeySpace = KeySpace::new("region_log");
const CHECKPOINTS: KeySpace = KeySpace::new("checkpoints");
const SPACES: [KeySpace; 3] = [RAFT_LOG, RAFT_STATE, REGION_LOG];

fn open(path: &Path) -> RocksDbStore {
    RocksDbStore::open(path, &SPACES).expect("open the store")
}

fn index(value: u64) -> [u8; 8] {
    value.to_be_bytes()
}

fn put(store: &mut RocksDbStore, space: KeySpace, key: &[u8], value: &[u8], sync: bool) {
    let mut batch = WriteBatch::new();
    batch.put(space, key, value);
    store.write(batch, sync).expect("write");
}

fn engine_message(error: StoreError) -> String {
    match error {
        StoreError::Engine(message) => message,
        other => panic!("expected an engine error, got {other:?}"),
    }
}

fn all_keys(store: &RocksDbStore, space: KeySpace) -> Vec<Vec<u8>> {
    store
        .scan(space, &[], &[0xff; 16], SCAN_LIMIT_MAX)
        .expect("scan")
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

#[test]
fn put_get_and_delete_round_trip_in_every_key_space() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    for space in SPACES {
        let value = format!("value in {space}");
        put(&mut store, space, b"key", value.as_bytes(), true);
        assert_eq!(
            store.get(space, b"key").unwrap(),
            Some(value.into_bytes()),
            "{space}"
        );
        assert_eq!(store.get(space, b"absent").unwrap(), None, "{space}");

        let mut batch = WriteBatch::new();
        batch.delete(space, b"key".to_vec());
        batch.delete(space, b"absent".to_vec());
        store.write(batch, false).unwrap();
        assert_eq!(store.get(space, b"key").unwrap(), None, "{space}");
    }
}

#[test]
fn operations_of_a_batch_apply_in_order() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    let mut batch = WriteBatch::new();
    batch.put(RAFT_LOG, b"overwritten", b"first");
    batch.put(RAFT_LOG, b"overwritten", b"second");
    batch.put(RAFT_LOG, b"deleted", b"value");
    batch.delete(RAFT_LOG, b"deleted");
    batch.delete_range(RAFT_LOG, index(1), index(3));
    batch.put(RAFT_LOG, index(2), b"written after the range delete");
    store.write(batch, true).unwrap();

    assert_eq!(
        store.get(RAFT_LOG, b"overwritten").unwrap(),
        Some(b"second".to_vec())
    );
    assert_eq!(store.get(RAFT_LOG, b"deleted").unwrap(), None);
    assert_eq!(
        store.get(RAFT_LOG, &index(2)).unwrap(),
        Some(b"written after the range delete".to_vec())
    );
}

#[test]
fn the_same_key_in_different_key_spaces_does_not_collide() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    let mut batch = WriteBatch::new();
    for space in SPACES {
        batch.put(space, index(1), space.name());
    }
    store.write(batch, true).unwrap();

    for space in SPACES {
        assert_eq!(
            store.get(space, &index(1)).unwrap(),
            Some(space.name().as_bytes().to_vec())
        );
        assert_eq!(all_keys(&store, space), vec![index(1).to_vec()], "{space}");
    }

    let mut batch = WriteBatch::new();
    batch.delete(RAFT_STATE, index(1));
    store.write(batch, true).unwrap();
    assert_eq!(store.get(RAFT_STATE, &index(1)).unwrap(), None);
    assert!(store.get(RAFT_LOG, &index(1)).unwrap().is_some());
    assert!(store.get(REGION_LOG, &index(1)).unwrap().is_some());
}

#[test]
fn a_range_delete_removes_its_range_in_its_key_space_only() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    let mut batch = WriteBatch::new();
    for entry in 0..10 {
        batch.put(RAFT_LOG, index(entry), b"entry");
        batch.put(REGION_LOG, index(entry), b"record");
    }
    store.write(batch, true).unwrap();

    let mut batch = WriteBatch::new();
    batch.delete_range(RAFT_LOG, index(3), index(7));
    store.write(batch, true).unwrap();

    let expected: Vec<Vec<u8>> = [0, 1, 2, 7, 8, 9].map(|entry| index(entry).to_vec()).into();
    assert_eq!(all_keys(&store, RAFT_LOG), expected);
    assert_eq!(all_keys(&store, REGION_LOG).len(), 10);
    assert_eq!(store.get(RAFT_LOG, &index(3)).unwrap(), None);
    assert_eq!(store.get(RAFT_LOG, &index(6)).unwrap(), None);
    assert!(store.get(RAFT_LOG, &index(7)).unwrap().is_some());
}

#[test]
fn an_empty_or_inverted_range_delete_removes_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    let mut batch = WriteBatch::new();
    for entry in 0..5 {
        batch.put(RAFT_LOG, index(entry), b"entry");
    }
    store.write(batch, true).unwrap();

    let mut batch = WriteBatch::new();
    batch.delete_range(RAFT_LOG, index(2), index(2));
    batch.delete_range(RAFT_LOG, index(4), index(1));
    store.write(batch, true).unwrap();
    assert_eq!(all_keys(&store, RAFT_LOG).len(), 5);
}

#[test]
fn scan_returns_keys_in_byte_order_within_its_bounds_up_to_the_limit() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    let mut batch = WriteBatch::new();
    for entry in [7, 3, 9, 0, 5, 1, 8, 2, 6, 4] {
        batch.put(RAFT_LOG, index(entry), format!("entry {entry}"));
    }
    store.write(batch, false).unwrap();

    let pairs = store.scan(RAFT_LOG, &index(2), &index(8), 100).unwrap();
    let expected: Vec<(Vec<u8>, Vec<u8>)> = (2..8)
        .map(|entry| (index(entry).to_vec(), format!("entry {entry}").into_bytes()))
        .collect();
    assert_eq!(pairs, expected);

    let pairs = store.scan(RAFT_LOG, &index(2), &index(8), 3).unwrap();
    assert_eq!(pairs, expected[..3].to_vec());

    assert!(
        store
            .scan(RAFT_LOG, &index(2), &index(8), 0)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .scan(RAFT_LOG, &index(8), &index(2), 10)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .scan(RAFT_LOG, &index(4), &index(4), 10)
            .unwrap()
            .is_empty()
    );

    // Keys of different lengths sort bytewise, a prefix before its extensions.
    let mut batch = WriteBatch::new();
    for key in ["b", "ab", "a", "a\u{0}", "ba"] {
        batch.put(RAFT_STATE, key, key);
    }
    store.write(batch, false).unwrap();
    let keys: Vec<Vec<u8>> = store
        .scan(RAFT_STATE, b"a", b"b", 10)
        .unwrap()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(keys, vec![b"a".to_vec(), b"a\0".to_vec(), b"ab".to_vec()]);
}

#[test]
fn scan_after_a_range_delete_skips_the_deleted_prefix() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    let mut batch = WriteBatch::new();
    for entry in 0..1_000 {
        batch.put(RAFT_LOG, index(entry), vec![1; 64]);
    }
    store.write(batch, true).unwrap();
    let mut batch = WriteBatch::new();
    batch.delete_range(RAFT_LOG, index(0), index(990));
    store.write(batch, true).unwrap();

    let pairs = store.scan(RAFT_LOG, &index(0), &index(2_000), 5).unwrap();
    let keys: Vec<Vec<u8>> = pairs.into_iter().map(|(key, _)| key).collect();
    let expected: Vec<Vec<u8>> = (990..995).map(|entry| index(entry).to_vec()).collect();
    assert_eq!(keys, expected);
}

#[test]
fn a_scan_limit_above_the_maximum_is_an_error() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    put(&mut store, RAFT_LOG, &index(1), b"entry", false);

    assert_eq!(
        store
            .scan(RAFT_LOG, &index(0), &index(9), SCAN_LIMIT_MAX)
            .unwrap()
            .len(),
        1
    );
    let message = engine_message(
        store
            .scan(RAFT_LOG, &index(0), &index(9), SCAN_LIMIT_MAX + 1)
            .unwrap_err(),
    );
    assert!(message.contains("SCAN_LIMIT_MAX"), "{message}");
}

#[test]
fn an_unknown_key_space_is_an_error_naming_it_and_its_batch_writes_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());

    let message = engine_message(store.get(CHECKPOINTS, b"key").unwrap_err());
    assert!(message.contains("`checkpoints`"), "{message}");
    assert!(message.contains("raft_log"), "{message}");
    let message = engine_message(store.scan(CHECKPOINTS, b"a", b"z", 10).unwrap_err());
    assert!(message.contains("`checkpoints`"), "{message}");

    let mut batch = WriteBatch::new();
    batch.put(RAFT_LOG, b"key", b"value");
    batch.delete_range(CHECKPOINTS, b"a", b"z");
    let message = engine_message(store.write(batch, true).unwrap_err());
    assert!(message.contains("`checkpoints`"), "{message}");
    assert_eq!(store.get(RAFT_LOG, b"key").unwrap(), None);

    // RocksDB's own column family is no key space unless the caller names it.
    let default = KeySpace::new("default");
    let message = engine_message(store.get(default, b"key").unwrap_err());
    assert!(message.contains("`default`"), "{message}");
}

#[test]
fn batches_beyond_the_size_bounds_are_rejected_whole() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());

    let mut batch = WriteBatch::new();
    batch.put(RAFT_LOG, b"small", b"value");
    batch.put(RAFT_LOG, b"large", vec![0; BATCH_SIZE_BYTES_MAX]);
    let message = engine_message(store.write(batch, true).unwrap_err());
    assert!(message.contains("BATCH_SIZE_BYTES_MAX"), "{message}");
    assert_eq!(store.get(RAFT_LOG, b"small").unwrap(), None);

    let mut batch = WriteBatch::new();
    for _ in 0..=BATCH_OPERATIONS_MAX {
        batch.delete(RAFT_LOG, b"key");
    }
    let message = engine_message(store.write(batch, true).unwrap_err());
    assert!(message.contains("BATCH_OPERATIONS_MAX"), "{message}");
}

#[test]
fn an_empty_batch_is_accepted_synced_or_not() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    put(&mut store, RAFT_LOG, b"key", b"value", false);
    store.write(WriteBatch::new(), true).unwrap();
    store.write(WriteBatch::new(), false).unwrap();
    drop(store);
    let store = open(directory.path());
    assert_eq!(
        store.get(RAFT_LOG, b"key").unwrap(),
        Some(b"value".to_vec())
    );
}

#[test]
fn reopening_keeps_every_write() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    put(&mut store, RAFT_LOG, &index(1), b"synced", true);
    put(&mut store, RAFT_STATE, b"hard_state", b"unsynced", false);
    let mut batch = WriteBatch::new();
    for entry in 2..200 {
        batch.put(REGION_LOG, index(entry), vec![7; 256]);
    }
    batch.delete_range(REGION_LOG, index(100), index(150));
    store.write(batch, true).unwrap();
    drop(store);

    let store = open(directory.path());
    assert_eq!(
        store.get(RAFT_LOG, &index(1)).unwrap(),
        Some(b"synced".to_vec())
    );
    assert_eq!(
        store.get(RAFT_STATE, b"hard_state").unwrap(),
        Some(b"unsynced".to_vec())
    );
    assert_eq!(all_keys(&store, REGION_LOG).len(), 198 - 50);
    assert_eq!(store.get(REGION_LOG, &index(120)).unwrap(), None);
}

#[test]
fn reopening_with_other_key_spaces_keeps_the_data_of_the_old_ones() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = RocksDbStore::open(directory.path(), &[RAFT_LOG, RAFT_STATE]).unwrap();
    put(&mut store, RAFT_LOG, &index(1), b"entry", true);
    put(&mut store, RAFT_STATE, b"hard_state", b"term 2", true);
    drop(store);

    // More key spaces: the old data is there and the new space works.
    let mut store =
        RocksDbStore::open(directory.path(), &[RAFT_LOG, RAFT_STATE, CHECKPOINTS]).unwrap();
    assert_eq!(
        store.get(RAFT_LOG, &index(1)).unwrap(),
        Some(b"entry".to_vec())
    );
    put(&mut store, CHECKPOINTS, b"newest", b"checkpoint", true);
    drop(store);

    // Fewer key spaces: the one left out is unreachable but kept for a later open.
    let store = RocksDbStore::open(directory.path(), &[RAFT_LOG]).unwrap();
    assert_eq!(store.key_spaces().collect::<Vec<_>>(), vec![RAFT_LOG]);
    assert!(store.get(CHECKPOINTS, b"newest").is_err());
    drop(store);

    let store = RocksDbStore::open(directory.path(), &[RAFT_LOG, RAFT_STATE, CHECKPOINTS]).unwrap();
    assert_eq!(
        store.get(CHECKPOINTS, b"newest").unwrap(),
        Some(b"checkpoint".to_vec())
    );
    assert_eq!(
        store.get(RAFT_STATE, b"hard_state").unwrap(),
        Some(b"term 2".to_vec())
    );
}

#[test]
fn a_second_open_of_one_directory_fails_naming_the_path() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("region");
    let mut first = open(&path);
    put(&mut first, RAFT_LOG, b"key", b"value", true);

    let message = engine_message(RocksDbStore::open(&path, &SPACES).unwrap_err());
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("already open"), "{message}");

    // The failed open disturbed nothing: the first store still works, and once it is closed
    // the directory opens again.
    put(&mut first, RAFT_LOG, b"key", b"changed", true);
    drop(first);
    let store = open(&path);
    assert_eq!(
        store.get(RAFT_LOG, b"key").unwrap(),
        Some(b"changed".to_vec())
    );
}

#[test]
fn a_damaged_current_file_is_reported_naming_the_path() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    put(&mut store, RAFT_LOG, b"key", b"value", true);
    drop(store);

    std::fs::write(directory.path().join("CURRENT"), b"no newline at the end").unwrap();
    let message = engine_message(RocksDbStore::open(directory.path(), &SPACES).unwrap_err());
    assert!(
        message.contains(&directory.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("damaged"), "{message}");
}

#[test]
fn a_damaged_manifest_is_reported_naming_the_path() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    put(&mut store, RAFT_LOG, b"key", b"value", true);
    drop(store);

    let current = std::fs::read_to_string(directory.path().join("CURRENT")).unwrap();
    let manifest = directory.path().join(current.trim());
    let length = std::fs::metadata(&manifest).unwrap().len() as usize;
    std::fs::write(&manifest, vec![0xa5; length]).unwrap();
    let message = engine_message(RocksDbStore::open(directory.path(), &SPACES).unwrap_err());
    assert!(
        message.contains(&directory.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("damaged"), "{message}");
}

#[test]
fn a_store_whose_current_file_is_gone_is_not_replaced_by_an_empty_one() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    put(&mut store, RAFT_LOG, b"key", b"value", true);
    drop(store);

    std::fs::remove_file(directory.path().join("CURRENT")).unwrap();
    let message = engine_message(RocksDbStore::open(directory.path(), &SPACES).unwrap_err());
    assert!(
        message.contains(&directory.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("damaged"), "{message}");
    assert!(!directory.path().join("CURRENT").exists());
}

#[test]
fn opening_a_path_that_is_a_file_fails_naming_it() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("not_a_directory");
    std::fs::write(&path, b"plain file").unwrap();
    let message = engine_message(RocksDbStore::open(&path, &SPACES).unwrap_err());
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn the_store_moves_to_another_thread_and_serves_reads_from_several() {
    fn assert_send_and_sync<T: Send + Sync>() {}
    assert_send_and_sync::<RocksDbStore>();

    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    store = std::thread::spawn(move || {
        put(
            &mut store,
            RAFT_LOG,
            &index(1),
            b"from the writer thread",
            true,
        );
        store
    })
    .join()
    .unwrap();

    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| store.get(RAFT_LOG, &index(1)).unwrap()))
            .collect();
        for reader in readers {
            assert_eq!(
                reader.join().unwrap(),
                Some(b"from the writer thread".to_vec())
            );
        }
    });
}

/// A follower fetches a snapshot's state from a view its sender pinned when it built the
/// snapshot: the view must keep showing that state while the store moves on, and what it holds
/// on disk must go when the view does.
#[test]
fn a_pinned_view_keeps_the_state_it_was_pinned_at_while_the_store_moves_on() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("store");
    let views = directory.path().join("store.views");
    let mut store = open(&path);
    for key in 0..100u64 {
        put(&mut store, REGION_LOG, &index(key), b"before", false);
    }
    let range = KeyRange {
        space: REGION_LOG,
        start: Vec::new(),
        end: vec![0xff; 9],
    };
    store.pin_view(7, std::slice::from_ref(&range)).unwrap();
    for key in 0..100u64 {
        put(&mut store, REGION_LOG, &index(key), b"after", false);
    }
    let mut batch = WriteBatch::new();
    batch.delete_range(REGION_LOG, index(50).to_vec(), index(100).to_vec());
    store.write(batch, true).unwrap();

    let view = store.pinned_view(7).expect("the view is kept");
    let pairs = view.scan(REGION_LOG, &[], &[0xff; 9], 1_000).unwrap();
    assert_eq!(pairs.len(), 100);
    assert!(pairs.iter().all(|(_, value)| value == b"before"));
    assert_eq!(
        view.get(REGION_LOG, &index(60)).unwrap(),
        Some(b"before".to_vec())
    );
    assert_eq!(store.get(REGION_LOG, &index(60)).unwrap(), None);
    assert!(store.pinned_view(8).is_none());
    assert!(
        view.get(CHECKPOINTS, b"key").is_err(),
        "unknown spaces are errors"
    );

    // At most PINNED_VIEWS_MAX are kept: pinning two more drops the first, and its files.
    store.pin_view(8, std::slice::from_ref(&range)).unwrap();
    store.pin_view(9, std::slice::from_ref(&range)).unwrap();
    assert!(store.pinned_view(7).is_none());
    assert!(
        views.join("7").exists(),
        "a view in use stays until its last reader drops it"
    );
    drop(view);
    assert!(!views.join("7").exists());
    assert_eq!(store.views().unwrap().ids(), vec![8, 9]);
    assert_eq!(PINNED_VIEWS_MAX, 2);

    // Views end with the process that pinned them: a reopened store has none on disk.
    let leaked = store.pinned_view(9).unwrap();
    drop(store);
    std::mem::forget(leaked);
    assert!(views.join("9").exists());
    let store = open(&path);
    assert!(!views.exists());
    assert!(store.pinned_view(9).is_none());
}
