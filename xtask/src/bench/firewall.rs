//! The allow lists of the throughput configurations, as text for each tool.
//! Pure functions, so what the benchmark installs is unit-tested.
//!
//! Every configuration allows the same destinations: the iperf3 server
//! (10.77.0.1, TCP 5201), the connection-rate server next to it (TCP 5203)
//! and [`OTHER_DESTINATIONS`] other (address, TCP port)
//! pairs that the benchmark traffic never matches (198.18.0.0/15, RFC 2544's
//! benchmarking range), and drops everything else the workload sends.
//!
//! - openclaw-egress: one `cidr: <ip>/32` rule per destination, the
//!   server's last. The first packet of a connection misses the `ALLOW` hash
//!   and finds its /32 in the `CIDR` trie; every later packet hits the
//!   socket's cached verdict.
//! - iptables: one `-d <ip>/32 -p tcp --dport 5201 -j ACCEPT` rule per
//!   destination in OUTPUT, the server's last, then DROP. Stateless, so every
//!   packet walks the whole list (the server's rule is the worst case, as
//!   for any destination the list happens to name last).
//! - iptables + conntrack: the same list behind `--ctstate ESTABLISHED
//!   -j ACCEPT`, the usual stateful setup and the counterpart of our verdict
//!   cache: only a connection's first packet walks the list.
//! - nftables: one set of `ipv4_addr . inet_service` elements and one rule
//!   that looks the packet up in it (a hash lookup), then the chain's drop
//!   policy. Stateless.
//!
//! Loopback traffic is accepted first by both firewalls: the cgroup filter
//! only sees the workload (the iperf3 client), while netfilter's OUTPUT hook
//! sees the whole namespace, including the daemon's local listeners.

use std::{fmt::Write as _, net::Ipv4Addr};

/// Allowed destinations besides the iperf3 server.
pub const OTHER_DESTINATIONS: u32 = 1000;
/// The iperf3 server: the world end of the veth.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const SERVER_PORT: u16 = 5201;
/// A port nothing allows (and nothing listens on): the check that a filter
/// is in place connects to it.
pub const BLOCKED_PORT: u16 = 5202;
/// The connection-rate server (a greeting per connection) on [`SERVER`].
pub const RATE_PORT: u16 = 5203;
/// The `metadata.name` of the benchmark policy (`openclaw-egress remove` takes it).
pub const POLICY_NAME: &str = "bench";
const NFT_TABLE: &str = "oce_bench";

/// The allowed addresses, the server last; all on [`SERVER_PORT`]/tcp.
pub fn destinations(others: u32) -> Vec<Ipv4Addr> {
    let first = u32::from(Ipv4Addr::new(198, 18, 0, 1));
    (0..others)
        .map(|i| Ipv4Addr::from(first + i))
        .chain([SERVER])
        .collect()
}

/// The TCP ports allowed to `ip`: the server's two, or [`SERVER_PORT`].
fn ports_of(ip: Ipv4Addr) -> &'static [u16] {
    if ip == SERVER {
        &[SERVER_PORT, RATE_PORT]
    } else {
        &[SERVER_PORT]
    }
}

/// The openclaw-egress policy for the sandbox cgroup (`cgroupPath` relative
/// to the cgroup2 mount).
pub fn policy_yaml(cgroup: &str, destinations: &[Ipv4Addr]) -> String {
    let mut yaml = format!(
        "apiVersion: openclaw.io/v1\n\
         kind: EgressPolicy\n\
         metadata: {{ name: {POLICY_NAME} }}\n\
         spec:\n  \
           mode: enforce\n  \
           selector:\n    \
             cgroupPath: {cgroup}\n  \
           dns:\n    \
             resolvers: [{SERVER}]\n  \
           egress:\n"
    );
    for ip in destinations {
        let ports = ports_of(*ip)
            .iter()
            .map(|port| format!("{port}/tcp"))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(yaml, "    - cidr: {ip}/32\n      ports: [{ports}]").expect("writing to a String");
    }
    yaml
}

