//! A DNS query carries one question and nothing else: no bytes after it, no
//! records but one small, well-formed EDNS0 OPT, no second datagram hidden in
//! a GSO packet, no length field that disagrees with the packet. Each of
//! these is a way to carry data to an allowed resolver behind an allowed
//! question. Run on crafted packets with BPF_PROG_TEST_RUN; needs root.

mod common;

use std::time::Duration;

use common::*;
use openclaw_egress::{
    clock,
    datapath::{
        Hooks,
        frames::{
            self,
            dns::{self, TYPE_A},
        },
    },
    policy::Mode,
};
use openclaw_egress_common::DropReason;

fn loaded() -> Loaded {
    let policy = policy_with(Mode::Enforce, vec![fqdn("api.github.com", vec![tcp(443)])]);
    load(&policy, clock::monotonic_ns_after(Duration::from_secs(600)))
}

fn query() -> Vec<u8> {
    dns::query(7, "api.github.com", TYPE_A)
}

/// `query()` with one additional record: an OPT with `ttl` and `options`.
fn with_opt(ttl: u32, options: &[u8]) -> Vec<u8> {
    let mut message = query();
    message[11] = 1;
    message.extend_from_slice(&[0, 0, 41, 0x04, 0xd0]);
    message.extend_from_slice(&ttl.to_be_bytes());
    message.extend_from_slice(&u16::try_from(options.len()).unwrap().to_be_bytes());
    message.extend_from_slice(options);
    message
}

/// One EDNS option: code, length, data.
fn option(code: u16, data: &[u8]) -> Vec<u8> {
    let mut option = code.to_be_bytes().to_vec();
    option.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
    option.extend_from_slice(data);
    option
}

const COOKIE: u16 = 10;
const DO_BIT: u32 = 0x8000;

fn udp(message: &[u8]) -> Vec<u8> {
    frames::udp(AGENT, 5353, RESOLVER, 53, message)
}

#[test]
fn a_query_with_a_small_opt_record_passes() {
    let loaded = loaded();
    for (what, message) in [
        ("no OPT", query()),
        ("empty OPT", with_opt(0, &[])),
        ("OPT with DO", with_opt(DO_BIT, &[])),
        ("client cookie", with_opt(0, &option(COOKIE, &[0xab; 8]))),
        (
            "client and server cookie",
            with_opt(DO_BIT, &option(COOKIE, &[0xab; 40])),
        ),
    ] {
        assert_eq!(loaded.run(&udp(&message)), PASS, "{what}");
    }
}

#[test]
fn a_query_carries_nothing_but_its_question() {
    let loaded = loaded();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "bytes after the question",
            [query(), b"exfil".to_vec()].concat(),
        ),
        (
            "an OPT with a large option",
            with_opt(0, &option(COOKIE, &[0x41; 200])),
        ),
        (
            "an OPT with 48 bytes of options",
            with_opt(0, &option(COOKIE, &[0x41; 44])),
        ),
        (
            "bytes after a valid OPT",
            [with_opt(0, &[]), b"exfil".to_vec()].concat(),
        ),
        (
            "an option longer than the OPT",
            with_opt(0, &[&option(COOKIE, &[1; 8])[..6], &[0; 2]].concat()),
        ),
        ("OPT with version 1", with_opt(0x0001_0000, &[])),
        ("OPT with other flags", with_opt(0x0000_4000, &[])),
    ];
    // An additional record that is not an OPT: a TXT record of data.
    let mut txt = query();
    txt[11] = 1;
    txt.extend_from_slice(b"\x04data\0\x00\x10\x00\x01\x00\x00\x00\x00\x00\x05exfil");
    cases.push(("a TXT additional record", txt));
    // An OPT whose owner is not the root.
    let mut owned = with_opt(0, &[]);
    let opt_start = query().len();
    owned[opt_start] = 1;
    cases.push(("an OPT with an owner name", owned));
    // Two OPT records.
    let mut two = with_opt(0, &[]);
    two[11] = 2;
    let opt = two[opt_start..].to_vec();
    two.extend_from_slice(&opt);
    cases.push(("two OPT records", two));
    // Class CHAOS instead of IN.
    let mut chaos = query();
    let class_at = chaos.len() - 1;
    chaos[class_at] = 3;
    cases.push(("class CH", chaos));

    for (what, message) in &cases {
        assert_eq!(loaded.run(&udp(message)), DROP, "{what} must be dropped");
    }
    assert_eq!(loaded.dropped(DropReason::DnsMalformed), cases.len() as u64);
}

