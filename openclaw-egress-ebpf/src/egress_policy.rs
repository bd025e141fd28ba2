//! The egress decision, shared by the cgroup_skb and TC programs.

use aya_ebpf::{helpers::bpf_ktime_get_ns, maps::lpm_trie::Key, programs::sk_buff::SkBuff};
use openclaw_egress_common::{AllowKey, CidrKey, Direction, DropReason, Mode, Verdict};

use crate::{
    flow::{self, Flow},
    maps::{ALLOW, CIDR, CONFIG, RESOLVERS},
    report,
};

const DNS_PORT: u16 = 53;

/// Decides the fate of the packet whose IP header starts at `l3`, reports a
/// drop if there is one, and returns whether the packet may leave.
#[inline(always)]
pub fn enforce(skb: &SkBuff, l3: usize, cgroup_id: u64) -> bool {
    // No config, or a config userspace has not finished filling: fail closed,
    // whatever the mode.
    let mode = match CONFIG.get(0) {
        Some(config) if config.ready != 0 => config.mode(),
        _ => {
            report::drop(
                None,
                DropReason::NotReady,
                Direction::Egress,
                Verdict::Dropped,
                cgroup_id,
            );
            return false;
        }
    };
    let (flow, reason) = match flow::parse(skb, l3) {
        Ok(flow) => match check(&flow) {
            Ok(()) => return true,
            Err(reason) => (Some(flow), reason),
        },
        Err(reason) => (None, reason),
    };
    let verdict = match mode {
        Mode::Enforce => Verdict::Dropped,
        Mode::Audit => Verdict::Audited,
    };
    report::drop(flow.as_ref(), reason, Direction::Egress, verdict, cgroup_id);
    verdict == Verdict::Audited
}

/// `Ok` when some rule allows `flow`, else the reason it does not.
#[inline(always)]
fn check(flow: &Flow) -> Result<(), DropReason> {
    if !flow.has_ports() {
        return Err(DropReason::Protocol);
    }
    // DNS goes to the policy's resolvers and nowhere else, whatever the other
    // rules say: an open port 53 is an exfiltration channel.
    if flow.dst_port == DNS_PORT {
        return if RESOLVERS.get_ptr(flow.dst).is_some() {
            Ok(())
        } else {
            Err(DropReason::DnsResolver)
        };
    }
    let mut reason = DropReason::NoRule;
    let key = AllowKey::new(flow.dst, flow.proto, flow.dst_port);
    if let Some(entry) = ALLOW.get_ptr(key) {
        // SAFETY: the pointer comes from a successful lookup and is only read.
        let expires_at_ns = unsafe { (*entry).expires_at_ns };
        if unsafe { bpf_ktime_get_ns() } < expires_at_ns {
            return Ok(());
        }
        reason = DropReason::Expired;
    }
    let key = Key::new(
        CidrKey::FULL_PREFIX_BITS,
        CidrKey::new(flow.dst, flow.proto, flow.dst_port),
    );
    if CIDR.get(key).is_some() {
        return Ok(());
    }
    Err(reason)
}
