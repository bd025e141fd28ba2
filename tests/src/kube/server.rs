//! The fake API server's HTTP side: connections, requests, lists and
//! watch streams over the state in [`super::Shared`].

use std::{
    io::{BufRead as _, BufReader, ErrorKind, Write as _},
    net::{TcpListener, TcpStream},
    sync::{Arc, atomic::Ordering},
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{ApiRequest, CLUSTER_NETWORK_POLICIES, EGRESS_POLICIES, FakeKubeApi, PODS, Shared};

pub(super) fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                if stream.set_nonblocking(false).is_err() {
                    continue;
                }
                if let Ok(clone) = stream.try_clone() {
                    shared.state.lock().unwrap().connections.push(clone);
                }
                let shared = Arc::clone(shared);
                thread::spawn(move || {
                    if let Err(err) = serve_connection(stream, &shared)
                        && !shared.shutdown.load(Ordering::SeqCst)
                        && err.kind() != ErrorKind::BrokenPipe
                        && err.kind() != ErrorKind::ConnectionReset
                    {
                        eprintln!("fake kube API: connection: {err}");
                    }
                });
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(err) => {
                eprintln!("fake kube API: accept: {err}");
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Serves requests on one connection (keep-alive) until the client closes
/// it or the server stops.
fn serve_connection(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        // Headers, up to the empty line. GETs have no body; a body that
        // came anyway (Content-Length) is skipped.
        let mut content_length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; content_length];
        std::io::Read::read_exact(&mut reader, &mut body)?;
        let mut request = parse_request_line(request_line.trim_end());
        request.body = String::from_utf8_lossy(&body).into_owned();
        {
            let mut state = shared.state.lock().unwrap();
            state.requests.push(request.clone());
        }
        shared.changed.notify_all();

        let collection = [PODS, EGRESS_POLICIES, CLUSTER_NETWORK_POLICIES]
            .into_iter()
            .find(|c| *c == request.path);
        let status_of = request
            .path
            .strip_prefix(EGRESS_POLICIES)
            .and_then(|rest| rest.strip_prefix('/')?.strip_suffix("/status"));
        match (request.method.as_str(), collection, status_of) {
            ("GET", Some(collection), _) if request.is_watch() => {
                watch(&mut writer, &request, collection, shared)?;
            }
            ("GET", Some(collection), _) => {
                let node = request.node_selector();
                let state = shared.state.lock().unwrap();
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|((c, _, _), object)| *c == collection && on_node(object, node))
                    .map(|(_, object)| object.clone())
                    .collect();
                let (api_version, kind) = match collection {
                    PODS => ("v1", "PodList"),
                    EGRESS_POLICIES => ("openclaw.io/v1", "EgressPolicyList"),
                    _ => (
                        "policy.networking.k8s.io/v1alpha2",
                        "ClusterNetworkPolicyList",
                    ),
                };
                let list = json!({
                    "kind": kind,
                    "apiVersion": api_version,
                    "metadata": {"resourceVersion": state.resource_version.to_string()},
                    "items": items,
                });
                drop(state);
                write_json(&mut writer, "200 OK", &list)?;
            }
            ("PATCH", None, Some(name)) => match shared.patch_status(name, &request.body) {
                Some(object) => write_json(&mut writer, "200 OK", &object)?,
                None => write_json(&mut writer, "404 Not Found", &not_found(&request))?,
            },
            _ => write_json(&mut writer, "404 Not Found", &not_found(&request))?,
        }
    }
}

fn not_found(request: &ApiRequest) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "reason": "NotFound", "code": 404,
        "message": format!("the fake API server does not serve {request}"),
    })
}

/// Streams the watch events after the request's `resourceVersion` (all
/// current pods as `ADDED` when it has none or `0`), then new ones as they
/// happen, until `timeoutSeconds` has passed.
fn watch(
    writer: &mut TcpStream,
    request: &ApiRequest,
    collection: &'static str,
    shared: &Shared,
) -> std::io::Result<()> {
    let node = request.node_selector();
    let timeout = request
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(FakeKubeApi::DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
    let deadline = Instant::now() + timeout;
    let since: u64 = request
        .query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    writer.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
    writer.flush()?;

    let mut state = shared.state.lock().unwrap();
    state.open_watches += 1;
    let mut pending: Vec<Value> = Vec::new();
    let mut sent_up_to = since;
    if since == 0 {
        pending.extend(
            state
                .objects
                .iter()
                .filter(|((c, _, _), object)| *c == collection && on_node(object, node))
                .map(|(_, object)| json!({"type": "ADDED", "object": object})),
        );
        sent_up_to = state.resource_version;
    }
    let result = loop {
        pending.extend(
            state
                .events
                .iter()
                .filter(|(version, _, c, object)| {
                    *version > sent_up_to && *c == collection && on_node(object, node)
                })
                .map(|(_, kind, _, object)| json!({"type": kind, "object": object})),
        );
        sent_up_to = state.resource_version;
        if !pending.is_empty() {
            // Written without the lock: a slow client must not stall the
            // test's changes.
            drop(state);
            for event in pending.drain(..) {
                if let Err(err) = write_chunk(writer, &format!("{event}\n")) {
                    let mut state = shared.state.lock().unwrap();
                    state.open_watches -= 1;
                    return Err(err);
                }
            }
            state = shared.state.lock().unwrap();
            continue;
        }
        if shared.shutdown.load(Ordering::SeqCst) {
            break Err(std::io::Error::new(
                ErrorKind::Interrupted,
                "server stopped",
            ));
        }
        let now = Instant::now();
        if now >= deadline {
            break Ok(());
        }
        let wait = (deadline - now).min(Duration::from_millis(100));
        state = shared.changed.wait_timeout(state, wait).unwrap().0;
    };
    state.open_watches -= 1;
    drop(state);
    result?;
    // The end of the stream: the client watches again.
    writer.write_all(b"0\r\n\r\n")?;
    writer.flush()
}

fn write_chunk(writer: &mut TcpStream, text: &str) -> std::io::Result<()> {
    write!(writer, "{:x}\r\n{text}\r\n", text.len())?;
    writer.flush()
}

fn write_json(writer: &mut TcpStream, status: &str, body: &Value) -> std::io::Result<()> {
    let body = body.to_string();
    write!(
        writer,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    writer.flush()
}

fn on_node(pod: &Value, node: Option<&str>) -> bool {
    node.is_none_or(|node| pod["spec"]["nodeName"] == node)
}

/// `GET /path?query HTTP/1.1`.
fn parse_request_line(line: &str) -> ApiRequest {
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect();
    ApiRequest {
        method,
        path: path.to_owned(),
        query,
        target,
        body: String::new(),
    }
}

/// `application/x-www-form-urlencoded` decoding (`%XX`, `+` for space).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_split_and_decoded() {
        let request = parse_request_line(
            "GET /api/v1/pods?&fieldSelector=spec.nodeName%3Dnode-1&watch=true&resourceVersion=7 HTTP/1.1",
        );
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/api/v1/pods");
        assert!(request.is_watch());
        assert_eq!(request.node_selector(), Some("node-1"));
        assert_eq!(request.query["resourceVersion"], "7");
        assert_eq!(percent_decode("a%2Cb+c%"), "a,b c%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
