//! A node that runs no netcore: a kernel vxlan device, bridge and routes set up the
//! way flannel's VXLAN backend sets up `flannel.1`, with one pod.

use std::net::Ipv4Addr;

use anyhow::Result;

use crate::{cluster::Cluster, netns::Netns};

pub struct FlannelNode {
    pub pod: Netns,
    pub ns: Netns,
    pub ip: Ipv4Addr,
    pub pod_ip: Ipv4Addr,
    pub pod_cidr: String,
    pub vtep_mac: String,
}

impl FlannelNode {
    /// Plugs a flannel-style node into the cluster's underlay with subnet 10.244.`n`.0/24.
    pub fn new(c: &Cluster, n: u8) -> Result<Self> {
        let ns = Netns::new(&format!("{}-fl", c.id))?;
        let ip: Ipv4Addr = format!("{}.{}", crate::cluster::UNDERLAY_PREFIX, 100 + n).parse()?;
        c.plug(&ns, &format!("f{n}"), ip)?;
        ns.sh(&format!(
            "echo 1 > /proc/sys/net/ipv4/ip_forward
             ip link add flannel.1 type vxlan id 1 local {ip} dev ul0 dstport 8472 nolearning
             ip link set flannel.1 mtu 1450 up
             ip addr add 10.244.{n}.0/32 dev flannel.1
             ip link add cni0 type bridge
             ip addr add 10.244.{n}.1/24 dev cni0
             ip link set cni0 mtu 1450 up"
        ))?;
        let vtep_mac = ns
            .sh("cat /sys/class/net/flannel.1/address")?
            .trim()
            .to_string();
        let pod = Netns::new(&format!("{}-flpod", c.id))?;
        let pod_ip: Ipv4Addr = format!("10.244.{n}.2").parse()?;
        ns.sh(&format!(
            "ip link add veth0 mtu 1450 type veth peer name eth0 mtu 1450 netns {pod}
             ip link set veth0 master cni0 up",
            pod = pod.name
        ))?;
        pod.sh(&format!("ip addr add {pod_ip}/24 dev eth0 && ip link set eth0 up && ip route add default via 10.244.{n}.1"))?;
        Ok(FlannelNode {
            pod,
            ns,
            ip,
            pod_ip,
            pod_cidr: format!("10.244.{n}.0/24"),
            vtep_mac,
        })
    }

    /// What flannel installs per remote node: onlink route, neighbour and FDB entry.
    pub fn add_peer(
        &self,
        subnet_net: Ipv4Addr,
        prefix: u8,
        vtep: &str,
        underlay: Ipv4Addr,
    ) -> Result<()> {
        self.ns.sh(&format!(
            "ip route add {subnet_net}/{prefix} via {subnet_net} dev flannel.1 onlink
             ip neigh add {subnet_net} lladdr {vtep} dev flannel.1 nud permanent
             bridge fdb append {vtep} dev flannel.1 dst {underlay}"
        ))?;
        Ok(())
    }
}

impl FlannelNode {
    /// Makes the flannel node and every netcore node of `c` peers, the static way (flannel's
    /// routes here, `netcore node add` there).
    pub fn peer_statically(&self, c: &Cluster) -> Result<()> {
        for n in &c.nodes {
            let st = n.status()?;
            self.add_peer(
                st.pod_cidr.network(),
                st.pod_cidr.prefix_len(),
                &st.vtep_mac.to_string(),
                n.ip,
            )?;
            n.cli(&[
                "node",
                "add",
                "flannel",
                "--pod-cidr",
                &self.pod_cidr,
                "--underlay-ip",
                &self.ip.to_string(),
                "--vtep-mac",
                &self.vtep_mac,
            ])?;
        }
        Ok(())
    }
}

/// A node that runs flannel's host-gw backend and no netcore: a bridge with one pod,
/// forwarding on, and plain kernel routes to the other nodes' subnets via their
/// underlay addresses. It announces itself with the lease flannel's host-gw writes.
pub struct HostGwNode {
    pub pod: Netns,
    pub ns: Netns,
    pub ip: Ipv4Addr,
    pub pod_ip: Ipv4Addr,
    pub pod_cidr: String,
}

impl HostGwNode {
    /// Plugs a host-gw node with subnet 10.244.`n`.0/24 into the cluster's underlay.
    pub fn new(c: &Cluster, n: u8) -> Result<Self> {
        let ns = Netns::new(&format!("{}-hg", c.id))?;
        let ip: Ipv4Addr = format!("{}.{}", crate::cluster::UNDERLAY_PREFIX, 100 + n).parse()?;
        c.plug(&ns, &format!("h{n}"), ip)?;
        ns.sh(&format!(
            "echo 1 > /proc/sys/net/ipv4/ip_forward
             ip link add cni0 type bridge
             ip addr add 10.244.{n}.1/24 dev cni0
             ip link set cni0 up"
        ))?;
        let pod = Netns::new(&format!("{}-hgpod", c.id))?;
        let pod_ip: Ipv4Addr = format!("10.244.{n}.2").parse()?;
        ns.sh(&format!(
            "ip link add veth0 type veth peer name eth0 netns {pod}
             ip link set veth0 master cni0 up",
            pod = pod.name
        ))?;
        pod.sh(&format!("ip addr add {pod_ip}/24 dev eth0 && ip link set eth0 up && ip route add default via 10.244.{n}.1"))?;
        Ok(HostGwNode {
            pod,
            ns,
            ip,
            pod_ip,
            pod_cidr: format!("10.244.{n}.0/24"),
        })
    }

    /// flannel's host-gw lease for this node, as it writes it.
    pub fn lease(&self) -> String {
        format!(r#"{{"PublicIP":"{}","BackendType":"host-gw"}}"#, self.ip)
    }

    /// What flannel's host-gw installs per remote node: a route via its address.
    pub fn route_to(&self, subnet: &str, via: Ipv4Addr) -> Result<()> {
        self.ns
            .sh(&format!("ip route replace {subnet} via {via}"))?;
        Ok(())
    }
}
