//! Serves the API socket: each connection sends request lines and gets reply lines.
//! Requests run one at a time against the agent (it owns all state).

use std::{path::Path, sync::Arc};

use anyhow::Context;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, Mutex},
};

use super::{Reply, Request};
use crate::{
    agent::Agent,
    control::{ControlHandle, ControlRequest},
};

/// Longest request line accepted (a request is a few hundred bytes).
const MAX_REQUEST: usize = 64 * 1024;

pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        anyhow::bail!("another agent is already serving {}", path.display());
    }
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).with_context(|| format!("binding API socket {}", path.display()))
}

/// Serves until the process stops; a served `leave` sends on `stop`.
pub async fn serve(
    listener: UnixListener,
    agent: Arc<Mutex<Agent>>,
    control: Option<ControlHandle>,
    stop: mpsc::Sender<()>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let ctx = Ctx {
                    agent: agent.clone(),
                    control: control.clone(),
                    stop: stop.clone(),
                };
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, ctx).await {
                        tracing::debug!("API connection ended: {e}");
                    }
                });
            }
            Err(e) => tracing::warn!("API accept failed: {e}"),
        }
    }
}

struct Ctx {
    agent: Arc<Mutex<Agent>>,
    control: Option<ControlHandle>,
    stop: mpsc::Sender<()>,
}

impl Ctx {
    /// Requests that change cluster-wide state go through the control plane when
    /// there is a store; everything else is the agent's.
    async fn handle(&self, req: Request) -> Reply {
        let (Some(control), true) = (&self.control, is_cluster_wide(&req)) else {
            if matches!(req, Request::Leave) {
                return Reply::Error {
                    message: "this node has no cluster store: nothing to leave".into(),
                };
            }
            return self.agent.lock().await.handle(req).await;
        };
        let leave = matches!(req, Request::Leave);
        let result = control
            .ask(|reply| match req {
                Request::ServiceAdd { spec, replace } => ControlRequest::PutService {
                    spec,
                    replace,
                    reply,
                },
                Request::ServiceDel { name } => ControlRequest::DelService { name, reply },
                _ => ControlRequest::Leave(reply),
            })
            .await;
        match result {
            Ok(data) => {
                if leave {
                    let _ = self.stop.send(()).await;
                }
                Reply::Ok { data }
            }
            Err(message) => Reply::Error { message },
        }
    }
}

fn is_cluster_wide(req: &Request) -> bool {
    matches!(
        req,
        Request::Leave | Request::ServiceAdd { .. } | Request::ServiceDel { .. }
    )
}

async fn connection(stream: UnixStream, ctx: Ctx) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_REQUEST as u64 * 16)).lines();
    while let Some(line) = lines.next_line().await? {
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(req) => ctx.handle(req).await,
            Err(e) => Reply::Error {
                message: format!("bad request: {e}"),
            },
        };
        let mut out = serde_json::to_vec(&reply).expect("replies serialize");
        out.push(b'\n');
        write.write_all(&out).await?;
    }
    Ok(())
}
