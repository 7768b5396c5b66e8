//! IP address management for one pod CIDR: the network address, the gateway and the
//! broadcast address are never handed out; allocation goes round-robin from the last
//! address handed out, so a freed address is reused only after the others.

use std::{collections::BTreeSet, net::Ipv4Addr};

use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    #[error("pod CIDR {0} is exhausted: every address is in use")]
    Exhausted(Ipv4Net),
    #[error("{addr} is not a pod address of {net}")]
    OutOfRange { addr: Ipv4Addr, net: Ipv4Net },
    #[error("{0} is already in use")]
    InUse(Ipv4Addr),
}

#[derive(Debug, Clone)]
pub struct Ipam {
    net: Ipv4Net,
    used: BTreeSet<Ipv4Addr>,
    last: Option<Ipv4Addr>,
}

impl Ipam {
    pub fn new(net: Ipv4Net, last: Option<Ipv4Addr>) -> Self {
        Self {
            net,
            used: BTreeSet::new(),
            last,
        }
    }

    /// First and last address pods may get: after the gateway, before broadcast.
    fn range(&self) -> (u32, u32) {
        let base = u32::from(self.net.network());
        (base + 2, u32::from(self.net.broadcast()) - 1)
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let (lo, hi) = self.range();
        (lo..=hi).contains(&u32::from(addr))
    }

    /// Marks `addr` used (an existing pod's address, on restart).
    pub fn reserve(&mut self, addr: Ipv4Addr) -> Result<(), IpamError> {
        if !self.contains(addr) {
            return Err(IpamError::OutOfRange {
                addr,
                net: self.net,
            });
        }
        if !self.used.insert(addr) {
            return Err(IpamError::InUse(addr));
        }
        Ok(())
    }

    pub fn allocate(&mut self) -> Result<Ipv4Addr, IpamError> {
        let (lo, hi) = self.range();
        let start = self.last.map_or(lo, |l| u32::from(l).wrapping_add(1));
        let size = hi - lo + 1;
        for i in 0..size {
            let candidate = lo + (start.wrapping_sub(lo).wrapping_add(i)) % size;
            let addr = Ipv4Addr::from(candidate);
            if self.used.insert(addr) {
                self.last = Some(addr);
                return Ok(addr);
            }
        }
        Err(IpamError::Exhausted(self.net))
    }

    pub fn release(&mut self, addr: Ipv4Addr) {
        self.used.remove(&addr);
    }

    pub fn last(&self) -> Option<Ipv4Addr> {
        self.last
    }

    pub fn in_use(&self) -> usize {
        self.used.len()
    }

    pub fn capacity(&self) -> usize {
        let (lo, hi) = self.range();
        (hi - lo + 1) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn skips_network_gateway_and_broadcast_and_exhausts() {
        let mut ipam = Ipam::new("10.1.0.0/29".parse().unwrap(), None);
        let got: Vec<_> = (0..5).map(|_| ipam.allocate().unwrap()).collect();
        assert_eq!(
            got,
            ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"].map(ip)
        );
        assert_eq!(
            ipam.allocate(),
            Err(IpamError::Exhausted("10.1.0.0/29".parse().unwrap()))
        );
    }

    #[test]
    fn freed_address_comes_back_after_the_others() {
        let mut ipam = Ipam::new("10.1.0.0/29".parse().unwrap(), None);
        let a = ipam.allocate().unwrap();
        let b = ipam.allocate().unwrap();
        ipam.release(a);
        assert_eq!(
            ipam.allocate().unwrap(),
            ip("10.1.0.4"),
            "round robin goes on past {b}"
        );
        for _ in 0..2 {
            ipam.allocate().unwrap();
        }
        assert_eq!(
            ipam.allocate().unwrap(),
            a,
            "after wrapping, the freed address is reused"
        );
    }

    #[test]
    fn reserve_refuses_foreign_and_duplicate_addresses() {
        let mut ipam = Ipam::new("10.1.0.0/24".parse().unwrap(), None);
        assert!(ipam.reserve(ip("10.1.0.9")).is_ok());
        assert_eq!(
            ipam.reserve(ip("10.1.0.9")),
            Err(IpamError::InUse(ip("10.1.0.9")))
        );
        assert!(matches!(
            ipam.reserve(ip("10.1.0.1")),
            Err(IpamError::OutOfRange { .. })
        ));
        assert!(matches!(
            ipam.reserve(ip("10.2.0.5")),
            Err(IpamError::OutOfRange { .. })
        ));
        assert_ne!(ipam.allocate().unwrap(), ip("10.1.0.9"));
    }
}
