//! `oce-world`: the fake internet the sandboxed agent talks to.
//!
//! Runs in the world netns: an authoritative DNS server for a small zone
//! given on the command line, TCP echo, UDP echo and HTTP servers on world
//! host addresses, and "fresh IP" names whose every lookup hands out a new
//! address (to test learning resolved IPs). Prints `ready` on stdout once
//! every socket is bound; logs each DNS query as a JSON line on stderr.
//!
//! For the attacker's tests: UDP sinks and a SYN log that say what got
//! past the host side of the veth (`observe`), and a DNS server that sends
//! decoys before its answers, replays after them, or holds them back
//! (`tricks`). Each of those logs a JSON line too (`udp-received`,
//! `tcp-syn`, `dns-decoy`, `dns-replay`).

mod dns;
mod fresh;
mod observe;
mod servers;
mod tricks;

use std::{
    io::Write as _,
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    process::ExitCode,
    thread,
};

use anyhow::{Context as _, Result};
use clap::Parser;

use crate::{
    dns::Zone,
    fresh::{FreshIps, Prefix},
    tricks::{DecoyKind, Tricks},
};

#[derive(Parser)]
#[command(about = "DNS, TCP, UDP and HTTP servers for the end-to-end sandbox's world netns")]
struct Args {
    /// Serve DNS on ADDR:PORT, UDP and TCP (repeatable).
    #[arg(long, value_name = "ADDR:PORT")]
    dns: Vec<SocketAddr>,
    /// NAME=IP: an A (IPv4) or AAAA (IPv6) record; repeatable, also per name.
    #[arg(long, value_name = "NAME=IP", value_parser = parse_record)]
    record: Vec<(String, IpAddr)>,
    /// ALIAS=TARGET: a CNAME record (repeatable).
    #[arg(long, value_name = "ALIAS=TARGET", value_parser = parse_cname)]
    cname: Vec<(String, String)>,
    /// TTL of every answer, in seconds.
    #[arg(long, default_value_t = 60)]
    ttl: u32,
    /// TCP server: greets with `hello from ADDR:PORT`, then echoes lines.
    #[arg(long, value_name = "ADDR:PORT")]
    tcp: Vec<SocketAddr>,
    /// UDP server echoing each datagram.
    #[arg(long, value_name = "ADDR:PORT")]
    udp: Vec<SocketAddr>,
    /// HTTP/1.1 server answering 200 with body `hello from ADDR:PORT`.
    #[arg(long, value_name = "ADDR:PORT")]
    http: Vec<SocketAddr>,
    /// NAME=PREFIX: every query for NAME gets a never-seen address from
    /// PREFIX (added to lo before the answer goes out).
    #[arg(long, value_name = "NAME=PREFIX", value_parser = parse_fresh)]
    fresh_ips_for: Vec<(String, Prefix)>,
    /// A TCP (greeting + echo) server on this port of every fresh address.
    #[arg(long, value_name = "PORT")]
    fresh_tcp_port: Vec<u16>,
    /// An HTTP server on this port of every fresh address.
    #[arg(long, value_name = "PORT")]
    fresh_http_port: Vec<u16>,
    /// UDP sink: logs every datagram (`{"event":"udp-received",...}`),
    /// answers nothing.
    #[arg(long, value_name = "ADDR:PORT")]
    udp_sink: Vec<SocketAddr>,
    /// Log every IPv4 TCP SYN delivered to this netns
    /// (`{"event":"tcp-syn",...}`), through a raw socket.
    #[arg(long)]
    tcp_syn_log: bool,
    /// KIND:NAME=IP: before the genuine UDP answer to a query for NAME,
    /// send a response that does not answer it (KIND: wrong-id, wrong-name,
    /// wrong-type) carrying IP.
    #[arg(long, value_name = "KIND:NAME=IP", value_parser = tricks::parse_decoy)]
    dns_decoy: Vec<(DecoyKind, String, IpAddr)>,
    /// NAME=IP: after the genuine UDP answer to a query for NAME, send it
    /// again with the same ID and question but IP as the answer.
    #[arg(long, value_name = "NAME=IP", value_parser = parse_record)]
    dns_replay: Vec<(String, IpAddr)>,
    /// Hold each genuine UDP answer back this long.
    #[arg(long, value_name = "MS")]
    dns_delay_ms: Option<u64>,
}

