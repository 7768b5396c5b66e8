//! The node LPM trie: remote pod CIDRs (and remote nodes' underlay addresses as /32)
//! -> the node that owns them.

use std::net::Ipv4Addr;

use aya::maps::{lpm_trie::Key, LpmTrie, Map, MapData};
use ipnet::Ipv4Net;
use netcore_common::node::RemoteNode;

use super::MapError;
use super::{err, is_not_found};
use crate::mac::Mac;

pub struct NodeMap {
    map: LpmTrie<MapData, u32, RemoteNode>,
    name: &'static str,
}

fn key(net: Ipv4Net) -> Key<u32> {
    Key::new(
        net.prefix_len() as u32,
        u32::from_ne_bytes(net.network().octets()),
    )
}

impl NodeMap {
    pub fn new((map, name): (Map, &'static str)) -> Result<Self, MapError> {
        Ok(Self {
            map: LpmTrie::try_from(map).map_err(err(name))?,
            name,
        })
    }

    /// A node reached over VXLAN.
    pub fn insert(
        &mut self,
        net: Ipv4Net,
        underlay_ip: Ipv4Addr,
        vtep_mac: Mac,
    ) -> Result<(), MapError> {
        self.set(net, vxlan_route(underlay_ip, vtep_mac))
    }

    pub fn set(&mut self, net: Ipv4Net, value: RemoteNode) -> Result<(), MapError> {
        self.map.insert(&key(net), value, 0).map_err(err(self.name))
    }

    pub fn remove(&mut self, net: Ipv4Net) -> Result<(), MapError> {
        match self.map.remove(&key(net)) {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other.map_err(err(self.name)),
        }
    }

    /// The node the kernel's trie holds for `net` (longest-prefix match).
    pub fn get(&self, net: Ipv4Net) -> Option<RemoteNode> {
        self.map.get(&key(net), 0).ok()
    }

    /// Every prefix in the trie with the node it points to.
    pub fn entries(&self) -> Vec<(Ipv4Net, RemoteNode)> {
        self.map
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(k, v)| {
                let net =
                    Ipv4Net::new(Ipv4Addr::from(k.data().to_ne_bytes()), k.prefix_len() as u8)
                        .ok()?;
                Some((net, v))
            })
            .collect()
    }
}

/// The trie value of a node reached over VXLAN.
pub fn vxlan_route(underlay_ip: Ipv4Addr, vtep_mac: Mac) -> RemoteNode {
    RemoteNode::new(u32::from_ne_bytes(underlay_ip.octets()), vtep_mac.0)
}

/// The trie value of a node reached directly, whose packets come from `underlay_mac`.
pub fn direct_route(underlay_ip: Ipv4Addr, vtep_mac: Mac, underlay_mac: Mac) -> RemoteNode {
    RemoteNode::direct(
        u32::from_ne_bytes(underlay_ip.octets()),
        vtep_mac.0,
        underlay_mac.0,
    )
}
