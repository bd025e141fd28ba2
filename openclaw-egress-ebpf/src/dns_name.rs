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
//! verification). So the loops over a name's bytes run under `bpf_loop`,
//! whose callback the verifier checks once, whatever the count and whoever
//! calls it; the callbacks keep their state in the per-CPU scratch area.
//! Loops elsewhere that stay bounded loops keep every value that depends on
//! packet data and is used across iterations in scratch memory too, re-read
//! each iteration with a volatile load (the verifier does not track map
//! memory), so that only the loop index lives in a register.

use core::{
    ffi::c_void,
    ptr::{self, read_volatile, write_volatile},
};

use aya_ebpf::{
    check_bounds_signed,
    helpers::{bpf_skb_load_bytes, generated::bpf_loop},
    programs::sk_buff::SkBuff,
};
use openclaw_egress_common::dns::DNS_NAME_KEY_LEN;

use crate::maps::SCRATCH;
pub use crate::{
    dns_name_match::matching_rules,
    map_types::{DnsScratch, MAX_MATCHES},
};

/// Longest name in wire format, root label included.
pub(crate) const MAX_WIRE_LEN: usize = 255;
/// Most labels a name of MAX_WIRE_LEN bytes can have.
const MAX_LABELS: usize = 128;

/// The context of [`dotted_byte`]: the dotted name `read_dotted` reads (a
/// pointer on the stack: map memory may not hold pointers).
#[repr(C)]
struct Dotted {
    name: *const [u8; DNS_NAME_KEY_LEN],
    len: u32,
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
///
/// # Safety
///
/// Per-CPU storage: one program run at a time uses it on this CPU, so it
/// cannot change under a caller except through the `bpf_loop` callbacks the
/// caller itself runs, which fetch it again. After calling one, read what
/// it writes with [`load`] (a volatile read), as the passes here do.
#[inline(always)]
pub unsafe fn scratch() -> Option<&'static mut DnsScratch> {
    // SAFETY: see above.
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
    parse_raw(scratch, len)
}

/// Parses the wire-format name at the start of `scratch.raw` (of which
/// `len` bytes, 1..=255, are valid): validates and lowercases it, and
/// builds its keys. Returns its length in wire format (root label included).
#[inline(always)]
pub fn parse_raw(scratch: &mut DnsScratch, len: usize) -> Result<usize, ()> {
    if !check_bounds_signed(len as i64, 1, MAX_WIRE_LEN as i64) {
        return Err(());
    }
    store(&mut scratch.raw_len, len as u32);
    store(&mut scratch.failed, 0);
    store(&mut scratch.name_len, 0);
    // Zero the label marks and the keys (a word at a time).
    each(WORDS, clear_word);
    // Pass 1: walk the label lengths to the root label.
    store(&mut scratch.cursor, 0);
    each(MAX_LABELS as u32, walk_label);
    let end = load(&scratch.name_len) as usize;
    // `0` is the root name, which is not a name anyone is allowed.
    if load(&scratch.failed) != 0 || end == 0 || end > MAX_WIRE_LEN {
        return Err(());
    }
    // Pass 2: validate and lowercase the characters, build the dotted form.
    each(end as u32, check_byte);
    if load(&scratch.failed) != 0 {
        return Err(());
    }
    // Pass 3: the right-aligned keys (zeros were written above).
    store(&mut scratch.pad, (DNS_NAME_KEY_LEN - end) as u32);
    each(end as u32, place_byte);
    Ok(end + 1)
}

/// Words of 8 bytes in a 256-byte buffer.
const WORDS: u32 = (DNS_NAME_KEY_LEN / 8) as u32;

/// Runs `callback` through `bpf_loop` `count` times (at most), on this
/// CPU's scratch area.
#[inline(always)]
fn each(count: u32, callback: extern "C" fn(u64, *mut c_void) -> i64) {
    // SAFETY: the callbacks have the signature bpf_loop expects and take no
    // context (they fetch the scratch area themselves).
    unsafe {
        bpf_loop(
            count,
            callback as *const () as *mut c_void,
            ptr::null_mut(),
            0,
        )
    };
}

pub(crate) const GO_ON: i64 = 0;
pub(crate) const STOP: i64 = 1;

/// Zeroes word `index` of the label marks and of both keys.
extern "C" fn clear_word(index: u64, _: *mut c_void) -> i64 {
    // SAFETY: a callback of this module's passes (see `scratch`).
    let Some(scratch) = (unsafe { scratch() }) else {
        return STOP;
    };
    let i = (index as usize) & (WORDS as usize - 1);
    // SAFETY: the three buffers are 256-byte fields at multiples of 256 in
    // a map value (8-byte aligned), so word `i` (< 32) is in bounds and
    // aligned.
    unsafe {
        ptr::from_mut(&mut scratch.label_starts)
            .cast::<u64>()
            .add(i)
            .write(0);
        ptr::from_mut(&mut scratch.key.bytes)
            .cast::<u64>()
            .add(i)
            .write(0);
        ptr::from_mut(&mut scratch.query.name.bytes)
            .cast::<u64>()
            .add(i)
            .write(0);
    }
    GO_ON
}

