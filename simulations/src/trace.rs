//! The trace: one line per event, hashed with SHA-256.
//!
//! Two runs with the same seed and configuration must record the same events, so their hashes
//! must match: that is the determinism check. The first [`TRACE_LINES_KEPT_MAX`] lines are
//! also kept in memory as text (each cut to [`TRACE_LINE_SIZE_BYTES_MAX`]), so that when two
//! hashes differ, [`Trace::first_difference`] can show the first line where the runs went
//! apart. The hash always covers every event in full.
//!
//! The kernel's frequent events (sends, deliveries, timers) are recorded with
//! [`Trace::record_event`]: the hash covers their fields as binary numbers and, for a send,
//! its message's `Debug` text (a delivery names the message by its id), and their line is
//! written out only while lines are kept, because formatting every number and message of every
//! event as text was a large share of a run's time. Other lines are
//! hashed as text. Each hashed record starts with a tag byte and ends with 0xFF (a byte UTF-8
//! text never holds), so records cannot run into each other.

use std::fmt::{self, Write as _};

use sha2::{Digest, Sha256};

/// The most lines a trace keeps in memory; later lines are hashed but not kept.
pub const TRACE_LINES_KEPT_MAX: usize = 100_000;

/// The longest kept line, in bytes; longer lines are cut (the hash still covers all of it).
pub const TRACE_LINE_SIZE_BYTES_MAX: usize = 1_024;

/// The tag byte of a record hashed as text.
const RECORD_TAG_TEXT: u8 = b'T';

/// The tag byte of a record hashed by its fields ([`Trace::record_event`]).
const RECORD_TAG_FIELDS: u8 = b'F';

/// The byte that ends every hashed record.
const RECORD_END: u8 = 0xFF;

/// The most number fields of one [`Trace::record_event`].
pub const TRACE_EVENT_FIELD_COUNT_MAX: usize = 4;

/// A hashed, partly kept, log of every event of a run.
#[derive(Clone)]
pub struct Trace {
    hasher: Sha256,
    line_count: u64,
    keep_lines: bool,
    lines: Vec<String>,
    /// The line being written by [`Trace::record_fmt`] or [`Trace::record_event`], reused from line to line so that
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

    /// Appends one line (without its newline), hashed as text.
    pub fn record(&mut self, line: &str) {
        self.hasher.update([RECORD_TAG_TEXT]);
        self.hasher.update(line.as_bytes());
        self.hasher.update([RECORD_END]);
        self.line_count += 1;
        if self.keeps_next_line() {
            self.lines.push(truncated(line).to_owned());
        }
    }

    /// Appends one event given by its fields: `kind` (which names the event and the meaning
    /// of its fields), `time_ns` and `fields` are hashed as binary numbers, then `message`
    /// (if any) as its `Debug` text. While lines are kept, `text` writes the event's line
    /// into the string it is given, and the message's text follows it after a space.
    ///
    /// # Panics
    ///
    /// If `fields` holds more than [`TRACE_EVENT_FIELD_COUNT_MAX`] numbers.
    pub fn record_event(
        &mut self,
        kind: u8,
        time_ns: u64,
        fields: &[u64],
        message: Option<&dyn fmt::Debug>,
        text: impl FnOnce(&mut String),
    ) {
        assert!(
            fields.len() <= TRACE_EVENT_FIELD_COUNT_MAX,
            "a trace event has at most {TRACE_EVENT_FIELD_COUNT_MAX} fields"
        );
        // The tag, the kind, the field count, the time and the fields: fixed-size, on the stack.
        let mut header = [0u8; 3 + 8 * (1 + TRACE_EVENT_FIELD_COUNT_MAX)];
        header[0] = RECORD_TAG_FIELDS;
        header[1] = kind;
        header[2] = fields.len() as u8;
        header[3..11].copy_from_slice(&time_ns.to_le_bytes());
        for (index, field) in fields.iter().enumerate() {
            let start = 11 + 8 * index;
            header[start..start + 8].copy_from_slice(&field.to_le_bytes());
        }
        self.hasher.update(&header[..11 + 8 * fields.len()]);
        let keep = self.keeps_next_line();
        let mut line = std::mem::take(&mut self.scratch);
        line.clear();
        if keep {
            text(&mut line);
        }
        if let Some(message) = message {
            if keep {
                line.push(' ');
            }
            let message_start = line.len();
            write!(line, "{message:?}").expect("writing to a String does not fail");
            self.hasher.update(&line.as_bytes()[message_start..]);
        }
        self.hasher.update([RECORD_END]);
        self.line_count += 1;
        if keep {
            self.lines.push(truncated(&line).to_owned());
        }
        self.scratch = line;
    }

    /// Whether the next line is kept in memory.
    fn keeps_next_line(&self) -> bool {
        self.keep_lines && self.lines.len() < TRACE_LINES_KEPT_MAX
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

    /// The SHA-256 of every record so far, as lowercase hex.
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

    fn send(trace: &mut Trace, time_ns: u64, message_id: u64, message: &str) {
        trace.record_event(1, time_ns, &[3, 4, message_id], Some(&message), |line| {
            line.push_str(&format!("{time_ns} send 3->4 #{message_id}"));
        });
    }

    #[test]
    fn field_events_hash_their_fields_and_message_and_keep_their_line() {
        let mut first = Trace::new();
        send(&mut first, 5, 7, "hello");
        assert_eq!(first.lines(), ["5 send 3->4 #7 \"hello\""]);
        assert_eq!(first.line_count(), 1);
        let mut same = Trace::new();
        send(&mut same, 5, 7, "hello");
        assert_eq!(first.first_difference(&same), None);
        for (time_ns, message_id, message) in [(6, 7, "hello"), (5, 8, "hello"), (5, 7, "hellO")] {
            let mut other = Trace::new();
            send(&mut other, time_ns, message_id, message);
            assert_ne!(first.hash_hex(), other.hash_hex());
            assert!(matches!(
                first.first_difference(&other),
                Some(TraceDifference::Line { index: 0, .. })
            ));
        }
        // Whether lines are kept changes nothing in the hash.
        let mut unkept = Trace::new();
        unkept.set_keep_lines(false);
        send(&mut unkept, 5, 7, "hello");
        assert!(unkept.lines().is_empty());
        assert_eq!(first.hash_hex(), unkept.hash_hex());
        // Nor does a field event hash like a text line, or like fewer fields.
        assert_ne!(
            first.hash_hex(),
            trace_of(&["5 send 3->4 #7 \"hello\""]).hash_hex()
        );
        let mut fewer = Trace::new();
        fewer.record_event(1, 5, &[3, 4], Some(&"hello"), |_| {});
        assert_ne!(first.hash_hex(), fewer.hash_hex());
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
