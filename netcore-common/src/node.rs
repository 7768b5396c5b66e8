//! Remote nodes: LPM trie from a destination prefix (a node's pod CIDR, or its underlay
//! address as a /32) to the node that owns it, and how to reach it.

use bytemuck::{Pod, Zeroable};

/// Value of the node LPM trie. The key is aya's `Key<u32>`: prefix length, then the
/// IPv4 prefix as a big-endian `u32`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RemoteNode {
    /// Underlay (public) IPv4 address of the node, big-endian.
    pub underlay_ip: u32,
    /// MAC address of the node's VXLAN tunnel endpoint (inner destination MAC); zero
    /// for a node reached only directly (a flannel host-gw node has no VTEP).
    pub vtep_mac: [u8; 6],
    /// `ROUTE_*`: how packets for this node travel.
    pub route: u8,
    pub _pad: u8,
    /// The node's uplink MAC on the shared segment, learned and pinned by the agent:
    /// unencapsulated packets from this node's pods must come from it. Zero until
    /// learned (nothing direct from the node is accepted meanwhile).
    pub underlay_mac: [u8; 6],
    pub _pad2: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<RemoteNode>() == 20);

/// Encapsulated in VXLAN to the node's underlay address.
pub const ROUTE_VXLAN: u8 = 0;
/// Unchanged, out of the uplink to the node's underlay address as next hop (flannel's
/// host-gw, and DirectRouting on a shared segment).
pub const ROUTE_DIRECT: u8 = 1;

impl RemoteNode {
    pub const fn new(underlay_ip: u32, vtep_mac: [u8; 6]) -> Self {
        Self {
            underlay_ip,
            vtep_mac,
            route: ROUTE_VXLAN,
            _pad: 0,
            underlay_mac: [0; 6],
            _pad2: [0; 2],
        }
    }

    /// A node reached directly; `underlay_mac` is what its packets must come from.
    pub const fn direct(underlay_ip: u32, vtep_mac: [u8; 6], underlay_mac: [u8; 6]) -> Self {
        Self {
            underlay_ip,
            vtep_mac,
            route: ROUTE_DIRECT,
            _pad: 0,
            underlay_mac,
            _pad2: [0; 2],
        }
    }
}

/// Prefixes the node trie can hold (two per remote node: pod CIDR and underlay /32).
pub const MAX_NODE_PREFIXES: u32 = 65536;

crate::user_pod!(RemoteNode);
