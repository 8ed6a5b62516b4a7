//! The exported history of a run (`dsss sim run --history FILE`): every operation of every
//! instance as one JSON object per line, for checkers outside DSSS (docs/simulator.md,
//! "Exported histories").

use serde::Serialize;

use crate::workloads::session::{SessionHistories, SessionOperation};

/// One line of an exported history.
#[derive(Serialize)]
struct HistoryLine<'a> {
    /// The instance (a process, in a checker's terms).
    process: u64,
    region: &'a str,
    object: &'a str,
    /// `write`, `read` or `sync` (a barrier that gave up, with no read after it).
    op: &'static str,
    /// A write's argument, or the value a read returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<u64>,
    /// True when the operation completed; false for a write whose effect is unknown (it
    /// may or may not have taken effect) and a barrier that gave up.
    ok: bool,
    /// What a completed write returned: the value it replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    replaced: Option<u64>,
    /// For reads: whether a `sync()` barrier came first (linearizable).
    #[serde(skip_serializing_if = "Option::is_none")]
    synced: Option<bool>,
    /// Simulated microseconds since the run began.
    invoke_us: u64,
    complete_us: u64,
    /// What the system reported, apart from the results: for reads, the log position the
    /// copy stood at. No check of DSSS's relies on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    reported_position: Option<u64>,
}

/// The history as JSON lines, ordered by invocation time (then instance, then program order).
pub fn history_lines(histories: &SessionHistories) -> String {
    let mut lines: Vec<((u64, u64, usize), String)> = Vec::new();
    for (process, history) in &histories.instances {
        for (index, operation) in history.operations.iter().enumerate() {
            // Only what differs by kind; the rest of the line is common.
            let (object, op, value, ok, replaced, synced, reported_position, span) = match operation
            {
                SessionOperation::Write {
                    object,
                    value,
                    replaced,
                    began_at,
                    ended_at,
                } => (
                    object.as_str(),
                    "write",
                    Some(*value),
                    replaced.is_some(),
                    *replaced,
                    None,
                    None,
                    (began_at, ended_at),
                ),
                SessionOperation::Read {
                    object,
                    value,
                    synced,
                    position,
                    began_at,
                    ended_at,
                } => (
                    object.as_str(),
                    "read",
                    Some(*value),
                    true,
                    None,
                    Some(*synced),
                    Some(*position),
                    (began_at, ended_at),
                ),
                SessionOperation::SyncFailed {
                    object,
                    began_at,
                    ended_at,
                } => (
                    object.as_deref().unwrap_or("*"),
                    "sync",
                    None,
                    false,
                    None,
                    None,
                    None,
                    (began_at, ended_at),
                ),
            };
            let line = HistoryLine {
                process: *process,
                region: &history.region,
                object,
                op,
                value,
                ok,
                replaced,
                synced,
                invoke_us: span.0.as_micros(),
                complete_us: span.1.as_micros(),
                reported_position,
            };
            let key = (line.invoke_us, *process, index);
            // Plain data: serializing it cannot fail.
            lines.push((
                key,
                serde_json::to_string(&line).expect("a line serializes"),
            ));
        }
    }
    lines.sort_by_key(|line| line.0);
    let mut out = String::new();
    for (_, line) in lines {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::time::SimTime;
    use crate::workloads::session::InstanceHistory;

    #[test]
    fn every_operation_is_one_line_in_invocation_order() {
        let mut first = InstanceHistory::new("local-a");
        first.push(SessionOperation::Write {
            object: "register/global-0".to_owned(),
            value: 7,
            replaced: Some(0),
            began_at: SimTime::from_micros(20),
            ended_at: SimTime::from_micros(90),
        });
        first.push(SessionOperation::SyncFailed {
            object: Some("register/global-0".to_owned()),
            began_at: SimTime::from_micros(100),
            ended_at: SimTime::from_micros(400),
        });
        let mut second = InstanceHistory::new("local-b");
        second.push(SessionOperation::Read {
            object: "register/global-0".to_owned(),
            value: 0,
            synced: false,
            position: 3,
            began_at: SimTime::from_micros(10),
            ended_at: SimTime::from_micros(10),
        });
        let histories = SessionHistories {
            instances: BTreeMap::from([(1, first), (2, second)]),
            operations_from: SimTime::ZERO,
            operations_until: SimTime::from_micros(1_000),
            global_call_stages: Vec::new(),
            node_busy_shares: BTreeMap::new(),
        };
        let text = history_lines(&histories);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"process":2,"region":"local-b","object":"register/global-0","op":"read","value":0,"ok":true,"synced":false,"invoke_us":10,"complete_us":10,"reported_position":3}"#,
                r#"{"process":1,"region":"local-a","object":"register/global-0","op":"write","value":7,"ok":true,"replaced":0,"invoke_us":20,"complete_us":90}"#,
                r#"{"process":1,"region":"local-a","object":"register/global-0","op":"sync","ok":false,"invoke_us":100,"complete_us":400}"#,
            ]
        );
    }
}
