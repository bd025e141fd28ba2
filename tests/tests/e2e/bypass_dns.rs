//! Issue 8, the attacker's side: a DNS query carries its one question and
//! nothing else. The agent asks an allowed name through the allowed
//! resolver, but packs extra data around the question (bytes after it,
//! extra records, big EDNS options, a second query in the same UDP GSO
//! send, bytes past the UDP length); each such query must be dropped as
//! `dns_malformed` (a cgroup drop: EPERM at send; a TCP segment or a TC
//! drop: the answer never comes). A query with a small, well-formed OPT
//! record (an 8-byte COOKIE and the DO bit) keeps working.
//!
//! Today (before the fix) every test here fails at its first attack:
//! the kernel checks only the header counts and the question, so
//! - `udp_queries_carry_one_question_and_nothing_else`: the query with 64
//!   bytes after its question is answered (`expected ... to be dropped
//!   ("permission denied"), got ok`);
//! - `dns_over_tcp_checks_each_message_whole`: the TCP message with
//!   trailing bytes inside its length prefix is answered (expected
//!   "timeout");
//! - `one_gso_send_cannot_carry_a_second_query`: the GSO send succeeds and
//!   is answered (expected "permission denied"), and the world logs the
//!   denied name;
//! - `on_the_veth_a_query_carries_only_its_question`: answered on the TC
//!   rig too (expected "timeout").
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::time::Duration;

use common::{
    DROPPED_TCP_TIMEOUT_MS, DROPPED_UDP_TIMEOUT_MS, DROPS_TOTAL, Rig, bypass::port_of,
    skip_unless_root,
};
use openclaw_egress_e2e::{WorldConfig, probe_error};

const ALLOWED: &str = "api.example.com";

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record(ALLOWED, "203.0.113.10")
        .record(ALLOWED, "2001:db8:1::10")
        .record("padding-padding-padding.pkg.test", "203.0.113.50")
}

/// The crafted queries that must be dropped, each with what it smuggles.
const SMUGGLERS: &[(&str, &[&str])] = &[
    ("64 bytes after the question", &["--trailing", "64"]),
    (
        "a TXT record in the additional section",
        &["--extra-record"],
    ),
    (
        "an OPT record with a 200-byte option",
        &["--opt-option-len", "200"],
    ),
    // 41 + 4 = 45 bytes of OPT data: one more than a full COOKIE option.
    (
        "an OPT record with 45 bytes of data",
        &["--opt-option-len", "41"],
    ),
    (
        "32 bytes after a valid OPT record",
        &["--opt-cookie", "--opt-do", "--trailing", "32"],
    ),
    ("a question of class CHAOS", &["--qclass", "3"]),
    (
        "an OPT record owned by a name, not the root",
        &["--opt-owner", "data.x.attacker.example"],
    ),
    // The TTL field of OPT: extended RCODE, version, flags; only DO may be set.
    ("an OPT record of EDNS version 1", &["--opt-ttl", "65536"]),
    (
        "an OPT record with a flag other than DO",
        &["--opt-ttl", "16384"],
    ),
];

/// The legitimate variant: EDNS0 with an 8-byte client COOKIE and the DO
/// bit, as stub resolvers send it.
const GOOD_OPT: &[&str] = &["--opt-cookie", "--opt-do"];

/// Asserts that the query `args` (built by `dns-craft`) is answered with
/// `expected`: the positive controls.
#[track_caller]
fn assert_answered(rig: &Rig, args: &[&str], expected: &str) {
    let answer = rig.assert_allowed(args);
    assert_eq!(answer.answers, [expected], "{args:?}: {answer:?}");
}

/// Asserts that no query for `name` (fully qualified) reached the world's
/// resolver, once a later allowed query has (the sync point).
#[track_caller]
fn assert_never_asked(rig: &Rig, name: &str) {
    rig.assert_allowed(&["dns", "10.77.0.1", "sync.pkg.test"]);
    rig.world
        .wait_for_dns_query("sync.pkg.test", Duration::from_secs(5))
        .expect("the world logged the sync query");
    let seen: Vec<String> = rig
        .world
        .dns_queries()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert!(
        !seen.iter().any(|n| n == name),
        "the denied name {name} reached the world: {seen:?}"
    );
}

