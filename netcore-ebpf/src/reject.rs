//! Refusing a connection to a service without backends: a TCP segment is turned into
//! the RST its sender expects and sent straight back, so the client fails at once
//! instead of timing out.

use aya_ebpf::{
    helpers::{bpf_redirect_peer, bpf_skb_change_tail},
    programs::TcContext,
};
use netcore_common::{counters::Reason, wire::ETH_HLEN};
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

use crate::{
    l4::{Flow, IPPROTO_TCP, L4_OFF},
    packet::{ptr_at, pull},
    verdict::Verdict,
};

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const RST_LEN: usize = ETH_HLEN + 20 + 20;

#[repr(C)]
struct TcpHdr {
    sport: u16,
    dport: u16,
    seq: [u8; 4],
    ack: [u8; 4],
    doff: u8,
    flags: u8,
    window: u16,
    check: [u8; 2],
    urg: u16,
}

#[repr(C)]
struct Rst {
    ip: Ipv4Hdr,
    tcp: TcpHdr,
}

/// Answers the pod's TCP segment with a RST from the service address; other
/// protocols are dropped.
#[inline(always)]
pub fn refuse(ctx: &TcContext, flow: &Flow) -> Result<Verdict, Reason> {
    if flow.proto != IPPROTO_TCP {
        return Err(Reason::RejectedNoBackend);
    }
    pull(ctx, L4_OFF + 20)?;
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let ip: *mut Ipv4Hdr = ptr_at(ctx, ETH_HLEN)?;
    let tcp: *mut TcpHdr = ptr_at(ctx, L4_OFF)?;
    let (macs, ip_len, seq, ack, doff, flags) = unsafe {
        (((*eth).src_addr, (*eth).dst_addr), u16::from_be_bytes((*ip).tot_len), u32::from_be_bytes((*tcp).seq),
         (*tcp).ack, (*tcp).doff, (*tcp).flags)
    };
    if flags & TCP_RST != 0 {
        return Err(Reason::RejectedNoBackend);
    }
    let payload = (ip_len as u32).saturating_sub(20 + ((doff >> 4) as u32) * 4);
    let answer = seq.wrapping_add(payload + (flags & TCP_SYN != 0) as u32 + (flags & TCP_FIN != 0) as u32);
    let (rseq, rack, rflags) = if flags & TCP_ACK != 0 {
        (ack, [0; 4], TCP_RST)
    } else {
        ([0; 4], answer.to_be_bytes(), TCP_RST | TCP_ACK)
    };
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, RST_LEN as u32, 0) } != 0 {
        return Err(Reason::RejectedNoBackend);
    }
    let mut rst = Rst {
        ip: Ipv4Hdr {
            vihl: 0x45, tos: 0, tot_len: 40u16.to_be_bytes(), id: [0; 2], frags: [0x40, 0], ttl: 64,
            proto: IPPROTO_TCP, check: [0; 2], src_addr: flow.dst.to_ne_bytes(), dst_addr: flow.src.to_ne_bytes(),
        },
        tcp: TcpHdr {
            sport: flow.dport, dport: flow.sport, seq: rseq, ack: rack, doff: 5 << 4, flags: rflags,
            window: 0, check: [0; 2], urg: 0,
        },
    };
    rst.ip.check = fold(sum_words(&rst.ip as *const _ as *const u16, 10)).to_ne_bytes();
    // Pseudo-header: both addresses, protocol, TCP length; words in memory order.
    let pseudo = (flow.dst & 0xffff) + (flow.dst >> 16) + (flow.src & 0xffff) + (flow.src >> 16)
        + (IPPROTO_TCP as u16).to_be() as u32
        + 20u16.to_be() as u32;
    rst.tcp.check = fold(pseudo + sum_words(&rst.tcp as *const _ as *const u16, 10)).to_ne_bytes();
    ctx.store(ETH_HLEN, &rst, 0).map_err(|_| Reason::RejectedNoBackend)?;
    let back = EthHdr { dst_addr: macs.0, src_addr: macs.1, ether_type: crate::packet::ETH_P_IPV4 };
    ctx.store(0, &back, 0).map_err(|_| Reason::RejectedNoBackend)?;
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    Verdict::redirected(Reason::RejectedNoBackend, unsafe { bpf_redirect_peer(ifindex, 0) })
}

#[inline(always)]
fn sum_words(p: *const u16, n: usize) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < n {
        sum += unsafe { p.add(i).read_unaligned() } as u32;
        i += 1;
    }
    sum
}

#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
