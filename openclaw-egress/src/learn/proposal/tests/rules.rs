//! One rule per name with its ports, DNS-only names, direct-IP and
//! internal addresses, comments, and the document as a whole.

use super::*;

#[test]
fn each_name_gets_exactly_the_ports_it_used() {
    let run = Run::new()
        .connect("198.51.100.1", "443/tcp", &["api.example.com"])
        .connect("198.51.100.2", "443/tcp", &["api.example.com"])
        .connect("198.51.100.2", "80/tcp", &["api.example.com"])
        .connect("198.51.100.3", "443/tcp", &["quic.example.com"])
        .connect("198.51.100.3", "443/udp", &["quic.example.com"])
        // One address, two names: each name gets the port.
        .connect(
            "198.51.100.4",
            "8443/tcp",
            &["a.shared.example", "b.shared.example"],
        )
        .connect("2001:db8::4", "9000/udp", &["a.shared.example"]);
    let proposal = run.propose();
    assert_eq!(
        summary(&proposal),
        [
            "fqdn api.example.com 80/tcp 443/tcp",
            "fqdn quic.example.com 443/tcp 443/udp",
            "fqdn a.shared.example 8443/tcp 9000/udp",
            "fqdn b.shared.example 8443/tcp",
        ]
    );
    // QUIC was used: the parser needs `quic: allow` for 443/udp.
    assert!(proposal.rules[1].rule.inspection.quic);
    assert!(!proposal.rules[0].rule.inspection.quic);
    let text = yaml(&proposal);
    assert!(
        text.contains(
            "    - fqdn: quic.example.com\n      ports: [443/tcp, 443/udp]\n      quic: allow\n"
        ),
        "{text}"
    );
    assert_eq!(
        comments_above(&text, "fqdn: api.example.com"),
        ["3 connections to 2 addresses, at 2023-11-14T22:13:30Z"]
    );
}

#[test]
fn counts_and_times_are_comments() {
    let run = Run::new()
        .connect_at("198.51.100.1", "443/tcp", &["api.example.com"], 10)
        .connect_at("198.51.100.1", "443/tcp", &["api.example.com"], 70)
        .connect_at("198.51.100.2", "443/tcp", &["api.example.com"], 3600)
        .ask_at("nx.example.com", 5)
        .ask_at("nx.example.com", 65)
        .connect_at("203.0.113.5", "22/tcp", &[], 100);
    let text = yaml(&run.propose());
    // (item, its comments)
    let cases = [
        (
            "fqdn: api.example.com",
            vec![
                "3 connections to 2 addresses",
                "first 2023-11-14T22:13:30Z, last 2023-11-14T23:13:20Z",
            ],
        ),
        (
            "fqdn: nx.example.com",
            vec![
                "asked (A), never connected to: may be resolved, nothing more",
                "2 questions, first 2023-11-14T22:13:25Z, last 2023-11-14T22:14:25Z",
            ],
        ),
        (
            "cidr: 203.0.113.5/32",
            vec![
                "direct-IP access to review: no DNS answer gave this address",
                "1 connection, at 2023-11-14T22:15:00Z",
            ],
        ),
    ];
    for (item, comments) in cases {
        assert_eq!(comments_above(&text, item), comments, "{text}");
    }
}

#[test]
fn names_asked_and_never_connected_to_are_dns_only() {
    let run = Run::new()
        .ask("nx.example.com")
        .ask("unused.example.org")
        .connect("198.51.100.1", "443/tcp", &["api.example.com"]);
    let proposal = run.propose();
    assert_eq!(
        summary(&proposal),
        [
            "fqdn api.example.com 443/tcp",
            "fqdn nx.example.com dnsOnly",
            "fqdn unused.example.org dnsOnly",
        ]
    );
    let text = yaml(&proposal);
    assert!(
        text.contains("    - fqdn: nx.example.com\n      dnsOnly: true\n"),
        "{text}"
    );
    let policy = assert_parses(&proposal);
    // In the policy: questions for them pass, nothing is resolved for them.
    assert!(policy.egress[1].target.matches_name("nx.example.com"));
    assert!(policy.egress[1].is_dns_only());
}

#[test]
fn addresses_no_name_gave_are_direct_ip_cidr_rules() {
    let run = Run::new()
        .connect("203.0.113.5", "22/tcp", &[])
        .connect("203.0.113.5", "443/tcp", &[])
        .connect("2001:db8::5", "8080/tcp", &[])
        .connect("::ffff:203.0.113.6", "123/udp", &[]);
    let proposal = run.propose();
    assert_eq!(
        summary(&proposal),
        [
            "cidr 203.0.113.5/32 22/tcp 443/tcp",
            "cidr 203.0.113.6/32 123/udp",
            "cidr 2001:db8::5/128 8080/tcp",
        ]
    );
    assert!(proposal.rules.iter().all(|p| p.reason == Reason::DirectIp));
    let text = yaml(&proposal);
    assert!(text.contains("    - cidr: \"2001:db8::5/128\"\n"), "{text}");
    assert_eq!(
        comments_above(&text, "cidr: 203.0.113.6/32")[0],
        "direct-IP access to review: no DNS answer gave this address"
    );
}

