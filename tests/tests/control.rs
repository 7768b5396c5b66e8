//! The control plane: subnet leases in the cluster store (etcd, and the embedded file
//! store), nodes joining, leaving, restarting, and the store going away.

use std::{collections::HashSet, net::Ipv4Addr, time::Duration};

use anyhow::{Context, Result};
use netcore_agent::api::{NodeInfo, PodInfo};
use netcore_tests::{
    cluster::{Cluster, Node, Spec, StoreSpec},
    flannel::FlannelNode,
    netns::Netns,
    traffic::{self, Stream},
    wait_until,
};

const SHORT_TTL: &str = "lease_ttl = 3\n";

fn cluster(store: StoreSpec, nodes: usize) -> Result<Cluster> {
    Cluster::new(Spec {
        nodes,
        store,
        extra_config: SHORT_TTL.into(),
        ..Spec::default()
    })
}

fn pod_ns(p: &PodInfo) -> std::mem::ManuallyDrop<Netns> {
    Netns::borrowed(&p.name, &p.netns)
}

fn nodes_of(n: &Node) -> Vec<NodeInfo> {
    n.cli_json(&["node", "list"]).unwrap_or_default()
}

/// Waits until `n` routes to `subnet` (or, with `present` false, no longer does).
fn wait_route(n: &Node, subnet: &str, present: bool, timeout: Duration) -> Result<()> {
    wait_until(
        timeout,
        &format!(
            "{} to {} {subnet}",
            n.name,
            if present { "route" } else { "forget" }
        ),
        || {
            nodes_of(n)
                .iter()
                .any(|i| i.spec.pod_cidr.to_string() == subnet && i.in_map)
                == present
        },
    )
}

fn all_pods_reach_each_other(pods: &[PodInfo]) {
    for a in pods {
        for b in pods {
            if a.name != b.name {
                assert!(
                    traffic::ping(&a.name, b.ip, 1),
                    "{} must reach {} ({})",
                    a.name,
                    b.name,
                    b.ip
                );
            }
        }
    }
}

/// Three nodes lease distinct subnets and route to each other with no manual step.
fn three_nodes_find_each_other(store: StoreSpec) -> Result<()> {
    let c = cluster(store, 3)?;
    let subnets: HashSet<String> = c.nodes.iter().map(|n| n.pod_cidr.clone()).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    assert_eq!(
        subnets.len(),
        3,
        "each node leases its own subnet: {subnets:?}"
    );
    for n in &c.nodes {
        for other in &c.nodes {
            if other.name != n.name {
                wait_route(n, &other.pod_cidr, true, Duration::from_secs(5))?;
            }
        }
    }
    let leases = nodes_of(c.node(1));
    assert!(
        leases
            .iter()
            .all(|l| l.source == "store" && l.expires.is_some_and(|t| t > now && t <= now + 4)),
        "node list shows each lease with its expiry (TTL 3 s): {leases:?}"
    );
    let pods: Vec<PodInfo> = c
        .nodes
        .iter()
        .map(|n| n.add_pod(&c.pod_name(&format!("pod-{}", n.name))))
        .collect::<Result<_>>()?;
    all_pods_reach_each_other(&pods);
    Ok(())
}

/// Leaving (released or expired) removes a node everywhere; a joining node is
/// routed to within a second.
fn nodes_join_and_leave(store: StoreSpec) -> Result<()> {
    let mut c = cluster(store, 3)?;
    let (s2, s3) = (c.node(2).pod_cidr.clone(), c.node(3).pod_cidr.clone());
    wait_route(c.node(1), &s2, true, Duration::from_secs(5))?;
    c.node(2).cli(&["leave"])?;
    wait_route(c.node(1), &s2, false, Duration::from_secs(2))
        .context("a released lease disappears at once")?;
    wait_route(c.node(3), &s2, false, Duration::from_secs(2))?;

    c.node_mut(3).kill_agent();
    wait_route(c.node(1), &s3, false, Duration::from_secs(10))
        .context("an expired lease disappears")?;

    c.add_node(4)?;
    let s4 = c.node(4).pod_cidr.clone();
    wait_route(c.node(1), &s4, true, Duration::from_secs(1))
        .context("a new node is routed to within a second")?;
    let p1 = c.node(1).add_pod(&c.pod_name("p1"))?;
    let p4 = c.node(4).add_pod(&c.pod_name("p4"))?;
    all_pods_reach_each_other(&[p1, p4]);
    Ok(())
}

