//! A TCP or UDP flow to a destination other than DNS: allowed by the
//! destination maps, remembered in the verdict cache, and, where a rule
//! asks for it, held until its first bytes name an allowed server (see
//! `inspection`).

use core::{ffi::c_void, ptr};

use aya_ebpf::{
    bindings::{__sk_buff, bpf_tcp_sock},
    helpers::{bpf_tcp_sock, generated::bpf_loop},
    programs::sk_buff::SkBuff,
};
use openclaw_egress_common::{DropReason, NO_RULE, Stage, inspect, proto, record};

use crate::{
    egress_policy::{self, Decision, Hook},
    flow::Flow,
    inspection::{self, Outcome},
    report,
    verdict_cache::{self, Cached},
};

const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;

/// The fast path: a connection with a verdict passes or drops on one
/// lookup. Everything else (the destination maps, inspection) is done in a
/// `bpf_loop` callback: verified once, in a stack frame of its own.
#[inline(always)]
pub fn check(skb: &SkBuff, flow: &Flow, hook: Hook) -> Decision {
    let inspecting = match verdict_cache::lookup(skb, flow, hook) {
        Some(Cached::Allowed | Cached::Audited) => return Decision::Pass,
        // A bare reset of a refused connection passes: it carries nothing,
        // and it lets the server drop its half (the daemon's socket destroy
        // and the TC program's reset both send one).
        Some(Cached::Refused) if is_bare_reset(skb, flow) => return Decision::Pass,
        Some(Cached::Refused) => return Decision::DropQuietly,
        Some(Cached::Inspecting) => true,
        None => false,
    };
    let mut call = SlowPath {
        skb: skb.skb,
        flow: ptr::from_ref(flow),
        hook: hook as u8,
        inspecting: u8::from(inspecting),
        decision: Decision::Drop(DropReason::NoRule).encode(),
    };
    // SAFETY: `slow_path` has the callback signature bpf_loop expects, and
    // the context is this stack frame's, alive for the call.
    unsafe {
        bpf_loop(
            1,
            slow_path as *const () as *mut c_void,
            ptr::from_mut(&mut call).cast(),
            0,
        )
    };
    Decision::decode(call.decision)
}

#[repr(C)]
struct SlowPath {
    skb: *mut __sk_buff,
    flow: *const Flow,
    hook: u8,
    inspecting: u8,
    decision: u32,
}

#[inline(never)]
extern "C" fn slow_path(_index: u64, context: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the context pointer it was given.
    let call = unsafe { &mut *context.cast::<SlowPath>() };
    let skb = SkBuff::new(call.skb);
    // SAFETY: the flow the caller lent for the call.
    let flow = unsafe { &*call.flow };
    let hook = Hook::from_u8(call.hook);
    let decision = if call.inspecting != 0 {
        inspect(&skb, flow, hook)
    } else {
        first_packet(&skb, flow, hook)
    };
    call.decision = decision.encode();
    1
}

/// A flow the cache knows nothing of: its destination, and whether its
/// first bytes must be inspected.
#[inline(always)]
fn first_packet(skb: &SkBuff, flow: &Flow, hook: Hook) -> Decision {
    let allowed =
        match egress_policy::check_destination(flow.slot(), &flow.dst, flow.proto, flow.dst_port) {
            Ok(allowed) => allowed,
            Err(reason) => return Decision::Drop(reason),
        };
    let checks = allowed.inspect;
    if flow.proto != proto::TCP
        || checks & (inspect::TLS | inspect::HTTP) == 0
        || predates_inspection(skb, flow, hook)
    {
        verdict_cache::remember(skb, flow, hook, Cached::Allowed);
        record_allowed(skb, flow, hook, allowed.rule);
        return Decision::Pass;
    }
    if !inspection::start(skb, flow, hook, checks) {
        // No room to follow it: refused rather than let through unchecked.
        return Decision::Drop(inspection::refusal(checks));
    }
    verdict_cache::remember(skb, flow, hook, Cached::Inspecting);
    inspect(skb, flow, hook)
}

/// Continues the inspection of `flow`'s connection with this packet.
#[inline(always)]
fn inspect(skb: &SkBuff, flow: &Flow, hook: Hook) -> Decision {
    match inspection::continue_with(skb, flow, hook) {
        Outcome::Pending => Decision::Pass,
        Outcome::Allowed => {
            verdict_cache::remember(skb, flow, hook, Cached::Allowed);
            inspection::finish(flow, hook);
            record_allowed(skb, flow, hook, NO_RULE);
            Decision::Pass
        }
        Outcome::Refused(reason) => {
            verdict_cache::remember(skb, flow, hook, Cached::Refused);
            inspection::finish(flow, hook);
            Decision::Drop(reason)
        }
    }
}

/// Reports a connection allowed for good, if its policy records them
/// (`--flow-log`, learn mode): once per connection, since only a packet
/// the verdict cache knows nothing of gets here.
#[inline(always)]
fn record_allowed(skb: &SkBuff, flow: &Flow, hook: Hook, rule: u32) {
    let slot = flow.slot();
    if report::records(slot, record::FLOWS) {
        report::allowed(flow, Stage::Packet, rule, hook.sender(skb, slot), None);
    }
}

/// Whether a connection that a newly attached instance meets mid-stream
/// (no SYN seen: it was judged by the instance this one replaced) has
/// already exchanged data, so that its first bytes are long gone. Only a
/// kernel TCP socket can say so (cgroup hooks); on TC, a connection met
/// mid-stream is inspected from there, and fails.
#[inline(always)]
fn predates_inspection(skb: &SkBuff, flow: &Flow, hook: Hook) -> bool {
    if hook != Hook::Cgroup {
        return false;
    }
    match skb.load::<u8>(flow.l4_offset + 13) {
        Ok(flags) if flags & TCP_SYN == 0 => {}
        _ => return false,
    }
    // SAFETY: the context's socket pointer, checked for NULL.
    let sk = unsafe { (*skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return false;
    }
    // SAFETY: a socket pointer from the context.
    let tcp: *mut bpf_tcp_sock = unsafe { bpf_tcp_sock(sk) };
    if tcp.is_null() {
        return false;
    }
    // SAFETY: a TCP socket the helper returned. The SYN counts as one byte
    // acknowledged; anything more, or anything received, is data.
    unsafe { (*tcp).bytes_acked > 1 || (*tcp).bytes_received > 0 }
}

/// A TCP reset without data.
#[inline(always)]
fn is_bare_reset(skb: &SkBuff, flow: &Flow) -> bool {
    if flow.proto != proto::TCP {
        return false;
    }
    let Ok(header) = skb.load::<[u8; 14]>(flow.l4_offset) else {
        return false;
    };
    let data = flow.l4_offset + usize::from(header[12] >> 4) * 4;
    header[13] & TCP_RST != 0 && data >= flow.l3_end
}
