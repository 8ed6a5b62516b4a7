//! The identity of a data directory: which cluster, region and node it belongs to, written at
//! the node's first start and checked at every start after.
//!
//! A node's votes and log live in its data directory. Started on another node's directory (two
//! directories swapped), it would vote with the other node's term and vote; started on an
//! empty directory where its data should be (a volume that did not mount), it would form a
//! fresh member that forgot what it promised. Both are refused before any store opens:
//! - the file [`IDENTITY_FILE`] in the data directory names the cluster, region and node; a
//!   directory whose file names anything else is refused, naming each field that differs;
//! - a data directory that does not exist is a new node's: it is created and its identity
//!   written (`dsss up`, a new member);
//! - a data directory that exists but is empty is refused unless the operator says the node is
//!   new (`dsss node --initialize`): an empty mount point looks exactly like that;
//! - a directory with files but no identity file is a store of an earlier release: its identity
//!   is written, and checked from then on.
//!
//! The file is written whole to a temporary name, synced, and renamed, so a crash leaves the
//! old file or the new one. Deciding is [`decide`] (no IO); [`check_and_record`] does the IO.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The name of the identity file in a node's data directory.
pub const IDENTITY_FILE: &str = "DSSS_IDENTITY";

/// The most bytes an identity file may hold; anything longer is not one.
const IDENTITY_BYTES_MAX: u64 = 4_096;

/// The format of the identity file this release writes.
const IDENTITY_FORMAT: u32 = 1;

/// Which cluster, region and node a data directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataIdentity {
    /// The topology's cluster name.
    pub cluster: String,
    /// The node's region.
    pub region: String,
    /// The node's id.
    pub node_id: u64,
}

impl DataIdentity {
    fn encode(&self) -> String {
        format!(
            "# Which DSSS node this data directory belongs to; checked at every start.\n\
             format = {IDENTITY_FORMAT}\ncluster = {}\nregion = {}\nnode = {}\n",
            self.cluster, self.region, self.node_id
        )
    }

    fn decode(text: &str) -> Result<DataIdentity, String> {
        let mut fields = std::collections::BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: expected `key = value`", number + 1))?;
            fields.insert(key.trim().to_owned(), value.trim().to_owned());
        }
        let field = |name: &str| {
            fields
                .get(name)
                .cloned()
                .ok_or_else(|| format!("no `{name}` line"))
        };
        let format = field("format")?;
        if format != IDENTITY_FORMAT.to_string() {
            return Err(format!(
                "format {format} is not one this release reads ({IDENTITY_FORMAT})"
            ));
        }
        let cluster = field("cluster")?;
        let region = field("region")?;
        let node = field("node")?;
        Ok(DataIdentity {
            cluster,
            region,
            node_id: node
                .parse()
                .map_err(|_| format!("node {node:?} is not a node id"))?,
        })
    }
}

impl fmt::Display for DataIdentity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "node {} of region {} of cluster {}",
            self.node_id, self.region, self.cluster
        )
    }
}

/// What a start finds in its data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// No directory.
    Missing,
    /// A directory with nothing in it.
    Empty,
    /// Files, but no identity file: a store of an earlier release.
    Unmarked,
    /// An identity file, decoded or not.
    Marked(Result<DataIdentity, String>),
}

/// What to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The directory is this node's: start.
    Start,
    /// Write the identity (a new node, or a store of an earlier release), then start.
    Record,
}

/// Why a node refuses to start on its data directory.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The directory belongs to another node.
    #[error(
        "data directory {directory} belongs to {found}, not to {expected} ({differs}): is the \
         topology's data_dir for this node right, or were two directories swapped? A node that \
         started on another node's data would vote with that node's votes"
    )]
    Mismatch {
        /// The directory.
        directory: String,
        /// What its identity file names.
        found: Box<DataIdentity>,
        /// What this node is.
        expected: Box<DataIdentity>,
        /// The fields that differ.
        differs: String,
    },
    /// The directory exists and is empty, and nobody said the node is new.
    #[error(
        "data directory {directory} exists but is empty: if this node held data, check that its \
         volume is mounted (a node that starts on an empty directory forgets its votes and log); \
         if it is a new node, start it once with --initialize"
    )]
    EmptyDirectory {
        /// The directory.
        directory: String,
    },
    /// The identity file cannot be read or is not one.
    #[error("{path}: {problem}; it names the node this data directory belongs to")]
    Unreadable {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

/// Decides whether `expected` may start on a data directory at `directory` in which it found
/// `found`; `initialize` is the operator's word that the node is new.
pub fn decide(
    directory: &Path,
    found: Found,
    expected: &DataIdentity,
    initialize: bool,
) -> Result<Decision, IdentityError> {
    match found {
        Found::Missing | Found::Unmarked => Ok(Decision::Record),
        Found::Empty if initialize => Ok(Decision::Record),
        Found::Empty => Err(IdentityError::EmptyDirectory {
            directory: directory.display().to_string(),
        }),
        Found::Marked(Err(problem)) => Err(IdentityError::Unreadable {
            path: directory.join(IDENTITY_FILE).display().to_string(),
            problem,
        }),
        Found::Marked(Ok(found)) if found == *expected => Ok(Decision::Start),
        Found::Marked(Ok(found)) => {
            let mut differs = Vec::new();
            if found.cluster != expected.cluster {
                differs.push(format!(
                    "cluster {} is not {}",
                    found.cluster, expected.cluster
                ));
            }
            if found.region != expected.region {
                differs.push(format!(
                    "region {} is not {}",
                    found.region, expected.region
                ));
            }
            if found.node_id != expected.node_id {
                differs.push(format!(
                    "node {} is not {}",
                    found.node_id, expected.node_id
                ));
            }
            Err(IdentityError::Mismatch {
                directory: directory.display().to_string(),
                found: Box::new(found),
                expected: Box::new(expected.clone()),
                differs: differs.join(", "),
            })
        }
    }
}

/// Looks at `directory`: whether it exists, holds files, and what its identity file says.
pub fn inspect(directory: &Path) -> Result<Found, IdentityError> {
    let unreadable = |path: &Path, error: std::io::Error| IdentityError::Unreadable {
        path: path.display().to_string(),
        problem: error.to_string(),
    };
    let mut entries = match fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(error) => return Err(unreadable(directory, error)),
    };
    if entries.next().is_none() {
        return Ok(Found::Empty);
    }
    let path = directory.join(IDENTITY_FILE);
    let file = match fs::File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Unmarked),
        Err(error) => return Err(unreadable(&path, error)),
    };
    let mut text = String::new();
    use std::io::Read;
    let read = file
        .take(IDENTITY_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|error| unreadable(&path, error))?;
    if read as u64 > IDENTITY_BYTES_MAX {
        return Ok(Found::Marked(Err(format!(
            "longer than {IDENTITY_BYTES_MAX} bytes"
        ))));
    }
    Ok(Found::Marked(DataIdentity::decode(&text)))
}