fn split_pair(arg: &str) -> Result<(&str, &str), String> {
    arg.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| format!("{arg:?} is not KEY=VALUE"))
}

fn parse_record(arg: &str) -> Result<(String, IpAddr), String> {
    let (name, ip) = split_pair(arg)?;
    Ok((
        name.to_owned(),
        ip.parse().map_err(|e| format!("{ip:?}: {e}"))?,
    ))
}

fn parse_cname(arg: &str) -> Result<(String, String), String> {
    let (alias, target) = split_pair(arg)?;
    Ok((alias.to_owned(), target.to_owned()))
}

fn parse_fresh(arg: &str) -> Result<(String, Prefix), String> {
    let (name, prefix) = split_pair(arg)?;
    Ok((name.to_owned(), prefix.parse()?))
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("oce-world: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let fresh = FreshIps::new(
        args.fresh_ips_for,
        args.fresh_tcp_port,
        args.fresh_http_port,
    );
    // Shared by every server thread for the life of the process.
    let zone: &'static Zone = Box::leak(Box::new(Zone::new(
        args.record,
        args.cname,
        fresh,
        args.ttl,
    )));

    // Bind everything before serving anything, so that `ready` means every
    // socket exists and a bind error is reported instead of half a world.
    let bind_tcp =
        |addr: &SocketAddr| TcpListener::bind(addr).with_context(|| format!("binding TCP {addr}"));
    let bind_udp =
        |addr: &SocketAddr| UdpSocket::bind(addr).with_context(|| format!("binding UDP {addr}"));
    let mut dns_udp = Vec::new();
    let mut dns_tcp = Vec::new();
    for addr in &args.dns {
        dns_udp.push(bind_udp(addr)?);
        dns_tcp.push(bind_tcp(addr)?);
    }
    let tcp = args.tcp.iter().map(bind_tcp).collect::<Result<Vec<_>>>()?;
    let udp = args.udp.iter().map(bind_udp).collect::<Result<Vec<_>>>()?;
    let http = args.http.iter().map(bind_tcp).collect::<Result<Vec<_>>>()?;
    let sinks = args
        .udp_sink
        .iter()
        .map(bind_udp)
        .collect::<Result<Vec<_>>>()?;
    let syn_log = args
        .tcp_syn_log
        .then(observe::open_tcp_syn_log)
        .transpose()
        .context("opening the raw socket of --tcp-syn-log")?;
    let tricks: &'static Tricks = Box::leak(Box::new(Tricks {
        decoys: args.dns_decoy,
        replays: args.dns_replay,
        delay: args.dns_delay_ms.map(std::time::Duration::from_millis),
    }));

    // The harness adds world hosts right before starting us; an IPv6
    // address may not be routable yet (see `fresh::wait_until_local`), and
    // `ready` must mean that every server is reachable.
    let mut hosts: Vec<IpAddr> = args
        .dns
        .iter()
        .chain(&args.tcp)
        .chain(&args.udp)
        .chain(&args.http)
        .chain(&args.udp_sink)
        .map(SocketAddr::ip)
        .filter(|ip| !ip.is_unspecified())
        .collect();
    hosts.sort();
    hosts.dedup();
    for ip in hosts {
        fresh::wait_until_local(ip)?;
    }

    for socket in dns_udp {
        thread::spawn(move || dns::serve_udp(socket, zone, tricks));
    }
    for listener in dns_tcp {
        thread::spawn(move || dns::serve_tcp(listener, zone));
    }
    tcp.into_iter().for_each(servers::spawn_tcp_echo);
    udp.into_iter().for_each(servers::spawn_udp_echo);
    http.into_iter().for_each(servers::spawn_http);
    sinks.into_iter().for_each(observe::spawn_udp_sink);
    syn_log.into_iter().for_each(observe::spawn_tcp_syn_log);

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    drop(stdout);

    // Serve until killed.
    loop {
        thread::park();
    }
}
