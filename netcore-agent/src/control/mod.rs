//! The control plane: this node's subnet lease in the cluster store, and every other
//! node's lease applied to the node map. The data path never waits for it: when the
//! store is away, forwarding goes on with the last known nodes.

pub mod lease;
pub mod policy;
pub mod sync;

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// How the store looks from here, for `netcore status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoreHealth {
    pub backend: String,
    pub url: String,
    pub connected: bool,
    /// Unix seconds of the last change between connected and not.
    pub since: u64,
    pub last_error: Option<String>,
    /// This node's lease key.
    pub lease_key: String,
    /// Whether the lease is this node's (false while only remembered, or taken over).
    pub lease_held: bool,
}

pub type SharedHealth = Arc<Mutex<StoreHealth>>;

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl StoreHealth {
    /// Records the outcome of a store operation; logs only when the state changes.
    pub fn record(&mut self, result: Result<(), String>) {
        let connected = result.is_ok();
        if connected != self.connected {
            self.since = unix_now();
            match &result {
                Ok(()) => tracing::info!(store = %self.url, "cluster store reachable"),
                Err(e) => {
                    tracing::warn!(store = %self.url, "cluster store unreachable, forwarding on the last known nodes: {e}")
                }
            }
        }
        self.connected = connected;
        if let Err(e) = result {
            self.last_error = Some(e);
        }
    }
}

type Reply = oneshot::Sender<Result<serde_json::Value, String>>;

/// What the API asks of the control plane; each is answered once done.
pub enum ControlRequest {
    /// Release the lease (a clean leave).
    Leave(Reply),
    /// Install a service and write it to the store, so every node gets it.
    PutService {
        spec: crate::api::service::ServiceSpec,
        replace: bool,
        reply: Reply,
    },
    DelService {
        name: String,
        reply: Reply,
    },
    /// Apply NetworkPolicy objects here and write them to the store.
    ApplyPolicy {
        text: String,
        reply: Reply,
    },
    DelPolicy {
        key: String,
        reply: Reply,
    },
    LabelNamespace {
        name: String,
        change: crate::agent::LabelChange,
        reply: Reply,
    },
}

/// What the API server holds of the control plane.
#[derive(Clone)]
pub struct ControlHandle {
    pub requests: mpsc::Sender<ControlRequest>,
}

impl ControlHandle {
    /// Sends a request built around its reply channel and waits for the answer.
    pub async fn ask(
        &self,
        make: impl FnOnce(Reply) -> ControlRequest,
    ) -> Result<serde_json::Value, String> {
        let (tx, rx) = oneshot::channel();
        let stopped = || "the control plane has stopped".to_string();
        self.requests.send(make(tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}
