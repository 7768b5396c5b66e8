//! ICMP errors about translated flows (destination unreachable: port unreachable,
//! fragmentation needed; time exceeded; parameter problem) go back to the client the
//! way the client sent the flow, as nf_nat does for RELATED errors: the quoted packet
//! gets the service address and port back as its destination (and, after masquerade,
//! the client's own address and port as its source), the outer header the client as
//! destination and, where the backend itself reports, the service as source. Without
//! that the client's stack matches the error to no socket: a UDP client never hears
//! "port unreachable", a TCP one never learns a smaller path MTU.
//!
//! Checksums: rewriting a quoted address together with the quoted header's checksum
//! leaves that header's one's-complement sum, and so the ICMP checksum, unchanged;
//! a quoted port changes the ICMP checksum; the quoted transport checksum is left as
//! it is (receivers do not check it, and a router quotes only 8 bytes of it anyway).

use aya_ebpf::programs::TcContext;
use netcore_common::{
    conntrack::{CtKey, CT_NODEPORT, CT_REVERSE, CT_SNAT},
    counters::Reason,
    wire::{ETH_HLEN, IPV4_HLEN},
};

use crate::{
    conntrack,
    l4::IPPROTO_TCP,
    nat::{set_ip_addr, IP_CSUM_OFF as OUTER_CSUM, IP_DST_OFF as OUTER_DST, IP_SRC_OFF as OUTER_SRC},
    packet::{IPPROTO_UDP, IP_MF_OFFSET_MASK},
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

/// Translates the packet if it is an ICMP error about a translated flow. A call of its
/// own (a scalar answer, see the constants): its stack is not added to the program's.
#[inline(always)]
pub fn translate_error(ctx: &TcContext) -> u64 {
    match translate(ctx) {
        Ok(Some((dst, nodeport))) => TRANSLATED | if nodeport { TO_UPLINK } else { 0 } | dst as u64,
        Ok(None) => UNRELATED,
        Err(_) => FAILED,
    }
}

#[inline(always)]
fn addr(h: &[u8; 20], at: usize) -> u32 {
    u32::from_ne_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

/// The new destination and whether it is a NodePort flow's; `None` when the packet is
/// not an ICMP error quoting a translated flow's packet.
#[inline(always)]
fn translate(ctx: &TcContext) -> Result<Option<(u32, bool)>, Reason> {
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
    // The quoted packet went client -> backend: its flow's replies are keyed the
    // other way round.
    let reply = CtKey { src: qdst, dst: qsrc, sport: dport, dport: sport, proto, _pad: [0; 3] };
    // Read in place, not copied (this runs as a call below a program's whole frame:
    // Linux allows 512 bytes of stack over the chain).
    let Some(rev) = conntrack::find(&reply) else { return Ok(None) };
    let (a_ip, a_port, b_ip, b_port, flags) = (rev.a_ip, rev.a_port, rev.b_ip, rev.b_port, rev.flags);
    if flags & CT_REVERSE == 0 {
        return Ok(None);
    }
    set_ip_addr(ctx, QUOTED_CSUM, QUOTED_DST, qdst, a_ip)?;
    set_quoted_port(ctx, QUOTED_DPORT, dport, a_port)?;
    let mut client = addr(&outer, 16);
    if flags & CT_SNAT != 0 {
        set_ip_addr(ctx, QUOTED_CSUM, QUOTED_SRC, qsrc, b_ip)?;
        set_quoted_port(ctx, QUOTED_SPORT, sport, b_port)?;
        set_ip_addr(ctx, OUTER_CSUM, OUTER_DST, client, b_ip)?;
        client = b_ip;
    }
    let reporter = addr(&outer, 12);
    if reporter == qdst {
        set_ip_addr(ctx, OUTER_CSUM, OUTER_SRC, reporter, a_ip)?;
    }
    Ok(Some((client, flags & CT_NODEPORT != 0)))
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
