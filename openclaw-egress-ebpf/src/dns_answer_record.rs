//! Learn mode's view of a DNS answer: each address it carries, reported as
//! the answer to the question in the scratch area (see `dns_answer`, which
//! collects the addresses and runs this over them).

use core::ffi::c_void;

use openclaw_egress_common::{NO_RULE, Stage, addr::as_ipv4};

use crate::{
    dns_name,
    flow::Flow,
    map_types::MAX_ANSWERS,
    maps::ANSWERS,
    report::{self, Sender},
};

/// `bpf_loop` callback: reports collected address number `index` of the
/// answer whose flow (resolver to workload) `context` points to, as the
/// resolver's answer to the question in the scratch area.
#[inline(never)]
pub(crate) extern "C" fn record_one(index: u64, context: *mut c_void) -> i64 {
    const STOP: i64 = 1;
    let index = index as usize;
    if index >= MAX_ANSWERS {
        return STOP;
    }
    // SAFETY: `learn_from` lends the answer's flow for the call.
    let answer = unsafe { &*context.cast::<Flow>() };
    // SAFETY: only read: the question `learn_from` read, left for the loop.
    let (Some(answers), Some(scratch)) = (ANSWERS.get_ptr_mut(0), unsafe { dns_name::scratch() })
    else {
        return STOP;
    };
    // SAFETY: per-CPU storage, used by one program run at a time on this CPU.
    let addr = unsafe { (*answers).addresses[index] };
    let flow = Flow {
        src: answer.src,
        dst: addr,
        l4_offset: 0,
        l3_end: 0,
        workload: answer.workload,
        src_port: answer.src_port,
        dst_port: 0,
        family: if as_ipv4(&addr).is_some() { 4 } else { 6 },
        proto: answer.proto,
        ip_options: false,
    };
    let sender = Sender {
        slot: answer.slot(),
        cgroup_id: 0,
        socket_cookie: 0,
    };
    report::allowed(&flow, Stage::Answer, NO_RULE, sender, Some(scratch));
    0
}
