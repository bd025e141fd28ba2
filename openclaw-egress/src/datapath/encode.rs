//! Turning a policy into BPF map entries. Pure functions, so the exact bytes
//! the kernel will see are unit-tested without a kernel.

use std::{collections::BTreeMap, net::IpAddr};

use openclaw_egress_common::{
    Addr, AllowKey, AllowValue, CidrKey, CidrValue, DnsName, DnsNameRules, PolicyConfig, PortProto,
    RuleKind, RulePorts,
    addr::IPV4_MAPPED_PREFIX_BITS,
    dns::{DNS_NAME_KEY_LEN, MAX_RULE_PORTS, NO_RULE},
    inspect,
};

use crate::{
    policy::{Cidr, Ech, EgressRule, Inspect, Inspection, Policy, PortSpec, Target, WildcardDepth},
    rebinding,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error(
        "rules for {target} allow {count} (protocol, port) pairs together; at most {MAX_RULE_PORTS} are supported"
    )]
    TooManyPorts { target: String, count: usize },
}

/// The map form of an address: IPv4 as IPv4-mapped IPv6.
pub fn addr_of(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Prefix length of a CIDR in the mapped address space.
fn mapped_prefix_len(cidr: &Cidr) -> u32 {
    match cidr.addr {
        IpAddr::V4(_) => IPV4_MAPPED_PREFIX_BITS + u32::from(cidr.prefix_len),
        IpAddr::V6(_) => u32::from(cidr.prefix_len),
    }
}

/// One entry of the `CIDR` LPM trie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CidrEntry {
    pub prefix_len: u32,
    pub key: CidrKey,
    pub value: CidrValue,
}

/// One entry of an address-only LPM trie (`INTERNAL_RANGES`, `CIDR_ADDRS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixEntry {
    pub prefix_len: u32,
    pub addr: Addr,
    pub value: u32,
}

/// Everything the policy text alone determines (resolved names come later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticEntries {
    pub config: PolicyConfig,
    pub resolvers: Vec<Addr>,
    pub cidrs: Vec<CidrEntry>,
    pub cidr_addrs: Vec<PrefixEntry>,
    pub internal_ranges: Vec<PrefixEntry>,
    pub dns_names: Vec<(DnsName, DnsNameRules)>,
    /// (rule id, ports); name rules only.
    pub rule_ports: Vec<(u32, RulePorts)>,
}

pub fn static_entries(policy: &Policy) -> Result<StaticEntries, EncodeError> {
    let mut cidrs = Vec::new();
    let mut cidr_addrs = Vec::new();
    for (index, rule) in policy.egress.iter().enumerate() {
        if let Target::Cidr(cidr) = &rule.target {
            cidrs.extend(cidr_entries(rule_id(index), cidr, rule));
            cidr_addrs.push(PrefixEntry {
                prefix_len: mapped_prefix_len(cidr),
                addr: addr_of(cidr.addr),
                value: rule_id(index),
            });
        }
    }
    let (dns_names, rule_ports) = name_entries(policy)?;
    Ok(StaticEntries {
        config: PolicyConfig {
            mode: policy.mode as u32,
            ready: 1,
            min_ttl_secs: u32::try_from(policy.dns.min_ttl.as_secs()).unwrap_or(u32::MAX),
            max_ips_per_name: policy.dns.max_ips_per_name,
            max_ips_per_pattern: policy.dns.max_ips_per_pattern,
            // Set per instance by the daemon (see `PolicyDatapath::set_record`).
            record: 0,
        },
        resolvers: policy.dns.resolvers.iter().copied().map(addr_of).collect(),
        cidrs,
        cidr_addrs,
        internal_ranges: rebinding::trie_entries(),
        dns_names,
        rule_ports,
    })
}

