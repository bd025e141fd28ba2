//! Issue 8, the attacker's side: what the kernel learns from answers the
//! attacker controls. An agent may control the zone of any name a wildcard
//! allows, so
//! - a wildcard must not open unbounded destinations: the new
//!   `spec.dns.maxIPsPerPattern` (default 256) caps the addresses learned
//!   per pattern rule per TTL window, whatever the names, refusing the rest
//!   as `openclaw_egress_dns_refused_addresses_total{reason="pattern_cap"}`;
//! - its answers must not open internal addresses through the ranges that
//!   embed or stand for them: NAT64 (well-known and local-use prefixes),
//!   6to4, IPv4-compatible and IPv4-translated IPv6 addresses carrying a
//!   private IPv4 address, and 198.18.0.0/15, 192.0.0.0/24, 240.0.0.0/4,
//!   255.255.255.255; a NAT64 address embedding a public IPv4 address is
//!   learned.
//!
//! Every address has a TCP server where one can be given; each is shown to
//! answer without the policy.
//!
//! Today (before the fix):
//! - `a_wildcard_opens_at_most_max_ips_per_pattern_addresses`: applying the
//!   policy fails, `maxIPsPerPattern` being an unknown field (the test
//!   panics with the daemon's error; it does not skip);
//! - `addresses_embedding_internal_ones_are_not_learned`: the NAT64 address
//!   64:ff9b::a00:1 is learned and the connect to it succeeds (`expected
//!   connect(2) to [64:ff9b::a00:1]:443 to fail with EPERM, got ok`); of
//!   the nine only 240.0.0.1 and 255.255.255.255 are refused today.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::{collections::BTreeSet, net::IpAddr};

use common::{
    DNS_LEARNED_TOTAL, DNS_REFUSED_TOTAL, Rig, bypass::assert_connect_refused, skip_unless_root,
};
use openclaw_egress_e2e::WorldConfig;

#[test]
fn a_wildcard_opens_at_most_max_ips_per_pattern_addresses() {
    if skip_unless_root() {
        return;
    }
    // Five names under one pattern, each with an address of its own (so
    // the per-name cap never applies), each with a server.
    let hosts: Vec<(String, String)> = (1..=5)
        .map(|n| (format!("n{n}.pkg.test"), format!("203.0.113.{}", 70 + n)))
        .collect();
    let mut world = WorldConfig::new().dns("10.77.0.1:53");
    for (name, ip) in &hosts {
        world = world.record(name, ip).tcp(&format!("{ip}:443"));
    }
    let rig = Rig::start(&world);
    for (_, ip) in &hosts {
        rig.assert_reachable_without_policy(&["tcp", &format!("{ip}:443")]);
    }
    let policy = rig
        .policy()
        .max_ips_per_pattern(3)
        .fqdn_pattern("*.pkg.test", &["443/tcp"]);
    let path = policy
        .write(rig.sandbox.scratch_dir(), "policy.yaml")
        .unwrap();
    if let Err(err) = rig.daemon.apply(&path) {
        panic!("the daemon must accept spec.dns.maxIPsPerPattern (issue 8): {err:#}");
    }
    let pattern_cap = || rig.counter(DNS_REFUSED_TOTAL, &[("reason", "pattern_cap")]);
    let before = pattern_cap();

    // The agent gets every answer; the first three addresses open.
    for (name, ip) in &hosts {
        rig.lookup("10.77.0.1", name, "A", &[ip]);
    }
    for (_, ip) in &hosts[..3] {
        rig.assert_allowed(&["tcp", &format!("{ip}:443")]);
    }
    for (_, ip) in &hosts[3..] {
        assert_connect_refused(&rig, &format!("{ip}:443"), "no_rule");
    }
    assert_eq!(pattern_cap() - before, 2, "n4 and n5 refused by the cap");
    let open: BTreeSet<IpAddr> = hosts[..3]
        .iter()
        .map(|(_, ip)| ip.parse().unwrap())
        .collect();
    assert_eq!(rig.status_addresses("*.pkg.test"), open);
}

