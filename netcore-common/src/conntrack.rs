//! Connection tracking for service translation: one entry per direction of a flow,
//! each with its state and the timeout that state has. Flows start in a table of their
//! own (LRU, `MAX_CT_NEW_ENTRIES`) and move to the established table (LRU,
//! `MAX_CT_ENTRIES`) when the backend answers, so a flood of new flows (spoofed SYNs
//! to a NodePort) evicts only other unanswered flows, never established ones — the
//! protection nf_conntrack gets from early drop.

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
    /// `CT_STATE_*`.
    pub state: u32,
    /// `bpf_ktime_get_ns` when the flow last carried a packet (refreshed lazily).
    pub last_seen: u64,
    /// Forward entries of TCP flows, once the backend's SYN-ACK went by
    /// (`CT_ACK_KNOWN`): the acknowledgement number that completes the handshake
    /// (the backend's sequence number + 1). Only a client that saw the SYN-ACK knows it.
    pub handshake_ack: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<CtEntry>() == 40);

pub const CT_FORWARD: u32 = 1;
pub const CT_REVERSE: u32 = 2;
pub const CT_SNAT: u32 = 4;
/// The flow came in as NodePort traffic: replies leave through the uplink.
pub const CT_NODEPORT: u32 = 8;
/// `handshake_ack` holds the acknowledgement number the client's handshake ACK carries.
pub const CT_ACK_KNOWN: u32 = 16;

/// Opened (a TCP SYN, a first UDP datagram), not answered yet.
pub const CT_STATE_NEW: u32 = 0;
/// The backend answered.
pub const CT_STATE_ESTABLISHED: u32 = 1;
/// A FIN went by.
pub const CT_STATE_CLOSING: u32 = 2;
/// A RST went by.
pub const CT_STATE_CLOSED: u32 = 3;

const S: u64 = 1_000_000_000;

/// How long an entry lives idle, as nf_conntrack's defaults: TCP `syn_sent` 120 s,
/// `established` 5 days, `fin_wait`/`time_wait` 120 s, `close` 10 s; UDP 30 s
/// unanswered, 120 s once answered (`udp_timeout_stream`).
pub const fn timeout_ns(tcp: bool, state: u32) -> u64 {
    match (tcp, state) {
        (true, CT_STATE_NEW) => 120 * S,
        (true, CT_STATE_ESTABLISHED) => 5 * 24 * 3600 * S,
        (true, CT_STATE_CLOSING) => 120 * S,
        (true, _) => 10 * S,
        (false, CT_STATE_NEW) => 30 * S,
        (false, _) => 120 * S,
    }
}

/// Entries are refreshed at most this often.
pub const CT_REFRESH_NS: u64 = S;
/// The established table.
pub const MAX_CT_ENTRIES: u32 = 262144;
/// The table of flows not answered yet.
pub const MAX_CT_NEW_ENTRIES: u32 = 65536;

crate::user_pod!(CtKey, CtEntry);
