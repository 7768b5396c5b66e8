//! Remote nodes: LPM trie from a destination prefix (a node's pod CIDR, or its underlay
//! address as a /32) to the node that owns it.

use bytemuck::{Pod, Zeroable};

/// Value of the node LPM trie. The key is aya's `Key<u32>`: prefix length, then the
/// IPv4 prefix as a big-endian `u32`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RemoteNode {
    /// Underlay (public) IPv4 address of the node, big-endian.
    pub underlay_ip: u32,
    /// MAC address of the node's VXLAN tunnel endpoint (inner destination MAC).
    pub vtep_mac: [u8; 6],
    pub _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<RemoteNode>() == 12);

impl RemoteNode {
    pub const fn new(underlay_ip: u32, vtep_mac: [u8; 6]) -> Self {
        Self {
            underlay_ip,
            vtep_mac,
            _pad: [0; 2],
        }
    }
}

/// Prefixes the node trie can hold (two per remote node: pod CIDR and underlay /32).
pub const MAX_NODE_PREFIXES: u32 = 65536;

crate::user_pod!(RemoteNode);
