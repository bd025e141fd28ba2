//! Errors in the values of `spec.egress` rules.

use super::*;

#[test]
fn policy_rule_needs_exactly_one_target() {
    let none = with(
        "    - cidr: 10.0.1.0/24\n      ports: [5432/tcp]\n",
        "    - ports: [5432/tcp]\n",
    );
    assert_rejected(
        &none,
        Some(16),
        Some("spec.egress[2]"),
        "the rule has no target",
    );
    let two = with(
        "      ports: [8443]\n",
        "      cidr: 10.0.0.0/8\n      ports: [8443]\n",
    );
    assert_rejected(
        &two,
        Some(14),
        Some("spec.egress[1]"),
        "the rule sets `fqdnPattern` and `cidr`",
    );
}

#[test]
fn policy_ports_list_is_bounded() {
    assert_rejected(
        &with("[443/tcp]", "[]"),
        Some(13),
        Some("spec.egress[0].ports"),
        "ports must not be empty",
    );
    let seventeen: Vec<String> = (1000..1017).map(|p| p.to_string()).collect();
    let yaml = with("[443/tcp]", &format!("[{}]", seventeen.join(", ")));
    assert_rejected(
        &yaml,
        Some(13),
        Some("spec.egress[0].ports"),
        "at most 16 ports",
    );
    let sixteen = with("[443/tcp]", &format!("[{}]", seventeen[..16].join(", ")));
    assert_eq!(parse_str("t", &sixteen).unwrap().egress[0].ports.len(), 16);
}

#[test]
fn policy_port_entries() {
    let ports = |list: &str| with("[5432/tcp]", list);
    let error = assert_rejected(
        &ports("[5432/tcp, 8000-8080]"),
        Some(17),
        Some("spec.egress[2].ports[1]"),
        "port ranges are not supported",
    );
    assert_eq!(error.column(), Some(25));
    assert_rejected(
        &ports("[53]"),
        Some(17),
        Some("spec.egress[2].ports[0]"),
        "DNS is only allowed to spec.dns.resolvers; list the server there",
    );
    assert_rejected(
        &ports("[53/udp]"),
        Some(17),
        Some("spec.egress[2].ports[0]"),
        "DNS is only allowed",
    );
    assert_rejected(
        &ports("[5432/sctp]"),
        Some(17),
        Some("spec.egress[2].ports[0]"),
        "unknown protocol `sctp`",
    );
    assert_rejected(
        &ports("[70000]"),
        Some(17),
        Some("spec.egress[2].ports[0]"),
        "out of range",
    );
    assert_rejected(
        &ports("[0/tcp]"),
        Some(17),
        Some("spec.egress[2].ports[0]"),
        "out of range",
    );
}

#[test]
fn policy_fqdn_syntax() {
    let fqdn = |name: &str| with("fqdn: api.example.com", &format!("fqdn: {name}"));
    let at = (Some(12), Some("spec.egress[0].fqdn"));
    assert_rejected(&fqdn("localhost"), at.0, at.1, "single label");
    assert_rejected(
        &fqdn("\"*.example.com\""),
        at.0,
        at.1,
        "wildcards are only allowed in `fqdnPattern`",
    );
    assert_rejected(&fqdn("api..example.com"), at.0, at.1, "empty label");
    assert_rejected(&fqdn("api.exa mple.com"), at.0, at.1, "contains ' '");
    assert_rejected(
        &fqdn("-api.example.com"),
        at.0,
        at.1,
        "starts or ends with '-'",
    );
    assert_rejected(
        &fqdn(&format!("{}.com", "a".repeat(64))),
        at.0,
        at.1,
        "at most 63",
    );
    assert_rejected(
        &fqdn(&format!("{}com", "abcdefghi.".repeat(26))),
        at.0,
        at.1,
        "at most 253",
    );
    assert_rejected(&fqdn("bücher.de"), at.0, at.1, "punycode");
}

#[test]
fn policy_fqdn_pattern_syntax() {
    let pattern = |p: &str| with("\"*.pkg.example.com\"", &format!("\"{p}\""));
    let at = (Some(14), Some("spec.egress[1].fqdnPattern"));
    assert_rejected(
        &pattern("*.com"),
        at.0,
        at.1,
        "every name in the top-level domain `com`",
    );
    assert_rejected(&pattern("**.com"), at.0, at.1, "at least two labels");
    assert_rejected(&pattern("*"), at.0, at.1, "would match every name");
    assert_rejected(&pattern("**"), at.0, at.1, "would match every name");
    assert_rejected(
        &pattern("a*.b.com"),
        at.0,
        at.1,
        "only a leading `*.` (exactly one label) or `**.`",
    );
    assert_rejected(
        &pattern("*.*.b.com"),
        at.0,
        at.1,
        "is not a supported pattern",
    );
    assert_rejected(
        &pattern("api.b.com"),
        at.0,
        at.1,
        "use `fqdn` for an exact name",
    );
    assert_rejected(&pattern("*.b_.-c.com"), at.0, at.1, "after the wildcard");
}

#[test]
fn policy_cidr_syntax() {
    let cidr = |c: &str| with("cidr: 10.0.1.0/24", &format!("cidr: \"{c}\""));
    let at = (Some(16), Some("spec.egress[2].cidr"));
    assert_rejected(&cidr("10.0.1.5"), at.0, at.1, "write `10.0.1.5/32`");
    assert_rejected(&cidr("fd00::5"), at.0, at.1, "write `fd00::5/128`");
    assert_rejected(
        &cidr("10.0.1.5/24"),
        at.0,
        at.1,
        "write the network `10.0.1.0/24`",
    );
    assert_rejected(
        &cidr("::ffff:10.0.1.0/120"),
        at.0,
        at.1,
        "write it as IPv4: `10.0.1.0/24`",
    );
    assert_rejected(&cidr("10.0.1.0/33"), at.0, at.1, "0 to 32");
}
