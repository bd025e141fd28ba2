//! Egress: a DNS query may only ask for a name some rule allows, and may carry
//! nothing else. Checking the question in the kernel closes DNS tunnelling
//! through an allowed resolver (`<data>.attacker.example` queries), which an
//! IP allowlist cannot see; checking that nothing else is in the message
//! closes the same channel through trailing bytes, extra records and EDNS
//! options.
//!
//! A query is exactly: the header, one question of class IN, and at most one
//! well-formed EDNS0 OPT record (root owner, small, nothing after it). Over
//! UDP the datagram is that message and nothing more; over TCP every
//! length-prefixed message in the segment is checked whole.

use core::{ffi::c_void, ptr};

use aya_ebpf::{bindings::__sk_buff, helpers::generated::bpf_loop, programs::sk_buff::SkBuff};
use openclaw_egress_common::{DropReason, NO_RULE, Stage, dns::DnsStat, proto, record};

use crate::{
    dns_message::{self, MAX_MESSAGES_PER_SEGMENT},
    dns_name::{self, DnsScratch, load, store},
    dns_pending, dns_stream,
    egress_policy::{Decision, Hook},
    flow::Flow,
    maps::count_dns,
    report, scratch_guard,
};

const CLASS_IN: u16 = 1;
const TYPE_OPT: u16 = 41;
/// Fixed part of an OPT record: root owner (1), type (2), class = UDP payload
/// size (2), TTL = extended RCODE, version and flags (4), RDLENGTH (2).
const OPT_FIXED_LEN: usize = 11;
/// Room for the options a stub resolver sends: a client cookie (12 bytes),
/// or a client and server cookie (at most 44). Anything bigger is a channel.
const MAX_OPT_RDATA: usize = 44;
/// Each option is at least its 4-byte code and length.
const MAX_OPTIONS: usize = MAX_OPT_RDATA / 4;
/// The OPT TTL field of a query: extended RCODE 0, version 0, and no flag
/// but DO (DNSSEC OK); the other 15 flag bits must be zero (RFC 6891).
const OPT_TTL_DO: u32 = 0x0000_8000;

/// [`check`], as a one-iteration `bpf_loop` callback: verified once, in a
/// stack frame of its own.
#[inline(always)]
pub fn check_once(skb: &SkBuff, flow: &Flow, hook: Hook) -> Decision {
    let mut call = Packet {
        skb: skb.skb,
        flow: ptr::from_ref(flow),
        hook: hook as u8,
        decision: Decision::Drop(DropReason::DnsMalformed).encode(),
    };
    // SAFETY: `check_packet` has the callback signature bpf_loop expects,
    // and the context is this stack frame's, alive for the call.
    unsafe {
        bpf_loop(
            1,
            check_packet as *const () as *mut c_void,
            ptr::from_mut(&mut call).cast(),
            0,
        )
    };
    Decision::decode(call.decision)
}

#[repr(C)]
struct Packet {
    skb: *mut __sk_buff,
    flow: *const Flow,
    hook: u8,
    decision: u32,
}

#[inline(never)]
extern "C" fn check_packet(_index: u64, context: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the context pointer it was given.
    let call = unsafe { &mut *context.cast::<Packet>() };
    let skb = SkBuff::new(call.skb);
    // SAFETY: the flow the caller lent for the call.
    let flow = unsafe { &*call.flow };
    let decision: Decision = check(&skb, flow, Hook::from_u8(call.hook)).into();
    call.decision = decision.encode();
    1
}

