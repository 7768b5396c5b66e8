//! Network policy, the agent's side: policies, namespaces' labels and pods'
//! identities (this node's, and every other node's from the store) compiled into the
//! policy maps; each change rewrites only what it changes, and flows the new policy
//! no longer allows are forgotten (their next packet is checked again).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use netcore_common::{conntrack::CtKey, policy::MAX_POLICIES};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{Agent, AgentError, Result};
use crate::{
    api::PodInfo,
    policy::{
        compile::{compile, Compiled, Inputs, PodIdentity},
        parse::{self, Policy},
        selector::{check_dns_label, check_labels, Labels},
        types::NetworkPolicy,
    },
};

/// What the agent keeps of policy besides its state file.
#[derive(Default)]
pub struct PolicyRuntime {
    /// The policies of `state.policies`, validated.
    pub valid: BTreeMap<String, Policy>,
    /// What the maps hold.
    pub applied: Compiled,
    /// Hits a slot had when its policy got it.
    pub hit_base: BTreeMap<u32, u64>,
}

/// One policy as `netcore policy list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyInfo {
    pub namespace: String,
    pub name: String,
    /// "Ingress", "Egress".
    pub policy_types: Vec<String>,
    /// This node's pods it selects.
    pub pods: Vec<String>,
    /// Flows it allowed on this node.
    pub hits: u64,
    pub object: NetworkPolicy,
}

/// A namespace and its labels (its name label included).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub name: String,
    pub labels: Labels,
}

/// Label changes: `key=value` to set, `key-` to remove (as `kubectl label`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LabelChange {
    #[serde(default)]
    pub set: Labels,
    #[serde(default)]
    pub remove: Vec<String>,
}

impl LabelChange {
    /// The labels after the change, checked.
    pub fn apply(&self, mut labels: Labels) -> Result<Labels> {
        check_labels(&self.set).map_err(|e| AgentError::BadLabels(e.to_string()))?;
        for k in &self.remove {
            labels.remove(k);
        }
        labels.extend(self.set.clone());
        Ok(labels)
    }
}

pub fn check_namespace(ns: &str) -> Result<()> {
    check_dns_label(ns).map_err(|e| AgentError::BadLabels(format!("namespace: {e}")))
}

impl Agent {
    /// At start: what the (pinned) maps hold is what is applied.
    pub(super) fn adopt_policy_maps(&mut self) {
        let endpoints = self.maps.endpoints.entries();
        self.policy_active = endpoints.iter().any(|(_, e)| e.has_policy());
        self.policy.applied = Compiled {
            peers: self.maps.policy.peers().into_iter().collect(),
            rules: self
                .maps
                .policy
                .rules()
                .into_iter()
                .map(|(k, len, slot)| ((k, len), slot))
                .collect(),
            endpoints: endpoints
                .into_iter()
                .map(|(ip, e)| (ip, (e.ingress_set, e.egress_set)))
                .collect(),
            sets: BTreeMap::new(),
        };
    }

    /// Validates the recorded policies (at start; the store's are checked as they come).
    pub(super) fn load_policies(&mut self) {
        self.policy.valid.clear();
        for (key, np) in &self.state.policies {
            match parse::validate(np.clone()) {
                Ok(p) => {
                    self.policy.valid.insert(key.clone(), p);
                }
                Err(e) => warn!(policy = %key, "skipping a recorded policy: {e}"),
            }
        }
    }

    /// Adds or replaces the policies in `text` (YAML or JSON); all or none.
    pub fn policy_apply(&mut self, text: &str) -> Result<Vec<String>> {
        let policies =
            parse::parse_documents(text).map_err(|e| AgentError::BadPolicy(e.to_string()))?;
        self.policy_put(policies)
    }

    /// Adds or replaces validated policies; returns their keys.
    pub fn policy_put(&mut self, policies: Vec<Policy>) -> Result<Vec<String>> {
        let free = (1..MAX_POLICIES).filter(|s| !self.state.policy_slots.values().any(|x| x == s));
        let new = policies
            .iter()
            .filter(|p| !self.state.policy_slots.contains_key(&p.key()))
            .count();
        if free.count() < new {
            return Err(AgentError::BadPolicy(format!(
                "more than {} policies",
                MAX_POLICIES - 1
            )));
        }
        let mut keys = Vec::new();
        for p in policies {
            let key = p.key();
            self.take_slot(&key);
            self.state.policies.insert(key.clone(), p.object.clone());
            self.policy.valid.insert(key.clone(), p);
            keys.push(key);
        }
        self.apply_policy()?;
        info!(policies = ?keys, "network policies applied");
        Ok(keys)
    }

    fn take_slot(&mut self, key: &str) {
        if self.state.policy_slots.contains_key(key) {
            return;
        }
        let used: BTreeSet<u32> = self.state.policy_slots.values().copied().collect();
        let slot = (1..MAX_POLICIES)
            .find(|s| !used.contains(s))
            .expect("checked before");
        self.policy
            .hit_base
            .insert(slot, self.maps.policy.hits(slot));
        self.state.policy_slots.insert(key.to_string(), slot);
    }

