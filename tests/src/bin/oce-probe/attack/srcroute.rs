//! Source routing through the socket API: an ordinary UDP socket asks the
//! kernel for a source route, so that the header's destination (what an
//! enforcer reads) is a hop and the real destination hides in an option.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
};

use openclaw_egress_e2e::ProbeOutcome;

use crate::{net, packet};

/// `udp-srcroute`: one datagram to `target` routed through `via`. The
/// socket is bound to the unspecified address first and never connected
/// (connect(2) to `target` would be judged on its own).
pub(super) fn send(target: SocketAddr, via: IpAddr, payload: &[u8]) -> ProbeOutcome {
    let any: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let mut local = None;
    let mut outcome = (|| -> io::Result<ProbeOutcome> {
        let socket = UdpSocket::bind(any)?;
        local = socket.local_addr().ok();
        match via {
            IpAddr::V4(hop) => {
                // As setsockopt(IP_OPTIONS) takes it: the first hop in the
                // route list; the kernel moves it to the header and puts
                // each send's destination last.
                let mut option = vec![0x83, 7, 4];
                option.extend_from_slice(&hop.octets());
                option.push(0); // End of options: a whole word.
                set_option(&socket, libc::IPPROTO_IP, libc::IP_OPTIONS, &option)?;
            }
            IpAddr::V6(hop) => {
                let header = packet::srh(0, hop, Ipv6Addr::UNSPECIFIED);
                set_option(&socket, libc::IPPROTO_IPV6, libc::IPV6_RTHDR, &header)?;
            }
        }
        let sent = socket.send_to(payload, target)?;
        Ok(ProbeOutcome::success(format!("sent {sent} bytes")))
    })()
    .unwrap_or_else(|err| ProbeOutcome::failure(net::describe(&err)));
    outcome.local = local;
    outcome
}

fn set_option(socket: &UdpSocket, level: i32, name: i32, value: &[u8]) -> io::Result<()> {
    // SAFETY: value is valid for its length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
