//! `tls-hello`: a ClientHello built by hand (the kernel tests' builder,
//! included by path: the harness does not depend on the daemon's crate),
//! written in as many `send()` calls
//! as asked, so that a test controls how it is cut into segments; then the
//! server's first bytes, or how the connection ended and how soon.

use std::{
    io::{Read as _, Write as _},
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use openclaw_egress_e2e::ProbeOutcome;

use crate::net;

#[allow(dead_code, reason = "the kernel tests use the rest")]
#[path = "../../../../openclaw-egress/src/datapath/frames/tls.rs"]
mod builder;
use builder::ClientHello;

/// Pause between writes: long enough for each to leave as a segment of its
/// own (TCP_NODELAY is set), short against the timeouts.
const BETWEEN_WRITES: Duration = Duration::from_millis(30);

pub(crate) struct Hello {
    pub name: Option<String>,
    pub padding: usize,
    pub key_share: usize,
    pub ech: bool,
    pub writes: usize,
}

pub(crate) fn run(target: SocketAddr, hello: Hello, timeout: Duration) -> ProbeOutcome {
    let bytes = ClientHello {
        server_name: hello.name,
        key_share: hello.key_share,
        server_name_last: true,
        ech: hello.ech,
        padding: hello.padding,
    }
    .bytes();
    let (local, connected) = net::connect_tcp(target, timeout);
    let mut sent_at = Instant::now();
    let mut outcome = (|| {
        let mut stream = connected?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let piece = bytes.len().div_ceil(hello.writes.max(1));
        for (i, chunk) in bytes.chunks(piece).enumerate() {
            if i > 0 {
                thread::sleep(BETWEEN_WRITES);
            }
            stream.write_all(chunk)?;
            sent_at = Instant::now();
        }
        let mut first = [0u8; 512];
        let n = stream.read(&mut first)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed by the server",
            ));
        }
        // 0x16: a handshake record (ServerHello or HelloRetryRequest);
        // 0x15: an alert. Either way the server read the hello.
        Ok(ProbeOutcome::success(format!(
            "answered with record type {:#04x}",
            first[0]
        )))
    })()
    .unwrap_or_else(|err| {
        let mut failure = ProbeOutcome::failure(net::describe(&err));
        failure.detail = Some(format!("after {} ms", sent_at.elapsed().as_millis()));
        failure
    });
    outcome.local = local;
    outcome
}
