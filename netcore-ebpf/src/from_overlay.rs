//! TCX ingress of the uplink: NodePort flows are translated to a backend; VXLAN from
//! known nodes is decapsulated (replies of translated flows get the service address
//! back) and handed straight to the destination pod; whatever claims to be our VXLAN but is not from a
//! node, not our VNI or not deliverable is dropped and counted; the node's own traffic
//! passes untouched.

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use netcore_common::{
    config::{DatapathConfig, FLAG_SERVICES},
    counters::Reason,
    wire::{ETH_HLEN, IPV4_HLEN, VXLAN_FLAG_VNI, VXLAN_OVERHEAD},
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, udp::UdpHdr};

use crate::{
    forward::{self, Dest},
    packet::{dst_ip, ptr_at, pull, src_ip, ETH_P_IPV4, IPPROTO_UDP, IP_MF_OFFSET_MASK},
    service,
    verdict::Verdict,
    vxlan::{self, VxlanHdr, OUTER_UDP_END},
};

/// Everything up to and including the inner IPv4 header.
const VXLAN_FRAME_MIN: usize = ETH_HLEN + VXLAN_OVERHEAD + IPV4_HLEN;

#[inline(always)]
pub fn run(ctx: &TcContext) -> Result<Verdict, Reason> {
    let Some((ip, cfg)) = forward::prologue(ctx)? else {
        return Ok(Verdict::pass());
    };
    // Everything needed from the outer header, read before anything may move it.
    let (proto, dst, outer_src) = unsafe { ((*ip).proto, dst_ip(ip), src_ip(ip)) };
    let vihl = unsafe { (*ip).vihl };
    let frags = u16::from_be_bytes(unsafe { (*ip).frags });
    if dst != cfg.node_ip {
        return Ok(Verdict::pass());
    }
    if cfg.flags & FLAG_SERVICES != 0 {
        if let Some(verdict) = service::nodeport(ctx, &cfg)? {
            return Ok(verdict);
        }
    }
    if proto != IPPROTO_UDP {
        return Ok(Verdict::pass());
    }
    if vihl != 0x45 || frags & IP_MF_OFFSET_MASK != 0 {
        return unusual_udp(ctx, &cfg, vihl, frags);
    }
    // `ip` is invalid from here on (pulling may move the data).
    pull(ctx, OUTER_UDP_END)?;
    let udp: *mut UdpHdr = ptr_at(ctx, ETH_HLEN + IPV4_HLEN)?;
    if u16::from_be_bytes(unsafe { (*udp).dst }) != cfg.vxlan_port {
        return Ok(Verdict::pass());
    }
    // The kernel's IP layer would drop a corrupted header; we act before it does.
    let outer: *const Ipv4Hdr = ptr_at(ctx, ETH_HLEN)?;
    if vxlan::ipv4_checksum(unsafe { &*outer }) != 0 {
        return Err(Reason::DropBadChecksum);
    }
    receive(ctx, &cfg, outer_src)
}

/// A datagram to our VXLAN port, outer headers checked: validate the VXLAN and inner
/// headers and the sender, then deliver.
#[inline(always)]
fn receive(ctx: &TcContext, cfg: &DatapathConfig, outer_src: u32) -> Result<Verdict, Reason> {
    pull(ctx, VXLAN_FRAME_MIN)?;
    let vx: *mut VxlanHdr = ptr_at(ctx, OUTER_UDP_END)?;
    let (flags, vni) = unsafe { ((*vx).flags, u32::from_be_bytes((*vx).vni) >> 8) };
    if flags & VXLAN_FLAG_VNI == 0 || vni != cfg.vni {
        return Err(Reason::DropBadVni);
    }
    let inner_eth: *mut EthHdr = ptr_at(ctx, ETH_HLEN + VXLAN_OVERHEAD - ETH_HLEN)?;
    if unsafe { (*inner_eth).ether_type } != ETH_P_IPV4 {
        return Err(Reason::DropInnerNotIpv4);
    }
    let inner: *mut Ipv4Hdr = ptr_at(ctx, ETH_HLEN + VXLAN_OVERHEAD)?;
    if unsafe { (*inner).vihl } >> 4 != 4 {
        return Err(Reason::DropMalformed);
    }
    // The inner source must belong to the node the outer source says it is.
    match forward::remote_node(src_ip(inner)) {
        Some(node) if node.underlay_ip == outer_src => {}
        _ => return Err(Reason::DropUnknownSource),
    }
    let inner_dst = dst_ip(inner);
    match forward::lookup(inner_dst) {
        Dest::Local(ep) => {
            vxlan::decap(ctx)?;
            if cfg.flags & FLAG_SERVICES != 0 {
                service::reply_from_remote(ctx)?;
            }
            forward::to_local_pod(ctx, cfg, &ep, Reason::Decapsulated)
        }
        Dest::Elsewhere if inner_dst == cfg.node_ip || inner_dst == cfg.gateway_ip => {
            vxlan::decap(ctx)?;
            if cfg.flags & FLAG_SERVICES != 0 {
                if let Some(verdict) = service::nodeport_reply(ctx, cfg)? {
                    return Ok(verdict);
                }
            }
            Ok(Verdict { reason: Reason::DecapsulatedToHost, action: TC_ACT_OK as i32 })
        }
        _ => Err(Reason::DropNoRoute),
    }
}

/// UDP with IPv4 options or fragmented: never decapsulated. Dropped when it claims
/// our VXLAN port (readable only in a first fragment), passed otherwise.
#[inline(always)]
fn unusual_udp(ctx: &TcContext, cfg: &DatapathConfig, vihl: u8, frags: u16) -> Result<Verdict, Reason> {
    let first_fragment = frags & 0x1fff == 0;
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if vihl >> 4 != 4 || ihl < IPV4_HLEN || ihl > 60 || !first_fragment {
        return Ok(Verdict::pass());
    }
    let port: u16 = match ctx.load::<[u8; 2]>(ETH_HLEN + ihl + 2) {
        Ok(p) => u16::from_be_bytes(p),
        Err(_) => return Ok(Verdict::pass()),
    };
    if port != cfg.vxlan_port {
        return Ok(Verdict::pass());
    }
    if vihl != 0x45 {
        Err(Reason::DropIpOptions)
    } else {
        Err(Reason::DropFragment)
    }
}
