//! What a server's gRPC methods answered: calls by method and gRPC status code, and how long
//! each unary method took to answer. [`crate::access::Guarded`] records every call, refused at
//! the door or answered by the service, so one place counts for every service of a node; the
//! metrics endpoint reads it.
//!
//! Methods are counted under their path when it is one of DSSS's ([`KNOWN_METHODS`]), and
//! under `other` otherwise, so that a caller that invents paths cannot grow the table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tonic::codegen::http;

use crate::latency::{LatencyCounts, LatencyHistogram};

/// The gRPC methods DSSS serves, by path. Calls to any other path count under `other`.
pub const KNOWN_METHODS: [&str; 27] = [
    "/dsss.v1.RegionClient/OpenSession",
    "/dsss.v1.RegionClient/CloseSession",
    "/dsss.v1.RegionClient/Propose",
    "/dsss.v1.RegionClient/ProposeBatch",
    "/dsss.v1.RegionClient/Subscribe",
    "/dsss.v1.RegionClient/FetchCheckpoint",
    "/dsss.v1.RegionClient/UploadCheckpoint",
    "/dsss.v1.RegionClient/Sync",
    "/dsss.v1.RegionClient/Status",
    "/dsss.v1.RegionPeer/Deliver",
    "/dsss.v1.RegionPeer/DeliverStream",
    "/dsss.v1.RegionPeer/ReadLogRange",
    "/dsss.v1.RegionEpochs/Deliver",
    "/dsss.v1.RegionEpochs/ReadEpochs",
    "/dsss.v1.RegionEpochs/ReadCheckpoint",
    "/dsss.v1.RegionEpochs/Acknowledge",
    "/dsss.v1.RegionAdmin/AddPeer",
    "/dsss.v1.RegionAdmin/ChangeMembership",
    "/dsss.v1.RegionAdmin/Members",
    "/dsss.v1.RegionAdmin/ClearAlarm",
    "/dsss.v1.Coordinator/SubmitBatch",
    "/dsss.v1.Coordinator/ReadSealedEpoch",
    "/dsss.v1.Coordinator/Status",
    "/dsss.v1.CoordinatorPeer/Deliver",
    "/dsss.v1.CoordinatorPeer/DeliverStream",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

/// The name calls to unknown paths count under.
pub const OTHER_METHOD: &str = "other";

/// gRPC status codes, 0 (`OK`) to 16 (`UNAUTHENTICATED`).
const CODES: usize = 17;

/// The names of the gRPC status codes, as the metrics label them.
pub const CODE_NAMES: [&str; CODES] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// One method's counts.
#[derive(Debug, Default)]
struct MethodCounts {
    by_code: [AtomicU64; CODES],
    latency: LatencyHistogram,
}

/// Calls by method and code, and answer latency by method, since the server started.
#[derive(Debug)]
pub struct CallMetrics {
    /// One entry per [`KNOWN_METHODS`] path, then `other`.
    methods: Vec<MethodCounts>,
}

impl PartialEq for CallMetrics {
    /// Counts are not part of what a server was configured with: any two are alike.
    fn eq(&self, _other: &CallMetrics) -> bool {
        true
    }
}

impl Eq for CallMetrics {}

impl Default for CallMetrics {
    fn default() -> Self {
        CallMetrics {
            methods: (0..=KNOWN_METHODS.len())
                .map(|_| MethodCounts::default())
                .collect(),
        }
    }
}

/// One method's counts as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodCalls {
    /// The method's path, or [`OTHER_METHOD`].
    pub method: &'static str,
    /// Calls answered with each code that was seen, in code order, as (code name, count).
    pub by_code: Vec<(&'static str, u64)>,
    /// How long the answers took (unary calls: until the whole answer; a stream of answers:
    /// until it opened; a stream of requests, whose answer follows its end: until it ended).
    pub latency: LatencyCounts,
}

impl CallMetrics {
    /// Counts a call to `path` answered with gRPC `code` after `elapsed`. A code outside
    /// 0..=16 counts as `UNKNOWN`.
    pub fn record(&self, path: &str, code: i32, elapsed: Duration) {
        let method = &self.methods[method_index(path)];
        let code = usize::try_from(code)
            .ok()
            .filter(|&code| code < CODES)
            .unwrap_or(2);
        method.by_code[code].fetch_add(1, Ordering::Relaxed);
        method.latency.observe(elapsed);
    }

    /// Every method that was called at least once, in [`KNOWN_METHODS`] order, `other` last.
    pub fn read(&self) -> Vec<MethodCalls> {
        self.methods
            .iter()
            .enumerate()
            .filter_map(|(index, counts)| {
                let by_code: Vec<(&'static str, u64)> = counts
                    .by_code
                    .iter()
                    .enumerate()
                    .map(|(code, count)| (CODE_NAMES[code], count.load(Ordering::Relaxed)))
                    .filter(|&(_, count)| count > 0)
                    .collect();
                (!by_code.is_empty()).then(|| MethodCalls {
                    method: KNOWN_METHODS.get(index).copied().unwrap_or(OTHER_METHOD),
                    by_code,
                    latency: counts.latency.counts(),
                })
            })
            .collect()
    }
}

fn method_index(path: &str) -> usize {
    KNOWN_METHODS
        .iter()
        .position(|&known| known == path)
        .unwrap_or(KNOWN_METHODS.len())
}

/// The gRPC status code of a response whose headers are `headers`: the `grpc-status` header
/// of an answer that is only a status (every refusal and every error of a unary method), or
/// 0 when the headers carry none (the status then comes in the trailers after the messages,
/// which for DSSS's unary methods means success).
/// A `grpc-status` that is not a number counts as `UNKNOWN` (2).
pub fn code_of_headers(headers: &http::HeaderMap) -> i32 {
    match headers.get("grpc-status") {
        None => 0,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_count_by_method_and_code_and_unknown_paths_share_one_row() {
        let metrics = CallMetrics::default();
        metrics.record("/dsss.v1.RegionClient/Propose", 0, Duration::from_millis(2));
        metrics.record("/dsss.v1.RegionClient/Propose", 8, Duration::from_millis(1));
        for invented in 0..1_000 {
            metrics.record(&format!("/evil/{invented}"), 12, Duration::ZERO);
        }
        metrics.record("/evil/x", 99, Duration::ZERO);
        let read = metrics.read();
        assert_eq!(read.len(), 2, "{read:?}");
        assert_eq!(read[0].method, "/dsss.v1.RegionClient/Propose");
        assert_eq!(read[0].by_code, vec![("OK", 1), ("RESOURCE_EXHAUSTED", 1)]);
        assert_eq!(read[0].latency.count, 2);
        assert_eq!(read[1].method, OTHER_METHOD);
        assert_eq!(
            read[1].by_code,
            vec![("UNKNOWN", 1), ("UNIMPLEMENTED", 1_000)]
        );
    }

    #[test]
    fn a_status_only_answer_names_its_code_and_others_are_ok() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(code_of_headers(&headers), 0);
        headers.insert("grpc-status", http::HeaderValue::from_static("7"));
        assert_eq!(code_of_headers(&headers), 7);
        headers.insert("grpc-status", http::HeaderValue::from_static("x"));
        assert_eq!(code_of_headers(&headers), 2);
    }
}
