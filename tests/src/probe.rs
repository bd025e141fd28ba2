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
        let line = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .context("oce-probe printed nothing")?;
        serde_json::from_str(line).with_context(|| format!("parsing oce-probe output {line:?}"))
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
