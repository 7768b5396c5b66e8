//! `underlay`: node to node over the veth underlay, no pods: the test bed's limit.

use anyhow::Result;

use super::{setup_of, Context, Setup, Target};
use crate::bench::testbed::{node_ip, node_pair};

pub fn setup(ctx: &Context, tag: &str) -> Result<Setup> {
    let [n1, n2] = node_pair(&ctx.namer, tag, ctx.mtu, ctx.profile)?;
    let target = Target {
        client: n1.name.clone(),
        server: n2.name.clone(),
        server_ip: node_ip(2),
        path_mtu: ctx.mtu,
    };
    setup_of(target, vec![Box::new(n1), Box::new(n2)])
}
