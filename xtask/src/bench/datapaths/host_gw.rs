//! `host-gw`: the seeds' routed layout. Pods on a bridge per node, and each node routes
//! the other's pod CIDR via the other's underlay address: no encapsulation at all.

use anyhow::Result;

use super::{setup_of, Context, Setup, Target};
use crate::bench::testbed::{bridged_pods, node_ip, node_pair, pod_cidr, pod_ip};

pub fn setup(ctx: &Context, tag: &str) -> Result<Setup> {
    let [n1, n2] = node_pair(&ctx.namer, tag, ctx.mtu, ctx.profile)?;
    let pods = bridged_pods(&ctx.namer, &[&n1, &n2], tag, ctx.mtu)?;
    n1.sh(&format!("ip route add {} via {}", pod_cidr(2), node_ip(2)))?;
    n2.sh(&format!("ip route add {} via {}", pod_cidr(1), node_ip(1)))?;
    let target = Target::between(&pods, pod_ip(2, 2), ctx.mtu);
    let mut parts: Vec<Box<dyn std::any::Any>> = Vec::new();
    parts.extend(pods.into_iter().map(|p| Box::new(p) as _));
    parts.push(Box::new(n1));
    parts.push(Box::new(n2));
    setup_of(target, parts)
}
