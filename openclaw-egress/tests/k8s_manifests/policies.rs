//! The policies of `deploy/`: they parse, select pods, and match the generated CRD.

use std::{collections::BTreeSet, fs, path::Path};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use super::{
    file_name,
    k8s_common::{deploy_dir, yaml_documents},
    load, the,
};

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
