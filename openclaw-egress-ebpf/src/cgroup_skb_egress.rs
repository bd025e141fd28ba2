//! `cgroup_skb/egress`: runs for every packet a socket of the workload's
//! cgroup (or a descendant) sends. The packet data starts at the IP header.

use aya_ebpf::{helpers::bpf_skb_cgroup_id, macros::cgroup_skb, programs::SkBuffContext};

use crate::egress_policy::{self, Hook};

const PASS: i32 = 1;
const DROP: i32 = 0;

#[cgroup_skb(egress)]
pub fn egress(ctx: SkBuffContext) -> i32 {
    // SAFETY: the context pointer is the one the kernel handed us.
    let cgroup_id = unsafe { bpf_skb_cgroup_id(ctx.skb.skb) };
    if egress_policy::enforce(&ctx.skb, 0, cgroup_id, Hook::Cgroup) {
        PASS
    } else {
        DROP
    }
}
