//! TCX ingress of the node's VXLAN device (collect_md, on the VXLAN port): frames the
//! kernel has merged (GRO), checked and unwrapped, with the outer addresses and VNI
//! in the tunnel key. Only what a member node sent for its own pods is delivered,
//! straight into the destination pod; the rest is dropped and counted. Every VXLAN
//! datagram the node accepts passes here, whichever local address it was sent to.

use aya_ebpf::{bindings::bpf_tunnel_key, helpers::bpf_skb_get_tunnel_key, programs::TcContext};

use crate::vxlan::TUNNEL_KEY_SIZE;
use netcore_common::counters::Reason;

use crate::{
    forward,
    overlay,
    packet::{dst_ip, ipv4_frame, src_ip},
    verdict::Verdict,
};

#[inline(always)]
pub fn run(ctx: &TcContext) -> Result<Verdict, Reason> {
    let Some(cfg) = forward::config() else {
        return Err(Reason::DropNotReady);
    };
    let (vni, outer_src) = tunnel(ctx)?;
    if vni != cfg.vni {
        return Err(Reason::DropBadVni);
    }
    let Some(ip) = ipv4_frame(ctx)? else {
        return Err(Reason::DropInnerNotIpv4);
    };
    let (src, dst) = (src_ip(ip), dst_ip(ip));
    overlay::check_sender(src, outer_src)?;
    let target = overlay::target(cfg, dst)?;
    overlay::deliver(ctx, cfg, target, false)
}

/// VNI and outer source address (big-endian, as the maps hold it).
#[inline(always)]
fn tunnel(ctx: &TcContext) -> Result<(u32, u32), Reason> {
    let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    let ret = unsafe { bpf_skb_get_tunnel_key(ctx.skb.skb, &mut key, TUNNEL_KEY_SIZE, 0) };
    if ret != 0 {
        return Err(Reason::DropUnknownSource);
    }
    // The helper gives addresses in host order.
    let remote = unsafe { key.__bindgen_anon_1.remote_ipv4 };
    Ok((key.tunnel_id, remote.to_be()))
}
