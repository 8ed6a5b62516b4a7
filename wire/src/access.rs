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
//! | `RegionEpochs.ReadEpochs`, `RegionEpochs.ReadCheckpoint`, `Coordinator.SubmitBatch` | nodes |
//! | `Coordinator.ReadSealedEpoch` | nodes and admins |
//! | `CoordinatorPeer.*` (the coordinator's raft) | nodes that host a coordinator replica |
//!
//! Admitted calls carry their [`Caller`] in the request's extensions ([`caller_of`]), so that a
//! service can check what a message claims against who sent it: a raft batch's sender must be
//! the calling node, a region's batch must come from a node of that region.
//!
//! Clients are further bound by the topology's `[[grants]]` when it has any: each names a
//! client, object-name prefixes and rights ([`ClientRight`]: call, read, upload). The client
//! service checks them per object ([`check_grant`]); a client no grant names may do nothing.
//! Without `[[grants]]` every client may do everything a client may.
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
use std::time::Instant;

use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_service::Service;

use crate::call_metrics::{CallMetrics, code_of_headers};
use crate::limits::{ActiveRequest, Charge, ConnectionState, RequestBudgets, ServerLimits};
use crate::tls::{ADMIN_URI_PREFIX, CLIENT_URI_PREFIX, ConnectionInfo, NODE_URI_PREFIX, uri_names};

/// The header that carries a client's bearer token.
pub const AUTHORIZATION_HEADER: &str = "authorization";

/// What precedes the token in [`AUTHORIZATION_HEADER`].
pub const BEARER_PREFIX: &str = "Bearer ";

/// The most bytes a bearer token may hold.
pub const TOKEN_BYTES_MAX: usize = 512;

/// The SHA-256 digest of a bearer token: what a topology's `[[tokens]]` lists, so that the
/// file never holds the secret itself.
pub fn token_digest(token: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).into()
}

/// Checks that `token` can travel in a header: 16 to [`TOKEN_BYTES_MAX`] visible ASCII
/// characters without spaces.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.len() < 16 || token.len() > TOKEN_BYTES_MAX {
        return Err(format!(
            "a bearer token holds 16 to {TOKEN_BYTES_MAX} characters; this one holds {}",
            token.len()
        ));
    }
    if let Some(bad) = token.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "a bearer token holds visible ASCII characters only; this one holds {bad:?}"
        ));
    }
    Ok(())
}

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

/// The id under which the region keeps the session a caller opens (or calls in) as
/// `session_id`. A client's session ids live in a space of their own: the id is derived from
/// the client's identity and the id it chose (SHA-256, truncated, never 0), so a client that
/// reads another's session id in the log (records carry it) and proposes, retries or closes
/// under it only reaches a session of its own, which does not exist. Callers that are not
/// clients (plaintext) keep the id they chose.
pub fn scoped_session_id(caller: &Caller, session_id: u64) -> u64 {
    use sha2::{Digest, Sha256};
    let Caller::Known(Identity::Client(name)) = caller else {
        return session_id;
    };
    let mut hasher = Sha256::new();
    hasher.update(b"dsss session id\0");
    hasher.update((name.len() as u64).to_be_bytes());
    hasher.update(name.as_bytes());
    hasher.update(session_id.to_be_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0_u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes).max(1)
}

