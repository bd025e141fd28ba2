//! Reading a DNS name out of a packet and matching it against the policy.
//!
//! Names are validated strictly: labels of 1..=63 bytes drawn from letters,
//! digits, '-' and '_' (lowercased), no compression pointers in a question.
//! Anything else is refused rather than interpreted, so no odd byte can make
//! one name look like another.
//!
//! A note on the loops: the verifier walks every iteration of a bounded loop,
//! and two paths through an iteration only merge if their registers agree.
//! A packet-derived value compared against the loop index would be narrowed
//! differently on each path and keep them apart (quadratic or exponential
//! verification). So every value that depends on packet data and is used
//! across iterations is kept in the per-CPU scratch area and re-read each
//! iteration with a volatile load (the verifier does not track map memory);
//! only the loop index lives in a register.

use core::ptr::{addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::{check_bounds_signed, helpers::bpf_skb_load_bytes, programs::sk_buff::SkBuff};
use openclaw_egress_common::{
    DnsName, PendingQuery,
    dns::{DNS_NAME_KEY_LEN, NO_RULE},
};

use crate::maps::{DNS_NAMES, SCRATCH};

/// Longest name in wire format, root label included.
const MAX_WIRE_LEN: usize = 255;
/// Most labels a name of MAX_WIRE_LEN bytes can have.
const MAX_LABELS: usize = 128;
/// Most rules one name can match that are remembered (for their ports).
pub const MAX_MATCHES: usize = 4;

/// Per-CPU work area (see `maps::SCRATCH`).
#[repr(C)]
pub struct DnsScratch {
    /// The name as read from the packet, lowercased in place.
    raw: [u8; DNS_NAME_KEY_LEN],
    /// `1` where `raw` holds a label length byte.
    label_starts: [u8; DNS_NAME_KEY_LEN],
    /// The name as a `DNS_NAMES` key; matching strips labels from it.
    key: DnsName,
    /// The question as a `PENDING_QUERIES` key. [`read`] fills its `name`
    /// (the name as a key, kept intact: also the per-name budget's key);
    /// the caller fills the rest.
    pub query: PendingQuery,
    /// The name in dotted form, for drop events.
    pub dotted: [u8; DNS_NAME_KEY_LEN],
    /// Bytes of the wire-format name without the root label.
    name_len: u32,
    /// Loop-carried cursor (see the module comment).
    pub cursor: u32,
    /// Bytes of zero padding in front of the name in `key` (see the module comment).
    pad: u32,
    /// Where in `key` the name without its first label starts.
    second_label: u32,
    /// The TCP segment being checked, for `dns_stream::advance` once its
    /// messages pass: its sequence number and data length (kept here, not
    /// in registers, for the reason in the module comment).
    pub segment_seq: u32,
    pub segment_len: u32,
    /// Rules matched by the last name (see [`matching_rules`]).
    matches: [u32; MAX_MATCHES],
    match_count: u32,
}

impl DnsScratch {
    pub fn dotted_len(&self) -> usize {
        (self.name_len as usize).saturating_sub(1)
    }

    /// The rules found by the last [`matching_rules`], at most [`MAX_MATCHES`].
    #[inline(always)]
    pub fn matched(&self, index: usize) -> Option<u32> {
        let count = load(&self.match_count) as usize;
        (index < count && index < MAX_MATCHES).then(|| self.matches[index])
    }
}

/// A volatile read, i.e. a value the verifier does not carry across loop iterations.
#[inline(always)]
pub fn load(value: &u32) -> u32 {
    // SAFETY: a valid reference.
    unsafe { read_volatile(value) }
}

#[inline(always)]
pub fn store(value: &mut u32, new: u32) {
    // SAFETY: a valid reference.
    unsafe { write_volatile(value, new) }
}

/// The scratch area of this CPU.
#[inline(always)]
pub fn scratch() -> Option<&'static mut DnsScratch> {
    // SAFETY: per-CPU storage, used by one program run at a time on this CPU.
    SCRATCH.get_ptr_mut(0).map(|ptr| unsafe { &mut *ptr })
}

