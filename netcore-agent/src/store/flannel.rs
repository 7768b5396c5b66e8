//! flannel's key layout and JSON, so that netcore and flannel nodes share one store:
//! `<prefix>/config` holds the network, `<prefix>/subnets/<a.b.c.d>-<len>` one lease
//! per node.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::{backend::Backend as NodeBackend, backend::PeerType, mac::Mac};

pub const DEFAULT_PREFIX: &str = "/coreos.com/network";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("network config is not valid JSON: {0}")]
    ConfigJson(String),
    #[error("network config: {0}")]
    ConfigInvalid(String),
    #[error("lease {key}: value is not a flannel lease: {reason}")]
    LeaseValue { key: String, reason: String },
    #[error("lease key {0} is not <prefix>/subnets/<a.b.c.d>-<len>")]
    LeaseKey(String),
}

/// The network config's `Backend`, as flannel writes it; keys netcore does not know
/// are kept (in `other`) so that they can be named, never silently dropped.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Backend {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "VNI", default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_routing: Option<bool>,
    #[serde(flatten)]
    pub other: std::collections::BTreeMap<String, serde_json::Value>,
}

/// `<prefix>/config`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkConfig {
    pub network: Ipv4Net,
    #[serde(default = "default_subnet_len")]
    pub subnet_len: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_min: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_max: Option<Ipv4Addr>,
    pub backend: Backend,
}

fn default_subnet_len() -> u8 {
    24
}

impl NetworkConfig {
    /// A new cluster's config from a node's own settings.
    pub fn new(
        network: Ipv4Net,
        subnet_len: u8,
        backend: &NodeBackend,
        vni: u32,
        port: u16,
    ) -> Self {
        let backend = match backend {
            NodeBackend::HostGw => Backend {
                kind: "host-gw".into(),
                vni: None,
                port: None,
                direct_routing: None,
                other: Default::default(),
            },
            NodeBackend::Vxlan { direct_routing } => Backend {
                kind: "vxlan".into(),
                vni: Some(vni),
                port: Some(port),
                direct_routing: direct_routing.then_some(true),
                other: Default::default(),
            },
        };
        NetworkConfig {
            network,
            subnet_len,
            subnet_min: None,
            subnet_max: None,
            backend,
        }
    }

    /// The backend, and the keys of it netcore ignores.
    pub fn node_backend(&self) -> (NodeBackend, Vec<String>) {
        NodeBackend::from_flannel(&self.backend).expect("validated at parse")
    }

