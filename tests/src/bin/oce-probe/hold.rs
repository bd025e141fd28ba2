//! `oce-probe hold`: one long-lived TCP connection that sends a line and
//! reads its echo every interval, to test that a connection outlives the
//! expiry of the address it was allowed through.

use std::{
    io::{BufReader, Write as _},
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use openclaw_egress_e2e::HoldReport;

use crate::{net, read_line};

/// Where to connect: an address, or (with `--dns-server`) a name resolved
/// with one UDP query right before connecting.
pub(crate) enum Target {
    Addr(SocketAddr),
    Lookup {
        server: SocketAddr,
        name: String,
        port: u16,
    },
}

pub(crate) fn run(
    target: Target,
    duration: Duration,
    interval: Duration,
    timeout: Duration,
) -> HoldReport {
    let mut report = HoldReport::default();
    let addr = match target {
        Target::Addr(addr) => addr,
        Target::Lookup { server, name, port } => {
            let answer = crate::dns::query(server, &name, crate::QueryType::A, false, timeout);
            report.lookup_answers = answer.answers.clone();
            match answer.answer_ips().first() {
                Some(ip) => SocketAddr::new(*ip, port),
                None => {
                    report.first_error = Some(format!(
                        "lookup of {name}: {}",
                        answer
                            .error
                            .or(answer.rcode)
                            .unwrap_or_else(|| "no address".to_owned())
                    ));
                    return report;
                }
            }
        }
    };
    report.target = Some(addr);
    let started = Instant::now();
    let (local, connected) = net::connect_tcp(addr, timeout);
    report.local = local;
    let stream = match connected.and_then(|stream| {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(stream)
    }) {
        Ok(stream) => stream,
        Err(err) => {
            report.first_error = Some(format!("connect: {}", net::describe(&err)));
            return report;
        }
    };
    let mut reader = BufReader::new(&stream);
    if let Err(err) = read_line(&mut reader) {
        report.first_error = Some(format!("greeting: {}", net::describe(&err)));
        return report;
    }
    report.connected = true;

    let mut round = 0u64;
    loop {
        match exchange(&stream, &mut reader, round) {
            Ok(()) => report.rounds_ok += 1,
            Err(error) => {
                report.rounds_failed += 1;
                if report.first_error.is_none() {
                    report.first_error = Some(error);
                    report.first_failed_round = Some(round);
                }
            }
        }
        round += 1;
        // Rounds are paced from the start, so a slow round does not stretch
        // the whole run; failed rounds (each waiting up to the timeout) end
        // it once the time is up rather than running late.
        let next = interval.saturating_mul(u32::try_from(round).unwrap_or(u32::MAX));
        if next > duration || started.elapsed() > duration {
            break;
        }
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            thread::sleep(wait);
        }
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report
}

/// Sends `round N` and expects it echoed back.
fn exchange(
    stream: &TcpStream,
    reader: &mut BufReader<&TcpStream>,
    round: u64,
) -> Result<(), String> {
    let line = format!("round {round}");
    let mut writer = stream;
    writer
        .write_all(format!("{line}\n").as_bytes())
        .map_err(|err| format!("send: {}", net::describe(&err)))?;
    let echo = read_line(reader).map_err(|err| format!("echo: {}", net::describe(&err)))?;
    if echo != line {
        return Err(format!("echo mismatch: sent {line:?}, got {echo:?}"));
    }
    Ok(())
}
