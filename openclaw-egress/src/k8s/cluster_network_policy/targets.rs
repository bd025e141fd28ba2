//! Domain names and networks as the targets of the document's rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ports::{RulePort, Transport};
use crate::{
    k8s::egress_policy::{PortSpec, RuleSpec},
    policy::{self, Inspection},
};

/// What an allow rule of the document names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Target {
    Fqdn(String),
    /// Already in our syntax (`**.example.com`).
    Pattern(String),
    Cidr(String),
}

/// A domain name in our syntax. Upstream's `*.example.com` matches names at
/// any depth below `example.com` (not itself): that is our `**.`, since our
/// `*.` stands for exactly one label. Names are lowercased and lose their
/// trailing dot, as DNS compares them.
pub(super) fn domain_target(domain: &str) -> Result<Target, String> {
    let name = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    match name.strip_prefix("*.") {
        Some(suffix) if !suffix.contains('*') => Ok(Target::Pattern(format!("**.{suffix}"))),
        None if !name.contains('*') => Ok(Target::Fqdn(name)),
        _ => Err(format!(
            "`{domain}`: '*' may only stand as a whole first label (`*.example.com`)"
        )),
    }
}

/// A rule of the document: `target` on `ports`.
pub(super) fn rule_spec(target: Target, ports: &[RulePort]) -> RuleSpec {
    let port_specs = ports
        .iter()
        .map(|port| {
            let transport = match port.transport {
                Transport::Tcp => "tcp",
                Transport::Udp => "udp",
            };
            PortSpec::Text(format!("{}/{transport}", port.number))
        })
        .collect();
    let mut rule = RuleSpec {
        ports: port_specs,
        ..RuleSpec::default()
    };
    // A name rule checks the TLS server name on 443/tcp. Upstream allows
    // 443/udp (QUIC) to the name's addresses too, which is what
    // `quic: allow` does (the encrypted QUIC Initial cannot be checked).
    let tls = Inspection::DEFAULT_TLS_PORT;
    let allows = |transport| {
        ports
            .iter()
            .any(|p| (p.number, p.transport) == (tls, transport))
    };
    let name_rule = !matches!(target, Target::Cidr(_));
    if name_rule && allows(Transport::Tcp) && allows(Transport::Udp) {
        rule.quic = Some("allow".to_owned());
    }
    match target {
        Target::Fqdn(name) => rule.fqdn = Some(name),
        Target::Pattern(pattern) => rule.fqdn_pattern = Some(pattern),
        Target::Cidr(cidr) => rule.cidr = Some(cidr),
    }
    rule
}

/// A CIDR's network and prefix length, with host bits cleared; `None` if
/// it is not a CIDR. (Upstream's `isCIDR` accepts host bits, as in
/// `10.1.2.3/16`; Go implementations parse CIDRs with `net.ParseCIDR`,
/// which keeps the network, `10.1.0.0/16`. This follows them, though
/// upstream does not say.)
pub(super) fn canonical_network(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = text.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    let network = match addr {
        IpAddr::V4(v4) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        _ => return None,
    };
    Some((network, len))
}

pub(super) fn contains((network, len): (IpAddr, u8), ip: IpAddr) -> bool {
    policy::Cidr {
        addr: network,
        prefix_len: len,
    }
    .contains(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_network_policy_domain_names_map_to_our_syntax() {
        let fqdn = |s: &str| Ok(Target::Fqdn(s.to_owned()));
        let pattern = |s: &str| Ok(Target::Pattern(s.to_owned()));
        assert_eq!(domain_target("kubernetes.io"), fqdn("kubernetes.io"));
        assert_eq!(
            domain_target("Blog.Kubernetes.IO."),
            fqdn("blog.kubernetes.io")
        );
        assert_eq!(
            domain_target("_dmarc.example.com"),
            fqdn("_dmarc.example.com")
        );
        // Upstream's `*.` is any depth: our `**.`.
        assert_eq!(
            domain_target("*.kubernetes.io"),
            pattern("**.kubernetes.io")
        );
        assert_eq!(
            domain_target("*.Pkg.Example.COM."),
            pattern("**.pkg.example.com")
        );
        for bad in [
            "**.example.com",
            "a.*.example.com",
            "*example.com",
            "*.*.example.com",
        ] {
            let error = domain_target(bad).unwrap_err();
            assert!(error.contains("whole first label"), "{bad}: {error}");
        }
    }

    #[test]
    fn cluster_network_policy_networks_are_canonical() {
        let net = |s: &str| canonical_network(s).map(|(a, l)| format!("{a}/{l}"));
        assert_eq!(net("10.0.0.0/8").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(net("10.1.2.3/16").as_deref(), Some("10.1.0.0/16"));
        assert_eq!(net("0.0.0.0/0").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(net("fd00::1/8").as_deref(), Some("fd00::/8"));
        assert_eq!(net("::/0").as_deref(), Some("::/0"));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0.0/+8",
            "x/8",
            "10.0.0.0/",
        ] {
            assert_eq!(net(bad), None, "{bad}");
        }
    }
}
