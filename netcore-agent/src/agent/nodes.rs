//! Remote nodes in the overlay map: the static ones (`netcore node add`) and the ones
//! the cluster store announces. The trie is written by diff against what was applied
//! last, so a store listing that changed nothing costs nothing.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use netcore_common::node::RemoteNode;
use tracing::{info, warn};

use super::{Agent, AgentError, Result};
use crate::{
    api::{NodeInfo, NodeSpec},
    backend::{PeerType, RouteKind},
    mac::Mac,
    maps::node::{direct_route, vxlan_route},
    netlink,
    state::NodeRecord,
};

pub(super) fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b) || b.contains(&a)
}

/// Whether a pod CIDR in `wanted` overlaps `net`, in O(log n + prefix length): the
/// prefixes inside `net` form one key range, the ones around it are its supernets.
fn clashes<V>(wanted: &BTreeMap<Ipv4Net, V>, net: Ipv4Net) -> bool {
    let lo = Ipv4Net::new(net.network(), 0).expect("valid");
    let hi = Ipv4Net::new(net.broadcast(), 32).expect("valid");
    let inside = wanted
        .range(lo..=hi)
        .any(|(p, _)| p.prefix_len() < 32 && net.contains(p));
    let around = (0..net.prefix_len())
        .any(|len| wanted.contains_key(&Ipv4Net::new(net.network(), len).expect("valid").trunc()));
    inside || around
}

impl Agent {
    pub fn node_add(&mut self, spec: NodeSpec) -> Result<NodeInfo> {
        self.validate_node(&spec)?;
        let rec = NodeRecord {
            name: spec.name.clone(),
            pod_cidr: spec.pod_cidr,
            underlay_ip: spec.underlay_ip,
            vtep_mac: spec.vtep_mac.unwrap_or_default(),
            peer: if spec.vtep_mac.is_some() {
                PeerType::Vxlan
            } else {
                PeerType::HostGw
            },
            expires: None,
        };
        self.state.nodes.insert(spec.name.clone(), rec.clone());
        self.apply_nodes()?;
        self.save()?;
        info!(node = %spec.name, pod_cidr = %spec.pod_cidr, underlay = %spec.underlay_ip, "remote node set");
        Ok(self.node_info(&rec, "static"))
    }

    fn validate_node(&self, spec: &NodeSpec) -> Result<()> {
        let bad = |m: String| Err(AgentError::BadNode(m));
        if spec.name.is_empty() || spec.name == self.cfg.node_name {
            return bad(format!("name {:?} is empty or this node's own", spec.name));
        }
        if spec.pod_cidr.network() != spec.pod_cidr.addr() {
            return bad(format!("pod CIDR {} has host bits set", spec.pod_cidr));
        }
        if !self.net.cluster_cidr.contains(&spec.pod_cidr) {
            return bad(format!(
                "pod CIDR {} is outside the cluster CIDR {}",
                spec.pod_cidr, self.net.cluster_cidr
            ));
        }
        if overlaps(spec.pod_cidr, self.net.pod_cidr) {
            return bad(format!(
                "pod CIDR {} overlaps this node's {}",
                spec.pod_cidr, self.net.pod_cidr
            ));
        }
        if let Some(other) = self.state.nodes.values().find(|n| {
            n.name != spec.name
                && (overlaps(n.pod_cidr, spec.pod_cidr) || n.underlay_ip == spec.underlay_ip)
        }) {
            return bad(format!(
                "pod CIDR or underlay address clashes with node {}",
                other.name
            ));
        }
        if spec.underlay_ip == self.node_ip
            || spec.underlay_ip.is_unspecified()
            || spec.underlay_ip.is_multicast()
        {
            return bad(format!(
                "underlay address {} is not a remote node's",
                spec.underlay_ip
            ));
        }
        if let Some(mac) = spec
            .vtep_mac
            .filter(|m| m.0[0] & 1 == 1 || *m == Mac::default())
        {
            return bad(format!("VTEP MAC {mac} is not a unicast address"));
        }
        if self.route_to_ip(spec.underlay_ip, spec.vtep_mac.is_some()) == RouteKind::Unroutable {
            return bad(format!(
                "node {} has no VTEP and {} is not on this node's uplink subnet {}: it cannot be reached",
                spec.name, spec.underlay_ip, self.underlay
            ));
        }
        Ok(())
    }

