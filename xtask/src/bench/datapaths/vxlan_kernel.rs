//! `vxlan-kernel`: a kernel vxlan device set up exactly as flannel's VXLAN backend sets
//! up `flannel.1`: VNI 1, UDP 8472, learning off, MTU uplink − 50, the node's subnet
//! network address as a /32; per remote node an onlink route to its subnet via its
//! network address, a permanent neighbour entry (that address → its VTEP MAC) and an
//! FDB entry (its VTEP MAC → its underlay address). Pods sit on a bridge with MTU − 50.

use anyhow::{Context as _, Result};

use super::{setup_of, Context, Setup, Target};
use crate::bench::{
    netns::Netns,
    testbed::{bridged_pods, node_ip, node_pair, pod_cidr, pod_ip},
};

const VXLAN_OVERHEAD: u32 = 50;

pub fn setup(ctx: &Context, tag: &str) -> Result<Setup> {
    let mtu = ctx.mtu - VXLAN_OVERHEAD;
    let [n1, n2] = node_pair(&ctx.namer, tag, ctx.mtu, ctx.profile)?;
    for (i, n) in [(1, &n1), (2, &n2)] {
        flannel_device(n, i, mtu)?;
    }
    add_peer(&n1, &n2, 2)?;
    add_peer(&n2, &n1, 1)?;
    let pods = bridged_pods(&ctx.namer, &[&n1, &n2], tag, mtu)?;
    let target = Target::between(&pods, pod_ip(2, 2), mtu);
    let mut parts: Vec<Box<dyn std::any::Any>> = Vec::new();
    parts.extend(pods.into_iter().map(|p| Box::new(p) as _));
    parts.push(Box::new(n1));
    parts.push(Box::new(n2));
    setup_of(target, parts)
}

/// `flannel.1` on node `i`.
fn flannel_device(node: &Netns, i: u8, mtu: u32) -> Result<()> {
    node.sh(&format!(
        "ip link add flannel.1 type vxlan id 1 local {local} dev ul0 dstport 8472 nolearning
         ip link set flannel.1 mtu {mtu}
         ip addr add {net}/32 dev flannel.1
         ip link set flannel.1 up",
        local = node_ip(i),
        net = pod_ip(i, 0),
    ))?;
    Ok(())
}

/// What flannel installs on `node` for remote node `j` (namespace `remote`).
fn add_peer(node: &Netns, remote: &Netns, j: u8) -> Result<()> {
    let mac = remote
        .sh("cat /sys/class/net/flannel.1/address")?
        .trim()
        .to_string();
    anyhow::ensure!(!mac.is_empty(), "flannel.1 on {} has no MAC", remote.name);
    node.sh(&format!(
        "ip neigh replace {net} lladdr {mac} dev flannel.1 nud permanent
         bridge fdb append {mac} dev flannel.1 dst {underlay}
         ip route add {cidr} via {net} dev flannel.1 onlink",
        net = pod_ip(j, 0),
        underlay = node_ip(j),
        cidr = pod_cidr(j),
    ))
    .with_context(|| format!("adding node {j} as a flannel peer"))?;
    Ok(())
}
