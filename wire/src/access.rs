//! Who may call what (feature `grpc`): every request to a DSSS server is admitted by the
//! identity its connection's certificate names before any service sees it.
//!
//! Under mutual TLS ([`crate::tls`]) every connection carries the certificate its caller
//! presented, signed by the cluster's CA. That certificate names exactly one role in a URI
//! subject alternative name:
//! - `dsss://node/<id>`: a node of the topology ([`Identity::Node`]);
//! - `dsss://client/<name>`: an application ([`Identity::Client`]);
//! - `dsss://admin/<name>`: an operator's command ([`Identity::Admin`]).
//!
//! [`Guarded`] wraps each gRPC service and refuses, with `PERMISSION_DENIED` and a message that
//! names the caller and what it lacked, every call whose identity the [`AccessPolicy`] does not
//! admit for that method:
//!
//! | methods | who |
//! | --- | --- |
//! | `RegionClient.Status` | any identity |
//! | every other `RegionClient` method | clients |
//! | `RegionAdmin.*` | admins |
//! | `RegionPeer.*` (raft, catch-up reads) | nodes of this node's region |
//! | `RegionEpochs.Deliver`, `RegionEpochs.Acknowledge` | nodes that host a coordinator replica |
//! | `RegionEpochs.ReadEpochs`, `Coordinator.*` | nodes |
//! | `CoordinatorPeer.*` (the coordinator's raft) | nodes that host a coordinator replica |
//!
//! Admitted calls carry their [`Caller`] in the request's extensions ([`caller_of`]), so that a
//! service can check what a message claims against who sent it: a raft batch's sender must be
//! the calling node, a region's batch must come from a node of that region.
//!
//! A server that runs over plaintext (`--insecure`, which its operator chose and which logs a
//! warning) has no identities to check: every caller is [`Caller::Insecure`] and admitted.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_service::Service;

use crate::tls::{ADMIN_URI_PREFIX, CLIENT_URI_PREFIX, NODE_URI_PREFIX, uri_names};

/// What a caller's certificate says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A node of the topology, by id.
    Node(u64),
    /// An application, by the name its certificate gives it.
    Client(String),
    /// An operator's command, by the name its certificate gives it.
    Admin(String),
}

impl fmt::Display for Identity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Node(node_id) => write!(formatter, "node {node_id}"),
            Identity::Client(name) => write!(formatter, "client {name:?}"),
            Identity::Admin(name) => write!(formatter, "admin {name:?}"),
        }
    }
}

/// Who made an admitted call: what [`Guarded`] leaves in the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The server runs over plaintext: nobody is identified.
    Insecure,
    /// The caller's certificate named this identity.
    Known(Identity),
}

impl Caller {
    /// The node id of a node caller.
    pub fn node_id(&self) -> Option<u64> {
        match self {
            Caller::Known(Identity::Node(node_id)) => Some(*node_id),
            _ => None,
        }
    }
}

impl Caller {
    /// Checks that `claimed`, the sending node a message names, is this caller (see
    /// [`check_claimed_node`]); for streams, whose messages come one by one.
    pub fn check_claimed_node(&self, claimed: u64, what: &str) -> Result<(), Status> {
        match self {
            Caller::Insecure => Ok(()),
            Caller::Known(Identity::Node(node_id)) if *node_id == claimed => Ok(()),
            caller => Err(refuse_claim(format!(
                "{what} claims node {claimed}, but the caller is {caller}"
            ))),
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Insecure => formatter.write_str("an unidentified caller (plaintext)"),
            Caller::Known(identity) => identity.fmt(formatter),
        }
    }
}

/// The caller of an admitted request. A request that did not pass a [`Guarded`] service (a
/// test calling a service directly) counts as [`Caller::Insecure`].
pub fn caller_of<T>(request: &tonic::Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Insecure)
}

/// The topology region of a node caller, left beside its [`Caller`] by [`Guarded`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct CallerRegion(String);

