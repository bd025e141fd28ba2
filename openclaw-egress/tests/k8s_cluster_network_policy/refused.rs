//! The objects refused, each at the right field for the right reason.

use openclaw_egress::k8s::cluster_network_policy::{TranslateError, translate};

use super::{CLUSTER_DNS, ips, object, objects};

struct Refused {
    name: &'static str,
    kind: &'static str,
    path: &'static str,
    reason: &'static str,
}

const fn refused(
    name: &'static str,
    kind: &'static str,
    path: &'static str,
    reason: &'static str,
) -> Refused {
    Refused {
        name,
        kind,
        path,
        reason,
    }
}

/// Every object of `cnp-refused.yaml`, by name.
const REFUSED: &[Refused] = &[
    refused(
        "subject-namespaces",
        "Subject",
        "spec.subject.namespaces",
        "does not follow namespace labels",
    ),
    refused(
        "subject-namespace-selector",
        "Subject",
        "spec.subject.pods.namespaceSelector",
        "does not follow namespace labels",
    ),
    refused(
        "subject-match-expressions",
        "Subject",
        "spec.subject.pods.podSelector.matchExpressions",
        "write the selection as `matchLabels`",
    ),
    refused(
        "subject-every-pod",
        "Subject",
        "spec.subject.pods.podSelector",
        "selects every pod of the cluster, system pods included",
    ),
    refused(
        "subject-unknown",
        "UnknownField",
        "spec.subject.serviceAccounts",
        "may change what the policy allows",
    ),
    refused("no-egress", "Rules", "spec.egress", "leaves egress alone"),
    refused(
        "no-deny-all",
        "Rules",
        "spec.egress",
        "do not end in a Deny rule to every destination, so whatever they do not match is \
         allowed by default",
    ),
    refused(
        "deny-ipv4-only",
        "Rules",
        "spec.egress[1].to",
        "covers IPv4 only, so IPv6 traffic the Accept rules do not match is allowed by default, \
         which an allowlist cannot express; add \"::/0\"",
    ),
    refused(
        "deny-all-with-protocols",
        "Rules",
        "spec.egress[1].protocols",
        "remove its protocols",
    ),
    refused(
        "deny-before-accept",
        "Rules",
        "spec.egress[0].action",
        "takes precedence over the Accept rule spec.egress[1]",
    ),
    refused("pass", "Rules", "spec.egress[1].action", "next tier"),
    refused(
        "action-allow",
        "Rules",
        "spec.egress[0].action",
        "`Allow` is not an action: use Accept, Deny or Pass (`Allow` is written `Accept` in \
         v1alpha2)",
    ),
    refused(
        "peer-pods",
        "Peer",
        "spec.egress[0].to[1].pods",
        "does not follow the addresses of pods, namespaces or nodes",
    ),
    refused(
        "peer-namespaces",
        "Peer",
        "spec.egress[0].to[0].namespaces",
        "does not follow the addresses of pods, namespaces or nodes",
    ),
    refused(
        "peer-nodes",
        "Peer",
        "spec.egress[0].to[0].nodes",
        "does not follow the addresses of pods, namespaces or nodes",
    ),
    refused(
        "peer-unknown",
        "UnknownField",
        "spec.egress[0].to[0].services",
        "not a field this version of openclaw-egress knows",
    ),
    refused(
        "every-port",
        "Protocols",
        "spec.egress[0]",
        "lists no protocols, so it allows every port",
    ),
    refused(
        "sctp",
        "Protocols",
        "spec.egress[0].protocols[1].sctp",
        "TCP and UDP only",
    ),
    refused(
        "port-range",
        "Protocols",
        "spec.egress[0].protocols[0].tcp.destinationPort.range",
        "port ranges are not supported",
    ),
    refused(
        "named-port",
        "Protocols",
        "spec.egress[0].protocols[0].destinationNamedPort",
        "named ports",
    ),
    refused(
        "protocol-unknown",
        "UnknownField",
        "spec.egress[0].protocols[0].icmp",
        "refusing the object rather than ignoring it",
    ),
    refused(
        "deny-all-unknown-field",
        "UnknownField",
        "spec.egress[1].except",
        "may change what the policy allows",
    ),
    refused(
        "dns-to-public-resolver",
        "Peer",
        "spec.egress[0].to[0].networks[0]",
        "DNS to 8.8.8.8/32 cannot be allowed: the pods may send DNS only to the cluster DNS \
         (10.96.0.10",
    ),
    refused(
        "dns-with-other-ports",
        "Protocols",
        "spec.egress[0].protocols[1]",
        "write DNS as a rule of its own",
    ),
    refused(
        "too-many-ports",
        "Protocols",
        "spec.egress[0].protocols",
        "lists 17 ports; a rule allows at most 16",
    ),
    refused(
        "wildcard-inside-name",
        "Peer",
        "spec.egress[0].to[0].domainNames[1]",
        "'*' may only stand as a whole first label",
    ),
    refused(
        "label-value-with-space",
        "Invalid",
        "spec.subject.pods.podSelector.matchLabels",
        "label value `coding agent`",
    ),
    refused(
        "ipv4-mapped-network",
        "Invalid",
        "spec.egress[0].to[1].networks[1]",
        "IPv4-mapped IPv6 prefix",
    ),
];

