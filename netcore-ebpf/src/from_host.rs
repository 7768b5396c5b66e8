//! TCX egress of the node bridge: what the node's own stack sends towards pods and
//! services.
//!
//! The agent routes the cluster CIDR and the service CIDR into the bridge via a next
//! hop whose neighbour entry is this node's VTEP MAC, so frames for remote pods and
//! for services arrive here addressed to that MAC. A flow to a service gets a backend
//! (service.rs); remote pods are encapsulated; local pods are reached through the
//! bridge as usual, or directly for a translated flow.

use aya_ebpf::programs::TcContext;
use netcore_common::{config::FLAG_SERVICES, counters::Reason};
use network_types::eth::EthHdr;

use crate::{
    forward::{self, Dest},
    packet::{dst_ip, ptr_at},
    policy, service,
    verdict::Verdict,
};

#[inline(always)]
pub fn run(ctx: &TcContext) -> Result<Verdict, Reason> {
    let Some((ip, cfg)) = forward::prologue(ctx)? else {
        return Ok(Verdict::pass());
    };
    let mut dst = dst_ip(ip);
    let (mut translated, mut reply) = (false, false);
    if cfg.flags & FLAG_SERVICES != 0 {
        let svc = service::from_host(ctx, cfg, dst)?;
        if svc.done {
            return Ok(svc.verdict);
        }
        (dst, translated, reply) = (svc.dst, svc.translated, svc.reply);
    }
    match forward::lookup(dst) {
        Dest::Remote(node) => forward::to_remote_node(ctx, cfg, &node),
        Dest::Local(ep) => {
            // The node's own traffic is always allowed; what it forwards from
            // elsewhere is checked like any other.
            if !reply {
                policy::check(ctx, cfg, None, Some(&ep))?;
            }
            if translated {
                // Still addressed to the VTEP MAC, which no bridge port has.
                return forward::to_local_pod_from_host(ctx, cfg, &ep);
            }
            Ok(Verdict::pass())
        }
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
