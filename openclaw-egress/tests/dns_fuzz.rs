//! Differential fuzzing of the kernel's DNS handling against its userspace
//! twin: the policy's own name matcher (`Target::matches_name`), plus a
//! strict userspace decoder of question names written here as the oracle.
//!
//! Deterministic (a fixed-seed xorshift), so a failure reproduces; each case
//! prints what it sent. Runs the real programs through BPF_PROG_TEST_RUN, so
//! it needs root like the other kernel tests. Properties:
//! - a query passes exactly when its name decodes and some rule allows it;
//! - nothing malformed passes, crashes or hangs;
//! - an answer never teaches an address that is not in its bytes, and a
//!   mutated answer to a denied question teaches nothing.

mod common;

use std::{collections::HashSet, net::IpAddr};

use common::{rng::Rng, *};
use openclaw_egress::{
    datapath::frames::{
        self,
        dns::{self, Record, TYPE_A},
    },
    policy::{Mode, Policy, PortSpec, Protocol, WildcardDepth},
};
use openclaw_egress_common::{AllowKey, DropReason};

fn fuzz_policy() -> Policy {
    let any = |port| PortSpec {
        port,
        protocol: Protocol::Any,
    };
    policy_with(
        Mode::Enforce,
        vec![
            fqdn("api.github.com", vec![tcp(443)]),
            pattern(WildcardDepth::OneLabel, "pkg.test", vec![tcp(443)]),
            pattern(WildcardDepth::AnyDepth, "cdn.test", vec![any(80)]),
            fqdn("a-b_c.example", vec![tcp(443)]),
        ],
    )
}

/// The oracle: the question name of a query message, decoded with the
/// datapath's rules, if the message is a well-formed standard query: one
/// question of class IN, then nothing, or one EDNS0 OPT record and nothing.
fn decode_question(message: &[u8]) -> Option<String> {
    let (name, end) = decode_name(message)?;
    let additionals = u16::from_be_bytes([message[10], message[11]]);
    let header_ok = message.len() >= end + 4
        && message[2] & 0x80 == 0
        && (message[2] >> 3) & 0x0f == 0
        && message[4..6] == [0, 1]
        && message[6..10] == [0, 0, 0, 0]
        && additionals <= 1
        && message[end + 2..end + 4] == [0, 1];
    let records_end = match additionals {
        0 => Some(end + 4),
        _ => opt_end(message, end + 4),
    };
    (header_ok && records_end == Some(message.len())).then_some(name)
}

/// Where a well-formed OPT record at `at` ends: root owner, type 41, TTL 0
/// or DO only, at most 44 bytes of whole options.
fn opt_end(message: &[u8], at: usize) -> Option<usize> {
    let fixed = message.get(at..at + 11)?;
    let ttl = u32::from_be_bytes([fixed[5], fixed[6], fixed[7], fixed[8]]);
    let rdlength = usize::from(u16::from_be_bytes([fixed[9], fixed[10]]));
    if fixed[0] != 0 || fixed[1..3] != [0, 41] || (ttl != 0 && ttl != 0x8000) || rdlength > 44 {
        return None;
    }
    let end = at + 11 + rdlength;
    let mut option = at + 11;
    while option < end {
        let head = message.get(option..option + 4)?;
        option += 4 + usize::from(u16::from_be_bytes([head[2], head[3]]));
    }
    (option == end).then_some(end)
}

/// An OPT record, well-formed or slightly not.
fn random_opt(rng: &mut Rng) -> Vec<u8> {
    let mut options = Vec::new();
    for _ in 0..rng.below(3) {
        let len = *rng.pick(&[0usize, 8, 16, 24, 40]);
        options.extend_from_slice(&[0, 10]);
        options.extend_from_slice(&(len as u16).to_be_bytes());
        options.extend((0..len).map(|_| rng.next() as u8));
    }
    let ttl: u32 = *rng.pick(&[0, 0x8000, 0x8000, 0x0100_0000, 1]);
    let mut opt = vec![0, 0, 41, 0x04, 0xd0];
    opt.extend_from_slice(&ttl.to_be_bytes());
    opt.extend_from_slice(&(options.len() as u16).to_be_bytes());
    opt.extend_from_slice(&options);
    opt
}

/// A query for `wire_name`, sometimes with an OPT record, trailing bytes, or
/// another class.
fn random_query(rng: &mut Rng, id: u16, wire_name: &[u8]) -> Vec<u8> {
    let mut message = dns::query_raw(id, wire_name, TYPE_A);
    if rng.below(4) == 0 {
        message[11] = 1;
        message.extend_from_slice(&random_opt(rng));
    }
    if rng.below(12) == 0 {
        message.extend((0..1 + rng.below(8)).map(|_| rng.next() as u8));
    }
    if rng.below(20) == 0 {
        let class = 13 + wire_name.len();
        message[class] = 3;
    }
    message
}

/// The name at offset 12 (labels of 1..=63 letters, digits, '-' or '_', no
/// compression, at most 255 bytes with the root label), lowercased, and
/// where it ends.
fn decode_name(message: &[u8]) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = usize::from(*message.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len > 63 {
            return None;
        }
        let label = message.get(at + 1..at + 1 + len)?;
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        labels.push(String::from_utf8(label.to_vec()).ok()?.to_ascii_lowercase());
        at += 1 + len;
        if at > 12 + 254 {
            return None;
        }
    }
    (!labels.is_empty()).then(|| (labels.join("."), at))
}

