//! The DNS side of the datapath, run on crafted packets with
//! BPF_PROG_TEST_RUN: query filtering on egress, address learning on
//! ingress, and what malformed input does to both (nothing good for the
//! sender: no crash, no hang, nothing opened). Needs root.

mod common;

use std::{net::IpAddr, time::Duration};

use common::*;
use openclaw_egress::{
    clock,
    datapath::Hooks,
    datapath::frames::{
        self,
        dns::{self, Record, TYPE_A, TYPE_AAAA},
    },
    policy::{Mode, Policy, WildcardDepth},
};
use openclaw_egress_common::{DropReason, Verdict, dns::DnsStat, proto};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// rule 0: api.github.com 443/tcp
/// rule 1: *.pkg.test 443/tcp and 8443/tcp
/// rule 2: **.cdn.test 80 (TCP and UDP)
/// rule 3: 10.0.5.0/24 443/tcp (lets a name learn an otherwise internal range)
fn dns_policy(mode: Mode) -> Policy {
    policy_with(
        mode,
        vec![
            fqdn("api.github.com", vec![tcp(443)]),
            pattern(
                WildcardDepth::OneLabel,
                "pkg.test",
                vec![tcp(443), tcp(8443)],
            ),
            pattern(
                WildcardDepth::AnyDepth,
                "cdn.test",
                vec![openclaw_egress::policy::PortSpec {
                    port: 80,
                    protocol: openclaw_egress::policy::Protocol::Any,
                }],
            ),
            cidr("10.0.5.0", 24, vec![tcp(443)]),
        ],
    )
}

fn loaded(mode: Mode) -> Loaded {
    load(
        &dns_policy(mode),
        clock::monotonic_ns_after(Duration::from_secs(600)),
    )
}

fn udp_query(loaded: &Loaded, name: &str) -> u32 {
    loaded.run(&frames::udp(
        AGENT,
        5353,
        RESOLVER,
        53,
        &dns::query(7, name, TYPE_A),
    ))
}

fn udp_query_wire(loaded: &Loaded, wire_name: &[u8]) -> u32 {
    loaded.run(&frames::udp(
        AGENT,
        5353,
        RESOLVER,
        53,
        &dns::query_raw(7, wire_name, TYPE_A),
    ))
}

#[test]
fn queries_for_allowed_names_pass_and_others_are_denied() {
    let mut loaded = loaded(Mode::Enforce);
    for allowed in [
        "api.github.com",
        "API.GitHub.COM",
        "api.github.com.",
        "a.pkg.test",
        "x-1.pkg.test",
        "a.cdn.test",
        "a.b.c.cdn.test",
    ] {
        assert_eq!(
            udp_query(&loaded, allowed),
            PASS,
            "{allowed} must be allowed"
        );
    }
    for denied in [
        "github.com",
        "evil.api.github.com",
        "pkg.test",
        "a.b.pkg.test",
        "cdn.test",
        "evilcdn.test",
        "exfil-4142434445.attacker.example",
    ] {
        assert_eq!(udp_query(&loaded, denied), DROP, "{denied} must be denied");
    }
    assert_eq!(loaded.dropped(DropReason::DnsDenied), 7);
    assert_eq!(loaded.dns_stat(DnsStat::QueriesAllowed), 7);
    assert_eq!(loaded.dns_stat(DnsStat::QueriesDenied), 7);

    // The last denial names the query in its event.
    let events = loaded.events();
    let last = events.last().unwrap();
    assert_eq!(last.reason, DropReason::DnsDenied as u8);
    assert_eq!(
        &last.dns_name[..usize::from(last.dns_name_len)],
        b"exfil-4142434445.attacker.example"
    );
    assert_eq!((last.dst_port, last.proto), (53, proto::UDP));
}