/// A restarted agent keeps its subnet and VTEP MAC; flows go on meanwhile.
fn restart_keeps_identity(store: StoreSpec) -> Result<()> {
    let mut c = cluster(store, 2)?;
    let a = c.node(1).add_pod(&c.pod_name("a"))?;
    let b = c.node(2).add_pod(&c.pod_name("b"))?;
    wait_route(
        c.node(1),
        &c.node(2).pod_cidr.clone(),
        true,
        Duration::from_secs(5),
    )?;
    let stream = Stream::start(&pod_ns(&a), &pod_ns(&b), b.ip)?;
    stream.wait_progress(1 << 20, Duration::from_secs(10))?;
    let before = c.node(1).status()?;
    c.node_mut(1).kill_agent();
    stream.wait_progress(1 << 20, Duration::from_secs(10))?;
    c.node_mut(1).start_agent()?;
    let after = c.node(1).status()?;
    assert_eq!(
        (after.pod_cidr, after.vtep_mac),
        (before.pod_cidr, before.vtep_mac),
        "same subnet and VTEP MAC"
    );
    stream.wait_progress(1 << 20, Duration::from_secs(10))?;
    stream.finish()?;
    Ok(())
}

#[test]
fn etcd_three_nodes_find_each_other() -> Result<()> {
    three_nodes_find_each_other(StoreSpec::Etcd(1))
}

#[test]
fn file_store_three_nodes_find_each_other() -> Result<()> {
    three_nodes_find_each_other(StoreSpec::File)
}

#[test]
fn etcd_nodes_join_and_leave() -> Result<()> {
    nodes_join_and_leave(StoreSpec::Etcd(1))
}

#[test]
fn file_store_nodes_join_and_leave() -> Result<()> {
    nodes_join_and_leave(StoreSpec::File)
}

#[test]
fn etcd_restart_keeps_subnet_and_vtep() -> Result<()> {
    restart_keeps_identity(StoreSpec::Etcd(1))
}

#[test]
fn file_store_restart_keeps_subnet_and_vtep() -> Result<()> {
    restart_keeps_identity(StoreSpec::File)
}

fn flannel_lease(public_ip: Ipv4Addr, vtep: &str) -> String {
    format!(
        r#"{{"PublicIP":"{public_ip}","BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{vtep}"}}}}"#
    )
}

#[test]
fn a_three_member_etcd_survives_losing_one() -> Result<()> {
    let mut c = cluster(StoreSpec::Etcd(3), 2)?;
    let a = c.node(1).add_pod(&c.pod_name("a"))?;
    let b = c.node(2).add_pod(&c.pod_name("b"))?;
    wait_route(
        c.node(1),
        &c.node(2).pod_cidr.clone(),
        true,
        Duration::from_secs(5),
    )?;
    wait_route(
        c.node(2),
        &c.node(1).pod_cidr.clone(),
        true,
        Duration::from_secs(5),
    )?;
    let created = |c: &Cluster| -> Result<Vec<Option<i64>>> {
        c.nodes
            .iter()
            .map(|n| {
                let key = n.status()?.store.context("a store")?.lease_key;
                c.etcd.as_ref().unwrap().create_revision(&key)
            })
            .collect()
    };
    let before = created(&c)?;
    assert!(
        before.iter().all(Option::is_some),
        "leases in etcd: {before:?}"
    );
    c.etcd.as_mut().unwrap().stop_member(0);
    let etcd = c.etcd.as_ref().unwrap();
    etcd.put(
        "/coreos.com/network/subnets/10.244.77.0-24",
        &flannel_lease("192.168.50.77".parse()?, "02:00:00:00:77:01"),
    )?;
    for n in &c.nodes {
        wait_route(n, "10.244.77.0/24", true, Duration::from_secs(15))
            .context("a lease written with one member down")?;
    }
    let pods = [a, b];
    all_pods_reach_each_other(&pods);
    // Three renewals (TTL 3 s, renewed every second) on the surviving members.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        created(&c)?,
        before,
        "no node may lose its lease while two of three members serve"
    );
    all_pods_reach_each_other(&pods);
    Ok(())
}

