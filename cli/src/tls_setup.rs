//! How a `dsss` process secures its connections: mutual TLS with the files the topology's
//! `[tls]` table names, or plaintext only when `--insecure` says so.

use std::path::Path;

use dsss_topology::Topology;
use dsss_wire::tls::{Security, TlsFiles};

/// Which certificate a process presents.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Role {
    /// A node: `cert_dir/node-N.crt` and its key.
    Node(u64),
    /// An operator's command: `cert_dir/admin.crt` and its key.
    Admin,
}

/// The security of a process in `role`: with `insecure`, plaintext (the caller warns); with
/// a `[tls]` table, mutual TLS with its files, checked now; without either, an error that says
/// what to do.
pub(crate) fn security(
    topology: &Topology,
    topology_path: &Path,
    role: Role,
    insecure: bool,
) -> Result<Security, String> {
    if insecure {
        return Ok(Security::Plaintext);
    }
    let Some(tls) = &topology.tls else {
        return Err(format!(
            "{} has no [tls] table: add one (ca_cert and cert_dir; `dsss certs generate --topology {}` \
             writes a development CA and certificates) to run with mutual TLS, or pass --insecure \
             to run over plaintext gRPC",
            topology_path.display(),
            topology_path.display()
        ));
    };
    let (cert, key, what) = match role {
        Role::Node(node_id) => (
            tls.node_cert_path(node_id),
            tls.node_key_path(node_id),
            format!("node {node_id}"),
        ),
        Role::Admin => (
            tls.admin_cert_path(),
            tls.admin_key_path(),
            "operator (admin)".to_owned(),
        ),
    };
    Security::tls(TlsFiles {
        ca_cert: tls.ca_cert.clone(),
        cert,
        key,
    })
    .map_err(|error| {
        format!(
            "{}: [tls] {what} certificate: {error}",
            topology_path.display()
        )
    })
}

/// The warning a process prints when it runs with `--insecure`.
pub(crate) fn insecure_warning(what: &str) -> String {
    format!(
        "warning: --insecure: {what} uses plaintext gRPC: connections are neither encrypted nor \
         authenticated, and anyone who reaches its port can call it"
    )
}

/// The security of a command that only calls nodes (`dsss region`, `dsss bench soak`, the
/// demo of `dsss up`): mutual TLS with `role`'s certificate when the topology has a `[tls]`
/// table, plaintext otherwise (its nodes can only be running with `--insecure`).
pub(crate) fn caller_security(
    topology: &Topology,
    topology_path: &Path,
    role: Role,
) -> Result<Security, String> {
    security(topology, topology_path, role, topology.tls.is_none())
}
