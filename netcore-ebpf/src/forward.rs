//! Where a destination lives, and the two ways of getting a packet there from the pod
//! side of a node: straight into a local pod, or encapsulated to a remote node.

use aya_ebpf::{
    bindings::{bpf_redir_neigh, bpf_redir_neigh__bindgen_ty_1},
    helpers::{bpf_check_mtu, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    maps::lpm_trie::Key,
    programs::TcContext,
};
use network_types::ip::Ipv4Hdr;
use netcore_common::{
    config::{DatapathConfig, FLAG_READY},
    counters::Reason,
    endpoint::EndpointInfo,
    node::{RemoteNode, ROUTE_DIRECT},
};

use crate::{
    maps::{NC_CONFIG, NC_ENDPOINTS, NC_NODES},
    packet::{ipv4_frame, set_macs},
    verdict::Verdict,
    vxlan,
};

pub enum Dest {
    /// A pod on this node.
    Local(EndpointInfo),
    /// A pod CIDR or address behind another node.
    Remote(RemoteNode),
    /// Anything else: the kernel's normal path decides.
    Elsewhere,
}

/// The IPv4 frame at the start of the packet and the node's settings; `None` for
/// what the programs leave alone (not IPv4, or the agent has not configured the node).
#[inline(always)]
pub fn prologue(ctx: &TcContext) -> Result<Option<(*mut Ipv4Hdr, &'static DatapathConfig)>, Reason> {
    let Some(ip) = ipv4_frame(ctx)? else { return Ok(None) };
    Ok(config().map(|cfg| (ip, cfg)))
}

/// The node's settings, once the agent has written them: read in place, not copied
/// (Linux 6.1 allows 512 bytes of stack over a program's whole call chain).
#[inline(always)]
pub fn config() -> Option<&'static DatapathConfig> {
    let cfg = NC_CONFIG.get(0)?;
    if cfg.flags & FLAG_READY == 0 {
        return None;
    }
    Some(cfg)
}

#[inline(always)]
pub fn endpoint(ip: u32) -> Option<EndpointInfo> {
    unsafe { NC_ENDPOINTS.get(&ip) }.copied()
}

#[inline(always)]
pub fn lookup(dst: u32) -> Dest {
    if let Some(ep) = endpoint(dst) {
        return Dest::Local(ep);
    }
    remote_node(dst).map_or(Dest::Elsewhere, Dest::Remote)
}

/// The node that owns `addr` (longest prefix wins).
#[inline(always)]
pub fn remote_node(addr: u32) -> Option<RemoteNode> {
    NC_NODES.get(Key::new(32, addr)).copied()
}

/// Hands the frame to the pod's `eth0` (ingress of the veth peer), as if the bridge
/// (the pod's gateway) had sent it. Only valid from a TC ingress hook.
#[inline(always)]
pub fn to_local_pod(
    ctx: &TcContext,
    cfg: &DatapathConfig,
    ep: &EndpointInfo,
    reason: Reason,
) -> Result<Verdict, Reason> {
    set_macs(ctx, ep.pod_mac, cfg.gateway_mac)?;
    Verdict::redirected(reason, unsafe { bpf_redirect_peer(ep.host_ifindex, 0) })
}

/// Hands the frame to the pod's `eth0` from a TC egress hook (the bridge's): out of
/// the pod's host veth, as if the bridge had forwarded it.
#[inline(always)]
pub fn to_local_pod_from_host(ctx: &TcContext, cfg: &DatapathConfig, ep: &EndpointInfo) -> Result<Verdict, Reason> {
    set_macs(ctx, ep.pod_mac, cfg.gateway_mac)?;
    Verdict::redirected(Reason::RedirectedLocal, unsafe { bpf_redirect(ep.host_ifindex, 0) })
}

/// Sends the frame to `node`: unchanged with the node as next hop where the route is
/// direct, else encapsulated and out of the uplink (the kernel resolves the underlay
/// next hop: the peer, or a router). A packet that still carries an earlier
/// decapsulation's tunnel offload state is wrapped by the node's VXLAN device instead,
/// whose transmit path keeps its segmentation right.
#[inline(always)]
pub fn to_remote_node(
    ctx: &TcContext,
    cfg: &DatapathConfig,
    node: &RemoteNode,
) -> Result<Verdict, Reason> {
    if node.route == ROUTE_DIRECT {
        return to_node_directly(cfg, node);
    }
    match vxlan::encap(ctx, cfg, node)? {
        vxlan::Encap::Wrapped => {
            fits_uplink(ctx, cfg)?;
            let ret = unsafe { bpf_redirect_neigh(cfg.uplink_ifindex, core::ptr::null_mut(), 0, 0) };
            Verdict::redirected(Reason::Encapsulated, ret)
        }
        vxlan::Encap::CarriesTunnelState => {
            vxlan::set_tunnel(ctx, cfg, node)?;
            set_macs(ctx, node.vtep_mac, cfg.vtep_mac)?;
            let ret = unsafe { bpf_redirect(cfg.vxlan_ifindex, 0) };
            Verdict::redirected(Reason::EncapsulatedByDevice, ret)
        }
    }
}

/// Whether the wrapped packet (each segment of a GSO packet) fits the uplink's MTU.
/// Pods' default routes keep them below it; a pod that sends around its route (a
/// packet socket, a route of its own) gets its oversized packet dropped here, not
/// sent to the underlay too big.
#[inline(always)]
fn fits_uplink(ctx: &TcContext, cfg: &DatapathConfig) -> Result<(), Reason> {
    let mut mtu: u32 = 0;
    let ret = unsafe { bpf_check_mtu(ctx.skb.skb as *mut _, cfg.uplink_ifindex, &mut mtu, 0, 0) };
    if ret != 0 {
        return Err(Reason::DropTooBig);
    }
    Ok(())
}

/// Out of the uplink unchanged, the node's underlay address as next hop (its MAC
/// from the neighbour table, as for a route `via` it).
#[inline(always)]
fn to_node_directly(cfg: &DatapathConfig, node: &RemoteNode) -> Result<Verdict, Reason> {
    let mut nh = bpf_redir_neigh {
        nh_family: AF_INET,
        __bindgen_anon_1: bpf_redir_neigh__bindgen_ty_1 { ipv4_nh: node.underlay_ip },
    };
    let size = core::mem::size_of::<bpf_redir_neigh>() as i32;
    let ret = unsafe { bpf_redirect_neigh(cfg.uplink_ifindex, &mut nh, size, 0) };
    Verdict::redirected(Reason::ForwardedDirect, ret)
}

const AF_INET: u32 = 2;

/// Whether `addr` (big-endian) lies in `net`/`prefix`; prefix 0 means no network.
#[inline(always)]
pub fn in_net(addr: u32, net: u32, prefix: u8) -> bool {
    if prefix == 0 || prefix > 32 {
        return false;
    }
    let mask = (u32::MAX << (32 - prefix as u32)).to_be();
    addr & mask == net & mask
}

#[inline(always)]
pub fn is_local(ip: u32) -> bool {
    endpoint(ip).is_some()
}

/// Sends the frame out of the uplink as it is (a NodePort reply); the kernel resolves
/// the next hop.
#[inline(always)]
pub fn to_uplink(_ctx: &TcContext, cfg: &DatapathConfig) -> Result<Verdict, Reason> {
    let ret = unsafe { bpf_redirect_neigh(cfg.uplink_ifindex, core::ptr::null_mut(), 0, 0) };
    Verdict::redirected(Reason::NodePortReply, ret)
}