#[test]
fn length_fields_must_describe_the_packet_exactly() {
    let loaded = loaded();
    let frame = udp(&query());
    // Ethernet (14) + IPv4 (20): the UDP length is at 38..40, the IP total
    // length at 16..18.
    let mut short_udp = frame.clone();
    short_udp[38..40].copy_from_slice(&(8 + 12u16).to_be_bytes());
    let mut long_udp = frame.clone();
    let too_long = u16::from_be_bytes([frame[38], frame[39]]) + 5;
    long_udp[38..40].copy_from_slice(&too_long.to_be_bytes());
    let mut short_ip = frame.clone();
    let ip_len = u16::from_be_bytes([frame[16], frame[17]]) - 5;
    short_ip[16..18].copy_from_slice(&ip_len.to_be_bytes());
    for (what, frame) in [
        ("UDP length shorter than the datagram", short_udp),
        ("UDP length longer than the datagram", long_udp),
        ("IP total length shorter than the packet", short_ip),
    ] {
        assert_eq!(loaded.run(&frame), DROP, "{what} must be dropped");
    }
    assert_eq!(loaded.dropped(DropReason::DnsMalformed), 3);
    assert_eq!(loaded.run(&frame), PASS, "the untouched frame passes");
}

/// A `struct __sk_buff` for BPF_PROG_TEST_RUN with `gso_size` set: the
/// packet is a GSO super-packet that the stack will cut into datagrams of
/// that size after the hook.
fn gso_context(gso_size: u32) -> Vec<u8> {
    const SK_BUFF_LEN: usize = 192;
    const GSO_SEGS: usize = 164;
    const GSO_SIZE: usize = 176;
    let mut context = vec![0u8; SK_BUFF_LEN];
    context[GSO_SEGS..GSO_SEGS + 4].copy_from_slice(&2u32.to_ne_bytes());
    context[GSO_SIZE..GSO_SIZE + 4].copy_from_slice(&gso_size.to_ne_bytes());
    context
}

#[test]
fn udp_gso_sends_to_port_53_are_refused() {
    let loaded = loaded();
    // One sendmsg with UDP_SEGMENT: an allowed query, then a second
    // datagram asking a denied name. The hook sees one packet whose first
    // datagram looks fine.
    let first = query();
    let second = dns::query(8, "exfil.attacker.example", TYPE_A);
    let mut payload = first.clone();
    payload.resize(64, 0);
    payload.extend_from_slice(&second);
    let frame = frames::udp(AGENT, 5353, RESOLVER, 53, &payload);
    let verdict = loaded
        .datapath
        .test_run_egress_with_context(&frame, &gso_context(64))
        .unwrap()
        .return_value;
    assert_eq!(verdict, DROP);
    // Even a GSO packet holding a single valid query: it is refused by
    // kind, not by what the parser happens to see.
    let single = loaded
        .datapath
        .test_run_egress_with_context(&udp(&query()), &gso_context(512))
        .unwrap()
        .return_value;
    assert_eq!(single, DROP);
    assert_eq!(loaded.dropped(DropReason::DnsMalformed), 2);
    // Without GSO the same single query passes.
    let plain = loaded
        .datapath
        .test_run_egress_with_context(&udp(&query()), &gso_context(0))
        .unwrap()
        .return_value;
    assert_eq!(plain, PASS);
}

#[test]
fn tcp_messages_are_checked_whole_with_nothing_trailing() {
    // On the TC program, which follows each TCP stream (the cgroup one
    // refuses BPF_PROG_TEST_RUN's dummy socket as not a TCP socket).
    let policy = policy_with(Mode::Enforce, vec![fqdn("api.github.com", vec![tcp(443)])]);
    let loaded = load_with(
        &policy,
        Hooks::INTERFACES,
        clock::monotonic_ns_after(Duration::from_secs(600)),
    );
    let trailing = dns::tcp_framed(&[query(), b"exfil".to_vec()].concat());
    assert_eq!(loaded.tcp_dns_tc(4000, &trailing), TC_SHOT);
    let big_opt = dns::tcp_framed(&with_opt(0, &option(COOKIE, &[0x41; 200])));
    assert_eq!(loaded.tcp_dns_tc(4001, &big_opt), TC_SHOT);
    assert_eq!(loaded.dropped(DropReason::DnsMalformed), 2);
    let cookie = dns::tcp_framed(&with_opt(DO_BIT, &option(COOKIE, &[1; 8])));
    assert_eq!(loaded.tcp_dns_tc(4002, &cookie), TC_NEXT);
}
