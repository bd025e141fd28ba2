//! What tests do with a Rig: apply policies, probe, assert allowed or dropped, read status and metrics.

use super::*;

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
