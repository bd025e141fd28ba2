//! Sockets for the probe, with the local address kept even when the
//! exchange fails.

use std::{
    io, mem,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpStream, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

/// The error text for `err`: the fixed words the tests match on for the
/// common cases, the io error text otherwise.
pub(crate) fn describe(err: &io::Error) -> String {
    match err.raw_os_error() {
        // A cgroup egress BPF program that drops a packet makes a UDP send
        // fail with EPERM (a TCP connect just times out: the kernel ignores
        // the failed SYN transmit and retransmits).
        Some(libc::EPERM | libc::EACCES) => "permission denied".to_owned(),
        Some(libc::ECONNREFUSED) => "refused".to_owned(),
        Some(libc::ETIMEDOUT | libc::EAGAIN) => "timeout".to_owned(),
        _ if matches!(
            err.kind(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
        ) =>
        {
            "timeout".to_owned()
        }
        _ => err.to_string(),
    }
}

/// Connects with a timeout and returns the socket's local address alongside
/// the result.
///
/// Not `TcpStream::connect_timeout`: it drops the socket on failure, and the
/// local port of a connection whose SYN was dropped is exactly what a test
/// needs to find the drop event. The port is bound (and read back) as soon
/// as connect(2) starts, before any packet leaves.
pub(crate) fn connect_tcp(
    target: SocketAddr,
    timeout: Duration,
) -> (Option<SocketAddr>, io::Result<TcpStream>) {
    let family = match target {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return (None, Err(io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Bound before connecting, so the socket has its port even when the
    // policy refuses the connect() itself (EPERM): the drop event carries
    // that port, and the test finds the event by it.
    if let Err(err) = bind_any(&fd, target) {
        return (None, Err(err));
    }

    let (storage, len) = to_sockaddr(target);
    // SAFETY: storage holds a sockaddr of `len` bytes for this family.
    let rc = unsafe { libc::connect(fd.as_raw_fd(), (&raw const storage).cast(), len) };
    let started = if rc == 0 {
        Ok(())
    } else {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINPROGRESS) {
            Ok(())
        } else {
            Err(err)
        }
    };
    let local = local_addr(&fd);
    let result = started
        .and_then(|()| {
            if rc == 0 {
                Ok(())
            } else {
                wait_connected(&fd, timeout)
            }
        })
        .and_then(|()| {
            let stream = TcpStream::from(fd);
            stream.set_nonblocking(false)?;
            Ok(stream)
        });
    // A connected stream always has a local address, whatever getsockname
    // said right after connect(2).
    let local = local.or_else(|| result.as_ref().ok().and_then(|s| s.local_addr().ok()));
    (local, result)
}

/// Waits for a non-blocking connect to finish.
fn wait_connected(fd: &OwnedFd, timeout: Duration) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, millis) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    if ready == 0 {
        return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
    }
    let mut err: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_ERROR writes one c_int.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut err).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(())
}

/// getsockname(2); `None` while the socket has no port.
fn local_addr(fd: &OwnedFd) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage is large enough for any address.
    let rc = unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut storage).cast(), &mut len) };
    if rc < 0 {
        return None;
    }
    let addr = from_sockaddr(&storage)?;
    (addr.port() != 0).then_some(addr)
}

fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and
            // suitably aligned for it.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in>().write(sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in6>().write(sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A UDP socket connected to `target`. connect(2) on UDP sends nothing; it
/// picks the route, so errors come back on this socket (ICMP port
/// unreachable as ECONNREFUSED). The socket is bound (to the unspecified
/// address and a free port) first, and `local` set, so that a connect()
/// the policy refuses (EPERM) still leaves the port to find its drop event.
pub(crate) fn udp_socket_to(
    target: SocketAddr,
    local: &mut Option<SocketAddr>,
) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(unspecified_for(target))?;
    *local = socket.local_addr().ok();
    socket.connect(target)?;
    Ok(socket)
}

/// The unspecified address of `target`'s family, port 0.
fn unspecified_for(target: SocketAddr) -> SocketAddr {
    match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// bind(2) to the unspecified address of `target`'s family and a free port.
fn bind_any(fd: &OwnedFd, target: SocketAddr) -> io::Result<()> {
    let (storage, len) = to_sockaddr(unspecified_for(target));
    // SAFETY: storage holds a sockaddr of `len` bytes for this family.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), (&raw const storage).cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The `sockaddr` of `addr`, for raw syscalls elsewhere in the probe.
pub(crate) fn sockaddr_of(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    to_sockaddr(addr)
}

/// getsockname(2) of any socket, port 0 included.
pub(crate) fn bound_addr(fd: &OwnedFd) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage is large enough for any address.
    let rc = unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut storage).cast(), &mut len) };
    if rc < 0 {
        return None;
    }
    from_sockaddr(&storage)
}
