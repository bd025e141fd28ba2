//! TC classifier for the host side of a workload's veth, where packets the
//! workload sends arrive as *ingress*. Same policy as `cgroup_skb_egress`,
//! for workloads whose cgroup cannot be used (e.g. another node agent owns
//! it). There is no socket here, so no per-socket verdict cache either.

use aya_ebpf::{macros::classifier, programs::TcContext};
use openclaw_egress_common::{DropReason, Verdict};

use crate::{
    egress_policy::{self, Fate, Hook},
    report::{self, Drop, Sender},
    return_code::{TC_NEXT, TC_SHOT},
    tcp_reset, trace,
    workload::Workload,
};

const ETH_HEADER_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_ARP: u16 = 0x0806;

#[classifier]
pub fn tc_from_workload(ctx: TcContext) -> i32 {
    let Ok(ethertype) = ctx.skb.load::<[u8; 2]>(12).map(u16::from_be_bytes) else {
        return TC_SHOT;
    };
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => {
            let fate = egress_policy::enforce(&ctx.skb, ETH_HEADER_LEN, Hook::Tc);
            trace::tc_from_workload(&ctx, ETH_HEADER_LEN, fate);
            match fate {
                Fate::Pass => TC_NEXT,
                Fate::Drop => TC_SHOT,
                Fate::Reset => {
                    tcp_reset::answer_with_reset(&ctx, ETH_HEADER_LEN).unwrap_or(TC_SHOT)
                }
            }
        }
        // Address resolution is needed for anything to work and reaches
        // nothing beyond the link.
        ETHERTYPE_ARP => TC_NEXT,
        // VLAN tags, PPPoE, raw Ethernet...: nothing the policy can judge.
        _ => {
            report::drop(
                None,
                Drop::egress(DropReason::Protocol, Verdict::Dropped),
                Sender {
                    slot: Workload::of_skb(&ctx.skb).map_or(0, |workload| workload.slot),
                    cgroup_id: 0,
                    socket_cookie: 0,
                },
                None,
            );
            TC_SHOT
        }
    }
}
