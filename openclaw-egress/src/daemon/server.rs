//! The unix-socket API (see `crate::api` for the protocol).

use std::{
    io,
    os::unix::fs::{DirBuilderExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{
        UnixListener, UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::broadcast::error::RecvError,
};

use super::{Daemon, host_cgroup, peer::Peer};
use crate::{
    api::{MAX_REQUEST_BYTES, MAX_REQUEST_TEXT, Request, Response},
    error_text::full_message,
};

/// What is read (and thrown away) after an oversized request, so that its
/// sender can finish writing and read the answer instead of a broken pipe.
const DRAIN_BYTES: u64 = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Binds the API socket, refusing to steal it from a daemon that is alive.
pub fn bind(socket: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            bail!(
                "another daemon is already listening on {}; stop it first",
                socket.display()
            );
        }
        // A socket file left behind by a daemon that died.
        std::fs::remove_file(socket)
            .with_context(|| format!("removing stale socket {}", socket.display()))?;
    }
    let listener = UnixListener::bind(socket)
        .with_context(|| format!("binding the API socket {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {} to root", socket.display()))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, daemon: Arc<Daemon>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let daemon = Arc::clone(&daemon);
                tokio::spawn(async move {
                    if let Err(error) = handle(stream, &daemon).await {
                        tracing::debug!("API connection: {error}");
                    }
                });
            }
            Err(error) => tracing::error!("accepting an API connection: {error}"),
        }
    }
}

async fn handle(stream: UnixStream, daemon: &Daemon) -> io::Result<()> {
    let peer = Peer::of(&stream);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let request = match read_request(&mut reader).await? {
        Ok(request) => request,
        Err(BadRequest { message, drain }) => {
            send(&mut write, &Response::Error { message }).await?;
            if drain {
                let _ = tokio::time::timeout(DRAIN_TIME, async {
                    tokio::io::copy(&mut reader.take(DRAIN_BYTES), &mut tokio::io::sink()).await
                })
                .await;
            }
            return Ok(());
        }
    };
    // Checked once the request is read, so that the client gets the answer
    // rather than a broken pipe.
    if let Some(message) = peer.refusal(&filtered_cgroups(daemon)) {
        tracing::warn!("API request refused: {message}");
        return send(&mut write, &Response::Error { message }).await;
    }
    match request {
        Request::Apply {
            source,
            yaml,
            overrides,
        } => {
            let response = match daemon.apply(&source, &yaml, &overrides).await {
                Ok(report) => Response::Applied(report),
                Err(error) => {
                    let message = full_message(&error);
                    tracing::warn!(source, "policy refused: {message}");
                    Response::Error { message }
                }
            };
            send(&mut write, &response).await
        }
        Request::Remove { name } => {
            let response = match daemon.remove(&name).await {
                Ok(()) => Response::Removed { name },
                Err(error) => Response::Error {
                    message: error.to_string(),
                },
            };
            send(&mut write, &response).await
        }
        Request::Uninstall => {
            let policies = daemon.uninstall().await;
            let sent = send(&mut write, &Response::Uninstalled { policies }).await;
            daemon.request_exit();
            sent
        }
        Request::Status => send(&mut write, &Response::Status(daemon.status())).await,
        Request::Metrics => {
            let text = daemon.metrics_text();
            send(&mut write, &Response::Metrics { text }).await
        }
        Request::Monitor => {
            let mut events = daemon.subscribe();
            loop {
                match events.recv().await {
                    // What learners record is theirs: questions and answers
                    // are not flows.
                    Ok(record)
                        if record.stage == "dns_question" || record.stage == "dns_answer" => {}
                    Ok(record) => send(&mut write, &Response::Event(record)).await?,
                    Err(RecvError::Lagged(missed)) => {
                        let message = format!("monitor fell behind: {missed} events skipped");
                        send(&mut write, &Response::Error { message }).await?;
                    }
                    Err(RecvError::Closed) => return Ok(()),
                }
            }
        }
        Request::Learn { policy } => {
            let mut events = daemon.subscribe();
            let (learner, start) = match daemon.learn(&policy) {
                Ok(learning) => learning,
                Err(error) => {
                    let message = error.to_string();
                    return send(&mut write, &Response::Error { message }).await;
                }
            };
            send(&mut write, &Response::Learning(start)).await?;
            // Until the learner hangs up: a write then fails. A quiet
            // workload sends nothing for long, so the socket is also
            // watched for its end while waiting.
            let mut hangup = [0u8; 1];
            loop {
                let record = tokio::select! {
                    received = events.recv() => received,
                    _ = reader.read(&mut hangup) => break,
                };
                match record {
                    Ok(record) if record.policy == policy => {
                        send(&mut write, &Response::Event(record)).await?;
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        let message = format!("learning fell behind: {missed} events skipped");
                        send(&mut write, &Response::Error { message }).await?;
                    }
                    Err(RecvError::Closed) => break,
                }
            }
            drop(learner);
            Ok(())
        }
    }
}

/// Every cgroup a policy filters (its own and its pods'), with the policy.
/// Host cgroups (see `host_cgroup`), which a policy selects only under
/// `--allow-host-cgroup`, are left out: the operator's own shell is in them,
/// and refusing it would leave no way to remove that policy.
fn filtered_cgroups(daemon: &Daemon) -> Vec<(String, PathBuf)> {
    let policies = daemon.policies.read().expect("policies lock");
    policies
        .values()
        .flat_map(|active| {
            active.workloads().into_iter().filter_map(|workload| {
                let cgroup = workload.cgroup()?.to_path_buf();
                Some((active.policy.name.clone(), cgroup))
            })
        })
        .filter(|(_, cgroup)| !matches!(host_cgroup::refusal(cgroup), Ok(Some(_))))
        .collect()
}

/// A request that gets an error instead of an answer.
struct BadRequest {
    message: String,
    /// More of it is still coming: read it before hanging up.
    drain: bool,
}

/// Reads one request line. Anything but a request (too long, not UTF-8, not
/// JSON, not a known request) is answered with an error, never by hanging up.
async fn read_request(
    reader: &mut BufReader<OwnedReadHalf>,
) -> io::Result<Result<Request, BadRequest>> {
    let mut line = Vec::new();
    reader
        .take(MAX_REQUEST_BYTES + 1)
        .read_until(b'\n', &mut line)
        .await?;
    let bad = |message: String| {
        Ok(Err(BadRequest {
            message,
            drain: false,
        }))
    };
    if line.len() as u64 > MAX_REQUEST_BYTES {
        return Ok(Err(BadRequest {
            message: format!(
                "request too large: the daemon reads at most {MAX_REQUEST_TEXT} per request"
            ),
            drain: true,
        }));
    }
    let text = match std::str::from_utf8(&line) {
        Ok(text) => text,
        Err(error) => return bad(format!("bad request: not UTF-8 JSON ({error})")),
    };
    match serde_json::from_str(text) {
        Ok(request) => Ok(Ok(request)),
        Err(error) => bad(format!("bad request: {error}")),
    }
}

async fn send(write: &mut OwnedWriteHalf, response: &Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await
}
