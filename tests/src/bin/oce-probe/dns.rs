//! `oce-probe dns`: one DNS query over UDP or TCP, no retries.

use std::{
    io::{self, Read as _, Write as _},
    net::SocketAddr,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};
use openclaw_egress_e2e::ProbeOutcome;

use crate::{QueryType, net};

pub(crate) fn query(
    server: SocketAddr,
    name: &str,
    query_type: QueryType,
    over_tcp: bool,
    timeout: Duration,
) -> ProbeOutcome {
    let name = match Name::from_ascii(name) {
        Ok(name) => name,
        Err(err) => return ProbeOutcome::failure(format!("bad name {name:?}: {err}")),
    };
    let record_type = match query_type {
        QueryType::A => RecordType::A,
        QueryType::Aaaa => RecordType::AAAA,
    };
    let mut request = Message::query();
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(name, record_type));
    let id = request.metadata.id;
    let bytes = match request.to_vec() {
        Ok(bytes) => bytes,
        Err(err) => return ProbeOutcome::failure(format!("encoding the query: {err}")),
    };

    let mut local = None;
    let exchanged = if over_tcp {
        exchange_tcp(server, &bytes, timeout, &mut local)
    } else {
        exchange_udp(server, &bytes, id, timeout, &mut local)
    };
    let mut outcome = match exchanged {
        Ok(response) => match Message::from_vec(&response) {
            Ok(response) => describe_response(&response),
            Err(err) => ProbeOutcome::failure(format!("undecodable answer: {err}")),
        },
        Err(err) => ProbeOutcome::failure(net::describe(&err)),
    };
    outcome.local = local;
    outcome
}

fn describe_response(response: &Message) -> ProbeOutcome {
    let rcode = rcode_name(response.metadata.response_code);
    let mut outcome = ProbeOutcome::success(rcode.clone());
    outcome.rcode = Some(rcode);
    for record in &response.answers {
        match &record.data {
            RData::A(a) => outcome.answers.push(a.0.to_string()),
            RData::AAAA(aaaa) => outcome.answers.push(aaaa.0.to_string()),
            RData::CNAME(cname) => outcome.cnames.push(cname.0.to_ascii()),
            _ => {}
        }
    }
    outcome
}

/// The rcode as written in zone files and dig output.
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".to_owned(),
        ResponseCode::FormErr => "FORMERR".to_owned(),
        ResponseCode::ServFail => "SERVFAIL".to_owned(),
        ResponseCode::NXDomain => "NXDOMAIN".to_owned(),
        ResponseCode::NotImp => "NOTIMP".to_owned(),
        ResponseCode::Refused => "REFUSED".to_owned(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

fn exchange_udp(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    timeout: Duration,
    local: &mut Option<SocketAddr>,
) -> io::Result<Vec<u8>> {
    let socket = net::udp_socket_to(server, local)?;
    *local = socket.local_addr().ok();
    socket.send(request)?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0; 65535];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        socket.set_read_timeout(Some(remaining))?;
        let len = socket.recv(&mut buf)?;
        // Skip anything that is not the answer to this query.
        if len >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            return Ok(buf[..len].to_vec());
        }
    }
}

fn exchange_tcp(
    server: SocketAddr,
    request: &[u8],
    timeout: Duration,
    local: &mut Option<SocketAddr>,
) -> io::Result<Vec<u8>> {
    let (bound, connected) = net::connect_tcp(server, timeout);
    *local = bound;
    let mut stream = connected?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // DNS over TCP: each message is preceded by its length (RFC 1035 4.2.2).
    let len = u16::try_from(request.len()).map_err(io::Error::other)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(request);
    stream.write_all(&framed)?;
    let mut len = [0; 2];
    stream.read_exact(&mut len)?;
    let mut response = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut response)?;
    Ok(response)
}
