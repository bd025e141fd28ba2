//! `oce-probe resolve-connect`: lookups each followed at once by a connect
//! to the address just learned, in one process (no process start-up or
//! sleep between the answer and the SYN), to test that an enforcer which
//! learns addresses from DNS answers never drops the first SYN after one.

use std::{
    collections::HashSet,
    io::BufReader,
    net::SocketAddr,
    time::{Duration, Instant},
};

use openclaw_egress_e2e::{ResolveConnectReport, RoundFailure};

use crate::{QueryType, dns, net, read_line};

pub(crate) fn run(
    server: SocketAddr,
    name: &str,
    port: u16,
    count: u64,
    query_type: QueryType,
    timeout: Duration,
) -> ResolveConnectReport {
    let started = Instant::now();
    let mut report = ResolveConnectReport {
        count,
        ..ResolveConnectReport::default()
    };
    let mut distinct = HashSet::new();
    for round in 0..count {
        let answer = dns::query(server, name, query_type, false, timeout);
        let Some(ip) = answer.answer_ips().first().copied() else {
            let error = answer
                .error
                .or_else(|| answer.rcode.map(|rcode| format!("no address ({rcode})")))
                .unwrap_or_else(|| "no address".to_owned());
            report.failures.push(RoundFailure {
                round,
                stage: "lookup".to_owned(),
                error,
                addr: None,
                local: answer.local,
            });
            continue;
        };
        report.lookups_ok += 1;
        distinct.insert(ip);

        // Straight from the answer to the SYN.
        let target = SocketAddr::new(ip, port);
        let connect_started = Instant::now();
        let (local, connected) = net::connect_tcp(target, timeout);
        let greeted = connected.and_then(|stream| {
            let connect_us = connect_started.elapsed().as_micros() as u64;
            if connect_us > report.max_connect_us {
                report.max_connect_us = connect_us;
                report.slowest_round = Some(round);
                report.slowest_addr = Some(target);
            }
            stream.set_read_timeout(Some(timeout))?;
            read_line(&mut BufReader::new(&stream))
        });
        match greeted {
            Ok(_) => report.connects_ok += 1,
            Err(err) => report.failures.push(RoundFailure {
                round,
                stage: "connect".to_owned(),
                error: net::describe(&err),
                addr: Some(target),
                local,
            }),
        }
    }
    report.distinct_addresses = distinct.len() as u64;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report
}
