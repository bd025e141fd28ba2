//! A rule's `tls`, `http`, `ech` and `quic`: which of its ports must carry a
//! TLS ClientHello or an HTTP request naming an allowed server.
//!
//! Defaults: a name rule (`fqdn`, `fqdnPattern`) checks TLS on 443 and HTTP
//! on 80 when it allows them over TCP; a `cidr` rule checks nothing unless
//! it says so. QUIC's Initial is encrypted, so UDP on a TLS port would let
//! any server name through: a rule allowing it is refused unless it says
//! `quic: allow`.

use super::{
    error::Issue,
    model::{Ech, Inspection, PortSpec, Protocol, Target},
    path::FieldPath,
    raw::RawRule,
};

pub(super) fn inspection(
    raw: &RawRule,
    target: &Target,
    ports: &[PortSpec],
    path: &FieldPath,
) -> Result<Inspection, Issue> {
    let allows = |port: u16, protocol: Protocol| {
        ports.iter().any(|spec| {
            spec.port == port && (spec.protocol == protocol || spec.protocol == Protocol::Any)
        })
    };
    let defaults = Inspection::defaults(target, ports);
    let listed = |key: &'static str, raw: &Option<Vec<i64>>| -> Result<Option<Vec<u16>>, Issue> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let mut ports: Vec<u16> = Vec::new();
        for (i, &number) in raw.iter().enumerate() {
            let issue = |message: String| Issue::at_value(path.key(key).index(i), message);
            let port = u16::try_from(number)
                .ok()
                .filter(|&port| port != 0)
                .ok_or_else(|| issue(format!("port {number} is out of range (1 to 65535)")))?;
            if !allows(port, Protocol::Tcp) {
                return Err(issue(format!(
                    "{key} lists port {port}, which this rule does not allow over TCP; \
                     add it to ports or remove it here"
                )));
            }
            if ports.contains(&port) {
                return Err(issue(format!("port {port} is listed twice")));
            }
            ports.push(port);
        }
        Ok(Some(ports))
    };
    let tls_ports = listed("tls", &raw.tls)?.unwrap_or(defaults.tls_ports);
    let http_ports = listed("http", &raw.http)?.unwrap_or(defaults.http_ports);
    if let Some(port) = http_ports.iter().find(|port| tls_ports.contains(port)) {
        return Err(Issue::at_value(
            path.key("http"),
            format!("port {port} is both a TLS and an HTTP port; a connection is one or the other"),
        ));
    }
    let ech = match raw.ech.as_deref() {
        None | Some("allow") => Ech::Allow,
        Some("deny") => Ech::Deny,
        Some(other) => {
            return Err(Issue::at_value(
                path.key("ech"),
                format!("ech must be allow or deny, not `{other}`"),
            ));
        }
    };
    if raw.ech.is_some() && tls_ports.is_empty() {
        return Err(Issue::at_key(
            path.key("ech"),
            "ech applies to the rule's TLS ports, and it checks TLS on none; set tls or remove ech",
        ));
    }
    let quic = match raw.quic.as_deref() {
        None | Some("deny") => false,
        Some("allow") => true,
        Some(other) => {
            return Err(Issue::at_value(
                path.key("quic"),
                format!("quic must be allow or deny, not `{other}`"),
            ));
        }
    };
    if !quic && let Some(port) = tls_ports.iter().find(|&&port| allows(port, Protocol::Udp)) {
        let index = ports
            .iter()
            .position(|spec| spec.port == *port && spec.protocol != Protocol::Tcp)
            .unwrap_or(0);
        return Err(Issue::at_value(
            path.key("ports").index(index),
            format!(
                "port {port} is checked for TLS server names, but this entry also allows it over \
                 UDP (QUIC), whose server name is encrypted and cannot be checked in the kernel; \
                 write {port}/tcp (clients fall back to TCP), or set `quic: allow` to let QUIC \
                 through by address only"
            ),
        ));
    }
    Ok(Inspection {
        tls_ports,
        http_ports,
        ech,
        quic,
    })
}
