//! `tls`, `http`, `ech` and `quic`: which ports of a rule must carry a
//! ClientHello or an HTTP request naming an allowed server.

use super::*;

/// A policy with one rule, whose lines (after `- `) are `rule`.
fn one_rule(rule: &str) -> String {
    format!(
        "\
apiVersion: openclaw.io/v1
kind: EgressPolicy
metadata: {{ name: agent }}
spec:
  selector: {{ cgroupPath: agent }}
  dns: {{ resolvers: [10.96.0.10] }}
  egress:
    - {}
",
        rule.replace('\n', "\n      ")
    )
}

fn inspection_of(rule: &str) -> Inspection {
    parse_str("t.yaml", &one_rule(rule))
        .unwrap_or_else(|e| panic!("{e}"))
        .egress[0]
        .inspection
        .clone()
}

#[test]
fn policy_name_rules_check_tls_on_443_and_http_on_80_by_default() {
    let checked = inspection_of("fqdn: api.example.com\nports: [443/tcp, 80/tcp, 8443/tcp]");
    assert_eq!(checked.tls_ports, [443]);
    assert_eq!(checked.http_ports, [80]);
    assert_eq!((checked.ech, checked.quic), (Ech::Allow, false));
    let pattern = inspection_of("fqdnPattern: \"*.example.com\"\nports: [443/tcp]");
    assert_eq!(pattern.tls_ports, [443]);
    // A CIDR rule checks nothing unless it asks.
    let cidr = inspection_of("cidr: 203.0.113.0/24\nports: [443/tcp, 80/tcp]");
    assert_eq!(cidr, Inspection::default());
    let asked = inspection_of("cidr: 203.0.113.0/24\nports: [443/tcp]\ntls: [443]");
    assert_eq!(asked.tls_ports, [443]);
}

#[test]
fn policy_rules_choose_their_tls_and_http_ports() {
    let listed = inspection_of("fqdn: api.example.com\nports: [443/tcp, 8443/tcp]\ntls: [8443]");
    assert_eq!(listed.tls_ports, [8443], "an explicit list replaces 443");
    let off = inspection_of("fqdn: api.example.com\nports: [443/tcp, 80/tcp]\ntls: []\nhttp: []");
    assert_eq!((off.tls_ports.len(), off.http_ports.len()), (0, 0));
    let http = inspection_of("fqdn: api.example.com\nports: [8080/tcp]\nhttp: [8080]");
    assert_eq!(http.http_ports, [8080]);
    let ech = inspection_of("fqdn: api.example.com\nports: [443/tcp]\nech: deny");
    assert_eq!(ech.ech, Ech::Deny);
}

#[track_caller]
fn refused(rule: &str, field: &str, phrase: &str) {
    let error = parse_str("t.yaml", &one_rule(rule)).expect_err("must be refused");
    assert_eq!(error.field(), Some(field), "{error}");
    assert!(error.message().contains(phrase), "{error}");
}

#[test]
fn policy_udp_on_a_tls_port_is_refused_unless_quic_is_allowed() {
    refused(
        "fqdn: api.example.com\nports: [443]",
        "spec.egress[0].ports[0]",
        "write 443/tcp",
    );
    refused(
        "fqdn: api.example.com\nports: [443/tcp, 443/udp]",
        "spec.egress[0].ports[1]",
        "QUIC",
    );
    let quic = inspection_of("fqdn: api.example.com\nports: [443]\nquic: allow");
    assert_eq!((quic.tls_ports.as_slice(), quic.quic), (&[443][..], true));
    // Not a TLS port: UDP is just UDP.
    inspection_of("fqdn: api.example.com\nports: [8443]");
}

#[test]
fn policy_inspection_settings_must_make_sense() {
    refused(
        "fqdn: api.example.com\nports: [443/tcp]\ntls: [8443]",
        "spec.egress[0].tls[0]",
        "does not allow over TCP",
    );
    refused(
        "fqdn: api.example.com\nports: [5353/udp]\ntls: [5353]",
        "spec.egress[0].tls[0]",
        "does not allow over TCP",
    );
    refused(
        "fqdn: api.example.com\nports: [8443/tcp]\ntls: [8443]\nhttp: [8443]",
        "spec.egress[0].http",
        "both a TLS and an HTTP port",
    );
    refused(
        "fqdn: api.example.com\nports: [443/tcp]\ntls: [443, 443]",
        "spec.egress[0].tls[1]",
        "listed twice",
    );
    refused(
        "fqdn: api.example.com\nports: [443/tcp]\nech: maybe",
        "spec.egress[0].ech",
        "allow or deny",
    );
    refused(
        "fqdn: api.example.com\nports: [8443/tcp]\nech: deny",
        "spec.egress[0].ech",
        "checks TLS on none",
    );
    refused(
        "fqdn: api.example.com\nports: [443/tcp]\nquic: yes",
        "spec.egress[0].quic",
        "allow or deny",
    );
    refused(
        "fqdn: api.example.com\nports: [443/tcp]\ntls: [0]",
        "spec.egress[0].tls[0]",
        "out of range",
    );
}
