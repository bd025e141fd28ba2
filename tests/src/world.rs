//! The fake internet: `oce-world` running in the world netns.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Result, bail};
use serde::Deserialize;

use crate::process::{ChildGuard, Stream};

/// What `oce-world` serves; a builder over its command line.
///
/// Addresses are strings because they are test literals; a malformed one
/// panics at the call site.
#[derive(Clone, Debug, Default)]
pub struct WorldConfig {
    pub dns: Vec<SocketAddr>,
    pub records: Vec<(String, IpAddr)>,
    pub cnames: Vec<(String, String)>,
    pub ttl: Option<u32>,
    pub tcp: Vec<SocketAddr>,
    pub udp: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
    /// (name, prefix): every query for name gets a new address from prefix.
    pub fresh_ips: Vec<(String, String)>,
    pub fresh_tcp_ports: Vec<u16>,
    pub fresh_http_ports: Vec<u16>,
}

#[track_caller]
fn socket_addr(addr: &str) -> SocketAddr {
    addr.parse()
        .unwrap_or_else(|e| panic!("bad socket address {addr:?}: {e}"))
}

impl WorldConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve DNS on `addr` (UDP and TCP), e.g. `"10.77.0.1:53"`.
    #[track_caller]
    pub fn dns(mut self, addr: &str) -> Self {
        self.dns.push(socket_addr(addr));
        self
    }

    /// An A (IPv4) or AAAA (IPv6) record; several per name are allowed.
    #[track_caller]
    pub fn record(mut self, name: &str, ip: &str) -> Self {
        let ip = ip.parse().unwrap_or_else(|e| panic!("bad IP {ip:?}: {e}"));
        self.records.push((name.to_owned(), ip));
        self
    }

    /// `alias` is a CNAME for `target`.
    pub fn cname(mut self, alias: &str, target: &str) -> Self {
        self.cnames.push((alias.to_owned(), target.to_owned()));
        self
    }

    pub fn ttl(mut self, seconds: u32) -> Self {
        self.ttl = Some(seconds);
        self
    }

    /// A TCP server: greets with `hello from ADDR:PORT`, then echoes lines.
    #[track_caller]
    pub fn tcp(mut self, addr: &str) -> Self {
        self.tcp.push(socket_addr(addr));
        self
    }

    /// A UDP echo server.
    #[track_caller]
    pub fn udp(mut self, addr: &str) -> Self {
        self.udp.push(socket_addr(addr));
        self
    }

    /// An HTTP/1.1 server answering `200 OK`, body `hello from ADDR:PORT`.
    #[track_caller]
    pub fn http(mut self, addr: &str) -> Self {
        self.http.push(socket_addr(addr));
        self
    }

    /// Every query for `name` gets a never-seen address from `prefix` (e.g.
    /// `198.51.100.0/24`, `2001:db8:99::/64`), added to the world before the
    /// answer goes out; the fresh TCP/HTTP ports are served on it.
    pub fn fresh_ips(mut self, name: &str, prefix: &str) -> Self {
        self.fresh_ips.push((name.to_owned(), prefix.to_owned()));
        self
    }

    pub fn fresh_tcp_port(mut self, port: u16) -> Self {
        self.fresh_tcp_ports.push(port);
        self
    }

    pub fn fresh_http_port(mut self, port: u16) -> Self {
        self.fresh_http_ports.push(port);
        self
    }

    /// `oce-world`'s arguments.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, value: String| {
            args.push(flag.to_owned());
            args.push(value);
        };
        self.dns.iter().for_each(|a| push("--dns", a.to_string()));
        self.records
            .iter()
            .for_each(|(n, ip)| push("--record", format!("{n}={ip}")));
        self.cnames
            .iter()
            .for_each(|(a, t)| push("--cname", format!("{a}={t}")));
        if let Some(ttl) = self.ttl {
            push("--ttl", ttl.to_string());
        }
        self.tcp.iter().for_each(|a| push("--tcp", a.to_string()));
        self.udp.iter().for_each(|a| push("--udp", a.to_string()));
        self.http.iter().for_each(|a| push("--http", a.to_string()));
        self.fresh_ips
            .iter()
            .for_each(|(n, p)| push("--fresh-ips-for", format!("{n}={p}")));
        self.fresh_tcp_ports
            .iter()
            .for_each(|p| push("--fresh-tcp-port", p.to_string()));
        self.fresh_http_ports
            .iter()
            .for_each(|p| push("--fresh-http-port", p.to_string()));
        args
    }

    /// Every address a server listens on.
    pub(crate) fn listen_ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.dns
            .iter()
            .chain(&self.tcp)
            .chain(&self.udp)
            .chain(&self.http)
            .map(SocketAddr::ip)
    }
}

/// One DNS query as `oce-world` logged it (a JSON line on its stderr).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct DnsQueryLog {
    /// `udp` or `tcp`.
    pub proto: String,
    pub client: SocketAddr,
    /// As asked, lower-cased, with the trailing dot.
    pub name: String,
    #[serde(rename = "type")]
    pub query_type: String,
    pub rcode: String,
    pub answers: Vec<String>,
}

/// A running `oce-world`; stopped on drop.
pub struct World {
    pub(crate) child: ChildGuard,
}

impl World {
    /// How long `oce-world` may take to bind its sockets.
    pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);

    /// Waits for `ready` on stdout (printed once every socket is bound).
    pub(crate) fn wait_ready(mut child: ChildGuard) -> Result<Self> {
        let ready = child.output().wait_for(
            |l| l.stream == Stream::Stdout && l.text == "ready",
            Self::READY_TIMEOUT,
        );
        if ready.is_none() {
            // The pipes close a moment before the exit status is there.
            if let Some(status) = child.wait_exit(Duration::from_secs(1)) {
                return Err(child.exited_error(status));
            }
            bail!(
                "oce-world did not print `ready` within {:?}; its output:\n{}",
                Self::READY_TIMEOUT,
                child.output().dump()
            );
        }
        Ok(Self { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Everything `oce-world` logged (stderr), one entry per line.
    pub fn log(&self) -> Vec<String> {
        self.child
            .output()
            .lines()
            .into_iter()
            .filter(|l| l.stream == Stream::Stderr)
            .map(|l| l.text)
            .collect()
    }

    /// The DNS queries the world has answered so far.
    pub fn dns_queries(&self) -> Vec<DnsQueryLog> {
        self.log()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until the world has answered a query for `name` (with or
    /// without the trailing dot, any case).
    pub fn wait_for_dns_query(&self, name: &str, timeout: Duration) -> Option<DnsQueryLog> {
        let wanted = name.trim_end_matches('.').to_ascii_lowercase();
        self.child
            .output()
            .wait_for(
                |l| {
                    serde_json::from_str::<DnsQueryLog>(&l.text)
                        .is_ok_and(|q| q.name.trim_end_matches('.') == wanted)
                },
                timeout,
            )
            .and_then(|l| serde_json::from_str(&l.text).ok())
    }
}
