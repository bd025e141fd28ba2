//! The egress program itself, run on crafted packets with BPF_PROG_TEST_RUN:
//! real verifier, real maps, real helper calls, no attachment needed.
//! Needs root (CAP_BPF + CAP_NET_ADMIN), like every kernel test here.

mod common;

use std::time::Duration;

use common::*;
use openclaw_egress::{
    clock,
    datapath::{Hooks, PolicyDatapath, StaticEntries, encode, frames},
    policy::Mode,
};
use openclaw_egress_common::{Direction, DropReason, Verdict, maps::counter_index, proto};
use std::net::{IpAddr, Ipv6Addr};

#[test]
fn allowed_destination_passes_and_nothing_else_does() {
    let loaded = load_enforcing();
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 40000, TRUSTED, 443)),
        PASS
    );
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT6, 40000, TRUSTED6, 443)),
        PASS
    );
    // Same address, another port; UDP to the TCP port; unlisted addresses.
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 40000, TRUSTED, 80)),
        DROP
    );
    assert_eq!(
        loaded.run(&frames::udp(AGENT, 40000, TRUSTED, 443, b"x")),
        DROP
    );
    assert_eq!(loaded.run(&frames::tcp_syn(AGENT, 40000, OTHER, 443)), DROP);
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT6, 40000, OTHER6, 443)),
        DROP
    );
    assert_eq!(loaded.dropped(DropReason::NoRule), 4);
}

#[test]
fn expired_resolution_no_longer_allows() {
    let loaded = load(&policy(Mode::Enforce), clock::monotonic_ns() - 1);
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 40000, TRUSTED, 443)),
        DROP
    );
    assert_eq!(loaded.dropped(DropReason::Expired), 1);
    assert_eq!(loaded.dropped(DropReason::NoRule), 0);
}

#[test]
fn cidr_rules_match_by_prefix_and_exact_port() {
    let loaded = load_enforcing();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.100.77"), 5432)),
        PASS
    );
    // The /16 rule's port still works inside the more specific /24.
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.100.77"), 8080)),
        PASS
    );
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.7.7"), 8080)),
        PASS
    );
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.7.7"), 5432)),
        DROP
    );
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.52.100.77"), 5432)),
        DROP
    );
    assert_eq!(
        loaded.run(&frames::udp(AGENT, 1, ip("198.51.100.77"), 5432, b"x")),
        DROP
    );
    assert_eq!(loaded.dropped(DropReason::NoRule), 3);
}

#[test]
fn dns_only_reaches_the_listed_resolvers() {
    let loaded = load_enforcing();
    let query = frames::dns::query(1, "api.trusted.test", frames::dns::TYPE_A);
    assert_eq!(
        loaded.run(&frames::udp(AGENT, 5353, RESOLVER, 53, &query)),
        PASS
    );
    // (TCP to the resolver is followed per stream: see dns_programs.rs.)
    // An allowed destination is still not a DNS server.
    assert_eq!(
        loaded.run(&frames::udp(AGENT, 5353, TRUSTED, 53, &query)),
        DROP
    );
    assert_eq!(
        loaded.run(&frames::udp(AGENT, 5353, OTHER, 53, &query)),
        DROP
    );
    assert_eq!(loaded.dropped(DropReason::DnsResolver), 2);
}

#[test]
fn other_protocols_fragments_and_garbage_are_dropped() {
    let loaded = load_enforcing();
    let icmp_echo = frames::ip_frame(AGENT, TRUSTED, proto::ICMP, &[8, 0, 0, 0, 0, 1, 0, 1]);
    assert_eq!(loaded.run(&icmp_echo), DROP);
    assert_eq!(loaded.dropped(DropReason::Protocol), 1);

    let mut fragment = frames::tcp_syn(AGENT, 40000, TRUSTED, 443);
    fragment[14 + 6] = 0x00;
    fragment[14 + 7] = 0x10; // fragment offset 16 * 8 bytes
    assert_eq!(loaded.run(&fragment), DROP);
    assert_eq!(loaded.dropped(DropReason::Fragment), 1);

    // A TCP header cut short: no ports to check.
    let mut truncated = frames::tcp_syn(AGENT, 40000, TRUSTED, 443);
    truncated.truncate(14 + 20 + 2);
    assert_eq!(loaded.run(&truncated), DROP);
    // An IPv4 header claiming a length below the minimum.
    let mut bad_ihl = frames::tcp_syn(AGENT, 40000, TRUSTED, 443);
    bad_ihl[14] = 0x44;
    assert_eq!(loaded.run(&bad_ihl), DROP);
    assert_eq!(loaded.dropped(DropReason::Malformed), 2);
}

/// `frame` (Ethernet + IPv4 without options) with `options` inserted after
/// the IPv4 header, the header length and total length adjusted.
fn with_ipv4_options(frame: &[u8], options: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let mut out = frame[..14 + 20].to_vec();
    out.extend_from_slice(options);
    out.extend_from_slice(&frame[14 + 20..]);
    out[14] = 0x40 | u8::try_from((20 + options.len()) / 4).unwrap();
    let total = u16::try_from(out.len() - 14).unwrap();
    out[16..18].copy_from_slice(&total.to_be_bytes());
    out
}

