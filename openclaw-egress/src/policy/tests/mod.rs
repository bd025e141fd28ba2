//! End-to-end tests of policy loading: whole files in, `Policy` values or
//! errors with exact positions out.

mod capacity;
mod dns_only;
mod examples;
mod field_errors;
mod inspection;
mod matching;
mod yaml_errors;

use std::{net::IpAddr, path::PathBuf, time::Duration};

use super::*;

/// A valid policy that the error tests break one line at a time. Lines:
///  1 apiVersion       6 mode            11 egress
///  2 kind             7 selector        12 - fqdn
///  3 metadata         8 cgroupPath      13   ports
///  4 name             9 dns             14 - fqdnPattern
///  5 spec            10 resolvers       15   ports
///                                       16 - cidr
///                                       17   ports
const BASE: &str = "\
apiVersion: openclaw.io/v1
kind: EgressPolicy
metadata:
  name: agent
spec:
  mode: enforce
  selector:
    cgroupPath: /sys/fs/cgroup/agent
  dns:
    resolvers: [10.96.0.10]
  egress:
    - fqdn: api.example.com
      ports: [443/tcp]
    - fqdnPattern: \"*.pkg.example.com\"
      ports: [8443]
    - cidr: 10.0.1.0/24
      ports: [5432/tcp]
";

/// `BASE` with `old` (which must occur exactly once) replaced by `new`.
fn with(old: &str, new: &str) -> String {
    assert_eq!(
        BASE.matches(old).count(),
        1,
        "{old:?} must occur once in BASE"
    );
    BASE.replacen(old, new, 1)
}

/// Asserts that `yaml` is rejected at `line`, for `field`, with a message
/// containing `phrase`.
#[track_caller]
fn assert_rejected(
    yaml: &str,
    line: Option<usize>,
    field: Option<&str>,
    phrase: &str,
) -> PolicyError {
    let error = parse_str("test.yaml", yaml).expect_err("the policy should be rejected");
    assert_eq!(
        (error.line(), error.field()),
        (line, field),
        "wrong position or field: {error}"
    );
    assert!(
        error.message().contains(phrase),
        "message lacks {phrase:?}: {error}"
    );
    error
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn policy_base_is_valid() {
    parse_str("base.yaml", BASE).unwrap();
}

#[test]
fn policy_full_document_parses_into_the_expected_value() {
    let yaml = "\
apiVersion: openclaw.io/v1
kind: EgressPolicy
metadata:
  name: openclaw-agent
spec:
  mode: audit
  selector:
    cgroupPath: openclaw
    interfaces: [veth1234, eth1]
    podLabels: { app: openclaw, app.kubernetes.io/part-of: agents }
  dns:
    resolvers: [192.168.1.10, \"fd00::53\"]
    minTTL: 30
    maxIPsPerName: 8
  egress:
    - fqdn: API.Trusted.com.
      ports: [443/tcp, 80/TCP]
    - fqdnPattern: \"**.GitHub.com\"
      ports: [443, 8443/udp]
      quic: allow
      ech: deny
    - cidr: fd00:10::/32
      ports: [\"5432\"]
";
    let expected = Policy {
        name: "openclaw-agent".into(),
        mode: Mode::Audit,
        selector: Selector {
            cgroup_path: Some(PathBuf::from("openclaw")),
            interfaces: vec!["veth1234".into(), "eth1".into()],
            pod_labels: [("app", "openclaw"), ("app.kubernetes.io/part-of", "agents")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        },
        dns: DnsConfig {
            resolvers: vec![ip("192.168.1.10"), ip("fd00::53")],
            min_ttl: Duration::from_secs(30),
            max_ips_per_name: 8,
            max_ips_per_pattern: DnsConfig::DEFAULT_MAX_IPS_PER_PATTERN,
        },
        egress: vec![
            EgressRule::new(
                Target::Fqdn(Fqdn("api.trusted.com".into())),
                vec![
                    PortSpec {
                        port: 443,
                        protocol: Protocol::Tcp,
                    },
                    PortSpec {
                        port: 80,
                        protocol: Protocol::Tcp,
                    },
                ],
            ),
            EgressRule {
                target: Target::Pattern(FqdnPattern {
                    depth: WildcardDepth::AnyDepth,
                    suffix: "github.com".into(),
                }),
                ports: vec![
                    PortSpec {
                        port: 443,
                        protocol: Protocol::Any,
                    },
                    PortSpec {
                        port: 8443,
                        protocol: Protocol::Udp,
                    },
                ],
                inspection: Inspection {
                    tls_ports: vec![443],
                    http_ports: vec![],
                    ech: Ech::Deny,
                    quic: true,
                },
            },
            EgressRule::new(
                Target::Cidr(Cidr {
                    addr: ip("fd00:10::"),
                    prefix_len: 32,
                }),
                vec![PortSpec {
                    port: 5432,
                    protocol: Protocol::Any,
                }],
            ),
        ],
    };
    assert_eq!(parse_str("full.yaml", yaml), Ok(expected));
}

#[test]
fn policy_optional_fields_take_their_defaults() {
    let yaml = "\
apiVersion: openclaw.io/v1
kind: EgressPolicy
metadata: { name: deny-all }
spec:
  selector: { interfaces: [veth0] }
  egress: []
";
    let policy = parse_str("defaults.yaml", yaml).unwrap();
    assert_eq!(policy.mode, Mode::Enforce);
    assert_eq!(policy.dns, DnsConfig::with_resolvers(vec![]));
    assert!(policy.egress.is_empty());
}

#[test]
fn policy_error_display_has_source_position_field_and_message() {
    let error = parse_str("p.yaml", &with("cidr: 10.0.1.0/24", "cidr: 10.0.1.5/24")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "p.yaml:16:13: spec.egress[2].cidr: `10.0.1.5/24` has host bits set; \
         write the network `10.0.1.0/24`, or `10.0.1.5/32` to allow just this address"
    );
    assert_eq!((error.source_name(), error.column()), ("p.yaml", Some(13)));
}

#[test]
fn policy_unreadable_file_is_a_policy_error_without_position() {
    let path = std::env::temp_dir().join("openclaw-egress-no-such-policy.yaml");
    let error = load_file(&path).unwrap_err();
    assert_eq!(
        (error.line(), error.column(), error.field()),
        (None, None, None)
    );
    assert!(error.message().starts_with("cannot read: "), "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: cannot read: ", path.display())),
        "{error}"
    );
}

#[test]
fn policy_load_file_reads_and_parses() {
    let path = std::env::temp_dir().join(format!(
        "openclaw-egress-policy-test-{}.yaml",
        std::process::id()
    ));
    std::fs::write(&path, with("kind: EgressPolicy", "kind: Policy")).unwrap();
    let error = load_file(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        (error.source_name(), error.line()),
        (path.display().to_string().as_str(), Some(2))
    );
}
