//! `connect-rate`: new connections one after another for a while, each
//! reading the server's greeting line before closing, the way a client that
//! opens a connection per request works. Reports how many, and the CPU time
//! this process used (user and system: a cgroup egress program runs for the
//! SYN in the connecting process's own system call).

use std::{
    io::{BufRead as _, BufReader},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use serde::Serialize;

#[derive(Serialize)]
pub(crate) struct ConnectRate {
    connections: u64,
    failures: u64,
    seconds: f64,
    per_second: f64,
    /// CPU time of the process, microseconds per connection.
    cpu_us_per_connection: f64,
}

pub(crate) fn run(target: SocketAddr, duration: Duration, timeout: Duration) -> ConnectRate {
    let cpu_before = cpu_time();
    let started = Instant::now();
    let (mut connections, mut failures) = (0u64, 0u64);
    let mut line = String::new();
    while started.elapsed() < duration {
        let ok = TcpStream::connect_timeout(&target, timeout).and_then(|stream| {
            stream.set_read_timeout(Some(timeout))?;
            line.clear();
            BufReader::new(&stream).read_line(&mut line)
        });
        match ok {
            Ok(n) if n > 0 => connections += 1,
            _ => failures += 1,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_time().saturating_sub(cpu_before);
    ConnectRate {
        connections,
        failures,
        seconds,
        per_second: connections as f64 / seconds,
        cpu_us_per_connection: cpu.as_secs_f64() * 1e6 / connections.max(1) as f64,
    }
}

/// User plus system CPU time of this process.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let of = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    of(usage.ru_utime) + of(usage.ru_stime)
}