#[test]
fn udp_queries_carry_one_question_and_nothing_else() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&world());
    // Without a policy the resolver answers such queries (whatever it made
    // of them): the smuggled bytes reach it, and a resolver the attacker
    // controls would read them.
    for (what, extra) in SMUGGLERS {
        let args = [&["dns-craft", "10.77.0.1", ALLOWED][..], extra].concat();
        let baseline = rig.sandbox.probe_outside_cgroup(&args).unwrap();
        assert!(
            baseline.ok,
            "baseline, {what}: the world should answer it: {baseline:?}"
        );
    }
    rig.apply(&rig.policy().fqdn(ALLOWED, &["443/tcp"]), "policy.yaml");
    let before = rig.counter(DROPS_TOTAL, &[("reason", "dns_malformed")]);

    // Positive control: the plain query and the small OPT record pass.
    for (query, extra, expected) in [
        (
            &["dns-craft", "10.77.0.1", ALLOWED][..],
            &[][..],
            "203.0.113.10",
        ),
        (
            &["dns-craft", "10.77.0.1", ALLOWED][..],
            GOOD_OPT,
            "203.0.113.10",
        ),
        (
            &["dns-craft", "[fd77::1]:53", ALLOWED, "--type", "AAAA"][..],
            GOOD_OPT,
            "2001:db8:1::10",
        ),
    ] {
        assert_answered(&rig, &[query, extra].concat(), expected);
    }

    // Each smuggler: EPERM at send (the datagram never left) and a
    // dns_malformed event for this socket, on both families.
    let mut dropped = Vec::new();
    for (what, extra) in SMUGGLERS {
        for server in ["10.77.0.1", "[fd77::1]:53"] {
            let args = [&["dns-craft", server, ALLOWED][..], extra].concat();
            eprintln!("attack: {what} via {server}");
            let event = rig.assert_dropped(&args, probe_error::PERMISSION_DENIED, "dns_malformed");
            dropped.push(event["src_port"].as_u64().expect("a port") as u16);
        }
    }
    // A UDP length field shorter than the datagram (a raw socket): the
    // resolver's socket would see the allowed query only, the bytes past
    // the field still cross the wire.
    let short = [
        "dns-craft",
        "10.77.0.1",
        ALLOWED,
        "--short-udp-length",
        "64",
    ];
    let baseline = rig.sandbox.probe_outside_cgroup(&short).unwrap();
    assert_eq!(baseline.answers, ["203.0.113.10"], "baseline: {baseline:?}");
    let event = rig.assert_dropped(&short, probe_error::PERMISSION_DENIED, "dns_malformed");
    dropped.push(event["src_port"].as_u64().expect("a port") as u16);

    // Exact counts: one packet per refused query.
    assert_eq!(
        rig.counter(DROPS_TOTAL, &[("reason", "dns_malformed")]) - before,
        dropped.len() as u64
    );
    // None of them reached the resolver. (The last allowed query is the
    // sync point: it was sent after all of them.)
    let last = rig.assert_allowed(&["dns", "10.77.0.1", ALLOWED]);
    let sync_port = port_of(&last);
    common::poll_until(
        "the world logs the sync query",
        Duration::from_secs(5),
        || {
            rig.world
                .dns_queries()
                .iter()
                .any(|q| q.client.port() == sync_port)
                .then_some(())
                .ok_or_else(|| "not yet".to_owned())
        },
    );
    let leaked: Vec<_> = rig
        .world
        .dns_queries()
        .into_iter()
        .map(|q| q.client)
        .chain(rig.world.dns_undecodable_clients())
        .filter(|client| dropped.contains(&client.port()))
        .collect();
    assert!(
        leaked.is_empty(),
        "refused queries reached the world: {leaked:#?}"
    );
}

#[test]
fn dns_over_tcp_checks_each_message_whole() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&world());
    let smuggler = [
        "dns-craft",
        "10.77.0.1",
        ALLOWED,
        "--tcp",
        "--trailing",
        "48",
    ];
    let baseline = rig.sandbox.probe_outside_cgroup(&smuggler).unwrap();
    assert_eq!(baseline.answers, ["203.0.113.10"], "baseline: {baseline:?}");
    rig.apply(&rig.policy().fqdn(ALLOWED, &["443/tcp"]), "policy.yaml");

    // Positive control: whole messages, with and without a small OPT.
    rig.assert_allowed(&["dns", "10.77.0.1", ALLOWED, "--tcp"]);
    let args = [&["dns-craft", "10.77.0.1", ALLOWED, "--tcp"][..], GOOD_OPT].concat();
    assert_answered(&rig, &args, "203.0.113.10");

    // Trailing bytes inside the length prefix, over both families: the
    // handshake passes, the segment with the message is dropped (and
    // retransmitted until the probe gives up).
    for server in ["10.77.0.1", "[fd77::1]:53"] {
        for extra in [
            &["--trailing", "48"][..],
            &["--extra-record"][..],
            &["--opt-option-len", "200"][..],
        ] {
            let args = [
                &[
                    "dns-craft",
                    server,
                    ALLOWED,
                    "--tcp",
                    "--timeout-ms",
                    DROPPED_TCP_TIMEOUT_MS,
                ][..],
                extra,
            ]
            .concat();
            rig.assert_dropped(&args, probe_error::TIMEOUT, "dns_malformed");
        }
    }
}

