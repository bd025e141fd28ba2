//! Helpers shared by the end-to-end tests of the enforcer: a sandbox with a
//! world and a real daemon, policy YAML writers, probes that expect a drop
//! and find its event, a Prometheus text parser, `status --json`, a
//! `monitor --json` reader and bounded polling.
//!
//! Each test binary uses only some of these, so dead-code warnings are
//! silenced for the module as a whole rather than item by item.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use openclaw_egress_e2e::{
    Daemon, ProbeOutcome, Sandbox, World, WorldConfig, binary_path, probe_error,
};
use serde_json::Value;

/// True (after a note on stderr) when the test must be skipped: everything
/// here needs root (network namespaces, cgroups, BPF). Use as
/// `if skip_unless_root() { return; }`.
pub fn skip_unless_root() -> bool {
    if openclaw_egress_e2e::is_root() {
        return false;
    }
    eprintln!("skipped: needs root (network namespaces, cgroups, BPF)");
    true
}

/// The policy name every test uses (one daemon per test, so no clash).
pub const POLICY: &str = "agent";

/// How long a drop event may take from the kernel to the daemon's log. It
/// goes through a ring buffer and an epoll wakeup, so it is normally there
/// within milliseconds; the margin is for loaded CI machines.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Timeout of TCP probes that are expected to be dropped. A dropped SYN is
/// retransmitted, never refused, so the probe only ends at its timeout;
/// shorter than the initial RTO (1 s) so that only one SYN goes out.
pub const DROPPED_TCP_TIMEOUT_MS: &str = "500";

/// One test's world: a sandbox, the fake internet and a real daemon.
///
/// Fields drop in declaration order: the daemon first (detaching its
/// programs), then the world servers, then the namespaces and cgroup.
pub struct Rig {
    pub daemon: Daemon,
    pub world: World,
    pub sandbox: Sandbox,
}

impl Rig {
    /// A sandbox running `world` and `openclaw-egress daemon` (no policy yet).
    pub fn start(world: &WorldConfig) -> Self {
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
        let daemon = sandbox
            .spawn_daemon(&bin)
            .unwrap_or_else(|e| panic!("starting the daemon: {e:#}"));
        Self {
            daemon,
            world,
            sandbox,
        }
    }

    /// Writes `policy` into the scratch dir as `file` and applies it; panics
    /// unless the daemon took it. Returns the file's path.
    #[track_caller]
    pub fn apply(&self, policy: &PolicyYaml, file: &str) -> PathBuf {
        let path = policy.write(self.sandbox.scratch_dir(), file);
        self.daemon
            .apply(&path)
            .unwrap_or_else(|e| panic!("applying {}: {e:#}", path.display()));
        path
    }

    /// Runs oce-probe in the sandbox cgroup; panics if it could not run.
    #[track_caller]
    pub fn probe(&self, args: &[&str]) -> ProbeOutcome {
        self.sandbox
            .probe(args)
            .unwrap_or_else(|e| panic!("oce-probe {args:?}: {e:#}"))
    }

    /// Asserts that `args` works from the agent netns outside the cgroup,
    /// where no policy applies: the target is really there, so a failure
    /// inside the cgroup can only be the policy's doing.
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

    /// Asserts that `args` works inside the cgroup.
    #[track_caller]
    pub fn assert_allowed(&self, args: &[&str]) -> ProbeOutcome {
        let outcome = self.probe(args);
        assert!(
            outcome.ok,
            "expected {args:?} to be allowed, got {outcome:?}"
        );
        outcome
    }