/// [`scoped_session_id`] for the caller of `request`.
pub fn scoped_session_id_of<T>(request: &tonic::Request<T>, session_id: u64) -> u64 {
    scoped_session_id(&caller_of(request), session_id)
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
    /// Any node of the topology, or an operator (a read an operator's tools make too).
    NodesOrAdmins,
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
            ("dsss.v1.RegionEpochs", "ReadEpochs" | "ReadCheckpoint") => Rule::Nodes,
            ("dsss.v1.RegionEpochs", _) => Rule::CoordinatorReplicas,
            ("dsss.v1.Coordinator", "ReadSealedEpoch") => Rule::NodesOrAdmins,
            ("dsss.v1.Coordinator", "Status") => Rule::AnyIdentity,
            ("dsss.v1.Coordinator", _) => Rule::Nodes,
            ("dsss.v1.CoordinatorPeer", _) => Rule::CoordinatorReplicas,
            // Load balancers and orchestrators ask whether a node serves.
            ("grpc.health.v1.Health", _) => Rule::AnyIdentity,
            _ => return None,
        })
    }

    fn wanted(self) -> &'static str {
        match self {
            Rule::AnyIdentity => "any identity of the cluster",
            Rule::Clients => "a client identity (dsss://client/<name>)",
            Rule::Admins => "an admin identity (dsss://admin/<name>)",
            Rule::Nodes => "a node of the topology",
            Rule::NodesOrAdmins => "a node of the topology or an admin identity",
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
    /// Each client's grants, when the topology has any; `None`: every client may do
    /// everything a client may.
    client_grants: Option<BTreeMap<String, Arc<ClientGrants>>>,
    /// The bytes of requests in flight and their bounds, shared by every service of the
    /// server (clones of a policy share them).
    budgets: Arc<RequestBudgets>,
    /// The client each bearer token identifies, by the token's SHA-256 digest.
    tokens: BTreeMap<[u8; 32], String>,
    /// Calls by method and answer, shared like the budgets.
    calls: Arc<CallMetrics>,
}

/// What a client may do with the objects: calls, reads (subscriptions, checkpoint fetches,
/// `sync()`), checkpoint uploads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClientRight {
    /// Open and close sessions, propose calls.
    Call,
    /// Subscribe, fetch checkpoints, `sync()`.
    Read,
    /// Upload checkpoints.
    Upload,
}

impl ClientRight {
    /// Every right, in order.
    pub const ALL: [ClientRight; 3] = [ClientRight::Call, ClientRight::Read, ClientRight::Upload];

    /// The right's name in a topology's `[[grants]]` and in refusals.
    pub fn name(self) -> &'static str {
        match self {
            ClientRight::Call => "call",
            ClientRight::Read => "read",
            ClientRight::Upload => "upload",
        }
    }
}

/// One grant: `rights` over the objects whose names start with one of `object_prefixes` (the
/// empty prefix is every object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientGrant {
    /// The object-name prefixes.
    pub object_prefixes: Vec<String>,
    /// The rights.
    pub rights: BTreeSet<ClientRight>,
}

/// What one client may do: the union of its grants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientGrants {
    grants: Vec<ClientGrant>,
}

impl ClientGrants {
    /// The union of `grants`.
    pub fn new(grants: Vec<ClientGrant>) -> ClientGrants {
        ClientGrants { grants }
    }

    /// Whether `right` is granted on `object_id`; with no object (a whole-log subscription),
    /// whether it is granted on every object (the empty prefix).
    pub fn allows(&self, right: ClientRight, object_id: Option<&str>) -> bool {
        self.grants.iter().any(|grant| {
            grant.rights.contains(&right)
                && grant
                    .object_prefixes
                    .iter()
                    .any(|prefix| object_id.map_or(prefix.is_empty(), |id| id.starts_with(prefix)))
        })
    }

    /// Whether `right` is granted on some object.
    pub fn allows_any(&self, right: ClientRight) -> bool {
        self.grants
            .iter()
            .any(|grant| grant.rights.contains(&right) && !grant.object_prefixes.is_empty())
    }
}

/// The grants of a client caller, left beside its [`Caller`] by [`Guarded`]; absent when the
/// topology grants every client everything (or the server runs plaintext).
#[derive(Clone, Debug)]
struct CallerGrants(Arc<ClientGrants>);

/// Checks that the client that made `request` holds `right` on `object_id` (on every object
/// when `None`); the refusal names the client, the right and the object.
pub fn check_grant<T>(
    request: &tonic::Request<T>,
    right: ClientRight,
    object_id: Option<&str>,
) -> Result<(), Status> {
    let Some(CallerGrants(grants)) = request.extensions().get::<CallerGrants>() else {
        return Ok(());
    };
    if grants.allows(right, object_id) {
        return Ok(());
    }
    Err(refuse_grant(&caller_of(request), right, object_id))
}

