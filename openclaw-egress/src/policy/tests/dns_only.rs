//! `dnsOnly: true`: name rules that let their names be resolved and allow
//! no connection (learn mode proposes them for names asked but never used).

use super::*;

#[test]
fn policy_dns_only_name_rules_have_no_ports() {
    for (old, new) in [
        // `ports` absent, or empty.
        ("      ports: [443/tcp]\n", "      dnsOnly: true\n"),
        (
            "      ports: [443/tcp]\n",
            "      dnsOnly: true\n      ports: []\n",
        ),
        ("      ports: [8443]\n", "      dnsOnly: true\n"),
    ] {
        let policy = parse_str("t", &with(old, new)).unwrap();
        let rule = policy
            .egress
            .iter()
            .find(|rule| rule.is_dns_only())
            .expect("one dnsOnly rule");
        assert_eq!(rule.ports, vec![], "{new}");
        assert_eq!(rule.inspection, Inspection::default(), "{new}");
        assert!(!matches!(rule.target, Target::Cidr(_)));
    }
    let policy = parse_str("t", BASE).unwrap();
    assert!(policy.egress.iter().all(|rule| !rule.is_dns_only()));
}

#[test]
fn policy_dns_only_false_is_an_ordinary_rule() {
    let explicit = with(
        "      ports: [443/tcp]\n",
        "      ports: [443/tcp]\n      dnsOnly: false\n",
    );
    assert_eq!(parse_str("t", &explicit), parse_str("t", BASE));
    // Without dnsOnly, ports are required and non-empty, as always.
    assert_rejected(
        &with("      ports: [443/tcp]\n", "      dnsOnly: false\n"),
        Some(12),
        Some("spec.egress[0]"),
        "missing field `ports`",
    );
    assert_rejected(
        &with("[443/tcp]", "[]\n      dnsOnly: false"),
        Some(13),
        Some("spec.egress[0].ports"),
        "ports must not be empty; list the ports to allow, e.g. [443/tcp]",
    );
}

#[test]
fn policy_dns_only_refuses_what_would_allow_or_check_a_connection() {
    let dns_only = |extra: &str| {
        with(
            "      ports: [443/tcp]\n",
            &format!("      dnsOnly: true\n{extra}"),
        )
    };
    // (what the rule adds, line of the error, field, phrase)
    let cases = [
        (
            "      ports: [443/tcp]\n",
            14,
            "spec.egress[0].ports",
            "a dnsOnly rule allows no connection, so it lists no ports",
        ),
        (
            "      ports: []\n      tls: []\n",
            15,
            "spec.egress[0].tls",
            "tls checks connections, and a dnsOnly rule allows none; remove tls",
        ),
        ("      http: []\n", 14, "spec.egress[0].http", "remove http"),
        ("      ech: deny\n", 14, "spec.egress[0].ech", "remove ech"),
        (
            "      quic: allow\n",
            14,
            "spec.egress[0].quic",
            "remove quic",
        ),
    ];
    for (extra, line, field, phrase) in cases {
        assert_rejected(&dns_only(extra), Some(line), Some(field), phrase);
    }
    assert_rejected(
        &with("      ports: [5432/tcp]\n", "      dnsOnly: true\n"),
        Some(17),
        Some("spec.egress[2].dnsOnly"),
        "dnsOnly applies to fqdn and fqdnPattern rules",
    );
    assert_rejected(
        &dns_only("      dnsOnly: true\n"),
        Some(14),
        Some("spec.egress[0].dnsOnly"),
        "duplicate",
    );
    assert_rejected(
        &with("      ports: [443/tcp]\n", "      dnsOnly: yes\n"),
        Some(13),
        Some("spec.egress[0].dnsOnly"),
        "invalid type",
    );
}

#[test]
fn policy_dns_only_names_still_need_resolvers() {
    let yaml = with("    resolvers: [10.96.0.10]\n", "    resolvers: []\n");
    let yaml = yaml.replace("      ports: [443/tcp]\n", "      dnsOnly: true\n");
    assert_rejected(
        &yaml,
        Some(12),
        Some("spec.egress[0].fqdn"),
        "which needs DNS",
    );
}
