//! raft-rs's own log lines (it logs through `slog`) as `tracing` events (feature `driver`):
//! target `raft`, at the level raft-rs gave, with raft-rs's key-values (the node's `raft_id`
//! among them) in one `raft` field. Without a subscriber that wants them they cost a level
//! check: nothing is formatted.
//!
//! raft-rs says what it decides (`became leader at term 7`, `starting a new election`,
//! `switched to configuration`) at info, and what it does per message at debug and trace, so
//! `DSSS_LOG=info` shows elections and membership changes, and `DSSS_LOG=info,raft=warn` hides
//! them.

use std::fmt::Write as _;

use slog::{Drain, KV, Key, OwnedKVList, Record, Serializer};

/// The drain of every raft group's logger.
pub(crate) struct TracingDrain;

/// The key-values of one record, as `key=value` pairs.
struct FieldsText(String);

impl Serializer for FieldsText {
    fn emit_arguments(&mut self, key: Key, value: &std::fmt::Arguments<'_>) -> slog::Result {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{key}={value}");
        Ok(())
    }
}

fn fields_of(record: &Record<'_>, values: &OwnedKVList) -> String {
    let mut fields = FieldsText(String::new());
    let _ = record.kv().serialize(record, &mut fields);
    let _ = values.serialize(record, &mut fields);
    fields.0
}

/// Emits `record` at `level` when a subscriber wants raft events at that level.
macro_rules! forward {
    ($level:expr, $record:expr, $values:expr) => {
        if tracing::enabled!(target: "raft", $level) {
            let fields = fields_of($record, $values);
            tracing::event!(target: "raft", $level, raft = %fields, "{}", $record.msg());
        }
    };
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                forward!(tracing::Level::ERROR, record, values);
            }
            slog::Level::Warning => forward!(tracing::Level::WARN, record, values),
            slog::Level::Info => forward!(tracing::Level::INFO, record, values),
            slog::Level::Debug => forward!(tracing::Level::DEBUG, record, values),
            slog::Level::Trace => forward!(tracing::Level::TRACE, record, values),
        }
        Ok(())
    }
}

/// The logger a raft group hands raft-rs.
pub(crate) fn logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record as SpanRecord};
    use tracing::{Event, Metadata, Subscriber};

    /// A subscriber that keeps every event's target, level and fields, and wants events at
    /// `max_level` and above.
    struct Collector {
        max_level: tracing::Level,
        events: Arc<Mutex<Vec<String>>>,
    }

    struct Text(String);

    impl Visit for Text {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    impl Subscriber for Collector {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            *metadata.level() <= self.max_level
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &SpanRecord<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut text = Text(format!(
                "{} {}",
                event.metadata().target(),
                event.metadata().level()
            ));
            event.record(&mut text);
            self.events
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(text.0);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn raft_rs_log_lines_become_tracing_events_at_their_level_with_their_key_values() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let collector = Collector {
            max_level: tracing::Level::INFO,
            events: Arc::clone(&events),
        };
        tracing::subscriber::with_default(collector, || {
            let logger = super::logger().new(slog::o!("raft_id" => 7_u64));
            slog::info!(logger, "became leader at term {term}", term = 3; "term" => 3_u64);
            slog::debug!(logger, "sent a heartbeat");
            slog::warn!(logger, "ignored a message"; "from" => 9_u64);
        });
        let events = events.lock().expect("no panic held the lock").clone();
        assert_eq!(
            events.len(),
            2,
            "debug is below the subscriber's level: {events:?}"
        );
        assert!(events[0].starts_with("raft INFO"), "{events:?}");
        assert!(events[0].contains("became leader at term 3"), "{events:?}");
        assert!(events[0].contains("term=3"), "{events:?}");
        assert!(events[0].contains("raft_id=7"), "{events:?}");
        assert!(events[1].starts_with("raft WARN"), "{events:?}");
        assert!(events[1].contains("from=9"), "{events:?}");
    }
}
