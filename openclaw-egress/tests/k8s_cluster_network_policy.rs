//! Kubernetes `ClusterNetworkPolicy` objects (`fixtures/k8s/cnp-*.yaml`)
//! translated into policy documents: each accepted object's document is
//! parsed by the policy checks and compared field by field with the policy
//! it should be; each refused object must be refused at the right field of
//! the object, for the right reason.

use std::{collections::BTreeMap, fs, net::IpAddr, path::Path};

use openclaw_egress::{
    k8s::cluster_network_policy::{
        ClusterNetworkPolicy, MAX_IPS_PER_NAME, TranslateError, policy_name, translate,
    },
    policy::{
        self, Cidr, DnsConfig, EgressRule, Fqdn, FqdnPattern, Mode, Policy, PortSpec, Protocol,
        Selector, Target, WildcardDepth,
    },
};

const CLUSTER_DNS: &[&str] = &["10.96.0.10"];

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/k8s")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn object(file: &str) -> ClusterNetworkPolicy {
    serde_yaml::from_str(&fixture(file)).unwrap_or_else(|error| panic!("{file}: {error}"))
}

/// The objects of a multi-document file, by name.
fn objects(file: &str) -> BTreeMap<String, ClusterNetworkPolicy> {
    let text = fixture(file);
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| {
            let cnp: ClusterNetworkPolicy = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|error| panic!("{file}: {error}"));
            (cnp.metadata.name.clone().unwrap(), cnp)
        })
        .collect()
}

fn ips(texts: &[&str]) -> Vec<IpAddr> {
    texts.iter().map(|text| text.parse().unwrap()).collect()
}

/// Translates, then parses the document as the daemon does.
fn translated(cnp: &ClusterNetworkPolicy, resolvers: &[&str]) -> Policy {
    let name = cnp.metadata.name.as_deref().unwrap();
    let yaml = translate(cnp, &ips(resolvers)).unwrap_or_else(|error| panic!("{name}: {error}"));
    policy::parse_str(&format!("clusternetworkpolicy/{name}"), &yaml)
        .unwrap_or_else(|error| panic!("{name}: {error}\n{yaml}"))
}

/// Upstream's FQDN proposal asks for at least 100 addresses per name.
const ADDRESSES_PER_NAME: u32 = 100;

/// `spec.dns` of a translated policy: `resolvers`, and upstream's minimum
/// of addresses per name (the other limits at their defaults).
fn dns(resolvers: &[&str]) -> DnsConfig {
    DnsConfig {
        max_ips_per_name: ADDRESSES_PER_NAME,
        ..DnsConfig::with_resolvers(ips(resolvers))
    }
}

fn tcp(port: u16) -> PortSpec {
    PortSpec {
        port,
        protocol: Protocol::Tcp,
    }
}

fn udp(port: u16) -> PortSpec {
    PortSpec {
        port,
        protocol: Protocol::Udp,
    }
}

fn fqdn(name: &str, ports: Vec<PortSpec>) -> EgressRule {
    EgressRule::new(Target::Fqdn(Fqdn(name.into())), ports)
}

/// Our `**.suffix`: upstream's `*.suffix`.
fn any_depth(suffix: &str, ports: Vec<PortSpec>) -> EgressRule {
    let pattern = FqdnPattern {
        depth: WildcardDepth::AnyDepth,
        suffix: suffix.into(),
    };
    EgressRule::new(Target::Pattern(pattern), ports)
}

fn cidr(text: &str, ports: Vec<PortSpec>) -> EgressRule {
    let (addr, len) = text.split_once('/').unwrap();
    let cidr = Cidr {
        addr: addr.parse().unwrap(),
        prefix_len: len.parse().unwrap(),
    };
    EgressRule::new(Target::Cidr(cidr), ports)
}

fn pod_labels(labels: &[(&str, &str)]) -> Selector {
    Selector {
        pod_labels: labels
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        ..Selector::default()
    }
}

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

