//! Refusing a connection to a service without backends: a TCP segment is turned into
//! the RST its sender expects, a UDP datagram into an ICMP port unreachable quoting
//! it, and the answer goes straight back where the packet came from (into the pod, out
//! of the uplink for a NodePort client, into the node's stack for its own processes),
//! so the client fails at once instead of timing out.

use aya_ebpf::{
    bindings::BPF_F_INGRESS,
    helpers::{bpf_redirect, bpf_redirect_peer, bpf_skb_change_tail},
    programs::TcContext,
};
use netcore_common::{counters::Reason, wire::ETH_HLEN};
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

use crate::{
    l4::{Flow, IPPROTO_TCP, L4_OFF, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    packet::{ptr_at, pull, IPPROTO_UDP},
    verdict::Verdict,
};

const IPPROTO_ICMP: u8 = 1;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;

/// Where the refused packet came from, and so where the answer goes.
#[derive(Clone, Copy)]
pub enum Back {
    /// From a pod, through its host veth: back into the pod.
    ToPod,
    /// From outside, through the uplink: back out of the uplink.
    ToUplink,
    /// From the node's own stack, through the bridge: back into the stack.
    ToHost,
}

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

/// An ICMP error quoting the refused datagram's IP header and first 8 bytes.
#[repr(C)]
struct Unreachable {
    ip: Ipv4Hdr,
    icmp: [u8; 8],
    quoted_ip: Ipv4Hdr,
    quoted_l4: [u8; 8],
}

/// Answers the packet of `flow` with a refusal from the address it was sent to,
/// counted as `why` (no backend, or a TCP segment of no flow known).
#[inline(always)]
pub fn refuse(ctx: &TcContext, flow: &Flow, back: Back, why: Reason) -> Result<Verdict, Reason> {
    match flow.proto {
        IPPROTO_TCP => reset(ctx, flow, why)?,
        IPPROTO_UDP => port_unreachable(ctx, flow)?,
        _ => return Err(why),
    }
    send_back(ctx, back, why)
}

/// Rewrites a TCP segment into the RST that answers it.
#[inline(always)]
fn reset(ctx: &TcContext, flow: &Flow, why: Reason) -> Result<(), Reason> {
    pull(ctx, L4_OFF + 20)?;
    let ip: *mut Ipv4Hdr = ptr_at(ctx, ETH_HLEN)?;
    let tcp: *mut TcpHdr = ptr_at(ctx, L4_OFF)?;
    let (ip_len, seq, ack, doff, flags) = unsafe {
        (u16::from_be_bytes((*ip).tot_len), u32::from_be_bytes((*tcp).seq), (*tcp).ack, (*tcp).doff, (*tcp).flags)
    };
    // A reset is never answered: dropped.
    if flags & TCP_RST != 0 {
        return Err(why);
    }
    let payload = (ip_len as u32).saturating_sub(20 + ((doff >> 4) as u32) * 4);
    let answer = seq.wrapping_add(payload + (flags & TCP_SYN != 0) as u32 + (flags & TCP_FIN != 0) as u32);
    let (rseq, rack, rflags) = if flags & TCP_ACK != 0 {
        (ack, [0; 4], TCP_RST)
    } else {
        ([0; 4], answer.to_be_bytes(), TCP_RST | TCP_ACK)
    };
    let mut rst = Rst {
        ip: answer_ip(flow, IPPROTO_TCP, 40),
        tcp: TcpHdr {
            sport: flow.dport, dport: flow.sport, seq: rseq, ack: rack, doff: 5 << 4, flags: rflags,
            window: 0, check: [0; 2], urg: 0,
        },
    };
    // Pseudo-header: both addresses, protocol, TCP length; words in memory order.
    let pseudo = (flow.dst & 0xffff) + (flow.dst >> 16) + (flow.src & 0xffff) + (flow.src >> 16)
        + (IPPROTO_TCP as u16).to_be() as u32
        + 20u16.to_be() as u32;
    rst.tcp.check = fold(pseudo + sum_words(&rst.tcp as *const _ as *const u16, 10)).to_ne_bytes();
    rewrite(ctx, &rst)
}

/// Rewrites a UDP datagram into the ICMP port unreachable that answers it.
#[inline(always)]
fn port_unreachable(ctx: &TcContext, flow: &Flow) -> Result<(), Reason> {
    pull(ctx, L4_OFF + 8)?;
    let ip: *const Ipv4Hdr = ptr_at(ctx, ETH_HLEN)?;
    let l4: *const [u8; 8] = ptr_at(ctx, L4_OFF)?;
    let mut msg = Unreachable {
        ip: answer_ip(flow, IPPROTO_ICMP, 56),
        icmp: [ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, 0, 0, 0, 0, 0, 0],
        quoted_ip: unsafe { ip.read_unaligned() },
        quoted_l4: unsafe { l4.read_unaligned() },
    };
    // ICMP header and the quote: 36 bytes, 18 words.
    let sum = fold(sum_words(msg.icmp.as_ptr() as *const u16, 18)).to_ne_bytes();
    msg.icmp[2] = sum[0];
    msg.icmp[3] = sum[1];
    rewrite(ctx, &msg)
}

/// The IPv4 header of an answer to `flow`: from its destination back to its source.
#[inline(always)]
fn answer_ip(flow: &Flow, proto: u8, len: u16) -> Ipv4Hdr {
    let mut ip = Ipv4Hdr {
        vihl: 0x45, tos: 0, tot_len: len.to_be_bytes(), id: [0; 2], frags: [0x40, 0], ttl: 64,
        proto, check: [0; 2], src_addr: flow.dst.to_ne_bytes(), dst_addr: flow.src.to_ne_bytes(),
    };
    ip.check = fold(sum_words(&ip as *const _ as *const u16, 10)).to_ne_bytes();
    ip
}

/// Cuts the packet to an Ethernet header and `T`, and writes `T` after the header.
#[inline(always)]
fn rewrite<T>(ctx: &TcContext, answer: &T) -> Result<(), Reason> {
    let len = (ETH_HLEN + core::mem::size_of::<T>()) as u32;
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, len, 0) } != 0 {
        return Err(Reason::RejectedNoBackend);
    }
    ctx.store(ETH_HLEN, answer, 0).map_err(|_| Reason::RejectedNoBackend)
}

/// Swaps the MACs and sends the frame back the way it came.
#[inline(always)]
fn send_back(ctx: &TcContext, back: Back, why: Reason) -> Result<Verdict, Reason> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    unsafe { core::mem::swap(&mut (*eth).src_addr, &mut (*eth).dst_addr) };
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let ret = match back {
        Back::ToPod => unsafe { bpf_redirect_peer(ifindex, 0) },
        Back::ToUplink => unsafe { bpf_redirect(ifindex, 0) },
        Back::ToHost => unsafe { bpf_redirect(ifindex, BPF_F_INGRESS as u64) },
    };
    Verdict::redirected(why, ret)
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
