//! The type is the upstream resource, and its names make policy names.

use openclaw_egress::{
    k8s::cluster_network_policy::{ClusterNetworkPolicy, policy_name},
    policy,
};

#[test]
fn k8s_cluster_network_policy_is_the_upstream_resource() {
    use kube::Resource;

    assert_eq!(
        ClusterNetworkPolicy::api_version(&()),
        "policy.networking.k8s.io/v1alpha2"
    );
    assert_eq!(ClusterNetworkPolicy::kind(&()), "ClusterNetworkPolicy");
    assert_eq!(
        ClusterNetworkPolicy::url_path(&(), None),
        "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies"
    );
    fn cluster_scoped<K: Resource<Scope = k8s_openapi::ClusterResourceScope>>() {}
    cluster_scoped::<ClusterNetworkPolicy>();
}

#[test]
fn k8s_cluster_network_policy_names_are_policy_names() {
    for name in [
        "coding-agent-egress",
        "research.agents",
        "a",
        &"x".repeat(253),
        "egress.allowlist.agents.platform-team.example.com",
    ] {
        let policy = policy_name(name);
        assert!(policy::check_name(&policy).is_ok(), "{name} -> {policy}");
    }
}
