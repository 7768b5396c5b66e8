//! VXLAN encapsulation and decapsulation in flannel's wire format, done in place with
//! `bpf_skb_adjust_room` so that GSO packets stay whole and are segmented (with correct
//! outer headers) only where a device needs it.

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
        BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L4_UDP,
        BPF_F_ADJ_ROOM_FIXED_GSO,
    },
    bindings::bpf_tunnel_key,
    bpf_f_adj_room_encap_l2,
    helpers::{bpf_get_hash_recalc, bpf_skb_ecn_set_ce, bpf_skb_set_tunnel_key},
    programs::TcContext,
};
use netcore_common::{
    config::DatapathConfig,
    counters::Reason,
    node::RemoteNode,
    wire::{ETH_HLEN, IPV4_HLEN, UDP_HLEN, VXLAN_FLAG_VNI, VXLAN_OVERHEAD},
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, udp::UdpHdr};

use crate::packet::{ptr_at, pull, ETH_P_IPV4, IPPROTO_UDP};

#[repr(C)]
#[derive(Clone, Copy)]
pub struct VxlanHdr {
    pub flags: u8,
    pub _reserved: [u8; 3],
    /// VNI (24 bits) followed by a reserved byte.
    pub vni: [u8; 4],
}

/// The bytes an encapsulation inserts after the outer Ethernet header.
#[repr(C, packed)]
pub struct EncapHdrs {
    pub ip: Ipv4Hdr,
    pub udp: UdpHdr,
    pub vxlan: VxlanHdr,
    pub inner_eth: EthHdr,
}

const _: () = assert!(core::mem::size_of::<EncapHdrs>() == VXLAN_OVERHEAD);

/// Source ports spread flows over receive queues, like Linux's `udp_flow_src_port`.
const SPORT_MIN: u32 = 32768;
const SPORT_MAX: u32 = 61000;

const ENCAP_FLAGS: u64 = (BPF_F_ADJ_ROOM_FIXED_GSO
    | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
    | BPF_F_ADJ_ROOM_ENCAP_L4_UDP
    | BPF_F_ADJ_ROOM_ENCAP_L2_ETH) as u64
    | bpf_f_adj_room_encap_l2(ETH_HLEN as u64);

/// IPv4 in IPv4 keeps `skb->protocol`, so no DECAP_L3 flag (Linux 6.3+) is needed:
/// the same call works on 6.1. It leaves the tunnel GSO state of a merged packet
/// (`skb->encapsulation`), which is why the VXLAN device decapsulates by default.
const DECAP_FLAGS: u64 = BPF_F_ADJ_ROOM_FIXED_GSO as u64;

/// The ECN field's Congestion Experienced codepoint.
const ECN_CE: u8 = 0x03;

/// The part of `bpf_tunnel_key` up to `local_ipv4`: a size Linux 5.x, 6.1 and later
/// all accept.
pub const TUNNEL_KEY_SIZE: u32 = core::mem::offset_of!(bpf_tunnel_key, __bindgen_anon_3) as u32;

/// What `encap` did.
pub enum Encap {
    Wrapped,
    /// Refused (-EALREADY): the packet still carries the tunnel offload state of an
    /// earlier decapsulation (a merged packet a pod forwards on), which the helper
    /// cannot wrap again.
    CarriesTunnelState,
}

const EALREADY: i64 = 114;

/// Wraps the frame at the start of the packet (an IPv4 frame) for `node`. The outer
/// Ethernet addresses are left for `bpf_redirect_neigh` to fill.
#[inline(always)]
pub fn encap(ctx: &TcContext, cfg: &DatapathConfig, node: &RemoteNode) -> Result<Encap, Reason> {
    // The outer lengths are 16 bits: a super-packet that would overflow them is refused.
    if ctx.len() as usize - ETH_HLEN + VXLAN_OVERHEAD > u16::MAX as usize {
        return Err(Reason::DropEncapFailed);
    }
    let inner_ip: *mut Ipv4Hdr = ptr_at(ctx, ETH_HLEN)?;
    let ecn = unsafe { (*inner_ip).tos } & 0x03;
    let hash = unsafe { bpf_get_hash_recalc(ctx.skb.skb) };

    match ctx.adjust_room(VXLAN_OVERHEAD as i32, BPF_ADJ_ROOM_MAC, ENCAP_FLAGS) {
        Ok(()) => {}
        Err(e) if e == -EALREADY => return Ok(Encap::CarriesTunnelState),
        Err(_) => return Err(Reason::DropEncapFailed),
    }
    pull(ctx, ETH_HLEN + VXLAN_OVERHEAD)?;

    let outer_len = ctx.len() as usize - ETH_HLEN;
    let hdr: *mut EncapHdrs = ptr_at(ctx, ETH_HLEN)?;
    unsafe {
        (*hdr).ip = outer_ipv4(cfg.node_ip, node.underlay_ip, ecn, outer_len as u16);
        (*hdr).udp = UdpHdr {
            src: source_port(hash).to_be_bytes(),
            dst: cfg.vxlan_port.to_be_bytes(),
            len: ((outer_len - IPV4_HLEN) as u16).to_be_bytes(),
            check: [0; 2],
        };
        (*hdr).vxlan = VxlanHdr {
            flags: VXLAN_FLAG_VNI,
            _reserved: [0; 3],
            vni: (cfg.vni << 8).to_be_bytes(),
        };
        (*hdr).inner_eth = EthHdr {
            dst_addr: node.vtep_mac,
            src_addr: cfg.vtep_mac,
            ether_type: ETH_P_IPV4,
        };
    }
    // Non-multicast placeholders: the neighbour output writes the real ones.
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    unsafe {
        (*eth).dst_addr = [0; 6];
        (*eth).src_addr = [0; 6];
    }
    Ok(Encap::Wrapped)
}

