//! Network policy under a flood: allowed new flows by the hundred thousand (spoofed
//! SYNs to a pod that admits the world) do not make the data path forget a connection
//! in use. A binary of its own: the flood takes both CPUs for seconds, which tests
//! with short timeouts beside it would feel.

use std::{io::Read, net::SocketAddr, time::Duration};

use anyhow::{Context, Result};
use netcore_agent::api::PodInfo;
use netcore_tests::{
    cluster::{Cluster, Spec, StoreSpec},
    flood, traffic, wait_until,
};

/// Spoofed SYNs of the policy flood test: distinct flows, more than the table of
/// remembered flows (`NC_POLICY_CT`, 262,144) holds.
const FLOOD: u32 = 400_000;

/// The policies of the flood test: `victim` admits the client on 8080 and sends
/// nothing of its own (egress isolated, no rule): its data passes only as part of the
/// allowed connection. `web` admits anyone on 80.
const FLOOD_POLICIES: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: victim, namespace: default}
spec:
  podSelector: {matchLabels: {app: victim}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{protocol: TCP, port: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from: [{ipBlock: {cidr: 0.0.0.0/0}}]
    ports: [{protocol: TCP, port: 80}]
";

#[test]
fn a_policy_allowed_connection_survives_a_flood_of_allowed_new_flows() -> Result<()> {
    use std::io::Write as _;
    let c = Cluster::new(Spec {
        store: StoreSpec::File,
        ..Spec::default()
    })?;
    let n = c.node(1);
    let pod = |tag: &str, app: &str| -> Result<PodInfo> {
        n.cli_json(&[
            "pod",
            "add",
            &c.pod_name(tag),
            "--label",
            &format!("app={app}"),
        ])
    };
    let (victim, client, web) = (
        pod("pv", "victim")?,
        pod("pc", "client")?,
        pod("pw", "web")?,
    );
    // Keeping the client's address, each spoofed SYN is a new flow policy admits.
    let backend = format!("{}:80", web.ip);
    n.cli(&[
        "service",
        "add",
        "web",
        "--vip",
        "10.96.0.21:80/tcp",
        "--backend",
        &backend,
        "--node-port",
        "30091",
        "--keep-source",
    ])?;
    let file = c.dir().join("flood-policies.yaml");
    std::fs::write(&file, FLOOD_POLICIES)?;
    n.cli(&["policy", "apply", "-f", &file.display().to_string()])?;
    wait_until(
        Duration::from_secs(10),
        "both policies to select their pod",
        || {
            n.cli_json::<Vec<netcore_agent::agent::PolicyInfo>>(&["policy", "list"])
                .is_ok_and(|l| l.len() == 2 && l.iter().all(|p| p.pods.len() == 1))
        },
    )?;
    let listener = traffic::listen_tcp(&victim.netns, 8080)?;
    let mut conn = traffic::connect_tcp(&client.netns, SocketAddr::from((victim.ip, 8080)))?;
    let (mut server, _) = listener.accept()?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    server.write_all(b"hello")?;
    let mut buf = [0u8; 5];
    conn.read_exact(&mut buf)
        .context("the victim's first words")?;

    let mac: netcore_agent::mac::Mac = n.ns.sh("cat /sys/class/net/ul0/address")?.trim().parse()?;
    // More distinct flows than the table of remembered flows holds, each sent twice:
    // the second SYN finds its flow remembered and marks it used, as the victim's
    // connection was (the kernel's LRU evicts entries never used again first).
    for round in 1..=2u64 {
        flood::syn_flood(&c.outside, "ul0", mac.0, n.ip, 30091, FLOOD)?;
        wait_until(
            Duration::from_secs(240),
            "the flood to be through the node",
            || {
                n.status().is_ok_and(|s| {
                    s.services.iter().map(|v| v.packets).sum::<u64>()
                        >= round * FLOOD as u64 * 4 / 5
                })
            },
        )?;
    }
    let hits: Vec<netcore_agent::agent::PolicyInfo> = n.cli_json(&["policy", "list"])?;
    assert!(
        hits.iter()
            .any(|p| p.name == "web" && p.hits >= FLOOD as u64 * 4 / 5),
        "policy admitted (and remembered) every flooding flow: {:?}",
        hits.iter().map(|p| (&p.name, p.hits)).collect::<Vec<_>>()
    );
    // The victim speaks first after the flood: only the remembered connection lets it.
    server.write_all(b"still")?;
    conn.read_exact(&mut buf)
        .context("the victim's words after the flood (its connection was forgotten?)")?;
    assert_eq!(
        &buf, b"still",
        "an established allowed connection is never evicted by new flows"
    );
    Ok(())
}
