//! The TLS ClientHello parser: one step at a time (see `inspection`), over
//! records that may be split anywhere and a handshake message that may span
//! records. It reads what it must (lengths, extension types, the server
//! name) and skips the rest; anything that does not fit the format, or that
//! lies about its lengths, ends it as `tls_malformed`.
//!
//! ```text
//! record:     type 22 | version 3.x | length       (5 bytes, then its body)
//! handshake:  type 1 | length (3) | version (2) | random (32)
//!             | session id (1 + n) | cipher suites (2 + n)
//!             | compression methods (1 + n) | extensions (2 + n)
//! extension:  type (2) | length (2) | data;  server_name (0):
//!             list length (2) | type 0 | name length (2) | name
//! ```

use aya_ebpf::programs::sk_buff::SkBuff;
use openclaw_egress_common::{DropReason, dns::DNS_NAME_KEY_LEN, inspect};

use crate::inspection::{self, InspectState, MAX_STREAM_BYTES, Outcome, Step};

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const EXTENSION_ECH: u16 = 0xfe0d;
const NAME_TYPE_HOST: u8 = 0;
/// version (2) + random (32)
const FIXED_FIELDS_LEN: u32 = 34;
/// Longest record body TLS allows (2^14), plus what a record may expand by.
const MAX_RECORD_LEN: u32 = 16_384 + 256;

// Phases: the field read next.
const HANDSHAKE_HEADER: u8 = 0;
const SKIP: u8 = 1;
const SESSION_ID_LEN: u8 = 2;
const CIPHER_SUITES_LEN: u8 = 3;
const COMPRESSION_LEN: u8 = 4;
const EXTENSIONS_LEN: u8 = 5;
const EXTENSION_HEADER: u8 = 6;
const SERVER_NAME_HEADER: u8 = 7;
const SERVER_NAME: u8 = 8;
const DONE: u8 = 9;
const MALFORMED: u8 = 10;

/// Bytes of the fixed-size field each phase reads.
#[inline(always)]
fn field_len(phase: u8) -> u32 {
    match phase {
        HANDSHAKE_HEADER | EXTENSION_HEADER => 4,
        SESSION_ID_LEN | COMPRESSION_LEN => 1,
        CIPHER_SUITES_LEN | EXTENSIONS_LEN => 2,
        SERVER_NAME_HEADER => 5,
        _ => 0,
    }
}

/// One step: a record header byte or all of it, a field, a skip, or one byte
/// of the server name.
#[inline(always)]
pub fn step(skb: &SkBuff, state: &mut InspectState, offset: &mut u32, end: u32) -> Step {
    if state.phase == DONE || state.phase == MALFORMED {
        return Step::Done;
    }
    let available = end - *offset;
    if state.record_left == 0 {
        return record_header(skb, state, offset);
    }
    let chunk = available.min(state.record_left);
    match state.phase {
        SKIP => {
            let n = chunk.min(state.need);
            consume(state, offset, n);
            state.need -= n;
            if state.need == 0 {
                enter(state, state.after);
            }
        }
        SERVER_NAME => {
            let Ok(byte) = skb.load::<u8>(*offset as usize) else {
                return malformed(state);
            };
            let at = state.name_len as usize;
            if at < DNS_NAME_KEY_LEN {
                state.name[at] = byte;
            }
            state.name_len += 1;
            consume(state, offset, 1);
            state.need -= 1;
            if state.need == 0 {
                // The rest of the extension, then the next one (or the
                // end, right away when the name ends the hello: no later
                // segment may be needed to finish it).
                skip(state, state.ext_left, EXTENSION_HEADER);
            }
        }
        phase => {
            let want = field_len(phase);
            if want == 0 {
                return malformed(state);
            }
            // The whole field at once when it is all here, else a byte.
            let have = u32::from(state.have);
            if have == 0 && chunk >= want {
                if read_field(skb, state, *offset, want).is_err() {
                    return malformed(state);
                }
                consume(state, offset, want);
            } else {
                let Ok(byte) = skb.load::<u8>(*offset as usize) else {
                    return malformed(state);
                };
                state.acc[(state.have & 7) as usize] = byte;
                state.have += 1;
                consume(state, offset, 1);
                if u32::from(state.have) < want {
                    return Step::Continue;
                }
            }
            state.have = 0;
            field(state, phase);
        }
    }
    if state.phase == DONE || state.phase == MALFORMED {
        Step::Done
    } else {
        Step::Continue
    }
}

/// Reads a `want`-byte field into `acc` in one load.
#[inline(always)]
fn read_field(skb: &SkBuff, state: &mut InspectState, offset: u32, want: u32) -> Result<(), ()> {
    let at = offset as usize;
    match want {
        1 => state.acc[0] = skb.load::<u8>(at).map_err(|_| ())?,
        2 => {
            let bytes: [u8; 2] = skb.load(at).map_err(|_| ())?;
            state.acc[..2].copy_from_slice(&bytes);
        }
        4 => {
            let bytes: [u8; 4] = skb.load(at).map_err(|_| ())?;
            state.acc[..4].copy_from_slice(&bytes);
        }
        5 => {
            let bytes: [u8; 5] = skb.load(at).map_err(|_| ())?;
            state.acc[..5].copy_from_slice(&bytes);
        }
        _ => return Err(()),
    }
    Ok(())
}

