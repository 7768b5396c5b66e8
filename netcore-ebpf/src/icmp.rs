//! ICMP errors about translated flows (destination unreachable: port unreachable,
//! fragmentation needed; time exceeded; parameter problem) are translated as nf_nat
//! translates RELATED errors. One about a packet the backend got goes back to the
//! client as about the packet the client sent: the quoted packet gets the service
//! address and port back as its destination (and, after masquerade, the client's own
//! address and port as its source), the outer header the client as destination and,
//! where the backend itself reports, the service as source. One about a reply (a
//! router on the way to a NodePort client that needs a smaller MTU, a client whose
//! socket is gone) goes to the backend as about the reply it sent. Without that the
//! stack it reaches matches the error to no socket: a UDP client never hears "port
//! unreachable", a TCP sender never learns a smaller path MTU.
//!
//! Checksums: rewriting a quoted address together with the quoted header's checksum
//! leaves that header's one's-complement sum, and so the ICMP checksum, unchanged;
//! a quoted port changes the ICMP checksum; the quoted transport checksum is left as
//! it is (receivers do not check it, and a router quotes only 8 bytes of it anyway).

use aya_ebpf::programs::TcContext;
use netcore_common::{
    conntrack::{CtKey, CT_FORWARD, CT_NODEPORT, CT_SNAT},
    counters::Reason,
    wire::{ETH_HLEN, IPV4_HLEN},
};

use crate::{
    conntrack,
    l4::IPPROTO_TCP,
    nat::{set_ip_addr, IP_CSUM_OFF as OUTER_CSUM, IP_DST_OFF as OUTER_DST, IP_SRC_OFF as OUTER_SRC},
    packet::{addr_at as addr, IPPROTO_UDP, IP_MF_OFFSET_MASK},
};

const IPPROTO_ICMP: u8 = 1;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETERPROB: u8 = 12;

const ICMP: usize = ETH_HLEN + IPV4_HLEN;
const ICMP_CSUM: usize = ICMP + 2;
/// The quoted IPv4 header (no options) and its transport ports.
const QUOTED: usize = ICMP + 8;
const QUOTED_CSUM: usize = QUOTED + 10;
const QUOTED_SRC: usize = QUOTED + 12;
const QUOTED_DST: usize = QUOTED + 16;
const QUOTED_SPORT: usize = QUOTED + IPV4_HLEN;
const QUOTED_DPORT: usize = QUOTED_SPORT + 2;

/// `translate_error`'s answer: not an error about a translated flow (nothing changed).
pub const UNRELATED: u64 = 0;
/// Translated; the low 32 bits are the new (outer) destination.
pub const TRANSLATED: u64 = 1 << 32;
/// With `TRANSLATED`: a NodePort flow's error, to leave through the uplink.
pub const TO_UPLINK: u64 = 1 << 33;
/// A rewrite failed (the packet is half translated: drop it).
pub const FAILED: u64 = 1 << 34;
/// With `TRANSLATED`: an error about a reply, on its way to the backend.
pub const TO_BACKEND: u64 = 1 << 35;

/// Translates the packet if it is an ICMP error about a translated flow; the answer
/// is a scalar (see the constants).
#[inline(always)]
pub fn translate_error(ctx: &TcContext) -> u64 {
    match translate(ctx) {
        Ok(Some((dst, how))) => TRANSLATED | how | dst as u64,
        Ok(None) => UNRELATED,
        Err(_) => FAILED,
    }
}

