//! DNS queries that carry more than one question's worth of data, and an
//! answer the agent forges for itself.

use std::{
    io::{self, Read as _, Write as _},
    mem,
    net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

use hickory_proto::{
    op::Message,
    rr::{Name, RecordType},
};
use openclaw_egress_e2e::ProbeOutcome;

use crate::{
    QueryType,
    dns::{await_answer, describe_response},
    dns_wire::{self, Extras},
    net, packet,
};

fn question(name: &str, query_type: QueryType) -> Result<(Name, RecordType), String> {
    let name = Name::from_ascii(name).map_err(|e| format!("bad name {name:?}: {e}"))?;
    let record_type = match query_type {
        QueryType::A => RecordType::A,
        QueryType::Aaaa => RecordType::AAAA,
    };
    Ok((name, record_type))
}

fn outcome_of(answer: io::Result<(Vec<u8>, u32)>) -> ProbeOutcome {
    match answer {
        Ok((bytes, others)) => {
            let mut outcome = match Message::from_vec(&bytes) {
                Ok(response) => describe_response(&response),
                Err(err) => ProbeOutcome::failure(format!("undecodable answer: {err}")),
            };
            outcome.other_responses = others;
            outcome
        }
        Err(err) => ProbeOutcome::failure(net::describe(&err)),
    }
}

/// `dns-craft`.
pub(super) fn craft(
    server: SocketAddr,
    name: &str,
    query_type: QueryType,
    over_tcp: bool,
    extras: &Extras,
    short_udp_length: Option<usize>,
    timeout: Duration,
) -> ProbeOutcome {
    let question = match question(name, query_type) {
        Ok(q) => q,
        Err(error) => return ProbeOutcome::failure(error),
    };
    let id = dns_wire::random_id();
    let Some(message) = dns_wire::query(id, name, query_type.code(), extras) else {
        return ProbeOutcome::failure(format!("cannot encode {name:?}"));
    };
    let mut local = None;
    let mut outcome = if over_tcp {
        outcome_of(exchange_tcp(server, &message, timeout, &mut local).map(|a| (a, 0)))
    } else {
        outcome_of((|| {
            let socket = net::udp_socket_to(server, &mut None)?;
            local = socket.local_addr().ok();
            match short_udp_length {
                None => {
                    socket.send(&message)?;
                }
                Some(extra) => send_with_short_udp_length(&socket, server, &message, extra)?,
            }
            await_answer(&socket, id, &question, timeout, Duration::ZERO)
        })())
    };
    outcome.local = local;
    outcome
}

/// The message framed as DNS over TCP, the length prefix covering all of
/// it; the answer's message.
fn exchange_tcp(
    server: SocketAddr,
    message: &[u8],
    timeout: Duration,
    local: &mut Option<SocketAddr>,
) -> io::Result<Vec<u8>> {
    let (bound, connected) = net::connect_tcp(server, timeout);
    *local = bound;
    let mut stream = connected?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let len = u16::try_from(message.len()).map_err(io::Error::other)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(message);
    stream.write_all(&framed)?;
    let mut len = [0; 2];
    stream.read_exact(&mut len)?;
    let mut response = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut response)?;
    Ok(response)
}

