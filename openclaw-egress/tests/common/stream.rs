//! A TCP connection through the TC program, segment by segment (the TC
//! program keeps a connection's parser state per flow across test runs).

use std::net::IpAddr;

use openclaw_egress::datapath::frames;
use openclaw_egress_common::{DropReason, Verdict};

use super::{AGENT, Loaded, TC_NEXT, TRUSTED};

/// What [`judge`] sends after the bytes it judges: a TLS application data
/// record (which is no more of a ClientHello, nor an HTTP head's end).
pub const AFTER_HELLO: &[u8] = b"\x17\x03\x03\x00\x01x";

/// A connection through the TC program: a SYN, then data segments at
/// consecutive sequence numbers (or where the test says).
pub struct Connection<'a> {
    loaded: &'a Loaded,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    /// The sequence number of the next new byte.
    next: u32,
}

impl<'a> Connection<'a> {
    pub fn open(loaded: &'a Loaded, src_port: u16, dst: IpAddr, dst_port: u16) -> Self {
        let syn = loaded.run_tc(&frames::tcp_syn(AGENT, src_port, dst, dst_port));
        assert_eq!(syn, TC_NEXT, "the SYN from port {src_port} passes");
        Self {
            loaded,
            dst,
            src_port,
            dst_port,
            next: 1,
        }
    }

    /// Sends `bytes` as the next segment; the program's verdict.
    pub fn send(&mut self, bytes: &[u8]) -> u32 {
        let verdict = self.send_at(self.next, bytes);
        self.next = self.next.wrapping_add(bytes.len() as u32);
        verdict
    }

    pub fn send_at(&self, seq: u32, bytes: &[u8]) -> u32 {
        self.loaded.run_tc(&frames::tcp_data_at(
            AGENT,
            self.src_port,
            self.dst,
            self.dst_port,
            seq,
            bytes,
        ))
    }

    /// Sends `bytes` cut at `cuts` (offsets, increasing); every verdict.
    pub fn send_cut(&mut self, bytes: &[u8], cuts: &[usize]) -> Vec<u32> {
        let mut verdicts = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain([&bytes.len()]) {
            if cut > start {
                verdicts.push(self.send(&bytes[start..cut]));
                start = cut;
            }
        }
        verdicts
    }
}

pub const REFUSED: &str = "refused";

pub fn verdict_name(verdict: u32) -> &'static str {
    if verdict == TC_NEXT {
        "passed"
    } else {
        REFUSED
    }
}

/// The stream `bytes` from a fresh connection, cut at `cuts`: whether every
/// segment passed, or which reason refused it.
pub fn judge(loaded: &Loaded, port: u16, bytes: &[u8], cuts: &[usize]) -> Result<(), DropReason> {
    judge_on(loaded, port, TRUSTED, 443, bytes, cuts)
}

/// Like [`judge`], to `dst`:`dst_port`.
pub fn judge_on(
    loaded: &Loaded,
    port: u16,
    dst: IpAddr,
    dst_port: u16,
    bytes: &[u8],
    cuts: &[usize],
) -> Result<(), DropReason> {
    let before = drop_counts(loaded);
    let mut connection = Connection::open(loaded, port, dst, dst_port);
    let mut verdicts = connection.send_cut(bytes, cuts);
    // What follows the hello passes too once it is allowed.
    verdicts.push(connection.send(AFTER_HELLO));
    if verdicts.iter().all(|v| *v == TC_NEXT) {
        return Ok(());
    }
    let after = drop_counts(loaded);
    let reason = DropReason::ALL
        .into_iter()
        .find(|reason| after[*reason as usize] > before[*reason as usize])
        .expect("a refusal is counted");
    Err(reason)
}

pub fn drop_counts(loaded: &Loaded) -> Vec<u64> {
    DropReason::ALL
        .into_iter()
        .map(|reason| loaded.count(Verdict::Dropped, reason))
        .collect()
}
