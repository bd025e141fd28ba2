//! Egress: a DNS query may only ask for a name some rule allows. Checking the
//! question in the kernel closes DNS tunnelling through an allowed resolver
//! (`<data>.attacker.example` queries), which an IP allowlist cannot see.

use aya_ebpf::programs::sk_buff::SkBuff;
use openclaw_egress_common::{DropReason, dns::DnsStat, proto};

use crate::{
    dns_message::{self, MAX_MESSAGES_PER_SEGMENT},
    dns_name,
    flow::Flow,
    maps::count_dns,
};

/// `Ok` when every query in the packet asks for an allowed name.
#[inline(always)]
pub fn check(skb: &SkBuff, flow: &Flow) -> Result<(), DropReason> {
    let start = dns_message::payload_offset(skb, flow).ok_or(DropReason::DnsMalformed)?;
    let end = skb.len() as usize;
    if flow.proto == proto::UDP {
        return check_message(skb, start, end);
    }
    // TCP: handshake and bare ACKs carry nothing to check.
    if start >= end {
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
        check_message(skb, message, message + len)?;
        offset = message + len;
        if offset == end {
            return Ok(());
        }
    }
    Err(DropReason::DnsMalformed)
}

/// One query: exactly one question, for an allowed name.
#[inline(always)]
fn check_message(skb: &SkBuff, offset: usize, end: usize) -> Result<(), DropReason> {
    let header = dns_message::header(skb, offset).ok_or(DropReason::DnsMalformed)?;
    // Only standard queries: no responses, updates or notifies going out, no
    // extra records to smuggle data in (one additional record: EDNS OPT).
    if header.response
        || header.opcode != 0
        || header.questions != 1
        || header.answers != 0
        || header.authorities != 0
        || header.additionals > 1
    {
        return Err(DropReason::DnsMalformed);
    }
    let scratch = dns_name::scratch().ok_or(DropReason::DnsMalformed)?;
    let question = offset + dns_message::HEADER_LEN;
    let name_len = dns_name::read(skb, question, scratch).map_err(|()| DropReason::DnsMalformed)?;
    // QTYPE and QCLASS must follow the name inside the message.
    if question + name_len + 4 > end {
        return Err(DropReason::DnsMalformed);
    }
    if !dns_name::matching_rules(scratch) {
        count_dns(DnsStat::QueriesDenied);
        return Err(DropReason::DnsDenied);
    }
    count_dns(DnsStat::QueriesAllowed);
    Ok(())
}