    pub fn parse(text: &str) -> Result<Self, LayoutError> {
        let cfg: NetworkConfig =
            serde_json::from_str(text).map_err(|e| LayoutError::ConfigJson(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), LayoutError> {
        let bad = |m: String| Err(LayoutError::ConfigInvalid(m));
        if self.network.prefix_len() < 8 || self.network.network() != self.network.addr() {
            return bad(format!(
                "Network {} must be a network address with a prefix of /8 or longer",
                self.network
            ));
        }
        if self.subnet_len < self.network.prefix_len()
            || self.subnet_len > 30
            || self.subnet_len - self.network.prefix_len() > 16
        {
            return bad(format!(
                "SubnetLen {} does not fit Network {}",
                self.subnet_len, self.network
            ));
        }
        if let Err(e) = NodeBackend::from_flannel(&self.backend) {
            return bad(e.to_string());
        }
        let step = 1u32 << (32 - self.subnet_len);
        for (what, bound) in [
            ("SubnetMin", self.subnet_min),
            ("SubnetMax", self.subnet_max),
        ] {
            if let Some(b) = bound {
                if u32::from(b) % step != 0 || !self.network.contains(&b) {
                    return bad(format!(
                        "{what} {b} is not a subnet address of {} with SubnetLen {}",
                        self.network, self.subnet_len
                    ));
                }
            }
        }
        let (lo, hi) = self.range();
        if lo > hi {
            return bad("SubnetMin is above SubnetMax".into());
        }
        Ok(())
    }

    /// First and last subnet network address that may be leased.
    fn range(&self) -> (u32, u32) {
        let step = 1u32 << (32 - self.subnet_len);
        let first = u32::from(self.network.network());
        let last = u32::from(self.network.broadcast()) - (step - 1);
        // flannel skips the first subnet by default (it holds the network address).
        let lo = self.subnet_min.map_or(first + step, u32::from).max(first);
        let hi = self.subnet_max.map_or(last, u32::from).min(last);
        (lo, hi)
    }

    /// Every subnet that may be leased, in order.
    pub fn subnets(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        let (lo, hi) = self.range();
        let step = 1u32 << (32 - self.subnet_len);
        (lo..=hi)
            .step_by(step as usize)
            .filter_map(move |a| Ipv4Net::new(Ipv4Addr::from(a), self.subnet_len).ok())
    }

    /// Whether `net` is a subnet this network can lease.
    pub fn admits(&self, net: Ipv4Net) -> bool {
        let (lo, hi) = self.range();
        let a = u32::from(net.network());
        net.prefix_len() == self.subnet_len
            && self.network.contains(&net)
            && (lo..=hi).contains(&a)
            && net.addr() == net.network()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct BackendData {
    #[serde(rename = "VNI")]
    pub vni: u32,
    #[serde(rename = "VtepMAC")]
    pub vtep_mac: Mac,
}

/// `<prefix>/subnets/<net>-<len>`: one node. A vxlan node carries its VTEP in
/// `BackendData`; a host-gw node has none (flannel omits the key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct LeaseValue {
    #[serde(rename = "PublicIP")]
    pub public_ip: Ipv4Addr,
    #[serde(default = "vxlan")]
    pub backend_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_data: Option<BackendData>,
}

fn vxlan() -> String {
    "vxlan".into()
}

impl LeaseValue {
    pub fn new(public_ip: Ipv4Addr, vni: u32, vtep_mac: Mac) -> Self {
        LeaseValue {
            public_ip,
            backend_type: vxlan(),
            backend_data: Some(BackendData { vni, vtep_mac }),
        }
    }

    /// This node's lease for `backend`.
    pub fn of(backend: NodeBackend, public_ip: Ipv4Addr, vni: u32, vtep_mac: Mac) -> Self {
        match backend {
            NodeBackend::HostGw => LeaseValue {
                public_ip,
                backend_type: "host-gw".into(),
                backend_data: None,
            },
            NodeBackend::Vxlan { .. } => LeaseValue::new(public_ip, vni, vtep_mac),
        }
    }

    pub fn parse(key: &str, text: &str) -> Result<Self, LayoutError> {
        let bad = |reason: String| LayoutError::LeaseValue {
            key: key.into(),
            reason,
        };
        let v: LeaseValue = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        match (v.backend_type.as_str(), &v.backend_data) {
            ("vxlan", Some(_)) | ("host-gw", _) => Ok(v),
            ("vxlan", None) => Err(bad("BackendType \"vxlan\" without BackendData".into())),
            (other, _) => Err(bad(format!(
                "BackendType {other:?} is not one netcore speaks"
            ))),
        }
    }

    /// What the node speaks, and its VTEP MAC if it has one.
    pub fn peer(&self) -> (PeerType, Option<Mac>) {
        match &self.backend_data {
            Some(d) if self.backend_type == "vxlan" => (PeerType::Vxlan, Some(d.vtep_mac)),
            _ => (PeerType::HostGw, None),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("lease serializes")
    }
}

pub fn config_key(prefix: &str) -> String {
    format!("{}/config", prefix.trim_end_matches('/'))
}

pub fn subnets_prefix(prefix: &str) -> String {
    format!("{}/subnets/", prefix.trim_end_matches('/'))
}

/// netcore's services live next to the leases: `<prefix>/services/<name>`.
pub fn services_prefix(prefix: &str) -> String {
    format!("{}/services/", prefix.trim_end_matches('/'))
}

pub fn service_key(prefix: &str, name: &str) -> String {
    format!("{}{name}", services_prefix(prefix))
}

/// Network policy state lives next to them too: `<prefix>/policies/<ns>/<name>`,
/// `<prefix>/namespaces/<ns>` (labels) and `<prefix>/pods/<ip>` (each node's pods).
pub fn policies_prefix(prefix: &str) -> String {
    format!("{}/policies/", prefix.trim_end_matches('/'))
}

pub fn namespaces_prefix(prefix: &str) -> String {
    format!("{}/namespaces/", prefix.trim_end_matches('/'))
}

pub fn pods_prefix(prefix: &str) -> String {
    format!("{}/pods/", prefix.trim_end_matches('/'))
}

pub fn subnet_key(prefix: &str, net: Ipv4Net) -> String {
    format!(
        "{}{}-{}",
        subnets_prefix(prefix),
        net.network(),
        net.prefix_len()
    )
}

pub fn parse_subnet_key(prefix: &str, key: &str) -> Result<Ipv4Net, LayoutError> {
    let bad = || LayoutError::LeaseKey(key.into());
    let name = key.strip_prefix(&subnets_prefix(prefix)).ok_or_else(bad)?;
    let (addr, len) = name.split_once('-').ok_or_else(bad)?;
    let net = Ipv4Net::new(
        addr.parse().map_err(|_| bad())?,
        len.parse().map_err(|_| bad())?,
    )
    .map_err(|_| bad())?;
    if net.addr() != net.network() {
        return Err(bad());
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_flannels_exact_format() {
        let text = r#"{"PublicIP":"192.168.50.11","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}}"#;
        let v = LeaseValue::parse("k", text).unwrap();
        assert_eq!(v.public_ip, Ipv4Addr::new(192, 168, 50, 11));
        assert_eq!(
            v.to_json(),
            text,
            "what netcore writes is byte for byte what flannel writes"
        );
        let cfg = NetworkConfig::parse(
            r#"{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#,
        )
        .unwrap();
        assert_eq!(
            cfg.subnets().next(),
            Some("10.244.1.0/24".parse().unwrap()),
            "the first subnet is skipped"
        );
        assert_eq!(cfg.subnets().count(), 255);
        let key = subnet_key(DEFAULT_PREFIX, "10.244.7.0/24".parse().unwrap());
        assert_eq!(key, "/coreos.com/network/subnets/10.244.7.0-24");
        assert_eq!(
            parse_subnet_key(DEFAULT_PREFIX, &key).unwrap(),
            "10.244.7.0/24".parse().unwrap()
        );
    }

    #[test]
    fn bad_configs_and_leases_are_reported() {
        for (text, want) in [
            ("{not json", "not valid JSON"),
            (
                r#"{"Network":"10.244.0.0/16","SubnetLen":8,"Backend":{"Type":"vxlan"}}"#,
                "does not fit",
            ),
            (
                r#"{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"udp"}}"#,
                "is not implemented by netcore",
            ),
            (
                r#"{"Network":"0.0.0.0/0","SubnetLen":0,"Backend":{"Type":"vxlan"}}"#,
                "/8 or longer",
            ),
            (
                r#"{"Network":"10.0.0.0/8","SubnetLen":30,"Backend":{"Type":"vxlan"}}"#,
                "does not fit",
            ),
            (
                r#"{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.1.7","Backend":{"Type":"vxlan"}}"#,
                "not a subnet address",
            ),
            (
                r#"{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.9.0","SubnetMax":"10.244.2.0","Backend":{"Type":"vxlan"}}"#,
                "above",
            ),
        ] {
            let err = NetworkConfig::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: expected {want:?} in {err:?}");
        }
        assert!(LeaseValue::parse("k", r#"{"PublicIP":"x"}"#).is_err());
        assert!(LeaseValue::parse(
            "k",
            r#"{"PublicIP":"1.2.3.4","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"zz"}}"#
        )
        .is_err());
        for key in [
            "/coreos.com/network/subnets/10.244.1.5-24",
            "/coreos.com/network/subnets/x-24",
            "/other/10.244.1.0-24",
        ] {
            assert!(
                parse_subnet_key(DEFAULT_PREFIX, key).is_err(),
                "{key} must be refused"
            );
        }
    }
}