/// Checks that what a message claims as its sending node, `claimed` (a raft batch's
/// `from_node_id`), is the node that called; `what` names the claim in the refusal.
pub fn check_claimed_node<T>(
    request: &tonic::Request<T>,
    claimed: u64,
    what: &str,
) -> Result<(), Status> {
    caller_of(request).check_claimed_node(claimed, what)
}

/// Checks that what a message claims as its region, `claimed` (a batch's `region`), is the
/// region of the node that called; `what` names the claim in the refusal.
pub fn check_claimed_region<T>(
    request: &tonic::Request<T>,
    claimed: &str,
    what: &str,
) -> Result<(), Status> {
    let caller = caller_of(request);
    if caller == Caller::Insecure {
        return Ok(());
    }
    match request.extensions().get::<CallerRegion>() {
        Some(CallerRegion(region)) if region == claimed => Ok(()),
        Some(CallerRegion(region)) => Err(refuse_claim(format!(
            "{what} claims region {claimed}, but the caller is {caller} of region {region}"
        ))),
        None => Err(refuse_claim(format!(
            "{what} claims region {claimed}, but the caller is {caller}, of no region"
        ))),
    }
}

fn refuse_claim(message: String) -> Status {
    tracing::warn!(
        reason = message.as_str(),
        "call refused: a claim does not match its caller"
    );
    Status::permission_denied(message)
}

/// Reads the identity a certificate names: exactly one DSSS role URI, or an error that says
/// what the certificate holds instead.
pub fn identity_of_certificate(der: &[u8]) -> Result<Identity, String> {
    let mut found = Vec::new();
    for rest in uri_names(der, NODE_URI_PREFIX) {
        found.push(
            rest.parse::<u64>()
                .map(Identity::Node)
                .map_err(|_| format!("{NODE_URI_PREFIX}{rest} does not name a node id"))?,
        );
    }
    for (prefix, make) in [
        (
            CLIENT_URI_PREFIX,
            Identity::Client as fn(String) -> Identity,
        ),
        (ADMIN_URI_PREFIX, Identity::Admin),
    ] {
        for rest in uri_names(der, prefix) {
            if rest.is_empty() {
                return Err(format!("{prefix} names nobody"));
            }
            found.push(make(rest.to_owned()));
        }
    }
    match &found[..] {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "the certificate names no DSSS identity (a URI {NODE_URI_PREFIX}<id>, \
             {CLIENT_URI_PREFIX}<name> or {ADMIN_URI_PREFIX}<name>); `dsss certs generate` \
             writes certificates that do"
        )),
        many => Err(format!(
            "the certificate names {} identities ({}); a certificate must name one",
            many.len(),
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Which identities one method admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Any identity the CA vouches for.
    AnyIdentity,
    /// Applications.
    Clients,
    /// Operators' commands.
    Admins,
    /// Any node of the topology.
    Nodes,
    /// Nodes of the server's own region.
    RegionMembers,
    /// Nodes that host a replica of the global coordinator.
    CoordinatorReplicas,
}

impl Rule {
    /// The rule of the gRPC method at `path` (`/dsss.v1.Service/Method`). Methods this
    /// release does not know fall under their service's rule; unknown services admit nobody.
    pub fn of_path(path: &str) -> Option<Rule> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        Some(match (service, method) {
            ("dsss.v1.RegionClient", "Status") => Rule::AnyIdentity,
            ("dsss.v1.RegionClient", _) => Rule::Clients,
            ("dsss.v1.RegionAdmin", _) => Rule::Admins,
            ("dsss.v1.RegionPeer", _) => Rule::RegionMembers,
            ("dsss.v1.RegionEpochs", "ReadEpochs") => Rule::Nodes,
            ("dsss.v1.RegionEpochs", _) => Rule::CoordinatorReplicas,
            ("dsss.v1.Coordinator", _) => Rule::Nodes,
            ("dsss.v1.CoordinatorPeer", _) => Rule::CoordinatorReplicas,
            _ => return None,
        })
    }

    fn wanted(self) -> &'static str {
        match self {
            Rule::AnyIdentity => "any identity of the cluster",
            Rule::Clients => "a client identity (dsss://client/<name>)",
            Rule::Admins => "an admin identity (dsss://admin/<name>)",
            Rule::Nodes => "a node of the topology",
            Rule::RegionMembers => "a node of this region",
            Rule::CoordinatorReplicas => "a node that hosts a coordinator replica",
        }
    }
}

