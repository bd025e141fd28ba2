//! The policy a learning run proposes: the fewest rules that allow what the
//! workload did, so that a rerun under the proposal drops nothing, written
//! as a commented policy file for a person to review.
//!
//! - Each name the workload connected to becomes an `fqdn` rule with the
//!   ports it used (an address several names gave counts for each name).
//! - Siblings become a pattern only when there are many of them
//!   ([`Options::collapse_threshold`]), and never at or above a public
//!   suffix ([`super::public_suffix`]): a pattern is wider than what was
//!   seen, so it is proposed only where listing names would not be
//!   reviewable anyway.
//! - Names asked but never connected to become `dnsOnly` rules: the kernel
//!   drops questions for names no rule allows, which would change what the
//!   workload does on a rerun (a failed lookup is not a missing answer).
//! - Addresses no answer gave become `/32` or `/128` `cidr` rules marked for
//!   review, and so do internal addresses a name gave (rebinding protection
//!   refuses to learn them unless a `cidr` rule covers them).
//!
//! [`propose_additions`] does the same against an existing policy and
//! proposes only what it does not allow yet.

mod collapse;
mod gather;
mod merge;
mod render;
mod yaml;

#[cfg(test)]
mod tests;

use std::{collections::BTreeSet, net::IpAddr};

pub use merge::{Merge, MergeError, propose_additions};

use super::observations::{Observations, Seen};
use crate::policy::{EgressRule, Selector};

/// How to propose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// How many names under one parent become one pattern (`*.parent`, or
    /// `**.parent` for names at several depths). Values below 2 count as 2:
    /// one name is never worth a wildcard.
    pub collapse_threshold: usize,
}

impl Options {
    pub const DEFAULT_COLLAPSE_THRESHOLD: usize = 5;
}

impl Default for Options {
    fn default() -> Self {
        Self {
            collapse_threshold: Self::DEFAULT_COLLAPSE_THRESHOLD,
        }
    }
}

/// A proposed policy: its resolvers and rules, and what was seen that no
/// rule can allow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proposal {
    /// `spec.dns.resolvers`: those of the learning run.
    pub resolvers: Vec<IpAddr>,
    /// In the order they are written: name rules with ports, DNS-only name
    /// rules, then `cidr` rules (internal addresses, then direct-IP access).
    pub rules: Vec<ProposedRule>,
    /// Seen but not proposed, each with why (written as comments).
    pub not_proposed: Vec<String>,
}

/// One proposed rule and what it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposedRule {
    /// The rule as the policy parser will read it.
    pub rule: EgressRule,
    pub reason: Reason,
    /// The connections it stands for; for a DNS-only rule, the questions.
    pub seen: Option<Seen>,
}

/// Why a rule is proposed (its comment in the file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The workload connected to `addresses` addresses the name's answers gave.
    Connected { addresses: usize },
    /// The name was asked, and nothing its answers gave was connected to
    /// (or only through addresses a `cidr` rule allows: `via_cidr`).
    AskedOnly {
        types: BTreeSet<u16>,
        via_cidr: bool,
    },
    /// Names collapsed into this pattern; `asked_only`: names it also
    /// matches that were asked and never connected to.
    Collapsed {
        names: Vec<String>,
        asked_only: Vec<String>,
    },
    /// Connections to an address no DNS answer gave.
    DirectIp,
    /// An internal address (`kind`) the `names` resolved to: learned from
    /// DNS only where a `cidr` rule covers it.
    InternalAddress { kind: String, names: Vec<String> },
}

/// Proposes the policy that allows what `observations` saw.
pub fn propose(observations: &Observations, options: &Options) -> Proposal {
    propose_beyond(&[], observations, options)
}

/// Proposes what `allowed` (an existing policy's rules) does not allow yet.
fn propose_beyond(
    allowed: &[EgressRule],
    observations: &Observations,
    options: &Options,
) -> Proposal {
    let gathered = gather::gather(allowed, observations);
    let threshold = options.collapse_threshold.max(2);
    let (patterns, names) = collapse::collapse(gathered.with_ports, threshold);
    let (absorbed, asked_only) = collapse::absorb(&patterns, gathered.asked_only);
    let (asked_patterns, asked_names) = collapse::collapse(asked_only, threshold);

    let mut rules = Vec::new();
    rules.extend(names.into_iter().map(gather::NameUse::into_rule));
    rules.extend(
        patterns
            .into_iter()
            .zip(absorbed)
            .map(|(group, absorbed)| group.into_rule(absorbed)),
    );
    rules.sort_by_cached_key(|proposed| render::order_key(&proposed.rule));
    let mut asked: Vec<ProposedRule> = asked_names
        .into_iter()
        .map(gather::NameUse::into_rule)
        .chain(
            asked_patterns
                .into_iter()
                .map(|group| group.into_rule(Vec::new())),
        )
        .collect();
    asked.sort_by_cached_key(|proposed| render::order_key(&proposed.rule));
    rules.extend(asked);
    rules.extend(gathered.addresses);

    let mut resolvers = Vec::new();
    for resolver in &observations.resolvers {
        if !resolvers.contains(resolver) {
            resolvers.push(*resolver);
        }
    }
    Proposal {
        resolvers,
        rules,
        not_proposed: gathered.not_proposed,
    }
}

impl Proposal {
    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.not_proposed.is_empty()
    }

    /// The whole policy document (`kind: EgressPolicy`, enforce mode) named
    /// `name`, applying to `selector`, each rule with its comments.
    pub fn to_yaml(&self, name: &str, selector: &Selector) -> String {
        render::proposal_document(self, name, selector)
    }
}

/// Adds `seen` into `total`.
fn add_seen(total: &mut Option<Seen>, seen: Seen) {
    match total {
        None => *total = Some(seen),
        Some(total) => {
            total.count += seen.count;
            total.first = total.first.min(seen.first);
            total.last = total.last.max(seen.last);
        }
    }
}
