//! Shared pieces of the kernel tests: a policy, a loaded (unattached)
//! datapath instance, and readers for its counters and events.
//!
//! These tests run the real programs with BPF_PROG_TEST_RUN: real verifier,
//! real maps, real helpers. They need root, like every kernel test here.

#![allow(dead_code, reason = "each test file uses a different subset")]

pub mod rng;
pub mod stream;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use openclaw_egress::{
    clock,
    datapath::{Capacities, Datapath, Hooks, PolicyDatapath, encode, frames},
    policy::{
        Cidr, DnsConfig, EgressRule, Fqdn, FqdnPattern, Mode, Policy, PortSpec, Protocol, Selector,
        Target, WildcardDepth,
    },
};
use openclaw_egress_common::{
    AllowKey, AllowValue, Direction, DropEvent, DropReason, Verdict, dns::DnsStat,
    maps::counter_index,
};

pub const PASS: u32 = 1;
pub const DROP: u32 = 0;
/// TC verdicts: -1 (continue) and TC_ACT_SHOT.
pub const TC_NEXT: u32 = u32::MAX;
pub const TC_SHOT: u32 = 2;

pub const AGENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2));
pub const AGENT6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2));
pub const RESOLVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));
pub const TRUSTED: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
pub const TRUSTED6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10));
pub const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 20));
pub const OTHER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x20));

pub fn tcp(port: u16) -> PortSpec {
    PortSpec {
        port,
        protocol: Protocol::Tcp,
    }
}

pub fn fqdn(name: &str, ports: Vec<PortSpec>) -> EgressRule {
    EgressRule::new(Target::Fqdn(Fqdn(name.into())), ports)
}

pub fn pattern(depth: WildcardDepth, suffix: &str, ports: Vec<PortSpec>) -> EgressRule {
    EgressRule::new(
        Target::Pattern(FqdnPattern {
            depth,
            suffix: suffix.into(),
        }),
        ports,
    )
}

pub fn cidr(net: &str, prefix_len: u8, ports: Vec<PortSpec>) -> EgressRule {
    EgressRule::new(
        Target::Cidr(Cidr {
            addr: net.parse().unwrap(),
            prefix_len,
        }),
        ports,
    )
}

pub fn policy_with(mode: Mode, egress: Vec<EgressRule>) -> Policy {
    Policy {
        name: "kernel-test".into(),
        mode,
        selector: Selector::default(),
        dns: DnsConfig::with_resolvers(vec![RESOLVER]),
        egress,
    }
}

/// rule 0: api.trusted.test 443/tcp (resolved to TRUSTED and TRUSTED6 by `load`)
/// rule 1: 198.51.100.0/24 5432/tcp
/// rule 2: 198.51.0.0/16 8080/tcp (overlaps rule 1 with another port)
pub fn policy(mode: Mode) -> Policy {
    policy_with(
        mode,
        vec![
            fqdn("api.trusted.test", vec![tcp(443)]),
            cidr("198.51.100.0", 24, vec![tcp(5432)]),
            cidr("198.51.0.0", 16, vec![tcp(8080)]),
        ],
    )
}

/// A loaded, filled, unattached datapath and its event ring (the shared
/// ring: only the first policy loaded on a datapath has it).
pub struct Loaded {
    pub datapath: PolicyDatapath,
    events: Option<RingBuf<MapData>>,
}

/// Loads `policy`; if its rule 0 is an fqdn, its name "resolved" to
/// TRUSTED and TRUSTED6 until `rule0_expires_at_ns`.
pub fn load(policy: &Policy, rule0_expires_at_ns: u64) -> Loaded {
    load_with(policy, Hooks::CGROUP, rule0_expires_at_ns)
}

/// [`load`] with the programs of `hooks` (cgroup or TC).
pub fn load_with(policy: &Policy, hooks: Hooks, rule0_expires_at_ns: u64) -> Loaded {
    let shared = Arc::new(Datapath::load().expect("programs load and verify (are we root?)"));
    load_on(&shared, policy, hooks, rule0_expires_at_ns)
}

/// [`load_with`] on a datapath other workloads share.
pub fn load_on(
    shared: &Arc<Datapath>,
    policy: &Policy,
    hooks: Hooks,
    rule0_expires_at_ns: u64,
) -> Loaded {
    let mut datapath = PolicyDatapath::unattached(shared, hooks, &Capacities::MAX).unwrap();
    let events = datapath.take_events();
    if let Some(rule) = policy.egress.first()
        && matches!(rule.target, Target::Fqdn(_))
    {
        datapath
            .upsert_allow(&encode::allow_entries(
                0,
                rule,
                &[TRUSTED, TRUSTED6],
                rule0_expires_at_ns,
            ))
            .unwrap();
    }
    datapath
        .install_static(&encode::static_entries(policy).unwrap())
        .unwrap();
    Loaded { datapath, events }
}

