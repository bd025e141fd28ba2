//! IPv6 addresses that carry an IPv4 address to a gateway that unpacks it:
//! a NAT64 translator or a 6to4 relay sends the packet on to the embedded
//! IPv4 address, so an internal one there is as internal as the plain one.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::INTERNAL_RANGES;

/// Where an IPv6 form keeps its IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The 32 bits starting at this bit (counted from the most significant).
    At(u8),
    /// RFC 6052 with a /48 prefix: the first 16 bits of the IPv4 address in
    /// bits 48..63, the "u" octet (bits 64..71, zero) between, the last 16
    /// in bits 72..87.
    AroundUOctet,
}

/// One IPv6 form with an IPv4 address inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Embedding {
    /// For messages, e.g. `NAT64 64:ff9b::/96`.
    pub name: &'static str,
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    pub layout: Layout,
}

/// The forms checked. (IPv4-mapped addresses are IPv4 to the datapath;
/// IPv4-compatible and IPv4-translated ones are refused whole, see
/// `INTERNAL_RANGES`.)
pub const EMBEDDINGS: &[Embedding] = &[
    Embedding {
        name: "NAT64 64:ff9b::/96",
        prefix: Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
        prefix_len: 96,
        layout: Layout::At(96),
    },
    Embedding {
        name: "local-use NAT64 64:ff9b:1::/48",
        prefix: Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        prefix_len: 48,
        layout: Layout::AroundUOctet,
    },
    Embedding {
        name: "6to4 2002::/16",
        prefix: Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0),
        prefix_len: 16,
        layout: Layout::At(16),
    },
];

impl Embedding {
    fn holds(&self, ip: Ipv6Addr) -> bool {
        let mask = u128::MAX << (128 - u32::from(self.prefix_len));
        ip.to_bits() & mask == self.prefix.to_bits()
    }

    fn extract(&self, ip: Ipv6Addr) -> Ipv4Addr {
        let bits = ip.to_bits();
        let v4 = match self.layout {
            Layout::At(offset) => (bits >> (96 - u32::from(offset))) as u32,
            Layout::AroundUOctet => {
                let high = (bits >> 64) as u32 & 0xffff;
                let low = (bits >> 40) as u32 & 0xffff;
                high << 16 | low
            }
        };
        Ipv4Addr::from_bits(v4)
    }

    /// The IPv6 prefix (bits, length) of the IPv4 range `network/prefix_len`
    /// in this form.
    ///
    /// Around the u octet, a range longer than /16 becomes its /16: its
    /// later bits sit past the u octet, which translators may or may not
    /// check, and a prefix cannot skip it (the alternative, one prefix per
    /// u octet value, would be 256 entries per range). Only 192.0.0.0/24
    /// is affected: 192.0.0.0/16 is refused in that form.
    pub fn place(&self, network: Ipv4Addr, prefix_len: u8) -> (u128, u8) {
        let prefix = self.prefix.to_bits();
        let v4 = u128::from(network.to_bits());
        match self.layout {
            Layout::At(offset) => (prefix | v4 << (96 - offset), offset + prefix_len),
            Layout::AroundUOctet => {
                let high = v4 >> 16;
                (prefix | high << 64, self.prefix_len + prefix_len.min(16))
            }
        }
    }
}

/// The form `ip` is in and the IPv4 address it carries, if any.
pub fn decode(ip: Ipv6Addr) -> Option<(&'static Embedding, Ipv4Addr)> {
    EMBEDDINGS
        .iter()
        .find(|embedding| embedding.holds(ip))
        .map(|embedding| (embedding, embedding.extract(ip)))
}

/// The kind of internal range `v4` is in, carried around a u octet: as an
/// address, or else by its first 16 bits in a range longer than /16 (see
/// [`Embedding::place`]).
pub fn split_match(v4: Ipv4Addr) -> Option<&'static str> {
    let widened = |(range, kind): &(crate::policy::Cidr, &'static str)| {
        let std::net::IpAddr::V4(network) = range.addr else {
            return None;
        };
        let len = range.prefix_len.min(16);
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        (network.to_bits() & mask == v4.to_bits() & mask).then_some((len, *kind))
    };
    super::longest_match(v4.into()).or_else(|| {
        INTERNAL_RANGES
            .iter()
            .filter_map(widened)
            .max_by_key(|(len, _)| *len)
            .map(|(_, kind)| kind)
    })
}
