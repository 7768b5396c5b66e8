//! The maps, named as in `netcore_common::pin` and pinned by name so that the agent
//! reuses them across restarts.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use netcore_common::{
    config::DatapathConfig,
    conntrack::{CtEntry, CtKey, MAX_CT_ENTRIES, MAX_CT_NEW_ENTRIES},
    service::{
        Affinity, AffinityKey, Backend, BackendKey, BackendRef, ServiceCounter, ServiceInfo, ServiceKey, MAX_AFFINITIES,
        MAX_BACKENDS, MAX_SERVICES,
    },
    counters::{Counter, MAX_REASONS},
    endpoint::{EndpointInfo, PodIface, MAX_ENDPOINTS},
    flow::{FlowKey, MAX_FLOWS},
    fragment::{FragEntry, FragKey, MAX_FRAGS},
    socket::{SockKey, SockOrigin, MAX_SOCK_ORIGINS},
    node::{RemoteNode, MAX_NODE_PREFIXES},
    policy::{
        PeerClass, PolicyDenial, PolicyFlow, PolicyKey, PolicyRule, MAX_PEERS, MAX_POLICIES, MAX_POLICY_ENTRIES, MAX_POLICY_FLOWS,
    },
};

/// Pod IPv4 (big-endian) -> host veth and pod MAC.
#[map]
pub static NC_ENDPOINTS: HashMap<u32, EndpointInfo> = HashMap::pinned(MAX_ENDPOINTS, 0);

/// A pod's host veth (interface index) -> the only MAC and IPv4 address it may send as.
#[map]
pub static NC_POD_IFACES: HashMap<u32, PodIface> = HashMap::pinned(MAX_ENDPOINTS, 0);

/// Remote pod CIDRs and node addresses -> the node that owns them.
#[map]
pub static NC_NODES: LpmTrie<u32, RemoteNode> = LpmTrie::pinned(MAX_NODE_PREFIXES, 0);

/// This node's settings (one entry).
#[map]
pub static NC_CONFIG: Array<DatapathConfig> = Array::pinned(1, 0);

/// Drop and trace events for `netcore monitor`.
#[map]
pub static NC_EVENTS: RingBuf = RingBuf::pinned(netcore_common::monitor::EVENTS_BYTES, 0);

/// Packets and bytes by `Reason`.
#[map]
pub static NC_COUNTERS: PerCpuArray<Counter> = PerCpuArray::pinned(MAX_REASONS, 0);

/// Services by virtual address, port and protocol.
#[map]
pub static NC_SERVICES: HashMap<ServiceKey, ServiceInfo> = HashMap::pinned(MAX_SERVICES, 0);

/// Each service's backends, by slot.
#[map]
pub static NC_BACKENDS: HashMap<BackendKey, Backend> = HashMap::pinned(MAX_BACKENDS, 0);

/// Translated flows the backend answered, both directions.
#[map]
pub static NC_CONNTRACK: LruHashMap<CtKey, CtEntry> = LruHashMap::pinned(MAX_CT_ENTRIES, 0);

/// Translated flows not answered yet, both directions: a flood of new flows evicts
/// only these.
#[map]
pub static NC_CT_NEW: LruHashMap<CtKey, CtEntry> = LruHashMap::pinned(MAX_CT_NEW_ENTRIES, 0);

/// Per-service counters, by service id.
#[map]
pub static NC_SVC_COUNTERS: PerCpuArray<ServiceCounter> = PerCpuArray::pinned(MAX_SERVICES, 0);

/// Session affinity per service id: seconds a client keeps its backend, 0 for none.
#[map]
pub static NC_SVC_AFFINITY: Array<u32> = Array::pinned(MAX_SERVICES, 0);

/// The backend each client of a service with affinity got last.
#[map]
pub static NC_AFFINITY: LruHashMap<AffinityKey, Affinity> = LruHashMap::pinned(MAX_AFFINITIES, 0);

/// Each service's backends by address -> their slot (for session affinity).
#[map]
pub static NC_BACKEND_SLOTS: HashMap<BackendRef, u32> = HashMap::pinned(MAX_BACKENDS, 0);

/// Every address's peer class for policy: pods by namespace and labels, ipBlocks.
#[map]
pub static NC_PEERS: LpmTrie<u32, PeerClass> = LpmTrie::pinned(MAX_PEERS, 0);

/// What policy allows: (set, peer class, protocol, port prefix).
#[map]
pub static NC_POLICY: LpmTrie<PolicyKey, PolicyRule> = LpmTrie::pinned(MAX_POLICY_ENTRIES, 0);

/// Flows policy allowed (either direction's key), so replies pass and only a flow's
/// first packet consults policy.
#[map]
pub static NC_POLICY_CT: LruHashMap<CtKey, PolicyFlow> = LruHashMap::pinned(MAX_POLICY_FLOWS, 0);

/// Flows each policy allowed, by policy index.
#[map]
pub static NC_POLICY_HITS: PerCpuArray<u64> = PerCpuArray::pinned(MAX_POLICIES, 0);

/// The denial of this CPU's current packet, for its monitor event and the log.
#[map]
pub static NC_POLICY_DENIED: PerCpuArray<PolicyDenial> = PerCpuArray::pinned(1, 0);

/// Packets and bytes by address pair and outcome, while flow accounting is on.
#[map]
pub static NC_FLOWS: LruPerCpuHashMap<FlowKey, Counter> = LruPerCpuHashMap::pinned(MAX_FLOWS, 0);

/// Later fragments of translated datagrams -> the addresses their first fragment got.
#[map]
pub static NC_FRAGS: LruHashMap<FragKey, FragEntry> = LruHashMap::pinned(MAX_FRAGS, 0);

/// UDP sockets of the node's own processes sent to a NodePort's backend -> the
/// NodePort address they asked for.
#[map]
pub static NC_SOCK_ORIGINS: LruHashMap<SockKey, SockOrigin> = LruHashMap::pinned(MAX_SOCK_ORIGINS, 0);

/// The node's network namespace (its cookie): the socket hooks run for every process
/// of the host and act only on this namespace's sockets.
#[map]
pub static NC_NETNS: Array<u64> = Array::pinned(1, 0);
