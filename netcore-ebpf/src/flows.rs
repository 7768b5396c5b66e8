//! Flow accounting: each packet a program decided on, counted by (inner) address
//! pair, protocol, interface and outcome in a per-CPU LRU map. On while the agent
//! sets `FLAG_FLOWS`; off, it costs the flag test in `verdict::finish`.

use aya_ebpf::programs::TcContext;
use netcore_common::{
    counters::{Counter, Reason},
    flow::FlowKey,
    monitor::PROGRAM_FROM_UPLINK,
    wire::VXLAN_OVERHEAD,
};

use crate::{headers, maps::NC_FLOWS};

/// Counts the packet in `ctx`. The uplink's own traffic that it passes to the host
/// (or to the VXLAN device, whose program counts the inner packet) is not pod traffic
/// and is left out. A call of its own: its stack is not added to the program's.
#[inline(never)]
pub fn account(ctx: &TcContext, program: u8, reason: Reason, vxlan_port: u16) {
    if program == PROGRAM_FROM_UPLINK && matches!(reason, Reason::Passed | Reason::PassedToVxlan) {
        return;
    }
    let Some(a) = headers::read(ctx, vxlan_port) else { return };
    let key = FlowKey {
        src: a.src,
        dst: a.dst,
        ifindex: unsafe { (*ctx.skb.skb).ifindex },
        proto: a.proto,
        reason: reason as u8,
        program,
        _pad: 0,
    };
    // The pod's packet: without the encapsulation `from_pod` may have put around it.
    let wrapped = if a.outer_src != 0 { VXLAN_OVERHEAD as u64 } else { 0 };
    let len = (ctx.len() as u64).saturating_sub(wrapped);
    match NC_FLOWS.get_ptr_mut(&key) {
        // Per-CPU value: no other writer while this program runs on this CPU.
        Some(c) => unsafe {
            (*c).packets += 1;
            (*c).bytes += len;
        },
        None => {
            let _ = NC_FLOWS.insert(&key, &Counter { packets: 1, bytes: len }, 0);
        }
    }
}
