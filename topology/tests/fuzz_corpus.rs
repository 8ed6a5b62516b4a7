//! Replays the corpus of fuzz target `topology_parse` (`fuzz/corpus/topology_parse/`) through
//! the check the target runs (`fuzz/checks/topology_parse.rs`): any text parses into a
//! topology or returns diagnostics placed inside it, never a panic.

#[path = "../../fuzz/checks/topology_parse.rs"]
mod check;
#[path = "../../fuzz/checks/replay.rs"]
mod replay;

const TARGET: &str = "topology_parse";

#[test]
fn every_corpus_input_parses_or_is_refused() {
    replay::replay(TARGET, check::check);
}

/// Writes the seed corpus: the example topologies and the broken files of the tests. Run with
/// `cargo test -p dsss-topology --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus/topology_parse; run by hand to reseed"]
fn write_seed_corpus() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = Vec::new();
    for dir in ["examples", "tests/broken"] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "toml")
            })
            .collect();
        paths.sort();
        for path in paths {
            let name = format!("{dir}-{}", path.file_stem().unwrap().to_string_lossy());
            seeds.push((name, std::fs::read(&path).unwrap()));
        }
    }
    replay::write_seeds(TARGET, &seeds);
}
