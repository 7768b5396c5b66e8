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
    packet::{dst_ip, ipv4_frame},
    service::{self, Svc},
    verdict::Verdict,
};

#[inline(always)]
pub fn run(ctx: &TcContext) -> Result<Verdict, Reason> {
    let Some(ip) = ipv4_frame(ctx)? else {
        return Ok(Verdict::pass());
    };
    let Some(cfg) = forward::config() else {
        return Ok(Verdict::pass());
    };
    let mut dst = dst_ip(ip);
    if cfg.flags & FLAG_SERVICES != 0 {
        match service::from_pod(ctx, &cfg)? {
            Svc::Pass => {}
            Svc::Dst(translated) => dst = translated,
            Svc::Done(verdict) => return Ok(verdict),
        }
    }
    match forward::lookup(dst) {
        Dest::Local(ep) => forward::to_local_pod(ctx, &cfg, &ep, Reason::RedirectedLocal),
        Dest::Remote(node) => forward::to_remote_node(ctx, &cfg, &node),
        Dest::Elsewhere => Ok(Verdict::pass()),
    }
}