    /// Removes `namespace/name`; false if there was none.
    pub fn policy_del(&mut self, key: &str) -> Result<bool> {
        if self.state.policies.remove(key).is_none() {
            return Ok(false);
        }
        self.policy.valid.remove(key);
        self.state.policy_slots.remove(key);
        self.apply_policy()?;
        info!(policy = %key, "network policy deleted");
        Ok(true)
    }

    pub fn policy_list(&self) -> Vec<PolicyInfo> {
        self.policy
            .valid
            .iter()
            .map(|(key, p)| {
                let slot = self.state.policy_slots.get(key).copied().unwrap_or(0);
                let base = self.policy.hit_base.get(&slot).copied().unwrap_or(0);
                let mut types = Vec::new();
                if p.ingress.is_some() {
                    types.push("Ingress".to_string());
                }
                if p.egress.is_some() {
                    types.push("Egress".to_string());
                }
                let pods = self
                    .state
                    .pods
                    .values()
                    .filter(|r| r.namespace == p.namespace && p.pod_selector.matches(&r.labels))
                    .map(|r| r.name.clone())
                    .collect();
                PolicyInfo {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    policy_types: types,
                    pods,
                    hits: self.maps.policy.hits(slot).saturating_sub(base),
                    object: p.object.clone(),
                }
            })
            .collect()
    }

    /// Changes a local pod's labels.
    pub fn pod_label(&mut self, name: &str, change: &LabelChange) -> Result<PodInfo> {
        let rec = self
            .state
            .pods
            .get(name)
            .ok_or_else(|| AgentError::NoSuchPod(name.into()))?;
        let labels = change.apply(rec.labels.clone())?;
        let rec = self.state.pods.get_mut(name).expect("looked up");
        rec.labels = labels;
        let rec = rec.clone();
        self.save()?;
        self.apply_policy()?;
        self.pods_changed();
        Ok(self.pod_info(&rec))
    }

    /// Changes a namespace's labels.
    pub fn namespace_label(&mut self, ns: &str, change: &LabelChange) -> Result<NamespaceInfo> {
        check_namespace(ns)?;
        let labels = change.apply(self.state.namespaces.get(ns).cloned().unwrap_or_default())?;
        self.set_namespace(ns, labels.clone())?;
        Ok(NamespaceInfo {
            name: ns.into(),
            labels: crate::policy::compile::namespace_labels(&self.state.namespaces, ns),
        })
    }

    fn set_namespace(&mut self, ns: &str, mut labels: Labels) -> Result<()> {
        labels.remove(crate::policy::selector::NAMESPACE_NAME_LABEL);
        if labels.is_empty() {
            self.state.namespaces.remove(ns);
        } else {
            self.state.namespaces.insert(ns.into(), labels);
        }
        self.apply_policy()
    }

    /// A namespace's own labels (not its name label).
    pub fn namespace_labels(&self, ns: &str) -> Labels {
        self.state.namespaces.get(ns).cloned().unwrap_or_default()
    }

    pub fn pod_cidr(&self) -> ipnet::Ipv4Net {
        self.net.pod_cidr
    }

    /// The control plane wakes on `nudge` to write this node's pods to the store.
    pub fn set_store_nudge(&mut self, nudge: std::sync::Arc<tokio::sync::Notify>) {
        self.store_nudge = Some(nudge);
    }

    /// This node's pods changed: the store should hear of it.
    pub(super) fn pods_changed(&self) {
        if let Some(n) = &self.store_nudge {
            n.notify_one();
        }
    }

    /// Every namespace a pod, a policy or a label names.
    pub fn namespace_list(&self) -> Vec<NamespaceInfo> {
        let names: BTreeSet<String> = self
            .state
            .namespaces
            .keys()
            .cloned()
            .chain(self.state.pods.values().map(|p| p.namespace.clone()))
            .chain(self.state.store_pods.values().map(|p| p.namespace.clone()))
            .chain(self.policy.valid.values().map(|p| p.namespace.clone()))
            .collect();
        names
            .into_iter()
            .map(|n| NamespaceInfo {
                labels: crate::policy::compile::namespace_labels(&self.state.namespaces, &n),
                name: n,
            })
            .collect()
    }

    /// The policies in the store: added, changed and removed here to match.
    pub fn set_store_policies(&mut self, objects: BTreeMap<String, NetworkPolicy>) -> Result<()> {
        if objects == self.state.policies {
            return Ok(());
        }
        self.state.policies = objects;
        self.load_policies();
        let keys: Vec<String> = self.state.policies.keys().cloned().collect();
        self.state.policy_slots.retain(|k, _| keys.contains(k));
        for k in &keys {
            self.take_slot(k);
        }
        self.apply_policy()
    }

    /// Namespaces' labels in the store.
    pub fn set_store_namespaces(&mut self, namespaces: BTreeMap<String, Labels>) -> Result<()> {
        if namespaces == self.state.namespaces {
            return Ok(());
        }
        self.state.namespaces = namespaces;
        self.apply_policy()
    }

