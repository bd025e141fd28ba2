//! Packets that never pass a socket of the agent's cgroup: frames written
//! to a packet socket, and packets the agent's kernel forwards from a TUN
//! device.

use std::{
    ffi::CString,
    fs::{File, OpenOptions},
    io::{self, Write as _},
    mem,
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd as _,
    process::Command,
    time::Duration,
};

use openclaw_egress_e2e::ProbeOutcome;

use super::Proto;
use crate::{net, packet};

/// Where a hand-built packet says it goes.
pub(crate) enum Route {
    /// To its destination.
    Direct,
    /// IPv4: to the hop, with a loose source route on to the destination.
    Lsrr(IpAddr),
    /// IPv6: to the hop, with a segment routing header on to the
    /// destination.
    Srh(IpAddr),
}

/// `packet-send`.
#[allow(clippy::too_many_arguments)]
pub(super) fn packet_send(
    ifname: &str,
    dst_mac: [u8; 6],
    proto: Proto,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
    route: Route,
    raw_ip: bool,
) -> ProbeOutcome {
    let (proto_number, transport) = match proto {
        Proto::Udp => (packet::PROTO_UDP, packet::udp(src, dst, payload, None)),
        Proto::Tcp => (
            packet::PROTO_TCP,
            packet::tcp_syn(src, dst, u32::from(packet::random_port()) << 12),
        ),
    };
    let (packet, ethertype, header_dst) = match (src.ip(), dst.ip(), route) {
        (IpAddr::V4(s), IpAddr::V4(d), Route::Direct) => (
            packet::ipv4(s, d, proto_number, &[], &transport),
            packet::ETH_P_IP,
            dst.ip(),
        ),
        (IpAddr::V4(s), IpAddr::V4(d), Route::Lsrr(IpAddr::V4(hop))) => (
            packet::ipv4(s, hop, proto_number, &packet::lsrr(d), &transport),
            packet::ETH_P_IP,
            hop.into(),
        ),
        (IpAddr::V6(s), IpAddr::V6(d), Route::Direct) => (
            packet::ipv6(s, d, proto_number, None, &transport),
            packet::ETH_P_IPV6,
            dst.ip(),
        ),
        (IpAddr::V6(s), IpAddr::V6(d), Route::Srh(IpAddr::V6(hop))) => {
            let routing = packet::srh(proto_number, hop, d);
            (
                packet::ipv6(s, hop, proto_number, Some(&routing), &transport),
                packet::ETH_P_IPV6,
                hop.into(),
            )
        }
        _ => return ProbeOutcome::failure("mixed address families"),
    };
    let sent = if raw_ip {
        packet::send_raw_ip(&packet, header_dst)
    } else {
        packet::send_frame(ifname, dst_mac, ethertype, &packet)
    };
    let mut outcome = match sent {
        Ok(len) => ProbeOutcome::success(format!("sent {len} bytes")),
        Err(err) => ProbeOutcome::failure(net::describe(&err)),
    };
    outcome.local = Some(src);
    outcome
}

/// `struct ifreq` as TUNSETIFF reads it: a name and flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `tun-forward`.
pub(super) fn tun_forward(
    name: &str,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) -> ProbeOutcome {
    let mut outcome = (|| -> io::Result<ProbeOutcome> {
        let tun = open_tun(name)?;
        run(&["ip", "addr", "add", "10.78.0.1/30", "dev", name])?;
        run(&["ip", "link", "set", name, "up"])?;
        // What a router needs: forwarding on, and no reverse-path check on
        // the TUN side (the packet's source lives behind eth0).
        for (key, value) in [
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv4/conf/all/rp_filter", "0"),
            (&format!("net/ipv4/conf/{name}/rp_filter"), "0"),
            (&format!("net/ipv4/conf/{name}/accept_local"), "1"),
        ] {
            std::fs::write(format!("/proc/sys/{key}"), value)
                .map_err(|e| io::Error::new(e.kind(), format!("writing {key}: {e}")))?;
        }
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
            return Err(io::Error::other("IPv4 only"));
        };
        let segment = packet::udp(src, dst, payload, None);
        let packet = packet::ipv4(s, d, packet::PROTO_UDP, &[], &segment);
        let written = (&tun).write(&packet)?;
        // The kernel takes the packet in on write; keep the device a moment
        // so that nothing races its removal (it goes with the fd).
        std::thread::sleep(Duration::from_millis(200));
        Ok(ProbeOutcome::success(format!("wrote {written} bytes")))
    })()
    .unwrap_or_else(|err| ProbeOutcome::failure(net::describe(&err)));
    outcome.local = Some(src);
    outcome
}

fn open_tun(name: &str) -> io::Result<File> {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let cname = CString::new(name).map_err(io::Error::other)?;
    let bytes = cname.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::other("interface name too long"));
    }
    // SAFETY: IfReq is plain data; all-zero is valid.
    let mut request: IfReq = unsafe { mem::zeroed() };
    request.name[..bytes.len()].copy_from_slice(bytes);
    request.flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads (and writes back) one ifreq.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &raw mut request) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tun)
}

fn run(args: &[&str]) -> io::Result<()> {
    let output = Command::new(args[0]).args(&args[1..]).output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}
