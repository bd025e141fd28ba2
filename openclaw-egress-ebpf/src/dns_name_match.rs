//! Matching a name read by `dns_name` against the policy's names and
//! patterns (`DNS_NAMES`): which rules allow it, most specific first.

use core::{
    ffi::c_void,
    ptr::{self, addr_of_mut, write_volatile},
};

use aya_ebpf::helpers::generated::bpf_loop;
use openclaw_egress_common::dns::{DNS_NAME_KEY_LEN, NO_RULE};

use crate::{
    dns_name::{GO_ON, MAX_WIRE_LEN, STOP, load, masked, scratch, store},
    map_types::{DnsScratch, MAX_MATCHES},
    maps::DNS_NAMES,
};

/// Finds the rules (up to [`MAX_MATCHES`]) allowing the name last `dns_name::read`
/// into `scratch`, most specific first; read them with [`DnsScratch::matched`].
/// Returns whether there is any. Consumes `scratch.key`.
///
/// Suffixes are tried by zeroing the leading labels of the right-aligned key
/// one at a time: the full name for `fqdn` rules, the name minus its first
/// label for `*.` patterns, and every proper suffix for `**.` patterns.
#[inline(always)]
pub fn matching_rules(scratch: &mut DnsScratch, slot: u32) -> bool {
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
    let Some(names) = DNS_NAMES.get(slot) else {
        return false;
    };
    if let Some(rules) = names.get_ptr(&scratch.key) {
        // SAFETY: pointer from a successful lookup, only read.
        push(scratch, unsafe { (*rules).exact });
    }
    // From the name's first byte to the end of the key.
    let mut slot = slot;
    // SAFETY: `try_suffix` has the callback signature bpf_loop expects and
    // reads its context as the `u32` lent here for the call.
    unsafe {
        bpf_loop(
            name_len as u32,
            try_suffix as *const () as *mut c_void,
            ptr::from_mut(&mut slot).cast(),
            0,
        )
    };
    load(&scratch.match_count) > 0
}

/// `matching_rules`: byte `pad + index` of the key. At a label start, the
/// key (with everything before zeroed) is a proper suffix of the name.
extern "C" fn try_suffix(index: u64, slot: *mut c_void) -> i64 {
    // SAFETY: a callback of this module's passes (see `scratch`).
    let Some(scratch) = (unsafe { scratch() }) else {
        return STOP;
    };
    // SAFETY: `matching_rules` lends the slot for the call.
    let Some(names) = DNS_NAMES.get(unsafe { *slot.cast::<u32>() }) else {
        return STOP;
    };
    let pad = scratch.pad as usize;
    let i = masked(pad + index as usize);
    if index > 0
        && scratch.label_starts[masked(index as usize)] == 1
        && let Some(rules) = names.get_ptr(&scratch.key)
    {
        // SAFETY: pointer from a successful lookup, only read.
        let (one_label, any_depth) = unsafe { ((*rules).one_label, (*rules).any_depth) };
        if i == scratch.second_label as usize {
            push(scratch, one_label);
        }
        push(scratch, any_depth);
    }
    scratch.key.bytes[i] = 0;
    GO_ON
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