/// Checks that `directory` is `expected`'s (see the module), creating it and writing its
/// identity when [`decide`] says so. Returns what it decided.
pub fn check_and_record(
    directory: &Path,
    expected: &DataIdentity,
    initialize: bool,
) -> Result<Decision, IdentityError> {
    let decision = decide(directory, inspect(directory)?, expected, initialize)?;
    if decision == Decision::Record {
        write(directory, expected).map_err(|error| IdentityError::Unreadable {
            path: directory.join(IDENTITY_FILE).display().to_string(),
            problem: format!("cannot write it: {error}"),
        })?;
    }
    Ok(decision)
}

fn write(directory: &Path, identity: &DataIdentity) -> std::io::Result<()> {
    fs::create_dir_all(directory)?;
    let temporary: PathBuf = directory.join(format!("{IDENTITY_FILE}.tmp"));
    let mut file = fs::File::create(&temporary)?;
    file.write_all(identity.encode().as_bytes())?;
    file.sync_all()?;
    fs::rename(&temporary, directory.join(IDENTITY_FILE))?;
    // The rename is durable once the directory is synced.
    fs::File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(node_id: u64) -> DataIdentity {
        DataIdentity {
            cluster: "local".to_owned(),
            region: "local-a".to_owned(),
            node_id,
        }
    }

    #[test]
    fn a_new_directory_is_marked_and_checked_at_every_start_after() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let directory = root.path().join("node-11");
        assert_eq!(
            check_and_record(&directory, &node(11), false),
            Ok(Decision::Record)
        );
        assert_eq!(
            check_and_record(&directory, &node(11), false),
            Ok(Decision::Start)
        );
        let error = check_and_record(&directory, &node(12), false).expect_err("node 11's data");
        let message = error.to_string();
        assert!(
            message.contains("belongs to node 11") && message.contains("node 11 is not 12"),
            "{message}"
        );
        let mut other_cluster = node(11);
        other_cluster.cluster = "prod".to_owned();
        let message = check_and_record(&directory, &other_cluster, true)
            .expect_err("--initialize never overrides a mismatch")
            .to_string();
        assert!(message.contains("cluster local is not prod"), "{message}");
    }

    #[test]
    fn an_empty_directory_starts_only_when_the_node_is_said_to_be_new() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let message = check_and_record(root.path(), &node(11), false)
            .expect_err("an empty directory")
            .to_string();
        assert!(
            message.contains("exists but is empty") && message.contains("--initialize"),
            "{message}"
        );
        assert_eq!(
            check_and_record(root.path(), &node(11), true),
            Ok(Decision::Record)
        );
        assert_eq!(
            check_and_record(root.path(), &node(11), false),
            Ok(Decision::Start)
        );
    }

    #[test]
    fn a_store_of_an_earlier_release_is_marked_and_a_broken_file_is_named() {
        let root = tempfile::tempdir().expect("a temporary directory");
        fs::write(root.path().join("CURRENT"), "MANIFEST-000001\n").expect("write");
        assert_eq!(
            check_and_record(root.path(), &node(11), false),
            Ok(Decision::Record)
        );
        assert_eq!(inspect(root.path()), Ok(Found::Marked(Ok(node(11)))));
        for (text, problem) in [
            ("format = 1\ncluster = local\n", "no `region` line"),
            ("format = 9\n", "format 9"),
            ("just words\n", "line 1"),
            (
                "format = 1\ncluster = a\nregion = b\nnode = x\n",
                "not a node id",
            ),
        ] {
            fs::write(root.path().join(IDENTITY_FILE), text).expect("write");
            let message = check_and_record(root.path(), &node(11), false)
                .expect_err("not an identity")
                .to_string();
            assert!(
                message.contains(IDENTITY_FILE) && message.contains(problem),
                "{text:?}: {message}"
            );
        }
        fs::write(root.path().join(IDENTITY_FILE), "x".repeat(5_000)).expect("write");
        assert!(
            check_and_record(root.path(), &node(11), false)
                .expect_err("too long")
                .to_string()
                .contains("longer than")
        );
    }
}
