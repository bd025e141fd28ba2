//! Whether a server name read inside a connection (a TLS SNI or an HTTP
//! `Host`) is one the policy allows on the connection's port: the same
//! matching as DNS questions (exact names, `*.` and `**.` patterns,
//! case-insensitive, a trailing dot tolerated), then the matching rules'
//! ports.
//!
//! The matching walks the name a few times (see `dns_name`); it runs as a
//! one-iteration `bpf_loop` callback, which the verifier checks once,
//! instead of once for every way the caller got here.

use core::{ffi::c_void, ptr};

use aya_ebpf::helpers::generated::bpf_loop;
use openclaw_egress_common::{
    dns::{DNS_NAME_KEY_LEN, MAX_RULE_PORTS},
    proto,
};

use crate::{dns_name, maps::RULE_PORTS, scratch_guard};

#[repr(C)]
struct Question {
    name: *const [u8; DNS_NAME_KEY_LEN],
    slot: u32,
    len: u32,
    port: u16,
    allowed: u8,
}

/// What the policy says of a server name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    Allowed,
    Denied,
    /// Not judged: another run took the scratch area meanwhile (see
    /// `scratch_guard`).
    Contended,
}

/// Whether the policy in `slot` allows `name` (`len` bytes) on `port`.
#[inline(always)]
pub fn judge(slot: u32, name: &[u8; DNS_NAME_KEY_LEN], len: usize, port: u16) -> Judgement {
    let mut question = Question {
        name: ptr::from_ref(name),
        slot,
        len: len as u32,
        port,
        allowed: CONTENDED,
    };
    // SAFETY: `answer` has the callback signature bpf_loop expects, and the
    // context is this stack frame's, alive for the call.
    unsafe {
        bpf_loop(
            1,
            answer as *const () as *mut c_void,
            ptr::from_mut(&mut question).cast(),
            0,
        )
    };
    match question.allowed {
        ALLOWED => Judgement::Allowed,
        DENIED => Judgement::Denied,
        _ => Judgement::Contended,
    }
}

const DENIED: u8 = 0;
const ALLOWED: u8 = 1;
const CONTENDED: u8 = 2;

#[inline(never)]
extern "C" fn answer(_index: u64, context: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the context pointer it was given.
    let question = unsafe { &mut *context.cast::<Question>() };
    // SAFETY: the name the caller lent for the call.
    let name = unsafe { &*question.name };
    let ticket = scratch_guard::claim();
    let allowed = check(question.slot, name, question.len as usize, question.port);
    // Judged on a name someone else's run may have put in the scratch area:
    // no judgement.
    question.allowed = if !scratch_guard::held(ticket) {
        CONTENDED
    } else if allowed {
        ALLOWED
    } else {
        DENIED
    };
    1
}

#[inline(always)]
fn check(slot: u32, name: &[u8; DNS_NAME_KEY_LEN], len: usize, port: u16) -> bool {
    // SAFETY: the program's own use of this CPU's scratch area (the
    // matching's callbacks fetch it again; see `dns_name::scratch`).
    let Some(scratch) = (unsafe { dns_name::scratch() }) else {
        return false;
    };
    if dns_name::read_dotted(scratch, name, len).is_err() {
        return false;
    }
    if !dns_name::matching_rules(scratch, slot) {
        return false;
    }
    let Some(rule_ports) = RULE_PORTS.get(slot) else {
        return false;
    };
    for m in 0..dns_name::MAX_MATCHES {
        let Some(rule) = scratch.matched(m) else {
            break;
        };
        let Some(ports) = rule_ports.get(rule) else {
            continue;
        };
        for p in 0..MAX_RULE_PORTS {
            if p >= ports.count as usize {
                break;
            }
            let allowed = &ports.ports[p];
            if allowed.proto == proto::TCP && allowed.port == port {
                return true;
            }
        }
    }
    false
}
