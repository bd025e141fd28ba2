//! DNS messages written byte by byte, for queries and answers that a DNS
//! library would refuse to build: bytes after the question, extra records,
//! oversized EDNS options, forged responses.

use std::net::IpAddr;

use crate::QueryType;

pub(crate) const TYPE_A: u16 = 1;
pub(crate) const TYPE_AAAA: u16 = 28;
const TYPE_TXT: u16 = 16;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// EDNS0 COOKIE (RFC 7873).
const OPTION_COOKIE: u16 = 10;
/// An option code from the range for local and experimental use (RFC
/// 6891 9): what a tunnel would carry its data in.
const OPTION_LOCAL: u16 = 65001;
/// The DO bit, in the OPT record's TTL field.
const DO_BIT: u32 = 0x8000;

impl QueryType {
    pub(crate) fn code(self) -> u16 {
        match self {
            QueryType::A => TYPE_A,
            QueryType::Aaaa => TYPE_AAAA,
        }
    }
}

/// What a crafted query carries besides its one question.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extras {
    /// A TXT record for `x.attacker.example` in the additional section (a
    /// non-OPT additional record).
    pub(crate) extra_record: bool,
    /// An EDNS0 OPT record.
    pub(crate) opt: bool,
    /// Set the DO bit in the OPT record.
    pub(crate) opt_do: bool,
    /// An 8-byte client COOKIE option in the OPT record.
    pub(crate) opt_cookie: bool,
    /// An option of this many bytes (code 65001, filled with `X`).
    pub(crate) opt_option_len: Option<usize>,
    /// Bytes (`S`) after everything else: after the question, or after the
    /// OPT record if there is one.
    pub(crate) trailing: usize,
    /// The question's class instead of IN.
    pub(crate) qclass: Option<u16>,
    /// The OPT record's owner name instead of the root.
    pub(crate) opt_owner: Option<String>,
    /// The OPT record's TTL field (extended RCODE, version, flags) instead
    /// of 0 or the DO bit.
    pub(crate) opt_ttl: Option<u32>,
}

/// `name` in wire format (labels, root label), or `None` if a label is
/// empty or longer than 63 bytes.
pub(crate) fn encode_name(name: &str) -> Option<Vec<u8>> {
    let mut wire = Vec::with_capacity(name.len() + 2);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    Some(wire)
}

fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut header = Vec::with_capacity(12);
    header.extend_from_slice(&id.to_be_bytes());
    header.extend_from_slice(&flags.to_be_bytes());
    for count in counts {
        header.extend_from_slice(&count.to_be_bytes());
    }
    header
}

/// A standard query (RD set) for `name` and `qtype` with `extras`.
pub(crate) fn query(id: u16, name: &str, qtype: u16, extras: &Extras) -> Option<Vec<u8>> {
    let opt = extras.opt
        || extras.opt_do
        || extras.opt_cookie
        || extras.opt_option_len.is_some()
        || extras.opt_owner.is_some()
        || extras.opt_ttl.is_some();
    let additionals = u16::from(extras.extra_record) + u16::from(opt);
    let mut message = header(id, 0x0100, [1, 0, 0, additionals]);
    message.extend_from_slice(&encode_name(name)?);
    message.extend_from_slice(&qtype.to_be_bytes());
    message.extend_from_slice(&extras.qclass.unwrap_or(CLASS_IN).to_be_bytes());
    if extras.extra_record {
        let data = b"smuggled-in-an-additional-record";
        message.extend_from_slice(&encode_name("x.attacker.example")?);
        message.extend_from_slice(&TYPE_TXT.to_be_bytes());
        message.extend_from_slice(&CLASS_IN.to_be_bytes());
        message.extend_from_slice(&0u32.to_be_bytes());
        message.extend_from_slice(&((data.len() + 1) as u16).to_be_bytes());
        message.push(data.len() as u8);
        message.extend_from_slice(data);
    }
    if opt {
        let mut rdata = Vec::new();
        if extras.opt_cookie {
            rdata.extend_from_slice(&OPTION_COOKIE.to_be_bytes());
            rdata.extend_from_slice(&8u16.to_be_bytes());
            rdata.extend_from_slice(b"c00k1e!!");
        }
        if let Some(len) = extras.opt_option_len {
            rdata.extend_from_slice(&OPTION_LOCAL.to_be_bytes());
            rdata.extend_from_slice(&(len as u16).to_be_bytes());
            rdata.extend(std::iter::repeat_n(b'X', len));
        }
        match &extras.opt_owner {
            Some(owner) => message.extend_from_slice(&encode_name(owner)?),
            None => message.push(0), // The root.
        }
        message.extend_from_slice(&TYPE_OPT.to_be_bytes());
        message.extend_from_slice(&1232u16.to_be_bytes()); // UDP payload size.
        let ttl = extras
            .opt_ttl
            .unwrap_or(if extras.opt_do { DO_BIT } else { 0 });
        message.extend_from_slice(&ttl.to_be_bytes());
        message.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        message.extend_from_slice(&rdata);
    }
    message.extend(std::iter::repeat_n(b'S', extras.trailing));
    Some(message)
}

