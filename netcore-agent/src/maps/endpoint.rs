//! The endpoint map: local pod IPv4 -> host veth and pod MAC.

use std::net::Ipv4Addr;

use aya::maps::{HashMap, Map, MapData};
use netcore_common::endpoint::EndpointInfo;

use super::MapError;
use super::{err, is_not_found};
use crate::mac::Mac;

pub struct EndpointMap {
    map: HashMap<MapData, u32, EndpointInfo>,
    name: &'static str,
}

fn key(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

impl EndpointMap {
    pub fn new((map, name): (Map, &'static str)) -> Result<Self, MapError> {
        Ok(Self {
            map: HashMap::try_from(map).map_err(err(name))?,
            name,
        })
    }

    pub fn insert(
        &mut self,
        ip: Ipv4Addr,
        host_ifindex: u32,
        pod_mac: Mac,
    ) -> Result<(), MapError> {
        let value = EndpointInfo::new(host_ifindex, pod_mac.0);
        self.map.insert(key(ip), value, 0).map_err(err(self.name))
    }

    /// Removes the entry; a missing one is not an error.
    pub fn remove(&mut self, ip: Ipv4Addr) -> Result<(), MapError> {
        match self.map.remove(&key(ip)) {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other.map_err(err(self.name)),
        }
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
