//! Hostile and broken input must produce diagnostics, never a panic or a hang: truncated
//! files, random corruption, deep nesting, floods of errors, oversized and unreadable files.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use dsss_topology::{DIAGNOSTICS_MAX, LOCAL_TOPOLOGY_TOML, TOPOLOGY_FILE_BYTES_MAX, load, parse};

/// A directory of its own for one test, under the target directory cargo provides for
/// integration tests, emptied first.
fn scratch_dir(test_name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("dsss-topology")
        .join(test_name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

/// A small deterministic generator (xorshift64*), so that a failing mutation reproduces from
/// its printed case number.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

#[test]
fn every_truncation_of_a_valid_file_is_handled() {
    let text = LOCAL_TOPOLOGY_TOML;
    let mut valid_prefixes = 0;
    for (cut, _) in text.char_indices() {
        let prefix = &text[..cut];
        match parse("cut.toml", prefix) {
            Ok(_) => valid_prefixes += 1,
            Err(diagnostics) => assert!(!diagnostics.is_empty(), "cut at {cut}"),
        }
    }
    // Only cuts inside the last entry's trailing comment or whitespace can still be valid.
    assert!(valid_prefixes < 10, "{valid_prefixes} prefixes were valid");
    assert!(parse("whole.toml", text).is_ok());
}

#[test]
fn random_corruption_yields_diagnostics_and_never_panics() {
    // Characters that are meaningful to TOML or to the checks, plus some that are not.
    const ALPHABET: &[char] = &[
        '[', ']', '{', '}', '"', '\'', '=', ',', '.', '\n', ' ', '#', '-', '+', '_', '0', '1', '9',
        'e', 'n', 'a', 'i', 'f', 'x', ':', '\\', '\u{0}', '\u{7f}', 'é', '\u{fffd}',
    ];
    const CASES: usize = 3_000;
    let original: Vec<char> = LOCAL_TOPOLOGY_TOML.chars().collect();
    let mut random = Random(0x005e_ed0f_d555);
    for case in 0..CASES {
        let mut text = original.clone();
        let edits = 1 + random.below(8);
        for _ in 0..edits {
            let position = random.below(text.len());
            match random.below(3) {
                0 => text[position] = ALPHABET[random.below(ALPHABET.len())],
                1 => text.insert(position, ALPHABET[random.below(ALPHABET.len())]),
                _ => {
                    text.remove(position);
                }
            }
        }
        let text: String = text.into_iter().collect();
        let result = std::panic::catch_unwind(|| parse("mutated.toml", &text));
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(diagnostics)) => {
                assert!(!diagnostics.is_empty(), "case {case}: empty diagnostics");
                for diagnostic in diagnostics.iter() {
                    // Every refusal must name a field at fault, never the catch-all.
                    assert!(
                        !diagnostic
                            .message
                            .contains("no single field was found at fault"),
                        "case {case}: unexplained refusal of:\n{text}"
                    );
                    let rendered = diagnostic.to_string();
                    assert!(
                        rendered.starts_with("mutated.toml:") && !rendered.contains('\n'),
                        "case {case}: malformed diagnostic {rendered:?}"
                    );
                }
            }
            Err(_) => panic!("case {case} panicked on:\n{text}"),
        }
    }
}

#[test]
fn binary_garbage_is_a_diagnostic() {
    let mut random = Random(42);
    for case in 0..200 {
        let bytes: Vec<u8> = (0..1 + random.below(2_000))
            .map(|_| random.next() as u8)
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        let diagnostics = parse("garbage.bin", &text).expect_err("garbage is never a topology");
        assert!(!diagnostics.is_empty(), "case {case}");
    }
}

#[test]
fn deep_nesting_stops_at_the_parser_limit() {
    for depth in [100, 10_000, 500_000] {
        let text = format!("a = {}{}", "[".repeat(depth), "]".repeat(depth));
        let diagnostics = parse("deep.toml", &text).expect_err("too deep");
        assert_eq!(diagnostics.len(), 1, "{diagnostics}");
        assert_eq!(diagnostics.as_slice()[0].field_path, "syntax");

        let tables = format!("{}x = 1", "a.".repeat(depth));
        let diagnostics = parse("deep.toml", &tables).expect_err("too deep");
        assert_eq!(diagnostics.as_slice()[0].field_path, "syntax");
    }
    // Nesting within the parser's limit reaches the checks, which refuse it by type.
    let nested = LOCAL_TOPOLOGY_TOML.replace(
        "name = \"local\"",
        &format!("name = {}{}", "[".repeat(50), "]".repeat(50)),
    );
    let diagnostics = parse("nested.toml", &nested).expect_err("name is not a string");
    // The diagnostic points at the value: line of `name = ...`, column 8.
    let name_line = 1 + LOCAL_TOPOLOGY_TOML
        .lines()
        .position(|line| line == "name = \"local\"")
        .expect("the embedded topology names its cluster");
    assert_eq!(
        diagnostics.to_string(),
        format!("nested.toml:{name_line}:8: cluster.name: expected a string, found an array")
    );
}

