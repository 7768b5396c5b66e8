//! TCX ingress of the uplink: NodePort flows are translated to a backend; what claims
//! netcore's VXLAN port on the node's address is screened before the kernel spends
//! anything on it (fragments, IP options, a corrupted header, a sender that is no
//! member node: dropped and counted). Then, by the decap mode: what goes into a local
//! pod is unwrapped here and redirected straight in; what goes to the node itself is
//! left to the VXLAN device, which unwraps it for `from_overlay`. The node's own
//! traffic passes untouched.

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use netcore_common::{
    config::{DatapathConfig, FLAG_DEVICE_DECAP, FLAG_SERVICES, FLAG_TC_DECAP},
    counters::Reason,
    node::{RemoteNode, ROUTE_DIRECT},
    wire::{ETH_HLEN, IPV4_HLEN, VXLAN_FLAG_VNI, VXLAN_OVERHEAD},
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, udp::UdpHdr};

use crate::{
    forward::{self, Dest},
    overlay::{self, Target},
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
        return not_for_the_node(ctx, cfg, outer_src, dst);
    }
    let from_pods = forward::in_net(outer_src, cfg.cluster_net, cfg.cluster_prefix);
    if cfg.flags & FLAG_SERVICES != 0 && from_pods && from_direct_node(ctx, outer_src)? {
        // A remote backend, reached directly, answering a flow this node translated.
        if let Some(verdict) = service::nodeport_reply(ctx, cfg)? {
            return Ok(verdict);
        }
    }
    if cfg.flags & FLAG_SERVICES != 0 {
        if let Some(verdict) = service::nodeport(ctx, cfg)? {
            return Ok(verdict);
        }
    }
    if proto != IPPROTO_UDP {
        return Ok(Verdict::pass());
    }
    if vihl != 0x45 || frags & IP_MF_OFFSET_MASK != 0 {
        return unusual_udp(ctx, cfg, vihl, frags);
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
    screen(ctx, cfg, outer_src)?;
    if cfg.flags & FLAG_DEVICE_DECAP != 0 {
        return Ok(to_vxlan_device());
    }
    let inner: *mut Ipv4Hdr = ptr_at(ctx, ETH_HLEN + VXLAN_OVERHEAD)?;
    match overlay::target(cfg, dst_ip(inner))? {
        Target::Host if cfg.flags & FLAG_TC_DECAP == 0 => Ok(to_vxlan_device()),
        target => {
            vxlan::decap(ctx)?;
            overlay::deliver(ctx, cfg, target, false)
        }
    }
}

/// Up the stack to the VXLAN device's socket, which unwraps it for `from_overlay`.
#[inline(always)]
fn to_vxlan_device() -> Verdict {
    Verdict { reason: Reason::PassedToVxlan, action: TC_ACT_OK as i32 }
}

/// Unencapsulated traffic to another address. What is addressed to the pod network or
/// a service must come from a node reached directly, with its source address in that
/// node's pod CIDR and the node's own pinned MAC: then it goes straight into the pod
/// (or up to the node, for its gateway address), as decapsulated traffic would. The
/// rest passes to the stack.
#[inline(always)]
fn not_for_the_node(ctx: &TcContext, cfg: &DatapathConfig, src: u32, dst: u32) -> Result<Verdict, Reason> {
    let to_pods = forward::in_net(dst, cfg.cluster_net, cfg.cluster_prefix);
    if !to_pods && !forward::in_net(dst, cfg.service_net, cfg.service_prefix) {
        return Ok(Verdict::pass());
    }
    if !from_direct_node(ctx, src)? {
        return Err(Reason::DropUnderlayToPods);
    }
    let target = match forward::lookup(dst) {
        Dest::Local(ep) => Target::Pod(ep),
        Dest::Elsewhere if dst == cfg.gateway_ip => Target::Host,
        _ => return Err(Reason::DropNoRoute),
    };
    overlay::deliver(ctx, cfg, target, true)
}

/// Whether the frame comes from the node that owns its source address, reached
/// directly: that node's pinned MAC is the frame's source.
#[inline(always)]
fn from_direct_node(ctx: &TcContext, src: u32) -> Result<bool, Reason> {
    match forward::remote_node(src) {
        Some(node) if node.route == ROUTE_DIRECT => has_pinned_mac(ctx, &node),
        _ => Ok(false),
    }
}

/// Whether the frame's source MAC is `node`'s pinned underlay MAC (none pinned: no).
#[inline(always)]
fn has_pinned_mac(ctx: &TcContext, node: &RemoteNode) -> Result<bool, Reason> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    let from = unsafe { (*eth).src_addr };
    Ok(node.underlay_mac == from && from != [0; 6])
}

/// VXLAN headers, the inner frame and its sender, checked before anything is spent
/// on the datagram (the VXLAN device checks nothing of that).
#[inline(always)]
fn screen(ctx: &TcContext, cfg: &DatapathConfig, outer_src: u32) -> Result<(), Reason> {
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
    let node = overlay::check_sender(src_ip(inner), outer_src)?;
    // A node reached directly whose MAC is pinned must use it for VXLAN too (an
    // asymmetric route decision, or a backend change, can make it encapsulate).
    if node.route == ROUTE_DIRECT && node.underlay_mac != [0; 6] && !has_pinned_mac(ctx, &node)? {
        return Err(Reason::DropUnknownSource);
    }
    Ok(())
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
