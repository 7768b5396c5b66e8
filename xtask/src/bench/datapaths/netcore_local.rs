//! `netcore-local`: two pods on one netcore node; the agent's eBPF program on each
//! pod's host veth redirects straight into the other pod (`bpf_redirect_peer`).

use anyhow::Result;

use super::{setup_of, Context, Setup, Target};
use crate::bench::{
    agent::{Agent, AgentSpec},
    testbed::{pod_cidr, uplink_stub},
};

const VXLAN_OVERHEAD: u32 = 50;

pub fn setup(ctx: &Context, tag: &str) -> Result<Setup> {
    let node = ctx.namer.netns(&format!("{tag}-n1"))?;
    uplink_stub(&node, ctx.mtu)?;
    let name = format!("{tag}-n1");
    let spec = AgentSpec {
        name: &name,
        pod_cidr: &pod_cidr(1),
        cluster_cidr: "10.244.0.0/16",
        extra: "store = \"none\"",
    };
    let agent = Agent::start(ctx, &node, &spec)?;
    let client = ctx.namer.name(&format!("{tag}-a"));
    let server = ctx.namer.name(&format!("{tag}-b"));
    agent.pod_add(&client)?;
    let server_ip = agent.pod_add(&server)?;
    let target = Target {
        client,
        server,
        server_ip,
        path_mtu: ctx.mtu - VXLAN_OVERHEAD,
    };
    setup_of(target, vec![Box::new(agent), Box::new(node)])
}
