//! Counters of the agent netns's `/proc/net/snmp` (e.g. TCP retransmissions).

use anyhow::{Context as _, Result, bail};

use super::{PROBE_DEADLINE, Sandbox};
use crate::process::run_with_deadline;

impl Sandbox {
    /// A counter of the agent netns's `/proc/net/snmp`, e.g. `("Tcp",
    /// "RetransSegs")`. The file is per network namespace; it is read by a
    /// `cat` that joined the agent netns.
    pub fn agent_snmp_counter(&self, protocol: &str, field: &str) -> Result<u64> {
        let mut command = self.command_in_agent_outside_cgroup("cat", ["/proc/net/snmp"])?;
        let output = run_with_deadline(&mut command, PROBE_DEADLINE)?;
        if !output.status.success() {
            bail!(
                "reading the agent's /proc/net/snmp failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        snmp_counter(&String::from_utf8_lossy(&output.stdout), protocol, field)
    }

    /// TCP segments the agent netns has retransmitted so far (`Tcp:
    /// RetransSegs`, SYNs included). A test takes the difference before and
    /// after what it checks: a packet dropped on its way out shows up here
    /// even when the connection eventually works.
    pub fn agent_tcp_retransmits(&self) -> Result<u64> {
        self.agent_snmp_counter("Tcp", "RetransSegs")
    }
}

/// The value of `field` in the `protocol` lines of a `/proc/net/snmp` text
/// (a header line `Tcp: Name1 Name2 ...`, then `Tcp: value1 value2 ...`).
fn snmp_counter(text: &str, protocol: &str, field: &str) -> Result<u64> {
    let prefix = format!("{protocol}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        bail!("no {protocol} lines in /proc/net/snmp:\n{text}");
    };
    let index = names
        .split_whitespace()
        .position(|n| n == field)
        .with_context(|| format!("no {protocol} {field} in /proc/net/snmp: {names}"))?;
    let value = values
        .split_whitespace()
        .nth(index)
        .with_context(|| format!("no value for {protocol} {field} in {values:?}"))?;
    value
        .parse()
        .with_context(|| format!("{protocol} {field} is not a counter: {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snmp_counter_reads_the_value_under_its_name() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Tcp: RtoAlgorithm RtoMin RetransSegs InErrs\nTcp: 1 200 17 0\n\
            Udp: InDatagrams\nUdp: 5\n";
        assert_eq!(snmp_counter(text, "Tcp", "RetransSegs").unwrap(), 17);
        assert_eq!(snmp_counter(text, "Udp", "InDatagrams").unwrap(), 5);
        assert!(snmp_counter(text, "Tcp", "Nope").is_err());
        assert!(snmp_counter(text, "Icmp", "InMsgs").is_err());
    }
}