/// `Ok` when the packet's queries are plain questions for allowed names.
#[inline(always)]
fn check(skb: &SkBuff, flow: &Flow, hook: Hook) -> Result<(), DropReason> {
    let start = dns_message::payload_offset(skb, flow).ok_or(DropReason::DnsMalformed)?;
    let end = skb.len() as usize;
    // The buffer is exactly the IP packet: no bytes hidden after it, none
    // missing (what the resolver reads is what is checked here).
    if flow.l3_end != end {
        return Err(DropReason::DnsMalformed);
    }
    if flow.proto == proto::UDP {
        // One sendmsg with UDP_SEGMENT becomes several datagrams after this
        // hook, of which only the first would be parsed here as a message.
        if is_gso(skb) {
            return Err(DropReason::DnsMalformed);
        }
        let udp_len: [u8; 2] = skb
            .load(flow.l4_offset + 4)
            .map_err(|_| DropReason::DnsMalformed)?;
        if flow.l4_offset + usize::from(u16::from_be_bytes(udp_len)) != end {
            return Err(DropReason::DnsMalformed);
        }
        return check_message(skb, flow, hook, start, end);
    }
    // TCP: the segment must be the next part of its stream (see
    // `dns_stream`); handshake and bare ACKs carry nothing else to check.
    // (What `advance` needs later is held in scratch memory first, so that
    // the ways through `admits` leave the verifier one state; see the note
    // on loops in `dns_name`.)
    let len = end.saturating_sub(start);
    {
        let segment = dns_stream::segment(skb, flow).ok_or(DropReason::DnsMalformed)?;
        // SAFETY: the program's own use of this CPU's scratch area.
        let scratch = unsafe { dns_name::scratch() }.ok_or(DropReason::DnsMalformed)?;
        dns_stream::hold(scratch, &segment, len);
        if !dns_stream::admits(skb, flow, hook, &segment, len) {
            return Err(DropReason::DnsMalformed);
        }
    }
    if len == 0 {
        return Ok(());
    }
    // Every data segment must hold whole, length-prefixed messages: a
    // message split across segments cannot be checked, so it is refused.
    let mut offset = start;
    for _ in 0..MAX_MESSAGES_PER_SEGMENT {
        let len = dns_message::tcp_length(skb, offset).ok_or(DropReason::DnsMalformed)?;
        let message = offset + 2;
        if message + len > end {
            return Err(DropReason::DnsMalformed);
        }
        check_message(skb, flow, hook, message, message + len)?;
        offset = message + len;
        if offset == end {
            dns_stream::advance(flow, hook);
            return Ok(());
        }
    }
    Err(DropReason::DnsMalformed)
}

/// Whether the packet is a GSO super-packet (several datagrams or segments
/// the stack will cut it into later).
#[inline(always)]
fn is_gso(skb: &SkBuff) -> bool {
    // SAFETY: reading a field of the context the kernel handed us.
    unsafe { (*skb.skb).gso_size != 0 }
}

/// What the one-iteration `bpf_loop` around [`check_one`] works on.
#[repr(C)]
struct Message {
    skb: *mut __sk_buff,
    flow: *const Flow,
    hook: u8,
    offset: u32,
    end: u32,
    /// 0 when the message passed, else its `DropReason` plus one.
    refused: u32,
}

/// Checks the query spanning `offset..end` (see [`check_one`]). The check
/// reads the name a few times over (see `dns_name`); run as a one-iteration
/// `bpf_loop` callback, it is verified once, not once per message of a TCP
/// segment and per way of getting here.
#[inline(always)]
fn check_message(
    skb: &SkBuff,
    flow: &Flow,
    hook: Hook,
    offset: usize,
    end: usize,
) -> Result<(), DropReason> {
    let mut message = Message {
        skb: skb.skb,
        flow: ptr::from_ref(flow),
        hook: hook as u8,
        offset: offset as u32,
        end: end as u32,
        refused: DropReason::DnsMalformed as u32 + 1,
    };
    // SAFETY: `check_callback` has the callback signature bpf_loop expects,
    // and the context is this stack frame's, alive for the call.
    unsafe {
        bpf_loop(
            1,
            check_callback as *const () as *mut c_void,
            ptr::from_mut(&mut message).cast(),
            0,
        )
    };
    match message.refused {
        0 => Ok(()),
        refused => {
            Err(DropReason::from_u8((refused - 1) as u8).unwrap_or(DropReason::DnsMalformed))
        }
    }
}

#[inline(never)]
extern "C" fn check_callback(_index: u64, context: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the context pointer it was given.
    let message = unsafe { &mut *context.cast::<Message>() };
    let skb = SkBuff::new(message.skb);
    // SAFETY: the flow the caller lent for the call.
    let flow = unsafe { &*message.flow };
    let hook = Hook::from_u8(message.hook);
    message.refused = match check_one(
        &skb,
        flow,
        hook,
        message.offset as usize,
        message.end as usize,
    ) {
        Ok(()) => 0,
        Err(reason) => reason as u32 + 1,
    };
    1
}