#[test]
fn queries_over_tcp_are_checked_message_by_message() {
    let loaded = load_with(
        &dns_policy(Mode::Enforce),
        Hooks::INTERFACES,
        clock::monotonic_ns_after(Duration::from_secs(600)),
    );
    let allowed = dns::tcp_framed(&dns::query(1, "api.github.com", TYPE_A));
    let allowed_aaaa = dns::tcp_framed(&dns::query(2, "api.github.com", TYPE_AAAA));
    let denied = dns::tcp_framed(&dns::query(3, "leak.attacker.example", TYPE_A));

    assert_eq!(loaded.tcp_dns_tc(4000, &allowed), TC_NEXT);
    // A and AAAA queries written together: both checked.
    assert_eq!(
        loaded.tcp_dns_tc(4001, &[allowed.clone(), allowed_aaaa].concat()),
        TC_NEXT
    );
    assert_eq!(loaded.tcp_dns_tc(4002, &denied), TC_SHOT);
    // An allowed query cannot carry a denied one behind it.
    assert_eq!(
        loaded.tcp_dns_tc(4003, &[allowed.clone(), denied].concat()),
        TC_SHOT
    );
    assert_eq!(loaded.dropped(DropReason::DnsDenied), 2);
    // A message cut in two cannot be checked: refused.
    assert_eq!(
        loaded.tcp_dns_tc(4004, &allowed[..allowed.len() - 3]),
        TC_SHOT
    );
    // Three messages in one segment: more than we check, refused.
    assert_eq!(
        loaded.tcp_dns_tc(
            4005,
            &[allowed.clone(), allowed.clone(), allowed.clone()].concat()
        ),
        TC_SHOT
    );
    assert_eq!(loaded.dropped(DropReason::DnsMalformed), 2);

    // On a cgroup hook a segment to port 53 must come from a kernel TCP
    // socket: BPF_PROG_TEST_RUN's dummy socket is not one, like a raw
    // socket crafting its own segments.
    let cgroup = loaded_with_hooks(Hooks::CGROUP);
    let segment = frames::tcp_data(AGENT, 4006, RESOLVER, 53, &allowed);
    assert_eq!(cgroup.run(&segment), DROP);
    assert_eq!(cgroup.dropped(DropReason::DnsMalformed), 1);
}

fn loaded_with_hooks(hooks: Hooks) -> Loaded {
    load_with(
        &dns_policy(Mode::Enforce),
        hooks,
        clock::monotonic_ns_after(Duration::from_secs(600)),
    )
}

#[test]
fn tcp_dns_segments_must_follow_their_stream() {
    let loaded = loaded_with_hooks(Hooks::INTERFACES);
    let query = |id| dns::tcp_framed(&dns::query(id, "api.github.com", TYPE_A));
    let at = |port, seq: u32, payload: &[u8]| {
        loaded.run_tc(&frames::tcp_data_at(
            AGENT, port, RESOLVER, 53, seq, payload,
        ))
    };
    let first = query(1);
    let len = first.len() as u32;
    assert_eq!(loaded.tcp_dns_tc(5000, &first), TC_NEXT);
    // The next message right after the first: fine.
    assert_eq!(at(5000, 1 + len, &query(2)), TC_NEXT);
    // A retransmission of the first (entirely below the stream's
    // position): checked, and fine.
    assert_eq!(at(5000, 1, &first), TC_NEXT);
    // A segment that overlaps what was sent and runs past it: the
    // resolver would keep the old bytes and take only the new tail.
    assert_eq!(at(5000, 1 + len + 5, &query(3)), TC_SHOT);
    // A gap: the resolver would wait and stitch later bytes in front.
    assert_eq!(at(5000, 1 + 3 * len, &query(4)), TC_SHOT);
    // Data on a connection whose handshake was not seen.
    assert_eq!(at(5001, 1, &first), TC_SHOT);
    // A SYN carrying data (TCP Fast Open) is refused.
    let mut syn_with_data = frames::tcp_data_at(AGENT, 5002, RESOLVER, 53, 0, &first);
    syn_with_data[14 + 20 + 13] = 0x02;
    assert_eq!(loaded.run_tc(&syn_with_data), TC_SHOT);
    assert_eq!(loaded.dropped(DropReason::DnsMalformed), 4);
    // The stream goes on where it is.
    assert_eq!(at(5000, 1 + 2 * len, &query(5)), TC_NEXT);
}

