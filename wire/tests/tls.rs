//! Mutual TLS over real tonic servers on loopback: who gets in, what a refused caller sees,
//! and certificates that change while the server runs.
//!
//! The server is a stand-in `Coordinator` whose `ReadSealedEpoch` answers with the node id the
//! caller's certificate names (as the epoch number), so the tests also see that the services
//! get the caller's certificate.

#![cfg(feature = "grpc")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dsss_wire::grpc::{coordinator_client, coordinator_server};
use dsss_wire::limits::ServerLimits;
use dsss_wire::proto::coordinator_server::Coordinator;
use dsss_wire::proto::{ReadSealedEpochReply, ReadSealedEpochRequest, RegionBatch, RegionBatchAck};
use dsss_wire::tls::{Security, TlsFiles, node_id_of_certificate, peer_certificates};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};

/// The stand-in coordinator.
struct PeerEcho;

#[tonic::async_trait]
impl Coordinator for PeerEcho {
    async fn submit_batch(
        &self,
        _request: Request<RegionBatch>,
    ) -> Result<Response<RegionBatchAck>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn read_sealed_epoch(
        &self,
        request: Request<ReadSealedEpochRequest>,
    ) -> Result<Response<ReadSealedEpochReply>, Status> {
        let node_id = peer_certificates(&request)
            .and_then(|certificates| certificates.first().and_then(node_id_of_certificate))
            .unwrap_or(0);
        Ok(Response::new(ReadSealedEpochReply {
            epoch_number: node_id,
            ..ReadSealedEpochReply::default()
        }))
    }

