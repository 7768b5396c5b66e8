//! Services in eBPF: ClusterIP (TCP and UDP) balanced per connection, NodePort from
//! outside, backends changing under load, and bad input.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use anyhow::{Context, Result};
use netcore_agent::api::{service::ServiceStatus, PodInfo};
use netcore_tests::{
    capture::Capture,
    cluster::{Cluster, Node, Spec, StoreSpec, OUTSIDE_IP},
    echo,
    netns::Netns,
    packets::{self, Seen},
    wait_until,
};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

fn cluster(nodes: usize) -> Result<Cluster> {
    Cluster::new(Spec {
        nodes,
        store: StoreSpec::File,
        ..Spec::default()
    })
}

/// A pod on `node` with echo servers (TCP and UDP) on `port` answering `name`.
fn backend(c: &Cluster, node: usize, name: &str, port: u16) -> Result<PodInfo> {
    let p = c.node(node).add_pod(&c.pod_name(name))?;
    echo::tcp_server(&p.netns, port, name)?;
    echo::udp_server(&p.netns, port, name)?;
    Ok(p)
}

fn add_service(
    n: &Node,
    name: &str,
    vip: &str,
    backends: &[&PodInfo],
    port: u16,
    extra: &[&str],
) -> Result<ServiceStatus> {
    let mut args = vec![
        "service".to_string(),
        "add".into(),
        name.into(),
        "--vip".into(),
        vip.into(),
    ];
    for b in backends {
        args.push("--backend".into());
        args.push(format!("{}:{port}", b.ip));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    n.cli_json(&refs)
}

fn wait_routes(c: &Cluster) -> Result<()> {
    for n in &c.nodes {
        wait_until(
            Duration::from_secs(5),
            "every node to route to every other",
            || {
                n.status()
                    .is_ok_and(|s| s.nodes.iter().filter(|x| x.in_map).count() == c.nodes.len() - 1)
            },
        )?;
    }
    Ok(())
}

#[test]
fn a_clusterip_spreads_connections_over_backends_on_three_nodes() -> Result<()> {
    let c = cluster(3)?;
    wait_routes(&c)?;
    let backends: Vec<PodInfo> = (1..=3)
        .map(|i| backend(&c, i, &format!("be{i}"), 8080))
        .collect::<Result<_>>()?;
    let client = c.node(1).add_pod(&c.pod_name("client"))?;
    add_service(
        c.node(1),
        "web",
        "10.96.0.10:80/tcp",
        &backends.iter().collect::<Vec<_>>(),
        8080,
        &[],
    )?;
    wait_until(
        Duration::from_secs(5),
        "the service to reach node 3 through the store",
        || {
            c.node(3)
                .cli_json::<Vec<ServiceStatus>>(&["service", "list"])
                .is_ok_and(|l| l.len() == 1)
        },
    )?;

    let cap = Capture::start(&Netns::borrowed(&client.name, &client.netns), "eth0");
    let mut hits: HashMap<String, u32> = HashMap::new();
    for i in 0..300u32 {
        let data = format!("connection {i} {}", "x".repeat((i % 7) as usize * 100));
        let who = echo::tcp_exchange(&client.netns, SocketAddr::from((VIP, 80)), data.as_bytes())
            .with_context(|| format!("connection {i} through the VIP"))?;
        *hits.entry(who).or_default() += 1;
    }
    for be in ["be1", "be2", "be3"] {
        let share = *hits.get(be).unwrap_or(&0) as f64 / 300.0;
        assert!(
            (0.20..=0.47).contains(&share),
            "backend {be} got {:.0}% of 300 connections: {hits:?}",
            share * 100.0
        );
    }
    let frames = cap?.finish();
    let from_others: Vec<Seen> = frames
        .iter()
        .map(|f| packets::parse(f))
        .filter(
            |s| matches!(s, Seen::Ipv4 { dst, proto: 6, src } if *dst == client.ip && *src != VIP),
        )
        .collect();
    assert!(
        frames.len() > 300,
        "the capture saw the traffic ({} frames)",
        frames.len()
    );
    assert!(
        from_others.is_empty(),
        "the client must only see the service address: {:?}",
        &from_others[..from_others.len().min(5)]
    );
    let st: Vec<ServiceStatus> = c.node(1).cli_json(&["service", "list"])?;
    assert_eq!(
        st[0].connections, 300,
        "the service counted every connection: {st:?}"
    );
    Ok(())
}

#[test]
fn a_udp_service_answers_from_its_address() -> Result<()> {
    let c = cluster(2)?;
    wait_routes(&c)?;
    let b = backend(&c, 2, "dns", 5353)?;
    let client = c.node(1).add_pod(&c.pod_name("client"))?;
    add_service(c.node(1), "dns", "10.96.0.10:53/udp", &[&b], 5353, &[])?;
    let (who, from) = echo::udp_exchange(&client.netns, SocketAddr::from((VIP, 53)), b"query")?;
    assert_eq!(who, "dns");
    assert_eq!(
        from,
        SocketAddr::from((VIP, 53)),
        "the reply comes from the service address"
    );
    Ok(())
}

#[test]
fn nodeports_reach_local_and_remote_backends_from_outside() -> Result<()> {
    let c = cluster(2)?;
    wait_routes(&c)?;
    let local = backend(&c, 1, "local", 8080)?;
    let remote = backend(&c, 2, "remote", 8080)?;
    let n1 = c.node(1);
    add_service(
        n1,
        "to-local",
        "10.96.0.20:80/tcp",
        &[&local],
        8080,
        &["--node-port", "30080"],
    )?;
    add_service(
        n1,
        "to-remote",
        "10.96.0.21:80/tcp",
        &[&remote],
        8080,
        &["--node-port", "30081"],
    )?;
    add_service(
        n1,
        "keep",
        "10.96.0.22:80/tcp",
        &[&local],
        8080,
        &["--node-port", "30082", "--keep-source"],
    )?;
    for (port, who) in [(30080, "local"), (30081, "remote"), (30082, "local")] {
        let got = echo::tcp_exchange(
            &c.outside.path,
            SocketAddr::from((n1.ip, port)),
            b"from outside",
        )
        .with_context(|| format!("NodePort {port}"))?;
        assert_eq!(got, who, "NodePort {port} reaches the {who} backend");
    }
    // Which client address each backend saw: masqueraded, or kept.
    let seen = |port: u16| -> Result<IpAddr> {
        let l = netcore_tests::traffic::listen_tcp(&local.netns, port)?;
        let _c = netcore_tests::traffic::connect_tcp(
            &c.outside.path,
            SocketAddr::from((n1.ip, port + 22000)),
        )?;
        Ok(l.accept()?.1.ip())
    };
    add_service(
        n1,
        "masq-probe",
        "10.96.0.23:80/tcp",
        &[&local],
        9090,
        &["--node-port", "31090"],
    )?;
    add_service(
        n1,
        "keep-probe",
        "10.96.0.24:80/tcp",
        &[&local],
        9091,
        &["--node-port", "31091", "--keep-source"],
    )?;
    assert_eq!(
        seen(9090)?,
        IpAddr::V4(n1.ip),
        "masqueraded like KUBE-MARK-MASQ"
    );
    assert_eq!(
        seen(9091)?,
        IpAddr::V4(OUTSIDE_IP),
        "--keep-source keeps the client's address"
    );
    Ok(())
}

#[test]
fn a_removed_backend_gets_no_new_flows_and_others_keep_theirs() -> Result<()> {
    let c = cluster(1)?;
    let bs: Vec<PodInfo> = (1..=3)
        .map(|i| backend(&c, 1, &format!("b{i}"), 7000))
        .collect::<Result<_>>()?;
    let client = c.node(1).add_pod(&c.pod_name("client"))?;
    let n = c.node(1);
    add_service(
        n,
        "svc",
        "10.96.0.30:80/tcp",
        &bs.iter().collect::<Vec<_>>(),
        7000,
        &[],
    )?;
    let vip = SocketAddr::from((Ipv4Addr::new(10, 96, 0, 30), 80));
    // Long-lived connections: opened now, answered after the change.
    let open: Vec<std::net::TcpStream> = (0..30)
        .map(|_| netcore_tests::traffic::connect_tcp(&client.netns, vip))
        .collect::<Result<_>>()?;
    add_service(
        n,
        "svc",
        "10.96.0.30:80/tcp",
        &[&bs[0], &bs[1]],
        7000,
        &["--replace"],
    )?;
    let (mut survivors, mut reset) = (0, 0);
    for (i, mut s) in open.into_iter().enumerate() {
        use std::io::{Read, Write};
        let data = format!("still here {i}");
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reply = String::new();
        let sent = s
            .write_all(data.as_bytes())
            .and_then(|_| s.shutdown(std::net::Shutdown::Write))
            .and_then(|_| s.read_to_string(&mut reply));
        match sent {
            Ok(_) if reply.starts_with("b1:") || reply.starts_with("b2:") => {
                assert!(
                    reply.ends_with(&data),
                    "an established connection keeps echoing: {reply}"
                );
                survivors += 1;
            }
            // A connection to the removed backend is reset at once.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::NotConnected
                        | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                reset += 1
            }
            other => panic!(
                "connection {i}: neither an echo from b1/b2 nor a reset: {other:?} {reply:?}"
            ),
        }
    }
    assert!(
        survivors >= 10 && reset >= 1 && survivors + reset == 30,
        "connections to the remaining backends continue ({survivors} of 30), those to the removed one are reset ({reset})"
    );
    for i in 0..60 {
        let who = echo::tcp_exchange(&client.netns, vip, format!("new {i}").as_bytes())?;
        assert_ne!(who, "b3", "new connection {i} went to the removed backend");
    }
    Ok(())
}