#[test]
fn malformed_queries_are_refused() {
    let loaded = loaded(Mode::Enforce);
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        // A compression pointer in a question (pointing at itself: a loop).
        ("pointer", dns::query_raw(1, &[0xc0, 12], TYPE_A)),
        (
            "pointer after label",
            dns::query_raw(1, b"\x03api\xc0\x0c", TYPE_A),
        ),
        (
            "label over 63",
            dns::query_raw(1, &[&[64u8][..], &[b'a'; 64], b"\0"].concat(), TYPE_A),
        ),
        (
            "no root label",
            dns::query_raw(1, b"\x03api\x06github\x03com", TYPE_A)[..27].to_vec(),
        ),
        (
            "bad character",
            dns::query_raw(1, b"\x03a\x00i\x06github\x03com\0", TYPE_A),
        ),
        (
            "dot inside label",
            dns::query_raw(1, b"\x07api.git\x03com\0", TYPE_A),
        ),
        ("root name", dns::query_raw(1, b"\0", TYPE_A)),
        (
            "header only",
            dns::query(1, "api.github.com", TYPE_A)[..12].to_vec(),
        ),
        ("short header", vec![0, 1, 1, 0, 0, 1]),
        ("empty", vec![]),
    ];
    let mut two_questions = dns::query(1, "api.github.com", TYPE_A);
    two_questions[5] = 2;
    cases.push(("two questions", two_questions));
    let mut response_bit = dns::query(1, "api.github.com", TYPE_A);
    response_bit[2] |= 0x80;
    cases.push(("response going out", response_bit));
    let mut update = dns::query(1, "api.github.com", TYPE_A);
    update[2] |= 5 << 3;
    cases.push(("update opcode", update));
    let mut with_answer = dns::query(1, "api.github.com", TYPE_A);
    with_answer[7] = 1;
    cases.push(("query with an answer record", with_answer));

    for (what, message) in &cases {
        let frame = frames::udp(AGENT, 5353, RESOLVER, 53, message);
        assert_eq!(loaded.run(&frame), DROP, "{what} must be dropped");
    }
    let malformed = loaded.dropped(DropReason::DnsMalformed);
    assert_eq!(malformed, cases.len() as u64);
    // The longest valid name (253 characters) is fine when allowed... and
    // denied, not malformed, when not.
    let long = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(long.len(), 253);
    assert_eq!(udp_query(&loaded, &long), DROP);
    assert_eq!(loaded.dropped(DropReason::DnsDenied), 1);
    let long_allowed = format!(
        "{}.{}.{}.cdn.test",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63)
    );
    assert_eq!(udp_query(&loaded, &long_allowed), PASS);
    // Uppercase and underscores are fine.
    assert_eq!(udp_query_wire(&loaded, b"\x04_SVC\x03cdn\x04test\0"), PASS);
}

#[test]
fn answers_to_allowed_questions_open_their_addresses_before_delivery() {
    let loaded = loaded(Mode::Enforce);
    let answer = dns::response(
        7,
        "api.github.com",
        TYPE_A,
        &[
            Record::Address {
                ip: ip("198.51.100.7"),
                ttl: 300,
            },
            Record::Address {
                ip: ip("198.51.100.8"),
                ttl: 10,
            },
            Record::Address {
                ip: ip("2001:db8:7::7"),
                ttl: 300,
            },
        ],
    );
    // Before the answer the address is closed...
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.100.7"), 443)),
        DROP
    );
    assert_eq!(loaded.answer(&answer), PASS);
    // ...and the answer opened it (and only on the rule's port).
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.100.7"), 443)),
        PASS
    );
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT6, 1, ip("2001:db8:7::7"), 443)),
        PASS
    );
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.100.7"), 80)),
        DROP
    );
    assert_eq!(loaded.dns_stat(DnsStat::AddressesLearned), 3);
    assert_eq!(loaded.dns_stat(DnsStat::AnswersParsed), 1);

    // Expiry = max(TTL, minTTL): 300 s for the first, minTTL (60 s) for the 10 s one.
    let now = clock::monotonic_ns();
    let expiry = |addr: &str| {
        let value = loaded.allowed(ip(addr), proto::TCP, 443).expect("learned");
        assert_eq!(value.rule, 0);
        Duration::from_nanos(value.expires_at_ns - now)
    };
    let long = expiry("198.51.100.7");
    assert!(
        long > Duration::from_secs(290) && long <= Duration::from_secs(300),
        "{long:?}"
    );
    let short = expiry("198.51.100.8");
    assert!(
        short > Duration::from_secs(50) && short <= Duration::from_secs(60),
        "{short:?}"
    );
}

