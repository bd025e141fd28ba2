//! `spec.egress`: the rules' actions, the final deny-all, and what each
//! Accept rule allows (or, for port 53, which DNS servers it names).

use std::net::IpAddr;

use super::{
    ports::{DNS_PORT, rule_ports},
    targets::{Target, canonical_network, contains, domain_target, rule_spec},
    translate::{Allowed, TranslateError, refuse_unknown},
    types::{ClusterNetworkPolicyEgressPeer, ClusterNetworkPolicyEgressRule, RuleAction},
};

/// The allow rules of `spec.egress`: its `Accept` rules, which must all come
/// before one `Deny` rule that matches every destination.
pub(super) fn egress_rules(
    rules: &[ClusterNetworkPolicyEgressRule],
    resolvers: &[IpAddr],
) -> Result<Vec<Allowed>, TranslateError> {
    let deny_all = deny_all_rule(rules)?;
    // Rules after the deny-all can never match; they change nothing.
    let before = &rules[..deny_all];
    let last_accept = before
        .iter()
        .rposition(|rule| rule.action == Some(RuleAction::Accept));
    let mut allowed = Vec::new();
    for (i, rule) in before.iter().enumerate() {
        let path = format!("spec.egress[{i}]");
        let refuse = |reason: String| {
            Err(TranslateError::Rules {
                path: format!("{path}.action"),
                reason,
            })
        };
        match &rule.action {
            Some(RuleAction::Accept) => allowed.extend(accept_rule(&path, rule, resolvers)?),
            // Denied anyway by the deny-all, and no Accept comes after it to
            // take precedence over: nothing to express.
            Some(RuleAction::Deny) if last_accept.is_none_or(|last| i > last) => {}
            Some(RuleAction::Deny) => {
                return refuse(format!(
                    "this Deny rule takes precedence over the Accept rule spec.egress[{}] after \
                     it, and an allowlist cannot make exceptions to what it allows; remove it, or \
                     move it after the last Accept rule (where the final deny-all covers it)",
                    last_accept.unwrap_or_default()
                ));
            }
            Some(RuleAction::Pass) => {
                return refuse(
                    "Pass hands the traffic it matches to the next tier (NetworkPolicy, then \
                     Baseline), which may allow it; the daemon follows neither, so it cannot \
                     enforce that: Accept what should be reachable and let the deny-all drop \
                     the rest"
                        .to_owned(),
                );
            }
            Some(RuleAction::Unknown(action)) => {
                // Upstream's own proposal (npep-133) still says `Allow`.
                let hint = if action.eq_ignore_ascii_case("allow") {
                    " (`Allow` is written `Accept` in v1alpha2)"
                } else {
                    ""
                };
                return refuse(format!(
                    "`{action}` is not an action: use Accept, Deny or Pass{hint}"
                ));
            }
            None => return refuse("the rule has no action: use Accept, Deny or Pass".to_owned()),
        }
    }
    Ok(allowed)
}

/// The index of the rule that denies every destination on every port: the
/// first `Deny` rule with no protocols whose `networks` include `0.0.0.0/0`
/// and `::/0`. Without one, the error explains what the nearest miss lacks.
fn deny_all_rule(rules: &[ClusterNetworkPolicyEgressRule]) -> Result<usize, TranslateError> {
    if rules.is_empty() {
        return Err(TranslateError::Rules {
            path: "spec.egress".to_owned(),
            reason: "there are no egress rules, so the object leaves egress alone (upstream: a \
                     policy without egress rules does not affect egress traffic), which an \
                     allowlist cannot express; list Accept rules, then a Deny rule to \
                     0.0.0.0/0 and ::/0"
                .to_owned(),
        });
    }
    let is_deny = |rule: &ClusterNetworkPolicyEgressRule| rule.action == Some(RuleAction::Deny);
    let deny_all = rules.iter().position(|rule| {
        is_deny(rule) && address_families(rule) == (true, true) && rule.protocols.is_empty()
    });
    if let Some(i) = deny_all {
        // Something it does not know could narrow what it denies.
        refuse_unknown(&format!("spec.egress[{i}]"), &rules[i].unknown)?;
        return Ok(i);
    }
    let near_miss = rules
        .iter()
        .enumerate()
        .find(|(_, rule)| is_deny(rule) && address_families(rule) != (false, false));
    let (path, reason) = match near_miss {
        Some((i, rule)) => match address_families(rule) {
            (true, false) => (
                format!("spec.egress[{i}].to"),
                only_one_family("IPv4", "IPv6", "::/0"),
            ),
            (false, true) => (
                format!("spec.egress[{i}].to"),
                only_one_family("IPv6", "IPv4", "0.0.0.0/0"),
            ),
            _ => (
                format!("spec.egress[{i}].protocols"),
                "this Deny rule covers every address but only the listed protocols, so \
                 other traffic is allowed by default, which an allowlist cannot express; \
                 remove its protocols to deny everything"
                    .to_owned(),
            ),
        },
        None => (
            "spec.egress".to_owned(),
            "the rules do not end in a Deny rule to every destination, so whatever they \
             do not match is allowed by default, which an allowlist cannot express; add \
             a last rule `action: Deny` to `networks: [\"0.0.0.0/0\", \"::/0\"]` with no \
             protocols"
                .to_owned(),
        ),
    };
    Err(TranslateError::Rules { path, reason })
}

/// Whether a rule's `networks` include all of IPv4 (`0.0.0.0/0`) and all of
/// IPv6 (`::/0`).
fn address_families(rule: &ClusterNetworkPolicyEgressRule) -> (bool, bool) {
    let (mut v4, mut v6) = (false, false);
    for network in rule.to.iter().flat_map(|peer| &peer.networks) {
        match canonical_network(network) {
            Some((IpAddr::V4(_), 0)) => v4 = true,
            Some((IpAddr::V6(_), 0)) => v6 = true,
            _ => {}
        }
    }
    (v4, v6)
}

