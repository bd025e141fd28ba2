//! Proposals from made-up observations: which rules, their comments, and
//! that every proposal is a policy the parser accepts.

mod collapse;
mod merge;
mod rules;

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::*;
use crate::{
    learn::observations::{Connection, Destination, Question, Transport},
    policy::{self, Policy, Target},
};

/// `secs` seconds after 2023-11-14T22:13:20Z.
fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Observations, built up one question or connection at a time.
struct Run(Observations);

impl Run {
    fn new() -> Self {
        Self(Observations {
            resolvers: vec![ip("10.77.0.1")],
            ..Observations::default()
        })
    }

    /// `name` asked for its A records at `secs`.
    fn ask_at(mut self, name: &str, secs: u64) -> Self {
        self.0
            .questions
            .entry(name.to_owned())
            .and_modify(|question| question.seen.again(at(secs)))
            .or_insert_with(|| Question {
                types: BTreeSet::from([1]),
                seen: Seen::once(at(secs)),
            });
        self
    }

    fn ask(self, name: &str) -> Self {
        self.ask_at(name, 0)
    }

    /// A connection at `secs` to `addr` (`port/tcp` or `port/udp`), whose
    /// address the answers for `names` carried (each asked too).
    fn connect_at(mut self, addr: &str, port: &str, names: &[&str], secs: u64) -> Self {
        let (port, transport) = port.split_once('/').unwrap();
        let destination = Destination {
            addr: ip(addr),
            transport: match transport {
                "tcp" => Transport::Tcp,
                _ => Transport::Udp,
            },
            port: port.parse().unwrap(),
        };
        let connection = self
            .0
            .connections
            .entry(destination)
            .and_modify(|connection| connection.seen.again(at(secs)))
            .or_insert_with(|| Connection {
                seen: Seen::once(at(secs)),
                names: BTreeSet::new(),
            });
        connection
            .names
            .extend(names.iter().map(|name| (*name).to_owned()));
        names
            .iter()
            .fold(self, |run, name| run.ask_at(name, secs.saturating_sub(1)))
    }

    fn connect(self, addr: &str, port: &str, names: &[&str]) -> Self {
        self.connect_at(addr, port, names, 10)
    }

    fn propose(&self) -> Proposal {
        self.propose_with(Options::default().collapse_threshold)
    }

    fn propose_with(&self, collapse_threshold: usize) -> Proposal {
        let proposal = propose(&self.0, &Options { collapse_threshold });
        assert_parses(&proposal);
        proposal
    }
}

fn selector() -> Selector {
    Selector {
        cgroup_path: Some(PathBuf::from("/sys/fs/cgroup/agent")),
        ..Selector::default()
    }
}

fn yaml(proposal: &Proposal) -> String {
    proposal.to_yaml("learned", &selector())
}

/// Every proposal must be a policy, with exactly the proposed rules.
#[track_caller]
fn assert_parses(proposal: &Proposal) -> Policy {
    let text = yaml(proposal);
    let policy =
        policy::parse_str("proposal.yaml", &text).unwrap_or_else(|error| panic!("{error}\n{text}"));
    let rules: Vec<_> = proposal.rules.iter().map(|p| p.rule.clone()).collect();
    if rules
        .iter()
        .all(|rule| rule.ports.len() <= EgressRule::MAX_PORTS)
    {
        assert_eq!(policy.egress, rules, "{text}");
    }
    assert_eq!(policy.dns.resolvers, proposal.resolvers);
    assert_eq!(policy.selector, selector());
    policy
}

/// Each rule in one line: `fqdn api.example.com 443/tcp 80/tcp`,
/// `fqdnPattern *.example.com dnsOnly`, `cidr 203.0.113.5/32 22/tcp`.
fn summary(proposal: &Proposal) -> Vec<String> {
    proposal
        .rules
        .iter()
        .map(|proposed| {
            let rule = &proposed.rule;
            let target = match &rule.target {
                Target::Fqdn(name) => format!("fqdn {name}"),
                Target::Pattern(pattern) => format!("fqdnPattern {pattern}"),
                Target::Cidr(cidr) => format!("cidr {cidr}"),
            };
            if rule.is_dns_only() {
                return format!("{target} dnsOnly");
            }
            let ports: Vec<String> = rule.ports.iter().map(ToString::to_string).collect();
            format!("{target} {}", ports.join(" "))
        })
        .collect()
}

/// The comment lines right above the item for `target` (`fqdn: x`,
/// `cidr: ...`), without their `#`.
fn comments_above(text: &str, item: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|line| line.trim() == format!("- {item}"))
        .unwrap_or_else(|| panic!("no item `{item}` in\n{text}"));
    let mut comments: Vec<String> = lines[..at]
        .iter()
        .rev()
        .take_while(|line| line.trim_start().starts_with('#'))
        .map(|line| line.trim_start().trim_start_matches("# ").to_owned())
        .collect();
    comments.reverse();
    comments
}
