//! Errors in the YAML itself and in the shape of the file.

use super::*;

mod document {
    use super::*;

    #[test]
    fn policy_yaml_syntax_error() {
        let error = assert_rejected(
            &with("  mode: enforce\n", "  mode: enforce\n   bad: [\n"),
            Some(7),
            None,
            "invalid YAML",
        );
        assert!(
            !error.message().contains("at line"),
            "the position is not repeated: {error}"
        );
    }

    #[test]
    fn policy_tab_indentation() {
        assert_rejected(
            &with("  mode: enforce", "\tmode: enforce"),
            Some(6),
            None,
            "tabs",
        );
    }

    #[test]
    fn policy_empty_document() {
        assert_rejected("", None, None, "the policy is empty");
        assert_rejected("# only a comment\n", None, None, "the policy is empty");
        assert_rejected("---\n", None, None, "the policy is empty");
    }

    #[test]
    fn policy_document_that_is_not_a_mapping() {
        assert_rejected("# policy\n- a\n- b\n", Some(2), None, "holds a list");
        assert_rejected("just text\n", Some(1), None, "holds a single value");
    }

    #[test]
    fn policy_multiple_documents() {
        assert_rejected(
            &format!("{BASE}---\n{BASE}"),
            Some(19),
            None,
            "more than one YAML document",
        );
    }

    #[test]
    fn policy_duplicate_key_is_reported_at_the_second_occurrence() {
        assert_rejected(
            &with("  mode: enforce\n", "  mode: enforce\n  mode: audit\n"),
            Some(7),
            Some("spec.mode"),
            "duplicate key `mode`",
        );
    }

    #[test]
    fn policy_duplicate_key_in_a_free_form_map() {
        let yaml = with(
            "    cgroupPath: /sys/fs/cgroup/agent\n",
            "    podLabels:\n      app: a\n      app: b\n",
        );
        assert_rejected(
            &yaml,
            Some(10),
            Some("spec.selector.podLabels.app"),
            "duplicate key `app`",
        );
    }

    #[test]
    fn policy_yaml_tags_are_rejected() {
        assert_rejected(
            &with("name: agent", "name: !secret agent"),
            Some(4),
            Some("metadata.name"),
            "`!secret`",
        );
    }
}

mod shape {
    use super::*;

    #[test]
    fn policy_unknown_field_names_it_and_lists_the_expected_ones() {
        let error = assert_rejected(
            &with("      ports: [8443]\n", "      prots: [8443]\n"),
            Some(15),
            Some("spec.egress[1].prots"),
            "unknown field `prots`, expected one of `fqdn`, `fqdnPattern`, `cidr`, `ports`",
        );
        assert_eq!(error.column(), Some(7));
        assert_rejected(
            &format!("{BASE}status: {{}}\n"),
            Some(18),
            Some("status"),
            "unknown field `status`",
        );
        assert_rejected(
            &with("    resolvers:", "    resolver:"),
            Some(10),
            Some("spec.dns.resolver"),
            "expected one of `resolvers`, `minTTL`, `maxIPsPerName`",
        );
    }

    #[test]
    fn policy_missing_field_points_at_the_mapping_that_lacks_it() {
        assert_rejected(
            &with("  name: agent\n", "  nam: agent\n"),
            Some(4),
            Some("metadata.nam"),
            "unknown field",
        );
        assert_rejected(
            &with("metadata:\n  name: agent\n", "metadata: {}\n"),
            Some(3),
            Some("metadata"),
            "missing field `name`",
        );
        let no_ports = with("      ports: [5432/tcp]\n", "");
        assert_rejected(
            &no_ports,
            Some(16),
            Some("spec.egress[2]"),
            "missing field `ports`",
        );
        assert_rejected(
            &with("kind: EgressPolicy\n", ""),
            Some(1),
            None,
            "missing field `kind`",
        );
    }

    #[test]
    fn policy_wrong_kind_of_value() {
        assert_rejected(
            &with(
                "    resolvers: [10.96.0.10]\n",
                "    resolvers: [10.96.0.10]\n    minTTL: soon\n",
            ),
            Some(11),
            Some("spec.dns.minTTL"),
            "invalid type: string \"soon\"",
        );
        let huge = with(
            "    resolvers: [10.96.0.10]\n",
            "    resolvers: [10.96.0.10]\n    minTTL: 99999999999999999999\n",
        );
        assert_rejected(
            &huge,
            Some(11),
            Some("spec.dns.minTTL"),
            "the number 99999999999999999999 is too large",
        );
        assert_rejected(
            &with("[8443]", "[84.43]"),
            Some(15),
            Some("spec.egress[1].ports[0]"),
            "expected a port such as 443",
        );
        let mapping_for_list = format!(
            "{}  egress: {{}}\n",
            &BASE[..BASE.find("  egress:").unwrap()]
        );
        assert_rejected(
            &mapping_for_list,
            Some(11),
            Some("spec.egress"),
            "expected a sequence",
        );
    }

    #[test]
    fn policy_key_without_value_is_not_an_absent_field() {
        assert_rejected(
            &with("cidr: 10.0.1.0/24", "cidr:"),
            Some(16),
            Some("spec.egress[2].cidr"),
            "invalid type: null",
        );
    }
}
