//! Events for `netcore monitor`: every drop while someone watches drops, one passing
//! packet in N while someone traces. Nobody watching costs one read of the config
//! entry's flags. A full ring buffer loses the event and counts it.

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    programs::TcContext,
};
use netcore_common::{
    config::{DatapathConfig, FLAG_MONITOR_DROPS, FLAG_MONITOR_TRACE},
    counters::Reason,
    monitor::{Event, EVENT_DROP, EVENT_TRACE},
    wire::IPV4_HLEN,
};

use crate::{
    headers,
    maps::{NC_EVENTS, NC_POLICY_DENIED},
};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Reports the outcome of the packet in `ctx` if someone watches.
#[inline(always)]
pub fn report(ctx: &TcContext, cfg: &DatapathConfig, program: u8, reason: Reason) -> bool {
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

/// The addresses and ports (what cannot be read stays zero): the inner ones of a
/// VXLAN packet, with its outer addresses.
#[inline(always)]
fn tuple(ctx: &TcContext, ev: &mut Event, vxlan_port: u16) {
    let Some(a) = headers::read(ctx, vxlan_port) else { return };
    (ev.src, ev.dst, ev.proto) = (a.src, a.dst, a.proto);
    (ev.outer_src, ev.outer_dst) = (a.outer_src, a.outer_dst);
    if a.proto == IPPROTO_TCP || a.proto == IPPROTO_UDP {
        if let Ok(ports) = ctx.load::<[u16; 2]>(a.ip + IPV4_HLEN) {
            (ev.sport, ev.dport) = (ports[0], ports[1]);
        }
    }
}
