//! [`translate`]: an object to a checked policy document, or the field at
//! fault and why ([`TranslateError`]). The subject is read here, the rules
//! in `rules`.

use std::{collections::BTreeMap, net::IpAddr};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{
    names::policy_name,
    rules::egress_rules,
    types::{ClusterNetworkPolicy, ClusterNetworkPolicySubject, UnknownFields},
};
use crate::{
    k8s::egress_policy::{
        DnsSpec, EgressPolicy, EgressPolicySpec, RuleSpec, SelectorSpec, policy_document,
    },
    policy,
};

/// The `dns.maxIPsPerName` of every translated policy: upstream's FQDN
/// proposal (npep-133) asks implementations to support at least 100
/// addresses per name (our own default is 64).
pub const MAX_IPS_PER_NAME: u32 = 100;

/// Why an object cannot be translated. Each message starts with the path of
/// the offending field in the `ClusterNetworkPolicy` (see [`Self::path`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// `metadata.name` is missing.
    #[error("metadata.name: the object has no name")]
    NoName,
    /// The subject is not "pods with these labels, in any namespace".
    #[error("{path}: {reason}")]
    Subject { path: String, reason: String },
    /// The rules, their order or their actions say something an allowlist
    /// cannot (no final deny-all, a Deny or Pass that takes precedence over
    /// an Accept, ...).
    #[error("{path}: {reason}")]
    Rules { path: String, reason: String },
    /// A peer of a kind the daemon cannot follow, or one it cannot allow.
    #[error("{path}: {reason}")]
    Peer { path: String, reason: String },
    /// Ports or protocols that cannot be written as `<port>/tcp|udp`.
    #[error("{path}: {reason}")]
    Protocols { path: String, reason: String },
    /// A field this version does not know, where it may change what the
    /// policy allows.
    #[error(
        "{path}: `{field}` is not a field this version of openclaw-egress knows, and it may \
         change what the policy allows; refusing the object rather than ignoring it"
    )]
    UnknownField { path: String, field: String },
    /// Domain names (or a DNS rule) but no cluster DNS to resolve them with.
    #[error(
        "{path}: domain names need DNS, and no resolver was given: start the daemon with \
         --cluster-dns set to the cluster DNS service's ClusterIP (e.g. kube-dns's)"
    )]
    NoResolvers { path: String },
    /// The translated document failed the policy checks, e.g. a malformed
    /// name or label; `message` is the policy checker's, about `field` of
    /// the translated document.
    #[error("{path}: the policy `{policy}` it becomes is refused ({field}): {message}")]
    Invalid {
        path: String,
        policy: String,
        field: String,
        message: String,
    },
    /// Writing the document failed (not expected to happen).
    #[error("cannot write the policy document: {0}")]
    Document(String),
}

impl TranslateError {
    /// The path of the offending field in the `ClusterNetworkPolicy`, e.g.
    /// `spec.egress[2].to[0].pods` (`--cluster-dns` for the resolvers,
    /// empty for a failure to write the document).
    pub fn path(&self) -> &str {
        match self {
            Self::NoName => "metadata.name",
            Self::Subject { path, .. }
            | Self::Rules { path, .. }
            | Self::Peer { path, .. }
            | Self::Protocols { path, .. }
            | Self::UnknownField { path, .. }
            | Self::NoResolvers { path }
            | Self::Invalid { path, .. } => path,
            Self::Document(_) => "",
        }
    }
}

/// The policy document (YAML, as in a policy file) `cnp` becomes, with
/// `resolvers` (the cluster DNS service's addresses) as `dns.resolvers`
/// and [`MAX_IPS_PER_NAME`] as `dns.maxIPsPerName`.
///
/// The document has been checked with `policy::parse_str`; the daemon
/// applies it like any other.
pub fn translate(
    cnp: &ClusterNetworkPolicy,
    resolvers: &[IpAddr],
) -> Result<String, TranslateError> {
    let cnp_name = cnp.metadata.name.as_deref().ok_or(TranslateError::NoName)?;
    let spec = &cnp.spec;
    refuse_unknown("spec", &spec.unknown)?;
    let pod_labels = subject_pod_labels(&spec.subject)?;
    let resolvers = without_duplicates(resolvers);
    let allowed = egress_rules(&spec.egress, &resolvers)?;

    // A name rule is enforced by watching the answers of the resolvers.
    if resolvers.is_empty()
        && let Some(first) = allowed.iter().find(|allowed| allowed.rule.cidr.is_none())
    {
        return Err(TranslateError::NoResolvers {
            path: first.origin.clone(),
        });
    }

    let name = policy_name(cnp_name);
    let (rules, origins): (Vec<RuleSpec>, Vec<String>) = allowed
        .into_iter()
        .map(|allowed| (allowed.rule, allowed.origin))
        .unzip();
    let document_spec = EgressPolicySpec {
        mode: None,
        selector: SelectorSpec {
            pod_labels,
            ..SelectorSpec::default()
        },
        // Every policy gets the cap; `resolvers` is left out when empty.
        dns: Some(DnsSpec {
            resolvers: resolvers.iter().map(IpAddr::to_string).collect(),
            max_ips_per_name: Some(i64::from(MAX_IPS_PER_NAME)),
            ..DnsSpec::default()
        }),
        egress: rules,
    };
    let yaml = policy_document(&EgressPolicy::new(&name, document_spec))
        .map_err(|error| TranslateError::Document(error.to_string()))?;

    // Whatever the policy checks refuse (a malformed name, label or CIDR,
    // a policy too large for the kernel's maps) is reported here, against
    // the field of the object it came from, rather than by the daemon
    // against a document nobody wrote.
    let source = format!("clusternetworkpolicy/{cnp_name}");
    if let Err(error) = policy::parse_str(&source, &yaml) {
        return Err(TranslateError::Invalid {
            path: origin_of(error.field(), &origins),
            policy: name,
            field: error.field().unwrap_or("the document").to_owned(),
            message: error.message().to_owned(),
        });
    }
    Ok(yaml)
}

