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
