//! What the programs report beyond drops when a policy records (learn mode,
//! `--flow-log`), run on crafted packets with BPF_PROG_TEST_RUN: nothing
//! when it does not; with `record::FLOWS`, each allowed connection once,
//! with its rule; with `record::DNS`, every question (allowed or not) and
//! every address of its answer, without the answer to a refused question
//! opening anything. Needs root.

mod common;

use std::{net::IpAddr, time::Duration};

use common::{stream::Connection, *};
use openclaw_egress::{
    clock,
    datapath::{
        Hooks,
        frames::{
            self,
            dns::{self, Record, TYPE_A, TYPE_AAAA},
            tls::ClientHello,
        },
    },
    policy::Mode,
};
use openclaw_egress_common::{DropEvent, DropReason, NO_RULE, Stage, Verdict, proto, record};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn loaded(mode: Mode, record: u32) -> Loaded {
    loaded_on(Hooks::CGROUP, mode, record)
}

fn loaded_on(hooks: Hooks, mode: Mode, record: u32) -> Loaded {
    let loaded = load_with(
        &policy(mode),
        hooks,
        clock::monotonic_ns_after(Duration::from_secs(600)),
    );
    loaded.datapath.set_record(record).unwrap();
    loaded
}

fn name_of(event: &DropEvent) -> &str {
    std::str::from_utf8(&event.dns_name[..usize::from(event.dns_name_len)]).unwrap()
}

fn dst_of(event: &DropEvent) -> IpAddr {
    match openclaw_egress_common::addr::as_ipv4(&event.dst_addr) {
        Some(octets) => IpAddr::from(octets),
        None => IpAddr::from(event.dst_addr),
    }
}

fn answer_for(name: &str, qtype: u16, addresses: &[&str]) -> Vec<u8> {
    let records: Vec<Record> = addresses
        .iter()
        .map(|addr| Record::Address {
            ip: ip(addr),
            ttl: 300,
        })
        .collect();
    dns::response(9, name, qtype, &records)
}

/// A question and its answer, then two connections (on a veth, where
/// verdicts are cached per 5-tuple): one to the answered name's address,
/// whose ClientHello is inspected, one that a CIDR rule allows; each sends
/// two segments.
fn traffic(loaded: &Loaded) {
    assert_eq!(
        loaded.run_tc(&frames::udp(
            AGENT,
            40000,
            RESOLVER,
            53,
            &dns::query(9, "api.trusted.test", TYPE_A)
        )),
        TC_NEXT
    );
    let answer = answer_for("api.trusted.test", TYPE_A, &["203.0.113.10"]);
    assert_eq!(
        loaded.run_tc_to_workload(&frames::udp(RESOLVER, 53, AGENT, 40000, &answer)),
        TC_NEXT
    );
    let mut trusted = Connection::open(loaded, 40001, TRUSTED, 443);
    assert_eq!(
        trusted.send(&ClientHello::to("api.trusted.test").bytes()),
        TC_NEXT
    );
    assert_eq!(trusted.send(b"more"), TC_NEXT);
    let mut database = Connection::open(loaded, 40002, ip("198.51.100.9"), 5432);
    assert_eq!(database.send(b"query"), TC_NEXT);
    assert_eq!(database.send(b"more"), TC_NEXT);
}

#[test]
fn nothing_is_recorded_unless_asked() {
    let mut loaded = loaded_on(Hooks::INTERFACES, Mode::Enforce, 0);
    traffic(&loaded);
    assert!(loaded.events().is_empty());
}

#[test]
fn allowed_connections_are_reported_once_with_their_rule() {
    let mut loaded = loaded_on(Hooks::INTERFACES, Mode::Enforce, record::FLOWS);
    traffic(&loaded);
    let events = loaded.events();
    assert_eq!(events.len(), 2, "one per connection, no DNS");
    // The inspected connection is reported once its hello passed, without
    // a rule (the name allowed it); the other at its SYN.
    for (event, dst, port, rule) in [
        (&events[0], TRUSTED, 443, NO_RULE),
        (&events[1], ip("198.51.100.9"), 5432, 1),
    ] {
        assert_eq!(event.verdict, Verdict::Allowed as u8);
        assert_eq!(event.stage, Stage::Packet as u8);
        assert_eq!(event.proto, proto::TCP);
        assert_eq!(dst_of(event), dst);
        assert_eq!(event.dst_port, port);
        assert_eq!(event.rule, rule);
    }
    // Allowed flows are not drops: no counter moved.
    assert!(
        DropReason::ALL
            .iter()
            .all(|reason| loaded.dropped(*reason) == 0)
    );
}

#[test]
fn questions_and_answers_are_recorded_allowed_or_not() {
    let mut loaded = loaded_on(Hooks::INTERFACES, Mode::Audit, record::FLOWS | record::DNS);
    traffic(&loaded);
    // A name no rule allows: audit mode lets the question out; its answer
    // is recorded but opens nothing.
    let answer = answer_for(
        "elsewhere.test",
        TYPE_AAAA,
        &["2001:db8:9::9", "2001:db8:9::a"],
    );
    let query = query_answered_by(&answer).unwrap();
    assert_eq!(
        loaded.run_tc(&frames::udp(AGENT, 40000, RESOLVER, 53, &query)),
        TC_NEXT
    );
    assert_eq!(
        loaded.run_tc_to_workload(&frames::udp(RESOLVER, 53, AGENT, 40000, &answer)),
        TC_NEXT
    );
    assert!(
        loaded
            .allowed(ip("2001:db8:9::9"), proto::TCP, 443)
            .is_none()
    );
    let events = loaded.events();
    let questions: Vec<_> = events
        .iter()
        .filter(|e| {
            e.stage == Stage::Question as u8
                || (e.stage == Stage::Packet as u8 && e.reason == DropReason::DnsDenied as u8)
        })
        .map(|e| (name_of(e).to_string(), e.dns_type, e.verdict))
        .collect();
    assert_eq!(
        questions,
        [
            (
                "api.trusted.test".to_string(),
                TYPE_A,
                Verdict::Allowed as u8
            ),
            (
                "elsewhere.test".to_string(),
                TYPE_AAAA,
                Verdict::Audited as u8
            ),
        ]
    );
    let answers: Vec<_> = events
        .iter()
        .filter(|e| e.stage == Stage::Answer as u8)
        .map(|e| (name_of(e).to_string(), dst_of(e), e.family, e.rule))
        .collect();
    assert_eq!(
        answers,
        [
            ("api.trusted.test".to_string(), TRUSTED, 4, NO_RULE),
            (
                "elsewhere.test".to_string(),
                ip("2001:db8:9::9"),
                6,
                NO_RULE
            ),
            (
                "elsewhere.test".to_string(),
                ip("2001:db8:9::a"),
                6,
                NO_RULE
            ),
        ]
    );
    let flows = events
        .iter()
        .filter(|e| e.stage == Stage::Packet as u8 && e.verdict == Verdict::Allowed as u8)
        .count();
    assert_eq!(flows, 2);
}

#[test]
fn an_answer_to_a_question_never_asked_is_not_recorded() {
    let mut loaded = loaded(Mode::Audit, record::DNS);
    loaded.answer_unsolicited(&answer_for("elsewhere.test", TYPE_A, &["198.51.100.77"]));
    assert!(
        loaded
            .events()
            .iter()
            .all(|e| e.stage != Stage::Answer as u8),
        "a forged answer is not a record of what the workload asked"
    );
}
