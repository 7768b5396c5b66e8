//! Flow accounting for `netcore status --flows` and the per-pod metrics: packets and
//! bytes by (inner) address pair, protocol, interface and outcome, in a per-CPU LRU
//! map the agent samples. No ports: it answers "who talks to whom, how much, and what
//! was dropped", not "which connection".

use bytemuck::{Pod, Zeroable};

/// One line of the flow map. Addresses big-endian as in the packet (the inner ones of
/// a VXLAN packet); `ifindex` is the interface the program ran on (for `from_pod`, the
/// pod's host veth: the pod that sent it, whatever source it claimed).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowKey {
    pub src: u32,
    pub dst: u32,
    pub ifindex: u32,
    pub proto: u8,
    /// The `Reason` counted for the packet.
    pub reason: u8,
    /// `monitor::PROGRAM_*`: which program decided.
    pub program: u8,
    pub _pad: u8,
}

const _: () = assert!(core::mem::size_of::<FlowKey>() == 16);

/// Address pairs the map holds; the least recently seen go first.
pub const MAX_FLOWS: u32 = 16384;

crate::user_pod!(FlowKey);
