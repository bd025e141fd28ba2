//! Writing proposals as policy files: each rule with comments that say why
//! it is there (what was seen, how often, when), so that a reviewer can
//! judge it without the learning run's logs.

use std::{borrow::Cow, time::SystemTime};

use super::{
    Proposal, ProposedRule, Reason,
    yaml::{COMMENT_WIDTH, comment, flow_list, scalar},
};
use crate::{
    learn::observations::Seen,
    policy::{
        API_VERSION, DnsConfig, Ech, EgressRule, Inspection, KIND, Mode, Policy, PortSpec,
        Protocol, Selector, Target, WildcardDepth,
    },
};

/// The indentation of `spec.egress` items in the documents written here.
const ITEM_INDENT: usize = 4;
/// The most names a comment lists.
const LISTED_NAMES: usize = 40;

/// A whole proposed policy.
pub(super) fn proposal_document(proposal: &Proposal, name: &str, selector: &Selector) -> String {
    let mut out = String::new();
    comment(
        &mut out,
        0,
        "Proposed by openclaw-egress learn mode from what the workload did. Review it \
         before applying: each rule allows what was seen, and patterns and cidr rules \
         may allow more. Counts and times are those of the learning run.",
    );
    let dns = DnsConfig::with_resolvers(proposal.resolvers.clone());
    header(&mut out, name, Mode::Enforce, selector, &dns);
    egress(&mut out, &[], &proposal.rules, &proposal.not_proposed);
    out
}

/// `policy` written anew with `added` after its rules (for a merge whose
/// original text cannot take them; its comments are lost).
pub(super) fn policy_document(policy: &Policy, added: &Proposal) -> String {
    let mut out = String::new();
    comment(
        &mut out,
        0,
        "Rewritten by openclaw-egress learn mode with the rules it proposes added at \
         the end of spec.egress (the original's layout could not take them).",
    );
    let mut dns = policy.dns.clone();
    for resolver in &added.resolvers {
        if !dns.resolvers.contains(resolver) {
            dns.resolvers.push(*resolver);
        }
    }
    header(&mut out, &policy.name, policy.mode, &policy.selector, &dns);
    egress(&mut out, &policy.egress, &added.rules, &added.not_proposed);
    out
}

/// Proposed rules as `spec.egress` items whose `-` is at column `indent`,
/// then what was not proposed, as comments.
pub(super) fn items(rules: &[ProposedRule], not_proposed: &[String], indent: usize) -> String {
    let mut out = String::new();
    for proposed in rules {
        for line in comments(proposed) {
            comment(&mut out, indent, &line);
        }
        rule(&mut out, &proposed.rule, indent);
    }
    for what in not_proposed {
        comment(&mut out, indent, &format!("not proposed: {what}"));
    }
    out
}

/// The number of `spec.egress` items [`items`] writes for `rules`.
pub(super) fn item_count(rules: &[ProposedRule]) -> usize {
    rules
        .iter()
        .map(|proposed| chunks(&proposed.rule).len())
        .sum()
}

fn header(out: &mut String, name: &str, mode: Mode, selector: &Selector, dns: &DnsConfig) {
    out.push_str(&format!(
        "apiVersion: {API_VERSION}\nkind: {KIND}\nmetadata:\n"
    ));
    out.push_str(&format!("  name: {}\nspec:\n", scalar(name)));
    let mode = match mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    };
    out.push_str(&format!("  mode: {mode}\n"));
    let mut lines = Vec::new();
    if let Some(path) = &selector.cgroup_path {
        lines.push(format!("cgroupPath: {}", scalar(&path.to_string_lossy())));
    }
    if !selector.interfaces.is_empty() {
        let names = selector.interfaces.iter().map(|name| scalar(name));
        lines.push(format!("interfaces: {}", flow_list(names)));
    }
    if !selector.pod_labels.is_empty() {
        lines.push("podLabels:".to_owned());
        for (key, value) in &selector.pod_labels {
            lines.push(format!("  {}: {}", scalar(key), scalar(value)));
        }
    }
    section(out, "selector", &lines);

    let mut lines = Vec::new();
    if !dns.resolvers.is_empty() {
        let resolvers = dns
            .resolvers
            .iter()
            .map(|ip| Cow::Owned(scalar(&ip.to_string()).into_owned()));
        lines.push(format!("resolvers: {}", flow_list(resolvers)));
    }
    if dns.min_ttl != DnsConfig::DEFAULT_MIN_TTL {
        lines.push(format!("minTTL: {}", dns.min_ttl.as_secs()));
    }
    if dns.max_ips_per_name != DnsConfig::DEFAULT_MAX_IPS_PER_NAME {
        lines.push(format!("maxIPsPerName: {}", dns.max_ips_per_name));
    }
    if dns.max_ips_per_pattern != DnsConfig::DEFAULT_MAX_IPS_PER_PATTERN {
        lines.push(format!("maxIPsPerPattern: {}", dns.max_ips_per_pattern));
    }
    if !lines.is_empty() {
        section(out, "dns", &lines);
    }
}

