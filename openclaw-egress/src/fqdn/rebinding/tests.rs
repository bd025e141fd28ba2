use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use openclaw_egress_common::maps::INTERNAL_RANGES_MAX_ENTRIES;

use super::*;
use crate::policy::{DnsConfig, EgressRule, Mode, PortSpec, Protocol, Selector};

fn policy_with_cidr(cidr: Option<Cidr>) -> Policy {
    Policy {
        name: "p".into(),
        mode: Mode::Enforce,
        selector: Selector::default(),
        dns: DnsConfig::with_resolvers(vec![]),
        egress: cidr
            .into_iter()
            .map(|cidr| {
                EgressRule::new(
                    Target::Cidr(cidr),
                    vec![PortSpec {
                        port: 5432,
                        protocol: Protocol::Tcp,
                    }],
                )
            })
            .collect(),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// What the kernel's LPM trie answers for `ip`: whether some entry's prefix
/// holds it. (A lookup finds the longest prefix; for refusing, any will do.)
fn trie_holds(entries: &[PrefixEntry], ip: IpAddr) -> bool {
    let key = u128::from_be_bytes(addr_of(ip));
    entries.iter().any(|entry| {
        let mask = u128::MAX.checked_shl(128 - entry.prefix_len).unwrap_or(0);
        key & mask == u128::from_be_bytes(entry.addr) & mask
    })
}

#[test]
fn internal_addresses_are_refused() {
    let policy = policy_with_cidr(None);
    for text in [
        "127.0.0.1",
        "0.0.0.0",
        "169.254.169.254",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "198.19.255.254",
        "192.0.0.170",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "ff02::1",
        // NAT64, well-known and local-use prefixes.
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::7f00:1",
        "64:ff9b::a00:1",
        "64:ff9b:1:a9fe:a9:fe00::",
        "64:ff9b:1:a00:0:100::",
        // 6to4.
        "2002:a9fe:a9fe::1",
        "2002:7f00:1::",
        "2002:c0a8:101:1::1",
        // IPv4-compatible and IPv4-translated.
        "::7f00:1",
        "::a9fe:a9fe",
        "::8.8.8.8",
        "::ffff:0:7f00:1",
        "::ffff:0:808:808",
    ] {
        let ip = ip(text);
        assert!(refusal(ip, &policy).is_some(), "{ip} must not be learnable");
    }
}

#[test]
fn public_addresses_are_learnable() {
    let policy = policy_with_cidr(None);
    for text in [
        "203.0.113.10",
        "198.51.100.7",
        "198.17.255.255",
        "198.20.0.0",
        "192.0.1.1",
        "8.8.8.8",
        "2001:db8:1::10",
        "2606:4700::1",
        // Public IPv4 addresses behind NAT64 and 6to4.
        "64:ff9b::cb00:710a",
        "64:ff9b::808:808",
        "64:ff9b:1:cb00:71:a00::",
        "2002:cb00:710a::1",
        // Next to the forms, not in them.
        "64:ff9b:0:0:1::a00:1",
        "64:ff9b:2::a00:1",
        "2003:a00:1::",
        "::1:0:0:a00:1",
    ] {
        let ip = ip(text);
        assert_eq!(refusal(ip, &policy), None, "{ip} must be learnable");
    }
}

#[test]
fn the_kind_names_the_embedded_address_and_its_form() {
    let nat64 = internal_kind(ip("64:ff9b::a9fe:a9fe")).unwrap();
    assert_eq!(
        nat64.to_string(),
        "link-local (includes cloud metadata 169.254.169.254): \
         169.254.169.254 embedded in NAT64 64:ff9b::/96"
    );
    let six_to_four = internal_kind(ip("2002:a00:1::")).unwrap();
    assert_eq!(
        six_to_four.embedded,
        Some((Ipv4Addr::new(10, 0, 0, 1), "6to4 2002::/16"))
    );
    // The most specific range names it.
    assert_eq!(
        internal_kind(ip("255.255.255.255")).unwrap().kind,
        "broadcast"
    );
    assert_eq!(
        internal_kind(ip("255.255.255.254")).unwrap().kind,
        "reserved"
    );
    assert_eq!(internal_kind(ip("::1")).unwrap().kind, "loopback");
    assert_eq!(
        internal_kind(ip("::ffff:10.0.0.1")).unwrap().kind,
        "private"
    );
}

#[test]
fn a_cidr_rule_makes_internal_addresses_learnable() {
    let policy = policy_with_cidr(Some(Cidr {
        addr: ip("10.0.1.0"),
        prefix_len: 24,
    }));
    assert_eq!(refusal(ip("10.0.1.5"), &policy), None);
    assert_eq!(refusal(ip("::ffff:10.0.1.5"), &policy), None);
    assert!(refusal(ip("10.0.2.5"), &policy).is_some());
    // As in the kernel, an IPv4 rule does not cover its NAT64 form: the
    // CIDR trie holds the IPv4 prefix only, so the NAT64 address could not
    // be reached through the rule anyway.
    assert!(refusal(ip("64:ff9b::a00:105"), &policy).is_some());
    let nat64 = policy_with_cidr(Some(Cidr {
        addr: ip("64:ff9b::"),
        prefix_len: 96,
    }));
    assert_eq!(refusal(ip("64:ff9b::a00:105"), &nat64), None);
}

#[test]
fn ranges_have_no_host_bits() {
    for (range, _) in INTERNAL_RANGES {
        assert!(range.contains(range.addr), "{range}");
        let network = match range.addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(range.prefix_len))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(range.prefix_len))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask))
            }
        };
        assert_eq!(network, range.addr, "{range}");
    }
}

