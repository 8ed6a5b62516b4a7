//! The etcd half of `dsss bench region --against-etcd`: a three-member etcd cluster on loopback
//! and the clients that put records into it.
//!
//! Each member is an `etcd` child process (etcd 3.4, as Debian's `etcd-server` package installs
//! it) with its own data directory in the benchmark's temporary directory, its client and peer
//! URLs on free loopback ports, and etcd's defaults for everything else, so its write-ahead log
//! is synced on every commit as in a production etcd. The clients call etcd's own gRPC API
//! (`etcdserverpb.KV/Put`) with the messages of `proto/etcdserverpb/rpc.proto`, over the same
//! kind of tonic channels as the DSSS clients, and are sent to the leader: a follower forwards
//! each proposal to the leader, one more hop than a DSSS client to its region's leader makes.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dsss_wire::tls::Security;
use tonic::transport::{Channel, Endpoint};

use self::proto::kv_client::KvClient;
use self::proto::maintenance_client::MaintenanceClient;
use self::proto::{PutRequest, StatusRequest};

/// The messages and client of the part of etcd's API the benchmark calls, generated from
/// `proto/etcdserverpb/rpc.proto`.
pub(crate) mod proto {
    // Generated code: lints that the hand-written code follows do not apply to it.
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}

/// The Debian and Ubuntu package that installs the `etcd` server binary.
pub(crate) const ETCD_PACKAGE: &str = "etcd-server";

/// The members of the benchmark's etcd cluster.
const MEMBERS: usize = 3;

/// The longest wait for the cluster to elect a leader.
const LEADER_WAIT_MAX: Duration = Duration::from_secs(60);

/// The longest wait for one Status call while looking for the leader.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest wait for one put before the level fails.
const PUT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest wait for `etcd --version`.
const VERSION_WAIT_MAX: Duration = Duration::from_secs(10);

/// The longest wait for a member to exit after SIGTERM before it is killed.
const STOP_WAIT_MAX: Duration = Duration::from_secs(10);

/// How many lines of a member's log an error shows.
const LOG_TAIL_LINES: usize = 20;

/// The longest wait for a connection to the leader.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `etcd` binary to run: `explicit` when given, else the first `etcd` on the `PATH`; an
/// error naming the package to install when there is none.
pub(crate) fn find_binary(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let install = format!(
        "install etcd 3.4 from the distribution's `{ETCD_PACKAGE}` package (`apt-get install \
         {ETCD_PACKAGE}` on Debian and Ubuntu) or point --etcd-binary at an etcd binary"
    );
    match explicit {
        Some(path) if path.is_file() => Ok(path.to_path_buf()),
        Some(path) => Err(format!("no etcd binary at {}: {install}", path.display())),
        None => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .map(|directory| directory.join("etcd"))
                .find(|candidate| candidate.is_file())
                .ok_or_else(|| format!("etcd was not found on the PATH: {install}"))
        }
    }
}

/// The version `binary --version` reports (`3.4.23`), or an error when it does not run.
pub(crate) fn version(binary: &Path) -> Result<String, String> {
    let mut child = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| format!("cannot run {} --version: {error}", binary.display()))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < VERSION_WAIT_MAX => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} --version did not exit within {} s",
                    binary.display(),
                    VERSION_WAIT_MAX.as_secs()
                ));
            }
            Err(error) => return Err(format!("waiting for {}: {error}", binary.display())),
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|error| format!("reading {} --version: {error}", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_version(&text).ok_or_else(|| {
        format!(
            "{} --version did not print an etcd version (is it etcd?): {:?}",
            binary.display(),
            text.lines().next().unwrap_or("")
        )
    })
}

/// The version in the output of `etcd --version` (its line `etcd Version: 3.4.23`).
fn parse_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("etcd Version:"))
        .map(|version| version.trim().to_owned())
        .filter(|version| !version.is_empty())
}

/// One member of the benchmark's etcd cluster.
struct Member {
    name: String,
    client_url: String,
    log: PathBuf,
    child: Child,
}

