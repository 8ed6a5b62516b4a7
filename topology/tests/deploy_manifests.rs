//! The deployment material in `deploy/` (deploy/README.md) agrees with DSSS and with itself:
//! - every Kubernetes manifest parses, names itself and lives in the cluster's namespace;
//! - per region of the topology in the ConfigMap: one StatefulSet with one pod per node, a
//!   headless Service and a disruption budget; the node id each pod computes from its ordinal
//!   is a node of that region, listed at the pod's DNS name and container port; the probes
//!   ask the node's metrics port; the pod sees the topology and its certificates at the paths
//!   the command and the topology's `[tls]` name;
//! - the three-host topology parses and places one node of every region on every host;
//! - the systemd unit runs `dsss node` for the node of its instance.
//!
//! `metrics_listen` lines are removed and a topology parsed again only when the parser refuses
//! nothing but `metrics_listen` keys as unknown (see [`parse_topology`]): on a tree whose
//! parser takes the key, every topology here is parsed exactly as written.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use dsss_topology::{Region, Topology, parse};
use serde::Deserialize;
use serde_yaml::Value;

/// The key of the ConfigMap that holds the topology.
const TOPOLOGY_KEY: &str = "topology.toml";

/// The pod label that names a pod's region.
const REGION_LABEL: &str = "dsss-region";

/// The suffix of a pod's DNS name under its headless Service: `<pod>.<service>.<namespace>`
/// followed by this (the default cluster domain).
const CLUSTER_DOMAIN_SUFFIX: &str = "svc.cluster.local";

/// The name of the container port that carries gRPC.
const GRPC_PORT_NAME: &str = "grpc";

/// The name of the container port that serves `/metrics`, `/healthz` and `/readyz`.
const METRICS_PORT_NAME: &str = "metrics";

/// The repository's `deploy/` directory.
fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Topologies

/// Parses a topology as written. When the parser refuses nothing but `metrics_listen` keys as
/// unknown, parses it again without the lines that set them, and says so on standard error.
fn parse_topology(source_name: &str, text: &str) -> Topology {
    let diagnostics = match parse(source_name, text) {
        Ok(topology) => return topology,
        Err(diagnostics) => diagnostics,
    };
    let only_metrics_listen_unknown = diagnostics.omitted_count() == 0
        && diagnostics.iter().all(|diagnostic| {
            diagnostic.field_path.ends_with(".metrics_listen")
                && diagnostic.message.starts_with("unknown key")
        });
    assert!(
        only_metrics_listen_unknown,
        "{source_name} is not a valid topology:\n{diagnostics}"
    );
    let without_metrics_listen: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("metrics_listen"))
        .map(|line| format!("{line}\n"))
        .collect();
    match parse(source_name, &without_metrics_listen) {
        Ok(topology) => {
            eprintln!(
                "{source_name}: this parser does not take metrics_listen; checked without it"
            );
            topology
        }
        Err(diagnostics) => panic!(
            "{source_name} is not a valid topology even without its metrics_listen lines:\n\
             {diagnostics}"
        ),
    }
}

/// The `metrics_listen` address of every node, by node id, read from the TOML itself so that
/// the check does not depend on the parser taking the key.
fn metrics_listen_by_node(source_name: &str, text: &str) -> BTreeMap<u64, String> {
    let document: toml::Table = text
        .parse()
        .unwrap_or_else(|error| panic!("{source_name}: not TOML: {error}"));
    let mut addresses = BTreeMap::new();
    let regions = document
        .get("regions")
        .and_then(toml::Value::as_array)
        .unwrap_or_else(|| panic!("{source_name}: no [[regions]]"));
    for region in regions {
        let nodes = region
            .get("nodes")
            .and_then(toml::Value::as_array)
            .unwrap_or_else(|| panic!("{source_name}: a region without nodes"));
        for node in nodes {
            let id = node
                .get("id")
                .and_then(toml::Value::as_integer)
                .and_then(|id| u64::try_from(id).ok())
                .unwrap_or_else(|| panic!("{source_name}: a node without an id"));
            let address = node
                .get("metrics_listen")
                .and_then(toml::Value::as_str)
                .unwrap_or_else(|| panic!("{source_name}: node {id} has no metrics_listen"));
            addresses.insert(id, address.to_owned());
        }
    }
    addresses
}

/// The host of a `host:port` address.
fn host_of(address: &str) -> &str {
    address
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{address:?} is not host:port"))
        .0
}