    async fn status(
        &self,
        _request: Request<dsss_wire::proto::CoordinatorStatusRequest>,
    ) -> Result<Response<dsss_wire::proto::CoordinatorStatusReply>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

/// A CA that issues certificates into a directory.
struct Authority {
    certificate_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let certificate = params.self_signed(&key).expect("self-signed CA");
        Authority {
            certificate_pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate and a certificate and key for node `node_id` (SANs 127.0.0.1
    /// and `dsss://node/<id>`) as `ca.crt`, `<name>.crt` and `<name>.key` in `directory`.
    fn issue(&self, directory: &Path, name: &str, node_id: u64) -> TlsFiles {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("node {node_id}"));
        params.subject_alt_names = vec![
            SanType::IpAddress("127.0.0.1".parse().expect("an IP address")),
            SanType::URI(
                format!("dsss://node/{node_id}")
                    .try_into()
                    .expect("an ASCII URI"),
            ),
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let certificate = params.signed_by(&key, &self.issuer).expect("signed");
        let files = TlsFiles {
            ca_cert: directory.join("ca.crt"),
            cert: directory.join(format!("{name}.crt")),
            key: directory.join(format!("{name}.key")),
        };
        std::fs::write(&files.ca_cert, &self.certificate_pem).expect("write the CA");
        std::fs::write(&files.cert, certificate.pem()).expect("write the certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write the key");
        files
    }
}

fn directory(root: &Path, name: &str) -> PathBuf {
    let directory = root.join(name);
    std::fs::create_dir_all(&directory).expect("create a directory");
    directory
}

/// A server on a free loopback port with `security`; it stops when the sender drops.
async fn serve(security: Security) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let router = Server::builder().add_service(coordinator_server(PeerEcho));
    tokio::spawn(async move {
        security
            .serve(router, listener, &ServerLimits::default(), async {
                let _ = stopped.await;
            })
            .await
    });
    (address, stop)
}

/// One call on a fresh channel: the node id the server read from the caller's certificate.
async fn call(address: SocketAddr, security: &Security) -> Result<u64, Status> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    let mut client = coordinator_client(security.connect_lazy(endpoint));
    client
        .read_sealed_epoch(ReadSealedEpochRequest::default())
        .await
        .map(|reply| reply.into_inner().epoch_number)
}

fn tls(files: TlsFiles) -> Security {
    Security::tls(files).expect("the test's files load")
}

#[tokio::test]
async fn peers_of_one_ca_talk_and_the_server_sees_the_callers_node_id() {
    let root = tempfile::tempdir().expect("temporary directory");
    let ca = Authority::new("cluster CA");
    let server = tls(ca.issue(&directory(root.path(), "server"), "node-1", 1));
    let client = tls(ca.issue(&directory(root.path(), "client"), "node-2", 2));
    let (address, _stop) = serve(server).await;
    assert_eq!(call(address, &client).await.expect("the call succeeds"), 2);
}

#[tokio::test]
async fn a_peer_with_a_certificate_of_another_ca_is_refused() {
    let root = tempfile::tempdir().expect("temporary directory");
    let ca = Authority::new("cluster CA");
    let other = Authority::new("another CA");
    let server = tls(ca.issue(&directory(root.path(), "server"), "node-1", 1));
    // The intruder trusts both CAs (it checks the server, and its own certificate loads),
    // but its certificate is signed by the other one: only the server can refuse it.
    let intruder_files = other.issue(&directory(root.path(), "intruder"), "node-2", 2);
    std::fs::write(
        &intruder_files.ca_cert,
        format!("{}{}", other.certificate_pem, ca.certificate_pem),
    )
    .expect("write");
    let intruder = tls(intruder_files);
    let (address, _stop) = serve(server).await;
    let status = call(address, &intruder).await.expect_err("refused");
    // The server ends the handshake with an alert that names the problem.
    let described = format!("{status:?}");
    assert!(described.contains("UnknownCA"), "{described}");
}

#[tokio::test]
async fn a_server_with_a_certificate_of_another_ca_is_refused_by_the_client() {
    let root = tempfile::tempdir().expect("temporary directory");
    let ca = Authority::new("cluster CA");
    let other = Authority::new("another CA");
    let impostor = tls(other.issue(&directory(root.path(), "impostor"), "node-1", 1));
    let client = tls(ca.issue(&directory(root.path(), "client"), "node-2", 2));
    let (address, _stop) = serve(impostor).await;
    let status = call(address, &client).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let described = format!("{status:?}");
    assert!(described.contains("TLS handshake"), "{described}");
    assert!(described.contains("UnknownIssuer"), "{described}");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let root = tempfile::tempdir().expect("temporary directory");
    let ca = Authority::new("cluster CA");
    let server_files = ca.issue(&directory(root.path(), "server"), "node-1", 1);
    let (address, _stop) = serve(tls(server_files.clone())).await;
    // A TLS client that checks the server but presents no certificate.
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pki_types_certs(&server_files.ca_cert) {
        roots.add(certificate).expect("a CA certificate");
    }
    // The provider the nodes use (see `dsss_wire::tls`).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    // With TLS 1.3 the client finishes its side before the server checks the (missing)
    // certificate: the refusal arrives as the first read.
    let outcome = match connector.connect(name, tcp).await {
        Err(error) => Err(error),
        Ok(mut stream) => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
            let mut buffer = [0_u8; 64];
            match stream.read(&mut buffer).await {
                Ok(0) => Err(std::io::Error::other("closed")),
                Ok(read) => Ok(read),
                Err(error) => Err(error),
            }
        }
    };
    let error = outcome.expect_err("the server refuses a client without a certificate");
    assert!(
        error.to_string().contains("CertificateRequired") || error.to_string() == "closed",
        "{error}"
    );
}

fn rustls_pki_types_certs(path: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .expect("open")
        .collect::<Result<_, _>>()
        .expect("PEM")
}

#[tokio::test]
async fn a_plaintext_client_of_a_tls_server_fails() {
    let root = tempfile::tempdir().expect("temporary directory");
    let ca = Authority::new("cluster CA");
    let server = tls(ca.issue(&directory(root.path(), "server"), "node-1", 1));
    let (address, _stop) = serve(server).await;
    let status = call(address, &Security::Plaintext)
        .await
        .expect_err("refused");
    // The node answers with an HTTP/2 GOAWAY that says why (and logs that the client spoke
    // plaintext HTTP/2).
    let described = format!("{status:?}");
    assert!(
        described.contains(dsss_wire::tls::PLAINTEXT_REFUSAL),
        "{described}"
    );
}

#[tokio::test]
async fn a_tls_client_of_a_plaintext_server_is_told_the_server_does_not_speak_tls() {
    let root = tempfile::tempdir().expect("temporary directory");
    let ca = Authority::new("cluster CA");
    let client = tls(ca.issue(&directory(root.path(), "client"), "node-2", 2));
    let (address, _stop) = serve(Security::Plaintext).await;
    let status = call(address, &client).await.expect_err("refused");
    let described = format!("{status:?}");
    assert!(
        described.contains("the server does not speak TLS"),
        "{described}"
    );
}

