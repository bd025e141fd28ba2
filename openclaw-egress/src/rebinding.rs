//! DNS rebinding protection: a public name must not be able to open a path to
//! the node's or the cluster's internal addresses by resolving to them.
//!
//! Learned (DNS-derived) addresses are refused when they fall in one of
//! [`INTERNAL_RANGES`] — loopback, unspecified, link-local (which covers the
//! 169.254.169.254 cloud metadata service), private (RFC 1918, CGNAT, IPv6
//! ULA), multicast and reserved — unless one of the policy's CIDR rules
//! explicitly covers the address. The daemon applies this to the names it
//! resolves, and the same table is loaded into the kernel for the addresses
//! it learns from DNS answers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::policy::{Cidr, Policy, Target};

/// Address ranges never learned from DNS, and what they are.
pub const INTERNAL_RANGES: &[(Cidr, &str)] = &[
    (v4(0, 0, 0, 0, 8), "unspecified"),
    (v4(10, 0, 0, 0, 8), "private"),
    (v4(100, 64, 0, 0, 10), "shared address space (CGNAT)"),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (
        v4(169, 254, 0, 0, 16),
        "link-local (includes cloud metadata 169.254.169.254)",
    ),
    (v4(172, 16, 0, 0, 12), "private"),
    (v4(192, 168, 0, 0, 16), "private"),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(240, 0, 0, 0, 4), "reserved/broadcast"),
    (v6(0, 128), "unspecified"),
    (v6(1, 128), "loopback"),
    (v6(0xfc00 << 112, 7), "private (unique local)"),
    (v6(0xfe80 << 112, 10), "link-local"),
    (v6(0xfec0 << 112, 10), "site-local"),
    (v6(0xff00 << 112, 8), "multicast"),
];

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix_len: u8) -> Cidr {
    Cidr {
        addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        prefix_len,
    }
}

const fn v6(bits: u128, prefix_len: u8) -> Cidr {
    Cidr {
        addr: IpAddr::V6(Ipv6Addr::from_bits(bits)),
        prefix_len,
    }
}

/// Why an address may not be learned for `policy`; `None` when it may.
pub fn refusal(ip: IpAddr, policy: &Policy) -> Option<&'static str> {
    let kind = internal_kind(ip)?;
    let covered = policy.egress.iter().any(|rule| match &rule.target {
        Target::Cidr(cidr) => cidr.contains(ip),
        Target::Fqdn(_) | Target::Pattern(_) => false,
    });
    (!covered).then_some(kind)
}

/// The kind of internal address `ip` is, if any. IPv4-mapped IPv6 addresses
/// count as the IPv4 address they carry.
pub fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    };
    INTERNAL_RANGES
        .iter()
        .find(|(range, _)| range.contains(ip))
        .map(|(_, kind)| *kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DnsConfig, EgressRule, Mode, PortSpec, Protocol, Selector};

    fn policy_with_cidr(cidr: Option<Cidr>) -> Policy {
        Policy {
            name: "p".into(),
            mode: Mode::Enforce,
            selector: Selector::default(),
            dns: DnsConfig::with_resolvers(vec![]),
            egress: cidr
                .into_iter()
                .map(|cidr| {
                    EgressRule::new(
                        Target::Cidr(cidr),
                        vec![PortSpec {
                            port: 5432,
                            protocol: Protocol::Tcp,
                        }],
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn internal_addresses_are_refused() {
        let policy = policy_with_cidr(None);
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "ff02::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(refusal(ip, &policy).is_some(), "{ip} must not be learnable");
        }
    }

    #[test]
    fn public_addresses_are_learnable() {
        let policy = policy_with_cidr(None);
        for ip in [
            "203.0.113.10",
            "198.51.100.7",
            "8.8.8.8",
            "2001:db8:1::10",
            "2606:4700::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(refusal(ip, &policy), None, "{ip} must be learnable");
        }
    }

    #[test]
    fn a_cidr_rule_makes_internal_addresses_learnable() {
        let policy = policy_with_cidr(Some(Cidr {
            addr: "10.0.1.0".parse().unwrap(),
            prefix_len: 24,
        }));
        assert_eq!(refusal("10.0.1.5".parse().unwrap(), &policy), None);
        assert!(refusal("10.0.2.5".parse().unwrap(), &policy).is_some());
    }

    #[test]
    fn ranges_have_no_host_bits() {
        for (range, _) in INTERNAL_RANGES {
            assert!(range.contains(range.addr), "{range}");
            let network = match range.addr {
                IpAddr::V4(v4) => {
                    let mask = u32::MAX
                        .checked_shl(32 - u32::from(range.prefix_len))
                        .unwrap_or(0);
                    IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() & mask))
                }
                IpAddr::V6(v6) => {
                    let mask = u128::MAX
                        .checked_shl(128 - u32::from(range.prefix_len))
                        .unwrap_or(0);
                    IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask))
                }
            };
            assert_eq!(network, range.addr, "{range}");
        }
    }
}
