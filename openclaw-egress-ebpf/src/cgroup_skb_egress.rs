//! `cgroup_skb/egress`: runs for every packet a socket of the workload's
//! cgroup (or a descendant) sends. The packet data starts at the IP header.

use aya_ebpf::{macros::cgroup_skb, programs::SkBuffContext};

use crate::{
    egress_policy::{self, Fate, Hook},
    trace,
};

/// cgroup_skb verdicts (the kernel defines no names for them).
const PASS: i32 = 1;
const DROP: i32 = 0;

#[cgroup_skb(egress)]
pub fn egress(ctx: SkBuffContext) -> i32 {
    // A reset is the daemon's to send here (it destroys the socket on the
    // drop event): a cgroup_skb program can only drop.
    let fate = egress_policy::enforce(&ctx.skb, 0, Hook::Cgroup);
    trace::cgroup_egress(&ctx, fate);
    match fate {
        Fate::Pass => PASS,
        Fate::Drop | Fate::Reset => DROP,
    }
}
