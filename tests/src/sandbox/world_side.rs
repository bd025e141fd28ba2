//! The world side of a sandbox: its hosts, its `oce-world` servers, its MAC address and sysctls.

use std::{net::IpAddr, process::Command, time::Duration};

use anyhow::{Context as _, Result, bail};

use super::{PROBE_DEADLINE, Sandbox, WORLD_IPV4, WORLD_IPV6};
use crate::{
    bins::binary_path,
    netns::ip,
    placement::Placement,
    process::{ChildGuard, run_with_deadline},
    world::{World, WorldConfig},
};

impl Sandbox {
    /// Adds `ip` to the world's `lo` (as /32 or /128), so that the agent can
    /// reach it through its default route. Adding it twice is fine.
    pub fn add_world_host(&self, ip: IpAddr) -> Result<()> {
        let (cidr, nodad) = match ip {
            IpAddr::V4(v4) => (format!("{v4}/32"), None),
            IpAddr::V6(v6) => (format!("{v6}/128"), Some("nodad")),
        };
        let mut args = vec!["-n", self.world.name(), "addr", "add", &cidr, "dev", "lo"];
        args.extend(nodad);
        match ip_tolerating_exists(&args) {
            Ok(()) => Ok(()),
            Err(err) => Err(err).context(format!("adding world host {ip}")),
        }
    }

    /// Starts `oce-world` in the world netns and waits until it serves.
    ///
    /// Every address a server listens on (other than the veth subnets,
    /// loopback and wildcards) is added as a world host first.
    pub fn start_world(&self, config: &WorldConfig) -> Result<World> {
        for ip in config.listen_ips() {
            if !on_veth_subnet(ip) && !ip.is_loopback() && !ip.is_unspecified() {
                self.add_world_host(ip)?;
            }
        }
        let mut command = Command::new(binary_path("oce-world"));
        command.args(config.to_args());
        Placement {
            cgroup_procs: None,
            netns: Some(self.world.open()?),
        }
        .apply(&mut command);
        let child = ChildGuard::spawn("oce-world", &mut command, Duration::from_secs(2))?;
        World::wait_ready(child)
    }

    /// The MAC address of the world's `eth0`: the agent's gateway, for
    /// frames built by hand (`oce-probe packet-send --dst-mac`).
    pub fn world_mac(&self) -> Result<String> {
        let output = ip(&["-n", self.world.name(), "-j", "link", "show", "dev", "eth0"])?;
        let out = String::from_utf8_lossy(&output.stdout);
        let links: serde_json::Value =
            serde_json::from_str(&out).with_context(|| format!("parsing `ip -j link`: {out}"))?;
        links[0]["address"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no address in `ip -j link`: {out}"))
    }

    /// Sets a sysctl inside the world netns (`key` as for sysctl(8), e.g.
    /// `net.ipv4.conf.all.accept_source_route`): e.g. to make the world
    /// honour source routes, so that a test can show a real bypass.
    pub fn world_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let mut command =
            self.command_in_world("sysctl", ["-q", "-w", &format!("{key}={value}")])?;
        let output = run_with_deadline(&mut command, PROBE_DEADLINE)?;
        if !output.status.success() {
            bail!(
                "sysctl -w {key}={value} in the world failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }
}

/// True for addresses of the veth link (10.77.0.0/24, fd77::/64): they are
/// never world hosts.
fn on_veth_subnet(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[..3] == WORLD_IPV4.octets()[..3],
        IpAddr::V6(v6) => v6.segments()[..4] == WORLD_IPV6.segments()[..4],
    }
}

/// Runs `ip`, treating "address already there" as success. iproute2 6.1
/// says "Error: ipv4: Address already assigned." for IPv4 and "RTNETLINK
/// answers: File exists" for IPv6.
fn ip_tolerating_exists(args: &[&str]) -> Result<()> {
    match ip(args) {
        Ok(_) => Ok(()),
        Err(err) => {
            let text = format!("{err:#}");
            if text.contains("File exists") || text.contains("already assigned") {
                Ok(())
            } else {
                Err(err)
            }
        }
    }
}
