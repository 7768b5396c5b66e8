//! How this node reaches the others, as flannel's network config says it (`Backend`):
//! VXLAN, VXLAN with `DirectRouting`, or host-gw. Each peer then gets a route kind:
//! direct (the pod packet unchanged, the peer as next hop), VXLAN, or none.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::store::flannel;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    #[error("Backend.Type {0:?} is not implemented by netcore (it speaks \"vxlan\", with or without DirectRouting, and \"host-gw\")")]
    Unsupported(String),
    #[error("Backend.{key} {value} is not valid: {why}")]
    Invalid {
        key: &'static str,
        value: String,
        why: &'static str,
    },
}

/// The node's backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Every peer over VXLAN, or (DirectRouting) directly where it shares the uplink's
    /// subnet.
    Vxlan { direct_routing: bool },
    /// Every peer directly; a peer on another subnet cannot be reached.
    HostGw,
}

/// What a peer's lease says it speaks (`BackendType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PeerType {
    #[default]
    Vxlan,
    /// A host-gw node: no VTEP, reachable only directly.
    HostGw,
}

/// How packets for one peer travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    Vxlan,
    Direct,
    /// Neither works (a host-gw peer on another subnet): reported, not routed.
    Unroutable,
}

impl Backend {
    pub const fn vxlan() -> Self {
        Backend::Vxlan {
            direct_routing: false,
        }
    }

    /// From flannel's `Backend` object. A type netcore does not implement is refused;
    /// the keys it ignores are returned, to be warned about by name.
    pub fn from_flannel(b: &flannel::Backend) -> Result<(Self, Vec<String>), BackendError> {
        let mut ignored: Vec<String> = b.other.keys().cloned().collect();
        let backend = match b.kind.as_str() {
            "vxlan" => Backend::Vxlan {
                direct_routing: b.direct_routing.unwrap_or(false),
            },
            "host-gw" => {
                for (key, set) in [
                    ("VNI", b.vni.is_some()),
                    ("Port", b.port.is_some()),
                    ("DirectRouting", b.direct_routing.is_some()),
                ] {
                    if set {
                        ignored.push(key.into());
                    }
                }
                Backend::HostGw
            }
            other => return Err(BackendError::Unsupported(other.into())),
        };
        if b.vni.is_some_and(|v| v == 0 || v >= 1 << 24) {
            return Err(BackendError::Invalid {
                key: "VNI",
                value: format!("{:?}", b.vni),
                why: "must be between 1 and 16777215",
            });
        }
        if b.port == Some(0) {
            return Err(BackendError::Invalid {
                key: "Port",
                value: "0".into(),
                why: "must not be 0",
            });
        }
        ignored.sort();
        Ok((backend, ignored))
    }

    /// Back from `name()` (as the state dir keeps it).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "host-gw" => Some(Backend::HostGw),
            "vxlan" => Some(Backend::vxlan()),
            "vxlan+directrouting" => Some(Backend::Vxlan {
                direct_routing: true,
            }),
            _ => None,
        }
    }

    /// The `BackendType` of this node's lease (flannel's).
    pub fn lease_type(self) -> &'static str {
        match self {
            Backend::HostGw => "host-gw",
            _ => "vxlan",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::HostGw => "host-gw",
            Backend::Vxlan {
                direct_routing: true,
            } => "vxlan+directrouting",
            _ => "vxlan",
        }
    }

    /// The route to a peer at `peer_ip` that speaks `peer`, from a node whose uplink
    /// is on `uplink_net`.
    pub fn route_to(self, peer_ip: Ipv4Addr, peer: PeerType, uplink_net: Ipv4Net) -> RouteKind {
        let same_segment = uplink_net.contains(&peer_ip);
        match (self, peer) {
            (_, PeerType::HostGw) | (Backend::HostGw, _) if same_segment => RouteKind::Direct,
            (_, PeerType::HostGw) | (Backend::HostGw, _) => RouteKind::Unroutable,
            (Backend::Vxlan { direct_routing }, PeerType::Vxlan)
                if direct_routing && same_segment =>
            {
                RouteKind::Direct
            }
            _ => RouteKind::Vxlan,
        }
    }

    /// Pods' MTU: the uplink's where nothing is encapsulated, else 50 bytes less (as
    /// flannel's VXLAN backend, DirectRouting included).
    pub fn pod_mtu(self, uplink_mtu: u32) -> u32 {
        match self {
            Backend::HostGw => uplink_mtu,
            _ => uplink_mtu - netcore_common::wire::VXLAN_OVERHEAD as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(json: &str) -> Result<(Backend, Vec<String>), BackendError> {
        let b: flannel::Backend = serde_json::from_str(json).unwrap();
        Backend::from_flannel(&b)
    }

    #[test]
    fn flannels_backends_are_read_and_the_rest_is_named() {
        assert_eq!(
            backend(r#"{"Type":"vxlan","DirectRouting":true}"#).unwrap(),
            (
                Backend::Vxlan {
                    direct_routing: true
                },
                vec![]
            )
        );
        assert_eq!(
            backend(r#"{"Type":"host-gw"}"#).unwrap(),
            (Backend::HostGw, vec![])
        );
        assert_eq!(
            backend(r#"{"Type":"vxlan","GBP":true,"MacPrefix":"0e:00"}"#)
                .unwrap()
                .1,
            vec!["GBP".to_string(), "MacPrefix".into()],
            "keys netcore does not implement are named, not dropped"
        );
        assert_eq!(
            backend(r#"{"Type":"host-gw","VNI":4}"#).unwrap().1,
            vec!["VNI".to_string()]
        );
        let err = backend(r#"{"Type":"wireguard"}"#).unwrap_err().to_string();
        assert!(
            err.contains("\"wireguard\"") && err.contains("not implemented"),
            "{err}"
        );
        assert!(backend(r#"{"Type":"vxlan","VNI":0}"#).is_err());
    }

    #[test]
    fn routes_follow_flannels_rules() {
        let net: Ipv4Net = "192.168.50.0/24".parse().unwrap();
        let near = Ipv4Addr::new(192, 168, 50, 12);
        let far = Ipv4Addr::new(192, 168, 60, 12);
        let dr = Backend::Vxlan {
            direct_routing: true,
        };
        let cases = [
            (Backend::vxlan(), near, PeerType::Vxlan, RouteKind::Vxlan),
            (dr, near, PeerType::Vxlan, RouteKind::Direct),
            (dr, far, PeerType::Vxlan, RouteKind::Vxlan),
            (Backend::HostGw, near, PeerType::Vxlan, RouteKind::Direct),
            (
                Backend::HostGw,
                far,
                PeerType::HostGw,
                RouteKind::Unroutable,
            ),
            (Backend::vxlan(), near, PeerType::HostGw, RouteKind::Direct),
            (
                Backend::vxlan(),
                far,
                PeerType::HostGw,
                RouteKind::Unroutable,
            ),
        ];
        for (b, ip, peer, want) in cases {
            assert_eq!(b.route_to(ip, peer, net), want, "{b:?} to {ip} ({peer:?})");
        }
        assert_eq!(Backend::HostGw.pod_mtu(1500), 1500);
        assert_eq!(dr.pod_mtu(1500), 1450);
    }
}
