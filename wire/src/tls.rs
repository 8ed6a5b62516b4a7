//! Mutual TLS for every DSSS connection (feature `grpc`): node to node, region to coordinator,
//! coordinator to region and client to node.
//!
//! A process has one [`Security`]: [`Security::Plaintext`] (only when its operator asked for it)
//! or [`Security::Tls`] with a [`TlsIdentity`], the certificate authority it trusts and the
//! certificate and key it presents. Both sides of every connection present a certificate
//! signed by the CA and check the other's: a server refuses a client without one, and a client
//! checks that the server's certificate names the host it dialled (an IP address or DNS name in
//! its subject alternative names).
//!
//! The identity reloads itself: before every handshake it compares the modification time and
//! size of its three files with those it loaded, and when one changed it reads them again.
//! New connections then use the new certificate (or CA); open connections keep the one they
//! were made with. A reload that fails (a file half written, a key that does not match its
//! certificate) keeps the previous material and logs a warning naming the file; the next
//! handshake tries again.
//!
//! Servers take their connections from [`Security::serve`], clients their channels from
//! [`Security::connect_lazy`] or [`Security::connect`]; the certificates reach the services as
//! tonic's [`TlsConnectInfo`](tonic::transport::server::TlsConnectInfo) of a
//! [`ConnectionInfo`] ([`peer_certificates`] reads them). [`node_id_of_certificate`]
//! reads the node id a DSSS node certificate names (`dsss certs generate` writes it as the URI
//! `dsss://node/<id>`).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Router, TcpConnectInfo};

use crate::limits::{
    ConnectionState, KEEPALIVE_INTERVAL_US_DEFAULT, KEEPALIVE_TIMEOUT_US_DEFAULT, ServerLimits,
    monotonic_us,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// The accepted connections that wait for the server to take them.
const ACCEPTED_QUEUED_MAX: usize = 64;

/// How long the accept loop waits after the listener failed (out of file descriptors, say)
/// before it accepts again, in microseconds.
const ACCEPT_ERROR_WAIT_US: u64 = 50_000;

/// The URI prefix of the subject alternative name that names a DSSS node in its certificate.
pub const NODE_URI_PREFIX: &str = "dsss://node/";

/// The URI prefix of the subject alternative name that names a client (an application).
pub const CLIENT_URI_PREFIX: &str = "dsss://client/";

/// The URI prefix of the subject alternative name that names an admin identity (an operator's
/// commands).
pub const ADMIN_URI_PREFIX: &str = "dsss://admin/";

/// `endpoint` with the client side of the keepalive (the default [`ServerLimits`] interval
/// and timeout): pings while idle too, so that a subscription waiting for records notices a
/// dead node.
fn with_keepalive(endpoint: Endpoint) -> Endpoint {
    endpoint
        .http2_keep_alive_interval(Duration::from_micros(KEEPALIVE_INTERVAL_US_DEFAULT))
        .keep_alive_timeout(Duration::from_micros(KEEPALIVE_TIMEOUT_US_DEFAULT))
        .keep_alive_while_idle(true)
}

/// A server builder with `limits`' keepalive (a client that stopped answering is disconnected
/// and its streams and slots freed) and bound on requests in flight per connection.
pub fn server_builder(limits: &ServerLimits) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_micros(limits.keepalive_interval_us)))
        .http2_keepalive_timeout(Some(Duration::from_micros(limits.keepalive_timeout_us)))
        .max_concurrent_streams(Some(limits.streams_per_connection_max))
}

/// The three files of a TLS identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The PEM certificate(s) of the authority whose certificates this process accepts.
    pub ca_cert: PathBuf,
    /// The PEM certificate chain this process presents (its own certificate first).
    pub cert: PathBuf,
    /// The PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why TLS material cannot be used. Every case names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{}: cannot read: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        error: io::Error,
    },
    /// A file was read but holds nothing usable.
    #[error("{}: {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

