//! Hand-built Ethernet frames for running the programs with
//! `BPF_PROG_TEST_RUN` (unit tests of the kernel side, and per-packet
//! benchmarks). Checksums are left zero: the programs never look at them.

use std::net::IpAddr;

use openclaw_egress_common::proto;

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];

/// A TCP SYN from `src:src_port` to `dst:dst_port`.
pub fn tcp_syn(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Vec<u8> {
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&src_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    tcp[12] = 5 << 4; // data offset: 5 words
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    ip_frame(src, dst, proto::TCP, &tcp)
}

/// A UDP datagram carrying `payload`.
pub fn udp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&src_port.to_be_bytes());
    udp.extend_from_slice(&dst_port.to_be_bytes());
    udp.extend_from_slice(
        &u16::try_from(8 + payload.len())
            .expect("small payload")
            .to_be_bytes(),
    );
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    ip_frame(src, dst, proto::UDP, &udp)
}

/// An Ethernet frame with an IPv4 or IPv6 header (by the family of the
/// addresses, which must match) around `transport`.
pub fn ip_frame(src: IpAddr, dst: IpAddr, protocol: u8, transport: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            frame.extend_from_slice(&ETHERTYPE_IPV4);
            let total = u16::try_from(20 + transport.len()).expect("small packet");
            frame.extend_from_slice(&[0x45, 0]);
            frame.extend_from_slice(&total.to_be_bytes());
            frame.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0]);
            frame.extend_from_slice(&src.octets());
            frame.extend_from_slice(&dst.octets());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            frame.extend_from_slice(&ETHERTYPE_IPV6);
            let payload = u16::try_from(transport.len()).expect("small packet");
            frame.extend_from_slice(&[0x60, 0, 0, 0]);
            frame.extend_from_slice(&payload.to_be_bytes());
            frame.extend_from_slice(&[protocol, 64]);
            frame.extend_from_slice(&src.octets());
            frame.extend_from_slice(&dst.octets());
        }
        _ => panic!("source and destination must be of the same family"),
    }
    frame.extend_from_slice(transport);
    frame
}

/// DNS messages, well-formed or deliberately not.
pub mod dns {
    use std::net::IpAddr;

    pub const TYPE_A: u16 = 1;
    pub const TYPE_CNAME: u16 = 5;
    pub const TYPE_AAAA: u16 = 28;

    /// A name in wire format (no compression), root label included.
    pub fn name(name: &str) -> Vec<u8> {
        let mut wire = Vec::new();
        for label in name
            .trim_end_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
        {
            wire.push(u8::try_from(label.len()).expect("label fits a length byte"));
            wire.extend_from_slice(label.as_bytes());
        }
        wire.push(0);
        wire
    }

    /// A standard query with one question.
    pub fn query(id: u16, qname: &str, qtype: u16) -> Vec<u8> {
        query_raw(id, &name(qname), qtype)
    }

    /// A query whose question name is given in wire format, as is.
    pub fn query_raw(id: u16, wire_name: &[u8], qtype: u16) -> Vec<u8> {
        let mut message = header(id, 0x0100, 1, 0);
        message.extend_from_slice(wire_name);
        message.extend_from_slice(&qtype.to_be_bytes());
        message.extend_from_slice(&1u16.to_be_bytes());
        message
    }

    /// One answer record; owner names are compression pointers to the question.
    pub enum Record {
        Address { ip: IpAddr, ttl: u32 },
        Cname { target: String, ttl: u32 },
    }

    /// A NOERROR response to `qname` with `records` in the answer section.
    pub fn response(id: u16, qname: &str, qtype: u16, records: &[Record]) -> Vec<u8> {
        let count = u16::try_from(records.len()).expect("few records");
        let mut message = header(id, 0x8180, 1, count);
        message.extend_from_slice(&name(qname));
        message.extend_from_slice(&qtype.to_be_bytes());
        message.extend_from_slice(&1u16.to_be_bytes());
        for record in records {
            // Pointer to the question name at offset 12.
            message.extend_from_slice(&[0xc0, 12]);
            let (rtype, ttl, rdata) = match record {
                Record::Address {
                    ip: IpAddr::V4(ip),
                    ttl,
                } => (TYPE_A, *ttl, ip.octets().to_vec()),
                Record::Address {
                    ip: IpAddr::V6(ip),
                    ttl,
                } => (TYPE_AAAA, *ttl, ip.octets().to_vec()),
                Record::Cname { target, ttl } => (TYPE_CNAME, *ttl, name(target)),
            };
            message.extend_from_slice(&rtype.to_be_bytes());
            message.extend_from_slice(&1u16.to_be_bytes());
            message.extend_from_slice(&ttl.to_be_bytes());
            let len = u16::try_from(rdata.len()).expect("small rdata");
            message.extend_from_slice(&len.to_be_bytes());
            message.extend_from_slice(&rdata);
        }
        message
    }

    fn header(id: u16, flags: u16, questions: u16, answers: u16) -> Vec<u8> {
        let mut header = Vec::with_capacity(512);
        header.extend_from_slice(&id.to_be_bytes());
        header.extend_from_slice(&flags.to_be_bytes());
        header.extend_from_slice(&questions.to_be_bytes());
        header.extend_from_slice(&answers.to_be_bytes());
        header.extend_from_slice(&[0, 0, 0, 0]);
        header
    }

    /// `message` with the 2-byte length prefix of DNS over TCP.
    pub fn tcp_framed(message: &[u8]) -> Vec<u8> {
        let mut framed = u16::try_from(message.len())
            .expect("small message")
            .to_be_bytes()
            .to_vec();
        framed.extend_from_slice(message);
        framed
    }
}

/// A TCP segment (ACK+PSH) carrying `payload`, the first after a
/// [`tcp_syn`] (whose sequence number is 0).
pub fn tcp_data(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    tcp_data_at(src, src_port, dst, dst_port, 1, payload)
}

/// A TCP segment (ACK+PSH) carrying `payload` at sequence number `seq`.
pub fn tcp_data_at(
    src: IpAddr,
    src_port: u16,
    dst: IpAddr,
    dst_port: u16,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[0..2].copy_from_slice(&src_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // ACK, PSH
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    tcp.extend_from_slice(payload);
    ip_frame(src, dst, proto::TCP, &tcp)
}

/// TLS ClientHellos and HTTP requests, as a client's first bytes. (A file
/// of its own with no dependencies: `oce-probe` includes it too.)
pub mod tls;
