//! Diagnostics: every problem found in a topology file, each with its file, line, column and
//! field path, so that one run of `dsss topology check` shows everything that needs fixing.

use std::fmt;

/// The most diagnostics one [`Diagnostics`] keeps. A hostile file can hold hundreds of
/// thousands of bad entries; past this many, only the count of the others is kept, so memory
/// stays bounded and the report stays readable.
pub const DIAGNOSTICS_MAX: usize = 100;

/// A 1-based line and column in a topology file. Columns count characters, not bytes, so they
/// match what an editor shows for non-ASCII text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number in characters, starting at 1.
    pub column: usize,
}

/// One problem in a topology file.
///
/// It displays as `file:line:column: field path: message`, or `file: field path: message` when
/// the problem has no position (an unreadable file, for example).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The name of the file (or other source) the problem is in.
    pub source_name: String,
    /// Where the problem is, when it has a position in the text.
    pub location: Option<Location>,
    /// The dotted path of the field at fault, such as `regions[1].nodes[2].address`, with
    /// 0-based indices; `syntax` for TOML syntax errors and `file` for problems with the file
    /// itself.
    pub field_path: String,
    /// What is wrong, in a sentence without a trailing period.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(location) => write!(
                formatter,
                "{}:{}:{}: {}: {}",
                self.source_name, location.line, location.column, self.field_path, self.message
            ),
            None => write!(
                formatter,
                "{}: {}: {}",
                self.source_name, self.field_path, self.message
            ),
        }
    }
}

/// All the problems found in one topology file, in the order they appear in the file.
///
/// At most [`DIAGNOSTICS_MAX`] are kept (the earliest in the file); [`Diagnostics::omitted_count`]
/// says how many more there were. Displays as one diagnostic per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics {
    source_name: String,
    items: Vec<Diagnostic>,
    omitted_count: usize,
}

impl Diagnostics {
    /// The name of the file these diagnostics are about.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The diagnostics kept, sorted by position (those without a position first).
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// The diagnostics kept, as a slice.
    pub fn as_slice(&self) -> &[Diagnostic] {
        &self.items
    }

    /// How many diagnostics are kept.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many problems were found beyond the [`DIAGNOSTICS_MAX`] kept.
    pub fn omitted_count(&self) -> usize {
        self.omitted_count
    }

