//! Sizes and constants of flannel's VXLAN wire format.

pub const ETH_HLEN: usize = 14;
pub const IPV4_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;
pub const VXLAN_HLEN: usize = 8;
/// Bytes an encapsulation adds: outer IPv4 + UDP + VXLAN + inner Ethernet.
pub const VXLAN_OVERHEAD: usize = IPV4_HLEN + UDP_HLEN + VXLAN_HLEN + ETH_HLEN;
/// Linux's (and flannel's) VXLAN port; IANA's is 4789.
pub const DEFAULT_VXLAN_PORT: u16 = 8472;
pub const DEFAULT_VNI: u32 = 1;
/// The "I" flag: a valid VNI follows.
pub const VXLAN_FLAG_VNI: u8 = 0x08;