/// The port of a `host:port` address.
fn port_of(address: &str) -> u16 {
    let (_, port) = address
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{address:?} is not host:port"));
    port.parse()
        .unwrap_or_else(|_| panic!("{address:?} has no valid port"))
}

fn node_ids(region: &Region) -> BTreeSet<u64> {
    region.nodes.iter().map(|node| node.id).collect()
}

// ---------------------------------------------------------------------------------------------
// YAML

/// One document of a manifest file.
struct Manifest {
    /// The file, relative to `deploy/`.
    file: String,
    value: Value,
}

impl Manifest {
    fn kind(&self) -> &str {
        text(&self.value, &["kind"], &self.file)
    }

    fn name(&self) -> &str {
        text(&self.value, &["metadata", "name"], &self.file)
    }

    /// `Kind name (file)`, for messages.
    fn describe(&self) -> String {
        format!("{} {} ({})", self.kind(), self.name(), self.file)
    }
}

/// Every `*.yaml` file under `directory`, in subdirectories too, sorted.
fn yaml_files(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_owned()];
    while let Some(directory) = pending.pop() {
        let entries = fs::read_dir(&directory)
            .unwrap_or_else(|error| panic!("cannot list {}: {error}", directory.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|extension| extension == "yaml")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Every document of every manifest under `deploy/kubernetes/`. Empty documents (a trailing
/// `---`) are skipped; a file without any document is an error.
fn kubernetes_manifests() -> Vec<Manifest> {
    let deploy = deploy_dir();
    let files = yaml_files(&deploy.join("kubernetes"));
    assert!(!files.is_empty(), "no manifests in deploy/kubernetes/");
    let mut manifests = Vec::new();
    for path in files {
        let file = path
            .strip_prefix(&deploy)
            .unwrap_or(&path)
            .display()
            .to_string();
        let text = read(&path);
        let documents_before = manifests.len();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{file}: not valid YAML: {error}"));
            if !value.is_null() {
                manifests.push(Manifest {
                    file: file.clone(),
                    value,
                });
            }
        }
        assert!(
            manifests.len() > documents_before,
            "{file} holds no document"
        );
    }
    manifests
}

/// The value at `keys` (mapping keys from `value` down), or a panic naming what is missing.
fn field<'v>(value: &'v Value, keys: &[&str], context: &str) -> &'v Value {
    let mut current = value;
    for (depth, key) in keys.iter().enumerate() {
        current = current
            .get(key)
            .unwrap_or_else(|| panic!("{context}: no {}", keys[..=depth].join(".")));
    }
    current
}

fn text<'v>(value: &'v Value, keys: &[&str], context: &str) -> &'v str {
    field(value, keys, context)
        .as_str()
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| panic!("{context}: {} is not a non-empty string", keys.join(".")))
}

fn sequence<'v>(value: &'v Value, keys: &[&str], context: &str) -> &'v [Value] {
    field(value, keys, context)
        .as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("{context}: {} is not a list", keys.join(".")))
}

fn number(value: &Value, keys: &[&str], context: &str) -> u64 {
    field(value, keys, context)
        .as_u64()
        .unwrap_or_else(|| panic!("{context}: {} is not a whole number", keys.join(".")))
}

/// A mapping of strings to strings (labels, selectors).
fn string_map(value: &Value, keys: &[&str], context: &str) -> BTreeMap<String, String> {
    let mapping = field(value, keys, context)
        .as_mapping()
        .unwrap_or_else(|| panic!("{context}: {} is not a mapping", keys.join(".")));
    mapping
        .iter()
        .map(|(key, value)| {
            let key = key.as_str();
            let value = value.as_str();
            match (key, value) {
                (Some(key), Some(value)) => (key.to_owned(), value.to_owned()),
                _ => panic!(
                    "{context}: {} holds a value that is not a string",
                    keys.join(".")
                ),
            }
        })
        .collect()
}

/// True when every label the selector asks for is on the object.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
}

/// The number of a container port, given as a number or by its name.
fn container_port(container: &Value, port: &Value, context: &str) -> u16 {
    if let Some(number) = port.as_u64() {
        return u16::try_from(number).unwrap_or_else(|_| panic!("{context}: port {number}"));
    }
    let name = port
        .as_str()
        .unwrap_or_else(|| panic!("{context}: a port that is neither a number nor a name"));
    let number = sequence(container, &["ports"], context)
        .iter()
        .find(|entry| entry.get("name").and_then(Value::as_str) == Some(name))
        .map(|entry| number(entry, &["containerPort"], context))
        .unwrap_or_else(|| panic!("{context}: the container has no port named {name:?}"));
    u16::try_from(number).unwrap_or_else(|_| panic!("{context}: port {number}"))
}

