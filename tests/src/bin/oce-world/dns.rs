//! The world's authoritative DNS server (UDP and TCP).

use std::{
    collections::HashMap,
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    thread,
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME},
    },
};

use crate::{fresh::FreshIps, tricks::Tricks};

/// How long a CNAME chain may be before it counts as a loop.
const MAX_CNAME_CHAIN: usize = 8;

/// Names are compared case-insensitively and without the trailing dot.
pub(crate) fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The zone: A/AAAA records, CNAMEs and fresh-IP names.
pub(crate) struct Zone {
    records: HashMap<String, Vec<IpAddr>>,
    cnames: HashMap<String, String>,
    fresh: FreshIps,
    pub(crate) ttl: u32,
}

impl Zone {
    pub(crate) fn new(
        records: Vec<(String, IpAddr)>,
        cnames: Vec<(String, String)>,
        fresh: FreshIps,
        ttl: u32,
    ) -> Self {
        let mut by_name: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (name, ip) in records {
            by_name.entry(key(&name)).or_default().push(ip);
        }
        Self {
            records: by_name,
            cnames: cnames
                .into_iter()
                .map(|(alias, target)| (key(&alias), target))
                .collect(),
            fresh,
            ttl,
        }
    }

    /// The rcode and answer records for one question.
    fn resolve(&self, qname: &Name, qtype: RecordType) -> (ResponseCode, Vec<Record>) {
        let mut answers = Vec::new();
        let mut owner = qname.clone();
        for _ in 0..MAX_CNAME_CHAIN {
            let owner_key = key(&owner.to_ascii());
            if let Some(target) = self.cnames.get(&owner_key) {
                let Ok(mut target) = Name::from_ascii(target) else {
                    return (ResponseCode::ServFail, answers);
                };
                target.set_fqdn(true);
                answers.push(self.record(&owner, RData::CNAME(CNAME(target.clone()))));
                if qtype == RecordType::CNAME {
                    return (ResponseCode::NoError, answers);
                }
                owner = target;
                continue;
            }
            if self.fresh.serves(&owner_key) {
                let wanted = match qtype {
                    RecordType::A => Some(false),
                    RecordType::AAAA => Some(true),
                    _ => None,
                };
                if let Some(ipv6) = wanted {
                    match self.fresh.allocate(&owner_key, ipv6) {
                        Ok(Some(ip)) => answers.push(self.address_record(&owner, ip)),
                        Ok(None) => {}
                        Err(err) => {
                            eprintln!("oce-world: fresh IP for {owner_key}: {err:#}");
                            return (ResponseCode::ServFail, answers);
                        }
                    }
                }
                return (ResponseCode::NoError, answers);
            }
            let Some(ips) = self.records.get(&owner_key) else {
                return (ResponseCode::NXDomain, answers);
            };
            // A known name without records of the asked type: NOERROR with
            // an empty answer ("NODATA").
            answers.extend(
                ips.iter()
                    .filter(|ip| match qtype {
                        RecordType::A => ip.is_ipv4(),
                        RecordType::AAAA => ip.is_ipv6(),
                        _ => false,
                    })
                    .map(|ip| self.address_record(&owner, *ip)),
            );
            return (ResponseCode::NoError, answers);
        }
        (ResponseCode::ServFail, answers)
    }

    fn record(&self, owner: &Name, data: RData) -> Record {
        Record::from_rdata(owner.clone(), self.ttl, data)
    }

    fn address_record(&self, owner: &Name, ip: IpAddr) -> Record {
        match ip {
            IpAddr::V4(v4) => self.record(owner, RData::A(A(v4))),
            IpAddr::V6(v6) => self.record(owner, RData::AAAA(AAAA(v6))),
        }
    }

