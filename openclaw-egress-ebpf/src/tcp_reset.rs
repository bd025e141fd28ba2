//! Telling a client that its connection was refused: on the host side of a
//! workload's veth, the refused segment is turned into a TCP reset to the
//! client, in place, and sent back out of the interface it came in on. The
//! application gets ECONNRESET at once instead of retransmitting into a
//! drop until its own timeout. A copy, made first, resets the server's half
//! of the connection.
//!
//! (On cgroup hooks the daemon destroys the socket instead: a cgroup_skb
//! program can neither rewrite nor send packets.)

use aya_ebpf::{
    bindings::{__sk_buff, BPF_F_INGRESS, TC_ACT_REDIRECT},
    helpers::{
        bpf_clone_redirect, bpf_csum_diff, bpf_redirect, bpf_skb_change_tail, bpf_skb_store_bytes,
    },
    programs::TcContext,
};

const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const TCP_HEADER_LEN: usize = 20;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const PROTO_TCP: u8 = 6;

/// Replaces the packet (an Ethernet frame carrying a TCP segment of the
/// workload, IP header at `l3`, no IP options) with a reset to its sender
/// and redirects it there. `None` when that cannot be done (the caller then
/// just drops the packet).
#[inline(always)]
pub fn answer_with_reset(ctx: &TcContext, l3: usize) -> Option<i32> {
    match reset_in_place(ctx.skb.skb, l3 as u32) {
        0 => None,
        verdict => Some(verdict),
    }
}

/// Out of line: its header buffers live in a stack frame of their own.
/// Returns the TC verdict, or 0 when the reset could not be made.
#[inline(never)]
fn reset_in_place(skb: *mut __sk_buff, l3: u32) -> i32 {
    let ctx = TcContext::new(skb);
    rewrite(&ctx, l3 as usize).unwrap_or(0)
}

/// The refused segment, as read before it is rewritten.
struct Refused {
    version: u8,
    l4: usize,
    /// The segment's ports as in the packet (network order).
    ports: [u8; 4],
    seq: u32,
    ack: u32,
    flags: u8,
    /// Sequence space the segment used: data, SYN and FIN.
    consumed: u32,
}

/// Which way a reset goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Toward {
    /// To the server, as the refused segment went: its half of the
    /// connection goes too (else it waits for a ClientHello that never
    /// comes, and an iterative server serves no one meanwhile).
    Server,
    /// Back to the client that sent the segment.
    Client,
}

#[inline(always)]
fn rewrite(ctx: &TcContext, l3: usize) -> Option<i32> {
    let refused = read(ctx, l3)?;
    // SAFETY: reading the context's ingress interface.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // The server's reset: a copy handed back to this interface's ingress,
    // where this program lets a bare reset of a refused connection pass.
    if write_reset(ctx, l3, &refused, Toward::Server).is_some() {
        // SAFETY: a helper call on the context; the packet is a complete
        // reset by now. (If the copy cannot be made, the server's half just
        // times out.)
        let _ = unsafe { bpf_clone_redirect(ctx.skb.skb, ifindex, BPF_F_INGRESS.into()) };
    }
    write_reset(ctx, l3, &refused, Toward::Client)?;
    // The frame goes back: swap the MAC addresses.
    let macs: [u8; 12] = ctx.load(0).ok()?;
    let mut swapped = [0u8; 12];
    swapped[0..6].copy_from_slice(&macs[6..12]);
    swapped[6..12].copy_from_slice(&macs[0..6]);
    store(ctx, 0, &swapped)?;
    // SAFETY: a helper call; it only records where the packet goes.
    unsafe { bpf_redirect(ifindex, 0) };
    Some(TC_ACT_REDIRECT)
}

#[inline(always)]
fn read(ctx: &TcContext, l3: usize) -> Option<Refused> {
    let version = ctx.load::<u8>(l3).ok()? >> 4;
    let (l4, payload_len) = match version {
        4 => {
            let header: [u8; IPV4_HEADER_LEN] = ctx.load(l3).ok()?;
            let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let l4 = l3 + IPV4_HEADER_LEN;
            (l4, total.checked_sub(IPV4_HEADER_LEN)?)
        }
        6 => {
            let fixed: [u8; 8] = ctx.load(l3).ok()?;
            if fixed[6] != PROTO_TCP {
                return None; // Extension headers: not worth the trouble.
            }
            (
                l3 + IPV6_HEADER_LEN,
                usize::from(u16::from_be_bytes([fixed[4], fixed[5]])),
            )
        }
        _ => return None,
    };
    let tcp: [u8; TCP_HEADER_LEN] = ctx.load(l4).ok()?;
    let data = payload_len.checked_sub(usize::from(tcp[12] >> 4) * 4)? as u32;
    let flags = tcp[13];
    if flags & TCP_RST != 0 {
        return None; // Never answer a reset.
    }
    Some(Refused {
        version,
        l4,
        ports: [tcp[0], tcp[1], tcp[2], tcp[3]],
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        ack: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
        flags,
        consumed: data + u32::from(flags & TCP_SYN != 0) + u32::from(flags & TCP_FIN != 0),
    })
}

