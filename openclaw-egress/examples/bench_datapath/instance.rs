//! A loaded, filled, unattached datapath instance, the policy it enforces, and its timed runs.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use openclaw_egress::{
    clock,
    datapath::{Hooks, PolicyDatapath, encode, frames},
    policy::{DnsConfig, EgressRule, Fqdn, Mode, Policy, PortSpec, Protocol, Selector, Target},
};
use openclaw_egress_common::maps::ALLOW_MAX_ENTRIES;

use super::{AGENT, ALLOWED_NAME, PASS, PORT, TC_ACT_SHOT, XorShift, destination, nanos, raw_bpf};

/// One loaded, filled, unattached datapath instance, and the bare-lookup
/// baseline over a map holding the same entries.
pub(crate) struct Instance {
    pub(crate) entries: u32,
    pub(crate) datapath: PolicyDatapath,
    pub(crate) bare_lookup: raw_bpf::Program,
}

impl Instance {
    /// Rule 0 is an `fqdn` rule for 443/tcp; `entries` addresses are
    /// "resolved" for it (ALLOW entries, as the daemon writes them).
    pub(crate) fn load(entries: u32) -> Result<Self> {
        Self::load_policy(unchecked_policy(), entries)
    }

    pub(crate) fn load_policy(policy: Policy, entries: u32) -> Result<Self> {
        let mut datapath = PolicyDatapath::load(Hooks {
            cgroup: true,
            interfaces: true,
        })
        .context("loading the programs (are we root?)")?;
        let ips: Vec<IpAddr> = (0..entries).map(destination).collect();
        let expires = clock::monotonic_ns_after(Duration::from_secs(24 * 3600));
        let allow = encode::allow_entries(0, &policy.egress[0], &ips, expires);
        datapath.upsert_allow(&allow)?;
        let bare_map = raw_bpf::HashMap::allow_shaped(ALLOW_MAX_ENTRIES)
            .context("creating the bare-lookup map")?;
        for (key, value) in &allow {
            bare_map.insert(key, value)?;
        }
        let bare_lookup = raw_bpf::bare_lookup(&bare_map, &allow[0].0)
            .context("loading the bare-lookup program")?;
        let static_entries = encode::static_entries(&policy)?;
        datapath.install_static(&static_entries)?;
        let stored = datapath.allow_entries().len();
        ensure!(
            stored == entries as usize,
            "ALLOW holds {stored} entries, expected {entries}"
        );
        Ok(Self {
            entries,
            datapath,
            bare_lookup,
        })
    }

    /// Nanoseconds per run of the egress program, which must pass `frame`.
    pub(crate) fn run_egress(&self, frame: &[u8], repeat: u32) -> Result<f64> {
        let result = self.datapath.test_run_egress(frame, repeat)?;
        ensure!(
            result.return_value == PASS,
            "the egress program dropped an allowed SYN ({} entries)",
            self.entries
        );
        Ok(nanos(result.duration))
    }

    /// Nanoseconds per run of the TC program, which must pass `frame`.
    pub(crate) fn run_tc(&self, frame: &[u8]) -> Result<f64> {
        let result = self.datapath.test_run_tc_from_workload(frame)?;
        ensure!(
            result.return_value != TC_ACT_SHOT,
            "the TC program dropped an allowed SYN ({} entries)",
            self.entries
        );
        Ok(nanos(result.duration))
    }

    /// Nanoseconds per run of the bare lookup, which must find `frame`'s
    /// destination.
    pub(crate) fn run_bare(&self, frame: &[u8], repeat: u32) -> Result<f64> {
        let (found, duration) = self.bare_lookup.run(frame, repeat)?;
        ensure!(
            found == 1,
            "the bare lookup missed an allowed destination ({} entries)",
            self.entries
        );
        Ok(nanos(duration))
    }

    /// A SYN to a random allowed destination from source port `1024 + n %
    /// 64 000`: distinct `n` below 64 000 give distinct 5-tuples, so the TC
    /// program's flow cache never already knows one.
    pub(crate) fn random_frame(&self, rng: &mut XorShift, n: u32) -> Vec<u8> {
        let index = u32::try_from(rng.next() % u64::from(self.entries)).expect("below entries");
        let src_port = 1024 + u16::try_from(n % 64_000).expect("below 64 000");
        frames::tcp_syn(AGENT, src_port, destination(index), PORT)
    }
}

pub(crate) fn policy() -> Policy {
    Policy {
        name: "bench".into(),
        mode: Mode::Enforce,
        selector: Selector::default(),
        dns: DnsConfig::with_resolvers(vec![IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1))]),
        egress: vec![EgressRule::new(
            Target::Fqdn(Fqdn(ALLOWED_NAME.into())),
            vec![PortSpec {
                port: PORT,
                protocol: Protocol::Tcp,
            }],
        )],
    }
}

/// [`policy`] without the TLS check on its port: the per-packet series
/// predate the server name check (`server_name_check` measures it).
pub(crate) fn unchecked_policy() -> Policy {
    let mut policy = policy();
    policy.egress[0].inspection.tls_ports.clear();
    policy
}