/// What a server knows of the cluster to admit its callers: the topology's nodes and their
/// regions, which nodes host the coordinator, and its own region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    node_regions: BTreeMap<u64, String>,
    coordinator_replicas: BTreeSet<u64>,
    own_region: String,
}

impl AccessPolicy {
    /// The policy of a server in `own_region`, with the topology's `node_regions` (node id,
    /// region id) and the nodes that host `coordinator_replicas`.
    pub fn new(
        own_region: impl Into<String>,
        node_regions: impl IntoIterator<Item = (u64, String)>,
        coordinator_replicas: impl IntoIterator<Item = u64>,
    ) -> AccessPolicy {
        AccessPolicy {
            node_regions: node_regions.into_iter().collect(),
            coordinator_replicas: coordinator_replicas.into_iter().collect(),
            own_region: own_region.into(),
        }
    }

    /// The region of node `node_id` in the topology.
    pub fn region_of(&self, node_id: u64) -> Option<&str> {
        self.node_regions.get(&node_id).map(String::as_str)
    }

    /// Whether `caller` may call the method at `path`; the refusal says who called, what the
    /// method needs and why the caller is not it.
    pub fn admit(&self, path: &str, caller: &Caller) -> Result<(), Status> {
        let Caller::Known(identity) = caller else {
            return Ok(());
        };
        let Some(rule) = Rule::of_path(path) else {
            return Err(Status::permission_denied(format!(
                "{path}: no identity may call an unknown service; the caller is {identity}"
            )));
        };
        let refused = |why: String| {
            Err(Status::permission_denied(format!(
                "{path} needs {}; the caller is {identity}{why}",
                rule.wanted()
            )))
        };
        match (rule, identity) {
            (Rule::AnyIdentity, _)
            | (Rule::Clients, Identity::Client(_))
            | (Rule::Admins, Identity::Admin(_)) => Ok(()),
            (
                Rule::Nodes | Rule::RegionMembers | Rule::CoordinatorReplicas,
                Identity::Node(node_id),
            ) => {
                let Some(region) = self.region_of(*node_id) else {
                    return refused(", which is not in this node's topology".to_owned());
                };
                match rule {
                    Rule::RegionMembers if region != self.own_region => {
                        refused(format!(" of region {region}, not of {}", self.own_region))
                    }
                    Rule::CoordinatorReplicas if !self.coordinator_replicas.contains(node_id) => {
                        refused(", which hosts no coordinator replica".to_owned())
                    }
                    _ => Ok(()),
                }
            }
            _ => refused(String::new()),
        }
    }
}

/// The caller of a request that reached a server, from its connection's certificate; an
/// error when the certificate names no single DSSS identity.
fn caller_of_connection(extensions: &http::Extensions) -> Result<Caller, Status> {
    let Some(connection) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() else {
        return Ok(Caller::Insecure);
    };
    let certificate = connection
        .peer_certs()
        .and_then(|certificates| certificates.first().cloned())
        .ok_or_else(|| {
            Status::unauthenticated("the TLS connection carries no client certificate")
        })?;
    identity_of_certificate(certificate.as_ref())
        .map(Caller::Known)
        .map_err(|problem| {
            Status::permission_denied(format!("the caller's certificate: {problem}"))
        })
}

