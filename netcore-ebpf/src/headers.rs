//! The addresses of a packet as the programs left it, for the monitor and flow
//! accounting: read with `bpf_skb_load_bytes` (no bounds to prove, nothing pulled),
//! the inner ones of a VXLAN packet with its outer addresses.

use aya_ebpf::programs::TcContext;
use netcore_common::wire::{ETH_HLEN, IPV4_HLEN, VXLAN_OVERHEAD};

use crate::packet::{addr_at, IPPROTO_UDP};

/// The IPv4 ethertype as read from the bytes (host order).
const ETH_P_IPV4: u16 = 0x0800;

/// Addresses big-endian as in the packet; zero where they could not be read.
pub struct Addrs {
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    /// The outer addresses of a VXLAN packet, else zero.
    pub outer_src: u32,
    pub outer_dst: u32,
    /// Where the (inner) IPv4 header starts.
    pub ip: usize,
}

/// The (inner) addresses and protocol of an IPv4 frame; `None` for other frames. One
/// read covers the Ethernet and IPv4 headers; UDP takes a second for its destination
/// port, VXLAN a third for the inner header.
#[inline(always)]
pub fn read(ctx: &TcContext, vxlan_port: u16) -> Option<Addrs> {
    let head = ctx.load::<[u8; ETH_HLEN + IPV4_HLEN]>(0).ok()?;
    if u16::from_be_bytes([head[12], head[13]]) != ETH_P_IPV4 || head[ETH_HLEN] >> 4 != 4 {
        return None;
    }
    let (src, dst, proto) = (addr_at(&head, ETH_HLEN + 12), addr_at(&head, ETH_HLEN + 16), head[ETH_HLEN + 9]);
    let mut a = Addrs { src, dst, proto, outer_src: 0, outer_dst: 0, ip: ETH_HLEN };
    if proto == IPPROTO_UDP
        && ctx.load::<[u8; 2]>(ETH_HLEN + IPV4_HLEN + 2).map(u16::from_be_bytes) == Ok(vxlan_port)
    {
        (a.outer_src, a.outer_dst) = (src, dst);
        a.ip = ETH_HLEN + VXLAN_OVERHEAD;
        (a.src, a.dst, a.proto) = ipv4(ctx, a.ip).unwrap_or((0, 0, 0));
    }
    Some(a)
}

#[inline(always)]
fn ipv4(ctx: &TcContext, at: usize) -> Option<(u32, u32, u8)> {
    let head = ctx.load::<[u8; 20]>(at).ok()?;
    if head[0] >> 4 != 4 {
        return None;
    }
    Some((addr_at(&head, 12), addr_at(&head, 16), head[9]))
}
