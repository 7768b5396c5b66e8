//! TCX egress of the node bridge: what the node's own stack sends towards pods.
//!
//! The agent routes the cluster CIDR into the bridge via a next hop whose neighbour
//! entry is this node's VTEP MAC, so frames for remote pods arrive here addressed to
//! that MAC and are encapsulated. Local pods are reached through the bridge as usual.

use aya_ebpf::programs::TcContext;
use netcore_common::counters::Reason;
use network_types::eth::EthHdr;

use crate::{
    forward::{self, Dest},
    packet::{dst_ip, ptr_at},
    verdict::Verdict,
};

#[inline(always)]
pub fn run(ctx: &TcContext) -> Result<Verdict, Reason> {
    let Some((ip, cfg)) = forward::prologue(ctx)? else {
        return Ok(Verdict::pass());
    };
    match forward::lookup(dst_ip(ip)) {
        Dest::Remote(node) => forward::to_remote_node(ctx, &cfg, &node),
        Dest::Local(_) => Ok(Verdict::pass()),
        Dest::Elsewhere => {
            // Routed to the overlay but no node owns it: the bridge would flood it to
            // every pod.
            let eth: *mut EthHdr = ptr_at(ctx, 0)?;
            if unsafe { (*eth).dst_addr } == cfg.vtep_mac {
                return Err(Reason::DropNoRoute);
            }
            Ok(Verdict::pass())
        }
    }
}
