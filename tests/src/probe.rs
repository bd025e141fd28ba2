//! What `oce-probe` reports: one JSON line per run.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

/// The result of one `oce-probe` run.
///
/// `ok` says whether the exchange worked (for `dns`: whether an answer came
/// back at all; the rcode is in `rcode`). `error` is one of `"timeout"`,
/// `"refused"`, `"permission denied"` or another io error text.
///
/// How a cgroup_skb egress drop looks (checked by the harness self-tests):
/// UDP (`udp`, `dns`) fails at once with `"permission denied"` (EPERM from
/// send); TCP (`tcp`, `dns --tcp`) gets `"timeout"`, because the kernel
/// ignores a failed SYN transmit and retransmits until the probe gives up.
/// `local` is set in both cases, to match the drop event by source port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    pub ok: bool,
    /// tcp: the server's greeting (or the echo, with `--send`); udp: the
    /// echoed payload; dns: the rcode; cgroup: the cgroup path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// dns: the A/AAAA addresses in the answer section, in order.
    #[serde(default)]
    pub answers: Vec<String>,
    /// dns: the CNAME targets in the answer section, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cnames: Vec<String>,
    /// dns: `NOERROR`, `NXDOMAIN`, `SERVFAIL`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    /// The socket's local address whenever it got one, also on failure, so a
    /// test can find the drop event for this probe by source port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
    /// The step that failed, for the subcommands that say (`socket-op`:
    /// `bind`, `connect`, `send` or `recv`), so that a test can tell a
    /// connect(2) refused by the kernel from a datagram dropped on its way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// DNS subcommands that keep their socket open (`dns-craft`,
    /// `dns-forge`, `dns --linger-ms`, `udp-listen`): how many responses
    /// reached the socket besides the one reported (wrong ID or question,
    /// or arriving after it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub other_responses: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The error texts `oce-probe` uses for the common failures.
pub mod probe_error {
    pub const TIMEOUT: &str = "timeout";
    pub const REFUSED: &str = "refused";
    pub const PERMISSION_DENIED: &str = "permission denied";
}

impl ProbeOutcome {
    pub fn success(detail: impl Into<String>) -> Self {
        Self {
            ok: true,
            detail: Some(detail.into()),
            ..Self::default()
        }
    }

    pub fn failure(error: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(error.into()),
            ..Self::default()
        }
    }

    /// Parses the last non-empty line of `oce-probe`'s stdout.
    pub fn parse(stdout: &str) -> Result<Self> {
        parse_last_line(stdout)
    }

    /// The local port, if the socket got one.
    pub fn local_port(&self) -> Option<u16> {
        self.local.map(|a| a.port())
    }

    /// `answers` parsed as addresses.
    pub fn answer_ips(&self) -> Vec<IpAddr> {
        self.answers.iter().filter_map(|a| a.parse().ok()).collect()
    }

    /// Panics (with the whole outcome) unless the probe succeeded.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.ok, "expected the probe to succeed, got {self:?}");
        self
    }

    /// Panics unless the probe failed with `error` (e.g.
    /// [`probe_error::PERMISSION_DENIED`]).
    #[track_caller]
    pub fn assert_error(&self, error: &str) -> &Self {
        assert!(
            !self.ok && self.error.as_deref() == Some(error),
            "expected the probe to fail with {error:?}, got {self:?}"
        );
        self
    }
}

/// What `oce-probe resolve-connect` reports: N rounds of one UDP DNS query
/// followed at once (same process, no sleep) by a TCP connect to the first
/// address of the answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveConnectReport {
    /// Rounds asked for.
    pub count: u64,
    /// Rounds whose query got an answer with at least one address.
    pub lookups_ok: u64,
    /// Rounds whose connect succeeded and whose greeting line arrived.
    pub connects_ok: u64,
    /// Distinct addresses among the answers' first addresses.
    pub distinct_addresses: u64,
    /// Every failed round, in order.
    #[serde(default)]
    pub failures: Vec<RoundFailure>,
    /// Slowest connect (from connect(2) to the established socket), in
    /// microseconds: a dropped first SYN shows as about a second (the
    /// initial retransmission timeout).
    pub max_connect_us: u64,
    /// The round (0-based) and address of that slowest connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slowest_round: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slowest_addr: Option<SocketAddr>,
    /// The whole run, in milliseconds.
    pub elapsed_ms: u64,
}

/// One failed round of `resolve-connect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundFailure {
    /// 0-based.
    pub round: u64,
    /// `lookup` (no answer or no address) or `connect` (connect or
    /// greeting).
    pub stage: String,
    /// As in [`ProbeOutcome::error`] (e.g. [`probe_error::TIMEOUT`]).
    pub error: String,
    /// The address connected to (`connect` failures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    /// The failing socket's local address, to find its drop event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
}

impl ResolveConnectReport {
    /// Panics (with the whole report) unless every round resolved and
    /// connected.
    #[track_caller]
    pub fn assert_all_ok(&self) -> &Self {
        assert!(
            self.lookups_ok == self.count && self.connects_ok == self.count,
            "expected {} lookups and connects to succeed, got {self:#?}",
            self.count
        );
        self
    }
}

/// What `oce-probe hold` reports: one TCP connection kept open, a line sent
/// and its echo read every interval.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldReport {
    /// Whether the connection (and its greeting) worked at all.
    pub connected: bool,
    /// With `--lookup`: the addresses in the answer (the connection went to
    /// the first one).
    #[serde(default)]
    pub lookup_answers: Vec<String>,
    /// The connection's destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<SocketAddr>,
    /// Its local address, to tell its packets (and drop events) apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
    pub rounds_ok: u64,
    pub rounds_failed: u64,
    /// The first failure (connect, lookup or a round), as in
    /// [`ProbeOutcome::error`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// 0-based round of the first failed round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failed_round: Option<u64>,
    /// From the connect to the end of the last round, in milliseconds.
    pub elapsed_ms: u64,
}

impl HoldReport {
    /// Panics (with the whole report) unless the connection worked and no
    /// round failed.
    #[track_caller]
    pub fn assert_all_ok(&self) -> &Self {
        assert!(
            self.connected && self.rounds_failed == 0 && self.rounds_ok > 0,
            "expected every round over the held connection to succeed, got {self:#?}"
        );
        self
    }
}

/// Parses the last non-empty line of `oce-probe`'s stdout as `T`.
pub(crate) fn parse_last_line<T: serde::de::DeserializeOwned>(stdout: &str) -> Result<T> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("oce-probe printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("parsing oce-probe output {line:?}"))
}
