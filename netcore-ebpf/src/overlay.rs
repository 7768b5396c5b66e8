//! Receiving from the overlay, whoever decapsulates (the node's VXLAN device, or
//! `from_uplink` in the "tc" decap mode): the sender check and the delivery of the
//! inner packet.

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use netcore_common::{
    config::{DatapathConfig, FLAG_SERVICES},
    counters::Reason,
    node::RemoteNode,
};

use crate::{
    forward::{self, Dest},
    policy, service,
    verdict::Verdict,
};

/// The inner source must belong to the node the outer source says it is: one LPM
/// lookup checks both (a remote pod CIDR, or a node's own underlay address).
/// Returns that node.
#[inline(always)]
pub fn check_sender(inner_src: u32, outer_src: u32) -> Result<RemoteNode, Reason> {
    match forward::remote_node(inner_src) {
        Some(node) if node.underlay_ip == outer_src => Ok(node),
        _ => Err(Reason::DropUnknownSource),
    }
}

/// Where a decapsulated packet for `inner_dst` goes, decided before it is unwrapped.
pub enum Target {
    Pod(netcore_common::endpoint::EndpointInfo),
    Host,
}

#[inline(always)]
pub fn target(cfg: &DatapathConfig, inner_dst: u32) -> Result<Target, Reason> {
    match forward::lookup(inner_dst) {
        Dest::Local(ep) => Ok(Target::Pod(ep)),
        Dest::Elsewhere if inner_dst == cfg.node_ip || inner_dst == cfg.gateway_ip => Ok(Target::Host),
        _ => Err(Reason::DropNoRoute),
    }
}

/// Delivers the unwrapped frame (Ethernet + inner IPv4 at the start of the packet),
/// or a pod packet a node sent directly (`direct`): straight into a local pod
/// (replies of translated flows get the service address back first), or up the
/// node's own stack (NodePort replies go out of the uplink).
#[inline(always)]
pub fn deliver(ctx: &TcContext, cfg: &DatapathConfig, target: Target, direct: bool) -> Result<Verdict, Reason> {
    let services = cfg.flags & FLAG_SERVICES != 0;
    match target {
        Target::Pod(ep) => {
            // Replies of service flows get the service address back; the rest is
            // checked against the pod's ingress policy.
            if !(services && service::reply_from_remote(ctx)?) {
                policy::check(ctx, cfg, None, Some(&ep))?;
            }
            let reason = if direct { Reason::ReceivedDirect } else { Reason::Decapsulated };
            forward::to_local_pod(ctx, cfg, &ep, reason)
        }
        Target::Host => {
            if services {
                if let Some(verdict) = service::nodeport_reply(ctx, cfg)? {
                    return Ok(verdict);
                }
            }
            let reason = if direct { Reason::ReceivedDirect } else { Reason::DecapsulatedToHost };
            Ok(Verdict { reason, action: TC_ACT_OK as i32 })
        }
    }
}
