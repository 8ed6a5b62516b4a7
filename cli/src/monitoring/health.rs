//! The standard gRPC health service (`grpc.health.v1.Health`) on the node's own port, for load
//! balancers and tools that speak gRPC: the overall status (service `""`) and
//! `dsss.v1.RegionClient` are `SERVING` while the node is ready for clients (the same judgement
//! as `/readyz`, [`super::node_pages::readiness_of`]), and on a node that hosts a coordinator
//! replica `dsss.v1.Coordinator` is `SERVING` while the replica knows a leader.

use std::sync::Arc;
use std::time::Duration;

use dsss_wire::access::{AccessPolicy, Guarded};

use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::node_pages::{NodePages, readiness_of};

/// How often the statuses are brought up to date.
pub const HEALTH_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// `routes` with the health service added (guarded like the node's own services: any
/// identity of the cluster may ask), and the reporter that sets its statuses.
pub fn with_health_service(routes: Routes, access: &Arc<AccessPolicy>) -> (Routes, HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let routes = routes.add_service(Guarded::new(service, Arc::clone(access)));
    (routes, reporter)
}

/// Keeps `reporter` in step with the node `pages` describe until the task is dropped.
pub async fn keep_reporting(pages: NodePages, reporter: HealthReporter) {
    let mut interval = tokio::time::interval(HEALTH_REFRESH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let region = match pages.node.status().await {
            Ok(status) if readiness_of(&status).is_ok() => ServingStatus::Serving,
            _ => ServingStatus::NotServing,
        };
        reporter.set_service_status("", region).await;
        reporter
            .set_service_status("dsss.v1.RegionClient", region)
            .await;
        if let Some(coordinator) = &pages.coordinator {
            let serving = match coordinator.link.status().await {
                Ok(status) if status.leader_id.is_some() => ServingStatus::Serving,
                _ => ServingStatus::NotServing,
            };
            reporter
                .set_service_status("dsss.v1.Coordinator", serving)
                .await;
        }
    }
}
