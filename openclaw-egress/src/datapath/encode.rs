//! Turning a policy into BPF map entries. Pure functions, so the exact bytes
//! the kernel will see are unit-tested without a kernel.

use std::net::IpAddr;

use openclaw_egress_common::{
    Addr, AllowKey, AllowValue, CidrKey, CidrValue, PolicyConfig, addr::IPV4_MAPPED_PREFIX_BITS,
};

use crate::policy::{Cidr, Policy, PortSpec, Target};

/// The map form of an address: IPv4 as IPv4-mapped IPv6.
pub fn addr_of(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// One entry of the `CIDR` LPM trie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CidrEntry {
    pub prefix_len: u32,
    pub key: CidrKey,
    pub value: CidrValue,
}

/// Everything the policy text alone determines (resolved names come later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticEntries {
    pub config: PolicyConfig,
    pub resolvers: Vec<Addr>,
    pub cidrs: Vec<CidrEntry>,
}

pub fn static_entries(policy: &Policy) -> StaticEntries {
    let cidrs = policy
        .egress
        .iter()
        .enumerate()
        .filter_map(|(index, rule)| match &rule.target {
            Target::Cidr(cidr) => Some(cidr_entries(rule_id(index), cidr, &rule.ports)),
            Target::Fqdn(_) | Target::Pattern(_) => None,
        })
        .flatten()
        .collect();
    StaticEntries {
        config: PolicyConfig {
            mode: policy.mode as u32,
            ready: 1,
        },
        resolvers: policy.dns.resolvers.iter().copied().map(addr_of).collect(),
        cidrs,
    }
}

/// The rule id stored in map values: the rule's index in `spec.egress`.
pub fn rule_id(index: usize) -> u32 {
    u32::try_from(index).expect("policies have far fewer than 2^32 rules")
}

/// One trie entry per (protocol, port) of the rule, each a prefix of
/// `32 + address bits`: the protocol and port are matched exactly, the
/// address by longest prefix.
fn cidr_entries(rule: u32, cidr: &Cidr, ports: &[PortSpec]) -> Vec<CidrEntry> {
    let addr_prefix_bits = match cidr.addr {
        IpAddr::V4(_) => IPV4_MAPPED_PREFIX_BITS + u32::from(cidr.prefix_len),
        IpAddr::V6(_) => u32::from(cidr.prefix_len),
    };
    each_port(ports)
        .map(|(proto, port)| CidrEntry {
            prefix_len: CidrKey::PORT_PREFIX_BITS + addr_prefix_bits,
            key: CidrKey::new(addr_of(cidr.addr), proto, port),
            value: CidrValue { rule },
        })
        .collect()
}

/// `ALLOW` entries letting `ips` be reached on the rule's ports until `expires_at_ns`.
pub fn allow_entries(
    rule: u32,
    ports: &[PortSpec],
    ips: &[IpAddr],
    expires_at_ns: u64,
) -> Vec<(AllowKey, AllowValue)> {
    ips.iter()
        .flat_map(|ip| {
            each_port(ports).map(move |(proto, port)| {
                (
                    AllowKey::new(addr_of(*ip), proto, port),
                    AllowValue {
                        expires_at_ns,
                        rule,
                        _pad: 0,
                    },
                )
            })
        })
        .collect()
}

