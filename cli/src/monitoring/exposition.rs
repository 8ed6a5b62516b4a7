//! The Prometheus text exposition format (version 0.0.4), written from values read at scrape
//! time.
//!
//! Why not a metrics registry crate: every value a node exports already lives in its status
//! (counters the sans-IO cores keep, positions, sizes) or in the lock-free histograms the
//! drivers fill. A registry would hold a second copy of each, to be kept in step; reading the
//! status when Prometheus asks and writing it out is both simpler and never stale. What the
//! format asks of a writer is small: a `# HELP` and a `# TYPE` line once per family, label
//! values escaped, histogram buckets cumulative with a `+Inf` bucket equal to `_count`. The
//! tests below check those rules, and the multi-process test scrapes a real node.

use std::fmt::Write;

use dsss_wire::latency::{LATENCY_BUCKET_BOUNDS_US, LatencyCounts};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What kind of value a family holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows while the process runs.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A page of metrics being written. Each family is written whole by one call, so its lines stay
/// together as the format requires.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
    /// Families written, so that one name never appears twice.
    families: Vec<&'static str>,
}

impl Exposition {
    /// A family of labelled values: each sample is its labels (name, value) and its value.
    pub fn family(
        &mut self,
        name: &'static str,
        kind: Kind,
        help: &str,
        samples: &[(&[(&str, &str)], f64)],
    ) {
        debug_assert!(kind != Kind::Histogram, "histograms go through `histogram`");
        self.header(name, kind, help);
        for (labels, value) in samples {
            self.sample(name, "", labels, None, *value);
        }
    }

    /// A histogram family of latencies in seconds, one histogram per label set.
    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &str,
        histograms: &[(&[(&str, &str)], &LatencyCounts)],
    ) {
        self.header(name, Kind::Histogram, help);
        for (labels, counts) in histograms {
            for (bound_us, cumulative) in LATENCY_BUCKET_BOUNDS_US.iter().zip(&counts.cumulative) {
                let bound = format_value(*bound_us as f64 / 1e6);
                self.sample(name, "_bucket", labels, Some(&bound), *cumulative as f64);
            }
            self.sample(name, "_bucket", labels, Some("+Inf"), counts.count as f64);
            self.sample(name, "_sum", labels, None, counts.sum_us as f64 / 1e6);
            self.sample(name, "_count", labels, None, counts.count as f64);
        }
    }

    /// The page.
    pub fn finish(self) -> String {
        self.text
    }

    fn header(&mut self, name: &'static str, kind: Kind, help: &str) {
        debug_assert!(
            !self.families.contains(&name),
            "the family {name} is written twice"
        );
        self.families.push(name);
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.name());
    }

    fn sample(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &[(&str, &str)],
        le: Option<&str>,
        value: f64,
    ) {
        self.text.push_str(name);
        self.text.push_str(suffix);
        let mut pairs: Vec<(&str, &str)> = labels.to_vec();
        if let Some(le) = le {
            pairs.push(("le", le));
        }
        if !pairs.is_empty() {
            self.text.push('{');
            for (index, (label, value)) in pairs.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label_value(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", format_value(value));
    }
}

/// A label value as the format wants it: backslash, double quote and line feed escaped.
fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// A sample value: integers without a fraction, the rest as Rust prints them (which the format
/// reads), and the format's spellings of the non-finite values.
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_and_type_once_and_label_values_are_escaped() {
        let mut page = Exposition::default();
        page.family(
            "dsss_up",
            Kind::Gauge,
            "Whether the node runs.",
            &[(&[], 1.0)],
        );
        page.family(
            "dsss_calls_total",
            Kind::Counter,
            "Calls by method and code.",
            &[
                (&[("method", "/a\"b\\c\nd"), ("code", "OK")], 3.0),
                (&[("method", "/x"), ("code", "UNAVAILABLE")], 0.5),
            ],
        );
        let text = page.finish();
        assert_eq!(
            text,
            "# HELP dsss_up Whether the node runs.\n\
             # TYPE dsss_up gauge\n\
             dsss_up 1\n\
             # HELP dsss_calls_total Calls by method and code.\n\
             # TYPE dsss_calls_total counter\n\
             dsss_calls_total{method=\"/a\\\"b\\\\c\\nd\",code=\"OK\"} 3\n\
             dsss_calls_total{method=\"/x\",code=\"UNAVAILABLE\"} 0.5\n"
        );
    }

    #[test]
    fn a_histogram_has_cumulative_buckets_an_inf_bucket_equal_to_its_count_and_seconds() {
        let histogram = dsss_wire::latency::LatencyHistogram::default();
        histogram.observe(std::time::Duration::from_micros(80));
        histogram.observe(std::time::Duration::from_millis(30));
        histogram.observe(std::time::Duration::from_secs(20));
        let counts = histogram.counts();
        let mut page = Exposition::default();
        page.histogram(
            "dsss_sync_seconds",
            "Sync latency.",
            &[(&[("group", "region")], &counts)],
        );
        let text = page.finish();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "# TYPE dsss_sync_seconds histogram");
        assert_eq!(
            lines[2],
            "dsss_sync_seconds_bucket{group=\"region\",le=\"0.00005\"} 0"
        );
        assert_eq!(
            lines[3],
            "dsss_sync_seconds_bucket{group=\"region\",le=\"0.0001\"} 1"
        );
        assert!(text.contains("dsss_sync_seconds_bucket{group=\"region\",le=\"0.05\"} 2\n"));
        assert!(text.contains("dsss_sync_seconds_bucket{group=\"region\",le=\"10\"} 2\n"));
        assert!(text.contains("dsss_sync_seconds_bucket{group=\"region\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("dsss_sync_seconds_sum{group=\"region\"} 20.03008\n"));
        assert!(text.contains("dsss_sync_seconds_count{group=\"region\"} 3\n"));
        // Buckets never fall.
        let buckets: Vec<f64> = text
            .lines()
            .filter(|line| line.starts_with("dsss_sync_seconds_bucket"))
            .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(
            buckets.windows(2).all(|pair| pair[0] <= pair[1]),
            "{buckets:?}"
        );
    }

    #[test]
    fn values_print_as_the_format_reads_them() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(-2.0), "-2");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(1.8e19), "18000000000000000000");
    }
}
