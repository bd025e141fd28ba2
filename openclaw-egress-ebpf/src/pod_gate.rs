//! `cgroup_skb/egress` on the kubepods root cgroup: holds the packets of a
//! pod whose policy is not in force yet (see
//! `openclaw_egress_common::pod_gate`). Attached to an ancestor, it runs for
//! every pod of the node, beside (not instead of) the pods' own programs;
//! while disarmed it costs one array read.

use aya_ebpf::{
    helpers::generated::bpf_skb_ancestor_cgroup_id, macros::cgroup_skb, programs::SkBuffContext,
};
use openclaw_egress_common::pod_gate::{GATE_DESCEND, GATE_PASS};

use crate::{
    maps::{POD_GATE, POD_GATE_HELD, POD_GATE_MARKS},
    return_code::{SK_DROP, SK_PASS},
};

#[cgroup_skb(egress)]
pub fn pod_gate(ctx: SkBuffContext) -> i32 {
    let Some(gate) = POD_GATE.get(0) else {
        return SK_PASS;
    };
    let armed_after = gate.armed_after;
    if armed_after == 0 {
        return SK_PASS;
    }
    let ancestor = |level: u32| {
        // SAFETY: the context's own skb; a level below the packet's cgroup
        // gives 0.
        unsafe { bpf_skb_ancestor_cgroup_id(ctx.skb.skb, level as i32) }
    };
    let mut pod = ancestor(gate.root_level + 1);
    if pod == 0 {
        return SK_PASS; // Not below the root: the root's own processes.
    }
    // SAFETY: reading a value of a map of plain integers.
    match unsafe { POD_GATE_MARKS.get(&pod) }.copied() {
        Some(GATE_PASS) => return SK_PASS,
        Some(GATE_DESCEND) => {
            pod = ancestor(gate.root_level + 2);
            if pod == 0 {
                return SK_PASS; // A process of the QoS-class cgroup itself.
            }
        }
        _ => {}
    }
    if pod <= armed_after {
        return SK_PASS; // It existed before the gate was armed.
    }
    // SAFETY: as above.
    if unsafe { POD_GATE_MARKS.get(&pod) }.copied() == Some(GATE_PASS) {
        return SK_PASS;
    }
    if let Some(held) = POD_GATE_HELD.get_ptr_mut(0) {
        // SAFETY: this CPU's counter; nothing else writes it meanwhile.
        unsafe { *held += 1 };
    }
    SK_DROP
}