struct Refused {
    name: &'static str,
    kind: &'static str,
    path: &'static str,
    reason: &'static str,
}

const fn refused(
    name: &'static str,
    kind: &'static str,
    path: &'static str,
    reason: &'static str,
) -> Refused {
    Refused {
        name,
        kind,
        path,
        reason,
    }
}

/// Every object of `cnp-refused.yaml`, by name.
const REFUSED: &[Refused] = &[
    refused(
        "subject-namespaces",
        "Subject",
        "spec.subject.namespaces",
        "does not follow namespace labels",
    ),
    refused(
        "subject-namespace-selector",
        "Subject",
        "spec.subject.pods.namespaceSelector",
        "does not follow namespace labels",
    ),
    refused(
        "subject-match-expressions",
        "Subject",
        "spec.subject.pods.podSelector.matchExpressions",
        "write the selection as `matchLabels`",
    ),
    refused(
        "subject-every-pod",
        "Subject",
        "spec.subject.pods.podSelector",
        "selects every pod of the cluster, system pods included",
    ),
    refused(
        "subject-unknown",
        "UnknownField",
        "spec.subject.serviceAccounts",
        "may change what the policy allows",
    ),
    refused("no-egress", "Rules", "spec.egress", "leaves egress alone"),
    refused(
        "no-deny-all",
        "Rules",
        "spec.egress",
        "do not end in a Deny rule to every destination, so whatever they do not match is \
         allowed by default",
    ),
    refused(
        "deny-ipv4-only",
        "Rules",
        "spec.egress[1].to",
        "covers IPv4 only, so IPv6 traffic the Accept rules do not match is allowed by default, \
         which an allowlist cannot express; add \"::/0\"",
    ),
    refused(
        "deny-all-with-protocols",
        "Rules",
        "spec.egress[1].protocols",
        "remove its protocols",
    ),
    refused(
        "deny-before-accept",
        "Rules",
        "spec.egress[0].action",
        "takes precedence over the Accept rule spec.egress[1]",
    ),
    refused("pass", "Rules", "spec.egress[1].action", "next tier"),
    refused(
        "action-allow",
        "Rules",
        "spec.egress[0].action",
        "`Allow` is not an action: use Accept, Deny or Pass (`Allow` is written `Accept` in \
         v1alpha2)",
    ),
    refused(
        "peer-pods",
        "Peer",
        "spec.egress[0].to[1].pods",
        "does not follow the addresses of pods, namespaces or nodes",
    ),
    refused(
        "peer-namespaces",
        "Peer",
        "spec.egress[0].to[0].namespaces",
        "does not follow the addresses of pods, namespaces or nodes",
    ),
    refused(
        "peer-nodes",
        "Peer",
        "spec.egress[0].to[0].nodes",
        "does not follow the addresses of pods, namespaces or nodes",
    ),
    refused(
        "peer-unknown",
        "UnknownField",
        "spec.egress[0].to[0].services",
        "not a field this version of openclaw-egress knows",
    ),
    refused(
        "every-port",
        "Protocols",
        "spec.egress[0]",
        "lists no protocols, so it allows every port",
    ),
    refused(
        "sctp",
        "Protocols",
        "spec.egress[0].protocols[1].sctp",
        "TCP and UDP only",
    ),
    refused(
        "port-range",
        "Protocols",
        "spec.egress[0].protocols[0].tcp.destinationPort.range",
        "port ranges are not supported",
    ),
    refused(
        "named-port",
        "Protocols",
        "spec.egress[0].protocols[0].destinationNamedPort",
        "named ports",
    ),
    refused(
        "protocol-unknown",
        "UnknownField",
        "spec.egress[0].protocols[0].icmp",
        "refusing the object rather than ignoring it",
    ),
    refused(
        "deny-all-unknown-field",
        "UnknownField",
        "spec.egress[1].except",
        "may change what the policy allows",
    ),
    refused(
        "dns-to-public-resolver",
        "Peer",
        "spec.egress[0].to[0].networks[0]",
        "DNS to 8.8.8.8/32 cannot be allowed: the pods may send DNS only to the cluster DNS \
         (10.96.0.10",
    ),
    refused(
        "dns-with-other-ports",
        "Protocols",
        "spec.egress[0].protocols[1]",
        "write DNS as a rule of its own",
    ),
    refused(
        "too-many-ports",
        "Protocols",
        "spec.egress[0].protocols",
        "lists 17 ports; a rule allows at most 16",
    ),
    refused(
        "wildcard-inside-name",
        "Peer",
        "spec.egress[0].to[0].domainNames[1]",
        "'*' may only stand as a whole first label",
    ),
    refused(
        "label-value-with-space",
        "Invalid",
        "spec.subject.pods.podSelector.matchLabels",
        "label value `coding agent`",
    ),
    refused(
        "ipv4-mapped-network",
        "Invalid",
        "spec.egress[0].to[1].networks[1]",
        "IPv4-mapped IPv6 prefix",
    ),
];

