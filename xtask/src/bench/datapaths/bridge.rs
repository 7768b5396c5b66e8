//! `bridge`: two pods on one node's Linux bridge, as a plain bridge plugin wires them
//! (full underlay MTU, the bridge forwards between the two veths).

use anyhow::Result;

use super::{setup_of, Context, Setup, Target};
use crate::bench::testbed::{bridged_pods, pod_ip};

pub fn setup(ctx: &Context, tag: &str) -> Result<Setup> {
    let node = ctx.namer.netns(&format!("{tag}-n1"))?;
    let pods = bridged_pods(&ctx.namer, &[&node], tag, ctx.mtu)?;
    let target = Target::between(&pods, pod_ip(1, 3), ctx.mtu);
    let mut parts: Vec<Box<dyn std::any::Any>> = Vec::new();
    parts.extend(pods.into_iter().map(|p| Box::new(p) as _));
    parts.push(Box::new(node));
    setup_of(target, parts)
}
