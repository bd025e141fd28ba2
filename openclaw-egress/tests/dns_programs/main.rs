//! The DNS side of the datapath, run on crafted packets with
//! BPF_PROG_TEST_RUN: query filtering on egress, address learning on
//! ingress, and what malformed input does to both (nothing good for the
//! sender: no crash, no hang, nothing opened). Needs root.

#[path = "../common/mod.rs"]
mod common;

mod answers;
mod queries;

use std::{net::IpAddr, time::Duration};

use common::*;
use openclaw_egress::{
    clock,
    datapath::Hooks,
    datapath::frames::{
        self,
        dns::{self, TYPE_A},
    },
    policy::{Mode, Policy, WildcardDepth},
};

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

fn loaded_with_hooks(hooks: Hooks) -> Loaded {
    load_with(
        &dns_policy(Mode::Enforce),
        hooks,
        clock::monotonic_ns_after(Duration::from_secs(600)),
    )
}
