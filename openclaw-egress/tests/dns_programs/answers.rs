//! Address learning on ingress: what answers open, what they must not teach, and malformed answers.

use std::time::Duration;

use openclaw_egress::{
    clock,
    datapath::frames::{
        self,
        dns::{self, Record, TYPE_A},
    },
    policy::Mode,
};
use openclaw_egress_common::{dns::DnsStat, proto};

use super::{common::*, dns_policy, ip, loaded};

#[test]
fn answers_to_allowed_questions_open_their_addresses_before_delivery() {
    let loaded = loaded(Mode::Enforce);
    let answer = dns::response(
        7,
        "api.github.com",
        TYPE_A,
        &[
            Record::Address {
                ip: ip("198.51.100.7"),
                ttl: 300,
            },
            Record::Address {
                ip: ip("198.51.100.8"),
                ttl: 10,
            },
            Record::Address {
                ip: ip("2001:db8:7::7"),
                ttl: 300,
            },
        ],
    );
    // Before the answer the address is closed...
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.100.7"), 443)),
        DROP
    );
    assert_eq!(loaded.answer(&answer), PASS);
    // ...and the answer opened it (and only on the rule's port).
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.100.7"), 443)),
        PASS
    );
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT6, 1, ip("2001:db8:7::7"), 443)),
        PASS
    );
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.100.7"), 80)),
        DROP
    );
    assert_eq!(loaded.dns_stat(DnsStat::AddressesLearned), 3);
    assert_eq!(loaded.dns_stat(DnsStat::AnswersParsed), 1);

    // Expiry = max(TTL, minTTL): 300 s for the first, minTTL (60 s) for the 10 s one.
    let now = clock::monotonic_ns();
    let expiry = |addr: &str| {
        let value = loaded.allowed(ip(addr), proto::TCP, 443).expect("learned");
        assert_eq!(value.rule, 0);
        Duration::from_nanos(value.expires_at_ns - now)
    };
    let long = expiry("198.51.100.7");
    assert!(
        long > Duration::from_secs(290) && long <= Duration::from_secs(300),
        "{long:?}"
    );
    let short = expiry("198.51.100.8");
    assert!(
        short > Duration::from_secs(50) && short <= Duration::from_secs(60),
        "{short:?}"
    );
}

#[test]
fn wildcards_learn_through_answers_alone() {
    let loaded = loaded(Mode::Enforce);
    let answer = dns::response(
        7,
        "mirror.pkg.test",
        TYPE_A,
        &[Record::Address {
            ip: ip("198.51.100.9"),
            ttl: 120,
        }],
    );
    assert_eq!(loaded.answer(&answer), PASS);
    // Both ports of the pattern rule.
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.100.9"), 443)),
        PASS
    );
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.100.9"), 8443)),
        PASS
    );
    // `**.cdn.test` with a bare port: TCP and UDP.
    let deep = dns::response(
        8,
        "a.b.cdn.test",
        TYPE_A,
        &[Record::Address {
            ip: ip("198.51.100.10"),
            ttl: 120,
        }],
    );
    assert_eq!(loaded.answer(&deep), PASS);
    assert!(
        loaded
            .allowed(ip("198.51.100.10"), proto::TCP, 80)
            .is_some()
    );
    assert!(
        loaded
            .allowed(ip("198.51.100.10"), proto::UDP, 80)
            .is_some()
    );
}

#[test]
fn cname_chains_are_followed_to_their_addresses() {
    let loaded = loaded(Mode::Enforce);
    let answer = dns::response(
        7,
        "api.github.com",
        TYPE_A,
        &[
            Record::Cname {
                target: "github.map.fastly.example".into(),
                ttl: 300,
            },
            Record::Cname {
                target: "edge.fastly.example".into(),
                ttl: 300,
            },
            Record::Address {
                ip: ip("198.51.100.11"),
                ttl: 300,
            },
        ],
    );
    assert_eq!(loaded.answer(&answer), PASS);
    assert_eq!(
        loaded.run(&frames::tcp_syn(AGENT, 1, ip("198.51.100.11"), 443)),
        PASS
    );
}

#[test]
fn answers_that_must_not_teach_anything() {
    let loaded = loaded(Mode::Enforce);
    let record = |addr: &str| Record::Address {
        ip: ip(addr),
        ttl: 300,
    };
    // A question no rule allows.
    loaded.answer(&dns::response(
        7,
        "evil.example",
        TYPE_A,
        &[record("198.51.100.20")],
    ));
    // From a server that is not a resolver of the policy.
    let spoofed = dns::response(7, "api.github.com", TYPE_A, &[record("198.51.100.21")]);
    assert_eq!(
        loaded.run_ingress(&frames::udp(OTHER, 53, AGENT, 40000, &spoofed)),
        PASS
    );
    // From the resolver, but not from port 53.
    assert_eq!(
        loaded.run_ingress(&frames::udp(RESOLVER, 5353, AGENT, 40000, &spoofed)),
        PASS
    );
    // Rebinding: internal addresses are refused...
    loaded.answer(&dns::response(
        7,
        "api.github.com",
        TYPE_A,
        &[
            record("127.0.0.1"),
            record("169.254.169.254"),
            record("10.1.2.3"),
            record("fd00::1"),
        ],
    ));
    // ...unless a CIDR rule of the policy covers them.
    loaded.answer(&dns::response(
        7,
        "api.github.com",
        TYPE_A,
        &[record("10.0.5.5")],
    ));

    for addr in [
        "198.51.100.20",
        "198.51.100.21",
        "127.0.0.1",
        "169.254.169.254",
        "10.1.2.3",
        "fd00::1",
    ] {
        assert!(
            loaded.allowed(ip(addr), proto::TCP, 443).is_none(),
            "{addr} must not have been learned"
        );
    }
    assert!(loaded.allowed(ip("10.0.5.5"), proto::TCP, 443).is_some());
    assert_eq!(loaded.dns_stat(DnsStat::AddressesRefusedInternal), 4);
}

