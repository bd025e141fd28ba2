//! Names bound to connections: on a port where a rule asks for it, the first
//! bytes a TCP connection sends must be a TLS ClientHello whose server name
//! (SNI), or an HTTP request whose `Host`, the policy allows on that port.
//! Until they are, the connection is "being inspected"; then it is allowed
//! (and costs one cache lookup per packet, as any other) or refused.
//!
//! The bytes may come in any number of segments (a ClientHello with a
//! post-quantum key share spans two; an application may write it in
//! pieces), so the parser is a state machine whose state lives with the
//! connection: in the socket's storage on cgroup hooks, in an LRU per
//! 5-tuple on TC hooks. Each segment continues it at the stream position it
//! reached: a segment must start there (or be a retransmission of what was
//! parsed); a gap is refused. The parser runs under `bpf_loop`, so the
//! verifier checks one step once, whatever the input.

use core::{ffi::c_void, ptr};

use aya_ebpf::{
    bindings::{__sk_buff, BPF_SK_STORAGE_GET_F_CREATE},
    helpers::{bpf_sk_storage_get, generated::bpf_loop},
    programs::sk_buff::SkBuff,
};
use openclaw_egress_common::{DropReason, FlowKey, inspect};

pub use crate::map_types::InspectState;
use crate::{
    egress_policy::Hook,
    flow::Flow,
    http_request,
    maps::{INSPECT_BLANK, INSPECT_FLOWS, INSPECTIONS},
    server_name::{self, Judgement},
    tls_hello,
};

/// Bytes of a connection's stream that may be read before its ClientHello
/// or request head is complete; past that, the connection is refused.
pub const MAX_STREAM_BYTES: u32 = 16 * 1024;
/// Parser steps per segment (a field, a skip, or one byte of a name).
const MAX_STEPS: u32 = 16 * 1024;

const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;

/// Where parsing ended up for now.
pub enum Outcome {
    /// More bytes are needed; let this segment through.
    Pending,
    /// The name is allowed: the connection is allowed for good.
    Allowed,
    /// Refused, for this reason.
    Refused(DropReason),
}

/// A segment's place in its stream.
struct Segment {
    seq: u32,
    flags: u8,
    /// Where its data starts and ends in the packet.
    data: usize,
    end: usize,
}

/// What the `bpf_loop` callback works on.
#[repr(C)]
struct StepContext {
    skb: *mut __sk_buff,
    state: *mut InspectState,
    /// The next byte to parse, and the end of the data, in the packet.
    offset: u32,
    end: u32,
}

/// What one parser step did.
pub enum Step {
    /// Go on with the next step.
    Continue,
    /// The ClientHello or request head is complete (or refused): stop.
    Done,
}

/// Starts inspecting a connection whose first packet (normally its SYN) is
/// `flow`, for the `inspect` bits `flags`. `false` when there is no room for
/// the state (the connection is then refused: fail closed).
#[inline(always)]
pub fn start(skb: &SkBuff, flow: &Flow, hook: Hook, flags: u8) -> bool {
    let Some(segment) = segment(skb, flow) else {
        return false;
    };
    let state = state(skb, flow, hook, true);
    if state.is_null() {
        return false;
    }
    // SAFETY: a non-null pointer to this connection's (possibly reused)
    // state.
    let state = unsafe { &mut *state };
    state.next_seq = if segment.flags & TCP_SYN != 0 {
        segment.seq.wrapping_add(1)
    } else {
        segment.seq
    };
    state.seen = 0;
    state.need = 0;
    state.record_left = 0;
    state.exts_left = 0;
    state.ext_left = 0;
    state.hello_left = 0;
    state.name_len = 0;
    state.slot = flow.slot();
    state.flags = flags;
    state.phase = 0;
    state.after = 0;
    state.have = 0;
    state.record_have = 0;
    state.ech = 0;
    state.in_extensions = 0;
    true
}

/// Parses what `flow`'s packet adds to its connection's first bytes.
#[inline(always)]
pub fn continue_with(skb: &SkBuff, flow: &Flow, hook: Hook) -> Outcome {
    let Some(segment) = segment(skb, flow) else {
        return Outcome::Refused(DropReason::TlsMalformed);
    };
    let state = state(skb, flow, hook, false);
    if state.is_null() {
        // The state went (an LRU on TC makes room): nothing to continue.
        return Outcome::Refused(DropReason::TlsMalformed);
    }
    // SAFETY: a non-null pointer to this connection's state.
    let state_ref = unsafe { &mut *state };
    let len = segment.end.saturating_sub(segment.data) as u32;
    if len == 0 {
        // Handshake, ACKs, FIN: nothing to parse. (A RST ends it anyway.)
        return Outcome::Pending;
    }
    if segment.flags & (TCP_SYN | TCP_RST) != 0 {
        // Data on a SYN (TCP Fast Open) or a RST: nothing a client sends its
        // ClientHello or request in.
        return Outcome::Refused(refusal(state_ref.flags));
    }
    // Place the segment in the stream: new bytes start at `next_seq`.
    let ahead = segment.seq.wrapping_sub(state_ref.next_seq) as i32;
    if ahead > 0 {
        return Outcome::Refused(refusal(state_ref.flags)); // A gap.
    }
    let already = ahead.unsigned_abs();
    if already >= len {
        return Outcome::Pending; // A retransmission of parsed bytes.
    }
    if state_ref.seen.saturating_add(len - already) > MAX_STREAM_BYTES {
        return Outcome::Refused(refusal(state_ref.flags));
    }
    let mut context = StepContext {
        skb: skb.skb,
        state,
        offset: (segment.data as u32).wrapping_add(already),
        end: segment.end as u32,
    };
    // SAFETY: `step` has the callback signature bpf_loop expects, and the
    // context is this stack frame's, alive for the call.
    unsafe {
        bpf_loop(
            MAX_STEPS,
            step as *const () as *mut c_void,
            ptr::from_mut(&mut context).cast(),
            0,
        )
    };
    let parsed = context.offset.saturating_sub(segment.data as u32 + already);
    state_ref.next_seq = state_ref.next_seq.wrapping_add(parsed);
    state_ref.seen = state_ref.seen.saturating_add(parsed);
    if state_ref.flags & inspect::TLS != 0 {
        tls_hello::outcome(state_ref, flow.dst_port, context.offset < context.end)
    } else {
        http_request::outcome(state_ref, flow.dst_port, context.offset < context.end)
    }
}

