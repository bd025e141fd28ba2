//! The daemon's local API: newline-delimited JSON over a unix socket.
//!
//! One request per connection. Every request gets one response line, except
//! `monitor`, which gets a stream of `event` lines until the client hangs up.
//! The socket is created mode 0600: only root may change policies.

pub mod client;
pub mod dns_types;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/openclaw-egress/api.sock";
/// Environment variable overriding [`DEFAULT_SOCKET`] for every subcommand.
pub const SOCKET_ENV: &str = "OPENCLAW_EGRESS_SOCKET";

/// The longest request line (newline included) the daemon reads; a policy
/// file is a few KiB, the largest that fits the kernel's maps well under
/// this. The client refuses to send more, the daemon answers more with an
/// error.
pub const MAX_REQUEST_BYTES: u64 = 4 << 20;

/// [`MAX_REQUEST_BYTES`] for messages.
pub const MAX_REQUEST_TEXT: &str = "4 MiB (4194304 bytes)";

pub fn default_socket() -> PathBuf {
    std::env::var_os(SOCKET_ENV).map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from)
}

/// Changes to a policy made by whoever applies it, e.g. `exec`, which runs a
/// command under a policy in a cgroup of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    /// Apply under this name instead of `metadata.name`.
    pub name: Option<String>,
    /// Select only this cgroup (absolute path) instead of `spec.selector`.
    pub cgroup: Option<PathBuf>,
    /// Audit mode whatever `spec.mode` says (`exec --learn`).
    #[serde(default)]
    pub audit: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Validate a policy and swap it in (replacing a policy of the same name).
    Apply {
        /// File name, for error messages.
        source: String,
        yaml: String,
        /// Changes made by the caller (e.g. `exec`'s own name and cgroup).
        #[serde(default)]
        overrides: Overrides,
    },
    /// Remove a policy: its workload is no longer filtered.
    Remove {
        name: String,
    },
    Status,
    /// The Prometheus text exposition, as served on /metrics.
    Metrics,
    /// Stream drop events (and allowed flows, under `daemon --flow-log`).
    Monitor,
    /// Record everything a policy's workloads do (allowed connections, DNS
    /// questions, answers' addresses) and stream it, until the client hangs
    /// up: the first line is `learning`, then `event` lines.
    Learn {
        policy: String,
    },
    /// Remove every policy and every pin, then stop the daemon.
    Uninstall,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    Applied(ApplyReport),
    Removed {
        name: String,
    },
    Uninstalled {
        policies: Vec<String>,
    },
    Status(StatusReport),
    Metrics {
        text: String,
    },
    Event(FlowRecord),
    /// The start of a `learn` stream: the policy as applied.
    Learning(LearningStart),
    Error {
        message: String,
    },
}

