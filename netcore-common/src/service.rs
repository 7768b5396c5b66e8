//! Services (ClusterIP and NodePort): a virtual address and port per protocol, and a
//! set of backends the programs pick from per connection.

use bytemuck::{Pod, Zeroable};

/// Key of the service map. `vip` and `port` as they appear in the packet (network
/// order); NodePort services have `vip` 0 (any of the node's addresses).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct ServiceKey {
    pub vip: u32,
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

const _: () = assert!(core::mem::size_of::<ServiceKey>() == 8);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ServiceInfo {
    /// Index of the service's counters and backends.
    pub id: u32,
    /// Backends in slots `0..count` of the backend map.
    pub count: u32,
    /// `SVC_*` bits.
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<ServiceInfo>() == 12);

/// NodePort: keep the client's address when the backend is on this node.
pub const SVC_LOCAL_KEEPS_SOURCE: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct BackendKey {
    pub service_id: u32,
    pub slot: u32,
}

const _: () = assert!(core::mem::size_of::<BackendKey>() == 8);

/// A backend: address and port in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct Backend {
    pub ip: u32,
    pub port: u16,
    pub _pad: u16,
}

const _: () = assert!(core::mem::size_of::<Backend>() == 8);

/// A backend of a service by address, to find its slot (`NC_BACKEND_SLOTS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct BackendRef {
    pub service_id: u32,
    pub backend: Backend,
}

const _: () = assert!(core::mem::size_of::<BackendRef>() == 12);

/// Key of the session-affinity map: a client of a service with ClientIP affinity.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct AffinityKey {
    pub service_id: u32,
    /// The client's address, network order.
    pub client: u32,
}

const _: () = assert!(core::mem::size_of::<AffinityKey>() == 8);

/// The backend a client's last new connection got, and when (`bpf_ktime_get_ns`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Affinity {
    pub backend: Backend,
    pub last_ns: u64,
}

const _: () = assert!(core::mem::size_of::<Affinity>() == 16);

/// Clients remembered for session affinity (least recently used ones are dropped).
pub const MAX_AFFINITIES: u32 = 65536;

/// Per-service counters (per CPU): what went to the service and how many connections.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ServiceCounter {
    pub packets: u64,
    pub bytes: u64,
    pub connections: u64,
    /// Connections refused because the service had no backend.
    pub rejected: u64,
}

const _: () = assert!(core::mem::size_of::<ServiceCounter>() == 32);

pub const MAX_SERVICES: u32 = 4096;
pub const MAX_BACKENDS: u32 = 65536;
/// Backends one service may have.
pub const MAX_BACKENDS_PER_SERVICE: u32 = 256;

crate::user_pod!(
    ServiceKey,
    ServiceInfo,
    BackendKey,
    Backend,
    ServiceCounter,
    AffinityKey,
    Affinity,
    BackendRef
);
