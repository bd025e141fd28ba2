//! The cost of the server name check (TLS SNI) on a connection's first
//! segment, and proof that it costs nothing after: the same measurements on
//! two instances with 10 allowed destinations on 443/tcp, one whose rule
//! checks TLS there (the default) and one whose rule does not (`tls: []`).
//!
//! - `cgroup_first_segment`: one run per syscall (a fresh socket) of a
//!   segment carrying a whole ClientHello (1.4 KB, post-quantum key share)
//!   naming the allowed server. Unchecked: the destination lookup and the
//!   socket's verdict. Checked: that, plus parsing the hello and matching
//!   its name.
//! - `cgroup_after`: `repeat` runs of it per syscall: all but the first find
//!   the socket's cached verdict, checked or not. The per-packet cost.
//! - `tc_first_segment`: the TC program on the same segment right after its
//!   connection's SYN (not timed), one fresh 5-tuple per sample. Unchecked:
//!   a flow-cache hit. Checked: the parser state's lookup, the parse and the
//!   match.

use anyhow::{Result, ensure};
use openclaw_egress::{
    datapath::{PolicyDatapath, frames, frames::tls::ClientHello},
    policy::Policy,
};
use serde::Serialize;

use super::{AGENT, Harness, PASS, PORT, TC_ACT_SHOT, Timing, destination, nanos};

#[derive(Serialize)]
pub struct Pair {
    unchecked: Timing,
    checked: Timing,
}

#[derive(Serialize)]
pub struct ServerNameCheck {
    hello_bytes: usize,
    cgroup_first_segment: Pair,
    cgroup_after: Pair,
    tc_first_segment: Pair,
}

const ENTRIES: u32 = 10;

pub fn run(
    samples: u32,
    repeat: u32,
    repeat_samples: u32,
    harness: &Harness,
) -> Result<ServerNameCheck> {
    let checked = instance(super::policy())?;
    let mut unchecked_policy = super::policy();
    unchecked_policy.egress[0].inspection.tls_ports.clear();
    let unchecked = instance(unchecked_policy)?;
    let hello = ClientHello::to(super::ALLOWED_NAME).bytes();
    let segment = |src_port: u16| frames::tcp_data(AGENT, src_port, destination(0), PORT, &hello);

    let mut first = [Vec::new(), Vec::new()];
    let mut tc = [Vec::new(), Vec::new()];
    for sample in 0..samples {
        let src_port = 1024 + u16::try_from(sample % 64_000).expect("below 64 000");
        for (i, datapath) in [&unchecked, &checked].into_iter().enumerate() {
            first[i].push(egress(datapath, &segment(src_port), 1)?);
            let syn = frames::tcp_syn(AGENT, src_port, destination(0), PORT);
            tc_pass(datapath, &syn)?;
            tc[i].push(tc_pass(datapath, &segment(src_port))?);
        }
    }
    let mut after = [Vec::new(), Vec::new()];
    for _ in 0..repeat_samples {
        for (i, datapath) in [&unchecked, &checked].into_iter().enumerate() {
            after[i].push(egress(datapath, &segment(40_000), repeat)?);
        }
    }
    let pair = |[unchecked, checked]: [Vec<f64>; 2], baseline| Pair {
        unchecked: Timing::of(unchecked, baseline),
        checked: Timing::of(checked, baseline),
    };
    Ok(ServerNameCheck {
        hello_bytes: hello.len(),
        cgroup_first_segment: pair(first, &harness.single_run),
        cgroup_after: pair(after, &harness.repeated),
        tc_first_segment: pair(tc, &harness.single_run),
    })
}

fn instance(policy: Policy) -> Result<PolicyDatapath> {
    super::Instance::load_policy(policy, ENTRIES).map(|instance| instance.datapath)
}

/// Nanoseconds per run of the egress program, which must pass `frame`.
fn egress(datapath: &PolicyDatapath, frame: &[u8], repeat: u32) -> Result<f64> {
    let result = datapath.test_run_egress(frame, repeat)?;
    ensure!(
        result.return_value == PASS,
        "the egress program refused an allowed ClientHello"
    );
    Ok(nanos(result.duration))
}

/// Nanoseconds of one run of the TC program, which must pass `frame`.
fn tc_pass(datapath: &PolicyDatapath, frame: &[u8]) -> Result<f64> {
    let result = datapath.test_run_tc_from_workload(frame)?;
    ensure!(
        result.return_value != TC_ACT_SHOT,
        "the TC program refused an allowed ClientHello"
    );
    Ok(nanos(result.duration))
}
