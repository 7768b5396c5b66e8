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

use super::{lease::OwnLease, LeaveRequest, SharedHealth};
use crate::{
    agent::Agent,
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
        }
    }

    /// Runs until a leave request has been served.
    pub async fn run(mut self, mut leave: mpsc::Receiver<LeaveRequest>) {
        let renew_every = self.lease.ttl / 3;
        let mut renew_at = Instant::now() + renew_every;
        let mut backoff = BACKOFF_MIN;
        let subnets = flannel::subnets_prefix(&self.prefix);
        loop {
            if Instant::now() >= renew_at {
                let r = self.lease.renew(&mut self.store).await;
                renew_at = Instant::now() + if r.is_ok() { renew_every } else { backoff };
                self.record(r.map_err(|e| format!("renewing {}: {e}", self.lease.key)));
            }
            let listed = self.store.list(&subnets).await;
            let ok = listed.is_ok();
            match listed {
                Ok(entries) => self.apply(entries).await,
                Err(e) => self.record(Err(format!("listing leases: {e}"))),
            }
            let wait = async {
                if ok {
                    self.store
                        .changed(&subnets)
                        .await
                        .map_err(|e| e.to_string())
                } else {
                    tokio::time::sleep(backoff).await;
                    Ok(())
                }
            };
            tokio::select! {
                r = wait => {
                    backoff = if ok && r.is_ok() { BACKOFF_MIN } else { (backoff * 2).min(BACKOFF_MAX) };
                    if let Err(e) = r {
                        self.record(Err(format!("watching leases: {e}")));
                        tokio::time::sleep(backoff).await;
                    }
                }
                _ = tokio::time::sleep_until(renew_at) => {}
                req = leave.recv() => {
                    if let Some(reply) = req {
                        let r = self.lease.release(&mut self.store).await.map_err(|e| e.to_string());
                        let _ = reply.send(r);
                        return;
                    }
                }
            }
        }
    }

    fn record(&self, r: Result<(), String>) {
        self.health.lock().expect("health lock").record(r);
    }

    async fn apply(&mut self, entries: Vec<Entry>) {
        self.record(Ok(()));
        let nodes = self.nodes(entries);
        if let Err(e) = self.agent.lock().await.set_store_nodes(nodes) {
            warn!("applying leases to the node map: {e}");
        }
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
        if v.backend_data.vtep_mac.0[0] & 1 == 1 {
            return Err(format!(
                "VtepMAC {} is not unicast",
                v.backend_data.vtep_mac
            ));
        }
        let expires = e
            .expires
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        Ok(NodeRecord {
            name: v.public_ip.to_string(),
            pod_cidr: subnet,
            underlay_ip: v.public_ip,
            vtep_mac: v.backend_data.vtep_mac,
            expires,
        })
    }
}
