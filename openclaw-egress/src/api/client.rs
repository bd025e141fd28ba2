//! The CLI side of the API.

use std::path::Path;

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    net::{
        UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
};

use super::{MAX_REQUEST_BYTES, MAX_REQUEST_TEXT, Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the daemon at {socket}: {source} (is `openclaw-egress daemon` running? \
         set --socket or OPENCLAW_EGRESS_SOCKET if it listens elsewhere)"
    )]
    Connect {
        socket: String,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the daemon: {0}")]
    Io(#[from] std::io::Error),
    #[error("the daemon sent something unreadable: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the daemon closed the connection without answering")]
    NoAnswer,
    #[error("the request is {bytes} bytes; the daemon accepts at most {MAX_REQUEST_TEXT}")]
    TooLarge { bytes: usize },
    /// The daemon answered with an error (its message says why).
    #[error("{0}")]
    Refused(String),
    #[error("unexpected answer from the daemon: {0}")]
    Unexpected(String),
    #[error("{file}: cannot read")]
    PolicyFile {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{file}: the policy is {bytes} bytes; the daemon accepts at most {MAX_REQUEST_TEXT} per request"
    )]
    PolicyTooLarge { file: String, bytes: usize },
}

/// An open request whose response lines can be read one by one.
pub struct Exchange {
    lines: Lines<BufReader<OwnedReadHalf>>,
    /// A session's end of the connection, kept open: the daemon takes its
    /// closing (this exchange dropped) as the end of the session.
    _session: Option<OwnedWriteHalf>,
}

impl Exchange {
    pub async fn next(&mut self) -> Result<Option<Response>, ClientError> {
        match self.lines.next_line().await? {
            Some(line) => Ok(Some(serde_json::from_str(&line)?)),
            None => Ok(None),
        }
    }
}

/// Sends `request` and returns the stream of responses. A request larger
/// than the daemon reads is refused before connecting.
pub async fn open(socket: &Path, request: &Request) -> Result<Exchange, ClientError> {
    send(socket, request, false).await
}

/// [`open`], for a request that lasts until the client hangs up (`learn`):
/// the connection stays open both ways until the exchange is dropped.
pub async fn open_session(socket: &Path, request: &Request) -> Result<Exchange, ClientError> {
    send(socket, request, true).await
}

async fn send(socket: &Path, request: &Request, session: bool) -> Result<Exchange, ClientError> {
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    if line.len() as u64 > MAX_REQUEST_BYTES {
        return Err(ClientError::TooLarge { bytes: line.len() });
    }
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            socket: socket.display().to_string(),
            source,
        })?;
    let (read, mut write) = stream.into_split();
    match write.write_all(&line).await {
        Ok(()) if session => {}
        Ok(()) => write.shutdown().await?,
        // The daemon stopped reading before the end (an older daemon with
        // a smaller limit, say); the answer it left says why.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(error) => return Err(error.into()),
    }
    Ok(Exchange {
        lines: BufReader::new(read).lines(),
        _session: session.then_some(write),
    })
}

/// Sends `request` and returns its single response, an error response
/// included (see [`ask`]).
pub async fn call(socket: &Path, request: &Request) -> Result<Response, ClientError> {
    open(socket, request)
        .await?
        .next()
        .await?
        .ok_or(ClientError::NoAnswer)
}

/// Sends `request` and returns its single response; an error response is
/// [`ClientError::Refused`].
pub async fn ask(socket: &Path, request: &Request) -> Result<Response, ClientError> {
    match call(socket, request).await? {
        Response::Error { message } => Err(ClientError::Refused(message)),
        response => Ok(response),
    }
}

/// The error for a response of the wrong kind.
pub fn unexpected(response: Response) -> ClientError {
    ClientError::Unexpected(format!("{response:?}"))
}

/// Reads a policy file to send to the daemon, refusing one larger than a
/// request may be (before parsing it: that limit is the first it breaks).
pub fn read_policy(file: &Path) -> Result<String, ClientError> {
    let yaml = std::fs::read_to_string(file).map_err(|source| ClientError::PolicyFile {
        file: file.display().to_string(),
        source,
    })?;
    if yaml.len() as u64 >= MAX_REQUEST_BYTES {
        return Err(ClientError::PolicyTooLarge {
            file: file.display().to_string(),
            bytes: yaml.len(),
        });
    }
    Ok(yaml)
}