/// Reads (part of) a record header.
#[inline(always)]
fn record_header(skb: &SkBuff, state: &mut InspectState, offset: &mut u32) -> Step {
    let Ok(byte) = skb.load::<u8>(*offset as usize) else {
        return malformed(state);
    };
    state.record_header[(state.record_have % 5) as usize] = byte;
    state.record_have += 1;
    *offset += 1;
    if state.record_have < 5 {
        return Step::Continue;
    }
    state.record_have = 0;
    let header = state.record_header;
    let len = u32::from(u16::from_be_bytes([header[3], header[4]]));
    // Only handshake records until the ClientHello is over; version 3.x.
    if header[0] != CONTENT_HANDSHAKE || header[1] != 3 || len == 0 || len > MAX_RECORD_LEN {
        return malformed(state);
    }
    state.record_left = len;
    Step::Continue
}

/// Takes `n` bytes of the current record.
#[inline(always)]
fn consume(state: &mut InspectState, offset: &mut u32, n: u32) {
    *offset += n;
    state.record_left -= n;
    state.hello_left = state.hello_left.saturating_sub(n);
    if state.in_extensions != 0 {
        state.exts_left = state.exts_left.saturating_sub(n);
    }
}

/// Moves to `phase`; the extensions block ends when its bytes are used up,
/// and a hello without one ends after its compression methods.
#[inline(always)]
fn enter(state: &mut InspectState, phase: u8) {
    state.phase = phase;
    if (phase == EXTENSION_HEADER && state.exts_left == 0)
        || (phase == EXTENSIONS_LEN && state.hello_left == 0)
    {
        state.phase = DONE;
    }
}

fn malformed(state: &mut InspectState) -> Step {
    state.phase = MALFORMED;
    Step::Done
}

/// A field of `phase` is complete in `acc`.
#[inline(always)]
fn field(state: &mut InspectState, phase: u8) {
    let acc = state.acc;
    let u16_at = |i: usize| u32::from(u16::from_be_bytes([acc[i], acc[i + 1]]));
    match phase {
        HANDSHAKE_HEADER => {
            let len = (u32::from(acc[1]) << 16) | u16_at(2);
            if acc[0] != HANDSHAKE_CLIENT_HELLO
                || !(FIXED_FIELDS_LEN..=MAX_STREAM_BYTES).contains(&len)
            {
                state.phase = MALFORMED;
                return;
            }
            // Every field is read within the message: a server reads no
            // further, so neither may the name we check come from further.
            state.hello_left = len;
            skip(state, FIXED_FIELDS_LEN, SESSION_ID_LEN);
        }
        SESSION_ID_LEN => {
            if acc[0] > 32 {
                state.phase = MALFORMED;
                return;
            }
            skip(state, u32::from(acc[0]), CIPHER_SUITES_LEN);
        }
        CIPHER_SUITES_LEN => skip(state, u16_at(0), COMPRESSION_LEN),
        COMPRESSION_LEN => skip(state, u32::from(acc[0]), EXTENSIONS_LEN),
        EXTENSIONS_LEN => {
            // The extensions end the message, exactly.
            if u16_at(0) != state.hello_left {
                state.phase = MALFORMED;
                return;
            }
            state.exts_left = u16_at(0);
            state.in_extensions = 1;
            enter(state, EXTENSION_HEADER);
        }
        EXTENSION_HEADER => {
            let kind = u16_at(0) as u16;
            let len = u16_at(2);
            // The header's own 4 bytes are already counted off.
            if len > state.exts_left {
                state.phase = MALFORMED;
                return;
            }
            match kind {
                EXTENSION_SERVER_NAME => {
                    // A second server_name extension could name another host.
                    if state.name_len != 0 || len < 5 {
                        state.phase = MALFORMED;
                        return;
                    }
                    state.ext_left = len - 5;
                    enter(state, SERVER_NAME_HEADER);
                }
                EXTENSION_ECH => {
                    state.ech = 1;
                    skip(state, len, EXTENSION_HEADER);
                }
                _ => skip(state, len, EXTENSION_HEADER),
            }
        }
        SERVER_NAME_HEADER => {
            // list length (2), name type (1), name length (2). The list
            // must be exactly one host name filling the extension: servers
            // differ on what they make of a second entry or trailing bytes
            // (first, last, refused), so nothing but the plain form passes.
            let list_len = u16_at(0);
            let name_len = u16_at(3);
            if acc[2] != NAME_TYPE_HOST
                || name_len == 0
                || name_len > 255
                || name_len != state.ext_left
                || list_len != name_len + 3
            {
                state.phase = MALFORMED;
                return;
            }
            state.ext_left -= name_len;
            state.need = name_len;
            enter(state, SERVER_NAME);
        }
        _ => state.phase = MALFORMED,
    }
}

/// Skips `n` bytes, then reads `after`.
#[inline(always)]
fn skip(state: &mut InspectState, n: u32, after: u8) {
    if n > state.hello_left {
        state.phase = MALFORMED;
    } else if n == 0 {
        enter(state, after);
    } else {
        state.need = n;
        state.after = after;
        state.phase = SKIP;
    }
}

/// What the parsing of a segment amounts to. `stopped_early`: the parser
/// stopped before the segment's end without finishing (out of steps).
#[inline(always)]
pub fn outcome(state: &InspectState, port: u16, stopped_early: bool) -> Outcome {
    match state.phase {
        MALFORMED => Outcome::Refused(DropReason::TlsMalformed),
        DONE => {
            if state.name_len == 0 {
                Outcome::Refused(DropReason::SniMissing)
            } else if state.ech != 0 && state.flags & inspect::ECH_DENY != 0 {
                Outcome::Refused(DropReason::EchDenied)
            } else {
                inspection::name_verdict(state, port, DropReason::SniDenied)
            }
        }
        _ if stopped_early => Outcome::Refused(DropReason::TlsMalformed),
        _ => Outcome::Pending,
    }
}
