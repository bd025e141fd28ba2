//! `spec.egress`: the allow rules.

use super::{
    cidr,
    error::Issue,
    inspection,
    model::{EgressRule, Target},
    names,
    path::FieldPath,
    ports,
    raw::RawRule,
};

pub(super) fn rules(raw: Vec<RawRule>, path: &FieldPath) -> Result<Vec<EgressRule>, Issue> {
    raw.into_iter()
        .enumerate()
        .map(|(i, rule)| self::rule(rule, &path.index(i)))
        .collect()
}

fn rule(raw: RawRule, path: &FieldPath) -> Result<EgressRule, Issue> {
    let at = |key: &'static str| move |message| Issue::at_value(path.key(key), message);
    let several = |given: &str| {
        let message = format!(
            "the rule sets {given}, but a rule has exactly one target; split it into one rule per target"
        );
        Err(Issue::at_value(path.clone(), message))
    };
    let target = match (&raw.fqdn, &raw.fqdn_pattern, &raw.cidr) {
        (Some(name), None, None) => names::fqdn(name).map(Target::Fqdn).map_err(at("fqdn"))?,
        (None, Some(pattern), None) => names::pattern(pattern)
            .map(Target::Pattern)
            .map_err(at("fqdnPattern"))?,
        (None, None, Some(cidr)) => cidr::cidr(cidr).map(Target::Cidr).map_err(at("cidr"))?,
        (None, None, None) => {
            let message = "the rule has no target; set one of fqdn, fqdnPattern or cidr";
            return Err(Issue::at_value(path.clone(), message));
        }
        (Some(_), Some(_), None) => return several("`fqdn` and `fqdnPattern`"),
        (Some(_), None, Some(_)) => return several("`fqdn` and `cidr`"),
        (None, Some(_), Some(_)) => return several("`fqdnPattern` and `cidr`"),
        (Some(_), Some(_), Some(_)) => return several("`fqdn`, `fqdnPattern` and `cidr`"),
    };

    if raw.dns_only == Some(true) {
        return dns_only(&raw, target, path);
    }
    let ports_path = path.key("ports");
    let Some(raw_ports) = &raw.ports else {
        // As serde words a missing field, at the rule that lacks it.
        return Err(Issue::at_value(path.clone(), "missing field `ports`"));
    };
    if raw_ports.is_empty() {
        return Err(Issue::at_key(
            ports_path,
            "ports must not be empty; list the ports to allow, e.g. [443/tcp]",
        ));
    }
    if raw_ports.len() > EgressRule::MAX_PORTS {
        return Err(Issue::at_key(
            ports_path,
            format!(
                "a rule allows at most {} ports, this one lists {}; split it into several rules",
                EgressRule::MAX_PORTS,
                raw_ports.len()
            ),
        ));
    }
    let ports: Vec<_> = raw_ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            ports::port_spec(port).map_err(|message| Issue::at_value(ports_path.index(i), message))
        })
        .collect::<Result<_, _>>()?;
    let inspection = inspection::inspection(&raw, &target, &ports, path)?;
    Ok(EgressRule {
        target,
        ports,
        inspection,
    })
}

/// A `dnsOnly: true` rule: its names may be asked of the resolvers, and
/// nothing else. Everything that would allow or check a connection is
/// refused by name rather than ignored, so that a reader never believes a
/// rule allows more than it does.
fn dns_only(raw: &RawRule, target: Target, path: &FieldPath) -> Result<EgressRule, Issue> {
    if matches!(target, Target::Cidr(_)) {
        return Err(Issue::at_key(
            path.key("dnsOnly"),
            "dnsOnly applies to fqdn and fqdnPattern rules (it lets their names be resolved); \
             a cidr rule names addresses, not names: remove dnsOnly or use fqdn",
        ));
    }
    if raw.ports.as_ref().is_some_and(|ports| !ports.is_empty()) {
        return Err(Issue::at_key(
            path.key("ports"),
            "a dnsOnly rule allows no connection, so it lists no ports; \
             remove ports, or remove dnsOnly to allow connections on them",
        ));
    }
    let inspection_fields = [
        ("tls", raw.tls.is_some()),
        ("http", raw.http.is_some()),
        ("ech", raw.ech.is_some()),
        ("quic", raw.quic.is_some()),
    ];
    if let Some((key, _)) = inspection_fields.iter().find(|(_, set)| *set) {
        return Err(Issue::at_key(
            path.key(key),
            format!("{key} checks connections, and a dnsOnly rule allows none; remove {key}"),
        ));
    }
    Ok(EgressRule::new(target, Vec::new()))
}

/// The key a rule's target was written under, for pointing at it.
pub(super) fn target_key(target: &Target) -> &'static str {
    match target {
        Target::Fqdn(_) => "fqdn",
        Target::Pattern(_) => "fqdnPattern",
        Target::Cidr(_) => "cidr",
    }
}
