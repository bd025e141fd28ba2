//! The TLS check on the real programs (BPF_PROG_TEST_RUN): the first bytes
//! of a connection a name rule admits on a TLS port must be a ClientHello
//! naming a server the policy allows there. Mostly through the TC program,
//! which keeps each connection's parser state across test runs (the
//! cgroup hook keeps it on the socket, and every test run has a fresh dummy
//! socket, so it is tested with whole ClientHellos).

#[path = "../common/mod.rs"]
mod common;

mod hostile_hellos;
mod segments;
mod server_names;

use common::*;
use openclaw_egress::{
    datapath::Hooks,
    policy::{Mode, Policy},
};

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
