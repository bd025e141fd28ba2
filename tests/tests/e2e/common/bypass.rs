//! Helpers for the attacker's end-to-end tests (`bypass_*.rs`): drop events
//! found by what a hand-built packet carried, and "nothing arrived" checks
//! against the world's UDP sinks and SYN log.

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use openclaw_egress_e2e::{DropEvent, ProbeOutcome, World};

use super::{EVENT_TIMEOUT, Rig};

/// How long a test waits for a datagram that must NOT arrive. A packet
/// crosses the veth in microseconds; the margin is for a loaded machine.
pub const ARRIVAL_WAIT: Duration = Duration::from_secs(1);

/// How long a test waits for a datagram that must arrive.
pub const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(5);

/// A payload no other probe of this process sends, so that the world's
/// sink log shows whether this very datagram arrived.
pub fn marker(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Panics unless a UDP sink of `world` received `payload`.
#[track_caller]
pub fn assert_arrived(world: &World, payload: &str, what: &str) {
    assert!(
        world
            .wait_for_udp_payload(payload, ARRIVAL_TIMEOUT)
            .is_some(),
        "{what}: the datagram {payload:?} never reached the world; sinks got {:#?}",
        world.udp_received()
    );
}

/// Panics if a UDP sink of `world` received `payload` (waiting
/// [`ARRIVAL_WAIT`] for it).
#[track_caller]
pub fn assert_not_arrived(world: &World, payload: &str, what: &str) {
    if let Some(got) = world.wait_for_udp_payload(payload, ARRIVAL_WAIT) {
        panic!("{what}: the datagram reached the world: {got:?}");
    }
}

/// The first drop event (from the daemon's start) for which `predicate`
/// holds; panics with the daemon's events if none comes within
/// [`EVENT_TIMEOUT`].
#[track_caller]
pub fn wait_for_drop(
    rig: &Rig,
    what: &str,
    predicate: impl FnMut(&DropEvent) -> bool,
) -> DropEvent {
    rig.daemon
        .wait_for_drop_event(predicate, EVENT_TIMEOUT)
        .unwrap_or_else(|_| {
            panic!(
                "{what}: no such drop event; events so far: {:#?}",
                rig.daemon.drop_events()
            )
        })
}

/// The drop event of a packet sent from source port `port` (hand-built
/// packets and sockets bound to the unspecified address are matched by
/// port, the address being the agent's or unspecified).
#[track_caller]
pub fn drop_from_port(rig: &Rig, what: &str, port: u16) -> DropEvent {
    wait_for_drop(rig, what, |e| e.src_port == port)
}

/// Panics unless `event` is a `no_rule` drop by the TC layer, i.e. on the
/// host side of the veth (TC programs see no socket: cgroup id 0).
#[track_caller]
pub fn assert_dropped_on_veth(event: &DropEvent) {
    assert_eq!(
        (event.reason.as_str(), event.cgroup_id),
        ("no_rule", 0),
        "dropped on the veth: {event:?}"
    );
}

/// The source port of a probe's socket or hand-built packet.
#[track_caller]
pub fn port_of(outcome: &ProbeOutcome) -> u16 {
    outcome
        .local_port()
        .unwrap_or_else(|| panic!("the probe reported no local port: {outcome:?}"))
}

/// The timeout of connects expected to be refused or dropped: shorter than
/// the initial SYN retransmission (1 s).
pub const REFUSED_CONNECT_TIMEOUT_MS: &str = super::DROPPED_TCP_TIMEOUT_MS;

/// Asserts that a TCP connect from inside the cgroup to `target` is refused
/// the way a cgroup drop looks once agents learn at once that they are
/// blocked (issue 8): connect(2) itself fails with EPERM, and the daemon
/// logs a drop event with `reason` for this socket (bound first, so its
/// port is known before any packet exists; the event's source address is
/// then the unspecified one or the agent's). Returns the event.
#[track_caller]
pub fn assert_connect_refused(rig: &Rig, target: &str, reason: &str) -> DropEvent {
    let args = [
        "socket-op",
        "tcp",
        "connect",
        target,
        "--timeout-ms",
        REFUSED_CONNECT_TIMEOUT_MS,
    ];
    let outcome = rig
        .sandbox
        .probe(&args)
        .unwrap_or_else(|e| panic!("oce-probe {args:?}: {e:#}"));
    assert!(
        !outcome.ok
            && outcome.error.as_deref()
                == Some(openclaw_egress_e2e::probe_error::PERMISSION_DENIED)
            && outcome.stage.as_deref() == Some("connect"),
        "expected connect(2) to {target} to fail with EPERM, got {outcome:?}"
    );
    let port = port_of(&outcome);
    let event = drop_from_port(rig, &format!("connect to {target}"), port);
    let dst: std::net::SocketAddr = target.parse().expect("a socket address");
    assert_eq!(event.dst_addr(), Some(dst), "{event:?}");
    assert_eq!(event.reason, reason, "{event:?}");
    assert_eq!(event.verdict, "dropped", "{event:?}");
    event
}
