//! Locating DNS messages in UDP datagrams and TCP segments, and reading
//! their headers.

use aya_ebpf::programs::sk_buff::SkBuff;
use openclaw_egress_common::proto;

use crate::flow::Flow;

/// Most DNS messages one TCP segment may carry (a stub resolver may send its
/// A and AAAA queries in one write).
pub const MAX_MESSAGES_PER_SEGMENT: usize = 2;

pub const HEADER_LEN: usize = 12;

/// Where the transport payload of `flow` starts; `None` if unreadable.
#[inline(always)]
pub fn payload_offset(skb: &SkBuff, flow: &Flow) -> Option<usize> {
    match flow.proto {
        proto::UDP => Some(flow.l4_offset + 8),
        proto::TCP => {
            let data_offset: u8 = skb.load(flow.l4_offset + 12).ok()?;
            let header_len = usize::from(data_offset >> 4) * 4;
            (header_len >= 20).then_some(flow.l4_offset + header_len)
        }
        _ => None,
    }
}

/// The fixed header of a DNS message.
pub struct Header {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    pub rcode: u8,
    pub questions: u16,
    pub answers: u16,
    pub authorities: u16,
    pub additionals: u16,
}

#[inline(always)]
pub fn header(skb: &SkBuff, offset: usize) -> Option<Header> {
    let bytes: [u8; HEADER_LEN] = skb.load(offset).ok()?;
    Some(Header {
        id: u16::from_be_bytes([bytes[0], bytes[1]]),
        response: bytes[2] & 0x80 != 0,
        opcode: (bytes[2] >> 3) & 0x0f,
        rcode: bytes[3] & 0x0f,
        questions: u16::from_be_bytes([bytes[4], bytes[5]]),
        answers: u16::from_be_bytes([bytes[6], bytes[7]]),
        authorities: u16::from_be_bytes([bytes[8], bytes[9]]),
        additionals: u16::from_be_bytes([bytes[10], bytes[11]]),
    })
}

/// The type and class that follow a question's name.
#[inline(always)]
pub fn question_type_class(skb: &SkBuff, offset: usize) -> Option<(u16, u16)> {
    let bytes: [u8; 4] = skb.load(offset).ok()?;
    Some((
        u16::from_be_bytes([bytes[0], bytes[1]]),
        u16::from_be_bytes([bytes[2], bytes[3]]),
    ))
}

/// The length prefix of a DNS message over TCP.
#[inline(always)]
pub fn tcp_length(skb: &SkBuff, offset: usize) -> Option<usize> {
    let bytes: [u8; 2] = skb.load(offset).ok()?;
    Some(usize::from(u16::from_be_bytes(bytes)))
}
