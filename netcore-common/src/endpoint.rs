//! Local endpoints (pods on this node): pod IPv4 address -> host veth and pod MAC.

use bytemuck::{Pod, Zeroable};

/// Value of the endpoint map, keyed by the pod's IPv4 address as a big-endian `u32`
/// (the bytes as they appear in the packet).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct EndpointInfo {
    /// Index of the host end of the pod's veth pair (target of `bpf_redirect_peer`).
    pub host_ifindex: u32,
    /// MAC address of the pod's `eth0`.
    pub pod_mac: [u8; 6],
    pub _pad: [u8; 2],
    /// The policy set that isolates the pod for ingress (0: none does), and for
    /// egress (policy.rs).
    pub ingress_set: u32,
    pub egress_set: u32,
}

const _: () = assert!(core::mem::size_of::<EndpointInfo>() == 20);

impl EndpointInfo {
    pub const fn new(host_ifindex: u32, pod_mac: [u8; 6]) -> Self {
        Self {
            host_ifindex,
            pod_mac,
            _pad: [0; 2],
            ingress_set: 0,
            egress_set: 0,
        }
    }

    /// Whether any policy isolates the pod (its flows are tracked).
    pub const fn has_policy(&self) -> bool {
        self.ingress_set != 0 || self.egress_set != 0
    }
}

/// Value of the pod-interface map, keyed by the host veth's interface index: what
/// the pod behind it may send as (its only MAC and IPv4 address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PodIface {
    /// The pod's IPv4 address, big-endian.
    pub ip: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<PodIface>() == 12);

impl PodIface {
    pub const fn new(ip: u32, mac: [u8; 6]) -> Self {
        Self {
            ip,
            mac,
            _pad: [0; 2],
        }
    }
}

/// Pods one node can hold in its map.
pub const MAX_ENDPOINTS: u32 = 4096;

crate::user_pod!(EndpointInfo, PodIface);
