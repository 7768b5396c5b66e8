//! Fragments of translated UDP datagrams: the first one carries the ports and is
//! translated with its flow (service.rs), which remembers the addresses it got; the
//! later ones (no ports) get the same addresses, found by the addresses they arrive
//! with, the IP identification and the protocol, for `FRAG_TIMEOUT_NS`. A later
//! fragment that arrives before its first is not translated (nf_conntrack would hold
//! it for reassembly; the sender's retry gets through).

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TcContext};
use netcore_common::{
    counters::Reason,
    fragment::{FragEntry, FragKey, FRAG_TIMEOUT_NS},
    wire::ETH_HLEN,
};

use crate::{
    l4::Flow,
    maps::NC_FRAGS,
    nat::{set_ip_addr, IP_CSUM_OFF, IP_DST_OFF, IP_SRC_OFF},
    packet::{addr_at as addr, IPPROTO_UDP},
};

/// More-fragments flag, and the fragment offset bits.
const IP_MF: u16 = 0x2000;
const IP_OFFSET: u16 = 0x1fff;

#[inline(always)]
fn header(ctx: &TcContext) -> Option<[u8; 20]> {
    ctx.load::<[u8; 20]>(ETH_HLEN).ok().filter(|h| h[0] == 0x45)
}

/// After the packet of `before` was translated: if it is a datagram's first fragment,
/// its later fragments are to get the addresses it has now (`kind`: `FRAG_*`).
#[inline(always)]
pub fn remember(ctx: &TcContext, before: &Flow, kind: u32) {
    // Only UDP's first fragments are translated (l4.rs).
    if before.proto != IPPROTO_UDP {
        return;
    }
    let Some(h) = header(ctx) else { return };
    if u16::from_be_bytes([h[6], h[7]]) & (IP_MF | IP_OFFSET) != IP_MF {
        return;
    }
    let key = FragKey { src: before.src, dst: before.dst, id: u16::from_ne_bytes([h[4], h[5]]), proto: before.proto, _pad: 0 };
    let entry = FragEntry {
        src: addr(&h, 12),
        dst: addr(&h, 16),
        kind,
        _pad: 0,
        created_ns: unsafe { bpf_ktime_get_ns() },
    };
    // Best effort: without it the later fragments pass untranslated.
    let _ = NC_FRAGS.insert(&key, &entry, 0);
}

/// A later fragment of a datagram whose first fragment was translated: given the
/// same addresses. Returns how it was translated; `None` for any other packet.
#[inline(always)]
pub fn follow(ctx: &TcContext) -> Result<Option<FragEntry>, Reason> {
    let Some(h) = header(ctx) else { return Ok(None) };
    if u16::from_be_bytes([h[6], h[7]]) & IP_OFFSET == 0 {
        return Ok(None);
    }
    let (src, dst) = (addr(&h, 12), addr(&h, 16));
    let key = FragKey { src, dst, id: u16::from_ne_bytes([h[4], h[5]]), proto: h[9], _pad: 0 };
    let Some(e) = (unsafe { NC_FRAGS.get(&key) }).copied() else { return Ok(None) };
    if unsafe { bpf_ktime_get_ns() }.saturating_sub(e.created_ns) > FRAG_TIMEOUT_NS {
        return Ok(None);
    }
    set_ip_addr(ctx, IP_CSUM_OFF, IP_SRC_OFF, src, e.src)?;
    set_ip_addr(ctx, IP_CSUM_OFF, IP_DST_OFF, dst, e.dst)?;
    Ok(Some(e))
}
