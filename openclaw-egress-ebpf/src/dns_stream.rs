//! DNS over TCP is a byte stream: what the resolver reads is what the
//! sender's segments say *at their sequence numbers*, not segment by
//! segment. A workload that crafts its own TCP segments (a raw socket or a
//! packet socket, with CAP_NET_RAW) could send segments that each hold
//! whole, allowed messages, yet overlap so that the resolver's reassembled
//! stream holds another question (or the tail of an EDNS option turned into
//! one). So the checker keeps the stream's position:
//!
//! - on a cgroup hook, a segment to port 53 must come from a kernel TCP
//!   socket, whose stream is what it sends (a raw socket's is refused);
//! - on a TC hook (no socket), each connection's next sequence number is
//!   kept per 5-tuple: new data must start exactly there, and a segment
//!   entirely below it (a retransmission, which the resolver ignores when it
//!   has the data) is checked like any other. Anything else (a gap, an
//!   overlap into new data, data without a handshake seen) is refused.

use aya_ebpf::{
    bindings::{BPF_ANY, bpf_sock},
    helpers::bpf_sk_fullsock,
    programs::sk_buff::SkBuff,
};
use openclaw_egress_common::{FlowKey, proto};

use crate::{
    dns_name::{self, DnsScratch, load, store},
    egress_policy::Hook,
    flow::Flow,
    maps::DNS_STREAMS,
};

const SOCK_STREAM: u32 = 1;
const TCP_SYN: u8 = 0x02;

/// The sequence numbers of a segment: where its data starts, and its flags.
pub struct Segment {
    pub seq: u32,
    pub flags: u8,
}

#[inline(always)]
pub fn segment(skb: &SkBuff, flow: &Flow) -> Option<Segment> {
    let header: [u8; 14] = skb.load(flow.l4_offset).ok()?;
    Some(Segment {
        seq: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
        flags: header[13],
    })
}

/// Whether a segment with `len` bytes of data may be checked as the next
/// part of its stream.
#[inline(always)]
pub fn admits(skb: &SkBuff, flow: &Flow, hook: Hook, segment: &Segment, len: usize) -> bool {
    match hook {
        Hook::Cgroup => from_tcp_socket(skb),
        Hook::Tc => {
            let key = key(flow);
            let Some(streams) = DNS_STREAMS.get(flow.slot()) else {
                return false;
            };
            if segment.flags & TCP_SYN != 0 {
                // A new connection on this 5-tuple: its data starts after
                // the SYN. (A SYN carrying data is refused by the caller:
                // TCP Fast Open is nothing a stub resolver uses.)
                let next = segment.seq.wrapping_add(1);
                let _ = streams.insert(&key, &next, u64::from(BPF_ANY));
                return len == 0;
            }
            if len == 0 {
                return true; // ACKs, FIN, RST: no data to place.
            }
            let Some(next) = streams.get_ptr(&key) else {
                return false; // No handshake seen: nothing to place it in.
            };
            // SAFETY: pointer from a successful lookup, only read.
            let next = unsafe { *next };
            let end = segment.seq.wrapping_add(len as u32);
            // Entirely below the stream's position (wrapping arithmetic):
            // a retransmission.
            let old = (next.wrapping_sub(end) as i32) >= 0;
            segment.seq == next || old
        }
    }
}

/// Remembers a segment admitted by [`admits`] until its messages are checked.
#[inline(always)]
pub fn hold(scratch: &mut DnsScratch, segment: &Segment, len: usize) {
    store(&mut scratch.segment_seq, segment.seq);
    store(&mut scratch.segment_len, len as u32);
}

/// Moves the stream of `flow` on past the segment [`hold`] remembered, now
/// that its messages passed (TC hooks).
#[inline(always)]
pub fn advance(flow: &Flow, hook: Hook) {
    if hook != Hook::Tc {
        return;
    }
    // SAFETY: the program's own use of this CPU's scratch area.
    let Some(scratch) = (unsafe { dns_name::scratch() }) else {
        return;
    };
    let seq = load(&scratch.segment_seq);
    let len = load(&scratch.segment_len);
    if let Some(next) = DNS_STREAMS
        .get(flow.slot())
        .and_then(|streams| streams.get_ptr_mut(&key(flow)))
    {
        // SAFETY: pointer from a successful lookup.
        let next = unsafe { &mut *next };
        if *next == seq {
            *next = seq.wrapping_add(len);
        }
    }
}

/// Whether the packet comes from a kernel TCP socket (not a raw one).
#[inline(always)]
fn from_tcp_socket(skb: &SkBuff) -> bool {
    // SAFETY: reading the context's socket pointer, which the verifier
    // allows for cgroup_skb; checked for NULL below.
    let sk = unsafe { (*skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return false;
    }
    // SAFETY: a socket pointer from the context.
    let full: *mut bpf_sock = unsafe { bpf_sk_fullsock(sk) };
    if full.is_null() {
        return false;
    }
    // SAFETY: a full socket the helper returned.
    unsafe { (*full).type_ == SOCK_STREAM && (*full).protocol == u32::from(proto::TCP) }
}

#[inline(always)]
fn key(flow: &Flow) -> FlowKey {
    FlowKey {
        src: flow.src,
        dst: flow.dst,
        src_port: flow.src_port,
        dst_port: flow.dst_port,
        proto: flow.proto,
        _pad: [0; 3],
    }
}
