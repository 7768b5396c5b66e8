//! Services (issue 8): new TCP connections per second and request/response latency
//! through a ClusterIP with 1 and with N services defined, netcore's service maps
//! side by side with kube-proxy's iptables chains. Four one-node beds, each with a
//! client pod and a backend pod: `svc-netcore-N` (an agent, services from
//! `netcore service add`) and `svc-iptables-N` (a Linux bridge, br_netfilter, and
//! kube-proxy's nat rules loaded with `iptables-restore`, the measured service last).

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddrV4},
};

use anyhow::{Context as _, Result};

use super::{
    agent::Agent,
    beds::{self, Made, MetricSpec, Rules, Suite},
    cps,
    datapaths::{
        netcore_local::{local_pair, LocalPair},
        Context, Target,
    },
    rr, signals,
    testbed::pod_ip,
};

/// The service port and the backend's port (the rr and cps tools listen on it).
const PORT: u16 = rr::PORT;
/// The VIP every measurement connects to; the other services' VIPs come before it.
const MEASURED_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const CLUSTER_CIDR: &str = "10.244.0.0/16";
const VXLAN_OVERHEAD: u32 = 50;

const METRICS: [MetricSpec; 3] = [
    ("connections_per_s", "connections/s", true),
    ("rr_p50", "us", false),
    ("rr_p99", "us", false),
];

/// Service counts (the first is the baseline, normally 1), rounds, seconds per
/// measurement.
pub struct Plan {
    pub counts: Vec<usize>,
    pub rounds: u32,
    pub seconds: u32,
}

pub fn run(ctx: &Context, plan: &Plan) -> Result<beds::Outcome> {
    let suite = Suite {
        prefix: "svc",
        sizes: &plan.counts,
        rounds: plan.rounds,
        metrics: &METRICS,
    };
    let make = |kind: &str, tag: &str, n: usize| match kind {
        beds::NETCORE => netcore_bed(ctx, tag, n),
        _ => iptables_bed(ctx, tag, n),
    };
    suite.run(make, |t| turn(t, plan.seconds))
}

/// The VIPs of `n` services: 10.96.1.1, 10.96.1.2, … and the measured one last.
fn vips(n: usize) -> Vec<Ipv4Addr> {
    let filler = |i: usize| Ipv4Addr::new(10, 96, 1 + (i / 250) as u8, 1 + (i % 250) as u8);
    (0..n.saturating_sub(1))
        .map(filler)
        .chain([MEASURED_VIP])
        .collect()
}

/// One netcore node with two pods and `n` services to the second pod.
fn netcore_bed(ctx: &Context, tag: &str, n: usize) -> Result<Made> {
    let LocalPair {
        node,
        agent,
        client,
        server,
        server_ip,
    } = local_pair(ctx, tag)?;
    let backend = SocketAddrV4::new(server_ip, PORT);
    beds::tune_client(&client)?;
    add_services(&agent, &vips(n), backend)?;
    let target = Target {
        client,
        server,
        server_ip: MEASURED_VIP,
        path_mtu: ctx.mtu - VXLAN_OVERHEAD,
    };
    Ok((target, vec![Box::new(agent), Box::new(node)]))
}

/// `netcore service add` for every VIP, the measured one first.
fn add_services(agent: &Agent, vips: &[Ipv4Addr], backend: SocketAddrV4) -> Result<()> {
    let backend = backend.to_string();
    for (i, vip) in vips.iter().rev().enumerate() {
        if i % 100 == 0 {
            signals::check()?;
        }
        let vip = format!("{vip}:{PORT}/tcp");
        let name = format!("svc{i}");
        let args = [
            "service",
            "add",
            &name,
            "--vip",
            &vip,
            "--backend",
            &backend,
        ];
        agent
            .cli(&args)
            .with_context(|| format!("adding service {name}"))?;
    }
    Ok(())
}

/// One bridge node with two pods and kube-proxy's rules for `n` services.
fn iptables_bed(ctx: &Context, tag: &str, n: usize) -> Result<Made> {
    // Replies from the backend are bridged straight to the client: br_netfilter shows
    // them to conntrack, which gives them the VIP back (as on a kube-proxy node).
    let backend = SocketAddrV4::new(pod_ip(1, 3), PORT);
    let rules = Rules {
        what: "iptables",
        text: kube_proxy_rules(&vips(n), &[backend]),
        command: &["iptables-restore"],
    };
    beds::iptables_bed(ctx, tag, &[rules], MEASURED_VIP)
}

