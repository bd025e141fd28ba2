//! The shape of a policy file, as serde reads it: the right keys and the
//! right kinds of values, nothing more. Meaning (names, ports, addresses,
//! cross-field rules) is checked in `validate`, which knows the field path of
//! everything it rejects.

use std::{collections::BTreeMap, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{self, Visitor},
};

use super::{
    error::Issue,
    locate::Part,
    path::{FieldPath, Segment},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[serde(expecting = "a policy mapping with apiVersion, kind, metadata and spec")]
pub(super) struct RawPolicy {
    pub api_version: String,
    pub kind: String,
    pub metadata: RawMetadata,
    pub spec: RawSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a mapping with name")]
pub(super) struct RawMetadata {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[serde(expecting = "a mapping with mode, selector, dns and egress")]
pub(super) struct RawSpec {
    #[serde(default, deserialize_with = "present")]
    pub mode: Option<String>,
    pub selector: RawSelector,
    #[serde(default, deserialize_with = "present")]
    pub dns: Option<RawDns>,
    pub egress: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[serde(expecting = "a mapping with cgroupPath, interfaces and/or podLabels")]
pub(super) struct RawSelector {
    #[serde(default, deserialize_with = "present")]
    pub cgroup_path: Option<String>,
    #[serde(default)]
    pub interfaces: Vec<String>,
    #[serde(default)]
    pub pod_labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a mapping with resolvers, minTTL, maxIPsPerName and maxIPsPerPattern")]
pub(super) struct RawDns {
    #[serde(default)]
    pub resolvers: Vec<String>,
    // Integers wider than the allowed ranges, so that out-of-range values get
    // the range in the message instead of serde's "expected u32".
    #[serde(rename = "minTTL", default, deserialize_with = "present")]
    pub min_ttl: Option<i64>,
    #[serde(rename = "maxIPsPerName", default, deserialize_with = "present")]
    pub max_ips_per_name: Option<i64>,
    #[serde(rename = "maxIPsPerPattern", default, deserialize_with = "present")]
    pub max_ips_per_pattern: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[serde(
    expecting = "a rule mapping with one of fqdn, fqdnPattern or cidr, ports (or dnsOnly), and optionally tls, http, ech and quic"
)]
pub(super) struct RawRule {
    #[serde(default, deserialize_with = "present")]
    pub fqdn: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub fqdn_pattern: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub cidr: Option<String>,
    /// Required unless `dns_only` (checked in `egress`, which knows the
    /// rule's path, so both cases point at the rule).
    #[serde(default, deserialize_with = "present")]
    pub ports: Option<Vec<RawPort>>,
    /// `dnsOnly: true`: the names may be resolved, nothing connected to
    /// (what learn mode proposes for names asked but never used).
    #[serde(default, deserialize_with = "present")]
    pub dns_only: Option<bool>,
    /// Ports whose connections must start with a TLS ClientHello naming an
    /// allowed server (see `inspection`).
    #[serde(default, deserialize_with = "present")]
    pub tls: Option<Vec<i64>>,
    /// Ports whose connections must start with an HTTP request for an
    /// allowed `Host`.
    #[serde(default, deserialize_with = "present")]
    pub http: Option<Vec<i64>>,
    /// `allow` or `deny` Encrypted Client Hello on the rule's TLS ports.
    #[serde(default, deserialize_with = "present")]
    pub ech: Option<String>,
    /// `allow` lets the rule's TLS ports be reached over UDP (QUIC), by
    /// address only.
    #[serde(default, deserialize_with = "present")]
    pub quic: Option<String>,
}

/// An entry of `ports` as written: `443` or `"443/tcp"`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RawPort {
    Number(i64),
    Text(String),
}

/// Reads the policy mapping (already checked to be one YAML mapping without
/// duplicate keys) into its raw shape.
pub(super) fn from_value(value: serde_yaml::Value) -> Result<RawPolicy, Issue> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = FieldPath::from(error.path());
        // serde reports unknown fields at the unknown key, missing fields at
        // the mapping that lacks them and wrong types at the value; the key of
        // the field is the spot to look at in each case, and for items of a
        // list (which have no key) the item itself.
        let part = match path.segments().last() {
            Some(Segment::Key(_)) => Part::Key,
            Some(Segment::Index(_)) | None => Part::Value,
        };
        // Values carry no positions, so serde_yaml leaves the message bare.
        // serde calls YAML's null a "unit value".
        let message = error.into_inner().to_string().replace("unit value", "null");
        Issue {
            path,
            part,
            message,
        }
    })
}

/// For optional fields: absent means `None`, but a key written with no value
/// (`cidr:`) is an error rather than silently meaning "not set". (serde_yaml
/// reads a null as an empty mapping or list, so `dns:` means an empty
/// section, which states the same as leaving it out.)
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

impl<'de> Deserialize<'de> for RawPort {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawPortVisitor)
    }
}

struct RawPortVisitor;

impl Visitor<'_> for RawPortVisitor {
    type Value = RawPort;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a port such as 443 (TCP and UDP) or \"443/tcp\"")
    }

    fn visit_i64<E: de::Error>(self, port: i64) -> Result<RawPort, E> {
        Ok(RawPort::Number(port))
    }

    fn visit_u64<E: de::Error>(self, port: u64) -> Result<RawPort, E> {
        // Anything past i64 is out of the port range anyway.
        Ok(RawPort::Number(i64::try_from(port).unwrap_or(i64::MAX)))
    }

    fn visit_str<E: de::Error>(self, port: &str) -> Result<RawPort, E> {
        Ok(RawPort::Text(port.to_owned()))
    }
}
