//! `deploy/` checked against the real Kubernetes types (k8s-openapi): every
//! document deserializes into the type of its kind, and serializing it back
//! gives the same JSON, so no field is silently dropped (k8s-openapi ignores
//! unknown fields; a misspelt `mountPropogation` would vanish here and be
//! caught). Then the properties the manifests promise: least-privilege RBAC,
//! the exact capabilities, NODE_NAME from the downward API, policies that
//! parse, and the pieces that must agree across files.

mod k8s_common;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use k8s_common::{deploy_dir, yaml_documents};
use k8s_openapi::{
    api::{
        apps::v1::DaemonSet,
        core::v1::{ConfigMap, Container, Namespace, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

/// Every manifest of `deploy/`, typed.
#[derive(Default)]
struct Manifests {
    namespaces: Vec<Namespace>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    config_maps: Vec<ConfigMap>,
    daemon_sets: Vec<DaemonSet>,
    /// What each file holds, by kind.
    kinds_by_file: BTreeMap<String, Vec<String>>,
}

/// The kustomize file is not a Kubernetes object; its own shape, strictly.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Kustomization {
    api_version: String,
    kind: String,
    resources: Vec<String>,
}

/// `typed` from `doc`, and `doc` again from `typed`.
fn round_trip<T: DeserializeOwned + Serialize>(file: &str, doc: &Value) -> T {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{file}: not a {}: {e}", std::any::type_name::<T>()));
    let back = serde_json::to_value(&typed).unwrap();
    if &back != doc {
        panic!(
            "{file}: fields lost or changed by {} (misspelt or misplaced?):\n{}",
            std::any::type_name::<T>(),
            json_diff("", doc, &back).join("\n")
        );
    }
    typed
}

/// Paths where two JSON values differ, to name the dropped field.
fn json_diff(path: &str, a: &Value, b: &Value) -> Vec<String> {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter()
                .flat_map(|k| {
                    let path = format!("{path}.{k}");
                    match (a.get(k), b.get(k)) {
                        (Some(x), Some(y)) => json_diff(&path, x, y),
                        (Some(x), None) => vec![format!("{path}: {x} was dropped")],
                        (None, Some(y)) => vec![format!("{path}: {y} was added")],
                        (None, None) => vec![],
                    }
                })
                .collect()
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .flat_map(|(i, (x, y))| json_diff(&format!("{path}[{i}]"), x, y))
            .collect(),
        _ if a == b => vec![],
        _ => vec![format!("{path}: {a} became {b}")],
    }
}

fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn load() -> Manifests {
    let mut manifests = Manifests::default();
    for path in manifest_files() {
        let file = file_name(&path);
        if file == "kustomization.yaml" {
            continue;
        }
        let docs = yaml_documents(&path);
        assert!(!docs.is_empty(), "{file} holds no document");
        for doc in docs {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            let api_version = doc["apiVersion"].as_str().unwrap_or_default();
            match (api_version, kind.as_str()) {
                ("v1", "Namespace") => manifests.namespaces.push(round_trip(&file, &doc)),
                ("v1", "ServiceAccount") => {
                    manifests.service_accounts.push(round_trip(&file, &doc))
                }
                ("v1", "ConfigMap") => manifests.config_maps.push(round_trip(&file, &doc)),
                ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                    manifests.cluster_roles.push(round_trip(&file, &doc))
                }
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => manifests
                    .cluster_role_bindings
                    .push(round_trip(&file, &doc)),
                ("apps/v1", "DaemonSet") => manifests.daemon_sets.push(round_trip(&file, &doc)),
                ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
                    let _: CustomResourceDefinition = round_trip(&file, &doc);
                }
                other => panic!(
                    "{file}: {other:?} has no check here; add its k8s-openapi type to this test"
                ),
            }
            manifests
                .kinds_by_file
                .entry(file.clone())
                .or_default()
                .push(kind);
        }
    }
    manifests
}