/// (IP protocol, port) pairs of a port list, `443` standing for TCP and UDP.
fn each_port(ports: &[PortSpec]) -> impl Iterator<Item = (u8, u16)> + '_ {
    ports.iter().flat_map(|spec| {
        spec.protocol
            .ip_protocols()
            .iter()
            .map(move |proto| (*proto, spec.port))
    })
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use openclaw_egress_common::{ipv4_mapped, proto};

    use super::*;
    use crate::policy::{DnsConfig, EgressRule, Fqdn, Mode, Protocol, Selector};

    fn port(port: u16, protocol: Protocol) -> PortSpec {
        PortSpec { port, protocol }
    }

    fn policy(egress: Vec<EgressRule>) -> Policy {
        Policy {
            name: "test".into(),
            mode: Mode::Audit,
            selector: Selector::default(),
            dns: DnsConfig {
                resolvers: vec![
                    IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)),
                    "fd77::1".parse().unwrap(),
                ],
                min_ttl: DnsConfig::DEFAULT_MIN_TTL,
                max_ips_per_name: DnsConfig::DEFAULT_MAX_IPS_PER_NAME,
            },
            egress,
        }
    }

    #[test]
    fn ipv4_is_stored_mapped_and_ipv6_as_is() {
        assert_eq!(
            addr_of(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10))),
            ipv4_mapped([203, 0, 113, 10])
        );
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(addr_of(IpAddr::V6(v6)), v6.octets());
    }

    #[test]
    fn config_and_resolvers() {
        let entries = static_entries(&policy(vec![]));
        assert_eq!(entries.config, PolicyConfig { mode: 1, ready: 1 });
        assert_eq!(
            entries.resolvers,
            vec![
                ipv4_mapped([10, 77, 0, 1]),
                "fd77::1".parse::<Ipv6Addr>().unwrap().octets()
            ]
        );
        assert!(entries.cidrs.is_empty());
    }

    #[test]
    fn cidr_rule_becomes_one_prefix_per_protocol_and_port() {
        let entries = static_entries(&policy(vec![
            EgressRule {
                target: Target::Fqdn(Fqdn("api.trusted.test".into())),
                ports: vec![port(443, Protocol::Tcp)],
            },
            EgressRule {
                target: Target::Cidr(Cidr {
                    addr: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 0)),
                    prefix_len: 24,
                }),
                ports: vec![port(5432, Protocol::Tcp), port(8125, Protocol::Any)],
            },
            EgressRule {
                target: Target::Cidr(Cidr {
                    addr: "2001:db8:5::".parse().unwrap(),
                    prefix_len: 48,
                }),
                ports: vec![port(443, Protocol::Udp)],
            },
        ]));
        let v4 = ipv4_mapped([10, 0, 1, 0]);
        let v6 = "2001:db8:5::".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(
            entries.cidrs,
            vec![
                CidrEntry {
                    prefix_len: 32 + 96 + 24,
                    key: CidrKey::new(v4, proto::TCP, 5432),
                    value: CidrValue { rule: 1 },
                },
                CidrEntry {
                    prefix_len: 32 + 96 + 24,
                    key: CidrKey::new(v4, proto::TCP, 8125),
                    value: CidrValue { rule: 1 },
                },
                CidrEntry {
                    prefix_len: 32 + 96 + 24,
                    key: CidrKey::new(v4, proto::UDP, 8125),
                    value: CidrValue { rule: 1 },
                },
                CidrEntry {
                    prefix_len: 32 + 48,
                    key: CidrKey::new(v6, proto::UDP, 443),
                    value: CidrValue { rule: 2 },
                },
            ]
        );
    }

    #[test]
    fn cidr_key_bytes_put_protocol_and_port_first_in_network_order() {
        let key = CidrKey::new(ipv4_mapped([10, 0, 1, 0]), proto::TCP, 5432);
        // SAFETY: CidrKey is repr(C) plain bytes without padding.
        let bytes: [u8; 20] = unsafe { std::mem::transmute(key) };
        assert_eq!(
            bytes,
            [
                6, 0, 0x15, 0x38, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 1, 0
            ]
        );
    }

    #[test]
    fn resolved_names_become_one_entry_per_address_protocol_and_port() {
        let ips = [
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
            "2001:db8:1::10".parse().unwrap(),
        ];
        let entries = allow_entries(
            3,
            &[port(443, Protocol::Tcp), port(53000, Protocol::Any)],
            &ips,
            42,
        );
        let value = AllowValue {
            expires_at_ns: 42,
            rule: 3,
            _pad: 0,
        };
        let v4 = ipv4_mapped([203, 0, 113, 10]);
        let v6 = "2001:db8:1::10".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(
            entries,
            vec![
                (AllowKey::new(v4, proto::TCP, 443), value),
                (AllowKey::new(v4, proto::TCP, 53000), value),
                (AllowKey::new(v4, proto::UDP, 53000), value),
                (AllowKey::new(v6, proto::TCP, 443), value),
                (AllowKey::new(v6, proto::TCP, 53000), value),
                (AllowKey::new(v6, proto::UDP, 53000), value),
            ]
        );
    }
}