fn only_one_family(covered: &str, missing: &str, network: &str) -> String {
    format!(
        "this Deny rule covers {covered} only, so {missing} traffic the Accept rules do not \
         match is allowed by default, which an allowlist cannot express; add \"{network}\" \
         to its networks"
    )
}

/// The allow rules of one `Accept` rule: one per domain name and network.
fn accept_rule(
    path: &str,
    rule: &ClusterNetworkPolicyEgressRule,
    resolvers: &[IpAddr],
) -> Result<Vec<Allowed>, TranslateError> {
    refuse_unknown(path, &rule.unknown)?;
    let ports = rule_ports(path, &rule.protocols);
    if let Ok(ports) = &ports
        && ports.iter().all(|port| port.number == DNS_PORT)
    {
        dns_rule(path, rule, resolvers)?;
        return Ok(Vec::new());
    }
    // Peers first: a peer that cannot be allowed is the deeper problem.
    for (j, peer) in rule.to.iter().enumerate() {
        refuse_peer_kinds(&format!("{path}.to[{j}]"), peer)?;
    }
    let ports = ports?;
    if let Some(port) = ports.iter().find(|port| port.number == DNS_PORT) {
        return Err(TranslateError::Protocols {
            path: format!("{path}.protocols[{}]", port.index),
            reason: "port 53 (DNS) in a rule with other ports: write DNS as a rule of its own \
                     (DNS goes to the cluster DNS only, see --cluster-dns)"
                .to_owned(),
        });
    }
    let mut allowed = Vec::new();
    for (j, peer) in rule.to.iter().enumerate() {
        let peer_path = format!("{path}.to[{j}]");
        for (m, network) in peer.networks.iter().enumerate() {
            let cidr = match canonical_network(network) {
                Some((addr, len)) => format!("{addr}/{len}"),
                // Not a CIDR: the policy checks say what is wrong with it.
                None => network.clone(),
            };
            allowed.push(Allowed {
                rule: rule_spec(Target::Cidr(cidr), &ports),
                origin: format!("{peer_path}.networks[{m}]"),
            });
        }
        for (m, domain) in peer.domain_names.iter().enumerate() {
            let origin = format!("{peer_path}.domainNames[{m}]");
            let target = domain_target(domain).map_err(|reason| TranslateError::Peer {
                path: origin.clone(),
                reason,
            })?;
            allowed.push(Allowed {
                rule: rule_spec(target, &ports),
                origin,
            });
        }
    }
    Ok(allowed)
}

/// Refuses the peer kinds an Accept rule cannot have here: pods,
/// namespaces and nodes (the daemon follows no pod, namespace or node
/// addresses), and kinds this version does not know.
fn refuse_peer_kinds(
    path: &str,
    peer: &ClusterNetworkPolicyEgressPeer,
) -> Result<(), TranslateError> {
    let kind = if peer.pods.is_some() {
        Some("pods")
    } else if peer.namespaces.is_some() {
        Some("namespaces")
    } else if peer.nodes.is_some() {
        Some("nodes")
    } else {
        None
    };
    if let Some(kind) = kind {
        return Err(TranslateError::Peer {
            path: format!("{path}.{kind}"),
            reason: format!(
                "`{kind}` peers cannot be allowed: the daemon does not follow the \
                 addresses of pods, namespaces or nodes; allow them by `networks` (e.g. the pod \
                 or node CIDR) or by `domainNames`"
            ),
        });
    }
    refuse_unknown(path, &peer.unknown)
}

/// An Accept rule whose only port is 53: the rule that lets the pods reach
/// the cluster DNS. The policy sends DNS to `resolvers` and nowhere else
/// (for the names it allows), so the rule is taken as that if its peers
/// are pods or namespaces (assumed to be the cluster DNS: which pods they
/// are is not checked) or networks that hold a resolver; DNS to any other
/// server cannot be allowed.
fn dns_rule(
    path: &str,
    rule: &ClusterNetworkPolicyEgressRule,
    resolvers: &[IpAddr],
) -> Result<(), TranslateError> {
    if resolvers.is_empty() {
        return Err(TranslateError::NoResolvers {
            path: path.to_owned(),
        });
    }
    let resolvers_text = || {
        resolvers
            .iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (j, peer) in rule.to.iter().enumerate() {
        let peer_path = format!("{path}.to[{j}]");
        if peer.pods.is_some() || peer.namespaces.is_some() {
            refuse_unknown(&peer_path, &peer.unknown)?;
            continue;
        }
        if peer.nodes.is_some() || !peer.domain_names.is_empty() {
            let kind = if peer.nodes.is_some() {
                "nodes"
            } else {
                "domainNames"
            };
            return Err(TranslateError::Peer {
                path: format!("{peer_path}.{kind}"),
                reason: format!(
                    "DNS (port 53) goes to the cluster DNS ({}) and nowhere else; write this \
                     rule's peer as the cluster DNS pods, or as networks holding its address",
                    resolvers_text()
                ),
            });
        }
        refuse_unknown(&peer_path, &peer.unknown)?;
        for (m, network) in peer.networks.iter().enumerate() {
            let holds_resolver = canonical_network(network)
                .is_some_and(|net| resolvers.iter().any(|&ip| contains(net, ip)));
            if !holds_resolver {
                return Err(TranslateError::Peer {
                    path: format!("{peer_path}.networks[{m}]"),
                    reason: format!(
                        "DNS to {network} cannot be allowed: the pods may send DNS only to the \
                         cluster DNS ({}, see --cluster-dns)",
                        resolvers_text()
                    ),
                });
            }
        }
    }
    Ok(())
}
