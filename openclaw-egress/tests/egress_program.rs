//! The egress program itself, run on crafted packets with BPF_PROG_TEST_RUN:
//! real verifier, real maps, real helper calls, no attachment needed.
//! Needs root (CAP_BPF + CAP_NET_ADMIN), like every kernel test here.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use openclaw_egress::{
    clock,
    datapath::{PolicyDatapath, StaticEntries, encode, frames},
    policy::{
        Cidr, DnsConfig, EgressRule, Fqdn, Mode, Policy, PortSpec, Protocol, Selector, Target,
    },
};
use openclaw_egress_common::{
    Direction, DropEvent, DropReason, Verdict, maps::counter_index, proto,
};

const PASS: u32 = 1;
const DROP: u32 = 0;

const AGENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2));
const AGENT6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2));
const RESOLVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));
const TRUSTED: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
const TRUSTED6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 20));
const OTHER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x20));

fn tcp(port: u16) -> PortSpec {
    PortSpec {
        port,
        protocol: Protocol::Tcp,
    }
}

/// rule 0: api.trusted.test 443/tcp (resolved to TRUSTED and TRUSTED6 below)
/// rule 1: 198.51.100.0/24 5432/tcp
/// rule 2: 198.51.0.0/16 8080/tcp (overlaps rule 1 with another port)
fn policy(mode: Mode) -> Policy {
    Policy {
        name: "kernel-test".into(),
        mode,
        selector: Selector::default(),
        dns: DnsConfig {
            resolvers: vec![RESOLVER],
            min_ttl: DnsConfig::DEFAULT_MIN_TTL,
            max_ips_per_name: DnsConfig::DEFAULT_MAX_IPS_PER_NAME,
        },
        egress: vec![
            EgressRule {
                target: Target::Fqdn(Fqdn("api.trusted.test".into())),
                ports: vec![tcp(443)],
            },
            EgressRule {
                target: Target::Cidr(Cidr {
                    addr: "198.51.100.0".parse().unwrap(),
                    prefix_len: 24,
                }),
                ports: vec![tcp(5432)],
            },
            EgressRule {
                target: Target::Cidr(Cidr {
                    addr: "198.51.0.0".parse().unwrap(),
                    prefix_len: 16,
                }),
                ports: vec![tcp(8080)],
            },
        ],
    }
}

/// A loaded, filled, unattached datapath and its event ring.
struct Loaded {
    datapath: PolicyDatapath,
    events: RingBuf<MapData>,
}

fn load(policy: &Policy, trusted_expires_at_ns: u64) -> Loaded {
    let mut datapath = PolicyDatapath::load().expect("programs load and verify (are we root?)");
    let events = datapath.take_events().unwrap();
    datapath
        .upsert_allow(&encode::allow_entries(
            0,
            &policy.egress[0].ports,
            &[TRUSTED, TRUSTED6],
            trusted_expires_at_ns,
        ))
        .unwrap();
    datapath
        .install_static(&encode::static_entries(policy))
        .unwrap();
    Loaded { datapath, events }
}

fn load_enforcing() -> Loaded {
    load(
        &policy(Mode::Enforce),
        clock::monotonic_ns_after(Duration::from_secs(600)),
    )
}

impl Loaded {
    fn run(&self, frame: &[u8]) -> u32 {
        self.datapath
            .test_run_egress(frame, 1)
            .unwrap()
            .return_value
    }

    fn dropped(&self, reason: DropReason) -> u64 {
        self.count(Verdict::Dropped, reason)
    }

    fn count(&self, verdict: Verdict, reason: DropReason) -> u64 {
        self.datapath.drop_counts().unwrap()
            [counter_index(verdict, Direction::Egress, reason) as usize]
    }

    fn events(&mut self) -> Vec<DropEvent> {
        let mut events = Vec::new();
        while let Some(item) = self.events.next() {
            assert!(item.len() >= size_of::<DropEvent>());
            // SAFETY: the program writes whole DropEvents.
            events.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<DropEvent>()) });
        }
        events
    }
}

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
    assert_eq!(
        loaded.run(&frames::udp(AGENT, 5353, RESOLVER, 53, b"q")),
        PASS
    );
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 5353, RESOLVER, 53)),
        PASS
    );
    // An allowed destination is still not a DNS server.
    assert_eq!(
        loaded.run(&frames::udp(AGENT, 5353, TRUSTED, 53, b"q")),
        DROP
    );
    assert_eq!(loaded.run(&frames::udp(AGENT, 5353, OTHER, 53, b"q")), DROP);
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

#[test]
fn a_policy_not_marked_ready_drops_everything() {
    let mut datapath = PolicyDatapath::load().unwrap();
    let policy = policy(Mode::Enforce);
    let mut entries: StaticEntries = encode::static_entries(&policy);
    entries.config.ready = 0;
    datapath.install_static(&entries).unwrap();
    let frame = frames::udp(AGENT, 5353, RESOLVER, 53, b"q");
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
