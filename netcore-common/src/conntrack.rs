//! Connection tracking for service translation: one entry per direction of a flow,
//! in an LRU hash (old flows fall out when it is full), each with its timeout.

use bytemuck::{Pod, Zeroable};

/// A flow as seen in the packet (addresses and ports in network order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct CtKey {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<CtKey>() == 16);

/// What to write into packets of the flow. Forward entries (client to service) set
/// the destination to `a` and, with `CT_SNAT`, the source to `b`; reverse entries
/// (backend to client) set the source to `a` and, with `CT_SNAT`, the destination
/// to `b`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct CtEntry {
    pub a_ip: u32,
    pub b_ip: u32,
    pub a_port: u16,
    pub b_port: u16,
    pub service_id: u32,
    pub flags: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns` when the flow last carried a packet (refreshed lazily).
    pub last_seen: u64,
}

const _: () = assert!(core::mem::size_of::<CtEntry>() == 32);

pub const CT_FORWARD: u32 = 1;
pub const CT_REVERSE: u32 = 2;
pub const CT_SNAT: u32 = 4;
/// The flow came in as NodePort traffic: replies leave through the uplink.
pub const CT_NODEPORT: u32 = 8;

pub const CT_TIMEOUT_TCP_NS: u64 = 6 * 3600 * 1_000_000_000;
pub const CT_TIMEOUT_UDP_NS: u64 = 120 * 1_000_000_000;
/// Entries are refreshed at most this often.
pub const CT_REFRESH_NS: u64 = 1_000_000_000;
pub const MAX_CT_ENTRIES: u32 = 262144;

crate::user_pod!(CtKey, CtEntry);
