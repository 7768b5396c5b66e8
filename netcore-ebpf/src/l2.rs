//! What a pod may put on the wire below IPv4: frames from its own MAC only, ARP that
//! speaks only for its own address and MAC, nothing but IPv4 and ARP. A pod with
//! CAP_NET_RAW could otherwise claim the gateway's address in a gratuitous ARP, move
//! another pod's MAC to its own bridge port, or send IPv6 router advertisements.

use aya_ebpf::programs::TcContext;
use netcore_common::{counters::Reason, endpoint::PodIface, wire::ETH_HLEN};
use network_types::eth::EthHdr;

use crate::{
    maps::NC_POD_IFACES,
    packet::{ptr_at, pull, ETH_P_IPV4},
};

const ETH_P_ARP: u16 = 0x0806u16.to_be();

/// ARP for IPv4 over Ethernet.
#[repr(C, packed)]
struct Arp {
    htype: [u8; 2],
    ptype: [u8; 2],
    hlen: u8,
    plen: u8,
    op: [u8; 2],
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
}

/// What the frame carries, once its sender checked out.
pub enum Frame {
    Ipv4,
    /// Checked ARP: for the bridge.
    Arp,
}

/// The pod behind the veth this frame arrived on.
#[inline(always)]
pub fn pod_of(ctx: &TcContext) -> Result<PodIface, Reason> {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // A veth with no pod (a stale attachment, or one not yet plumbed) sends nothing.
    unsafe { NC_POD_IFACES.get(&ifindex) }.copied().ok_or(Reason::DropSpoofedSource)
}

/// Checks the frame's Ethernet source and, for ARP, its sender fields against `pod`.
#[inline(always)]
pub fn check(ctx: &TcContext, pod: &PodIface) -> Result<Frame, Reason> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    let (src, proto) = unsafe { ((*eth).src_addr, (*eth).ether_type) };
    if src != pod.mac {
        return Err(Reason::DropSpoofedMac);
    }
    if proto == ETH_P_IPV4 {
        return Ok(Frame::Ipv4);
    }
    if proto != ETH_P_ARP {
        return Err(Reason::DropEtherType);
    }
    pull(ctx, ETH_HLEN + core::mem::size_of::<Arp>())?;
    let arp: *const Arp = ptr_at(ctx, ETH_HLEN)?;
    let a = unsafe { &*arp };
    let ipv4_over_ethernet = a.htype == [0, 1] && a.ptype == [8, 0] && a.hlen == 6 && a.plen == 4;
    let spa = u32::from_ne_bytes(a.spa);
    // A probe (RFC 5227) has no sender address yet.
    if !ipv4_over_ethernet || a.sha != pod.mac || (spa != pod.ip && spa != 0) {
        return Err(Reason::DropSpoofedArp);
    }
    Ok(Frame::Arp)
}
