//! The decision of the `cgroup_sock_addr` hooks: the same destination check
//! as the packet-level hooks (`egress_policy`), made on the address the
//! application names, before any packet exists.

use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{
    bindings::{bpf_sock, bpf_sock_addr},
    programs::SockAddrContext,
};
use openclaw_egress_common::{Addr, DropReason, Mode, Stage, Verdict, ipv4_mapped, proto};

use crate::{
    egress_policy::{self, DNS_PORT},
    flow::Flow,
    maps::CONFIGS,
    report::{self, Drop, Sender},
    return_code::{SK_DROP, SK_PASS},
    workload::Workload,
};

/// The system call goes on.
const ALLOW: i32 = SK_PASS;
/// The system call fails with EPERM.
const REFUSE: i32 = SK_DROP;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// Allows or refuses the `connect()`/`sendmsg()` of `ctx`.
#[inline(always)]
pub fn decide(ctx: &SockAddrContext, family: Family) -> i32 {
    // Until the daemon has written the cgroup's workload number (an instant
    // after attaching), the packet-level hooks decide alone.
    let Some(workload) = Workload::of_cgroup() else {
        return ALLOW;
    };
    let slot = workload.slot;
    let Some(config) = CONFIGS.get(slot) else {
        return refuse(ctx, family, DropReason::NotReady, workload);
    };
    if config.ready == 0 {
        return refuse(ctx, family, DropReason::NotReady, workload);
    }
    // Audit mode never refuses; the packet-level hooks report what they
    // would have dropped.
    if config.mode() == Mode::Audit {
        return ALLOW;
    }
    let addr = ctx.sock_addr;
    // SAFETY: reading fields of the context the kernel handed us.
    let (protocol, port) = unsafe {
        (
            load(addr_of!((*addr).protocol)),
            load(addr_of!((*addr).user_port)),
        )
    };
    let port = u16::from_be(port as u16);
    let protocol = protocol as u8;
    if protocol != proto::TCP && protocol != proto::UDP {
        return refuse(ctx, family, DropReason::Protocol, workload);
    }
    let dst = destination(addr, family);
    let verdict = if port == DNS_PORT {
        // Which name is asked is checked per packet; here only the server.
        if egress_policy::is_resolver(slot, &dst) {
            Ok(())
        } else {
            Err(DropReason::DnsResolver)
        }
    } else {
        // Whether the connection's first bytes will have to name an allowed
        // server is the packet hooks' business.
        egress_policy::check_destination(slot, &dst, protocol, port).map(drop)
    };
    match verdict {
        Ok(()) => ALLOW,
        Err(reason) => refuse(ctx, family, reason, workload),
    }
}

/// The destination the application named, in map form.
#[inline(always)]
fn destination(addr: *mut bpf_sock_addr, family: Family) -> Addr {
    // SAFETY: reading fields of the context; one 4-byte load per field,
    // the only width the verifier accepts for each of them.
    unsafe {
        match family {
            Family::V4 => ipv4_mapped(load(addr_of!((*addr).user_ip4)).to_ne_bytes()),
            Family::V6 => ip6_of(addr_of!((*addr).user_ip6).cast()),
        }
    }
}

/// Counts and reports the refusal, and fails the system call.
#[inline(always)]
fn refuse(ctx: &SockAddrContext, family: Family, reason: DropReason, workload: Workload) -> i32 {
    let addr = ctx.sock_addr;
    // SAFETY: as in `destination`; `sk` is the calling socket, never NULL
    // for these hooks.
    let flow = unsafe {
        let sk: *mut bpf_sock = (*addr).__bindgen_anon_1.sk;
        let (src, src_port) = match family {
            Family::V4 => (
                ipv4_mapped(load(addr_of!((*sk).src_ip4)).to_ne_bytes()),
                load(addr_of!((*sk).src_port)) as u16,
            ),
            Family::V6 => (
                ip6_of(addr_of!((*sk).src_ip6).cast()),
                load(addr_of!((*sk).src_port)) as u16,
            ),
        };
        Flow {
            family: if family == Family::V4 { 4 } else { 6 },
            proto: load(addr_of!((*addr).protocol)) as u8,
            src,
            dst: destination(addr, family),
            src_port,
            dst_port: u16::from_be(load(addr_of!((*addr).user_port)) as u16),
            l4_offset: 0,
            l3_end: 0,
            ip_options: false,
            workload,
        }
    };
    // SAFETY: a helper call on the context pointer the kernel handed us.
    let cgroup_id = unsafe { aya_ebpf::helpers::bpf_get_current_cgroup_id() };
    let what = Drop {
        stage: Stage::Connect,
        ..Drop::egress(reason, Verdict::Dropped)
    };
    let sender = Sender {
        slot: workload.slot,
        cgroup_id,
        socket_cookie: 0,
    };
    report::drop(Some(&flow), what, sender, None);
    REFUSE
}

/// A volatile 4-byte load: the verifier accepts context fields read only at
/// their own width, which a plain read LLVM may merge or split does not
/// guarantee.
#[inline(always)]
unsafe fn load(field: *const u32) -> u32 {
    // SAFETY: the caller passes a pointer to a context field.
    unsafe { read_volatile(field) }
}

/// An IPv6 address stored as four network-order u32 words.
#[inline(always)]
unsafe fn ip6_of(words: *const u32) -> Addr {
    let mut addr = [0u8; 16];
    for i in 0..4 {
        // SAFETY: the caller passes a pointer to four context words.
        let word = unsafe { load(words.add(i)) }.to_ne_bytes();
        addr[i * 4..i * 4 + 4].copy_from_slice(&word);
    }
    addr
}
