//! Rewriting addresses and ports in place, with the IPv4 and transport checksums
//! updated incrementally (also for checksum-offloaded and GSO packets).

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use netcore_common::{counters::Reason, wire::ETH_HLEN};

use crate::{
    l4::{Flow, L4_OFF},
    packet::IPPROTO_UDP,
};

pub const IP_CSUM_OFF: usize = ETH_HLEN + 10;
pub const IP_SRC_OFF: usize = ETH_HLEN + 12;
pub const IP_DST_OFF: usize = ETH_HLEN + 16;

#[inline(always)]
fn l4_flags(flow: &Flow) -> u64 {
    // A UDP checksum of 0 means "none" and must stay 0.
    if flow.proto == IPPROTO_UDP {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    }
}

#[inline(always)]
fn set_addr(ctx: &TcContext, flow: &Flow, off: usize, old: u32, new: u32) -> Result<(), Reason> {
    if old == new {
        return Ok(());
    }
    ctx.l4_csum_replace(flow.csum_off(), old as u64, new as u64, l4_flags(flow) | BPF_F_PSEUDO_HDR as u64 | 4)
        .map_err(|_| Reason::DropNatFailed)?;
    set_ip_addr(ctx, IP_CSUM_OFF, off, old, new)
}

/// Rewrites an IPv4 address at `off` with the checksum of the header it is in (at
/// `csum_off`) only: for what has no transport header (a later fragment), or none
/// that covers the address (ICMP).
#[inline(always)]
pub fn set_ip_addr(ctx: &TcContext, csum_off: usize, off: usize, old: u32, new: u32) -> Result<(), Reason> {
    if old == new {
        return Ok(());
    }
    let fail = |_| Reason::DropNatFailed;
    ctx.l3_csum_replace(csum_off, old as u64, new as u64, 4).map_err(fail)?;
    ctx.store(off, &new, 0).map_err(fail)
}

#[inline(always)]
fn set_port(ctx: &TcContext, flow: &Flow, off: usize, old: u16, new: u16) -> Result<(), Reason> {
    if old == new {
        return Ok(());
    }
    let fail = |_| Reason::DropNatFailed;
    ctx.l4_csum_replace(flow.csum_off(), old as u64, new as u64, l4_flags(flow) | 2).map_err(fail)?;
    ctx.store(off, &new, 0).map_err(fail)
}

/// Sets the destination of the packet (whose current flow is `flow`).
#[inline(always)]
pub fn set_dst(ctx: &TcContext, flow: &Flow, ip: u32, port: u16) -> Result<(), Reason> {
    set_addr(ctx, flow, IP_DST_OFF, flow.dst, ip)?;
    set_port(ctx, flow, L4_OFF + 2, flow.dport, port)
}

#[inline(always)]
pub fn set_src(ctx: &TcContext, flow: &Flow, ip: u32, port: u16) -> Result<(), Reason> {
    set_addr(ctx, flow, IP_SRC_OFF, flow.src, ip)?;
    set_port(ctx, flow, L4_OFF, flow.sport, port)
}
