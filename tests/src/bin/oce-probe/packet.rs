//! Packets built by hand, for the attacks that a socket would not send:
//! IPv4 headers with options, IPv6 with a segment routing header, UDP with
//! a lying length, TCP SYNs; and the raw ways out (AF_PACKET, raw IP).
//!
//! Checksums follow the RFCs: the transport checksum covers a pseudo-header
//! with the *final* destination (RFC 791 and 8200 8.1 for source-routed
//! packets), so that the receiver accepts what a source route delivers.

use std::{
    ffi::CString,
    io, mem,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
const IPV6_ROUTING: u8 = 43;
/// Loose source and record route (RFC 791).
const IPOPT_LSRR: u8 = 0x83;
/// Segment routing header (RFC 8754).
const ROUTING_TYPE_SRH: u8 = 4;

pub(crate) const ETH_P_IP: u16 = 0x0800;
pub(crate) const ETH_P_IPV6: u16 = 0x86dd;

/// The Internet checksum over the concatenation of `parts`.
pub(crate) fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &byte in *part {
            match odd.take() {
                Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
                None => odd = Some(byte),
            }
        }
    }
    if let Some(high) = odd {
        sum += u32::from(u16::from_be_bytes([high, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The pseudo-header of the transport checksum.
fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            header.extend_from_slice(&s.octets());
            header.extend_from_slice(&d.octets());
            header.extend_from_slice(&[0, proto]);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.extend_from_slice(&v6(src).octets());
            header.extend_from_slice(&v6(dst).octets());
            header.extend_from_slice(&(len as u32).to_be_bytes());
            header.extend_from_slice(&[0, 0, 0, proto]);
        }
    }
    header
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// A UDP header and `payload`, its checksum over the pseudo-header for
/// (`src`, `final_dst`). `udp_len`, when given, is written into the length
/// field instead of the true length (and the checksum covers only that
/// many bytes, which is what a receiver trusting the field checks).
pub(crate) fn udp(
    src: SocketAddr,
    final_dst: SocketAddr,
    payload: &[u8],
    udp_len: Option<usize>,
) -> Vec<u8> {
    let true_len = 8 + payload.len();
    let len = udp_len.unwrap_or(true_len);
    let mut segment = Vec::with_capacity(true_len);
    segment.extend_from_slice(&src.port().to_be_bytes());
    segment.extend_from_slice(&final_dst.port().to_be_bytes());
    segment.extend_from_slice(&(len as u16).to_be_bytes());
    segment.extend_from_slice(&[0, 0]);
    segment.extend_from_slice(payload);
    let covered = len.min(segment.len());
    let pseudo = pseudo_header(src.ip(), final_dst.ip(), PROTO_UDP, len);
    let mut sum = checksum(&[&pseudo, &segment[..covered]]);
    if sum == 0 {
        sum = 0xffff;
    }
    segment[6..8].copy_from_slice(&sum.to_be_bytes());
    segment
}

/// A TCP SYN (no options), its checksum for (`src`, `final_dst`).
pub(crate) fn tcp_syn(src: SocketAddr, final_dst: SocketAddr, seq: u32) -> Vec<u8> {
    let mut segment = Vec::with_capacity(20);
    segment.extend_from_slice(&src.port().to_be_bytes());
    segment.extend_from_slice(&final_dst.port().to_be_bytes());
    segment.extend_from_slice(&seq.to_be_bytes());
    segment.extend_from_slice(&0u32.to_be_bytes());
    // Data offset 5 words, flags SYN, window 64240.
    segment.extend_from_slice(&[0x50, 0x02]);
    segment.extend_from_slice(&64240u16.to_be_bytes());
    segment.extend_from_slice(&[0, 0, 0, 0]);
    let pseudo = pseudo_header(src.ip(), final_dst.ip(), PROTO_TCP, segment.len());
    let sum = checksum(&[&pseudo, &segment]);
    segment[16..18].copy_from_slice(&sum.to_be_bytes());
    segment
}

/// An IPv4 packet (DF set, TTL 64) with `options` (padded to whole words).
pub(crate) fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut options = options.to_vec();
    while !options.len().is_multiple_of(4) {
        options.push(0); // End of option list.
    }
    let header_len = 20 + options.len();
    let total = header_len + payload.len();
    let mut packet = Vec::with_capacity(total);
    packet.push(0x40 | (header_len / 4) as u8);
    packet.push(0);
    packet.extend_from_slice(&(total as u16).to_be_bytes());
    packet.extend_from_slice(&(std::process::id() as u16).to_be_bytes());
    packet.extend_from_slice(&0x4000u16.to_be_bytes());
    packet.push(64);
    packet.push(proto);
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(&options);
    let sum = checksum(&[&packet[..header_len]]);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// A loose source route option whose route list holds `final_dst` only:
/// sent to the first hop (the header's destination), it asks that hop to
/// pass the packet on to `final_dst`.
pub(crate) fn lsrr(final_dst: Ipv4Addr) -> Vec<u8> {
    let mut option = vec![IPOPT_LSRR, 7, 4];
    option.extend_from_slice(&final_dst.octets());
    option
}

/// An IPv6 packet (hop limit 64) with the extension header `routing`
/// (already built, e.g. [`srh`]) before `payload`, or none.
pub(crate) fn ipv6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    proto: u8,
    routing: Option<&[u8]>,
    payload: &[u8],
) -> Vec<u8> {
    let ext_len = routing.map_or(0, <[u8]>::len);
    let mut packet = Vec::with_capacity(40 + ext_len + payload.len());
    packet.extend_from_slice(&[0x60, 0, 0, 0]);
    packet.extend_from_slice(&((ext_len + payload.len()) as u16).to_be_bytes());
    packet.push(if routing.is_some() {
        IPV6_ROUTING
    } else {
        proto
    });
    packet.push(64);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    if let Some(routing) = routing {
        packet.extend_from_slice(routing);
    }
    packet.extend_from_slice(payload);
    packet
}

/// A segment routing header with two segments: the packet goes to `hop`
/// first (segments left 1; the IPv6 destination must be `hop`), which
/// passes it on to `final_dst`. `segments[0]` is the last segment, as in
/// RFC 8754. With `final_dst` unspecified, the header is what
/// `setsockopt(IPV6_RTHDR)` takes: the kernel writes the destination of
/// each send into `segments[0]`.
pub(crate) fn srh(next_header: u8, hop: Ipv6Addr, final_dst: Ipv6Addr) -> Vec<u8> {
    let segments = [final_dst, hop];
    let mut header = vec![
        next_header,
        (segments.len() * 2) as u8, // Length in 8-octet units, less the first 8.
        ROUTING_TYPE_SRH,
        1,                          // Segments left.
        (segments.len() - 1) as u8, // Last entry.
        0,                          // Flags.
        0,
        0, // Tag.
    ];
    for segment in segments {
        header.extend_from_slice(&segment.octets());
    }
    header
}

/// The index of interface `name` in this netns.
pub(crate) fn ifindex(name: &str) -> io::Result<u32> {
    let cname = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(index)
}

/// `aa:bb:cc:dd:ee:ff`.
pub(crate) fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

/// Sends `packet` (an IP packet) out of `ifname` through an AF_PACKET
/// datagram socket: the kernel adds the Ethernet header (to `dst_mac`,
/// from the interface's own address) and nothing else. No IP stack, no
/// socket of the sender's cgroup: only what sits on the interface sees it.
pub(crate) fn send_frame(
    ifname: &str,
    dst_mac: [u8; 6],
    ethertype: u16,
    packet: &[u8],
) -> io::Result<usize> {
    let index = ifindex(ifname)?;
    // Protocol 0: this socket receives nothing.
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is valid.
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ethertype.to_be();
    addr.sll_ifindex = index as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&dst_mac);
    // SAFETY: packet and addr are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&raw const addr).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Sends a whole IP packet (header included) through a raw IP socket
/// (`IP_HDRINCL` / `IPV6_HDRINCL`) to the packet's destination. Unlike
/// [`send_frame`], this goes through the sender's IP stack (routing, the
/// cgroup hooks of the sending socket).
pub(crate) fn send_raw_ip(packet: &[u8], dst: IpAddr) -> io::Result<usize> {
    let family = match dst {
        IpAddr::V4(_) => libc::AF_INET,
        IpAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if dst.is_ipv6() {
        let on: libc::c_int = 1;
        // SAFETY: IPV6_HDRINCL takes one c_int.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_HDRINCL,
                (&raw const on).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // (IPPROTO_RAW implies IP_HDRINCL for IPv4.)
    let (storage, len) = crate::net::sockaddr_of(SocketAddr::new(dst, 0));
    // SAFETY: packet and storage are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&raw const storage).cast(),
            len,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// A source port from the ephemeral range for hand-built packets, so that
/// their drop events can be told apart; not bound (nothing answers).
pub(crate) fn random_port() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    40000 + ((nanos ^ std::process::id()) % 20000) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_ipv4_header() {
        // The example header of RFC 1071's usual illustration (Wikipedia):
        // 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&[&header]), 0xb861);
        let mut with_sum = header;
        with_sum[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&[&with_sum]), 0);
    }

    #[test]
    fn udp_checksum_verifies_and_a_short_length_is_written_as_asked() {
        let src: SocketAddr = "10.77.0.2:40000".parse().unwrap();
        let dst: SocketAddr = "10.77.0.1:53".parse().unwrap();
        let segment = udp(src, dst, b"hello", None);
        let pseudo = pseudo_header(src.ip(), dst.ip(), PROTO_UDP, segment.len());
        assert_eq!(checksum(&[&pseudo, &segment]), 0);
        let short = udp(src, dst, b"hello world", Some(8 + 5));
        assert_eq!(u16::from_be_bytes([short[4], short[5]]), 13);
        assert_eq!(short.len(), 8 + 11);
        let pseudo = pseudo_header(src.ip(), dst.ip(), PROTO_UDP, 13);
        assert_eq!(checksum(&[&pseudo, &short[..13]]), 0);
    }

    #[test]
    fn ipv4_options_are_padded_and_counted_in_the_header_length() {
        let packet = ipv4(
            Ipv4Addr::new(10, 77, 0, 2),
            Ipv4Addr::new(203, 0, 113, 10),
            PROTO_UDP,
            &lsrr(Ipv4Addr::new(203, 0, 113, 99)),
            b"x",
        );
        assert_eq!(packet[0], 0x47, "IHL 7 words: 20 + 8 bytes of options");
        assert_eq!(&packet[20..28], &[0x83, 7, 4, 203, 0, 113, 99, 0]);
        assert_eq!(checksum(&[&packet[..28]]), 0);
        assert_eq!(u16::from_be_bytes([packet[2], packet[3]]), 29);
    }

    #[test]
    fn srh_lists_the_final_destination_first() {
        let hop: Ipv6Addr = "2001:db8:1::10".parse().unwrap();
        let last: Ipv6Addr = "2001:db8:1::99".parse().unwrap();
        let header = srh(PROTO_UDP, hop, last);
        assert_eq!(header.len(), 8 + 32);
        assert_eq!(&header[..5], &[PROTO_UDP, 4, 4, 1, 1]);
        assert_eq!(&header[8..24], &last.octets());
        assert_eq!(&header[24..40], &hop.octets());
    }
}
