//! The DNS-aware datapath with real packets through the real programs (cgroup
//! hooks): query names checked in the kernel, addresses learned from the
//! agent's own DNS answers (wildcards, CNAME chains), rebinding protection,
//! the per-name cap, live connections across an expiry, and learned
//! addresses surviving a policy re-apply.
//!
//! Every blocked target has a server behind it (or, for the agent's own
//! loopback, answers with a reset), and is first shown to work without the
//! policy; each drop is matched to its event by the probe's source port.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::{collections::BTreeSet, net::IpAddr, thread, time::Duration};

use common::{
    DNS_ANSWERS_TOTAL, DNS_LEARNED_TOTAL, DNS_QUERIES_TOTAL, DNS_REFUSED_TOTAL,
    DROPPED_TCP_TIMEOUT_MS, DROPS_TOTAL, Rig, skip_unless_root,
};
use openclaw_egress_e2e::{HoldReport, ResolveConnectReport, WorldConfig, probe_error};

mod address_expiry;
mod learned_addresses;
mod query_names;
mod rebinding;
mod wildcards;

/// How long the world may take to log a query it answered.
const WORLD_LOG_TIMEOUT: Duration = Duration::from_secs(5);

fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

/// A query for `name` through the allowed resolver, dropped because no rule
/// allows the name: checks the drop event names the query.
#[track_caller]
fn assert_query_denied(rig: &Rig, server: &str, name: &str, tcp: bool) {
    let mut args = vec!["dns", server, name];
    let error = if tcp {
        // The handshake passes (no question yet); the segment with the
        // query is dropped and retransmitted until the probe gives up.
        args.extend(["--tcp", "--timeout-ms", DROPPED_TCP_TIMEOUT_MS]);
        probe_error::TIMEOUT
    } else {
        probe_error::PERMISSION_DENIED
    };
    let event = rig.assert_dropped(&args, error, "dns_denied");
    // Names match case-insensitively, but events report them as sent (letter
    // case can carry exfiltrated data).
    assert_eq!(
        event["dns_name"], name,
        "the event names the refused query: {event}"
    );
}
