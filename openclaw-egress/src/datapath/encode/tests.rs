use std::net::{Ipv4Addr, Ipv6Addr};

use openclaw_egress_common::{ipv4_mapped, proto};

use super::*;
use crate::policy::{DnsConfig, EgressRule, Fqdn, FqdnPattern, Mode, Protocol, Selector};

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
            min_ttl: std::time::Duration::from_secs(30),
            max_ips_per_name: 8,
            max_ips_per_pattern: DnsConfig::DEFAULT_MAX_IPS_PER_PATTERN,
        },
        egress,
    }
}

fn fqdn(name: &str, ports: Vec<PortSpec>) -> EgressRule {
    EgressRule::new(Target::Fqdn(Fqdn(name.into())), ports)
}

fn pattern(depth: WildcardDepth, suffix: &str, ports: Vec<PortSpec>) -> EgressRule {
    EgressRule::new(
        Target::Pattern(FqdnPattern {
            depth,
            suffix: suffix.into(),
        }),
        ports,
    )
}

fn ports_of(entries: &StaticEntries, rule: u32) -> Vec<(u8, u16)> {
    let (_, ports) = entries
        .rule_ports
        .iter()
        .find(|(id, _)| *id == rule)
        .unwrap();
    ports.ports[..ports.count as usize]
        .iter()
        .map(|p| (p.proto, p.port))
        .collect()
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
    let entries = static_entries(&policy(vec![])).unwrap();
    assert_eq!(
        entries.config,
        PolicyConfig {
            mode: 1,
            ready: 1,
            min_ttl_secs: 30,
            max_ips_per_name: 8,
            max_ips_per_pattern: DnsConfig::DEFAULT_MAX_IPS_PER_PATTERN,
            record: 0,
        }
    );
    assert_eq!(
        entries.resolvers,
        vec![
            ipv4_mapped([10, 77, 0, 1]),
            "fd77::1".parse::<Ipv6Addr>().unwrap().octets()
        ]
    );
    assert!(entries.cidrs.is_empty());
    assert!(entries.dns_names.is_empty());
}

