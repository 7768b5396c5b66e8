//! The client side of the API, for the CLI and the CNI plugin.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixStream,
};

use super::{Reply, Request};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the netcore agent at {path}: {source} (is `netcore agent` running?)")]
    Unreachable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to the netcore agent: {0}")]
    Io(#[from] std::io::Error),
    #[error("the agent sent a reply this client does not understand: {0}")]
    BadReply(String),
    #[error("the netcore agent did not answer within {0:?} (is it still starting?)")]
    Timeout(std::time::Duration),
    /// The agent refused the request; the message says why.
    #[error("{0}")]
    Agent(String),
}

/// How long a request may take (pod set-up takes milliseconds; an agent still starting
/// answers once it is up).
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends `req` and hands every line after the agent's `Ok` to `each`, until the agent
/// closes the connection (or the process is interrupted).
pub async fn stream<T: DeserializeOwned>(
    socket: &Path,
    req: &Request,
    mut each: impl FnMut(T),
) -> Result<(), ClientError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Unreachable {
            path: socket.into(),
            source,
        })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(req).expect("requests serialize");
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut lines = BufReader::new(read).lines();
    let first = lines.next_line().await?.unwrap_or_default();
    if let Reply::Error { message } =
        serde_json::from_str::<Reply>(&first).map_err(|e| ClientError::BadReply(e.to_string()))?
    {
        return Err(ClientError::Agent(message));
    }
    while let Some(l) = lines.next_line().await? {
        each(serde_json::from_str(&l).map_err(|e| ClientError::BadReply(e.to_string()))?);
    }
    Ok(())
}

pub async fn call<T: DeserializeOwned>(socket: &Path, req: &Request) -> Result<T, ClientError> {
    tokio::time::timeout(TIMEOUT, exchange(socket, req))
        .await
        .map_err(|_| ClientError::Timeout(TIMEOUT))?
}

async fn exchange<T: DeserializeOwned>(socket: &Path, req: &Request) -> Result<T, ClientError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Unreachable {
            path: socket.into(),
            source,
        })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(req).expect("requests serialize");
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut reply = String::new();
    if BufReader::new(read).read_line(&mut reply).await? == 0 {
        let eof = std::io::ErrorKind::UnexpectedEof;
        return Err(ClientError::Io(std::io::Error::new(
            eof,
            "the agent closed the connection without replying",
        )));
    }
    match serde_json::from_str::<Reply>(&reply).map_err(|e| ClientError::BadReply(e.to_string()))? {
        Reply::Ok { data } => {
            serde_json::from_value(data).map_err(|e| ClientError::BadReply(e.to_string()))
        }
        Reply::Error { message } => Err(ClientError::Agent(message)),
    }
}
