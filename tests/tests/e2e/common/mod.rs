//! Helpers shared by the end-to-end tests of the enforcer: a sandbox with a
//! world and a real daemon, policy YAML writers, probes that expect a drop
//! and find its event, `status --json` and metrics of the test's policy.
//! (The policy writer, the Prometheus parser, the `monitor` reader, bounded
//! polling, temp dirs and the root check live in the harness library and
//! are re-exported.)

pub mod bypass;
pub mod kube;

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use openclaw_egress_e2e::{
    Daemon, ProbeOutcome, Sandbox, World, WorldConfig, binary_path, probe_error,
};
pub use openclaw_egress_e2e::{
    Metrics, Monitor, PolicyYaml, TempDir,
    metrics::{
        AUDIT_WOULD_DROP_TOTAL, DNS_ANSWERS_TOTAL, DNS_LEARNED_TOTAL, DNS_QUERIES_TOTAL,
        DNS_REFUSED_TOTAL, DROPS_TOTAL,
    },
    poll_until, skip_unless_root,
};
use serde_json::Value;

/// The policy name every test uses (one daemon per test, so no clash).
pub const POLICY: &str = openclaw_egress_e2e::DEFAULT_POLICY_NAME;

/// How long a drop event may take from the kernel to the daemon's log. It
/// goes through a ring buffer and an epoll wakeup, so it is normally there
/// within milliseconds; the margin is for loaded CI machines.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Timeout of TCP probes that are expected to be dropped. A dropped SYN is
/// retransmitted, never refused, so the probe only ends at its timeout;
/// shorter than the initial RTO (1 s) so that only one SYN goes out.
pub const DROPPED_TCP_TIMEOUT_MS: &str = "500";

/// Timeout of UDP probes that a TC classifier is expected to drop: unlike a
/// cgroup drop (EPERM at send), a datagram shot on the interface just never
/// gets an answer.
pub const DROPPED_UDP_TIMEOUT_MS: &str = "500";

/// Where the daemon runs, and so which hooks a test's policy uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaemonSide {
    /// In the agent netns; policies select the sandbox cgroup and probes run
    /// inside it.
    Agent,
    /// In the world netns; policies select the world's `eth0` (TC) and
    /// probes run outside the sandbox cgroup, so only TC can stop them.
    World,
    /// In the world netns; policies select the sandbox cgroup AND the
    /// world's `eth0` (both layers), and probes run inside the cgroup: a
    /// workload whose every packet also crosses the host side of its veth.
    Both,
}

/// One test's world: a sandbox, the fake internet and a real daemon.
///
/// Fields drop in declaration order: the daemon first (detaching its
/// programs), then the world servers, then the namespaces and cgroup.
pub struct Rig {
    pub daemon: Daemon,
    pub world: World,
    pub sandbox: Sandbox,
    pub side: DaemonSide,
}

impl Rig {
    /// A sandbox running `world` and `openclaw-egress daemon` in the agent
    /// netns (no policy yet).
    pub fn start(world: &WorldConfig) -> Self {
        Self::start_on(world, DaemonSide::Agent)
    }

    /// A sandbox running `world` and `openclaw-egress daemon` in the world
    /// netns, for interface (TC) policies on the world's `eth0`.
    pub fn start_tc(world: &WorldConfig) -> Self {
        Self::start_on(world, DaemonSide::World)
    }

    /// A sandbox running `world` and `openclaw-egress daemon` in the world
    /// netns, for policies on the sandbox cgroup and the world's `eth0`
    /// together ([`DaemonSide::Both`]).
    pub fn start_both(world: &WorldConfig) -> Self {
        Self::start_on(world, DaemonSide::Both)
    }

    /// [`Rig::start`] with these daemon flags (e.g. `--flow-log`).
    pub fn start_with_args(world: &WorldConfig, daemon_args: &[&str]) -> Self {
        Self::start_with(world, DaemonSide::Agent, daemon_args)
    }

