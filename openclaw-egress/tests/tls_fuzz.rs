//! Differential fuzzing of the kernel's ClientHello check against a
//! userspace twin written here: a strict, whole-buffer parser of TLS
//! records and the ClientHello (the oracle), and the policy's own name
//! matcher (`Target::matches_name`).
//!
//! Deterministic (a fixed-seed xorshift), so a failure reproduces; each
//! failing case prints its bytes and cuts. Runs the real TC program through
//! BPF_PROG_TEST_RUN, segment by segment. Properties:
//! - the kernel opens a connection only if the twin finds a well-formed
//!   ClientHello naming an allowed server (never more than the twin);
//! - a well-formed hello is judged as the twin judges it, however it is
//!   cut into segments and records;
//! - nothing malformed crashes, hangs or passes.

mod common;

use common::{rng::Rng, stream::*, *};
use openclaw_egress::{
    datapath::{Hooks, frames::tls::ClientHello, frames::tls::records},
    policy::{Mode, Policy, WildcardDepth},
};

fn fuzz_policy() -> Policy {
    policy_with(
        Mode::Enforce,
        vec![
            fqdn("api.trusted.test", vec![tcp(443)]),
            pattern(WildcardDepth::OneLabel, "one.test", vec![tcp(443)]),
            pattern(WildcardDepth::AnyDepth, "any.test", vec![tcp(443)]),
        ],
    )
}

const NAMES: [&str; 12] = [
    "api.trusted.test",
    "API.TRUSTED.TEST.",
    "evil.test",
    "a.one.test",
    "a.b.one.test",
    "x.y.z.any.test",
    "any.test",
    "trusted.test",
    "api.trusted.test.evil",
    "api.trusted.test:443",
    "a_b.one.test",
    "-.one.test",
];

/// Why the twin refuses a stream (only for messages; the property is about
/// allowing).
#[derive(Debug)]
#[allow(dead_code, reason = "read through Debug, in failure messages")]
struct Malformed(&'static str);

/// A reader over a byte slice that fails on reading past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.0.len() {
            return Err(Malformed("past the end"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<usize, Malformed> {
        Ok(usize::from(self.take(1)?[0]))
    }

    fn u16(&mut self) -> Result<usize, Malformed> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u24(&mut self) -> Result<usize, Malformed> {
        let b = self.take(3)?;
        Ok((usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
}

/// The twin: the server name of the ClientHello `stream` starts with, if it
/// is well formed (records of handshakes, version 3.x, within TLS's sizes;
/// one ClientHello whose fields and extensions fill it exactly; at most one
/// server_name extension holding exactly one host name).
fn twin_server_name(stream: &[u8]) -> Result<Option<Vec<u8>>, Malformed> {
    // Gather the handshake bytes from as many records as the message needs.
    let mut records = Reader(stream);
    let mut handshake = Vec::new();
    let mut wanted = None;
    while wanted.is_none_or(|len| handshake.len() < len) {
        let header = records.take(5)?;
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if header[0] != 22 || header[1] != 3 || len == 0 || len > 16_384 + 256 {
            return Err(Malformed("record header"));
        }
        handshake.extend(records.take(len)?);
        if wanted.is_none() && handshake.len() >= 4 {
            let len = (usize::from(handshake[1]) << 16)
                | (usize::from(handshake[2]) << 8)
                | usize::from(handshake[3]);
            wanted = Some(4 + len);
        }
    }
    let mut message = Reader(&handshake);
    if message.u8()? != 1 {
        return Err(Malformed("not a ClientHello"));
    }
    let len = message.u24()?;
    if len > 16 * 1024 {
        return Err(Malformed("too long"));
    }
    let mut hello = Reader(message.take(len)?);
    hello.take(34)?;
    let session_id = hello.u8()?;
    if session_id > 32 {
        return Err(Malformed("session id"));
    }
    hello.take(session_id)?;
    let suites = hello.u16()?;
    hello.take(suites)?;
    let compression = hello.u8()?;
    hello.take(compression)?;
    if hello.0.is_empty() {
        return Ok(None);
    }
    let extensions_len = hello.u16()?;
    if extensions_len != hello.0.len() {
        return Err(Malformed("extensions do not end the hello"));
    }
    let mut extensions = Reader(hello.0);
    let mut name = None;
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let len = extensions.u16()?;
        let mut data = Reader(extensions.take(len)?);
        if kind != 0 {
            continue;
        }
        if name.is_some() {
            return Err(Malformed("two server_name extensions"));
        }
        let list = data.u16()?;
        if list != data.0.len() {
            return Err(Malformed("list length"));
        }
        if data.u8()? != 0 {
            return Err(Malformed("name type"));
        }
        let name_len = data.u16()?;
        if name_len == 0 || name_len > 255 || name_len != data.0.len() {
            return Err(Malformed("name length"));
        }
        name = Some(data.take(name_len)?.to_vec());
    }
    Ok(name)
}

/// Whether the twin allows `stream`: a well-formed hello naming, in DNS's
/// letters (letters, digits, `-`, `_`; labels of 1 to 63), a server the
/// policy allows.
fn twin_allows(policy: &Policy, stream: &[u8]) -> bool {
    let Ok(Some(name)) = twin_server_name(stream) else {
        return false;
    };
    let Ok(name) = String::from_utf8(name) else {
        return false;
    };
    let bare = name.strip_suffix('.').unwrap_or(&name);
    let letters_ok = bare.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    letters_ok && policy.egress.iter().any(|r| r.target.matches_name(&name))
}

/// A random well-formed hello, as bytes in records.
fn random_hello(rng: &mut Rng) -> Vec<u8> {
    let hello = ClientHello {
        server_name: (rng.below(10) != 0).then(|| rng.pick(&NAMES).to_string()),
        key_share: *rng.pick(&[32, 1216]),
        server_name_last: rng.below(2) == 0,
        ech: rng.below(4) == 0,
        padding: *rng.pick(&[0, 0, 1, 300, 900]),
    };
    let handshake = hello.handshake();
    match rng.below(4) {
        // Several records, of random sizes.
        0 => {
            let sizes: Vec<usize> = (0..rng.below(6)).map(|_| 1 + rng.below(400)).collect();
            records(&handshake, &sizes)
        }
        _ => hello.bytes(),
    }
}

/// Lengths and bytes changed the way an attacker would try.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(3) {
        if bytes.is_empty() {
            return;
        }
        let at = rng.below(bytes.len());
        match rng.below(6) {
            0 => bytes[at] = rng.next() as u8,
            1 => bytes[at] = bytes[at].wrapping_add(*rng.pick(&[1, 0xff])),
            2 => {
                let value: u16 = *rng.pick(&[0, 1, 0xff, 0x100, 0x7fff, 0xffff]);
                if at + 2 <= bytes.len() {
                    bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
                }
            }
            3 => bytes.truncate(at),
            4 => {
                let extra: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, extra);
            }
            _ => {
                let end = (at + 1 + rng.below(8)).min(bytes.len());
                bytes.drain(at..end);
            }
        }
    }
}

/// Random cuts such that no segment exceeds what one test run takes.
fn random_cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut at = 0;
    while len - at > 1400 || (at < len && rng.below(3) == 0) {
        at += 1 + rng.below(1400.min(len - at));
        if at < len {
            cuts.push(at);
        }
    }
    cuts
}