pub fn load_enforcing() -> Loaded {
    load(&policy(Mode::Enforce), in_ten_minutes())
}

/// An expiry far enough ahead for any test: rule 0's addresses stay allowed.
pub fn in_ten_minutes() -> u64 {
    clock::monotonic_ns_after(Duration::from_secs(600))
}

impl Loaded {
    pub fn run(&self, frame: &[u8]) -> u32 {
        self.datapath
            .test_run_egress(frame, 1)
            .unwrap()
            .return_value
    }

    pub fn run_tc(&self, frame: &[u8]) -> u32 {
        self.datapath
            .test_run_tc_from_workload(frame)
            .unwrap()
            .return_value
    }

    /// Runs the TC program on the way to the workload (DNS learning).
    pub fn run_tc_to_workload(&self, frame: &[u8]) -> u32 {
        self.datapath
            .test_run_tc_to_workload(frame)
            .unwrap()
            .return_value
    }

    /// Sends `payload` over a fresh TCP connection from the agent's port
    /// `port` to the resolver's port 53 through the TC program: the SYN
    /// (sequence number 0), then one data segment right after it. Returns
    /// the data segment's verdict. (TCP DNS is checked on TC hooks, where
    /// each stream's position is followed; the cgroup hook's test runs have
    /// a dummy socket, which is not a TCP socket, so it refuses them.)
    pub fn tcp_dns_tc(&self, port: u16, payload: &[u8]) -> u32 {
        assert_eq!(
            self.run_tc(&frames::tcp_syn(AGENT, port, RESOLVER, 53)),
            TC_NEXT
        );
        self.run_tc(&frames::tcp_data(AGENT, port, RESOLVER, 53, payload))
    }

    /// Sets rule 0's addresses (TRUSTED, TRUSTED6) to expire at `expires_at_ns`.
    pub fn set_rule0_expiry(&mut self, policy: &Policy, expires_at_ns: u64) {
        self.datapath
            .upsert_allow(&encode::allow_entries(
                0,
                &policy.egress[0],
                &[TRUSTED, TRUSTED6],
                expires_at_ns,
            ))
            .unwrap();
    }

    pub fn run_ingress(&self, frame: &[u8]) -> u32 {
        self.datapath.test_run_ingress(frame).unwrap().return_value
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.count(Verdict::Dropped, reason)
    }

    pub fn count(&self, verdict: Verdict, reason: DropReason) -> u64 {
        self.datapath.drop_counts().unwrap()
            [counter_index(verdict, Direction::Egress, reason) as usize]
    }

    pub fn dns_stat(&self, stat: DnsStat) -> u64 {
        self.datapath.dns_stats().unwrap()[stat as usize]
    }

    pub fn events(&mut self) -> Vec<DropEvent> {
        let mut events = Vec::new();
        let ring = self
            .events
            .as_mut()
            .expect("the first policy loaded on a datapath reads its events");
        while let Some(item) = ring.next() {
            assert!(item.len() >= size_of::<DropEvent>());
            // SAFETY: the program writes whole DropEvents.
            events.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<DropEvent>()) });
        }
        events
    }

    /// The `ALLOW` entry for `ip`, protocol, port, if any.
    pub fn allowed(&self, ip: IpAddr, proto: u8, port: u16) -> Option<AllowValue> {
        let key = AllowKey::new(encode::addr_of(ip), proto, port);
        self.datapath
            .allow_entries()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Sends a DNS answer from the resolver to the agent through the ingress
    /// program, after sending the query it answers (same ID, question and
    /// ports) through the egress program: only a solicited answer teaches.
    /// An answer whose question cannot be read is sent unsolicited.
    pub fn answer(&self, message: &[u8]) -> u32 {
        if let Some(query) = query_answered_by(message) {
            self.run(&frames::udp(AGENT, 40000, RESOLVER, 53, &query));
        }
        self.answer_unsolicited(message)
    }

    /// Sends a DNS answer from the resolver to the agent through the ingress
    /// program, with no query before it.
    pub fn answer_unsolicited(&self, message: &[u8]) -> u32 {
        self.run_ingress(&frames::udp(RESOLVER, 53, AGENT, 40000, message))
    }
}

/// The query `answer` answers: its ID and its question (name as sent, type),
/// if the question can be read.
pub fn query_answered_by(answer: &[u8]) -> Option<Vec<u8>> {
    let id = u16::from_be_bytes([*answer.first()?, *answer.get(1)?]);
    let mut end = 12;
    loop {
        let len = usize::from(*answer.get(end)?);
        if len == 0 || len > 63 {
            break;
        }
        end += 1 + len;
    }
    let wire_name = answer.get(12..=end)?;
    let qtype = u16::from_be_bytes([*answer.get(end + 1)?, *answer.get(end + 2)?]);
    Some(frames::dns::query_raw(id, wire_name, qtype))
}
