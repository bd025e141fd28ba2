//! The learned-address table: what the `ALLOW` map currently holds for each
//! name rule, whether the daemon resolved it or the kernel learned it from a
//! DNS answer. The map is the single source of truth; nothing is mirrored:
//! these functions read a map's entries and say what they mean (the status
//! of each name, what a new version of the policy keeps, what expired).

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use openclaw_egress_common::{AllowKey, AllowValue, FlowKey};

use super::names::NameState;
use crate::{
    api::{LearnedAddress, NameStatus},
    clock,
    datapath::{encode, ip_of},
    policy::{EgressRule, Fqdn, Policy, Target},
};

/// Expired entries linger this long before garbage collection, so drops to a
/// recently expired address are reported as `expired` rather than `no_rule`.
pub const GC_GRACE: Duration = Duration::from_secs(300);

/// rule id -> address -> latest expiry (`CLOCK_MONOTONIC` ns).
pub type ByRule = BTreeMap<u32, BTreeMap<IpAddr, u64>>;

pub fn by_rule(entries: &[(AllowKey, AllowValue)]) -> ByRule {
    let mut by_rule = ByRule::new();
    for (key, value) in entries {
        let expiry = by_rule
            .entry(value.rule)
            .or_default()
            .entry(ip_of(&key.addr))
            .or_insert(0);
        *expiry = (*expiry).max(value.expires_at_ns);
    }
    by_rule
}

/// Distinct addresses that still allow new connections.
pub fn live_addresses(entries: &[(AllowKey, AllowValue)]) -> usize {
    let now = clock::monotonic_ns();
    let mut live: Vec<IpAddr> = entries
        .iter()
        .filter(|(_, value)| value.expires_at_ns > now)
        .map(|(key, _)| ip_of(&key.addr))
        .collect();
    live.sort();
    live.dedup();
    live.len()
}

/// One line per name rule (rules naming the same target share the first
/// one's id, as in the maps), with its addresses and, for `fqdn` rules, the
/// daemon's resolution state.
pub fn name_status(
    policy: &Policy,
    entries: &[(AllowKey, AllowValue)],
    names: &BTreeMap<Fqdn, NameState>,
) -> Vec<NameStatus> {
    let by_rule = by_rule(entries);
    let mut seen: Vec<&Target> = Vec::new();
    let mut status = Vec::new();
    for (index, rule) in policy.egress.iter().enumerate() {
        if matches!(rule.target, Target::Cidr(_)) || seen.contains(&&rule.target) {
            continue;
        }
        seen.push(&rule.target);
        let addresses = by_rule
            .get(&encode::rule_id(index))
            .map(|addresses| {
                addresses
                    .iter()
                    .map(|(ip, expires)| LearnedAddress {
                        ip: *ip,
                        expires_in_secs: clock::until(*expires).as_secs(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (name, resolution) = match &rule.target {
            Target::Fqdn(name) => (name.to_string(), names.get(name)),
            Target::Pattern(pattern) => (pattern.to_string(), None),
            Target::Cidr(_) => unreachable!("skipped above"),
        };
        status.push(NameStatus {
            name,
            addresses,
            next_refresh_secs: resolution
                .map(|state| clock::until(state.next_refresh_ns).as_secs()),
            last_error: resolution.and_then(|state| state.last_error.clone()),
        });
    }
    status
}

/// Entries of an instance being replaced that the new policy still allows,
/// re-keyed for it: the address learned for a target stays allowed (until
/// its expiry) on every port the new policy gives that target. Without this,
/// re-applying a policy would forget every address learned from DNS answers
/// and break the agent's next connection to them.
pub fn carried_over(
    old_policy: &Policy,
    old_entries: &[(AllowKey, AllowValue)],
    new_policy: &Policy,
) -> Vec<(AllowKey, AllowValue)> {
    let now = clock::monotonic_ns();
    let mut carried = Vec::new();
    for (old_rule, addresses) in by_rule(old_entries) {
        let Some(target) = old_policy
            .egress
            .get(old_rule as usize)
            .map(|rule| &rule.target)
        else {
            continue;
        };
        let Some(new_rule) = new_policy
            .egress
            .iter()
            .position(|rule| rule.target == *target)
        else {
            continue;
        };
        // Every rule naming the target contributes its ports (with its
        // checks of the connections' first bytes).
        let rules: Vec<&EgressRule> = new_policy
            .egress
            .iter()
            .filter(|rule| rule.target == *target)
            .collect();
        for (ip, expires_at_ns) in addresses {
            if expires_at_ns > now {
                for rule in &rules {
                    carried.extend(encode::allow_entries(
                        encode::rule_id(new_rule),
                        rule,
                        &[ip],
                        expires_at_ns,
                    ));
                }
            }
        }
    }
    carried
}

/// The flows of `flows` (allowed under an old version of a policy) that the
/// new version allows too: their destination is in `allow` (and live) or in
/// one of its `cidr` rules. Carried over into the new instance's verdict
/// cache, they go on without their first bytes being inspected again.
pub fn flows_still_allowed(
    flows: &[FlowKey],
    allow: &[(AllowKey, AllowValue)],
    policy: &Policy,
) -> Vec<FlowKey> {
    let now = clock::monotonic_ns();
    let live: std::collections::HashSet<AllowKey> = allow
        .iter()
        .filter(|(_, value)| value.expires_at_ns > now)
        .map(|(key, _)| *key)
        .collect();
    flows
        .iter()
        .filter(|flow| {
            live.contains(&AllowKey::new(flow.dst, flow.proto, flow.dst_port))
                || policy.egress.iter().any(|rule| match &rule.target {
                    Target::Cidr(cidr) => {
                        cidr.contains(ip_of(&flow.dst))
                            && encode::each_port(&rule.ports)
                                .any(|(proto, port)| (proto, port) == (flow.proto, flow.dst_port))
                    }
                    Target::Fqdn(_) | Target::Pattern(_) => false,
                })
        })
        .copied()
        .collect()
}

/// The keys of `entries` expired for longer than [`GC_GRACE`] at `now`
/// (`CLOCK_MONOTONIC` ns): what garbage collection removes.
pub fn expired(entries: &[(AllowKey, AllowValue)], now: u64) -> Vec<AllowKey> {
    let cutoff = now.saturating_sub(GC_GRACE.as_nanos() as u64);
    entries
        .iter()
        .filter(|(_, value)| value.expires_at_ns < cutoff)
        .map(|(key, _)| *key)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::datapath::encode::addr_of;

    #[test]
    fn entries_expire_for_garbage_collection_only_past_the_grace() {
        let entry = |last: u8, expires_at_ns: u64| {
            let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, last));
            let key = AllowKey::new(addr_of(ip), 6, 443);
            let value = AllowValue {
                expires_at_ns,
                rule: 0,
                inspect: 0,
                _pad: [0; 3],
            };
            (key, value)
        };
        let grace = GC_GRACE.as_nanos() as u64;
        let now = 10 * grace;
        let entries = [
            entry(1, now),
            entry(2, now - grace),
            entry(3, now - grace - 1),
        ];
        assert_eq!(expired(&entries, now), [entries[2].0]);
        // Early on, nothing is old enough.
        assert_eq!(expired(&entries, grace / 2), []);
    }
}
