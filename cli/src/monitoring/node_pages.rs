//! What the monitoring endpoint of `dsss node` shows: the region node's status and, on a node
//! that hosts one, the coordinator replica's, read when Prometheus scrapes, with the calls the
//! node's gRPC services answered and how long its store syncs take.
//!
//! Every sample carries the node's `region` and `node` labels, so that a dashboard can group by
//! region whatever labels the scraper adds. Names follow Prometheus' conventions: `_total` for
//! counters, base units (seconds, bytes), `dsss_` first.

use std::sync::Arc;

use dsss_global_coordinator::driver::{CoordinatorLink, status_reply};
use dsss_region_node::driver::NodeObservations;
use dsss_wire::latency::LatencyHistogram;
use dsss_wire::proto;

use super::endpoint::Pages;
use super::exposition::{Exposition, Kind};

/// The coordinator replica a node hosts, as the endpoint reads it.
#[derive(Clone, Debug)]
pub struct CoordinatorObservations {
    /// Its link, for its status.
    pub link: CoordinatorLink,
    /// How long its synced store writes take.
    pub sync_latency: Arc<LatencyHistogram>,
}

/// The pages of one `dsss node` process.
#[derive(Clone, Debug)]
pub struct NodePages {
    /// The region node.
    pub node: NodeObservations,
    /// The coordinator replica beside it, if any.
    pub coordinator: Option<CoordinatorObservations>,
    /// The node's region and id, for the labels.
    pub region: String,
    /// The node's id.
    pub node_id: u64,
}

impl NodePages {
    /// The node's status and its coordinator replica's, each `None` when it did not answer
    /// (stopping).
    async fn statuses(
        &self,
    ) -> (
        Option<proto::StatusReply>,
        Option<proto::CoordinatorStatusReply>,
    ) {
        let node = self.node.status().await.ok();
        let coordinator = match &self.coordinator {
            Some(coordinator) => coordinator
                .link
                .status()
                .await
                .ok()
                .map(|status| status_reply(&status)),
            None => None,
        };
        (node, coordinator)
    }
}

impl Pages for NodePages {
    async fn metrics(&self) -> String {
        let (node, coordinator) = self.statuses().await;
        let node_id = self.node_id.to_string();
        let labels = Labels {
            region: &self.region,
            node: &node_id,
        };
        let mut page = Exposition::default();
        page.family(
            "dsss_node_up",
            Kind::Gauge,
            "1 while the node's loop answers; 0 when it did not answer this scrape (stopping).",
            &[(
                labels.base().as_slice(),
                if node.is_some() { 1.0 } else { 0.0 },
            )],
        );
        if let Some(status) = &node {
            region_metrics(&mut page, &labels, status);
        }
        let region_sync = self.node.sync_latency().counts();
        let coordinator_sync = self
            .coordinator
            .as_ref()
            .map(|coordinator| coordinator.sync_latency.counts());
        let mut syncs = vec![(labels.with(&[("group", "region")]), &region_sync)];
        if let Some(counts) = &coordinator_sync {
            syncs.push((labels.with(&[("group", "coordinator")]), counts));
        }
        let syncs: Vec<(&[(&str, &str)], _)> = syncs
            .iter()
            .map(|(labels, counts)| (labels.as_slice(), *counts))
            .collect();
        page.histogram(
            "dsss_raft_sync_seconds",
            "How long the node's synced store writes (raft's fsync before it acknowledges) take, \
             by raft group.",
            &syncs,
        );
        call_metrics(&mut page, &labels, &self.node);
        if let Some(status) = &coordinator {
            coordinator_metrics(&mut page, &labels, status);
        }
        page.finish()
    }

    async fn readiness(&self) -> Result<(), String> {
        let status = self.node.status().await.map_err(|status| {
            format!(
                "node {} does not answer: {}",
                self.node_id,
                status.message()
            )
        })?;
        readiness_of(&status)
    }
}

/// Whether a node whose status is `status` is ready for clients: it is a member of its region's
/// group, knows a leader, and has not fenced itself for its clock.
pub fn readiness_of(status: &proto::StatusReply) -> Result<(), String> {
    let node = status.node_id;
    if !status.voters.contains(&node) && !status.learners.contains(&node) {
        return Err(format!(
            "node {node} is not a member of region {}'s group yet (voters {:?})",
            status.region, status.voters
        ));
    }
    if status.leader_node_id == 0 {
        return Err(format!(
            "node {node} knows no leader of region {} (term {})",
            status.region, status.term
        ));
    }
    if let Some(clock) = &status.clock
        && clock.fenced
    {
        return Err(format!(
            "node {node} fenced itself: its clock is {} µs off its region's",
            clock.own_offset_us
        ));
    }
    if status.snapshot_missing_to != 0 {
        return Err(format!(
            "node {node} is catching up: it fetches positions {}..{} before taking a snapshot",
            status.snapshot_missing_from, status.snapshot_missing_to
        ));
    }
    Ok(())
}