#[test]
fn a_name_learns_at_most_max_ips_per_name() {
    let mut policy = dns_policy(Mode::Enforce);
    policy.dns.max_ips_per_name = 2;
    let loaded = load(&policy, clock::monotonic_ns_after(Duration::from_secs(600)));
    let record = |addr: &str| Record::Address {
        ip: ip(addr),
        ttl: 300,
    };
    loaded.answer(&dns::response(
        7,
        "a.cdn.test",
        TYPE_A,
        &[
            record("198.51.100.31"),
            record("198.51.100.32"),
            record("198.51.100.33"),
        ],
    ));
    // A later answer cannot add more either, but repeating a known one is fine.
    loaded.answer(&dns::response(
        8,
        "a.cdn.test",
        TYPE_A,
        &[record("198.51.100.31"), record("198.51.100.34")],
    ));
    let learned: Vec<_> = [
        "198.51.100.31",
        "198.51.100.32",
        "198.51.100.33",
        "198.51.100.34",
    ]
    .into_iter()
    .filter(|addr| loaded.allowed(ip(addr), proto::TCP, 80).is_some())
    .collect();
    assert_eq!(learned, ["198.51.100.31", "198.51.100.32"]);
    assert_eq!(loaded.dns_stat(DnsStat::AddressesRefusedCap), 2);
    // Another name has its own budget.
    loaded.answer(&dns::response(
        9,
        "b.cdn.test",
        TYPE_A,
        &[record("198.51.100.35")],
    ));
    assert!(
        loaded
            .allowed(ip("198.51.100.35"), proto::TCP, 80)
            .is_some()
    );
}

#[test]
fn malformed_answers_teach_nothing_and_pass() {
    let loaded = loaded(Mode::Enforce);
    let good = dns::response(
        7,
        "api.github.com",
        TYPE_A,
        &[Record::Address {
            ip: ip("198.51.100.40"),
            ttl: 300,
        }],
    );
    let question_end = 12 + dns::name("api.github.com").len() + 4;
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // Owner name: a pointer loop is never followed, a label loop runs out.
    let mut owner_labels = good.clone();
    owner_labels.splice(question_end..question_end + 2, [0x3f; 2]);
    cases.push(("owner name of long labels", owner_labels));
    let mut reserved = good.clone();
    reserved[question_end] = 0x80;
    cases.push(("reserved label type", reserved));
    cases.push(("truncated rdata", good[..good.len() - 2].to_vec()));
    cases.push(("truncated record", good[..question_end + 5].to_vec()));
    let mut wrong_length = good.clone();
    let rdlength = question_end + 2 + 8;
    wrong_length[rdlength + 1] = 5;
    cases.push(("A record of 5 bytes", wrong_length));
    let mut not_in = good.clone();
    not_in[question_end + 5] = 3; // class CH
    cases.push(("class CH", not_in));
    let mut more_answers_than_records = good.clone();
    more_answers_than_records[7] = 200;
    cases.push(("answer count beyond the packet", more_answers_than_records));
    let mut question_pointer = good.clone();
    question_pointer.splice(12..12 + dns::name("api.github.com").len(), [0xc0, 12]);
    cases.push(("question is a pointer loop", question_pointer));

    for (what, message) in &cases {
        assert_eq!(loaded.answer(message), PASS, "{what}: ingress never drops");
    }
    // An answer that does not parse to its end teaches nothing at all, not
    // even the records before the damage.
    assert!(
        loaded
            .allowed(ip("198.51.100.40"), proto::TCP, 443)
            .is_none()
    );
    assert_eq!(loaded.dns_stat(DnsStat::AddressesLearned), 0);
    // All but "A record of 5 bytes" and "class CH" (well-formed, just not
    // address records) are counted as unparsable.
    assert_eq!(
        loaded.dns_stat(DnsStat::AnswersUnparsed),
        cases.len() as u64 - 2
    );
    // The intact answer still works afterwards.
    assert_eq!(loaded.answer(&good), PASS);
    assert!(
        loaded
            .allowed(ip("198.51.100.40"), proto::TCP, 443)
            .is_some()
    );
}
