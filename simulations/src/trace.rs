//! The trace: one text line per event, hashed with SHA-256.
//!
//! Two runs with the same seed and configuration must write the same lines, so their hashes
//! must match: that is the determinism check. The first [`TRACE_LINES_KEPT_MAX`] lines are
//! also kept in memory (each cut to [`TRACE_LINE_SIZE_BYTES_MAX`]), so that when two hashes
//! differ, [`Trace::first_difference`] can show the first line where the runs went apart.
//! The hash always covers every line in full.

use std::fmt::{self, Write as _};

use sha2::{Digest, Sha256};

/// The most lines a trace keeps in memory; later lines are hashed but not kept.
pub const TRACE_LINES_KEPT_MAX: usize = 100_000;

/// The longest kept line, in bytes; longer lines are cut (the hash still covers all of it).
pub const TRACE_LINE_SIZE_BYTES_MAX: usize = 1_024;

/// A hashed, partly kept, log of every event of a run.
#[derive(Clone)]
pub struct Trace {
    hasher: Sha256,
    line_count: u64,
    keep_lines: bool,
    lines: Vec<String>,
    /// The line being written by [`Trace::record_fmt`], reused from line to line so that
    /// recording an event allocates nothing once it has grown to the longest line.
    scratch: String,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Trace {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Trace")
            .field("hash", &self.hash_hex())
            .field("line_count", &self.line_count)
            .field("lines_kept", &self.lines.len())
            .finish()
    }
}

/// Where two traces first differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceDifference {
    /// Line `index` (from zero) differs; `None` means that trace ended before it.
    Line {
        /// The index of the first differing line.
        index: usize,
        /// The line in the first trace.
        left: Option<String>,
        /// The line in the second trace.
        right: Option<String>,
    },
    /// Every kept line matches, but the hashes differ, so the runs went apart after the kept
    /// lines (or one trace kept no lines).
    AfterKeptLines {
        /// The number of lines compared.
        compared: usize,
    },
}

impl fmt::Display for TraceDifference {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceDifference::Line { index, left, right } => write!(
                formatter,
                "trace line {index} differs:\n  first run:  {}\n  second run: {}",
                left.as_deref().unwrap_or("<end of trace>"),
                right.as_deref().unwrap_or("<end of trace>")
            ),
            TraceDifference::AfterKeptLines { compared } => write!(
                formatter,
                "the first {compared} trace lines match, the traces differ after them"
            ),
        }
    }
}

impl Trace {
    /// An empty trace that keeps its first lines.
    pub fn new() -> Self {
        Trace {
            hasher: Sha256::new(),
            line_count: 0,
            keep_lines: true,
            lines: Vec::new(),
            scratch: String::new(),
        }
    }

    /// Stops or resumes keeping lines in memory (hashing never stops). A long run whose
    /// determinism is already established can save the memory.
    pub fn set_keep_lines(&mut self, keep_lines: bool) {
        self.keep_lines = keep_lines;
    }

    /// Appends one line (without its newline).
    pub fn record(&mut self, line: &str) {
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        self.line_count += 1;
        if self.keep_lines && self.lines.len() < TRACE_LINES_KEPT_MAX {
            self.lines.push(truncated(line).to_owned());
        }
    }

    /// Appends one line written from `arguments`: the same as [`Trace::record`] of the
    /// formatted text, without building a new string per line.
    pub fn record_fmt(&mut self, arguments: fmt::Arguments<'_>) {
        let mut line = std::mem::take(&mut self.scratch);
        line.clear();
        line.write_fmt(arguments)
            .expect("writing to a String does not fail");
        self.record(&line);
        self.scratch = line;
    }

    /// The SHA-256 of every line so far, as lowercase hex.
    pub fn hash_hex(&self) -> String {
        let digest = self.hasher.clone().finalize();
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// The number of lines recorded.
    pub fn line_count(&self) -> u64 {
        self.line_count
    }

    /// The kept lines.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Where this trace and `other` first differ, or `None` when their hashes match.
    pub fn first_difference(&self, other: &Trace) -> Option<TraceDifference> {
        if self.hash_hex() == other.hash_hex() {
            return None;
        }
        let compared = self.lines.len().min(other.lines.len());
        let index = (0..compared).find(|&index| self.lines[index] != other.lines[index]);
        let index = match index {
            Some(index) => index,
            // One trace ended while the other went on: the first extra line differs, unless it
            // is only the kept-lines bound that ended it.
            None if self.lines.len() != other.lines.len() => compared,
            None => return Some(TraceDifference::AfterKeptLines { compared }),
        };
        if (index == self.lines.len() && self.line_count > index as u64)
            || (index == other.lines.len() && other.line_count > index as u64)
        {
            return Some(TraceDifference::AfterKeptLines { compared });
        }
        Some(TraceDifference::Line {
            index,
            left: self.lines.get(index).cloned(),
            right: other.lines.get(index).cloned(),
        })
    }
}

/// `line` cut to at most [`TRACE_LINE_SIZE_BYTES_MAX`] bytes, on a character boundary.
fn truncated(line: &str) -> &str {
    if line.len() <= TRACE_LINE_SIZE_BYTES_MAX {
        return line;
    }
    let mut end = TRACE_LINE_SIZE_BYTES_MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace_of(lines: &[&str]) -> Trace {
        let mut trace = Trace::new();
        for line in lines {
            trace.record(line);
        }
        trace
    }

    #[test]
    fn equal_lines_hash_alike_and_different_lines_do_not() {
        let first = trace_of(&["a", "b"]);
        assert_eq!(first.hash_hex(), trace_of(&["a", "b"]).hash_hex());
        assert_ne!(first.hash_hex(), trace_of(&["a", "c"]).hash_hex());
        // Line boundaries are part of the hash.
        assert_ne!(first.hash_hex(), trace_of(&["ab"]).hash_hex());
        assert_eq!(first.hash_hex().len(), 64);
        assert_eq!(first.line_count(), 2);
    }

    #[test]
    fn the_empty_trace_hashes_to_the_sha256_of_nothing() {
        assert_eq!(
            Trace::new().hash_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn first_difference_names_the_line() {
        let first = trace_of(&["a", "b", "c"]);
        assert_eq!(first.first_difference(&trace_of(&["a", "b", "c"])), None);
        assert_eq!(
            first.first_difference(&trace_of(&["a", "x", "c"])),
            Some(TraceDifference::Line {
                index: 1,
                left: Some("b".into()),
                right: Some("x".into())
            })
        );
        assert_eq!(
            first.first_difference(&trace_of(&["a", "b"])),
            Some(TraceDifference::Line {
                index: 2,
                left: Some("c".into()),
                right: None
            })
        );
    }

    #[test]
    fn a_difference_past_the_kept_lines_is_reported_as_such() {
        let mut first = Trace::new();
        first.set_keep_lines(false);
        first.record("a");
        let mut second = Trace::new();
        second.set_keep_lines(false);
        second.record("b");
        assert_eq!(
            first.first_difference(&second),
            Some(TraceDifference::AfterKeptLines { compared: 0 })
        );
    }

    #[test]
    fn long_lines_are_cut_when_kept_but_hashed_in_full() {
        let long = "é".repeat(TRACE_LINE_SIZE_BYTES_MAX);
        let mut longer = long.clone();
        longer.push('x');
        let first = trace_of(&[&long]);
        let second = trace_of(&[&longer]);
        assert!(first.lines()[0].len() <= TRACE_LINE_SIZE_BYTES_MAX);
        assert_eq!(first.lines(), second.lines());
        assert_ne!(first.hash_hex(), second.hash_hex());
    }
}
