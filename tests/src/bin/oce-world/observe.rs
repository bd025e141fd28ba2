//! What arrived in the world, for tests of traffic that must never get
//! there: UDP sinks that log each datagram, and a log of TCP SYNs.
//!
//! Both sit behind the world's IP stack (a bound socket, a raw socket), so
//! they see only what got past the host side of the veth, whose TC program
//! is the enforcer under test; a packet socket on `eth0` would see frames
//! before TC ingress and could not tell a dropped frame from a delivered
//! one.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    thread,
};

/// Logs every datagram arriving on `socket` as a JSON line
/// (`{"event":"udp-received",...}`); never answers.
pub(crate) fn spawn_udp_sink(socket: UdpSocket) {
    let local = socket
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    thread::spawn(move || {
        let mut buf = vec![0; 65536];
        loop {
            match socket.recv_from(&mut buf) {
                Ok((len, peer)) => {
                    let line = serde_json::json!({
                        "event": "udp-received",
                        "local": local,
                        "peer": peer.to_string(),
                        "len": len,
                        "payload": String::from_utf8_lossy(&buf[..len]),
                    });
                    eprintln!("{line}");
                }
                Err(err) => eprintln!("oce-world: udp sink {local}: {err}"),
            }
        }
    });
}

/// A raw IPv4 TCP socket: the kernel hands it a copy of every TCP segment
/// delivered to this netns (after routing, so after TC ingress and source
/// routing). Opened before `ready` so that a failure is reported.
pub(crate) fn open_tcp_syn_log() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_TCP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Logs each SYN (without ACK) read from `fd` as
/// `{"event":"tcp-syn","src":...,"dst":...}`.
pub(crate) fn spawn_tcp_syn_log(fd: std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd as _;
    thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: buf is valid for its length.
            let len = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if len < 0 {
                eprintln!("oce-world: tcp syn log: {}", io::Error::last_os_error());
                continue;
            }
            if let Some((src, dst)) = syn_of(&buf[..len as usize]) {
                let line = serde_json::json!({
                    "event": "tcp-syn",
                    "src": src.to_string(),
                    "dst": dst.to_string(),
                });
                eprintln!("{line}");
            }
        }
    });
}

/// The source and destination of an IPv4 packet holding a TCP SYN.
fn syn_of(packet: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let ihl = usize::from(*packet.first()? & 0x0f) * 4;
    let ip = |at: usize| -> Option<IpAddr> {
        let b: [u8; 4] = packet.get(at..at + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(b).into())
    };
    let (src, dst) = (ip(12)?, ip(16)?);
    let tcp = packet.get(ihl..ihl + 14)?;
    let port = |at: usize| u16::from_be_bytes([tcp[at], tcp[at + 1]]);
    let flags = tcp[13];
    // SYN set, ACK clear.
    (flags & 0x12 == 0x02).then(|| (SocketAddr::new(src, port(0)), SocketAddr::new(dst, port(2))))
}