/// Replaces `to`'s files with `from`'s, waiting first so that the modification times differ
/// even on file systems with coarse timestamps.
fn replace(from: &TlsFiles, to: &TlsFiles) {
    std::thread::sleep(Duration::from_millis(20));
    for (from, to) in [
        (&from.ca_cert, &to.ca_cert),
        (&from.cert, &to.cert),
        (&from.key, &to.key),
    ] {
        std::fs::copy(from, to).expect("copy");
    }
}

#[tokio::test]
async fn changed_certificates_are_used_by_new_connections_without_a_restart() {
    let root = tempfile::tempdir().expect("temporary directory");
    let old_ca = Authority::new("old CA");
    let new_ca = Authority::new("new CA");
    let server_files = old_ca.issue(&directory(root.path(), "server"), "node-1", 1);
    let client_files = old_ca.issue(&directory(root.path(), "client"), "node-2", 2);
    let server = tls(server_files.clone());
    let client = tls(client_files.clone());
    let (address, _stop) = serve(server.clone()).await;
    assert_eq!(call(address, &client).await.expect("old CA"), 2);
    let newcomer = tls(new_ca.issue(&directory(root.path(), "newcomer"), "node-3", 3));
    call(address, &newcomer)
        .await
        .expect_err("the server does not know the new CA yet");

    // The server moves to the new CA: the newcomer gets in, the client of the old CA no longer
    // does.
    replace(
        &new_ca.issue(&directory(root.path(), "server-new"), "node-1", 1),
        &server_files,
    );
    assert_eq!(call(address, &newcomer).await.expect("new CA"), 3);
    call(address, &client)
        .await
        .expect_err("the old CA is no longer trusted");

    // The client's files move too: the same Security connects again.
    replace(
        &new_ca.issue(&directory(root.path(), "client-new"), "node-2", 2),
        &client_files,
    );
    assert_eq!(call(address, &client).await.expect("client rotated"), 2);
    let Security::Tls(identity) = &server else {
        unreachable!("a TLS server");
    };
    assert_eq!(identity.reloads(), 1);
}

#[tokio::test]
async fn a_bad_rotation_keeps_the_previous_certificate() {
    let root = tempfile::tempdir().expect("temporary directory");
    let ca = Authority::new("cluster CA");
    let server_files = ca.issue(&directory(root.path(), "server"), "node-1", 1);
    let client = tls(ca.issue(&directory(root.path(), "client"), "node-2", 2));
    let (address, _stop) = serve(tls(server_files.clone())).await;
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&server_files.cert, "half a file").expect("write");
    assert_eq!(
        call(address, &client).await.expect("the old pair serves"),
        2
    );
}

#[test]
fn unusable_files_are_named_in_the_error() {
    let root = tempfile::tempdir().expect("temporary directory");
    let ca = Authority::new("cluster CA");
    let other = Authority::new("another CA");
    let files = ca.issue(&directory(root.path(), "node"), "node-1", 1);
    let foreign = other.issue(&directory(root.path(), "foreign"), "node-1", 1);
    let message = |files: TlsFiles| -> String {
        match Security::tls(files) {
            Ok(_) => panic!("the files must be refused"),
            Err(error) => error.to_string(),
        }
    };

    let missing = root.path().join("missing.crt");
    let error = message(TlsFiles {
        cert: missing.clone(),
        ..files.clone()
    });
    assert!(
        error.starts_with(&format!("{}: cannot read", missing.display())),
        "{error}"
    );

    let garbage = root.path().join("garbage.key");
    std::fs::write(&garbage, "not a key").expect("write");
    let error = message(TlsFiles {
        key: garbage.clone(),
        ..files.clone()
    });
    assert_eq!(
        error,
        format!("{}: holds no PEM private key", garbage.display())
    );

    let error = message(TlsFiles {
        key: foreign.key.clone(),
        ..files.clone()
    });
    assert!(
        error.starts_with(&format!(
            "{}: not usable with the certificate",
            foreign.key.display()
        )),
        "{error}"
    );

    let error = message(TlsFiles {
        cert: foreign.cert.clone(),
        key: foreign.key.clone(),
        ..files.clone()
    });
    assert!(
        error.starts_with(&format!(
            "{}: not accepted with the CA",
            foreign.cert.display()
        )),
        "{error}"
    );

    let empty_ca = root.path().join("empty-ca.crt");
    std::fs::write(&empty_ca, "").expect("write");
    let error = message(TlsFiles {
        ca_cert: empty_ca.clone(),
        ..files
    });
    assert_eq!(
        error,
        format!("{}: holds no PEM certificate", empty_ca.display())
    );
}

