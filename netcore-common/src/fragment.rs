//! Later fragments of translated datagrams (a large DNS answer, say) carry no ports:
//! they are translated as their datagram's first fragment was, found by the addresses
//! they arrive with, the IP identification and the protocol.

use bytemuck::{Pod, Zeroable};

/// A datagram as its fragments arrive (addresses big-endian, `id` as in the packet).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FragKey {
    pub src: u32,
    pub dst: u32,
    pub id: u16,
    pub proto: u8,
    pub _pad: u8,
}

const _: () = assert!(core::mem::size_of::<FragKey>() == 12);

/// The addresses the first fragment got, what kind of translation it was, and when.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FragEntry {
    pub src: u32,
    pub dst: u32,
    /// `FRAG_*`.
    pub kind: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns` of the first fragment.
    pub created_ns: u64,
}

const _: () = assert!(core::mem::size_of::<FragEntry>() == 24);

/// To a backend (client to service).
pub const FRAG_FORWARD: u32 = 1;
/// A reply, back to the client.
pub const FRAG_REPLY: u32 = 2;
/// With `FRAG_REPLY`: a NodePort client's, out of the uplink.
pub const FRAG_NODEPORT: u32 = 4;

/// Datagrams being fragmented at once.
pub const MAX_FRAGS: u32 = 8192;
/// How long a datagram's fragments are followed (Linux's `ipfrag_time`).
pub const FRAG_TIMEOUT_NS: u64 = 30_000_000_000;

crate::user_pod!(FragKey, FragEntry);
