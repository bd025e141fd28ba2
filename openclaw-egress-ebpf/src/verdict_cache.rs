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
    /// Allowed so far, but its first bytes must still name an allowed
    /// server (see `inspection`).
    Inspecting = 3,
    /// Refused by inspection: reported once, dropped quietly since.
    Refused = 4,
}

impl Cached {
    #[inline(always)]
    const fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Allowed),
            2 => Some(Self::Audited),
            3 => Some(Self::Inspecting),
            4 => Some(Self::Refused),
            _ => None,
        }
    }
}

/// What the cache says about `flow`, if anything.
#[inline(always)]
pub fn lookup(skb: &SkBuff, flow: &Flow, hook: Hook) -> Option<Cached> {
    let value = match hook {
        Hook::Cgroup => socket_verdict::lookup(skb, flow)?,
        // SAFETY: pointer from a successful lookup, only read.
        Hook::Tc => unsafe { *FLOWS.get(flow.slot())?.get_ptr(&flow_key(flow))? },
    };
    Cached::from_u8(value)
}

#[inline(always)]
pub fn remember(skb: &SkBuff, flow: &Flow, hook: Hook, verdict: Cached) {
    match hook {
        Hook::Cgroup => socket_verdict::remember(skb, flow, verdict),
        Hook::Tc => {
            // A full map evicts its least recently used entry; an error
            // only costs a lookup next time.
            if let Some(flows) = FLOWS.get(flow.slot()) {
                let _ = flows.insert(&flow_key(flow), &(verdict as u8), 0);
            }
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
