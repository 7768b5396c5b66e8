//! The transport flow of an IPv4 packet (TCP or UDP, no options, not a fragment but a
//! UDP datagram's first), as the service maps key it: addresses and ports exactly as
//! in the packet.

use aya_ebpf::programs::TcContext;
use netcore_common::{conntrack::CtKey, counters::Reason, wire::ETH_HLEN};
use network_types::ip::Ipv4Hdr;

use crate::packet::{pull, ptr_at, IPPROTO_UDP, IP_MF_OFFSET_MASK};

pub const IPPROTO_TCP: u8 = 6;
/// The fragment offset bits of `frags`.
const IP_OFFSET_MASK: u16 = 0x1fff;
/// Where the transport header starts (IPv4 without options).
pub const L4_OFF: usize = ETH_HLEN + 20;
pub const TCP_CSUM_OFF: usize = L4_OFF + 16;
pub const UDP_CSUM_OFF: usize = L4_OFF + 6;
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

#[derive(Clone, Copy)]
pub struct Flow {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl Flow {
    #[inline(always)]
    pub fn key(&self) -> CtKey {
        CtKey { src: self.src, dst: self.dst, sport: self.sport, dport: self.dport, proto: self.proto, _pad: [0; 3] }
    }

    #[inline(always)]
    pub fn csum_off(&self) -> usize {
        if self.proto == IPPROTO_UDP {
            UDP_CSUM_OFF
        } else {
            TCP_CSUM_OFF
        }
    }
}

/// The flow of the IPv4 frame at the start of the packet, if it has ports we can use.
#[inline(always)]
pub fn flow(ctx: &TcContext) -> Result<Option<Flow>, Reason> {
    let ip: *mut Ipv4Hdr = ptr_at(ctx, ETH_HLEN)?;
    let (vihl, proto, frags) = unsafe { ((*ip).vihl, (*ip).proto, u16::from_be_bytes((*ip).frags)) };
    // A UDP datagram's first fragment has the ports (fragment.rs follows the rest).
    let unfit = if proto == IPPROTO_UDP { IP_OFFSET_MASK } else { IP_MF_OFFSET_MASK };
    if vihl != 0x45 || (proto != IPPROTO_TCP && proto != IPPROTO_UDP) || frags & unfit != 0 {
        return Ok(None);
    }
    let (src, dst) = unsafe { (u32::from_ne_bytes((*ip).src_addr), u32::from_ne_bytes((*ip).dst_addr)) };
    pull(ctx, L4_OFF + 4)?;
    let ports: *mut [u16; 2] = ptr_at(ctx, L4_OFF)?;
    let [sport, dport] = unsafe { *ports };
    Ok(Some(Flow { src, dst, sport, dport, proto }))
}

/// The flags byte of the TCP header of the frame at the start of the packet.
#[inline(always)]
pub fn tcp_flags(ctx: &TcContext) -> Result<u8, Reason> {
    pull(ctx, L4_OFF + 14)?;
    let flags: *const u8 = ptr_at(ctx, L4_OFF + 13)?;
    Ok(unsafe { *flags })
}

/// The sequence and acknowledgement numbers of the TCP header of the frame at the
/// start of the packet (host order).
#[inline(always)]
pub fn tcp_seq_ack(ctx: &TcContext) -> Result<(u32, u32), Reason> {
    pull(ctx, L4_OFF + 12)?;
    let numbers: *const [u8; 8] = ptr_at(ctx, L4_OFF + 4)?;
    let n = unsafe { *numbers };
    Ok((u32::from_be_bytes([n[0], n[1], n[2], n[3]]), u32::from_be_bytes([n[4], n[5], n[6], n[7]])))
}