/// The one container of a pod spec.
fn only_container<'v>(pod_spec: &'v Value, context: &str) -> &'v Value {
    let containers = sequence(pod_spec, &["containers"], context);
    assert_eq!(containers.len(), 1, "{context}: expected one container");
    &containers[0]
}

// ---------------------------------------------------------------------------------------------
// What a container sees

/// Where a file in a container comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FileSource {
    ConfigMap { name: String, key: String },
    Secret { name: String, key: String },
}

/// The files of one ConfigMap or Secret volume source, by path relative to the volume root.
/// The items must be listed: only then are the files known without the object itself.
fn source_files(
    source: &Value,
    secret: bool,
    name: &str,
    context: &str,
) -> Vec<(PathBuf, FileSource)> {
    let items = sequence(source, &["items"], context);
    items
        .iter()
        .map(|item| {
            let key = text(item, &["key"], context).to_owned();
            let path = PathBuf::from(text(item, &["path"], context));
            let file = if secret {
                FileSource::Secret {
                    name: name.to_owned(),
                    key,
                }
            } else {
                FileSource::ConfigMap {
                    name: name.to_owned(),
                    key,
                }
            };
            (path, file)
        })
        .collect()
}

/// Every file a container sees through its ConfigMap, Secret and projected volumes, by path in
/// the container.
fn mounted_files(
    pod_spec: &Value,
    container: &Value,
    context: &str,
) -> BTreeMap<PathBuf, FileSource> {
    let volumes = sequence(pod_spec, &["volumes"], context);
    let mut files = BTreeMap::new();
    for mount in sequence(container, &["volumeMounts"], context) {
        let volume_name = text(mount, &["name"], context);
        let mount_path = Path::new(text(mount, &["mountPath"], context));
        let Some(volume) = volumes
            .iter()
            .find(|volume| volume.get("name").and_then(Value::as_str) == Some(volume_name))
        else {
            // A volume claim template's volume (data) carries no listed files.
            continue;
        };
        let mut volume_files = Vec::new();
        if let Some(config_map) = volume.get("configMap") {
            let name = text(config_map, &["name"], context);
            volume_files.extend(source_files(config_map, false, name, context));
        }
        if let Some(secret) = volume.get("secret") {
            let name = text(secret, &["secretName"], context);
            volume_files.extend(source_files(secret, true, name, context));
        }
        if let Some(projected) = volume.get("projected") {
            for source in sequence(projected, &["sources"], context) {
                if let Some(config_map) = source.get("configMap") {
                    let name = text(config_map, &["name"], context);
                    volume_files.extend(source_files(config_map, false, name, context));
                }
                if let Some(secret) = source.get("secret") {
                    let name = text(secret, &["name"], context);
                    volume_files.extend(source_files(secret, true, name, context));
                }
            }
        }
        let sub_path = mount.get("subPath").and_then(Value::as_str).map(Path::new);
        for (path, file) in volume_files {
            let in_container = match sub_path {
                None => mount_path.join(&path),
                Some(sub_path) if path == sub_path => mount_path.to_owned(),
                Some(sub_path) => match path.strip_prefix(sub_path) {
                    Ok(rest) => mount_path.join(rest),
                    Err(_) => continue,
                },
            };
            files.insert(in_container, file);
        }
    }
    files
}

/// The mount path of the volume claim template `claim` in the container.
fn claim_mount_path<'v>(container: &'v Value, claim: &str, context: &str) -> &'v Path {
    sequence(container, &["volumeMounts"], context)
        .iter()
        .find(|mount| mount.get("name").and_then(Value::as_str) == Some(claim))
        .map(|mount| Path::new(text(mount, &["mountPath"], context)))
        .unwrap_or_else(|| panic!("{context}: the volume claim {claim} is not mounted"))
}

/// The words of a shell command line: split at blanks outside double quotes, quotes removed.
/// Enough for the one `dsss node` line of a start script, which uses no other quoting.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for character in line.chars() {
        match character {
            '"' => quoted = !quoted,
            blank if blank.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            other => word.push(other),
        }
    }
    assert!(!quoted, "an unclosed double quote in: {line}");
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// What a node container's start command says.
struct NodeCommand {
    /// `--topology`.
    topology: PathBuf,
    /// The `N` of `--id "$((N + ordinal))"`: the id of pod 0.
    first_id: u64,
    /// `--data-dir`.
    data_dir: PathBuf,
}