/// The benchmark's etcd cluster: three child processes, killed when the value drops.
pub(crate) struct EtcdCluster {
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts three members of a new cluster with `binary`, their data directories and logs in
    /// `directory`.
    pub(crate) fn start(
        binary: &Path,
        directory: &Path,
        free_port: impl Fn() -> Result<u16, String>,
    ) -> Result<EtcdCluster, String> {
        let mut urls = Vec::new();
        for index in 1..=MEMBERS {
            let client_url = format!("http://127.0.0.1:{}", free_port()?);
            let peer_url = format!("http://127.0.0.1:{}", free_port()?);
            urls.push((format!("etcd-{index}"), client_url, peer_url));
        }
        let initial_cluster = initial_cluster(&urls);
        let mut cluster = EtcdCluster {
            members: Vec::new(),
        };
        for (name, client_url, peer_url) in urls {
            let log = directory.join(format!("{name}.log"));
            let log_file = File::create(&log)
                .map_err(|error| format!("cannot create {}: {error}", log.display()))?;
            let log_copy = log_file
                .try_clone()
                .map_err(|error| format!("cannot share {}: {error}", log.display()))?;
            let child = Command::new(binary)
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(directory.join(format!("{name}.data")))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial_cluster])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "dsss-bench"])
                .args(["--logger", "zap", "--log-outputs", "stderr"])
                .current_dir(directory)
                .stdin(Stdio::null())
                .stdout(log_copy)
                .stderr(log_file)
                .spawn()
                .map_err(|error| {
                    format!("cannot start {} ({}): {error}", name, binary.display())
                })?;
            cluster.members.push(Member {
                name,
                client_url,
                log,
                child,
            });
        }
        Ok(cluster)
    }

    /// The process ids of the members.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .map(|member| member.child.id())
            .collect()
    }

    /// The name (`etcd-2`) and client URL of member `index`.
    pub(crate) fn member(&self, index: usize) -> (&str, &str) {
        let member = &self.members[index];
        (&member.name, &member.client_url)
    }

    /// Waits until a member says it is the leader and returns its index; fails when a member
    /// exits or no leader is elected within a minute (the caller then shows
    /// [`EtcdCluster::log_tails`]).
    pub(crate) async fn wait_for_leader(&mut self) -> Result<usize, String> {
        let mut clients = Vec::new();
        for member in &self.members {
            let endpoint = endpoint(&member.client_url)?;
            clients.push(MaintenanceClient::new(
                Security::Plaintext.connect_lazy(endpoint),
            ));
        }
        let started = Instant::now();
        while started.elapsed() < LEADER_WAIT_MAX {
            let exited = self
                .members
                .iter_mut()
                .find_map(|member| match member.child.try_wait() {
                    Ok(Some(status)) => Some((member.name.clone(), status)),
                    _ => None,
                });
            if let Some((name, status)) = exited {
                return Err(format!("etcd member {name} exited with {status}"));
            }
            for (index, client) in clients.iter_mut().enumerate() {
                let reply =
                    tokio::time::timeout(STATUS_TIMEOUT, client.status(StatusRequest {})).await;
                if let Ok(Ok(reply)) = reply {
                    let status = reply.into_inner();
                    let member_id = status.header.map_or(0, |header| header.member_id);
                    if status.leader != 0 && status.leader == member_id {
                        return Ok(index);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "the etcd cluster elected no leader within {} s",
            LEADER_WAIT_MAX.as_secs()
        ))
    }

    /// Stops every member with SIGTERM (SIGKILL after ten seconds) and waits for it. etcd ends
    /// itself with the signal once it has shut down, so how a member exited is not checked.
    pub(crate) fn stop(&mut self) -> Result<(), String> {
        let mut problems = Vec::new();
        for member in &mut self.members {
            let _ = Command::new("kill")
                .args(["-TERM", &member.child.id().to_string()])
                .status();
        }
        let started = Instant::now();
        for member in &mut self.members {
            loop {
                match member.child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if started.elapsed() < STOP_WAIT_MAX => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Ok(None) => {
                        problems.push(format!(
                            "etcd member {} did not stop within {} s of SIGTERM and was killed",
                            member.name,
                            STOP_WAIT_MAX.as_secs()
                        ));
                        let _ = member.child.kill();
                        let _ = member.child.wait();
                        break;
                    }
                    Err(error) => {
                        problems.push(format!("waiting for {}: {error}", member.name));
                        break;
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The last lines of every member's log, each under a line naming the member and file.
    pub(crate) fn log_tails(&self) -> String {
        let mut text = String::new();
        for member in &self.members {
            let log = fs::read_to_string(&member.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            text.push_str(&format!(
                "--- {} ({})\n{}\n",
                member.name,
                member.log.display(),
                tail.join("\n")
            ));
        }
        text
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            let _ = member.child.kill();
            let _ = member.child.wait();
        }
    }
}

/// The `--initial-cluster` value: `name=peer_url` for every member, comma separated.
fn initial_cluster(urls: &[(String, String, String)]) -> String {
    urls.iter()
        .map(|(name, _, peer_url)| format!("{name}={peer_url}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// An endpoint for `url` set up like the DSSS client's (`dsss::region_client`): TCP_NODELAY,
/// a bounded connect, and the keepalive of `Security::connect_lazy`.
fn endpoint(url: &str) -> Result<Endpoint, String> {
    Endpoint::from_shared(url.to_owned())
        .map(|endpoint| endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true))
        .map_err(|error| format!("etcd client URL {url}: {error}"))
}

/// `count` channels to the etcd member at `client_url`, each its own HTTP/2 connection,
/// connected now.
pub(crate) async fn connect(client_url: &str, count: usize) -> Result<Vec<Channel>, String> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        let channel = Security::Plaintext
            .connect(endpoint(client_url)?)
            .await
            .map_err(|error| format!("cannot connect to etcd at {client_url}: {error}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// One closed-loop etcd client: it puts the same key with the same value again and again.
pub(crate) struct EtcdPutter {
    client: KvClient<Channel>,
    request: PutRequest,
}

impl EtcdPutter {
    /// A client putting `value` under `key` over `channel`.
    pub(crate) fn new(channel: Channel, key: String, value: Vec<u8>) -> EtcdPutter {
        EtcdPutter {
            client: KvClient::new(channel),
            request: PutRequest {
                key: key.into_bytes(),
                value,
                ..PutRequest::default()
            },
        }
    }

    /// Puts the record once and waits until etcd acknowledges it (committed and applied).
    pub(crate) async fn put(&mut self) -> Result<(), String> {
        let mut request = tonic::Request::new(self.request.clone());
        request.set_timeout(PUT_TIMEOUT);
        match tokio::time::timeout(PUT_TIMEOUT, self.client.put(request)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(format!(
                "etcd put of {}: {:?}: {}",
                String::from_utf8_lossy(&self.request.key),
                status.code(),
                status.message()
            )),
            Err(_) => Err(format!(
                "etcd put of {} took more than {} s",
                String::from_utf8_lossy(&self.request.key),
                PUT_TIMEOUT.as_secs()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_line_of_etcd_is_read() {
        let text = "etcd Version: 3.4.23\nGit SHA: Not provided\nGo Version: go1.19.8\n";
        assert_eq!(parse_version(text), Some("3.4.23".to_owned()));
        assert_eq!(parse_version("Usage: something else"), None);
        assert_eq!(parse_version("etcd Version:  \n"), None);
    }

    #[test]
    fn the_initial_cluster_names_every_peer_url() {
        let urls = vec![
            ("etcd-1".to_owned(), "c1".to_owned(), "http://p1".to_owned()),
            ("etcd-2".to_owned(), "c2".to_owned(), "http://p2".to_owned()),
        ];
        assert_eq!(initial_cluster(&urls), "etcd-1=http://p1,etcd-2=http://p2");
    }

    #[test]
    fn a_missing_binary_is_named_with_the_package_to_install() {
        let error = find_binary(Some(Path::new("/nonexistent/etcd"))).expect_err("missing");
        assert!(error.contains("/nonexistent/etcd"), "{error}");
        assert!(error.contains(ETCD_PACKAGE), "{error}");
    }
}