/// An IPv6 frame whose first extension header is a routing header (type 0,
/// one address) before `transport` of protocol `next`.
fn with_routing_header(
    src: IpAddr,
    dst: IpAddr,
    next: u8,
    via: Ipv6Addr,
    transport: &[u8],
) -> Vec<u8> {
    let mut routing = vec![next, 2, 0, 1, 0, 0, 0, 0];
    routing.extend_from_slice(&via.octets());
    routing.extend_from_slice(transport);
    let mut frame = frames::ip_frame(src, dst, 43, &routing);
    // ip_frame wrote 43 as the next header; the payload length covers both.
    frame[14 + 6] = 43;
    frame
}

#[test]
fn ip_options_and_routing_headers_are_dropped() {
    let loaded = load_enforcing();
    // Loose source route through the allowed address to another one: the
    // header names an allowed hop, the option the real destination.
    let mut lsrr = vec![0x83, 7, 4];
    lsrr.extend_from_slice(&[203, 0, 113, 99]);
    lsrr.push(0); // end of options, padding to 8 bytes
    let allowed = frames::tcp_syn(AGENT, 40000, TRUSTED, 443);
    assert_eq!(loaded.run(&with_ipv4_options(&allowed, &lsrr)), DROP);
    // Any option, not only routes: a NOP-padded timestamp request.
    let timestamp = [0x44, 4, 5, 0];
    assert_eq!(loaded.run(&with_ipv4_options(&allowed, &timestamp)), DROP);
    // IPv6: a routing header in front of a SYN to an allowed address.
    let mut syn = vec![0u8; 20];
    syn[0..2].copy_from_slice(&40000u16.to_be_bytes());
    syn[2..4].copy_from_slice(&443u16.to_be_bytes());
    syn[12] = 5 << 4;
    syn[13] = 0x02;
    let via: Ipv6Addr = "2001:db8:99::99".parse().unwrap();
    let routed = with_routing_header(AGENT6, TRUSTED6, proto::TCP, via, &syn);
    assert_eq!(loaded.run(&routed), DROP);
    assert_eq!(loaded.dropped(DropReason::IpOptions), 3);
    // The TC program drops the same packets.
    let tc = load_with(
        &policy(Mode::Enforce),
        Hooks::INTERFACES,
        clock::monotonic_ns_after(Duration::from_secs(600)),
    );
    assert_eq!(tc.run_tc(&with_ipv4_options(&allowed, &lsrr)), TC_SHOT);
    assert_eq!(tc.run_tc(&routed), TC_SHOT);
    assert_eq!(tc.dropped(DropReason::IpOptions), 2);
    // Without them, the same packets pass.
    assert_eq!(loaded.run(&allowed), PASS);
}

#[test]
fn a_policy_not_marked_ready_drops_everything() {
    let mut datapath = PolicyDatapath::load(Hooks::CGROUP).unwrap();
    let policy = policy(Mode::Enforce);
    let mut entries: StaticEntries = encode::static_entries(&policy).unwrap();
    entries.config.ready = 0;
    datapath.install_static(&entries).unwrap();
    let query = frames::dns::query(1, "api.trusted.test", frames::dns::TYPE_A);
    let frame = frames::udp(AGENT, 5353, RESOLVER, 53, &query);
    assert_eq!(
        datapath.test_run_egress(&frame, 1).unwrap().return_value,
        DROP
    );
    let index = counter_index(Verdict::Dropped, Direction::Egress, DropReason::NotReady);
    assert_eq!(datapath.drop_counts().unwrap()[index as usize], 1);
}

#[test]
fn audit_mode_passes_but_counts() {
    let loaded = load(
        &policy(Mode::Audit),
        clock::monotonic_ns_after(Duration::from_secs(600)),
    );
    assert_eq!(loaded.run(&frames::tcp_syn(AGENT, 40000, OTHER, 443)), PASS);
    assert_eq!(loaded.count(Verdict::Audited, DropReason::NoRule), 1);
    assert_eq!(loaded.count(Verdict::Dropped, DropReason::NoRule), 0);
}