/// Sends `message` plus `extra` bytes from `socket`'s address and port
/// through a raw UDP socket, the UDP length field covering `message` only.
/// (IPv4: the raw socket takes the UDP header and payload; the kernel adds
/// the IP header.)
fn send_with_short_udp_length(
    socket: &UdpSocket,
    server: SocketAddr,
    message: &[u8],
    extra: usize,
) -> io::Result<()> {
    let local = socket.local_addr()?;
    if !(local.is_ipv4() && server.is_ipv4()) {
        return Err(io::Error::other("--short-udp-length is IPv4 only"));
    }
    let mut payload = message.to_vec();
    payload.extend(std::iter::repeat_n(b'T', extra));
    let segment = packet::udp(local, server, &payload, Some(8 + message.len()));
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_UDP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    let raw = unsafe { OwnedFd::from_raw_fd(fd) };
    let (storage, len) = net::sockaddr_of(SocketAddr::new(server.ip(), 0));
    // SAFETY: segment and storage are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            raw.as_raw_fd(),
            segment.as_ptr().cast(),
            segment.len(),
            0,
            (&raw const storage).cast(),
            len,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `dns-gso`.
pub(super) fn gso(
    server: SocketAddr,
    first: &str,
    second: &str,
    timeout: Duration,
) -> ProbeOutcome {
    let question = match question(first, QueryType::A) {
        Ok(q) => q,
        Err(error) => return ProbeOutcome::failure(error),
    };
    let id = dns_wire::random_id();
    let none = Extras::default();
    let (Some(one), Some(two)) = (
        dns_wire::query(id, first, dns_wire::TYPE_A, &none),
        dns_wire::query(id.wrapping_add(1), second, dns_wire::TYPE_A, &none),
    ) else {
        return ProbeOutcome::failure("cannot encode the names");
    };
    if two.len() > one.len() {
        return ProbeOutcome::failure(format!(
            "the second query ({} bytes) must not be longer than the first ({}): GSO segments \
             are all of the first's size but the last",
            two.len(),
            one.len()
        ));
    }
    let mut local = None;
    let mut outcome = outcome_of((|| {
        let socket = net::udp_socket_to(server, &mut None)?;
        local = socket.local_addr().ok();
        let mut buffer = one.clone();
        buffer.extend_from_slice(&two);
        send_gso(&socket, &buffer, one.len() as u16)?;
        await_answer(&socket, id, &question, timeout, Duration::from_millis(300))
    })());
    outcome.local = local;
    outcome
}

/// One sendmsg(2) of `buffer` with a UDP_SEGMENT control message: the
/// kernel sends it as datagrams of `segment` bytes.
fn send_gso(socket: &UdpSocket, buffer: &[u8], segment: u16) -> io::Result<()> {
    const SPACE: usize = 32;
    #[repr(C, align(8))]
    struct Control([u8; SPACE]);
    let mut control = Control([0; SPACE]);
    let mut iov = libc::iovec {
        iov_base: buffer.as_ptr() as *mut _,
        iov_len: buffer.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as usize;
    // SAFETY: msg_control points at `control`, large enough for one cmsg
    // holding a u16 (checked by the assertion below).
    unsafe {
        assert!(msg.msg_controllen <= SPACE);
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as usize;
        libc::CMSG_DATA(cmsg).cast::<u16>().write_unaligned(segment);
    }
    // SAFETY: msg and everything it points to are valid for the call.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &raw const msg, 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `dns-forge`.
#[allow(clippy::too_many_arguments)]
pub(super) fn forge_own_answer(
    server: SocketAddr,
    name: &str,
    query_type: QueryType,
    forged: IpAddr,
    via: &str,
    ttl: u32,
    timeout: Duration,
    linger: Duration,
) -> ProbeOutcome {
    let question = match question(name, query_type) {
        Ok(q) => q,
        Err(error) => return ProbeOutcome::failure(error),
    };
    let id = dns_wire::random_id();
    let mut local = None;
    let mut outcome = outcome_of((|| {
        let query = dns_wire::query(id, name, query_type.code(), &Extras::default())
            .ok_or_else(|| io::Error::other("cannot encode the name"))?;
        let socket = net::udp_socket_to(server, &mut None)?;
        let me = socket.local_addr()?;
        local = Some(me);
        socket.send(&query)?;
        // The answer the resolver has not sent yet, as it will look: from
        // the resolver's port 53 to this socket, same ID and question.
        let answer = dns_wire::response(id, name, query_type.code(), forged, ttl)
            .ok_or_else(|| io::Error::other("cannot encode the answer"))?;
        let segment = packet::udp(server, me, &answer, None);
        let (ethertype, packet) = match (server.ip(), me.ip()) {
            (IpAddr::V4(from), IpAddr::V4(to)) => (
                packet::ETH_P_IP,
                packet::ipv4(from, to, packet::PROTO_UDP, &[], &segment),
            ),
            (from, to) => (
                packet::ETH_P_IPV6,
                packet::ipv6(v6(from), v6(to), packet::PROTO_UDP, None, &segment),
            ),
        };
        // On `lo` the Ethernet addresses are all zero.
        packet::send_frame(via, [0; 6], ethertype, &packet)?;
        await_answer(&socket, id, &question, timeout, linger)
    })());
    outcome.local = local;
    outcome
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}