#[test]
fn with_etcd_gone_traffic_flows_and_the_agents_catch_up() -> Result<()> {
    let mut c = cluster(StoreSpec::Etcd(1), 2)?;
    let a = c.node(1).add_pod(&c.pod_name("a"))?;
    let b = c.node(2).add_pod(&c.pod_name("b"))?;
    wait_route(
        c.node(1),
        &c.node(2).pod_cidr.clone(),
        true,
        Duration::from_secs(5),
    )?;
    c.etcd.as_mut().unwrap().stop_member(0);
    wait_until(
        Duration::from_secs(15),
        "status to show the store down",
        || {
            c.node(1)
                .status()
                .is_ok_and(|s| s.store.is_some_and(|h| !h.connected))
        },
    )?;
    assert!(
        traffic::ping(&a.name, b.ip, 3),
        "pods keep talking with etcd down"
    );
    traffic::tcp_transfer(&pod_ns(&a), &pod_ns(&b), b.ip, 4 << 20)?;

    c.etcd.as_mut().unwrap().start_member(0, "existing")?;
    let etcd = c.etcd.as_ref().unwrap();
    etcd.wait_healthy()?;
    etcd.put(
        "/coreos.com/network/subnets/10.244.78.0-24",
        &flannel_lease("192.168.50.78".parse()?, "02:00:00:00:78:01"),
    )?;
    wait_route(c.node(1), "10.244.78.0/24", true, Duration::from_secs(20))
        .context("the agent catches up")?;
    assert!(c.node(1).status()?.store.is_some_and(|h| h.connected));
    Ok(())
}

#[test]
fn flannel_format_leases_in_etcd_interoperate() -> Result<()> {
    let c = cluster(StoreSpec::Etcd(1), 2)?;
    let etcd = c.etcd.as_ref().unwrap();
    // What netcore wrote reads back as flannel's format.
    let key = format!(
        "/coreos.com/network/subnets/{}",
        c.node(1).pod_cidr.replace('/', "-")
    );
    let value = etcd.ctl(&["get", &key, "--print-value-only"])?;
    let st = c.node(1).status()?;
    assert_eq!(
        value.trim(),
        flannel_lease(c.node(1).ip, &st.vtep_mac.to_string()),
        "netcore's lease is flannel's JSON"
    );
    let config = etcd.ctl(&["get", "/coreos.com/network/config", "--print-value-only"])?;
    let cfg: serde_json::Value = serde_json::from_str(config.trim())?;
    assert_eq!(
        (cfg["Network"].as_str(), cfg["SubnetLen"].as_u64()),
        (Some("10.244.0.0/16"), Some(24))
    );

    // A flannel node announces itself the way flannel does, with etcdctl.
    let fl = FlannelNode::new(&c, 99)?;
    for n in &c.nodes {
        let s = n.status()?;
        fl.add_peer(
            s.pod_cidr.network(),
            s.pod_cidr.prefix_len(),
            &s.vtep_mac.to_string(),
            n.ip,
        )?;
    }
    etcd.put(
        "/coreos.com/network/subnets/10.244.99.0-24",
        &flannel_lease(fl.ip, &fl.vtep_mac),
    )?;
    wait_route(c.node(1), "10.244.99.0/24", true, Duration::from_secs(5))?;
    let a = c.node(1).add_pod(&c.pod_name("a"))?;
    assert!(
        traffic::ping(&a.name, fl.pod_ip, 3),
        "a netcore pod reaches the flannel node's pod"
    );
    assert!(traffic::ping(&fl.pod.name, a.ip, 3), "and back");
    Ok(())
}

#[test]
fn bad_store_data_is_skipped_and_good_routes_stay() -> Result<()> {
    let c = cluster(StoreSpec::Etcd(1), 2)?;
    let s2 = c.node(2).pod_cidr.clone();
    wait_route(c.node(1), &s2, true, Duration::from_secs(5))?;
    let etcd = c.etcd.as_ref().unwrap();
    let key2 = format!("/coreos.com/network/subnets/{}", s2.replace('/', "-"));
    let good = etcd.ctl(&["get", &key2, "--print-value-only"])?;
    for (key, value) in [
        ("/coreos.com/network/subnets/10.244.80.0-24", "{not json"),
        (
            "/coreos.com/network/subnets/10.244.81.0-24",
            r#"{"PublicIP":"192.168.50.81","BackendType":"udp","BackendData":{}}"#,
        ),
        (
            "/coreos.com/network/subnets/not-a-subnet",
            &flannel_lease("192.168.50.82".parse()?, "02:00:00:00:82:01"),
        ),
        (
            "/coreos.com/network/subnets/10.99.0.0-24",
            &flannel_lease("192.168.50.83".parse()?, "02:00:00:00:83:01"),
        ),
        (key2.as_str(), "garbage written over a good lease"),
    ] {
        etcd.put(key, value)?;
    }
    etcd.put(
        "/coreos.com/network/subnets/10.244.84.0-24",
        &flannel_lease("192.168.50.84".parse()?, "02:00:00:00:84:01"),
    )?;
    wait_route(c.node(1), "10.244.84.0/24", true, Duration::from_secs(5))
        .context("good leases still apply")?;
    let nodes = nodes_of(c.node(1));
    for bad in ["10.244.80.0/24", "10.244.81.0/24", "10.99.0.0/24"] {
        assert!(
            nodes.iter().all(|n| n.spec.pod_cidr.to_string() != bad),
            "{bad} must be skipped: {nodes:?}"
        );
    }
    assert!(
        nodes
            .iter()
            .any(|n| n.spec.pod_cidr.to_string() == s2 && n.in_map),
        "a lease turned bad keeps its last good route"
    );
    etcd.put(&key2, good.trim())?;
    assert!(c.node(1).status().is_ok(), "the agent is unharmed");

    // A config that is not JSON: running agents go on, a new agent says why it
    // cannot start.
    etcd.put("/coreos.com/network/config", "{broken")?;
    let mut c = c;
    let err = c
        .add_node(3)
        .expect_err("no lease from a broken network config");
    assert!(
        format!("{err:#}").contains("not valid JSON"),
        "the error says why: {err:#}"
    );
    assert!(c.node(2).status().is_ok(), "running agents are unharmed");
    Ok(())
}

