//! The egress decision, shared by the cgroup_skb and TC programs.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_skb_cgroup_id},
    maps::lpm_trie::Key,
    programs::sk_buff::SkBuff,
};
use openclaw_egress_common::{
    Addr, AllowKey, CidrKey, Direction, DropReason, Mode, Stage, Verdict, proto,
};

use crate::{
    dns_query,
    flow::{self, Flow},
    maps::{ALLOW, CIDR, CONFIG, RESOLVERS},
    report,
    verdict_cache::{self, Cached},
};

pub const DNS_PORT: u16 = 53;

/// Where the packet comes from, which decides what the program can know.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// cgroup_skb: the sending socket is known, so verdicts are cached on it.
    Cgroup,
    /// TC on a host-side interface: no socket.
    Tc,
}

impl Hook {
    /// The sending workload's cgroup, for drop reports; 0 where there is no
    /// socket. Asked only when a packet is reported: an allowed packet does
    /// not pay for the helper call.
    #[inline(always)]
    fn cgroup_id(self, skb: &SkBuff) -> u64 {
        match self {
            // SAFETY: the context pointer is the one the kernel handed us.
            Hook::Cgroup => unsafe { bpf_skb_cgroup_id(skb.skb) },
            Hook::Tc => 0,
        }
    }
}

/// Decides the fate of the packet whose IP header starts at `l3`, reports a
/// drop if there is one, and returns whether the packet may leave.
#[inline(always)]
pub fn enforce(skb: &SkBuff, l3: usize, hook: Hook) -> bool {
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
                Stage::Packet,
                hook.cgroup_id(skb),
            );
            return false;
        }
    };
    let (flow, reason) = match flow::parse(skb, l3) {
        Ok(flow) => match check(skb, &flow, hook) {
            Ok(()) => return true,
            Err(reason) => (Some(flow), reason),
        },
        Err(reason) => (None, reason),
    };
    let verdict = match mode {
        Mode::Enforce => Verdict::Dropped,
        Mode::Audit => Verdict::Audited,
    };
    report::drop(
        flow.as_ref(),
        reason,
        Direction::Egress,
        verdict,
        Stage::Packet,
        hook.cgroup_id(skb),
    );
    // Audit mode reports a flow once, not every packet of it. (Not DNS:
    // every query is its own question.)
    if verdict == Verdict::Audited
        && let Some(flow) = &flow
        && flow.has_ports()
        && flow.dst_port != DNS_PORT
    {
        verdict_cache::remember(skb, flow, hook, Cached::Audited);
    }
    verdict == Verdict::Audited
}

/// `Ok` when some rule allows `flow`, else the reason it does not.
#[inline(always)]
fn check(skb: &SkBuff, flow: &Flow, hook: Hook) -> Result<(), DropReason> {
    if flow.ip_options {
        return Err(DropReason::IpOptions);
    }
    if !flow.has_ports() {
        // On a veth the workload's own neighbour discovery passes through
        // too (cgroup hooks never see it: the kernel sends it, not a socket
        // of the workload); without it IPv6 would not work at all.
        if hook == Hook::Tc && is_neighbour_discovery(skb, flow) {
            return Ok(());
        }
        return Err(DropReason::Protocol);
    }
    // DNS goes to the policy's resolvers and nowhere else, whatever the other
    // rules say, and only asks for allowed names. It is never cached: every
    // query is checked.
    if flow.dst_port == DNS_PORT {
        if RESOLVERS.get_ptr(flow.dst).is_none() {
            return Err(DropReason::DnsResolver);
        }
        return dns_query::check(skb, flow, hook);
    }
    if verdict_cache::is_cached(skb, flow, hook) {
        return Ok(());
    }
    check_destination(&flow.dst, flow.proto, flow.dst_port)?;
    verdict_cache::remember(skb, flow, hook, Cached::Allowed);
    Ok(())
}

/// ICMPv6 router/neighbour solicitations and advertisements, and redirects
/// (types 133 to 137): link-local by definition.
#[inline(always)]
fn is_neighbour_discovery(skb: &SkBuff, flow: &Flow) -> bool {
    flow.proto == proto::ICMPV6 && matches!(skb.load::<u8>(flow.l4_offset), Ok(133..=137))
}

/// Looks the destination up in the allow maps.
#[inline(always)]
pub fn check_destination(dst: &Addr, proto: u8, port: u16) -> Result<(), DropReason> {
    let mut reason = DropReason::NoRule;
    let key = AllowKey::new(*dst, proto, port);
    if let Some(entry) = ALLOW.get_ptr(key) {
        // SAFETY: the pointer comes from a successful lookup and is only read.
        let expires_at_ns = unsafe { (*entry).expires_at_ns };
        if unsafe { bpf_ktime_get_ns() } < expires_at_ns {
            return Ok(());
        }
        reason = DropReason::Expired;
    }
    let key = Key::new(CidrKey::FULL_PREFIX_BITS, CidrKey::new(*dst, proto, port));
    if CIDR.get(key).is_some() {
        return Ok(());
    }
    Err(reason)
}
