//! Errors in the values of `spec.dns`.

use super::*;

#[test]
fn policy_resolvers_are_addresses() {
    let resolvers = |list: &str| with("[10.96.0.10]", list);
    assert_rejected(
        &resolvers("[10.96.0.0/24]"),
        Some(10),
        Some("spec.dns.resolvers[0]"),
        "is a CIDR",
    );
    assert_rejected(
        &resolvers("[10.96.0.10, \"10.96.0.11:53\"]"),
        Some(10),
        Some("spec.dns.resolvers[1]"),
        "has a port",
    );
    assert_rejected(
        &resolvers("[dns.local]"),
        Some(10),
        Some("spec.dns.resolvers[0]"),
        "not an IPv4 or IPv6 address",
    );
}

#[test]
fn policy_duplicate_resolvers() {
    let yaml = with(
        "    resolvers: [10.96.0.10]\n",
        "    resolvers:\n      - \"fd00::53\"\n      - 10.96.0.10\n      - \"fd00:0::53\"\n",
    );
    assert_rejected(
        &yaml,
        Some(13),
        Some("spec.dns.resolvers[2]"),
        "listed twice (also resolvers[0])",
    );
}

#[test]
fn policy_ttl_and_ip_limits() {
    let add = |line: &str| {
        with(
            "    resolvers: [10.96.0.10]\n",
            &format!("    resolvers: [10.96.0.10]\n    {line}\n"),
        )
    };
    assert_rejected(
        &add("minTTL: 86401"),
        Some(11),
        Some("spec.dns.minTTL"),
        "0 to 86400 seconds",
    );
    assert_rejected(
        &add("minTTL: -1"),
        Some(11),
        Some("spec.dns.minTTL"),
        "0 to 86400 seconds",
    );
    assert_rejected(
        &add("maxIPsPerName: 0"),
        Some(11),
        Some("spec.dns.maxIPsPerName"),
        "1 to 1024",
    );
    assert_rejected(
        &add("maxIPsPerName: 1025"),
        Some(11),
        Some("spec.dns.maxIPsPerName"),
        "1 to 1024",
    );
    assert_eq!(
        parse_str("t", &add("minTTL: 0")).unwrap().dns.min_ttl,
        Duration::ZERO
    );
    assert_eq!(
        parse_str("t", &add("maxIPsPerName: 1024"))
            .unwrap()
            .dns
            .max_ips_per_name,
        1024
    );
}

#[test]
fn policy_name_rules_need_resolvers() {
    let yaml = with("  dns:\n    resolvers: [10.96.0.10]\n", "")
        .replace("    - fqdn: api.example.com\n      ports: [443/tcp]\n", "");
    // Lines after removing dns (2 lines) and the fqdn rule (2 lines).
    assert_rejected(
        &yaml,
        Some(10),
        Some("spec.egress[0].fqdnPattern"),
        "spec.dns.resolvers",
    );
    let yaml = with("    resolvers: [10.96.0.10]\n", "    resolvers: []\n");
    assert_rejected(
        &yaml,
        Some(12),
        Some("spec.egress[0].fqdn"),
        "list the resolvers",
    );
}
