//! The HTTP check on the real programs (BPF_PROG_TEST_RUN): on a port a name
//! rule marks as HTTP (80 unless it says otherwise), the first request of a
//! connection must be in origin form with exactly one `Host`, naming a
//! server the policy allows on that port. Through the TC program, which
//! keeps the parser state per flow across test runs, and the cgroup hook
//! with whole requests.

mod common;

use common::{stream::*, *};
use openclaw_egress::{
    datapath::{Hooks, frames, frames::tls::http_request},
    policy::{Mode, Policy},
};
use openclaw_egress_common::DropReason;

/// api.trusted.test on 80/tcp (HTTP checked: the default) and 443/tcp.
fn http_policy() -> Policy {
    policy_with(
        Mode::Enforce,
        vec![fqdn("api.trusted.test", vec![tcp(80), tcp(443)])],
    )
}

fn tc() -> Loaded {
    load_with(&http_policy(), Hooks::INTERFACES, in_ten_minutes())
}

/// The request `head` on a fresh connection to port 80, cut at `cuts`.
fn request(loaded: &Loaded, port: u16, head: &[u8], cuts: &[usize]) -> Result<(), DropReason> {
    judge_on(loaded, port, TRUSTED, 80, head, cuts)
}

#[test]
fn a_request_for_an_allowed_host_passes_and_others_do_not() {
    let loaded = tc();
    let allowed = http_request("api.trusted.test", "/v1/models");
    assert_eq!(request(&loaded, 1000, &allowed, &[]), Ok(()));
    let other = http_request("evil.test", "/");
    assert_eq!(
        request(&loaded, 1001, &other, &[]),
        Err(DropReason::HostDenied)
    );
    // Case does not matter; a port after the name is read past.
    for (port, host) in [
        (1002, "API.Trusted.Test"),
        (1003, "api.trusted.test:80"),
        (1004, "api.trusted.test:8080"),
        (1005, "api.trusted.test."),
    ] {
        let head = http_request(host, "/");
        assert_eq!(request(&loaded, port, &head, &[]), Ok(()), "{host}");
    }
    for (port, host) in [
        (1010, "api.trusted.test:80x"),
        (1011, "api.trusted.test:evil.test"),
        (1012, "evil.test:80"),
        (1013, "api.trusted.test.evil.test"),
        (1014, "[::1]:80"),
    ] {
        let head = http_request(host, "/");
        assert_eq!(
            request(&loaded, port, &head, &[]),
            Err(DropReason::HostDenied),
            "{host}"
        );
    }
}

#[test]
fn a_request_split_anywhere_is_judged_whole() {
    let loaded = tc();
    let allowed = http_request("api.trusted.test", "/a/long/path?with=query");
    let denied = http_request("evil.test", "/a/long/path?with=query");
    let mut port = 2000;
    for cut in 1..allowed.len() {
        port += 1;
        assert_eq!(
            request(&loaded, port, &allowed, &[cut]),
            Ok(()),
            "cut at {cut}"
        );
    }
    for cut in 1..denied.len() {
        port += 1;
        assert_eq!(
            request(&loaded, port, &denied, &[cut]),
            Err(DropReason::HostDenied),
            "cut at {cut}"
        );
    }
    // A byte at a time.
    let bytes: Vec<usize> = (1..allowed.len()).collect();
    assert_eq!(request(&loaded, 3000, &allowed, &bytes), Ok(()));
}

