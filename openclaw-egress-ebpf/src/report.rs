//! Counting and reporting drops: a per-CPU counter always, and an event on the
//! ring buffer when there is room (else the lost-events counter moves, so
//! userspace knows its event stream has a gap).

use core::ptr::addr_of_mut;

use aya_ebpf::helpers::bpf_ktime_get_ns;
use openclaw_egress_common::{
    DNS_NAME_MAX, Direction, DropEvent, DropReason, Stage, Verdict, maps::counter_index,
};

use crate::{
    dns_name,
    flow::Flow,
    maps::{DROP_COUNTERS, EVENTS, EVENTS_LOST, increment},
};

#[inline(always)]
pub fn drop(
    flow: Option<&Flow>,
    reason: DropReason,
    direction: Direction,
    verdict: Verdict,
    stage: Stage,
    cgroup_id: u64,
) {
    increment(&DROP_COUNTERS, counter_index(verdict, direction, reason));
    let Some(mut entry) = EVENTS.reserve::<DropEvent>(0) else {
        increment(&EVENTS_LOST, 0);
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved, writable DropEvent; fields are
    // written one by one because a whole DropEvent would not fit on the BPF
    // stack. Bytes of `dns_name` past `dns_name_len` are left as they are.
    unsafe {
        addr_of_mut!((*event).timestamp_ns).write(bpf_ktime_get_ns());
        addr_of_mut!((*event).cgroup_id).write(cgroup_id);
        addr_of_mut!((*event).reason).write(reason as u8);
        addr_of_mut!((*event).direction).write(direction as u8);
        addr_of_mut!((*event).verdict).write(verdict as u8);
        addr_of_mut!((*event).stage).write(stage as u8);
        addr_of_mut!((*event).dns_name_len).write(0);
        // The question that was refused is in this CPU's DNS scratch area.
        if reason == DropReason::DnsDenied
            && let Some(scratch) = dns_name::scratch()
        {
            let len = scratch.dotted_len();
            for i in 0..DNS_NAME_MAX {
                if i >= len {
                    break;
                }
                (*event).dns_name[i] = scratch.dotted[i];
            }
            addr_of_mut!((*event).dns_name_len).write(len as u16);
        }
        match flow {
            Some(flow) => {
                addr_of_mut!((*event).family).write(flow.family);
                addr_of_mut!((*event).proto).write(flow.proto);
                addr_of_mut!((*event).src_addr).write(flow.src);
                addr_of_mut!((*event).dst_addr).write(flow.dst);
                addr_of_mut!((*event).src_port).write(flow.src_port);
                addr_of_mut!((*event).dst_port).write(flow.dst_port);
            }
            None => {
                addr_of_mut!((*event).family).write(0);
                addr_of_mut!((*event).proto).write(0);
                addr_of_mut!((*event).src_addr).write([0; 16]);
                addr_of_mut!((*event).dst_addr).write([0; 16]);
                addr_of_mut!((*event).src_port).write(0);
                addr_of_mut!((*event).dst_port).write(0);
            }
        }
    }
    entry.submit(0);
}