/// Reads a node container's `sh -c` script: the ordinal comes from the pod's name (the
/// downward API's metadata.name in POD_NAME), and the `dsss node` line, run with `exec` so
/// that the node receives the pod's SIGTERM, computes its id from the ordinal.
fn node_command(container: &Value, context: &str) -> NodeCommand {
    let words: Vec<&str> = ["command", "args"]
        .into_iter()
        .filter_map(|key| container.get(key))
        .flat_map(|list| {
            list.as_sequence()
                .unwrap_or_else(|| panic!("{context}: command and args must be lists"))
        })
        .map(|word| {
            word.as_str()
                .unwrap_or_else(|| panic!("{context}: a command word is not a string"))
        })
        .collect();
    assert!(
        words.len() == 3 && words[0] == "sh" && words[1] == "-c",
        "{context}: the command is not [sh, -c, script]: {words:?}"
    );
    let script = words[2];
    let pod_name_from_metadata = sequence(container, &["env"], context).iter().any(|entry| {
        entry.get("name").and_then(Value::as_str) == Some("POD_NAME")
            && entry
                .get("valueFrom")
                .and_then(|from| from.get("fieldRef"))
                .and_then(|reference| reference.get("fieldPath"))
                .and_then(Value::as_str)
                == Some("metadata.name")
    });
    assert!(
        pod_name_from_metadata,
        "{context}: POD_NAME is not the pod's metadata.name"
    );
    assert!(
        script
            .lines()
            .any(|line| line.trim() == r#"ordinal="${POD_NAME##*-}""#),
        "{context}: the script does not take the ordinal from POD_NAME:\n{script}"
    );
    let node_lines: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|line| line.contains("dsss node"))
        .collect();
    assert_eq!(
        node_lines.len(),
        1,
        "{context}: expected one `dsss node` line in:\n{script}"
    );
    let node_line = node_lines[0];
    assert!(
        node_line.starts_with("exec dsss node "),
        "{context}: the node does not replace the shell (exec), so SIGTERM would not reach \
         it: {node_line}"
    );
    let arguments = shell_words(node_line);
    let flag = |name: &str| -> &str {
        let position = arguments
            .iter()
            .position(|argument| argument == name)
            .unwrap_or_else(|| panic!("{context}: no {name} in {node_line}"));
        arguments
            .get(position + 1)
            .unwrap_or_else(|| panic!("{context}: {name} without a value in {node_line}"))
    };
    let id = flag("--id");
    let first_id = id
        .strip_prefix("$((")
        .and_then(|rest| rest.strip_suffix("))"))
        .and_then(|sum| sum.split_once('+'))
        .filter(|(_, ordinal)| ordinal.trim() == "ordinal")
        .and_then(|(first_id, _)| first_id.trim().parse().ok())
        .unwrap_or_else(|| panic!("{context}: --id {id} is not $((N + ordinal))"));
    NodeCommand {
        topology: PathBuf::from(flag("--topology")),
        first_id,
        data_dir: PathBuf::from(flag("--data-dir")),
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

#[test]
fn every_kubernetes_manifest_parses_and_names_itself() {
    let manifests = kubernetes_manifests();
    for manifest in &manifests {
        for keys in [&["apiVersion"][..], &["kind"], &["metadata", "name"]] {
            text(&manifest.value, keys, &manifest.file);
        }
    }
    let namespaces: Vec<&Manifest> = manifests
        .iter()
        .filter(|manifest| manifest.kind() == "Namespace")
        .collect();
    assert_eq!(namespaces.len(), 1, "expected one Namespace");
    let namespace = namespaces[0].name();
    for manifest in manifests
        .iter()
        .filter(|manifest| manifest.kind() != "Namespace")
    {
        assert_eq!(
            text(
                &manifest.value,
                &["metadata", "namespace"],
                &manifest.describe()
            ),
            namespace,
            "{} is not in the namespace {namespace}",
            manifest.describe()
        );
    }
}

/// The ConfigMap that holds the topology, with the topology's text.
fn topology_config_map(manifests: &[Manifest]) -> (&Manifest, &str) {
    let holders: Vec<&Manifest> = manifests
        .iter()
        .filter(|manifest| {
            manifest.kind() == "ConfigMap"
                && manifest
                    .value
                    .get("data")
                    .and_then(|data| data.get(TOPOLOGY_KEY))
                    .is_some()
        })
        .collect();
    assert_eq!(
        holders.len(),
        1,
        "expected one ConfigMap with the key {TOPOLOGY_KEY}"
    );
    let config_map = holders[0];
    let text = text(&config_map.value, &["data", TOPOLOGY_KEY], &config_map.file);
    (config_map, text)
}

#[test]
fn kubernetes_regions_match_the_topology_in_the_config_map() {
    let manifests = kubernetes_manifests();
    let (config_map, topology_text) = topology_config_map(&manifests);
    let source_name = format!("{} ({TOPOLOGY_KEY})", config_map.file);
    let topology = parse_topology(&source_name, topology_text);
    let metrics_listen = metrics_listen_by_node(&source_name, topology_text);
    let tls = topology
        .tls
        .as_ref()
        .unwrap_or_else(|| panic!("{source_name}: no [tls]: the pods run mutual TLS"));
    let of_kind = |kind: &str| -> Vec<&Manifest> {
        manifests
            .iter()
            .filter(|manifest| manifest.kind() == kind)
            .collect()
    };
    let stateful_sets = of_kind("StatefulSet");
    let services = of_kind("Service");
    let budgets = of_kind("PodDisruptionBudget");
    assert_eq!(
        stateful_sets.len(),
        topology.regions.len(),
        "expected one StatefulSet per region of the topology"
    );
    let mut coordinator_regions = BTreeSet::new();
    for replica in &topology.coordinator.replicas {
        let region = topology.region_of(*replica).expect("a replica is a node");
        assert!(
            coordinator_regions.insert(region.id.clone()),
            "{source_name}: two coordinator replicas in region {}",
            region.id
        );
    }

    for region in &topology.regions {
        let matching: Vec<&&Manifest> = stateful_sets
            .iter()
            .filter(|set| {
                set.value
                    .get("spec")
                    .and_then(|spec| spec.get("template"))
                    .and_then(|template| template.get("metadata"))
                    .and_then(|metadata| metadata.get("labels"))
                    .and_then(|labels| labels.get(REGION_LABEL))
                    .and_then(Value::as_str)
                    == Some(region.id.as_str())
            })
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "expected one StatefulSet whose pods carry {REGION_LABEL}: {}",
            region.id
        );
        let set = matching[0];
        let context = set.describe();
        let set_name = set.name();
        let namespace = text(&set.value, &["metadata", "namespace"], &context);
        let spec = field(&set.value, &["spec"], &context);
        let pod_labels = string_map(spec, &["template", "metadata", "labels"], &context);
        let pod_spec = field(spec, &["template", "spec"], &context);
        let container = only_container(pod_spec, &context);

        assert_eq!(
            number(spec, &["replicas"], &context),
            region.nodes.len() as u64,
            "{context}: one pod per node of region {}",
            region.id
        );
        assert_eq!(
            text(spec, &["podManagementPolicy"], &context),
            "Parallel",
            "{context}: the region's nodes must start together to form their group"
        );
        assert!(
            selects(
                &string_map(spec, &["selector", "matchLabels"], &context),
                &pod_labels
            ),
            "{context}: the selector does not select the pod template"
        );
        number(pod_spec, &["terminationGracePeriodSeconds"], &context);

        // The pods of one region on distinct Kubernetes nodes.
        let spread = sequence(
            pod_spec,
            &[
                "affinity",
                "podAntiAffinity",
                "requiredDuringSchedulingIgnoredDuringExecution",
            ],
            &context,
        )
        .iter()
        .any(|term| {
            term.get("topologyKey").and_then(Value::as_str) == Some("kubernetes.io/hostname")
                && string_map(term, &["labelSelector", "matchLabels"], &context).get(REGION_LABEL)
                    == Some(&region.id)
                && selects(
                    &string_map(term, &["labelSelector", "matchLabels"], &context),
                    &pod_labels,
                )
        });
        assert!(
            spread,
            "{context}: no required anti-affinity of the region's pods per kubernetes.io/hostname"
        );

        // The headless Service that gives the pods their names.
        let service_name = text(spec, &["serviceName"], &context);
        let service = services
            .iter()
            .find(|service| service.name() == service_name)
            .unwrap_or_else(|| panic!("{context}: no Service {service_name}"));
        let service_context = service.describe();
        assert_eq!(
            text(&service.value, &["metadata", "namespace"], &service_context),
            namespace
        );
        assert_eq!(
            text(&service.value, &["spec", "clusterIP"], &service_context),
            "None",
            "{service_context}: not headless"
        );
        assert_eq!(
            field(
                &service.value,
                &["spec", "publishNotReadyAddresses"],
                &service_context
            )
            .as_bool(),
            Some(true),
            "{service_context}: the nodes must find each other before they are ready"
        );
        assert!(
            selects(
                &string_map(&service.value, &["spec", "selector"], &service_context),
                &pod_labels
            ),
            "{service_context}: does not select the pods of {context}"
        );

        let grpc_port = container_port(container, &Value::from(GRPC_PORT_NAME), &context);
        let metrics_port = container_port(container, &Value::from(METRICS_PORT_NAME), &context);
        for (port_name, port) in [
            (GRPC_PORT_NAME, grpc_port),
            (METRICS_PORT_NAME, metrics_port),
        ] {
            let served = sequence(&service.value, &["spec", "ports"], &service_context)
                .iter()
                .any(|entry| {
                    let target = entry
                        .get("targetPort")
                        .or_else(|| entry.get("port"))
                        .expect("a service port");
                    entry.get("name").and_then(Value::as_str) == Some(port_name)
                        && container_port(container, target, &service_context) == port
                });
            assert!(
                served,
                "{service_context}: no port {port_name} to container port {port}"
            );
        }

        // A budget that keeps a majority of the region up.
        let budget = budgets
            .iter()
            .find(|budget| {
                selects(
                    &string_map(
                        &budget.value,
                        &["spec", "selector", "matchLabels"],
                        &budget.file,
                    ),
                    &pod_labels,
                )
            })
            .unwrap_or_else(|| panic!("{context}: no PodDisruptionBudget selects its pods"));
        assert_eq!(
            number(
                &budget.value,
                &["spec", "maxUnavailable"],
                &budget.describe()
            ),
            1,
            "{}: at most one node of a region may be down at once",
            budget.describe()
        );

        // Probes on the metrics port.
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            assert_eq!(
                text(container, &[probe, "httpGet", "path"], &context),
                path,
                "{context}: {probe}"
            );
            assert_eq!(
                container_port(
                    container,
                    field(container, &[probe, "httpGet", "port"], &context),
                    &context
                ),
                metrics_port,
                "{context}: {probe} does not ask the metrics port"
            );
        }

        // The node ids the pods compute, their addresses and ports.
        let command = node_command(container, &context);
        let computed: BTreeSet<u64> = (0..region.nodes.len() as u64)
            .map(|ordinal| command.first_id + ordinal)
            .collect();
        assert_eq!(
            computed,
            node_ids(region),
            "{context}: the pods run other nodes than region {} has",
            region.id
        );
        for ordinal in 0..region.nodes.len() as u64 {
            let node_id = command.first_id + ordinal;
            let node = topology.node(node_id).expect("checked above");
            assert_eq!(
                node.address,
                format!(
                    "{set_name}-{ordinal}.{service_name}.{namespace}.{CLUSTER_DOMAIN_SUFFIX}:{grpc_port}"
                ),
                "{source_name}: node {node_id} runs in pod {set_name}-{ordinal}"
            );
            assert_eq!(
                port_of(node.listen_address()),
                grpc_port,
                "{source_name}: node {node_id} listens on another port than the container's \
                 {GRPC_PORT_NAME} port"
            );
            assert_eq!(
                port_of(&metrics_listen[&node_id]),
                metrics_port,
                "{source_name}: node {node_id}'s metrics_listen is not the container's \
                 {METRICS_PORT_NAME} port"
            );
        }

        // The topology and the certificates where the command and [tls] look for them.
        let files = mounted_files(pod_spec, container, &context);
        assert_eq!(
            files.get(&command.topology),
            Some(&FileSource::ConfigMap {
                name: config_map.name().to_owned(),
                key: TOPOLOGY_KEY.to_owned(),
            }),
            "{context}: --topology {} is not the ConfigMap's {TOPOLOGY_KEY}",
            command.topology.display()
        );
        let secret_key = |path: &Path| -> (String, String) {
            match files.get(path) {
                Some(FileSource::Secret { name, key }) => (name.clone(), key.clone()),
                other => panic!(
                    "{context}: {} is not mounted from a Secret ({other:?})",
                    path.display()
                ),
            }
        };
        let (secret, key) = secret_key(&tls.ca_cert);
        assert_eq!(key, "ca.crt", "{context}: {}", tls.ca_cert.display());
        let mut expected_keys = BTreeSet::from(["ca.crt".to_owned()]);
        for node in &region.nodes {
            for (path, file_name) in [
                (tls.node_cert_path(node.id), format!("node-{}.crt", node.id)),
                (tls.node_key_path(node.id), format!("node-{}.key", node.id)),
            ] {
                assert_eq!(
                    secret_key(&path),
                    (secret.clone(), file_name.clone()),
                    "{context}: {}",
                    path.display()
                );
                expected_keys.insert(file_name);
            }
        }
        // Nothing else from a Secret: no other region's keys, no CA key, no admin key.
        let secret_keys: BTreeSet<String> = files
            .values()
            .filter_map(|file| match file {
                FileSource::Secret { key, .. } => Some(key.clone()),
                FileSource::ConfigMap { .. } => None,
            })
            .collect();
        assert_eq!(
            secret_keys, expected_keys,
            "{context}: the pods see other secrets than the CA and the region's node files"
        );

        // The data directory on the pod's own volume.
        let claims = sequence(spec, &["volumeClaimTemplates"], &context);
        assert_eq!(
            claims.len(),
            1,
            "{context}: expected one volume claim template"
        );
        let claim = text(&claims[0], &["metadata", "name"], &context);
        let data_mount = claim_mount_path(container, claim, &context);
        assert!(
            command.data_dir.starts_with(data_mount) && command.data_dir != data_mount,
            "{context}: --data-dir {} is not a directory on the volume mounted at {}",
            command.data_dir.display(),
            data_mount.display()
        );
    }
}

