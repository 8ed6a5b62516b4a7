//! The exported history of a run (`dsss sim run --history FILE`): every operation of every
//! instance as one JSON object per line, for checkers outside DSSS (docs/simulator.md,
//! "Exported histories").

use serde::Serialize;

use crate::time::SimTime;
use crate::workloads::session::{SessionHistories, SessionOperation};

/// One line of an exported history.
#[derive(Serialize)]
struct HistoryLine<'a> {
    /// The instance (a process, in a checker's terms).
    process: u64,
    region: &'a str,
    object: &'a str,
    /// `write`, `read` or `sync` (a barrier that gave up, with no read after it) on a
    /// register; `call` or `read` on an example object.
    op: &'static str,
    /// A register write's argument, or the value a register read returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<u64>,
    /// An example object's call: the method's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    /// The call's arguments as the method's codec encoded them, in hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<String>,
    /// A completed call's encoded result, in hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<String>,
    /// The error a completed call raised (the object refused it, its state unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// An example object's read: what it asked and what it returned, described.
    #[serde(skip_serializing_if = "Option::is_none")]
    read: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    returned: Option<&'a str>,
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
    /// What the system reported, apart from the results: for register reads, the log
    /// position the copy stood at. No check of DSSS's relies on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    reported_position: Option<u64>,
    /// For example-object reads: how many records of the object the copy had applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    reported_records_applied: Option<u64>,
}

impl<'a> HistoryLine<'a> {
    /// A line with the fields every operation has, the others empty.
    fn new(
        process: u64,
        region: &'a str,
        object: &'a str,
        op: &'static str,
        ok: bool,
        span: (&SimTime, &SimTime),
    ) -> HistoryLine<'a> {
        HistoryLine {
            process,
            region,
            object,
            op,
            value: None,
            method: None,
            arguments: None,
            result: None,
            error: None,
            read: None,
            returned: None,
            ok,
            replaced: None,
            synced: None,
            invoke_us: span.0.as_micros(),
            complete_us: span.1.as_micros(),
            reported_position: None,
            reported_records_applied: None,
        }
    }
}

/// `bytes` in lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The history as JSON lines, ordered by invocation time (then instance, then program order).
pub fn history_lines(histories: &SessionHistories) -> String {
    let mut lines: Vec<((u64, u64, usize), String)> = Vec::new();
    for (process, history) in &histories.instances {
        for (index, operation) in history.operations.iter().enumerate() {
            let region = history.region.as_str();
            let line = match operation {
                SessionOperation::Write {
                    object,
                    value,
                    replaced,
                    began_at,
                    ended_at,
                } => HistoryLine {
                    value: Some(*value),
                    replaced: *replaced,
                    ..HistoryLine::new(
                        *process,
                        region,
                        object,
                        "write",
                        replaced.is_some(),
                        (began_at, ended_at),
                    )
                },
                SessionOperation::Read {
                    object,
                    value,
                    synced,
                    position,
                    began_at,
                    ended_at,
                } => HistoryLine {
                    value: Some(*value),
                    synced: Some(*synced),
                    reported_position: Some(*position),
                    ..HistoryLine::new(*process, region, object, "read", true, (began_at, ended_at))
                },
                SessionOperation::Call {
                    object,
                    method,
                    arguments,
                    outcome,
                    began_at,
                    ended_at,
                    ..
                } => HistoryLine {
                    method: Some(method),
                    arguments: Some(hex(arguments)),
                    result: outcome
                        .as_ref()
                        .and_then(|outcome| outcome.as_ref().ok())
                        .map(|result| hex(result)),
                    error: outcome
                        .as_ref()
                        .and_then(|outcome| outcome.as_ref().err())
                        .map(String::as_str),
                    ..HistoryLine::new(
                        *process,
                        region,
                        object,
                        "call",
                        outcome.is_some(),
                        (began_at, ended_at),
                    )
                },
                SessionOperation::Query {
                    object,
                    read,
                    value,
                    synced,
                    records_applied,
                    began_at,
                    ended_at,
                } => HistoryLine {
                    read: Some(read),
                    returned: Some(value),
                    synced: Some(*synced),
                    reported_records_applied: Some(*records_applied),
                    ..HistoryLine::new(*process, region, object, "read", true, (began_at, ended_at))
                },
                SessionOperation::SyncFailed {
                    object,
                    began_at,
                    ended_at,
                } => HistoryLine::new(
                    *process,
                    region,
                    object.as_deref().unwrap_or("*"),
                    "sync",
                    false,
                    (began_at, ended_at),
                ),
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
