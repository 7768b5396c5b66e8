//! From policies, pods and namespaces to what the maps hold (netcore_common::policy):
//! peer classes by address, policy sets for the local pods, and the allowed
//! (set, class, protocol, port prefix) entries.
//!
//! A peer class is what an address is to every rule at once: a pod's namespace and
//! labels, and the ipBlocks it lies in. An address whose longest prefix in the class
//! map is P lies in block B exactly when P is inside B's CIDR and inside none of its
//! exceptions (both are prefixes of the map, so nothing longer cuts P), so every
//! prefix gets one class. Ids stay stable across compiles (`Ids`), so that a change
//! rewrites only what it changes.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use ipnet::Ipv4Net;
use netcore_common::policy::{PolicyKey, CLASS_WORLD, POLICY_PREFIX_ANY, POLICY_PREFIX_PROTO};
use serde::{Deserialize, Serialize};

use super::{
    parse::{PeerSpec, Policy, PortMatch, PortSpec, Rule},
    ports::{resolve, ContainerPort},
    selector::{Labels, NAMESPACE_NAME_LABEL},
};

/// A pod as policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodIdentity {
    pub ip: Ipv4Addr,
    pub namespace: String,
    #[serde(default)]
    pub labels: Labels,
    /// Its named ports (what a policy's `port: "http"` resolves against).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Policy {
    /// The policy's rules for `dir`; `None` when it does not isolate that direction.
    fn rules(&self, dir: Direction) -> Option<&[Rule]> {
        match dir {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }
}

type Block = (Ipv4Net, Vec<Ipv4Net>);

/// What a class stands for: a pod identity, if any, and the blocks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct ClassKey {
    pod: Option<PodClass>,
    blocks: BTreeSet<Block>,
}

/// The pods of one namespace, labels and named ports. (State written before named
/// ports has `[namespace, labels]` here, which reads as a pod without ports.)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct PodClass {
    namespace: String,
    labels: Labels,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ports: Vec<ContainerPort>,
}

impl PodClass {
    fn of(pod: &PodIdentity) -> Self {
        PodClass {
            namespace: pod.namespace.clone(),
            labels: pod.labels.clone(),
            ports: pod.ports.clone(),
        }
    }
}

/// Class and set ids, kept from compile to compile (and across restarts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ids {
    #[serde(with = "pairs")]
    classes: BTreeMap<ClassKey, u32>,
    #[serde(with = "pairs")]
    sets: BTreeMap<SetInfo, u32>,
    next_class: u32,
    next_set: u32,
}

impl Ids {
    fn class(&mut self, key: ClassKey, used: &mut BTreeMap<u32, ClassKey>) -> u32 {
        if key.pod.is_none() && key.blocks.is_empty() {
            return CLASS_WORLD;
        }
        let id = match self.classes.get(&key) {
            Some(id) => *id,
            None => {
                // Classes from CLASS_WORLD + 1 on (CLASS_WORLD is 0, the counter starts there).
                self.next_class += 1;
                self.classes.insert(key.clone(), self.next_class);
                self.next_class
            }
        };
        used.insert(id, key);
        id
    }

    fn set(&mut self, key: SetInfo) -> u32 {
        if let Some(id) = self.sets.get(&key) {
            return *id;
        }
        self.next_set += 1;
        self.sets.insert(key, self.next_set);
        self.next_set
    }

    /// Forgets ids nothing uses any more (they are never handed out again).
    fn retain(&mut self, classes: &BTreeMap<u32, ClassKey>, sets: &BTreeMap<u32, SetInfo>) {
        self.classes.retain(|_, id| classes.contains_key(id));
        self.sets.retain(|_, id| sets.contains_key(id));
    }
}

/// A map with structured keys as a list of pairs (JSON keys are strings).
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        m: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// A policy set, and what its id stands for: the policies that select a pod in one
/// direction and, for ingress sets whose rules name ports, the pod's named ports (pods
/// that number a name differently need different entries). State written before
/// named ports has `[direction, policies]` as a set's key, which reads as a set
/// without ports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SetInfo {
    pub direction: Direction,
    pub policies: Vec<String>,
    /// The named ports ingress rules resolve against (the selected pod's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
}