    /// How many problems were found in all.
    pub fn total_count(&self) -> usize {
        self.items.len() + self.omitted_count
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.items.iter().enumerate() {
            if index > 0 {
                writeln!(formatter)?;
            }
            write!(formatter, "{diagnostic}")?;
        }
        if self.omitted_count > 0 {
            write!(
                formatter,
                "\n{}: {} more problems not shown (at most {} are listed)",
                self.source_name, self.omitted_count, DIAGNOSTICS_MAX
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Collects diagnostics for one source while it is checked, keeping the earliest
/// [`DIAGNOSTICS_MAX`] by position with bounded memory.
#[derive(Debug)]
pub(crate) struct DiagnosticsCollector {
    source_name: String,
    items: Vec<Diagnostic>,
    /// The order in which each kept item was reported, so that items at the same position keep
    /// the order in which the checks found them.
    sequence_numbers: Vec<usize>,
    reported_count: usize,
}

impl DiagnosticsCollector {
    pub(crate) fn new(source_name: &str) -> Self {
        Self {
            source_name: source_name.to_owned(),
            items: Vec::new(),
            sequence_numbers: Vec::new(),
            reported_count: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.reported_count == 0
    }

    /// Records a problem. Once twice the limit is buffered, the buffer is sorted and cut back
    /// to the limit, which keeps memory bounded while still keeping the earliest problems.
    pub(crate) fn report(
        &mut self,
        location: Option<Location>,
        field_path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.items.push(Diagnostic {
            source_name: self.source_name.clone(),
            location,
            field_path: field_path.into(),
            message: message.into(),
        });
        self.sequence_numbers.push(self.reported_count);
        self.reported_count += 1;
        if self.items.len() >= 2 * DIAGNOSTICS_MAX {
            self.sort_and_truncate();
        }
    }

    fn sort_and_truncate(&mut self) {
        let mut paired: Vec<(usize, Diagnostic)> = self
            .sequence_numbers
            .drain(..)
            .zip(self.items.drain(..))
            .collect();
        paired.sort_by(|(sequence_a, a), (sequence_b, b)| {
            (a.location, sequence_a).cmp(&(b.location, sequence_b))
        });
        paired.truncate(DIAGNOSTICS_MAX);
        for (sequence, item) in paired {
            self.sequence_numbers.push(sequence);
            self.items.push(item);
        }
    }

    pub(crate) fn finish(mut self) -> Diagnostics {
        self.sort_and_truncate();
        let omitted_count = self.reported_count - self.items.len();
        Diagnostics {
            source_name: self.source_name,
            items: self.items,
            omitted_count,
        }
    }
}

/// Converts byte offsets in a text into 1-based lines and character columns.
#[derive(Debug)]
pub(crate) struct SourceMap<'a> {
    text: &'a str,
    /// Byte offset at which each line starts; the first entry is 0.
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, byte)| *byte == b'\n')
                .map(|(offset, _)| offset + 1),
        );
        Self { text, line_starts }
    }

    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// The location of a byte offset. Offsets past the end map to the end of the text, and
    /// offsets inside a multi-byte character map to that character.
    pub(crate) fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line_index = match self.line_starts.binary_search(&offset) {
            Ok(index) => index,
            Err(index) => index - 1,
        };
        let line_start = self.line_starts[line_index];
        let column_chars = self
            .text
            .get(line_start..)
            .unwrap_or("")
            .char_indices()
            .take_while(|(relative, _)| line_start + relative < offset)
            .count();
        Location {
            line: line_index + 1,
            column: column_chars + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_map_gives_one_based_lines_and_character_columns() {
        let text = "ab\ncé d\n\nx";
        let map = SourceMap::new(text);
        let cases = [
            (0, 1, 1),
            (1, 1, 2),
            (2, 1, 3),
            (3, 2, 1),
            // 'é' is two bytes; the space after it is the third character of line 2.
            (6, 2, 3),
            (9, 3, 1),
            (10, 4, 1),
            (11, 4, 2),
            (1000, 4, 2),
        ];
        for (offset, line, column) in cases {
            assert_eq!(
                map.location(offset),
                Location { line, column },
                "offset {offset}"
            );
        }
    }

    #[test]
    fn collector_keeps_the_earliest_problems_and_counts_the_rest() {
        let mut collector = DiagnosticsCollector::new("many.toml");
        let total = 5 * DIAGNOSTICS_MAX + 3;
        for index in (0..total).rev() {
            let location = Location {
                line: index + 1,
                column: 1,
            };
            collector.report(Some(location), "field", format!("problem {index}"));
        }
        let diagnostics = collector.finish();
        assert_eq!(diagnostics.len(), DIAGNOSTICS_MAX);
        assert_eq!(diagnostics.omitted_count(), total - DIAGNOSTICS_MAX);
        assert_eq!(diagnostics.total_count(), total);
        let lines: Vec<usize> = diagnostics
            .iter()
            .filter_map(|diagnostic| diagnostic.location.map(|location| location.line))
            .collect();
        assert_eq!(lines, (1..=DIAGNOSTICS_MAX).collect::<Vec<_>>());
        assert!(
            diagnostics
                .to_string()
                .ends_with("more problems not shown (at most 100 are listed)")
        );
    }

    #[test]
    fn diagnostics_display_file_line_column_field_and_message() {
        let mut collector = DiagnosticsCollector::new("bad.toml");
        collector.report(
            Some(Location {
                line: 14,
                column: 11,
            }),
            "regions[1].nodes[2].address",
            "\"127.0.0.1:99999\" is not a valid host:port (port out of range)",
        );
        collector.report(None, "file", "cannot read: denied");
        let text = collector.finish().to_string();
        assert_eq!(
            text,
            "bad.toml: file: cannot read: denied\n\
             bad.toml:14:11: regions[1].nodes[2].address: \"127.0.0.1:99999\" is not a valid host:port (port out of range)"
        );
    }
}
