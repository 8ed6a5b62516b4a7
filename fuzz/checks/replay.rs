//! Replays a fuzz corpus through its check in the normal test suite, so that every input the
//! fuzzer kept (and every minimized crash) runs on stable Rust in `cargo test --workspace`.
//! Included by the `fuzz_corpus` test of the crate that owns the checked code.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The corpus directory of fuzz target `target`, from the including crate's directory.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Runs `check` on every file of the corpus of `target`. Fails naming the directory when it is
/// missing or empty (a replay of nothing would pass silently), and naming every file whose
/// check panicked.
pub fn replay(target: &str, check: fn(&[u8])) {
    let dir = corpus_dir(target);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) => panic!("corpus {} cannot be read: {error}", dir.display()),
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| match entry {
            Ok(entry) => entry.path(),
            Err(error) => panic!("corpus {} cannot be listed: {error}", dir.display()),
        })
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus {} holds no input: the replay would check nothing",
        dir.display()
    );
    let mut failed = Vec::new();
    for file in &files {
        let data = match std::fs::read(file) {
            Ok(data) => data,
            Err(error) => panic!("corpus input {} cannot be read: {error}", file.display()),
        };
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} corpus inputs of {target} failed the check:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

/// Writes `seeds` into the corpus of `target`, named `seed-<name>` (with every character but
/// ASCII letters and digits replaced by `_`), for the generators of the seed corpora.
pub fn write_seeds(target: &str, seeds: &[(String, Vec<u8>)]) {
    let dir = corpus_dir(target);
    if let Err(error) = std::fs::create_dir_all(&dir) {
        panic!("corpus {} cannot be created: {error}", dir.display());
    }
    for (name, data) in seeds {
        let name = name.replace(|c: char| !(c.is_ascii_alphanumeric() || c == '-'), "_");
        let path = dir.join(format!("seed-{name}"));
        if let Err(error) = std::fs::write(&path, data) {
            panic!("seed {} cannot be written: {error}", path.display());
        }
    }
}

/// A seed input for a check whose first byte selects one of `names` (its decoders): the
/// selector of `name`, then `data`; named `name-variant`.
#[allow(dead_code)] // Not every corpus test writes selected seeds.
pub fn selected_seed<'a>(
    names: impl IntoIterator<Item = &'a str>,
    name: &str,
    variant: &str,
    data: &[u8],
) -> (String, Vec<u8>) {
    let selector = names
        .into_iter()
        .position(|decoder| decoder == name)
        .unwrap_or_else(|| panic!("no decoder {name}"));
    let mut input = vec![u8::try_from(selector).expect("fewer than 256 decoders")];
    input.extend_from_slice(data);
    (format!("{name}-{variant}"), input)
}

/// Raft entries framed as the checks' apply decoders read them: each with its length as two
/// big-endian bytes.
#[allow(dead_code)] // Not every corpus test writes framed entries.
pub fn framed(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut data = Vec::new();
    for entry in entries {
        let length = u16::try_from(entry.len()).expect("an entry of at most 64 KiB");
        data.extend_from_slice(&length.to_be_bytes());
        data.extend_from_slice(entry);
    }
    data
}