fn invalid(path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// What identifies the version of a file that was loaded: its modification time and size
/// (`None` when it could not be read).
type FileStamp = Option<(SystemTime, u64)>;

fn stamp_of(path: &Path) -> FileStamp {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// The rustls configurations built from one version of the files.
struct Built {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

struct Loaded {
    stamps: [FileStamp; 3],
    built: Arc<Built>,
    /// The stamps of the last version that failed to load, so that it is reported once.
    failed: Option<[FileStamp; 3]>,
    /// How many times the files were loaded since the first time.
    reloads: u64,
}

/// A CA, certificate and key, loaded and kept current: see the [module documentation](self).
pub struct TlsIdentity {
    files: TlsFiles,
    loaded: Mutex<Loaded>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("TlsIdentity")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Loads `files` and checks them: each holds what it should, the key matches the
    /// certificate, and the certificate is signed by the CA and valid now.
    pub fn load(files: TlsFiles) -> Result<TlsIdentity, TlsError> {
        let stamps = stamps(&files);
        let built = build(&files)?;
        Ok(TlsIdentity {
            files,
            loaded: Mutex::new(Loaded {
                stamps,
                built: Arc::new(built),
                failed: None,
                reloads: 0,
            }),
        })
    }

    /// The files this identity reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// How many times the files were read again after they changed.
    pub fn reloads(&self) -> u64 {
        self.lock().reloads
    }

    /// The server configuration for the next handshake, reloaded first when a file changed.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current().server.clone()
    }

    /// The client configuration for the next handshake, reloaded first when a file changed.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.current().client.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        // The state is replaced whole, so a panic elsewhere cannot leave it half updated.
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn current(&self) -> Arc<Built> {
        let now = stamps(&self.files);
        let mut loaded = self.lock();
        if now == loaded.stamps || loaded.failed == Some(now) {
            return loaded.built.clone();
        }
        match build(&self.files) {
            Ok(built) => {
                loaded.stamps = now;
                loaded.built = Arc::new(built);
                loaded.failed = None;
                loaded.reloads += 1;
                tracing::info!(cert = %self.files.cert.display(), ca = %self.files.ca_cert.display(), "TLS certificate files changed; new connections use them");
            }
            Err(error) => {
                loaded.failed = Some(now);
                tracing::warn!(%error, "TLS certificate files changed but cannot be used; keeping the previous ones");
            }
        }
        loaded.built.clone()
    }
}

fn stamps(files: &TlsFiles) -> [FileStamp; 3] {
    [
        stamp_of(&files.ca_cert),
        stamp_of(&files.cert),
        stamp_of(&files.key),
    ]
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_owned(),
        error,
    })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(path, format!("not a PEM certificate file: {error}")))?;
    if certificates.is_empty() {
        return Err(invalid(path, "holds no PEM certificate"));
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => invalid(path, "holds no PEM private key"),
        error => invalid(path, format!("not a PEM private key file: {error}")),
    })
}

/// The ring provider: rustls deprecates it for lacking post-quantum key exchange, but it
/// builds with a C compiler alone (aws-lc-rs needs more of a toolchain), and it is what tonic's
/// `tls-ring` builds on.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(files: &TlsFiles) -> Result<Built, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(&files.ca_cert)? {
        roots.add(certificate).map_err(|error| {
            invalid(
                &files.ca_cert,
                format!("not a usable CA certificate: {error}"),
            )
        })?;
    }
    let roots = Arc::new(roots);
    let chain = read_certificates(&files.cert)?;
    let key = read_key(&files.key)?;
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|error| invalid(&files.ca_cert, format!("unusable CA: {error}")))?;
    // The process's own certificate must pass the check its peers make, or every connection
    // would fail later with a less helpful message.
    client_verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .map_err(|error| {
            invalid(
                &files.cert,
                format!(
                    "not accepted with the CA {}: {error}",
                    files.ca_cert.display()
                ),
            )
        })?;
    let versions = |error: rustls::Error| invalid(&files.cert, format!("TLS setup: {error}"));
    let key_problem = |error: rustls::Error| {
        invalid(
            &files.key,
            format!(
                "not usable with the certificate {}: {error}",
                files.cert.display()
            ),
        )
    };
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(versions)?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(key_problem)?;
    server.alpn_protocols = vec![b"h2".to_vec()];
    let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|error| invalid(&files.ca_cert, format!("unusable CA: {error}")))?;
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(versions)?
        .with_webpki_verifier(server_verifier)
        .with_client_auth_cert(chain, key)
        .map_err(key_problem)?;
    client.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Built {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}

