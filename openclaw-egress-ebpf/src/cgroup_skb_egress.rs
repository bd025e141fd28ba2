//! `cgroup_skb/egress`: runs for every packet a socket of the workload's
//! cgroup (or a descendant) sends. The packet data starts at the IP header.

use aya_ebpf::{macros::cgroup_skb, programs::SkBuffContext};

use crate::{
    egress_policy::{self, Fate, Hook},
    return_code::{SK_DROP, SK_PASS},
    trace,
};

#[cgroup_skb(egress)]
pub fn egress(ctx: SkBuffContext) -> i32 {
    // A reset is the daemon's to send here (it destroys the socket on the
    // drop event): a cgroup_skb program can only drop.
    let fate = egress_policy::enforce(&ctx.skb, 0, Hook::Cgroup);
    trace::cgroup_egress(&ctx, fate);
    match fate {
        Fate::Pass => SK_PASS,
        Fate::Drop | Fate::Reset => SK_DROP,
    }
}