/// Sets the tunnel key the node's VXLAN device (collect_md) encapsulates with: VNI
/// and the remote node's underlay address.
#[inline(always)]
pub fn set_tunnel(ctx: &TcContext, cfg: &DatapathConfig, node: &RemoteNode) -> Result<(), Reason> {
    let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    key.tunnel_id = cfg.vni;
    key.__bindgen_anon_1.remote_ipv4 = u32::from_be(node.underlay_ip);
    key.tunnel_ttl = 64;
    match unsafe { bpf_skb_set_tunnel_key(ctx.skb.skb, &mut key, TUNNEL_KEY_SIZE, 0) } {
        0 => Ok(()),
        _ => Err(Reason::DropEncapFailed),
    }
}

/// Strips outer IPv4, UDP, VXLAN and the inner Ethernet header; the outer Ethernet
/// header stays in front of the inner IPv4 packet. Congestion marked on the way
/// (outer CE) is carried into the inner header as RFC 6040 asks; a CE mark on a
/// packet whose sender does not do ECN is dropped, as the kernel's tunnels do.
#[inline(always)]
pub fn decap(ctx: &TcContext) -> Result<(), Reason> {
    let outer: *const Ipv4Hdr = ptr_at(ctx, ETH_HLEN)?;
    let congested = unsafe { (*outer).tos } & ECN_CE == ECN_CE;
    ctx.adjust_room(-(VXLAN_OVERHEAD as i32), BPF_ADJ_ROOM_MAC, DECAP_FLAGS)
        .map_err(|_| Reason::DropDecapFailed)?;
    // The helper marks ECT packets (and fixes the checksum); it answers 0 for Not-ECT.
    if congested && unsafe { bpf_skb_ecn_set_ce(ctx.skb.skb) } == 0 {
        return Err(Reason::DropCeOnNotEct);
    }
    Ok(())
}

#[inline(always)]
fn source_port(hash: u32) -> u16 {
    ((((hash as u64) * ((SPORT_MAX - SPORT_MIN) as u64)) >> 32) as u32 + SPORT_MIN) as u16
}

#[inline(always)]
fn outer_ipv4(src: u32, dst: u32, ecn: u8, tot_len: u16) -> Ipv4Hdr {
    let mut ip = Ipv4Hdr {
        vihl: 0x45,
        tos: ecn,
        tot_len: tot_len.to_be_bytes(),
        id: [0; 2],
        // DF: the outer packet is never fragmented (pods' MTU leaves room for it), and
        // with DF an ID of 0 is fine (RFC 6864).
        frags: [0x40, 0],
        ttl: 64,
        proto: IPPROTO_UDP,
        check: [0; 2],
        src_addr: src.to_ne_bytes(),
        dst_addr: dst.to_ne_bytes(),
    };
    ip.check = ipv4_checksum(&ip).to_ne_bytes();
    ip
}

/// One's complement sum of the header's 16-bit words (byte order independent when
/// summed and stored in native order): the checksum to write into a header whose
/// checksum field is zero, and zero for a received header whose checksum is right.
#[inline(always)]
pub fn ipv4_checksum(ip: &Ipv4Hdr) -> u16 {
    let words: [u16; 10] = unsafe { core::mem::transmute_copy(ip) };
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < 10 {
        sum += words[i] as u32;
        i += 1;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

pub const OUTER_UDP_END: usize = ETH_HLEN + IPV4_HLEN + UDP_HLEN;
