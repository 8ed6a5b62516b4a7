//! `dsss certs generate`: a development certificate authority and the certificates of every
//! node and client of a topology, where its `[tls]` table expects them.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use dsss_topology::{TlsSettings, Topology, load};
use dsss_wire::tls::{ADMIN_URI_PREFIX, CLIENT_URI_PREFIX, NODE_URI_PREFIX, Security, TlsFiles};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, date_time_ymd,
};

/// Exit status when the files could not be written.
const EXIT_WRITE_FAILED: u8 = 1;

/// Exit status for a topology file or setting that cannot be used.
const EXIT_BAD_INPUT: u8 = 2;

/// The common name of the development CA; an existing CA is reused under the same name.
const CA_COMMON_NAME: &str = "DSSS development CA";

/// How many years the certificates stay valid (from the start of the current year).
const VALIDITY_YEARS: i32 = 5;

/// The `dsss certs` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CertsCommand {
    /// Write a development CA and a certificate and key for every node of a topology, for
    /// applications (client) and for the operator's commands (admin).
    ///
    /// Node N gets node-N.crt and node-N.key; its certificate names the node id as the URI
    /// dsss://node/N and as the DNS name node-N.<region>.dsss, and the host of its address (IP
    /// address or DNS name) so that connections to it verify. The client certificate
    /// (client.crt, or the topology's client_cert and client_key) names dsss://client/client,
    /// the operator's (admin.crt) dsss://admin/admin. Private keys are written with mode 0600.
    ///
    /// Without --out, the files go where the topology's [tls] table says: the CA to ca_cert
    /// (its key beside it, with the extension .key), the rest to cert_dir. With --out, all go
    /// to that directory (ca.crt, ca.key, ...), and the command prints the [tls] table that
    /// finds them. An existing CA (certificate and key) is reused unless --new-ca is given, so
    /// that running the command again renews the node and client certificates without
    /// restarting anything: running nodes pick up changed files at their next handshake.
    /// This is a development CA: keep production keys in your own PKI.
    #[command(after_help = "Examples:\n  \
        dsss certs generate --topology topology/examples/local.toml\n  \
        dsss certs generate --topology my-cluster.toml --out certs")]
    Generate(GenerateArgs),
    /// Make a bearer token for a client that reaches the nodes through a gateway which ends
    /// its TLS.
    ///
    /// Prints the token (give it to the client: `Config::bearer_token` in the SDK) and the
    /// [[tokens]] table to add to the topology, which holds only the token's SHA-256 digest.
    /// A call that carries the token is the named client's: its grants, its session ids,
    /// whatever client certificate the gateway's connection presents. Remove the table (and
    /// restart the nodes) to revoke the token.
    #[command(after_help = "Example:\n  dsss certs token --client alice")]
    Token(TokenArgs),
}

/// The arguments of `dsss certs token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// The client the token stands for (as in [[grants]]).
    #[arg(long = "client", value_name = "NAME")]
    client: String,
}

/// Bytes of randomness in a token.
const TOKEN_RANDOM_BYTES: usize = 32;