pub struct Inputs<'a> {
    /// Every pod known cluster-wide, this node's included.
    pub pods: &'a [PodIdentity],
    /// This node's pods.
    pub local: &'a [Ipv4Addr],
    /// Namespaces' labels (each also carries its name label).
    pub namespaces: &'a BTreeMap<String, Labels>,
    pub policies: &'a BTreeMap<String, Policy>,
    /// Each policy's hit-counter slot.
    pub slots: &'a BTreeMap<String, u32>,
}

/// What the maps are to hold.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Compiled {
    pub peers: BTreeMap<Ipv4Net, u32>,
    /// (key, prefix length) -> policy slot.
    pub rules: BTreeMap<(PolicyKey, u32), u32>,
    /// Local pod -> (ingress set, egress set); 0: not isolated.
    pub endpoints: BTreeMap<Ipv4Addr, (u32, u32)>,
    pub sets: BTreeMap<u32, SetInfo>,
}

pub fn namespace_labels(namespaces: &BTreeMap<String, Labels>, ns: &str) -> Labels {
    let mut l = namespaces.get(ns).cloned().unwrap_or_default();
    l.insert(NAMESPACE_NAME_LABEL.into(), ns.into());
    l
}

pub fn compile(input: &Inputs, ids: &mut Ids) -> Compiled {
    let blocks = blocks(input.policies);
    let mut classes = BTreeMap::new();
    let mut out = Compiled::default();
    let mut prefixes: BTreeSet<Ipv4Net> = BTreeSet::new();
    for (cidr, except) in &blocks {
        prefixes.insert(*cidr);
        prefixes.extend(except.iter().copied());
    }
    for p in prefixes {
        let key = ClassKey {
            pod: None,
            blocks: blocks_of_prefix(&blocks, p),
        };
        out.peers.insert(p, ids.class(key, &mut classes));
    }
    for pod in input.pods {
        let host = Ipv4Net::new(pod.ip, 32).expect("/32");
        let key = ClassKey {
            pod: Some(PodClass::of(pod)),
            blocks: blocks_of_prefix(&blocks, host),
        };
        out.peers.insert(host, ids.class(key, &mut classes));
    }
    let by_ip: BTreeMap<Ipv4Addr, &PodIdentity> = input.pods.iter().map(|p| (p.ip, p)).collect();
    for ip in input.local {
        let Some(pod) = by_ip.get(ip) else { continue };
        let ingress = selecting(input.policies, pod, Direction::Ingress);
        let egress = selecting(input.policies, pod, Direction::Egress);
        let mut set = |direction, policies: Vec<String>| {
            if policies.is_empty() {
                return 0;
            }
            let ports = if direction == Direction::Ingress
                && names_ports(input.policies, &policies, direction)
            {
                pod.ports.clone()
            } else {
                Vec::new()
            };
            let info = SetInfo {
                direction,
                policies,
                ports,
            };
            let id = ids.set(info.clone());
            out.sets.insert(id, info);
            id
        };
        let sets = (
            set(Direction::Ingress, ingress),
            set(Direction::Egress, egress),
        );
        out.endpoints.insert(*ip, sets);
    }
    let all_classes: Vec<u32> = std::iter::once(CLASS_WORLD)
        .chain(classes.keys().copied())
        .collect();
    for (&set, info) in &out.sets {
        for name in &info.policies {
            let p = &input.policies[name];
            let slot = input.slots.get(name).copied().unwrap_or(0);
            for rule in p.rules(info.direction).unwrap_or_default() {
                let peers = rule_classes(rule, p, &classes, &all_classes, input.namespaces);
                for class in peers {
                    // Named ports are the destination's: the selected pod's for
                    // ingress, the peer's for egress (only pods have them).
                    let ports = match info.direction {
                        Direction::Ingress => &info.ports[..],
                        Direction::Egress => class_ports(&classes, class),
                    };
                    for (proto, port, len) in port_prefixes(rule, ports) {
                        let key = PolicyKey {
                            set,
                            peer: class,
                            proto,
                            port: port.to_be_bytes(),
                            _pad: 0,
                        };
                        out.rules.entry((key, len)).or_insert(slot);
                    }
                }
            }
        }
    }
    ids.retain(&classes, &out.sets);
    out
}

