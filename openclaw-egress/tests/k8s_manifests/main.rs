//! `deploy/` checked against the real Kubernetes types (k8s-openapi): every
//! document deserializes into the type of its kind, and serializing it back
//! gives the same JSON, so no field is silently dropped (k8s-openapi ignores
//! unknown fields; a misspelt `mountPropogation` would vanish here and be
//! caught). Then the properties the manifests promise: least-privilege RBAC,
//! the exact capabilities, NODE_NAME from the downward API, policies that
//! parse, and the pieces that must agree across files.

#[path = "../k8s_common/mod.rs"]
mod k8s_common;

mod daemon_set;
mod document_types;
mod policies;
mod privileges;

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
