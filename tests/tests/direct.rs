//! Direct routing in eBPF: flannel's host-gw backend and its vxlan backend's
//! DirectRouting. Pod packets cross the underlay unchanged between nodes on one
//! segment; what arrives unencapsulated is accepted only from the node that owns its
//! source, by that node's pinned MAC.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, Result};
use netcore_agent::api::PodInfo;
use netcore_tests::{
    capture::Capture,
    cluster::{Cluster, Node, Spec, StoreSpec, OUTSIDE_IP},
    echo,
    flannel::HostGwNode,
    netns::Netns,
    packets::{self, Seen},
    traffic, wait_until,
};

const HOST_GW: &str = r#"{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMax":"10.244.63.0","Backend":{"Type":"host-gw"}}"#;
const DIRECT_ROUTING: &str = r#"{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMax":"10.244.63.0","Backend":{"Type":"vxlan","DirectRouting":true,"GBP":true}}"#;

fn pod_ns(p: &PodInfo) -> std::mem::ManuallyDrop<Netns> {
    Netns::borrowed(&p.name, &p.netns)
}

/// A host-gw cluster of `nodes`: with a file store (the network config says so), or
/// without one (each node's config says so, peers added by hand).
fn host_gw(nodes: usize, store: StoreSpec) -> Result<Cluster> {
    let none = store == StoreSpec::None;
    let c = Cluster::new(Spec {
        nodes,
        store,
        network_config: Some(HOST_GW.into()),
        extra_config: if none {
            "backend = \"host-gw\"".into()
        } else {
            String::new()
        },
        ..Spec::default()
    })?;
    if none {
        c.mesh()?;
    }
    Ok(c)
}

/// Waits until `n` routes every peer directly with its MAC learned.
fn wait_direct(n: &Node, peers: usize) -> Result<()> {
    wait_until(
        std::time::Duration::from_secs(10),
        "direct routes with learned MACs",
        || {
            n.status().is_ok_and(|s| {
                s.nodes.len() == peers
                    && s.nodes.iter().all(|p| {
                        p.route == netcore_agent::backend::RouteKind::Direct
                            && p.underlay_mac.is_some()
                            && p.in_map
                    })
            })
        },
    )
}

fn pod_net(ip: &Ipv4Addr) -> bool {
    ip.octets()[..2] == [10, 244]
}

#[test]
fn a_host_gw_cluster_routes_pods_directly_with_the_full_mtu() -> Result<()> {
    for store in [StoreSpec::File, StoreSpec::None] {
        let c = host_gw(3, store.clone())?;
        for n in &c.nodes {
            wait_direct(n, 2).with_context(|| format!("{store:?}: {}", n.agent_log()))?;
            assert_eq!(n.status()?.backend, "host-gw");
        }
        let pods: Vec<PodInfo> = (1..=3)
            .map(|i| c.node(i).add_pod(&c.pod_name(&format!("h{i}"))))
            .collect::<Result<_>>()?;
        assert_eq!(
            c.node(1).status()?.pod_mtu,
            1500,
            "{store:?}: host-gw pods get the uplink's MTU"
        );
        let cap = Capture::start(&c.switch, "p1")?;
        for a in &pods {
            for b in &pods {
                assert!(
                    traffic::ping(&a.name, b.ip, 2),
                    "{store:?}: {} reaches {}",
                    a.name,
                    b.ip
                );
            }
        }
        traffic::tcp_transfer(&pod_ns(&pods[0]), &pod_ns(&pods[1]), pods[1].ip, 8 << 20)?;
        let seen: Vec<Seen> = cap.finish().iter().map(|f| packets::parse(f)).collect();
        assert!(
            !seen.iter().any(|s| matches!(s, Seen::Vxlan { .. })),
            "{store:?}: no VXLAN on a host-gw underlay"
        );
        assert!(
            seen.iter()
                .filter(
                    |s| matches!(s, Seen::Ipv4 { src, dst, .. } if pod_net(src) && pod_net(dst))
                )
                .count()
                >= 8,
            "{store:?}: pod packets cross the underlay as they are"
        );
        assert!(c.node(1).counter("forwarded-direct")? > 0);
        assert!(c.node(2).counter("received-direct")? > 0);
        assert_eq!(c.node(1).counter("encapsulated")?, 0);
        // Path MTU: a full-size don't-fragment packet crosses.
        assert!(traffic::ping_df(&pods[0].name, pods[1].ip, 1500 - 28));
    }
    Ok(())
}

