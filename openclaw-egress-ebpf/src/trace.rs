//! Each verdict of the packet hooks, logged through aya-log, in the tracing
//! build only (feature `trace`, loaded by `daemon --trace-datapath` to find
//! out why a connection is dropped). The default build compiles this to
//! nothing: no code on the packet path, no log map.

#[cfg(feature = "trace")]
use aya_ebpf::programs::SkBuffContext;
use aya_ebpf::programs::{SockAddrContext, TcContext};

use crate::egress_policy::Fate;

#[cfg(feature = "trace")]
fn fate_name(fate: Fate) -> &'static str {
    match fate {
        Fate::Pass => "pass",
        Fate::Drop => "drop",
        Fate::Reset => "reset",
    }
}

/// Logs the verdict of a packet whose IP header starts at `l3`.
#[cfg(feature = "trace")]
fn log<C: aya_ebpf::EbpfContext>(
    ctx: &C,
    skb: &aya_ebpf::programs::sk_buff::SkBuff,
    hook: &str,
    l3: usize,
    fate: Fate,
) {
    let fate = fate_name(fate);
    let Ok(first) = skb.load::<u8>(l3) else {
        return;
    };
    match first >> 4 {
        4 => {
            let (Ok(proto), Ok(dst)) = (skb.load::<u8>(l3 + 9), skb.load::<[u8; 4]>(l3 + 16))
            else {
                return;
            };
            let dst = u32::from_be_bytes(dst);
            aya_log_ebpf::debug!(ctx, "{}: {} proto {} to {:i}", hook, fate, proto, dst);
        }
        6 => {
            let (Ok(next), Ok(dst)) = (skb.load::<u8>(l3 + 6), skb.load::<[u8; 16]>(l3 + 24))
            else {
                return;
            };
            aya_log_ebpf::debug!(ctx, "{}: {} next header {} to {:i}", hook, fate, next, dst);
        }
        _ => aya_log_ebpf::debug!(ctx, "{}: {} (not IP)", hook, fate),
    }
}

/// A verdict of the cgroup egress hook.
#[cfg(feature = "trace")]
#[inline(always)]
pub fn cgroup_egress(ctx: &SkBuffContext, fate: Fate) {
    log(ctx, &ctx.skb, "cgroup egress", 0, fate);
}

#[cfg(not(feature = "trace"))]
#[inline(always)]
pub fn cgroup_egress(_: &aya_ebpf::programs::SkBuffContext, _: Fate) {}

/// A verdict of the TC hook on the host side of a workload's veth.
#[cfg(feature = "trace")]
#[inline(always)]
pub fn tc_from_workload(ctx: &TcContext, l3: usize, fate: Fate) {
    log(ctx, &ctx.skb, "veth from workload", l3, fate);
}

#[cfg(not(feature = "trace"))]
#[inline(always)]
pub fn tc_from_workload(_: &TcContext, _: usize, _: Fate) {}

/// A verdict of an IPv4 `connect()`/`sendmsg()` hook (1: allowed, 0:
/// refused). (Each family's hook may read only its own address field.)
#[cfg(feature = "trace")]
#[inline(always)]
pub fn connect4(ctx: &SockAddrContext, hook: &str, verdict: i32) {
    let addr = ctx.sock_addr;
    // SAFETY: reading fields of the context the kernel handed us.
    let (port, ip) = unsafe { ((*addr).user_port, (*addr).user_ip4) };
    let port = u16::from_be(port as u16);
    let ip = u32::from_be(ip);
    aya_log_ebpf::debug!(
        ctx,
        "{}: {} to {:i} port {}",
        hook,
        allowed(verdict),
        ip,
        port
    );
}

/// The same for IPv6.
#[cfg(feature = "trace")]
#[inline(always)]
pub fn connect6(ctx: &SockAddrContext, hook: &str, verdict: i32) {
    let addr = ctx.sock_addr;
    // SAFETY: as above.
    let (port, words) = unsafe { ((*addr).user_port, (*addr).user_ip6) };
    let port = u16::from_be(port as u16);
    let mut ip = [0u8; 16];
    for (i, word) in words.iter().enumerate() {
        ip[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    aya_log_ebpf::debug!(
        ctx,
        "{}: {} to {:i} port {}",
        hook,
        allowed(verdict),
        ip,
        port
    );
}

#[cfg(feature = "trace")]
fn allowed(verdict: i32) -> &'static str {
    if verdict == 1 { "allow" } else { "refuse" }
}

#[cfg(not(feature = "trace"))]
#[inline(always)]
pub fn connect4(_: &SockAddrContext, _: &str, _: i32) {}

#[cfg(not(feature = "trace"))]
#[inline(always)]
pub fn connect6(_: &SockAddrContext, _: &str, _: i32) {}