/// How a process's connections are secured.
#[derive(Clone, Debug, Default)]
pub enum Security {
    /// Plain HTTP/2: nothing is authenticated or encrypted. Only for processes started with
    /// an explicit `--insecure` and for tests.
    #[default]
    Plaintext,
    /// Mutual TLS with this identity.
    Tls(Arc<TlsIdentity>),
}

impl PartialEq for Security {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Security::Plaintext, Security::Plaintext) => true,
            (Security::Tls(a), Security::Tls(b)) => a.files == b.files,
            _ => false,
        }
    }
}

impl Eq for Security {}

impl Security {
    /// Mutual TLS with the identity in `files`, loaded and checked now.
    pub fn tls(files: TlsFiles) -> Result<Security, TlsError> {
        Ok(Security::Tls(Arc::new(TlsIdentity::load(files)?)))
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Security::Tls(_))
    }

    /// A channel to `endpoint` (an `http://host:port` endpoint with its timeouts set) that
    /// connects on first use, over TLS when this is [`Security::Tls`]. The endpoint's connect
    /// timeout applies to the TCP connection and the handshake together.
    pub fn connect_lazy(&self, endpoint: Endpoint) -> Channel {
        let endpoint = with_keepalive(endpoint);
        match self {
            Security::Plaintext => endpoint.connect_lazy(),
            Security::Tls(identity) => endpoint.connect_with_connector_lazy(TlsConnector {
                identity: identity.clone(),
            }),
        }
    }

    /// A channel to `endpoint`, connected now: see [`Security::connect_lazy`].
    pub async fn connect(&self, endpoint: Endpoint) -> Result<Channel, tonic::transport::Error> {
        let endpoint = with_keepalive(endpoint);
        match self {
            Security::Plaintext => endpoint.connect().await,
            Security::Tls(identity) => {
                endpoint
                    .connect_with_connector(TlsConnector {
                        identity: identity.clone(),
                    })
                    .await
            }
        }
    }

    /// Serves `router` on the connections `listener` accepts (`TCP_NODELAY` set), after a TLS
    /// handshake that requires a client certificate when this is [`Security::Tls`], within
    /// `limits` (connections per address, handshakes, idle connections), until `shutdown`
    /// resolves.
    pub async fn serve<F>(
        &self,
        router: Router,
        listener: TcpListener,
        limits: &ServerLimits,
        shutdown: F,
    ) -> Result<(), tonic::transport::Error>
    where
        F: Future<Output = ()> + Send,
    {
        match self {
            Security::Plaintext => {
                router
                    .serve_with_incoming_shutdown(plaintext_incoming(listener, limits), shutdown)
                    .await
            }
            Security::Tls(identity) => {
                router
                    .serve_with_incoming_shutdown(
                        tls_incoming(listener, identity.clone(), limits),
                        shutdown,
                    )
                    .await
            }
        }
    }
}

