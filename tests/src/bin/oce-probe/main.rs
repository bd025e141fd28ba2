//! `oce-probe`: one network exchange from inside the sandbox, reported as a
//! single JSON line ([`ProbeOutcome`]) on stdout. Two subcommands run a
//! longer exchange in one process and report it as a JSON line of their own:
//! `resolve-connect` ([`openclaw_egress_e2e::ResolveConnectReport`]) and
//! `hold` ([`openclaw_egress_e2e::HoldReport`]).
//!
//! The attacker's subcommands (`attack`) build queries, answers, frames and
//! source routes by hand (`dns_wire`, `packet`); see `attack.rs`.
//!
//! The exit code is 0 whether the exchange worked or not (the JSON says);
//! only usage errors exit non-zero. The harness starts it in the agent netns
//! and, usually, inside the sandbox cgroup.

mod attack;
mod connect_rate;
mod dns;
mod dns_wire;
mod hold;
mod knock;
mod net;
mod packet;
mod resolve_connect;
mod tls_hello;

use std::{
    io::{BufRead, BufReader, Write as _},
    net::SocketAddr,
    time::Duration,
};

use clap::{Parser, Subcommand, ValueEnum};
use openclaw_egress_e2e::ProbeOutcome;

#[derive(Parser)]
#[command(about = "One TCP/UDP/DNS exchange, reported as a JSON line")]
struct Cli {
    #[command(subcommand)]
    command: Probe,
}

