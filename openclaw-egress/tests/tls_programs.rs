//! The TLS check on the real programs (BPF_PROG_TEST_RUN): the first bytes
//! of a connection a name rule admits on a TLS port must be a ClientHello
//! naming a server the policy allows there. Mostly through the TC program,
//! which keeps each connection's parser state across test runs (the
//! cgroup hook keeps it on the socket, and every test run has a fresh dummy
//! socket, so it is tested with whole ClientHellos).

mod common;

use std::net::IpAddr;

use common::{stream::*, *};
use openclaw_egress::{
    datapath::{Hooks, frames, frames::tls::ClientHello},
    policy::{Ech, Mode, Policy, WildcardDepth},
};
use openclaw_egress_common::DropReason;

/// rule 0: api.trusted.test 443/tcp (TLS checked: the default), resolved
/// to TRUSTED; rule 1: 198.51.100.0/24 5432/tcp.
fn tls_policy() -> Policy {
    policy_with(
        Mode::Enforce,
        vec![
            fqdn("api.trusted.test", vec![tcp(443)]),
            cidr("198.51.100.0", 24, vec![tcp(5432)]),
        ],
    )
}

fn tc(policy: &Policy) -> Loaded {
    load_with(policy, Hooks::INTERFACES, in_ten_minutes())
}

#[test]
fn the_allowed_server_name_passes_and_others_on_the_same_address_do_not() {
    let mut loaded = tc(&tls_policy());
    let allowed = ClientHello::to("api.trusted.test").bytes();
    assert_eq!(judge(&loaded, 1000, &allowed, &[]), Ok(()));
    let other = ClientHello::to("evil.test").bytes();
    assert_eq!(
        judge(&loaded, 1001, &other, &[]),
        Err(DropReason::SniDenied)
    );
    // The event names the server asked for.
    let event = loaded
        .events()
        .into_iter()
        .find(|e| e.reason == DropReason::SniDenied as u8)
        .expect("an sni_denied event");
    let name = &event.dns_name[..usize::from(event.dns_name_len)];
    assert_eq!(name, b"evil.test");
    assert_eq!(event.src_port, 1001);
}

#[test]
fn names_match_without_case_and_with_a_trailing_dot() {
    let loaded = tc(&tls_policy());
    for (port, name) in [(1000, "API.Trusted.TEST"), (1001, "api.trusted.test.")] {
        let hello = ClientHello::to(name).bytes();
        assert_eq!(judge(&loaded, port, &hello, &[]), Ok(()), "{name}");
    }
    for (port, name) in [
        (1002, "api.trusted.test.evil"),
        (1003, "xapi.trusted.test"),
        (1004, "trusted.test"),
        (1005, "api.trusted.test.."),
        // A server name is no Host header: no port after it.
        (1006, "api.trusted.test:443"),
        (1007, ".api.trusted.test"),
    ] {
        let hello = ClientHello::to(name).bytes();
        assert!(judge(&loaded, port, &hello, &[]).is_err(), "{name}");
    }
}

#[test]
fn a_hello_without_a_name_or_bytes_that_are_no_hello_are_refused() {
    let loaded = tc(&tls_policy());
    let anonymous = ClientHello::default().bytes();
    assert_eq!(
        judge(&loaded, 1000, &anonymous, &[]),
        Err(DropReason::SniMissing)
    );
    let http = frames::tls::http_request("api.trusted.test", "/");
    assert_eq!(
        judge(&loaded, 1001, &http, &[]),
        Err(DropReason::TlsMalformed)
    );
    assert_eq!(
        judge(&loaded, 1002, &[0u8; 600], &[]),
        Err(DropReason::TlsMalformed)
    );
}

