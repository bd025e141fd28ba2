//! The egress decision, shared by the cgroup_skb and TC programs.

use core::mem::MaybeUninit;

use aya_ebpf::{
    helpers::{bpf_get_socket_cookie, bpf_ktime_get_ns, bpf_skb_cgroup_id},
    maps::lpm_trie::Key,
    programs::sk_buff::SkBuff,
};
use openclaw_egress_common::{Addr, AllowKey, CidrKey, DropReason, Mode, Verdict, proto};

use crate::{
    connection, dns_query,
    flow::{self, Flow},
    maps::{ALLOW, CIDR, CONFIGS, RESOLVERS},
    report::{self, Drop, Sender},
    verdict_cache::{self, Cached},
    workload::Workload,
};

pub const DNS_PORT: u16 = 53;

/// Where the packet comes from, which decides what the program can know.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// cgroup_skb: the sending socket is known, so verdicts are cached on it.
    Cgroup = 0,
    /// TC on a host-side interface: no socket.
    Tc = 1,
}

impl Hook {
    /// Back from `hook as u8` (through a `bpf_loop` context).
    #[inline(always)]
    pub const fn from_u8(value: u8) -> Self {
        if value == Self::Tc as u8 {
            Self::Tc
        } else {
            Self::Cgroup
        }
    }

    /// The sending workload's slot, cgroup and socket, for drop reports; 0
    /// where there is no socket. Asked only when a packet is reported: an
    /// allowed packet does not pay for the helper calls.
    #[inline(always)]
    pub fn sender(self, skb: &SkBuff, slot: u32) -> Sender {
        match self {
            // SAFETY: the context pointer is the one the kernel handed us.
            Hook::Cgroup => unsafe {
                Sender {
                    slot,
                    cgroup_id: bpf_skb_cgroup_id(skb.skb),
                    socket_cookie: bpf_get_socket_cookie(skb.skb.cast()),
                }
            },
            Hook::Tc => Sender {
                slot,
                cgroup_id: 0,
                socket_cookie: 0,
            },
        }
    }
}

/// What happens to a packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Pass,
    Drop,
    /// Drop, and tell the sender its connection is refused (a TCP reset),
    /// where the hook can: a connection refused for the name it carries.
    Reset,
}

/// Decides the fate of the packet whose IP header starts at `l3`, and
/// reports a drop if there is one.
#[inline(always)]
pub fn enforce(skb: &SkBuff, l3: usize, hook: Hook) -> Fate {
    // No policy in force, or one userspace has not finished filling: fail
    // closed, whatever the mode.
    let workload = Workload::of_skb(skb);
    let slot = workload.map_or(0, |workload| workload.slot);
    let (workload, mode) = match (workload, CONFIGS.get(slot)) {
        (Some(workload), Some(config)) if config.ready != 0 => (workload, config.mode()),
        _ => {
            report::drop(
                None,
                Drop::egress(DropReason::NotReady, Verdict::Dropped),
                hook.sender(skb, slot),
                None,
            );
            return Fate::Drop;
        }
    };
    let verdict = match mode {
        Mode::Enforce => Verdict::Dropped,
        Mode::Audit => Verdict::Audited,
    };
    // (No `Option<Flow>` is built here: a flow moved into one has undefined
    // bytes on the `None` side, which LLVM may store from an unwritten
    // register, and the verifier refuses that.)
    let mut parsed = MaybeUninit::uninit();
    let flow = match flow::parse(skb, l3, workload, &mut parsed) {
        Ok(flow) => flow,
        Err(reason) => {
            report::drop(
                None,
                Drop::egress(reason, verdict),
                hook.sender(skb, slot),
                None,
            );
            return pass_if(verdict == Verdict::Audited);
        }
    };
    let reason = match check(skb, flow, hook) {
        Decision::Pass => return Fate::Pass,
        // A connection refused before: reported then, refused quietly now
        // (a retransmission is not a new drop).
        Decision::DropQuietly => return Fate::Reset,
        Decision::Drop(reason) => reason,
    };
    report::drop(
        Some(flow),
        Drop::egress(reason, verdict),
        hook.sender(skb, slot),
        report::refused_name(reason),
    );
    // Audit mode reports a flow once, not every packet of it. (Not DNS:
    // every query is its own question.)
    if verdict == Verdict::Audited && flow.has_ports() && flow.dst_port != DNS_PORT {
        verdict_cache::remember(skb, flow, hook, Cached::Audited);
        return Fate::Pass;
    }
    if verdict == Verdict::Audited {
        return Fate::Pass;
    }
    if reason.is_about_server_name() {
        Fate::Reset
    } else {
        Fate::Drop
    }
}