/// The stream of connections that completed a TLS handshake on `listener`. Handshakes run in
/// tasks of their own (a slow client does not hold up the others), at most
/// `limits.handshakes_in_flight_max` at once; one that fails or takes longer than
/// `limits.handshake_timeout_us` closes its connection and is logged. The accepting task ends
/// when the stream is dropped.
///
/// At most `limits.connections_per_address_max` connections from one IP address are open at
/// once; one more is closed at once and logged, so that one host cannot take every connection
/// a node can hold. A connection that carries no request for
/// `limits.connection_idle_timeout_us` is closed.
pub fn tls_incoming(
    listener: TcpListener,
    identity: Arc<TlsIdentity>,
    limits: &ServerLimits,
) -> ReceiverStream<Result<tokio_rustls::server::TlsStream<CountedStream>, io::Error>> {
    let handshake_timeout = Duration::from_micros(limits.handshake_timeout_us);
    accepting(listener, limits, move |stream, remote| {
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config());
        async move {
            match tokio::time::timeout(handshake_timeout, handshake(acceptor, stream)).await {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(error)) => {
                    tracing::warn!(%remote, %error, "TLS handshake failed; connection closed");
                    None
                }
                Err(_) => {
                    tracing::warn!(%remote, "TLS handshake timed out; connection closed");
                    None
                }
            }
        }
    })
}

/// The stream of plaintext connections `listener` accepts, within the same bounds per
/// address and on idleness as [`tls_incoming`].
pub fn plaintext_incoming(
    listener: TcpListener,
    limits: &ServerLimits,
) -> ReceiverStream<Result<CountedStream, io::Error>> {
    accepting(listener, limits, |stream, _| {
        std::future::ready(Some(stream))
    })
}

/// Runs the accept loop on `listener`: each connection within the per-address bound gets a
/// handshake slot and goes through `handshake` in a task of its own; what it yields is served.
fn accepting<T, H, F>(
    listener: TcpListener,
    limits: &ServerLimits,
    handshake: H,
) -> ReceiverStream<Result<T, io::Error>>
where
    T: Send + 'static,
    H: Fn(CountedStream, SocketAddr) -> F + Send + 'static,
    F: Future<Output = Option<T>> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(ACCEPTED_QUEUED_MAX);
    let slots = Arc::new(AddressSlots {
        open: Mutex::new(HashMap::new()),
        per_address_max: limits.connections_per_address_max,
    });
    tokio::spawn(accept_loop(
        listener,
        slots,
        Arc::new(Semaphore::new(limits.handshakes_in_flight_max)),
        limits.connection_idle_timeout_us,
        handshake,
        sender,
    ));
    ReceiverStream::new(receiver)
}

/// The open connections per remote IP address of one listener.
struct AddressSlots {
    open: Mutex<HashMap<IpAddr, usize>>,
    per_address_max: usize,
}

impl AddressSlots {
    /// A slot for one more connection from `address`, if it has fewer than the bound open.
    fn take(self: &Arc<Self>, address: IpAddr) -> Option<AddressSlot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(address).or_insert(0);
        if *count >= self.per_address_max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            slots: Arc::clone(self),
            address,
        })
    }
}

/// One open connection's place in its address's count, given back when it closes.
struct AddressSlot {
    slots: Arc<AddressSlots>,
    address: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// An accepted TCP connection that holds its place in its address's count until it closes,
/// and ends itself (a read error) once it carried no request for the idle timeout.
pub struct CountedStream {
    inner: TcpStream,
    _slot: AddressSlot,
    state: Arc<ConnectionState>,
    idle_timeout_us: u64,
    idle_timer: Pin<Box<tokio::time::Sleep>>,
}

impl CountedStream {
    /// Whether the connection has been idle past its timeout; otherwise arms the timer (with
    /// `context`'s waker) for the next moment it could be.
    fn idle_past_timeout(&mut self, context: &mut Context<'_>) -> bool {
        loop {
            if self.idle_timer.as_mut().poll(context).is_pending() {
                return false;
            }
            let now_us = monotonic_us();
            let next_check_us = match self.state.idle_deadline_us(self.idle_timeout_us) {
                Some(deadline_us) if deadline_us <= now_us => return true,
                Some(deadline_us) => deadline_us,
                // Busy: it cannot be idle before a full timeout from now.
                None => now_us.saturating_add(self.idle_timeout_us),
            };
            let wait = Duration::from_micros(next_check_us - now_us);
            self.idle_timer
                .as_mut()
                .reset(tokio::time::Instant::now() + wait);
        }
    }
}

impl tokio::io::AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = Pin::new(&mut self.inner).poll_read(context, buffer);
        if read.is_pending() && self.idle_past_timeout(context) {
            tracing::debug!(
                idle_timeout_us = self.idle_timeout_us,
                "connection idle past its timeout; closed"
            );
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection carried no request for the idle timeout",
            )));
        }
        read
    }
}

