//! The operator's endpoints: `/readyz` only once the programs are attached and the
//! lease is held, `/metrics` counting exactly the traffic sent.

use std::{
    io::{Read, Write},
    net::{TcpStream, UdpSocket},
    time::Duration,
};

use anyhow::{Context, Result};
use netcore_agent::api::PodInfo;
use netcore_tests::{
    cluster::{Cluster, Node, Spec, StoreSpec},
    traffic, wait_until,
};

/// GET `path` from the agent's metrics address inside the node's namespace.
fn get(n: &Node, path: &str) -> Result<(u16, String)> {
    let mut s: TcpStream = n.ns.run(|| TcpStream::connect(("127.0.0.1", 9464)))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status line")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// The value of one sample line `name{…labels…}` containing `label`.
fn sample(metrics: &str, name: &str, label: &str) -> Option<u64> {
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn readyz_waits_for_the_lease_and_metrics_count_the_traffic() -> Result<()> {
    let mut c = Cluster::new(Spec {
        nodes: 0,
        store: StoreSpec::Etcd(1),
        ..Spec::default()
    })?;
    c.etcd.as_mut().unwrap().stop_member(0);
    c.spawn_node(1)?;
    wait_until(
        Duration::from_secs(15),
        "the metrics endpoint to answer",
        || get(c.node(1), "/healthz").is_ok(),
    )?;
    assert_eq!(
        get(c.node(1), "/healthz")?.0,
        200,
        "healthz answers as soon as the process serves"
    );
    let (code, body) = get(c.node(1), "/readyz")?;
    assert_eq!(code, 503, "not ready without a lease: {body}");

    c.etcd.as_mut().unwrap().start_member(0, "existing")?;
    c.etcd.as_ref().unwrap().wait_healthy()?;
    wait_until(
        Duration::from_secs(30),
        "/readyz to turn ready once the lease is held",
        || get(c.node(1), "/readyz").is_ok_and(|(code, _)| code == 200),
    )?;
    c.nodes[0].wait_agent()?;
    let st = c.node(1).status()?;
    assert!(
        st.programs.len() >= 2,
        "programs are attached when ready: {:?}",
        st.programs
    );
    assert!(
        st.store.is_some_and(|h| h.connected),
        "and the lease is held"
    );

    let n = c.node(1);
    let a: PodInfo = n.add_pod(&c.pod_name("a"))?;
    let b: PodInfo = n.add_pod(&c.pod_name("b"))?;
    let rx: UdpSocket = traffic::udp_socket(&b.netns, 9999)?;
    let tx: UdpSocket = traffic::udp_socket(&a.netns, 0)?;
    tx.send_to(b"warm-up", (b.ip, 9999))?; // resolves ARP (not counted as redirected)
    rx.set_read_timeout(Some(Duration::from_secs(5)))?;
    rx.recv(&mut [0u8; 64])?;

    let (_, before) = get(n, "/metrics")?;
    let redirected = |m: &str| {
        sample(
            m,
            "netcore_datapath_packets_total",
            "reason=\"redirected-local\"",
        )
    };
    let redirected_bytes = |m: &str| {
        sample(
            m,
            "netcore_datapath_bytes_total",
            "reason=\"redirected-local\"",
        )
    };
    const SENT: u64 = 50;
    for _ in 0..SENT {
        tx.send_to(&[7u8; 100], (b.ip, 9999))?;
        rx.recv(&mut [0u8; 200])?;
    }
    let (_, after) = get(n, "/metrics")?;
    let packets = redirected(&after).context("counter missing")?
        - redirected(&before).context("counter missing")?;
    let bytes = redirected_bytes(&after).unwrap() - redirected_bytes(&before).unwrap();
    assert_eq!(
        packets, SENT,
        "every datagram and nothing else took the redirect path:\n{after}"
    );
    assert_eq!(bytes, SENT * (14 + 20 + 8 + 100), "bytes counted per frame");
    assert_eq!(sample(&after, "netcore_pods", ""), Some(2));
    assert_eq!(
        sample(&after, "netcore_store_connected", "backend=\"etcd\""),
        Some(1)
    );
    assert!(
        after.contains("netcore_program_attached{"),
        "attach state is exported"
    );
    Ok(())
}

#[test]
fn metrics_speak_http_1_1_and_parse_with_the_prometheus_projects_parsers() -> Result<()> {
    let c = Cluster::new(Spec::default())?;
    let n = c.node(1);
    let url = "http://127.0.0.1:9464";
    wait_until(Duration::from_secs(10), "the metrics endpoint", || {
        get(n, "/metrics").is_ok_and(|(code, body)| code == 200 && body.contains("netcore_pods"))
    })?;
    // Traffic, so that the per-pod flow families have samples to parse.
    let a = n.add_pod(&c.pod_name("pa"))?;
    let b = n.add_pod(&c.pod_name("pb"))?;
    assert!(traffic::ping(&a.name, b.ip, 2), "a reaches b");
    // Two requests on one connection: keep-alive.
    let verbose = n.ns.sh(&format!(
        "curl -sv {url}/healthz {url}/metrics -o /dev/null -o /dev/null 2>&1"
    ))?;
    assert!(
        verbose.contains("existing connection"),
        "curl reuses the connection for the second request:\n{verbose}"
    );
    let head = n.ns.sh(&format!("curl -sI {url}/metrics"))?;
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("text/plain; version=0.0.4"),
        "HEAD answers like GET, without a body:\n{head}"
    );
    let om = n.ns.sh(&format!(
        "curl -s -D - -H 'Accept: application/openmetrics-text; version=1.0.0' {url}/metrics"
    ))?;
    assert!(
        om.contains("application/openmetrics-text") && om.trim_end().ends_with("# EOF"),
        "OpenMetrics for a scraper that asks for it:\n{om}"
    );
    // Debian's python3-prometheus-client: the project's own parsers, both formats.
    let parse = |parser: &str, accept: &str| {
        n.ns.sh(&format!(
            "curl -s -H 'Accept: {accept}' {url}/metrics | /usr/bin/python3 -c '
import sys
from {parser} import text_string_to_metric_families as parse
families = {{f.name: f for f in parse(sys.stdin.read())}}
talkers = families[\"netcore_pod_talker_bytes\"]
print(len(families), families[\"netcore_datapath_packets\"].type, families[\"netcore_datapath_bytes\"].unit,
      talkers.type, len(talkers.samples))'"
        ))
    };
    let text = parse("prometheus_client.parser", "text/plain")?;
    assert!(
        text.starts_with(|c: char| c.is_ascii_digit()) && text.contains("counter"),
        "{text}"
    );
    let open = parse(
        "prometheus_client.openmetrics.parser",
        "application/openmetrics-text",
    )?;
    assert!(
        open.contains("counter bytes"),
        "OpenMetrics with units: {open}"
    );
    for out in [&text, &open] {
        assert!(
            out.trim_end().ends_with("gauge 4"),
            "a's and b's talker bytes, sent and received each: {out}"
        );
    }
    Ok(())
}

/// `netcore status --flows` and the per-pod metrics: each pod's talkers with exactly
/// the packets sent each way, on one node and across nodes, and a spoofing pod's
/// drops counted against it (whatever source it claimed).
#[test]
fn flow_summary_names_each_pods_talkers_and_drops() -> Result<()> {
    use netcore_agent::flows::FlowSummary;
    let c = Cluster::new(Spec {
        nodes: 2,
        ..Spec::default()
    })?;
    c.mesh()?;
    let (n1, n2) = (c.node(1), c.node(2));
    let a = n1.add_pod(&c.pod_name("fa"))?;
    let b = n1.add_pod(&c.pod_name("fb"))?;
    let r = n2.add_pod(&c.pod_name("fr"))?;
    assert!(traffic::ping(&a.name, b.ip, 4), "a reaches b");
    assert!(traffic::ping(&a.name, r.ip, 3), "a reaches r on node 2");
    // a claims an address it does not have (the gateway's neighbour entry is known).
    let spoofed = "10.244.1.77";
    let pod_a = netcore_tests::netns::Netns::borrowed(&a.name, &a.netns);
    pod_a.sh(&format!(
        "ip addr add {spoofed}/32 dev eth0 && \
         echo spoof | socat -u - UDP4-SENDTO:{}:9,bind={spoofed}",
        r.ip
    ))?;

    let s: FlowSummary = n1.cli_json(&["status", "--flows"])?;
    assert!(s.enabled, "flow accounting is on by default");
    let pod = |name: &str| {
        s.pods
            .iter()
            .find(|p| p.pod == name)
            .unwrap_or_else(|| panic!("{name} in the summary: {s:?}"))
    };
    let talker = |p: &netcore_agent::flows::PodFlows, peer| {
        p.talkers
            .iter()
            .find(|t| t.peer == peer)
            .unwrap_or_else(|| panic!("{peer} among {}'s talkers: {p:?}", p.pod))
            .clone()
    };
    let (pa, pb) = (pod(&a.name), pod(&b.name));
    let a_b = talker(pa, b.ip);
    assert_eq!(
        (a_b.sent.packets, a_b.received.packets, a_b.name.as_deref()),
        (4, 4, Some(b.name.as_str())),
        "4 echo requests to b, 4 replies from it"
    );
    assert_eq!(a_b.sent.bytes, 4 * (14 + 20 + 8 + 56), "bytes per frame");
    let a_r = talker(pa, r.ip);
    assert_eq!(
        (a_r.sent.packets, a_r.received.packets, a_r.name.as_deref()),
        (3, 3, Some("n2")),
        "3 pings to node 2's pod (named by its node), answers unwrapped into a"
    );
    assert_eq!(
        (a_r.sent.bytes, a_r.received.bytes),
        (3 * 98, 3 * 98),
        "the pod's own frames, not their encapsulation"
    );
    assert_eq!(
        pa.drops.get("dropped-spoofed-source"),
        Some(&1),
        "the spoofed datagram is a's drop"
    );
    assert_eq!(
        talker(pb, a.ip).received.packets,
        4,
        "b's side of the pings"
    );

    let only_b: FlowSummary =
        n1.cli_json(&["status", "--flows", "--pod", &b.name, "--top", "1"])?;
    assert_eq!(only_b.pods.len(), 1, "--pod filters: {only_b:?}");
    assert_eq!(only_b.pods[0].talkers.len(), 1, "--top 1");
    let text = n1.cli(&["status", "--flows"])?;
    assert!(
        text.contains(&a.name) && text.contains("dropped-spoofed-source"),
        "{text}"
    );

    let (_, m) = get(n1, "/metrics")?;
    let a_label = format!("pod=\"{}\",direction=\"sent\"", a.name);
    assert_eq!(
        sample(&m, "netcore_pod_packets", &a_label),
        Some(4 + 3),
        "{m}"
    );
    let drop_label = format!("pod=\"{}\",reason=\"dropped-spoofed-source\"", a.name);
    assert_eq!(sample(&m, "netcore_pod_drops", &drop_label), Some(1), "{m}");
    Ok(())
}
