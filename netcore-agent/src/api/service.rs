//! Service types of the API (and of the cluster store's `services/` keys).

use std::{fmt, net::Ipv4Addr, str::FromStr};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// An address and port, written `IP:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not IP:PORT (an IPv4 address and a port), e.g. 10.244.1.5:8080")]
pub struct BadEndpoint(String);

impl FromStr for Endpoint {
    type Err = BadEndpoint;
    fn from_str(s: &str) -> Result<Self, BadEndpoint> {
        let bad = || BadEndpoint(s.into());
        let (ip, port) = s.rsplit_once(':').ok_or_else(bad)?;
        Ok(Endpoint {
            ip: ip.parse().map_err(|_| bad())?,
            port: port.parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// `IP:PORT/PROTO`, the `--vip` of `netcore service add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frontend {
    pub vip: Endpoint,
    pub proto: Proto,
}

impl FromStr for Frontend {
    type Err = BadEndpoint;
    fn from_str(s: &str) -> Result<Self, BadEndpoint> {
        let (ep, proto) = s.rsplit_once('/').unwrap_or((s, "tcp"));
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => return Err(BadEndpoint(s.into())),
        };
        Ok(Frontend {
            vip: ep.parse()?,
            proto,
        })
    }
}

/// A service as asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    pub vip: Endpoint,
    pub proto: Proto,
    pub backends: Vec<Endpoint>,
    /// Also reachable on this port of every node's uplink address.
    #[serde(default)]
    pub node_port: Option<u16>,
    /// NodePort: keep the client's address when the backend is on the receiving node.
    #[serde(default)]
    pub keep_source: bool,
    /// Session affinity (Kubernetes' ClientIP): seconds a client's new connections
    /// keep going to the backend its last one got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_seconds: Option<u32>,
}

/// Kubernetes' default and largest ClientIP affinity timeouts.
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10800;
pub const MAX_AFFINITY_SECONDS: u32 = 86400;

/// A service as installed, with its counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    #[serde(flatten)]
    pub spec: ServiceSpec,
    pub id: u32,
    pub packets: u64,
    pub bytes: u64,
    pub connections: u64,
    pub rejected: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_frontends_and_refuses_garbage() {
        let f: Frontend = "10.96.0.10:53/udp".parse().unwrap();
        assert_eq!(
            (f.vip.to_string(), f.proto),
            ("10.96.0.10:53".into(), Proto::Udp)
        );
        assert_eq!(
            "10.96.0.1:80".parse::<Frontend>().unwrap().proto,
            Proto::Tcp
        );
        for bad in [
            "10.96.0.1",
            "10.96.0.1:80/sctp",
            "web:80",
            "10.96.0.1:99999",
            "1.2.3:80",
        ] {
            assert!(bad.parse::<Frontend>().is_err(), "{bad:?} must be refused");
        }
    }
}
