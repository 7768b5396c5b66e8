//! One node: pods, the redirect fast path, masquerade, IPAM, restarts, bad input, and
//! what a pod may not do at L2.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    time::Duration,
};

use anyhow::Result;
use netcore_agent::api::PodInfo;
use netcore_tests::{
    cluster::{Cluster, Spec, OUTSIDE_IP},
    netns::Netns,
    packets::{self, Seen},
    traffic::{self, Stream},
    wait_until,
};

fn pod_ns(p: &PodInfo) -> std::mem::ManuallyDrop<Netns> {
    Netns::borrowed(&p.name, &p.netns)
}

#[test]
fn two_pods_talk_through_the_redirect_path() -> Result<()> {
    let c = Cluster::new(Spec::default())?;
    let n = c.node(1);
    let a = n.add_pod(&c.pod_name("a"))?;
    let b = n.add_pod(&c.pod_name("b"))?;
    assert!(
        a.in_map && b.in_map,
        "both pods must be in the endpoint map: {a:?} {b:?}"
    );
    assert_ne!(a.ip, b.ip);

    let before = n.counter("redirected-local")?;
    assert!(
        traffic::ping(&a.name, b.ip, 5),
        "{} must answer pings from {}",
        b.ip,
        a.name
    );
    assert!(
        traffic::ping(&b.name, a.ip, 5),
        "{} must answer pings from {}",
        a.ip,
        b.name
    );
    let after_ping = n.counter("redirected-local")?;
    assert!(
        after_ping - before >= 20,
        "10 pings (20 packets) must take the redirect path; the counter grew by {}",
        after_ping - before
    );

    let bytes_before = n.counter_bytes("redirected-local")?;
    let (na, nb) = (pod_ns(&a), pod_ns(&b));
    let result = traffic::tcp_transfer(&na, &nb, b.ip, 10 << 20);
    result?;
    let grew = n.counter_bytes("redirected-local")? - bytes_before;
    assert!(
        grew >= 10 << 20,
        "10 MiB crossed; the redirect byte counter grew by only {grew}"
    );
    Ok(())
}

#[test]
fn pods_reach_the_outside_through_masquerade() -> Result<()> {
    let c = Cluster::new(Spec::default())?;
    let n = c.node(1);
    let p = n.add_pod(&c.pod_name("m"))?;
    let listener = traffic::listen_tcp(&c.outside.path, 0)?;
    let port = listener.local_addr()?.port();
    let pns = pod_ns(&p);
    let conn = traffic::connect_tcp(&pns.path, SocketAddr::from((OUTSIDE_IP, port)));
    let _conn = conn?;
    let (_s, peer) = listener.accept()?;
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::V4(n.ip),
        "the outside server must see the node's uplink address, not the pod's {}",
        p.ip
    );
    Ok(())
}

#[test]
fn pod_del_removes_everything_and_frees_the_address() -> Result<()> {
    let c = Cluster::new(Spec {
        pod_prefix: 29,
        ..Spec::default()
    })?;
    let n = c.node(1);
    let pods: Vec<PodInfo> = (0..5)
        .map(|i| n.add_pod(&c.pod_name(&format!("p{i}"))))
        .collect::<Result<_>>()?;
    let out = n.cli_output(&["pod", "add", &c.pod_name("p5")]);
    assert!(!out.status.success(), "a 6th pod in a /29 must be refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exhausted"),
        "the error must say the CIDR is exhausted: {err}"
    );
    assert!(
        !Path::new(&format!("/run/netns/{}", c.pod_name("p5"))).exists(),
        "a refused pod leaves no namespace"
    );

    let gone = &pods[2];
    n.cli(&["pod", "del", &gone.name])?;
    assert!(
        !gone.netns.exists(),
        "pod del removes the namespace {}",
        gone.netns.display()
    );
    let links = n.ns.sh("ip -o link show")?;
    assert!(
        !links.contains(&gone.host_interface),
        "pod del removes the host veth {}",
        gone.host_interface
    );
    let st = n.status()?;
    assert!(
        st.pods.iter().all(|p| p.name != gone.name),
        "the pod is no longer listed"
    );
    assert!(
        st.programs
            .iter()
            .all(|a| a.interface != gone.host_interface),
        "its program link is gone"
    );
    let in_kernel = netcore_tests::cni::endpoint_ips(n)?;
    assert!(
        !in_kernel.contains(&gone.ip),
        "pod del removes the endpoint map entry: {in_kernel:?}"
    );
    let again = n.add_pod(&c.pod_name("p6"))?;
    assert_eq!(
        again.ip, gone.ip,
        "the only free address is handed out again"
    );
    assert!(again.in_map);

    let out = n.cli_output(&["pod", "del", &gone.name]);
    assert!(
        out.status.success(),
        "deleting a pod that does not exist is not an error"
    );
    Ok(())
}

