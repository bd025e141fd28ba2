//! `cgroup_skb/ingress`: runs for every packet delivered to a socket of the
//! workload's cgroup, before the socket sees it. It never drops; it learns
//! the addresses in DNS answers (see `dns_answer`).

use aya_ebpf::{macros::cgroup_skb, programs::SkBuffContext};

use crate::{dns_answer, return_code::SK_PASS};

#[cgroup_skb(ingress)]
pub fn ingress(ctx: SkBuffContext) -> i32 {
    dns_answer::learn(&ctx.skb, 0);
    SK_PASS
}