/// Reads the uncompressed name at `offset` into `scratch`. Returns its length
/// in the packet (root label included).
#[inline(always)]
pub fn read(skb: &SkBuff, offset: usize, scratch: &mut DnsScratch) -> Result<usize, ()> {
    let available = (skb.len() as usize).saturating_sub(offset);
    let len = if available > MAX_WIRE_LEN {
        MAX_WIRE_LEN
    } else {
        available
    };
    // Checked in a form the verifier tracks (a plain `len == 0` test gets
    // folded by LLVM into a comparison the verifier cannot relate to `len`).
    if !check_bounds_signed(len as i64, 1, MAX_WIRE_LEN as i64) {
        return Err(());
    }
    // SAFETY: `raw` has room for MAX_WIRE_LEN bytes and 1 <= len <= MAX_WIRE_LEN.
    let rc = unsafe {
        bpf_skb_load_bytes(
            skb.skb.cast(),
            offset as u32,
            scratch.raw.as_mut_ptr().cast(),
            len as u32,
        )
    };
    if rc != 0 {
        return Err(());
    }
    for i in 0..DNS_NAME_KEY_LEN {
        scratch.label_starts[i] = 0;
    }

    // Pass 1: walk the label lengths to the root label.
    let end = {
        store(&mut scratch.cursor, 0);
        let mut end = None;
        for _ in 0..MAX_LABELS {
            let position = load(&scratch.cursor) as usize & 0xff;
            if position >= len {
                return Err(());
            }
            let label_len = scratch.raw[position];
            if label_len == 0 {
                end = Some(position);
                break;
            }
            if label_len > 63 {
                // A compression pointer, or a reserved label type.
                return Err(());
            }
            scratch.label_starts[position] = 1;
            store(
                &mut scratch.cursor,
                (position + 1 + usize::from(label_len)) as u32,
            );
        }
        // `0` is the root name, which is not a name anyone is allowed.
        match end {
            Some(end) if end > 0 => end,
            _ => return Err(()),
        }
    };
    store(&mut scratch.name_len, end as u32);

    // Pass 2: validate and lowercase the characters, build the dotted form.
    for i in 0..MAX_WIRE_LEN {
        if i >= load(&scratch.name_len) as usize {
            break;
        }
        if scratch.label_starts[i] == 1 {
            if i > 0 {
                scratch.dotted[i - 1] = b'.';
            }
        } else {
            let original = scratch.raw[i];
            scratch.raw[i] = normalize(original).ok_or(())?;
            // Events show the name as sent: letter case can carry data
            // (base64 in an exfiltration attempt, say).
            if i > 0 {
                scratch.dotted[i - 1] = original;
            }
        }
    }

    // Pass 3: the right-aligned keys: zeros, then the name copied to the
    // end. (One loop with an `i < pad` branch would split the verifier's
    // paths at every byte.)
    store(&mut scratch.pad, (DNS_NAME_KEY_LEN - end) as u32);
    scratch.key.bytes = [0; DNS_NAME_KEY_LEN];
    scratch.query.name.bytes = [0; DNS_NAME_KEY_LEN];
    for i in 0..MAX_WIRE_LEN {
        if i >= load(&scratch.name_len) as usize {
            break;
        }
        let target = masked(load(&scratch.pad) as usize + i);
        let byte = scratch.raw[i];
        scratch.key.bytes[target] = byte;
        scratch.query.name.bytes[target] = byte;
    }
    Ok(end + 1)
}

/// `index & 0xff`, computed so that LLVM cannot drop the mask (it would fold
/// `base[(i - pad) & 0xff]` into `(base - pad)[i]`, a pointer the verifier
/// rejects for starting out of bounds).
#[inline(always)]
fn masked(index: usize) -> usize {
    let mut slot = index;
    // SAFETY: a volatile round trip through a local.
    unsafe {
        write_volatile(&mut slot, index);
        read_volatile(&slot) & 0xff
    }
}

/// Lowercases a name character; `None` for bytes no hostname contains.
#[inline(always)]
fn normalize(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte + (b'a' - b'A')),
        b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => Some(byte),
        _ => None,
    }
}

/// Finds the rules (up to [`MAX_MATCHES`]) allowing the name last [`read`]
/// into `scratch`, most specific first; read them with [`DnsScratch::matched`].
/// Returns whether there is any. Consumes `scratch.key`.
///
/// Suffixes are tried by zeroing the leading labels of the right-aligned key
/// one at a time: the full name for `fqdn` rules, the name minus its first
/// label for `*.` patterns, and every proper suffix for `**.` patterns.
#[inline(always)]
pub fn matching_rules(scratch: &mut DnsScratch) -> bool {
    store(&mut scratch.match_count, 0);
    let name_len = load(&scratch.name_len) as usize;
    if name_len == 0 || name_len > MAX_WIRE_LEN {
        return false;
    }
    let pad = DNS_NAME_KEY_LEN - name_len;
    store(&mut scratch.pad, pad as u32);
    store(
        &mut scratch.second_label,
        (pad + 1 + usize::from(scratch.raw[0])) as u32,
    );
    if let Some(rules) = DNS_NAMES.get_ptr(&scratch.key) {
        // SAFETY: pointer from a successful lookup, only read.
        push(scratch, unsafe { (*rules).exact });
    }
    for i in 0..DNS_NAME_KEY_LEN {
        let pad = load(&scratch.pad) as usize;
        if i < pad {
            continue;
        }
        if i > pad
            && scratch.label_starts[masked(i - pad)] == 1
            && let Some(rules) = DNS_NAMES.get_ptr(&scratch.key)
        {
            // SAFETY: as above.
            let (one_label, any_depth) = unsafe { ((*rules).one_label, (*rules).any_depth) };
            if i == load(&scratch.second_label) as usize {
                push(scratch, one_label);
            }
            push(scratch, any_depth);
        }
        scratch.key.bytes[i] = 0;
    }
    load(&scratch.match_count) > 0
}

#[inline(always)]
fn push(scratch: &mut DnsScratch, rule: u32) {
    let count = load(&scratch.match_count) as usize;
    if rule != NO_RULE && count < MAX_MATCHES {
        // SAFETY: in bounds (checked above); volatile keeps it out of the
        // verifier's loop state.
        unsafe { write_volatile(addr_of_mut!(scratch.matches[count]), rule) };
        store(&mut scratch.match_count, count as u32 + 1);
    }
}
