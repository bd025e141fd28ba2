//! Errors in the values of fields, one section at a time.

use super::*;

mod header {
    use super::*;

    #[test]
    fn policy_api_version_and_kind_are_exact() {
        assert_rejected(
            &with("openclaw.io/v1", "openclaw.io/v2"),
            Some(1),
            Some("apiVersion"),
            "unsupported apiVersion",
        );
        assert_rejected(
            &with("kind: EgressPolicy", "kind: NetworkPolicy"),
            Some(2),
            Some("kind"),
            "`EgressPolicy`",
        );
    }

    #[test]
    fn policy_name_is_a_dns_label() {
        for bad in ["Agent", "-agent", "agent-", "agent.one", "agent_one"] {
            let yaml = with("name: agent", &format!("name: {bad}"));
            assert_rejected(
                &yaml,
                Some(4),
                Some("metadata.name"),
                "not a valid policy name",
            );
        }
        let long = with("name: agent", &format!("name: {}", "a".repeat(64)));
        assert_rejected(&long, Some(4), Some("metadata.name"), "at most 63");
        parse_str(
            "t",
            &with("name: agent", &format!("name: {}", "a".repeat(63))),
        )
        .unwrap();
    }

    #[test]
    fn policy_mode_is_enforce_or_audit() {
        assert_rejected(
            &with("mode: enforce", "mode: block"),
            Some(6),
            Some("spec.mode"),
            "use enforce or audit",
        );
        assert_eq!(
            parse_str("t", &with("mode: enforce", "mode: audit"))
                .unwrap()
                .mode,
            Mode::Audit
        );
    }
}

mod selector {
    use super::*;

    #[test]
    fn policy_selector_must_select_something() {
        let yaml = with(
            "    cgroupPath: /sys/fs/cgroup/agent\n",
            "    interfaces: []\n",
        );
        assert_rejected(&yaml, Some(7), Some("spec.selector"), "selects nothing");
    }

    #[test]
    fn policy_cgroup_path_must_not_climb() {
        let yaml = with("/sys/fs/cgroup/agent", "/sys/fs/cgroup/../agent");
        assert_rejected(
            &yaml,
            Some(8),
            Some("spec.selector.cgroupPath"),
            "contains `..`",
        );
        assert_rejected(
            &with("/sys/fs/cgroup/agent", "\"\""),
            Some(8),
            Some("spec.selector.cgroupPath"),
            "must not be empty",
        );
    }

    #[test]
    fn policy_interface_names() {
        let yaml = with(
            "    cgroupPath: /sys/fs/cgroup/agent\n",
            "    interfaces:\n      - eth0\n      - a-very-long-name0\n",
        );
        assert_rejected(
            &yaml,
            Some(10),
            Some("spec.selector.interfaces[1]"),
            "1 to 15 characters",
        );
        let yaml = with(
            "    cgroupPath: /sys/fs/cgroup/agent\n",
            "    interfaces: [eth0, eth0]\n",
        );
        assert_rejected(
            &yaml,
            Some(8),
            Some("spec.selector.interfaces[1]"),
            "listed twice",
        );
    }

    #[test]
    fn policy_pod_labels() {
        let yaml = with(
            "    cgroupPath: /sys/fs/cgroup/agent\n",
            "    podLabels:\n      app: ok\n      -bad: x\n",
        );
        assert_rejected(
            &yaml,
            Some(10),
            Some("spec.selector.podLabels.-bad"),
            "label key `-bad`",
        );
        let yaml = with(
            "    cgroupPath: /sys/fs/cgroup/agent\n",
            "    podLabels:\n      app: \"not ok\"\n",
        );
        assert_rejected(
            &yaml,
            Some(9),
            Some("spec.selector.podLabels.app"),
            "label value `not ok`",
        );
        let yaml = with(
            "    cgroupPath: /sys/fs/cgroup/agent\n",
            "    podLabels: { version: 2 }\n",
        );
        assert_rejected(
            &yaml,
            Some(8),
            Some("spec.selector.podLabels.version"),
            "expected a string",
        );
    }
}

mod dns {
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
}

mod rules {
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
}
