//! Events for `netcore monitor`: every drop while someone watches drops, one passing
//! packet in N while someone traces. Nobody watching costs one read of the config
//! entry's flags. A full ring buffer loses the event and counts it.

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    programs::TcContext,
};
use netcore_common::{
    config::{FLAG_MONITOR_DROPS, FLAG_MONITOR_TRACE},
    counters::Reason,
    monitor::{Event, EVENT_DROP, EVENT_TRACE},
    wire::{ETH_HLEN, IPV4_HLEN, VXLAN_OVERHEAD},
};

use crate::maps::{NC_CONFIG, NC_EVENTS, NC_POLICY_DENIED};

const ETH_P_IPV4: u16 = 0x0800;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Reports the outcome of the packet in `ctx` if someone watches.
#[inline(always)]
pub fn report(ctx: &TcContext, program: u8, reason: Reason) -> bool {
    let Some(cfg) = NC_CONFIG.get(0) else { return true };
    let (flags, every, port) = (cfg.flags, cfg.trace_every, cfg.vxlan_port);
    if flags & (FLAG_MONITOR_DROPS | FLAG_MONITOR_TRACE) == 0 {
        return true;
    }
    let drop = reason.is_drop();
    let wanted = if drop {
        flags & FLAG_MONITOR_DROPS != 0
    } else {
        flags & FLAG_MONITOR_TRACE != 0 && sampled(every)
    };
    if !wanted {
        return true;
    }
    let kind = if drop { EVENT_DROP } else { EVENT_TRACE };
    emit(ctx, program, reason, kind, port)
}

#[inline(always)]
fn sampled(every: u16) -> bool {
    every <= 1 || unsafe { bpf_get_prandom_u32() } % every as u32 == 0
}

/// Writes the event; false when the ring buffer is full.
#[inline(always)]
fn emit(ctx: &TcContext, program: u8, reason: Reason, kind: u8, vxlan_port: u16) -> bool {
    let Some(mut entry) = NC_EVENTS.reserve::<Event>(0) else {
        return false;
    };
    let mut ev = Event {
        ts_ns: unsafe { bpf_ktime_get_ns() },
        reason: reason as u32,
        ifindex: unsafe { (*ctx.skb.skb).ifindex },
        len: ctx.len(),
        kind,
        program,
        ..Event::default()
    };
    tuple(ctx, &mut ev, vxlan_port);
    if reason == Reason::DropPolicy {
        ev.policy = NC_POLICY_DENIED.get(0).map_or(0, |d| d.set);
    }
    entry.write(ev);
    entry.submit(0);
    true
}

/// The addresses and ports, read with `bpf_skb_load_bytes` (what cannot be read
/// stays zero): the inner ones of a VXLAN packet, with its outer addresses.
#[inline(always)]
fn tuple(ctx: &TcContext, ev: &mut Event, vxlan_port: u16) {
    if ctx.load::<[u8; 2]>(12).map(u16::from_be_bytes) != Ok(ETH_P_IPV4) {
        return;
    }
    let mut ip = ETH_HLEN;
    if let Some((src, dst, proto)) = ipv4(ctx, ip) {
        (ev.src, ev.dst, ev.proto) = (src, dst, proto);
    }
    let udp_dport = ctx.load::<[u8; 2]>(ip + IPV4_HLEN + 2).map(u16::from_be_bytes);
    if ev.proto == IPPROTO_UDP && udp_dport == Ok(vxlan_port) {
        (ev.outer_src, ev.outer_dst) = (ev.src, ev.dst);
        ip = ETH_HLEN + VXLAN_OVERHEAD;
        match ipv4(ctx, ip) {
            Some((src, dst, proto)) => (ev.src, ev.dst, ev.proto) = (src, dst, proto),
            None => (ev.src, ev.dst, ev.proto) = (0, 0, 0),
        }
    }
    if ev.proto == IPPROTO_TCP || ev.proto == IPPROTO_UDP {
        if let Ok(ports) = ctx.load::<[u16; 2]>(ip + IPV4_HLEN) {
            (ev.sport, ev.dport) = (ports[0], ports[1]);
        }
    }
}

#[inline(always)]
fn ipv4(ctx: &TcContext, at: usize) -> Option<(u32, u32, u8)> {
    let head = ctx.load::<[u8; 20]>(at).ok()?;
    if head[0] >> 4 != 4 {
        return None;
    }
    let src = u32::from_ne_bytes([head[12], head[13], head[14], head[15]]);
    let dst = u32::from_ne_bytes([head[16], head[17], head[18], head[19]]);
    Some((src, dst, head[9]))
}
