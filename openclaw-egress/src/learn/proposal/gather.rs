//! From observations to what needs allowing: the ports each name needs,
//! the names that need only DNS, and the addresses that need `cidr` rules,
//! leaving out what the rules already `allowed` allow (none for a fresh
//! proposal, an existing policy's for a merge).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::{ProposedRule, Reason, add_seen};
use crate::{
    learn::observations::{Connection, Observations, Seen, Transport},
    policy::{self, Cidr, EgressRule, PortSpec, Protocol, Target},
    rebinding,
};

/// DNS goes to the resolvers only, and no rule may list its port.
const DNS_PORT: u16 = 53;

/// One name and what it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct NameUse {
    pub name: String,
    /// Ports its connections used that nothing allows yet (empty: it needs
    /// only its questions let through).
    pub ports: BTreeSet<PortSpec>,
    /// Those connections.
    pub seen: Option<Seen>,
    pub addresses: BTreeSet<IpAddr>,
    /// Its questions, if it was asked.
    pub asked: Option<(BTreeSet<u16>, Seen)>,
    /// Whether it was connected to through addresses a `cidr` rule allows
    /// (existing, or proposed for an internal address).
    pub via_cidr: bool,
}

/// What [`gather`] found.
pub(super) struct Gathered {
    /// Names that need ports, by name.
    pub with_ports: Vec<NameUse>,
    /// Names that need only DNS, by name.
    pub asked_only: Vec<NameUse>,
    /// `cidr` rules: internal addresses names gave, then addresses no name
    /// gave, each in address order.
    pub addresses: Vec<ProposedRule>,
    pub not_proposed: Vec<String>,
}

pub(super) fn gather(allowed: &[EgressRule], observations: &Observations) -> Gathered {
    let allowed = Allowed(allowed);
    let mut names: BTreeMap<&str, NameUse> = BTreeMap::new();
    let mut internal: BTreeMap<IpAddr, AddressUse> = BTreeMap::new();
    let mut direct: BTreeMap<IpAddr, AddressUse> = BTreeMap::new();
    let mut not_proposed = Vec::new();

    for (name, question) in &observations.questions {
        entry(&mut names, name).asked = Some((question.types.clone(), question.seen));
    }
    for (destination, connection) in &observations.connections {
        let addr = destination.addr.to_canonical();
        let port = PortSpec {
            port: destination.port,
            protocol: match destination.transport {
                Transport::Tcp => Protocol::Tcp,
                Transport::Udp => Protocol::Udp,
            },
        };
        if port.port == DNS_PORT {
            if !observations
                .resolvers
                .iter()
                .any(|resolver| resolver.to_canonical() == addr)
            {
                not_proposed.push(format!(
                    "DNS to {addr} ({port}): only the resolvers in spec.dns.resolvers may be \
                     asked; list it there if the workload must use it"
                ));
            }
            continue;
        }
        let by_cidr = allowed.addr_on(addr, port);
        if connection.names.is_empty() {
            if !by_cidr {
                direct.entry(addr).or_default().add(port, connection);
            }
            continue;
        }
        let internal_kind = rebinding::internal_kind(addr).filter(|_| !allowed.learnable(addr));
        if let Some(kind) = internal_kind
            && !by_cidr
        {
            let address = internal.entry(addr).or_default();
            address.add(port, connection);
            address.kind = kind.to_string();
        }
        for name in &connection.names {
            let name_use = entry(&mut names, name);
            if by_cidr || internal_kind.is_some() {
                name_use.via_cidr = true;
            } else if !allowed.name_on(name, port) {
                name_use.ports.insert(port);
                name_use.addresses.insert(addr);
                add_seen(&mut name_use.seen, connection.seen);
            }
        }
    }

    let mut with_ports = Vec::new();
    let mut asked_only = Vec::new();
    for (name, mut name_use) in names {
        if name_use.ports.is_empty() && allowed.name(name) {
            continue;
        }
        match policy::parse_fqdn(name) {
            Ok(fqdn) => name_use.name = fqdn.0,
            Err(message) => {
                not_proposed.push(format!("the name `{name}`: {message}"));
                continue;
            }
        }
        if name_use.ports.is_empty() {
            asked_only.push(name_use);
        } else {
            with_ports.push(name_use);
        }
    }
    let addresses = internal
        .into_iter()
        .map(|(addr, address)| address.into_rule(addr, true))
        .chain(
            direct
                .into_iter()
                .map(|(addr, address)| address.into_rule(addr, false)),
        )
        .collect();
    Gathered {
        with_ports,
        asked_only,
        addresses,
        not_proposed,
    }
}

