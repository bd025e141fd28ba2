//! Which server names pass: case, trailing dots, patterns, ECH, CIDR rules and the cgroup hook.

use std::net::IpAddr;

use openclaw_egress::{
    datapath::{Hooks, frames, frames::tls::ClientHello},
    policy::{Ech, Mode, WildcardDepth},
};
use openclaw_egress_common::DropReason;

use super::{
    common::{stream::*, *},
    tc, tls_policy,
};

#[test]
fn the_allowed_server_name_passes_and_others_on_the_same_address_do_not() {
    let mut loaded = tc(&tls_policy());
    let allowed = ClientHello::to("api.trusted.test").bytes();
    assert_eq!(judge(&loaded, 1000, &allowed, &[]), Ok(()));
    let other = ClientHello::to("evil.test").bytes();
    assert_eq!(
        judge(&loaded, 1001, &other, &[]),
        Err(DropReason::SniDenied)
    );
    // The event names the server asked for.
    let event = loaded
        .events()
        .into_iter()
        .find(|e| e.reason == DropReason::SniDenied as u8)
        .expect("an sni_denied event");
    let name = &event.dns_name[..usize::from(event.dns_name_len)];
    assert_eq!(name, b"evil.test");
    assert_eq!(event.src_port, 1001);
}

#[test]
fn names_match_without_case_and_with_a_trailing_dot() {
    let loaded = tc(&tls_policy());
    for (port, name) in [(1000, "API.Trusted.TEST"), (1001, "api.trusted.test.")] {
        let hello = ClientHello::to(name).bytes();
        assert_eq!(judge(&loaded, port, &hello, &[]), Ok(()), "{name}");
    }
    for (port, name) in [
        (1002, "api.trusted.test.evil"),
        (1003, "xapi.trusted.test"),
        (1004, "trusted.test"),
        (1005, "api.trusted.test.."),
        // A server name is no Host header: no port after it.
        (1006, "api.trusted.test:443"),
        (1007, ".api.trusted.test"),
    ] {
        let hello = ClientHello::to(name).bytes();
        assert!(judge(&loaded, port, &hello, &[]).is_err(), "{name}");
    }
}

#[test]
fn a_hello_without_a_name_or_bytes_that_are_no_hello_are_refused() {
    let loaded = tc(&tls_policy());
    let anonymous = ClientHello::default().bytes();
    assert_eq!(
        judge(&loaded, 1000, &anonymous, &[]),
        Err(DropReason::SniMissing)
    );
    let http = frames::tls::http_request("api.trusted.test", "/");
    assert_eq!(
        judge(&loaded, 1001, &http, &[]),
        Err(DropReason::TlsMalformed)
    );
    assert_eq!(
        judge(&loaded, 1002, &[0u8; 600], &[]),
        Err(DropReason::TlsMalformed)
    );
}

#[test]
fn patterns_match_as_in_dns() {
    let policy = policy_with(
        Mode::Enforce,
        vec![
            fqdn("api.trusted.test", vec![tcp(443)]),
            pattern(WildcardDepth::OneLabel, "one.test", vec![tcp(443)]),
            pattern(WildcardDepth::AnyDepth, "any.test", vec![tcp(443)]),
        ],
    );
    let loaded = tc(&policy);
    let mut port = 1000;
    let mut judge_name = |name: &str| {
        port += 1;
        judge(&loaded, port, &ClientHello::to(name).bytes(), &[])
    };
    assert_eq!(judge_name("a.one.test"), Ok(()));
    assert!(judge_name("a.b.one.test").is_err());
    assert!(judge_name("one.test").is_err());
    assert_eq!(judge_name("a.any.test"), Ok(()));
    assert_eq!(judge_name("a.b.c.any.test"), Ok(()));
    assert!(judge_name("any.test").is_err());
}

#[test]
fn ech_is_refused_where_the_rule_says_so() {
    let mut policy = tls_policy();
    policy.egress[0].inspection.ech = Ech::Deny;
    let loaded = tc(&policy);
    let plain = ClientHello::to("api.trusted.test").bytes();
    assert_eq!(judge(&loaded, 1000, &plain, &[]), Ok(()));
    let ech = ClientHello {
        ech: true,
        ..ClientHello::to("api.trusted.test")
    }
    .bytes();
    assert_eq!(judge(&loaded, 1001, &ech, &[]), Err(DropReason::EchDenied));
    // Without `ech: deny`, the outer name is what is checked.
    let lenient = tc(&tls_policy());
    assert_eq!(judge(&lenient, 1002, &ech, &[]), Ok(()));
}

#[test]
fn connections_admitted_by_a_cidr_rule_are_not_inspected() {
    let loaded = tc(&tls_policy());
    let db: IpAddr = "198.51.100.9".parse().unwrap();
    let mut connection = Connection::open(&loaded, 1000, db, 5432);
    assert_eq!(connection.send(&[0u8; 64]), TC_NEXT);
    assert_eq!(connection.send(b"anything at all"), TC_NEXT);
}

#[test]
fn the_cgroup_hook_checks_a_whole_hello_too() {
    let loaded = load_with(&tls_policy(), Hooks::CGROUP, in_ten_minutes());
    let segment = |name: &str, port: u16| {
        frames::tcp_data(AGENT, port, TRUSTED, 443, &ClientHello::to(name).bytes())
    };
    assert_eq!(loaded.run(&segment("api.trusted.test", 1000)), PASS);
    assert_eq!(loaded.run(&segment("evil.test", 1001)), DROP);
    assert_eq!(loaded.dropped(DropReason::SniDenied), 1);
}
