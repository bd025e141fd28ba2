//! Entries of a rule's `ports`: `443` (TCP and UDP), `"443/tcp"`, `"53/udp"`.

use super::{
    model::{PortSpec, Protocol},
    raw::RawPort,
};

const DNS_PORT: u16 = 53;

pub(super) fn port_spec(raw: &RawPort) -> Result<PortSpec, String> {
    let spec = match raw {
        RawPort::Number(number) => PortSpec {
            port: port_number(*number)?,
            protocol: Protocol::Any,
        },
        RawPort::Text(text) => parse_text(text)?,
    };
    if spec.port == DNS_PORT {
        // DNS to any other server would bypass the in-kernel check of the
        // query name, which only runs for the listed resolvers.
        return Err(
            "port 53: DNS is only allowed to spec.dns.resolvers; list the server there".into(),
        );
    }
    Ok(spec)
}

fn parse_text(text: &str) -> Result<PortSpec, String> {
    let (number, protocol) = match text.split_once('/') {
        Some((number, protocol)) => (number, parse_protocol(protocol, text)?),
        None => (text, Protocol::Any),
    };
    let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if number
        .split_once('-')
        .is_some_and(|(low, high)| is_number(low) && is_number(high))
    {
        return Err(format!(
            "`{text}`: port ranges are not supported; list each port"
        ));
    }
    if !is_number(number) {
        return Err(format!(
            "`{text}` is not a port; write a number such as 443, optionally followed by /tcp or /udp"
        ));
    }
    // Digits only, so parsing fails only for numbers too large for i64.
    let port = number
        .parse()
        .map_err(|_| out_of_range(number))
        .and_then(port_number)?;
    Ok(PortSpec { port, protocol })
}

fn parse_protocol(protocol: &str, text: &str) -> Result<Protocol, String> {
    if protocol.eq_ignore_ascii_case("tcp") {
        Ok(Protocol::Tcp)
    } else if protocol.eq_ignore_ascii_case("udp") {
        Ok(Protocol::Udp)
    } else {
        Err(format!(
            "unknown protocol `{protocol}` in `{text}`; use tcp or udp, or a bare port for both"
        ))
    }
}

fn port_number(number: i64) -> Result<u16, String> {
    u16::try_from(number)
        .ok()
        .filter(|&port| port != 0)
        .ok_or_else(|| out_of_range(number))
}

fn out_of_range(number: impl std::fmt::Display) -> String {
    format!("port {number} is out of range (1 to 65535)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<PortSpec, String> {
        port_spec(&RawPort::Text(s.into()))
    }

    #[test]
    fn policy_ports_accept_numbers_and_protocols() {
        assert_eq!(
            port_spec(&RawPort::Number(443)),
            Ok(PortSpec {
                port: 443,
                protocol: Protocol::Any
            })
        );
        assert_eq!(
            text("443/tcp"),
            Ok(PortSpec {
                port: 443,
                protocol: Protocol::Tcp
            })
        );
        assert_eq!(
            text("5353/UDP"),
            Ok(PortSpec {
                port: 5353,
                protocol: Protocol::Udp
            })
        );
        assert_eq!(
            text("8443"),
            Ok(PortSpec {
                port: 8443,
                protocol: Protocol::Any
            })
        );
        assert_eq!(
            text("65535/tcp"),
            Ok(PortSpec {
                port: 65535,
                protocol: Protocol::Tcp
            })
        );
    }

    #[test]
    fn policy_ports_reject_bad_entries_with_reasons() {
        let error = |r: Result<PortSpec, String>| r.unwrap_err();
        assert!(error(port_spec(&RawPort::Number(0))).contains("out of range"));
        assert!(error(port_spec(&RawPort::Number(65536))).contains("out of range"));
        assert!(error(port_spec(&RawPort::Number(-1))).contains("out of range"));
        assert!(error(text("99999999999999999999/tcp")).contains("out of range"));
        assert!(error(text("8000-8080")).contains("port ranges are not supported"));
        assert!(error(text("8000-8080/tcp")).contains("port ranges are not supported"));
        assert!(error(text("443/sctp")).contains("unknown protocol `sctp`"));
        assert!(error(text("https")).contains("is not a port"));
        assert!(error(text("/tcp")).contains("is not a port"));
        assert!(
            error(port_spec(&RawPort::Number(53)))
                .contains("DNS is only allowed to spec.dns.resolvers")
        );
        assert!(error(text("53/tcp")).contains("DNS is only allowed to spec.dns.resolvers"));
    }
}
