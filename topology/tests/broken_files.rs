//! Golden files: every `tests/broken/*.toml` must produce exactly the diagnostics in the
//! `*.expected` file beside it. Run with `DSSS_BLESS=1` to rewrite the expected files after an
//! intended change of wording, then review the difference.

use std::fs;
use std::path::{Path, PathBuf};

const BROKEN_DIR: &str = "tests/broken";
const BLESS_VARIABLE: &str = "DSSS_BLESS";

/// The broken files, by path relative to the package root (which is the working directory of
/// integration tests), so that the expected text names them the same way on every machine.
fn broken_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(BROKEN_DIR)
        .unwrap_or_else(|error| panic!("cannot list {BROKEN_DIR}: {error}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "toml")
        })
        .collect();
    files.sort();
    files
}

fn expected_path(toml_path: &Path) -> PathBuf {
    toml_path.with_extension("expected")
}

#[test]
fn broken_files_produce_their_expected_diagnostics() {
    let package_root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        std::env::current_dir().and_then(fs::canonicalize).ok(),
        fs::canonicalize(package_root).ok(),
        "integration tests run in the package root"
    );
    let bless = std::env::var_os(BLESS_VARIABLE).is_some_and(|value| value == "1");
    let files = broken_files();
    assert!(files.len() >= 10, "the broken files are missing: {files:?}");
    let mut failures = Vec::new();
    for path in &files {
        let actual = match dsss_topology::load(path) {
            Ok(_) => format!("unexpectedly valid: {}", path.display()),
            Err(diagnostics) => format!("{diagnostics}\n"),
        };
        let expected_file = expected_path(path);
        if bless {
            fs::write(&expected_file, &actual).expect("write expected file");
            continue;
        }
        let expected = fs::read_to_string(&expected_file).unwrap_or_else(|error| {
            panic!(
                "cannot read {}: {error}; run with {BLESS_VARIABLE}=1 to create it",
                expected_file.display()
            )
        });
        if actual != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden files differ (run with {BLESS_VARIABLE}=1 to accept):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_expected_file_has_its_broken_file() {
    for entry in fs::read_dir(BROKEN_DIR).expect("list broken files") {
        let path = entry.expect("directory entry").path();
        if path
            .extension()
            .is_some_and(|extension| extension == "expected")
        {
            assert!(
                path.with_extension("toml").is_file(),
                "{} has no .toml beside it",
                path.display()
            );
        }
    }
}

#[test]
fn the_example_files_are_valid() {
    for name in ["examples/local.toml", "examples/global.toml"] {
        if let Err(diagnostics) = dsss_topology::load(Path::new(name)) {
            panic!("{name} is invalid:\n{diagnostics}");
        }
    }
}
