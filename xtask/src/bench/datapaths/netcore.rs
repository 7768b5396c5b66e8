//! `netcore`: two nodes with real agents (`netcore agent`), one pod each made with
//! `netcore pod add`, meshed with `netcore node add`: the eBPF VXLAN data path. Its
//! variants force the older paths: `netcore-decap-tc` (`from_uplink` unwraps, the
//! VXLAN device only registers the port) and `netcore-attach-tc` (clsact filters
//! instead of TCX links, as on Linux before 6.6); `netcore-direct` routes the other
//! node directly (flannel's host-gw, in eBPF: no encapsulation, full MTU);
//! `netcore-noflows` turns flow accounting off (what `status --flows` costs).

use anyhow::Result;

use super::{setup_of, Context, Setup, Target};
use crate::bench::{
    agent::{Agent, AgentSpec},
    testbed::{node_ip, node_pair, pod_cidr},
};

/// Pods get uplink MTU − 50 from the agent.
const VXLAN_OVERHEAD: u32 = 50;

/// `extra` forces a mode (`decap = "tc"`, `attach = "tc"`, `backend = "host-gw"`) for
/// the variants.
pub fn setup(ctx: &Context, tag: &str, extra: &str) -> Result<Setup> {
    let [n1, n2] = node_pair(&ctx.namer, tag, ctx.mtu, ctx.profile)?;
    let agent = |node, i: u8| {
        let name = format!("{tag}-n{i}");
        let spec = AgentSpec {
            name: &name,
            pod_cidr: &pod_cidr(i),
            cluster_cidr: "10.244.0.0/16",
            store: None,
            extra,
        };
        Agent::start(ctx, node, &spec)
    };
    let a1 = agent(&n1, 1)?;
    let a2 = agent(&n2, 2)?;
    a1.node_add(&a2, &pod_cidr(2), node_ip(2))?;
    a2.node_add(&a1, &pod_cidr(1), node_ip(1))?;
    a1.wait_direct_peers()?;
    a2.wait_direct_peers()?;
    let client = ctx.namer.name(&format!("{tag}-a"));
    let server = ctx.namer.name(&format!("{tag}-b"));
    a1.pod_add(&client)?;
    let server_ip = a2.pod_add(&server)?;
    let target = Target {
        client,
        server,
        server_ip,
        path_mtu: if extra.contains("host-gw") {
            ctx.mtu
        } else {
            ctx.mtu - VXLAN_OVERHEAD
        },
    };
    // Agents first: their reset removes the pods while the nodes still exist.
    setup_of(
        target,
        vec![Box::new(a1), Box::new(a2), Box::new(n1), Box::new(n2)],
    )
}

/// `netcore-monitor`: `netcore` with `netcore monitor --trace --sample 1000` watching
/// on both nodes (every drop, one passing packet in 1,000): the monitor's cost.
pub fn setup_watched(ctx: &Context, tag: &str) -> Result<Setup> {
    let mut s = setup(ctx, tag, "")?;
    let mut watching: Vec<Box<dyn std::any::Any>> = Vec::new();
    for part in &s.parts {
        if let Some(agent) = part.downcast_ref::<Agent>() {
            let w = agent.watch(&["--trace", "--sample", "1000", "--json"])?;
            watching.push(Box::new(w));
        }
    }
    // Dropped first: the monitors go before their agents.
    watching.append(&mut s.parts);
    s.parts = watching;
    Ok(s)
}
