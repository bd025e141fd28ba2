//! One address format for both families.
//!
//! IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`), so a single hash
//! map and a single LPM trie serve IPv4 and IPv6, and the kernel side needs no
//! second copy of every lookup.

/// An IPv6 address, or an IPv4 address in its IPv4-mapped form.
pub type Addr = [u8; 16];

/// Number of leading bits of an IPv4-mapped address that are fixed
/// (`::ffff:`); an IPv4 `/n` prefix is an `/(96 + n)` mapped prefix.
pub const IPV4_MAPPED_PREFIX_BITS: u32 = 96;

/// `a.b.c.d` as `::ffff:a.b.c.d`.
#[inline(always)]
pub const fn ipv4_mapped(octets: [u8; 4]) -> Addr {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2], octets[3],
    ]
}

/// The IPv4 octets of an IPv4-mapped address, if it is one.
#[inline(always)]
pub fn as_ipv4(addr: &Addr) -> Option<[u8; 4]> {
    if addr[..10] == [0; 10] && addr[10] == 0xff && addr[11] == 0xff {
        Some([addr[12], addr[13], addr[14], addr[15]])
    } else {
        None
    }
}