/// The labels every sample of a node carries.
struct Labels<'a> {
    region: &'a str,
    node: &'a str,
}

impl<'a> Labels<'a> {
    fn base(&self) -> Vec<(&'a str, &'a str)> {
        vec![("region", self.region), ("node", self.node)]
    }

    fn with(&self, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut labels = self.base();
        labels.extend_from_slice(more);
        labels
    }
}

/// One unlabelled-but-for-the-node value per family.
fn each(page: &mut Exposition, labels: &Labels<'_>, rows: &[(&'static str, Kind, &str, f64)]) {
    let base = labels.base();
    for (name, kind, help, value) in rows {
        page.family(name, *kind, help, &[(base.as_slice(), *value)]);
    }
}

fn seconds_since(now_us: u64, then_us: u64) -> f64 {
    now_us.saturating_sub(then_us) as f64 / 1e6
}

fn region_metrics(page: &mut Exposition, labels: &Labels<'_>, status: &proto::StatusReply) {
    let clock = status.clock.clone().unwrap_or_default();
    let now_us = clock.physical_now_us;
    let leader = status.role == proto::NodeRole::Leader as i32;
    use Kind::{Counter, Gauge};
    each(
        page,
        labels,
        &[
            (
                "dsss_raft_term",
                Gauge,
                "The node's raft term in its region's group.",
                status.term as f64,
            ),
            (
                "dsss_raft_is_leader",
                Gauge,
                "1 while the node leads its region's group.",
                f64::from(u8::from(leader)),
            ),
            (
                "dsss_raft_leader_id",
                Gauge,
                "The leader the node knows of, 0 for none.",
                status.leader_node_id as f64,
            ),
            (
                "dsss_raft_commit_index",
                Gauge,
                "The newest raft index the node knows committed.",
                status.commit_index as f64,
            ),
            (
                "dsss_raft_applied_index",
                Gauge,
                "The newest raft index the node applied.",
                status.applied_index as f64,
            ),
            (
                "dsss_raft_voters",
                Gauge,
                "Voters of the region's group, as the node applied its membership.",
                status.voters.len() as f64,
            ),
            (
                "dsss_raft_learners",
                Gauge,
                "Learners of the region's group.",
                status.learners.len() as f64,
            ),
            (
                "dsss_raft_leader_changes_total",
                Counter,
                "Times the node learned of a new leader since it started.",
                status.leader_changes as f64,
            ),
            (
                "dsss_raft_snapshots_sent_total",
                Counter,
                "Snapshots the node sent to members that fell behind.",
                status.snapshots_sent as f64,
            ),
            (
                "dsss_raft_messages_refused_total",
                Counter,
                "Raft messages the node refused (undecodable, misaddressed or unsafe).",
                status.raft_messages_refused as f64,
            ),
            (
                "dsss_region_applied_position",
                Gauge,
                "The newest region log position the node applied.",
                status.applied_position as f64,
            ),
            (
                "dsss_region_truncated_through_position",
                Gauge,
                "The region's truncation point.",
                status.truncated_through_position as f64,
            ),
            (
                "dsss_region_first_retained_position",
                Gauge,
                "The oldest log position the node holds.",
                status.first_retained_position as f64,
            ),
            (
                "dsss_region_records_applied_total",
                Counter,
                "Records the node applied since it started.",
                status.records_applied as f64,
            ),
            (
                "dsss_region_log_bytes",
                Gauge,
                "Bytes of the region log above its truncation point.",
                status.log_size_bytes as f64,
            ),
            (
                "dsss_region_log_quota_bytes",
                Gauge,
                "The region log quota; at it the region refuses new records.",
                status.log_quota_bytes as f64,
            ),
            (
                "dsss_region_log_cache_bytes",
                Gauge,
                "Bytes of the newest log entries the node holds in memory.",
                status.log_cache_bytes as f64,
            ),
            (
                "dsss_region_checkpointed_objects",
                Gauge,
                "Objects the region keeps a checkpoint of.",
                status.checkpointed_objects as f64,
            ),
            (
                "dsss_region_uncovered_objects",
                Gauge,
                "Objects with records above their newest checkpoint: they hold truncation back.",
                status.objects_lacking_agreed_checkpoint as f64,
            ),
            (
                "dsss_region_divergence_alarms",
                Gauge,
                "Objects whose divergence alarm stands (copies computed different states: a \
                 method that is not deterministic); the region does not truncate meanwhile.",
                status.alarmed_objects as f64,
            ),
            (
                "dsss_region_divergence_alarms_raised_total",
                Counter,
                "Divergence alarms raised since the region began, cleared ones included.",
                status.divergence_alarms as f64,
            ),
            (
                "dsss_region_released_objects",
                Gauge,
                "Objects whose records the region released without a checkpoint.",
                status.released_objects as f64,
            ),
            (
                "dsss_region_releases_total",
                Counter,
                "Releases of an object's records since the region began.",
                status.releases as f64,
            ),
            (
                "dsss_region_checkpoints_adopted_total",
                Counter,
                "Checkpoints of released global objects this node adopted from other regions.",
                status.checkpoints_adopted as f64,
            ),
            (
                "dsss_region_checkpoint_reads_served_total",
                Counter,
                "Reads of global objects' checkpoints this node served to other regions.",
                status.checkpoint_reads_served as f64,
            ),
            (
                "dsss_region_adoptions_given_up_total",
                Counter,
                "Adoptions of a global object's checkpoint this node gave up.",
                status.adoptions_given_up as f64,
            ),
            (
                "dsss_region_epoch_skips_total",
                Counter,
                "Skips of sealed epochs no region's log held any longer.",
                status.epoch_skips as f64,
            ),
            (
                "dsss_region_epochs_skipped_total",
                Counter,
                "Sealed epochs those skips passed over.",
                status.epochs_skipped as f64,
            ),
            (
                "dsss_region_checkpoint_bytes",
                Gauge,
                "What the region's checkpoints take.",
                status.checkpoint_bytes as f64,
            ),
            (
                "dsss_region_checkpoint_bytes_max",
                Gauge,
                "The bound on what the checkpoints take.",
                status.checkpoint_bytes_max as f64,
            ),
            (
                "dsss_region_tracking_bytes",
                Gauge,
                "What the objects tracked for truncation take.",
                status.tracking_bytes as f64,
            ),
            (
                "dsss_region_tracking_bytes_max",
                Gauge,
                "The bound on what tracked objects take.",
                status.tracking_bytes_max as f64,
            ),
            (
                "dsss_region_sessions",
                Gauge,
                "Client sessions that live in the region.",
                status.sessions as f64,
            ),
            (
                "dsss_region_snapshot_entries_fetched_total",
                Counter,
                "Log entries the node fetched from peers before taking snapshots.",
                status.snapshot_entries_fetched as f64,
            ),
            (
                "dsss_client_subscriptions",
                Gauge,
                "Log streams the node serves now.",
                status.subscriptions as f64,
            ),
            (
                "dsss_client_subscribe_buffered_bytes",
                Gauge,
                "Bytes of log-stream pieces the node holds for its subscribers.",
                status.subscribe_buffered_bytes as f64,
            ),
            (
                "dsss_global_member",
                Gauge,
                "1 while the last epoch the region appended lists it as a member of the global tier.",
                f64::from(u8::from(status.global_member)),
            ),
            (
                "dsss_global_incarnation",
                Gauge,
                "The region's incarnation in the global membership.",
                status.global_incarnation as f64,
            ),
            (
                "dsss_global_sealed_epoch",
                Gauge,
                "The newest sealed epoch in the node's log.",
                status.sealed_epoch_number as f64,
            ),
            (
                "dsss_global_watermark_lag_seconds",
                Gauge,
                "How far the watermark of the newest epoch the node appended lies behind its clock.",
                if status.watermark_physical_us == 0 {
                    0.0
                } else {
                    seconds_since(now_us, status.watermark_physical_us)
                },
            ),
            (
                "dsss_global_unsealed_records",
                Gauge,
                "Global records of the region not sealed yet.",
                status.unsealed_records as f64,
            ),
            (
                "dsss_global_outgoing_batches",
                Gauge,
                "Batches of the region waiting for the coordinator.",
                status.outgoing_batches as f64,
            ),
            (
                "dsss_global_epochs_missed",
                Gauge,
                "1 while the region lacks epochs the coordinator released and reads them from another region (global calls are refused meanwhile).",
                f64::from(u8::from(status.epochs_missed_to != 0)),
            ),
            (
                "dsss_global_epoch_parts_caught_up_total",
                Counter,
                "Epoch parts read from other regions' logs.",
                status.epoch_parts_caught_up as f64,
            ),
            (
                "dsss_clock_fenced",
                Gauge,
                "1 while the node fenced itself because its clock is beyond the bound from its region's.",
                f64::from(u8::from(clock.fenced)),
            ),
            (
                "dsss_clock_fences_total",
                Counter,
                "Times the node fenced itself.",
                clock.fences as f64,
            ),
            (
                "dsss_clock_rejected_timestamps_total",
                Counter,
                "Timestamps the node refused for being beyond the skew bound.",
                clock.rejected_timestamps as f64,
            ),
            (
                "dsss_clock_max_skew_seconds",
                Gauge,
                "The skew bound.",
                clock.max_skew_us as f64 / 1e6,
            ),
        ],
    );
    let peers: Vec<(String, f64)> = clock
        .peers
        .iter()
        .map(|peer| (peer.node_id.to_string(), peer.offset_us as f64 / 1e6))
        .collect();
    let peer_labels: Vec<Vec<(&str, &str)>> = peers
        .iter()
        .map(|(peer, _)| labels.with(&[("peer", peer.as_str())]))
        .collect();
    let samples: Vec<(&[(&str, &str)], f64)> = peer_labels
        .iter()
        .zip(&peers)
        .map(|(labels, (_, offset))| (labels.as_slice(), *offset))
        .collect();
    page.family(
        "dsss_clock_peer_offset_seconds",
        Gauge,
        "Each peer's clock minus the node's, as last measured (peers heard from in the last 10 s).",
        &samples,
    );
}

