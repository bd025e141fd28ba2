//! Kubernetes' own `ClusterNetworkPolicy` (`policy.networking.k8s.io/v1alpha2`,
//! the network-policy-api project's experimental channel, whose egress peers
//! may be `domainNames`), translated into an `EgressPolicy` document.
//!
//! The types follow upstream's `apis/v1alpha2/clusternetworkpolicy_types.go`
//! (kubernetes-sigs/network-policy-api), for the parts we read. They tolerate
//! fields they do not know, so that one object written for a newer version
//! does not stop a watch of all of them; but a field we do not know, where it
//! could change what the policy allows, makes [`translate`] refuse the object
//! rather than ignore it (each such struct keeps its unknown fields in
//! `unknown`).
//!
//! Our datapath enforces an allowlist, so the one shape that translates is
//! "accept these, deny the rest": `Accept` rules whose peers are
//! `domainNames` and/or `networks`, each listing its TCP/UDP ports, then a
//! `Deny` rule to `0.0.0.0/0` and `::/0` on every port. Anything else is
//! refused with the path of the offending field, why, and what to write
//! instead (`deploy/cluster-network-policy.md` explains the mapping).
//!
//! The document [`translate`] returns is checked with `policy::parse_str`
//! before it is returned, and whatever that refuses is reported against the
//! field of the `ClusterNetworkPolicy` it came from. It allows
//! [`MAX_IPS_PER_NAME`] addresses per name, upstream's minimum.
//!
//! The parts:
//! - `types`: the upstream types, as serde and kube read them;
//! - `names`: the policy name an object becomes ([`policy_name`]);
//! - `translate`: [`translate`] and [`TranslateError`], the subject, and
//!   the fields of the document traced back to the object's;
//! - `rules`: `spec.egress`: actions, the final deny-all, Accept rules and
//!   the rule for the cluster DNS;
//! - `ports`: a rule's `protocols` as TCP and UDP ports;
//! - `targets`: domain names and networks as the document's rules.

mod names;
mod ports;
mod rules;
mod targets;
mod translate;
mod types;

pub use names::policy_name;
pub use translate::{MAX_IPS_PER_NAME, TranslateError, translate};
pub use types::{
    ClusterNetworkPolicy, ClusterNetworkPolicyEgressPeer, ClusterNetworkPolicyEgressRule,
    ClusterNetworkPolicyProtocol, ClusterNetworkPolicySpec, ClusterNetworkPolicySubject,
    NamespacedPod, Port, PortRange, ProtocolMatch, RuleAction, UnknownFields,
};