    fn start_on(world: &WorldConfig, side: DaemonSide) -> Self {
        Self::start_with(world, side, &[])
    }

    fn start_with(world: &WorldConfig, side: DaemonSide, daemon_args: &[&str]) -> Self {
        let sandbox = Sandbox::new().expect("creating the sandbox");
        let world = sandbox
            .start_world(world)
            .unwrap_or_else(|e| panic!("starting oce-world: {e:#}"));
        let bin = binary_path("openclaw-egress");
        assert!(
            bin.is_file(),
            "{} is missing: run `cargo build --bins` first (or set OPENCLAW_EGRESS_BIN_DIR)",
            bin.display()
        );
        let daemon = match side {
            DaemonSide::Agent => sandbox.spawn_daemon_with_args(&bin, daemon_args),
            DaemonSide::World | DaemonSide::Both => {
                sandbox.spawn_daemon_in_world(&bin, daemon_args)
            }
        }
        .unwrap_or_else(|e| panic!("starting the daemon: {e:#}"));
        Self {
            daemon,
            world,
            sandbox,
            side,
        }
    }

    /// Starts another daemon on this sandbox's state and pin directories,
    /// as a restart would (the current one must have exited, e.g. after
    /// [`Daemon::kill`] or [`Daemon::terminate`]), and returns the old one,
    /// whose log stays readable.
    #[track_caller]
    pub fn restart_daemon(&mut self) -> Daemon {
        let bin = binary_path("openclaw-egress");
        let daemon = match self.side {
            DaemonSide::Agent => self.sandbox.spawn_daemon(&bin),
            DaemonSide::World | DaemonSide::Both => self.sandbox.spawn_daemon_in_world(&bin, &[]),
        }
        .unwrap_or_else(|e| panic!("restarting the daemon: {e:#}"));
        std::mem::replace(&mut self.daemon, daemon)
    }
}

/// [`Rig::restart_daemon`] for an agent-side rig, on its fields: usable
/// while other code holds on to the rig's sandbox (e.g. a prober thread).
#[track_caller]
pub fn restart_daemon(sandbox: &Sandbox, daemon: &mut Daemon) -> Daemon {
    let new = sandbox
        .spawn_daemon(&binary_path("openclaw-egress"))
        .unwrap_or_else(|e| panic!("restarting the daemon: {e:#}"));
    std::mem::replace(daemon, new)
}

impl Rig {
    /// The policy this rig's tests start from: on the sandbox cgroup, or
    /// (for [`Rig::start_tc`]) on the world's `eth0`, with no rules.
    pub fn policy(&self) -> PolicyYaml {
        match self.side {
            DaemonSide::Agent => PolicyYaml::for_sandbox(&self.sandbox),
            DaemonSide::World => PolicyYaml::for_interfaces(&["eth0"]),
            DaemonSide::Both => PolicyYaml::for_sandbox(&self.sandbox).interfaces(&["eth0"]),
        }
    }

    /// Writes `policy` into the scratch dir as `file` and applies it; panics
    /// unless the daemon took it. Returns the file's path.
    #[track_caller]
    pub fn apply(&self, policy: &PolicyYaml, file: &str) -> PathBuf {
        let path = policy
            .write(self.sandbox.scratch_dir(), file)
            .unwrap_or_else(|e| panic!("{e:#}"));
        self.daemon
            .apply(&path)
            .unwrap_or_else(|e| panic!("applying {}: {e:#}", path.display()));
        path
    }

    /// Runs oce-probe in the agent netns (inside the sandbox cgroup, unless
    /// this is a TC rig); panics if it could not run.
    #[track_caller]
    pub fn probe(&self, args: &[&str]) -> ProbeOutcome {
        let outcome = match self.side {
            DaemonSide::Agent | DaemonSide::Both => self.sandbox.probe(args),
            DaemonSide::World => self.sandbox.probe_outside_cgroup(args),
        };
        outcome.unwrap_or_else(|e| panic!("oce-probe {args:?}: {e:#}"))
    }