/// `iptables-restore` input: the OUTPUT chain of the filter table.
pub fn iptables_restore(destinations: &[Ipv4Addr], conntrack: bool) -> String {
    let mut rules = String::from(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A OUTPUT -o lo -j ACCEPT\n",
    );
    if conntrack {
        rules.push_str("-A OUTPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT\n");
    }
    for ip in destinations {
        for port in ports_of(*ip) {
            writeln!(
                rules,
                "-A OUTPUT -d {ip}/32 -p tcp -m tcp --dport {port} -j ACCEPT"
            )
            .expect("writing to a String");
        }
    }
    rules.push_str("-A OUTPUT -j DROP\nCOMMIT\n");
    rules
}

/// `nft -f -` input: a table with the set and an output chain.
pub fn nft_script(destinations: &[Ipv4Addr]) -> String {
    let elements = destinations
        .iter()
        .flat_map(|ip| {
            ports_of(*ip)
                .iter()
                .map(move |port| format!("{ip} . {port}"))
        })
        .collect::<Vec<_>>()
        .join(",\n      ");
    format!(
        "table ip {NFT_TABLE} {{\n  \
           set allowed {{\n    \
             type ipv4_addr . inet_service\n    \
             elements = {{\n      {elements}\n    }}\n  \
           }}\n  \
           chain output {{\n    \
             type filter hook output priority filter; policy drop;\n    \
             oif \"lo\" accept\n    \
             ip daddr . tcp dport @allowed accept\n  \
           }}\n\
         }}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_lists_the_same_destinations_server_last() {
        let destinations = destinations(3);
        assert_eq!(
            destinations,
            [
                Ipv4Addr::new(198, 18, 0, 1),
                Ipv4Addr::new(198, 18, 0, 2),
                Ipv4Addr::new(198, 18, 0, 3),
                SERVER
            ]
        );

        let yaml = policy_yaml("oce-1-0", &destinations);
        assert_eq!(yaml.matches("- cidr: ").count(), 4);
        assert!(yaml.contains("cgroupPath: oce-1-0\n"));
        assert!(yaml.ends_with("    - cidr: 10.77.0.1/32\n      ports: [5201/tcp, 5203/tcp]\n"));

        let stateless = iptables_restore(&destinations, false);
        assert_eq!(stateless.matches("--dport 5201 -j ACCEPT").count(), 4);
        assert!(!stateless.contains("conntrack"));
        assert!(stateless.ends_with(
            "-A OUTPUT -d 10.77.0.1/32 -p tcp -m tcp --dport 5201 -j ACCEPT\n\
             -A OUTPUT -d 10.77.0.1/32 -p tcp -m tcp --dport 5203 -j ACCEPT\n\
             -A OUTPUT -j DROP\nCOMMIT\n"
        ));
        let stateful = iptables_restore(&destinations, true);
        // Established traffic is accepted before the list.
        assert!(
            stateful.find("--ctstate ESTABLISHED").unwrap()
                < stateful.find("-d 198.18.0.1/32").unwrap()
        );

        let nft = nft_script(&destinations);
        assert_eq!(nft.matches(" . 5201").count(), 4);
        assert_eq!(nft.matches("10.77.0.1 . 5203").count(), 1);
        assert!(nft.contains("policy drop;"));
        assert!(nft.contains("ip daddr . tcp dport @allowed accept"));
    }

    #[test]
    fn the_policy_is_yaml_the_daemon_can_read() {
        let yaml = policy_yaml("oce-1-0", &destinations(2));
        assert_eq!(
            yaml,
            "apiVersion: openclaw.io/v1\n\
             kind: EgressPolicy\n\
             metadata: { name: bench }\n\
             spec:\n  mode: enforce\n  selector:\n    cgroupPath: oce-1-0\n  \
             dns:\n    resolvers: [10.77.0.1]\n  egress:\n    \
             - cidr: 198.18.0.1/32\n      ports: [5201/tcp]\n    \
             - cidr: 198.18.0.2/32\n      ports: [5201/tcp]\n    \
             - cidr: 10.77.0.1/32\n      ports: [5201/tcp, 5203/tcp]\n"
        );
    }
}