/// A gRPC service that admits only the callers its [`AccessPolicy`] allows (see the module's
/// table), and leaves the [`Caller`] of every admitted request in its extensions.
#[derive(Clone, Debug)]
pub struct Guarded<S> {
    inner: S,
    policy: Arc<AccessPolicy>,
}

impl<S> Guarded<S> {
    /// `inner`, guarded by `policy`.
    pub fn new(inner: S, policy: Arc<AccessPolicy>) -> Guarded<S> {
        Guarded { inner, policy }
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

type GuardedFuture = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

impl<S, ResponseBody> Service<http::Request<Body>> for Guarded<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResponseBody>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
    ResponseBody: http_body::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    ResponseBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = GuardedFuture;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> GuardedFuture {
        let admitted = caller_of_connection(request.extensions()).and_then(|caller| {
            self.policy
                .admit(request.uri().path(), &caller)
                .map(|()| caller)
        });
        match admitted {
            Ok(caller) => {
                if let Some(region) = caller.node_id().and_then(|id| self.policy.region_of(id)) {
                    request
                        .extensions_mut()
                        .insert(CallerRegion(region.to_owned()));
                }
                request.extensions_mut().insert(caller);
                let response = self.inner.call(request);
                Box::pin(async move { Ok(response.await?.map(Body::new)) })
            }
            Err(status) => {
                tracing::warn!(
                    path = request.uri().path(),
                    reason = status.message(),
                    "call refused"
                );
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AccessPolicy {
        AccessPolicy::new(
            "a",
            [
                (11, "a".to_owned()),
                (12, "a".to_owned()),
                (21, "b".to_owned()),
            ],
            [11, 21],
        )
    }

    fn node(node_id: u64) -> Caller {
        Caller::Known(Identity::Node(node_id))
    }

    #[test]
    fn every_method_admits_only_its_roles() {
        let policy = policy();
        let client = Caller::Known(Identity::Client("app".to_owned()));
        let admin = Caller::Known(Identity::Admin("ops".to_owned()));
        let cases: [(&str, &Caller, bool); 16] = [
            ("/dsss.v1.RegionClient/Propose", &client, true),
            ("/dsss.v1.RegionClient/Propose", &admin, false),
            ("/dsss.v1.RegionClient/Propose", &node(11), false),
            ("/dsss.v1.RegionClient/Status", &node(21), true),
            ("/dsss.v1.RegionAdmin/AddPeer", &admin, true),
            ("/dsss.v1.RegionAdmin/AddPeer", &client, false),
            ("/dsss.v1.RegionAdmin/ChangeMembership", &node(12), false),
            ("/dsss.v1.RegionPeer/Deliver", &node(12), true),
            ("/dsss.v1.RegionPeer/Deliver", &node(21), false),
            ("/dsss.v1.RegionPeer/ReadLogRange", &node(99), false),
            ("/dsss.v1.RegionEpochs/Deliver", &node(21), true),
            ("/dsss.v1.RegionEpochs/Deliver", &node(12), false),
            ("/dsss.v1.RegionEpochs/ReadEpochs", &node(12), true),
            ("/dsss.v1.Coordinator/SubmitBatch", &client, false),
            ("/dsss.v1.CoordinatorPeer/Deliver", &node(12), false),
            ("/other.Service/Call", &node(11), false),
        ];
        for (path, caller, admitted) in cases {
            let outcome = policy.admit(path, caller);
            assert_eq!(outcome.is_ok(), admitted, "{path} by {caller}: {outcome:?}");
            if let Err(status) = outcome {
                assert_eq!(status.code(), tonic::Code::PermissionDenied);
                assert!(status.message().contains(&caller.to_string()), "{status:?}");
            }
        }
        // Plaintext identifies nobody, and its operator chose it.
        assert!(
            policy
                .admit("/dsss.v1.RegionAdmin/AddPeer", &Caller::Insecure)
                .is_ok()
        );
    }
}