fn kind(error: &TranslateError) -> &'static str {
    match error {
        TranslateError::NoName => "NoName",
        TranslateError::Subject { .. } => "Subject",
        TranslateError::Rules { .. } => "Rules",
        TranslateError::Peer { .. } => "Peer",
        TranslateError::Protocols { .. } => "Protocols",
        TranslateError::UnknownField { .. } => "UnknownField",
        TranslateError::NoResolvers { .. } => "NoResolvers",
        TranslateError::Invalid { .. } => "Invalid",
        TranslateError::Document(_) => "Document",
    }
}

#[test]
fn k8s_cluster_network_policy_refusals_name_the_field_and_the_reason() {
    let objects = objects("cnp-refused.yaml");
    let listed: Vec<&str> = REFUSED.iter().map(|case| case.name).collect();
    let in_file: Vec<&str> = objects.keys().map(String::as_str).collect();
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted, in_file,
        "the table and cnp-refused.yaml list the same objects"
    );

    for case in REFUSED {
        let name = case.name;
        let error = translate(&objects[name], &ips(CLUSTER_DNS))
            .map(|yaml| panic!("{name}: translated to\n{yaml}"))
            .unwrap_err();
        let message = error.to_string();
        assert_eq!(kind(&error), case.kind, "{name}: {message}");
        assert_eq!(error.path(), case.path, "{name}: {message}");
        assert!(
            message.starts_with(&format!("{}: ", case.path)),
            "{name}: the message starts with the path: {message}"
        );
        assert!(message.contains(case.reason), "{name}: {message}");
    }
}

#[test]
fn k8s_cluster_network_policy_domain_names_need_the_cluster_dns() {
    // Names, no resolvers: the first name is pointed at.
    let error = translate(&object("cnp-coding-agent.yaml"), &[]).unwrap_err();
    assert_eq!(
        error,
        TranslateError::NoResolvers {
            path: "spec.egress[0].to[0].domainNames[0]".into()
        }
    );
    assert!(error.to_string().contains("--cluster-dns"), "{error}");
    // A DNS rule, no resolvers: the rule is pointed at.
    let error = translate(&object("cnp-research-agent.yaml"), &[]).unwrap_err();
    assert_eq!(
        error,
        TranslateError::NoResolvers {
            path: "spec.egress[0]".into()
        }
    );
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
fn k8s_cluster_network_policy_without_a_name_is_refused() {
    let mut cnp = object("cnp-coding-agent.yaml");
    cnp.metadata.name = None;
    let error = translate(&cnp, &ips(CLUSTER_DNS)).unwrap_err();
    assert_eq!(error, TranslateError::NoName);
    assert_eq!(error.path(), "metadata.name");
}

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
