//! DNS rebinding protection: a public name must not be able to open a path to
//! the node's or the cluster's internal addresses by resolving to them.
//!
//! Learned (DNS-derived) addresses are refused when they are loopback,
//! unspecified, link-local (which covers the 169.254.169.254 cloud metadata
//! service), multicast/broadcast, or private (RFC 1918, CGNAT, IPv6 ULA) —
//! unless one of the policy's CIDR rules explicitly covers the address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::policy::{Policy, Target};

/// Why an address is not learnable; `None` when it is.
pub fn refusal(ip: IpAddr, policy: &Policy) -> Option<&'static str> {
    let reason = internal_kind(ip)?;
    let covered = policy.egress.iter().any(|rule| match &rule.target {
        Target::Cidr(cidr) => cidr.contains(ip),
        Target::Fqdn(_) | Target::Pattern(_) => false,
    });
    (!covered).then_some(reason)
}

/// The kind of internal address `ip` is, if any.
pub fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => internal_v6(v6),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_link_local() {
        Some("link-local (includes cloud metadata 169.254.169.254)")
    } else if ip.is_private() {
        Some("private")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared address space (CGNAT)")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("multicast/broadcast/reserved")
    } else {
        None
    }
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private (unique local)")
    } else if first & 0xffc0 == 0xfec0 {
        Some("site-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Cidr, DnsConfig, EgressRule, Mode, PortSpec, Protocol, Selector};

    fn policy_with_cidr(cidr: Option<Cidr>) -> Policy {
        Policy {
            name: "p".into(),
            mode: Mode::Enforce,
            selector: Selector::default(),
            dns: DnsConfig {
                resolvers: vec![],
                min_ttl: DnsConfig::DEFAULT_MIN_TTL,
                max_ips_per_name: DnsConfig::DEFAULT_MAX_IPS_PER_NAME,
            },
            egress: cidr
                .into_iter()
                .map(|cidr| EgressRule {
                    target: Target::Cidr(cidr),
                    ports: vec![PortSpec {
                        port: 5432,
                        protocol: Protocol::Tcp,
                    }],
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
}
