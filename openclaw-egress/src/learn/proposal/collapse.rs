//! Collapsing many sibling names into one pattern. A pattern allows names
//! nobody saw, so it is proposed only past a threshold (below it, a list of
//! names is both tighter and still reviewable) and only under a registrable
//! domain: `*.example.com` belongs to one owner, `*.com` and `*.github.io`
//! to anyone.
//!
//! First, `threshold` or more names with the same parent become
//! `*.parent`. Then, among the names left, `threshold` or more below one
//! domain, not all children of one parent (names at several depths), become
//! `**.domain`, the deepest such domain first; a `*.` pattern it covers
//! joins it. A `**.` pattern is only formed where every name it collapses
//! has the same registrable domain as its suffix: it never reaches across a
//! public suffix between them (`**.amazonaws.com` for names under
//! `s3.amazonaws.com`, a suffix of its own).

use std::collections::{BTreeMap, BTreeSet};

use super::{ProposedRule, Reason, add_seen, gather::NameUse, gather::name_rule};
use crate::{
    learn::public_suffix::{may_be_pattern_suffix, registrable_domain},
    policy::{EgressRule, FqdnPattern, Target, WildcardDepth},
};

/// Names that became one pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Group {
    pub pattern: FqdnPattern,
    pub members: Vec<NameUse>,
}

/// Splits `names` into patterns and the names left as they are (both in
/// name order). `threshold` is at least 2.
pub(super) fn collapse(names: Vec<NameUse>, threshold: usize) -> (Vec<Group>, Vec<NameUse>) {
    // The group each name joined, by index into `groups`.
    let mut joined: Vec<Option<usize>> = vec![None; names.len()];
    let mut groups: Vec<(FqdnPattern, Vec<usize>)> = Vec::new();

    let mut by_parent: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        if let Some((_, parent)) = name.name.split_once('.') {
            by_parent.entry(parent).or_default().push(i);
        }
    }
    for (parent, members) in by_parent {
        if members.len() >= threshold && may_be_pattern_suffix(parent) {
            for &i in &members {
                joined[i] = Some(groups.len());
            }
            groups.push((pattern(WildcardDepth::OneLabel, parent), members));
        }
    }

    while let Some((domain, members)) = deepest_any_depth(&names, &joined, threshold) {
        // Patterns formed before that it covers join it.
        let index = groups.len();
        let any_depth = Target::Pattern(pattern(WildcardDepth::AnyDepth, &domain));
        for (group, (earlier, _)) in groups.iter().enumerate() {
            if any_depth.covers_names_of(&Target::Pattern(earlier.clone())) {
                for slot in joined.iter_mut().filter(|slot| **slot == Some(group)) {
                    *slot = Some(index);
                }
            }
        }
        for &i in &members {
            joined[i] = Some(index);
        }
        groups.push((pattern(WildcardDepth::AnyDepth, &domain), Vec::new()));
    }

    let mut members: Vec<Vec<NameUse>> = vec![Vec::new(); groups.len()];
    let mut left = Vec::new();
    for (name, group) in names.into_iter().zip(joined) {
        match group {
            Some(group) => members[group].push(name),
            None => left.push(name),
        }
    }
    let mut collapsed: Vec<Group> = groups
        .into_iter()
        .zip(members)
        .filter(|(_, members)| !members.is_empty())
        .map(|((pattern, _), members)| Group { pattern, members })
        .collect();
    collapsed.sort_by(|a, b| a.pattern.cmp(&b.pattern));
    (collapsed, left)
}

/// The deepest domain with `threshold` or more names not yet in a group
/// below it, not all children of one parent, all with its registrable
/// domain; and those names.
fn deepest_any_depth(
    names: &[NameUse],
    joined: &[Option<usize>],
    threshold: usize,
) -> Option<(String, Vec<usize>)> {
    let mut below: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        if joined[i].is_some() {
            continue;
        }
        let Some(registrable) = registrable_domain(&name.name) else {
            continue;
        };
        // Every proper suffix of the name down to its registrable domain.
        let mut rest = name.name.as_str();
        while let Some((_, domain)) = rest.split_once('.') {
            if domain.len() < registrable.len() {
                break;
            }
            below.entry(domain).or_default().push(i);
            rest = domain;
        }
    }
    below
        .into_iter()
        .filter(|(_, members)| members.len() >= threshold)
        .filter(|(_, members)| {
            let parents: BTreeSet<&str> = members
                .iter()
                .filter_map(|&i| names[i].name.split_once('.').map(|(_, parent)| parent))
                .collect();
            parents.len() > 1
        })
        .max_by_key(|(domain, _)| domain.split('.').count())
        .map(|(domain, members)| (domain.to_owned(), members))
}

fn pattern(depth: WildcardDepth, suffix: &str) -> FqdnPattern {
    FqdnPattern {
        depth,
        suffix: suffix.to_owned(),
    }
}

/// Splits asked-only names into those a pattern of `groups` matches (one
/// list per group) and the others.
pub(super) fn absorb(groups: &[Group], names: Vec<NameUse>) -> (Vec<Vec<String>>, Vec<NameUse>) {
    let mut absorbed = vec![Vec::new(); groups.len()];
    let mut left = Vec::new();
    for name in names {
        match groups
            .iter()
            .position(|group| group.pattern.matches(&name.name))
        {
            Some(group) => absorbed[group].push(name.name),
            None => left.push(name),
        }
    }
    (absorbed, left)
}

impl Group {
    /// The pattern rule, on the union of its names' ports (none: a
    /// DNS-only pattern). `absorbed`: asked-only names it also matches.
    pub fn into_rule(self, absorbed: Vec<String>) -> ProposedRule {
        let mut ports = BTreeSet::new();
        let mut seen = None;
        let mut names = Vec::new();
        for member in self.members {
            ports.extend(member.ports);
            match (member.seen, member.asked) {
                (Some(connections), _) => add_seen(&mut seen, connections),
                (None, Some((_, questions))) => add_seen(&mut seen, questions),
                (None, None) => {}
            }
            names.push(member.name);
        }
        let target = Target::Pattern(self.pattern);
        let rule = if ports.is_empty() {
            EgressRule::new(target, Vec::new())
        } else {
            name_rule(target, &ports)
        };
        ProposedRule {
            rule,
            reason: Reason::Collapsed {
                names,
                asked_only: absorbed,
            },
            seen,
        }
    }
}
