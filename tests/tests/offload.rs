//! What a physical NIC changes, imitated with veths: segmentation before the wire and
//! merging (GRO) after it. Merged VXLAN reaches pods whole, and a merged packet that
//! was unwrapped goes on correctly wherever it goes next.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Result;
use netcore_agent::api::PodInfo;
use netcore_tests::{
    cluster::{Cluster, Spec, OUTSIDE_IP},
    netns::Netns,
    traffic,
};

fn pod_ns(p: &PodInfo) -> std::mem::ManuallyDrop<Netns> {
    Netns::borrowed(&p.name, &p.netns)
}

/// `nodes` meshed nodes in decap mode `decap`, on a NIC-like underlay.
fn nic_cluster(nodes: usize, decap: &str) -> Result<Cluster> {
    let c = Cluster::new(Spec {
        nodes,
        extra_config: format!("decap = \"{decap}\""),
        ..Spec::default()
    })?;
    c.mesh()?;
    c.nic_like()?;
    Ok(c)
}

#[test]
fn segments_merged_after_the_wire_reach_the_pod_in_one_piece() -> Result<()> {
    for decap in ["auto", "device", "tc"] {
        let c = nic_cluster(2, decap)?;
        let a = c.node(1).add_pod(&c.pod_name("ga"))?;
        let b = c.node(2).add_pod(&c.pod_name("gb"))?;
        let (na, nb) = (pod_ns(&a), pod_ns(&b));
        let mean = traffic::mean_rx_packet(&nb, "eth0", || {
            traffic::tcp_transfer(&na, &nb, b.ip, 32 << 20)
        })?;
        let mtu = c.node(2).status()?.pod_mtu as u64;
        assert!(
            mean > 3 * mtu,
            "decap {decap}: the pod receives merged packets (mean {mean} bytes, MTU {mtu}): \
             the VXLAN port needs a tunnel socket for GRO"
        );
    }
    Ok(())
}

/// Pod `r` forwards TCP port `port` to `to` (DNAT, and SNAT so replies come back).
fn forwarder(r: &Netns, port: u16, to: Ipv4Addr) -> Result<()> {
    r.sh(&format!(
        "sysctl -qw net.ipv4.ip_forward=1
         nft -f - <<EOF
table ip podfwd {{
  chain pre {{ type nat hook prerouting priority dstnat; tcp dport {port} dnat to {to}:{port}; }}
  chain post {{ type nat hook postrouting priority srcnat; ip daddr {to} masquerade; }}
}}
EOF"
    ))?;
    Ok(())
}

#[test]
fn a_merged_packet_a_pod_forwards_to_another_node_is_wrapped_again() -> Result<()> {
    let c = nic_cluster(3, "auto")?;
    let a = c.node(1).add_pod(&c.pod_name("fa"))?;
    let r = c.node(2).add_pod(&c.pod_name("fr"))?;
    let z = c.node(3).add_pod(&c.pod_name("fz"))?;
    let (na, nr, nz) = (pod_ns(&a), pod_ns(&r), pod_ns(&z));
    forwarder(&nr, 7000, z.ip)?;
    let before = c.node(2).counter("encapsulated-by-device")?;
    traffic::tcp_transfer_via(&na, SocketAddr::from((r.ip, 7000)), &nz, 7000, 32 << 20)?;
    assert!(
        c.node(2).counter("encapsulated-by-device")? > before,
        "what r forwards still carries the tunnel state of its unwrapping: the VXLAN \
         device wraps it again"
    );
    Ok(())
}

#[test]
fn a_merged_packet_a_pod_forwards_out_of_the_node_arrives_intact() -> Result<()> {
    let c = nic_cluster(2, "auto")?;
    let a = c.node(1).add_pod(&c.pod_name("oa"))?;
    let r = c.node(2).add_pod(&c.pod_name("or"))?;
    let (na, nr) = (pod_ns(&a), pod_ns(&r));
    forwarder(&nr, 7001, OUTSIDE_IP)?;
    // Out of r, masqueraded by node 2, segmented in software by its NIC-like uplink.
    traffic::tcp_transfer_via(
        &na,
        SocketAddr::from((r.ip, 7001)),
        &c.outside,
        7001,
        32 << 20,
    )
}