#[test]
fn the_admin_pod_sees_the_topology_and_the_admin_certificate() {
    let manifests = kubernetes_manifests();
    let (config_map, topology_text) = topology_config_map(&manifests);
    let topology = parse_topology(&config_map.file, topology_text);
    let tls = topology.tls.as_ref().expect("[tls]");
    let node_topology_paths: BTreeSet<PathBuf> = manifests
        .iter()
        .filter(|manifest| manifest.kind() == "StatefulSet")
        .map(|set| {
            let container = only_container(
                field(&set.value, &["spec", "template", "spec"], &set.file),
                &set.file,
            );
            node_command(container, &set.describe()).topology
        })
        .collect();
    assert_eq!(
        node_topology_paths.len(),
        1,
        "the nodes read the topology at different paths"
    );
    let topology_path = node_topology_paths.first().expect("one path");
    let pods: Vec<&Manifest> = manifests
        .iter()
        .filter(|manifest| manifest.kind() == "Pod")
        .collect();
    assert_eq!(pods.len(), 1, "expected one admin Pod");
    let pod = pods[0];
    let context = pod.describe();
    let pod_spec = field(&pod.value, &["spec"], &context);
    let files = mounted_files(pod_spec, only_container(pod_spec, &context), &context);
    assert_eq!(
        files.get(topology_path),
        Some(&FileSource::ConfigMap {
            name: config_map.name().to_owned(),
            key: TOPOLOGY_KEY.to_owned(),
        }),
        "{context}: the topology is not at {}",
        topology_path.display()
    );
    let secret_keys: BTreeMap<PathBuf, String> = files
        .into_iter()
        .filter_map(|(path, file)| match file {
            FileSource::Secret { key, .. } => Some((path, key)),
            FileSource::ConfigMap { .. } => None,
        })
        .collect();
    let expected = BTreeMap::from([
        (tls.ca_cert.clone(), "ca.crt".to_owned()),
        (tls.admin_cert_path(), "admin.crt".to_owned()),
        (tls.admin_key_path(), "admin.key".to_owned()),
    ]);
    assert_eq!(secret_keys, expected, "{context}: the admin's TLS files");
}