/// Whether a rule of `dir` of one of `policies` names a port.
fn names_ports(policies: &BTreeMap<String, Policy>, list: &[String], dir: Direction) -> bool {
    let rules = list
        .iter()
        .flat_map(|name| policies[name].rules(dir).unwrap_or_default());
    let mut ports = rules.flat_map(|r| r.ports.iter().flatten());
    ports.any(|p| matches!(p.ports, PortMatch::Named(_)))
}

/// The named ports of a class's pods (none for blocks and the world).
fn class_ports(classes: &BTreeMap<u32, ClassKey>, class: u32) -> &[ContainerPort] {
    classes
        .get(&class)
        .and_then(|k| k.pod.as_ref())
        .map_or(&[], |p| &p.ports[..])
}

/// Every distinct ipBlock of every rule.
fn blocks(policies: &BTreeMap<String, Policy>) -> BTreeSet<Block> {
    let rules = policies
        .values()
        .flat_map(|p| p.ingress.iter().flatten().chain(p.egress.iter().flatten()));
    let peers = rules.flat_map(|r| r.peers.iter().flatten());
    peers
        .filter_map(|peer| match peer {
            PeerSpec::Block { cidr, except } => {
                let mut except = except.clone();
                except.sort();
                except.dedup();
                Some((*cidr, except))
            }
            _ => None,
        })
        .collect()
}

/// The blocks every address whose longest prefix is `p` lies in.
fn blocks_of_prefix(blocks: &BTreeSet<Block>, p: Ipv4Net) -> BTreeSet<Block> {
    blocks
        .iter()
        .filter(|(cidr, except)| cidr.contains(&p) && !except.iter().any(|e| e.contains(&p)))
        .cloned()
        .collect()
}