#[test]
fn wildcards_learn_through_answers_alone() {
    let loaded = loaded(Mode::Enforce);
    let answer = dns::response(
        7,
        "mirror.pkg.test",
        TYPE_A,
        &[Record::Address {
            ip: ip("198.51.100.9"),
            ttl: 120,
        }],
    );
    assert_eq!(loaded.answer(&answer), PASS);
    // Both ports of the pattern rule.
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.100.9"), 443)),
        PASS
    );
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.100.9"), 8443)),
        PASS
    );
    // `**.cdn.test` with a bare port: TCP and UDP.
    let deep = dns::response(
        8,
        "a.b.cdn.test",
        TYPE_A,
        &[Record::Address {
            ip: ip("198.51.100.10"),
            ttl: 120,
        }],
    );
    assert_eq!(loaded.answer(&deep), PASS);
    assert!(
        loaded
            .allowed(ip("198.51.100.10"), proto::TCP, 80)
            .is_some()
    );
    assert!(
        loaded
            .allowed(ip("198.51.100.10"), proto::UDP, 80)
            .is_some()
    );
}

#[test]
fn cname_chains_are_followed_to_their_addresses() {
    let loaded = loaded(Mode::Enforce);
    let answer = dns::response(
        7,
        "api.github.com",
        TYPE_A,
        &[
            Record::Cname {
                target: "github.map.fastly.example".into(),
                ttl: 300,
            },
            Record::Cname {
                target: "edge.fastly.example".into(),
                ttl: 300,
            },
            Record::Address {
                ip: ip("198.51.100.11"),
                ttl: 300,
            },
        ],
    );
    assert_eq!(loaded.answer(&answer), PASS);
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.100.11"), 443)),
        PASS
    );
}

#[test]
fn answers_that_must_not_teach_anything() {
    let loaded = loaded(Mode::Enforce);
    let record = |addr: &str| Record::Address {
        ip: ip(addr),
        ttl: 300,
    };
    // A question no rule allows.
    loaded.answer(&dns::response(
        7,
        "evil.example",
        TYPE_A,
        &[record("198.51.100.20")],
    ));
    // From a server that is not a resolver of the policy.
    let spoofed = dns::response(7, "api.github.com", TYPE_A, &[record("198.51.100.21")]);
    assert_eq!(
        loaded.run_ingress(&frames::udp(OTHER, 53, AGENT, 40000, &spoofed)),
        PASS
    );
    // From the resolver, but not from port 53.
    assert_eq!(
        loaded.run_ingress(&frames::udp(RESOLVER, 5353, AGENT, 40000, &spoofed)),
        PASS
    );
    // Rebinding: internal addresses are refused...
    loaded.answer(&dns::response(
        7,
        "api.github.com",
        TYPE_A,
        &[
            record("127.0.0.1"),
            record("169.254.169.254"),
            record("10.1.2.3"),
            record("fd00::1"),
        ],
    ));
    // ...unless a CIDR rule of the policy covers them.
    loaded.answer(&dns::response(
        7,
        "api.github.com",
        TYPE_A,
        &[record("10.0.5.5")],
    ));

    for addr in [
        "198.51.100.20",
        "198.51.100.21",
        "127.0.0.1",
        "169.254.169.254",
        "10.1.2.3",
        "fd00::1",
    ] {
        assert!(
            loaded.allowed(ip(addr), proto::TCP, 443).is_none(),
            "{addr} must not have been learned"
        );
    }
    assert!(loaded.allowed(ip("10.0.5.5"), proto::TCP, 443).is_some());
    assert_eq!(loaded.dns_stat(DnsStat::AddressesRefusedInternal), 4);
}

