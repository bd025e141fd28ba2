//! DNS rebinding protection: a public name must not be able to open a path to
//! the node's or the cluster's internal addresses by resolving to them.
//!
//! Learned (DNS-derived) addresses are refused when they are internal —
//! loopback, unspecified, link-local (which covers the 169.254.169.254 cloud
//! metadata service), private (RFC 1918, CGNAT, IPv6 ULA), multicast,
//! reserved and broadcast ([`INTERNAL_RANGES`]) — or when they are an IPv6
//! form that carries an internal IPv4 address to a gateway that unpacks it
//! ([`EMBEDDINGS`]: NAT64, 6to4) — unless one of the policy's CIDR rules
//! explicitly covers the address. The daemon applies this to the names it
//! resolves ([`refusal`]), and the same ranges are loaded into the kernel's
//! `INTERNAL_RANGES` LPM trie ([`trie_entries`]) for the addresses it learns
//! from DNS answers. The trie only does longest-prefix lookups, so each
//! embedded form is spelt out as one prefix per internal IPv4 range; the
//! tests check that both sides agree.

mod embedded;
#[cfg(test)]
mod tests;

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

pub use embedded::{EMBEDDINGS, Embedding, Layout};

use crate::{
    datapath::encode::{PrefixEntry, addr_of},
    policy::{Cidr, Policy, Target},
};

/// Address ranges never learned from DNS, and what they are.
pub const INTERNAL_RANGES: &[(Cidr, &str)] = &[
    (v4(0, 0, 0, 0, 8), "unspecified"),
    (v4(10, 0, 0, 0, 8), "private"),
    (v4(100, 64, 0, 0, 10), "shared address space (CGNAT)"),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (
        v4(169, 254, 0, 0, 16),
        "link-local (includes cloud metadata 169.254.169.254)",
    ),
    (v4(172, 16, 0, 0, 12), "private"),
    // DS-Lite (192.0.0.0/29), NAT64 discovery (192.0.0.170/171) and the
    // like: special-purpose, never a public service.
    (v4(192, 0, 0, 0, 24), "IETF protocol assignments"),
    (v4(192, 168, 0, 0, 16), "private"),
    (v4(198, 18, 0, 0, 15), "benchmarking"),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(240, 0, 0, 0, 4), "reserved"),
    (v4(255, 255, 255, 255, 32), "broadcast"),
    (v6(0, 128), "unspecified"),
    (v6(1, 128), "loopback"),
    // IPv4-compatible (::a.b.c.d) and IPv4-translated (::ffff:0:a.b.c.d)
    // addresses are refused whole rather than per embedded IPv4 range: both
    // forms are obsolete (RFC 4291, RFC 6145), no public name has a reason
    // to resolve to one, and some stacks still hand them to an IPv4 path
    // (Linux's sit0 tunnels ::/96 to the embedded address).
    (v6(0, 96), "IPv4-compatible (deprecated)"),
    (v6(0xffff << 48, 96), "IPv4-translated (obsolete)"),
    (v6(0xfc00 << 112, 7), "private (unique local)"),
    (v6(0xfe80 << 112, 10), "link-local"),
    (v6(0xfec0 << 112, 10), "site-local"),
    (v6(0xff00 << 112, 8), "multicast"),
];

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix_len: u8) -> Cidr {
    Cidr {
        addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        prefix_len,
    }
}

const fn v6(bits: u128, prefix_len: u8) -> Cidr {
    Cidr {
        addr: IpAddr::V6(Ipv6Addr::from_bits(bits)),
        prefix_len,
    }
}

/// Why an address is internal: the kind of range, and for an IPv4 address
/// embedded in an IPv6 one, which address and which form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Internal {
    pub kind: &'static str,
    pub embedded: Option<(Ipv4Addr, &'static str)>,
}

impl fmt::Display for Internal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            None => f.write_str(self.kind),
            Some((v4, form)) => write!(f, "{}: {v4} embedded in {form}", self.kind),
        }
    }
}

/// Why an address may not be learned for `policy`; `None` when it may.
pub fn refusal(ip: IpAddr, policy: &Policy) -> Option<Internal> {
    // The kernel keeps IPv4 as IPv4-mapped IPv6; compare the same way.
    let ip = ip.to_canonical();
    let internal = internal_kind(ip)?;
    let covered = policy.egress.iter().any(|rule| match &rule.target {
        Target::Cidr(cidr) => cidr.contains(ip),
        Target::Fqdn(_) | Target::Pattern(_) => false,
    });
    (!covered).then_some(internal)
}

/// The kind of internal address `ip` is, if any. IPv4-mapped IPv6 addresses
/// count as the IPv4 address they carry; NAT64 and 6to4 addresses as theirs,
/// if that one is internal. The most specific range names the kind.
pub fn internal_kind(ip: IpAddr) -> Option<Internal> {
    let ip = ip.to_canonical();
    if let Some(kind) = longest_match(ip) {
        return Some(Internal {
            kind,
            embedded: None,
        });
    }
    let IpAddr::V6(v6) = ip else { return None };
    let (embedding, carried) = embedded::decode(v6)?;
    let kind = match embedding.layout {
        Layout::At(_) => longest_match(IpAddr::V4(carried)),
        Layout::AroundUOctet => embedded::split_match(carried),
    }?;
    Some(Internal {
        kind,
        embedded: Some((carried, embedding.name)),
    })
}

fn longest_match(ip: IpAddr) -> Option<&'static str> {
    INTERNAL_RANGES
        .iter()
        .filter(|(range, _)| range.contains(ip))
        .max_by_key(|(range, _)| range.prefix_len)
        .map(|(_, kind)| *kind)
}

/// Every entry of the kernel's `INTERNAL_RANGES` LPM trie: each range of
/// [`INTERNAL_RANGES`] (IPv4 in the IPv4-mapped space), then each internal
/// IPv4 range placed in each of [`EMBEDDINGS`].
pub fn trie_entries() -> Vec<PrefixEntry> {
    let direct = INTERNAL_RANGES.iter().map(|(range, _)| PrefixEntry {
        prefix_len: match range.addr {
            IpAddr::V4(_) => 96 + u32::from(range.prefix_len),
            IpAddr::V6(_) => u32::from(range.prefix_len),
        },
        addr: addr_of(range.addr),
        value: 0,
    });
    let embedded = EMBEDDINGS.iter().flat_map(|embedding| {
        internal_v4_ranges().map(move |(network, prefix_len)| {
            let (bits, prefix_len) = embedding.place(network, prefix_len);
            PrefixEntry {
                prefix_len: u32::from(prefix_len),
                addr: bits.to_be_bytes(),
                value: 0,
            }
        })
    });
    direct.chain(embedded).collect()
}

/// The IPv4 ranges of [`INTERNAL_RANGES`] as (network, prefix length).
fn internal_v4_ranges() -> impl Iterator<Item = (Ipv4Addr, u8)> {
    INTERNAL_RANGES
        .iter()
        .filter_map(|(range, _)| match range.addr {
            IpAddr::V4(network) => Some((network, range.prefix_len)),
            IpAddr::V6(_) => None,
        })
}
