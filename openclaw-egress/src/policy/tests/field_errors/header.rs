//! Errors in the values of `apiVersion`, `kind` and `metadata`.

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
