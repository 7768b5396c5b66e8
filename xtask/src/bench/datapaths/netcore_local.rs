//! `netcore-local`: two pods on one netcore node; the agent's eBPF program on each
//! pod's host veth redirects straight into the other pod (`bpf_redirect_peer`).

use std::net::Ipv4Addr;

use anyhow::Result;

use super::{setup_of, Context, Setup, Target};
use crate::bench::{
    agent::{Agent, AgentSpec},
    netns::Netns,
    testbed::{pod_cidr, uplink_stub},
};

/// One netcore node (no cluster store) with a client and a server pod.
pub struct LocalPair {
    pub node: Netns,
    pub agent: Agent,
    pub client: String,
    pub server: String,
    pub server_ip: Ipv4Addr,
}

pub fn local_pair(ctx: &Context, tag: &str) -> Result<LocalPair> {
    let node = ctx.namer.netns(&format!("{tag}-n1"))?;
    uplink_stub(&node, ctx.mtu)?;
    let name = format!("{tag}-n1");
    let spec = AgentSpec {
        name: &name,
        pod_cidr: &pod_cidr(1),
        cluster_cidr: "10.244.0.0/16",
        store: None,
        extra: "",
    };
    let agent = Agent::start(ctx, &node, &spec)?;
    let client = ctx.namer.name(&format!("{tag}-a"));
    let server = ctx.namer.name(&format!("{tag}-b"));
    agent.pod_add(&client)?;
    let server_ip = agent.pod_add(&server)?;
    Ok(LocalPair {
        node,
        agent,
        client,
        server,
        server_ip,
    })
}

pub fn setup(ctx: &Context, tag: &str) -> Result<Setup> {
    let p = local_pair(ctx, tag)?;
    let target = Target {
        client: p.client,
        server: p.server,
        server_ip: p.server_ip,
        // Pods of one node reach each other at the uplink's MTU (their link's); the
        // smaller MTU is their default route's, for what leaves the node.
        path_mtu: ctx.mtu,
    };
    setup_of(target, vec![Box::new(p.agent), Box::new(p.node)])
}
