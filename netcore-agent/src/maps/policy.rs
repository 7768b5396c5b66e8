//! The policy maps (netcore_common::policy): peer classes by address, allowed
//! (set, class, protocol, port prefix) entries, the flows policy allowed, and hits per
//! policy. The agent writes what `policy::compile` made and reads the kernel's
//! longest-prefix answers back to re-check remembered flows after a change.

use std::net::Ipv4Addr;

use aya::maps::{lpm_trie::Key, HashMap, LpmTrie, Map, MapData, PerCpuArray};
use ipnet::Ipv4Net;
use netcore_common::{
    conntrack::CtKey,
    policy::{PeerClass, PolicyFlow, PolicyKey, PolicyRule, CLASS_WORLD, POLICY_PREFIX_FULL},
};

use super::{err, is_not_found, MapError};

pub struct PolicyMaps {
    peers: LpmTrie<MapData, u32, PeerClass>,
    rules: LpmTrie<MapData, PolicyKey, PolicyRule>,
    flows: HashMap<MapData, CtKey, PolicyFlow>,
    hits: PerCpuArray<MapData, u64>,
    names: [&'static str; 4],
}

fn peer_key(net: Ipv4Net) -> Key<u32> {
    Key::new(
        net.prefix_len() as u32,
        u32::from_ne_bytes(net.network().octets()),
    )
}

impl PolicyMaps {
    pub fn new(
        peers: (Map, &'static str),
        rules: (Map, &'static str),
        flows: (Map, &'static str),
        hits: (Map, &'static str),
    ) -> Result<Self, MapError> {
        Ok(Self {
            peers: LpmTrie::try_from(peers.0).map_err(err(peers.1))?,
            rules: LpmTrie::try_from(rules.0).map_err(err(rules.1))?,
            flows: HashMap::try_from(flows.0).map_err(err(flows.1))?,
            hits: PerCpuArray::try_from(hits.0).map_err(err(hits.1))?,
            names: [peers.1, rules.1, flows.1, hits.1],
        })
    }

    pub fn set_peer(&mut self, net: Ipv4Net, class: u32) -> Result<(), MapError> {
        self.peers
            .insert(&peer_key(net), PeerClass { class }, 0)
            .map_err(err(self.names[0]))
    }

    pub fn remove_peer(&mut self, net: Ipv4Net) -> Result<(), MapError> {
        match self.peers.remove(&peer_key(net)) {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other.map_err(err(self.names[0])),
        }
    }

    /// Every (prefix, class) the peer map holds.
    pub fn peers(&self) -> Vec<(Ipv4Net, u32)> {
        self.peers
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(k, v)| {
                let ip = Ipv4Addr::from(k.data().to_ne_bytes());
                Some((Ipv4Net::new(ip, k.prefix_len() as u8).ok()?, v.class))
            })
            .collect()
    }

    pub fn set_rule(&mut self, key: PolicyKey, len: u32, policy: u32) -> Result<(), MapError> {
        let value = PolicyRule { policy };
        self.rules
            .insert(&Key::new(len, key), value, 0)
            .map_err(err(self.names[1]))
    }

    pub fn remove_rule(&mut self, key: PolicyKey, len: u32) -> Result<(), MapError> {
        match self.rules.remove(&Key::new(len, key)) {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other.map_err(err(self.names[1])),
        }
    }

    /// Every (key, prefix length, policy slot) the rule map holds.
    pub fn rules(&self) -> Vec<(PolicyKey, u32, u32)> {
        self.rules
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| (k.data(), k.prefix_len(), v.policy))
            .collect()
    }

    /// The class the kernel finds for `ip`.
    pub fn class_of(&self, ip: Ipv4Addr) -> u32 {
        let key = Key::new(32, u32::from_ne_bytes(ip.octets()));
        self.peers.get(&key, 0).map_or(CLASS_WORLD, |c| c.class)
    }

    /// Whether the kernel's rule map allows (set, class, proto, port).
    pub fn allows(&self, set: u32, class: u32, proto: u8, port_be: u16) -> bool {
        let key = PolicyKey {
            set,
            peer: class,
            proto,
            port: port_be.to_ne_bytes(),
            _pad: 0,
        };
        self.rules
            .get(&Key::new(POLICY_PREFIX_FULL, key), 0)
            .is_ok()
    }

    /// The flows policy allowed, as keyed.
    pub fn flows(&self) -> Vec<CtKey> {
        self.flows.keys().filter_map(Result::ok).collect()
    }

    pub fn forget_flow(&mut self, key: &CtKey) -> Result<(), MapError> {
        match self.flows.remove(key) {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other.map_err(err(self.names[2])),
        }
    }

    /// Flows the policy in `slot` allowed, summed over CPUs.
    pub fn hits(&self, slot: u32) -> u64 {
        self.hits
            .get(&slot, 0)
            .map_or(0, |per_cpu| per_cpu.iter().sum())
    }
}
