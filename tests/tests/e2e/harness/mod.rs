//! Self-tests of the end-to-end harness, by subject: oce-world's servers
//! (`world`), what oce-probe reports (`probes`), the sandbox's topology,
//! cgroups and teardown (`sandbox`), the daemon wrapper against a stand-in
//! daemon (`daemon`) and the fake Kubernetes API server (`kube`).
//!
//! Root-only (network namespaces, cgroups); skipped with a message
//! otherwise. CI runs them as root.

mod daemon;
mod kube;
mod probes;
mod sandbox;
mod world;

use openclaw_egress_e2e::{ProbeOutcome, Sandbox, WorldConfig};

fn probe(sandbox: &Sandbox, args: &[&str]) -> ProbeOutcome {
    sandbox
        .probe(args)
        .unwrap_or_else(|e| panic!("oce-probe {args:?}: {e:#}"))
}

/// The world most tests use: DNS on the gateway, two hosts with TCP echo
/// servers, one with UDP echo.
fn basic_world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record("api.example.com", "203.0.113.10")
        .record("api.example.com", "203.0.113.11")
        .record("api.example.com", "2001:db8:1::10")
        .record("v4only.example.com", "203.0.113.20")
        .tcp("203.0.113.10:7")
        .tcp("[2001:db8:1::10]:7")
        .udp("203.0.113.10:7")
}
