//! The client side of the API, for the CLI and the CNI plugin.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{
        unix::{OwnedReadHalf, OwnedWriteHalf},
        UnixStream,
    },
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
    // The write half stays open while streaming: closing it tells the agent to stop.
    let (mut lines, _open) = send(socket, req).await?;
    first_reply(&mut lines).await?;
    while let Some(l) = lines.next_line().await? {
        each(serde_json::from_str(&l).map_err(bad_reply)?);
    }
    Ok(())
}

pub async fn call<T: DeserializeOwned>(socket: &Path, req: &Request) -> Result<T, ClientError> {
    tokio::time::timeout(TIMEOUT, exchange(socket, req))
        .await
        .map_err(|_| ClientError::Timeout(TIMEOUT))?
}

async fn exchange<T: DeserializeOwned>(socket: &Path, req: &Request) -> Result<T, ClientError> {
    let (mut lines, _open) = send(socket, req).await?;
    serde_json::from_value(first_reply(&mut lines).await?).map_err(bad_reply)
}

type Replies = tokio::io::Lines<BufReader<OwnedReadHalf>>;

/// Connects to the agent and sends `req`: the reply lines, and the write half, which
/// keeps the request open.
async fn send(socket: &Path, req: &Request) -> Result<(Replies, OwnedWriteHalf), ClientError> {
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
    Ok((BufReader::new(read).lines(), write))
}

/// The agent's first reply: the data it answered with, or why it refused.
async fn first_reply(lines: &mut Replies) -> Result<serde_json::Value, ClientError> {
    let Some(line) = lines.next_line().await? else {
        let eof = std::io::ErrorKind::UnexpectedEof;
        return Err(ClientError::Io(std::io::Error::new(
            eof,
            "the agent closed the connection without replying",
        )));
    };
    match serde_json::from_str::<Reply>(&line).map_err(bad_reply)? {
        Reply::Ok { data } => Ok(data),
        Reply::Error { message } => Err(ClientError::Agent(message)),
    }
}

fn bad_reply(e: serde_json::Error) -> ClientError {
    ClientError::BadReply(e.to_string())
}