fn the<'a, T>(items: &'a [T], what: &str) -> &'a T {
    assert_eq!(items.len(), 1, "expected exactly one {what}");
    &items[0]
}

fn daemon_container(manifests: &Manifests) -> &Container {
    let daemon_set = the(&manifests.daemon_sets, "DaemonSet");
    let spec = daemon_set
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert!(
        spec.init_containers.is_none(),
        "no init containers to review"
    );
    the(&spec.containers, "container")
}

#[test]
fn k8s_manifests_every_document_is_its_kubernetes_type() {
    let manifests = load();
    // Each file holds what its name says, and the set is complete.
    let kinds: BTreeMap<&str, Vec<&str>> = manifests
        .kinds_by_file
        .iter()
        .map(|(f, k)| (f.as_str(), k.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("configmap-policies.yaml", vec!["ConfigMap"]),
            ("crd.yaml", vec!["CustomResourceDefinition"]),
            ("daemonset.yaml", vec!["DaemonSet"]),
            ("namespace.yaml", vec!["Namespace"]),
            ("rbac.yaml", vec!["ClusterRole", "ClusterRoleBinding"]),
            ("serviceaccount.yaml", vec!["ServiceAccount"]),
        ])
    );
}

#[test]
fn k8s_manifests_round_trip_catches_a_misspelt_field() {
    // The check the test above relies on, shown to work: a misspelt field
    // deserializes fine (k8s-openapi ignores it) but does not come back.
    let path = deploy_dir().join("daemonset.yaml");
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("mountPropagation: HostToContainer"));
    let misspelt = text.replace("mountPropagation:", "mountPropogation:");
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("daemonset.yaml"), misspelt).unwrap();
    let doc = &yaml_documents(&dir.path().join("daemonset.yaml"))[0];
    let typed: DaemonSet = serde_json::from_value(doc.clone()).unwrap();
    assert_ne!(&serde_json::to_value(typed).unwrap(), doc);
    let result = std::panic::catch_unwind(|| round_trip::<DaemonSet>("daemonset.yaml", doc));
    assert!(result.is_err());
}

#[test]
fn k8s_manifests_kustomization_lists_every_manifest() {
    let path = deploy_dir().join("kustomization.yaml");
    let doc = &the(&yaml_documents(&path), "kustomization document").clone();
    let kustomization: Kustomization =
        serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("kustomization.yaml: {e}"));
    assert_eq!(&serde_json::to_value(&kustomization).unwrap(), doc);
    assert_eq!(kustomization.api_version, "kustomize.config.k8s.io/v1beta1");
    assert_eq!(kustomization.kind, "Kustomization");
    let listed: BTreeSet<String> = kustomization.resources.iter().cloned().collect();
    assert_eq!(listed.len(), kustomization.resources.len(), "listed twice");
    let files: BTreeSet<String> = manifest_files()
        .iter()
        .map(|p| file_name(p))
        .filter(|f| f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, files);
    // Namespace first: everything else lives in it.
    assert_eq!(kustomization.resources[0], "namespace.yaml");
}

