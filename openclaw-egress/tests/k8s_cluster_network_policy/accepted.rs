//! The allowlists that become policies, and what their documents hold.

use openclaw_egress::{
    k8s::cluster_network_policy::{ClusterNetworkPolicy, MAX_IPS_PER_NAME, translate},
    policy::{EgressRule, Mode, Policy},
};

use super::{
    ADDRESSES_PER_NAME, CLUSTER_DNS, any_depth, cidr, dns, fixture, fqdn, ips, object, pod_labels,
    tcp, translated, udp,
};

fn coding_agent() -> Policy {
    Policy {
        name: "cnp-coding-agent-egress".into(),
        mode: Mode::Enforce,
        selector: pod_labels(&[("app.kubernetes.io/name", "coding-agent")]),
        dns: dns(CLUSTER_DNS),
        egress: vec![
            fqdn("api.github.com", vec![tcp(443)]),
            fqdn("github.com", vec![tcp(443)]),
            any_depth("githubusercontent.com", vec![tcp(443)]),
            fqdn("pypi.org", vec![tcp(443)]),
            fqdn("files.pythonhosted.org", vec![tcp(443)]),
            cidr("203.0.113.0/24", vec![tcp(8443)]),
            cidr("2001:db8:42::/48", vec![tcp(8443)]),
        ],
    }
}

fn research_agent() -> Policy {
    // 443 over TCP and UDP: the TLS server name is checked on TCP, QUIC
    // goes by address (as upstream allows it); 80 is checked for `Host`.
    let model_api = |rule: EgressRule| {
        assert_eq!(rule.inspection.tls_ports, [443]);
        assert_eq!(rule.inspection.http_ports, [80]);
        let mut rule = rule;
        rule.inspection.quic = true;
        rule
    };
    let ports = || vec![tcp(443), udp(443), tcp(80)];
    Policy {
        // The object's name has a dot: cut to fit and hashed.
        name: "cnp-research-agents-d03690df77".into(),
        mode: Mode::Enforce,
        selector: pod_labels(&[
            ("openclaw.io/agent", "research"),
            ("openclaw.io/sandbox", "strict"),
        ]),
        dns: dns(&["10.96.0.10", "fd00:10:96::a"]),
        // The DNS rule is the resolvers; the Deny after the accepts and the
        // rule after the deny-all change nothing.
        egress: vec![
            model_api(fqdn("api.models.example", ports())),
            model_api(any_depth("cdn.models.example.com", ports())),
        ],
    }
}

fn backup_agent() -> Policy {
    Policy {
        name: "cnp-backup-agent".into(),
        mode: Mode::Enforce,
        selector: pod_labels(&[("app", "backup-agent")]),
        // No names, so no resolvers; the cap is set all the same.
        dns: dns(&[]),
        egress: vec![
            cidr("10.20.0.0/16", vec![tcp(5432)]),
            // Written 192.0.2.10/24.
            cidr("192.0.2.0/24", vec![udp(514), tcp(6514)]),
        ],
    }
}

struct Accepted {
    file: &'static str,
    resolvers: &'static [&'static str],
    policy: fn() -> Policy,
}

const ACCEPTED: &[Accepted] = &[
    Accepted {
        file: "cnp-coding-agent.yaml",
        resolvers: CLUSTER_DNS,
        policy: coding_agent,
    },
    Accepted {
        file: "cnp-research-agent.yaml",
        // Dual stack, one given twice (the flag may repeat an address).
        resolvers: &["10.96.0.10", "fd00:10:96::a", "10.96.0.10"],
        policy: research_agent,
    },
    Accepted {
        file: "cnp-backup-agent.yaml",
        // No names: no DNS needed.
        resolvers: &[],
        policy: backup_agent,
    },
];