#[test]
fn a_hello_split_anywhere_in_two_segments_is_judged_whole() {
    let loaded = tc(&tls_policy());
    for server_name_last in [false, true] {
        let allowed = ClientHello {
            server_name_last,
            ..ClientHello::to("api.trusted.test")
        }
        .bytes();
        let denied = ClientHello {
            server_name_last,
            ..ClientHello::to("evil.test")
        }
        .bytes();
        assert_eq!(allowed.len(), denied.len() + 7);
        let mut port = if server_name_last { 3000 } else { 2000 };
        for cut in (1..denied.len()).step_by(7) {
            port += 1;
            assert_eq!(
                judge(&loaded, port, &allowed, &[cut]),
                Ok(()),
                "allowed, cut at {cut} (name last: {server_name_last})"
            );
            port += 1;
            assert_eq!(
                judge(&loaded, port, &denied, &[cut]),
                Err(DropReason::SniDenied),
                "denied, cut at {cut} (name last: {server_name_last})"
            );
        }
    }
}

#[test]
fn a_hello_padded_past_one_segment_in_many_writes_is_judged_whole() {
    let loaded = tc(&tls_policy());
    let padded = |name: &str| {
        ClientHello {
            padding: 3000,
            server_name_last: true,
            ..ClientHello::to(name)
        }
        .bytes()
    };
    let allowed = padded("api.trusted.test");
    assert!(allowed.len() > 4000);
    let cuts: Vec<usize> = (1..allowed.len()).step_by(1400).collect();
    assert_eq!(judge(&loaded, 1000, &allowed, &cuts), Ok(()));
    let denied = padded("evil.test");
    assert_eq!(
        judge(&loaded, 1001, &denied, &cuts),
        Err(DropReason::SniDenied)
    );
    // Written a few bytes at a time.
    let small: Vec<usize> = (1..allowed.len()).step_by(97).collect();
    assert_eq!(judge(&loaded, 1002, &allowed, &small), Ok(()));
}

#[test]
fn a_hello_in_many_records_or_with_a_record_header_split_off_is_judged_whole() {
    let loaded = tc(&tls_policy());
    let hello = ClientHello::to("api.trusted.test");
    // One-byte records, the whole handshake.
    // (in segments: a test run takes at most a page)
    let tiny = hello.in_records(&vec![1; hello.handshake().len()]);
    let segments: Vec<usize> = (1200..tiny.len()).step_by(1200).collect();
    assert_eq!(judge(&loaded, 1000, &tiny, &segments), Ok(()));
    // The header of the second record in one segment, its body in the next.
    let two = hello.in_records(&[100]);
    assert_eq!(judge(&loaded, 1001, &two, &[105, 108, 110]), Ok(()));
    let denied = ClientHello::to("evil.test").in_records(&[3, 50]);
    assert_eq!(
        judge(&loaded, 1002, &denied, &[4, 9, 60]),
        Err(DropReason::SniDenied)
    );
}

#[test]
fn gaps_are_refused_and_retransmissions_are_not() {
    let loaded = tc(&tls_policy());
    let hello = ClientHello::to("api.trusted.test").bytes();
    // A retransmission of the first part, then the rest.
    let mut connection = Connection::open(&loaded, 1000, TRUSTED, 443);
    assert_eq!(connection.send(&hello[..500]), TC_NEXT);
    assert_eq!(connection.send_at(1, &hello[..500]), TC_NEXT);
    assert_eq!(connection.send_at(1, &hello[..300]), TC_NEXT);
    assert_eq!(connection.send(&hello[500..]), TC_NEXT);
    assert_eq!(connection.send(b"application data"), TC_NEXT);

    // A segment beyond the next byte: the bytes between were never seen.
    let mut gap = Connection::open(&loaded, 1001, TRUSTED, 443);
    assert_eq!(gap.send(&hello[..500]), TC_NEXT);
    let verdict = gap.send_at(1 + 600, &hello[600..]);
    assert_eq!(verdict_name(verdict), REFUSED);
    assert_eq!(loaded.dropped(DropReason::TlsMalformed), 1);
    // Refused once: its retransmissions are not counted again.
    gap.send_at(1 + 600, &hello[600..]);
    assert_eq!(loaded.dropped(DropReason::TlsMalformed), 1);
}

