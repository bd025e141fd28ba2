//! Every document of `deploy/` is its Kubernetes type, round trip included, and the kustomization lists them all.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
};

use k8s_openapi::api::apps::v1::DaemonSet;

use super::{
    Kustomization, file_name,
    k8s_common::{deploy_dir, yaml_documents},
    load, manifest_files, round_trip, the,
};

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