/// Turns the packet into a bare reset `toward` one end (IP and TCP headers
/// rewritten, the data cut off).
#[inline(always)]
fn write_reset(ctx: &TcContext, l3: usize, refused: &Refused, toward: Toward) -> Option<()> {
    let back = toward == Toward::Client;
    let mut reset = [0u8; TCP_HEADER_LEN];
    if back {
        reset[0..2].copy_from_slice(&refused.ports[2..4]);
        reset[2..4].copy_from_slice(&refused.ports[0..2]);
        // RFC 9293 3.10.7.1: the reset acknowledges everything the segment
        // carried and takes its sequence number from the segment's ACK.
        let seq = if refused.flags & TCP_ACK != 0 {
            refused.ack
        } else {
            0
        };
        reset[4..8].copy_from_slice(&seq.to_be_bytes());
        reset[8..12].copy_from_slice(&refused.seq.wrapping_add(refused.consumed).to_be_bytes());
    } else {
        // In the segment's place: the server expects exactly its sequence
        // number (the bytes before it passed), so it takes the reset.
        reset[0..4].copy_from_slice(&refused.ports);
        reset[4..8].copy_from_slice(&refused.seq.to_be_bytes());
        reset[8..12].copy_from_slice(&refused.ack.to_be_bytes());
    }
    reset[12] = 5 << 4;
    reset[13] = TCP_RST | TCP_ACK;

    let checksum = match refused.version {
        4 => {
            let mut header: [u8; IPV4_HEADER_LEN] = ctx.load(l3).ok()?;
            let (mut src, mut dst) = (
                [header[12], header[13], header[14], header[15]],
                [header[16], header[17], header[18], header[19]],
            );
            if back {
                core::mem::swap(&mut src, &mut dst);
            }
            header = [0; IPV4_HEADER_LEN];
            header[0] = 0x45;
            header[2..4]
                .copy_from_slice(&((IPV4_HEADER_LEN + TCP_HEADER_LEN) as u16).to_be_bytes());
            header[6] = 0x40; // Don't fragment.
            header[8] = 64;
            header[9] = PROTO_TCP;
            header[12..16].copy_from_slice(&src);
            header[16..20].copy_from_slice(&dst);
            let ip_checksum = fold(sum(&header, 0)?);
            header[10..12].copy_from_slice(&ip_checksum.to_ne_bytes());
            store(ctx, l3, &header)?;
            let mut pseudo = [0u8; 12];
            pseudo[0..4].copy_from_slice(&src);
            pseudo[4..8].copy_from_slice(&dst);
            pseudo[9] = PROTO_TCP;
            pseudo[10..12].copy_from_slice(&(TCP_HEADER_LEN as u16).to_be_bytes());
            sum(&pseudo, 0)?
        }
        _ => {
            let mut header: [u8; IPV6_HEADER_LEN] = ctx.load(l3).ok()?;
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&header[8..24]);
            dst.copy_from_slice(&header[24..40]);
            if back {
                core::mem::swap(&mut src, &mut dst);
            }
            header[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            header[4..6].copy_from_slice(&(TCP_HEADER_LEN as u16).to_be_bytes());
            header[6] = PROTO_TCP;
            header[7] = 64;
            header[8..24].copy_from_slice(&src);
            header[24..40].copy_from_slice(&dst);
            store(ctx, l3, &header)?;
            let mut pseudo = [0u8; 40];
            pseudo[0..16].copy_from_slice(&src);
            pseudo[16..32].copy_from_slice(&dst);
            pseudo[34..36].copy_from_slice(&(TCP_HEADER_LEN as u16).to_be_bytes());
            pseudo[39] = PROTO_TCP;
            sum(&pseudo, 0)?
        }
    };
    let tcp_checksum = fold(sum(&reset, checksum)?);
    reset[16..18].copy_from_slice(&tcp_checksum.to_ne_bytes());
    store(ctx, refused.l4, &reset)?;
    // SAFETY: a helper call on the context the kernel handed us.
    let rc = unsafe { bpf_skb_change_tail(ctx.skb.skb, (refused.l4 + TCP_HEADER_LEN) as u32, 0) };
    (rc == 0).then_some(())
}

/// The ones'-complement sum of `bytes` (a multiple of 4) added to `seed`.
#[inline(always)]
fn sum<const N: usize>(bytes: &[u8; N], seed: u32) -> Option<u32> {
    // SAFETY: `bytes` is readable for N bytes; the helper only reads it.
    let result = unsafe {
        bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            bytes.as_ptr().cast_mut().cast(),
            N as u32,
            seed,
        )
    };
    (result >= 0).then_some(result as u32)
}

/// Folds a 32-bit sum into the 16-bit checksum field's value. The sum is
/// of the bytes as they lie in memory, read in the CPU's order
/// (`bpf_csum_diff` is the kernel's `csum_partial`), so the folded value is
/// stored in the CPU's order too (`to_ne_bytes`), not in network order.
#[inline(always)]
fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[inline(always)]
fn store<const N: usize>(ctx: &TcContext, offset: usize, bytes: &[u8; N]) -> Option<()> {
    // SAFETY: `bytes` is readable for N bytes; the helper copies them into
    // the packet (bounds-checked by the kernel).
    let rc = unsafe {
        bpf_skb_store_bytes(
            ctx.skb.skb.cast(),
            offset as u32,
            bytes.as_ptr().cast(),
            N as u32,
            0,
        )
    };
    (rc == 0).then_some(())
}
