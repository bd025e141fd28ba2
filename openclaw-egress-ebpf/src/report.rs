//! Counting and reporting drops: a per-CPU counter always, and an event on the
//! ring buffer when there is room (else the lost-events counter moves, so
//! userspace knows its event stream has a gap).

use core::ptr::addr_of_mut;

use aya_ebpf::{helpers::bpf_ktime_get_ns, maps::PerCpuArray};
use openclaw_egress_common::{Direction, DropEvent, DropReason, Verdict, maps::counter_index};

use crate::{
    flow::Flow,
    maps::{DROP_COUNTERS, EVENTS, EVENTS_LOST},
};

#[inline(always)]
pub fn drop(
    flow: Option<&Flow>,
    reason: DropReason,
    direction: Direction,
    verdict: Verdict,
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
    // stack. `dns_name` is left as is: `dns_name_len` says none of it is used.
    unsafe {
        addr_of_mut!((*event).timestamp_ns).write(bpf_ktime_get_ns());
        addr_of_mut!((*event).cgroup_id).write(cgroup_id);
        addr_of_mut!((*event).reason).write(reason as u8);
        addr_of_mut!((*event).direction).write(direction as u8);
        addr_of_mut!((*event).verdict).write(verdict as u8);
        addr_of_mut!((*event)._pad).write(0);
        addr_of_mut!((*event).dns_name_len).write(0);
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

#[inline(always)]
fn increment(counters: &PerCpuArray<u64>, index: u32) {
    if let Some(counter) = counters.get_ptr_mut(index) {
        // SAFETY: per-CPU slot from a successful lookup; BPF programs do not
        // migrate between CPUs while running.
        unsafe { *counter += 1 };
    }
}