/// The nat table kube-proxy (iptables mode) writes for ClusterIP services on `PORT`,
/// in `vips` order, each balanced over `backends` (`iptables-restore` input).
fn kube_proxy_rules(vips: &[Ipv4Addr], backends: &[SocketAddrV4]) -> String {
    let svc = |i: usize| format!("KUBE-SVC-{i:016X}");
    let sep = |i: usize, j: usize| format!("KUBE-SEP-{i:012X}{j:04X}");
    let mut chains = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n\
         :KUBE-MARK-MASQ - [0:0]\n",
    );
    let mut rules = String::from(
        "-A PREROUTING -j KUBE-SERVICES\n-A OUTPUT -j KUBE-SERVICES\n\
         -A POSTROUTING -j KUBE-POSTROUTING\n-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n-A KUBE-POSTROUTING -j MASQUERADE\n",
    );
    let mut per_service = String::new();
    for (i, vip) in vips.iter().enumerate() {
        let _ = writeln!(chains, ":{} - [0:0]", svc(i));
        let _ = writeln!(
            rules,
            "-A KUBE-SERVICES -d {vip}/32 -p tcp -m tcp --dport {PORT} -j {}",
            svc(i)
        );
        let _ = writeln!(
            per_service,
            "-A {} ! -s {CLUSTER_CIDR} -d {vip}/32 -p tcp -m tcp --dport {PORT} -j KUBE-MARK-MASQ",
            svc(i)
        );
        for (j, b) in backends.iter().enumerate() {
            let _ = writeln!(chains, ":{} - [0:0]", sep(i, j));
            let left = backends.len() - j;
            let pick = if left > 1 {
                format!(
                    "-m statistic --mode random --probability {:.11} ",
                    1.0 / left as f64
                )
            } else {
                String::new()
            };
            let _ = writeln!(per_service, "-A {} {pick}-j {}", svc(i), sep(i, j));
            let _ = writeln!(
                per_service,
                "-A {s} -s {ip}/32 -j KUBE-MARK-MASQ\n-A {s} -p tcp -m tcp -j DNAT --to-destination {b}",
                s = sep(i, j),
                ip = b.ip()
            );
        }
    }
    chains + &rules + &per_service + "COMMIT\n"
}

/// One bed's turn: the values of `METRICS`, in order.
fn turn(t: &Target, seconds: u32) -> Result<Vec<f64>> {
    let c = cps::measure(t, PORT, seconds).context("connections per second")?;
    let r = rr::measure(t, seconds).context("request/response")?;
    Ok(vec![c.connections_per_s, r.p50_us, r.p99_us])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_vip_is_the_last_service() {
        let v = vips(1000);
        assert_eq!(v.len(), 1000);
        assert_eq!(v[999], MEASURED_VIP);
        assert_eq!(v[998], Ipv4Addr::new(10, 96, 4, 249));
        let mut sorted = v.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 1000, "VIPs are distinct");
        assert_eq!(vips(1), vec![MEASURED_VIP]);
    }

    #[test]
    fn rules_have_kube_proxys_shape() {
        let b = |h| SocketAddrV4::new(Ipv4Addr::new(10, 244, 1, h), PORT);
        let text = kube_proxy_rules(&vips(3), &[b(3), b(4)]);
        let services: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("-A KUBE-SERVICES"))
            .collect();
        assert_eq!(services.len(), 3);
        assert!(services[2].contains("-d 10.96.0.10/32 -p tcp -m tcp --dport 7007"));
        assert!(text.contains(
            "-A KUBE-SVC-0000000000000002 -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-0000000000020000"
        ));
        assert!(text.contains("-A KUBE-SVC-0000000000000002 -j KUBE-SEP-0000000000020001"));
        assert!(text.contains("-j DNAT --to-destination 10.244.1.4:7007"));
        assert!(text.starts_with("*nat\n") && text.ends_with("COMMIT\n"));
    }
}