#[test]
fn each_drop_reports_its_five_tuple() {
    let mut loaded = load_enforcing();
    loaded.run(&frames::tcp_syn(AGENT, 40001, OTHER, 443));
    loaded.run(&frames::udp(AGENT6, 40002, OTHER6, 8443, b"x"));
    let events = loaded.events();
    assert_eq!(events.len(), 2);
    let v4 = &events[0];
    assert_eq!(
        (
            v4.family,
            v4.proto,
            v4.src_port,
            v4.dst_port,
            v4.reason,
            v4.direction,
            v4.verdict
        ),
        (4, proto::TCP, 40001, 443, DropReason::NoRule as u8, 0, 0)
    );
    assert_eq!(v4.src_addr, encode::addr_of(AGENT));
    assert_eq!(v4.dst_addr, encode::addr_of(OTHER));
    assert_eq!(v4.dns_name_len, 0);
    let v6 = &events[1];
    assert_eq!(
        (v6.family, v6.proto, v6.src_port, v6.dst_port),
        (6, proto::UDP, 40002, 8443)
    );
    assert_eq!(v6.src_addr, encode::addr_of(AGENT6));
    assert_eq!(v6.dst_addr, encode::addr_of(OTHER6));
    let now = clock::monotonic_ns();
    assert!(v4.timestamp_ns <= now && now - v4.timestamp_ns < 60_000_000_000);
}

#[test]
fn tc_classifier_enforces_the_same_policy_on_ethernet_frames() {
    let loaded = load_with(
        &common::policy(Mode::Enforce),
        Hooks::INTERFACES,
        clock::monotonic_ns_after(Duration::from_secs(600)),
    );
    let run = |frame: &[u8]| loaded.run_tc(frame);

    assert_eq!(run(&frames::tcp_syn(AGENT, 1, TRUSTED, 443)), TC_NEXT);
    assert_eq!(run(&frames::tcp_syn(AGENT, 1, TRUSTED, 80)), TC_SHOT);
    assert_eq!(run(&frames::tcp_syn(AGENT6, 1, OTHER6, 443)), TC_SHOT);
    let query = frames::dns::query(1, "api.trusted.test", frames::dns::TYPE_A);
    assert_eq!(run(&frames::udp(AGENT, 1, RESOLVER, 53, &query)), TC_NEXT);
    let denied = frames::dns::query(1, "exfil.attacker.example", frames::dns::TYPE_A);
    assert_eq!(run(&frames::udp(AGENT, 1, RESOLVER, 53, &denied)), TC_SHOT);

    // Link-local plumbing passes: ARP, and IPv6 neighbour solicitations...
    let mut arp = frames::udp(AGENT, 1, RESOLVER, 2, b"");
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(run(&arp), TC_NEXT);
    let solicitation = frames::ip_frame(AGENT6, OTHER6, proto::ICMPV6, &[135, 0, 0, 0]);
    assert_eq!(run(&solicitation), TC_NEXT);
    // ...but not other ICMPv6 (an echo request), nor frames we cannot judge.
    let echo = frames::ip_frame(AGENT6, OTHER6, proto::ICMPV6, &[128, 0, 0, 0]);
    assert_eq!(run(&echo), TC_SHOT);
    let mut vlan = frames::tcp_syn(AGENT, 1, TRUSTED, 443);
    vlan[12..14].copy_from_slice(&[0x81, 0x00]);
    assert_eq!(run(&vlan), TC_SHOT);

    assert_eq!(loaded.dropped(DropReason::NoRule), 2);
    assert_eq!(loaded.dropped(DropReason::DnsDenied), 1);
    assert_eq!(loaded.dropped(DropReason::Protocol), 2);
}

#[test]
fn tc_flows_allowed_once_survive_the_expiry_of_their_address() {
    let policy = common::policy(Mode::Enforce);
    let mut loaded = load_with(
        &policy,
        Hooks::INTERFACES,
        clock::monotonic_ns_after(Duration::from_secs(600)),
    );
    let live = frames::tcp_syn(AGENT, 40000, TRUSTED, 443);
    assert_eq!(loaded.run_tc(&live), TC_NEXT);
    // The address expires: the live flow goes on, a new one is refused.
    loaded.set_rule0_expiry(&policy, clock::monotonic_ns() - 1);
    assert_eq!(loaded.run_tc(&live), TC_NEXT);
    assert_eq!(
        loaded.run_tc(&frames::tcp_syn(AGENT, 40001, TRUSTED, 443)),
        TC_SHOT
    );
    assert_eq!(loaded.dropped(DropReason::Expired), 1);
}

#[test]
fn audit_mode_reports_a_flow_once_not_every_packet() {
    let loaded = load_with(&common::policy(Mode::Audit), Hooks::INTERFACES, 0);
    let flow = frames::tcp_syn(AGENT, 40000, OTHER, 443);
    for _ in 0..5 {
        assert_eq!(loaded.run_tc(&flow), TC_NEXT);
    }
    // Another flow is its own report; DNS queries are reported each time.
    loaded.run_tc(&frames::tcp_syn(AGENT, 40001, OTHER, 443));
    let denied = frames::dns::query(1, "exfil.attacker.example", frames::dns::TYPE_A);
    for _ in 0..2 {
        loaded.run_tc(&frames::udp(AGENT, 5353, RESOLVER, 53, &denied));
    }
    assert_eq!(loaded.count(Verdict::Audited, DropReason::NoRule), 2);
    assert_eq!(loaded.count(Verdict::Audited, DropReason::DnsDenied), 2);
}