/// One query spanning `offset..end`: one question for an allowed name, at
/// most an OPT record after it, nothing else. An allowed query is remembered
/// as outstanding, so that its answer may teach addresses (any query is,
/// when the policy records DNS: its answer is then recorded, not learned).
#[inline(always)]
fn check_one(
    skb: &SkBuff,
    flow: &Flow,
    hook: Hook,
    offset: usize,
    end: usize,
) -> Result<(), DropReason> {
    let header = dns_message::header(skb, offset).ok_or(DropReason::DnsMalformed)?;
    // Only standard queries: no responses, updates or notifies going out, no
    // records but one EDNS OPT.
    if header.response
        || header.opcode != 0
        || header.questions != 1
        || header.answers != 0
        || header.authorities != 0
        || header.additionals > 1
    {
        return Err(DropReason::DnsMalformed);
    }
    let ticket = scratch_guard::claim();
    // SAFETY: the program's own use of this CPU's scratch area.
    let scratch = unsafe { dns_name::scratch() }.ok_or(DropReason::DnsMalformed)?;
    let question = offset + dns_message::HEADER_LEN;
    let name_len = dns_name::read(skb, question, scratch).map_err(|()| DropReason::DnsMalformed)?;
    let question_end = question + name_len + 4;
    if question_end > end {
        return Err(DropReason::DnsMalformed);
    }
    let (qtype, qclass) = dns_message::question_type_class(skb, question + name_len)
        .ok_or(DropReason::DnsMalformed)?;
    if qclass != CLASS_IN {
        return Err(DropReason::DnsMalformed);
    }
    store(&mut scratch.qtype, u32::from(qtype));
    // Where the records end, kept in scratch memory so that the message
    // with an OPT record and the one without leave the verifier one state.
    if header.additionals == 0 {
        store(&mut scratch.cursor, question_end as u32);
    } else {
        let records_end = opt_record_end(skb, scratch, question_end)?;
        store(&mut scratch.cursor, records_end as u32);
    }
    if load(&scratch.cursor) as usize != end {
        return Err(DropReason::DnsMalformed);
    }
    let slot = flow.slot();
    let allowed = dns_name::matching_rules(scratch, slot);
    let recording = report::records(slot, record::DNS);
    // Remembered before the guard's check: if someone else's name is in
    // the scratch area, an entry for it answers nothing this query asked.
    if allowed || recording {
        dns_pending::remember(scratch, flow, header.id, qtype);
    }
    if !scratch_guard::held(ticket) {
        return Err(DropReason::Contended);
    }
    if !allowed {
        count_dns(slot, DnsStat::QueriesDenied);
        return Err(DropReason::DnsDenied);
    }
    count_dns(slot, DnsStat::QueriesAllowed);
    if recording {
        report::allowed(
            flow,
            Stage::Question,
            NO_RULE,
            hook.sender(skb, slot),
            Some(scratch),
        );
    }
    Ok(())
}

/// Checks the EDNS0 OPT record at `offset` and returns where it ends.
#[inline(always)]
fn opt_record_end(
    skb: &SkBuff,
    scratch: &mut DnsScratch,
    offset: usize,
) -> Result<usize, DropReason> {
    let fixed: [u8; OPT_FIXED_LEN] = skb.load(offset).map_err(|_| DropReason::DnsMalformed)?;
    let rtype = u16::from_be_bytes([fixed[1], fixed[2]]);
    let ttl = u32::from_be_bytes([fixed[5], fixed[6], fixed[7], fixed[8]]);
    let rdlength = usize::from(u16::from_be_bytes([fixed[9], fixed[10]]));
    if fixed[0] != 0
        || rtype != TYPE_OPT
        || (ttl != 0 && ttl != OPT_TTL_DO)
        || rdlength > MAX_OPT_RDATA
    {
        return Err(DropReason::DnsMalformed);
    }
    // The options must tile RDATA exactly: code, length, that many bytes.
    // The cursor lives in scratch memory, so that every way out of the loop
    // leaves the verifier in the same state (see the note in `dns_name`).
    let rdata = offset + OPT_FIXED_LEN;
    let rdata_end = rdata + rdlength;
    store(&mut scratch.cursor, rdata as u32);
    for _ in 0..MAX_OPTIONS {
        let option = load(&scratch.cursor) as usize;
        if option >= rdata_end {
            break;
        }
        let head: [u8; 4] = skb.load(option).map_err(|_| DropReason::DnsMalformed)?;
        let next = option + 4 + usize::from(u16::from_be_bytes([head[2], head[3]]));
        store(&mut scratch.cursor, next as u32);
    }
    if load(&scratch.cursor) as usize != rdata_end {
        return Err(DropReason::DnsMalformed);
    }
    Ok(rdata_end)
}