#[test]
fn k8s_cluster_network_policy_allowlists_become_policies() {
    for case in ACCEPTED {
        let file = case.file;
        let got = translated(&object(file), case.resolvers);
        let want = (case.policy)();
        assert_eq!(got.name, want.name, "{file}: name");
        assert_eq!(got.mode, want.mode, "{file}: mode");
        assert_eq!(got.selector, want.selector, "{file}: selector");
        assert_eq!(got.dns, want.dns, "{file}: dns");
        for (i, (got, want)) in got.egress.iter().zip(&want.egress).enumerate() {
            assert_eq!(got.target, want.target, "{file}: egress[{i}].target");
            assert_eq!(got.ports, want.ports, "{file}: egress[{i}].ports");
            assert_eq!(
                got.inspection, want.inspection,
                "{file}: egress[{i}].inspection"
            );
        }
        assert_eq!(got.egress.len(), want.egress.len(), "{file}: rules");
        assert_eq!(got, want, "{file}");
    }
}

#[test]
fn k8s_cluster_network_policy_document_is_a_policy_file() {
    let yaml = translate(&object("cnp-coding-agent.yaml"), &ips(CLUSTER_DNS)).unwrap();
    let document: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(document["apiVersion"], "openclaw.io/v1");
    assert_eq!(document["kind"], "EgressPolicy");
    assert_eq!(document["metadata"]["name"], "cnp-coding-agent-egress");
    let spec = &document["spec"];
    assert_eq!(
        spec["selector"]["podLabels"]["app.kubernetes.io/name"],
        "coding-agent"
    );
    assert_eq!(spec["dns"]["resolvers"][0], "10.96.0.10");
    assert_eq!(spec["dns"]["maxIPsPerName"], 100);
    assert_eq!(spec["egress"][2]["fqdnPattern"], "**.githubusercontent.com");
    assert_eq!(spec["egress"][2]["ports"][0], "443/tcp");
    assert_eq!(spec["egress"][6]["cidr"], "2001:db8:42::/48");
}

#[test]
fn k8s_cluster_network_policy_allows_upstreams_minimum_of_addresses_per_name() {
    assert_eq!(MAX_IPS_PER_NAME, ADDRESSES_PER_NAME);
    // Without names (and resolvers) too: `dns` holds the cap alone.
    let yaml = translate(&object("cnp-backup-agent.yaml"), &[]).unwrap();
    let document: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let dns = &document["spec"]["dns"];
    assert_eq!(dns["maxIPsPerName"], 100, "{yaml}");
    assert!(dns.get("resolvers").is_none(), "{yaml}");
    assert!(dns.get("maxIPsPerPattern").is_none(), "{yaml}");
}

#[test]
fn k8s_cluster_network_policy_dns_rule_to_the_service_network_is_the_resolvers() {
    // The same rule written with the service CIDR instead of the DNS pods.
    let mut cnp = object("cnp-research-agent.yaml");
    let peer = &mut cnp.spec.egress[0].to[0];
    peer.pods = None;
    peer.networks = vec!["10.96.0.0/12".into(), "fd00:10:96::/112".into()];
    let policy = translated(&cnp, &["10.96.0.10", "fd00:10:96::a"]);
    assert_eq!(policy, research_agent());
    // A resolver outside those networks does not make them DNS servers.
    let error = translate(&cnp, &ips(&["192.0.2.53"])).unwrap_err();
    assert_eq!(error.path(), "spec.egress[0].to[0].networks[0]");
}

#[test]
fn k8s_cluster_network_policy_reads_the_api_servers_json() {
    // What kube receives: JSON. Unknown fields (status, ingress details,
    // server metadata) are read past, not refused.
    for case in ACCEPTED {
        let from_yaml = object(case.file);
        let json: serde_json::Value = serde_yaml::from_str(&fixture(case.file)).unwrap();
        let from_json: ClusterNetworkPolicy =
            serde_json::from_value(json).unwrap_or_else(|e| panic!("{}: {e}", case.file));
        assert_eq!(from_json.spec, from_yaml.spec, "{}", case.file);
    }
}
