//! The control loop: renew this node's lease, list every lease after each change the
//! store reports, and hand the other nodes to the agent. Unparseable leases are
//! reported once and skipped; a lease that turns bad keeps its last good route.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::{
    sync::{mpsc, Mutex},
    time::Instant,
};
use tracing::warn;

use super::{lease::OwnLease, ControlRequest, SharedHealth};
use crate::{
    agent::Agent,
    api::service::ServiceSpec,
    state::NodeRecord,
    store::{
        flannel::{self, LeaseValue},
        Entry, Store,
    },
};

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub struct Sync {
    pub store: Store,
    pub lease: OwnLease,
    pub prefix: String,
    pub agent: Arc<Mutex<Agent>>,
    pub health: SharedHealth,
    /// Last good record per lease key.
    known: BTreeMap<String, NodeRecord>,
    /// (key, value) pairs already reported as bad.
    reported: HashSet<(String, String)>,
    /// Wakes the loop when this node's pods change.
    nudge: Arc<tokio::sync::Notify>,
    policies: super::policy::ParsedPolicies,
}

impl Sync {
    pub fn new(
        store: Store,
        lease: OwnLease,
        prefix: String,
        agent: Arc<Mutex<Agent>>,
        health: SharedHealth,
    ) -> Self {
        Sync {
            store,
            lease,
            prefix,
            agent,
            health,
            known: BTreeMap::new(),
            reported: HashSet::new(),
            nudge: Arc::new(tokio::sync::Notify::new()),
            policies: Default::default(),
        }
    }

    /// What wakes the loop to write this node's pods.
    pub fn nudge(&self) -> Arc<tokio::sync::Notify> {
        self.nudge.clone()
    }

    /// Runs until a leave request has been served.
    pub async fn run(mut self, mut requests: mpsc::Receiver<ControlRequest>) {
        let renew_every = self.lease.ttl / 3;
        let mut renew_at = Instant::now() + renew_every;
        let mut backoff = BACKOFF_MIN;
        let watched = format!("{}/", self.prefix.trim_end_matches('/'));
        loop {
            if Instant::now() >= renew_at {
                let r = self.lease.renew(&mut self.store).await;
                renew_at = Instant::now() + if r.is_ok() { renew_every } else { backoff };
                if let Ok(held) = r {
                    self.lease_held(held);
                }
                self.record(
                    r.map(drop)
                        .map_err(|e| format!("renewing {}: {e}", self.lease.key)),
                );
            }
            let ok = self.sync().await;
            let wait = async {
                if !ok {
                    tokio::time::sleep(backoff).await;
                    return Ok(());
                }
                self.store
                    .changed(&watched)
                    .await
                    .map_err(|e| e.to_string())
            };
            tokio::select! {
                r = wait => {
                    backoff = if ok && r.is_ok() { BACKOFF_MIN } else { (backoff * 2).min(BACKOFF_MAX) };
                    if let Err(e) = r {
                        self.record(Err(format!("watching the store: {e}")));
                        tokio::time::sleep(backoff).await;
                    }
                }
                _ = tokio::time::sleep_until(renew_at) => {}
                _ = self.nudge.notified() => {}
                req = requests.recv() => match req {
                    Some(ControlRequest::Leave(reply)) => {
                        let r = self.lease.release(&mut self.store).await;
                        let released = r.is_ok();
                        let _ = reply.send(r.map(|()| serde_json::Value::Null).map_err(|e| format!("releasing the lease: {e}")));
                        // A failed release leaves the node as it was: keep renewing.
                        if released {
                            return;
                        }
                    }
                    Some(req) => self.serve(req).await,
                    None => return,
                }
            }
        }
    }

