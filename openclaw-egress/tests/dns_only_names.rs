//! `dnsOnly` name rules on the real programs (BPF_PROG_TEST_RUN): the
//! workload may ask for their names, and nothing their answers carry is
//! opened. Learn mode proposes them for names a workload asked but never
//! connected to, so that a rerun under the proposal drops no question.
//! Needs root.

mod common;

use std::net::IpAddr;

use common::{stream::*, *};
use openclaw_egress::{
    datapath::{
        Hooks, encode,
        frames::{
            self,
            dns::{self, Record, TYPE_A, TYPE_AAAA},
            tls::ClientHello,
        },
    },
    policy::{Mode, Policy, WildcardDepth},
};
use openclaw_egress_common::{DropReason, dns::DnsStat, proto};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// rule 0: api.trusted.test 443/tcp (resolved to TRUSTED by `load`)
/// rule 1: nx.example.test, dnsOnly
/// rule 2: *.probe.test, dnsOnly
/// rule 3: a.pkg.test, dnsOnly (every name of it rule 4 allows too)
/// rule 4: *.pkg.test 443/tcp
fn dns_only_policy() -> Policy {
    policy_with(
        Mode::Enforce,
        vec![
            fqdn("api.trusted.test", vec![tcp(443)]),
            fqdn("nx.example.test", vec![]),
            pattern(WildcardDepth::OneLabel, "probe.test", vec![]),
            fqdn("a.pkg.test", vec![]),
            pattern(WildcardDepth::OneLabel, "pkg.test", vec![tcp(443)]),
        ],
    )
}

fn udp_query(loaded: &Loaded, name: &str, qtype: u16) -> u32 {
    loaded.run(&frames::udp(
        AGENT,
        5353,
        RESOLVER,
        53,
        &dns::query(7, name, qtype),
    ))
}

fn address(addr: &str) -> Record {
    Record::Address {
        ip: ip(addr),
        ttl: 300,
    }
}

/// Whether any `ALLOW` entry, on any protocol and port, is for `addr`.
fn anything_allowed(loaded: &Loaded, addr: &str) -> bool {
    let addr = encode::addr_of(ip(addr));
    loaded
        .datapath
        .allow_entries()
        .iter()
        .any(|(key, _)| key.addr == addr)
}

#[test]
fn dns_only_names_may_be_asked_and_their_answers_open_nothing() {
    let loaded = load(&dns_only_policy(), in_ten_minutes());
    for allowed in ["nx.example.test", "x.probe.test", "a.pkg.test"] {
        for qtype in [TYPE_A, TYPE_AAAA] {
            assert_eq!(udp_query(&loaded, allowed, qtype), PASS, "{allowed}");
        }
    }
    for denied in ["other.example.test", "probe.test", "a.b.probe.test"] {
        assert_eq!(udp_query(&loaded, denied, TYPE_A), DROP, "{denied}");
    }
    assert_eq!(loaded.dropped(DropReason::DnsDenied), 3);

    // The answers reach the workload, and open nothing: no entry for their
    // addresses on any port, and a connection to them is dropped.
    let answers = [
        dns::response(7, "nx.example.test", TYPE_A, &[address("198.51.100.7")]),
        dns::response(8, "x.probe.test", TYPE_AAAA, &[address("2001:db8:7::7")]),
    ];
    for answer in &answers {
        assert_eq!(loaded.answer(answer), PASS);
    }
    assert_eq!(loaded.dns_stat(DnsStat::AnswersParsed), 2);
    for addr in ["198.51.100.7", "2001:db8:7::7"] {
        assert!(!anything_allowed(&loaded, addr), "{addr} must stay closed");
    }
    let agent6 = AGENT6;
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.100.7"), 443)),
        DROP
    );
    assert_eq!(
        loaded.run(&frames::udp(AGENT, 1, ip("198.51.100.7"), 443, b"x")),
        DROP
    );
    assert_eq!(
        loaded.run(&frames::tcp_syn(agent6, 1, ip("2001:db8:7::7"), 443)),
        DROP
    );
}

/// A name that may only be resolved is no server name a TLS connection may
/// ask for, even to an address another rule allows on that port.
#[test]
fn a_dns_only_name_is_no_server_name() {
    let loaded = load_with(&dns_only_policy(), Hooks::INTERFACES, in_ten_minutes());
    let allowed = ClientHello::to("api.trusted.test").bytes();
    assert_eq!(judge(&loaded, 1000, &allowed, &[]), Ok(()));
    for (port, name) in [(1001, "nx.example.test"), (1002, "x.probe.test")] {
        let hello = ClientHello::to(name).bytes();
        assert_eq!(
            judge(&loaded, port, &hello, &[]),
            Err(DropReason::SniDenied),
            "{name}"
        );
    }
}

/// `a.pkg.test` (dnsOnly) is also matched by `*.pkg.test` (443/tcp): its
/// answers teach as that rule does, and an address already allowed costs
/// its name's budget nothing again. (Were the dnsOnly entry matched first,
/// its empty port list would make every answer charge the budget, and the
/// second new address below would be refused.)
#[test]
fn a_dns_only_name_a_rule_with_ports_covers_learns_as_that_rule() {
    let mut policy = dns_only_policy();
    policy.dns.max_ips_per_name = 2;
    let loaded = load(&policy, in_ten_minutes());
    let answers = [
        dns::response(11, "a.pkg.test", TYPE_A, &[address("198.51.100.9")]),
        dns::response(12, "a.pkg.test", TYPE_A, &[address("198.51.100.9")]),
        dns::response(
            13,
            "a.pkg.test",
            TYPE_A,
            &[address("198.51.100.9"), address("198.51.100.10")],
        ),
    ];
    for answer in &answers {
        assert_eq!(loaded.answer(answer), PASS);
    }
    for addr in ["198.51.100.9", "198.51.100.10"] {
        let learned = loaded.allowed(ip(addr), proto::TCP, 443);
        assert_eq!(learned.map(|value| value.rule), Some(4), "{addr}");
    }
    assert_eq!(loaded.dns_stat(DnsStat::AddressesRefusedCap), 0);
}
