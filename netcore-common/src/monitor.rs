//! Events from the data path for `netcore monitor`: every drop, and a sample of what
//! passes, in a BPF ring buffer. The programs write events only while the agent has a
//! watcher (a flag in the config entry they read anyway).

use bytemuck::{Pod, Zeroable};

/// One event. Addresses big-endian as in the packet, ports in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Event {
    /// `bpf_ktime_get_ns` (monotonic, since boot).
    pub ts_ns: u64,
    /// The `Reason` counted for the packet.
    pub reason: u32,
    /// The interface the program runs on.
    pub ifindex: u32,
    /// Bytes of the packet as it left the program.
    pub len: u32,
    /// The (inner, when encapsulated) IPv4 addresses; zero for what is not IPv4.
    pub src: u32,
    pub dst: u32,
    /// The outer addresses of a VXLAN packet; zero otherwise.
    pub outer_src: u32,
    pub outer_dst: u32,
    pub sport: u16,
    pub dport: u16,
    /// `EVENT_*`.
    pub kind: u8,
    /// `PROGRAM_*`: which program decided.
    pub program: u8,
    /// IP protocol of the (inner) packet.
    pub proto: u8,
    pub _pad: u8,
    /// The policy that denied the packet, for policy drops (0: none).
    pub policy: u32,
}

const _: () = assert!(core::mem::size_of::<Event>() == 48);

pub const EVENT_DROP: u8 = 1;
pub const EVENT_TRACE: u8 = 2;

pub const PROGRAM_FROM_POD: u8 = 1;
pub const PROGRAM_FROM_HOST: u8 = 2;
pub const PROGRAM_FROM_UPLINK: u8 = 3;
pub const PROGRAM_FROM_OVERLAY: u8 = 4;

/// Bytes of the ring buffer (a power of two, a multiple of the page size): about
/// 4,000 events in flight.
pub const EVENTS_BYTES: u32 = 256 * 1024;

crate::user_pod!(Event);
