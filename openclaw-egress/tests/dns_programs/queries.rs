//! Query filtering on egress, over UDP and TCP, malformed queries and audit mode.

use std::time::Duration;

use openclaw_egress::{
    clock,
    datapath::Hooks,
    datapath::frames::{
        self,
        dns::{self, TYPE_A, TYPE_AAAA},
    },
    policy::Mode,
};
use openclaw_egress_common::{DropReason, Verdict, dns::DnsStat, proto};

use super::{common::*, dns_policy, loaded, loaded_with_hooks, udp_query, udp_query_wire};

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