fn kind(error: &TranslateError) -> &'static str {
    match error {
        TranslateError::NoName => "NoName",
        TranslateError::Subject { .. } => "Subject",
        TranslateError::Rules { .. } => "Rules",
        TranslateError::Peer { .. } => "Peer",
        TranslateError::Protocols { .. } => "Protocols",
        TranslateError::UnknownField { .. } => "UnknownField",
        TranslateError::NoResolvers { .. } => "NoResolvers",
        TranslateError::Invalid { .. } => "Invalid",
        TranslateError::Document(_) => "Document",
    }
}

#[test]
fn k8s_cluster_network_policy_refusals_name_the_field_and_the_reason() {
    let objects = objects("cnp-refused.yaml");
    let listed: Vec<&str> = REFUSED.iter().map(|case| case.name).collect();
    let in_file: Vec<&str> = objects.keys().map(String::as_str).collect();
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted, in_file,
        "the table and cnp-refused.yaml list the same objects"
    );

    for case in REFUSED {
        let name = case.name;
        let error = translate(&objects[name], &ips(CLUSTER_DNS))
            .map(|yaml| panic!("{name}: translated to\n{yaml}"))
            .unwrap_err();
        let message = error.to_string();
        assert_eq!(kind(&error), case.kind, "{name}: {message}");
        assert_eq!(error.path(), case.path, "{name}: {message}");
        assert!(
            message.starts_with(&format!("{}: ", case.path)),
            "{name}: the message starts with the path: {message}"
        );
        assert!(message.contains(case.reason), "{name}: {message}");
    }
}

#[test]
fn k8s_cluster_network_policy_domain_names_need_the_cluster_dns() {
    // Names, no resolvers: the first name is pointed at.
    let error = translate(&object("cnp-coding-agent.yaml"), &[]).unwrap_err();
    assert_eq!(
        error,
        TranslateError::NoResolvers {
            path: "spec.egress[0].to[0].domainNames[0]".into()
        }
    );
    assert!(error.to_string().contains("--cluster-dns"), "{error}");
    // A DNS rule, no resolvers: the rule is pointed at.
    let error = translate(&object("cnp-research-agent.yaml"), &[]).unwrap_err();
    assert_eq!(
        error,
        TranslateError::NoResolvers {
            path: "spec.egress[0]".into()
        }
    );
}

#[test]
fn k8s_cluster_network_policy_without_a_name_is_refused() {
    let mut cnp = object("cnp-coding-agent.yaml");
    cnp.metadata.name = None;
    let error = translate(&cnp, &ips(CLUSTER_DNS)).unwrap_err();
    assert_eq!(error, TranslateError::NoName);
    assert_eq!(error.path(), "metadata.name");
}