    /// Other nodes' pods in the store.
    pub fn set_store_pods(&mut self, pods: BTreeMap<Ipv4Addr, PodIdentity>) -> Result<()> {
        if pods == self.state.store_pods {
            return Ok(());
        }
        self.state.store_pods = pods;
        self.apply_policy()
    }

    /// This node's pods as policy sees them (what the store gets from this node).
    pub fn local_identities(&self) -> Vec<PodIdentity> {
        self.state
            .pods
            .values()
            .map(|p| PodIdentity {
                ip: p.ip,
                namespace: p.namespace.clone(),
                labels: p.labels.clone(),
                ports: p.ports.clone(),
            })
            .collect()
    }

    /// Pods of other nodes from the store, where a known node's pod CIDR holds them.
    fn remote_identities(&self) -> impl Iterator<Item = &PodIdentity> {
        let cidrs: Vec<ipnet::Ipv4Net> = self
            .state
            .store_nodes
            .values()
            .chain(self.state.nodes.values())
            .map(|n| n.pod_cidr)
            .collect();
        self.state
            .store_pods
            .values()
            .filter(move |p| cidrs.iter().any(|c| c.contains(&p.ip)))
    }

    /// Compiles and writes the policy maps; forgets flows no longer allowed.
    pub(super) fn apply_policy(&mut self) -> Result<()> {
        let mut pods = self.local_identities();
        let local: Vec<Ipv4Addr> = pods.iter().map(|p| p.ip).collect();
        pods.extend(self.remote_identities().cloned());
        let input = Inputs {
            pods: &pods,
            local: &local,
            namespaces: &self.state.namespaces,
            policies: &self.policy.valid,
            slots: &self.state.policy_slots,
        };
        let next = compile(&input, &mut self.state.policy_ids);
        self.write_policy_maps(next)?;
        self.save()
    }

    /// Writes `next` over what the maps hold: new entries first, then the pods' sets,
    /// then what is gone; then the flows are checked again.
    fn write_policy_maps(&mut self, next: Compiled) -> Result<()> {
        let old = std::mem::take(&mut self.policy.applied);
        for (&(key, len), &slot) in &next.rules {
            if old.rules.get(&(key, len)) != Some(&slot) {
                self.maps.policy.set_rule(key, len, slot)?;
            }
        }
        for (&net, &class) in &next.peers {
            if old.peers.get(&net) != Some(&class) {
                self.maps.policy.set_peer(net, class)?;
            }
        }
        let active = next.endpoints.values().any(|&(i, e)| i != 0 || e != 0);
        if active && !self.policy_active {
            self.policy_active = true;
            self.write_datapath_config()?;
        }
        for pod in self.state.pods.values() {
            let (i, e) = next.endpoints.get(&pod.ip).copied().unwrap_or((0, 0));
            self.maps.endpoints.set_policy(pod.ip, i, e)?;
        }
        if !active && self.policy_active {
            self.policy_active = false;
            self.write_datapath_config()?;
        }
        for net in old.peers.keys().filter(|n| !next.peers.contains_key(n)) {
            self.maps.policy.remove_peer(*net)?;
        }
        for (key, len) in old.rules.keys().filter(|k| !next.rules.contains_key(k)) {
            self.maps.policy.remove_rule(*key, *len)?;
        }
        let changed = old != next;
        self.policy.applied = next;
        if changed {
            self.recheck_flows()?;
        }
        Ok(())
    }

    /// Forgets every remembered flow the maps no longer allow, or that no policy
    /// tracks any more.
    fn recheck_flows(&mut self) -> Result<()> {
        let mut forgotten = 0;
        for flow in self.maps.policy.flows() {
            if !self.still_allowed(&flow) {
                self.maps.policy.forget_flow(&flow)?;
                forgotten += 1;
            }
        }
        if forgotten > 0 {
            info!(
                flows = forgotten,
                "forgot flows the network policy no longer allows"
            );
        }
        Ok(())
    }

    fn still_allowed(&self, flow: &CtKey) -> bool {
        let ip = |a: u32| Ipv4Addr::from(a.to_ne_bytes());
        let (src, dst) = (ip(flow.src), ip(flow.dst));
        let sets = |a: Ipv4Addr| {
            self.policy
                .applied
                .endpoints
                .get(&a)
                .copied()
                .unwrap_or((0, 0))
        };
        let ((_, egress), (ingress, _)) = (sets(src), sets(dst));
        if sets(src) == (0, 0) && sets(dst) == (0, 0) {
            return false;
        }
        let m = &self.maps.policy;
        let egress_ok = egress == 0 || m.allows(egress, m.class_of(dst), flow.proto, flow.dport);
        let from_node = src == self.node_ip
            || src == self.net.gateway()
            || self.service_cidr.is_some_and(|s| s.contains(&src));
        let ingress_ok =
            ingress == 0 || from_node || m.allows(ingress, m.class_of(src), flow.proto, flow.dport);
        egress_ok && ingress_ok
    }
}
