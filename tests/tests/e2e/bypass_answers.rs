//! Issue 8, the attacker's side: answers teach only what was asked. The
//! kernel may learn A/AAAA records only from an answer that matches a
//! query this workload sent and has not had answered yet (resolver
//! address, ports, protocol, DNS ID, question name and type), once. An
//! unsolicited answer, a decoy with another ID, name or type, or a replay
//! after the genuine answer teaches nothing, and counts in
//! `openclaw_egress_dns_answers_total{result="unsolicited"}`. On a workload
//! also enforced on the host side of its veth, an answer the agent forges
//! inside its own netns opens nothing there.
//!
//! Every address an attacker tries to open has a TCP server behind it,
//! reachable without the policy; every test also shows that the genuine
//! answer still opens its address.
//!
//! Today (before the fix):
//! - `an_unsolicited_answer_teaches_nothing`: the forged answer is learned
//!   and the connect to 203.0.113.66:443 succeeds (`expected connect(2) to
//!   203.0.113.66:443 to fail with EPERM, got ok`);
//! - `decoys_before_the_answer_teach_nothing`: each decoy is learned; the
//!   connect to the wrong-ID decoy's address succeeds (same message);
//! - `a_replayed_answer_teaches_nothing`: the replay is learned; the connect
//!   to its address succeeds (same message);
//! - `an_answer_forged_inside_the_agent_opens_nothing_on_the_veth`: PASSES
//!   today. The TC instance of a policy selecting both the cgroup and the
//!   veth has its own maps and learns only from answers crossing the veth,
//!   so the forged address is dropped there already (the cgroup instance
//!   does learn it today, which the test does not depend on). It guards
//!   that the fix keeps it so. It accepts a refusal by either layer, and
//!   insists that no SYN to the forged address reaches the world.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::time::Duration;

use common::{
    DNS_ANSWERS_TOTAL, Rig,
    bypass::{REFUSED_CONNECT_TIMEOUT_MS, assert_connect_refused, drop_from_port, port_of},
    poll_until, skip_unless_root,
};
use openclaw_egress_e2e::{WorldConfig, probe_error};

/// The name the agent may look up, and its genuine address.
const NAME: &str = "mirror.pkg.test";
const GENUINE: &str = "203.0.113.50";

/// Counts answers that matched no outstanding query.
fn unsolicited(rig: &Rig) -> u64 {
    rig.counter(DNS_ANSWERS_TOTAL, &[("result", "unsolicited")])
}

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .record(NAME, GENUINE)
        .tcp("203.0.113.50:443")
}

#[track_caller]
fn assert_genuine_answer_opens(rig: &Rig, args: &[&str]) {
    let answer = rig.assert_allowed(args);
    assert_eq!(answer.answers, [GENUINE], "{answer:?}");
    let greeting = rig.assert_allowed(&["tcp", "203.0.113.50:443"]);
    assert_eq!(
        greeting.detail.as_deref(),
        Some("hello from 203.0.113.50:443")
    );
}

