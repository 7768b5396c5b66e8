//! What the agent persists in its state dir: the node's identity (VTEP and gateway
//! MACs, stable across restarts because peers cache them), IPAM and the pods, and the
//! statically configured remote nodes. Written atomically (temp file + rename).

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::mac::Mac;

const STATE_FILE: &str = "node.json";
const STATE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is corrupt ({source}); move it away to start the node afresh")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write state {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodRecord {
    pub name: String,
    /// Network namespace path (`/run/netns/NAME` for pods the agent made).
    pub netns: PathBuf,
    /// Whether the agent created the namespace (and so removes it with the pod).
    pub owns_netns: bool,
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub host_if: String,
    #[serde(default)]
    pub container_id: Option<String>,
    /// The pod's namespace and labels, which network policy selects by.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub k8s_pod: Option<String>,
    #[serde(default)]
    pub labels: crate::policy::selector::Labels,
    /// Its named ports, for policies that name ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<crate::policy::ports::ContainerPort>,
}

pub fn default_namespace() -> String {
    "default".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeRecord {
    pub name: String,
    pub pod_cidr: Ipv4Net,
    pub underlay_ip: Ipv4Addr,
    /// The node's VTEP; zero for a node with none (host-gw).
    pub vtep_mac: Mac,
    /// What the node speaks (its lease's `BackendType`).
    #[serde(default)]
    pub peer: crate::backend::PeerType,
    /// When the lease behind it expires (unix seconds), for nodes from the store.
    #[serde(default)]
    pub expires: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub version: u32,
    pub vtep_mac: Mac,
    pub gateway_mac: Mac,
    pub pod_cidr: Option<Ipv4Net>,
    /// The cluster network the subnet was leased from (the store's, which may differ
    /// from the config's), for restarts while the store is away.
    #[serde(default)]
    pub cluster_cidr: Option<Ipv4Net>,
    /// The backend the node last ran with (`Backend::name`), for restarts while the
    /// store is away, and to tell a change of mode.
    #[serde(default)]
    pub backend: Option<String>,
    /// The pods' MTU beyond the node the node last gave them (their default route's).
    #[serde(default)]
    pub pod_mtu: Option<u32>,
    /// The pods' link MTU the node last gave them (none: state from before pods had
    /// the uplink's, when the link had `pod_mtu`).
    #[serde(default)]
    pub pod_link_mtu: Option<u32>,
    pub last_ip: Option<Ipv4Addr>,
    pub pods: BTreeMap<String, PodRecord>,
    /// Remote nodes added by hand (`netcore node add`).
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Remote nodes last seen in the cluster store, by lease key: the data path keeps
    /// them across a restart until the store answers again.
    #[serde(default)]
    pub store_nodes: BTreeMap<String, NodeRecord>,
    /// Services by name, with the id their maps and counters use.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceRecord>,
    /// Network policies by `namespace/name`, as applied (or last seen in the store).
    #[serde(default)]
    pub policies: BTreeMap<String, crate::policy::types::NetworkPolicy>,
    /// Namespaces' labels (each also carries its name label, implicitly).
    #[serde(default)]
    pub namespaces: BTreeMap<String, crate::policy::selector::Labels>,
    /// Other nodes' pods as last seen in the store, for policy.
    #[serde(default)]
    pub store_pods: BTreeMap<Ipv4Addr, crate::policy::compile::PodIdentity>,
    /// Policy class and set ids, and each policy's hit-counter slot.
    #[serde(default)]
    pub policy_ids: crate::policy::compile::Ids,
    #[serde(default)]
    pub policy_slots: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceRecord {
    pub id: u32,
    pub spec: crate::api::service::ServiceSpec,
}

impl NodeState {
    fn fresh() -> Self {
        Self {
            version: STATE_VERSION,
            vtep_mac: Mac::random(),
            gateway_mac: Mac::random(),
            pod_cidr: None,
            cluster_cidr: None,
            backend: None,
            pod_mtu: None,
            pod_link_mtu: None,
            last_ip: None,
            pods: BTreeMap::new(),
            nodes: BTreeMap::new(),
            store_nodes: BTreeMap::new(),
            services: BTreeMap::new(),
            policies: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            store_pods: BTreeMap::new(),
            policy_ids: Default::default(),
            policy_slots: BTreeMap::new(),
        }
    }

    /// Loads the state in `dir`, or a fresh identity when there is none yet.
    pub fn load(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StateError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::fresh()),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let path = dir.join(STATE_FILE);
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
            let bytes = serde_json::to_vec_pretty(self).expect("state serializes");
            std::fs::write(&tmp, bytes)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|source| StateError::Write { path, source })
    }

    pub fn pod_by_host_if(&self, host_if: &str) -> Option<&PodRecord> {
        self.pods.values().find(|p| p.host_if == host_if)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_survives_a_save_and_load() {
        let dir = std::env::temp_dir().join(format!("netcore-state-{}", std::process::id()));
        let st = NodeState::load(&dir).unwrap();
        st.save(&dir).unwrap();
        let again = NodeState::load(&dir).unwrap();
        assert_eq!(
            (st.vtep_mac, st.gateway_mac),
            (again.vtep_mac, again.gateway_mac)
        );
        std::fs::write(dir.join(STATE_FILE), b"{not json").unwrap();
        let err = NodeState::load(&dir).unwrap_err().to_string();
        assert!(
            err.contains("corrupt"),
            "a corrupt state file is reported as such: {err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
