//! `socat-tun-udp`: the seeds' overlay and flannel's UDP backend design. On each node
//! `socat tun:ADDR/24,iff-up udp:PEER:9000,bind=SELF:9000` moves every packet through
//! userspace (one read and one sendto per packet); the remote pod CIDR is routed into
//! the TUN. `iff-no-pi` as flannel's backend (bare IP packets as UDP payload), so the
//! overhead is IPv4 + UDP = 28 bytes and the pods' MTU is uplink − 28: nothing fragments.
//! `-b 65536`: socat's default 8 KiB buffer would truncate packets at MTU 9000 (the
//! don't-fragment check caught it).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{setup_of, Context, Setup, Target};
use crate::bench::{
    cmd::{self, Process},
    netns::Netns,
    testbed::{bridged_pods, node_ip, node_pair, pod_cidr, pod_ip},
};

const UDP_OVERHEAD: u32 = 28;
const PORT: u16 = 9000;

pub fn setup(ctx: &Context, tag: &str) -> Result<Setup> {
    let mtu = ctx.mtu - UDP_OVERHEAD;
    let [n1, n2] = node_pair(&ctx.namer, tag, ctx.mtu, ctx.profile)?;
    // The receiving side binds first: a connected UDP socket that gets ICMP port
    // unreachable back would make socat exit.
    let s2 = tunnel(&n2, 2, 1, mtu)?;
    let s1 = tunnel(&n1, 1, 2, mtu)?;
    let pods = bridged_pods(&ctx.namer, &[&n1, &n2], tag, mtu)?;
    let target = Target::between(&pods, pod_ip(2, 2), mtu);
    let mut parts: Vec<Box<dyn std::any::Any>> = vec![Box::new(s1), Box::new(s2)];
    parts.extend(pods.into_iter().map(|p| Box::new(p) as _));
    parts.push(Box::new(n1));
    parts.push(Box::new(n2));
    setup_of(target, parts)
}

/// socat on node `i` towards node `j`, and the route to `j`'s pods through its TUN.
fn tunnel(node: &Netns, i: u8, j: u8, mtu: u32) -> Result<Process> {
    let tun = format!("tun:10.99.0.{i}/24,iff-up,iff-no-pi,tun-name=tun0");
    let udp = format!("udp:{}:{PORT},bind={}:{PORT}", node_ip(j), node_ip(i));
    let mut socat = Process::spawn(
        &mut cmd::in_ns(&node.name, &["socat", "-b", "65536", &tun, &udp]),
        &format!("socat on {}", node.name),
    )?;
    wait_for_tun(node, &mut socat)?;
    node.sh(&format!(
        "ip link set tun0 mtu {mtu}
         ip route add {} dev tun0",
        pod_cidr(j)
    ))?;
    Ok(socat)
}

fn wait_for_tun(node: &Netns, socat: &mut Process) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        socat.check_alive()?;
        if node.sh("ip link show tun0 up | grep -q UP").is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("socat made no tun0 in {} within 5 s", node.name)
}