#[test]
fn a_name_learns_at_most_max_ips_per_name() {
    let mut policy = dns_policy(Mode::Enforce);
    policy.dns.max_ips_per_name = 2;
    let loaded = load(&policy, clock::monotonic_ns_after(Duration::from_secs(600)));
    let record = |addr: &str| Record::Address {
        ip: ip(addr),
        ttl: 300,
    };
    loaded.answer(&dns::response(
        7,
        "a.cdn.test",
        TYPE_A,
        &[
            record("198.51.100.31"),
            record("198.51.100.32"),
            record("198.51.100.33"),
        ],
    ));
    // A later answer cannot add more either, but repeating a known one is fine.
    loaded.answer(&dns::response(
        8,
        "a.cdn.test",
        TYPE_A,
        &[record("198.51.100.31"), record("198.51.100.34")],
    ));
    let learned: Vec<_> = [
        "198.51.100.31",
        "198.51.100.32",
        "198.51.100.33",
        "198.51.100.34",
    ]
    .into_iter()
    .filter(|addr| loaded.allowed(ip(addr), proto::TCP, 80).is_some())
    .collect();
    assert_eq!(learned, ["198.51.100.31", "198.51.100.32"]);
    assert_eq!(loaded.dns_stat(DnsStat::AddressesRefusedCap), 2);
    // Another name has its own budget.
    loaded.answer(&dns::response(
        9,
        "b.cdn.test",
        TYPE_A,
        &[record("198.51.100.35")],
    ));
    assert!(
        loaded
            .allowed(ip("198.51.100.35"), proto::TCP, 80)
            .is_some()
    );
}

#[test]
fn malformed_answers_teach_nothing_and_pass() {
    let loaded = loaded(Mode::Enforce);
    let good = dns::response(
        7,
        "api.github.com",
        TYPE_A,
        &[Record::Address {
            ip: ip("198.51.100.40"),
            ttl: 300,
        }],
    );
    let question_end = 12 + dns::name("api.github.com").len() + 4;
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // Owner name: a pointer loop is never followed, a label loop runs out.
    let mut owner_labels = good.clone();
    owner_labels.splice(question_end..question_end + 2, [0x3f; 2]);
    cases.push(("owner name of long labels", owner_labels));
    let mut reserved = good.clone();
    reserved[question_end] = 0x80;
    cases.push(("reserved label type", reserved));
    cases.push(("truncated rdata", good[..good.len() - 2].to_vec()));
    cases.push(("truncated record", good[..question_end + 5].to_vec()));
    let mut wrong_length = good.clone();
    let rdlength = question_end + 2 + 8;
    wrong_length[rdlength + 1] = 5;
    cases.push(("A record of 5 bytes", wrong_length));
    let mut not_in = good.clone();
    not_in[question_end + 5] = 3; // class CH
    cases.push(("class CH", not_in));
    let mut more_answers_than_records = good.clone();
    more_answers_than_records[7] = 200;
    cases.push(("answer count beyond the packet", more_answers_than_records));
    let mut question_pointer = good.clone();
    question_pointer.splice(12..12 + dns::name("api.github.com").len(), [0xc0, 12]);
    cases.push(("question is a pointer loop", question_pointer));

    for (what, message) in &cases {
        assert_eq!(loaded.answer(message), PASS, "{what}: ingress never drops");
    }
    // An answer that does not parse to its end teaches nothing at all, not
    // even the records before the damage.
    assert!(
        loaded
            .allowed(ip("198.51.100.40"), proto::TCP, 443)
            .is_none()
    );
    assert_eq!(loaded.dns_stat(DnsStat::AddressesLearned), 0);
    // All but "A record of 5 bytes" and "class CH" (well-formed, just not
    // address records) are counted as unparsable.
    assert_eq!(
        loaded.dns_stat(DnsStat::AnswersUnparsed),
        cases.len() as u64 - 2
    );
    // The intact answer still works afterwards.
    assert_eq!(loaded.answer(&good), PASS);
    assert!(
        loaded
            .allowed(ip("198.51.100.40"), proto::TCP, 443)
            .is_some()
    );
}

#[test]
fn audit_mode_lets_denied_queries_through_but_reports_them() {
    let mut loaded = loaded(Mode::Audit);
    assert_eq!(udp_query(&loaded, "exfil.attacker.example"), PASS);
    // The event keeps the letter case of the query: it can carry data.
    assert_eq!(udp_query(&loaded, "c2VjcmV0.Attacker.example"), PASS);
    assert_eq!(loaded.count(Verdict::Audited, DropReason::DnsDenied), 2);
    assert_eq!(loaded.count(Verdict::Dropped, DropReason::DnsDenied), 0);
    let events = loaded.events();
    assert!(events.iter().all(|e| e.verdict == Verdict::Audited as u8));
    let names: Vec<&[u8]> = events
        .iter()
        .map(|e| &e.dns_name[..usize::from(e.dns_name_len)])
        .collect();
    assert_eq!(
        names,
        [&b"exfil.attacker.example"[..], b"c2VjcmV0.Attacker.example"]
    );
}
