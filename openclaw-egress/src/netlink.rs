//! Just enough netlink to list the network interfaces of the calling
//! thread's network namespace, with what links a veth to its peer, to name
//! another process's network namespace, and to destroy a TCP socket.
//!
//! `/sys/class/net` cannot do this: sysfs shows the namespace of whoever
//! mounted it, while a netlink socket belongs to the namespace of the thread
//! that opens it, which is what `veth` needs after `setns`.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

const NLMSG_HEADER_LEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;
const NETNSA_NSID: u16 = 1;
const NETNSA_PID: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_LINK_NETNSID: u16 = 37;
/// Attribute type bits that are flags (nested, network byte order).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// One interface, as the kernel describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND`, e.g. `veth`.
    pub kind: Option<String>,
    /// `IFLA_LINK`: for a veth, its peer's index (in the peer's namespace).
    pub peer_index: Option<u32>,
    /// `IFLA_LINK_NETNSID`: set when the peer is in another namespace.
    pub peer_netns_id: Option<i32>,
}

/// Every interface of the calling thread's network namespace. (Listing them
/// also makes the kernel assign an id to each namespace a veth peer lives
/// in, which [`nsid_of_pid`] then finds.)
pub fn links() -> io::Result<Vec<Link>> {
    let mut body = [0u8; IFINFOMSG_LEN];
    body[0] = libc::AF_UNSPEC as u8;
    let mut links = Vec::new();
    exchange(
        RTM_GETLINK,
        NLM_F_REQUEST | NLM_F_DUMP,
        &body,
        |kind, message| {
            if kind == RTM_NEWLINK {
                links.push(parse_link(message)?);
            }
            Ok(())
        },
    )?;
    Ok(links)
}

/// The id this namespace gives the network namespace of process `pid`
/// (`IFLA_LINK_NETNSID` of a veth whose peer is there), if it gave it one.
///
/// This needs no privilege over the other namespace (no setns, no access
/// to `/proc/<pid>/ns`): only that `pid` is visible in our pid namespace.
pub fn nsid_of_pid(pid: u32) -> io::Result<Option<i32>> {
    // struct rtgenmsg (padded to 4 bytes), then NETNSA_PID.
    let mut body = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    body.extend_from_slice(&8u16.to_ne_bytes());
    body.extend_from_slice(&NETNSA_PID.to_ne_bytes());
    body.extend_from_slice(&pid.to_ne_bytes());
    let mut nsid = None;
    exchange(RTM_GETNSID, NLM_F_REQUEST, &body, |kind, message| {
        if kind == RTM_NEWNSID {
            nsid = attributes(message.get(4..).unwrap_or_default())
                .find(|(kind, data)| *kind == NETNSA_NSID && data.len() >= 4)
                .map(|(_, data)| u32_at(data, 0) as i32)
                .filter(|&id| id >= 0);
        }
        Ok(())
    })?;
    Ok(nsid)
}

/// Destroys the TCP socket of this namespace whose cookie is `cookie` and
/// whose local and remote ends are `local` and `remote`
/// (`SOCK_DESTROY`): the kernel resets its connection and the application
/// gets ECONNABORTED. Needs CAP_NET_ADMIN. `ENOENT` when there is no such
/// socket (it closed, or lives in another network namespace).
pub fn destroy_tcp_socket(local: SocketAddr, remote: SocketAddr, cookie: u64) -> io::Result<()> {
    const SOCK_DESTROY: u16 = 21;
    const ALL_STATES: u32 = u32::MAX;
    let family = match local {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // struct inet_diag_req_v2: family, protocol, ext, pad, states, then
    // struct inet_diag_sockid: ports (big endian), addresses (16 bytes
    // each, IPv4 in the first 4), interface, cookie (two u32 halves).
    let mut body = vec![family as u8, libc::IPPROTO_TCP as u8, 0, 0];
    body.extend_from_slice(&ALL_STATES.to_ne_bytes());
    body.extend_from_slice(&local.port().to_be_bytes());
    body.extend_from_slice(&remote.port().to_be_bytes());
    for ip in [local.ip(), remote.ip()] {
        let mut address = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => address[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => address.copy_from_slice(&v6.octets()),
        }
        body.extend_from_slice(&address);
    }
    body.extend_from_slice(&0u32.to_ne_bytes());
    body.extend_from_slice(&(cookie as u32).to_ne_bytes());
    body.extend_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
    exchange_on(
        libc::NETLINK_SOCK_DIAG,
        SOCK_DESTROY,
        NLM_F_REQUEST,
        &body,
        |_, _| Ok(()),
    )
}

/// Sends one rtnetlink request and hands every message of the answer (type,
/// payload after the netlink header) to `on_message`, until the kernel is
/// done.
fn exchange(
    kind: u16,
    flags: u16,
    body: &[u8],
    on_message: impl FnMut(u16, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    exchange_on(libc::NETLINK_ROUTE, kind, flags, body, on_message)
}

/// [`exchange`] over the netlink family `protocol`.
fn exchange_on(
    protocol: libc::c_int,
    kind: u16,
    flags: u16,
    body: &[u8],
    mut on_message: impl FnMut(u16, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };

    let mut request = vec![0u8; NLMSG_HEADER_LEN];
    let len = (NLMSG_HEADER_LEN + body.len()) as u32;
    request[0..4].copy_from_slice(&len.to_ne_bytes());
    request[4..6].copy_from_slice(&kind.to_ne_bytes());
    // An acknowledgement too, so that a request without a dump also ends
    // in a message we wait for.
    request[6..8].copy_from_slice(&(flags | NLM_F_ACK).to_ne_bytes());
    request[8..12].copy_from_slice(&1u32.to_ne_bytes());
    request.extend_from_slice(body);
    // SAFETY: sending a buffer we own; the kernel is the default destination.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }

    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: receiving into a buffer we own, within its length.
        let received = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        if received < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        let mut messages = &buffer[..received as usize];
        while messages.len() >= NLMSG_HEADER_LEN {
            let len = u32_at(messages, 0) as usize;
            let kind = u16_at(messages, 4);
            if len < NLMSG_HEADER_LEN || len > messages.len() {
                return Err(invalid("a netlink message with a bad length"));
            }
            let payload = &messages[NLMSG_HEADER_LEN..len];
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let errno = i32::from_ne_bytes(
                        payload
                            .get(..4)
                            .and_then(|b| b.try_into().ok())
                            .ok_or_else(|| invalid("a short netlink error"))?,
                    );
                    // Error 0 is the acknowledgement that ends a request
                    // without a dump.
                    return match errno {
                        0 => Ok(()),
                        errno => Err(io::Error::from_raw_os_error(-errno)),
                    };
                }
                _ => on_message(kind, payload)?,
            }
            messages = &messages[align(len).min(messages.len())..];
        }
    }
}

