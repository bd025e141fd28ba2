//! Parsing the network and transport headers of a packet into a [`Flow`].
//!
//! Everything is read with `bpf_skb_load_bytes`, which bounds-checks at run
//! time: a short or lying header becomes an error, never an out-of-bounds read,
//! and the same code works for cgroup_skb (data starts at the IP header) and TC
//! (data starts at the Ethernet header) by passing the IP header offset.

use core::{
    mem::MaybeUninit,
    ptr::{addr_of_mut, write_volatile},
};

use aya_ebpf::{bindings::__sk_buff, helpers::bpf_skb_load_bytes, programs::sk_buff::SkBuff};
use openclaw_egress_common::{Addr, DropReason, ipv4_mapped, proto};

use crate::workload::Workload;

/// How many IPv6 extension headers we walk before giving up (and dropping).
const MAX_IPV6_EXTENSION_HEADERS: usize = 4;

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DESTINATION_OPTIONS: u8 = 60;

/// The parts of a packet a policy decision needs.
///
/// Laid out by hand and 8-byte aligned: the datapath zeroes and copies a
/// flow on every packet, and LLVM's BPF backend expands that into a few
/// 8-byte stores only for aligned memory. Byte arrays alone would make it
/// call a byte-at-a-time `memset` and copy byte by byte: 400 instructions,
/// two thirds of a cache hit's cost.
#[repr(C, align(8))]
pub struct Flow {
    /// Addresses in the IPv4-mapped form for IPv4 (see `openclaw_egress_common::addr`).
    pub src: Addr,
    pub dst: Addr,
    /// Offset of the transport header.
    pub l4_offset: usize,
    /// Where the IP packet ends according to its own header (total length,
    /// or payload length for IPv6). Anything in the buffer past it is not
    /// part of the packet, and a buffer shorter than it is truncated.
    pub l3_end: usize,
    /// The workload whose policy judges the flow: which maps, and which
    /// epoch a cached verdict must carry.
    pub workload: Workload,
    /// Host byte order; 0 unless TCP or UDP.
    pub src_port: u16,
    pub dst_port: u16,
    /// 4 or 6.
    pub family: u8,
    pub proto: u8,
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

    /// The slot of the workload's maps.
    #[inline(always)]
    pub const fn slot(&self) -> u32 {
        self.workload.slot
    }
}

/// Parses the IP header at `l3` and, for TCP and UDP, the ports after it,
/// for `workload`, into `slot` (the caller's stack: a flow is neither
/// zeroed by `memset` nor moved, see [`Flow`]).
#[inline(always)]
pub fn parse<'a>(
    skb: &SkBuff,
    l3: usize,
    workload: Workload,
    slot: &'a mut MaybeUninit<Flow>,
) -> Result<&'a Flow, DropReason> {
    let flow = blank(slot, workload);
    match parse_into(skb.skb, l3 as u32, flow) {
        0 => Ok(flow),
        reason => Err(DropReason::from_u8((reason - 1) as u8).unwrap_or(DropReason::Malformed)),
    }
}

/// A zeroed flow of `workload` in `slot`, with one store per field:
/// plain zero stores would be merged into a `memset` call, which the BPF
/// target runs a byte at a time.
#[inline(always)]
fn blank(slot: &mut MaybeUninit<Flow>, workload: Workload) -> &mut Flow {
    let flow = slot.as_mut_ptr();
    // SAFETY: every field of the (8-byte aligned) flow is written before
    // it is assumed initialized; the first 48 bytes are `src`, `dst`,
    // `l4_offset` and `l3_end` (see the layout assertion below).
    unsafe {
        let words = flow.cast::<u64>();
        for i in 0..6 {
            write_volatile(words.add(i), 0);
        }
        addr_of_mut!((*flow).workload).write(workload);
        write_volatile(addr_of_mut!((*flow).src_port), 0);
        write_volatile(addr_of_mut!((*flow).dst_port), 0);
        write_volatile(addr_of_mut!((*flow).family), 0);
        write_volatile(addr_of_mut!((*flow).proto), 0);
        write_volatile(addr_of_mut!((*flow).ip_options), false);
        slot.assume_init_mut()
    }
}

