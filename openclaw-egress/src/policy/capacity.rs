//! What fits in the kernel's maps. Each map is sized when it is created, so
//! a policy that needs more entries than one holds could only fail half way
//! through loading; it is refused here instead, where the error can point
//! at the field.

use std::collections::{HashMap, HashSet};

use openclaw_egress_common::{
    dns::MAX_RULE_PORTS,
    maps::{CIDR_MAX_ENTRIES, DNS_NAMES_MAX_ENTRIES, RESOLVERS_MAX_ENTRIES, RULES_MAX},
};

use super::{
    egress::target_key,
    error::Issue,
    model::{Cidr, EgressRule, Policy, Target},
    path::FieldPath,
};

/// Capacities, as entries (a parameter so that the tests can use small ones).
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// `RULE_PORTS`: rule ids index it.
    pub rules: usize,
    /// `DNS_NAMES`: one entry per distinct `fqdn` or `fqdnPattern` suffix.
    pub dns_names: usize,
    /// `CIDR`: one entry per (CIDR, protocol, port).
    pub cidr_entries: usize,
    /// `RESOLVERS`.
    pub resolvers: usize,
    /// (protocol, port) pairs of one name, over all the rules naming it.
    pub ports_per_name: usize,
}

impl Limits {
    pub(super) const KERNEL: Self = Self {
        rules: RULES_MAX as usize,
        dns_names: DNS_NAMES_MAX_ENTRIES as usize,
        cidr_entries: CIDR_MAX_ENTRIES as usize,
        resolvers: RESOLVERS_MAX_ENTRIES as usize,
        ports_per_name: MAX_RULE_PORTS,
    };
}

/// Refuses a policy that would not fit in maps of the sizes in `limits`.
pub(super) fn check(policy: &Policy, spec: &FieldPath, limits: &Limits) -> Result<(), Issue> {
    let resolvers = policy.dns.resolvers.len();
    if resolvers > limits.resolvers {
        return Err(Issue::at_key(
            spec.key("dns").key("resolvers"),
            format!(
                "{resolvers} resolvers are listed; the kernel's resolver map holds at most {}",
                limits.resolvers
            ),
        ));
    }
    let egress = spec.key("egress");
    let rules = policy.egress.len();
    if rules > limits.rules {
        return Err(Issue::at_key(
            egress,
            format!(
                "{rules} rules; a policy may have at most {} (the size of the kernel's rule \
                 table); cover neighbouring addresses with one wider cidr, or names with an \
                 fqdnPattern",
                limits.rules
            ),
        ));
    }
    let mut names: HashSet<&str> = HashSet::new();
    // (protocol, port) pairs of each name target over the rules so far.
    let mut ports_of: HashMap<&Target, HashSet<(u8, u16)>> = HashMap::new();
    let mut cidr_entries: HashSet<(Cidr, (u8, u16))> = HashSet::new();
    for (i, rule) in policy.egress.iter().enumerate() {
        let rule_path = egress.index(i);
        match &rule.target {
            Target::Cidr(cidr) => {
                cidr_entries.extend(pairs(rule).map(|pair| (*cidr, pair)));
                if cidr_entries.len() > limits.cidr_entries {
                    return Err(Issue::at_key(
                        rule_path.key("ports"),
                        format!(
                            "the cidr rules up to this one need {} (address, protocol, port) \
                             entries; the kernel's CIDR map holds at most {} (one per port \
                             and protocol of each cidr rule; a port without /tcp or /udp \
                             counts twice)",
                            cidr_entries.len(),
                            limits.cidr_entries
                        ),
                    ));
                }
            }
            Target::Fqdn(_) | Target::Pattern(_) => {
                let name = name_key(&rule.target);
                names.insert(name);
                if names.len() > limits.dns_names {
                    return Err(Issue::at_value(
                        rule_path.key(target_key(&rule.target)),
                        format!(
                            "this is distinct DNS name {}; the kernel's name map holds at \
                             most {} (an fqdn and a pattern over the same name count once)",
                            names.len(),
                            limits.dns_names
                        ),
                    ));
                }
                let ports = ports_of.entry(&rule.target).or_default();
                ports.extend(pairs(rule));
                let count = ports.len();
                if count > limits.ports_per_name {
                    return Err(Issue::at_key(
                        rule_path.key("ports"),
                        format!(
                            "the rules for {name} allow {count} (protocol, port) pairs \
                             together up to here; at most {} fit in the kernel's per-name \
                             port list (a port without /tcp or /udp counts twice)",
                            limits.ports_per_name
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The `DNS_NAMES` key a name rule uses: an exact name and a pattern over
/// the same suffix share one.
fn name_key(target: &Target) -> &str {
    match target {
        Target::Fqdn(name) => &name.0,
        Target::Pattern(pattern) => &pattern.suffix,
        Target::Cidr(_) => unreachable!("name rules only"),
    }
}

/// (IP protocol, port) pairs of a rule, `443` standing for TCP and UDP.
fn pairs(rule: &EgressRule) -> impl Iterator<Item = (u8, u16)> + '_ {
    rule.ports.iter().flat_map(|spec| {
        spec.protocol
            .ip_protocols()
            .iter()
            .map(move |proto| (*proto, spec.port))
    })
}
