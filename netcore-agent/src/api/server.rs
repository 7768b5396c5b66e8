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
    monitor::{self, Line, Watch},
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
    hub: monitor::Hub,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let ctx = Ctx {
                    agent: agent.clone(),
                    control: control.clone(),
                    stop: stop.clone(),
                    hub: hub.clone(),
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
    hub: monitor::Hub,
}

impl Ctx {
    /// Requests that change cluster-wide state go through the control plane when
    /// there is a store; everything else is the agent's.
    async fn handle(&self, req: Request) -> Reply {
        if let Request::Flows { pod, top } = req {
            // Read without holding the agent (a whole-map read).
            let source = self.agent.lock().await.flow_source();
            let summary = crate::flows::summary_of(source, pod, top).await;
            let data = serde_json::to_value(summary).expect("a summary serializes");
            return Reply::Ok { data };
        }
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
                Request::PolicyApply { text } => ControlRequest::ApplyPolicy { text, reply },
                Request::PolicyDel { key } => ControlRequest::DelPolicy { key, reply },
                Request::NamespaceLabel { name, change } => ControlRequest::LabelNamespace {
                    name,
                    change,
                    reply,
                },
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
        Request::Leave
            | Request::ServiceAdd { .. }
            | Request::ServiceDel { .. }
            | Request::PolicyApply { .. }
            | Request::PolicyDel { .. }
            | Request::NamespaceLabel { .. }
    )
}

async fn connection(stream: UnixStream, ctx: Ctx) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_REQUEST as u64 * 16)).lines();
    while let Some(line) = lines.next_line().await? {
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Monitor(w)) => return watch(lines, write, &ctx, w).await,
            Ok(req) => ctx.handle(req).await,
            Err(e) => Reply::Error {
                message: format!("bad request: {e}"),
            },
        };
        write_line(&mut write, &reply).await?;
    }
    Ok(())
}

async fn write_line<T: serde::Serialize>(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    v: &T,
) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(v).expect("replies serialize");
    out.push(b'\n');
    write.write_all(&out).await
}

/// A monitor connection: an `Ok`, then every event `w` asks for, one line each, until
/// the client goes (its side of the socket closes). The watcher is counted in and out
/// around it, so the programs write events only while someone watches.
async fn watch<R: tokio::io::AsyncBufRead + Unpin>(
    mut lines: tokio::io::Lines<R>,
    mut write: tokio::net::unix::OwnedWriteHalf,
    ctx: &Ctx,
    w: Watch,
) -> std::io::Result<()> {
    let mut events = ctx.hub.subscribe();
    if let Err(e) = ctx.agent.lock().await.watch(w) {
        let reply = Reply::Error {
            message: e.to_string(),
        };
        return write_line(&mut write, &reply).await;
    }
    let result = stream_events(&mut lines, &mut write, &mut events, w).await;
    if let Err(e) = ctx.agent.lock().await.unwatch(w) {
        tracing::warn!("turning monitor events off: {e}");
    }
    result
}

async fn stream_events<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
    write: &mut tokio::net::unix::OwnedWriteHalf,
    events: &mut tokio::sync::broadcast::Receiver<Arc<Line>>,
    w: Watch,
) -> std::io::Result<()> {
    write_line(
        write,
        &Reply::Ok {
            data: serde_json::Value::Null,
        },
    )
    .await?;
    loop {
        tokio::select! {
            // The client went (or sent something else): done.
            _ = lines.next_line() => return Ok(()),
            got = events.recv() => match got {
                Ok(line) => {
                    let wanted = match &*line {
                        Line::Drop(_) => w.drops,
                        Line::Trace(_) => w.trace,
                        Line::Lost { .. } => true,
                    };
                    if wanted {
                        write_line(write, &*line).await?;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    write_line(write, &Line::Lost { events: n }).await?;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}
