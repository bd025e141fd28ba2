//! Kubernetes `ClusterNetworkPolicy` objects (`fixtures/k8s/cnp-*.yaml`)
//! translated into policy documents: each accepted object's document is
//! parsed by the policy checks and compared field by field with the policy
//! it should be (`accepted`); each refused object must be refused at the
//! right field of the object, for the right reason (`refused`); the type
//! is the upstream resource (`resource`).

mod accepted;
mod refused;
mod resource;

use std::{collections::BTreeMap, fs, net::IpAddr, path::Path};

use openclaw_egress::{
    k8s::cluster_network_policy::{ClusterNetworkPolicy, translate},
    policy::{
        self, Cidr, DnsConfig, EgressRule, Fqdn, FqdnPattern, Policy, PortSpec, Protocol, Selector,
        Target, WildcardDepth,
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