#[test]
fn an_invalid_network_config_is_refused_at_start() -> Result<()> {
    let c = cluster(StoreSpec::Etcd(1), 0)?;
    let etcd = c.etcd.as_ref().unwrap();
    etcd.put(
        "/coreos.com/network/config",
        r#"{"Network":"10.244.0.0/16","SubnetLen":8,"Backend":{"Type":"vxlan"}}"#,
    )?;
    let mut c = c;
    let err = c
        .add_node(1)
        .expect_err("an agent cannot lease from an invalid network config");
    assert!(
        format!("{err:#}").contains("SubnetLen 8 does not fit"),
        "the error says why: {err:#}"
    );
    Ok(())
}

#[test]
fn a_tls_etcd_that_requires_client_certificates_and_a_password() -> Result<()> {
    let c = cluster(StoreSpec::EtcdSecure, 2)?;
    wait_route(
        c.node(1),
        &c.node(2).pod_cidr,
        true,
        Duration::from_secs(10),
    )?;
    wait_route(
        c.node(2),
        &c.node(1).pod_cidr,
        true,
        Duration::from_secs(10),
    )?;
    let a = c.node(1).add_pod(&c.pod_name("ta"))?;
    let b = c.node(2).add_pod(&c.pod_name("tb"))?;
    all_pods_reach_each_other(&[a, b]);
    let etcd = c.etcd.as_ref().context("etcd")?;
    let key = c.node(1).status()?.store.context("store")?.lease_key;
    assert!(
        etcd.ctl(&["get", &key])?.contains("PublicIP"),
        "the lease went through TLS and authentication into etcd"
    );
    // What a pod (or anyone on the underlay) without the client certificate gets.
    let secure = etcd.secure.as_ref().context("secured")?;
    let endpoint = format!("https://{}:2379", etcd.ip);
    let bare = c.outside.output(&[
        "etcdctl",
        "--endpoints",
        &endpoint,
        &format!("--cacert={}", secure.ca.display()),
        "--user",
        &format!("{}:{}", secure.user, secure.password),
        "put",
        &key,
        "forged",
    ]);
    assert!(
        !bare.status.success(),
        "without a client certificate etcd refuses writes"
    );
    let no_password = c.outside.output(&[
        "etcdctl",
        "--endpoints",
        &endpoint,
        &format!("--cacert={}", secure.ca.display()),
        &format!("--cert={}", secure.cert.display()),
        &format!("--key={}", secure.key.display()),
        "put",
        &key,
        "forged",
    ]);
    assert!(
        !no_password.status.success(),
        "without the password etcd refuses writes"
    );
    Ok(())
}

#[test]
fn an_agent_without_the_client_certificate_is_told_why() -> Result<()> {
    let mut c = cluster(StoreSpec::EtcdSecure, 1)?;
    let config = std::fs::read_to_string(&c.node(1).config)?;
    let kept: String = config
        .lines()
        .filter(|l| !l.starts_with("etcd_certfile") && !l.starts_with("etcd_keyfile"))
        .map(|l| format!("{l}\n"))
        .collect();
    c.node_mut(1).kill_agent();
    std::fs::write(&c.node(1).config, &kept)?;
    // The agent keeps its subnet (forwarding goes on) and retries; status and log
    // say the store refuses it.
    c.node_mut(1).start_agent()?;
    let n = c.node(1);
    wait_until(
        Duration::from_secs(15),
        "status to show the store refusing",
        || {
            n.status()
                .is_ok_and(|s| s.store.is_some_and(|h| !h.connected && !h.lease_held))
        },
    )
    .with_context(|| n.agent_log())?;
    assert!(
        n.agent_log().contains("cannot reach the cluster store"),
        "the log names the store's refusal:\n{}",
        n.agent_log()
    );
    Ok(())
}