#[test]
fn a_killed_agent_leaves_traffic_flowing_and_comes_back_to_the_same_state() -> Result<()> {
    let mut c = Cluster::new(Spec::default())?;
    let a = c.node(1).add_pod(&c.pod_name("ka"))?;
    let b = c.node(1).add_pod(&c.pod_name("kb"))?;
    let (na, nb) = (pod_ns(&a), pod_ns(&b));
    let stream = Stream::start(&na, &nb, b.ip);
    let stream = stream?;
    stream.wait_progress(1 << 20, Duration::from_secs(10))?;
    let before = c.node(1).status()?;

    c.node_mut(1).kill_agent();
    stream.wait_progress(4 << 20, Duration::from_secs(10))?;
    assert!(c.node(1).status().is_err(), "the agent is down");

    c.node_mut(1).start_agent()?;
    let after = c.node(1).status()?;
    assert_eq!(
        after.pods, before.pods,
        "the restarted agent finds the same pods, IPs and map entries"
    );
    assert_eq!(
        after.programs, before.programs,
        "and the same attached programs"
    );
    assert_eq!(after.vtep_mac, before.vtep_mac, "and the same VTEP MAC");
    stream.wait_progress(1 << 20, Duration::from_secs(10))?;
    let c3 = c.node(1).add_pod(&c.pod_name("kc"))?;
    assert!(
        c3.ip != a.ip && c3.ip != b.ip,
        "a new pod never gets an address in use"
    );
    stream.finish()?;
    Ok(())
}

