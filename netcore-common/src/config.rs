//! Per-node settings the programs read from a one-entry array map; the agent writes it
//! at start-up and whenever the node's identity changes.

use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct DatapathConfig {
    /// Underlay IPv4 address of this node (outer source), big-endian.
    pub node_ip: u32,
    /// The pods' gateway (the bridge's address), big-endian.
    pub gateway_ip: u32,
    /// Interface index of the uplink (encapsulated packets leave through it).
    pub uplink_ifindex: u32,
    /// VXLAN network identifier, host order (24 bits used).
    pub vni: u32,
    /// VXLAN UDP destination port, host order.
    pub vxlan_port: u16,
    /// `FLAG_*` bits.
    pub flags: u16,
    /// MAC address of the node bridge (the pods' gateway): source of frames put into pods.
    pub gateway_mac: [u8; 6],
    /// MAC address of this node's VTEP (inner source MAC of what it encapsulates).
    pub vtep_mac: [u8; 6],
    /// Interface index of the node's VXLAN device (collect_md): it owns the UDP port
    /// (receive GRO, NIC offloads) and decapsulates unless `FLAG_TC_DECAP` is set.
    pub vxlan_ifindex: u32,
    /// The pod network (big-endian) and its prefix length.
    pub cluster_net: u32,
    pub cluster_prefix: u8,
    /// The service CIDR the node routes and its prefix length (0: none).
    pub service_prefix: u8,
    /// With `FLAG_MONITOR_TRACE`: one passing packet in this many is traced.
    pub trace_every: u16,
    pub service_net: u32,
}

const _: () = assert!(core::mem::size_of::<DatapathConfig>() == 48);

/// The config entry has been written (an all-zero entry means "agent not ready").
pub const FLAG_READY: u16 = 1;
/// At least one service exists: the programs look flows up (no cost without).
pub const FLAG_SERVICES: u16 = 2;
/// Who unwraps VXLAN from members. Neither flag ("auto"): `from_uplink` unwraps what
/// goes into a local pod (straight in with `bpf_redirect_peer`, where the tunnel
/// offload state an unwrapped merged packet keeps is harmless) and leaves the rest to
/// the VXLAN device, whose decapsulation clears that state.
/// `FLAG_TC_DECAP`: `from_uplink` unwraps everything (the forced "tc" mode).
pub const FLAG_TC_DECAP: u16 = 4;
/// `FLAG_DEVICE_DECAP`: the VXLAN device unwraps everything (the forced "device" mode).
pub const FLAG_DEVICE_DECAP: u16 = 8;
/// Someone watches drops: every drop becomes an event.
pub const FLAG_MONITOR_DROPS: u16 = 16;
/// Someone watches traces: one passing packet in `trace_every` becomes an event.
pub const FLAG_MONITOR_TRACE: u16 = 32;
/// Some local pod is isolated by a network policy: the programs check policy.
pub const FLAG_POLICY: u16 = 64;
/// Flow accounting is on: every packet a program decides on is counted by address
/// pair and outcome (flow.rs).
pub const FLAG_FLOWS: u16 = 128;

crate::user_pod!(DatapathConfig);