    pub fn node_del(&mut self, name: &str) -> Result<bool> {
        if self.state.nodes.remove(name).is_none() {
            return Ok(false);
        }
        self.apply_nodes()?;
        self.save()?;
        info!(node = %name, "remote node removed");
        Ok(true)
    }

    /// Replaces the nodes learnt from the cluster store (keyed by lease key).
    pub fn set_store_nodes(&mut self, nodes: BTreeMap<String, NodeRecord>) -> Result<()> {
        if nodes == self.state.store_nodes {
            return Ok(());
        }
        let cidrs =
            |m: &BTreeMap<String, NodeRecord>| m.values().map(|n| n.pod_cidr).collect::<Vec<_>>();
        let moved = cidrs(&nodes) != cidrs(&self.state.store_nodes);
        self.state.store_nodes = nodes;
        if let Err(e) = self.apply_nodes() {
            // Forget the listing so that the next one is applied again.
            self.state.store_nodes.clear();
            return Err(e);
        }
        if moved && !self.state.store_pods.is_empty() {
            // Pods of nodes that came or went count, or stop counting, for policy.
            self.apply_policy()?;
        }
        self.save()
    }

    /// Whether a store node may go into the map: not this node, not clashing with a
    /// static node or with an earlier store node.
    fn admissible(&self, n: &NodeRecord, wanted: &BTreeMap<Ipv4Net, RemoteNode>) -> bool {
        n.underlay_ip != self.node_ip
            && !overlaps(n.pod_cidr, self.net.pod_cidr)
            && !clashes(wanted, n.pod_cidr)
    }

    /// How packets for `n` travel, by this node's backend, what `n` speaks and where
    /// it is.
    pub(super) fn route_to(&self, n: &NodeRecord) -> RouteKind {
        self.backend.route_to(n.underlay_ip, n.peer, self.underlay)
    }

    fn route_to_ip(&self, ip: std::net::Ipv4Addr, has_vtep: bool) -> RouteKind {
        let peer = if has_vtep {
            PeerType::Vxlan
        } else {
            PeerType::HostGw
        };
        self.backend.route_to(ip, peer, self.underlay)
    }

    /// The trie value for `n`, or none when it cannot be reached.
    fn trie_value(&self, n: &NodeRecord) -> Option<RemoteNode> {
        match self.route_to(n) {
            RouteKind::Vxlan => Some(vxlan_route(n.underlay_ip, n.vtep_mac)),
            RouteKind::Direct => {
                let mac = self.pinned.get(&n.underlay_ip).copied().unwrap_or_default();
                Some(direct_route(n.underlay_ip, n.vtep_mac, mac))
            }
            RouteKind::Unroutable => None,
        }
    }

    /// Makes the node trie hold exactly the static and store nodes.
    pub(super) fn apply_nodes(&mut self) -> Result<()> {
        let mut wanted = BTreeMap::new();
        for n in self.state.nodes.values() {
            let Some(v) = self.trie_value(n) else {
                continue;
            };
            for p in node_prefixes(n) {
                wanted.insert(p, v);
            }
        }
        for n in self.state.store_nodes.values() {
            if !self.admissible(n, &wanted) {
                warn!(subnet = %n.pod_cidr, underlay = %n.underlay_ip, "lease clashes with this node or another: not routed");
                continue;
            }
            let Some(v) = self.trie_value(n) else {
                if self.unroutable_reported.insert(n.underlay_ip) {
                    warn!(subnet = %n.pod_cidr, underlay = %n.underlay_ip, uplink_subnet = %self.underlay,
                        "node is reachable only directly (host-gw) and is not on this uplink's subnet: not routed");
                }
                continue;
            };
            for p in node_prefixes(n) {
                wanted.entry(p).or_insert(v);
            }
        }
        let gone: Vec<Ipv4Net> = self
            .applied
            .keys()
            .filter(|p| !wanted.contains_key(p))
            .copied()
            .collect();
        for p in gone {
            self.maps.nodes.remove(p)?;
            self.applied.remove(&p);
        }
        for (p, v) in wanted {
            if self.applied.get(&p) != Some(&v) {
                self.maps.nodes.set(p, v)?;
                self.applied.insert(p, v);
            }
        }
        Ok(())
    }

