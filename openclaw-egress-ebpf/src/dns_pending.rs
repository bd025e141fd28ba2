//! Outstanding queries: an answer teaches addresses only if it answers a
//! query this workload sent, and only once.
//!
//! Without this, any packet from a resolver's address and port 53 carrying
//! an allowed question would teach its addresses: a spoofed answer from an
//! on-path host, or one injected into the workload's own interface, could
//! open any destination. The query is remembered when it leaves (resolver,
//! both ports, protocol, DNS ID, question) and forgotten when its answer
//! arrives or it times out.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use openclaw_egress_common::maps::PENDING_QUERY_TIMEOUT_NS;

use crate::{dns_name::DnsScratch, flow::Flow, maps::PENDING_QUERIES};

/// Remembers the query last read into `scratch` (its name), sent in `flow`.
#[inline(always)]
pub fn remember(scratch: &mut DnsScratch, flow: &Flow, id: u16, qtype: u16) {
    fill(scratch, flow.dst, flow.src_port, flow.proto, id, qtype);
    // SAFETY: a plain read of the monotonic clock.
    let expires_at_ns = unsafe { bpf_ktime_get_ns() } + PENDING_QUERY_TIMEOUT_NS;
    // A full map evicts its least recently used entry: the oldest query's
    // answer then teaches nothing (fails closed).
    if let Some(pending) = PENDING_QUERIES.get(flow.slot()) {
        let _ = pending.insert(&scratch.query, &expires_at_ns, 0);
    }
}

/// Whether the answer whose question was last read into `scratch`, received
/// in `flow`, answers a query still outstanding; if so, that query is no
/// longer outstanding.
#[inline(always)]
pub fn take(scratch: &mut DnsScratch, flow: &Flow, id: u16, qtype: u16) -> bool {
    fill(scratch, flow.src, flow.dst_port, flow.proto, id, qtype);
    let Some(pending) = PENDING_QUERIES.get(flow.slot()) else {
        return false;
    };
    let Some(expires_at_ns) = pending.get_ptr(&scratch.query) else {
        return false;
    };
    // SAFETY: pointer from a successful lookup, only read.
    let live = unsafe { bpf_ktime_get_ns() < *expires_at_ns };
    // Once: a second answer (a replay, or a forgery racing the real one)
    // finds nothing.
    let _ = pending.remove(&scratch.query);
    live
}

#[inline(always)]
fn fill(
    scratch: &mut DnsScratch,
    resolver: openclaw_egress_common::Addr,
    client_port: u16,
    proto: u8,
    id: u16,
    qtype: u16,
) {
    let query = &mut scratch.query;
    query.resolver = resolver;
    query.client_port = client_port;
    query.proto = proto;
    query.id = id;
    query.qtype = qtype;
    query._pad = 0;
}