const _: () = assert!(core::mem::offset_of!(Flow, workload) == 48);

/// Fills `flow` from the packet; 0, or the drop reason plus one. Out of
/// line, and writing straight into the caller's flow, so that parsing
/// costs the caller's stack frame nothing.
#[inline(never)]
fn parse_into(skb: *mut __sk_buff, l3: u32, flow: &mut Flow) -> u32 {
    let skb = SkBuff::new(skb);
    let l3 = l3 as usize;
    // The common case in one helper call (each costs more than all the
    // parsing around it): an IPv4 header without options and the ports
    // right after it.
    if let Ok(bytes) = skb.load::<[u8; 24]>(l3)
        && bytes[0] == 0x45
    {
        let mut header = [0u8; 20];
        header.copy_from_slice(&bytes[..20]);
        let parsed = ipv4_from(&header, l3, flow);
        if parsed.is_ok() && flow.has_ports() {
            flow.src_port = u16::from_be_bytes([bytes[20], bytes[21]]);
            flow.dst_port = u16::from_be_bytes([bytes[22], bytes[23]]);
        }
        return match parsed {
            Ok(()) => 0,
            Err(reason) => reason as u32 + 1,
        };
    }
    let parsed = match skb.load::<u8>(l3).map(|first| first >> 4) {
        Ok(4) => parse_ipv4(&skb, l3, flow),
        Ok(6) => parse_ipv6(&skb, l3, flow),
        _ => Err(DropReason::Malformed),
    };
    let ports = parsed.and_then(|()| {
        if !flow.has_ports() {
            return Ok(());
        }
        let ports: [u8; 4] = skb
            .load(flow.l4_offset)
            .map_err(|_| DropReason::Malformed)?;
        flow.src_port = u16::from_be_bytes([ports[0], ports[1]]);
        flow.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
        Ok(())
    });
    match ports {
        Ok(()) => 0,
        Err(reason) => reason as u32 + 1,
    }
}

#[inline(always)]
fn parse_ipv4(skb: &SkBuff, l3: usize, flow: &mut Flow) -> Result<(), DropReason> {
    let header: [u8; 20] = skb.load(l3).map_err(|_| DropReason::Malformed)?;
    ipv4_from(&header, l3, flow)
}

/// Fills `flow` from the IPv4 header `header` found at `l3`.
#[inline(always)]
fn ipv4_from(header: &[u8; 20], l3: usize, flow: &mut Flow) -> Result<(), DropReason> {
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
    flow.family = 4;
    flow.proto = header[9];
    flow.src = ipv4_mapped([header[12], header[13], header[14], header[15]]);
    flow.dst = ipv4_mapped([header[16], header[17], header[18], header[19]]);
    flow.l3_end = l3 + usize::from(u16::from_be_bytes([header[2], header[3]]));
    flow.ip_options = header_len > 20;
    flow.l4_offset = l3 + header_len;
    Ok(())
}

#[inline(always)]
fn parse_ipv6(skb: &SkBuff, l3: usize, flow: &mut Flow) -> Result<(), DropReason> {
    // The fixed part, and the addresses loaded straight into the flow.
    let fixed: [u8; 8] = skb.load(l3).map_err(|_| DropReason::Malformed)?;
    load_into(skb, l3 + 8, &mut flow.src)?;
    load_into(skb, l3 + 24, &mut flow.dst)?;
    let mut next_header = fixed[6];
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
    flow.family = 6;
    flow.proto = next_header;
    flow.l3_end = l3 + 40 + usize::from(u16::from_be_bytes([fixed[4], fixed[5]]));
    flow.ip_options = routing;
    flow.l4_offset = offset;
    Ok(())
}

/// Loads 16 bytes at `offset` into `out`.
#[inline(always)]
fn load_into(skb: &SkBuff, offset: usize, out: &mut Addr) -> Result<(), DropReason> {
    // SAFETY: `out` has room for the 16 bytes asked for.
    let rc =
        unsafe { bpf_skb_load_bytes(skb.skb.cast(), offset as u32, out.as_mut_ptr().cast(), 16) };
    if rc != 0 {
        return Err(DropReason::Malformed);
    }
    Ok(())
}