const LABELS: &[&str] = &[
    "api",
    "github",
    "com",
    "pkg",
    "test",
    "cdn",
    "a",
    "b",
    "x-1",
    "_svc",
    "API",
    "GitHub",
    "a-b_c",
    "example",
    "evil",
    "githubcom",
    "-",
    "",
];

/// A name made of vocabulary labels, sometimes with a random byte thrown in.
fn random_wire_name(rng: &mut Rng) -> Vec<u8> {
    let mut wire = Vec::new();
    for _ in 0..1 + rng.below(5) {
        let mut label = rng.pick(LABELS).as_bytes().to_vec();
        if rng.below(8) == 0 {
            let at = rng.below(label.len() + 1);
            label.insert(at, rng.next() as u8);
        }
        if rng.below(20) == 0 {
            label = vec![b'z'; 60 + rng.below(8)];
        }
        wire.push(label.len() as u8);
        wire.extend_from_slice(&label);
    }
    // The usual suffixes, to hit the rules often.
    const SUFFIXES: &[&[&str]] = &[
        &["github", "com"],
        &["pkg", "test"],
        &["cdn", "test"],
        &["example"],
        &[],
    ];
    let suffix = *rng.pick(SUFFIXES);
    for label in suffix {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    wire
}

#[test]
fn query_filtering_agrees_with_the_userspace_matcher() {
    let policy = fuzz_policy();
    let loaded = load(&policy, in_ten_minutes());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut allowed, mut denied, mut malformed) = (0, 0, 0);
    for case in 0..3000 {
        let wire_name = random_wire_name(&mut rng);
        let mut message = random_query(&mut rng, case as u16, &wire_name);
        // Every fourth case also gets random bytes flipped anywhere.
        if case % 4 == 0 {
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(message.len());
                message[at] = rng.next() as u8;
            }
        }
        if rng.below(10) == 0 {
            message.truncate(rng.below(message.len() + 1));
        }
        let expected = match decode_question(&message) {
            Some(name) if policy.egress.iter().any(|r| r.target.matches_name(&name)) => {
                allowed += 1;
                PASS
            }
            Some(_) => {
                denied += 1;
                DROP
            }
            None => {
                malformed += 1;
                DROP
            }
        };
        let verdict = loaded.run(&frames::udp(AGENT, 5353, RESOLVER, 53, &message));
        assert_eq!(
            verdict,
            expected,
            "case {case}: query {message:02x?} decodes to {:?}",
            decode_question(&message)
        );
    }
    // The generator must exercise all three outcomes, or the test proves little.
    assert!(
        allowed > 200 && denied > 200 && malformed > 200,
        "{allowed}/{denied}/{malformed}"
    );
    assert_eq!(loaded.dropped(DropReason::DnsDenied), denied);
}

/// Every 4- and 16-byte window of `bytes`, as addresses.
fn addresses_in(bytes: &[u8]) -> Vec<IpAddr> {
    let mut addresses: Vec<IpAddr> = bytes
        .windows(4)
        .map(|w| IpAddr::from([w[0], w[1], w[2], w[3]]))
        .collect();
    addresses.extend(bytes.windows(16).map(|w| {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(w);
        IpAddr::from(octets)
    }));
    addresses
}

#[test]
fn mutated_answers_never_teach_invented_addresses() {
    let policy = fuzz_policy();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut loaded = load(&policy, 0);
    let mut learned_cases = 0;
    for case in 0..600u16 {
        // A fresh instance now and then, so per-name budgets do not run out.
        if case % 200 == 0 {
            loaded = load(&policy, 0);
        }
        let name = *rng.pick(&[
            "api.github.com",
            "mirror.pkg.test",
            "a.b.cdn.test",
            "evil.test",
        ]);
        let records: Vec<Record> = (0..1 + rng.below(4))
            .map(|i| Record::Address {
                ip: IpAddr::from([198, 51, (case % 200) as u8, i as u8]),
                ttl: 300,
            })
            .collect();
        let mut message = dns::response(case, name, TYPE_A, &records);
        for _ in 0..rng.below(4) {
            let at = rng.below(message.len());
            message[at] = rng.next() as u8;
        }
        let before: HashSet<AllowKey> = loaded
            .datapath
            .allow_entries()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(
            loaded.answer(&message),
            PASS,
            "case {case}: ingress never drops"
        );
        let new: Vec<IpAddr> = loaded
            .datapath
            .allow_entries()
            .into_iter()
            .filter(|(key, _)| !before.contains(key))
            .map(|(key, _)| openclaw_egress::datapath::ip_of(&key.addr))
            .collect();
        let possible = addresses_in(&message);
        for ip in &new {
            assert!(
                possible.contains(ip),
                "case {case}: learned {ip}, which is nowhere in {message:02x?}"
            );
        }
        let allowed_question = decode_name(&message)
            .is_some_and(|(name, _)| policy.egress.iter().any(|r| r.target.matches_name(&name)));
        assert!(
            allowed_question || new.is_empty(),
            "case {case}: an answer to a question no rule allows taught {new:?}"
        );
        if !new.is_empty() {
            learned_cases += 1;
        }
    }
    // Unmutated answers to allowed names must keep teaching.
    assert!(
        learned_cases > 100,
        "only {learned_cases} answers taught anything"
    );
}