#[test]
fn more_than_sixteen_kilobytes_before_the_name_is_refused() {
    let loaded = tc(&tls_policy());
    let huge = ClientHello {
        padding: 17_000,
        server_name_last: true,
        ..ClientHello::to("api.trusted.test")
    }
    .bytes();
    let cuts: Vec<usize> = (1..huge.len()).step_by(1400).collect();
    assert_eq!(
        judge(&loaded, 1000, &huge, &cuts),
        Err(DropReason::TlsMalformed)
    );
}

#[test]
fn patterns_match_as_in_dns() {
    let policy = policy_with(
        Mode::Enforce,
        vec![
            fqdn("api.trusted.test", vec![tcp(443)]),
            pattern(WildcardDepth::OneLabel, "one.test", vec![tcp(443)]),
            pattern(WildcardDepth::AnyDepth, "any.test", vec![tcp(443)]),
        ],
    );
    let loaded = tc(&policy);
    let mut port = 1000;
    let mut judge_name = |name: &str| {
        port += 1;
        judge(&loaded, port, &ClientHello::to(name).bytes(), &[])
    };
    assert_eq!(judge_name("a.one.test"), Ok(()));
    assert!(judge_name("a.b.one.test").is_err());
    assert!(judge_name("one.test").is_err());
    assert_eq!(judge_name("a.any.test"), Ok(()));
    assert_eq!(judge_name("a.b.c.any.test"), Ok(()));
    assert!(judge_name("any.test").is_err());
}

#[test]
fn ech_is_refused_where_the_rule_says_so() {
    let mut policy = tls_policy();
    policy.egress[0].inspection.ech = Ech::Deny;
    let loaded = tc(&policy);
    let plain = ClientHello::to("api.trusted.test").bytes();
    assert_eq!(judge(&loaded, 1000, &plain, &[]), Ok(()));
    let ech = ClientHello {
        ech: true,
        ..ClientHello::to("api.trusted.test")
    }
    .bytes();
    assert_eq!(judge(&loaded, 1001, &ech, &[]), Err(DropReason::EchDenied));
    // Without `ech: deny`, the outer name is what is checked.
    let lenient = tc(&tls_policy());
    assert_eq!(judge(&lenient, 1002, &ech, &[]), Ok(()));
}

#[test]
fn connections_admitted_by_a_cidr_rule_are_not_inspected() {
    let loaded = tc(&tls_policy());
    let db: IpAddr = "198.51.100.9".parse().unwrap();
    let mut connection = Connection::open(&loaded, 1000, db, 5432);
    assert_eq!(connection.send(&[0u8; 64]), TC_NEXT);
    assert_eq!(connection.send(b"anything at all"), TC_NEXT);
}

#[test]
fn the_cgroup_hook_checks_a_whole_hello_too() {
    let loaded = load_with(&tls_policy(), Hooks::CGROUP, in_ten_minutes());
    let segment = |name: &str, port: u16| {
        frames::tcp_data(AGENT, port, TRUSTED, 443, &ClientHello::to(name).bytes())
    };
    assert_eq!(loaded.run(&segment("api.trusted.test", 1000)), PASS);
    assert_eq!(loaded.run(&segment("evil.test", 1001)), DROP);
    assert_eq!(loaded.dropped(DropReason::SniDenied), 1);
}

/// A ClientHello with `edit` applied to its bytes (one record).
fn edited(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = ClientHello {
        key_share: 32,
        ..ClientHello::to("api.trusted.test")
    }
    .bytes();
    edit(&mut bytes);
    bytes
}

/// Where the server name extension starts in an [`edited`] hello (SNI is
/// the first extension).
fn sni_extension_at(bytes: &[u8]) -> usize {
    // record (5) + handshake header (4) + version (2) + random (32)
    let mut at = 5 + 4 + 2 + 32;
    at += 1 + usize::from(bytes[at]);
    at += 2 + usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
    at += 1 + usize::from(bytes[at]);
    at + 2
}