fn call_metrics(page: &mut Exposition, labels: &Labels<'_>, node: &NodeObservations) {
    let calls = node.calls().read();
    let mut counted: Vec<(Vec<(&str, &str)>, f64)> = Vec::new();
    for method in &calls {
        for (code, count) in &method.by_code {
            counted.push((
                labels.with(&[("method", method.method), ("code", code)]),
                *count as f64,
            ));
        }
    }
    let samples: Vec<(&[(&str, &str)], f64)> = counted
        .iter()
        .map(|(labels, count)| (labels.as_slice(), *count))
        .collect();
    page.family(
        "dsss_grpc_calls_total",
        Kind::Counter,
        "gRPC calls the node answered, by method and status code (refusals at the door included: \
         PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAUTHENTICATED).",
        &samples,
    );
    let timed: Vec<Vec<(&str, &str)>> = calls
        .iter()
        .map(|method| labels.with(&[("method", method.method)]))
        .collect();
    let histograms: Vec<(&[(&str, &str)], _)> = timed
        .iter()
        .zip(&calls)
        .map(|(labels, method)| (labels.as_slice(), &method.latency))
        .collect();
    page.histogram(
        "dsss_grpc_call_seconds",
        "How long the node took to answer gRPC calls, by method (for Propose: until the record \
         committed; a stream of answers counts when it opens, a stream of requests when it ends).",
        &histograms,
    );
}