impl tokio::io::AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(context, buffer)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What a server's services learn of a connection: its TCP addresses and its
/// [`ConnectionState`] (under TLS, inside tonic's `TlsConnectInfo`).
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    /// The connection's addresses.
    pub tcp: TcpConnectInfo,
    /// The connection's requests, bytes in flight and caller.
    pub state: Arc<ConnectionState>,
}

impl tonic::transport::server::Connected for CountedStream {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        ConnectionInfo {
            tcp: self.inner.connect_info(),
            state: Arc::clone(&self.state),
        }
    }
}

/// The certificates the caller of `request` presented, when it came over a TLS connection of
/// [`tls_incoming`] (tonic's `Request::peer_certs` knows only its own connection types).
pub fn peer_certificates<T>(
    request: &tonic::Request<T>,
) -> Option<Arc<Vec<CertificateDer<'static>>>> {
    request
        .extensions()
        .get::<tonic::transport::server::TlsConnectInfo<ConnectionInfo>>()
        .and_then(|info| info.peer_certs())
        .or_else(|| request.peer_certs())
}

async fn accept_loop<T, H, F>(
    listener: TcpListener,
    slots: Arc<AddressSlots>,
    handshakes: Arc<Semaphore>,
    idle_timeout_us: u64,
    handshake: H,
    sender: mpsc::Sender<Result<T, io::Error>>,
) where
    T: Send + 'static,
    H: Fn(CountedStream, SocketAddr) -> F,
    F: Future<Output = Option<T>> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = sender.closed() => return,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_micros(ACCEPT_ERROR_WAIT_US)).await;
                continue;
            }
        };
        let Some(slot) = slots.take(remote.ip()) else {
            tracing::warn!(
                %remote,
                per_address_max = slots.per_address_max,
                "too many connections from one address; connection closed"
            );
            continue;
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "too many handshakes in flight; connection closed");
            continue;
        };
        // The builder's own TCP settings apply only to listeners it binds itself: without
        // TCP_NODELAY on accepted sockets, Nagle's algorithm holds small replies back until
        // the peer's delayed acknowledgement (40 ms on Linux).
        let _ = stream.set_nodelay(true);
        let stream = CountedStream {
            inner: stream,
            _slot: slot,
            state: Arc::new(ConnectionState::accepted()),
            idle_timeout_us,
            idle_timer: Box::pin(tokio::time::sleep(Duration::from_micros(idle_timeout_us))),
        };
        let handshake = handshake(stream, remote);
        let sender = sender.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Some(stream) = handshake.await {
                let _ = sender.send(Ok(stream)).await;
            }
        });
    }
}

/// The start of the HTTP/2 connection preface: what a plaintext gRPC client sends first.
const HTTP2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: CountedStream,
) -> Result<tokio_rustls::server::TlsStream<CountedStream>, io::Error> {
    let mut first = [0_u8; HTTP2_PREFACE_START.len()];
    // Peeking waits for the client's first bytes, which a TLS client sends at once.
    let peeked = stream.inner.peek(&mut first).await?;
    if first[..peeked] == HTTP2_PREFACE_START[..peeked] && peeked > 0 {
        refuse_plaintext(stream).await;
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the client speaks plaintext HTTP/2, and this node requires TLS with a client certificate",
        ));
    }
    acceptor.accept(stream).await
}

