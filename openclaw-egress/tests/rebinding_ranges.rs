//! The kernel's rebinding check with the full `INTERNAL_RANGES` trie: NAT64,
//! 6to4, IPv4-compatible and IPv4-translated forms of internal IPv4
//! addresses are refused when learned from a DNS answer, public ones in the
//! same forms are learned. Run with BPF_PROG_TEST_RUN; needs root.

mod common;

use std::{net::IpAddr, time::Duration};

use common::*;
use openclaw_egress::{
    clock,
    datapath::frames::dns::{self, Record, TYPE_AAAA},
    policy::Mode,
    rebinding,
};
use openclaw_egress_common::{dns::DnsStat, proto};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn embedded_internal_ipv4_addresses_are_not_learned_and_public_ones_are() {
    let policy = policy_with(Mode::Enforce, vec![fqdn("api.github.com", vec![tcp(443)])]);
    let loaded = load(&policy, clock::monotonic_ns_after(Duration::from_secs(600)));
    let refused = [
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::7f00:1",
        "64:ff9b:1:a00:0:100::",
        "2002:a9fe:a9fe::1",
        "::7f00:1",
        "::ffff:0:a9fe:a9fe",
        "64:ff9b::c612:1",
        "64:ff9b::ffff:ffff",
    ];
    let learned = ["64:ff9b::cb00:710a", "2002:cb00:710a::1", "2001:db8:1::10"];
    // The records of one answer are learned up to 16 at a time.
    let records: Vec<Record> = refused
        .iter()
        .chain(&learned)
        .map(|text| Record::Address {
            ip: ip(text),
            ttl: 300,
        })
        .collect();
    loaded.answer(&dns::response(7, "api.github.com", TYPE_AAAA, &records));

    for text in refused {
        assert!(
            rebinding::internal_kind(ip(text)).is_some(),
            "the daemon must refuse {text} too"
        );
        assert!(
            loaded.allowed(ip(text), proto::TCP, 443).is_none(),
            "{text} must not have been learned"
        );
    }
    for text in learned {
        assert!(
            loaded.allowed(ip(text), proto::TCP, 443).is_some(),
            "{text} must have been learned"
        );
    }
    assert_eq!(
        loaded.dns_stat(DnsStat::AddressesRefusedInternal),
        refused.len() as u64
    );
}
