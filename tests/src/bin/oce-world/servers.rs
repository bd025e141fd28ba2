//! The world's TCP echo, UDP echo and HTTP servers. One thread per listener
//! and per connection: a test world sees a handful of connections.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream, UdpSocket},
    thread,
    time::Duration,
};

/// Greets with `hello from ADDR:PORT` (the listening address), then echoes
/// each line until EOF.
pub(crate) fn spawn_tcp_echo(listener: TcpListener) {
    spawn_accept_loop(listener, |stream, label| {
        let mut writer = &stream;
        writer.write_all(format!("hello from {label}\n").as_bytes())?;
        for line in BufReader::new(&stream).lines() {
            writer.write_all(format!("{}\n", line?).as_bytes())?;
        }
        Ok(())
    });
}

/// Answers any request with `200 OK` and body `hello from ADDR:PORT`, then
/// closes the connection.
pub(crate) fn spawn_http(listener: TcpListener) {
    spawn_accept_loop(listener, |stream, label| {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        read_request_head(&stream)?;
        let body = format!("hello from {label}\n");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        (&stream).write_all(response.as_bytes())?;
        stream.shutdown(std::net::Shutdown::Write)?;
        Ok(())
    });
}

/// Reads up to the blank line that ends the request head (the body, if
/// any, is ignored).
fn read_request_head(mut stream: &TcpStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        let len = stream.read(&mut buf)?;
        if len == 0 {
            break;
        }
        head.extend_from_slice(&buf[..len]);
    }
    Ok(())
}

fn spawn_accept_loop(listener: TcpListener, handle: fn(TcpStream, &str) -> std::io::Result<()>) {
    let label = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let label = label.clone();
            thread::spawn(move || {
                // A client going away mid-exchange is normal for probes.
                let _ = handle(stream, &label);
            });
        }
    });
}

/// Sends every datagram back to where it came from.
pub(crate) fn spawn_udp_echo(socket: UdpSocket) {
    thread::spawn(move || {
        let mut buf = vec![0; 65536];
        loop {
            match socket.recv_from(&mut buf) {
                Ok((len, peer)) => {
                    let _ = socket.send_to(&buf[..len], peer);
                }
                Err(err) => eprintln!("oce-world: udp echo: {err}"),
            }
        }
    });
}