/// `key:` under `spec` with `lines` below it (`{}` when there are none).
fn section(out: &mut String, key: &str, lines: &[String]) {
    if lines.is_empty() {
        out.push_str(&format!("  {key}: {{}}\n"));
        return;
    }
    out.push_str(&format!("  {key}:\n"));
    for line in lines {
        out.push_str(&format!("    {line}\n"));
    }
}

fn egress(out: &mut String, existing: &[EgressRule], added: &[ProposedRule], notes: &[String]) {
    if existing.is_empty() && item_count(added) == 0 {
        out.push_str("  egress: []\n");
    } else {
        out.push_str("  egress:\n");
    }
    for existing in existing {
        rule(out, existing, ITEM_INDENT);
    }
    out.push_str(&items(added, notes, ITEM_INDENT));
}

/// One rule as `spec.egress` items (several when it has more ports than
/// one item may list), fields other than the target and ports only where
/// they differ from what the parser assumes.
fn rule(out: &mut String, rule: &EgressRule, indent: usize) {
    let pad = " ".repeat(indent);
    let (key, value) = match &rule.target {
        Target::Fqdn(name) => ("fqdn", name.0.clone()),
        Target::Pattern(pattern) => ("fqdnPattern", pattern.to_string()),
        Target::Cidr(cidr) => ("cidr", cidr.to_string()),
    };
    for item in chunks(rule) {
        out.push_str(&format!("{pad}- {key}: {}\n", scalar(&value)));
        if item.ports.is_empty() {
            out.push_str(&format!("{pad}  dnsOnly: true\n"));
            continue;
        }
        let ports = item.ports.iter().map(|port| Cow::Owned(port.to_string()));
        out.push_str(&format!("{pad}  ports: {}\n", flow_list(ports)));
        let defaults = Inspection::defaults(&item.target, &item.ports);
        let numbers = |ports: &[u16]| flow_list(ports.iter().map(|p| Cow::Owned(p.to_string())));
        if item.inspection.tls_ports != defaults.tls_ports {
            out.push_str(&format!(
                "{pad}  tls: {}\n",
                numbers(&item.inspection.tls_ports)
            ));
        }
        if item.inspection.http_ports != defaults.http_ports {
            out.push_str(&format!(
                "{pad}  http: {}\n",
                numbers(&item.inspection.http_ports)
            ));
        }
        if item.inspection.ech == Ech::Deny {
            out.push_str(&format!("{pad}  ech: deny\n"));
        }
        if item.inspection.quic {
            out.push_str(&format!("{pad}  quic: allow\n"));
        }
    }
}

/// `rule` as items of at most [`EgressRule::MAX_PORTS`] ports each; the
/// rules of a policy file are one item each, a proposed rule may need more.
fn chunks(rule: &EgressRule) -> Vec<EgressRule> {
    if rule.ports.len() <= EgressRule::MAX_PORTS {
        return vec![rule.clone()];
    }
    rule.ports
        .chunks(EgressRule::MAX_PORTS)
        .map(|ports| {
            let mut item = EgressRule::new(rule.target.clone(), ports.to_vec());
            let udp_on_tls = item.inspection.tls_ports.iter().any(|&tls| {
                ports.contains(&PortSpec {
                    port: tls,
                    protocol: Protocol::Udp,
                })
            });
            item.inspection.quic = rule.inspection.quic && udp_on_tls;
            item
        })
        .collect()
}