#[test]
fn hostile_hellos_never_open_the_gate() {
    let loaded = tc(&tls_policy());
    let set_u16 = |bytes: &mut Vec<u8>, at: usize, value: u16| {
        bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a record longer than what follows",
            edited(|b| set_u16(b, 3, 0xffff)),
        ),
        ("a record of length 0", edited(|b| set_u16(b, 3, 0))),
        ("a record not of handshakes", edited(|b| b[0] = 23)),
        ("a handshake not a ClientHello", edited(|b| b[5] = 2)),
        (
            "a handshake longer than the record",
            edited(|b| b[6] = 0x7f),
        ),
        (
            "a session id longer than the hello",
            edited(|b| b[5 + 4 + 34] = 0xff),
        ),
        (
            "extensions longer than the hello",
            edited(|b| {
                let at = sni_extension_at(b) - 2;
                set_u16(b, at, 0xfff0);
            }),
        ),
        (
            "a name list longer than its extension",
            edited(|b| {
                let at = sni_extension_at(b) + 4;
                set_u16(b, at, 0x0fff);
            }),
        ),
        (
            "a name longer than its list",
            edited(|b| {
                let at = sni_extension_at(b) + 7;
                set_u16(b, at, 0x00ff);
            }),
        ),
        (
            "a name of length 0",
            edited(|b| {
                let at = sni_extension_at(b) + 7;
                set_u16(b, at, 0);
            }),
        ),
        (
            "a name with a NUL byte",
            edited(|b| {
                let at = sni_extension_at(b) + 9 + 3;
                b[at] = 0;
            }),
        ),
        (
            "a name with a byte above ASCII",
            edited(|b| {
                let at = sni_extension_at(b) + 9 + 3;
                b[at] = 0xc3;
            }),
        ),
        (
            "a name of another type than host_name",
            edited(|b| {
                let at = sni_extension_at(b) + 6;
                b[at] = 1;
            }),
        ),
        (
            "cut in the middle of the name",
            edited(|b| b.truncate(sni_extension_at(b) + 12)),
        ),
        ("the header alone", edited(|b| b.truncate(5))),
    ];
    let mut port = 3000;
    for (what, bytes) in &cases {
        port += 1;
        let verdict = judge(&loaded, port, bytes, &[]);
        // (A hello cut short is not refused yet: it waits for the rest,
        // which never comes; what matters is that nothing was allowed.)
        let allowed_for_good = verdict.is_ok() && {
            port += 1;
            let mut connection = Connection::open(&loaded, port, TRUSTED, 443);
            connection.send(bytes);
            // Data that is not the rest of a hello must not pass either.
            connection.send(&[0x17; 64]) == TC_NEXT && connection.send(&[0x17; 64]) == TC_NEXT
        };
        assert!(!allowed_for_good, "{what}: the connection went through");
    }
    // A long name: 300 bytes.
    let long = ClientHello::to(&format!("{}.trusted.test", "a".repeat(290))).bytes();
    assert!(judge(&loaded, 4000, &long, &[]).is_err());
    // Thousands of empty extensions before the name.
    let many = ClientHello {
        server_name_last: true,
        ..ClientHello::to("api.trusted.test")
    };
    let mut handshake = many.handshake();
    let extensions_at = 4 + 2 + 32 + 1 + 32 + 2 + 6 + 2;
    let extra: Vec<u8> = std::iter::repeat_n([0xfa, 0xfa, 0, 0], 3000)
        .flatten()
        .collect();
    handshake.splice(extensions_at + 2..extensions_at + 2, extra.iter().copied());
    let ext_len = u16::from_be_bytes([handshake[extensions_at], handshake[extensions_at + 1]]);
    handshake[extensions_at..extensions_at + 2]
        .copy_from_slice(&(ext_len + extra.len() as u16).to_be_bytes());
    let body_len = handshake.len() - 4;
    handshake[1..4].copy_from_slice(&(body_len as u32).to_be_bytes()[1..]);
    let stream = frames::tls::records(&handshake, &[16_384]);
    let cuts: Vec<usize> = (1..stream.len()).step_by(1400).collect();
    let verdict = judge(&loaded, 4001, &stream, &cuts);
    // Allowed (it is a valid hello) or refused for its size; never stuck open.
    assert!(
        verdict.is_ok() || verdict == Err(DropReason::TlsMalformed),
        "{verdict:?}"
    );
}
