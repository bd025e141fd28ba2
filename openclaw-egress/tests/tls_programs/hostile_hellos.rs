//! Hostile, edited ClientHellos never open the gate.

use openclaw_egress::datapath::{frames, frames::tls::ClientHello};
use openclaw_egress_common::DropReason;

use super::{
    common::{stream::*, *},
    tc, tls_policy,
};

/// A ClientHello with `edit` applied to its bytes (one record).
fn edited(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = ClientHello {
        key_share: 32,
        ..ClientHello::to("api.trusted.test")
    }
    .bytes();
    edit(&mut bytes);
    bytes
}

/// Where the server name extension starts in an [`edited`] hello (SNI is
/// the first extension).
fn sni_extension_at(bytes: &[u8]) -> usize {
    // record (5) + handshake header (4) + version (2) + random (32)
    let mut at = 5 + 4 + 2 + 32;
    at += 1 + usize::from(bytes[at]);
    at += 2 + usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
    at += 1 + usize::from(bytes[at]);
    at + 2
}

#[test]
fn hostile_hellos_never_open_the_gate() {
    let loaded = tc(&tls_policy());
    let set_u16 = |bytes: &mut Vec<u8>, at: usize, value: u16| {
        bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a record longer than what follows",
            edited(|b| set_u16(b, 3, 0xffff)),
        ),
        ("a record of length 0", edited(|b| set_u16(b, 3, 0))),
        ("a record not of handshakes", edited(|b| b[0] = 23)),
        ("a handshake not a ClientHello", edited(|b| b[5] = 2)),
        (
            "a handshake longer than the record",
            edited(|b| b[6] = 0x7f),
        ),
        (
            "a session id longer than the hello",
            edited(|b| b[5 + 4 + 34] = 0xff),
        ),
        (
            "extensions longer than the hello",
            edited(|b| {
                let at = sni_extension_at(b) - 2;
                set_u16(b, at, 0xfff0);
            }),
        ),
        (
            "a name list longer than its extension",
            edited(|b| {
                let at = sni_extension_at(b) + 4;
                set_u16(b, at, 0x0fff);
            }),
        ),
        (
            "a name longer than its list",
            edited(|b| {
                let at = sni_extension_at(b) + 7;
                set_u16(b, at, 0x00ff);
            }),
        ),
        (
            "a name of length 0",
            edited(|b| {
                let at = sni_extension_at(b) + 7;
                set_u16(b, at, 0);
            }),
        ),
        (
            "a name with a NUL byte",
            edited(|b| {
                let at = sni_extension_at(b) + 9 + 3;
                b[at] = 0;
            }),
        ),
        (
            "a name with a byte above ASCII",
            edited(|b| {
                let at = sni_extension_at(b) + 9 + 3;
                b[at] = 0xc3;
            }),
        ),
        (
            "a name of another type than host_name",
            edited(|b| {
                let at = sni_extension_at(b) + 6;
                b[at] = 1;
            }),
        ),
        (
            "cut in the middle of the name",
            edited(|b| b.truncate(sni_extension_at(b) + 12)),
        ),
        ("the header alone", edited(|b| b.truncate(5))),
    ];
    let mut port = 3000;
    for (what, bytes) in &cases {
        port += 1;
        let verdict = judge(&loaded, port, bytes, &[]);
        // (A hello cut short is not refused yet: it waits for the rest,
        // which never comes; what matters is that nothing was allowed.)
        let allowed_for_good = verdict.is_ok() && {
            port += 1;
            let mut connection = Connection::open(&loaded, port, TRUSTED, 443);
            connection.send(bytes);
            // Data that is not the rest of a hello must not pass either.
            connection.send(&[0x17; 64]) == TC_NEXT && connection.send(&[0x17; 64]) == TC_NEXT
        };
        assert!(!allowed_for_good, "{what}: the connection went through");
    }
    // A long name: 300 bytes.
    let long = ClientHello::to(&format!("{}.trusted.test", "a".repeat(290))).bytes();
    assert!(judge(&loaded, 4000, &long, &[]).is_err());
    // Thousands of empty extensions before the name.
    let many = ClientHello {
        server_name_last: true,
        ..ClientHello::to("api.trusted.test")
    };
    let mut handshake = many.handshake();
    let extensions_at = 4 + 2 + 32 + 1 + 32 + 2 + 6 + 2;
    let extra: Vec<u8> = std::iter::repeat_n([0xfa, 0xfa, 0, 0], 3000)
        .flatten()
        .collect();
    handshake.splice(extensions_at + 2..extensions_at + 2, extra.iter().copied());
    let ext_len = u16::from_be_bytes([handshake[extensions_at], handshake[extensions_at + 1]]);
    handshake[extensions_at..extensions_at + 2]
        .copy_from_slice(&(ext_len + extra.len() as u16).to_be_bytes());
    let body_len = handshake.len() - 4;
    handshake[1..4].copy_from_slice(&(body_len as u32).to_be_bytes()[1..]);
    let stream = frames::tls::records(&handshake, &[16_384]);
    let cuts: Vec<usize> = (1..stream.len()).step_by(1400).collect();
    let verdict = judge(&loaded, 4001, &stream, &cuts);
    // Allowed (it is a valid hello) or refused for its size; never stuck open.
    assert!(
        verdict.is_ok() || verdict == Err(DropReason::TlsMalformed),
        "{verdict:?}"
    );
}
