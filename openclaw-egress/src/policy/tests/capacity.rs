//! Policies larger than the kernel's maps are refused at validation, at the
//! field that goes over, with the limit in the message.

use openclaw_egress_common::maps::{DNS_NAMES_MAX_ENTRIES, RULES_MAX};

use super::*;
use crate::policy::{capacity, path::FieldPath};

/// A policy with `resolvers` and one `- <rule>` entry (plus its `ports`
/// line) per item of `rules`. Lines: `egress:` is line 10, rule `i`
/// starts on line `11 + 2 * i`.
fn generated(resolvers: &[String], rules: &[(String, String)]) -> String {
    let mut yaml = format!(
        "apiVersion: openclaw.io/v1\nkind: EgressPolicy\nmetadata:\n  name: big\nspec:\n  \
         selector:\n    cgroupPath: agent\n  dns:\n    resolvers: [{}]\n  egress:\n",
        resolvers.join(", ")
    );
    for (target, ports) in rules {
        yaml += &format!("    - {target}\n      ports: [{ports}]\n");
    }
    yaml
}

fn resolvers(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("10.96.{}.{}", i / 250, i % 250 + 1))
        .collect()
}

/// `count` rules `cidr: 10.x.y.z/32`, each with `ports`.
fn cidr_rules(count: usize, ports: &str) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            let target = format!("cidr: 10.{}.{}.{}/32", i >> 16, (i >> 8) & 0xff, i & 0xff);
            (target, ports.to_owned())
        })
        .collect()
}

/// `ports` with `count` plain ports (TCP and UDP each) from `first` on.
fn any_ports(first: u16, count: u16) -> String {
    (first..first + count)
        .map(|port| port.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn policy_rules_are_limited_to_the_rule_table() {
    let max = RULES_MAX as usize;
    parse_str("t", &generated(&resolvers(1), &cidr_rules(max, "443/tcp"))).unwrap();
    let yaml = generated(&resolvers(1), &cidr_rules(max + 1, "443/tcp"));
    let error = assert_rejected(
        &yaml,
        Some(10),
        Some("spec.egress"),
        &format!("at most {max}"),
    );
    assert!(
        error
            .to_string()
            .starts_with(&format!("test.yaml:10:3: spec.egress: {} rules; ", max + 1)),
        "{error}"
    );
}

#[test]
fn policy_resolvers_are_limited_to_the_resolver_map() {
    let yaml = |count| generated(&resolvers(count), &cidr_rules(1, "443/tcp"));
    parse_str("t", &yaml(64)).unwrap();
    assert_rejected(
        &yaml(65),
        Some(9),
        Some("spec.dns.resolvers"),
        "65 resolvers are listed; the kernel's resolver map holds at most 64",
    );
}

#[test]
fn policy_cidr_entries_are_limited_to_the_cidr_map() {
    // 512 rules with 16 plain ports: 512 * 16 * 2 = 16384 entries, a full map.
    let ports = any_ports(1000, 16);
    parse_str("t", &generated(&resolvers(1), &cidr_rules(512, &ports))).unwrap();
    let yaml = generated(&resolvers(1), &cidr_rules(513, &ports));
    let error = assert_rejected(
        &yaml,
        Some(11 + 2 * 512 + 1),
        Some("spec.egress[512].ports"),
        "need 16416 (address, protocol, port) entries; the kernel's CIDR map holds at most 16384",
    );
    assert_eq!(error.column(), Some(7), "{error}");

    // The same (CIDR, protocol, port) twice takes one entry.
    let twice: Vec<_> = cidr_rules(512, &ports)
        .into_iter()
        .flat_map(|rule| [rule.clone(), rule])
        .collect();
    parse_str("t", &generated(&resolvers(1), &twice)).unwrap();
}

#[test]
fn policy_ports_of_one_name_are_limited_to_its_port_list() {
    // 16 plain ports are 32 pairs, a full list; one more pair is too many.
    let rules = |extra: &str| {
        vec![
            ("fqdn: api.example.com".to_owned(), any_ports(1000, 16)),
            (
                "fqdnPattern: \"*.other.example\"".to_owned(),
                "1/tcp".to_owned(),
            ),
            ("fqdn: API.example.com.".to_owned(), extra.to_owned()),
        ]
    };
    parse_str("t", &generated(&resolvers(1), &rules("1000/tcp, 1001"))).unwrap();
    assert_rejected(
        &generated(&resolvers(1), &rules("1000/tcp, 2000/udp")),
        Some(16),
        Some("spec.egress[2].ports"),
        "the rules for api.example.com allow 33 (protocol, port) pairs together up to here; \
         at most 32",
    );
}

#[test]
fn policy_distinct_names_are_limited_to_the_name_map() {
    // The rule table is smaller than the name map, so only a smaller limit
    // shows this check at work.
    const { assert!(RULES_MAX <= DNS_NAMES_MAX_ENTRIES) };
    let rules = [
        ("fqdn: a.example.com".to_owned(), "443/tcp".to_owned()),
        (
            "fqdnPattern: \"*.a.example.com\"".to_owned(),
            "443/tcp".to_owned(),
        ),
        (
            "fqdnPattern: \"**.b.example.com\"".to_owned(),
            "443/tcp".to_owned(),
        ),
        ("cidr: 10.0.0.0/8".to_owned(), "443/tcp".to_owned()),
        ("fqdn: c.example.com".to_owned(), "443/tcp".to_owned()),
    ];
    let yaml = generated(&resolvers(1), &rules);
    let policy = parse_str("t", &yaml).unwrap();
    let limits = |dns_names| capacity::Limits {
        dns_names,
        ..capacity::Limits::KERNEL
    };
    let spec = FieldPath::root().key("spec");
    capacity::check(&policy, &spec, &limits(3)).unwrap();
    let issue = capacity::check(&policy, &spec, &limits(2)).unwrap_err();
    let error = PolicyError::new("t", issue.locate(&yaml));
    assert_eq!(
        (error.line(), error.field()),
        (Some(19), Some("spec.egress[4].fqdn")),
        "{error}"
    );
    assert!(
        error
            .message()
            .contains("this is distinct DNS name 3; the kernel's name map holds at most 2"),
        "{error}"
    );
}
