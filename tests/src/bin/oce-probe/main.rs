//! `oce-probe`: one network exchange from inside the sandbox, reported as a
//! single JSON line ([`ProbeOutcome`]) on stdout.
//!
//! The exit code is 0 whether the exchange worked or not (the JSON says);
//! only usage errors exit non-zero. The harness starts it in the agent netns
//! and, usually, inside the sandbox cgroup.

mod dns;
mod net;

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
    },
    /// Print this process's cgroup (the harness's self-test).
    #[command(hide = true)]
    Cgroup,
}

#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "UPPER")]
pub(crate) enum QueryType {
    A,
    Aaaa,
}

fn main() {
    let outcome = match Cli::parse().command {
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
        } => match parse_server(&server) {
            Some(server) => dns::query(
                server,
                &name,
                query_type,
                tcp,
                Duration::from_millis(timeout_ms),
            ),
            None => {
                eprintln!("oce-probe: bad DNS server {server:?}: want ADDR or ADDR:PORT");
                std::process::exit(2);
            }
        },
        Probe::Cgroup => cgroup(),
    };
    println!(
        "{}",
        serde_json::to_string(&outcome).expect("outcome serializes")
    );
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
fn read_line(reader: &mut impl BufRead) -> std::io::Result<String> {
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
        let socket = net::udp_socket_to(target)?;
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