/// One rule of the translated document, and the field it came from.
pub(super) struct Allowed {
    pub(super) rule: RuleSpec,
    pub(super) origin: String,
}

/// The pod labels selected: upstream's `pods` with an empty
/// `namespaceSelector` and `matchLabels` only.
fn subject_pod_labels(
    subject: &ClusterNetworkPolicySubject,
) -> Result<BTreeMap<String, String>, TranslateError> {
    let refuse = |path: &str, reason: &str| {
        Err(TranslateError::Subject {
            path: path.to_owned(),
            reason: reason.to_owned(),
        })
    };
    refuse_unknown("spec.subject", &subject.unknown)?;
    if subject.namespaces.is_some() {
        return refuse(
            "spec.subject.namespaces",
            "selecting the pods of namespaces by namespace labels is not supported: the daemon \
             selects pods by their own labels and does not follow namespace labels; write \
             `subject.pods` with `namespaceSelector: {}` and a `podSelector` with `matchLabels`",
        );
    }
    let Some(pods) = &subject.pods else {
        return refuse(
            "spec.subject",
            "the subject selects no pods (neither `namespaces` nor `pods` is set); write \
             `subject.pods` with `namespaceSelector: {}` and a `podSelector` with `matchLabels`",
        );
    };
    refuse_unknown("spec.subject.pods", &pods.unknown)?;
    if !is_empty_selector(&pods.namespace_selector) {
        return refuse(
            "spec.subject.pods.namespaceSelector",
            "only `namespaceSelector: {}` (every namespace) is supported: the daemon selects pods \
             by their own labels and does not follow namespace labels; select the pods with \
             `podSelector.matchLabels` alone (label the pods if needed)",
        );
    }
    let selector = &pods.pod_selector;
    if selector
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        return refuse(
            "spec.subject.pods.podSelector.matchExpressions",
            "`matchExpressions` is not supported: policies select pods by label equality; \
             write the selection as `matchLabels`",
        );
    }
    let labels = selector.match_labels.clone().unwrap_or_default();
    if labels.is_empty() {
        return refuse(
            "spec.subject.pods.podSelector",
            "an empty `podSelector` selects every pod of the cluster, system pods included, \
             which would put them all behind this allowlist; select the pods with `matchLabels`",
        );
    }
    Ok(labels)
}

fn is_empty_selector(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// Refuses the unknown fields of the struct at `path`, if any.
pub(super) fn refuse_unknown(path: &str, unknown: &UnknownFields) -> Result<(), TranslateError> {
    match unknown.keys().next() {
        Some(field) => Err(TranslateError::UnknownField {
            path: format!("{path}.{field}"),
            field: field.clone(),
        }),
        None => Ok(()),
    }
}

/// `resolvers` in order, each once (the policy checks refuse repeats).
fn without_duplicates(resolvers: &[IpAddr]) -> Vec<IpAddr> {
    let mut unique: Vec<IpAddr> = Vec::with_capacity(resolvers.len());
    for &ip in resolvers {
        if !unique.contains(&ip) {
            unique.push(ip);
        }
    }
    unique
}

/// The field of the object a field of the translated document came from.
fn origin_of(field: Option<&str>, origins: &[String]) -> String {
    let Some(field) = field else {
        return String::new();
    };
    if let Some(rest) = field.strip_prefix("spec.egress[") {
        let index = rest.split(']').next().and_then(|i| i.parse::<usize>().ok());
        if let Some(origin) = index.and_then(|i| origins.get(i)) {
            return origin.clone();
        }
    }
    let origin = if field.starts_with("spec.egress") {
        "spec.egress"
    } else if field.starts_with("spec.selector") {
        "spec.subject.pods.podSelector.matchLabels"
    } else if field.starts_with("spec.dns") {
        "--cluster-dns"
    } else {
        "metadata.name"
    };
    origin.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_network_policy_document_fields_map_back_to_the_object() {
        let origins = vec!["spec.egress[0].to[0].domainNames[0]".to_owned()];
        let origin = |field| origin_of(Some(field), &origins);
        assert_eq!(origin("spec.egress[0].fqdn"), origins[0]);
        assert_eq!(origin("spec.egress[0]"), origins[0]);
        assert_eq!(origin("spec.egress"), "spec.egress");
        assert_eq!(origin("spec.egress[7].cidr"), "spec.egress");
        assert_eq!(
            origin("spec.selector.podLabels.app"),
            "spec.subject.pods.podSelector.matchLabels"
        );
        assert_eq!(origin("spec.dns.resolvers"), "--cluster-dns");
    }
}
