//! `spec.dns`: the resolvers a workload may ask, and how long answers count.

use std::{
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    time::Duration,
};

use super::{error::Issue, model::DnsConfig, path::FieldPath, raw::RawDns};

const MIN_TTL_SECS: RangeInclusive<i64> = 0..=86_400;
const MAX_IPS_PER_NAME: RangeInclusive<i64> = 1..=1024;
const MAX_IPS_PER_PATTERN: RangeInclusive<i64> = 1..=65_536;

/// `raw` is `None` when the section is left out.
pub(super) fn dns(raw: Option<RawDns>, path: &FieldPath) -> Result<DnsConfig, Issue> {
    let Some(raw) = raw else {
        return Ok(DnsConfig::with_resolvers(Vec::new()));
    };

    let resolvers_path = path.key("resolvers");
    let mut resolvers: Vec<IpAddr> = Vec::with_capacity(raw.resolvers.len());
    for (i, text) in raw.resolvers.iter().enumerate() {
        let issue = |message| Issue::at_value(resolvers_path.index(i), message);
        let ip = resolver(text).map_err(issue)?;
        if let Some(first) = resolvers.iter().position(|&other| other == ip) {
            return Err(issue(format!(
                "resolver {ip} is listed twice (also resolvers[{first}])"
            )));
        }
        resolvers.push(ip);
    }

    let min_ttl = match raw.min_ttl {
        Some(secs) if MIN_TTL_SECS.contains(&secs) => Duration::from_secs(secs.unsigned_abs()),
        Some(secs) => {
            return Err(Issue::at_value(
                path.key("minTTL"),
                format!("minTTL must be 0 to 86400 seconds (one day), not {secs}"),
            ));
        }
        None => DnsConfig::DEFAULT_MIN_TTL,
    };
    let max_ips_per_name = count(
        raw.max_ips_per_name,
        MAX_IPS_PER_NAME,
        DnsConfig::DEFAULT_MAX_IPS_PER_NAME,
    )
    .map_err(|m| Issue::at_value(path.key("maxIPsPerName"), format!("maxIPsPerName {m}")))?;
    let max_ips_per_pattern = count(
        raw.max_ips_per_pattern,
        MAX_IPS_PER_PATTERN,
        DnsConfig::DEFAULT_MAX_IPS_PER_PATTERN,
    )
    .map_err(|m| {
        Issue::at_value(
            path.key("maxIPsPerPattern"),
            format!("maxIPsPerPattern {m}"),
        )
    })?;
    Ok(DnsConfig {
        resolvers,
        min_ttl,
        max_ips_per_name,
        max_ips_per_pattern,
    })
}

/// A count within `range`, `default` when left out.
fn count(raw: Option<i64>, range: RangeInclusive<i64>, default: u32) -> Result<u32, String> {
    match raw {
        Some(count) if range.contains(&count) => {
            Ok(u32::try_from(count).expect("ranges are within u32"))
        }
        Some(count) => Err(format!(
            "must be {} to {}, not {count}",
            range.start(),
            range.end()
        )),
        None => Ok(default),
    }
}

fn resolver(text: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = text.parse() {
        return Ok(ip);
    }
    Err(if text.contains('/') {
        format!("`{text}` is a CIDR; a resolver is a single address such as 10.96.0.10")
    } else if text.parse::<SocketAddr>().is_ok() {
        // Only port 53 is opened to resolvers, and only resolvers on it.
        format!(
            "`{text}` has a port; resolvers are always asked on port 53, so write the address alone"
        )
    } else {
        format!("`{text}` is not an IPv4 or IPv6 address")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_dns_resolvers_are_plain_addresses() {
        assert_eq!(resolver("10.96.0.10"), Ok("10.96.0.10".parse().unwrap()));
        assert_eq!(resolver("fd00::53"), Ok("fd00::53".parse().unwrap()));
        assert!(resolver("10.96.0.0/24").unwrap_err().contains("is a CIDR"));
        assert!(
            resolver("10.96.0.10:53")
                .unwrap_err()
                .contains("has a port")
        );
        assert!(
            resolver("[fd00::53]:53")
                .unwrap_err()
                .contains("has a port")
        );
        assert!(
            resolver("dns.example.com")
                .unwrap_err()
                .contains("not an IPv4 or IPv6 address")
        );
    }
}
