//! The endpoint maps, written together: local pod IPv4 -> host veth and pod MAC, and
//! host veth -> the only MAC and address its pod may send as.

use std::net::Ipv4Addr;

use aya::maps::{HashMap, Map, MapData};
use netcore_common::endpoint::{EndpointInfo, PodIface};

use super::MapError;
use super::{err, is_not_found};
use crate::mac::Mac;

pub struct EndpointMap {
    map: HashMap<MapData, u32, EndpointInfo>,
    name: &'static str,
    ifaces: HashMap<MapData, u32, PodIface>,
    ifaces_name: &'static str,
}

fn key(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

impl EndpointMap {
    pub fn new(
        (map, name): (Map, &'static str),
        (ifaces, ifaces_name): (Map, &'static str),
    ) -> Result<Self, MapError> {
        Ok(Self {
            map: HashMap::try_from(map).map_err(err(name))?,
            name,
            ifaces: HashMap::try_from(ifaces).map_err(err(ifaces_name))?,
            ifaces_name,
        })
    }

    /// The pod's identity first (what its veth may send), then where it is.
    pub fn insert(
        &mut self,
        ip: Ipv4Addr,
        host_ifindex: u32,
        pod_mac: Mac,
    ) -> Result<(), MapError> {
        let old = self.get(ip);
        if let Some(old) = old.filter(|e| e.host_ifindex != host_ifindex) {
            self.remove_iface(old.host_ifindex)?;
        }
        let iface = PodIface::new(key(ip), pod_mac.0);
        self.ifaces
            .insert(host_ifindex, iface, 0)
            .map_err(err(self.ifaces_name))?;
        let mut value = EndpointInfo::new(host_ifindex, pod_mac.0);
        // A rewritten entry (a restarted agent) keeps its policy until it is recompiled.
        if let Some(old) = old {
            (value.ingress_set, value.egress_set) = (old.ingress_set, old.egress_set);
        }
        self.map.insert(key(ip), value, 0).map_err(err(self.name))
    }

    /// The policy sets of the pod at `ip` (policy.rs); false if it has no entry.
    pub fn set_policy(
        &mut self,
        ip: Ipv4Addr,
        ingress: u32,
        egress: u32,
    ) -> Result<bool, MapError> {
        let Some(mut e) = self.get(ip) else {
            return Ok(false);
        };
        if (e.ingress_set, e.egress_set) == (ingress, egress) {
            return Ok(true);
        }
        (e.ingress_set, e.egress_set) = (ingress, egress);
        self.map.insert(key(ip), e, 0).map_err(err(self.name))?;
        Ok(true)
    }

    /// Removes the pod's entries; missing ones are not an error.
    pub fn remove(&mut self, ip: Ipv4Addr) -> Result<(), MapError> {
        if let Some(ep) = self.get(ip) {
            self.remove_iface(ep.host_ifindex)?;
        }
        match self.map.remove(&key(ip)) {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other.map_err(err(self.name)),
        }
    }

    fn remove_iface(&mut self, ifindex: u32) -> Result<(), MapError> {
        match self.ifaces.remove(&ifindex) {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other.map_err(err(self.ifaces_name)),
        }
    }

    /// Drops pod-interface entries of veths no endpoint has (left by a crash).
    pub fn remove_orphan_ifaces(&mut self) -> Result<(), MapError> {
        let used: Vec<u32> = self.entries().iter().map(|(_, e)| e.host_ifindex).collect();
        let orphans: Vec<u32> = self
            .ifaces
            .keys()
            .filter_map(Result::ok)
            .filter(|i| !used.contains(i))
            .collect();
        for i in orphans {
            self.remove_iface(i)?;
        }
        Ok(())
    }

    pub fn get(&self, ip: Ipv4Addr) -> Option<EndpointInfo> {
        self.map.get(&key(ip), 0).ok()
    }

    pub fn entries(&self) -> Vec<(Ipv4Addr, EndpointInfo)> {
        self.map
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| (Ipv4Addr::from(k.to_ne_bytes()), v))
            .collect()
    }
}