#[test]
fn a_pod_reaches_itself_through_its_own_service() -> Result<()> {
    let c = cluster(1)?;
    let n1 = c.node(1);
    let pod = backend(&c, 1, "self", 8080)?;
    add_service(n1, "hairpin", "10.96.0.50:80/tcp", &[&pod], 8080, &[])?;
    add_service(n1, "hairpin-udp", "10.96.0.50:53/udp", &[&pod], 8080, &[])?;
    add_service(n1, "hairpin-probe", "10.96.0.51:80/tcp", &[&pod], 9099, &[])?;
    let vip = Ipv4Addr::new(10, 96, 0, 50);
    let who = echo::tcp_exchange(&pod.netns, (vip, 80).into(), b"to myself over TCP")?;
    assert_eq!(who, "self", "TCP through the service back to the same pod");
    let (who, from) = echo::udp_exchange(&pod.netns, (vip, 53).into(), b"to myself over UDP")?;
    assert_eq!(
        (who.as_str(), from),
        ("self", SocketAddr::from((vip, 53))),
        "UDP through the service back to the same pod, answered from the service address"
    );
    let l = netcore_tests::traffic::listen_tcp(&pod.netns, 9099)?;
    let _c = netcore_tests::traffic::connect_tcp(
        &pod.netns,
        SocketAddr::from((Ipv4Addr::new(10, 96, 0, 51), 80)),
    )?;
    assert_eq!(
        l.accept()?.1.ip(),
        IpAddr::V4(Ipv4Addr::new(10, 96, 0, 51)),
        "the pod, as a backend, sees its own connection come from the service address"
    );
    Ok(())
}

