//! Ring buffer records: dropped (or, in audit mode, would-be dropped) flows,
//! and, when a policy records them (`config::record`), allowed connections,
//! DNS questions and the addresses of their answers.

use crate::addr::Addr;

/// Longest DNS name carried in an event, in dotted form, without a trailing NUL.
pub const DNS_NAME_MAX: usize = 255;

/// Which way the dropped packet went. Only egress is enforced (answers are
/// learned from on the way in, never dropped), so it is the only value; the
/// label stays so that metrics keep their shape if ingress drops come.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Egress = 0,
}

impl Direction {
    pub const ALL: [Direction; 1] = [Self::Egress];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Egress => "egress",
        }
    }

    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Egress),
            _ => None,
        }
    }
}

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Dropped = 0,
    /// Audit mode: the packet went through but would have been dropped.
    Audited = 1,
    /// Allowed: a connection's first packet, a DNS question or an answer's
    /// address, reported only when the policy records them. Not counted.
    Allowed = 2,
}

impl Verdict {
    /// The verdicts that are counted (per reason and direction).
    pub const COUNTED: [Verdict; 2] = [Self::Dropped, Self::Audited];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Dropped => "dropped",
            Self::Audited => "audited",
            Self::Allowed => "allowed",
        }
    }

    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Dropped),
            1 => Some(Self::Audited),
            2 => Some(Self::Allowed),
            _ => None,
        }
    }
}

/// Where the drop happened.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// A packet (cgroup_skb or TC hook).
    Packet = 0,
    /// A `connect()` or UDP `sendmsg()`, refused before any packet existed:
    /// the source is the socket's bound address, often unspecified.
    Connect = 1,
    /// A DNS question that was allowed (recorded, see `config::record`);
    /// a refused one is a `Packet` drop for `DnsDenied`.
    Question = 2,
    /// An address in a DNS answer (recorded): `dst_addr` is the address,
    /// `dns_name` the question it answers, `src_addr` the resolver.
    Answer = 3,
}

impl Stage {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Packet => "packet",
            Self::Connect => "connect",
            Self::Question => "dns_question",
            Self::Answer => "dns_answer",
        }
    }

    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Packet),
            1 => Some(Self::Connect),
            2 => Some(Self::Question),
            3 => Some(Self::Answer),
            _ => None,
        }
    }
}

/// A rule index meaning "no rule" in [`DropEvent::rule`].
pub const NO_RULE: u32 = u32::MAX;

/// One dropped flow (or a recorded allowed one, question or answer), as
/// pushed on the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DropEvent {
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) when the packet was seen.
    pub timestamp_ns: u64,
    /// The cgroup v2 id of the sending socket (0 when unknown, e.g. TC).
    pub cgroup_id: u64,
    pub src_addr: Addr,
    pub dst_addr: Addr,
    /// Host byte order; 0 for protocols without ports.
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    /// A [`crate::DropReason`] (meaningless when `verdict` is `Allowed`).
    pub reason: u8,
    /// A [`Direction`].
    pub direction: u8,
    /// A [`Verdict`].
    pub verdict: u8,
    /// A [`Stage`].
    pub stage: u8,
    /// Bytes of `dns_name` in use (0 when the drop is not about DNS).
    pub dns_name_len: u16,
    pub dns_name: [u8; DNS_NAME_MAX],
    pub _pad2: u8,
    /// The slot of the policy that judged the packet (0: none was in
    /// force), which tells the daemon whose drop it is.
    pub slot: u32,
    /// The sending socket's cookie (`SO_COOKIE`), 0 when unknown (TC): lets
    /// the daemon destroy exactly that socket.
    pub socket_cookie: u64,
    /// The policy rule that allowed a recorded connection ([`NO_RULE`]
    /// otherwise, or when it was allowed after inspecting its first bytes).
    pub rule: u32,
    /// The DNS question's type (1 = A, 28 = AAAA, ...) when `dns_name` is
    /// a question; 0 otherwise.
    pub dns_type: u16,
    pub _pad3: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<DropEvent>() == 336);
