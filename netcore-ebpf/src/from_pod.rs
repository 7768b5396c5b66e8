//! TCX ingress of a pod's host veth: everything a pod sends.
//!
//! Flows to services are translated first (service.rs). Local pods get the frame
//! directly (`bpf_redirect_peer`), remote pods encapsulated;
//! ARP, IPv6 and traffic leaving the cluster take the bridge and the host stack
//! (masquerade).

use aya_ebpf::programs::TcContext;
use netcore_common::{config::FLAG_SERVICES, counters::Reason};

use crate::{
    forward::{self, Dest},
    packet::{dst_ip, src_ip},
    service,
    verdict::Verdict,
};

#[inline(always)]
pub fn run(ctx: &TcContext) -> Result<Verdict, Reason> {
    let Some((ip, cfg)) = forward::prologue(ctx)? else {
        return Ok(Verdict::pass());
    };
    // A pod sends only from its own address, through its own veth.
    let src = src_ip(ip);
    match forward::endpoint(src) {
        Some(ep) if ep.host_ifindex == unsafe { (*ctx.skb.skb).ifindex } => {}
        _ => return Err(Reason::DropSpoofedSource),
    }
    let mut dst = dst_ip(ip);
    if cfg.flags & FLAG_SERVICES != 0 {
        let svc = service::from_pod(ctx, &cfg, dst)?;
        if svc.done {
            return Ok(svc.verdict);
        }
        dst = svc.dst;
    }
    match forward::lookup(dst) {
        Dest::Local(ep) => forward::to_local_pod(ctx, &cfg, &ep, Reason::RedirectedLocal),
        Dest::Remote(node) => forward::to_remote_node(ctx, &cfg, &node),
        Dest::Elsewhere => Ok(Verdict::pass()),
    }
}