#[test]
fn one_gso_send_cannot_carry_a_second_query() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&world());
    // The first query is allowed; the second, in the same sendmsg, asks a
    // name no rule allows (and no longer than the first, as GSO wants).
    const FIRST: &str = "padding-padding-padding.pkg.test";
    fn gso(second: &str) -> [&str; 4] {
        ["dns-gso", "10.77.0.1", FIRST, second]
    }
    // Without a policy both segments reach the resolver.
    let baseline = rig
        .sandbox
        .probe_outside_cgroup(&gso("gso1.x.attacker.example"))
        .unwrap();
    assert!(baseline.ok, "baseline: {baseline:?}");
    rig.world
        .wait_for_dns_query("gso1.x.attacker.example", Duration::from_secs(5))
        .expect("baseline: the second segment reached the world");

    rig.apply(
        &rig.policy().fqdn_pattern("*.pkg.test", &["443/tcp"]),
        "policy.yaml",
    );
    // Positive control: the first query alone passes.
    rig.assert_allowed(&["dns", "10.77.0.1", FIRST]);

    // Sends to port 53 with UDP_SEGMENT are refused as a whole: the
    // program sees one super-packet, which the kernel would cut into two
    // queries only after the check.
    let args = gso("gso2.x.attacker.example");
    rig.assert_dropped(&args, probe_error::PERMISSION_DENIED, "dns_malformed");

    // The denied name never reached the resolver.
    assert_never_asked(&rig, "gso2.x.attacker.example.");
}

#[test]
fn on_the_veth_a_query_carries_only_its_question() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start_tc(&world());
    rig.apply(
        &rig.policy()
            .fqdn(ALLOWED, &["443/tcp"])
            .fqdn_pattern("*.pkg.test", &["443/tcp"]),
        "tc.yaml",
    );

    // Positive control, as the agent's stub resolver would ask.
    let args = [&["dns-craft", "10.77.0.1", ALLOWED][..], GOOD_OPT].concat();
    assert_answered(&rig, &args, "203.0.113.10");

    // A TC drop gives no error at send: the answer just never comes.
    for (what, extra) in SMUGGLERS {
        eprintln!("attack on the veth: {what}");
        let args = [
            &[
                "dns-craft",
                "10.77.0.1",
                ALLOWED,
                "--timeout-ms",
                DROPPED_UDP_TIMEOUT_MS,
            ][..],
            extra,
        ]
        .concat();
        let event = rig.assert_dropped(&args, probe_error::TIMEOUT, "dns_malformed");
        assert_eq!(event["cgroup_id"], 0, "the TC layer dropped it: {event}");
    }
    let short = [
        "dns-craft",
        "10.77.0.1",
        ALLOWED,
        "--short-udp-length",
        "64",
        "--timeout-ms",
        DROPPED_UDP_TIMEOUT_MS,
    ];
    rig.assert_dropped(&short, probe_error::TIMEOUT, "dns_malformed");
    let tcp = [
        "dns-craft",
        "[fd77::1]:53",
        ALLOWED,
        "--tcp",
        "--trailing",
        "48",
        "--timeout-ms",
        DROPPED_TCP_TIMEOUT_MS,
    ];
    rig.assert_dropped(&tcp, probe_error::TIMEOUT, "dns_malformed");
    // One GSO send: the veth carries it as one super-packet, which the
    // world's stack cuts into two queries after TC has looked at it.
    let gso = [
        "dns-gso",
        "10.77.0.1",
        "padding-padding-padding.pkg.test",
        "tcgso.x.attacker.example",
        "--timeout-ms",
        DROPPED_UDP_TIMEOUT_MS,
    ];
    rig.assert_dropped(&gso, probe_error::TIMEOUT, "dns_malformed");
    assert_never_asked(&rig, "tcgso.x.attacker.example.");
}
