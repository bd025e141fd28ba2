//! Counting and reporting drops: a per-CPU counter always, and an event on the
//! ring buffer when there is room (else the lost-events counter moves, so
//! userspace knows its event stream has a gap). Also reporting what a
//! policy records (`record` bits of its config): allowed connections, DNS
//! questions and answers' addresses, uncounted.

use core::ptr::{self, addr_of_mut};

use aya_ebpf::helpers::bpf_ktime_get_ns;
use openclaw_egress_common::{
    DNS_NAME_MAX, Direction, DropEvent, DropReason, NO_RULE, PolicyConfig, Stage, Verdict,
    maps::counter_index, workload::counters,
};

use crate::{
    dns_name,
    flow::Flow,
    map_types::DnsScratch,
    maps::{CONFIGS, EVENTS, count},
};

/// `what` of an allowed report: no reason, and a rule index that fits 16
/// bits (`RULES_MAX` does) or `RULE_NONE`.
const RULE_NONE: u32 = 0xffff;

/// What a drop is: why, which way, with what outcome, at which stage.
#[derive(Clone, Copy)]
pub struct Drop {
    pub reason: DropReason,
    pub direction: Direction,
    pub verdict: Verdict,
    pub stage: Stage,
}

impl Drop {
    /// A packet dropped on its way out.
    #[inline(always)]
    pub const fn egress(reason: DropReason, verdict: Verdict) -> Self {
        Self {
            reason,
            direction: Direction::Egress,
            verdict,
            stage: Stage::Packet,
        }
    }

    #[inline(always)]
    const fn pack(self) -> u32 {
        self.reason as u32
            | (self.direction as u32) << 8
            | (self.verdict as u32) << 16
            | (self.stage as u32) << 24
    }
}

/// The name a drop for `reason` is about, if it is about one: the check
/// that refused it read it into this CPU's scratch area (`dns_query` a
/// question, `tls_hello` and `http_request` a server name), and nothing ran
/// on this CPU since.
#[inline(always)]
pub fn refused_name(reason: DropReason) -> Option<&'static DnsScratch> {
    if matches!(
        reason,
        DropReason::DnsDenied | DropReason::SniDenied | DropReason::HostDenied
    ) {
        // SAFETY: only read, right after the check that wrote it.
        unsafe { dns_name::scratch() }.map(|scratch| &*scratch)
    } else {
        None
    }
}

/// Who sent what is reported: the slot of the workload's policy (whose
/// counters count it; 0 when none is in force, then only the event tells),
/// the sending cgroup and socket (0 each where unknown, e.g. on TC hooks).
#[derive(Clone, Copy)]
pub struct Sender {
    pub slot: u32,
    pub cgroup_id: u64,
    pub socket_cookie: u64,
}

impl Sender {
    /// `what` (a packed report) with the slot beside it, for [`report`].
    #[inline(always)]
    const fn with(&self, what: u32) -> u64 {
        (self.slot as u64) << 32 | what as u64
    }
}

/// Whether the policy in `slot` records what `bits` (of `record`) name.
#[inline(always)]
pub fn records(slot: u32, bits: u32) -> bool {
    CONFIGS
        .get(slot)
        .is_some_and(|config: &PolicyConfig| config.records(bits))
}

/// Reports something allowed that the policy records: a connection's first
/// packet (with the rule that allowed it, if known), a DNS question or an
/// answer's address (`stage`; `name` holds the question). Not counted.
#[inline(always)]
pub fn allowed(flow: &Flow, stage: Stage, rule: u32, sender: Sender, name: Option<&DnsScratch>) {
    let rule = if rule < RULE_NONE { rule } else { RULE_NONE };
    report(
        ptr::from_ref(flow),
        sender.with(rule | (Verdict::Allowed as u32) << 16 | (stage as u32) << 24),
        sender.cgroup_id,
        sender.socket_cookie,
        name.map_or(ptr::null(), ptr::from_ref),
    );
}

/// Counts `what` and reports it with `flow`'s 5-tuple, if known, and the
/// name it refused (see [`refused_name`]), if any.
#[inline(always)]
pub fn drop(flow: Option<&Flow>, what: Drop, sender: Sender, name: Option<&DnsScratch>) {
    let flow = match flow {
        Some(flow) => ptr::from_ref(flow),
        None => ptr::null(),
    };
    report(
        flow,
        sender.with(what.pack()),
        sender.cgroup_id,
        sender.socket_cookie,
        name.map_or(ptr::null(), ptr::from_ref),
    );
}

