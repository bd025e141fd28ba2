//! TC classifier for the host side of a workload's veth, where packets to the
//! workload leave as *egress*: learns addresses from DNS answers on their way
//! to the workload, like `cgroup_skb_ingress`. Never drops.

use aya_ebpf::{macros::classifier, programs::TcContext};

use crate::{dns_answer, return_code::TC_NEXT};

const ETH_HEADER_LEN: usize = 14;

#[classifier]
pub fn tc_to_workload(ctx: TcContext) -> i32 {
    let ip = matches!(ctx.skb.load::<[u8; 2]>(12), Ok([0x08, 0x00] | [0x86, 0xdd]));
    if ip {
        dns_answer::learn(&ctx.skb, ETH_HEADER_LEN);
    }
    TC_NEXT
}
