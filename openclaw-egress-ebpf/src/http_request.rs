//! The HTTP request parser: one byte per step (see `inspection`), reading
//! the head of the first request of a connection for its `Host`.
//!
//! The request must be in origin form (`GET /path HTTP/1.1`): a server
//! takes the authority of an absolute-form target (`GET http://other/`)
//! over the `Host` header, and `CONNECT` names its own. The head must have
//! exactly one `Host`: servers differ on which of two they use. Only the
//! first request is checked: later requests on a kept-alive connection are
//! not parsed (that would mean following every message's length through the
//! stream). The README says so.

use aya_ebpf::programs::sk_buff::SkBuff;
use openclaw_egress_common::{DropReason, dns::DNS_NAME_KEY_LEN};

use crate::inspection::{self, InspectState, Outcome, Step};

// Phases.
const REQUEST_LINE: u8 = 0;
/// Inside a header line, until its end.
const IN_LINE: u8 = 1;
/// At the start of a header line: `have` bytes of "host:" matched so far.
const LINE_START: u8 = 2;
/// After "host:", before the value.
const BEFORE_VALUE: u8 = 3;
const VALUE: u8 = 4;
/// After a CR at the start of a line: the head ends with LF.
const HEAD_END: u8 = 5;
const DONE: u8 = 6;
/// Not an origin-form HTTP request, or a head without exactly one Host.
const REFUSED: u8 = 7;
/// After the name in the Host value: `:` and a port, digits only.
const HOST_PORT: u8 = 8;

// Where the request line is (`have` in REQUEST_LINE).
const METHOD_START: u8 = 0;
const METHOD: u8 = 1;
const TARGET_START: u8 = 2;
const REST_OF_LINE: u8 = 3;

const HOST: &[u8; 5] = b"host:";

#[inline(always)]
pub fn step(skb: &SkBuff, state: &mut InspectState, offset: &mut u32, _end: u32) -> Step {
    let Ok(byte) = skb.load::<u8>(*offset as usize) else {
        state.phase = REFUSED;
        return Step::Done;
    };
    *offset += 1;
    match state.phase {
        REQUEST_LINE => request_line(state, byte),
        IN_LINE => {
            if byte == b'\n' {
                line_start(state);
            }
        }
        LINE_START => {
            let at = state.have as usize;
            if at == 0 && byte == b'\r' {
                state.phase = HEAD_END;
            } else if at == 0 && byte == b'\n' {
                head_end(state);
            } else if at < HOST.len() && byte.to_ascii_lowercase() == HOST[at] {
                state.have += 1;
                if state.have as usize == HOST.len() {
                    // A second Host: which one the server uses varies.
                    state.phase = if state.name_len == 0 {
                        BEFORE_VALUE
                    } else {
                        REFUSED
                    };
                }
            } else if byte == b'\n' {
                line_start(state);
            } else {
                state.phase = IN_LINE;
            }
        }
        BEFORE_VALUE => {
            if byte != b' ' && byte != b'\t' {
                state.phase = VALUE;
                value_byte(state, byte);
            }
        }
        VALUE => value_byte(state, byte),
        HOST_PORT => {
            if !byte.is_ascii_digit() {
                value_end(state, byte);
            }
        }
        HEAD_END => {
            if byte == b'\n' {
                head_end(state);
            } else {
                state.phase = REFUSED;
            }
        }
        _ => {}
    }
    if state.phase == DONE || state.phase == REFUSED {
        Step::Done
    } else {
        Step::Continue
    }
}

/// `METHOD SP /target SP version CRLF`, checked up to the target's first byte.
#[inline(always)]
fn request_line(state: &mut InspectState, byte: u8) {
    match state.have {
        METHOD_START | METHOD if byte.is_ascii_uppercase() => state.have = METHOD,
        METHOD if byte == b' ' => state.have = TARGET_START,
        TARGET_START if byte == b'/' || byte == b'*' => state.have = REST_OF_LINE,
        REST_OF_LINE => {
            if byte == b'\n' {
                line_start(state);
            }
        }
        _ => state.phase = REFUSED,
    }
}

#[inline(always)]
fn line_start(state: &mut InspectState) {
    state.phase = LINE_START;
    state.have = 0;
}

/// The empty line ending the head: done if it had a Host.
#[inline(always)]
fn head_end(state: &mut InspectState) {
    state.phase = if state.name_len == 0 { REFUSED } else { DONE };
}

#[inline(always)]
fn value_byte(state: &mut InspectState, byte: u8) {
    if byte == b':' && state.name_len != 0 {
        // `Host: name:port` (a client names a port other than the
        // scheme's): the name is what is checked.
        state.phase = HOST_PORT;
        return;
    }
    if byte == b'\r' || byte == b'\n' || byte == b' ' || byte == b'\t' {
        value_end(state, byte);
        return;
    }
    let at = state.name_len as usize;
    if at >= DNS_NAME_KEY_LEN - 1 {
        state.phase = REFUSED;
        return;
    }
    state.name[at] = byte;
    state.name_len += 1;
}

/// The byte after the Host value: the end of the line (or whitespace
/// before it); anything else makes the value no host name.
#[inline(always)]
fn value_end(state: &mut InspectState, byte: u8) {
    if state.name_len == 0 {
        state.phase = REFUSED;
    } else if byte == b'\n' {
        line_start(state);
    } else if byte == b'\r' || byte == b' ' || byte == b'\t' {
        state.phase = IN_LINE;
    } else {
        state.phase = REFUSED;
    }
}

/// What the parsing of a segment amounts to (see `tls_hello::outcome`).
#[inline(always)]
pub fn outcome(state: &InspectState, port: u16, stopped_early: bool) -> Outcome {
    match state.phase {
        REFUSED => Outcome::Refused(DropReason::HostDenied),
        DONE => inspection::name_verdict(state, port, DropReason::HostDenied),
        _ if stopped_early => Outcome::Refused(DropReason::HostDenied),
        _ => Outcome::Pending,
    }
}