#[test]
fn cidr_rule_becomes_one_prefix_per_protocol_and_port() {
    let entries = static_entries(&policy(vec![
        fqdn("api.trusted.test", vec![port(443, Protocol::Tcp)]),
        EgressRule::new(
            Target::Cidr(Cidr {
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 0)),
                prefix_len: 24,
            }),
            vec![port(5432, Protocol::Tcp), port(8125, Protocol::Any)],
        ),
        EgressRule::new(
            Target::Cidr(Cidr {
                addr: "2001:db8:5::".parse().unwrap(),
                prefix_len: 48,
            }),
            vec![port(443, Protocol::Udp)],
        ),
    ]))
    .unwrap();
    let v4 = ipv4_mapped([10, 0, 1, 0]);
    let v6 = "2001:db8:5::".parse::<Ipv6Addr>().unwrap().octets();
    let entry = |prefix_len, addr, proto, port, rule| CidrEntry {
        prefix_len,
        key: CidrKey::new(addr, proto, port),
        value: CidrValue {
            rule,
            inspect: 0,
            _pad: [0; 3],
        },
    };
    assert_eq!(
        entries.cidrs,
        vec![
            entry(32 + 96 + 24, v4, proto::TCP, 5432, 1),
            entry(32 + 96 + 24, v4, proto::TCP, 8125, 1),
            entry(32 + 96 + 24, v4, proto::UDP, 8125, 1),
            entry(32 + 48, v6, proto::UDP, 443, 2),
        ]
    );
    assert_eq!(
        entries.cidr_addrs,
        vec![
            PrefixEntry {
                prefix_len: 96 + 24,
                addr: v4,
                value: 1
            },
            PrefixEntry {
                prefix_len: 48,
                addr: v6,
                value: 2
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
fn dns_name_keys_are_right_aligned_lowercase_wire_labels() {
    let key = dns_name_key("API.GitHub.com.");
    let wire = b"\x03api\x06github\x03com";
    assert_eq!(&key.bytes[DNS_NAME_KEY_LEN - wire.len()..], wire);
    assert!(
        key.bytes[..DNS_NAME_KEY_LEN - wire.len()]
            .iter()
            .all(|b| *b == 0)
    );
    // A suffix key is the name key with the leading labels zeroed.
    let mut stripped = key;
    stripped.bytes[DNS_NAME_KEY_LEN - wire.len()..DNS_NAME_KEY_LEN - wire.len() + 4].fill(0);
    assert_eq!(stripped, dns_name_key("github.com"));
}

#[test]
fn name_rules_become_dns_keys_and_port_lists() {
    let entries = static_entries(&policy(vec![
        fqdn("api.github.com", vec![port(443, Protocol::Tcp)]),
        pattern(
            WildcardDepth::OneLabel,
            "github.com",
            vec![port(80, Protocol::Tcp)],
        ),
        pattern(
            WildcardDepth::AnyDepth,
            "github.com",
            vec![port(8443, Protocol::Any)],
        ),
        // Same name again with another port: merged into rule 0.
        fqdn(
            "api.github.com",
            vec![port(22, Protocol::Tcp), port(443, Protocol::Tcp)],
        ),
    ]))
    .unwrap();
    let mut expected = vec![
        (
            dns_name_key("api.github.com"),
            DnsNameRules {
                exact: 0,
                one_label: NO_RULE,
                any_depth: NO_RULE,
            },
        ),
        (
            dns_name_key("github.com"),
            DnsNameRules {
                exact: NO_RULE,
                one_label: 1,
                any_depth: 2,
            },
        ),
    ];
    expected.sort_by_key(|(key, _)| *key);
    assert_eq!(entries.dns_names, expected);
    assert_eq!(
        ports_of(&entries, 0),
        vec![(proto::TCP, 443), (proto::TCP, 22)]
    );
    assert_eq!(ports_of(&entries, 1), vec![(proto::TCP, 80)]);
    assert_eq!(
        ports_of(&entries, 2),
        vec![(proto::TCP, 8443), (proto::UDP, 8443)]
    );
    assert!(!entries.rule_ports.iter().any(|(id, _)| *id == 3));
}

/// A `dnsOnly` rule's name is in `DNS_NAMES` (its questions pass) with an
/// empty port list (its answers allow nothing), unless a rule with ports
/// already matches all its names; a rule with ports naming the same target
/// gives it its ports.
#[test]
fn dns_only_names_get_no_ports_and_no_entry_when_covered() {
    let entries = static_entries(&policy(vec![
        fqdn("nx.example.test", vec![]),
        pattern(WildcardDepth::OneLabel, "probe.test", vec![]),
        // Covered by rule 3 (`**.pkg.test`): no entry of its own.
        fqdn("a.pkg.test", vec![]),
        pattern(
            WildcardDepth::AnyDepth,
            "pkg.test",
            vec![port(443, Protocol::Tcp)],
        ),
        pattern(WildcardDepth::OneLabel, "b.pkg.test", vec![]),
        // Same target as rule 5 (dnsOnly first): rule 5's id, these ports.
        fqdn("both.test", vec![]),
        fqdn("both.test", vec![port(8443, Protocol::Tcp)]),
    ]))
    .unwrap();
    let rules = |exact, one_label, any_depth| DnsNameRules {
        exact,
        one_label,
        any_depth,
    };
    let mut expected = vec![
        (dns_name_key("nx.example.test"), rules(0, NO_RULE, NO_RULE)),
        (dns_name_key("probe.test"), rules(NO_RULE, 1, NO_RULE)),
        (dns_name_key("pkg.test"), rules(NO_RULE, NO_RULE, 3)),
        (dns_name_key("both.test"), rules(5, NO_RULE, NO_RULE)),
    ];
    expected.sort_by_key(|(key, _)| *key);
    assert_eq!(entries.dns_names, expected);
    assert_eq!(ports_of(&entries, 0), vec![]);
    assert_eq!(ports_of(&entries, 1), vec![]);
    assert_eq!(ports_of(&entries, 5), vec![(proto::TCP, 8443)]);
    for dropped in [2, 4, 6] {
        assert!(!entries.rule_ports.iter().any(|(id, _)| *id == dropped));
    }
    // Nothing to allow for a resolved dnsOnly name.
    let resolved = [IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))];
    assert_eq!(
        allow_entries(0, &fqdn("nx.example.test", vec![]), &resolved, 1),
        vec![]
    );
}

#[test]
fn too_many_ports_for_one_name_is_an_error() {
    let many = |base: u16| (0..16).map(|i| port(base + i, Protocol::Any)).collect();
    let error = static_entries(&policy(vec![
        fqdn("api.github.com", many(1000)),
        fqdn("api.github.com", many(2000)),
    ]))
    .unwrap_err();
    assert_eq!(
        error,
        EncodeError::TooManyPorts {
            target: "api.github.com".into(),
            count: 64
        }
    );
}

#[test]
fn internal_ranges_are_loaded_mapped() {
    let entries = static_entries(&policy(vec![])).unwrap();
    assert!(entries.internal_ranges.contains(&PrefixEntry {
        prefix_len: 96 + 8,
        addr: ipv4_mapped([127, 0, 0, 0]),
        value: 0
    }));
    assert!(entries.internal_ranges.contains(&PrefixEntry {
        prefix_len: 10,
        addr: "fe80::".parse::<Ipv6Addr>().unwrap().octets(),
        value: 0
    }));
}

#[test]
fn resolved_names_become_one_entry_per_address_protocol_and_port() {
    let ips = [
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
        "2001:db8:1::10".parse().unwrap(),
    ];
    let rule = fqdn(
        "api.example.com",
        vec![port(443, Protocol::Tcp), port(53000, Protocol::Any)],
    );
    let entries = allow_entries(3, &rule, &ips, 42);
    let value = AllowValue {
        expires_at_ns: 42,
        rule: 3,
        inspect: 0,
        _pad: [0; 3],
    };
    // 443/tcp of a name rule: its ClientHello is checked.
    let tls = AllowValue {
        inspect: inspect::TLS,
        ..value
    };
    let v4 = ipv4_mapped([203, 0, 113, 10]);
    let v6 = "2001:db8:1::10".parse::<Ipv6Addr>().unwrap().octets();
    assert_eq!(
        entries,
        vec![
            (AllowKey::new(v4, proto::TCP, 443), tls),
            (AllowKey::new(v4, proto::TCP, 53000), value),
            (AllowKey::new(v4, proto::UDP, 53000), value),
            (AllowKey::new(v6, proto::TCP, 443), tls),
            (AllowKey::new(v6, proto::TCP, 53000), value),
            (AllowKey::new(v6, proto::UDP, 53000), value),
        ]
    );
}
