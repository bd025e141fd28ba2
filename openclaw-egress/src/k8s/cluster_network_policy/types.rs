//! The upstream types (`apis/v1alpha2/clusternetworkpolicy_types.go`), for
//! the parts we read. Each struct keeps the fields it does not know in
//! `unknown`, for [`translate`](fn@super::translate) to refuse.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// Fields a struct does not know, kept so that
/// [`translate`](fn@super::translate) can refuse them.
pub type UnknownFields = BTreeMap<String, serde_json::Value>;

/// `ClusterNetworkPolicySpec`. Upstream requires `tier`, `priority` and
/// `subject`; they default here so that a malformed object is refused by
/// [`translate`](fn@super::translate) (with a reason) instead of failing a
/// whole list.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "policy.networking.k8s.io",
    version = "v1alpha2",
    kind = "ClusterNetworkPolicy",
    plural = "clusternetworkpolicies",
    shortname = "cnp",
    // Upstream installs and owns the CRD; these types only read objects
    // (and k8s-openapi's LabelSelector has no JsonSchema here).
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicySpec {
    /// `Admin` or `Baseline`. Not used by the translation: each object
    /// becomes one policy on its own (see the module documentation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// 0 to 1000, lower first within a tier. Not used either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default)]
    pub subject: ClusterNetworkPolicySubject,
    /// Not ours to enforce: read as opaque values, never interpreted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<ClusterNetworkPolicyEgressRule>,
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// `ClusterNetworkPolicySubject`: exactly one of `namespaces` or `pods`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicySubject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// `NamespacedPod`: pods by namespace labels AND pod labels. Upstream's
/// `namespaceSelector` is a non-pointer field: absent is the same as `{}`
/// (every namespace).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedPod {
    #[serde(default)]
    pub namespace_selector: LabelSelector,
    #[serde(default)]
    pub pod_selector: LabelSelector,
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// `ClusterNetworkPolicyEgressRule`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyEgressRule {
    /// For people: at most 100 characters, no meaning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Required upstream; `None` only in a malformed object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<RuleAction>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<ClusterNetworkPolicyEgressPeer>,
    /// Empty: every protocol and port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<ClusterNetworkPolicyProtocol>,
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// `ClusterNetworkPolicyRuleAction`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum RuleAction {
    /// Allows the traffic; no later rule or policy is consulted.
    Accept,
    /// Drops the traffic; no later rule or policy is consulted.
    Deny,
    /// Skips the rest of this tier: the next tier (NetworkPolicy, then
    /// Baseline) decides.
    Pass,
    /// An action this version does not know, as written.
    Unknown(String),
}

impl From<String> for RuleAction {
    fn from(action: String) -> Self {
        match action.as_str() {
            "Accept" => Self::Accept,
            "Deny" => Self::Deny,
            "Pass" => Self::Pass,
            _ => Self::Unknown(action),
        }
    }
}

impl From<RuleAction> for String {
    fn from(action: RuleAction) -> Self {
        match action {
            RuleAction::Accept => "Accept".to_owned(),
            RuleAction::Deny => "Deny".to_owned(),
            RuleAction::Pass => "Pass".to_owned(),
            RuleAction::Unknown(action) => action,
        }
    }
}

/// `ClusterNetworkPolicyEgressPeer`: exactly one field is set upstream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyEgressPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    /// Experimental channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<LabelSelector>,
    /// CIDRs such as `10.0.0.0/8` or `fd00::/8`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// Experimental channel: `kubernetes.io` (exactly that name) or
    /// `*.kubernetes.io` (names at any depth below it, not itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domain_names: Vec<String>,
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// `ClusterNetworkPolicyProtocol`: exactly one field is set upstream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyProtocol {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<ProtocolMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<ProtocolMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sctp: Option<ProtocolMatch>,
    /// A container port's name (pod peers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_named_port: Option<String>,
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// Upstream's `ClusterNetworkPolicyProtocolTCP`, `...UDP` and `...SCTP`,
/// which have the same one field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<Port>,
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// `Port`: exactly one of `number` or `range` upstream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<PortRange>,
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// `PortRange`: `start` to `end`, inclusive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub start: i32,
    pub end: i32,
}