#[test]
fn the_nodes_own_processes_reach_services() -> Result<()> {
    let c = cluster(2)?;
    wait_routes(&c)?;
    let local = backend(&c, 1, "local", 8080)?;
    let remote = backend(&c, 2, "remote", 8080)?;
    let n1 = c.node(1);
    add_service(n1, "host-local", "10.96.0.60:80/tcp", &[&local], 8080, &[])?;
    add_service(
        n1,
        "host-remote",
        "10.96.0.61:80/tcp",
        &[&remote],
        8080,
        &[],
    )?;
    add_service(n1, "host-udp", "10.96.0.61:53/udp", &[&remote], 8080, &[])?;
    add_service(n1, "host-empty", "10.96.0.62:80/tcp", &[], 80, &[])?;
    let node = &n1.ns.path;
    let vip = |last: u8, port: u16| SocketAddr::from((Ipv4Addr::new(10, 96, 0, last), port));
    for (to, want) in [(vip(60, 80), "local"), (vip(61, 80), "remote")] {
        let who = echo::tcp_exchange(node, to, b"from the node itself")?;
        assert_eq!(who, want, "the node reaches {to} on its {want} backend");
    }
    let (who, from) = echo::udp_exchange(node, vip(61, 53), b"from the node itself")?;
    assert_eq!(
        (who.as_str(), from),
        ("remote", vip(61, 53)),
        "UDP from the node to a remote backend, answered from the service address"
    );
    assert_eq!(
        error_kind(netcore_tests::traffic::connect_tcp(node, vip(62, 80))),
        Some(std::io::ErrorKind::ConnectionRefused),
        "the node is refused at once by a service without backends"
    );
    Ok(())
}