#[test]
fn k8s_manifests_rbac_reads_pods_and_policies_and_writes_status_only() {
    let manifests = load();
    let role = the(&manifests.cluster_roles, "ClusterRole");
    assert!(
        role.aggregation_rule.is_none(),
        "aggregation could add rules"
    );
    let rules: Vec<(Vec<String>, Vec<String>, BTreeSet<&str>)> = role
        .rules
        .as_ref()
        .unwrap()
        .iter()
        .map(|rule| {
            assert!(rule.resource_names.is_none());
            assert!(rule.non_resource_urls.is_none());
            (
                rule.api_groups.clone().unwrap_or_default(),
                rule.resources.clone().unwrap_or_default(),
                rule.verbs.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rules,
        [
            (
                strings(&[""]),
                strings(&["pods"]),
                BTreeSet::from(["get", "list", "watch"])
            ),
            (
                strings(&["openclaw.io"]),
                strings(&["egresspolicies"]),
                BTreeSet::from(["get", "list", "watch"])
            ),
            (
                strings(&["openclaw.io"]),
                strings(&["egresspolicies/status"]),
                BTreeSet::from(["patch"])
            ),
        ]
    );

    // Nothing anywhere in the RBAC file grants more: no wildcard, no
    // secrets, no write verb, no subresource.
    let text = fs::read_to_string(deploy_dir().join("rbac.yaml")).unwrap();
    for doc in yaml_documents(&deploy_dir().join("rbac.yaml")) {
        let json = doc.to_string();
        for forbidden in [
            "\"*\"",
            "secrets",
            "configmaps",
            "create",
            "update",
            "delete",
            "pods/",
        ] {
            assert!(
                !json.contains(forbidden),
                "rbac.yaml grants {forbidden}: {json}"
            );
        }
    }
    assert!(!text.contains("kind: Role\n") && !text.contains("kind: RoleBinding\n"));

    let binding = the(&manifests.cluster_role_bindings, "ClusterRoleBinding");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.api_group, "rbac.authorization.k8s.io");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let subject = the(binding.subjects.as_deref().unwrap(), "subject");
    let account = the(&manifests.service_accounts, "ServiceAccount");
    assert_eq!(subject.kind, "ServiceAccount");
    assert_eq!(Some(&subject.name), account.metadata.name.as_ref());
    assert_eq!(subject.namespace, account.metadata.namespace);
}

#[test]
fn k8s_manifests_daemon_has_exactly_the_justified_capabilities() {
    let manifests = load();
    let container = daemon_container(&manifests);
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.privileged, Some(false));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    let capabilities = security.capabilities.as_ref().unwrap();
    assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    let added: BTreeSet<&str> = capabilities
        .add
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    assert_eq!(added, BTreeSet::from(["BPF", "NET_ADMIN", "PERFMON"]));
    assert_eq!(
        security.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );

    let pod = manifests.daemon_sets[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    // Pods' pids must be visible to find their veth (pod_network.rs).
    assert_eq!(
        pod.host_pid,
        Some(true),
        "hostPID is needed for the veth layer"
    );
    assert_ne!(pod.host_ipc, Some(true));
    assert_eq!(pod.host_network, Some(true));
    assert!(
        pod.security_context.is_none(),
        "pod-level settings would apply to all"
    );
    // The API server refuses Bidirectional propagation for unprivileged
    // containers; this test cannot run an API server, so it checks it.
    for mount in container.volume_mounts.iter().flatten() {
        assert_ne!(
            mount.mount_propagation.as_deref(),
            Some("Bidirectional"),
            "{}",
            mount.mount_path
        );
    }
}

#[test]
fn k8s_manifests_daemon_set_wiring() {
    let manifests = load();
    let namespace = the(&manifests.namespaces, "Namespace")
        .metadata
        .name
        .clone()
        .unwrap();
    let daemon_set = the(&manifests.daemon_sets, "DaemonSet");
    let spec = daemon_set.spec.as_ref().unwrap();
    let template = &spec.template;
    let pod = template.spec.as_ref().unwrap();
    let container = daemon_container(&manifests);

    // Everything namespaced is in the one namespace.
    let namespaces: Vec<Option<&String>> = [
        daemon_set.metadata.namespace.as_ref(),
        manifests.service_accounts[0].metadata.namespace.as_ref(),
        manifests.config_maps[0].metadata.namespace.as_ref(),
    ]
    .into();
    assert!(
        namespaces.iter().all(|n| *n == Some(&namespace)),
        "{namespaces:?}"
    );
    // The namespace allows what the pod needs (Pod Security Admission).
    assert_eq!(
        manifests.namespaces[0].metadata.labels.as_ref().unwrap()["pod-security.kubernetes.io/enforce"],
        "privileged"
    );

    // The selector selects the template.
    let template_labels = template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    for (key, value) in spec.selector.match_labels.as_ref().unwrap() {
        assert_eq!(template_labels.get(key), Some(value));
    }

    assert_eq!(
        pod.service_account_name.as_ref(),
        manifests.service_accounts[0].metadata.name.as_ref()
    );
    assert_ne!(pod.automount_service_account_token, Some(false));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    // Every taint: one toleration with operator Exists, no key, no effect.
    let toleration = the(pod.tolerations.as_deref().unwrap(), "toleration");
    assert_eq!(toleration.operator.as_deref(), Some("Exists"));
    assert!(toleration.key.is_none() && toleration.effect.is_none());
    assert!(toleration.toleration_seconds.is_none());

    // NODE_NAME from the downward API.
    let node_name = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == openclaw_egress::k8s::NODE_NAME_ENV)
        .expect("NODE_NAME is set");
    assert!(node_name.value.is_none());
    let field = node_name
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("NODE_NAME comes from a fieldRef");
    assert_eq!(field.field_path, "spec.nodeName");

    // The command line.
    let mut command = container.command.clone().unwrap();
    command.extend(container.args.clone().unwrap());
    let arg_after = |flag: &str| {
        let i = command
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} missing"));
        command[i + 1].clone()
    };
    assert_eq!(&command[..2], ["openclaw-egress", "daemon"]);
    assert!(command.contains(&"--kubernetes".to_owned()));
    assert_eq!(arg_after("--log-format"), "json");
    let metrics_addr = arg_after("--metrics-addr");

    // The metrics port: the daemon's address, the container port, the
    // probe and the scrape annotations all agree.
    let port = the(container.ports.as_deref().unwrap(), "port");
    assert_eq!(metrics_addr, format!("0.0.0.0:{}", port.container_port));
    assert_eq!(
        port.host_port,
        Some(port.container_port),
        "hostNetwork: the same port"
    );
    let probe = container
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(probe.path.as_deref(), Some("/metrics"));
    assert_eq!(
        probe.port,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
            port.name.clone().unwrap()
        )
    );
    let annotations = template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap();
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"],
        port.container_port.to_string()
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // Resources: requests and a memory limit.
    let resources = container.resources.as_ref().unwrap();
    let requests = resources.requests.as_ref().unwrap();
    assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
    assert!(resources.limits.as_ref().unwrap().contains_key("memory"));

    // Mounts: each from the host path it claims, the policies from the
    // ConfigMap at the directory given to --policy-dir.
    let volumes: BTreeMap<&str, _> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| (v.name.as_str(), v))
        .collect();
    let mounts: BTreeMap<&str, _> = container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.mount_path.as_str(), m))
        .collect();
    for (path, read_only) in [
        ("/sys/fs/cgroup", true),
        ("/sys/fs/bpf", false),
        ("/run/openclaw-egress", false),
    ] {
        let mount = mounts
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not mounted"));
        let host = volumes[mount.name.as_str()].host_path.as_ref().unwrap();
        assert_eq!(host.path, path);
        assert_eq!(mount.read_only.unwrap_or(false), read_only, "{path}");
    }
    assert_eq!(
        mounts["/sys/fs/bpf"].mount_propagation.as_deref(),
        Some("HostToContainer")
    );
    let policy_dir = arg_after("--policy-dir");
    assert_eq!(policy_dir, openclaw_egress::k8s::DEFAULT_POLICY_DIR);
    let policies = mounts
        .get(policy_dir.as_str())
        .expect("the policy dir is mounted");
    assert_eq!(policies.read_only, Some(true));
    let config_map = volumes[policies.name.as_str()].config_map.as_ref().unwrap();
    assert_eq!(
        Some(&config_map.name),
        manifests.config_maps[0].metadata.name.as_ref()
    );
    assert!(config_map.items.is_none(), "every key becomes a file");
    // The API socket's default path is in the mounted directory.
    assert!(Path::new(openclaw_egress::api::DEFAULT_SOCKET).starts_with("/run/openclaw-egress"));
}