#[test]
fn a_flood_of_problems_is_cut_to_the_limit_and_counted() {
    let mut text = LOCAL_TOPOLOGY_TOML.replace("[cluster]\n", "[cluster]\n#KEYS\n");
    let keys: String = (0..50_000).map(|index| format!("k{index} = 1\n")).collect();
    text = text.replace("#KEYS\n", &keys);
    assert!(text.len() < TOPOLOGY_FILE_BYTES_MAX as usize);
    let diagnostics = parse("flood.toml", &text).expect_err("unknown keys");
    assert_eq!(diagnostics.len(), DIAGNOSTICS_MAX);
    assert_eq!(diagnostics.total_count(), 50_000);
    // The earliest problems in the file are the ones kept.
    let first = &diagnostics.as_slice()[0];
    assert_eq!(first.field_path, "cluster.k0");
    assert!(
        diagnostics
            .to_string()
            .ends_with("flood.toml: 49900 more problems not shown (at most 100 are listed)")
    );
}

#[test]
fn thousands_of_regions_are_refused_without_quadratic_work() {
    // With this many regions, checking every pair for a latency entry would take billions of
    // steps; the count is refused and the pairs are not enumerated.
    let mut text = String::from(
        "[cluster]\nname = \"wide\"\nepoch_ms = 10\nsuspicion_timeout_ms = 2000\n\
         max_clock_skew_ms = 250\nintra_region_delay_ms = 0.2\n\n\
         [coordinator]\nreplicas = [1]\npreferred_leader = 1\n",
    );
    for index in 1..=20_000 {
        text.push_str(&format!(
            "[[regions]]\nid = \"r{index}\"\nnodes = [{{ id = {index}, address = \"h{index}:1\", data_dir = \"d{index}\" }}]\n"
        ));
    }
    let diagnostics = parse("wide.toml", &text).expect_err("too many regions");
    assert_eq!(
        diagnostics
            .iter()
            .map(|diagnostic| diagnostic.message.as_str())
            .collect::<Vec<_>>(),
        vec!["20000 regions given; at most 64 are allowed"]
    );
}

#[test]
fn load_reports_missing_files_and_bad_utf8() {
    let dir = scratch_dir("load_errors");
    let missing = dir.join("missing.toml");
    let diagnostics = load(&missing).expect_err("missing file");
    let text = diagnostics.to_string();
    assert!(
        text.starts_with(&format!("{}: file: cannot open: ", missing.display())),
        "{text}"
    );

    let latin1 = dir.join("latin1.toml");
    fs::write(&latin1, b"[cluster]\nname = \"caf\xe9\"\n").expect("write");
    let diagnostics = load(&latin1).expect_err("not UTF-8");
    assert_eq!(
        diagnostics.to_string(),
        format!(
            "{}:2:12: file: the file is not valid UTF-8 (invalid byte at offset 21)",
            latin1.display()
        )
    );

    let directory = load(&dir).expect_err("a directory is not a topology file");
    assert_eq!(directory.as_slice()[0].field_path, "file");
}

#[test]
fn load_refuses_files_over_the_limit_and_accepts_one_at_the_limit() {
    let dir = scratch_dir("load_sizes");
    let limit = TOPOLOGY_FILE_BYTES_MAX as usize;

    // Exactly at the limit: the valid file padded with a comment is read and is valid.
    let at_limit = dir.join("at-limit.toml");
    let mut text = LOCAL_TOPOLOGY_TOML.to_owned();
    text.push('#');
    text.push_str(&"x".repeat(limit - text.len() - 1));
    text.push('\n');
    assert_eq!(text.len(), limit);
    fs::write(&at_limit, &text).expect("write");
    assert!(load(&at_limit).is_ok());

    // One byte more is refused.
    let over_limit = dir.join("over-limit.toml");
    text.insert(0, ' ');
    fs::write(&over_limit, &text).expect("write");
    let diagnostics = load(&over_limit).expect_err("too large");
    assert!(
        diagnostics
            .to_string()
            .contains("larger than 1048576 bytes"),
        "{diagnostics}"
    );

    // 50 MB is refused the same way, without being read whole.
    let huge = dir.join("huge.toml");
    let mut file = fs::File::create(&huge).expect("create");
    let chunk = vec![b'#'; 1024 * 1024];
    for _ in 0..50 {
        file.write_all(&chunk).expect("write");
    }
    drop(file);
    let diagnostics = load(&huge).expect_err("too large");
    assert_eq!(diagnostics.len(), 1);
    assert!(diagnostics.to_string().contains("larger than"));
    fs::remove_file(&huge).expect("remove the 50 MB file");
}

#[cfg(unix)]
#[test]
fn load_stops_reading_an_endless_file() {
    // /dev/zero never ends and reports a size of 0: only a bounded read can refuse it.
    let diagnostics = load(Path::new("/dev/zero")).expect_err("endless");
    assert!(
        diagnostics.to_string().contains("larger than"),
        "{diagnostics}"
    );
}