#[test]
fn internal_addresses_a_name_gave_need_a_cidr_rule() {
    // The kernel refuses to learn a private address from DNS unless a cidr
    // rule covers it: the rule that covers it allows the connection, and
    // the name needs only its questions let through.
    let run = Run::new()
        .connect("10.1.2.3", "5432/tcp", &["db.corp.example"])
        .connect("198.51.100.1", "443/tcp", &["api.example.com"]);
    let proposal = run.propose();
    assert_eq!(
        summary(&proposal),
        [
            "fqdn api.example.com 443/tcp",
            "fqdn db.corp.example dnsOnly",
            "cidr 10.1.2.3/32 5432/tcp",
        ]
    );
    let text = yaml(&proposal);
    let comments = comments_above(&text, "cidr: 10.1.2.3/32").join(" ");
    assert!(
        comments.starts_with(
            "review: an internal address (private) that db.corp.example resolved to; \
             names open internal addresses only where a cidr rule covers them"
        ),
        "{comments}"
    );
    assert_eq!(
        comments_above(&text, "fqdn: db.corp.example")[0],
        "asked (A), its connections went to addresses a cidr rule allows"
    );
}

#[test]
fn dns_is_no_rule_and_names_that_cannot_be_rules_are_noted() {
    let run = Run::new()
        .connect("10.77.0.1", "53/udp", &[])
        .connect("8.8.8.8", "53/udp", &[])
        .ask("localhost")
        .connect("198.51.100.1", "443/tcp", &["api.example.com"]);
    let proposal = run.propose();
    assert_eq!(summary(&proposal), ["fqdn api.example.com 443/tcp"]);
    assert_eq!(
        proposal.not_proposed.len(),
        2,
        "{:?}",
        proposal.not_proposed
    );
    let text = yaml(&proposal);
    assert!(
        text.contains("    # not proposed: DNS to 8.8.8.8 (53/udp): only the resolvers"),
        "{text}"
    );
    assert!(
        text.contains("    # not proposed: the name `localhost`: "),
        "{text}"
    );
}

#[test]
fn a_rule_with_more_ports_than_an_item_holds_is_split() {
    let run = (1000..1020).fold(Run::new(), |run, port| {
        run.connect(
            "198.51.100.1",
            &format!("{port}/tcp"),
            &["many.example.com"],
        )
    });
    let proposal = run.propose();
    let policy = assert_parses(&proposal);
    assert_eq!(policy.egress.len(), 2);
    assert_eq!(policy.egress[0].ports.len(), 16);
    assert_eq!(policy.egress[1].ports.len(), 4);
}

#[test]
fn proposals_parse_as_policies() {
    // (what, run); `Run::propose` checks each against the parser.
    let runs = [
        ("nothing", Run::new()),
        (
            "IPv6",
            Run::new()
                .connect("2001:db8::1", "443/tcp", &["v6.example.com"])
                .connect("2001:db8::2", "8443/udp", &[]),
        ),
        (
            "collapsed",
            (0..6).fold(Run::new(), |run, i| {
                run.connect(
                    &format!("2001:db8::{i}"),
                    "443/tcp",
                    &[&format!("m{i}.cdn.example.com")],
                )
            }),
        ),
        (
            "everything",
            Run::new()
                .connect("198.51.100.1", "443/tcp", &["api.example.com"])
                .connect("198.51.100.1", "443/udp", &["api.example.com"])
                .connect("10.0.0.9", "80/tcp", &["intranet.example.com"])
                .connect("203.0.113.9", "22/tcp", &[])
                .ask("nx.example.com"),
        ),
    ];
    for (what, run) in runs {
        let proposal = run.propose();
        assert!(
            what != "nothing"
                || (proposal.rules.is_empty() && yaml(&proposal).contains("  egress: []\n"))
        );
    }
}

#[test]
fn the_whole_document() {
    let run = Run::new()
        .connect("198.51.100.1", "443/tcp", &["api.example.com"])
        .ask("nx.example.com");
    let mut observations = run.0;
    observations.resolvers.push(ip("fd77::1"));
    let selector = Selector {
        cgroup_path: Some(PathBuf::from("openclaw")),
        interfaces: vec!["veth1".into()],
        pod_labels: [("app".to_owned(), "agent".to_owned())].into(),
    };
    let text = propose(&observations, &Options::default()).to_yaml("agent", &selector);
    let expected = "\
# Proposed by openclaw-egress learn mode from what the workload did. Review it
# before applying: each rule allows what was seen, and patterns and cidr rules
# may allow more. Counts and times are those of the learning run.
apiVersion: openclaw.io/v1
kind: EgressPolicy
metadata:
  name: agent
spec:
  mode: enforce
  selector:
    cgroupPath: openclaw
    interfaces: [veth1]
    podLabels:
      app: agent
  dns:
    resolvers: [10.77.0.1, \"fd77::1\"]
  egress:
    # 1 connection to 1 address, at 2023-11-14T22:13:30Z
    - fqdn: api.example.com
      ports: [443/tcp]
    # asked (A), never connected to: may be resolved, nothing more
    # 1 question, at 2023-11-14T22:13:20Z
    - fqdn: nx.example.com
      dnsOnly: true
";
    assert_eq!(text, expected);
    policy::parse_str("whole.yaml", &text).unwrap();
}