#[test]
fn k8s_manifests_policies_parse_and_select_pods() {
    let manifests = load();
    let config_map = the(&manifests.config_maps, "ConfigMap");
    let data = config_map.data.as_ref().unwrap();
    assert!(!data.is_empty());
    assert!(config_map.binary_data.is_none());
    let mut names = BTreeSet::new();
    for (key, yaml) in data {
        assert!(
            key.ends_with(".yaml"),
            "{key}: the daemon reads *.yaml files"
        );
        let policy = openclaw_egress::policy::parse_str(key, yaml)
            .unwrap_or_else(|e| panic!("configmap-policies.yaml, {key}: {e}"));
        assert!(
            !policy.selector.pod_labels.is_empty(),
            "{key}: DaemonSet policies select pods by podLabels"
        );
        assert!(
            policy.selector.cgroup_path.is_none(),
            "{key}: no host cgroup in DaemonSet mode"
        );
        assert!(
            names.insert(policy.name.clone()),
            "{key}: policy name used twice"
        );
    }
}

#[test]
fn k8s_manifests_crd_is_generated_from_the_types() {
    use kube::CustomResourceExt as _;
    let path = deploy_dir().join("crd.yaml");
    let doc = the(&yaml_documents(&path), "CRD document").clone();
    let generated = serde_json::to_value(openclaw_egress::k8s::EgressPolicy::crd()).unwrap();
    assert_eq!(
        doc, generated,
        "deploy/crd.yaml is stale: run `openclaw-egress crd > deploy/crd.yaml` (keep the comment)"
    );
    // A status subresource (the daemons write status only), printer
    // columns, cluster scope (podLabels select pods in any namespace).
    let crd: CustomResourceDefinition = serde_json::from_value(doc).unwrap();
    assert_eq!(crd.spec.scope, "Cluster");
    let version = the(&crd.spec.versions, "version");
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Mode", "Ready", "Pods", "Drops", "Error", "Age"]);
}

