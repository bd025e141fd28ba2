//! The kernel half of openclaw-egress.
//!
//! Userspace fills the maps in `maps.rs` from a policy; the programs here make
//! every per-packet decision and report each drop on a ring buffer.
//! One program type per file:
//! - `cgroup_skb_egress.rs`: egress of every socket in the workload's cgroup.
//! - `cgroup_skb_ingress.rs`: DNS answers on their way in (address learning).
//! - `cgroup_sock_addr.rs`: `connect()` and UDP `sendmsg()` to a destination
//!   the policy does not allow fail at once with EPERM.
//! - `tc_from_workload.rs`, `tc_to_workload.rs`: the same two jobs as TC
//!   classifiers on the host side of a workload's veth.
//! - `pod_gate.rs`: on the kubepods root cgroup, holds a new pod's packets
//!   until its policy is in force.
//!
//! `trace.rs` logs each verdict in the tracing build (feature `trace`).
#![no_std]
#![no_main]
// A fetching atomic add in `scratch_guard`, written as BPF assembly.
#![feature(asm_experimental_arch)]
// Map keys and values are passed by reference on purpose. aya-ebpf's map
// methods take `impl Borrow<K>`, and a key passed by value is first copied
// onto the 512-byte BPF stack: for a DNS name (up to 256 bytes, kept in
// per-CPU scratch memory for exactly that reason) the program would not load.
// One style for every map call, small keys included.
#![allow(clippy::needless_borrows_for_generic_args)]

mod cgroup_skb_egress;
mod cgroup_skb_ingress;
mod cgroup_sock_addr;
mod connect_policy;
mod connection;
mod dns_answer;
mod dns_answer_record;
mod dns_budget;
mod dns_message;
mod dns_name;
mod dns_name_match;
mod dns_pending;
mod dns_query;
mod dns_stream;
mod egress_policy;
mod flow;
mod http_request;
mod inspection;
mod map_types;
mod maps;
mod pod_gate;
mod report;
mod return_code;
mod scratch_guard;
mod server_name;
mod socket_verdict;
mod tc_from_workload;
mod tc_to_workload;
mod tcp_reset;
mod tls_hello;
mod trace;
mod verdict_cache;
mod workload;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach this; it only exists to
    // satisfy `no_std`.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
