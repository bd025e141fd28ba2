//! `cgroup_skb/egress`: runs for every packet a socket of the workload's
//! cgroup (or a descendant) sends. The packet data starts at the IP header.

use aya_ebpf::{macros::cgroup_skb, programs::SkBuffContext};

use crate::egress_policy::{self, Hook};

const PASS: i32 = 1;
const DROP: i32 = 0;

#[cgroup_skb(egress)]
pub fn egress(ctx: SkBuffContext) -> i32 {
    if egress_policy::enforce(&ctx.skb, 0, Hook::Cgroup) {
        PASS
    } else {
        DROP
    }
}
