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
    /// UDP sinks: log every datagram that arrives ([`World::udp_received`]),
    /// answer nothing.
    pub udp_sinks: Vec<SocketAddr>,
    /// Log every TCP SYN delivered to the world over IPv4
    /// ([`World::tcp_syns`]), whether or not a server listens.
    pub tcp_syn_log: bool,
    /// (kind, name, address): before the genuine UDP answer to a query for
    /// name, a decoy response carrying address (see [`WorldConfig::dns_decoy`]).
    pub dns_decoys: Vec<(String, String, IpAddr)>,
    /// (name, address): after the genuine UDP answer to a query for name, a
    /// second response with the same ID and question carrying address.
    pub dns_replays: Vec<(String, IpAddr)>,
    /// Wait this long before each genuine UDP answer.
    pub dns_delay_ms: Option<u64>,
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

    /// A UDP sink on `addr`: every datagram is logged (a JSON line, see
    /// [`World::udp_received`]), none is answered.
    #[track_caller]
    pub fn udp_sink(mut self, addr: &str) -> Self {
        self.udp_sinks.push(socket_addr(addr));
        self
    }

    /// Logs every IPv4 TCP SYN the world's stack receives (a raw socket),
    /// also for ports nothing listens on ([`World::tcp_syns`]).
    pub fn tcp_syn_log(mut self) -> Self {
        self.tcp_syn_log = true;
        self
    }

    /// Before the genuine answer to each UDP query for `name`, the world
    /// sends a response that does not answer it, carrying `ip`: `kind` is
    /// `wrong-id` (another DNS ID), `wrong-name` (the question's first label
    /// with `-decoy` appended, still under the same parent) or `wrong-type`
    /// (the question's type swapped between A and AAAA).
    #[track_caller]
    pub fn dns_decoy(mut self, kind: &str, name: &str, ip: &str) -> Self {
        assert!(
            ["wrong-id", "wrong-name", "wrong-type"].contains(&kind),
            "bad decoy kind {kind:?}"
        );
        let ip = ip.parse().unwrap_or_else(|e| panic!("bad IP {ip:?}: {e}"));
        self.dns_decoys.push((kind.to_owned(), name.to_owned(), ip));
        self
    }

    /// After the genuine answer to each UDP query for `name`, the world
    /// sends it again with the same ID and question but `ip` as the answer
    /// (a replayed or duplicated response).
    #[track_caller]
    pub fn dns_replay(mut self, name: &str, ip: &str) -> Self {
        let ip = ip.parse().unwrap_or_else(|e| panic!("bad IP {ip:?}: {e}"));
        self.dns_replays.push((name.to_owned(), ip));
        self
    }

    /// Holds each genuine UDP answer back for `ms` milliseconds (decoys go
    /// out at once).
    pub fn dns_delay_ms(mut self, ms: u64) -> Self {
        self.dns_delay_ms = Some(ms);
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
        self.udp_sinks
            .iter()
            .for_each(|a| push("--udp-sink", a.to_string()));
        self.dns_decoys
            .iter()
            .for_each(|(k, n, ip)| push("--dns-decoy", format!("{k}:{n}={ip}")));
        self.dns_replays
            .iter()
            .for_each(|(n, ip)| push("--dns-replay", format!("{n}={ip}")));
        if let Some(ms) = self.dns_delay_ms {
            push("--dns-delay-ms", ms.to_string());
        }
        if self.tcp_syn_log {
            args.push("--tcp-syn-log".to_owned());
        }
        args
    }

    /// Every address a server listens on.
    pub(crate) fn listen_ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.dns
            .iter()
            .chain(&self.tcp)
            .chain(&self.udp)
            .chain(&self.http)
            .chain(&self.udp_sinks)
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

/// One datagram a UDP sink of `oce-world` received.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct UdpReceived {
    /// The sink's address (the datagram's destination).
    pub local: SocketAddr,
    /// Where it came from.
    pub peer: SocketAddr,
    pub len: usize,
    /// The payload, lossily as UTF-8.
    pub payload: String,
}

/// One TCP SYN the world's stack received (IPv4).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TcpSyn {
    pub src: SocketAddr,
    pub dst: SocketAddr,
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

    /// JSON lines of `event` type `event`, parsed as `T`.
    fn events<T: serde::de::DeserializeOwned>(&self, event: &str) -> Vec<T> {
        self.log()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == event)
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()
    }

    /// Every datagram the UDP sinks have received so far.
    pub fn udp_received(&self) -> Vec<UdpReceived> {
        self.events("udp-received")
    }

    /// Waits until a UDP sink has received a datagram whose payload is
    /// `payload`.
    pub fn wait_for_udp_payload(&self, payload: &str, timeout: Duration) -> Option<UdpReceived> {
        self.child
            .output()
            .wait_for(
                |l| {
                    serde_json::from_str::<serde_json::Value>(&l.text)
                        .is_ok_and(|v| v["event"] == "udp-received" && v["payload"] == payload)
                },
                timeout,
            )
            .and_then(|l| serde_json::from_str(&l.text).ok())
    }

    /// The clients of every DNS message the world could not decode (it
    /// answered FORMERR), e.g. a query with an OPT record it rejects.
    pub fn dns_undecodable_clients(&self) -> Vec<SocketAddr> {
        #[derive(Deserialize)]
        struct Undecodable {
            client: SocketAddr,
        }
        self.events::<Undecodable>("dns-undecodable")
            .into_iter()
            .map(|u| u.client)
            .collect()
    }

    /// Every TCP SYN logged so far (with [`WorldConfig::tcp_syn_log`]).
    pub fn tcp_syns(&self) -> Vec<TcpSyn> {
        self.events("tcp-syn")
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