/// Services whose backends are on a node reached directly: the replies come back
/// unencapsulated and get the service address (or the NodePort) back, for a pod, the
/// node itself and a client outside.
#[test]
fn services_reach_backends_on_directly_routed_nodes() -> Result<()> {
    let c = host_gw(2, StoreSpec::File)?;
    for n in &c.nodes {
        wait_direct(n, 1).with_context(|| n.agent_log())?;
    }
    let remote = c.node(2).add_pod(&c.pod_name("svc-remote"))?;
    echo::tcp_server(&remote.netns, 8080, "remote")?;
    echo::udp_server(&remote.netns, 8080, "remote")?;
    let client = c.node(1).add_pod(&c.pod_name("svc-client"))?;
    let n1 = c.node(1);
    let vip = SocketAddr::from((Ipv4Addr::new(10, 96, 0, 70), 80));
    for (name, proto, extra) in [
        ("direct-tcp", "tcp", "30070"),
        ("direct-udp", "udp", "30071"),
    ] {
        let backend = format!("{}:8080", remote.ip);
        let vip = format!("{vip}/{proto}");
        let args = [
            "service",
            "add",
            name,
            "--vip",
            &vip,
            "--backend",
            &backend,
            "--node-port",
            extra,
        ];
        n1.cli(&args)?;
    }
    for (who, ns) in [
        ("a pod", client.netns.as_path()),
        ("the node", n1.ns.path.as_path()),
    ] {
        let got = echo::tcp_exchange(ns, vip, b"over a direct route")
            .with_context(|| format!("{who} to the ClusterIP over TCP"))?;
        assert_eq!(got, "remote", "{who} reaches the remote backend over TCP");
        let (got, from) = echo::udp_exchange(ns, vip, b"over a direct route")
            .with_context(|| format!("{who} to the ClusterIP over UDP"))?;
        assert_eq!(
            (got.as_str(), from),
            ("remote", vip),
            "{who}: a UDP answer from the service address"
        );
    }
    let nodeport = SocketAddr::from((n1.ip, 30070));
    let got = echo::tcp_exchange(&c.outside.path, nodeport, b"from outside")
        .context("NodePort to a directly routed backend")?;
    assert_eq!(got, "remote", "the NodePort reaches the remote backend");
    let nodeport = SocketAddr::from((n1.ip, 30071));
    let (got, from) = echo::udp_exchange(&c.outside.path, nodeport, b"from outside")?;
    assert_eq!(
        (got.as_str(), from),
        ("remote", nodeport),
        "a UDP NodePort answers from itself"
    );
    assert!(
        c.node(2).counter("received-direct")? > 0,
        "requests crossed unencapsulated"
    );
    assert!(
        c.node(1).counter("received-direct")? > 0,
        "replies crossed unencapsulated"
    );
    assert_eq!(c.node(1).counter("encapsulated")?, 0);
    Ok(())
}

/// The host-gw node's lease, in the cluster's file store (it never expires).
fn announce(c: &Cluster, hg: &HostGwNode) -> Result<()> {
    let dir = c.dir().join("store/coreos.com/network/subnets");
    let key = hg.pod_cidr.replace('/', "-");
    std::fs::write(dir.join(key), hg.lease())?;
    Ok(())
}