/// Forgets the state of a connection whose inspection is over.
#[inline(always)]
pub fn finish(flow: &Flow, hook: Hook) {
    if hook == Hook::Tc
        && let Some(flows) = INSPECT_FLOWS.get(flow.slot())
    {
        let _ = flows.remove(&flow_key(flow));
    }
    // On cgroup hooks the socket's storage goes with the socket.
}

/// The reason for refusing bytes that cannot be what the port expects.
#[inline(always)]
pub fn refusal(flags: u8) -> DropReason {
    if flags & inspect::TLS != 0 {
        DropReason::TlsMalformed
    } else {
        DropReason::HostDenied
    }
}

/// The `bpf_loop` callback: one parser step.
#[inline(never)]
extern "C" fn step(_index: u64, context: *mut c_void) -> i64 {
    const STOP: i64 = 1;
    // SAFETY: bpf_loop passes back the context pointer it was given.
    let context = unsafe { &mut *context.cast::<StepContext>() };
    if context.offset >= context.end {
        return STOP;
    }
    let skb = SkBuff::new(context.skb);
    // SAFETY: the state pointer the driver checked and stored.
    let state = unsafe { &mut *context.state };
    let step = if state.flags & inspect::TLS != 0 {
        tls_hello::step(&skb, state, &mut context.offset, context.end)
    } else {
        http_request::step(&skb, state, &mut context.offset, context.end)
    };
    match step {
        Step::Continue => 0,
        Step::Done => STOP,
    }
}

#[inline(always)]
fn segment(skb: &SkBuff, flow: &Flow) -> Option<Segment> {
    let header: [u8; 14] = skb.load(flow.l4_offset).ok()?;
    let data = flow.l4_offset + usize::from(header[12] >> 4) * 4;
    // The IP length says where the packet ends (a frame may be padded).
    let end = (skb.len() as usize).min(flow.l3_end);
    Some(Segment {
        seq: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
        flags: header[13],
        data,
        end,
    })
}

/// This connection's parser state, created if asked.
#[inline(always)]
fn state(skb: &SkBuff, flow: &Flow, hook: Hook, create: bool) -> *mut InspectState {
    match hook {
        Hook::Cgroup => {
            // SAFETY: reading the context's socket pointer, checked for NULL.
            let sk = unsafe { (*skb.skb).__bindgen_anon_2.sk };
            if sk.is_null() {
                return ptr::null_mut();
            }
            let flags = if create {
                u64::from(BPF_SK_STORAGE_GET_F_CREATE)
            } else {
                0
            };
            let map = ptr::from_ref(&INSPECTIONS).cast_mut().cast();
            // SAFETY: a socket and our socket storage map.
            unsafe { bpf_sk_storage_get(map, sk.cast(), ptr::null_mut(), flags) }.cast()
        }
        Hook::Tc => {
            let key = flow_key(flow);
            let Some(flows) = INSPECT_FLOWS.get(flow.slot()) else {
                return ptr::null_mut();
            };
            if create {
                // The state is too big for the stack: a zeroed per-CPU one
                // is the template (start() fills it in).
                let Some(blank) = INSPECT_BLANK.get(0) else {
                    return ptr::null_mut();
                };
                let _ = flows.insert(&key, blank, 0);
            }
            flows.get_ptr_mut(&key).unwrap_or(ptr::null_mut())
        }
    }
}

#[inline(always)]
fn flow_key(flow: &Flow) -> FlowKey {
    FlowKey {
        src: flow.src,
        dst: flow.dst,
        src_port: flow.src_port,
        dst_port: flow.dst_port,
        proto: flow.proto,
        _pad: [0; 3],
    }
}

/// Checks the collected name against the policy for `port`.
#[inline(always)]
pub fn name_verdict(state: &InspectState, port: u16, denied: DropReason) -> Outcome {
    match server_name::judge(state.slot, &state.name, state.name_len as usize, port) {
        Judgement::Allowed => Outcome::Allowed,
        Judgement::Denied => Outcome::Refused(denied),
        Judgement::Contended => Outcome::Refused(DropReason::Contended),
    }
}
