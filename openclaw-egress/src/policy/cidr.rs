//! `cidr` rule targets: `10.0.1.0/24`, `fd00::/64`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::model::Cidr;

pub(super) fn cidr(raw: &str) -> Result<Cidr, String> {
    let Some((addr, prefix)) = raw.split_once('/') else {
        return Err(match raw.parse::<IpAddr>() {
            Ok(ip) => format!(
                "`{raw}` is an address, not a CIDR; write `{raw}/{}` to allow just this address",
                max_prefix_len(ip)
            ),
            Err(_) => {
                format!("`{raw}` is not a CIDR; write a prefix such as 10.0.0.0/8 or fd00::/64")
            }
        });
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` in `{raw}` is not an IPv4 or IPv6 address"))?;
    let max = max_prefix_len(addr);
    let prefix_len = prefix
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| prefix.parse::<u8>().ok())
        .flatten()
        .filter(|&len| len <= max)
        .ok_or_else(|| {
            format!(
                "`/{prefix}` is not a valid prefix length for {} (0 to {max})",
                family(addr)
            )
        })?;

    let network = network(addr, prefix_len);
    if network != addr {
        return Err(format!(
            "`{raw}` has host bits set; write the network `{network}/{prefix_len}`, \
             or `{addr}/{max}` to allow just this address"
        ));
    }
    if let IpAddr::V6(v6) = addr
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        // The datapath matches IPv4 packets against IPv4 prefixes only, so
        // a mapped prefix would silently match nothing. Mapped addresses have
        // bits 80..96 set, so without host bits the prefix is at least /96.
        let v4_len = prefix_len - 96;
        return Err(format!(
            "`{raw}` is an IPv4-mapped IPv6 prefix, which is not supported; write it as IPv4: `{v4}/{v4_len}`"
        ));
    }
    Ok(Cidr { addr, prefix_len })
}

fn max_prefix_len(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn family(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

/// `addr` with every bit past `prefix_len` cleared.
fn network(addr: IpAddr, prefix_len: u8) -> IpAddr {
    let host_bits = u32::from(max_prefix_len(addr) - prefix_len);
    match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
            Ipv4Addr::from(u32::from(v4) & mask).into()
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
            Ipv6Addr::from(u128::from(v6) & mask).into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_cidr_accepts_networks_of_both_families() {
        assert_eq!(
            cidr("10.0.1.0/24"),
            Ok(Cidr {
                addr: "10.0.1.0".parse().unwrap(),
                prefix_len: 24
            })
        );
        assert_eq!(
            cidr("0.0.0.0/0"),
            Ok(Cidr {
                addr: "0.0.0.0".parse().unwrap(),
                prefix_len: 0
            })
        );
        assert_eq!(
            cidr("10.0.1.5/32"),
            Ok(Cidr {
                addr: "10.0.1.5".parse().unwrap(),
                prefix_len: 32
            })
        );
        assert_eq!(
            cidr("fd00::/64"),
            Ok(Cidr {
                addr: "fd00::".parse().unwrap(),
                prefix_len: 64
            })
        );
        assert_eq!(
            cidr("::/0"),
            Ok(Cidr {
                addr: "::".parse().unwrap(),
                prefix_len: 0
            })
        );
    }

    #[test]
    fn policy_cidr_rejects_with_suggestions() {
        let error = |s: &str| cidr(s).unwrap_err();
        assert!(error("10.0.0.1").contains("write `10.0.0.1/32`"));
        assert!(error("fd00::1").contains("write `fd00::1/128`"));
        assert!(error("10.0.1.5/24").contains("write the network `10.0.1.0/24`"));
        assert!(error("fd00::1/64").contains("write the network `fd00::/64`"));
        assert!(error("10.0.0.0/33").contains("0 to 32"));
        assert!(error("fd00::/129").contains("0 to 128"));
        assert!(error("10.0.0.0/+8").contains("not a valid prefix length"));
        assert!(error("10.0.0.0/").contains("not a valid prefix length"));
        assert!(error("10.0.0.256/32").contains("not an IPv4 or IPv6 address"));
        assert!(error("example.com").contains("not a CIDR"));
        assert!(error("::ffff:10.0.0.0/120").contains("write it as IPv4: `10.0.0.0/24`"));
        assert!(error("::ffff:0.0.0.0/96").contains("IPv4-mapped IPv6 prefix"));
    }
}