#[test]
fn session_affinity_keeps_a_client_on_one_backend() -> Result<()> {
    let c = cluster(1)?;
    let n1 = c.node(1);
    let names = ["s1", "s2", "s3", "s4", "s5", "s6"];
    let pods = names
        .iter()
        .map(|n| backend(&c, 1, n, 8080))
        .collect::<Result<Vec<_>>>()?;
    let client = n1.add_pod(&c.pod_name("client"))?;
    let vip = SocketAddr::from((Ipv4Addr::new(10, 96, 0, 70), 80));
    let all: Vec<&PodInfo> = pods.iter().collect();
    add_service(
        n1,
        "sticky",
        "10.96.0.70:80/tcp",
        &all,
        8080,
        &["--session-affinity"],
    )?;
    let first = echo::tcp_exchange(&client.netns, vip, b"0")?;
    for i in 1..20 {
        let who = echo::tcp_exchange(&client.netns, vip, format!("{i}").as_bytes())?;
        assert_eq!(
            who, first,
            "connection {i} of the same client sticks to {first}"
        );
    }
    let keep = |gone: &[&str]| -> Result<()> {
        let rest: Vec<&PodInfo> = names
            .iter()
            .zip(&pods)
            .filter(|(n, _)| !gone.contains(*n))
            .map(|(_, p)| p)
            .collect();
        add_service(
            n1,
            "sticky",
            "10.96.0.70:80/tcp",
            &rest,
            8080,
            &["--session-affinity", "--replace"],
        )
        .map(drop)
    };
    // Its backend goes away: the client moves to another one, and sticks there.
    keep(&[&first])?;
    let second = echo::tcp_exchange(&client.netns, vip, b"moved")?;
    assert_ne!(
        second, first,
        "no new connection goes to the removed backend"
    );
    // Another backend goes away (the first listed): the client keeps its own.
    let other = names
        .iter()
        .find(|n| **n != first && **n != second)
        .unwrap();
    keep(&[&first, other])?;
    for i in 0..10 {
        let who = echo::tcp_exchange(&client.netns, vip, format!("again {i}").as_bytes())?;
        assert_eq!(
            who, second,
            "connection {i} sticks to {second}, also after {other} was removed"
        );
    }
    Ok(())
}

#[test]
fn masqueraded_nodeport_flows_from_one_client_port_keep_their_replies_apart() -> Result<()> {
    let c = cluster(1)?;
    let n1 = c.node(1);
    let pod = backend(&c, 1, "shared", 8080)?;
    add_service(
        n1,
        "np-a",
        "10.96.0.80:80/tcp",
        &[&pod],
        8080,
        &["--node-port", "30180"],
    )?;
    add_service(
        n1,
        "np-b",
        "10.96.0.81:80/tcp",
        &[&pod],
        8080,
        &["--node-port", "30181"],
    )?;
    // Both flows are masqueraded as the node towards the same backend address and
    // port: with the client's port kept on both, their replies would be one flow.
    let local = SocketAddr::from((OUTSIDE_IP, 40123));
    let first =
        netcore_tests::traffic::connect_tcp_from(&c.outside.path, local, (n1.ip, 30180).into())?;
    let second =
        netcore_tests::traffic::connect_tcp_from(&c.outside.path, local, (n1.ip, 30181).into())?;
    for (s, what) in [(first, "first"), (second, "second")] {
        let data = format!("the {what} flow");
        let who = echo::tcp_exchange_on(s, data.as_bytes())
            .with_context(|| format!("the {what} flow"))?;
        assert_eq!(who, "shared", "the {what} flow gets its own echo");
    }
    Ok(())
}

