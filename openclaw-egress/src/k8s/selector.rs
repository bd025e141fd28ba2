//! `spec.selector.podLabels`: which pods a policy applies to.
//!
//! The semantics of a Kubernetes `matchLabels`: every key must be present
//! on the pod with exactly the given value; the pod may have more labels.
//! Unlike `matchLabels`, an empty selector matches nothing: a policy that
//! selects by cgroup or interface only must not also capture every pod on
//! the node (and policy validation never lets a selector be empty anyway).

use std::collections::BTreeMap;

use crate::policy::Policy;

/// Whether a pod with `labels` is selected by `pod_labels`.
pub fn pod_labels_match(
    pod_labels: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !pod_labels.is_empty()
        && pod_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
}

/// Whether `policy` applies to a pod with `labels`.
pub fn selects_pod(policy: &Policy, labels: &BTreeMap<String, String>) -> bool {
    pod_labels_match(&policy.selector.pod_labels, labels)
}

/// The policies among `policies` that apply to a pod with `labels`.
pub fn policies_for_pod<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    labels: &'a BTreeMap<String, String>,
) -> impl Iterator<Item = &'a Policy> {
    policies
        .into_iter()
        .filter(move |policy| selects_pod(policy, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn k8s_selector_needs_every_pair_with_the_same_value() {
        let selector = labels(&[("app", "openclaw"), ("tier", "agent")]);
        assert!(pod_labels_match(
            &selector,
            &labels(&[("app", "openclaw"), ("tier", "agent")])
        ));
        assert!(pod_labels_match(
            &selector,
            &labels(&[("app", "openclaw"), ("tier", "agent"), ("extra", "x")])
        ));
        // A missing key, a different value, or the value under another key.
        assert!(!pod_labels_match(
            &selector,
            &labels(&[("app", "openclaw")])
        ));
        assert!(!pod_labels_match(
            &selector,
            &labels(&[("app", "openclaw"), ("tier", "web")])
        ));
        assert!(!pod_labels_match(
            &selector,
            &labels(&[("app", "openclaw"), ("role", "agent")])
        ));
        // Values are compared exactly (labels are case-sensitive).
        assert!(!pod_labels_match(
            &selector,
            &labels(&[("app", "OpenClaw"), ("tier", "agent")])
        ));
        // An empty value is a value: the key must be there, empty.
        let empty_value = labels(&[("sandboxed", "")]);
        assert!(pod_labels_match(
            &empty_value,
            &labels(&[("sandboxed", "")])
        ));
        assert!(!pod_labels_match(
            &empty_value,
            &labels(&[("sandboxed", "yes")])
        ));
        assert!(!pod_labels_match(&empty_value, &labels(&[])));
    }

    #[test]
    fn k8s_selector_empty_matches_nothing() {
        assert!(!pod_labels_match(&labels(&[]), &labels(&[])));
        assert!(!pod_labels_match(
            &labels(&[]),
            &labels(&[("app", "openclaw")])
        ));
    }

    #[test]
    fn k8s_selector_picks_the_policies_for_a_pod() {
        let policy = |name: &str, yaml_labels: &str| {
            crate::policy::parse_str(
                name,
                &format!(
                    "apiVersion: openclaw.io/v1\nkind: EgressPolicy\nmetadata: {{name: {name}}}\n\
                     spec:\n  selector: {yaml_labels}\n  dns: {{resolvers: [10.96.0.10]}}\n  egress: []\n"
                ),
            )
            .unwrap()
        };
        let policies = [
            policy("agents", "{podLabels: {app: openclaw}}"),
            policy("strict", "{podLabels: {app: openclaw, sandbox: strict}}"),
            policy("web", "{podLabels: {app: web}}"),
            policy("host", "{cgroupPath: openclaw}"),
        ];
        let pod = labels(&[("app", "openclaw"), ("sandbox", "strict")]);
        let names: Vec<&str> = policies_for_pod(&policies, &pod)
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["agents", "strict"]);
    }
}
