//! The verdict cache of cgroup hooks: socket local storage.
//!
//! Once a socket's destination is allowed, later packets of that socket to the
//! same destination pass after a single lookup, and keep passing after the
//! DNS-derived allow entry expires: an expiry stops *new* connections, never
//! cuts a live one. The cache dies with the socket.

use core::ptr;

use crate::{flow::Flow, map_types::SocketVerdict, maps::VERDICTS, verdict_cache::Cached};
use aya_ebpf::{
    bindings::BPF_SK_STORAGE_GET_F_CREATE, helpers::bpf_sk_storage_get, programs::sk_buff::SkBuff,
};

/// The verdict `flow`'s socket has for `flow`'s destination, if any (a
/// [`Cached`] as `u8`).
#[inline(always)]
pub fn lookup(skb: &SkBuff, flow: &Flow) -> Option<u8> {
    let verdict = storage(skb, 0);
    if verdict.is_null() {
        return None;
    }
    // SAFETY: non-null pointer to this socket's storage.
    let verdict = unsafe { &*verdict };
    (verdict.verdict != 0
        && verdict.epoch == flow.workload.epoch
        && verdict.port == flow.dst_port
        && verdict.proto == flow.proto
        && verdict.dst == flow.dst)
        .then_some(verdict.verdict)
}

/// Remembers `verdict` for `flow`'s socket and destination.
#[inline(always)]
pub fn remember(skb: &SkBuff, flow: &Flow, verdict_kind: Cached) {
    let verdict = storage(skb, u64::from(BPF_SK_STORAGE_GET_F_CREATE));
    if verdict.is_null() {
        return;
    }
    // SAFETY: non-null pointer to this socket's (possibly fresh, zeroed) storage.
    let verdict = unsafe { &mut *verdict };
    verdict.epoch = flow.workload.epoch;
    verdict.dst = flow.dst;
    verdict.port = flow.dst_port;
    verdict.proto = flow.proto;
    verdict.verdict = verdict_kind as u8;
}

#[inline(always)]
fn storage(skb: &SkBuff, flags: u64) -> *mut SocketVerdict {
    // SAFETY: reading the context's socket pointer, which the verifier allows
    // for cgroup_skb and checks for NULL below.
    let sk = unsafe { (*skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return ptr::null_mut();
    }
    let map = ptr::from_ref(&VERDICTS).cast_mut().cast();
    // SAFETY: a socket and our socket storage map. The helper itself returns
    // NULL for a socket that is not a full one (request or time-wait
    // sockets), which saves calling `bpf_sk_fullsock` on every packet.
    unsafe { bpf_sk_storage_get(map, sk.cast(), ptr::null_mut(), flags) }.cast()
}