/// Prints a fresh token for the client and its `[[tokens]]` table.
fn token(arguments: &TokenArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    use std::io::Read;
    if let Err(problem) = dsss_topology::check_client_name(&arguments.client) {
        let _ = writeln!(stderr, "--client {:?}: {problem}", arguments.client);
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let mut random = [0_u8; TOKEN_RANDOM_BYTES];
    if let Err(error) =
        fs::File::open("/dev/urandom").and_then(|mut source| source.read_exact(&mut random))
    {
        let _ = writeln!(stderr, "cannot read /dev/urandom for the token: {error}");
        return ExitCode::from(EXIT_WRITE_FAILED);
    }
    let token = format!("dsss_{}", hex(&random));
    let digest = dsss_wire::access::token_digest(&token);
    let _ = writeln!(
        stdout,
        "token for client {client:?} (give it to the client; it is not stored anywhere):\n{token}\n\n\
         add to the topology (it holds the token's SHA-256 digest, not the token):\n\
         [[tokens]]\nclient = {client:?}\nsha256 = \"{}\"",
        hex(&digest),
        client = arguments.client,
    );
    ExitCode::SUCCESS
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The arguments of `dsss certs generate`.
#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// The topology whose nodes get certificates.
    #[arg(long, value_name = "FILE")]
    topology: PathBuf,
    /// The directory to write every file to, instead of the paths of the topology's [tls]
    /// table (required when the topology has none).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Make a new CA even when one exists (every certificate signed by the old one stops
    /// being accepted once the nodes load the new CA).
    #[arg(long)]
    new_ca: bool,
    /// Also write a certificate for the application NAME (dsss://client/NAME), as
    /// client-NAME.crt and client-NAME.key in the certificate directory; repeatable. The
    /// topology's [[grants]] say what each name may do.
    #[arg(long = "client", value_name = "NAME")]
    clients: Vec<String>,
}

/// Runs one `dsss certs` subcommand.
pub(crate) fn run(
    command: CertsCommand,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> ExitCode {
    let arguments = match command {
        CertsCommand::Generate(arguments) => arguments,
        CertsCommand::Token(arguments) => return token(&arguments, stdout, stderr),
    };
    let topology = match load(&arguments.topology) {
        Ok(topology) => topology,
        Err(diagnostics) => {
            let _ = write!(stderr, "{diagnostics}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let layout = match (&arguments.out, &topology.tls) {
        (Some(out), _) => Layout::in_directory(out),
        (None, Some(tls)) => Layout::from_settings(tls),
        (None, None) => {
            let _ = writeln!(
                stderr,
                "{} has no [tls] table: pass --out DIR to say where the certificates go",
                arguments.topology.display()
            );
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    for name in &arguments.clients {
        if let Err(problem) = dsss_topology::check_client_name(name) {
            let _ = writeln!(stderr, "--client {name:?}: {problem}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    }
    match generate(&topology, &layout, arguments.new_ca, &arguments.clients) {
        Ok(summary) => {
            let _ = write!(stdout, "{summary}");
            let found = topology.tls.as_ref().is_some_and(|tls| {
                tls.ca_cert == layout.ca_cert && tls.cert_dir == layout.cert_dir
            });
            if !found {
                let _ = writeln!(
                    stdout,
                    "\nThe topology's [tls] table does not name these files; to use them, put in {}:\n\
                     [tls]\nca_cert = {:?}\ncert_dir = {:?}",
                    arguments.topology.display(),
                    layout.ca_cert.display().to_string(),
                    layout.cert_dir.display().to_string()
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            let _ = writeln!(stderr, "dsss certs generate: {error}");
            ExitCode::from(EXIT_WRITE_FAILED)
        }
    }
}

/// Where the files go.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    ca_cert: PathBuf,
    ca_key: PathBuf,
    cert_dir: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Layout {
    fn in_directory(directory: &Path) -> Layout {
        Layout {
            ca_cert: directory.join("ca.crt"),
            ca_key: directory.join("ca.key"),
            cert_dir: directory.to_owned(),
            client_cert: directory.join(TlsSettings::CLIENT_CERT_FILE),
            client_key: directory.join(TlsSettings::CLIENT_KEY_FILE),
        }
    }

    /// The paths of a topology's `[tls]` table (the CA's key beside its certificate).
    pub(crate) fn from_settings(tls: &TlsSettings) -> Layout {
        Layout {
            ca_cert: tls.ca_cert.clone(),
            ca_key: tls.ca_cert.with_extension("key"),
            cert_dir: tls.cert_dir.clone(),
            client_cert: tls.client_cert.clone(),
            client_key: tls.client_key.clone(),
        }
    }

    fn settings(&self) -> TlsSettings {
        TlsSettings {
            ca_cert: self.ca_cert.clone(),
            cert_dir: self.cert_dir.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        }
    }
}

/// Whether every file the nodes and clients of `topology` read under `tls` exists.
pub(crate) fn all_present(topology: &Topology, tls: &TlsSettings) -> bool {
    let mut files = vec![
        tls.ca_cert.clone(),
        tls.client_cert.clone(),
        tls.client_key.clone(),
        tls.admin_cert_path(),
        tls.admin_key_path(),
    ];
    for (_, node) in topology.nodes() {
        files.push(tls.node_cert_path(node.id));
        files.push(tls.node_key_path(node.id));
    }
    files.iter().all(|file| file.is_file())
}

/// Writes the CA (unless one exists and `new_ca` is false) and every certificate; returns
/// what it did, one line per file group.
pub(crate) fn generate(
    topology: &Topology,
    layout: &Layout,
    new_ca: bool,
    more_clients: &[String],
) -> Result<String, String> {
    let mut summary = String::new();
    for directory in [
        Some(layout.cert_dir.as_path()),
        layout.ca_cert.parent(),
        layout.client_cert.parent(),
        layout.client_key.parent(),
    ]
    .into_iter()
    .flatten()
    .filter(|directory| !directory.as_os_str().is_empty())
    {
        fs::create_dir_all(directory)
            .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
    }
    let ca_params = ca_params()?;
    let reuse = !new_ca && layout.ca_cert.is_file() && layout.ca_key.is_file();
    let ca_key = if reuse {
        let pem = fs::read_to_string(&layout.ca_key)
            .map_err(|error| format!("cannot read {}: {error}", layout.ca_key.display()))?;
        let key = KeyPair::from_pem(&pem).map_err(|error| {
            format!(
                "{}: not a usable private key: {error}",
                layout.ca_key.display()
            )
        })?;
        summary.push_str(&format!(
            "CA: reused {} (key {})\n",
            layout.ca_cert.display(),
            layout.ca_key.display()
        ));
        key
    } else {
        let key = KeyPair::generate().map_err(|error| format!("cannot make a key: {error}"))?;
        let certificate = ca_params
            .self_signed(&key)
            .map_err(|error| format!("cannot sign the CA certificate: {error}"))?;
        write_private(&layout.ca_key, &key.serialize_pem())?;
        write_public(&layout.ca_cert, &certificate.pem())?;
        summary.push_str(&format!(
            "CA: wrote {} and its key {}\n",
            layout.ca_cert.display(),
            layout.ca_key.display()
        ));
        key
    };
    let issuer = Issuer::new(ca_params, ca_key);
    let settings = layout.settings();
    let mut nodes = Vec::new();
    for (region, node) in topology.nodes() {
        let mut names = vec![
            SanType::URI(ia5(&format!("{NODE_URI_PREFIX}{}", node.id))?),
            SanType::DnsName(ia5(&format!("node-{}.{}.dsss", node.id, region.id))?),
        ];
        let host = address_host(&node.address);
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => names.push(SanType::IpAddress(ip)),
            Err(_) => names.push(SanType::DnsName(ia5(host)?)),
        }
        let common_name = format!("dsss node {} of region {}", node.id, region.id);
        let cert = settings.node_cert_path(node.id);
        let key = settings.node_key_path(node.id);
        issue(&issuer, &common_name, names, true, &cert, &key)?;
        check(&settings.ca_cert, &cert, &key)?;
        nodes.push(node.id.to_string());
    }
    summary.push_str(&format!(
        "nodes {}: wrote {} and keys {} (mode 0600)\n",
        nodes.join(", "),
        settings.cert_dir.join("node-N.crt").display(),
        settings.cert_dir.join("node-N.key").display()
    ));
    // Applications and operators hold distinct roles: a client certificate cannot make admin
    // calls, nor an admin certificate calls of an application.
    let mut holders = vec![
        (
            "client".to_owned(),
            CLIENT_URI_PREFIX,
            settings.client_cert.clone(),
            settings.client_key.clone(),
        ),
        (
            "admin".to_owned(),
            ADMIN_URI_PREFIX,
            settings.admin_cert_path(),
            settings.admin_key_path(),
        ),
    ];
    for name in more_clients {
        holders.push((
            name.clone(),
            CLIENT_URI_PREFIX,
            settings.cert_dir.join(format!("client-{name}.crt")),
            settings.cert_dir.join(format!("client-{name}.key")),
        ));
    }
    for (name, prefix, cert, key) in holders {
        let names = vec![SanType::URI(ia5(&format!("{prefix}{name}"))?)];
        let common_name = format!("dsss {name}");
        issue(&issuer, &common_name, names, false, &cert, &key)?;
        check(&settings.ca_cert, &cert, &key)?;
        summary.push_str(&format!(
            "{name}: wrote {} and key {} (mode 0600)\n",
            cert.display(),
            key.display()
        ));
    }
    Ok(summary)
}

/// Sets the validity: from the start of last year, so that clocks a little behind still
/// accept the certificates, to [`VALIDITY_YEARS`] years after the start of this one.
fn set_validity(params: &mut CertificateParams) {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    // Close enough for a validity window: a year is 365.2425 days on average.
    let year = 1970 + i32::try_from(seconds / 31_556_952).unwrap_or(0);
    params.not_before = date_time_ymd(year - 1, 1, 1);
    params.not_after = date_time_ymd(year + VALIDITY_YEARS, 1, 1);
}

fn ca_params() -> Result<CertificateParams, String> {
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|error| format!("CA parameters: {error}"))?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params);
    Ok(params)
}

fn issue(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    names: Vec<SanType>,
    server: bool,
    cert: &Path,
    key: &Path,
) -> Result<(), String> {
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|error| format!("certificate parameters: {error}"))?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.subject_alt_names = names;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = if server {
        // Nodes serve and call other nodes with one certificate.
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    set_validity(&mut params);
    params.use_authority_key_identifier_extension = true;
    let key_pair = KeyPair::generate().map_err(|error| format!("cannot make a key: {error}"))?;
    let certificate = params
        .signed_by(&key_pair, issuer)
        .map_err(|error| format!("cannot sign {}: {error}", cert.display()))?;
    // The key first: a node that reloads between the two writes sees a key that does not
    // match its certificate, keeps its previous pair and tries again at the next handshake.
    write_private(key, &key_pair.serialize_pem())?;
    write_public(cert, &certificate.pem())
}

/// Loads the pair as a node or client will, so that a CA that does not match (an old ca.crt
/// beside a new ca.key) fails here, naming the file.
fn check(ca_cert: &Path, cert: &Path, key: &Path) -> Result<(), String> {
    Security::tls(TlsFiles {
        ca_cert: ca_cert.to_owned(),
        cert: cert.to_owned(),
        key: key.to_owned(),
    })
    .map(|_| ())
    .map_err(|error| format!("the written files do not work together: {error}"))
}

fn ia5(text: &str) -> Result<rcgen::string::Ia5String, String> {
    rcgen::string::Ia5String::try_from(text.to_owned())
        .map_err(|error| format!("{text:?} cannot go in a certificate: {error}"))
}

/// The host of a `host:port` address (brackets of an IPv6 address removed).
fn address_host(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Writes `contents` to `path` through a temporary file renamed over it, so that a node that
/// reloads never reads half a file.
fn write_atomically(path: &Path, contents: &str, mode: u32) -> Result<(), String> {
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.tmp"));
    let _ = fs::remove_file(&temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .map_err(|error| format!("cannot create {}: {error}", temporary.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| format!("cannot write {}: {error}", temporary.display()))?;
    // The mode given at creation is masked by the umask; set it exactly.
    fs::set_permissions(&temporary, fs::Permissions::from_mode(mode))
        .map_err(|error| format!("cannot set the mode of {}: {error}", temporary.display()))?;
    fs::rename(&temporary, path)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    write_atomically(path, contents, 0o600)
}

fn write_public(path: &Path, contents: &str) -> Result<(), String> {
    write_atomically(path, contents, 0o644)
}