    /// Like [`Rig::probe`], for the subcommands with their own report type
    /// (`resolve-connect`, `hold`).
    #[track_caller]
    pub fn probe_json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let report = match self.side {
            DaemonSide::Agent | DaemonSide::Both => self.sandbox.probe_json(args),
            DaemonSide::World => self.sandbox.probe_json_outside_cgroup(args),
        };
        report.unwrap_or_else(|e| panic!("oce-probe {args:?}: {e:#}"))
    }

    /// Asserts that `args` works from the agent netns outside the cgroup,
    /// where no policy applies: the target is really there, so a failure
    /// inside the cgroup can only be the policy's doing. (Before a policy
    /// is applied, also what a TC rig's probes see.)
    #[track_caller]
    pub fn assert_reachable_without_policy(&self, args: &[&str]) {
        let outcome = self
            .sandbox
            .probe_outside_cgroup(args)
            .unwrap_or_else(|e| panic!("oce-probe {args:?} outside the cgroup: {e:#}"));
        assert!(
            outcome.ok,
            "baseline: {args:?} should work outside the cgroup, got {outcome:?}"
        );
    }

    /// Looks `name` up (type `qtype`) through the world's resolver
    /// `server` (e.g. `10.77.0.1` or `[fd77::1]:53`) from inside the
    /// cgroup and asserts the answer: NOERROR with `expected` addresses,
    /// in order.
    #[track_caller]
    pub fn lookup(&self, server: &str, name: &str, qtype: &str, expected: &[&str]) -> ProbeOutcome {
        let answer = self.assert_allowed(&["dns", server, name, "--type", qtype]);
        assert_eq!(
            answer.rcode.as_deref(),
            Some("NOERROR"),
            "{name}: {answer:?}"
        );
        assert_eq!(answer.answers, expected, "{name}: {answer:?}");
        answer
    }

    /// Asserts that `args` works.
    #[track_caller]
    pub fn assert_allowed(&self, args: &[&str]) -> ProbeOutcome {
        let outcome = self.probe(args);
        assert!(
            outcome.ok,
            "expected {args:?} to be allowed, got {outcome:?}"
        );
        outcome
    }

    /// Asserts that `args` fails the way a drop makes it fail (`error`),
    /// and that the daemon logged a drop event for exactly this socket with
    /// `reason`. Returns the event.
    #[track_caller]
    pub fn assert_dropped(&self, args: &[&str], error: &str, reason: &str) -> Value {
        let outcome = self.probe(args);
        assert!(
            !outcome.ok && outcome.error.as_deref() == Some(error),
            "expected {args:?} to be dropped ({error:?}), got {outcome:?}"
        );
        self.assert_event_of(args, &outcome, reason, "dropped")
    }

    /// Asserts that `args` works (an audit-mode policy lets it through) and
    /// that the daemon logged an `audited` event with `reason` for exactly
    /// this socket. Returns the event.
    #[track_caller]
    pub fn assert_audited(&self, args: &[&str], reason: &str) -> Value {
        let outcome = self.assert_allowed(args);
        self.assert_event_of(args, &outcome, reason, "audited")
    }

    /// The event of the probe that ran `args` and gave `outcome`, checked
    /// against the probe: policy, verdict, reason, direction, protocol and
    /// destination.
    #[track_caller]
    fn assert_event_of(
        &self,
        args: &[&str],
        outcome: &ProbeOutcome,
        reason: &str,
        verdict: &str,
    ) -> Value {
        let local = outcome
            .local
            .unwrap_or_else(|| panic!("{args:?}: the probe reported no local address"));
        let event = self.wait_for_drop_event(local);
        // The event must describe this probe's packet, not just any drop.
        let (proto, dst) = probe_target(args);
        for (field, expected) in [
            ("reason", Value::from(reason)),
            ("policy", POLICY.into()),
            ("verdict", verdict.into()),
            ("direction", "egress".into()),
            ("proto", proto.into()),
            ("dst", dst.ip().to_string().into()),
            ("dst_port", dst.port().into()),
        ] {
            assert_eq!(
                event[field], expected,
                "{args:?}: wrong `{field}` in the drop event {event}"
            );
        }
        event
    }

    /// [`Rig::assert_dropped`] for a TCP connect to `target`. On a cgroup
    /// rig the connect() itself is refused (EPERM, event stage `connect`);
    /// on a TC rig the SYN is dropped and the connect times out.
    #[track_caller]
    pub fn assert_tcp_dropped(&self, target: &str, reason: &str) -> Value {
        let event = self.assert_dropped(
            &["tcp", target, "--timeout-ms", DROPPED_TCP_TIMEOUT_MS],
            self.refused_connect_error(),
            reason,
        );
        assert_eq!(
            event["stage"],
            self.refusal_stage(),
            "tcp {target}: wrong stage in {event}"
        );
        event
    }

    /// How a forbidden TCP connect fails on this rig: refused at once with
    /// EPERM by the cgroup's connect hook, or timed out when TC drops the
    /// SYN.
    pub fn refused_connect_error(&self) -> &'static str {
        match self.side {
            DaemonSide::Agent | DaemonSide::Both => probe_error::PERMISSION_DENIED,
            DaemonSide::World => probe_error::TIMEOUT,
        }
    }

    /// The `stage` of the event of a refused connect on this rig.
    pub fn refusal_stage(&self) -> &'static str {
        match self.side {
            DaemonSide::Agent | DaemonSide::Both => "connect",
            DaemonSide::World => "packet",
        }
    }

    /// [`Rig::assert_dropped`] for one UDP datagram to `target`.
    #[track_caller]
    pub fn assert_udp_dropped(&self, target: &str, reason: &str) -> Value {
        self.assert_dropped(
            &["udp", target, "--payload", "x"],
            probe_error::PERMISSION_DENIED,
            reason,
        )
    }

    /// The drop event (a JSON log line of target `openclaw_egress::drop`)
    /// of the socket bound to `local`.
    #[track_caller]
    pub fn wait_for_drop_event(&self, local: SocketAddr) -> Value {
        self.daemon
            .wait_for_log(|v| is_drop_event_from(v, local), EVENT_TIMEOUT)
            .unwrap_or_else(|e| panic!("no drop event from {local}: {e:#}"))
    }

    /// `status --json`.
    #[track_caller]
    pub fn status(&self) -> Value {
        self.daemon
            .status_json()
            .unwrap_or_else(|e| panic!("status --json: {e:#}"))
    }

    /// The names of the applied policies in `status --json`.
    #[track_caller]
    pub fn policy_names(&self) -> Vec<String> {
        self.status_policies()
            .iter()
            .map(|p| match &p["name"] {
                Value::String(name) => name.clone(),
                other => panic!("status --json: a policy name is not a string: {other}"),
            })
            .collect()
    }

    /// The applied policies in `status --json`.
    #[track_caller]
    pub fn status_policies(&self) -> Vec<Value> {
        match &self.status()["policies"] {
            Value::Array(policies) => policies.clone(),
            other => panic!("status --json: `policies` is not a list: {other}"),
        }
    }

    /// The addresses `status --json` shows under the name rule `name` (an
    /// `fqdn` or an `fqdnPattern` as written in the policy) of the only
    /// applied policy.
    #[track_caller]
    pub fn status_addresses(&self, name: &str) -> BTreeSet<IpAddr> {
        let policies = self.status_policies();
        let [policy] = &policies[..] else {
            panic!("expected one applied policy, got {policies:#?}");
        };
        let names = policy["names"]
            .as_array()
            .unwrap_or_else(|| panic!("status: `names` is not a list: {policy:#}"));
        let entry = names
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("status: no name rule {name:?} in {names:#?}"));
        entry["addresses"]
            .as_array()
            .unwrap_or_else(|| panic!("status: no addresses in {entry:#}"))
            .iter()
            .map(|a| {
                a["ip"]
                    .as_str()
                    .and_then(|ip| ip.parse().ok())
                    .unwrap_or_else(|| panic!("status: bad address {a}"))
            })
            .collect()
    }

    /// `metrics` (over the API), parsed.
    #[track_caller]
    pub fn metrics(&self) -> Metrics {
        self.daemon
            .metrics()
            .unwrap_or_else(|e| panic!("metrics: {e:#}"))
    }

    /// The sum of the series of metric `name` of this test's policy that
    /// have (at least) `labels`.
    #[track_caller]
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let mut all = vec![("policy", POLICY)];
        all.extend_from_slice(labels);
        self.metrics().sum(name, &all)
    }
}