#[test]
fn an_unsolicited_answer_teaches_nothing() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&world().tcp("203.0.113.66:443"));
    rig.assert_reachable_without_policy(&["tcp", "203.0.113.66:443"]);
    rig.apply(
        &rig.policy().fqdn_pattern("*.pkg.test", &["443/tcp"]),
        "policy.yaml",
    );
    let unsolicited_before = unsolicited(&rig);

    // The agent holds a UDP socket open; from the world, with the
    // resolver's address and port, comes an "answer" to a question it
    // never asked, for a name the policy allows.
    let listener = rig
        .sandbox
        .spawn_probe(
            Some(rig.sandbox.cgroup_path()),
            &["udp-listen", "--seconds", "10"],
        )
        .unwrap();
    let ready = listener
        .wait_for_outcome(
            |o| o.detail.as_deref() == Some("listening"),
            Duration::from_secs(5),
        )
        .unwrap();
    let to = format!("10.77.0.2:{}", port_of(&ready));
    let sent = rig
        .sandbox
        .probe_in_world(&[
            "forge-answer",
            "--from",
            "10.77.0.1:53",
            "--to",
            &to,
            "--name",
            "evil.pkg.test",
            "--answer",
            "203.0.113.66",
        ])
        .unwrap();
    sent.assert_ok();
    // It reached the agent's kernel: its socket got it (as today), or the
    // ingress hook counted it as unsolicited and kept it from the socket.
    // Either is fine; what matters is what it taught.
    poll_until(
        "the forged answer reached the agent",
        Duration::from_secs(5),
        || {
            let received = listener
                .wait_for_outcome(|o| o.detail.as_deref() == Some("received"), Duration::ZERO)
                .is_ok();
            (received || unsolicited(&rig) > unsolicited_before)
                .then_some(())
                .ok_or_else(|| "neither received nor counted".to_owned())
        },
    );

    // Nothing was learned from it.
    assert_connect_refused(&rig, "203.0.113.66:443", "no_rule");
    assert!(
        unsolicited(&rig) > unsolicited_before,
        "the unsolicited answer is counted"
    );
    // Positive control: the agent's own lookup still teaches.
    assert_genuine_answer_opens(&rig, &["dns", "10.77.0.1", NAME]);
}

#[test]
fn decoys_before_the_answer_teach_nothing() {
    if skip_unless_root() {
        return;
    }
    // Before the genuine answer to each query for NAME the world sends
    // three responses that do not answer it: another ID, another name
    // (mirror-decoy.pkg.test, also allowed), another type (AAAA asked back
    // for an A query), each carrying an address with a server.
    let decoys = [
        ("wrong-id", "203.0.113.61"),
        ("wrong-name", "203.0.113.62"),
        ("wrong-type", "203.0.113.63"),
    ];
    let mut world = world();
    for (kind, ip) in decoys {
        world = world.dns_decoy(kind, NAME, ip).tcp(&format!("{ip}:443"));
    }
    let rig = Rig::start(&world);
    for (_, ip) in decoys {
        rig.assert_reachable_without_policy(&["tcp", &format!("{ip}:443")]);
    }
    rig.apply(
        &rig.policy().fqdn_pattern("*.pkg.test", &["443/tcp"]),
        "policy.yaml",
    );
    let unsolicited_before = unsolicited(&rig);

    // The agent asks once and gets the genuine answer (its resolver code
    // skips the decoys, which did reach its socket first).
    assert_genuine_answer_opens(&rig, &["dns", "10.77.0.1", NAME]);
    let sent: Vec<String> = rig
        .world
        .log()
        .into_iter()
        .filter(|l| l.contains("\"dns-decoy\""))
        .collect();
    assert_eq!(
        sent.len(),
        decoys.len(),
        "the world sent the decoys: {sent:?}"
    );

    for (kind, ip) in decoys {
        eprintln!("decoy {kind}: {ip}");
        assert_connect_refused(&rig, &format!("{ip}:443"), "no_rule");
    }
    assert_eq!(
        unsolicited(&rig) - unsolicited_before,
        decoys.len() as u64,
        "each decoy counted as unsolicited"
    );
}

