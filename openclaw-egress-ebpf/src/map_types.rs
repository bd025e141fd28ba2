//! The types of the maps' values that only the kernel side uses: per-CPU
//! work areas and per-connection state. Kept apart from the code that uses
//! them so that `maps` and that code do not import each other.

use openclaw_egress_common::{Addr, DnsName, PendingQuery, dns::DNS_NAME_KEY_LEN};

/// Most rules one name can match that are remembered (for their ports).
pub const MAX_MATCHES: usize = 4;
/// Answer records looked at per response; later ones are not learned
/// (which fails closed: their addresses stay blocked).
pub const MAX_ANSWERS: usize = 16;

/// Per-CPU work area for DNS names (`maps::SCRATCH`; too big for the
/// 512-byte BPF stack). See `dns_name`.
#[repr(C)]
pub struct DnsScratch {
    /// The name as read from the packet, lowercased in place.
    pub(crate) raw: [u8; DNS_NAME_KEY_LEN],
    /// `1` where `raw` holds a label length byte.
    pub(crate) label_starts: [u8; DNS_NAME_KEY_LEN],
    /// The name as a `DNS_NAMES` key; matching strips labels from it.
    pub(crate) key: DnsName,
    /// The question as a `PENDING_QUERIES` key. [`read`] fills its `name`
    /// (the name as a key, kept intact: also the per-name budget's key);
    /// the caller fills the rest.
    pub query: PendingQuery,
    /// The name in dotted form, for drop events.
    pub dotted: [u8; DNS_NAME_KEY_LEN],
    /// The question's type, for events about it (written by whoever reads
    /// a question, before it may be reported).
    pub qtype: u32,
    /// Bytes of the wire-format name without the root label.
    pub(crate) name_len: u32,
    /// Loop-carried cursor (see the module comment).
    pub cursor: u32,
    /// Bytes of zero padding in front of the name in `key` (see the module comment).
    pub(crate) pad: u32,
    /// Where in `key` the name without its first label starts.
    pub(crate) second_label: u32,
    /// The TCP segment being checked, for `dns_stream::advance` once its
    /// messages pass: its sequence number and data length (kept here, not
    /// in registers, for the reason in the module comment).
    pub segment_seq: u32,
    pub segment_len: u32,
    /// Rules matched by the last name (see [`matching_rules`]).
    pub(crate) matches: [u32; MAX_MATCHES],
    pub(crate) match_count: u32,
    /// Bytes of `raw` that may be read.
    pub(crate) raw_len: u32,
    /// Set by a `bpf_loop` callback that found the name invalid.
    pub(crate) failed: u32,
}

/// Per-CPU work area of `dns_answer` (`maps::ANSWERS`): the address records of one answer, collected before any is learned.
///
/// Learning one address touches up to `MAX_MATCHES x MAX_RULE_PORTS` map
/// entries; doing that inline for every record would make the verifier walk
/// it `MAX_ANSWERS` times over. Instead the records are collected here and
/// learned through `bpf_loop`, whose callback is verified once.
#[repr(C)]
pub struct AnswerScratch {
    pub(crate) addresses: [Addr; MAX_ANSWERS],
    pub(crate) ttls: [u32; MAX_ANSWERS],
    pub(crate) count: u32,
    /// For the address being learned, what each matching rule does with it
    /// (`TAKE`, `TAKE_AND_CHARGE`, or 0). Kept here rather than in
    /// registers so that the verifier does not walk every combination.
    pub(crate) decisions: [u32; MAX_MATCHES],
    /// How many rules take the address.
    pub(crate) taken: u32,
    /// Set when `ALLOW` had no room for the address on some port.
    pub(crate) full: u32,
}

/// The destination a socket was allowed (or, in audit mode, reported) for,
/// and under which policy epoch (an entry of another epoch is no entry).
#[repr(C)]
pub struct SocketVerdict {
    pub(crate) epoch: u32,
    pub(crate) dst: Addr,
    pub(crate) port: u16,
    pub(crate) proto: u8,
    /// A `verdict_cache::Cached`, 0 when unset.
    pub(crate) verdict: u8,
}

/// The parser's state for one connection.
#[repr(C)]
pub struct InspectState {
    /// The stream position (TCP sequence number) of the next byte to parse.
    pub next_seq: u32,
    /// Stream bytes parsed so far.
    pub seen: u32,
    /// Bytes left to skip or copy in the current phase.
    pub need: u32,
    /// TLS: bytes left in the current record (0: a record header is next).
    pub record_left: u32,
    /// TLS: bytes left in the extensions block, once it started.
    pub exts_left: u32,
    /// TLS: bytes left in the current extension after what was read of it.
    pub ext_left: u32,
    /// TLS: bytes left in the ClientHello message, once its header is read.
    pub hello_left: u32,
    /// Bytes of `name` filled.
    pub name_len: u32,
    /// The slot of the policy the connection is inspected for.
    pub slot: u32,
    /// `inspect` bits of the destination (TLS or HTTP, ECH refused).
    pub flags: u8,
    /// The parser phase (`tls_hello` or `http_request` constants).
    pub phase: u8,
    /// Phase to go to once a skip is done.
    pub after: u8,
    /// Bytes of `acc` filled.
    pub have: u8,
    /// TLS: a record header read so far.
    pub record_header: [u8; 5],
    /// TLS: bytes of `record_header` filled.
    pub record_have: u8,
    /// TLS: an Encrypted Client Hello extension was seen.
    pub ech: u8,
    /// TLS: the extensions block started (its bytes count in `exts_left`).
    pub in_extensions: u8,
    /// A fixed-size field read so far.
    pub acc: [u8; 8],
    /// The server name, as sent.
    pub name: [u8; DNS_NAME_KEY_LEN],
}

const _: () =
    assert!(size_of::<InspectState>() == openclaw_egress_common::maps::INSPECT_STATE_SIZE as usize);