/// The policies in the pod's namespace that select it and isolate `dir`, by key.
fn selecting(
    policies: &BTreeMap<String, Policy>,
    pod: &PodIdentity,
    dir: Direction,
) -> Vec<String> {
    policies
        .iter()
        .filter(|(_, p)| {
            p.rules(dir).is_some()
                && p.namespace == pod.namespace
                && p.pod_selector.matches(&pod.labels)
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// The classes a rule's peers cover: every class (the world too) without peers.
fn rule_classes(
    rule: &Rule,
    policy: &Policy,
    classes: &BTreeMap<u32, ClassKey>,
    all: &[u32],
    namespaces: &BTreeMap<String, Labels>,
) -> BTreeSet<u32> {
    let Some(peers) = &rule.peers else {
        return all.iter().copied().collect();
    };
    let mut out = BTreeSet::new();
    for peer in peers {
        for (&id, key) in classes {
            if peer_covers(peer, policy, key, namespaces) {
                out.insert(id);
            }
        }
    }
    out
}

fn peer_covers(
    peer: &PeerSpec,
    policy: &Policy,
    key: &ClassKey,
    namespaces: &BTreeMap<String, Labels>,
) -> bool {
    match peer {
        PeerSpec::Pods {
            pods,
            namespaces: ns_sel,
        } => {
            let Some(pod) = &key.pod else {
                return false;
            };
            let ns_ok = match ns_sel {
                None => pod.namespace == policy.namespace,
                Some(sel) => sel.matches(&namespace_labels(namespaces, &pod.namespace)),
            };
            ns_ok && pods.as_ref().is_none_or(|s| s.matches(&pod.labels))
        }
        PeerSpec::Block { cidr, except } => {
            let mut except = except.clone();
            except.sort();
            except.dedup();
            key.blocks.contains(&(*cidr, except))
        }
        PeerSpec::NoAddresses => false,
    }
}

/// (protocol, first port, prefix length) of every entry a rule's ports need, named
/// ports resolved against the destination's `named` (a name it lacks adds nothing).
fn port_prefixes(rule: &Rule, named: &[ContainerPort]) -> Vec<(u8, u16, u32)> {
    let Some(ports) = &rule.ports else {
        return vec![(0, 0, POLICY_PREFIX_ANY)];
    };
    let mut out = Vec::new();
    for PortSpec { proto, ports } in ports {
        let proto = *proto;
        match ports {
            PortMatch::Any => out.push((proto, 0, POLICY_PREFIX_PROTO)),
            PortMatch::Range(first, last) => {
                for (start, bits) in aligned_blocks(*first, *last) {
                    out.push((proto, start, POLICY_PREFIX_PROTO + 16 - bits));
                }
            }
            PortMatch::Named(name) => {
                if let Some(port) = resolve(named, name, proto) {
                    out.push((proto, port, POLICY_PREFIX_PROTO + 16));
                }
            }
        }
    }
    out
}

/// `first..=last` as aligned power-of-two blocks: (start, log2 of the size).
pub fn aligned_blocks(first: u16, last: u16) -> Vec<(u16, u32)> {
    let (mut start, end) = (first as u32, last as u32);
    let mut out = Vec::new();
    while start <= end {
        let mut bits = if start == 0 {
            16
        } else {
            start.trailing_zeros().min(16)
        };
        while start + (1 << bits) - 1 > end {
            bits -= 1;
        }
        out.push((start as u16, bits));
        start += 1 << bits;
    }
    out
}

impl Compiled {
    /// The class of `ip`: its longest prefix in `peers` (as the LPM map answers).
    pub fn class_of(&self, ip: Ipv4Addr) -> u32 {
        self.peers
            .iter()
            .filter(|(net, _)| net.contains(&ip))
            .max_by_key(|(net, _)| net.prefix_len())
            .map_or(CLASS_WORLD, |(_, c)| *c)
    }

    /// Whether set `set` lets a flow to or from `peer` through (as the LPM map
    /// answers a lookup with the full prefix).
    pub fn allows(&self, set: u32, peer: Ipv4Addr, proto: u8, port: u16) -> bool {
        let class = self.class_of(peer);
        let want = PolicyKey {
            set,
            peer: class,
            proto,
            port: port.to_be_bytes(),
            _pad: 0,
        };
        let bits = |k: &PolicyKey| -> u128 {
            let b: [u8; 12] = bytemuck::cast(*k);
            let mut x = [0u8; 16];
            x[..12].copy_from_slice(&b);
            u128::from_be_bytes(x)
        };
        self.rules.keys().any(|(k, len)| {
            let mask = if *len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            bits(k) & mask == bits(&want) & mask
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse::parse_documents;

    fn pod(ip: &str, ns: &str, labels: &[(&str, &str)]) -> PodIdentity {
        PodIdentity {
            ip: ip.parse().unwrap(),
            namespace: ns.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ports: Vec::new(),
        }
    }

    struct World {
        pods: Vec<PodIdentity>,
        namespaces: BTreeMap<String, Labels>,
        ids: Ids,
    }

    impl World {
        fn new() -> Self {
            let pods = vec![
                pod("10.244.1.2", "x", &[("pod", "a")]),
                pod("10.244.1.3", "x", &[("pod", "b")]),
                pod("10.244.2.2", "y", &[("pod", "a")]),
                pod("10.244.2.3", "y", &[("pod", "b")]),
            ];
            let mut namespaces = BTreeMap::new();
            namespaces.insert(
                "y".to_string(),
                [("team".to_string(), "blue".to_string())].into(),
            );
            World {
                pods,
                namespaces,
                ids: Ids::default(),
            }
        }

        fn compile(&mut self, yaml: &str) -> Compiled {
            let policies: BTreeMap<String, Policy> = if yaml.is_empty() {
                BTreeMap::new()
            } else {
                parse_documents(yaml)
                    .unwrap()
                    .into_iter()
                    .map(|p| (p.key(), p))
                    .collect()
            };
            let slots = policies
                .keys()
                .enumerate()
                .map(|(i, k)| (k.clone(), i as u32 + 1))
                .collect();
            let local: Vec<Ipv4Addr> = self.pods.iter().map(|p| p.ip).collect();
            let input = Inputs {
                pods: &self.pods,
                local: &local,
                namespaces: &self.namespaces,
                policies: &policies,
                slots: &slots,
            };
            compile(&input, &mut self.ids)
        }
    }

    /// Whether `from` may open a flow to `to` on (proto, port), both local pods.
    fn can(c: &Compiled, from: &str, to: &str, proto: u8, port: u16) -> bool {
        let (f, t): (Ipv4Addr, Ipv4Addr) = (from.parse().unwrap(), to.parse().unwrap());
        let (_, egress) = c.endpoints[&f];
        let (ingress, _) = c.endpoints[&t];
        (egress == 0 || c.allows(egress, t, proto, port))
            && (ingress == 0 || c.allows(ingress, f, proto, port))
    }

    const XA: &str = "10.244.1.2";
    const XB: &str = "10.244.1.3";
    const YA: &str = "10.244.2.2";
    const YB: &str = "10.244.2.3";

    #[test]
    fn no_policy_isolates_nothing() {
        let c = World::new().compile("");
        assert!(c.endpoints.values().all(|s| *s == (0, 0)));
        assert!(c.rules.is_empty());
    }

    #[test]
    fn deny_all_ingress_then_allow_from_a_namespace_by_label() {
        let mut w = World::new();
        let deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {}}\n";
        let c = w.compile(deny);
        assert!(!can(&c, YA, XA, 6, 80), "x is closed");
        assert!(can(&c, XA, YA, 6, 80), "egress is not isolated");
        let allow = format!(
            "{deny}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: from-blue, namespace: x}}\n\
             spec:\n  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress:\n  - from:\n    - namespaceSelector: {{matchLabels: {{team: blue}}}}\n      podSelector: {{matchLabels: {{pod: b}}}}\n    ports:\n    - {{port: 80, endPort: 90}}\n"
        );
        let c = w.compile(&allow);
        assert!(can(&c, YB, XA, 6, 85), "y/b to x/a on a port in the range");
        assert!(!can(&c, YB, XA, 6, 91), "outside the range");
        assert!(!can(&c, YB, XA, 17, 85), "UDP is not listed");
        assert!(
            !can(&c, YA, XA, 6, 80),
            "pod and namespace selectors in one peer: both must hold"
        );
        assert!(!can(&c, YB, XB, 6, 80), "x/b is selected by deny only");
    }

    #[test]
    fn ip_blocks_with_exceptions_cover_pods_by_address() {
        let mut w = World::new();
        let yaml = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: cidr, namespace: x}\n\
                    spec:\n  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - ipBlock: {cidr: 10.244.2.0/24, except: [10.244.2.3/32]}\n";
        let c = w.compile(yaml);
        assert!(can(&c, XA, YA, 6, 80));
        assert!(!can(&c, XA, YB, 6, 80), "the exception");
        assert!(!can(&c, XA, XB, 6, 80), "outside the block");
        let (_, egress) = c.endpoints[&XA.parse().unwrap()];
        assert!(
            c.allows(egress, "10.244.2.77".parse().unwrap(), 17, 53),
            "any address in the block"
        );
        assert!(!c.allows(egress, "192.0.2.1".parse().unwrap(), 17, 53));
    }

    #[test]
    fn ids_stay_stable_when_nothing_changes() {
        let mut w = World::new();
        let yaml = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {}}\n";
        let a = w.compile(yaml);
        let b = w.compile(yaml);
        assert_eq!(a, b);
    }

    fn with_ports(w: &mut World, ip: &str, ports: &[(&str, i64, &str)]) {
        let pod = w.pods.iter_mut().find(|p| p.ip.to_string() == ip).unwrap();
        pod.ports = ports
            .iter()
            .map(|(name, n, proto)| ContainerPort {
                name: Some(name.to_string()),
                container_port: *n,
                protocol: proto.to_string(),
            })
            .collect();
    }

    #[test]
    fn named_ports_resolve_against_the_pod_the_traffic_goes_to() {
        let mut w = World::new();
        with_ports(&mut w, XA, &[("http", 8080, "TCP")]);
        with_ports(&mut w, XB, &[("http", 9090, "TCP"), ("dns", 53, "UDP")]);
        let yaml = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: http, namespace: x}\n\
                    spec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - {port: http}\n    - {port: dns, protocol: UDP}\n";
        let c = w.compile(yaml);
        assert!(can(&c, YA, XA, 6, 8080), "x/a's http is 8080");
        assert!(!can(&c, YA, XA, 6, 9090), "9090 is x/b's http, not x/a's");
        assert!(can(&c, YA, XB, 6, 9090), "x/b's http is 9090");
        assert!(!can(&c, YA, XB, 6, 8080));
        assert!(can(&c, YA, XB, 17, 53), "x/b's dns");
        assert!(!can(&c, YA, XA, 17, 53), "x/a has no port named dns");
        assert!(!can(&c, YA, XB, 6, 53), "dns is UDP");
        let (xa, xb) = (
            c.endpoints[&XA.parse().unwrap()].0,
            c.endpoints[&XB.parse().unwrap()].0,
        );
        assert_ne!(xa, xb, "one policy, two numberings: two sets");

        let egress = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: out, namespace: y}\n\
                      spec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - namespaceSelector: {}\n    - ipBlock: {cidr: 0.0.0.0/0}\n    ports:\n    - {port: http}\n";
        let c = w.compile(egress);
        assert!(can(&c, YA, XA, 6, 8080), "to x/a's http");
        assert!(can(&c, YA, XB, 6, 9090), "to x/b's http");
        assert!(!can(&c, YA, XA, 6, 9090), "x/a does not serve http on 9090");
        let (_, ya) = c.endpoints[&YA.parse().unwrap()];
        assert!(
            !c.allows(ya, "192.0.2.1".parse().unwrap(), 6, 8080),
            "an address outside the pods has no named ports"
        );
        let sets: Vec<_> = c.sets.values().filter(|s| !s.ports.is_empty()).collect();
        assert!(
            sets.is_empty(),
            "egress sets do not depend on the pod's ports"
        );
    }

    #[test]
    fn ids_written_before_named_ports_still_read() {
        let old = r#"{"classes":[[{"pod":["x",{"pod":"a"}],"blocks":[]},1]],
                      "sets":[[["Ingress",["x/deny"]],1]],"next_class":1,"next_set":1}"#;
        let ids: Ids = serde_json::from_str(old).expect("old ids read");
        let mut w = World::new();
        w.ids = ids;
        let yaml = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {}}\n";
        let c = w.compile(yaml);
        assert_eq!(c.class_of(XA.parse().unwrap()), 1, "x/a keeps its class");
        assert_eq!(c.endpoints[&XA.parse().unwrap()].0, 1, "and the set its id");
    }

    #[test]
    fn port_ranges_become_aligned_prefixes() {
        assert_eq!(aligned_blocks(80, 80), vec![(80, 0)]);
        assert_eq!(aligned_blocks(80, 90), vec![(80, 3), (88, 1), (90, 0)]);
        assert_eq!(
            aligned_blocks(1, 65535)
                .iter()
                .map(|b| 1u32 << b.1)
                .sum::<u32>(),
            65535
        );
        assert_eq!(aligned_blocks(0, 65535), vec![(0, 16)]);
    }
}