// ---------------------------------------------------------------------------------------------
// Three hosts and systemd

/// `Key=Value` lines of a systemd unit, in order, comments and section headers left out.
fn unit_settings(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with(['#', ';', '[']))
        .map(|line| {
            line.split_once('=')
                .map(|(key, value)| (key.trim(), value.trim()))
                .unwrap_or_else(|| panic!("not a Key=Value line: {line}"))
        })
        .collect()
}

fn unit_setting<'t>(settings: &[(&str, &'t str)], key: &str) -> &'t str {
    let values: Vec<&str> = settings
        .iter()
        .filter(|(name, _)| *name == key)
        .map(|(_, value)| *value)
        .collect();
    assert_eq!(
        values.len(),
        1,
        "expected one {key}= in the unit: {values:?}"
    );
    values[0]
}

const UNIT_FILE: &str = "systemd/dsss-node@.service";

#[test]
fn the_systemd_unit_runs_the_node_of_its_instance() {
    let text = read(&deploy_dir().join(UNIT_FILE));
    let settings = unit_settings(&text);
    let exec_start = unit_setting(&settings, "ExecStart");
    let words: Vec<&str> = exec_start.split_whitespace().collect();
    assert!(
        words.len() >= 2
            && Path::new(words[0]).is_absolute()
            && words[0].ends_with("/dsss")
            && words[1] == "node",
        "{UNIT_FILE}: ExecStart does not run `dsss node`: {exec_start}"
    );
    let value_of = |flag: &str| {
        words
            .iter()
            .position(|word| *word == flag)
            .and_then(|position| words.get(position + 1))
            .copied()
            .unwrap_or_else(|| panic!("{UNIT_FILE}: ExecStart has no {flag} VALUE: {exec_start}"))
    };
    assert!(
        Path::new(value_of("--topology")).is_absolute(),
        "{UNIT_FILE}: --topology must not depend on the working directory"
    );
    assert_eq!(
        value_of("--id"),
        "%i",
        "{UNIT_FILE}: the instance names the node"
    );
    for (key, value) in [
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
    ] {
        assert_eq!(unit_setting(&settings, key), value, "{UNIT_FILE}: {key}");
    }
    for key in ["TimeoutStopSec", "LimitNOFILE", "ReadWritePaths"] {
        unit_setting(&settings, key);
    }
    assert_ne!(
        unit_setting(&settings, "User"),
        "root",
        "{UNIT_FILE}: the node runs as its own user"
    );
}