/// Checks that the client that made `request` holds `right` on at least one object (to open a
/// session, or to `sync()`).
pub fn check_any_grant<T>(request: &tonic::Request<T>, right: ClientRight) -> Result<(), Status> {
    let Some(CallerGrants(grants)) = request.extensions().get::<CallerGrants>() else {
        return Ok(());
    };
    if grants.allows_any(right) {
        return Ok(());
    }
    Err(refuse_grant(&caller_of(request), right, None))
}

fn refuse_grant(caller: &Caller, right: ClientRight, object_id: Option<&str>) -> Status {
    let what = match object_id {
        Some(object_id) => format!("object {object_id:?}"),
        None => "every object".to_owned(),
    };
    let message = format!(
        "{caller} holds no grant to {} {what}; the topology's [[grants]] say what each client \
         may do",
        right.name()
    );
    tracing::warn!(reason = message.as_str(), "call refused: no grant");
    Status::permission_denied(message)
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
            client_grants: None,
            budgets: Arc::new(RequestBudgets::default()),
            tokens: BTreeMap::new(),
            calls: Arc::default(),
        }
    }

    /// What the server's methods answered since it started (every service guarded by this
    /// policy or a clone of it).
    pub fn call_metrics(&self) -> &Arc<CallMetrics> {
        &self.calls
    }

    /// The policy with bearer `tokens` (client name, SHA-256 digest of its token): a client
    /// call that carries one of them in `authorization: Bearer <token>` is the named client's,
    /// whatever client certificate its connection presents (a gateway that ends TLS for its
    /// own clients and forwards their calls).
    pub fn with_tokens(
        mut self,
        tokens: impl IntoIterator<Item = (String, [u8; 32])>,
    ) -> AccessPolicy {
        self.tokens = tokens
            .into_iter()
            .map(|(client, digest)| (digest, client))
            .collect();
        self
    }

    /// The caller a request is made as: `connection`'s, or the client its bearer token names.
    /// A token the topology does not list is refused (`UNAUTHENTICATED`), and so is a token
    /// carried by a node or an admin (tokens stand for clients only).
    fn caller_with_token(
        &self,
        connection: Caller,
        authorization: Option<&http::HeaderValue>,
    ) -> Result<Caller, Status> {
        let Some(value) = authorization else {
            return Ok(connection);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix(BEARER_PREFIX))
            .ok_or_else(|| {
                Status::unauthenticated(
                    "the authorization header is not `Bearer <token>` in visible ASCII",
                )
            })?;
        let Some(client) = self.tokens.get(&token_digest(token)) else {
            return Err(Status::unauthenticated(
                "the bearer token is not one of the topology's [[tokens]] (or the token was \
                 replaced)",
            ));
        };
        match connection {
            Caller::Insecure | Caller::Known(Identity::Client(_)) => {
                Ok(Caller::Known(Identity::Client(client.clone())))
            }
            other => Err(Status::permission_denied(format!(
                "a bearer token stands for a client; the caller is {other}"
            ))),
        }
    }

    /// The policy with fresh budgets under `limits`.
    pub fn with_limits(mut self, limits: ServerLimits) -> AccessPolicy {
        self.budgets = Arc::new(RequestBudgets::new(limits));
        self
    }

    /// The server's limits.
    pub fn limits(&self) -> &ServerLimits {
        self.budgets.limits()
    }

    /// The bytes of requests in flight, per caller and in all.
    pub fn budgets(&self) -> &RequestBudgets {
        &self.budgets
    }

    /// The policy with `grants` (client name, its grants): from then on a client may do only
    /// what its grants allow, and a client with none may do nothing.
    pub fn with_grants(
        mut self,
        grants: impl IntoIterator<Item = (String, Vec<ClientGrant>)>,
    ) -> AccessPolicy {
        let mut by_client: BTreeMap<String, Vec<ClientGrant>> = BTreeMap::new();
        for (client, client_grants) in grants {
            by_client.entry(client).or_default().extend(client_grants);
        }
        self.client_grants = Some(
            by_client
                .into_iter()
                .map(|(client, grants)| (client, Arc::new(ClientGrants::new(grants))))
                .collect(),
        );
        self
    }

    /// The grants of client `name`: `None` when the policy restricts no client.
    pub fn grants_of(&self, name: &str) -> Option<Arc<ClientGrants>> {
        self.client_grants.as_ref().map(|grants| {
            grants
                .get(name)
                .cloned()
                .unwrap_or_else(|| Arc::new(ClientGrants::default()))
        })
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
            | (Rule::Admins | Rule::NodesOrAdmins, Identity::Admin(_)) => Ok(()),
            (
                Rule::Nodes | Rule::NodesOrAdmins | Rule::RegionMembers | Rule::CoordinatorReplicas,
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

/// What a request's connection tells: its state (absent for a connection DSSS's accept loop
/// did not make), its TCP addresses, and its certificate under TLS.
struct ConnectionOf {
    state: Option<Arc<ConnectionState>>,
    tcp: Option<TcpConnectInfo>,
    tls: Option<TlsConnectInfo<ConnectionInfo>>,
}

fn connection_of(extensions: &http::Extensions) -> ConnectionOf {
    if let Some(tls) = extensions.get::<TlsConnectInfo<ConnectionInfo>>() {
        return ConnectionOf {
            state: Some(Arc::clone(&tls.get_ref().state)),
            tcp: Some(tls.get_ref().tcp.clone()),
            tls: Some(tls.clone()),
        };
    }
    if let Some(plain) = extensions.get::<ConnectionInfo>() {
        return ConnectionOf {
            state: Some(Arc::clone(&plain.state)),
            tcp: Some(plain.tcp.clone()),
            tls: None,
        };
    }
    ConnectionOf {
        state: None,
        tcp: extensions.get::<TcpConnectInfo>().cloned(),
        tls: None,
    }
}

/// The caller of a request that reached a server, from its connection's certificate (read
/// once per connection); an error when the certificate names no single DSSS identity.
fn caller_of_connection(connection: &ConnectionOf) -> Result<Caller, Status> {
    let Some(tls) = &connection.tls else {
        return Ok(Caller::Insecure);
    };
    let identify = || {
        let certificate = tls
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
    };
    match &connection.state {
        Some(state) => state.caller.get_or_init(identify).clone(),
        None => identify(),
    }
}

/// Whether the method at `path` takes a stream of requests (a raft `DeliverStream`): its
/// messages count against the budgets only while the server holds them, one at a time.
fn takes_a_request_stream(path: &str) -> bool {
    path.ends_with("/DeliverStream")
}

/// A gRPC service that admits only the callers its [`AccessPolicy`] allows (see the module's
/// table), and leaves the [`Caller`] of every admitted request in its extensions. Every
/// admitted request is charged, as its bytes arrive, to its connection's, its caller's and
/// the server's budgets ([`crate::limits`]) and counts as activity of its connection until
/// its answer is sent.
#[derive(Clone, Debug)]
pub struct Guarded<S> {
    inner: S,
    policy: Arc<AccessPolicy>,
}

impl<S> Guarded<S> {
    /// `inner`, guarded by `policy` (and its budgets).
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

    fn call(&mut self, request: http::Request<Body>) -> GuardedFuture {
        let started = Instant::now();
        let connection = connection_of(request.extensions());
        let admitted = caller_of_connection(&connection)
            .and_then(|caller| {
                self.policy
                    .caller_with_token(caller, request.headers().get(AUTHORIZATION_HEADER))
            })
            .and_then(|caller| {
                self.policy
                    .admit(request.uri().path(), &caller)
                    .map(|()| caller)
            });
        let caller = match admitted {
            Ok(caller) => caller,
            Err(status) => {
                tracing::warn!(
                    path = request.uri().path(),
                    reason = status.message(),
                    "call refused"
                );
                self.policy.calls.record(
                    request.uri().path(),
                    status.code() as i32,
                    started.elapsed(),
                );
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        };
        let (mut parts, body) = request.into_parts();
        if let Some(region) = caller.node_id().and_then(|id| self.policy.region_of(id)) {
            parts.extensions.insert(CallerRegion(region.to_owned()));
        }
        if let Caller::Known(Identity::Client(name)) = &caller
            && let Some(grants) = self.policy.grants_of(name)
        {
            parts.extensions.insert(CallerGrants(grants));
        }
        // Over plaintext a caller is known by its address only.
        let budget_key = match (
            &caller,
            connection.tcp.as_ref().and_then(|tcp| tcp.remote_addr()),
        ) {
            (Caller::Known(identity), _) => identity.to_string(),
            (Caller::Insecure, Some(remote)) => format!("address {}", remote.ip()),
            (Caller::Insecure, None) => "an unknown address".to_owned(),
        };
        if let Some(tcp) = connection.tcp {
            // `Request::remote_addr` reads it.
            parts.extensions.insert(tcp);
        }
        parts.extensions.insert(caller);
        let path = parts.uri.path().to_owned();
        let charge = Arc::new(Charge::new(
            Arc::clone(&self.policy.budgets),
            connection.state.clone(),
            budget_key,
            path.clone(),
        ));
        let active = connection
            .state
            .as_ref()
            .map(ConnectionState::start_request);
        let body = Body::new(CountingBody {
            inner: body,
            charge: Arc::clone(&charge),
            stream: takes_a_request_stream(&path).then(MessageCursor::default),
            releasable: 0,
        });
        let response = self.inner.call(http::Request::from_parts(parts, body));
        let calls = Arc::clone(&self.policy.calls);
        Box::pin(async move {
            let response = response.await?;
            calls.record(
                &path,
                code_of_headers(response.headers()),
                started.elapsed(),
            );
            Ok(response.map(|body| {
                Body::new(HoldingBody {
                    inner: Body::new(body),
                    _held: (charge, active),
                })
            }))
        })
    }
}

/// A request body that charges its bytes to the request's [`Charge`] as they arrive and fails
/// the request (`RESOURCE_EXHAUSTED`) when they would pass a bound. For a request stream it
/// follows the gRPC framing and gives back each message's bytes once the next is asked for.
struct CountingBody {
    inner: Body,
    charge: Arc<Charge>,
    stream: Option<MessageCursor>,
    /// Bytes of messages the stream completed, given back at the next poll.
    releasable: u64,
}

impl http_body::Body for CountingBody {
    type Data = tonic::codegen::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Status>>> {
        let this = &mut *self;
        if this.releasable > 0 {
            // The decoder asks for more only once it handed out every whole message it held.
            this.charge.release(this.releasable);
            this.releasable = 0;
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(context) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            if let Err(status) = this.charge.add(data.len() as u64) {
                return Poll::Ready(Some(Err(status)));
            }
            if let Some(cursor) = &mut this.stream {
                this.releasable += cursor.feed(data);
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Where a stream of gRPC messages stands: each message is a 5-byte header (a compression
/// flag and a 4-byte big-endian length) and its payload.
#[derive(Debug, Default)]
struct MessageCursor {
    header: [u8; 5],
    header_len: usize,
    /// Payload bytes of the current message still to come.
    remaining: u64,
    /// Bytes of the current message seen so far, header included.
    current: u64,
}

impl MessageCursor {
    /// Takes `data`, returns the bytes of the messages it completed.
    fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut completed = 0;
        while !data.is_empty() {
            if self.header_len < self.header.len() {
                let take = (self.header.len() - self.header_len).min(data.len());
                self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
                self.header_len += take;
                self.current += take as u64;
                data = &data[take..];
                if self.header_len == self.header.len() {
                    let mut length = [0_u8; 4];
                    length.copy_from_slice(&self.header[1..]);
                    self.remaining = u64::from(u32::from_be_bytes(length));
                }
            } else {
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.remaining -= take as u64;
                self.current += take as u64;
                data = &data[take..];
            }
            if self.header_len == self.header.len() && self.remaining == 0 {
                completed += self.current;
                self.current = 0;
                self.header_len = 0;
            }
        }
        completed
    }
}

/// A response body that holds what its request held (its charge, its place among its
/// connection's requests in flight) until the answer is sent.
struct HoldingBody {
    inner: Body,
    _held: (Arc<Charge>, Option<ActiveRequest>),
}

impl http_body::Body for HoldingBody {
    type Data = tonic::codegen::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
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
    fn grants_allow_their_rights_on_their_prefixes_only() {
        let policy = policy().with_grants([
            (
                "app".to_owned(),
                vec![ClientGrant {
                    object_prefixes: vec!["bank/".to_owned()],
                    rights: [ClientRight::Call, ClientRight::Read].into(),
                }],
            ),
            (
                "app".to_owned(),
                vec![ClientGrant {
                    object_prefixes: vec!["board/".to_owned()],
                    rights: [ClientRight::Upload].into(),
                }],
            ),
            (
                "auditor".to_owned(),
                vec![ClientGrant {
                    object_prefixes: vec![String::new()],
                    rights: [ClientRight::Read].into(),
                }],
            ),
        ]);
        let app = policy.grants_of("app").expect("grants are configured");
        assert!(app.allows(ClientRight::Call, Some("bank/eu")));
        assert!(app.allows(ClientRight::Read, Some("bank/eu")));
        assert!(!app.allows(ClientRight::Upload, Some("bank/eu")));
        assert!(app.allows(ClientRight::Upload, Some("board/1")));
        assert!(!app.allows(ClientRight::Call, Some("board/1")));
        assert!(!app.allows(ClientRight::Read, None), "not every object");
        assert!(app.allows_any(ClientRight::Call));
        let auditor = policy.grants_of("auditor").expect("configured");
        assert!(auditor.allows(ClientRight::Read, None));
        assert!(auditor.allows(ClientRight::Read, Some("anything")));
        assert!(!auditor.allows_any(ClientRight::Call));
        let stranger = policy.grants_of("stranger").expect("configured");
        for right in ClientRight::ALL {
            assert!(!stranger.allows_any(right), "{right:?}");
        }
        assert_eq!(AccessPolicy::default().grants_of("app"), None);
    }

    #[test]
    fn a_message_cursor_finds_where_each_grpc_message_ends_however_the_bytes_are_cut() {
        let message = |payload: usize| {
            let mut bytes = vec![0_u8];
            bytes.extend_from_slice(&u32::try_from(payload).expect("small").to_be_bytes());
            bytes.extend(std::iter::repeat_n(9_u8, payload));
            bytes
        };
        let stream: Vec<u8> = [message(3), message(0), message(1000), message(2)].concat();
        for cut in [1, 2, 5, 7, 64, 4096] {
            let mut cursor = MessageCursor::default();
            let completed: Vec<u64> = stream.chunks(cut).map(|chunk| cursor.feed(chunk)).collect();
            assert_eq!(
                completed.iter().sum::<u64>(),
                stream.len() as u64,
                "cut {cut}"
            );
            assert_eq!(cursor.current, 0, "cut {cut}: nothing left half read");
        }
        let mut cursor = MessageCursor::default();
        assert_eq!(cursor.feed(&message(10)[..12]), 0, "half a message is held");
        assert_eq!(cursor.feed(&message(10)[12..]), 15);
    }

    #[test]
    fn a_listed_bearer_token_makes_a_client_or_plaintext_caller_its_client_and_nothing_else() {
        let policy =
            policy().with_tokens([("alice".to_owned(), token_digest("dsss_token-of-alice-0001"))]);
        let header = |text: &str| http::HeaderValue::from_str(text).expect("a header value");
        let alice = Caller::Known(Identity::Client("alice".to_owned()));
        let gateway = Caller::Known(Identity::Client("gateway".to_owned()));
        let bearer = header("Bearer dsss_token-of-alice-0001");
        let as_caller = |outcome: Result<Caller, Status>| outcome.expect("admitted");
        assert_eq!(
            as_caller(policy.caller_with_token(gateway.clone(), Some(&bearer))),
            alice
        );
        assert_eq!(
            as_caller(policy.caller_with_token(Caller::Insecure, Some(&bearer))),
            alice
        );
        assert_eq!(
            as_caller(policy.caller_with_token(gateway.clone(), None)),
            gateway
        );
        let refused = policy
            .caller_with_token(node(11), Some(&bearer))
            .expect_err("a node with a token");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        for (value, fragment) in [
            ("Bearer dsss_some-other-token-02", "[[tokens]]"),
            ("Basic YWxpY2U6c2VjcmV0", "Bearer <token>"),
        ] {
            let refused = policy
                .caller_with_token(gateway.clone(), Some(&header(value)))
                .expect_err(value);
            assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{value}");
            assert!(refused.message().contains(fragment), "{refused:?}");
        }
        assert!(check_token("short").is_err());
        assert!(check_token("has a space in it, sadly").is_err());
        check_token("dsss_token-of-alice-0001").expect("usable");
    }

    #[test]
    fn each_client_identity_has_a_session_id_space_of_its_own() {
        let alice = Caller::Known(Identity::Client("alice".to_owned()));
        let bob = Caller::Known(Identity::Client("bob".to_owned()));
        let of_alice = scoped_session_id(&alice, 42);
        assert_eq!(of_alice, scoped_session_id(&alice, 42), "stable");
        assert_ne!(of_alice, 42);
        assert_ne!(of_alice, scoped_session_id(&bob, 42));
        // Bob, having read alice's id in the log, still reaches a session of his own.
        assert_ne!(scoped_session_id(&bob, of_alice), of_alice);
        assert_eq!(scoped_session_id(&Caller::Insecure, 42), 42);
    }

    #[test]
    fn every_method_admits_only_its_roles() {
        let policy = policy();
        let client = Caller::Known(Identity::Client("app".to_owned()));
        let admin = Caller::Known(Identity::Admin("ops".to_owned()));
        let cases: [(&str, &Caller, bool); 23] = [
            ("/dsss.v1.Coordinator/ReadSealedEpoch", &admin, true),
            ("/dsss.v1.Coordinator/SubmitBatch", &admin, false),
            ("/dsss.v1.RegionClient/Propose", &client, true),
            ("/dsss.v1.RegionClient/Propose", &admin, false),
            ("/dsss.v1.RegionClient/Propose", &node(11), false),
            ("/dsss.v1.RegionClient/Status", &node(21), true),
            ("/dsss.v1.Coordinator/Status", &admin, true),
            ("/dsss.v1.Coordinator/Status", &client, true),
            ("/grpc.health.v1.Health/Check", &client, true),
            ("/grpc.health.v1.Health/Watch", &node(12), true),
            ("/dsss.v1.RegionAdmin/AddPeer", &admin, true),
            ("/dsss.v1.RegionAdmin/AddPeer", &client, false),
            ("/dsss.v1.RegionAdmin/ChangeMembership", &node(12), false),
            ("/dsss.v1.RegionPeer/Deliver", &node(12), true),
            ("/dsss.v1.RegionPeer/Deliver", &node(21), false),
            ("/dsss.v1.RegionPeer/ReadLogRange", &node(99), false),
            ("/dsss.v1.RegionEpochs/Deliver", &node(21), true),
            ("/dsss.v1.RegionEpochs/Deliver", &node(12), false),
            ("/dsss.v1.RegionEpochs/ReadEpochs", &node(12), true),
            ("/dsss.v1.RegionEpochs/ReadCheckpoint", &node(12), true),
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
