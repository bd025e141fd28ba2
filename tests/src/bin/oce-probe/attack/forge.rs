//! Unsolicited DNS answers: a forger that sends one from any source, and a
//! socket that waits for whatever arrives.

use std::{
    io::{self, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use hickory_proto::{op::Message, rr::RData};
use openclaw_egress_e2e::ProbeOutcome;

use crate::{QueryType, dns_wire, net, packet, print_json};

/// `forge-answer`: one response for (`name`, `query_type`) carrying
/// `answer`, from `from` to `to`, through a raw IP socket (header
/// included, so the source address is `from`'s whatever this netns owns).
pub(super) fn answer(
    from: SocketAddr,
    to: SocketAddr,
    name: &str,
    query_type: QueryType,
    answer: IpAddr,
    id: u16,
    ttl: u32,
) -> ProbeOutcome {
    let Some(message) = dns_wire::response(id, name, query_type.code(), answer, ttl) else {
        return ProbeOutcome::failure(format!("cannot encode {name:?}"));
    };
    let segment = packet::udp(from, to, &message, None);
    let packet = match (from.ip(), to.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            packet::ipv4(src, dst, packet::PROTO_UDP, &[], &segment)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            packet::ipv6(src, dst, packet::PROTO_UDP, None, &segment)
        }
        _ => return ProbeOutcome::failure("--from and --to must be of one family"),
    };
    let mut outcome = match packet::send_raw_ip(&packet, to.ip()) {
        Ok(sent) => ProbeOutcome::success(format!("sent {sent} bytes")),
        Err(err) => ProbeOutcome::failure(net::describe(&err)),
    };
    outcome.local = Some(from);
    outcome
}

/// `udp-listen`.
pub(super) fn listen(duration: Duration, ipv6: bool) -> ProbeOutcome {
    let any: SocketAddr = if ipv6 {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket = match UdpSocket::bind(any) {
        Ok(socket) => socket,
        Err(err) => return ProbeOutcome::failure(net::describe(&err)),
    };
    let local = socket.local_addr().ok();
    let mut ready = ProbeOutcome::success("listening");
    ready.local = local;
    print_json(&ready);
    let _ = io::stdout().flush();

    let mut outcome = match receive(&socket, duration, local) {
        Ok((count, answers)) => {
            let mut outcome = ProbeOutcome::success(format!("received {count}"));
            outcome.other_responses = count;
            outcome.answers = answers;
            outcome
        }
        Err(err) => ProbeOutcome::failure(net::describe(&err)),
    };
    outcome.local = local;
    outcome
}

/// Datagrams received within `duration`, and the A/AAAA addresses of the
/// DNS responses among them. Each datagram is also reported at once, as a
/// line with `detail: "received"` and its addresses.
fn receive(
    socket: &UdpSocket,
    duration: Duration,
    local: Option<SocketAddr>,
) -> io::Result<(u32, Vec<String>)> {
    let end = Instant::now() + duration;
    let mut buf = vec![0; 65535];
    let mut count = 0;
    let mut all = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok((count, all));
        }
        socket.set_read_timeout(Some(left))?;
        let len = match socket.recv(&mut buf) {
            Ok(len) => len,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok((count, all));
            }
            Err(err) => return Err(err),
        };
        count += 1;
        let mut answers = Vec::new();
        if let Ok(message) = Message::from_vec(&buf[..len]) {
            for record in &message.answers {
                match &record.data {
                    RData::A(a) => answers.push(a.0.to_string()),
                    RData::AAAA(aaaa) => answers.push(aaaa.0.to_string()),
                    _ => {}
                }
            }
        }
        let mut line = ProbeOutcome::success("received");
        line.answers = answers.clone();
        line.local = local;
        print_json(&line);
        let _ = io::stdout().flush();
        all.extend(answers);
    }
}
