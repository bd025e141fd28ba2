//! A rule's `protocols`: the TCP and UDP ports it allows.

use super::{
    translate::{TranslateError, refuse_unknown},
    types::ClusterNetworkPolicyProtocol,
};
use crate::policy::EgressRule;

pub(super) const DNS_PORT: u16 = 53;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transport {
    Tcp,
    Udp,
}

/// A port a rule allows, and the `protocols` entry it came from.
#[derive(Clone, Copy, Debug)]
pub(super) struct RulePort {
    pub(super) number: u16,
    pub(super) transport: Transport,
    pub(super) index: usize,
}

/// The TCP and UDP ports of a rule's `protocols`, without repeats.
pub(super) fn rule_ports(
    path: &str,
    protocols: &[ClusterNetworkPolicyProtocol],
) -> Result<Vec<RulePort>, TranslateError> {
    if protocols.is_empty() {
        return Err(TranslateError::Protocols {
            path: path.to_owned(),
            reason: "the rule lists no protocols, so it allows every port, and policies always \
                     name their ports; list them, e.g. `protocols: [{tcp: {destinationPort: \
                     {number: 443}}}]`"
                .to_owned(),
        });
    }
    let mut ports: Vec<RulePort> = Vec::new();
    for (k, protocol) in protocols.iter().enumerate() {
        let port = protocol_port(&format!("{path}.protocols[{k}]"), protocol, k)?;
        let same =
            |other: &RulePort| (other.number, other.transport) == (port.number, port.transport);
        if !ports.iter().any(same) {
            ports.push(port);
        }
    }
    if ports.len() > EgressRule::MAX_PORTS {
        return Err(TranslateError::Protocols {
            path: format!("{path}.protocols"),
            reason: format!(
                "the rule lists {} ports; a rule allows at most {}: split it into several \
                 rules with the same peers",
                ports.len(),
                EgressRule::MAX_PORTS
            ),
        });
    }
    Ok(ports)
}

/// One `protocols` entry: a TCP or UDP destination port number.
fn protocol_port(
    path: &str,
    protocol: &ClusterNetworkPolicyProtocol,
    index: usize,
) -> Result<RulePort, TranslateError> {
    let refuse = |path: String, reason: &str| {
        Err(TranslateError::Protocols {
            path,
            reason: reason.to_owned(),
        })
    };
    refuse_unknown(path, &protocol.unknown)?;
    if protocol.destination_named_port.is_some() {
        return refuse(
            format!("{path}.destinationNamedPort"),
            "named ports are container ports of pods, which the daemon does not follow; write \
             the port number under `tcp` or `udp`",
        );
    }
    if protocol.sctp.is_some() {
        return refuse(
            format!("{path}.sctp"),
            "SCTP cannot be allowed: the datapath passes TCP and UDP only",
        );
    }
    let (transport, matched, key) = match (&protocol.tcp, &protocol.udp) {
        (Some(tcp), None) => (Transport::Tcp, tcp, "tcp"),
        (None, Some(udp)) => (Transport::Udp, udp, "udp"),
        _ => {
            return refuse(
                path.to_owned(),
                "each protocols entry must set exactly one of `tcp` or `udp`",
            );
        }
    };
    let path = format!("{path}.{key}");
    refuse_unknown(&path, &matched.unknown)?;
    let Some(port) = &matched.destination_port else {
        return refuse(
            path,
            "no destinationPort: this allows every port, and policies always name their ports; \
             set `destinationPort.number`",
        );
    };
    let path = format!("{path}.destinationPort");
    refuse_unknown(&path, &port.unknown)?;
    if port.range.is_some() {
        return refuse(
            format!("{path}.range"),
            "port ranges are not supported; list each port as its own `number` entry",
        );
    }
    let number = port
        .number
        .and_then(|number| u16::try_from(number).ok())
        .filter(|&number| number != 0);
    match number {
        Some(number) => Ok(RulePort {
            number,
            transport,
            index,
        }),
        None => refuse(
            format!("{path}.number"),
            "the port number must be 1 to 65535",
        ),
    }
}