    /// Lists leases and services and applies them; false when the store failed.
    async fn sync(&mut self) -> bool {
        let leases = self
            .store
            .list(&flannel::subnets_prefix(&self.prefix))
            .await;
        let services = self
            .store
            .list(&flannel::services_prefix(&self.prefix))
            .await;
        match (leases, services) {
            (Ok(leases), Ok(services)) => {
                self.record(Ok(()));
                let nodes = self.nodes(leases);
                let services = self.services(services);
                let mut agent = self.agent.lock().await;
                if let Err(e) = agent.set_store_nodes(nodes) {
                    warn!("applying leases to the node map: {e}");
                }
                if let Err(e) = agent.set_store_services(services) {
                    warn!("applying services: {e}");
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                self.record(Err(format!("listing the store: {e}")));
                return false;
            }
        }
        let synced = super::policy::sync(
            &mut self.store,
            &self.prefix,
            &self.agent,
            &mut self.reported,
            &mut self.policies,
        )
        .await;
        if let Err(e) = synced {
            self.record(Err(format!("network policy in the store: {e}")));
            return false;
        }
        true
    }

    /// A service change: applied here first (which validates it), then written to the
    /// store for every other node.
    async fn serve(&mut self, req: ControlRequest) {
        let (result, reply) = match req {
            ControlRequest::PutService {
                spec,
                replace,
                reply,
            } => {
                let key = flannel::service_key(&self.prefix, &spec.name);
                let json = serde_json::to_string(&spec).expect("services serialize");
                let added = self
                    .agent
                    .lock()
                    .await
                    .service_add(spec, replace)
                    .map_err(|e| e.to_string());
                let stored = match added {
                    Ok(status) => self
                        .store
                        .put(&key, &json, None)
                        .await
                        .map(|()| serde_json::to_value(status).expect("serializes"))
                        .map_err(|e| format!("writing {key}: {e}")),
                    Err(e) => Err(e),
                };
                (stored, reply)
            }
            ControlRequest::DelService { name, reply } => {
                let key = flannel::service_key(&self.prefix, &name);
                let existed = self
                    .agent
                    .lock()
                    .await
                    .service_del(&name)
                    .map_err(|e| e.to_string());
                let deleted = match existed {
                    Ok(existed) => self
                        .store
                        .delete(&key)
                        .await
                        .map(|()| serde_json::Value::Bool(existed))
                        .map_err(|e| format!("deleting {key}: {e}")),
                    Err(e) => Err(e),
                };
                (deleted, reply)
            }
            ControlRequest::ApplyPolicy { text, reply } => (
                super::policy::apply(&mut self.store, &self.prefix, &self.agent, &text).await,
                reply,
            ),
            ControlRequest::DelPolicy { key, reply } => (
                super::policy::delete(&mut self.store, &self.prefix, &self.agent, &key).await,
                reply,
            ),
            ControlRequest::LabelNamespace {
                name,
                change,
                reply,
            } => {
                let r = super::policy::label_namespace(
                    &mut self.store,
                    &self.prefix,
                    &self.agent,
                    &name,
                    &change,
                )
                .await;
                (r, reply)
            }
            ControlRequest::Leave(reply) => (Err("leave is handled by the loop".into()), reply),
        };
        let _ = reply.send(result);
    }

    /// Services from the store, by name; unparseable ones are reported once and skipped.
    fn services(&mut self, entries: Vec<Entry>) -> BTreeMap<String, ServiceSpec> {
        let mut out = BTreeMap::new();
        for e in entries {
            match serde_json::from_str::<ServiceSpec>(&e.value) {
                Ok(spec) if e.key.ends_with(&format!("/{}", spec.name)) => {
                    out.insert(spec.name.clone(), spec);
                }
                Ok(_) | Err(_) => {
                    if self.reported.insert((e.key.clone(), e.value.clone())) {
                        warn!(key = %e.key, "skipping a service netcore cannot use");
                    }
                }
            }
        }
        out
    }

    fn record(&self, r: Result<(), String>) {
        self.health.lock().expect("health lock").record(r);
    }

    /// Notes whether this node still holds its lease; losing it is logged once.
    fn lease_held(&self, held: bool) {
        let mut h = self.health.lock().expect("health lock");
        if h.lease_held && !held {
            tracing::error!(key = %self.lease.key, "another node holds this node's subnet now; not overwriting it (the node is not ready)");
        }
        h.lease_held = held;
    }

    /// Turns a listing into the other nodes, by lease key.
    fn nodes(&mut self, entries: Vec<Entry>) -> BTreeMap<String, NodeRecord> {
        let mut next = BTreeMap::new();
        for e in entries {
            if e.key == self.lease.key {
                continue;
            }
            match self.parse(&e) {
                Ok(rec) if rec.underlay_ip == self.lease.value.public_ip => {}
                Ok(rec) => {
                    next.insert(e.key.clone(), rec);
                }
                Err(reason) => {
                    if self.reported.insert((e.key.clone(), e.value.clone())) {
                        warn!(key = %e.key, "skipping a lease netcore cannot use: {reason}");
                    }
                    if let Some(good) = self.known.get(&e.key) {
                        next.insert(e.key.clone(), good.clone());
                    }
                }
            }
        }
        self.known = next.clone();
        next
    }

    fn parse(&self, e: &Entry) -> Result<NodeRecord, String> {
        let subnet = flannel::parse_subnet_key(&self.prefix, &e.key).map_err(|x| x.to_string())?;
        let v = LeaseValue::parse(&e.key, &e.value).map_err(|x| x.to_string())?;
        if !self.lease.network.contains(&subnet) {
            return Err(format!(
                "subnet {subnet} is outside the cluster network {}",
                self.lease.network
            ));
        }
        let ip = v.public_ip;
        if ip.is_unspecified()
            || ip.is_loopback()
            || ip.is_multicast()
            || ip.is_broadcast()
            || self.lease.network.contains(&ip)
        {
            return Err(format!("PublicIP {ip} cannot be a node's underlay address"));
        }
        let (peer, vtep) = v.peer();
        if let Some(mac) = vtep.filter(|m| m.0[0] & 1 == 1 || *m == crate::mac::Mac::default()) {
            return Err(format!("VtepMAC {mac} is not unicast"));
        }
        let expires = e
            .expires
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        Ok(NodeRecord {
            name: v.public_ip.to_string(),
            pod_cidr: subnet,
            underlay_ip: v.public_ip,
            vtep_mac: vtep.unwrap_or_default(),
            peer,
            expires,
        })
    }
}