type NameEntries = (Vec<(DnsName, DnsNameRules)>, Vec<(u32, RulePorts)>);
/// A name target, the first rule naming it, and the union of its (protocol,
/// port, inspect bits), the bits of a pair listed by several rules merged
/// (each check any of them asks for is made).
type TargetPorts<'a> = (&'a Target, u32, Vec<(u8, u16, u8)>);

/// `DNS_NAMES` and `RULE_PORTS` entries. Rules naming the same target share
/// the id of the first of them, whose port list becomes the union of theirs:
/// a name is allowed on every port any of its rules lists. A target only
/// `dnsOnly` rules name gets an empty port list: its questions pass, its
/// answers allow nothing.
fn name_entries(policy: &Policy) -> Result<NameEntries, EncodeError> {
    // (target, first rule id naming it, union of the ports), in rule order.
    let mut by_target: Vec<TargetPorts<'_>> = Vec::new();
    for (index, rule) in policy.egress.iter().enumerate() {
        if matches!(rule.target, Target::Cidr(_)) {
            continue;
        }
        let position = match by_target
            .iter()
            .position(|(target, ..)| **target == rule.target)
        {
            Some(position) => position,
            None => {
                by_target.push((&rule.target, rule_id(index), Vec::new()));
                by_target.len() - 1
            }
        };
        let ports = &mut by_target[position].2;
        for (proto, port) in each_port(&rule.ports) {
            let bits = inspect_bits(&rule.inspection, proto, port);
            match ports.iter_mut().find(|(p, n, _)| (*p, *n) == (proto, port)) {
                Some(existing) => existing.2 |= bits,
                None => ports.push((proto, port, bits)),
            }
        }
    }
    // A DNS-only target (`dnsOnly` rules alone name it) whose every name a
    // target with ports matches adds nothing: those questions pass anyway.
    // Dropping it also keeps it out of the kernel's matches, most specific
    // first, where it would come before the rule with ports and answers to
    // its names would charge the name's budget as if nothing were allowed
    // yet (its empty port list is never "already allowed").
    // (An exact name with ports covers only itself, and rules naming the
    // same target were merged above: only patterns with ports can cover.)
    let patterns_with_ports: Vec<&Target> = by_target
        .iter()
        .filter(|(target, _, ports)| matches!(target, Target::Pattern(_)) && !ports.is_empty())
        .map(|(target, ..)| *target)
        .collect();
    let covered: Vec<bool> = by_target
        .iter()
        .map(|(target, _, ports)| {
            ports.is_empty()
                && patterns_with_ports
                    .iter()
                    .any(|pattern| pattern.covers_names_of(target))
        })
        .collect();
    let mut names: BTreeMap<DnsName, DnsNameRules> = BTreeMap::new();
    let mut rule_ports = Vec::new();
    for ((target, rule, ports), covered) in by_target.into_iter().zip(covered) {
        if covered {
            continue;
        }
        if ports.len() > MAX_RULE_PORTS {
            return Err(EncodeError::TooManyPorts {
                target: target_string(target),
                count: ports.len(),
            });
        }
        let kind = match target {
            Target::Pattern(_) => RuleKind::Pattern,
            Target::Fqdn(_) | Target::Cidr(_) => RuleKind::Exact,
        };
        let mut value = RulePorts {
            count: ports.len() as u32,
            kind: kind as u32,
            ports: [PortProto::default(); MAX_RULE_PORTS],
        };
        for (slot, (proto, port, inspect)) in value.ports.iter_mut().zip(ports) {
            *slot = PortProto {
                port,
                proto,
                inspect,
            };
        }
        rule_ports.push((rule, value));
        let (name, kind) = match target {
            Target::Fqdn(fqdn) => (fqdn.0.as_str(), None),
            Target::Pattern(pattern) => (pattern.suffix.as_str(), Some(pattern.depth)),
            Target::Cidr(_) => unreachable!("CIDR rules were skipped"),
        };
        let entry = names
            .entry(dns_name_key(name))
            .or_insert(DnsNameRules::NONE);
        let slot = match kind {
            None => &mut entry.exact,
            Some(WildcardDepth::OneLabel) => &mut entry.one_label,
            Some(WildcardDepth::AnyDepth) => &mut entry.any_depth,
        };
        if *slot == NO_RULE {
            *slot = rule;
        }
    }
    Ok((names.into_iter().collect(), rule_ports))
}

