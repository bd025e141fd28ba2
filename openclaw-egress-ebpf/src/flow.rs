//! Parsing the network and transport headers of a packet into a [`Flow`].
//!
//! Everything is read with `bpf_skb_load_bytes`, which bounds-checks at run
//! time: a short or lying header becomes an error, never an out-of-bounds read,
//! and the same code works for cgroup_skb (data starts at the IP header) and TC
//! (data starts at the Ethernet header) by passing the IP header offset.

use aya_ebpf::programs::sk_buff::SkBuff;
use openclaw_egress_common::{Addr, DropReason, ipv4_mapped, proto};

/// How many IPv6 extension headers we walk before giving up (and dropping).
const MAX_IPV6_EXTENSION_HEADERS: usize = 4;

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DESTINATION_OPTIONS: u8 = 60;

/// The parts of a packet a policy decision needs.
pub struct Flow {
    /// 4 or 6.
    pub family: u8,
    pub proto: u8,
    /// Addresses in the IPv4-mapped form for IPv4 (see `openclaw_egress_common::addr`).
    pub src: Addr,
    pub dst: Addr,
    /// Host byte order; 0 unless TCP or UDP.
    pub src_port: u16,
    pub dst_port: u16,
    /// Offset of the transport header.
    pub l4_offset: usize,
    /// Where the IP packet ends according to its own header (total length,
    /// or payload length for IPv6). Anything in the buffer past it is not
    /// part of the packet, and a buffer shorter than it is truncated.
    pub l3_end: usize,
    /// IPv4 options or an IPv6 routing header: source routing could send
    /// the packet past the destination in its header (which is all a policy
    /// can check), and options are room for data. Nothing a workload needs
    /// sends them. The packet is still parsed, so a drop names its flow.
    pub ip_options: bool,
}

impl Flow {
    pub const fn has_ports(&self) -> bool {
        self.proto == proto::TCP || self.proto == proto::UDP
    }
}

/// Parses the IP header at `l3` and, for TCP and UDP, the ports after it.
#[inline(always)]
pub fn parse(skb: &SkBuff, l3: usize) -> Result<Flow, DropReason> {
    let first: u8 = skb.load(l3).map_err(|_| DropReason::Malformed)?;
    let (mut flow, l4) = match first >> 4 {
        4 => parse_ipv4(skb, l3)?,
        6 => parse_ipv6(skb, l3)?,
        _ => return Err(DropReason::Malformed),
    };
    flow.l4_offset = l4;
    if flow.has_ports() {
        let ports: [u8; 4] = skb.load(l4).map_err(|_| DropReason::Malformed)?;
        flow.src_port = u16::from_be_bytes([ports[0], ports[1]]);
        flow.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
    }
    Ok(flow)
}

#[inline(always)]
fn parse_ipv4(skb: &SkBuff, l3: usize) -> Result<(Flow, usize), DropReason> {
    let header: [u8; 20] = skb.load(l3).map_err(|_| DropReason::Malformed)?;
    let header_len = usize::from(header[0] & 0x0f) * 4;
    if header_len < 20 {
        return Err(DropReason::Malformed);
    }

    // Only the first fragment carries the transport header; a later one has
    // no ports we could check.
    let fragment_offset = u16::from_be_bytes([header[6], header[7]]) & 0x1fff;
    if fragment_offset != 0 {
        return Err(DropReason::Fragment);
    }
    let flow = Flow {
        family: 4,
        proto: header[9],
        src: ipv4_mapped([header[12], header[13], header[14], header[15]]),
        dst: ipv4_mapped([header[16], header[17], header[18], header[19]]),
        src_port: 0,
        dst_port: 0,
        l4_offset: 0,
        l3_end: l3 + usize::from(u16::from_be_bytes([header[2], header[3]])),
        ip_options: header_len > 20,
    };
    Ok((flow, l3 + header_len))
}

#[inline(always)]
fn parse_ipv6(skb: &SkBuff, l3: usize) -> Result<(Flow, usize), DropReason> {
    let header: [u8; 40] = skb.load(l3).map_err(|_| DropReason::Malformed)?;
    let mut next_header = header[6];
    let mut offset = l3 + 40;
    let mut routing = false;
    for _ in 0..MAX_IPV6_EXTENSION_HEADERS {
        match next_header {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DESTINATION_OPTIONS => {
                // A routing header sends the packet on to the addresses it
                // lists, past the destination the policy checks.
                routing |= next_header == IPV6_ROUTING;
                let ext: [u8; 2] = skb.load(offset).map_err(|_| DropReason::Malformed)?;
                next_header = ext[0];
                offset += (usize::from(ext[1]) + 1) * 8;
            }
            IPV6_FRAGMENT => {
                let ext: [u8; 4] = skb.load(offset).map_err(|_| DropReason::Malformed)?;
                if u16::from_be_bytes([ext[2], ext[3]]) >> 3 != 0 {
                    return Err(DropReason::Fragment);
                }
                next_header = ext[0];
                offset += 8;
            }
            _ => break,
        }
    }
    if matches!(
        next_header,
        IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_FRAGMENT | IPV6_DESTINATION_OPTIONS
    ) {
        // More extension headers than we walk: refuse rather than guess.
        return Err(DropReason::Malformed);
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&header[8..24]);
    dst.copy_from_slice(&header[24..40]);
    let flow = Flow {
        family: 6,
        proto: next_header,
        src,
        dst,
        src_port: 0,
        dst_port: 0,
        l4_offset: 0,
        l3_end: l3 + 40 + usize::from(u16::from_be_bytes([header[4], header[5]])),
        ip_options: routing,
    };
    Ok((flow, offset))
}
