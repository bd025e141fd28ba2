//! What an agent's socket calls return when the destination is forbidden:
//! a socket bound to the unspecified address first (so it has its port
//! before any packet exists), then connect(2) or sendto(2), with the step
//! that failed in `stage`.

use std::{
    io::{self, BufReader},
    mem,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

use openclaw_egress_e2e::ProbeOutcome;

use super::{Op, Proto};
use crate::{net, read_line};

fn unspecified(target: SocketAddr) -> SocketAddr {
    match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// A failure at `stage`.
struct Failed(&'static str, io::Error);

pub(super) fn run(
    proto: Proto,
    op: Op,
    target: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> ProbeOutcome {
    let mut local = None;
    let result = match (proto, op) {
        (Proto::Tcp, Op::Connect) => tcp(target, timeout, &mut local),
        (Proto::Udp, op) => udp(target, op, payload, timeout, &mut local),
        (Proto::Tcp, Op::Sendto) => Err(Failed("usage", io::Error::other("sendto is for UDP"))),
    };
    let mut outcome = match result {
        Ok(detail) => ProbeOutcome::success(detail),
        Err(Failed(stage, err)) => {
            let mut outcome = ProbeOutcome::failure(net::describe(&err));
            outcome.stage = Some(stage.to_owned());
            outcome
        }
    };
    outcome.local = local;
    outcome
}

fn tcp(
    target: SocketAddr,
    timeout: Duration,
    local: &mut Option<SocketAddr>,
) -> Result<String, Failed> {
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
        return Err(Failed("socket", io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let (any, any_len) = net::sockaddr_of(unspecified(target));
    // SAFETY: any holds a sockaddr of any_len bytes.
    if unsafe { libc::bind(fd.as_raw_fd(), (&raw const any).cast(), any_len) } < 0 {
        return Err(Failed("bind", io::Error::last_os_error()));
    }
    *local = net::bound_addr(&fd);
    let (addr, len) = net::sockaddr_of(target);
    // SAFETY: addr holds a sockaddr of len bytes.
    let rc = unsafe { libc::connect(fd.as_raw_fd(), (&raw const addr).cast(), len) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(Failed("connect", err));
        }
        wait_writable(&fd, timeout).map_err(|e| Failed("connect", e))?;
    }
    let stream = TcpStream::from(fd);
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(timeout)))
        .map_err(|e| Failed("recv", e))?;
    read_line(&mut BufReader::new(&stream)).map_err(|e| Failed("recv", e))
}

/// Waits for a non-blocking connect to finish; its error if it failed.
fn wait_writable(fd: &OwnedFd, timeout: Duration) -> io::Result<()> {
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

fn udp(
    target: SocketAddr,
    op: Op,
    payload: &[u8],
    timeout: Duration,
    local: &mut Option<SocketAddr>,
) -> Result<String, Failed> {
    let socket = UdpSocket::bind(unspecified(target)).map_err(|e| Failed("bind", e))?;
    *local = socket.local_addr().ok();
    match op {
        Op::Connect => {
            socket.connect(target).map_err(|e| Failed("connect", e))?;
            socket.send(payload).map_err(|e| Failed("send", e))?;
        }
        Op::Sendto => {
            socket
                .send_to(payload, target)
                .map_err(|e| Failed("send", e))?;
        }
    }
    socket
        .set_read_timeout(Some(timeout))
        .map_err(|e| Failed("recv", e))?;
    let mut buf = vec![0; 65536];
    let (len, _) = socket.recv_from(&mut buf).map_err(|e| Failed("recv", e))?;
    Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
}