#[test]
fn a_crash_mid_pod_add_is_cleaned_up_at_restart() -> Result<()> {
    let mut c = Cluster::new(Spec::default())?;
    let p = c.node(1).add_pod(&c.pod_name("cr"))?;
    c.node_mut(1).kill_agent();
    // What a crash between "recorded" and "plumbed" leaves: the state says the pod
    // exists, but its interface is gone, plus a stray host veth no pod owns.
    let pns = pod_ns(&p);
    let r = pns.sh("ip link del eth0");
    r?;
    c.node(1)
        .ns
        .sh("ip link add nc0af401fe type veth peer name stray0")?;
    c.node_mut(1).start_agent()?;
    let st = c.node(1).status()?;
    assert!(
        st.pods.is_empty(),
        "an incomplete pod is removed at restart: {:?}",
        st.pods
    );
    assert!(!p.netns.exists(), "with its namespace");
    let links = c.node(1).ns.sh("ip -o link show")?;
    assert!(
        !links.contains("nc0af401fe"),
        "a stray pod veth is removed: {links}"
    );
    let again = c.node(1).add_pod(&c.pod_name("cr2"))?;
    assert!(again.in_map);
    Ok(())
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() -> Result<()> {
    let c = Cluster::new(Spec::default())?;
    let n = c.node(1);
    let p = n.add_pod(&c.pod_name("dup"))?;
    let out = n.cli_output(&["pod", "add", &p.name]);
    assert!(!out.status.success(), "a duplicate pod name is refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "and says so"
    );
    let out = n.cli_output(&["pod", "add", "bad/name"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("invalid pod name")
    );
    assert_eq!(n.status()?.pods.len(), 1, "refused pods change nothing");

    let agent = |config: &str| {
        let path = n.dir.join("bad.toml");
        std::fs::write(&path, config).unwrap();
        n.ns.output(&[
            netcore_tests::netcore_bin().to_str().unwrap(),
            "agent",
            "--config",
            path.to_str().unwrap(),
        ])
    };
    let base = |extra: &str| {
        format!(
            "node_name = \"bad\"\nstate_dir = \"{}\"\npin_dir = \"/sys/fs/bpf/netcore-test/{}/bad\"\napi_socket = \"{}\"\nbridge = \"ncbad\"\nstore = \"none\"\nmetrics_addr = \"none\"\n{extra}",
            n.dir.join("bad-state").display(),
            c.id,
            n.dir.join("bad.sock").display()
        )
    };
    let cases = [
        (
            base("uplink = \"ul0\"\npod_cidr = \"10.244.300.0/24\""),
            "invalid",
        ),
        (
            base("uplink = \"ul0\"\npod_cidr = \"10.244.9.0\""),
            "invalid",
        ),
        (
            base("uplink = \"nosuchlink\"\npod_cidr = \"10.244.9.0/24\""),
            "nosuchlink does not exist",
        ),
        (
            base("uplink = \"ul0\"\npod_cidr = \"10.244.9.0/24\"\nvni = \"one\""),
            "vni",
        ),
        ("node_name = [".to_string(), "not valid"),
        (
            base(
                "uplink = \"ul0\"\npod_cidr = \"10.244.9.0/24\"\nservice_cidr = \"192.168.0.0/16\"",
            ),
            "service_cidr 192.168.0.0/16 overlaps the underlay",
        ),
        (
            base(
                "uplink = \"ul0\"\npod_cidr = \"10.244.9.0/24\"\nservice_cidr = \"10.240.0.0/12\"",
            ),
            "service_cidr 10.240.0.0/12 overlaps the pod network",
        ),
    ];
    for (config, want) in cases {
        let out = agent(&config);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "the agent must refuse config {config:?}"
        );
        assert!(
            err.contains(want),
            "config {config:?}: expected an error mentioning {want:?}, got {err}"
        );
    }
    let out = n.ns.output(&[
        netcore_tests::netcore_bin().to_str().unwrap(),
        "agent",
        "--config",
        "/nonexistent.toml",
    ]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("cannot read config file")
    );
    let links = n.ns.sh("ip -o link show")?;
    assert!(
        !links.contains("ncbad"),
        "refused configs create no bridge: {links}"
    );
    assert!(
        !Path::new(&format!("/sys/fs/bpf/netcore-test/{}/bad", c.id)).exists(),
        "and pin nothing"
    );

    let down = std::process::Command::new(netcore_tests::netcore_bin())
        .args(["--socket", "/nonexistent/netcore.sock", "status"])
        .output()?;
    assert!(!down.status.success(), "the CLI fails when no agent runs");
    assert!(String::from_utf8_lossy(&down.stderr).contains("is `netcore agent` running?"));
    Ok(())
}

/// An ARP packet (`op` 1 request, 2 reply) from `eth_src`, sender `sha`/`spa`.
fn arp_frame(op: u8, eth_src: [u8; 6], sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut body = vec![0, 1, 8, 0, 6, 4, 0, op];
    body.extend_from_slice(&sha);
    body.extend_from_slice(&spa.octets());
    body.extend_from_slice(&[0xff; 6]);
    body.extend_from_slice(&tpa.octets());
    netcore_tests::packets::ethernet([0xff; 6], eth_src, 0x0806, &body)
}

#[test]
fn a_spoofing_pod_intercepts_nothing() -> Result<()> {
    let c = Cluster::new(Spec::default())?;
    let attacker = c.node(1).add_pod(&c.pod_name("sa"))?;
    let victim = c.node(1).add_pod(&c.pod_name("sv"))?;
    let (na, nv) = (pod_ns(&attacker), pod_ns(&victim));
    let gw = victim.gateway;
    assert!(
        traffic::ping(&victim.name, gw, 1),
        "the victim knows its gateway"
    );
    let neigh = |ns: &Netns| {
        ns.sh(&format!("ip neigh show {gw} dev eth0"))
            .unwrap_or_default()
    };
    let gw_mac_before = neigh(&nv);
    let (amac, vmac) = (attacker.mac.0, victim.mac.0);
    let mut frames = Vec::new();
    for op in [1, 2] {
        // Gratuitous ARP claiming the gateway, and one speaking for the victim.
        frames.push(arp_frame(op, amac, amac, gw, gw));
        frames.push(arp_frame(op, amac, amac, victim.ip, gw));
    }
    // Frames from the victim's MAC, to move it to the attacker's bridge port.
    frames.push(arp_frame(1, vmac, vmac, victim.ip, gw));
    let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 58, 255];
    v6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
    v6.extend_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v6.extend_from_slice(&[134, 0, 0, 0, 64, 0, 0x07, 0x08]);
    frames.push(netcore_tests::packets::ethernet(
        [0x33, 0x33, 0, 0, 0, 1],
        amac,
        0x86dd,
        &v6,
    ));
    netcore_tests::capture::send_frames(&na, "eth0", &frames)?;

    let n = c.node(1);
    wait_until(
        Duration::from_secs(5),
        "every forged frame to be counted",
        || {
            n.counter("dropped-spoofed-arp").is_ok_and(|x| x >= 4)
                && n.counter("dropped-spoofed-mac").is_ok_and(|x| x >= 1)
                && n.counter("dropped-ether-type").is_ok_and(|x| x >= 1)
        },
    )?;
    assert_eq!(
        neigh(&nv),
        gw_mac_before,
        "the victim still reaches its gateway at the bridge's MAC"
    );
    let fdb = n.ns.sh(&format!(
        "bridge fdb show br nc0 | grep -i {} || true",
        victim.mac
    ))?;
    assert!(
        fdb.contains(&victim.host_interface) && !fdb.contains(&attacker.host_interface),
        "the victim's MAC stays on its own bridge port: {fdb}"
    );
    assert_eq!(
        nv.sh("cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6")?
            .trim(),
        "1",
        "no IPv6 on pods: no router advertisement taken"
    );
    // What reaches the victim from the node, and what it sends through the gateway:
    // none of it shows up at the attacker.
    let cap = netcore_tests::capture::Capture::start(&na, "eth0")?;
    assert!(
        traffic::ping(&n.ns.name, victim.ip, 3),
        "the node reaches the victim"
    );
    assert!(
        traffic::ping(&victim.name, gw, 3),
        "the victim reaches its gateway"
    );
    let seen: Vec<Seen> = cap.finish().iter().map(|f| packets::parse(f)).collect();
    let stolen: Vec<&Seen> = seen
        .iter()
        .filter(
            |s| matches!(s, Seen::Ipv4 { src, dst, .. } if *src == victim.ip || *dst == victim.ip),
        )
        .collect();
    assert!(
        stolen.is_empty(),
        "the attacker saw the victim's traffic: {stolen:?}"
    );
    Ok(())
}
