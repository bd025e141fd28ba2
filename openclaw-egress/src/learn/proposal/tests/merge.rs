//! Merging into an existing policy: only additions, the file's text kept.

use super::*;

const EXISTING: &str = "\
# The agent's policy (hand-written).
apiVersion: openclaw.io/v1
kind: EgressPolicy
metadata: { name: agent }
spec:
  selector:
    cgroupPath: /sys/fs/cgroup/agent
  egress:
    # the API
    - fqdn: api.example.com
      ports: [443/tcp]
    - fqdnPattern: \"*.pkg.example.com\"
      ports: [443]
      quic: allow

    - cidr: 10.0.0.0/8
      ports: [5432/tcp]
    # - fqdn: later.example.com
  dns:
    resolvers: [10.77.0.1]   # the node's resolver
";

fn merge(existing: &str, run: &Run) -> Merge {
    let merge = propose_additions("agent.yaml", existing, &run.0, &Options::default()).unwrap();
    let policy = policy::parse_str("merged.yaml", &merge.merged)
        .unwrap_or_else(|error| panic!("{error}\n{}", merge.merged));
    let before = policy::parse_str("agent.yaml", existing).unwrap();
    assert!(
        policy.egress.starts_with(&before.egress),
        "{}",
        merge.merged
    );
    merge
}

#[test]
fn merge_proposes_only_what_the_policy_does_not_allow() {
    let run = Run::new()
        // Allowed already: the name on its port, a pattern's name, a name
        // asked, an address of a cidr rule.
        .connect("198.51.100.1", "443/tcp", &["api.example.com"])
        .connect("198.51.100.2", "443/udp", &["a.pkg.example.com"])
        .ask("b.pkg.example.com")
        .connect("10.1.1.1", "5432/tcp", &[])
        // New: another port of a known name, a name allowed only by the
        // cidr rule's address (its questions are not), a name never used,
        // another port of a cidr rule's address.
        .connect("198.51.100.1", "8443/tcp", &["api.example.com"])
        .connect("10.2.2.2", "5432/tcp", &["db.corp.example"])
        .ask("nx.example.com")
        .connect("10.1.1.1", "22/tcp", &[]);
    let merge = merge(EXISTING, &run);
    assert_eq!(
        summary(&merge.additions),
        [
            "fqdn api.example.com 8443/tcp",
            "fqdn nx.example.com dnsOnly",
            "fqdn db.corp.example dnsOnly",
            "cidr 10.1.1.1/32 22/tcp",
        ]
    );
    assert!(merge.kept_text);
    assert!(merge.additions.resolvers.is_empty());
    // The text up to the last rule is as it was, the additions follow it
    // at its indentation, and what came after is still there.
    let cut = EXISTING.find("    # - fqdn: later").unwrap();
    assert!(
        merge.merged.starts_with(&EXISTING[..cut]),
        "{}",
        merge.merged
    );
    let added = &merge.merged[cut..];
    assert!(
        added.starts_with("    # 1 connection to 1 address, at "),
        "{added}"
    );
    assert!(
        added.contains("\n    - fqdn: api.example.com\n      ports: [8443/tcp]\n"),
        "{added}"
    );
    assert!(added.ends_with(&EXISTING[cut..]), "{added}");
    // The diff adds lines and removes none.
    assert!(
        merge
            .diff
            .starts_with("--- agent.yaml\n+++ agent.yaml (with the proposed rules)\n"),
        "{}",
        merge.diff
    );
    assert!(
        merge
            .diff
            .contains("\n+    - cidr: 10.1.1.1/32\n+      ports: [22/tcp]\n"),
        "{}",
        merge.diff
    );
    assert!(
        !merge
            .diff
            .lines()
            .any(|line| line.starts_with('-') && !line.starts_with("---"))
    );
}

#[test]
fn merge_with_nothing_new_changes_nothing() {
    let run = Run::new()
        .connect("198.51.100.1", "443/tcp", &["api.example.com"])
        .connect("10.1.1.1", "5432/tcp", &[]);
    let merge = merge(EXISTING, &run);
    assert!(merge.additions.rules.is_empty());
    assert_eq!(merge.merged, EXISTING);
    assert_eq!(merge.diff, "");
}

#[test]
fn merge_keeps_the_text_of_other_layouts() {
    let run = Run::new().connect("198.51.100.9", "443/tcp", &["new.example.com"]);
    // (the egress list as written, where the new rule must appear)
    let cases = [
        // Empty, with a comment.
        (
            "  egress: []   # nothing yet\n",
            "  egress: # nothing yet\n    # 1 connection to 1 address, at 2023-11-14T22:13:30Z\n    - fqdn: new.example.com\n",
        ),
        // Items at the key's own indentation, at the end of the file, no
        // final line break.
        (
            "  egress:\n  - cidr: 10.0.0.0/8\n    ports: [5432/tcp]",
            "    ports: [5432/tcp]\n  # 1 connection to 1 address, at 2023-11-14T22:13:30Z\n  - fqdn: new.example.com\n    ports: [443/tcp]\n",
        ),
    ];
    for (egress, expected) in cases {
        let existing = format!(
            "apiVersion: openclaw.io/v1\nkind: EgressPolicy\nmetadata: {{ name: agent }}\nspec:\n  \
             dns: {{ resolvers: [10.77.0.1] }}\n  selector: {{ interfaces: [veth0] }}\n{egress}"
        );
        let merge = merge(&existing, &run);
        assert!(merge.kept_text, "{}", merge.merged);
        assert!(merge.merged.contains(expected), "{}", merge.merged);
    }
}

#[test]
fn merge_writes_the_policy_anew_where_its_text_cannot_take_rules() {
    let run = Run::new().connect("198.51.100.9", "443/tcp", &["new.example.com"]);
    let flow = "\
apiVersion: openclaw.io/v1
kind: EgressPolicy
metadata: { name: agent }
spec: { selector: { interfaces: [veth0] }, dns: { resolvers: [10.77.0.1], minTTL: 30 }, egress: [{ fqdn: api.example.com, ports: [443/tcp], ech: deny }] }
";
    // Resolvers the learning run used that the policy lacks.
    let other_resolver = EXISTING.replace("[10.77.0.1]", "[10.77.0.53]");
    for existing in [flow, other_resolver.as_str()] {
        let merge = merge(existing, &run);
        assert!(!merge.kept_text);
        let policy = policy::parse_str("merged.yaml", &merge.merged).unwrap();
        let before = policy::parse_str("agent.yaml", existing).unwrap();
        assert_eq!(policy.egress.len(), before.egress.len() + 1);
        assert_eq!(
            (&policy.name, policy.mode, &policy.selector),
            (&before.name, before.mode, &before.selector)
        );
        assert_eq!(policy.dns.min_ttl, before.dns.min_ttl);
        assert!(policy.dns.resolvers.contains(&ip("10.77.0.1")));
        assert!(
            merge.merged.contains("# 1 connection to 1 address, at "),
            "{}",
            merge.merged
        );
    }
}

#[test]
fn merge_refuses_a_policy_that_does_not_parse() {
    let broken = EXISTING.replace("ports: [5432/tcp]", "ports: [5432/sctp]");
    let error =
        propose_additions("agent.yaml", &broken, &Run::new().0, &Options::default()).unwrap_err();
    assert!(matches!(error, MergeError::Existing(_)));
    assert!(error.to_string().starts_with("agent.yaml:17:"), "{error}");
}