/// How much the metric `name` of this test's policy, series with (at
/// least) `labels`, grew from `before` to `after`.
pub fn delta(before: &Metrics, after: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut all = vec![("policy", POLICY)];
    all.extend_from_slice(labels);
    after.sum(name, &all) - before.sum(name, &all)
}

/// The protocol and destination of an oce-probe command line (`tcp ADDR`,
/// `udp ADDR`, `dns SERVER [--tcp]`).
#[track_caller]
pub fn probe_target(args: &[&str]) -> (&'static str, SocketAddr) {
    let addr = |text: &str| -> SocketAddr {
        text.parse()
            .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .unwrap_or_else(|_| panic!("{args:?}: no target address in {text:?}"))
    };
    match args {
        ["tcp" | "tls-hello", target, ..] => ("tcp", addr(target)),
        ["udp", target, ..] => ("udp", addr(target)),
        ["dns", server, ..] if args.contains(&"--tcp") => ("tcp", addr(server)),
        ["dns", server, ..] => ("udp", addr(server)),
        // The attacker's subcommands (see `common::bypass`).
        ["dns-craft" | "dns-gso" | "dns-forge", server, ..] if args.contains(&"--tcp") => {
            ("tcp", addr(server))
        }
        ["dns-craft" | "dns-gso" | "dns-forge", server, ..] => ("udp", addr(server)),
        ["socket-op", proto, _, target, ..] => match *proto {
            "tcp" => ("tcp", addr(target)),
            _ => ("udp", addr(target)),
        },
        _ => panic!("{args:?}: not a tcp, udp or dns probe"),
    }
}

/// True if `v` is a drop event logged for the socket bound to `local`.
pub fn is_drop_event_from(v: &Value, local: SocketAddr) -> bool {
    v["target"] == "openclaw_egress::drop"
        && v["src_port"] == local.port()
        && v["src"] == local.ip().to_string()
}

#[track_caller]
pub fn write_file(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// Spawns `command` (stdin `/dev/null`, stdout and stderr captured) and
/// waits for it, killing it after `deadline`; returns its pid (e.g. to find
/// what `openclaw-egress exec` named after itself) and its output.
#[track_caller]
pub fn spawn_and_wait(command: &mut Command, deadline: Duration) -> (u32, std::process::Output) {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(output) => (
            pid,
            output.unwrap_or_else(|e| panic!("waiting for {command:?}: {e}")),
        ),
        Err(_) => {
            // Not reaped yet (the waiting thread still blocks on it), so the
            // pid is still our child's.
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{command:?} did not finish within {deadline:?}");
        }
    }
}

/// Runs `openclaw-egress <args>` without a daemon (e.g. `validate`).
#[track_caller]
pub fn run_cli(args: &[&str]) -> std::process::Output {
    let bin = binary_path("openclaw-egress");
    Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", bin.display()))
}