    /// The wire-format answer to a wire-format query, or `None` if there is
    /// nothing sensible to answer (not a query, no readable id).
    pub(crate) fn answer(
        &self,
        request: &[u8],
        proto: &str,
        client: SocketAddr,
    ) -> Option<Vec<u8>> {
        let request = match Message::from_vec(request) {
            Ok(request) => request,
            Err(err) => {
                eprintln!("oce-world: undecodable DNS message from {client}: {err}");
                let line = serde_json::json!({
                    "event": "dns-undecodable",
                    "proto": proto,
                    "client": client.to_string(),
                    "error": err.to_string(),
                });
                eprintln!("{line}");
                let id = u16::from_be_bytes([*request.first()?, *request.get(1)?]);
                let response = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                return response.to_vec().ok();
            }
        };
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.metadata.authoritative = true;
        let Some(query) = request.queries.first() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return response.to_vec().ok();
        };
        response.add_query(query.clone());
        let (rcode, answers) = self.resolve(query.name(), query.query_type());
        log_query(
            proto,
            client,
            query.name(),
            query.query_type(),
            rcode,
            &answers,
        );
        response.metadata.response_code = rcode;
        response.add_answers(answers);
        match response.to_vec() {
            Ok(bytes) => Some(bytes),
            Err(err) => {
                eprintln!("oce-world: encoding the answer: {err}");
                None
            }
        }
    }
}

/// One JSON line per query on stderr (parsed by the harness's `World`).
fn log_query(
    proto: &str,
    client: SocketAddr,
    name: &Name,
    qtype: RecordType,
    rcode: ResponseCode,
    answers: &[Record],
) {
    let answers: Vec<String> = answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(aaaa) => Some(aaaa.0.to_string()),
            RData::CNAME(cname) => Some(cname.0.to_ascii()),
            _ => None,
        })
        .collect();
    let mut name = name.to_lowercase();
    name.set_fqdn(true);
    let line = serde_json::json!({
        "event": "dns-query",
        "proto": proto,
        "client": client.to_string(),
        "name": name.to_ascii(),
        "type": qtype.to_string(),
        "rcode": rcode_name(rcode),
        "answers": answers,
    });
    eprintln!("{line}");
}

fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".to_owned(),
        ResponseCode::NXDomain => "NXDOMAIN".to_owned(),
        ResponseCode::ServFail => "SERVFAIL".to_owned(),
        ResponseCode::FormErr => "FORMERR".to_owned(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

/// Answers each datagram; `tricks` may add decoys before the answer,
/// replays after it, and a delay (all off unless asked for).
pub(crate) fn serve_udp(socket: UdpSocket, zone: &'static Zone, tricks: &'static Tricks) {
    let mut buf = vec![0; 65535];
    loop {
        let (len, client) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(err) => {
                eprintln!("oce-world: dns udp: {err}");
                continue;
            }
        };
        let (before, after) = tricks.around(&buf[..len], zone.ttl);
        for decoy in &before {
            let _ = socket.send_to(decoy, client);
        }
        if let Some(answer) = zone.answer(&buf[..len], "udp", client) {
            if let Some(delay) = tricks.delay {
                thread::sleep(delay);
            }
            let _ = socket.send_to(&answer, client);
        }
        for replay in &after {
            let _ = socket.send_to(replay, client);
        }
    }
}

pub(crate) fn serve_tcp(listener: TcpListener, zone: &'static Zone) {
    for stream in listener.incoming().flatten() {
        thread::spawn(move || serve_tcp_connection(stream, zone));
    }
}

/// Length-prefixed messages (RFC 1035 4.2.2) until the client closes.
fn serve_tcp_connection(mut stream: TcpStream, zone: &Zone) {
    let Ok(client) = stream.peer_addr() else {
        return;
    };
    loop {
        let mut len = [0; 2];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let mut request = vec![0; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut request).is_err() {
            return;
        }
        let Some(answer) = zone.answer(&request, "tcp", client) else {
            return;
        };
        let Ok(answer_len) = u16::try_from(answer.len()) else {
            return;
        };
        let mut framed = answer_len.to_be_bytes().to_vec();
        framed.extend_from_slice(&answer);
        if stream.write_all(&framed).is_err() {
            return;
        }
    }
}