/// A response (QR, AA, RD, RA; NOERROR) with ID `id`, the question
/// (`name`, `qtype`) and one answer record for it carrying `ip` (A or AAAA
/// by the address family), TTL `ttl`.
pub(crate) fn response(id: u16, name: &str, qtype: u16, ip: IpAddr, ttl: u32) -> Option<Vec<u8>> {
    let mut message = header(id, 0x8580, [1, 1, 0, 0]);
    message.extend_from_slice(&encode_name(name)?);
    message.extend_from_slice(&qtype.to_be_bytes());
    message.extend_from_slice(&CLASS_IN.to_be_bytes());
    // The owner: a pointer to the question's name at offset 12.
    message.extend_from_slice(&[0xc0, 12]);
    let (rtype, rdata) = match ip {
        IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
        IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
    };
    message.extend_from_slice(&rtype.to_be_bytes());
    message.extend_from_slice(&CLASS_IN.to_be_bytes());
    message.extend_from_slice(&ttl.to_be_bytes());
    message.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    message.extend_from_slice(&rdata);
    Some(message)
}

/// A DNS ID that differs from run to run.
pub(crate) fn random_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    (nanos ^ (std::process::id() << 7)) as u16
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Message;

    use super::*;

    #[test]
    fn a_plain_query_and_its_forged_answer_decode() {
        let query = query(7, "api.example.com", TYPE_A, &Extras::default()).unwrap();
        assert_eq!(query.len(), 12 + 17 + 4);
        let decoded = Message::from_vec(&query).unwrap();
        assert_eq!(decoded.queries[0].name().to_ascii(), "api.example.com.");
        let answer = response(
            7,
            "api.example.com",
            TYPE_A,
            "203.0.113.66".parse().unwrap(),
            60,
        )
        .unwrap();
        let decoded = Message::from_vec(&answer).unwrap();
        assert_eq!(decoded.metadata.id, 7);
        assert_eq!(decoded.answers.len(), 1);
    }

    #[test]
    fn extras_are_where_they_belong() {
        let extras = Extras {
            opt_cookie: true,
            opt_do: true,
            ..Extras::default()
        };
        let q = query(1, "a.test", TYPE_A, &extras).unwrap();
        // Header, question (8 + 4), OPT (11 + 12 of cookie option).
        assert_eq!(q.len(), 12 + 12 + 11 + 12);
        assert_eq!(&q[10..12], &[0, 1], "one additional record");
        let decoded = Message::from_vec(&q).unwrap();
        assert!(decoded.edns.is_some());
        let big = Extras {
            opt_option_len: Some(200),
            trailing: 5,
            ..Extras::default()
        };
        let q = query(1, "a.test", TYPE_A, &big).unwrap();
        assert_eq!(q.len(), 12 + 12 + 11 + 4 + 200 + 5);
        assert!(q.ends_with(b"SSSSS"));
    }
}
