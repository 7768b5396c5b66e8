//! The agent's local API: one JSON request per line on a unix socket, one JSON reply
//! per line. The CLI and the CNI plugin are its only clients.

pub mod client;
pub mod cni;
pub mod server;
pub mod service;

use std::{net::Ipv4Addr, path::PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::{datapath::Attachment, mac::Mac, maps::counters::CounterValue};

fn default_top() -> usize {
    crate::flows::DEFAULT_TOP
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// A pod: the agent makes `/run/netns/NAME` unless `netns` names an existing one.
    PodAdd(PodAdd),
    /// Changes a pod's labels (network policy selects by them).
    PodLabel {
        name: String,
        #[serde(flatten)]
        change: crate::agent::LabelChange,
    },
    /// Changes a namespace's labels (namespaceSelector).
    NamespaceLabel {
        name: String,
        #[serde(flatten)]
        change: crate::agent::LabelChange,
    },
    NamespaceList,
    /// NetworkPolicy objects as YAML or JSON (one or several documents).
    PolicyApply {
        text: String,
    },
    /// Deletes the policy `namespace/name`.
    PolicyDel {
        key: String,
    },
    PolicyList,
    PodDel {
        name: String,
    },
    PodList,
    Status,
    /// Each local pod's traffic over the last minute (`flows::FlowSummary`): `pod`
    /// only, with its `top` talkers.
    Flows {
        #[serde(default)]
        pod: Option<String>,
        #[serde(default = "default_top")]
        top: usize,
    },
    NodeAdd(NodeSpec),
    NodeDel {
        name: String,
    },
    NodeList,
    /// Add a service; with `replace`, change an existing one (its backends above all).
    ServiceAdd {
        spec: service::ServiceSpec,
        #[serde(default)]
        replace: bool,
    },
    ServiceDel {
        name: String,
    },
    ServiceList,
    /// Release this node's lease and stop the agent (a clean leave).
    Leave,
    /// CNI DEL: removes the pod of this attachment; succeeds when there is none.
    CniDel {
        container_id: String,
        ifname: String,
    },
    /// CNI CHECK: verifies the attachment's pod inside and outside its namespace.
    CniCheck {
        container_id: String,
        ifname: String,
        netns: PathBuf,
    },
    /// CNI GC: removes every CNI pod whose attachment is not in `valid`.
    CniGc {
        valid: Vec<cni::Attachment>,
    },
    /// Streams the data path's events as JSON lines (`monitor::Line`) until the
    /// client goes; the first line is an `Ok` reply.
    Monitor(crate::monitor::Watch),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodAdd {
    pub name: String,
    #[serde(default)]
    pub netns: Option<PathBuf>,
    #[serde(default)]
    pub ifname: Option<String>,
    #[serde(default)]
    pub container_id: Option<String>,
    /// The pod's namespace ("default" if none) and labels, for network policy.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The Kubernetes pod name (`K8S_POD_NAME`), shown with the pod.
    #[serde(default)]
    pub k8s_pod: Option<String>,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Named ports (Kubernetes `ContainerPort`s), for policies that name ports.
    #[serde(default)]
    pub ports: Vec<crate::policy::ports::ContainerPort>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Reply {
    Ok { data: serde_json::Value },
    Error { message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: Mac,
    pub host_interface: String,
    pub container_id: Option<String>,
    #[serde(default = "crate::state::default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub k8s_pod: Option<String>,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<crate::policy::ports::ContainerPort>,
    /// Whether the endpoint map holds the pod (its traffic takes the eBPF path).
    pub in_map: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub pod_cidr: Ipv4Net,
    pub underlay_ip: Ipv4Addr,
    /// The node's VTEP; none for a node reached only directly (host-gw).
    pub vtep_mac: Option<Mac>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeInfo {
    #[serde(flatten)]
    pub spec: NodeSpec,
    /// "static" (`netcore node add`) or "store" (a lease in the cluster store).
    pub source: String,
    /// Lease expiry (unix seconds) where the store tells it.
    pub expires: Option<u64>,
    /// How packets for the node travel: "vxlan", "direct", or "unroutable".
    pub route: crate::backend::RouteKind,
    /// The node's uplink MAC, learned and pinned, for a direct route.
    pub underlay_mac: Option<Mac>,
    pub in_map: bool,
}

/// The kernel, and the modes the agent chose (or was told to use) on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatapathInfo {
    /// `uname -r`.
    pub kernel: String,
    /// "tcx" (links) or "tc" (clsact filters).
    pub attach: String,
    /// Who unwraps VXLAN: "device" (the node's VXLAN device) or "tc" (`from_uplink`).
    pub decap: String,
    /// The node's VXLAN device.
    pub vxlan_device: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    pub pod_cidr: Ipv4Net,
    pub cluster_cidr: Ipv4Net,
    pub underlay_ip: Ipv4Addr,
    pub uplink: String,
    pub bridge: String,
    pub gateway: Ipv4Addr,
    pub vtep_mac: Mac,
    /// What pods can send beyond their node (their default route's MTU).
    pub pod_mtu: u32,
    /// Their link's MTU: what they send to pods of their own node.
    #[serde(default)]
    pub pod_link_mtu: u32,
    /// "vxlan", "vxlan+directrouting" or "host-gw".
    pub backend: String,
    pub vxlan_port: u16,
    pub vni: u32,
    pub pods: Vec<PodInfo>,
    pub ips_in_use: usize,
    pub ips_total: usize,
    pub nodes: Vec<NodeInfo>,
    pub programs: Vec<Attachment>,
    /// How the data path runs on this kernel.
    pub datapath: DatapathInfo,
    /// Who watches the data path's events now.
    pub monitor: crate::agent::Watchers,
    pub counters: Vec<CounterValue>,
    pub services: Vec<service::ServiceStatus>,
    /// The cluster store, when there is one.
    pub store: Option<crate::control::StoreHealth>,
}
