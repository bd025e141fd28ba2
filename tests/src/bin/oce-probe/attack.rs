//! The attacker's subcommands: what a hostile agent (root in its netns,
//! with CAP_NET_RAW and CAP_NET_ADMIN there) does to get traffic past the
//! enforcer. Each reports one [`ProbeOutcome`] JSON line (`udp-listen`
//! prints one when it is bound and one at the end).

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use clap::{Subcommand, ValueEnum};
use openclaw_egress_e2e::ProbeOutcome;

use crate::{QueryType, dns_server, dns_wire::Extras, usage_error};

mod dns_tricks;
mod forge;
mod frames;
mod socket_op;
mod srcroute;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Proto {
    Tcp,
    Udp,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Op {
    /// connect(2), then exchange (TCP: read the greeting; UDP: send the
    /// payload, read its echo).
    Connect,
    /// UDP only: sendto(2) on an unconnected socket, then read the echo.
    Sendto,
}

#[derive(Subcommand)]
pub(crate) enum Attack {
    /// One DNS query built byte by byte, with things a query should not
    /// carry (see the flags), over UDP or TCP; waits for its answer.
    DnsCraft {
        /// ADDR or ADDR:PORT (port 53).
        server: String,
        name: String,
        #[arg(long = "type", value_enum, default_value_t = QueryType::A)]
        query_type: QueryType,
        /// Over TCP (the length prefix covers everything, extras included).
        #[arg(long)]
        tcp: bool,
        /// A TXT record in the additional section (not an OPT record).
        #[arg(long)]
        extra_record: bool,
        /// An EDNS0 OPT record (implied by the other --opt-* flags).
        #[arg(long)]
        opt: bool,
        /// Set the DO bit in the OPT record.
        #[arg(long)]
        opt_do: bool,
        /// An 8-byte COOKIE option in the OPT record.
        #[arg(long)]
        opt_cookie: bool,
        /// An option of N bytes (code 65001) in the OPT record.
        #[arg(long, value_name = "N")]
        opt_option_len: Option<usize>,
        /// N bytes after everything else (after the question, or after the
        /// OPT record).
        #[arg(long, value_name = "N", default_value_t = 0)]
        trailing: usize,
        /// The question's class (1 = IN, 3 = CHAOS, 255 = ANY).
        #[arg(long, value_name = "N")]
        qclass: Option<u16>,
        /// The OPT record's owner name instead of the root.
        #[arg(long, value_name = "NAME")]
        opt_owner: Option<String>,
        /// The OPT record's TTL field (e.g. 65536: EDNS version 1).
        #[arg(long, value_name = "N")]
        opt_ttl: Option<u32>,
        /// UDP through a raw socket: the message is followed by N more bytes
        /// that the UDP length field leaves out (the field is shorter than
        /// the datagram). The answer is read on a bound UDP socket whose port
        /// the raw packet uses.
        #[arg(long, value_name = "N", conflicts_with = "tcp")]
        short_udp_length: Option<usize>,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// One sendmsg(2) with UDP_SEGMENT (UDP GSO) whose buffer holds two
    /// queries: FIRST (one segment) and SECOND (the next, no longer than
    /// FIRST). Waits for the answer to FIRST.
    DnsGso {
        server: String,
        first: String,
        second: String,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Sends a real UDP query for NAME, then at once forges its answer
    /// (same ID, ports and question, the address FORGED) and delivers it to
    /// its own socket through an AF_PACKET socket on --via (default `lo`),
    /// i.e. without crossing the veth. Reports the first answer to arrive.
    DnsForge {
        server: String,
        name: String,
        #[arg(long)]
        forged: IpAddr,
        #[arg(long = "type", value_enum, default_value_t = QueryType::A)]
        query_type: QueryType,
        #[arg(long, default_value = "lo")]
        via: String,
        #[arg(long, default_value_t = 300)]
        ttl: u32,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// Keep the socket open this long after the answer.
        #[arg(long, default_value_t = 300)]
        linger_ms: u64,
    },
    /// Sends one DNS response from FROM to TO through a raw IP socket
    /// (the source address is whatever FROM says): an answer nobody asked
    /// for, e.g. from the world netns to a port the agent has open.
    ForgeAnswer {
        #[arg(long)]
        from: SocketAddr,
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        name: String,
        #[arg(long = "type", value_enum, default_value_t = QueryType::A)]
        query_type: QueryType,
        #[arg(long)]
        answer: IpAddr,
        #[arg(long, default_value_t = 0x4242)]
        id: u16,
        #[arg(long, default_value_t = 300)]
        ttl: u32,
    },
    /// Binds a UDP socket (unspecified address, port 0), prints an outcome
    /// line with its address (`detail: listening`), then reads datagrams
    /// for SECONDS, printing a line for each (`detail: received`, the
    /// addresses if it is a DNS answer), and a final line: how many arrived
    /// (`other_responses`) and all the addresses.
    UdpListen {
        #[arg(long)]
        seconds: f64,
        #[arg(long)]
        ipv6: bool,
    },
    /// Sends one hand-built IP packet (UDP datagram or TCP SYN) out of
    /// IFNAME through an AF_PACKET socket, bypassing the IP stack and every
    /// socket hook. With --lsrr HOP (IPv4) or --srh HOP (IPv6) the header's
    /// destination is HOP and a source route names DST as the final
    /// destination.
    PacketSend {
        #[arg(long, default_value = "eth0")]
        ifname: String,
        /// The next hop's MAC address (aa:bb:cc:dd:ee:ff).
        #[arg(long)]
        dst_mac: String,
        #[arg(long, value_enum)]
        proto: Proto,
        #[arg(long)]
        src: IpAddr,
        /// Default: a random port from 40000-59999.
        #[arg(long)]
        src_port: Option<u16>,
        #[arg(long)]
        dst: SocketAddr,
        #[arg(long, default_value = "x")]
        payload: String,
        #[arg(long, conflicts_with = "srh")]
        lsrr: Option<IpAddr>,
        #[arg(long)]
        srh: Option<IpAddr>,
        /// Through a raw IP socket (IP_HDRINCL) instead: the sender's IP
        /// stack and its cgroup hooks see the packet.
        #[arg(long)]
        raw_ip: bool,
    },
    /// Creates a TUN device, turns on forwarding in this netns, and writes
    /// one IPv4 UDP datagram SRC -> DST into it: the kernel forwards it out
    /// of the default route's interface, no socket involved.
    TunForward {
        #[arg(long)]
        src: SocketAddr,
        #[arg(long)]
        dst: SocketAddr,
        #[arg(long, default_value = "x")]
        payload: String,
        #[arg(long, default_value = "oce-tun0")]
        name: String,
    },
    /// A UDP datagram to TARGET sent with a source route through VIA: IPv4
    /// LSRR through setsockopt(IP_OPTIONS), IPv6 a segment routing header
    /// through setsockopt(IPV6_RTHDR). The header's destination is VIA.
    UdpSrcroute {
        target: SocketAddr,
        #[arg(long)]
        via: IpAddr,
        #[arg(long, default_value = "x")]
        payload: String,
    },
    /// Binds a socket to the unspecified address (port 0) first, then
    /// connects or sends to TARGET; `stage` says which step failed.
    SocketOp {
        #[arg(value_enum)]
        proto: Proto,
        #[arg(value_enum)]
        op: Op,
        target: SocketAddr,
        #[arg(long, default_value = "x")]
        payload: String,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

/// Refuses to run anywhere but in a sandbox's network namespace (one the
/// harness created: `/run/netns/oce-*`): these subcommands write raw
/// frames, create TUN devices and set sysctls, which belong in a
/// throw-away netns only.
fn ensure_sandboxed() {
    use std::os::unix::fs::MetadataExt as _;
    let id = |path: &std::path::Path| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let mine = id(std::path::Path::new("/proc/self/ns/net"));
    let sandboxed = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("oce-"))
        .any(|e| mine.is_some() && id(&e.path()) == mine);
    if !sandboxed {
        usage_error("refusing to run an attack outside a sandbox netns (/run/netns/oce-*)");
    }
}

pub(crate) fn run(attack: Attack) -> ProbeOutcome {
    ensure_sandboxed();
    match attack {
        Attack::DnsCraft {
            server,
            name,
            query_type,
            tcp,
            extra_record,
            opt,
            opt_do,
            opt_cookie,
            opt_option_len,
            trailing,
            qclass,
            opt_owner,
            opt_ttl,
            short_udp_length,
            timeout_ms,
        } => {
            let extras = Extras {
                extra_record,
                opt,
                opt_do,
                opt_cookie,
                opt_option_len,
                trailing,
                qclass,
                opt_owner,
                opt_ttl,
            };
            dns_tricks::craft(
                dns_server(&server),
                &name,
                query_type,
                tcp,
                &extras,
                short_udp_length,
                Duration::from_millis(timeout_ms),
            )
        }
        Attack::DnsGso {
            server,
            first,
            second,
            timeout_ms,
        } => dns_tricks::gso(
            dns_server(&server),
            &first,
            &second,
            Duration::from_millis(timeout_ms),
        ),
        Attack::DnsForge {
            server,
            name,
            forged,
            query_type,
            via,
            ttl,
            timeout_ms,
            linger_ms,
        } => dns_tricks::forge_own_answer(
            dns_server(&server),
            &name,
            query_type,
            forged,
            &via,
            ttl,
            Duration::from_millis(timeout_ms),
            Duration::from_millis(linger_ms),
        ),
        Attack::ForgeAnswer {
            from,
            to,
            name,
            query_type,
            answer,
            id,
            ttl,
        } => forge::answer(from, to, &name, query_type, answer, id, ttl),
        Attack::UdpListen { seconds, ipv6 } => {
            if !(seconds.is_finite() && seconds >= 0.0) {
                usage_error(&format!("bad --seconds {seconds}"));
            }
            forge::listen(Duration::from_secs_f64(seconds), ipv6)
        }
        Attack::PacketSend {
            ifname,
            dst_mac,
            proto,
            src,
            src_port,
            dst,
            payload,
            lsrr,
            srh,
            raw_ip,
        } => {
            let mac = crate::packet::parse_mac(&dst_mac)
                .unwrap_or_else(|| usage_error(&format!("bad MAC address {dst_mac:?}")));
            let route = match (lsrr, srh) {
                (Some(IpAddr::V4(hop)), None) if dst.is_ipv4() && src.is_ipv4() => {
                    frames::Route::Lsrr(hop.into())
                }
                (None, Some(IpAddr::V6(hop))) if dst.is_ipv6() && src.is_ipv6() => {
                    frames::Route::Srh(hop.into())
                }
                (None, None) if dst.is_ipv4() == src.is_ipv4() => frames::Route::Direct,
                _ => usage_error("--src, --dst and --lsrr (IPv4) or --srh (IPv6) must agree"),
            };
            let src = SocketAddr::new(src, src_port.unwrap_or_else(crate::packet::random_port));
            frames::packet_send(
                &ifname,
                mac,
                proto,
                src,
                dst,
                payload.as_bytes(),
                route,
                raw_ip,
            )
        }
        Attack::TunForward {
            src,
            dst,
            payload,
            name,
        } => {
            if !(src.is_ipv4() && dst.is_ipv4()) {
                usage_error("tun-forward is IPv4 only");
            }
            frames::tun_forward(&name, src, dst, payload.as_bytes())
        }
        Attack::UdpSrcroute {
            target,
            via,
            payload,
        } => {
            if target.is_ipv4() != via.is_ipv4() {
                usage_error("TARGET and --via must be of one family");
            }
            srcroute::send(target, via, payload.as_bytes())
        }
        Attack::SocketOp {
            proto,
            op,
            target,
            payload,
            timeout_ms,
        } => socket_op::run(
            proto,
            op,
            target,
            payload.as_bytes(),
            Duration::from_millis(timeout_ms),
        ),
    }
}
