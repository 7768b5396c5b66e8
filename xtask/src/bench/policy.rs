//! Network policy (issue 14): new TCP connections per second and 1-stream throughput
//! from a client pod to a server pod on one node, with 0 and with N policies, netcore's
//! policy maps beside iptables enforcement as kube-router builds it. Every policy
//! selects the server pod (the case where all N are in force for the measured flows);
//! the one that admits the client comes last. netcore's beds also know 1,000 pods on
//! four other nodes from their file store, which the other policies' peers select.
//!
//! - `pol-netcore-N`: an agent with a file store, pods from `netcore pod add` (namespace
//!   `bench`), N policies from one `netcore policy apply`.
//! - `pol-iptables-N`: the `bridge` layout with br_netfilter, and kube-router's filter
//!   rules loaded with `ipset restore` and `iptables-restore` in the node namespace:
//!   `FORWARD` jumps to `KUBE-ROUTER-FORWARD`, which sends what is addressed to the
//!   server pod to its `KUBE-POD-FW-…` chain; that accepts established flows, then
//!   jumps to every policy's `KUBE-NWPLCY-…` chain (source and destination ipsets,
//!   protocol and port; a match marks the packet), and drops what no policy marked.

use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{
    agent::{Agent, AgentSpec},
    beds::{self, Made, MetricSpec, Rules, Suite},
    control_plane, cps,
    datapaths::{Context, Target},
    iperf, rr, signals,
    testbed::{pod_cidr, pod_ip, uplink_stub},
};

/// The cps and rr tools' port, and iperf3's.
const PORTS: [u16; 2] = [rr::PORT, 5201];
const VXLAN_OVERHEAD: u32 = 50;
/// Pods on other nodes that netcore's beds know from the store.
const REMOTE_PODS: usize = 1000;
const REMOTE_NODES: usize = 4;
/// Namespaces the other policies' peers are in.
const TEAMS: usize = 50;
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const PREFIX: &str = "coreos.com/network";

const METRICS: [MetricSpec; 2] = [
    ("connections_per_s", "connections/s", true),
    ("tcp_1_stream", "Gbit/s", true),
];

/// Policy counts (the first is the baseline, normally 0), rounds, seconds per
/// measurement, congestion control.
pub struct Plan {
    pub counts: Vec<usize>,
    pub rounds: u32,
    pub seconds: u32,
    pub cc: &'static str,
}

pub fn run(ctx: &Context, plan: &Plan) -> Result<beds::Outcome> {
    let suite = Suite {
        prefix: "pol",
        sizes: &plan.counts,
        rounds: plan.rounds,
        metrics: &METRICS,
    };
    let make = |kind: &str, tag: &str, n: usize| match kind {
        beds::NETCORE => netcore_bed(ctx, tag, n),
        _ => iptables_bed(ctx, tag, n),
    };
    suite.run(make, |t| turn(t, plan))
}

fn turn(t: &Target, plan: &Plan) -> Result<Vec<f64>> {
    let c = cps::measure(t, rr::PORT, plan.seconds).context("connections per second")?;
    let (tcp, _) = iperf::run(t, 1, plan.seconds, plan.cc).context("iperf3")?;
    Ok(vec![c.connections_per_s, tcp.gbit_per_s])
}

/// Remote pod `i`: on node `i % REMOTE_NODES` (10.244.100.0/24 and on), namespace
/// `team{i % TEAMS}`, label `app=app{i}`.
fn remote_pod(i: usize) -> (Ipv4Addr, String, String) {
    let node = (i % REMOTE_NODES) as u8;
    let host = (i / REMOTE_NODES + 2) as u8;
    (
        Ipv4Addr::new(10, 244, 100 + node, host),
        format!("team{}", i % TEAMS),
        format!("app{i}"),
    )
}

/// One netcore node with a file store, the remote nodes' leases and pods in it, a
/// client and a server pod, and `n` policies.
fn netcore_bed(ctx: &Context, tag: &str, n: usize) -> Result<Made> {
    let node = ctx.namer.netns(&format!("{tag}-n1"))?;
    uplink_stub(&node, ctx.mtu)?;
    let store = ctx.work_dir.join(format!("store-{tag}"));
    write_remote_pods(&store)?;
    let name = format!("{tag}-n1");
    let url = format!("file://{}", store.display());
    let spec = AgentSpec {
        name: &name,
        pod_cidr: &pod_cidr(1),
        cluster_cidr: "10.244.0.0/16",
        store: Some(&url),
        extra: "",
    };
    let agent = Agent::start(ctx, &node, &spec)?;
    let client = ctx.namer.name(&format!("{tag}-a"));
    let server = ctx.namer.name(&format!("{tag}-b"));
    pod_add(&agent, &client, "client")?;
    beds::tune_client(&client)?;
    let server_ip = pod_add(&agent, &server, "server")?;
    wait_remote_pods(&agent)?;
    if n > 0 {
        let file = ctx.work_dir.join(format!("{tag}-policies.yaml"));
        std::fs::write(&file, policies_yaml(n))
            .with_context(|| format!("writing {}", file.display()))?;
        agent.cli(&["policy", "apply", "-f", &file.to_string_lossy()])?;
        check_selected(&agent, n)?;
    }
    let target = Target {
        client,
        server,
        server_ip,
        path_mtu: ctx.mtu - VXLAN_OVERHEAD,
    };
    Ok((target, vec![Box::new(agent), Box::new(node)]))
}