fn target_string(target: &Target) -> String {
    match target {
        Target::Fqdn(name) => name.to_string(),
        Target::Pattern(pattern) => pattern.to_string(),
        Target::Cidr(cidr) => cidr.to_string(),
    }
}

/// The `DNS_NAMES` key of a (valid, lowercase, dotted) name: wire-format
/// labels right-aligned in the key, zeros in front.
pub fn dns_name_key(name: &str) -> DnsName {
    let mut wire = Vec::with_capacity(name.len() + 1);
    for label in name.trim_end_matches('.').split('.') {
        wire.push(u8::try_from(label.len()).expect("labels are at most 63 bytes"));
        wire.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    let mut key = DnsName {
        bytes: [0; DNS_NAME_KEY_LEN],
    };
    key.bytes[DNS_NAME_KEY_LEN - wire.len()..].copy_from_slice(&wire);
    key
}

/// The rule id stored in map values: the rule's index in `spec.egress`.
pub fn rule_id(index: usize) -> u32 {
    u32::try_from(index).expect("policies have far fewer than 2^32 rules")
}

/// One trie entry per (protocol, port) of the rule, each a prefix of
/// `32 + address bits`: the protocol and port are matched exactly, the
/// address by longest prefix.
fn cidr_entries(id: u32, cidr: &Cidr, rule: &EgressRule) -> Vec<CidrEntry> {
    each_port(&rule.ports)
        .map(|(proto, port)| CidrEntry {
            prefix_len: CidrKey::PORT_PREFIX_BITS + mapped_prefix_len(cidr),
            key: CidrKey::new(addr_of(cidr.addr), proto, port),
            value: CidrValue {
                rule: id,
                inspect: inspect_bits(&rule.inspection, proto, port),
                _pad: [0; 3],
            },
        })
        .collect()
}

/// `ALLOW` entries letting `ips` be reached on the ports of `rule` (whose
/// id is `id`) until `expires_at_ns`.
pub fn allow_entries(
    id: u32,
    rule: &EgressRule,
    ips: &[IpAddr],
    expires_at_ns: u64,
) -> Vec<(AllowKey, AllowValue)> {
    ips.iter()
        .flat_map(|ip| {
            each_port(&rule.ports).map(move |(proto, port)| {
                (
                    AllowKey::new(addr_of(*ip), proto, port),
                    AllowValue {
                        expires_at_ns,
                        rule: id,
                        inspect: inspect_bits(&rule.inspection, proto, port),
                        _pad: [0; 3],
                    },
                )
            })
        })
        .collect()
}

/// The `inspect` bits of a (protocol, port) of a rule: what the first bytes
/// of a connection there must say.
pub fn inspect_bits(inspection: &Inspection, proto: u8, port: u16) -> u8 {
    if proto != openclaw_egress_common::proto::TCP {
        return 0;
    }
    match inspection.on_port(port) {
        Some(Inspect::Tls) if inspection.ech == Ech::Deny => inspect::TLS | inspect::ECH_DENY,
        Some(Inspect::Tls) => inspect::TLS,
        Some(Inspect::Http) => inspect::HTTP,
        None => 0,
    }
}

/// (IP protocol, port) pairs of a port list, `443` standing for TCP and UDP.
pub fn each_port(ports: &[PortSpec]) -> impl Iterator<Item = (u8, u16)> + '_ {
    ports.iter().flat_map(|spec| {
        spec.protocol
            .ip_protocols()
            .iter()
            .map(move |proto| (*proto, spec.port))
    })
}

#[cfg(test)]
mod tests;