#[derive(Subcommand)]
enum Probe {
    /// Connect, read the greeting line, optionally send a line and read the
    /// echo.
    Tcp {
        target: SocketAddr,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        #[arg(long)]
        send: Option<String>,
    },
    /// Send one datagram and wait for the echo.
    Udp {
        target: SocketAddr,
        #[arg(long)]
        payload: String,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// One DNS query, no retries. SERVER is ADDR or ADDR:PORT (port 53).
    Dns {
        server: String,
        name: String,
        #[arg(long = "type", value_enum, default_value_t = QueryType::A)]
        query_type: QueryType,
        /// Over TCP instead of UDP.
        #[arg(long)]
        tcp: bool,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// UDP: keep the socket open this long after the answer, counting
        /// what else arrives (`other_responses`), e.g. a replayed answer.
        #[arg(long, default_value_t = 0)]
        linger_ms: u64,
    },
    /// COUNT rounds of: one UDP DNS query for NAME (no retries), then at
    /// once a TCP connect to the first address of the answer on PORT,
    /// reading the greeting, then close. Reports a ResolveConnectReport.
    ResolveConnect {
        server: String,
        name: String,
        port: u16,
        #[arg(long, default_value_t = 1)]
        count: u64,
        #[arg(long = "type", value_enum, default_value_t = QueryType::A)]
        query_type: QueryType,
        /// Per lookup and per connect.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Connect once to TARGET (ADDR:PORT; with --dns-server, NAME:PORT,
    /// resolved by one UDP query right before connecting), read the
    /// greeting, then every interval send a line and read its echo, for the
    /// given time (at most SECONDS plus one timeout when rounds fail).
    /// Reports a HoldReport.
    Hold {
        target: String,
        #[arg(long)]
        seconds: f64,
        #[arg(long, default_value_t = 200)]
        interval_ms: u64,
        /// Resolve TARGET's name through this DNS server (ADDR or
        /// ADDR:PORT) first.
        #[arg(long)]
        dns_server: Option<String>,
        /// Connect, greeting and each echo.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Connect, send a ClientHello for --name (none: no server_name) in
    /// WRITES send() calls, and report the server's first record, or the
    /// error and how long after the last write it came (`detail`).
    TlsHello {
        target: SocketAddr,
        #[arg(long)]
        name: Option<String>,
        /// Bytes of a padding extension (before the server name, which
        /// comes last).
        #[arg(long, default_value_t = 0)]
        padding: usize,
        /// Bytes of key share (32: X25519; 1216: X25519MLKEM768).
        #[arg(long, default_value_t = 32)]
        key_share: usize,
        /// An Encrypted Client Hello extension (outer hello).
        #[arg(long)]
        ech: bool,
        #[arg(long, default_value_t = 1)]
        writes: usize,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// New connections to TARGET one after another for SECONDS, each reading
    /// the greeting line, then closing; reports the rate and the CPU time
    /// per connection as JSON of its own.
    ConnectRate {
        target: SocketAddr,
        #[arg(long)]
        seconds: f64,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// From the first instant, a UDP datagram to UDP and a TCP connection
    /// attempt to TCP, over and over for SECONDS; reports how many got out
    /// as JSON of its own (a container that talks the moment it starts).
    Knock {
        udp: SocketAddr,
        tcp: SocketAddr,
        #[arg(long)]
        seconds: f64,
        /// First make this cgroup and move into it (a kubelet's mkdir and
        /// a container's start, microseconds apart).
        #[arg(long)]
        new_cgroup: Option<std::path::PathBuf>,
    },
    /// Print this process's cgroup (the harness's self-test).
    #[command(hide = true)]
    Cgroup,
    #[command(flatten)]
    Attack(attack::Attack),
}

#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "UPPER")]
pub(crate) enum QueryType {
    A,
    Aaaa,
}

/// Usage errors exit 2, like clap's.
pub(crate) fn usage_error(message: &str) -> ! {
    eprintln!("oce-probe: {message}");
    std::process::exit(2);
}

pub(crate) fn print_json(report: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string(report).expect("report serializes")
    );
}

pub(crate) fn dns_server(server: &str) -> SocketAddr {
    parse_server(server).unwrap_or_else(|| {
        usage_error(&format!(
            "bad DNS server {server:?}: want ADDR or ADDR:PORT"
        ))
    })
}

fn main() {
    let outcome = match Cli::parse().command {
        Probe::ResolveConnect {
            server,
            name,
            port,
            count,
            query_type,
            timeout_ms,
        } => {
            let report = resolve_connect::run(
                dns_server(&server),
                &name,
                port,
                count,
                query_type,
                Duration::from_millis(timeout_ms),
            );
            return print_json(&report);
        }
        Probe::Hold {
            target,
            seconds,
            interval_ms,
            dns_server: server,
            timeout_ms,
        } => {
            let target = match server {
                Some(server) => {
                    let (name, port) = target
                        .rsplit_once(':')
                        .and_then(|(name, port)| Some((name.to_owned(), port.parse().ok()?)))
                        .unwrap_or_else(|| usage_error(&format!("{target:?} is not NAME:PORT")));
                    hold::Target::Lookup {
                        server: dns_server(&server),
                        name,
                        port,
                    }
                }
                None => hold::Target::Addr(
                    target
                        .parse()
                        .unwrap_or_else(|_| usage_error(&format!("{target:?} is not ADDR:PORT"))),
                ),
            };
            if !(seconds.is_finite() && seconds >= 0.0) {
                usage_error(&format!("bad --seconds {seconds}"));
            }
            let report = hold::run(
                target,
                Duration::from_secs_f64(seconds),
                Duration::from_millis(interval_ms.max(1)),
                Duration::from_millis(timeout_ms),
            );
            return print_json(&report);
        }
        Probe::ConnectRate {
            target,
            seconds,
            timeout_ms,
        } => {
            if !(seconds.is_finite() && seconds > 0.0) {
                usage_error(&format!("bad --seconds {seconds}"));
            }
            let report = connect_rate::run(
                target,
                Duration::from_secs_f64(seconds),
                Duration::from_millis(timeout_ms),
            );
            return print_json(&report);
        }
        Probe::Knock {
            udp,
            tcp,
            seconds,
            new_cgroup,
        } => {
            if !(seconds.is_finite() && seconds > 0.0) {
                usage_error(&format!("bad --seconds {seconds}"));
            }
            if let Some(dir) = new_cgroup {
                knock::enter_new_cgroup(&dir);
            }
            return print_json(&knock::run(udp, tcp, Duration::from_secs_f64(seconds)));
        }
        Probe::Tcp {
            target,
            timeout_ms,
            send,
        } => tcp(target, Duration::from_millis(timeout_ms), send.as_deref()),
        Probe::Udp {
            target,
            payload,
            timeout_ms,
        } => udp(target, &payload, Duration::from_millis(timeout_ms)),
        Probe::Dns {
            server,
            name,
            query_type,
            tcp,
            timeout_ms,
            linger_ms,
        } => match parse_server(&server) {
            Some(server) => dns::query_lingering(
                server,
                &name,
                query_type,
                tcp,
                Duration::from_millis(timeout_ms),
                Duration::from_millis(linger_ms),
            ),
            None => usage_error(&format!(
                "bad DNS server {server:?}: want ADDR or ADDR:PORT"
            )),
        },
        Probe::TlsHello {
            target,
            name,
            padding,
            key_share,
            ech,
            writes,
            timeout_ms,
        } => tls_hello::run(
            target,
            tls_hello::Hello {
                name,
                padding,
                key_share,
                ech,
                writes,
            },
            Duration::from_millis(timeout_ms),
        ),
        Probe::Cgroup => cgroup(),
        Probe::Attack(attack) => attack::run(attack),
    };
    print_json(&outcome);
}

fn parse_server(server: &str) -> Option<SocketAddr> {
    server
        .parse()
        .ok()
        .or_else(|| Some(SocketAddr::new(server.parse().ok()?, 53)))
}

fn tcp(target: SocketAddr, timeout: Duration, send: Option<&str>) -> ProbeOutcome {
    let (local, connected) = net::connect_tcp(target, timeout);
    let mut outcome = (|| {
        let stream = connected?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut reader = BufReader::new(&stream);
        let greeting = read_line(&mut reader)?;
        let Some(line) = send else {
            return Ok(ProbeOutcome::success(greeting));
        };
        (&stream).write_all(format!("{line}\n").as_bytes())?;
        let echo = read_line(&mut reader)?;
        Ok(ProbeOutcome::success(echo))
    })()
    .unwrap_or_else(|err| ProbeOutcome::failure(net::describe(&err)));
    outcome.local = local;
    outcome
}

/// One line without its newline; EOF before any byte is an error.
pub(crate) fn read_line(reader: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before a line arrived",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn udp(target: SocketAddr, payload: &str, timeout: Duration) -> ProbeOutcome {
    let mut local = None;
    let mut outcome = (|| {
        let socket = net::udp_socket_to(target, &mut local)?;
        // Connected: the address now names the interface it goes out of.
        local = socket.local_addr().ok();
        socket.set_read_timeout(Some(timeout))?;
        socket.send(payload.as_bytes())?;
        let mut buf = vec![0; 65536];
        let len = socket.recv(&mut buf)?;
        Ok::<_, std::io::Error>(ProbeOutcome::success(
            String::from_utf8_lossy(&buf[..len]).into_owned(),
        ))
    })()
    .unwrap_or_else(|err| ProbeOutcome::failure(net::describe(&err)));
    outcome.local = local;
    outcome
}

/// This process's cgroup v2 path, from the `0::<path>` line.
fn cgroup() -> ProbeOutcome {
    match std::fs::read_to_string("/proc/self/cgroup") {
        Ok(text) => match text.lines().find_map(|l| l.strip_prefix("0::")) {
            Some(path) => ProbeOutcome::success(path),
            None => ProbeOutcome::failure(format!("no cgroup v2 line in {text:?}")),
        },
        Err(err) => ProbeOutcome::failure(err.to_string()),
    }
}