fn pod_add(agent: &Agent, name: &str, app: &str) -> Result<Ipv4Addr> {
    let label = format!("app={app}");
    let pod = agent.cli_json(&[
        "pod",
        "add",
        name,
        "--namespace",
        "bench",
        "--label",
        &label,
    ])?;
    pod["ip"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .with_context(|| format!("`netcore pod add` gave no address: {pod}"))
}

/// The remote nodes' leases and their pods, as other agents would have written them
/// (each file whole, never expiring).
fn write_remote_pods(store: &Path) -> Result<()> {
    let subnets = store.join(PREFIX).join("subnets");
    let pods = store.join(PREFIX).join("pods");
    std::fs::create_dir_all(&subnets)?;
    std::fs::create_dir_all(&pods)?;
    for i in 0..REMOTE_NODES {
        let n = i as u8 + 1;
        let value =
            control_plane::lease_value(Ipv4Addr::new(172, 16, 9, n), [0x02, 0xcc, 9, 0, 0, n]);
        control_plane::write_file(&subnets, &format!("10.244.{}.0-24", 100 + i), &value)?;
    }
    for i in 0..REMOTE_PODS {
        let (ip, ns, app) = remote_pod(i);
        let value = format!(r#"{{"ip":"{ip}","namespace":"{ns}","labels":{{"app":"{app}"}}}}"#);
        control_plane::write_file(&pods, &ip.to_string(), &value)?;
    }
    Ok(())
}

/// Until the agent lists every team namespace (it has read the remote pods).
fn wait_remote_pods(agent: &Agent) -> Result<()> {
    let start = Instant::now();
    loop {
        signals::check()?;
        let list = agent.cli_json(&["namespace", "list"])?;
        let teams = list
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["name"].as_str().is_some_and(|s| s.starts_with("team")));
        if teams.count() == TEAMS {
            return Ok(());
        }
        if start.elapsed() > READY_TIMEOUT {
            bail!(
                "agent {}: the store's pods not read within {READY_TIMEOUT:?}",
                agent.name
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// All `n` policies are in force and select the server pod.
fn check_selected(agent: &Agent, n: usize) -> Result<()> {
    let list = agent.cli_json(&["policy", "list"])?;
    let selecting = list
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["pods"].as_array().is_some_and(|pods| pods.len() == 1));
    let count = selecting.count();
    if count != n {
        bail!("{count} of {n} policies are in force and select the server pod");
    }
    Ok(())
}

/// `n` NetworkPolicies in namespace `bench`, all selecting the server pod: `n - 1`
/// admitting one remote pod each on a port of their own, and last the one that
/// admits the client on the measured ports.
fn policies_yaml(n: usize) -> String {
    let mut y = String::new();
    for i in 0..n.saturating_sub(1) {
        let (_, ns, app) = remote_pod(i % REMOTE_PODS);
        let _ = write!(
            y,
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-{i}\n  namespace: bench\n\
             spec:\n  podSelector:\n    matchLabels:\n      app: server\n  policyTypes: [Ingress]\n  ingress:\n  - from:\n\
             \x20   - namespaceSelector:\n        matchLabels:\n          kubernetes.io/metadata.name: {ns}\n\
             \x20     podSelector:\n        matchLabels:\n          app: {app}\n    ports:\n    - protocol: TCP\n      port: {}\n",
            8000 + i % 100
        );
    }
    let _ = write!(
        y,
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-client\n  namespace: bench\n\
         spec:\n  podSelector:\n    matchLabels:\n      app: server\n  policyTypes: [Ingress]\n  ingress:\n  - from:\n\
         \x20   - podSelector:\n        matchLabels:\n          app: client\n    ports:\n"
    );
    for port in PORTS {
        let _ = write!(y, "    - protocol: TCP\n      port: {port}\n");
    }
    y
}

/// One bridge node with two pods and kube-router's rules for `n` policies.
fn iptables_bed(ctx: &Context, tag: &str, n: usize) -> Result<Made> {
    let (client_ip, server_ip) = (pod_ip(1, 2), pod_ip(1, 3));
    let rules = match n {
        0 => Vec::new(),
        _ => vec![
            Rules {
                what: "ipset",
                text: ipsets(n, client_ip, server_ip),
                command: &["ipset", "restore", "-f"],
            },
            Rules {
                what: "iptables",
                text: kube_router_rules(n, server_ip),
                command: &["iptables-restore"],
            },
        ],
    };
    beds::iptables_bed(ctx, tag, &rules, server_ip)
}

/// Policy `i`'s chain and sets (kube-router names them by a hash; an index here).
fn chain(i: usize) -> String {
    format!("KUBE-NWPLCY-{i:012X}")
}
fn src_set(i: usize) -> String {
    format!("KUBE-SRC-{i:012X}")
}
fn dst_set(i: usize) -> String {
    format!("KUBE-DST-{i:012X}")
}

/// Every policy's source set (its peers) and destination set (the pods it selects).
fn ipsets(n: usize, client: Ipv4Addr, server: Ipv4Addr) -> String {
    let mut s = String::new();
    for i in 0..n {
        let peer = if i + 1 == n {
            client
        } else {
            remote_pod(i % REMOTE_PODS).0
        };
        let _ = writeln!(
            s,
            "create {} hash:ip family inet\nadd {} {peer}",
            src_set(i),
            src_set(i)
        );
        let _ = writeln!(
            s,
            "create {} hash:ip family inet\nadd {} {server}",
            dst_set(i),
            dst_set(i)
        );
    }
    s
}

/// kube-router's filter table for `n` policies that all select `server`, the one that
/// admits the client (on the measured ports) last.
fn kube_router_rules(n: usize, server: Ipv4Addr) -> String {
    let pod_fw = "KUBE-POD-FW-000000000001";
    let mut chains = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :KUBE-ROUTER-FORWARD - [0:0]\n:{pod_fw} - [0:0]\n"
    );
    let mut rules = format!(
        "-A FORWARD -j KUBE-ROUTER-FORWARD\n-A KUBE-ROUTER-FORWARD -d {server}/32 -j {pod_fw}\n\
         -A {pod_fw} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A {pod_fw} -m conntrack --ctstate INVALID -j DROP\n"
    );
    let mut per_policy = String::new();
    for i in 0..n {
        let _ = writeln!(chains, ":{} - [0:0]", chain(i));
        let _ = writeln!(rules, "-A {pod_fw} -j {}", chain(i));
        let ports: Vec<u16> = if i + 1 == n {
            PORTS.to_vec()
        } else {
            vec![8000 + (i % 100) as u16]
        };
        for port in ports {
            let _ = writeln!(
                per_policy,
                "-A {c} -p tcp -m set --match-set {s} src -m set --match-set {d} dst -m tcp --dport {port} \
                 -j MARK --set-xmark 0x10000/0x10000",
                c = chain(i),
                s = src_set(i),
                d = dst_set(i)
            );
        }
        let _ = writeln!(
            per_policy,
            "-A {} -m mark --mark 0x10000/0x10000 -j RETURN",
            chain(i)
        );
    }
    let _ = write!(
        rules,
        "-A {pod_fw} -m mark ! --mark 0x10000/0x10000 -j DROP\n\
         -A {pod_fw} -j MARK --set-xmark 0x0/0x10000\n-A {pod_fw} -j ACCEPT\n"
    );
    chains + &rules + &per_policy + "COMMIT\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_pods_are_distinct_and_on_the_remote_nodes() {
        let mut ips: Vec<Ipv4Addr> = (0..REMOTE_PODS).map(|i| remote_pod(i).0).collect();
        assert!(ips
            .iter()
            .all(|ip| (100..104).contains(&ip.octets()[2]) && ip.octets()[3] >= 2));
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), REMOTE_PODS);
    }

    #[test]
    fn every_policy_selects_the_server_and_the_client_one_is_last() {
        let y = policies_yaml(3);
        assert_eq!(y.matches("kind: NetworkPolicy").count(), 3);
        assert_eq!(y.matches("app: server").count(), 3);
        let last = y.rsplit("---").next().unwrap();
        assert!(
            last.contains("name: allow-client")
                && last.contains("port: 7007")
                && last.contains("port: 5201")
        );
    }

    #[test]
    fn rules_have_kube_routers_shape() {
        let server = Ipv4Addr::new(10, 244, 1, 3);
        let text = kube_router_rules(3, server);
        let jumps: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("-A KUBE-POD-FW-000000000001 -j KUBE-NWPLCY"))
            .collect();
        assert_eq!(jumps.len(), 3);
        assert!(
            text.contains("-A KUBE-ROUTER-FORWARD -d 10.244.1.3/32 -j KUBE-POD-FW-000000000001")
        );
        assert!(text.contains("--match-set KUBE-SRC-000000000002 src -m set --match-set KUBE-DST-000000000002 dst -m tcp --dport 7007"));
        assert!(text.starts_with("*filter\n") && text.ends_with("COMMIT\n"));
        let sets = ipsets(3, Ipv4Addr::new(10, 244, 1, 2), server);
        assert!(sets.contains("add KUBE-SRC-000000000002 10.244.1.2\n"));
        assert_eq!(sets.matches("create ").count(), 6);
    }
}
