//! The test bed's building blocks: two nodes (network namespaces) joined by a veth
//! underlay, Linux bridges on a node, and pods (namespaces with one veth) on a
//! bridge. Interfaces are made inside the namespaces, so the host sees none of them.

use std::net::Ipv4Addr;

use anyhow::Result;

use super::{netns::Netns, profile::Profile};

/// Node i (1 or 2) is 192.168.77.i on the underlay.
pub fn node_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 77, i)
}

/// Pod subnet of node i: 10.244.i.0/24; the bridge (gateway) is .1, pods from .2.
pub fn pod_cidr(i: u8) -> String {
    format!("10.244.{i}.0/24")
}

pub fn pod_ip(node: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, node, host)
}

/// Names every namespace of one run: `PREFIX-TAG`.
#[derive(Clone)]
pub struct Namer {
    pub prefix: String,
}

impl Namer {
    pub fn name(&self, tag: &str) -> String {
        format!("{}-{tag}", self.prefix)
    }

    pub fn netns(&self, tag: &str) -> Result<Netns> {
        Netns::new(&self.name(tag))
    }
}

/// Two nodes whose `ul0` interfaces are the two ends of one veth pair (MTU `mtu`,
/// behaving as `profile` says), addressed 192.168.77.1/24 and .2/24, forwarding on.
pub fn node_pair(namer: &Namer, tag: &str, mtu: u32, profile: Profile) -> Result<[Netns; 2]> {
    let n1 = namer.netns(&format!("{tag}-n1"))?;
    let n2 = namer.netns(&format!("{tag}-n2"))?;
    n1.sh(&format!(
        "ip link add ul0 mtu {mtu} type veth peer name ul0 mtu {mtu} netns {}",
        n2.name
    ))?;
    for (i, n) in [(1, &n1), (2, &n2)] {
        n.sh(&format!(
            "ip addr add {}/24 dev ul0 && ip link set ul0 up
             sysctl -qw net.ipv4.ip_forward=1",
            node_ip(i)
        ))?;
        profile.apply(n, "ul0")?;
    }
    Ok([n1, n2])
}

/// An uplink `ul0` with the address of node 1 for a node that talks to no other node
/// (an agent needs one): a veth pair inside the node (this kernel has no dummy).
pub fn uplink_stub(node: &Netns, mtu: u32) -> Result<()> {
    node.sh(&format!(
        "ip link add ul0 mtu {mtu} type veth peer name ul1 mtu {mtu}
         ip addr add {}/24 dev ul0 && ip link set ul0 up && ip link set ul1 up",
        node_ip(1)
    ))?;
    Ok(())
}

/// A bridge `name` on `node` holding `gw/prefix` (the pods' gateway).
pub fn bridge(node: &Netns, name: &str, gw: &str, mtu: u32) -> Result<()> {
    node.sh(&format!(
        "ip link add {name} mtu {mtu} type bridge
         ip addr add {gw} dev {name} && ip link set {name} up"
    ))?;
    Ok(())
}

/// A pod: namespace `tag`, `eth0` with `ip/24` and a default route via `gw`, whose
/// host end `host_if` is a port of `bridge` on `node`.
pub struct PodSpec<'a> {
    pub tag: &'a str,
    pub host_if: &'a str,
    pub bridge: &'a str,
    pub ip: Ipv4Addr,
    pub gw: Ipv4Addr,
    pub mtu: u32,
}

pub fn pod_on_bridge(namer: &Namer, node: &Netns, spec: &PodSpec) -> Result<Netns> {
    let pod = namer.netns(spec.tag)?;
    let PodSpec {
        host_if,
        bridge,
        ip,
        gw,
        mtu,
        ..
    } = spec;
    node.sh(&format!(
        "ip link add {host_if} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {pod}
         ip link set {host_if} master {bridge} up",
        pod = pod.name
    ))?;
    pod.sh(&format!(
        "ip addr add {ip}/24 dev eth0 && ip link set eth0 up
         ip route add default via {gw}"
    ))?;
    Ok(pod)
}

/// Two pods on one bridge of a node (the bridge is the subnet's .1), or one each on
/// two nodes' bridges: the layout every non-netcore overlay here shares.
pub fn bridged_pods(namer: &Namer, nodes: &[&Netns], tag: &str, mtu: u32) -> Result<Vec<Netns>> {
    for (i, node) in nodes.iter().enumerate() {
        let i = i as u8 + 1;
        bridge(node, "br0", &format!("{}/24", pod_ip(i, 1)), mtu)?;
    }
    let mut pods = Vec::new();
    for (k, tag_k) in ["a", "b"].iter().enumerate() {
        let (node_i, host) = if nodes.len() == 1 {
            (1, 2 + k as u8)
        } else {
            (k as u8 + 1, 2)
        };
        let spec = PodSpec {
            tag: &format!("{tag}-{tag_k}"),
            host_if: &format!("v{tag_k}"),
            bridge: "br0",
            ip: pod_ip(node_i, host),
            gw: pod_ip(node_i, 1),
            mtu,
        };
        pods.push(pod_on_bridge(namer, nodes[node_i as usize - 1], &spec)?);
    }
    Ok(pods)
}