const THREE_HOSTS_FILE: &str = "three-hosts/topology.toml";

#[test]
fn the_three_host_topology_puts_one_node_of_every_region_on_every_host() {
    let text = read(&deploy_dir().join(THREE_HOSTS_FILE));
    let topology = parse_topology(THREE_HOSTS_FILE, &text);
    let metrics_listen = metrics_listen_by_node(THREE_HOSTS_FILE, &text);
    let hosts: BTreeSet<&str> = topology
        .nodes()
        .map(|(_, node)| host_of(&node.address))
        .collect();
    assert_eq!(hosts.len(), 3, "{THREE_HOSTS_FILE}: three hosts");
    for region in &topology.regions {
        let region_hosts: Vec<&str> = region
            .nodes
            .iter()
            .map(|node| host_of(&node.address))
            .collect();
        assert_eq!(
            region_hosts.iter().copied().collect::<BTreeSet<_>>(),
            hosts,
            "{THREE_HOSTS_FILE}: region {} has not one node on every host",
            region.id
        );
        assert_eq!(region_hosts.len(), hosts.len());
    }
    // The processes of one host bind distinct ports.
    for host in &hosts {
        let mut ports = BTreeSet::new();
        for (_, node) in topology
            .nodes()
            .filter(|(_, node)| host_of(&node.address) == *host)
        {
            assert_eq!(
                port_of(node.listen_address()),
                port_of(&node.address),
                "{THREE_HOSTS_FILE}: node {} is reached at another port than it binds",
                node.id
            );
            for port in [port_of(&node.address), port_of(&metrics_listen[&node.id])] {
                assert!(
                    ports.insert(port),
                    "{THREE_HOSTS_FILE}: port {port} is used twice on {host}"
                );
            }
        }
    }
    // Losing one host must leave the coordinator a majority too.
    let mut replica_hosts = BTreeSet::new();
    let mut replica_regions = BTreeSet::new();
    for replica in &topology.coordinator.replicas {
        let node = topology.node(*replica).expect("a replica is a node");
        assert!(
            replica_hosts.insert(host_of(&node.address)),
            "{THREE_HOSTS_FILE}: two coordinator replicas on {}",
            host_of(&node.address)
        );
        let region = topology.region_of(*replica).expect("a replica is a node");
        assert!(
            replica_regions.insert(region.id.as_str()),
            "{THREE_HOSTS_FILE}: two coordinator replicas in region {}",
            region.id
        );
    }
    // The unit lets the node write its data directory and nothing else.
    let unit = read(&deploy_dir().join(UNIT_FILE));
    let writable = unit_setting(&unit_settings(&unit), "ReadWritePaths");
    let tls = topology.tls.as_ref().expect("[tls]");
    for (_, node) in topology.nodes() {
        assert!(
            node.data_dir.starts_with(writable),
            "{THREE_HOSTS_FILE}: node {}'s data_dir {} is outside {UNIT_FILE}'s ReadWritePaths",
            node.id,
            node.data_dir.display()
        );
        assert!(
            tls.node_key_path(node.id).is_absolute(),
            "{THREE_HOSTS_FILE}: certificate paths must not depend on the working directory"
        );
    }
}