/// Pass 1: one label length; at the root label, records where it is.
extern "C" fn walk_label(_: u64, _: *mut c_void) -> i64 {
    // SAFETY: a callback of this module's passes (see `scratch`).
    let Some(scratch) = (unsafe { scratch() }) else {
        return STOP;
    };
    let position = scratch.cursor as usize & 0xff;
    if position >= scratch.raw_len as usize {
        scratch.failed = 1;
        return STOP;
    }
    let label_len = scratch.raw[position];
    if label_len == 0 {
        scratch.name_len = position as u32;
        return STOP;
    }
    if label_len > 63 {
        // A compression pointer, or a reserved label type.
        scratch.failed = 1;
        return STOP;
    }
    scratch.label_starts[position] = 1;
    scratch.cursor = (position + 1 + usize::from(label_len)) as u32;
    GO_ON
}

/// Pass 2: byte `index` of the name.
extern "C" fn check_byte(index: u64, _: *mut c_void) -> i64 {
    // SAFETY: a callback of this module's passes (see `scratch`).
    let Some(scratch) = (unsafe { scratch() }) else {
        return STOP;
    };
    let i = index as usize & 0xff;
    if scratch.label_starts[i] == 1 {
        if i > 0 {
            scratch.dotted[i - 1] = b'.';
        }
        return GO_ON;
    }
    let original = scratch.raw[i];
    let Some(lower) = normalize(original) else {
        scratch.failed = 1;
        return STOP;
    };
    scratch.raw[i] = lower;
    // Events show the name as sent: letter case can carry data (base64 in
    // an exfiltration attempt, say).
    if i > 0 {
        scratch.dotted[i - 1] = original;
    }
    GO_ON
}

/// Pass 3: byte `index` of the name into both right-aligned keys.
extern "C" fn place_byte(index: u64, _: *mut c_void) -> i64 {
    // SAFETY: a callback of this module's passes (see `scratch`).
    let Some(scratch) = (unsafe { scratch() }) else {
        return STOP;
    };
    let i = index as usize & 0xff;
    let target = masked(scratch.pad as usize + i);
    let byte = scratch.raw[i];
    scratch.key.bytes[target] = byte;
    scratch.query.name.bytes[target] = byte;
    GO_ON
}

/// Reads a dotted name (a TLS server name or an HTTP `Host` without its
/// port: `len` ASCII bytes of `dotted`, a trailing dot tolerated) into
/// `scratch` as [`read`] does, which validates it. Returns its length in
/// wire format.
#[inline(always)]
pub fn read_dotted(
    scratch: &mut DnsScratch,
    dotted: &[u8; DNS_NAME_KEY_LEN],
    len: usize,
) -> Result<usize, ()> {
    // `cursor` is where the next byte goes in `raw`, `pad` where the
    // current label's length byte goes, `second_label` how long the label
    // is so far.
    store(&mut scratch.cursor, 1);
    store(&mut scratch.pad, 0);
    store(&mut scratch.second_label, 0);
    store(&mut scratch.failed, 0);
    let mut context = Dotted {
        name: ptr::from_ref(dotted),
        len: len.min(MAX_WIRE_LEN) as u32,
    };
    // SAFETY: `dotted_byte` has the callback signature bpf_loop expects,
    // and the context is this stack frame's, alive for the call.
    unsafe {
        bpf_loop(
            MAX_WIRE_LEN as u32,
            dotted_byte as *const () as *mut c_void,
            ptr::from_mut(&mut context).cast(),
            0,
        )
    };
    if load(&scratch.failed) != 0 {
        return Err(());
    }
    let count = load(&scratch.second_label);
    let start = masked(load(&scratch.pad) as usize);
    if count == 0 {
        // A trailing dot (its length slot becomes the root label), or no
        // name at all.
        if start == 0 {
            return Err(());
        }
        scratch.raw[start] = 0;
        return parse_raw(scratch, start + 1);
    }
    scratch.raw[start] = count as u8;
    let end = masked(load(&scratch.cursor) as usize);
    scratch.raw[end] = 0;
    parse_raw(scratch, end + 1)
}

/// `read_dotted`: byte `index` of the dotted name.
extern "C" fn dotted_byte(index: u64, context: *mut c_void) -> i64 {
    // SAFETY: a callback of this module's passes (see `scratch`).
    let Some(scratch) = (unsafe { scratch() }) else {
        return STOP;
    };
    // SAFETY: bpf_loop passes back the context read_dotted gave it.
    let dotted = unsafe { &*context.cast::<Dotted>() };
    let i = index as usize & 0xff;
    if i >= dotted.len as usize {
        return STOP;
    }
    // SAFETY: the caller of read_dotted lent the name for the call.
    let byte = unsafe { (*dotted.name)[i] };
    let out = scratch.cursor as usize;
    if out >= MAX_WIRE_LEN - 1 {
        scratch.failed = 1;
        return STOP;
    }
    let count = scratch.second_label;
    if byte == b'.' {
        if count == 0 {
            scratch.failed = 1; // An empty label.
            return STOP;
        }
        scratch.raw[masked(scratch.pad as usize)] = count as u8;
        scratch.pad = out as u32;
        scratch.second_label = 0;
    } else {
        scratch.raw[masked(out)] = byte;
        scratch.second_label = count + 1;
    }
    scratch.cursor = out as u32 + 1;
    GO_ON
}

/// `index & 0xff`, computed so that LLVM cannot drop the mask (it would fold
/// `base[(i - pad) & 0xff]` into `(base - pad)[i]`, a pointer the verifier
/// rejects for starting out of bounds).
#[inline(always)]
pub(crate) fn masked(index: usize) -> usize {
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