fn coordinator_metrics(
    page: &mut Exposition,
    labels: &Labels<'_>,
    status: &proto::CoordinatorStatusReply,
) {
    use Kind::{Counter, Gauge};
    each(
        page,
        labels,
        &[
            (
                "dsss_coordinator_is_leader",
                Gauge,
                "1 while this replica leads the coordinator's group.",
                f64::from(u8::from(status.leader)),
            ),
            (
                "dsss_coordinator_leader_id",
                Gauge,
                "The coordinator leader this replica knows of, 0 for none.",
                status.leader_node_id as f64,
            ),
            (
                "dsss_coordinator_term",
                Gauge,
                "The replica's raft term.",
                status.term as f64,
            ),
            (
                "dsss_coordinator_leader_changes_total",
                Counter,
                "Times the replica learned of a new coordinator leader.",
                status.leader_changes as f64,
            ),
            (
                "dsss_coordinator_newest_epoch",
                Gauge,
                "The newest sealed epoch.",
                status.newest_epoch as f64,
            ),
            (
                "dsss_coordinator_epochs_sealed_total",
                Counter,
                "Epochs this replica's state machine sealed since it started.",
                status.epochs_sealed as f64,
            ),
            (
                "dsss_coordinator_watermark_lag_seconds",
                Gauge,
                "How far the newest epoch's watermark lies behind the replica's clock.",
                if status.watermark_physical_us == 0 {
                    0.0
                } else {
                    seconds_since(status.now_us, status.watermark_physical_us)
                },
            ),
            (
                "dsss_coordinator_retained_epochs",
                Gauge,
                "Sealed epochs retained for regions that lack them.",
                status.retained_epochs as f64,
            ),
            (
                "dsss_coordinator_retained_bytes",
                Gauge,
                "Their bytes.",
                status.retained_bytes as f64,
            ),
            (
                "dsss_coordinator_pending_records",
                Gauge,
                "Global records waiting for the watermark.",
                status.pending_records as f64,
            ),
            (
                "dsss_coordinator_regions_removed_total",
                Counter,
                "Regions taken out of the membership after suspicion.",
                status.regions_removed as f64,
            ),
            (
                "dsss_coordinator_regions_readmitted_total",
                Counter,
                "Regions readmitted.",
                status.regions_readmitted as f64,
            ),
            (
                "dsss_coordinator_readmissions_refused_total",
                Counter,
                "Readmissions refused because the region missed released epochs.",
                status.readmissions_refused as f64,
            ),
            (
                "dsss_coordinator_batches_overloaded_total",
                Counter,
                "Region batches refused as overloaded.",
                status.batches_overloaded as f64,
            ),
            (
                "dsss_coordinator_refused_for_skew_total",
                Counter,
                "Messages refused because their sender's clock was beyond the skew bound.",
                status.refused_for_skew as f64,
            ),
            (
                "dsss_coordinator_clock_fences_total",
                Counter,
                "Times the replica fenced itself for its clock.",
                status.clock_fences as f64,
            ),
        ],
    );
    let regions: Vec<Vec<(&str, &str)>> = status
        .regions
        .iter()
        .map(|region| labels.with(&[("member_region", region.region.as_str())]))
        .collect();
    let per_region = |value: &dyn Fn(&proto::CoordinatorRegionStatus) -> Option<f64>| {
        regions
            .iter()
            .zip(&status.regions)
            .filter_map(|(labels, region)| value(region).map(|value| (labels.as_slice(), value)))
            .collect::<Vec<(&[(&str, &str)], f64)>>()
    };
    page.family(
        "dsss_coordinator_region_member",
        Gauge,
        "1 while the region counts for the watermark.",
        &per_region(&|region| Some(f64::from(u8::from(region.member)))),
    );
    page.family(
        "dsss_coordinator_region_closed_lag_seconds",
        Gauge,
        "How far each region's closed timestamp lies behind the replica's clock: how long the \
         region's global records may wait for it.",
        &per_region(&|region| {
            (region.closed_physical_us != 0)
                .then(|| seconds_since(status.now_us, region.closed_physical_us))
        }),
    );
    page.family(
        "dsss_coordinator_region_acknowledged_epoch",
        Gauge,
        "The newest epoch each region acknowledged.",
        &per_region(&|region| Some(region.acknowledged_epoch as f64)),
    );
    page.family(
        "dsss_coordinator_region_silent_seconds",
        Gauge,
        "On the leader: how long since each region's closed timestamp last moved.",
        &per_region(&|region| {
            region
                .has_leader_view
                .then(|| seconds_since(status.now_us, region.closed_advanced_at_us))
        }),
    );
    page.family(
        "dsss_coordinator_region_suspected_seconds",
        Gauge,
        "On the leader: how long ago it proposed to remove each suspected region (absent when not \
         suspected).",
        &per_region(&|region| {
            (region.has_leader_view && region.suspected_at_us != 0)
                .then(|| seconds_since(status.now_us, region.suspected_at_us))
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(voters: Vec<u64>) -> proto::StatusReply {
        proto::StatusReply {
            node_id: 12,
            region: "a".to_owned(),
            voters,
            leader_node_id: 11,
            term: 3,
            ..proto::StatusReply::default()
        }
    }

    #[test]
    fn a_node_is_ready_only_as_a_member_that_knows_a_leader_with_a_sane_clock() {
        assert_eq!(readiness_of(&member(vec![11, 12, 13])), Ok(()));
        let outsider = readiness_of(&member(vec![11, 13])).unwrap_err();
        assert!(outsider.contains("not a member"), "{outsider}");
        let mut leaderless = member(vec![11, 12, 13]);
        leaderless.leader_node_id = 0;
        let reason = readiness_of(&leaderless).unwrap_err();
        assert!(reason.contains("knows no leader of region a"), "{reason}");
        let mut fenced = member(vec![11, 12, 13]);
        fenced.clock = Some(proto::ClockHealth {
            fenced: true,
            own_offset_us: 900_000,
            ..proto::ClockHealth::default()
        });
        let reason = readiness_of(&fenced).unwrap_err();
        assert!(reason.contains("fenced itself"), "{reason}");
        let mut catching_up = member(vec![11, 12, 13]);
        catching_up.snapshot_missing_from = 5;
        catching_up.snapshot_missing_to = 90;
        let reason = readiness_of(&catching_up).unwrap_err();
        assert!(reason.contains("5..90"), "{reason}");
    }
}