#[inline(always)]
fn pass_if(pass: bool) -> Fate {
    if pass { Fate::Pass } else { Fate::Drop }
}

/// What becomes of a packet.
pub enum Decision {
    Pass,
    /// Dropped, counted and reported.
    Drop(DropReason),
    /// Dropped, already reported (a connection refused before).
    DropQuietly,
}

impl Decision {
    /// As a `u32` (through a `bpf_loop` context): 0 pass, 1 quiet drop,
    /// else the reason plus 2.
    #[inline(always)]
    pub fn encode(&self) -> u32 {
        match self {
            Self::Pass => 0,
            Self::DropQuietly => 1,
            Self::Drop(reason) => *reason as u32 + 2,
        }
    }

    #[inline(always)]
    pub fn decode(value: u32) -> Self {
        match value {
            0 => Self::Pass,
            1 => Self::DropQuietly,
            _ => {
                Self::Drop(DropReason::from_u8((value - 2) as u8).unwrap_or(DropReason::Malformed))
            }
        }
    }
}

impl From<Result<(), DropReason>> for Decision {
    #[inline(always)]
    fn from(result: Result<(), DropReason>) -> Self {
        match result {
            Ok(()) => Self::Pass,
            Err(reason) => Self::Drop(reason),
        }
    }
}

/// Whether some rule allows `flow`.
#[inline(always)]
fn check(skb: &SkBuff, flow: &Flow, hook: Hook) -> Decision {
    if flow.ip_options {
        return Decision::Drop(DropReason::IpOptions);
    }
    if !flow.has_ports() {
        // On a veth the workload's own neighbour discovery passes through
        // too (cgroup hooks never see it: the kernel sends it, not a socket
        // of the workload); without it IPv6 would not work at all.
        if hook == Hook::Tc && is_neighbour_discovery(skb, flow) {
            return Decision::Pass;
        }
        return Decision::Drop(DropReason::Protocol);
    }
    // DNS goes to the policy's resolvers and nowhere else, whatever the other
    // rules say, and only asks for allowed names. It is never cached: every
    // query is checked.
    if flow.dst_port == DNS_PORT {
        if !is_resolver(flow.slot(), &flow.dst) {
            return Decision::Drop(DropReason::DnsResolver);
        }
        return dns_query::check_once(skb, flow, hook);
    }
    connection::check(skb, flow, hook)
}

/// ICMPv6 router/neighbour solicitations and advertisements, and redirects
/// (types 133 to 137): link-local by definition.
#[inline(always)]
fn is_neighbour_discovery(skb: &SkBuff, flow: &Flow) -> bool {
    flow.proto == proto::ICMPV6 && matches!(skb.load::<u8>(flow.l4_offset), Ok(133..=137))
}

/// Whether `addr` is one of the policy's DNS resolvers.
#[inline(always)]
pub fn is_resolver(slot: u32, addr: &Addr) -> bool {
    RESOLVERS
        .get(slot)
        .is_some_and(|resolvers| resolvers.get_ptr(addr).is_some())
}

/// What allows a destination: the entry's `inspect` bits (what a
/// connection's first bytes must say) and its rule.
#[derive(Clone, Copy)]
pub struct Allowed {
    pub inspect: u8,
    pub rule: u32,
}

/// Looks the destination up in the allow maps of `slot`.
#[inline(always)]
pub fn check_destination(
    slot: u32,
    dst: &Addr,
    proto: u8,
    port: u16,
) -> Result<Allowed, DropReason> {
    let mut reason = DropReason::NoRule;
    let key = AllowKey::new(*dst, proto, port);
    if let Some(entry) = ALLOW.get(slot).and_then(|allow| allow.get_ptr(&key)) {
        // SAFETY: the pointer comes from a successful lookup and is only read.
        let (expires_at_ns, inspect, rule) =
            unsafe { ((*entry).expires_at_ns, (*entry).inspect, (*entry).rule) };
        // SAFETY: a plain read of the monotonic clock.
        if unsafe { bpf_ktime_get_ns() } < expires_at_ns {
            return Ok(Allowed { inspect, rule });
        }
        reason = DropReason::Expired;
    }
    let key = Key::new(CidrKey::FULL_PREFIX_BITS, CidrKey::new(*dst, proto, port));
    if let Some(entry) = CIDR.get(slot).and_then(|cidr| cidr.get(&key)) {
        return Ok(Allowed {
            inspect: entry.inspect,
            rule: entry.rule,
        });
    }
    Err(reason)
}
