//! Control-plane figures of the netcore agent: `netcore pod add` latency (the CLI as a
//! user runs it), the time until N remote-node leases written to the cluster store
//! (the embedded file store, flannel's key layout) are in the node LPM map, and the
//! agent's resident memory with pods and remote nodes.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use super::{
    agent::{Agent, AgentSpec},
    datapaths::Context,
    netns::Netns,
    signals, stats,
    testbed::uplink_stub,
};

/// The longest a lease apply may take before the figure is reported as failed.
const APPLY_TIMEOUT: Duration = Duration::from_secs(600);
const SUBNETS: &str = "coreos.com/network/subnets";

#[derive(Debug, Clone, Serialize)]
pub struct CpRecord {
    pub metric: String,
    pub unit: &'static str,
    pub value: f64,
    pub note: String,
}

fn record(metric: impl Into<String>, unit: &'static str, value: f64, note: String) -> CpRecord {
    CpRecord {
        metric: metric.into(),
        unit,
        value,
        note,
    }
}

/// How much to create: pods, then remote-node lease counts (the first measured with
/// the pods in place, each further one on a fresh agent and store).
pub struct Counts {
    pub pods: usize,
    pub nodes: Vec<usize>,
}

pub fn run(ctx: &Context, counts: &Counts) -> Result<Vec<CpRecord>> {
    let mut out = Vec::new();
    for (k, &nodes) in counts.nodes.iter().enumerate() {
        let (node, agent, store) = start_node(ctx, &format!("cp{k}"))?;
        if k == 0 {
            out.extend(pod_adds(ctx, &agent, counts.pods)?);
        }
        eprintln!("bench: control plane: {nodes} remote-node leases into the store");
        let secs = apply_leases(&agent, &store, nodes)?;
        let note = format!(
            "{:.0} µs per node; from the first lease written to the last in the map (file store, polled every 250 ms)",
            secs * 1e6 / nodes as f64
        );
        out.push(record(format!("leases_apply_{nodes}"), "s", secs, note));
        if k == 0 {
            let note = format!("{} pods and {nodes} remote nodes", counts.pods);
            out.push(record("agent_rss", "MiB", rss_mib(agent.pid())?, note));
        }
        drop(agent);
        drop(node);
    }
    Ok(out)
}

/// A node with an agent whose cluster store is a fresh directory; returns the store.
fn start_node(ctx: &Context, tag: &str) -> Result<(Netns, Agent, PathBuf)> {
    let node = ctx.namer.netns(tag)?;
    uplink_stub(&node, 1500)?;
    let name = ctx.namer.name(tag);
    let store = ctx.work_dir.join(format!("store-{tag}"));
    let url = format!("file://{}", store.display());
    let spec = AgentSpec {
        name: &name,
        pod_cidr: "10.1.0.0/24",
        // Room for 10,000 leases from 10.2.0.0/24; it covers the default service CIDR,
        // which the agent then leaves unrouted (with a warning).
        cluster_cidr: "10.0.0.0/8",
        store: Some(&url),
        extra: "",
    };
    let agent = Agent::start(ctx, &node, &spec)?;
    Ok((node, agent, store))
}

/// Times `netcore pod add` for `count` pods: p50 and p99 in milliseconds.
fn pod_adds(ctx: &Context, agent: &Agent, count: usize) -> Result<Vec<CpRecord>> {
    eprintln!("bench: control plane: adding {count} pods");
    let mut ms = Vec::with_capacity(count);
    for i in 0..count {
        signals::check()?;
        let start = Instant::now();
        agent.pod_add(&ctx.namer.name(&format!("cpp{i}")))?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let note = format!("{count} pods, `netcore pod add` wall time");
    let p = |q| stats::percentile(&ms, q).unwrap_or(f64::NAN);
    Ok(vec![
        record("pod_add_p50", "ms", p(50.0), note.clone()),
        record("pod_add_p99", "ms", p(99.0), note),
    ])
}

/// Remote node `i`'s lease: key file name and value (pod CIDRs from 10.2.0.0/24,
/// underlay addresses from 172.16.0.1: none of them is ever sent a packet).
pub fn lease(i: usize) -> (String, String) {
    let i = i as u32;
    let net = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 2, 0, 0)) + (i << 8));
    let public = Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 1)) + i);
    let b = i.to_be_bytes();
    (
        format!("{net}-24"),
        lease_value(public, [0x02, 0xcc, b[0], b[1], b[2], b[3]]),
    )
}

/// A flannel vxlan lease's value: a node at `public` whose VTEP has `mac`.
pub fn lease_value(public: Ipv4Addr, mac: [u8; 6]) -> String {
    let mac: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        r#"{{"PublicIP":"{public}","BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{}"}}}}"#,
        mac.join(":")
    )
}

/// Writes `count` leases (each atomically, never expiring) and waits until the agent
/// has them all in its map; seconds from the first write to that.
fn apply_leases(agent: &Agent, store: &Path, count: usize) -> Result<f64> {
    let dir = store.join(SUBNETS);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let start = Instant::now();
    for i in 0..count {
        let (name, value) = lease(i);
        write_file(&dir, &name, &value)?;
    }
    loop {
        signals::check()?;
        let routed = routed_store_nodes(agent)?;
        if routed >= count {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > APPLY_TIMEOUT {
            bail!("only {routed} of {count} leases in the map after {APPLY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A key's file as the file store writes it: temp file, mtime 0 (no expiry), rename.
pub fn write_file(dir: &Path, name: &str, value: &str) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let f = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::io::Write::write_all(&mut &f, value.as_bytes())?;
    f.set_modified(SystemTime::UNIX_EPOCH)?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

/// How many nodes the agent learnt from the store and has in its map.
fn routed_store_nodes(agent: &Agent) -> Result<usize> {
    let nodes = agent.cli_json(&["node", "list"])?;
    let list = nodes
        .as_array()
        .context("`netcore node list --json` is not a list")?;
    Ok(list
        .iter()
        .filter(|n| n["source"] == "store" && n["in_map"] == true)
        .count())
}

/// VmRSS of a process, in MiB.
fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/PID/status")?;
    Ok(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn leases_are_distinct_and_in_flannels_format() {
        let (key, value) = super::lease(300);
        assert_eq!(key, "10.3.44.0-24");
        let v: serde_json::Value = serde_json::from_str(&value).unwrap();
        assert_eq!(v["PublicIP"], "172.16.1.45");
        assert_eq!(v["BackendData"]["VtepMAC"], "02:cc:00:00:01:2c");
        assert_eq!(v["BackendData"]["VNI"], 1);
    }
}