/// What a learner needs to know of the policy it watches.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LearningStart {
    pub policy: String,
    /// `enforce` or `audit`.
    pub mode: String,
    pub resolvers: Vec<std::net::IpAddr>,
    /// The policy file as applied (its selector is the proposal's).
    pub yaml: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyReport {
    pub name: String,
    /// True when an older version of the policy was replaced.
    pub replaced: bool,
    pub cgroup: Option<PathBuf>,
    pub interfaces: Vec<String>,
    /// Names and the addresses they resolved to at apply time.
    pub names: Vec<NameStatus>,
    /// Things that did not stop the apply but deserve attention (e.g. a name
    /// that did not resolve yet: it stays closed and is retried).
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub metrics_addr: Option<String>,
    /// The daemon's `--state-dir` (`exec` keeps its command from writing
    /// there).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    pub policies: Vec<PolicyStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyStatus {
    pub name: String,
    pub mode: String,
    pub source: String,
    pub cgroup: Option<PathBuf>,
    pub interfaces: Vec<String>,
    /// Every workload filtered, one datapath instance each (e.g.
    /// `cgroup /sys/fs/cgroup/x`, `interface veth1`, `pod ns/name`).
    pub workloads: Vec<String>,
    /// RFC 3339.
    pub applied_at: String,
    pub rules: usize,
    pub drops: Vec<DropCount>,
    pub events_lost: u64,
    /// Kernel memory of the policy's maps, over all its workloads.
    #[serde(default)]
    pub map_memory_bytes: u64,
    pub names: Vec<NameStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DropCount {
    pub verdict: String,
    pub direction: String,
    pub reason: String,
    pub count: u64,
}

/// One `fqdn` or `fqdnPattern` rule and the addresses it currently allows,
/// whether the daemon resolved them or the kernel learned them from the
/// agent's own DNS answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NameStatus {
    /// The name or the pattern.
    pub name: String,
    pub addresses: Vec<LearnedAddress>,
    /// Seconds until the daemon resolves the name again (`fqdn` rules only).
    pub next_refresh_secs: Option<u64>,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LearnedAddress {
    pub ip: std::net::IpAddr,
    /// Seconds until the address stops allowing new connections (0: expired).
    pub expires_in_secs: u64,
}

/// A flow as shown to people and SIEMs: dropped, or in audit mode
/// would-be dropped; allowed (the first packet of a connection, under
/// `daemon --flow-log` or while learning); or, while learning, a DNS
/// question or an address of an answer. One schema for all of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// RFC 3339 with milliseconds.
    pub time: String,
    pub policy: String,
    /// `dropped`, `audited` or `allowed`.
    pub verdict: String,
    /// Why it was (or would have been) dropped; `allowed` for allowed ones.
    pub reason: String,
    pub direction: String,
    /// `packet` (a packet: for drops, the one dropped; for allowed flows,
    /// the connection's first), `connect` (a `connect()` or UDP `sendmsg()`
    /// was refused with EPERM before any packet: `src` is then the socket's
    /// bound address, often unspecified), `dns_question` (an allowed DNS
    /// question, recorded while learning) or `dns_answer` (an address in a
    /// DNS answer, recorded while learning: `dst` is the address, `src` the
    /// resolver, `dns_name` the question).
    pub stage: String,
    /// `tcp`, `udp`, `icmp`, `icmpv6` or the protocol number.
    pub proto: String,
    pub src: Option<std::net::IpAddr>,
    pub src_port: u16,
    pub dst: Option<std::net::IpAddr>,
    pub dst_port: u16,
    pub cgroup_id: u64,
    /// The DNS question a `dns_denied` drop refused, or that a
    /// `dns_question` or `dns_answer` record is about.
    pub dns_name: Option<String>,
    /// The question's type (`A`, `AAAA`, or its number) with `dns_name`.
    #[serde(default)]
    pub dns_type: Option<String>,
    /// The TLS server name or HTTP `Host` a connection was refused for
    /// (`sni_denied`, `host_denied`), when one was read.
    pub server_name: Option<String>,
    /// The rule that allowed an allowed flow (its `fqdn`, `fqdnPattern` or
    /// `cidr`), when known (not for connections allowed after their first
    /// bytes were inspected).
    #[serde(default)]
    pub rule: Option<String>,
}

impl std::fmt::Display for FlowRecord {
    /// One human-readable line, e.g.
    /// `2026-11-25T03:19:10.123Z dropped egress tcp 10.77.0.2:40000 -> 203.0.113.20:443 no_rule policy=openclaw-agent`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoint = |ip: Option<std::net::IpAddr>, port: u16| match (ip, port) {
            (None, _) => "?".to_string(),
            (Some(ip), 0) => ip.to_string(),
            (Some(std::net::IpAddr::V6(ip)), port) => format!("[{ip}]:{port}"),
            (Some(ip), port) => format!("{ip}:{port}"),
        };
        write!(
            f,
            "{} {} {} {} {} -> {} {} policy={}",
            self.time,
            self.verdict,
            self.direction,
            self.proto,
            endpoint(self.src, self.src_port),
            endpoint(self.dst, self.dst_port),
            self.reason,
            self.policy,
        )?;
        if let Some(name) = &self.dns_name {
            write!(f, " name={name}")?;
        }
        if let Some(kind) = &self.dns_type {
            write!(f, " type={kind}")?;
        }
        if let Some(name) = &self.server_name {
            write!(f, " server_name={name}")?;
        }
        if let Some(rule) = &self.rule {
            write!(f, " rule={rule}")?;
        }
        if self.stage == "connect" {
            f.write_str(" (refused at connect)")?;
        }
        Ok(())
    }
}
