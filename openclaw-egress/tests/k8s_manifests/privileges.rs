//! Least privilege: the RBAC rules and the daemon's exact capabilities.

use std::{collections::BTreeSet, fs};

use super::{
    daemon_container,
    k8s_common::{deploy_dir, yaml_documents},
    load, the,
};

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