#[test]
fn trie_entries_fit_the_map_and_are_distinct_networks() {
    let entries = trie_entries();
    assert!(
        entries.len() <= INTERNAL_RANGES_MAX_ENTRIES as usize,
        "{} entries, the map holds {INTERNAL_RANGES_MAX_ENTRIES}",
        entries.len()
    );
    for (i, entry) in entries.iter().enumerate() {
        assert!(entry.prefix_len <= 128, "{entry:?}");
        let host = u128::MAX.checked_shr(entry.prefix_len).unwrap_or(0);
        assert_eq!(u128::from_be_bytes(entry.addr) & host, 0, "{entry:?}");
        assert!(
            !entries[..i]
                .iter()
                .any(|e| e.prefix_len == entry.prefix_len && e.addr == entry.addr),
            "{entry:?} twice"
        );
    }
}

#[test]
fn the_trie_has_each_embedded_range_at_its_bit_offset() {
    let entries = trie_entries();
    let has = |addr: &str, prefix_len: u32| {
        entries.contains(&PrefixEntry {
            prefix_len,
            addr: addr_of(ip(addr)),
            value: 0,
        })
    };
    assert!(has("::ffff:127.0.0.0", 96 + 8));
    assert!(has("64:ff9b::a9fe:0", 96 + 16));
    assert!(has("2002:a00::", 16 + 8));
    assert!(has("2002:c612::", 16 + 15));
    // 172.16/12 around the u octet: bits 48..59.
    assert!(has("64:ff9b:1:ac10::", 48 + 12));
    // 192.0.0.0/24 is refused as its /16 there.
    assert!(has("64:ff9b:1:c000::", 48 + 16));
    assert!(has("::", 96));
    assert!(has("::ffff:0:0:0", 96));
}

/// Addresses around every edge of every range, in every form, and random
/// ones in and near every form.
fn samples() -> Vec<IpAddr> {
    let mut v4s = vec![
        Ipv4Addr::new(203, 0, 113, 10),
        Ipv4Addr::new(8, 8, 8, 8),
        Ipv4Addr::new(192, 0, 2, 1),
    ];
    for (range, _) in INTERNAL_RANGES {
        if let IpAddr::V4(network) = range.addr {
            let first = network.to_bits();
            let last = first
                | u32::MAX
                    .checked_shr(u32::from(range.prefix_len))
                    .unwrap_or(0);
            for bits in [
                first,
                first | 1,
                last,
                last.wrapping_add(1),
                first.wrapping_sub(1),
            ] {
                v4s.push(Ipv4Addr::from_bits(bits));
            }
        }
    }
    let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
    v4s.extend((0..2000).map(|_| Ipv4Addr::from_bits(random.next() as u32)));

    let mut out: Vec<IpAddr> = Vec::new();
    for v4 in v4s {
        let bits = u128::from(v4.to_bits());
        let noise = u128::from(random.next());
        out.push(v4.into());
        out.push(Ipv6Addr::from_bits(0xffff << 32 | bits).into());
        out.push(Ipv6Addr::from_bits(bits).into());
        out.push(Ipv6Addr::from_bits(0xffff << 48 | bits).into());
        out.push(Ipv6Addr::from_bits(0x64_ff9b << 96 | bits).into());
        let split = (bits >> 16) << 64 | (bits & 0xffff) << 40;
        let local_use = 0x64_ff9b_0001 << 80 | split;
        out.push(Ipv6Addr::from_bits(local_use).into());
        // A u octet that is not zero, and bits after the address.
        out.push(Ipv6Addr::from_bits(local_use | 0x5a << 56 | (noise & 0xff_ffff_ffff)).into());
        out.push(Ipv6Addr::from_bits(0x2002 << 112 | bits << 80 | (noise >> 48)).into());
    }
    for _ in 0..5000 {
        let bits = u128::from(random.next()) << 64 | u128::from(random.next());
        for prefix in [0u128, 0x64_ff9b << 96, 0x64_ff9b_0001 << 80, 0x2002 << 112] {
            out.push(Ipv6Addr::from_bits(prefix | (bits >> 16)).into());
        }
        out.push(Ipv6Addr::from_bits(bits).into());
    }
    out.extend(
        [
            "fe80::1",
            "fc00::1",
            "ff02::1",
            "2001:db8::1",
            "::",
            "::1",
            "::2",
        ]
        .iter()
        .map(|text| ip(text)),
    );
    out
}

#[test]
fn the_daemon_and_the_kernel_trie_agree() {
    let entries = trie_entries();
    let mut internal = 0;
    for ip in samples() {
        let daemon = internal_kind(ip);
        assert_eq!(
            daemon.is_some(),
            trie_holds(&entries, ip),
            "{ip}: the daemon says {daemon:?}, the trie disagrees"
        );
        internal += usize::from(daemon.is_some());
    }
    // The sample reaches both answers plenty of times.
    assert!(internal > 1000, "{internal}");
    assert!(!trie_holds(&entries, ip("64:ff9b::cb00:710a")));
    assert!(trie_holds(&entries, ip("64:ff9b::a9fe:a9fe")));
}

/// A small deterministic generator, so a failure can be reproduced.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
