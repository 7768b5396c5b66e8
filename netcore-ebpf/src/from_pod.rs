//! TCX ingress of a pod's host veth: everything a pod sends.
//!
//! Only what the pod may send goes on (l2.rs: its own MAC, ARP for itself, IPv4 from
//! its own address). Flows to services are translated first (service.rs). Local pods
//! get the frame directly (`bpf_redirect_peer`), remote pods directly or
//! encapsulated; ARP and traffic leaving the cluster take the bridge and the host
//! stack (masquerade).

use aya_ebpf::programs::TcContext;
use netcore_common::{config::FLAG_SERVICES, counters::Reason};

use crate::{
    forward::{self, Dest},
    l2,
    packet::{dst_ip, ipv4_frame, src_ip},
    policy, service,
    verdict::Verdict,
};

#[inline(always)]
pub fn run(ctx: &TcContext) -> Result<Verdict, Reason> {
    let Some(cfg) = forward::config() else {
        return Ok(Verdict::pass());
    };
    // A pod sends only as itself: its own MAC, its own address, through its own veth.
    let pod = l2::pod_of(ctx)?;
    if let l2::Frame::Arp = l2::check(ctx, &pod)? {
        return Ok(Verdict::pass());
    }
    let Some(ip) = ipv4_frame(ctx)? else {
        return Err(Reason::DropEtherType);
    };
    // Its address, and the endpoint of that address behind this very veth.
    let src = src_ip(ip);
    let me = match forward::endpoint(src) {
        Some(ep) if src == pod.ip && ep.host_ifindex == unsafe { (*ctx.skb.skb).ifindex } => ep,
        _ => return Err(Reason::DropSpoofedSource),
    };
    let mut dst = dst_ip(ip);
    let mut reply = false;
    if cfg.flags & FLAG_SERVICES != 0 {
        let svc = service::from_pod(ctx, cfg, dst)?;
        if svc.done {
            return Ok(svc.verdict);
        }
        (dst, reply) = (svc.dst, svc.reply);
    }
    // Policy sees the flow after service translation (the backend, as in Kubernetes);
    // replies of translated flows were allowed when their flow started.
    match forward::lookup(dst) {
        Dest::Local(ep) => {
            if !reply {
                policy::check(ctx, cfg, Some(&me), Some(&ep))?;
            }
            forward::to_local_pod(ctx, cfg, &ep, Reason::RedirectedLocal)
        }
        dest => {
            if !reply {
                policy::check(ctx, cfg, Some(&me), None)?;
            }
            match dest {
                Dest::Remote(node) => forward::to_remote_node(ctx, cfg, &node),
                _ => Ok(Verdict::pass()),
            }
        }
    }
}
