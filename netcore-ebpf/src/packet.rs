//! Bounds-checked access to the linear part of a packet and the header layouts the
//! programs read.

use aya_ebpf::programs::TcContext;
use netcore_common::{counters::Reason, wire::ETH_HLEN};
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

pub const ETH_P_IPV4: u16 = 0x0800u16.to_be();
pub const IPPROTO_UDP: u8 = 17;
/// More-fragments flag and fragment offset bits of `frag_off`.
pub const IP_MF_OFFSET_MASK: u16 = 0x3fff;

/// The (big-endian) IPv4 address at `at` in header bytes read with `load`.
#[inline(always)]
pub fn addr_at(h: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

/// A pointer to a `T` at `offset`, if the linear data holds all of it.
#[inline(always)]
pub fn ptr_at<T>(ctx: &TcContext, offset: usize) -> Result<*mut T, Reason> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(Reason::DropMalformed);
    }
    Ok((start + offset) as *mut T)
}

/// Makes the first `len` bytes linear (a no-op when they already are).
#[inline(always)]
pub fn pull(ctx: &TcContext, len: usize) -> Result<(), Reason> {
    if ctx.data() + len <= ctx.data_end() {
        return Ok(());
    }
    ctx.pull_data(len as u32).map_err(|_| Reason::DropMalformed)
}

/// The Ethernet header, or `None` for a frame that does not carry IPv4.
#[inline(always)]
pub fn ipv4_frame(ctx: &TcContext) -> Result<Option<*mut Ipv4Hdr>, Reason> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    if unsafe { (*eth).ether_type } != ETH_P_IPV4 {
        return Ok(None);
    }
    pull(ctx, ETH_HLEN + Ipv4Hdr::LEN)?;
    let ip: *mut Ipv4Hdr = ptr_at(ctx, ETH_HLEN)?;
    if unsafe { (*ip).vihl } >> 4 != 4 {
        return Err(Reason::DropMalformed);
    }
    Ok(Some(ip))
}

/// Destination address as the big-endian `u32` the maps are keyed by.
#[inline(always)]
pub fn dst_ip(ip: *const Ipv4Hdr) -> u32 {
    u32::from_ne_bytes(unsafe { (*ip).dst_addr })
}

#[inline(always)]
pub fn src_ip(ip: *const Ipv4Hdr) -> u32 {
    u32::from_ne_bytes(unsafe { (*ip).src_addr })
}

/// Rewrites the Ethernet addresses of the frame at the start of the packet.
#[inline(always)]
pub fn set_macs(ctx: &TcContext, dst: [u8; 6], src: [u8; 6]) -> Result<(), Reason> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    unsafe {
        (*eth).dst_addr = dst;
        (*eth).src_addr = src;
    }
    Ok(())
}