#[tokio::test]
async fn a_server_closes_a_connection_whose_peer_stops_answering_pings() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (_stop, stopped) = oneshot::channel::<()>();
    // Keepalive bounds of a second each (the defaults are 10 s and 20 s).
    let limits = ServerLimits {
        keepalive_interval_us: 1_000_000,
        keepalive_timeout_us: 1_000_000,
        ..ServerLimits::default()
    };
    let router = dsss_wire::tls::server_builder(&limits).add_service(coordinator_server(PeerEcho));
    let server_limits = limits.clone();
    tokio::spawn(async move {
        Security::Plaintext
            .serve(router, listener, &server_limits, async {
                let _ = stopped.await;
            })
            .await
    });
    // A client that opens an HTTP/2 connection, then reads what comes and answers nothing:
    // a peer whose host froze with the connection open.
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("the preface and empty settings");
    let started = std::time::Instant::now();
    let bound = Duration::from_micros(limits.keepalive_interval_us + limits.keepalive_timeout_us);
    let mut buffer = [0_u8; 4096];
    let closed = tokio::time::timeout(bound * 3, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept a silent connection open for {:?}",
        started.elapsed()
    );
    println!(
        "the silent connection was closed after {:?}",
        started.elapsed()
    );
}

/// A TLS server of node 1's certificate under `limits` on a free loopback port, and a client
/// of node 2 of the same CA (their files under `root`).
async fn limited_server(root: &Path, limits: ServerLimits) -> (SocketAddr, Security) {
    let ca = Authority::new("cluster CA");
    let server_files = ca.issue(&directory(root, "server"), "node-1", 1);
    let client = tls(ca.issue(&directory(root, "client"), "node-2", 2));
    let identity = Arc::new(dsss_wire::tls::TlsIdentity::load(server_files).expect("loads"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let incoming = dsss_wire::tls::tls_incoming(listener, identity, &limits);
    tokio::spawn(
        Server::builder()
            .add_service(coordinator_server(PeerEcho))
            .serve_with_incoming(incoming),
    );
    (address, client)
}

#[tokio::test]
async fn connections_beyond_the_bound_per_address_are_closed_until_one_ends() {
    let root = tempfile::tempdir().expect("temporary directory");
    let (address, client) = limited_server(
        root.path(),
        ServerLimits {
            connections_per_address_max: 2,
            ..ServerLimits::default()
        },
    )
    .await;
    let endpoint = || {
        Endpoint::from_shared(format!("http://{address}"))
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
    };
    let ask = |channel: tonic::transport::Channel| async move {
        coordinator_client(channel)
            .read_sealed_epoch(ReadSealedEpochRequest::default())
            .await
            .map(|reply| reply.into_inner().epoch_number)
    };
    let first = client
        .connect(endpoint())
        .await
        .expect("the first connection");
    let second = client
        .connect(endpoint())
        .await
        .expect("the second connection");
    assert_eq!(ask(first.clone()).await.expect("served"), 2);
    assert_eq!(ask(second.clone()).await.expect("served"), 2);
    // A third connection from the same address is closed before its handshake.
    let third = match client.connect(endpoint()).await {
        Ok(channel) => ask(channel).await.map(|_| ()),
        Err(error) => Err(Status::unavailable(error.to_string())),
    };
    assert!(
        third.is_err(),
        "a third connection from one address was served"
    );
    // Once one ends, its place is free again.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(channel) = client.connect(endpoint()).await
            && ask(channel).await.is_ok()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no connection was served after one of the two ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ask(second).await.expect("still served"), 2);
}

#[tokio::test]
async fn connections_past_the_handshakes_in_flight_are_closed_until_one_ends() {
    let root = tempfile::tempdir().expect("temporary directory");
    let (address, client) = limited_server(
        root.path(),
        ServerLimits {
            handshakes_in_flight_max: 1,
            handshake_timeout_us: 60_000_000,
            ..ServerLimits::default()
        },
    )
    .await;
    // A connection that never starts its handshake holds the only handshake slot.
    let silent = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = call(address, &client).await;
    assert!(
        refused.is_err(),
        "a handshake past the bound was served: {refused:?}"
    );
    // Once it goes, the slot is free again.
    drop(silent);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(node_id) = call(address, &client).await {
            assert_eq!(node_id, 2);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no handshake was served after the silent connection ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