#[test]
fn a_direct_connection_on_a_former_service_flows_ports_is_not_rewritten() -> Result<()> {
    let c = cluster(1)?;
    let n1 = c.node(1);
    let pod = backend(&c, 1, "direct", 8080)?;
    add_service(n1, "via-vip", "10.96.0.90:80/tcp", &[&pod], 8080, &[])?;
    let node = &n1.ns.path;
    let local = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 40124));
    let vip = SocketAddr::from((Ipv4Addr::new(10, 96, 0, 90), 80));
    let via = echo::tcp_exchange_on(
        netcore_tests::traffic::connect_tcp_from(node, local, vip)?,
        b"through the service",
    )?;
    assert_eq!(via, "direct");
    // The same source port straight to the pod (its 4-tuple differs from the closed
    // service flow's): the old flow's entries must not rewrite the new one's replies.
    let to_pod = SocketAddr::from((pod.ip, 8080));
    let direct = netcore_tests::traffic::connect_tcp_from(node, local, to_pod)
        .context("connecting straight to the pod")?;
    assert_eq!(
        echo::tcp_exchange_on(direct, b"straight to the pod")?,
        "direct",
        "the direct flow's replies come from the pod, echoed whole"
    );
    Ok(())
}

/// The io error kind at the root of `r`'s error, if it failed.
fn error_kind<T>(r: Result<T>) -> Option<std::io::ErrorKind> {
    let err = r.err()?;
    err.chain()
        .find_map(|e| e.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind)
}

/// A UDP request on a connected socket; an ICMP port unreachable in answer makes
/// the receive fail with "connection refused".
fn udp_request(ns: &std::path::Path, to: SocketAddr) -> Result<usize> {
    let sock = netcore_tests::traffic::udp_socket(ns, 0)?;
    sock.connect(to)?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    sock.send(b"anyone?")?;
    Ok(sock.recv(&mut [0u8; 64])?)
}

#[test]
fn a_service_without_backends_refuses_at_once() -> Result<()> {
    let c = cluster(1)?;
    let n1 = c.node(1);
    let client = n1.add_pod(&c.pod_name("client"))?;
    let vip = Ipv4Addr::new(10, 96, 0, 40);
    add_service(
        n1,
        "empty",
        "10.96.0.40:80/tcp",
        &[],
        80,
        &["--node-port", "31040"],
    )?;
    add_service(
        n1,
        "empty-udp",
        "10.96.0.40:53/udp",
        &[],
        53,
        &["--node-port", "31053"],
    )?;
    let tcp = |ns: &std::path::Path, to: SocketAddr| {
        error_kind(netcore_tests::traffic::connect_tcp(ns, to))
    };
    let tries = [
        ("TCP from a pod", tcp(&client.netns, (vip, 80).into())),
        (
            "UDP from a pod",
            error_kind(udp_request(&client.netns, (vip, 53).into())),
        ),
        (
            "TCP to the NodePort from outside",
            tcp(&c.outside.path, (n1.ip, 31040).into()),
        ),
        (
            "UDP to the NodePort from outside",
            error_kind(udp_request(&c.outside.path, (n1.ip, 31053).into())),
        ),
    ];
    for (what, kind) in tries {
        assert_eq!(
            kind,
            Some(std::io::ErrorKind::ConnectionRefused),
            "{what}: the client is refused at once (a TCP reset, an ICMP port unreachable), not left to time out"
        );
    }
    let st: Vec<ServiceStatus> = n1.cli_json(&["service", "list"])?;
    for s in &st {
        assert!(s.rejected >= 2, "each refusal is counted: {st:?}");
    }
    Ok(())
}

