//! `knock`: from the process's first instant, a UDP datagram and a TCP
//! connection attempt to a destination, over and over for a while: what a
//! container does that starts talking the moment it runs. Reports how many
//! got out (sent, connected) and how many the kernel refused.

use std::{
    net::{SocketAddr, TcpStream, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use serde::Serialize;

#[derive(Serialize, Default)]
pub(crate) struct Knocks {
    udp_sent: u64,
    udp_refused: u64,
    tcp_connected: u64,
    tcp_failed: u64,
    /// Milliseconds from the start to the first datagram sent, if any.
    first_udp_sent_ms: Option<f64>,
}

/// Makes cgroup `dir` and moves this process into it: the kubelet's
/// `mkdir` and a container's first instant, as close together as they can
/// be. (Sockets are made afterwards: a socket belongs to the cgroup its
/// maker was in.)
pub(crate) fn enter_new_cgroup(dir: &Path) {
    std::fs::create_dir(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
        .unwrap_or_else(|e| panic!("entering {}: {e}", dir.display()));
}

pub(crate) fn run(udp: SocketAddr, tcp: SocketAddr, duration: Duration) -> Knocks {
    let started = Instant::now();
    let mut knocks = Knocks::default();
    let bind: SocketAddr = if udp.is_ipv4() {
        "0.0.0.0:0".parse().expect("an address")
    } else {
        "[::]:0".parse().expect("an address")
    };
    let socket = UdpSocket::bind(bind).expect("binding a UDP socket");
    while started.elapsed() < duration {
        match socket.send_to(b"knock", udp) {
            Ok(_) => {
                knocks.udp_sent += 1;
                knocks
                    .first_udp_sent_ms
                    .get_or_insert(started.elapsed().as_secs_f64() * 1000.0);
            }
            Err(_) => knocks.udp_refused += 1,
        }
        match TcpStream::connect_timeout(&tcp, Duration::from_millis(20)) {
            Ok(_) => knocks.tcp_connected += 1,
            Err(_) => knocks.tcp_failed += 1,
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    knocks
}