#[test]
fn heads_a_server_could_read_otherwise_are_refused() {
    let loaded = tc();
    let cases: [(&str, &[u8]); 11] = [
        ("no Host", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
        (
            "two Hosts (the second elsewhere)",
            b"GET / HTTP/1.1\r\nHost: api.trusted.test\r\nhost: evil.test\r\n\r\n",
        ),
        (
            "two Hosts alike",
            b"GET / HTTP/1.1\r\nHost: api.trusted.test\r\nHOST: api.trusted.test\r\n\r\n",
        ),
        (
            "absolute form naming another server",
            b"GET http://evil.test/ HTTP/1.1\r\nHost: api.trusted.test\r\n\r\n",
        ),
        (
            "CONNECT",
            b"CONNECT evil.test:443 HTTP/1.1\r\nHost: api.trusted.test\r\n\r\n",
        ),
        ("an empty Host", b"GET / HTTP/1.1\r\nHost: \r\n\r\n"),
        (
            "a Host folded onto the next line",
            b"GET / HTTP/1.1\r\nHost:\r\n evil.test\r\n\r\n",
        ),
        (
            "a lowercase method",
            b"get / HTTP/1.1\r\nHost: api.trusted.test\r\n\r\n",
        ),
        (
            "a TLS ClientHello",
            b"\x16\x03\x01\x00\x30\x01\x00\x00\x2c\x03\x03",
        ),
        ("nothing like HTTP", &[0u8; 64]),
        (
            "a CR not followed by LF ending the head",
            b"GET / HTTP/1.1\r\nHost: api.trusted.test\r\n\rX\r\n",
        ),
    ];
    let mut port = 4000;
    for (what, head) in cases {
        port += 1;
        let verdict = request(&loaded, port, head, &[]);
        // A head cut short waits for more, which never comes: it must not
        // be allowed, and bytes after it must not pass.
        let allowed_for_good = verdict.is_ok() && {
            port += 1;
            let mut connection = Connection::open(&loaded, port, TRUSTED, 80);
            connection.send(head);
            connection.send(&[b'x'; 64]) == TC_NEXT && connection.send(&[b'x'; 64]) == TC_NEXT
        };
        assert!(!allowed_for_good, "{what}: the connection went through");
        assert!(verdict.is_err(), "{what}: {verdict:?}");
    }
}

#[test]
fn a_head_longer_than_the_bound_is_refused() {
    let loaded = tc();
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..400 {
        head.extend(format!("X-Filler-{i}: {}\r\n", "y".repeat(40)).as_bytes());
    }
    head.extend(b"Host: api.trusted.test\r\n\r\n");
    assert!(head.len() > 16 * 1024);
    let cuts: Vec<usize> = (1400..head.len()).step_by(1400).collect();
    assert_eq!(
        request(&loaded, 1000, &head, &cuts),
        Err(DropReason::HostDenied)
    );
}

#[test]
fn only_the_ports_a_rule_marks_as_http_are_checked() {
    // Port 8080 is allowed but not marked as HTTP: not inspected.
    let mut policy = http_policy();
    policy.egress[0].ports.push(tcp(8080));
    let loaded = load_with(&policy, Hooks::INTERFACES, in_ten_minutes());
    let other = http_request("evil.test", "/");
    assert_eq!(judge_on(&loaded, 1000, TRUSTED, 8080, &other, &[]), Ok(()));
    assert_eq!(
        judge_on(&loaded, 1001, TRUSTED, 80, &other, &[]),
        Err(DropReason::HostDenied)
    );
    // And a rule may mark 8080 too.
    policy.egress[0].inspection.http_ports.push(8080);
    let marked = load_with(&policy, Hooks::INTERFACES, in_ten_minutes());
    assert_eq!(
        judge_on(&marked, 1002, TRUSTED, 8080, &other, &[]),
        Err(DropReason::HostDenied)
    );
}

#[test]
fn the_cgroup_hook_checks_a_whole_request_too() {
    let loaded = load_with(&http_policy(), Hooks::CGROUP, in_ten_minutes());
    let segment = |host: &str, port: u16| {
        frames::tcp_data(AGENT, port, TRUSTED, 80, &http_request(host, "/"))
    };
    assert_eq!(loaded.run(&segment("api.trusted.test", 1000)), PASS);
    assert_eq!(loaded.run(&segment("evil.test", 1001)), DROP);
    assert_eq!(loaded.dropped(DropReason::HostDenied), 1);
}
