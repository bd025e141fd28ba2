//! `cgroup_skb/ingress`: runs for every packet delivered to a socket of the
//! workload's cgroup, before the socket sees it. It never drops; it learns
//! the addresses in DNS answers (see `dns_answer`).

use aya_ebpf::{macros::cgroup_skb, programs::SkBuffContext};

use crate::dns_answer;

/// cgroup_skb verdicts (the kernel defines no names for them).
const PASS: i32 = 1;

#[cgroup_skb(ingress)]
pub fn ingress(ctx: SkBuffContext) -> i32 {
    dns_answer::learn(&ctx.skb, 0);
    PASS
}
