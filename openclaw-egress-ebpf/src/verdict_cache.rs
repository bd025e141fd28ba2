//! Remembering verdicts so that a flow is judged once:
//! - an allowed flow keeps passing after a single lookup, and after the
//!   DNS-derived allow entry expires (an expiry stops *new* connections and
//!   never cuts a live one);
//! - in audit mode, a flow that would be dropped is reported once, not once
//!   per packet.
//!
//! cgroup hooks know the sending socket and cache on it (socket local
//! storage, gone with the socket). TC hooks have no socket and cache per
//! 5-tuple in an LRU map (old flows make room for new ones).

use aya_ebpf::programs::sk_buff::SkBuff;
use openclaw_egress_common::FlowKey;

use crate::{egress_policy::Hook, flow::Flow, maps::FLOWS, socket_verdict};

/// What a cache entry says.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    Allowed = 1,
    /// Audit mode: reported already; let it through quietly.
    Audited = 2,
}

#[inline(always)]
pub fn is_cached(skb: &SkBuff, flow: &Flow, hook: Hook) -> bool {
    match hook {
        Hook::Cgroup => socket_verdict::is_cached(skb, flow),
        Hook::Tc => FLOWS.get_ptr(&flow_key(flow)).is_some(),
    }
}

#[inline(always)]
pub fn remember(skb: &SkBuff, flow: &Flow, hook: Hook, verdict: Cached) {
    match hook {
        Hook::Cgroup => socket_verdict::remember(skb, flow, verdict),
        Hook::Tc => {
            // A full map evicts its least recently used entry; an error
            // only costs a lookup next time.
            let _ = FLOWS.insert(&flow_key(flow), &(verdict as u8), 0);
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
