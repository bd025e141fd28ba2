//! "Fresh IP" names: every lookup hands out an address never handed out
//! before, to test that the enforcer learns each answer (and that a
//! connection right after the lookup is never dropped).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket},
    process::Command,
    str::FromStr,
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::servers;

/// An address prefix such as `198.51.100.0/24` or `2001:db8:99::/64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Prefix {
    base: IpAddr,
    len: u8,
}

impl FromStr for Prefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not ADDR/LEN"))?;
        let base: IpAddr = ip.parse().map_err(|e| format!("{ip:?}: {e}"))?;
        let len: u8 = len.parse().map_err(|e| format!("{len:?}: {e}"))?;
        let bits = if base.is_ipv4() { 32 } else { 128 };
        if len > bits - 1 {
            return Err(format!("{s:?} leaves no room for hosts"));
        }
        Ok(Self { base, len })
    }
}

impl Prefix {
    fn bits(&self) -> u8 {
        if self.base.is_ipv4() { 32 } else { 128 }
    }

    /// The `offset`-th address of the prefix, if it is inside it.
    fn nth(&self, offset: u128) -> Option<IpAddr> {
        let host_bits = u32::from(self.bits() - self.len);
        if host_bits < 128 && offset >= (1u128 << host_bits) {
            return None;
        }
        Some(match self.base {
            IpAddr::V4(base) => {
                let mask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
                let offset = u32::try_from(offset).ok()?;
                IpAddr::V4(Ipv4Addr::from((u32::from(base) & mask) | offset))
            }
            IpAddr::V6(base) => {
                let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from((u128::from(base) & mask) | offset))
            }
        })
    }
}

/// The fresh-IP names, their prefixes and what is served on each address.
pub(crate) struct FreshIps {
    prefixes: HashMap<String, Vec<Prefix>>,
    tcp_ports: Vec<u16>,
    http_ports: Vec<u16>,
    /// Next host offset per prefix (shared by names using the same prefix,
    /// so no address is handed out twice).
    next: Mutex<HashMap<Prefix, u128>>,
}

impl FreshIps {
    /// `names` are normalised by the caller.
    pub(crate) fn new(
        names: Vec<(String, Prefix)>,
        tcp_ports: Vec<u16>,
        http_ports: Vec<u16>,
    ) -> Self {
        let mut prefixes: HashMap<String, Vec<Prefix>> = HashMap::new();
        for (name, prefix) in names {
            prefixes
                .entry(crate::dns::key(&name))
                .or_default()
                .push(prefix);
        }
        Self {
            prefixes,
            tcp_ports,
            http_ports,
            next: Mutex::default(),
        }
    }

    /// True if `key` (a normalised name) is a fresh-IP name.
    pub(crate) fn serves(&self, key: &str) -> bool {
        self.prefixes.contains_key(key)
    }

    /// A new address for `key` of the wanted family (`None` if the name has
    /// no prefix of that family), already on `lo` with its servers
    /// listening.
    pub(crate) fn allocate(&self, key: &str, ipv6: bool) -> Result<Option<IpAddr>> {
        let Some(prefix) = self
            .prefixes
            .get(key)
            .and_then(|ps| ps.iter().find(|p| p.base.is_ipv6() == ipv6))
        else {
            return Ok(None);
        };
        // Held until the address is usable, so concurrent queries cannot
        // hand out the same address or answer before it exists.
        let mut next = self.next.lock().unwrap();
        // Offset 0 is the network address; start at 1.
        let offset = next.entry(*prefix).or_insert(1);
        let Some(ip) = prefix.nth(*offset) else {
            bail!("prefix {}/{} is exhausted", prefix.base, prefix.len);
        };
        *offset += 1;
        self.bring_up(ip)?;
        Ok(Some(ip))
    }

    /// Adds `ip` to `lo` and starts the fresh-port servers on it.
    fn bring_up(&self, ip: IpAddr) -> Result<()> {
        let cidr = format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 });
        let mut command = Command::new("ip");
        command.args(["addr", "add", &cidr, "dev", "lo"]);
        if ip.is_ipv6() {
            // Usable at once, not "tentative" for a second.
            command.arg("nodad");
        }
        let output = command.output().context("running ip addr add")?;
        if !output.status.success() {
            bail!(
                "`ip addr add {cidr} dev lo` failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        wait_until_local(ip)?;
        for &port in &self.tcp_ports {
            servers::spawn_tcp_echo(bind(ip, port)?);
        }
        for &port in &self.http_ports {
            servers::spawn_http(bind(ip, port)?);
        }
        Ok(())
    }
}

/// Waits until packets to `ip` are delivered locally.
///
/// `ip addr add` returns before an IPv6 address is usable: even with
/// `nodad`, the kernel inserts its local route from a workqueue a moment
/// later (an IPv4 address's route goes in at once). A SYN arriving in
/// between finds no route (`Ip6InNoRoutes`) and is retransmitted a second
/// later, which a test of "the first SYN after a lookup is never dropped"
/// must not mistake for the enforcer's doing. So the answer only goes out
/// once a datagram sent to the address arrives there: a local send and an
/// incoming packet use the same local route.
pub(crate) fn wait_until_local(ip: IpAddr) -> Result<()> {
    const DEADLINE: Duration = Duration::from_secs(5);
    let receiver = UdpSocket::bind(SocketAddr::new(ip, 0))
        .with_context(|| format!("binding UDP {ip}:0 to check the address"))?;
    receiver.set_read_timeout(Some(Duration::from_millis(5)))?;
    let target = receiver.local_addr()?;
    let unspecified: IpAddr = match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let sender = UdpSocket::bind(SocketAddr::new(unspecified, 0))?;
    let started = Instant::now();
    let mut buf = [0; 16];
    loop {
        // Until the route is there, the send fails (no route) or the
        // datagram goes nowhere.
        if sender.send_to(b"up?", target).is_ok()
            && let Ok((_, from)) = receiver.recv_from(&mut buf)
            && from.port() == sender.local_addr()?.port()
        {
            return Ok(());
        }
        if started.elapsed() > DEADLINE {
            bail!("{ip} was not deliverable within {DEADLINE:?} of adding it");
        }
        thread::sleep(Duration::from_millis(1));
    }
}

fn bind(ip: IpAddr, port: u16) -> Result<TcpListener> {
    let addr = SocketAddr::new(ip, port);
    TcpListener::bind(addr).with_context(|| format!("binding TCP {addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_address_stays_inside_the_prefix() {
        let v4: Prefix = "198.51.100.0/30".parse().unwrap();
        assert_eq!(v4.nth(1), Some("198.51.100.1".parse().unwrap()));
        assert_eq!(v4.nth(3), Some("198.51.100.3".parse().unwrap()));
        assert_eq!(v4.nth(4), None);
        let v6: Prefix = "2001:db8:99::/64".parse().unwrap();
        assert_eq!(v6.nth(0x10), Some("2001:db8:99::10".parse().unwrap()));
        assert!("10.0.0.0/32".parse::<Prefix>().is_err());
    }
}
