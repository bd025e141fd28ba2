//! A DNS server that lies a little, to test what an enforcer learns from
//! answers: decoy responses that do not answer the query (another ID, name
//! or type) sent before the genuine answer, replays of the answer with
//! another address sent after it, and a delay before the genuine answer.
//! UDP only: that is where an off-path attacker can inject.

use std::{net::IpAddr, str::FromStr, time::Duration};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA},
    },
};

use crate::dns::key;

/// How a decoy differs from the genuine answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// What a decoy gets wrong.
pub(crate) enum DecoyKind {
    /// Another DNS ID, same question.
    Id,
    /// Same ID, the question's first label with `-decoy` appended.
    Name,
    /// Same ID and name, the question's type swapped between A and AAAA.
    Type,
}

impl FromStr for DecoyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "wrong-id" => Ok(Self::Id),
            "wrong-name" => Ok(Self::Name),
            "wrong-type" => Ok(Self::Type),
            other => Err(format!(
                "{other:?}: want wrong-id, wrong-name or wrong-type"
            )),
        }
    }
}

impl DecoyKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Id => "wrong-id",
            Self::Name => "wrong-name",
            Self::Type => "wrong-type",
        }
    }
}

/// `--dns-decoy KIND:NAME=IP`.
pub(crate) fn parse_decoy(arg: &str) -> Result<(DecoyKind, String, IpAddr), String> {
    let (kind, rest) = arg
        .split_once(':')
        .ok_or_else(|| format!("{arg:?} is not KIND:NAME=IP"))?;
    let (name, ip) = rest
        .split_once('=')
        .ok_or_else(|| format!("{arg:?} is not KIND:NAME=IP"))?;
    Ok((
        kind.parse()?,
        name.to_owned(),
        ip.parse().map_err(|e| format!("{ip:?}: {e}"))?,
    ))
}

/// What the UDP server does around each genuine answer.
#[derive(Default)]
pub(crate) struct Tricks {
    pub(crate) decoys: Vec<(DecoyKind, String, IpAddr)>,
    pub(crate) replays: Vec<(String, IpAddr)>,
    pub(crate) delay: Option<Duration>,
}

impl Tricks {
    /// The responses to send before the genuine answer to `request`, and
    /// those to send after it. Each is logged as a JSON line
    /// (`{"event":"dns-decoy"|"dns-replay",...}`).
    pub(crate) fn around(&self, request: &[u8], ttl: u32) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let Ok(request) = Message::from_vec(request) else {
            return Default::default();
        };
        if request.metadata.message_type != MessageType::Query {
            return Default::default();
        }
        let Some(query) = request.queries.first() else {
            return Default::default();
        };
        let asked = key(&query.name().to_ascii());
        let id = request.metadata.id;
        let mut before = Vec::new();
        for (kind, _, ip) in self.decoys.iter().filter(|(_, n, _)| key(n) == asked) {
            let (id, name, qtype) = match kind {
                DecoyKind::Id => (id ^ 0x5a5a, query.name().clone(), query.query_type()),
                DecoyKind::Name => {
                    let Some(name) = decoy_name(query.name()) else {
                        continue;
                    };
                    (id, name, query.query_type())
                }
                DecoyKind::Type => {
                    let swapped = if query.query_type() == RecordType::AAAA {
                        RecordType::A
                    } else {
                        RecordType::AAAA
                    };
                    (id, query.name().clone(), swapped)
                }
            };
            if let Some(bytes) = response(id, &request, &name, qtype, *ip, ttl) {
                log("dns-decoy", Some(kind.as_str()), &name, qtype, id, *ip);
                before.push(bytes);
            }
        }
        let mut after = Vec::new();
        for (_, ip) in self.replays.iter().filter(|(n, _)| key(n) == asked) {
            let (name, qtype) = (query.name().clone(), query.query_type());
            if let Some(bytes) = response(id, &request, &name, qtype, *ip, ttl) {
                log("dns-replay", None, &name, qtype, id, *ip);
                after.push(bytes);
            }
        }
        (before, after)
    }
}

/// `mirror.pkg.test` -> `mirror-decoy.pkg.test`: another name under the
/// same parent, so a wildcard that allows the asked name allows it too.
fn decoy_name(name: &Name) -> Option<Name> {
    let text = name.to_ascii();
    let (first, rest) = text.split_once('.')?;
    let mut decoy = Name::from_ascii(format!("{first}-decoy.{rest}")).ok()?;
    decoy.set_fqdn(true);
    Some(decoy)
}

/// A response with ID `id`, one question (`name`, `qtype`) and one answer
/// record for `name` carrying `ip` (an A or AAAA record by its family,
/// whatever the question's type).
fn response(
    id: u16,
    request: &Message,
    name: &Name,
    qtype: RecordType,
    ip: IpAddr,
    ttl: u32,
) -> Option<Vec<u8>> {
    let mut response = Message::response(id, OpCode::Query);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    response.add_query(Query::query(name.clone(), qtype));
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    response.add_answer(Record::from_rdata(name.clone(), ttl, data));
    response.to_vec().ok()
}

fn log(event: &str, kind: Option<&str>, name: &Name, qtype: RecordType, id: u16, ip: IpAddr) {
    let line = serde_json::json!({
        "event": event,
        "kind": kind,
        "name": name.to_ascii(),
        "type": qtype.to_string(),
        "id": id,
        "ip": ip.to_string(),
    });
    eprintln!("{line}");
}
