//! Turning the records a learner receives into [`Observations`]: which
//! names were asked, which addresses their answers carried, and where the
//! workload connected (with the names that produced each address).

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    time::SystemTime,
};

use super::observations::{Connection, Destination, Observations, Question, Seen, Transport};
use crate::api::{FlowRecord, dns_types};

/// Drop reasons that are about a connection to a destination (rather than
/// about DNS, or a packet no rule could allow whatever it says).
const CONNECTION_REASONS: [&str; 9] = [
    "allowed",
    "no_rule",
    "expired",
    "sni_denied",
    "sni_missing",
    "tls_malformed",
    "host_denied",
    "ech_denied",
    "contended",
];

pub struct Recorder {
    observations: Observations,
    /// The names whose answers carried each address, so far.
    answered: HashMap<IpAddr, BTreeSet<String>>,
    /// What could not become a rule, once each (for the operator).
    notes: BTreeSet<String>,
}

impl Recorder {
    pub fn new(resolvers: Vec<IpAddr>) -> Self {
        Self {
            observations: Observations {
                resolvers,
                ..Observations::default()
            },
            answered: HashMap::new(),
            notes: BTreeSet::new(),
        }
    }

    pub fn record(&mut self, record: &FlowRecord) {
        let at = humantime::parse_rfc3339_weak(&record.time).unwrap_or_else(|_| SystemTime::now());
        match (record.stage.as_str(), &record.dns_name) {
            ("dns_answer", Some(name)) => {
                if let Some(addr) = record.dst {
                    self.answered.entry(addr).or_default().insert(name.clone());
                }
            }
            ("dns_question", Some(name)) => self.question(name, record, at),
            ("packet", Some(name)) if record.reason == "dns_denied" => {
                self.question(name, record, at)
            }
            ("packet" | "connect", _) => self.connection(record, at),
            _ => {}
        }
    }

    fn question(&mut self, name: &str, record: &FlowRecord, at: SystemTime) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let question = self
            .observations
            .questions
            .entry(name)
            .and_modify(|question| question.seen.again(at))
            .or_insert_with(|| Question {
                types: BTreeSet::new(),
                seen: Seen::once(at),
            });
        if let Some(qtype) = record.dns_type.as_deref().and_then(dns_types::number) {
            question.types.insert(qtype);
        }
    }

    fn connection(&mut self, record: &FlowRecord, at: SystemTime) {
        if record.reason == "dns_resolver" {
            if let Some(dst) = record.dst {
                self.notes.insert(format!(
                    "DNS to {dst}, which is not one of the resolvers: add it to spec.dns.resolvers if the workload must ask it"
                ));
            }
            return;
        }
        if !CONNECTION_REASONS.contains(&record.reason.as_str()) {
            if record.reason == "protocol" {
                self.notes.insert(format!(
                    "{} traffic (e.g. to {}): neither TCP nor UDP, which no rule can allow",
                    record.proto,
                    record
                        .dst
                        .map_or_else(|| "?".to_string(), |dst| dst.to_string())
                ));
            }
            return;
        }
        let transport = match record.proto.as_str() {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            _ => return,
        };
        let Some(addr) = record.dst else {
            return;
        };
        // DNS to the resolvers is what `spec.dns.resolvers` allows.
        if record.dst_port == 53 && self.observations.resolvers.contains(&addr) {
            return;
        }
        let mut names = self.answered.get(&addr).cloned().unwrap_or_default();
        if let Some(server_name) = &record.server_name {
            names.insert(server_name.to_ascii_lowercase());
        }
        let destination = Destination {
            addr,
            transport,
            port: record.dst_port,
        };
        self.observations
            .connections
            .entry(destination)
            .and_modify(|connection| {
                connection.seen.again(at);
                connection.names.extend(names.iter().cloned());
            })
            .or_insert_with(|| Connection {
                seen: Seen::once(at),
                names,
            });
    }

    /// What was seen, and what could not become a rule.
    pub fn finish(self) -> (Observations, Vec<String>) {
        (self.observations, self.notes.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(stage: &str, verdict: &str, reason: &str) -> FlowRecord {
        FlowRecord {
            time: "2026-11-29T06:00:00.000Z".into(),
            policy: "learn".into(),
            verdict: verdict.into(),
            reason: reason.into(),
            direction: "egress".into(),
            stage: stage.into(),
            proto: "tcp".into(),
            src: Some("10.77.0.2".parse().unwrap()),
            src_port: 40000,
            dst: Some("203.0.113.20".parse().unwrap()),
            dst_port: 443,
            cgroup_id: 1,
            dns_name: None,
            dns_type: None,
            server_name: None,
            rule: None,
        }
    }

    #[test]
    fn connections_take_the_names_whose_answers_carried_their_address() {
        let mut recorder = Recorder::new(vec!["10.77.0.1".parse().unwrap()]);
        let mut question = record("dns_question", "allowed", "allowed");
        question.dns_name = Some("API.Trusted.test".into());
        question.dns_type = Some("A".into());
        recorder.record(&question);
        let mut denied = record("packet", "audited", "dns_denied");
        denied.dns_name = Some("other.test".into());
        denied.dns_type = Some("AAAA".into());
        recorder.record(&denied);
        let mut answer = record("dns_answer", "allowed", "allowed");
        answer.dns_name = Some("api.trusted.test".into());
        recorder.record(&answer);
        recorder.record(&record("packet", "audited", "no_rule"));
        recorder.record(&record("packet", "audited", "no_rule"));
        let mut direct = record("packet", "allowed", "allowed");
        direct.dst = Some("198.51.100.7".parse().unwrap());
        recorder.record(&direct);
        let mut dns = record("packet", "audited", "no_rule");
        dns.dst = Some("10.77.0.1".parse().unwrap());
        dns.dst_port = 53;
        recorder.record(&dns);

        let (observations, notes) = recorder.finish();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(
            observations.questions["api.trusted.test"].types,
            BTreeSet::from([1])
        );
        assert_eq!(
            observations.questions["other.test"].types,
            BTreeSet::from([28])
        );
        assert_eq!(observations.connections.len(), 2, "{observations:#?}");
        let named = &observations.connections[&Destination {
            addr: "203.0.113.20".parse().unwrap(),
            transport: Transport::Tcp,
            port: 443,
        }];
        assert_eq!(named.seen.count, 2);
        assert_eq!(
            named.names,
            BTreeSet::from(["api.trusted.test".to_string()])
        );
        let direct = &observations.connections[&Destination {
            addr: "198.51.100.7".parse().unwrap(),
            transport: Transport::Tcp,
            port: 443,
        }];
        assert!(direct.names.is_empty());
    }

    #[test]
    fn what_no_rule_can_allow_is_noted_not_proposed() {
        let mut recorder = Recorder::new(vec!["10.77.0.1".parse().unwrap()]);
        let mut ping = record("packet", "audited", "protocol");
        ping.proto = "icmp".into();
        recorder.record(&ping);
        let mut stray_dns = record("packet", "audited", "dns_resolver");
        stray_dns.dst_port = 53;
        recorder.record(&stray_dns);
        let (observations, notes) = recorder.finish();
        assert!(observations.connections.is_empty());
        assert_eq!(notes.len(), 2, "{notes:?}");
    }
}
