//! `netcore monitor`: drops (and sampled traces) from the data path, decoded, streamed
//! to every watcher; lost events reported; nothing left behind when watchers go.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::Result;
use netcore_tests::{
    cluster::{Cluster, Spec, OUTSIDE_IP},
    flood, packets, traffic, wait_until,
    watcher::Watcher,
};

/// Every key of an event line, as the README's schema lists them.
const EVENT_KEYS: [&str; 15] = [
    "type",
    "time_ns",
    "program",
    "interface",
    "reason",
    "len",
    "proto",
    "src",
    "dst",
    "sport",
    "dport",
    "outer",
    "pod",
    "node",
    "policy",
];

fn meshed() -> Result<Cluster> {
    let c = Cluster::new(Spec {
        nodes: 2,
        ..Spec::default()
    })?;
    c.mesh()?;
    Ok(c)
}

#[test]
fn drops_show_up_with_their_reason_tuple_pod_and_node() -> Result<()> {
    let c = meshed()?;
    let n2 = c.node(2);
    let a = c.node(1).add_pod(&c.pod_name("ma"))?;
    let b = n2.add_pod(&c.pod_name("mb"))?;
    let w = Watcher::start(n2, &[])?;

    // VXLAN from an underlay host that is no node, claiming a node-1 pod's address.
    let forged_src = Ipv4Addr::new(10, 244, 1, 77);
    let vtep = n2.status()?.vtep_mac.0;
    let vx = packets::vxlan_udp(1, vtep, forged_src, b.ip, 5353, b"forged");
    let sock = traffic::udp_socket(&c.outside.path, 0)?;
    sock.send_to(&vx, (n2.ip, 8472))?;
    let ev = w.wait_for("the forged VXLAN", |v| {
        v["reason"] == "dropped-unknown-source"
    })?;
    for key in EVENT_KEYS {
        assert!(ev.get(key).is_some(), "every line has {key}: {ev}");
    }
    assert_eq!(ev["type"], "drop");
    assert_eq!(
        (ev["program"].as_str(), ev["interface"].as_str()),
        (Some("from_uplink"), Some("ul0"))
    );
    assert_eq!(ev["outer"]["src"], OUTSIDE_IP.to_string());
    assert_eq!(
        (ev["src"].as_str(), ev["dst"].as_str()),
        (Some("10.244.1.77"), Some(b.ip.to_string().as_str()))
    );
    assert_eq!(
        (ev["proto"].as_str(), ev["dport"].as_u64()),
        (Some("udp"), Some(5353))
    );
    assert_eq!(ev["pod"], b.name.as_str(), "the local pod it was for");

    // A packet from a pod on node 1 to a pod that does not exist on node 2.
    let nobody = Ipv4Addr::new(10, 244, 2, 200);
    let _ = traffic::ping(&a.name, nobody, 1);
    let ev = w.wait_for("the packet to no pod", |v| {
        v["reason"] == "dropped-no-route"
    })?;
    assert_eq!(
        (ev["src"].as_str(), ev["dst"].as_str()),
        (Some(a.ip.to_string().as_str()), Some("10.244.2.200"))
    );
    assert_eq!(ev["proto"], "icmp");
    assert_eq!(ev["node"], "n1", "the remote node it came from");
    assert!(
        ev["outer"].is_object(),
        "seen before it was unwrapped: {ev}"
    );
    Ok(())
}

#[test]
fn a_burst_larger_than_the_ring_buffer_is_reported_as_lost() -> Result<()> {
    let c = Cluster::new(Spec::default())?;
    let n = c.node(1);
    let w = Watcher::start(n, &["--trace", "--sample", "1"])?;
    let mac: netcore_agent::mac::Mac = n.ns.sh("cat /sys/class/net/ul0/address")?.trim().parse()?;
    // 40,000 packets at once through the uplink program, every one traced: more than
    // the ring buffer holds before the agent reads.
    flood::syn_flood(&c.outside, "ul0", mac.0, n.ip, 9, 40_000)?;
    // Lost in the ring buffer (counted by the programs) or by this watcher falling
    // behind: either way a `lost` line says how many.
    let lost = w.wait_for("a lost line", |v| v["type"] == "lost")?;
    assert!(lost["events"].as_u64().is_some_and(|e| e > 0), "{lost}");
    Ok(())
}

#[test]
fn watchers_see_the_same_drops_and_leave_nothing_behind() -> Result<()> {
    let c = meshed()?;
    let n2 = c.node(2);
    let b = n2.add_pod(&c.pod_name("wb"))?;
    let mut w1 = Watcher::start(n2, &[])?;
    let mut w2 = Watcher::start(n2, &[])?;
    assert_eq!(n2.status()?.monitor.drops, 2, "two watchers");
    let vtep = n2.status()?.vtep_mac.0;
    let vx = packets::vxlan_udp(7, vtep, Ipv4Addr::new(10, 244, 1, 5), b.ip, 53, b"bad vni");
    traffic::udp_socket(&c.outside.path, 0)?.send_to(&vx, (n2.ip, 8472))?;
    for w in [&w1, &w2] {
        w.wait_for("the bad VNI", |v| v["reason"] == "dropped-bad-vni")?;
    }
    w1.interrupt();
    w2.interrupt();
    wait_until(Duration::from_secs(5), "the watchers to be gone", || {
        n2.status()
            .is_ok_and(|s| s.monitor.drops == 0 && s.monitor.trace == 0)
    })?;
    Ok(())
}