#[test]
fn k8s_manifests_policy_files_are_egress_policy_objects() {
    // Every example policy and every policy of the ConfigMap is an object
    // the CRD admits, and means the same once it comes back from the API.
    let manifests = load();
    let mut documents: Vec<(String, String)> = manifests.config_maps[0]
        .data
        .clone()
        .unwrap()
        .into_iter()
        .collect();
    let policies_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    for entry in fs::read_dir(&policies_dir).unwrap() {
        let path = entry.unwrap().path();
        documents.push((file_name(&path), fs::read_to_string(&path).unwrap()));
    }
    assert!(documents.len() > 3);
    for (name, yaml) in documents {
        let object: openclaw_egress::k8s::EgressPolicy =
            serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
        let from_file = openclaw_egress::policy::parse_str(&name, &yaml).unwrap();
        let back = openclaw_egress::k8s::egress_policy::policy_document(&object).unwrap();
        let from_object = openclaw_egress::policy::parse_str(&name, &back)
            .unwrap_or_else(|e| panic!("{name} from the API: {e}\n{back}"));
        assert_eq!(from_object, from_file, "{name}");
    }
}

#[test]
fn k8s_manifests_daemon_set_runs_the_image_xtask_builds() {
    // `cargo xtask image` tags `<IMAGE>:<version>`; the DaemonSet must name
    // exactly that (a kubelet given the saved archive finds it by name).
    let manifests = load();
    let container = daemon_container(&manifests);
    assert_eq!(
        container.image.as_deref(),
        Some(
            format!(
                "ghcr.io/openclaw/openclaw-egress:{}",
                env!("CARGO_PKG_VERSION")
            )
            .as_str()
        )
    );
    let xtask_image =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../xtask/src/image.rs"))
            .unwrap();
    assert!(xtask_image.contains("pub const IMAGE: &str = \"ghcr.io/openclaw/openclaw-egress\";"));
}