#[test]
fn a_replayed_answer_teaches_nothing() {
    if skip_unless_root() {
        return;
    }
    // Right after the genuine answer, the same ID and question again with
    // another address: the query was answered once, and that is all.
    let rig = Rig::start(
        &world()
            .dns_replay(NAME, "203.0.113.64")
            .tcp("203.0.113.64:443"),
    );
    rig.assert_reachable_without_policy(&["tcp", "203.0.113.64:443"]);
    rig.apply(
        &rig.policy().fqdn_pattern("*.pkg.test", &["443/tcp"]),
        "policy.yaml",
    );
    let unsolicited_before = unsolicited(&rig);

    // The socket stays open after the answer, so the replay reaches it.
    let args = ["dns", "10.77.0.1", NAME, "--linger-ms", "500"];
    let answer = rig.assert_allowed(&args);
    assert_eq!(answer.answers, [GENUINE], "{answer:?}");
    // (`other_responses` is 1 when the replay was delivered, as today; a
    // fixed kernel may also keep it from the socket.)
    let replays = rig
        .world
        .log()
        .into_iter()
        .filter(|l| l.contains("\"dns-replay\""))
        .count();
    assert_eq!(replays, 1, "the world sent the replay");
    rig.assert_allowed(&["tcp", "203.0.113.50:443"]);

    assert_connect_refused(&rig, "203.0.113.64:443", "no_rule");
    assert_eq!(
        unsolicited(&rig) - unsolicited_before,
        1,
        "the replay counted"
    );
}

#[test]
fn an_answer_forged_inside_the_agent_opens_nothing_on_the_veth() {
    if skip_unless_root() {
        return;
    }
    // The policy selects the cgroup and the host side of the veth. The
    // world holds its answers back 300 ms, so that the agent's own forgery
    // (same ID, ports and question: it sent the query) arrives first.
    let world = world()
        .dns_delay_ms(300)
        .tcp("203.0.113.66:443")
        .tcp_syn_log();
    let rig = Rig::start_both(&world);
    rig.assert_reachable_without_policy(&["tcp", "203.0.113.66:443"]);
    rig.apply(
        &rig.policy().fqdn_pattern("*.pkg.test", &["443/tcp"]),
        "both.yaml",
    );

    // The forged answer goes from the agent to its own socket through a
    // packet socket on `lo`: it never crosses the veth.
    let forged = rig.assert_allowed(&[
        "dns-forge",
        "10.77.0.1",
        NAME,
        "--forged",
        "203.0.113.66",
        "--linger-ms",
        "600",
    ]);
    assert_eq!(
        forged.answers,
        ["203.0.113.66"],
        "the forged answer beat the resolver's: {forged:?}"
    );

    // The cgroup layer cannot tell this forgery from the genuine answer
    // (it matches the query in every field) and may learn it; the host
    // side learned only from the genuine answer, which crossed the veth.
    // So the connect fails, and no SYN to the forged address reaches the
    // world. Expected: the SYN leaves the agent and is dropped on the veth
    // (a timeout, a TC event); a refusal by the cgroup layer (EPERM) would
    // be as safe and is accepted.
    let outcome = rig.probe(&[
        "socket-op",
        "tcp",
        "connect",
        "203.0.113.66:443",
        "--timeout-ms",
        REFUSED_CONNECT_TIMEOUT_MS,
    ]);
    assert!(
        !outcome.ok,
        "the forged address must not open: connected, {outcome:?}"
    );
    let event = drop_from_port(&rig, "the connect to the forged address", port_of(&outcome));
    assert_eq!(event.reason, "no_rule", "{event:?}");
    eprintln!(
        "dropped by the {} layer: {event:?}",
        if event.cgroup_id == 0 { "TC" } else { "cgroup" }
    );
    if outcome.error.as_deref() == Some(probe_error::TIMEOUT) {
        assert_eq!(
            event.cgroup_id, 0,
            "a SYN that left was dropped on the veth: {event:?}"
        );
    }
    let syns = rig.world.tcp_syns();
    assert!(
        !syns.iter().any(|s| s.src.port() == event.src_port),
        "a SYN to the forged address reached the world: {syns:?}"
    );
    // The genuine answer came second: the veth layer learned it, the cgroup
    // layer had already taken the forgery as the query's one answer (the
    // attacker only shuts itself out). A lookup without a forgery opens
    // the genuine address on both layers.
    rig.assert_allowed(&["dns", "10.77.0.1", NAME]);
    rig.assert_allowed(&["tcp", "203.0.113.50:443"]);
}
