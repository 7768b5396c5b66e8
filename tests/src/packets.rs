//! Crafted frames for the data path: VXLAN payloads (what follows the outer UDP
//! header) carrying an inner Ethernet/IPv4/UDP packet, and a parser for captures.

use std::net::Ipv4Addr;

pub const ETH_P_IPV4: u16 = 0x0800;

/// RFC 1071 checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header (no options) for `payload_len` bytes of `proto`.
pub fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload_len: usize) -> Vec<u8> {
    let total = (20 + payload_len) as u16;
    let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// An IPv4/UDP packet (UDP checksum 0: none).
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut p = ipv4_header(src, dst, 17, udp.len());
    p.extend_from_slice(&udp);
    p
}

/// A TCP segment's header fields.
#[derive(Clone, Copy, Debug)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// SYN 0x02, ACK 0x10, FIN 0x01, RST 0x04.
    pub flags: u8,
}

/// An IPv4/TCP packet without payload or options (TCP checksum 0: the programs under
/// test do not check it).
pub fn ipv4_tcp(src: Ipv4Addr, dst: Ipv4Addr, t: Tcp) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&t.sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&t.dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&t.seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&t.ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = t.flags;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let mut p = ipv4_header(src, dst, 6, tcp.len());
    p.extend_from_slice(&tcp);
    p
}

pub fn ethernet(dst: [u8; 6], src: [u8; 6], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A VXLAN header with the I flag and `vni`.
pub fn vxlan_header(flags: u8, vni: u32) -> [u8; 8] {
    let v = (vni << 8).to_be_bytes();
    [flags, 0, 0, 0, v[0], v[1], v[2], v[3]]
}

/// VXLAN payload carrying an inner UDP datagram from `src` to `dst:dport`.
pub fn vxlan_udp(
    vni: u32,
    inner_dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dport: u16,
    data: &[u8],
) -> Vec<u8> {
    let inner = ethernet(
        inner_dst_mac,
        [0x02, 0, 0, 0, 0, 0x99],
        ETH_P_IPV4,
        &ipv4_udp(src, dst, 40000, dport, data),
    );
    let mut p = vxlan_header(0x08, vni).to_vec();
    p.extend_from_slice(&inner);
    p
}

/// What a captured Ethernet frame is, as far as the overlay tests care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// VXLAN on `port` with `vni`, carrying IPv4 from `src` to `dst`.
    Vxlan {
        port: u16,
        vni: u32,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    },
    /// Plain IPv4.
    Ipv4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: u8,
    },
    Other,
}

fn ip_at(b: &[u8], off: usize) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::from(
        <[u8; 4]>::try_from(b.get(off..off + 4)?).ok()?,
    ))
}

pub fn parse(frame: &[u8]) -> Seen {
    let parse_ip = |b: &[u8]| -> Option<(Ipv4Addr, Ipv4Addr, u8, usize)> {
        if b.len() < 20 || b[0] >> 4 != 4 {
            return None;
        }
        Some((
            ip_at(b, 12)?,
            ip_at(b, 16)?,
            b[9],
            (b[0] & 0xf) as usize * 4,
        ))
    };
    if frame.len() < 14 || frame[12..14] != ETH_P_IPV4.to_be_bytes() {
        return Seen::Other;
    }
    let Some((src, dst, proto, ihl)) = parse_ip(&frame[14..]) else {
        return Seen::Other;
    };
    let udp = 14 + ihl;
    if proto == 17 && frame.len() >= udp + 8 + 8 + 14 + 20 {
        let port = u16::from_be_bytes([frame[udp + 2], frame[udp + 3]]);
        let vx = &frame[udp + 8..];
        if port == 8472 || port == 4789 {
            let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
            if let Some((isrc, idst, _, _)) = parse_ip(&vx[8 + 14..]) {
                return Seen::Vxlan {
                    port,
                    vni,
                    src: isrc,
                    dst: idst,
                };
            }
        }
    }
    Seen::Ipv4 { src, dst, proto }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_header() {
        // Example header from RFC 1071 discussions (checksum field zeroed): 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0x00,
            0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        let built = ipv4_header(
            "192.168.0.1".parse().unwrap(),
            "192.168.0.199".parse().unwrap(),
            17,
            0x73 - 20,
        );
        assert_eq!(
            checksum(&built),
            0,
            "a header with its checksum sums to zero"
        );
    }
}