/// Out of line: one copy for every caller, in a stack frame of its own.
/// `what` is a packed report in its low half and the slot in its high half
/// (a BPF function takes five arguments, all in registers: nothing on the
/// stack, whose 512 bytes the callers use up). `flow` and `name` may be null.
#[inline(never)]
fn report(
    flow: *const Flow,
    what: u64,
    cgroup_id: u64,
    socket_cookie: u64,
    name: *const DnsScratch,
) {
    let slot = (what >> 32) as u32;
    let what = what as u32;
    let reason = DropReason::from_u8(what as u8).unwrap_or(DropReason::Malformed);
    let direction = Direction::from_u8((what >> 8) as u8).unwrap_or(Direction::Egress);
    let verdict = Verdict::from_u8((what >> 16) as u8).unwrap_or(Verdict::Dropped);
    let stage = (what >> 24) as u8;
    let allowed = verdict == Verdict::Allowed;
    if !allowed {
        count(slot, counter_index(verdict, direction, reason));
    }
    let Some(mut entry) = EVENTS.reserve::<DropEvent>(0) else {
        count(slot, counters::EVENTS_LOST);
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved, writable DropEvent; fields are
    // written one by one because a whole DropEvent would not fit on the BPF
    // stack. `flow` is the caller's, or null.
    unsafe {
        addr_of_mut!((*event).timestamp_ns).write(bpf_ktime_get_ns());
        addr_of_mut!((*event).slot).write(slot);
        addr_of_mut!((*event).cgroup_id).write(cgroup_id);
        addr_of_mut!((*event).socket_cookie).write(socket_cookie);
        addr_of_mut!((*event).verdict).write((what >> 16) as u8);
        addr_of_mut!((*event).stage).write(stage);
        addr_of_mut!((*event).dns_name_len).write(0);
        addr_of_mut!((*event).dns_type).write(0);
        addr_of_mut!((*event)._pad3).write([0; 2]);
        if allowed {
            let rule = what & RULE_NONE;
            addr_of_mut!((*event).reason).write(u8::MAX);
            addr_of_mut!((*event).direction).write(Direction::Egress as u8);
            addr_of_mut!((*event).rule).write(if rule == RULE_NONE { NO_RULE } else { rule });
        } else {
            addr_of_mut!((*event).reason).write(what as u8);
            addr_of_mut!((*event).direction).write((what >> 8) as u8);
            addr_of_mut!((*event).rule).write(NO_RULE);
        }
        // The name refused (a DNS question, a TLS server name, an HTTP
        // Host) or recorded (a question, the question of an answer); a
        // question's type comes with it.
        let question = (!allowed && reason == DropReason::DnsDenied)
            || (allowed && (stage == Stage::Question as u8 || stage == Stage::Answer as u8));
        if let Some(scratch) = name.as_ref() {
            let len = scratch.dotted_len().min(DNS_NAME_MAX);
            // The whole buffer, whatever the length: a copy without a
            // branch per byte. Bytes past the length are not read.
            (*event).dns_name = *ptr::from_ref(&scratch.dotted).cast::<[u8; DNS_NAME_MAX]>();
            addr_of_mut!((*event).dns_name_len).write(len as u16);
            if question {
                addr_of_mut!((*event).dns_type).write(scratch.qtype as u16);
            }
        }
        match flow.as_ref() {
            Some(flow) => {
                addr_of_mut!((*event).family).write(flow.family);
                addr_of_mut!((*event).proto).write(flow.proto);
                addr_of_mut!((*event).src_addr).write(flow.src);
                addr_of_mut!((*event).dst_addr).write(flow.dst);
                addr_of_mut!((*event).src_port).write(flow.src_port);
                addr_of_mut!((*event).dst_port).write(flow.dst_port);
            }
            None => {
                addr_of_mut!((*event).family).write(0);
                addr_of_mut!((*event).proto).write(0);
                addr_of_mut!((*event).src_addr).write([0; 16]);
                addr_of_mut!((*event).dst_addr).write([0; 16]);
                addr_of_mut!((*event).src_port).write(0);
                addr_of_mut!((*event).dst_port).write(0);
            }
        }
    }
    entry.submit(0);
}