/// The comment lines of a proposed rule.
fn comments(proposed: &ProposedRule) -> Vec<String> {
    let rule = &proposed.rule;
    let connections = || seen_text(proposed.seen, "connection", "");
    let mut lines = Vec::new();
    match &proposed.reason {
        Reason::Connected { addresses } => {
            let to = format!(" to {}", plural(*addresses as u64, "address", "addresses"));
            lines.extend(seen_text(proposed.seen, "connection", &to));
        }
        Reason::AskedOnly { types, via_cidr } => {
            let types: Vec<String> = types.iter().map(|&t| query_type(t)).collect();
            let types = if types.is_empty() {
                String::new()
            } else {
                format!(" ({})", types.join(", "))
            };
            let what = if *via_cidr {
                "its connections went to addresses a cidr rule allows"
            } else {
                "never connected to: may be resolved, nothing more"
            };
            lines.push(format!("asked{types}, {what}"));
            lines.extend(seen_text(proposed.seen, "question", ""));
        }
        Reason::Collapsed { names, asked_only } => {
            lines.push(format!(
                "{} collapsed into this pattern: {}",
                plural(names.len() as u64, "name", "names"),
                listed(names)
            ));
            if !asked_only.is_empty() {
                lines.push(format!(
                    "it also matches these, asked and never connected to: {}",
                    listed(asked_only)
                ));
            }
            if let Target::Pattern(pattern) = &rule.target
                && pattern.depth == WildcardDepth::AnyDepth
            {
                lines.push(format!(
                    "matches names at any depth below {}: review",
                    pattern.suffix
                ));
            }
            let counted = if rule.is_dns_only() {
                "question"
            } else {
                "connection"
            };
            lines.extend(seen_text(proposed.seen, counted, ""));
        }
        Reason::DirectIp => {
            lines.push("direct-IP access to review: no DNS answer gave this address".to_owned());
            lines.extend(connections());
        }
        Reason::InternalAddress { kind, names } => {
            lines.push(format!(
                "review: an internal address ({kind}) that {} resolved to; names open internal \
                 addresses only where a cidr rule covers them (rebinding protection)",
                listed(names)
            ));
            lines.extend(connections());
        }
    }
    let quic = PortSpec {
        port: Inspection::DEFAULT_TLS_PORT,
        protocol: Protocol::Udp,
    };
    if !matches!(rule.target, Target::Cidr(_)) && rule.ports.contains(&quic) {
        lines.push(
            "443/udp is QUIC: allowed by address only (its server name is encrypted)".to_owned(),
        );
    }
    lines
}

fn listed(names: &[String]) -> String {
    let mut text = names
        .iter()
        .take(LISTED_NAMES)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED_NAMES {
        text.push_str(&format!(" and {} more", names.len() - LISTED_NAMES));
    }
    text
}

/// `12 connections{detail}`, then `first ..., last ...` (or `at ...`).
fn seen_text(seen: Option<Seen>, what: &str, detail: &str) -> Vec<String> {
    let Some(seen) = seen else {
        return vec![format!("no {what} recorded")];
    };
    let count = plural(seen.count, what, &format!("{what}s")) + detail;
    let when = if seen.first == seen.last {
        format!("at {}", time(seen.first))
    } else {
        format!("first {}, last {}", time(seen.first), time(seen.last))
    };
    // One line where it fits.
    if count.len() + 2 + when.len() <= COMMENT_WIDTH {
        return vec![format!("{count}, {when}")];
    }
    vec![count, when]
}

fn time(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

fn plural(count: u64, one: &str, many: &str) -> String {
    if count == 1 {
        format!("1 {one}")
    } else {
        format!("{count} {many}")
    }
}

/// A DNS query type by its name.
fn query_type(number: u16) -> String {
    let name = match number {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        64 => "SVCB",
        65 => "HTTPS",
        other => return format!("TYPE{other}"),
    };
    name.to_owned()
}

/// Where a name rule goes in a proposal: by its labels read from the right
/// (so that a domain's names stay together), a pattern before the names
/// below it.
pub(super) fn order_key(rule: &EgressRule) -> String {
    let reversed = |name: &str| name.rsplit('.').collect::<Vec<_>>().join(".");
    match &rule.target {
        Target::Fqdn(name) => reversed(&name.0),
        Target::Pattern(pattern) => {
            let wildcard = match pattern.depth {
                WildcardDepth::OneLabel => "*",
                WildcardDepth::AnyDepth => "**",
            };
            format!("{}.{wildcard}", reversed(&pattern.suffix))
        }
        Target::Cidr(cidr) => cidr.to_string(),
    }
}