#[test]
fn a_netcore_node_and_a_flannel_host_gw_node_reach_each_other() -> Result<()> {
    let c = host_gw(1, StoreSpec::File)?;
    let hg = HostGwNode::new(&c, 70)?;
    announce(&c, &hg)?;
    let n = c.node(1);
    hg.route_to(&n.pod_cidr, n.ip)?;
    wait_direct(n, 1)?;
    let lease = std::fs::read_to_string(
        c.dir().join("store").join(
            n.status()?
                .store
                .context("store")?
                .lease_key
                .trim_start_matches('/'),
        ),
    )?;
    assert!(
        lease.contains(r#""BackendType":"host-gw""#) && !lease.contains("BackendData"),
        "netcore writes flannel's host-gw lease: {lease}"
    );
    let a = n.add_pod(&c.pod_name("a"))?;
    assert!(
        traffic::ping(&a.name, hg.pod_ip, 3),
        "netcore pod to the host-gw node's pod"
    );
    assert!(traffic::ping(&hg.pod.name, a.ip, 3), "and back");
    traffic::tcp_transfer(&pod_ns(&a), &hg.pod, hg.pod_ip, 4 << 20)?;
    traffic::tcp_transfer(&hg.pod, &pod_ns(&a), a.ip, 4 << 20)?;
    assert!(n.counter("received-direct")? > 0 && n.counter("forwarded-direct")? > 0);
    Ok(())
}

#[test]
fn direct_routing_uses_the_segment_and_vxlan_beyond_the_router() -> Result<()> {
    let mut c = Cluster::new(Spec {
        nodes: 2,
        store: StoreSpec::File,
        network_config: Some(DIRECT_ROUTING.into()),
        ..Spec::default()
    })?;
    c.add_routed_node(3)?;
    assert!(
        c.node(1).agent_log().contains("Backend.GBP"),
        "a Backend key netcore does not implement is named, not dropped"
    );
    let kinds = |n: &Node| -> Result<Vec<(String, String)>> {
        let st = n.status()?;
        Ok(st
            .nodes
            .iter()
            .map(|p| (p.spec.underlay_ip.to_string(), format!("{:?}", p.route)))
            .collect())
    };
    wait_until(
        std::time::Duration::from_secs(10),
        "node 1 to know both peers",
        || kinds(c.node(1)).is_ok_and(|k| k.len() == 2),
    )?;
    let k = kinds(c.node(1))?;
    assert!(
        k.contains(&("192.168.50.12".into(), "Direct".into())),
        "same segment: direct: {k:?}"
    );
    assert!(
        k.contains(&("192.168.60.13".into(), "Vxlan".into())),
        "behind the router: VXLAN: {k:?}"
    );
    let pods: Vec<PodInfo> = (1..=3)
        .map(|i| c.node(i).add_pod(&c.pod_name(&format!("d{i}"))))
        .collect::<Result<_>>()?;
    assert_eq!(
        c.node(1).status()?.pod_mtu,
        1450,
        "DirectRouting pods keep uplink − 50"
    );
    wait_direct_peer(c.node(1), "192.168.50.12")?;
    for a in &pods {
        for b in &pods {
            assert!(
                traffic::ping(&a.name, b.ip, 2),
                "{} reaches {}",
                a.name,
                b.ip
            );
        }
    }
    let n1 = c.node(1);
    assert!(n1.counter("forwarded-direct")? > 0, "to node 2 directly");
    assert!(n1.counter("encapsulated")? > 0, "to node 3 in VXLAN");
    Ok(())
}

fn wait_direct_peer(n: &Node, ip: &str) -> Result<()> {
    wait_until(
        std::time::Duration::from_secs(10),
        "the peer's MAC learned",
        || {
            n.status().is_ok_and(|s| {
                s.nodes
                    .iter()
                    .any(|p| p.spec.underlay_ip.to_string() == ip && p.underlay_mac.is_some())
            })
        },
    )
}

/// Sends UDP to `dst`:`port` from `ns`, from `src` (an address added to `ns` for it).
fn send_from(ns: &Netns, src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Result<()> {
    ns.sh(&format!(
        "ip addr add {src}/32 dev lo 2>/dev/null || true
         echo spoof | socat -u - UDP4-SENDTO:{dst}:{port},bind={src}"
    ))?;
    Ok(())
}

/// A node whose backend changes (the store's network config, between two runs of its
/// agent) moves its existing pods to the new MTU and says so: vxlan pods send at most
/// uplink − 50 beyond the node (their default route's MTU), host-gw pods the full MTU.
#[test]
fn a_node_that_changes_backend_moves_its_pods_to_the_new_mtu() -> Result<()> {
    let mut c = Cluster::new(Spec {
        nodes: 1,
        store: StoreSpec::File,
        ..Spec::default()
    })?;
    let a = c.node(1).add_pod(&c.pod_name("a"))?;
    let route = || pod_ns(&a).sh("ip route show default");
    assert!(route()?.contains("mtu 1450"), "vxlan: {}", route()?);
    let config = c.dir().join("store/coreos.com/network/config");
    for (backend, want, says) in [
        (HOST_GW, None, "host-gw"),
        (
            r#"{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMax":"10.244.63.0","Backend":{"Type":"vxlan"}}"#,
            Some("mtu 1450"),
            "vxlan",
        ),
    ] {
        c.node_mut(1).kill_agent();
        std::fs::write(&config, backend)?;
        c.node_mut(1).start_agent()?;
        let r = route()?;
        match want {
            Some(m) => assert!(r.contains(m), "{says}: the default route has {m}: {r}"),
            None => assert!(
                !r.contains("mtu"),
                "{says}: no MTU on the default route: {r}"
            ),
        }
        let link = pod_ns(&a).sh("cat /sys/class/net/eth0/mtu")?;
        assert_eq!(
            link.trim(),
            "1500",
            "{says}: the link keeps the uplink's MTU"
        );
        let log = c.node(1).agent_log();
        assert!(
            log.contains("existing pods are moved to the new MTU"),
            "{says}: the agent says what happens to the pods: {log}"
        );
    }
    Ok(())
}

#[test]
fn unencapsulated_packets_to_pods_from_a_non_node_or_a_spoofing_node_are_dropped() -> Result<()> {
    for config in [Some(HOST_GW), None] {
        let c = Cluster::new(Spec {
            nodes: 3,
            store: StoreSpec::File,
            network_config: config.map(String::from),
            ..Spec::default()
        })?;
        let mode = if config.is_some() { "host-gw" } else { "vxlan" };
        if config.is_some() {
            wait_direct(c.node(2), 2)?;
        }
        let b = c.node(2).add_pod(&c.pod_name("b"))?;
        let sock = traffic::udp_socket(&b.netns, 7777)?;
        sock.set_nonblocking(true)?;
        let a_ip = Ipv4Addr::new(
            10,
            244,
            c.node(1).pod_cidr.split('.').nth(2).unwrap().parse()?,
            9,
        );
        // A host on the underlay that routes the pod network to node 2.
        c.outside.sh(&format!(
            "ip route add {} via {}",
            c.node(2).pod_cidr,
            c.node(2).ip
        ))?;
        let before = c.node(2).counter("dropped-underlay-to-pods")?;
        send_from(&c.outside, OUTSIDE_IP, b.ip, 7777)?;
        send_from(&c.outside, a_ip, b.ip, 7777)?;
        let mut expected = 2;
        if config.is_some() {
            // Node 1, a member reached directly, claiming a node-3 pod's address.
            let n3_pod = Ipv4Addr::new(
                10,
                244,
                c.node(3).pod_cidr.split('.').nth(2).unwrap().parse()?,
                9,
            );
            c.node(1).ns.sh(&format!(
                "ip route replace {} via {} dev ul0",
                c.node(2).pod_cidr,
                c.node(2).ip
            ))?;
            send_from(&c.node(1).ns, n3_pod, b.ip, 7777)?;
            expected += 1;
        }
        wait_until(
            std::time::Duration::from_secs(5),
            "the drops to be counted",
            || {
                c.node(2)
                    .counter("dropped-underlay-to-pods")
                    .is_ok_and(|n| n >= before + expected)
            },
        )
        .with_context(|| format!("{mode}: each forged packet is counted"))?;
        let mut buf = [0u8; 64];
        assert!(
            sock.recv_from(&mut buf).is_err(),
            "{mode}: nothing forged reached the pod"
        );
    }
    Ok(())
}
