//! Remote nodes in the overlay map.

use tracing::info;

use super::{Agent, AgentError, Result};
use crate::{
    api::{NodeInfo, NodeSpec},
    mac::Mac,
    state::NodeRecord,
};

impl Agent {
    pub fn node_add(&mut self, spec: NodeSpec) -> Result<NodeInfo> {
        self.validate_node(&spec)?;
        let rec = NodeRecord {
            name: spec.name.clone(),
            pod_cidr: spec.pod_cidr,
            underlay_ip: spec.underlay_ip,
            vtep_mac: spec.vtep_mac,
        };
        if let Some(old) = self.state.nodes.insert(spec.name.clone(), rec.clone()) {
            for net in node_prefixes(&old) {
                self.maps.nodes.remove(net)?;
            }
        }
        for net in node_prefixes(&rec) {
            self.maps.nodes.insert(net, rec.underlay_ip, rec.vtep_mac)?;
        }
        self.save()?;
        info!(node = %spec.name, pod_cidr = %spec.pod_cidr, underlay = %spec.underlay_ip, "remote node set");
        Ok(self.node_info(&rec))
    }

    fn validate_node(&self, spec: &NodeSpec) -> Result<()> {
        let bad = |m: String| Err(AgentError::BadNode(m));
        if spec.name.is_empty() || spec.name == self.cfg.node_name {
            return bad(format!("name {:?} is empty or this node's own", spec.name));
        }
        if spec.pod_cidr.network() != spec.pod_cidr.addr() {
            return bad(format!("pod CIDR {} has host bits set", spec.pod_cidr));
        }
        if !self.cfg.cluster_cidr.contains(&spec.pod_cidr) {
            return bad(format!(
                "pod CIDR {} is outside the cluster CIDR {}",
                spec.pod_cidr, self.cfg.cluster_cidr
            ));
        }
        let overlaps = |a: ipnet::Ipv4Net, b: ipnet::Ipv4Net| a.contains(&b) || b.contains(&a);
        if overlaps(spec.pod_cidr, self.cfg.pod_cidr) {
            return bad(format!(
                "pod CIDR {} overlaps this node's {}",
                spec.pod_cidr, self.cfg.pod_cidr
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
        if spec.vtep_mac.0[0] & 1 == 1 || spec.vtep_mac == Mac::default() {
            return bad(format!(
                "VTEP MAC {} is not a unicast address",
                spec.vtep_mac
            ));
        }
        Ok(())
    }

    pub fn node_del(&mut self, name: &str) -> Result<bool> {
        let Some(rec) = self.state.nodes.remove(name) else {
            return Ok(false);
        };
        for net in node_prefixes(&rec) {
            self.maps.nodes.remove(net)?;
        }
        self.save()?;
        info!(node = %name, "remote node removed");
        Ok(true)
    }

    fn node_info(&self, rec: &NodeRecord) -> NodeInfo {
        let entries = self.maps.nodes.entries();
        let in_map = entries.iter().any(|(net, ip, mac)| {
            *net == rec.pod_cidr && *ip == rec.underlay_ip && *mac == rec.vtep_mac
        });
        NodeInfo {
            spec: NodeSpec {
                name: rec.name.clone(),
                pod_cidr: rec.pod_cidr,
                underlay_ip: rec.underlay_ip,
                vtep_mac: rec.vtep_mac,
            },
            source: "static".into(),
            in_map,
        }
    }

    pub fn node_list(&self) -> Vec<NodeInfo> {
        self.state
            .nodes
            .values()
            .map(|n| self.node_info(n))
            .collect()
    }
}

/// The prefixes a remote node owns in the trie: its pod CIDR and its underlay address.
pub(super) fn node_prefixes(n: &NodeRecord) -> [ipnet::Ipv4Net; 2] {
    [
        n.pod_cidr,
        ipnet::Ipv4Net::new(n.underlay_ip, 32).expect("/32 is valid"),
    ]
}