#[test]
fn bad_services_are_refused_and_nothing_is_half_installed() -> Result<()> {
    let c = cluster(1)?;
    let n = c.node(1);
    n.cli(&[
        "service",
        "add",
        "ok",
        "--vip",
        "10.96.0.50:80/tcp",
        "--backend",
        "10.244.1.9:80",
    ])?;
    let cases: [(&[&str], &str); 8] = [
        (
            &[
                "service",
                "add",
                "np",
                "--vip",
                "10.96.0.54:80/udp",
                "--backend",
                "10.244.1.9:80",
                "--node-port",
                "8472",
            ],
            "NodePort 8472 is outside 30000-32767",
        ),
        (
            &[
                "service",
                "add",
                "sticky",
                "--vip",
                "10.96.0.53:80/tcp",
                "--backend",
                "10.244.1.9:80",
                "--affinity-seconds",
                "0",
            ],
            "session affinity of 0 seconds",
        ),
        (
            &[
                "service",
                "add",
                "inpod",
                "--vip",
                "10.244.1.50:80/tcp",
                "--backend",
                "10.244.1.9:80",
            ],
            "pod network",
        ),
        (
            &[
                "service",
                "add",
                "zero",
                "--vip",
                "10.96.0.51:0/tcp",
                "--backend",
                "10.244.1.9:80",
            ],
            "port 0",
        ),
        (
            &[
                "service",
                "add",
                "ok",
                "--vip",
                "10.96.0.52:80/tcp",
                "--backend",
                "10.244.1.9:80",
            ],
            "already exists",
        ),
        (
            &[
                "service",
                "add",
                "same",
                "--vip",
                "10.96.0.50:80/tcp",
                "--backend",
                "10.244.1.9:80",
            ],
            "already service ok",
        ),
        (
            &[
                "service",
                "add",
                "word",
                "--vip",
                "10.96.0.53:80/tcp",
                "--backend",
                "backend-a:80",
            ],
            "is not IP:PORT",
        ),
        (
            &[
                "service",
                "add",
                "twice",
                "--vip",
                "10.96.0.54:80/tcp",
                "--backend",
                "10.244.1.9:80",
                "--backend",
                "10.244.1.9:80",
            ],
            "twice",
        ),
    ];
    for (args, want) in cases {
        let out = n.cli_output(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must be refused");
        assert!(
            err.contains(want),
            "{args:?}: expected an error mentioning {want:?}, got {err}"
        );
    }
    let list: Vec<ServiceStatus> = n.cli_json(&["service", "list"])?;
    assert_eq!(list.len(), 1, "only the good service exists: {list:?}");
    assert_eq!(
        list[0].spec.vip.to_string(),
        "10.96.0.50:80",
        "and it is unchanged"
    );
    Ok(())
}

#[test]
fn backends_that_are_not_pods_answer_as_the_service() -> Result<()> {
    let c = cluster(2)?;
    wait_routes(&c)?;
    let n1 = c.node(1);
    // A process of node 1 (the `kubernetes` service's kind of backend), and a server
    // outside the cluster.
    echo::tcp_server(&n1.ns.path, 6443, "node")?;
    echo::tcp_server(&c.outside.path, 8443, "outside")?;
    let args = |vip: &str, backend: String| -> Vec<String> {
        [
            "service",
            "add",
            vip,
            "--vip",
            &format!("{vip}:443/tcp"),
            "--backend",
            &backend,
        ]
        .map(String::from)
        .to_vec()
    };
    let mut node_svc = args("10.96.0.41", format!("{}:6443", n1.ip));
    node_svc[2] = "apiserver".into();
    n1.cli(&node_svc.iter().map(String::as_str).collect::<Vec<_>>())?;
    let near = n1.add_pod(&c.pod_name("near"))?;
    let far = c.node(2).add_pod(&c.pod_name("far"))?;
    wait_until(Duration::from_secs(5), "node 2 to know the service", || {
        c.node(2).status().is_ok_and(|s| s.services.len() == 1)
    })?;
    let vip = SocketAddr::from((Ipv4Addr::new(10, 96, 0, 41), 443));
    for client in [&near, &far] {
        assert_eq!(
            echo::tcp_exchange(&client.netns, vip, b"hello")?,
            "node",
            "{} reaches the node's own process through the service",
            client.name
        );
    }
    if std::env::var_os(netcore_tests::NO_MASQUERADE_ENV).is_none() {
        let mut out_svc = args("10.96.0.42", format!("{OUTSIDE_IP}:8443"));
        out_svc[2] = "external".into();
        n1.cli(&out_svc.iter().map(String::as_str).collect::<Vec<_>>())?;
        let vip = SocketAddr::from((Ipv4Addr::new(10, 96, 0, 42), 443));
        assert_eq!(
            echo::tcp_exchange(&near.netns, vip, b"hello")?,
            "outside",
            "a pod reaches a backend outside the cluster through the service"
        );
    }
    Ok(())
}

#[test]
fn a_pod_reaches_a_nodeport_on_any_node() -> Result<()> {
    let c = cluster(2)?;
    wait_routes(&c)?;
    let web = backend(&c, 2, "np", 8080)?;
    add_service(
        c.node(1),
        "np",
        "10.96.0.43:80/tcp",
        &[&web],
        8080,
        &["--node-port", "30085"],
    )?;
    let client = c.node(1).add_pod(&c.pod_name("npc"))?;
    wait_until(
        Duration::from_secs(5),
        "both nodes to know the service",
        || {
            c.nodes
                .iter()
                .all(|n| n.status().is_ok_and(|s| s.services.len() == 1))
        },
    )?;
    for n in &c.nodes {
        let to = SocketAddr::from((n.ip, 30085));
        assert_eq!(
            echo::tcp_exchange(&client.netns, to, b"via a nodeport")?,
            "np",
            "a pod reaches the NodePort of {}",
            n.name
        );
    }
    Ok(())
}

#[test]
fn icmp_errors_of_backends_reach_the_client_as_the_services() -> Result<()> {
    let c = cluster(2)?;
    wait_routes(&c)?;
    let n1 = c.node(1);
    // Backends with nothing on the service's UDP port: their stacks answer "port
    // unreachable", about the packet they got (from the client, to themselves).
    let near = n1.add_pod(&c.pod_name("deafn"))?;
    let far = c.node(2).add_pod(&c.pod_name("deaff"))?;
    add_service(n1, "deaf-near", "10.96.0.44:53/udp", &[&near], 5399, &[])?;
    add_service(
        n1,
        "deaf-far",
        "10.96.0.45:53/udp",
        &[&far],
        5399,
        &["--node-port", "31045"],
    )?;
    let client = n1.add_pod(&c.pod_name("icl"))?;
    let tries = [
        (
            "a local backend",
            udp_request(&client.netns, (Ipv4Addr::new(10, 96, 0, 44), 53).into()),
        ),
        (
            "a remote backend",
            udp_request(&client.netns, (Ipv4Addr::new(10, 96, 0, 45), 53).into()),
        ),
        (
            "a remote backend through a NodePort, from outside (masqueraded)",
            udp_request(&c.outside.path, (n1.ip, 31045).into()),
        ),
    ];
    for (what, result) in tries {
        assert_eq!(
            error_kind(result),
            Some(std::io::ErrorKind::ConnectionRefused),
            "{what}: the backend's port unreachable reaches the client about the packet it sent (to the service), \
             so its socket hears it at once"
        );
    }
    Ok(())
}

/// Answers every datagram on `port` in `ns` with 3,000 bytes: the datagram's bytes
/// over and over (more than a pod's MTU: the answer leaves in fragments).
fn big_answers(ns: &std::path::Path, port: u16) -> Result<()> {
    let sock = netcore_tests::traffic::udp_socket(ns, port)?;
    sock.set_read_timeout(Some(Duration::from_secs(60)))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 9000];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let answer: Vec<u8> = buf[..n].iter().copied().cycle().take(BIG).collect();
            let _ = sock.send_to(&answer, from);
        }
    });
    Ok(())
}

