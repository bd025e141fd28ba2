//! TLS ClientHellos and HTTP requests, as a client's first bytes: what the
//! kernel tests feed the server name checks, and what `oce-probe tls-hello`
//! sends over real sockets (it includes this file by path, so it must stay
//! free of dependencies).

const CONTENT_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_SUPPORTED_GROUPS: u16 = 0x000a;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_PADDING: u16 = 0x0015;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
const EXT_KEY_SHARE: u16 = 0x0033;
const EXT_ECH: u16 = 0xfe0d;
/// X25519MLKEM768: 1216 bytes of key share from a client.
const GROUP_X25519_MLKEM768: u16 = 0x11ec;
/// Most bytes TLS puts in one record.
const MAX_RECORD: usize = 16_384;

/// What a ClientHello says; [`Default`] is a post-quantum one (a
/// 1216-byte key share: 1.4 KB in all, more than fits one small
/// segment) naming no server.
#[derive(Clone, Debug)]
pub struct ClientHello {
    pub server_name: Option<String>,
    /// Bytes of key share (1216 for X25519MLKEM768, 32 for X25519).
    pub key_share: usize,
    /// The server name extension last (browsers shuffle the order), not
    /// first.
    pub server_name_last: bool,
    /// An Encrypted Client Hello extension (the outer ClientHello).
    pub ech: bool,
    /// Bytes of a padding extension (0: none).
    pub padding: usize,
}

impl Default for ClientHello {
    fn default() -> Self {
        Self {
            server_name: None,
            key_share: 1216,
            server_name_last: false,
            ech: false,
            padding: 0,
        }
    }
}

impl ClientHello {
    pub fn to(server_name: &str) -> Self {
        Self {
            server_name: Some(server_name.to_string()),
            ..Self::default()
        }
    }

    /// The handshake message (type, length, body).
    pub fn handshake(&self) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend((0..32u8).map(|i| i.wrapping_mul(7)));
        body.push(32);
        body.extend([0x5a; 32]);
        let suites: [u16; 3] = [0x1301, 0x1302, 0x1303];
        body.extend(u16_len(suites.len() * 2));
        suites.iter().for_each(|s| body.extend(s.to_be_bytes()));
        body.extend([1, 0]);
        let mut extensions = Vec::new();
        if !self.server_name_last {
            extensions.extend(self.server_name_extension());
        }
        extensions.extend(extension(EXT_SUPPORTED_VERSIONS, &[2, 0x03, 0x04]));
        extensions.extend(extension(
            EXT_SUPPORTED_GROUPS,
            &[0, 4, 0x11, 0xec, 0x00, 0x1d],
        ));
        extensions.extend(extension(
            EXT_SIGNATURE_ALGORITHMS,
            &[0, 4, 0x04, 0x03, 0x08, 0x04],
        ));
        let mut share = GROUP_X25519_MLKEM768.to_be_bytes().to_vec();
        share.extend(u16_len(self.key_share));
        share.extend((0..self.key_share).map(|i| (i % 251) as u8));
        let mut shares = u16_len(share.len()).to_vec();
        shares.extend(share);
        extensions.extend(extension(EXT_KEY_SHARE, &shares));
        if self.ech {
            extensions.extend(extension(EXT_ECH, &[0; 64]));
        }
        if self.padding > 0 {
            extensions.extend(extension(EXT_PADDING, &vec![0; self.padding]));
        }
        if self.server_name_last {
            extensions.extend(self.server_name_extension());
        }
        body.extend(u16_len(extensions.len()));
        body.extend(extensions);
        let mut message = vec![CLIENT_HELLO];
        message.extend(u24_len(body.len()));
        message.extend(body);
        message
    }

    /// The handshake message in as many records as it needs (one,
    /// unless it exceeds 16 KiB).
    pub fn bytes(&self) -> Vec<u8> {
        let handshake = self.handshake();
        let sizes: Vec<usize> = handshake.chunks(MAX_RECORD).map(<[u8]>::len).collect();
        records(&handshake, &sizes)
    }

    /// The handshake message cut into records with bodies of `sizes`
    /// bytes (the last takes what is left).
    pub fn in_records(&self, sizes: &[usize]) -> Vec<u8> {
        records(&self.handshake(), sizes)
    }

    fn server_name_extension(&self) -> Vec<u8> {
        let Some(name) = &self.server_name else {
            return Vec::new();
        };
        let mut entry = vec![0];
        entry.extend(u16_len(name.len()));
        entry.extend(name.as_bytes());
        let mut list = u16_len(entry.len()).to_vec();
        list.extend(entry);
        extension(EXT_SERVER_NAME, &list)
    }
}

/// `handshake` in records whose bodies have `sizes` bytes; what is left
/// after them goes in one more.
pub fn records(handshake: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = handshake;
    for &size in sizes {
        if rest.is_empty() {
            break;
        }
        let (body, after) = rest.split_at(size.min(rest.len()));
        out.extend(record_header(body.len()));
        out.extend(body);
        rest = after;
    }
    if !rest.is_empty() {
        out.extend(record_header(rest.len()));
        out.extend(rest);
    }
    out
}

/// A handshake record header for a body of `len` bytes.
pub fn record_header(len: usize) -> [u8; 5] {
    let [high, low] = u16_len(len);
    [CONTENT_HANDSHAKE, 0x03, 0x01, high, low]
}

/// An HTTP/1.1 request head for `path` on `host`.
pub fn http_request(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: oce-test\r\nAccept: */*\r\n\r\n")
        .into_bytes()
}

fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut out = kind.to_be_bytes().to_vec();
    out.extend(u16_len(data.len()));
    out.extend(data);
    out
}

fn u16_len(len: usize) -> [u8; 2] {
    u16::try_from(len).expect("fits 16 bits").to_be_bytes()
}

fn u24_len(len: usize) -> [u8; 3] {
    let [_, a, b, c] = u32::try_from(len).expect("fits 24 bits").to_be_bytes();
    [a, b, c]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_hello_has_consistent_lengths() {
        let hello = ClientHello::to("api.trusted.test").bytes();
        assert_eq!(hello[0], CONTENT_HANDSHAKE);
        let record_len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
        assert_eq!(record_len, hello.len() - 5);
        let handshake_len =
            usize::from(hello[6]) << 16 | usize::from(hello[7]) << 8 | usize::from(hello[8]);
        assert_eq!(handshake_len, record_len - 4);
        assert!(hello.len() > 1300, "a post-quantum hello: {}", hello.len());
        let needle = b"api.trusted.test";
        assert!(hello.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn records_carry_the_handshake_whole() {
        let hello = ClientHello::to("a.test");
        let split = hello.in_records(&[1, 1, 100]);
        let mut handshake: Vec<u8> = Vec::new();
        let mut rest = &split[..];
        while !rest.is_empty() {
            let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
            handshake.extend_from_slice(&rest[5..5 + len]);
            rest = &rest[5 + len..];
        }
        assert_eq!(handshake, hello.handshake());
    }
}
