//! `EgressPolicy` as a Kubernetes custom resource (`openclaw.io/v1`,
//! cluster-scoped): the same document as a policy file, served by the API
//! server. The CRD (`deploy/crd.yaml`) is generated from these types
//! (`cargo xtask crd`), so its schema cannot drift from them.
//!
//! The schema checks shapes only (the API server refuses an object with a
//! wrong kind of value); meaning (names, ports, addresses, capacity) is
//! checked by the daemon with the very code that checks policy files: an
//! object is turned back into a policy document ([`policy_document`]) and
//! parsed. A refused version is reported in the object's status, and the
//! version applied before keeps enforcing.
//!
//! Status: every node's daemon writes its own entry of `status.nodes`
//! (a list keyed by node, written with server-side apply under a field
//! manager per node, so daemons never overwrite each other).

use std::{borrow::Cow, collections::BTreeMap};

use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::policy::{API_VERSION, KIND};

/// The spec of an `EgressPolicy`, as in a policy file.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "openclaw.io",
    version = "v1",
    doc = "An egress allowlist for the pods it selects: the names, addresses and ports they may reach (see the openclaw-egress README).",
    kind = "EgressPolicy",
    plural = "egresspolicies",
    shortname = "egp",
    status = "EgressPolicyStatus",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","description":"Per node: the policy is applied and attached to every pod it selects","jsonPath":".status.nodes[*].ready"}"#,
    printcolumn = r#"{"name":"Pods","type":"string","description":"Per node: pods attached","jsonPath":".status.nodes[*].attachedPods"}"#,
    printcolumn = r#"{"name":"Drops","type":"string","description":"Per node: packets dropped","jsonPath":".status.nodes[*].drops"}"#,
    printcolumn = r#"{"name":"Error","type":"string","priority":1,"jsonPath":".status.nodes[*].lastError"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressPolicySpec {
    /// `enforce` (the default) drops what no rule allows; `audit` only
    /// reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PolicyMode>,
    pub selector: SelectorSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsSpec>,
    /// Allow rules; anything they do not allow is denied.
    pub egress: Vec<RuleSpec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    Enforce,
    Audit,
}

/// Which workloads the policy applies to. In a cluster: `podLabels`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SelectorSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_path: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
}

/// The resolvers the workload may ask, and the limits on what DNS opens.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<String>,
    #[serde(rename = "minTTL", default, skip_serializing_if = "Option::is_none")]
    pub min_ttl: Option<i64>,
    #[serde(
        rename = "maxIPsPerName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_ips_per_name: Option<i64>,
    #[serde(
        rename = "maxIPsPerPattern",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_ips_per_pattern: Option<i64>,
}

/// One allow rule: one of `fqdn`, `fqdnPattern` or `cidr`, and its ports
/// (none for a `dnsOnly` rule).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// Absent only with `dnsOnly` (an object without either is refused by
    /// the policy parser: "ports must not be empty").
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// The rule's names may be resolved, and nothing connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ech: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic: Option<String>,
}

/// `443` (TCP and UDP) or `"443/tcp"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    Number(i64),
    Text(String),
}

impl JsonSchema for PortSpec {
    fn schema_name() -> Cow<'static, str> {
        "PortSpec".into()
    }

    /// Kubernetes' structural schemas have one way to say "an integer or
    /// a string".
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A port: 443 (TCP and UDP) or \"443/tcp\".",
            "x-kubernetes-int-or-string": true
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

/// What each node's daemon reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressPolicyStatus {
    /// One entry per node, each written by that node's daemon.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["node"]))]
    pub nodes: Vec<NodeStatus>,
}

/// One node's view of a policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub node: String,
    /// Applied, and attached to every pod of this node it selects.
    pub ready: bool,
    /// Pods of this node the policy selects.
    pub selected_pods: i64,
    /// Of those, the pods it is attached to.
    pub attached_pods: i64,
    /// Packets dropped (or, in audit mode, that would have been) on this
    /// node since the daemon started enforcing the policy.
    pub drops: i64,
    /// Why the latest version is not applied (the one before, if any,
    /// keeps enforcing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The `metadata.generation` this entry describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The policy file an object amounts to, for `policy::parse_str`.
pub fn policy_document(policy: &EgressPolicy) -> Result<String, serde_yaml::Error> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Document<'a> {
        api_version: &'static str,
        kind: &'static str,
        metadata: Metadata<'a>,
        spec: &'a EgressPolicySpec,
    }
    #[derive(Serialize)]
    struct Metadata<'a> {
        name: &'a str,
    }
    serde_yaml::to_string(&Document {
        api_version: API_VERSION,
        kind: KIND,
        metadata: Metadata {
            name: policy.metadata.name.as_deref().unwrap_or_default(),
        },
        spec: &policy.spec,
    })
}

/// The server-side apply body that makes `status` this node's entry.
pub fn status_patch(status: &NodeStatus) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "status": { "nodes": [status] },
    })
}

/// The field manager of one node's daemon: under server-side apply, each
/// owns its own entry of `status.nodes`.
pub fn field_manager(node: &str) -> String {
    // At most 128 characters; node names are DNS subdomains of at most 253.
    let manager = format!("openclaw-egress/{node}");
    manager.chars().take(128).collect()
}
