//! A ClientHello split across segments and records is judged whole; gaps and oversized prefixes are refused.

use openclaw_egress::datapath::frames::tls::ClientHello;
use openclaw_egress_common::DropReason;

use super::{
    common::{stream::*, *},
    tc, tls_policy,
};

#[test]
fn a_hello_split_anywhere_in_two_segments_is_judged_whole() {
    let loaded = tc(&tls_policy());
    for server_name_last in [false, true] {
        let allowed = ClientHello {
            server_name_last,
            ..ClientHello::to("api.trusted.test")
        }
        .bytes();
        let denied = ClientHello {
            server_name_last,
            ..ClientHello::to("evil.test")
        }
        .bytes();
        assert_eq!(allowed.len(), denied.len() + 7);
        let mut port = if server_name_last { 3000 } else { 2000 };
        for cut in (1..denied.len()).step_by(7) {
            port += 1;
            assert_eq!(
                judge(&loaded, port, &allowed, &[cut]),
                Ok(()),
                "allowed, cut at {cut} (name last: {server_name_last})"
            );
            port += 1;
            assert_eq!(
                judge(&loaded, port, &denied, &[cut]),
                Err(DropReason::SniDenied),
                "denied, cut at {cut} (name last: {server_name_last})"
            );
        }
    }
}

#[test]
fn a_hello_padded_past_one_segment_in_many_writes_is_judged_whole() {
    let loaded = tc(&tls_policy());
    let padded = |name: &str| {
        ClientHello {
            padding: 3000,
            server_name_last: true,
            ..ClientHello::to(name)
        }
        .bytes()
    };
    let allowed = padded("api.trusted.test");
    assert!(allowed.len() > 4000);
    let cuts: Vec<usize> = (1..allowed.len()).step_by(1400).collect();
    assert_eq!(judge(&loaded, 1000, &allowed, &cuts), Ok(()));
    let denied = padded("evil.test");
    assert_eq!(
        judge(&loaded, 1001, &denied, &cuts),
        Err(DropReason::SniDenied)
    );
    // Written a few bytes at a time.
    let small: Vec<usize> = (1..allowed.len()).step_by(97).collect();
    assert_eq!(judge(&loaded, 1002, &allowed, &small), Ok(()));
}

#[test]
fn a_hello_in_many_records_or_with_a_record_header_split_off_is_judged_whole() {
    let loaded = tc(&tls_policy());
    let hello = ClientHello::to("api.trusted.test");
    // One-byte records, the whole handshake.
    // (in segments: a test run takes at most a page)
    let tiny = hello.in_records(&vec![1; hello.handshake().len()]);
    let segments: Vec<usize> = (1200..tiny.len()).step_by(1200).collect();
    assert_eq!(judge(&loaded, 1000, &tiny, &segments), Ok(()));
    // The header of the second record in one segment, its body in the next.
    let two = hello.in_records(&[100]);
    assert_eq!(judge(&loaded, 1001, &two, &[105, 108, 110]), Ok(()));
    let denied = ClientHello::to("evil.test").in_records(&[3, 50]);
    assert_eq!(
        judge(&loaded, 1002, &denied, &[4, 9, 60]),
        Err(DropReason::SniDenied)
    );
}

#[test]
fn gaps_are_refused_and_retransmissions_are_not() {
    let loaded = tc(&tls_policy());
    let hello = ClientHello::to("api.trusted.test").bytes();
    // A retransmission of the first part, then the rest.
    let mut connection = Connection::open(&loaded, 1000, TRUSTED, 443);
    assert_eq!(connection.send(&hello[..500]), TC_NEXT);
    assert_eq!(connection.send_at(1, &hello[..500]), TC_NEXT);
    assert_eq!(connection.send_at(1, &hello[..300]), TC_NEXT);
    assert_eq!(connection.send(&hello[500..]), TC_NEXT);
    assert_eq!(connection.send(b"application data"), TC_NEXT);

    // A segment beyond the next byte: the bytes between were never seen.
    let mut gap = Connection::open(&loaded, 1001, TRUSTED, 443);
    assert_eq!(gap.send(&hello[..500]), TC_NEXT);
    let verdict = gap.send_at(1 + 600, &hello[600..]);
    assert_eq!(verdict_name(verdict), REFUSED);
    assert_eq!(loaded.dropped(DropReason::TlsMalformed), 1);
    // Refused once: its retransmissions are not counted again.
    gap.send_at(1 + 600, &hello[600..]);
    assert_eq!(loaded.dropped(DropReason::TlsMalformed), 1);
}

#[test]
fn more_than_sixteen_kilobytes_before_the_name_is_refused() {
    let loaded = tc(&tls_policy());
    let huge = ClientHello {
        padding: 17_000,
        server_name_last: true,
        ..ClientHello::to("api.trusted.test")
    }
    .bytes();
    let cuts: Vec<usize> = (1..huge.len()).step_by(1400).collect();
    assert_eq!(
        judge(&loaded, 1000, &huge, &cuts),
        Err(DropReason::TlsMalformed)
    );
}