    fn node_info(&self, rec: &NodeRecord, source: &str) -> NodeInfo {
        let route = self.route_to(rec);
        NodeInfo {
            spec: NodeSpec {
                name: rec.name.clone(),
                pod_cidr: rec.pod_cidr,
                underlay_ip: rec.underlay_ip,
                vtep_mac: (rec.peer == PeerType::Vxlan).then_some(rec.vtep_mac),
            },
            source: source.into(),
            expires: rec.expires,
            route,
            underlay_mac: (route == RouteKind::Direct)
                .then(|| self.pinned.get(&rec.underlay_ip).copied())
                .flatten(),
            // Read back from the kernel, not from what the agent believes it wrote.
            in_map: self.trie_value(rec).is_some()
                && self.maps.nodes.get(rec.pod_cidr) == self.trie_value(rec),
        }
    }

    pub fn node_list(&self) -> Vec<NodeInfo> {
        let statics = self
            .state
            .nodes
            .values()
            .map(|n| self.node_info(n, "static"));
        let stored = self
            .state
            .store_nodes
            .values()
            .map(|n| self.node_info(n, "store"));
        statics.chain(stored).collect()
    }
}

impl Agent {
    /// The host's own traffic to remote pods and to services: the cluster CIDR and the
    /// service CIDR go into the bridge via a next hop that resolves to this node's VTEP
    /// MAC, where `from_host` picks them up; with the pods' MTU beyond the node (the
    /// bridge has the uplink's, for the node's own pods).
    pub(super) async fn route_cluster_via_overlay(&mut self) -> Result<()> {
        let next_hop = self.net.cluster_cidr.network();
        netlink::replace_neighbour(&self.nl, self.bridge.index, next_hop, self.state.vtep_mac)
            .await?;
        for net in std::iter::once(self.net.cluster_cidr).chain(self.service_cidr) {
            netlink::replace_onlink_route(
                &self.nl,
                net,
                next_hop,
                self.bridge.index,
                self.net.gateway(),
                self.pod_mtu().route,
            )
            .await?;
        }
        Ok(())
    }
}

/// The prefixes a remote node owns in the trie: its pod CIDR and its underlay address.
pub(super) fn node_prefixes(n: &NodeRecord) -> [Ipv4Net; 2] {
    [
        n.pod_cidr,
        Ipv4Net::new(n.underlay_ip, 32).expect("/32 is valid"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clashes_finds_overlaps_in_both_directions_and_ignores_host_routes() {
        let mut m: BTreeMap<Ipv4Net, ()> = BTreeMap::new();
        for p in ["10.244.1.0/24", "10.244.8.0/22", "10.244.3.7/32"] {
            m.insert(p.parse().unwrap(), ());
        }
        let c = |s: &str| clashes(&m, s.parse().unwrap());
        assert!(c("10.244.1.0/24"), "the same subnet");
        assert!(c("10.244.9.0/24"), "inside a /22");
        assert!(c("10.244.0.0/16"), "around a /24");
        assert!(!c("10.244.2.0/24"), "a neighbour");
        assert!(
            !c("10.244.3.0/24"),
            "a /32 underlay route is not a pod CIDR"
        );
    }
}
