//! Answers teach only what was asked, and wildcards only so much: an answer
//! opens addresses only if it answers a query the workload sent (resolver,
//! ports, protocol, ID, question), once; a pattern rule opens at most
//! `maxIPsPerPattern` addresses whatever names it matches. Run on crafted
//! packets with BPF_PROG_TEST_RUN; needs root.

mod common;

use std::{net::IpAddr, time::Duration};

use common::*;
use openclaw_egress::{
    clock,
    datapath::{
        Hooks,
        frames::{
            self,
            dns::{self, Record, TYPE_A, TYPE_AAAA},
        },
    },
    policy::{Mode, Policy, WildcardDepth},
};
use openclaw_egress_common::{dns::DnsStat, proto};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// rule 0: api.github.com 443/tcp; rule 1: *.pkg.test 443/tcp
fn names_policy() -> Policy {
    policy_with(
        Mode::Enforce,
        vec![
            fqdn("api.github.com", vec![tcp(443)]),
            pattern(WildcardDepth::OneLabel, "pkg.test", vec![tcp(443)]),
        ],
    )
}

fn loaded_with(policy: &Policy) -> Loaded {
    load(policy, clock::monotonic_ns_after(Duration::from_secs(600)))
}

fn a(addr: &str) -> Record {
    Record::Address {
        ip: ip(addr),
        ttl: 300,
    }
}

/// Sends a query from the agent's port `port` with `id` for `name`.
fn ask(loaded: &Loaded, port: u16, id: u16, name: &str, qtype: u16) {
    let query = dns::query(id, name, qtype);
    assert_eq!(
        loaded.run(&frames::udp(AGENT, port, RESOLVER, 53, &query)),
        PASS
    );
}

/// Delivers `answer` from the resolver to the agent's port `port`.
fn deliver(loaded: &Loaded, port: u16, answer: &[u8]) {
    assert_eq!(
        loaded.run_ingress(&frames::udp(RESOLVER, 53, AGENT, port, answer)),
        PASS,
        "ingress never drops"
    );
}

fn learned(loaded: &Loaded, addr: &str) -> bool {
    loaded.allowed(ip(addr), proto::TCP, 443).is_some()
}

#[test]
fn an_unsolicited_answer_teaches_nothing() {
    let loaded = loaded_with(&names_policy());
    deliver(
        &loaded,
        40000,
        &dns::response(7, "api.github.com", TYPE_A, &[a("198.51.100.66")]),
    );
    assert!(!learned(&loaded, "198.51.100.66"));
    assert_eq!(loaded.dns_stat(DnsStat::AnswersUnsolicited), 1);
    assert_eq!(loaded.dns_stat(DnsStat::AddressesLearned), 0);
}

#[test]
fn an_answer_must_match_its_query_exactly() {
    let loaded = loaded_with(&names_policy());
    ask(&loaded, 40000, 7, "api.github.com", TYPE_A);
    // Each of these differs from the outstanding query in one thing.
    let wrong_id = dns::response(8, "api.github.com", TYPE_A, &[a("198.51.100.1")]);
    deliver(&loaded, 40000, &wrong_id);
    let wrong_port = dns::response(7, "api.github.com", TYPE_A, &[a("198.51.100.2")]);
    deliver(&loaded, 40001, &wrong_port);
    let wrong_type = dns::response(7, "api.github.com", TYPE_AAAA, &[a("198.51.100.3")]);
    deliver(&loaded, 40000, &wrong_type);
    let wrong_name = dns::response(7, "x.pkg.test", TYPE_A, &[a("198.51.100.4")]);
    deliver(&loaded, 40000, &wrong_name);
    let wrong_server = dns::response(7, "api.github.com", TYPE_A, &[a("198.51.100.5")]);
    assert_eq!(
        loaded.run_ingress(&frames::udp(OTHER, 53, AGENT, 40000, &wrong_server)),
        PASS
    );
    let over_tcp = dns::tcp_framed(&dns::response(
        7,
        "api.github.com",
        TYPE_A,
        &[a("198.51.100.6")],
    ));
    let mut segment = frames::tcp_data(RESOLVER, 53, AGENT, 40000, &over_tcp);
    assert_eq!(loaded.run_ingress(&segment), PASS);
    for addr in 1..=6 {
        assert!(
            !learned(&loaded, &format!("198.51.100.{addr}")),
            "mismatch {addr} taught its address"
        );
    }
    assert_eq!(loaded.dns_stat(DnsStat::AnswersUnsolicited), 5);

    // The genuine answer (the name in another letter case, as a resolver
    // using 0x20 randomisation echoes it) teaches, once.
    let genuine = dns::response(7, "API.github.com", TYPE_A, &[a("198.51.100.7")]);
    deliver(&loaded, 40000, &genuine);
    assert!(learned(&loaded, "198.51.100.7"));
    let replay = dns::response(7, "api.github.com", TYPE_A, &[a("198.51.100.8")]);
    deliver(&loaded, 40000, &replay);
    assert!(!learned(&loaded, "198.51.100.8"), "a second answer teaches");
    assert_eq!(loaded.dns_stat(DnsStat::AnswersUnsolicited), 6);

    // Over TCP (on the TC programs, which follow TCP streams), the answer to
    // a TCP query teaches.
    let tc = load_with(
        &names_policy(),
        Hooks::INTERFACES,
        clock::monotonic_ns_after(Duration::from_secs(600)),
    );
    let query = dns::tcp_framed(&dns::query(9, "api.github.com", TYPE_A));
    assert_eq!(tc.tcp_dns_tc(40002, &query), TC_NEXT);
    segment = frames::tcp_data(
        RESOLVER,
        53,
        AGENT,
        40002,
        &dns::tcp_framed(&dns::response(
            9,
            "api.github.com",
            TYPE_A,
            &[a("198.51.100.9")],
        )),
    );
    assert_eq!(tc.run_tc_to_workload(&segment), TC_NEXT);
    assert!(learned(&tc, "198.51.100.9"));
}

#[test]
fn a_pattern_rule_opens_at_most_max_ips_per_pattern_addresses() {
    let mut policy = names_policy();
    policy.dns.max_ips_per_pattern = 3;
    let loaded = loaded_with(&policy);
    // Five made-up names under the pattern, one new address each: each name
    // is far below its own budget, the pattern is not.
    for n in 1..=5u16 {
        let name = format!("n{n}.pkg.test");
        loaded.answer(&dns::response(
            n,
            &name,
            TYPE_A,
            &[a(&format!("198.51.100.{n}"))],
        ));
    }
    for n in 1..=3 {
        assert!(learned(&loaded, &format!("198.51.100.{n}")), "n{n}");
    }
    for n in 4..=5 {
        assert!(!learned(&loaded, &format!("198.51.100.{n}")), "n{n}");
    }
    assert_eq!(loaded.dns_stat(DnsStat::AddressesRefusedPatternCap), 2);
    assert_eq!(loaded.dns_stat(DnsStat::AddressesLearned), 3);

    // An address the pattern already opened costs nothing again...
    loaded.answer(&dns::response(
        6,
        "n6.pkg.test",
        TYPE_A,
        &[a("198.51.100.1")],
    ));
    assert_eq!(loaded.dns_stat(DnsStat::AddressesRefusedPatternCap), 2);
    // ...and exact names are not bound by any pattern's budget.
    loaded.answer(&dns::response(
        7,
        "api.github.com",
        TYPE_A,
        &[a("198.51.100.70")],
    ));
    assert!(learned(&loaded, "198.51.100.70"));
}