fn parse_link(body: &[u8]) -> io::Result<Link> {
    if body.len() < IFINFOMSG_LEN {
        return Err(invalid("a short link message"));
    }
    let mut link = Link {
        index: u32_at(body, 4),
        ..Link::default()
    };
    for (kind, data) in attributes(&body[IFINFOMSG_LEN..]) {
        match kind {
            IFLA_IFNAME => link.name = c_string(data),
            IFLA_LINK if data.len() >= 4 => link.peer_index = Some(u32_at(data, 0)),
            IFLA_LINK_NETNSID if data.len() >= 4 => {
                link.peer_netns_id = Some(u32_at(data, 0) as i32);
            }
            IFLA_LINKINFO => {
                link.kind = attributes(data)
                    .find(|(kind, _)| *kind == IFLA_INFO_KIND)
                    .map(|(_, data)| c_string(data));
            }
            _ => {}
        }
    }
    Ok(link)
}

/// The (type, payload) pairs of a run of netlink attributes; stops at the
/// first malformed one.
fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if bytes.len() < 4 {
            return None;
        }
        let len = usize::from(u16_at(bytes, 0));
        if len < 4 || len > bytes.len() {
            return None;
        }
        let item = (u16_at(bytes, 2) & NLA_TYPE_MASK, &bytes[4..len]);
        bytes = &bytes[align(len).min(bytes.len())..];
        Some(item)
    })
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut bytes = ((4 + data.len()) as u16).to_ne_bytes().to_vec();
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(data);
        bytes.resize(align(bytes.len()), 0);
        bytes
    }

    #[test]
    fn netlink_link_messages_are_parsed() {
        let mut body = vec![0u8; IFINFOMSG_LEN];
        body[4..8].copy_from_slice(&7u32.to_ne_bytes());
        body.extend(attribute(IFLA_IFNAME, b"veth1\0"));
        body.extend(attribute(IFLA_LINK, &3u32.to_ne_bytes()));
        body.extend(attribute(IFLA_LINK_NETNSID, &0i32.to_ne_bytes()));
        body.extend(attribute(
            IFLA_LINKINFO | 0x8000,
            &attribute(IFLA_INFO_KIND, b"veth\0"),
        ));
        let link = parse_link(&body).unwrap();
        assert_eq!(
            link,
            Link {
                index: 7,
                name: "veth1".into(),
                kind: Some("veth".into()),
                peer_index: Some(3),
                peer_netns_id: Some(0),
            }
        );
    }

    #[test]
    fn netlink_attributes_stop_at_garbage() {
        let mut bytes = attribute(IFLA_IFNAME, b"lo\0");
        bytes.extend_from_slice(&[200, 0, 3, 0]);
        assert_eq!(attributes(&bytes).count(), 1);
        assert!(parse_link(&[0; 3]).is_err());
    }

    #[test]
    fn netlink_gives_no_id_to_our_own_namespace() {
        // A namespace is not its own peer: no id, and no error either.
        assert_eq!(nsid_of_pid(std::process::id()).unwrap(), None);
    }

    #[test]
    fn netlink_lists_this_namespace_with_loopback() {
        // Any process can list its own interfaces; every namespace has lo.
        let links = links().unwrap();
        assert!(links.iter().any(|link| link.name == "lo"), "{links:?}");
    }
}