const BIG: usize = 3000;

/// Sends `request` to `to` from `ns` on a connected socket; the answer.
fn big_exchange(ns: &std::path::Path, to: SocketAddr, request: &[u8]) -> Result<Vec<u8>> {
    let sock = netcore_tests::traffic::udp_socket(ns, 0)?;
    sock.connect(to)?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    sock.send(request)?;
    let mut buf = vec![0u8; 9000];
    let n = sock
        .recv(&mut buf)
        .with_context(|| format!("an answer from {to}"))?;
    buf.truncate(n);
    Ok(buf)
}

#[test]
fn fragmented_datagrams_of_service_flows_are_translated_whole() -> Result<()> {
    let c = cluster(2)?;
    wait_routes(&c)?;
    let n1 = c.node(1);
    let near = n1.add_pod(&c.pod_name("bign"))?;
    let far = c.node(2).add_pod(&c.pod_name("bigf"))?;
    for b in [&near, &far] {
        big_answers(&b.netns, 5300)?;
    }
    add_service(n1, "big-near", "10.96.0.46:53/udp", &[&near], 5300, &[])?;
    add_service(
        n1,
        "big-far",
        "10.96.0.47:53/udp",
        &[&far],
        5300,
        &["--node-port", "31047"],
    )?;
    let client = n1.add_pod(&c.pod_name("bigc"))?;
    // A large query (fragmented on its way to the backend) from pods; a small one from
    // outside, whose full-size fragments would not fit an encapsulation.
    let large: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
    let tries = [
        (
            "a local backend",
            &client.netns,
            SocketAddr::from((Ipv4Addr::new(10, 96, 0, 46), 53)),
            &large[..],
        ),
        (
            "a remote backend",
            &client.netns,
            SocketAddr::from((Ipv4Addr::new(10, 96, 0, 47), 53)),
            &large[..],
        ),
        (
            "a remote backend through a NodePort, from outside (masqueraded)",
            &c.outside.path,
            SocketAddr::from((n1.ip, 31047)),
            b"a small query".as_slice(),
        ),
    ];
    for (what, ns, to, request) in tries {
        let answer = big_exchange(ns, to, request).with_context(|| what.to_string())?;
        let expected: Vec<u8> = request.iter().copied().cycle().take(BIG).collect();
        assert!(
            answer == expected,
            "{what}: the backend got the whole query and its {BIG}-byte answer arrived whole \
             (every fragment translated), got {} bytes",
            answer.len()
        );
    }
    Ok(())
}

