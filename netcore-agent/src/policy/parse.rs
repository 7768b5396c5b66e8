//! From YAML or JSON text (one or several documents, or a `List`) to validated
//! policies: everything the API server would refuse is refused here, with where.

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use super::{
    ports::{check_port_name, protocol_number},
    selector::{check_dns_label, check_dns_subdomain},
    types::{IntOrString, LabelSelector, NetworkPolicy, Peer, Port},
    PolicyError,
};

/// A NetworkPolicy, checked and in the form the compiler uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    pub pod_selector: LabelSelector,
    /// `Some` when the policy isolates for ingress (its rules; none: deny all).
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
    /// The object as given (namespace filled in), for the store and `policy list`.
    pub object: NetworkPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// `None`: from (or to) anyone.
    pub peers: Option<Vec<PeerSpec>>,
    /// `None`: any protocol and port.
    pub ports: Option<Vec<PortSpec>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerSpec {
    /// Pods matching `pods` (all, if `None`) in the namespaces matching `namespaces`
    /// (the policy's own, if `None`).
    Pods {
        pods: Option<LabelSelector>,
        namespaces: Option<LabelSelector>,
    },
    /// IPv4 addresses in `cidr` and in none of `except`.
    Block { cidr: Ipv4Net, except: Vec<Ipv4Net> },
    /// An IPv6 block: valid, and matches nothing on this IPv4 network.
    NoAddresses,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub proto: u8,
    pub ports: PortMatch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PortMatch {
    /// Every port of the protocol.
    Any,
    /// First and last port.
    Range(u16, u16),
    /// A named port: the number the destination pod gives the name for the protocol.
    Named(String),
}

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const SCTP: u8 = 132;

impl Policy {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Every NetworkPolicy in `text`; nothing if any is invalid.
pub fn parse_documents(text: &str) -> Result<Vec<Policy>, PolicyError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let at = |e: String| PolicyError::Invalid(format!("document {}: {e}", i + 1));
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| at(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        let items = if kind == "List" || kind == "NetworkPolicyList" {
            let items = value.get("items").and_then(|i| i.as_sequence()).cloned();
            items.ok_or_else(|| at(format!("a {kind} needs items")))?
        } else {
            vec![value]
        };
        for item in items {
            let np: NetworkPolicy = serde_yaml::from_value(item).map_err(|e| at(e.to_string()))?;
            let who = format!(
                "{}/{}",
                np.metadata.namespace.as_deref().unwrap_or("default"),
                np.metadata.name
            );
            out.push(validate(np).map_err(|e| at(format!("NetworkPolicy {who}: {e}")))?);
        }
    }
    if out.is_empty() {
        return Err(PolicyError::Invalid("no NetworkPolicy in the input".into()));
    }
    Ok(out)
}

/// Checks one object the way the API server validates it, and compiles its rules.
pub fn validate(mut np: NetworkPolicy) -> Result<Policy, PolicyError> {
    let bad = |s: String| PolicyError::Invalid(s);
    if np.api_version != "networking.k8s.io/v1" || np.kind != "NetworkPolicy" {
        return Err(bad(format!(
            "apiVersion {:?} kind {:?}: only networking.k8s.io/v1 NetworkPolicy is understood",
            np.api_version, np.kind
        )));
    }
    check_dns_subdomain(&np.metadata.name).map_err(|e| bad(format!("metadata.name: {e}")))?;
    let namespace = np
        .metadata
        .namespace
        .get_or_insert_with(|| "default".into())
        .clone();
    check_dns_label(&namespace).map_err(|e| bad(format!("metadata.namespace: {e}")))?;
    let spec = &np.spec;
    spec.pod_selector.validate("spec.podSelector")?;
    let (ingress_type, egress_type) = policy_types(
        spec.policy_types.as_deref(),
        spec.egress.is_some_and_nonempty(),
    )?;
    let ingress = spec.ingress.iter().flatten().enumerate().map(|(i, r)| {
        rule(
            r.from.as_deref(),
            r.ports.as_deref(),
            &format!("spec.ingress[{i}]"),
            "from",
        )
    });
    let ingress: Vec<Rule> = ingress.collect::<Result<_, _>>()?;
    let egress = spec.egress.iter().flatten().enumerate().map(|(i, r)| {
        rule(
            r.to.as_deref(),
            r.ports.as_deref(),
            &format!("spec.egress[{i}]"),
            "to",
        )
    });
    let egress: Vec<Rule> = egress.collect::<Result<_, _>>()?;
    Ok(Policy {
        name: np.metadata.name.clone(),
        namespace,
        pod_selector: spec.pod_selector.clone(),
        ingress: ingress_type.then_some(ingress),
        egress: egress_type.then_some(egress),
        object: np,
    })
}

trait NonEmpty {
    fn is_some_and_nonempty(&self) -> bool;
}

impl<T> NonEmpty for Option<Vec<T>> {
    fn is_some_and_nonempty(&self) -> bool {
        self.as_ref().is_some_and(|v| !v.is_empty())
    }
}

/// Which directions the policy isolates: as listed, or by default Ingress, plus
/// Egress when it has egress rules.
fn policy_types(types: Option<&[String]>, has_egress: bool) -> Result<(bool, bool), PolicyError> {
    let Some(types) = types else {
        return Ok((true, has_egress));
    };
    if types.len() > 2 {
        return Err(PolicyError::Invalid(
            "spec.policyTypes: at most 2 entries".into(),
        ));
    }
    let (mut ingress, mut egress) = (false, false);
    for t in types {
        let seen = match t.as_str() {
            "Ingress" => std::mem::replace(&mut ingress, true),
            "Egress" => std::mem::replace(&mut egress, true),
            other => {
                return Err(PolicyError::Invalid(format!(
                    "spec.policyTypes: {other:?} is not Ingress or Egress"
                )))
            }
        };
        if seen {
            return Err(PolicyError::Invalid(format!(
                "spec.policyTypes: {t} listed twice"
            )));
        }
    }
    Ok((ingress, egress))
}

fn rule(
    peers: Option<&[Peer]>,
    ports: Option<&[Port]>,
    at: &str,
    field: &str,
) -> Result<Rule, PolicyError> {
    let peers = match peers {
        None | Some([]) => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, p)| peer(p, &format!("{at}.{field}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let ports = match ports {
        None | Some([]) => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, p)| port(p, &format!("{at}.ports[{i}]")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(Rule { peers, ports })
}

fn peer(p: &Peer, at: &str) -> Result<PeerSpec, PolicyError> {
    let bad = |s: &str| PolicyError::Invalid(format!("{at}: {s}"));
    match (&p.pod_selector, &p.namespace_selector, &p.ip_block) {
        (None, None, None) => Err(bad(
            "must specify a podSelector, a namespaceSelector or an ipBlock",
        )),
        (_, _, Some(_)) if p.pod_selector.is_some() || p.namespace_selector.is_some() => Err(bad(
            "an ipBlock may not be combined with a podSelector or namespaceSelector",
        )),
        (_, _, Some(b)) => block(&b.cidr, b.except.as_deref().unwrap_or_default(), at),
        (pods, namespaces, None) => {
            if let Some(s) = pods {
                s.validate(&format!("{at}.podSelector"))?;
            }
            if let Some(s) = namespaces {
                s.validate(&format!("{at}.namespaceSelector"))?;
            }
            Ok(PeerSpec::Pods {
                pods: pods.clone(),
                namespaces: namespaces.clone(),
            })
        }
    }
}

fn block(cidr: &str, except: &[String], at: &str) -> Result<PeerSpec, PolicyError> {
    let bad = |s: String| PolicyError::Invalid(format!("{at}.ipBlock: {s}"));
    let parse = |s: &str| -> Result<IpNet, PolicyError> {
        let net: IpNet = s.parse().map_err(|_| bad(format!("{s:?} is not a CIDR")))?;
        // Host bits are masked, as Kubernetes does.
        Ok(net.trunc())
    };
    let net = parse(cidr)?;
    let mut out = Vec::new();
    for e in except {
        let x = parse(e)?;
        let inside = match (net, x) {
            (IpNet::V4(n), IpNet::V4(x)) => n.contains(&x) && x.prefix_len() > n.prefix_len(),
            (IpNet::V6(n), IpNet::V6(x)) => n.contains(&x) && x.prefix_len() > n.prefix_len(),
            _ => false,
        };
        if !inside {
            return Err(bad(format!(
                "except {e} must be a strict subset of cidr {cidr}"
            )));
        }
        if let IpNet::V4(x) = x {
            out.push(x);
        }
    }
    Ok(match net {
        IpNet::V4(cidr) => PeerSpec::Block { cidr, except: out },
        IpNet::V6(_) => PeerSpec::NoAddresses,
    })
}

fn port(p: &Port, at: &str) -> Result<PortSpec, PolicyError> {
    let bad = |s: String| PolicyError::Invalid(format!("{at}: {s}"));
    let protocol = p.protocol.as_deref().unwrap_or("TCP");
    let proto = protocol_number(protocol)
        .ok_or_else(|| bad(format!("protocol {protocol:?} is not TCP, UDP or SCTP")))?;
    let in_range = |n: i64, what: &str| {
        u16::try_from(n)
            .ok()
            .filter(|&n| n != 0)
            .ok_or_else(|| bad(format!("{what} {n} is not between 1 and 65535")))
    };
    let ports = match (&p.port, p.end_port) {
        (None, None) => PortMatch::Any,
        (None, Some(_)) => return Err(bad("endPort needs a numeric port".into())),
        (Some(IntOrString::String(_)), Some(_)) => {
            return Err(bad("endPort may not be given with a named port".into()))
        }
        (Some(IntOrString::String(name)), None) => {
            check_port_name(name).map_err(|e| bad(e.to_string()))?;
            PortMatch::Named(name.clone())
        }
        (Some(IntOrString::Int(n)), end) => {
            let first = in_range(*n, "port")?;
            let last = match end {
                Some(e) => in_range(e, "endPort")?,
                None => first,
            };
            if last < first {
                return Err(bad(format!("endPort {last} is below port {first}")));
            }
            PortMatch::Range(first, last)
        }
    };
    Ok(PortSpec { proto, ports })
}