    /// Asserts that `args` fails inside the cgroup the way a cgroup_skb drop
    /// makes it fail (`error`), and that the daemon logged a drop event for
    /// exactly this socket with `reason`. Returns the event.
    #[track_caller]
    pub fn assert_dropped(&self, args: &[&str], error: &str, reason: &str) -> Value {
        let outcome = self.probe(args);
        assert!(
            !outcome.ok && outcome.error.as_deref() == Some(error),
            "expected {args:?} to be dropped ({error:?}), got {outcome:?}"
        );
        let local = outcome
            .local
            .unwrap_or_else(|| panic!("{args:?}: the probe reported no local address"));
        let event = self.wait_for_drop_event(local);
        // The event must describe this probe's packet, not just any drop.
        let (proto, dst) = probe_target(args);
        for (field, expected) in [
            ("reason", Value::from(reason)),
            ("policy", POLICY.into()),
            ("verdict", "dropped".into()),
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

    /// [`Rig::assert_dropped`] for a TCP connect to `target`.
    #[track_caller]
    pub fn assert_tcp_dropped(&self, target: &str, reason: &str) -> Value {
        self.assert_dropped(
            &["tcp", target, "--timeout-ms", DROPPED_TCP_TIMEOUT_MS],
            probe_error::TIMEOUT,
            reason,
        )
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
        let text = self
            .daemon
            .cli_ok(&["status", "--json"])
            .unwrap_or_else(|e| panic!("status --json: {e:#}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("status --json: {e}: {text}"))
    }

    /// The applied policies in `status --json`.
    #[track_caller]
    pub fn status_policies(&self) -> Vec<Value> {
        match &self.status()["policies"] {
            Value::Array(policies) => policies.clone(),
            other => panic!("status --json: `policies` is not a list: {other}"),
        }
    }

    /// `metrics` (over the API), parsed.
    #[track_caller]
    pub fn metrics(&self) -> Metrics {
        let text = self
            .daemon
            .metrics_text()
            .unwrap_or_else(|e| panic!("metrics: {e:#}"));
        Metrics::parse(&text)
    }
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
        ["tcp", target, ..] => ("tcp", addr(target)),
        ["udp", target, ..] => ("udp", addr(target)),
        ["dns", server, ..] if args.contains(&"--tcp") => ("tcp", addr(server)),
        ["dns", server, ..] => ("udp", addr(server)),
        _ => panic!("{args:?}: not a tcp, udp or dns probe"),
    }
}

/// True if `v` is a drop event logged for the socket bound to `local`.
pub fn is_drop_event_from(v: &Value, local: SocketAddr) -> bool {
    v["target"] == "openclaw_egress::drop"
        && v["src_port"] == local.port()
        && v["src"] == local.ip().to_string()
}

/// A policy file, written as YAML text (not through a YAML library, so the
/// tests see exactly what a person would write).
#[derive(Clone, Debug)]
pub struct PolicyYaml {
    pub name: String,
    pub mode: String,
    pub cgroup_path: String,
    pub resolvers: Vec<String>,
    /// (`fqdn` | `fqdnPattern` | `cidr`, value, ports).
    pub rules: Vec<(String, String, Vec<String>)>,
}

impl PolicyYaml {
    /// An enforcing policy named [`POLICY`] on the sandbox's cgroup (as a
    /// path relative to the cgroup2 mount, as in `policies/`), with the
    /// world's DNS server on both families as resolvers, and no rules.
    pub fn for_sandbox(sandbox: &Sandbox) -> Self {
        Self {
            name: POLICY.to_owned(),
            mode: "enforce".to_owned(),
            cgroup_path: sandbox.cgroup_relative().to_owned(),
            resolvers: vec!["10.77.0.1".to_owned(), "fd77::1".to_owned()],
            rules: Vec::new(),
        }
    }

    pub fn cgroup_path(mut self, path: &str) -> Self {
        self.cgroup_path = path.to_owned();
        self
    }

    pub fn resolvers(mut self, resolvers: &[&str]) -> Self {
        self.resolvers = resolvers.iter().map(|r| (*r).to_owned()).collect();
        self
    }

    pub fn fqdn(self, name: &str, ports: &[&str]) -> Self {
        self.rule("fqdn", name, ports)
    }

    pub fn cidr(self, cidr: &str, ports: &[&str]) -> Self {
        self.rule("cidr", cidr, ports)
    }

    fn rule(mut self, kind: &str, value: &str, ports: &[&str]) -> Self {
        self.rules.push((
            kind.to_owned(),
            value.to_owned(),
            ports.iter().map(|p| (*p).to_owned()).collect(),
        ));
        self
    }

    pub fn to_yaml(&self) -> String {
        let quoted = |items: &[String]| {
            items
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut yaml = format!(
            "apiVersion: openclaw.io/v1\n\
             kind: EgressPolicy\n\
             metadata:\n  name: {}\n\
             spec:\n  mode: {}\n\
             \x20 selector:\n    cgroupPath: {}\n\
             \x20 dns:\n    resolvers: [{}]\n\
             \x20 egress:\n",
            self.name,
            self.mode,
            self.cgroup_path,
            quoted(&self.resolvers)
        );
        if self.rules.is_empty() {
            yaml.truncate(yaml.len() - 1);
            yaml.push_str(" []\n");
        }
        for (kind, value, ports) in &self.rules {
            writeln!(
                yaml,
                "    - {kind}: \"{value}\"\n      ports: [{}]",
                quoted(ports)
            )
            .expect("writing to a String");
        }
        yaml
    }

    /// Writes the policy to `dir/file` and returns the path.
    #[track_caller]
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        write_file(dir, file, &self.to_yaml())
    }
}

#[track_caller]
pub fn write_file(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// One sample of a Prometheus text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed Prometheus text exposition (format 0.0.4).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Metric family name -> type, from the `# TYPE` lines.
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Metrics {
    #[track_caller]
    pub fn parse(text: &str) -> Self {
        let mut metrics = Self::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
                metrics.types.insert(name.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') {
                metrics.samples.push(parse_sample(line));
            }
        }
        metrics
    }

    /// The metric family names (from `# TYPE`).
    pub fn names(&self) -> BTreeSet<String> {
        self.types.keys().cloned().collect()
    }

    /// The samples of metric `name`.
    pub fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The value of the series of `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// `openclaw_egress_drops_total{policy,reason,direction}`, which the
    /// daemon exports for every reason and direction from the start.
    #[track_caller]
    pub fn drops(&self, policy: &str, reason: &str, direction: &str) -> u64 {
        let labels = [
            ("policy", policy),
            ("reason", reason),
            ("direction", direction),
        ];
        let value = self
            .value(DROPS_TOTAL, &labels)
            .unwrap_or_else(|| panic!("no {DROPS_TOTAL} series {labels:?} in {self:#?}"));
        value as u64
    }

    /// Every `openclaw_egress_drops_total` series, keyed by
    /// (policy, reason, direction).
    pub fn drop_series(&self) -> BTreeMap<(String, String, String), u64> {
        self.series(DROPS_TOTAL)
            .into_iter()
            .map(|s| {
                let label = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
                (
                    (label("policy"), label("reason"), label("direction")),
                    s.value as u64,
                )
            })
            .collect()
    }
}

pub const DROPS_TOTAL: &str = "openclaw_egress_drops_total";

/// `name{k="v",...} value` or `name value` (no timestamps: the daemon
/// does not write them).
#[track_caller]
fn parse_sample(line: &str) -> Sample {
    let bad = || -> ! { panic!("bad sample line {line:?}") };
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (labels, rest) = parse_labels(&line[open + 1..]).unwrap_or_else(|| bad());
            (&line[..open], labels, rest)
        }
        None => {
            let (name, rest) = line.split_once(' ').unwrap_or_else(|| bad());
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.trim().parse().unwrap_or_else(|_| bad());
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// Parses `k="v",k2="v2"}` and returns the labels and what follows the `}`.
fn parse_labels(mut text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches(',');
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        text = &rest[end + 1..];
    }
}

/// Calls `check` until it returns `Ok`, at most for `timeout`; panics with
/// `what` and the last `Err` otherwise. For conditions that settle
/// asynchronously, instead of sleeping for a guessed time.
#[track_caller]
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not reached within {timeout:?}; last: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A running `openclaw-egress monitor --json`, its stdout read line by line
/// on a thread; killed on drop.
pub struct Monitor {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line received so far, for failure messages.
    seen: Vec<String>,
}

impl Monitor {
    pub fn spawn(daemon: &Daemon) -> Self {
        let mut child = daemon
            .cli_command(&["monitor", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning monitor --json: {e}"));
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next JSON line for which `predicate` holds (earlier lines that do
    /// not match are skipped), waiting up to `timeout`.
    pub fn next_matching(
        &mut self,
        mut predicate: impl FnMut(&Value) -> bool,
        timeout: Duration,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            self.seen.push(line.clone());
            if let Ok(value) = serde_json::from_str::<Value>(&line)
                && predicate(&value)
            {
                return Some(value);
            }
        }
    }

    pub fn seen(&self) -> &[String] {
        &self.seen
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        // Our own child, not reaped yet: the pid cannot have been reused.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory under $TMPDIR removed on drop, for tests that need files but
/// no sandbox.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!("oce-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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
