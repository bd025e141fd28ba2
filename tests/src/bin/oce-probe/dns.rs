//! `oce-probe dns`: one DNS query over UDP or TCP, no retries.

use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, UdpSocket},
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
    query_lingering(server, name, query_type, over_tcp, timeout, Duration::ZERO)
}

/// [`query`], keeping a UDP socket open for `linger` after the answer and
/// counting what else reaches it (in `other_responses`), e.g. a replayed
/// answer.
pub(crate) fn query_lingering(
    server: SocketAddr,
    name: &str,
    query_type: QueryType,
    over_tcp: bool,
    timeout: Duration,
    linger: Duration,
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
    request.add_query(Query::query(name.clone(), record_type));
    let id = request.metadata.id;
    let question = (name, record_type);
    let bytes = match request.to_vec() {
        Ok(bytes) => bytes,
        Err(err) => return ProbeOutcome::failure(format!("encoding the query: {err}")),
    };

    let mut local = None;
    let mut others = 0;
    let exchanged = if over_tcp {
        exchange_tcp(server, &bytes, timeout, &mut local)
    } else {
        net::udp_socket_to(server, &mut local).and_then(|socket| {
            local = socket.local_addr().ok();
            socket.send(&bytes)?;
            let (answer, other) = await_answer(&socket, id, &question, timeout, linger)?;
            others = other;
            Ok(answer)
        })
    };
    let mut outcome = match exchanged {
        Ok(response) => match Message::from_vec(&response) {
            Ok(response) => describe_response(&response),
            Err(err) => ProbeOutcome::failure(format!("undecodable answer: {err}")),
        },
        Err(err) => ProbeOutcome::failure(net::describe(&err)),
    };
    outcome.local = local;
    outcome.other_responses = others;
    outcome
}

pub(crate) fn describe_response(response: &Message) -> ProbeOutcome {
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

/// Reads from `socket` until the answer to query `id` for `question`
/// arrives (or `timeout`), then for `linger` more; returns the answer and
/// how many other datagrams arrived meanwhile. Anything that is not the
/// answer is skipped: another ID, or a response whose question is not the
/// one asked (a response without a question, e.g. FORMERR, counts as the
/// answer if its ID matches).
pub(crate) fn await_answer(
    socket: &UdpSocket,
    id: u16,
    question: &(Name, RecordType),
    timeout: Duration,
    linger: Duration,
) -> io::Result<(Vec<u8>, u32)> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0; 65535];
    let mut others = 0;
    let answer = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        socket.set_read_timeout(Some(remaining))?;
        let len = socket.recv(&mut buf)?;
        if is_answer_to(&buf[..len], id, question) {
            break buf[..len].to_vec();
        }
        others += 1;
    };
    let linger_end = Instant::now() + linger;
    loop {
        let remaining = linger_end.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        socket.set_read_timeout(Some(remaining))?;
        match socket.recv(&mut buf) {
            Ok(_) => others += 1,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(err) => return Err(err),
        }
    }
    Ok((answer, others))
}

fn is_answer_to(message: &[u8], id: u16, (name, qtype): &(Name, RecordType)) -> bool {
    if message.len() < 2 || u16::from_be_bytes([message[0], message[1]]) != id {
        return false;
    }
    match Message::from_vec(message) {
        Ok(response) => response
            .queries
            .first()
            .is_none_or(|q| q.query_type() == *qtype && q.name().eq_ignore_root(name)),
        Err(_) => true,
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
