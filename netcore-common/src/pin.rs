//! Names of maps and programs in the eBPF object, and where the agent pins them.

/// Map names (the statics in netcore-ebpf carry exactly these names).
pub const MAP_ENDPOINTS: &str = "NC_ENDPOINTS";
pub const MAP_POD_IFACES: &str = "NC_POD_IFACES";
pub const MAP_NODES: &str = "NC_NODES";
pub const MAP_CONFIG: &str = "NC_CONFIG";
pub const MAP_COUNTERS: &str = "NC_COUNTERS";
pub const MAP_SERVICES: &str = "NC_SERVICES";
pub const MAP_BACKENDS: &str = "NC_BACKENDS";
pub const MAP_CONNTRACK: &str = "NC_CONNTRACK";
pub const MAP_CT_NEW: &str = "NC_CT_NEW";
pub const MAP_EVENTS: &str = "NC_EVENTS";
pub const MAP_SVC_COUNTERS: &str = "NC_SVC_COUNTERS";
pub const MAP_SVC_AFFINITY: &str = "NC_SVC_AFFINITY";
pub const MAP_AFFINITY: &str = "NC_AFFINITY";
pub const MAP_BACKEND_SLOTS: &str = "NC_BACKEND_SLOTS";
pub const MAP_PEERS: &str = "NC_PEERS";
pub const MAP_POLICY: &str = "NC_POLICY";
pub const MAP_POLICY_CT: &str = "NC_POLICY_CT";
pub const MAP_POLICY_HITS: &str = "NC_POLICY_HITS";
pub const MAP_POLICY_DENIED: &str = "NC_POLICY_DENIED";
pub const MAP_FLOWS: &str = "NC_FLOWS";
pub const MAP_FRAGS: &str = "NC_FRAGS";
pub const MAP_SOCK_ORIGINS: &str = "NC_SOCK_ORIGINS";
pub const MAP_NETNS: &str = "NC_NETNS";

/// Programs, one per attach point.
/// TCX ingress of a pod's host veth: what a pod sends.
pub const PROG_FROM_POD: &str = "from_pod";
/// TCX egress of the node bridge: what the node's own stack sends towards pods.
pub const PROG_FROM_HOST: &str = "from_host";
/// TCX ingress of the uplink: NodePort flows, screening of VXLAN (and its
/// decapsulation in the forced "tc" decap mode), the node's own traffic.
pub const PROG_FROM_UPLINK: &str = "from_uplink";
/// TCX ingress of the node's VXLAN device: decapsulated frames from other nodes.
pub const PROG_FROM_OVERLAY: &str = "from_overlay";
/// cgroup sock_addr hooks of the node's own processes (on the cgroup v2 root, acting
/// only in the node's network namespace): NodePorts on the node's own address.
pub const PROG_SOCK_CONNECT4: &str = "sock_connect4";
pub const PROG_SOCK_SENDMSG4: &str = "sock_sendmsg4";
pub const PROG_SOCK_RECVMSG4: &str = "sock_recvmsg4";

/// Pinned maps live in `<pin dir>/<PIN_LAYOUT>/maps`, links in `<pin dir>/<PIN_LAYOUT>/links`.
/// aya reuses a pinned map without checking its definition, so any change to a map's
/// key, value or size must bump this version.
pub const PIN_LAYOUT: &str = "v2";
/// Layouts of earlier versions, removed once a newer agent has attached its programs.
pub const OLD_PIN_LAYOUTS: &[&str] = &["v1"];
pub const PIN_MAPS: &str = "maps";
pub const PIN_LINKS: &str = "links";