/// Whether the kernel lets `stream` (cut at `cuts`) through for good, and
/// every byte the connection sent. Segments of a hello still being read
/// pass (the server cannot act on a hello it has not all received), so
/// "for good" means that what follows passes too: an application data
/// record, then more than the 16 KiB a hello may take.
fn allowed_for_good(loaded: &Loaded, port: u16, stream: &[u8], cuts: &[usize]) -> (bool, Vec<u8>) {
    let mut connection = Connection::open(loaded, port, TRUSTED, 443);
    let mut sent = stream.to_vec();
    if !connection
        .send_cut(stream, cuts)
        .into_iter()
        .all(|v| v == TC_NEXT)
    {
        return (false, sent);
    }
    let probe = [AFTER_HELLO.to_vec(), vec![0x17; 17 * 1024]].concat();
    for chunk in probe.chunks(1400) {
        sent.extend(chunk);
        if connection.send(chunk) != TC_NEXT {
            return (false, sent);
        }
    }
    (true, sent)
}

#[test]
fn the_kernel_never_allows_what_the_twin_refuses() {
    let policy = fuzz_policy();
    let loaded = load_with(&policy, Hooks::INTERFACES, in_ten_minutes());
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut agreed_allowed, mut agreed_refused, mut mutated) = (0, 0, 0);
    // Source ports cycle; each case runs on a fresh flow of its own.
    for case in 0..3000u32 {
        let mut stream = random_hello(&mut rng);
        let whole = case % 3 == 0;
        if !whole {
            mutate(&mut rng, &mut stream);
            mutated += 1;
        }
        if stream.is_empty() {
            continue;
        }
        let cuts = random_cuts(&mut rng, stream.len());
        let port = 10_000 + (case % 50_000) as u16;
        let (kernel, sent) = allowed_for_good(&loaded, port, &stream, &cuts);
        // The twin reads what a server would: everything the connection
        // sent.
        let twin = twin_allows(&policy, &sent);
        if kernel {
            assert!(
                twin,
                "case {case}: the kernel allowed what the twin refuses ({:?})\n\
                 cuts {cuts:?}\nbytes {stream:02x?}",
                twin_server_name(&sent)
            );
            agreed_allowed += 1;
        } else if !twin {
            agreed_refused += 1;
        }
        // A well-formed hello must not be refused (a mutated one may be
        // refused where the twin is laxer, e.g. a hello cut short waits).
        if whole {
            assert_eq!(
                kernel,
                twin,
                "case {case}: kernel allowed: {kernel}, twin {:?}\ncuts {cuts:?}",
                twin_server_name(&sent)
            );
        }
    }
    assert!(
        agreed_allowed > 300 && agreed_refused > 1000 && mutated > 1500,
        "{agreed_allowed} allowed, {agreed_refused} refused, {mutated} mutated"
    );
}

#[test]
fn the_twin_reads_the_hellos_the_tests_build() {
    // The oracle itself, on hellos whose answer is known.
    let name = |hello: ClientHello| twin_server_name(&hello.bytes()).unwrap();
    assert_eq!(
        name(ClientHello::to("api.trusted.test")).as_deref(),
        Some(&b"api.trusted.test"[..])
    );
    assert_eq!(name(ClientHello::default()), None);
    let last = ClientHello {
        server_name_last: true,
        padding: 500,
        ..ClientHello::to("a.one.test")
    };
    let sizes = [3, 1, 700];
    let in_records = records(&last.handshake(), &sizes);
    assert_eq!(
        twin_server_name(&in_records).unwrap().as_deref(),
        Some(&b"a.one.test"[..])
    );
    assert!(twin_server_name(&in_records[..in_records.len() - 1]).is_err());
}