#[test]
fn the_nodes_own_processes_reach_its_nodeports_on_its_own_address() -> Result<()> {
    let c = cluster(2)?;
    wait_routes(&c)?;
    let n1 = c.node(1);
    let near = backend(&c, 1, "selfn", 8080)?;
    let far = backend(&c, 2, "selff", 8080)?;
    add_service(
        n1,
        "self-near",
        "10.96.0.48:80/tcp",
        &[&near],
        8080,
        &["--node-port", "31048"],
    )?;
    add_service(
        n1,
        "self-far",
        "10.96.0.49:80/tcp",
        &[&far],
        8080,
        &["--node-port", "31049"],
    )?;
    add_service(
        n1,
        "self-udp",
        "10.96.0.49:53/udp",
        &[&far],
        8080,
        &["--node-port", "31050"],
    )?;
    let log = n1.agent_log();
    assert!(
        log.contains("socket hooks attached"),
        "the agent attached its socket hooks:\n{log}"
    );
    // A process of node 1 (a health check, kubelet) to node 1's own address: no packet
    // of it would cross the uplink, where NodePorts are matched.
    for (port, who) in [(31048, "selfn"), (31049, "selff")] {
        assert_eq!(
            echo::tcp_exchange(&n1.ns.path, SocketAddr::from((n1.ip, port)), b"hello")?,
            who,
            "the node reaches NodePort {port} on its own address (a backend on {})",
            if who == "selfn" {
                "this node"
            } else {
                "the other node"
            }
        );
    }
    let to = SocketAddr::from((n1.ip, 31050));
    let (who, from) = echo::udp_exchange(&n1.ns.path, to, b"query")?;
    assert_eq!(
        (who.as_str(), from),
        ("selff", to),
        "a UDP NodePort answers the node as the NodePort, not as the backend"
    );
    let st: Vec<ServiceStatus> = n1.cli_json(&["service", "list"])?;
    assert!(
        st.iter().all(|s| s.connections >= 1),
        "each counted its connection: {st:?}"
    );
    Ok(())
}