/// What a plaintext client is told, as the debug data of an HTTP/2 GOAWAY.
pub const PLAINTEXT_REFUSAL: &str =
    "this node requires mutual TLS; the client connected over plaintext";

/// Answers a plaintext HTTP/2 client with the server's empty SETTINGS and a GOAWAY
/// (INADEQUATE_SECURITY) carrying [`PLAINTEXT_REFUSAL`], so that its error says why, then
/// closes the connection. Bounded by the handshake timeout of the caller.
async fn refuse_plaintext(mut stream: CountedStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// HTTP/2 frame types and the INADEQUATE_SECURITY error code (RFC 9113).
    const SETTINGS: u8 = 0x4;
    const GOAWAY: u8 = 0x7;
    const INADEQUATE_SECURITY: u32 = 0xc;
    let mut frames = vec![0, 0, 0, SETTINGS, 0, 0, 0, 0, 0];
    let payload_length = 8 + PLAINTEXT_REFUSAL.len();
    frames.extend_from_slice(&u32::try_from(payload_length).unwrap_or(0).to_be_bytes()[1..]);
    frames.extend_from_slice(&[GOAWAY, 0, 0, 0, 0, 0]);
    frames.extend_from_slice(&0_u32.to_be_bytes());
    frames.extend_from_slice(&INADEQUATE_SECURITY.to_be_bytes());
    frames.extend_from_slice(PLAINTEXT_REFUSAL.as_bytes());
    // Read what the client sent so far: closing with unread data would reset the connection
    // and the client might never read the GOAWAY.
    let mut discard = [0_u8; 1024];
    let _ = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut discard)).await;
    if stream.write_all(&frames).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    // Wait for the client to close its side (or a bound), reading what else it sends.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while matches!(stream.read(&mut discard).await, Ok(read) if read > 0) {}
    })
    .await;
}

/// Dials a node over TCP and runs the TLS handshake with the identity's current client
/// configuration.
#[derive(Clone)]
struct TlsConnector {
    identity: Arc<TlsIdentity>,
}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let identity = self.identity.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} names no host"))
                })?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} names no port"))
            })?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host.clone()).map_err(|error| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{host} is not a valid TLS server name: {error}"),
                )
            })?;
            let connector = tokio_rustls::TlsConnector::from(identity.client_config());
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|error| handshake_error(&host, port, error))?;
            Ok(TokioIo::new(stream))
        })
    }
}

fn handshake_error(host: &str, port: u16, error: io::Error) -> io::Error {
    let plaintext_server = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|inner| {
            matches!(
                inner,
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
            )
        });
    let message = if plaintext_server {
        format!(
            "TLS handshake with {host}:{port} failed: the server does not speak TLS (is it running with --insecure?)"
        )
    } else {
        format!("TLS handshake with {host}:{port} failed: {error}")
    };
    io::Error::new(error.kind(), message)
}

/// The node id a node certificate names in a subject alternative name `dsss://node/<id>`, if
/// it names one.
pub fn node_id_of_certificate(certificate: &CertificateDer<'_>) -> Option<u64> {
    uri_names(certificate.as_ref(), NODE_URI_PREFIX)
        .next()
        .and_then(|rest| rest.parse().ok())
}

/// The rest of every URI subject alternative name that starts with `prefix`. A URI name is
/// DER-encoded as the context tag 6 (`0x86`), a short length and the URI's ASCII bytes; the
/// scan reads exactly that many bytes, so nothing around the name leaks into it.
pub(crate) fn uri_names<'a>(der: &'a [u8], prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    (0..der.len().saturating_sub(2)).filter_map(move |at| {
        let length = usize::from(*der.get(at + 1)?);
        if der[at] != 0x86 || length >= 0x80 {
            return None;
        }
        let uri = der.get(at + 2..at + 2 + length)?;
        std::str::from_utf8(uri.strip_prefix(prefix.as_bytes())?).ok()
    })
}