/// The new destination and where it goes (`TO_*`); `None` when the packet is not an
/// ICMP error quoting a translated flow's packet.
///
/// The quoted packet is the flow's either way: a client's packet as its backend got
/// it (the error goes to the client), or a reply as the client got it (the error goes
/// to the backend). Keyed the other way round, it finds the entry of the direction
/// that was translated, whose `a` end (the service to the client, the backend to the
/// backend's side) replaces the quoted end the error concerns, and whose `b` end
/// (after masquerade) the other one. The outer addresses follow the quoted ones.
#[inline(always)]
fn translate(ctx: &TcContext) -> Result<Option<(u32, u64)>, Reason> {
    let Ok(outer) = ctx.load::<[u8; 20]>(ETH_HLEN) else { return Ok(None) };
    let frags = u16::from_be_bytes([outer[6], outer[7]]);
    if outer[0] != 0x45 || outer[9] != IPPROTO_ICMP || frags & IP_MF_OFFSET_MASK != 0 {
        return Ok(None);
    }
    let Ok(kind) = ctx.load::<u8>(ICMP) else { return Ok(None) };
    if kind != ICMP_DEST_UNREACH && kind != ICMP_TIME_EXCEEDED && kind != ICMP_PARAMETERPROB {
        return Ok(None);
    }
    let Ok(quoted) = ctx.load::<[u8; 20]>(QUOTED) else { return Ok(None) };
    let (proto, qfrags) = (quoted[9], u16::from_be_bytes([quoted[6], quoted[7]]));
    if quoted[0] != 0x45 || (proto != IPPROTO_TCP && proto != IPPROTO_UDP) || qfrags & 0x1fff != 0 {
        return Ok(None);
    }
    let Ok([sport, dport]) = ctx.load::<[u16; 2]>(QUOTED_SPORT) else { return Ok(None) };
    let (qsrc, qdst) = (addr(&quoted, 12), addr(&quoted, 16));
    let key = CtKey { src: qdst, dst: qsrc, sport: dport, dport: sport, proto, _pad: [0; 3] };
    // Read in place, not copied (Linux 6.1 allows 512 bytes of stack over a program's
    // whole call chain).
    let Some(e) = conntrack::find(&key) else { return Ok(None) };
    let (a_ip, a_port, b_ip, b_port, flags) = (e.a_ip, e.a_port, e.b_ip, e.b_port, e.flags);
    // A reverse entry: the error concerns the quoted destination (the backend); a
    // forward one: the quoted source (the service).
    let to_backend = flags & CT_FORWARD != 0;
    let (near, near_port, other, other_port, n, o) = if to_backend {
        (qsrc, sport, qdst, dport, 0, 4)
    } else {
        (qdst, dport, qsrc, sport, 4, 0)
    };
    let snat = flags & CT_SNAT != 0;
    set_ip_addr(ctx, QUOTED_CSUM, QUOTED_SRC + n, near, a_ip)?;
    set_quoted_port(ctx, QUOTED_SPORT + n / 2, near_port, a_port)?;
    if snat {
        set_ip_addr(ctx, QUOTED_CSUM, QUOTED_SRC + o, other, b_ip)?;
        set_quoted_port(ctx, QUOTED_SPORT + o / 2, other_port, b_port)?;
    }
    let follow = |x: u32| if x == near { a_ip } else if snat && x == other { b_ip } else { x };
    let (src, dst) = (addr(&outer, 12), addr(&outer, 16));
    let new_dst = follow(dst);
    set_ip_addr(ctx, OUTER_CSUM, OUTER_SRC, src, follow(src))?;
    set_ip_addr(ctx, OUTER_CSUM, OUTER_DST, dst, new_dst)?;
    let how = if to_backend {
        TO_BACKEND
    } else if flags & CT_NODEPORT != 0 {
        TO_UPLINK
    } else {
        0
    };
    Ok(Some((new_dst, how)))
}

#[inline(always)]
fn set_quoted_port(ctx: &TcContext, off: usize, old: u16, new: u16) -> Result<(), Reason> {
    if old == new {
        return Ok(());
    }
    let fail = |_| Reason::DropNatFailed;
    ctx.l4_csum_replace(ICMP_CSUM, old as u64, new as u64, 2).map_err(fail)?;
    ctx.store(off, &new, 0).map_err(fail)
}