/// Names under `*.rebind.test` whose one address stands for an internal
/// one, and whether a world host serves it.
const INTERNAL: &[(&str, &str, bool)] = &[
    // NAT64, well-known prefix (RFC 6052), embedding 10.0.0.1.
    ("nat64", "64:ff9b::a00:1", true),
    // NAT64, local-use prefix (RFC 8215), embedding 10.0.0.1.
    ("nat64local", "64:ff9b:1::a00:1", true),
    // 6to4 (RFC 3056) of 10.0.0.1.
    ("sixtofour", "2002:a00:1::1", true),
    // IPv4-compatible (deprecated, RFC 4291 2.5.5.1) ::10.0.0.1.
    ("compat", "::a00:1", false),
    // IPv4-translated (RFC 2765) ::ffff:0:10.0.0.1.
    ("translated", "::ffff:0:a00:1", false),
    // Benchmarking (RFC 2544).
    ("bench", "198.18.0.1", true),
    // IETF protocol assignments (RFC 6890).
    ("ietf", "192.0.0.1", true),
    // Reserved (RFC 1112).
    ("reserved", "240.0.0.1", false),
    // Limited broadcast.
    ("broadcast", "255.255.255.255", false),
];

/// NAT64 of 203.0.113.10, a public address: learned.
const PUBLIC_NAT64: &str = "64:ff9b::cb00:710";

fn target(ip: &str) -> String {
    match ip.parse::<IpAddr>().unwrap() {
        IpAddr::V4(_) => format!("{ip}:443"),
        IpAddr::V6(_) => format!("[{ip}]:443"),
    }
}

#[test]
fn addresses_embedding_internal_ones_are_not_learned() {
    if skip_unless_root() {
        return;
    }
    let mut world = WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record("public64.rebind.test", PUBLIC_NAT64)
        .tcp(&target(PUBLIC_NAT64));
    for (label, ip, served) in INTERNAL {
        world = world.record(&format!("{label}.rebind.test"), ip);
        if *served {
            world = world.tcp(&target(ip));
        }
    }
    let rig = Rig::start(&world);
    for (_, ip, _) in INTERNAL.iter().filter(|(_, _, served)| *served) {
        rig.assert_reachable_without_policy(&["tcp", &target(ip)]);
    }
    rig.apply(
        &rig.policy().fqdn_pattern("*.rebind.test", &["443/tcp"]),
        "policy.yaml",
    );
    let internal = || rig.counter(DNS_REFUSED_TOTAL, &[("reason", "internal")]);
    let (internal_before, learned_before) = (internal(), rig.counter(DNS_LEARNED_TOTAL, &[]));

    // The names are allowed, so every answer reaches the agent...
    for (label, ip, _) in INTERNAL {
        let qtype = if ip.contains(':') { "AAAA" } else { "A" };
        rig.lookup("10.77.0.1", &format!("{label}.rebind.test"), qtype, &[ip]);
    }
    rig.lookup(
        "[fd77::1]:53",
        "public64.rebind.test",
        "AAAA",
        &[PUBLIC_NAT64],
    );

    // ...but none of the internal ones opened.
    for (label, ip, _) in INTERNAL.iter().filter(|(_, _, served)| *served) {
        eprintln!("{label}: {ip}");
        assert_connect_refused(&rig, &target(ip), "no_rule");
    }
    // The public NAT64 address did.
    rig.assert_allowed(&["tcp", &target(PUBLIC_NAT64)]);
    assert_eq!(
        internal() - internal_before,
        INTERNAL.len() as u64,
        "each internal address refused"
    );
    assert_eq!(rig.counter(DNS_LEARNED_TOTAL, &[]) - learned_before, 1);
    let expected: BTreeSet<IpAddr> = [PUBLIC_NAT64.parse().unwrap()].into();
    assert_eq!(rig.status_addresses("*.rebind.test"), expected);
}