fn entry<'n, 'a>(names: &'n mut BTreeMap<&'a str, NameUse>, name: &'a str) -> &'n mut NameUse {
    names.entry(name).or_insert_with(|| NameUse {
        name: name.to_owned(),
        ports: BTreeSet::new(),
        seen: None,
        addresses: BTreeSet::new(),
        asked: None,
        via_cidr: false,
    })
}

impl NameUse {
    pub fn into_rule(self) -> ProposedRule {
        let target = Target::Fqdn(policy::Fqdn(self.name));
        if self.ports.is_empty() {
            let (types, asked) = self.asked.unzip();
            return ProposedRule {
                rule: EgressRule::new(target, Vec::new()),
                reason: Reason::AskedOnly {
                    types: types.unwrap_or_default(),
                    via_cidr: self.via_cidr,
                },
                seen: asked.or(self.seen),
            };
        }
        ProposedRule {
            rule: name_rule(target, &self.ports),
            reason: Reason::Connected {
                addresses: self.addresses.len(),
            },
            seen: self.seen,
        }
    }
}

/// A name rule on `ports`; where it uses 443 over both TCP and UDP, with
/// `quic: allow` (the parser refuses UDP on a TLS port without it, and the
/// workload did use QUIC).
pub(super) fn name_rule(target: Target, ports: &BTreeSet<PortSpec>) -> EgressRule {
    let ports: Vec<PortSpec> = ports.iter().copied().collect();
    let mut rule = EgressRule::new(target, ports);
    let udp_on_tls = rule.inspection.tls_ports.iter().any(|&tls| {
        rule.ports
            .iter()
            .any(|spec| spec.port == tls && spec.protocol == Protocol::Udp)
    });
    rule.inspection.quic = udp_on_tls;
    rule
}

/// Connections to one address.
#[derive(Default)]
struct AddressUse {
    ports: BTreeSet<PortSpec>,
    seen: Option<Seen>,
    names: BTreeSet<String>,
    /// For an internal address: what kind.
    kind: String,
}

impl AddressUse {
    fn add(&mut self, port: PortSpec, connection: &Connection) {
        self.ports.insert(port);
        add_seen(&mut self.seen, connection.seen);
        self.names.extend(connection.names.iter().cloned());
    }

    fn into_rule(self, addr: IpAddr, internal: bool) -> ProposedRule {
        let prefix_len = if addr.is_ipv4() { 32 } else { 128 };
        let target = Target::Cidr(Cidr { addr, prefix_len });
        ProposedRule {
            rule: EgressRule::new(target, self.ports.into_iter().collect()),
            reason: if internal {
                Reason::InternalAddress {
                    kind: self.kind,
                    names: self.names.into_iter().collect(),
                }
            } else {
                Reason::DirectIp
            },
            seen: self.seen,
        }
    }
}

/// What some rules already allow.
struct Allowed<'a>(&'a [EgressRule]);

impl Allowed<'_> {
    /// Whether a name rule lets `name` be asked.
    fn name(&self, name: &str) -> bool {
        self.0.iter().any(|rule| rule.target.matches_name(name))
    }

    /// Whether a name rule allows `name`'s addresses on `port`.
    fn name_on(&self, name: &str, port: PortSpec) -> bool {
        self.0
            .iter()
            .any(|rule| rule.target.matches_name(name) && lists(rule, port))
    }

    /// Whether a `cidr` rule allows `addr` on `port`.
    fn addr_on(&self, addr: IpAddr, port: PortSpec) -> bool {
        self.0.iter().any(|rule| match &rule.target {
            Target::Cidr(cidr) => cidr.contains(addr) && lists(rule, port),
            Target::Fqdn(_) | Target::Pattern(_) => false,
        })
    }

    /// Whether a `cidr` rule covers `addr`, which makes it learnable from
    /// DNS even if it is internal (see `rebinding::refusal`).
    fn learnable(&self, addr: IpAddr) -> bool {
        self.0
            .iter()
            .any(|rule| matches!(&rule.target, Target::Cidr(cidr) if cidr.contains(addr)))
    }
}

/// Whether `rule` lists `port` (a bare port number stands for TCP and UDP).
fn lists(rule: &EgressRule, port: PortSpec) -> bool {
    rule.ports.iter().any(|spec| {
        spec.port == port.port && (spec.protocol == Protocol::Any || spec.protocol == port.protocol)
    })
}
