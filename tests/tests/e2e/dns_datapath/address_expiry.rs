//! Learned addresses and their expiry: a connect right after a lookup, a live connection past its TTL.

use super::*;

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
