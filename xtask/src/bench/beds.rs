//! One-node beds (a client pod and a server pod) that compare one system at two
//! sizes with another: services (issue 8) and network policy (issue 14). Every bed is
//! set up first, then measured in interleaved rounds (each round one bed further
//! along), then taken down; each bed is compared with its own kind at the baseline
//! size, and netcore with the other kind at the same size.

use std::{any::Any, collections::BTreeMap, net::Ipv4Addr};

use anyhow::{Context as _, Result};

use super::{
    cmd,
    datapaths::{Context, Target},
    results::{self, DatapathStatus, Record},
    signals,
    testbed::bridged_pods,
};

/// Metric key, unit, whether higher is better.
pub type MetricSpec = (&'static str, &'static str, bool);

/// A family of beds: `{prefix}-{kind}-{size}`.
pub struct Suite<'a> {
    /// "svc", "pol".
    pub prefix: &'static str,
    /// Sizes; the first is the baseline.
    pub sizes: &'a [usize],
    pub rounds: u32,
    pub metrics: &'a [MetricSpec],
}

pub const NETCORE: &str = "netcore";
pub const IPTABLES: &str = "iptables";

/// A bed's client and server, and what keeps it up (dropped first to last).
pub type Made = (Target, Vec<Box<dyn Any>>);

struct Bed {
    name: String,
    target: Target,
    #[allow(dead_code)]
    parts: Vec<Box<dyn Any>>,
}

/// (bed, metric) → (round, value) per run.
type Runs = BTreeMap<(String, &'static str), Vec<(usize, f64)>>;

#[derive(Default)]
pub struct Outcome {
    pub statuses: Vec<DatapathStatus>,
    pub records: Vec<Record>,
}

impl Suite<'_> {
    pub fn name(&self, kind: &str, size: usize) -> String {
        format!("{}-{kind}-{size}", self.prefix)
    }

    /// Sets up every (kind, size) with `make(kind, tag, size)`, measures them with
    /// `turn` (the values of `metrics`, in order) and summarizes.
    pub fn run(
        &self,
        make: impl Fn(&str, &str, usize) -> Result<Made>,
        turn: impl Fn(&Target) -> Result<Vec<f64>>,
    ) -> Result<Outcome> {
        let mut statuses = Vec::new();
        let beds = self.set_up(&make, &mut statuses)?;
        let runs = self.rounds(&beds, &turn, &mut statuses)?;
        drop(beds);
        let ok: Vec<&str> = statuses
            .iter()
            .filter(|s| s.error.is_none())
            .map(|s| s.name.as_str())
            .collect();
        let records = self.records(&runs, &ok);
        Ok(Outcome { statuses, records })
    }

    fn set_up(
        &self,
        make: &impl Fn(&str, &str, usize) -> Result<Made>,
        statuses: &mut Vec<DatapathStatus>,
    ) -> Result<Vec<Bed>> {
        let mut beds = Vec::new();
        for kind in [NETCORE, IPTABLES] {
            for (k, &n) in self.sizes.iter().enumerate() {
                signals::check()?;
                let name = self.name(kind, n);
                eprintln!("bench: setting up {name}");
                let tag = format!("{}{}{k}", &self.prefix[..1], &kind[..1]);
                match make(kind, &tag, n) {
                    Ok((target, parts)) => {
                        statuses.push(status(name.clone(), Some(target.path_mtu), None));
                        beds.push(Bed {
                            name,
                            target,
                            parts,
                        });
                    }
                    Err(e) => {
                        signals::check()?;
                        eprintln!("bench: {name} FAILED to set up: {e:#}");
                        statuses.push(status(name, None, Some(format!("set-up: {e:#}"))));
                    }
                }
            }
        }
        Ok(beds)
    }

    fn rounds(
        &self,
        beds: &[Bed],
        turn: &impl Fn(&Target) -> Result<Vec<f64>>,
        statuses: &mut [DatapathStatus],
    ) -> Result<Runs> {
        let mut runs = Runs::new();
        for round in 0..self.rounds as usize {
            for k in 0..beds.len() {
                let bed = &beds[(k + round) % beds.len()];
                let st = statuses
                    .iter_mut()
                    .find(|s| s.name == bed.name)
                    .expect("a status per bed");
                if st.error.is_some() {
                    continue;
                }
                signals::check()?;
                eprintln!(
                    "bench: {} round {}/{}: {}",
                    self.prefix,
                    round + 1,
                    self.rounds,
                    bed.name
                );
                match turn(&bed.target) {
                    Ok(values) => {
                        let shown: Vec<String> = self
                            .metrics
                            .iter()
                            .zip(&values)
                            .map(|((key, unit, _), v)| format!("{key} {v:.1} {unit}"))
                            .collect();
                        eprintln!("bench:   {}", shown.join(", "));
                        for ((key, _, _), v) in self.metrics.iter().zip(values) {
                            runs.entry((bed.name.clone(), *key))
                                .or_default()
                                .push((round, v));
                        }
                    }
                    Err(e) => {
                        signals::check()?;
                        eprintln!("bench: {} FAILED: {e:#}", bed.name);
                        *st = status(bed.name.clone(), st.path_mtu, Some(format!("{e:#}")));
                    }
                }
            }
        }
        Ok(runs)
    }

    /// What a bed is compared with: its kind at the baseline size, and, for netcore,
    /// iptables at the same size.
    pub fn baselines(&self, name: &str) -> Vec<String> {
        let rest = name
            .strip_prefix(self.prefix)
            .and_then(|r| r.strip_prefix('-'));
        let Some((kind, size)) = rest.and_then(|r| r.split_once('-')) else {
            return Vec::new();
        };
        let base = self.sizes[0].to_string();
        let mut b = Vec::new();
        if size != base {
            b.push(format!("{}-{kind}-{base}", self.prefix));
        }
        if kind == NETCORE {
            b.push(format!("{}-{IPTABLES}-{size}", self.prefix));
        }
        b
    }

    fn records(&self, runs: &Runs, ok: &[&str]) -> Vec<Record> {
        let mut out = Vec::new();
        for &name in ok {
            for &(key, unit, higher) in self.metrics {
                let Some(mine) = runs.get(&(name.to_string(), key)) else {
                    continue;
                };
                let Some(mut rec) = results::summary(name.into(), key, unit, higher, mine) else {
                    continue;
                };
                for base in self.baselines(name) {
                    let theirs = runs.get(&(base.clone(), key));
                    if let Some(q) = theirs.and_then(|t| results::ratio(mine, t)) {
                        rec.ratio_to.insert(base, q);
                    }
                }
                out.push(rec);
            }
        }
        out
    }
}

/// Rules to load into an iptables bed: what they are (for names and errors), the
/// text, and the command that reads it from a file (`iptables-restore`, `ipset
/// restore -f`).
pub struct Rules<'a> {
    pub what: &'static str,
    pub text: String,
    pub command: &'a [&'a str],
}

/// The `bridge` layout with br_netfilter, the way kube-proxy and kube-router run on a
/// bridge: a client pod (tuned for many connections) and a server pod on one node,
/// with `rules` loaded in the node namespace; the client connects to `server_ip`.
pub fn iptables_bed(
    ctx: &Context,
    tag: &str,
    rules: &[Rules],
    server_ip: Ipv4Addr,
) -> Result<Made> {
    let node = ctx.namer.netns(&format!("{tag}-n1"))?;
    let pods = bridged_pods(&ctx.namer, &[&node], tag, ctx.mtu)?;
    tune_client(&pods[0].name)?;
    // Bridged traffic meets iptables (and conntrack) only with br_netfilter.
    node.sh("sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1")
        .context("br_netfilter (iptables on a bridge needs it)")?;
    for r in rules {
        let file = ctx.work_dir.join(format!("{tag}.{}", r.what));
        std::fs::write(&file, &r.text).with_context(|| format!("writing {}", file.display()))?;
        let file = file.to_string_lossy().into_owned();
        let args: Vec<&str> = r.command.iter().copied().chain([file.as_str()]).collect();
        cmd::run(&mut cmd::in_ns(&node.name, &args))
            .with_context(|| format!("loading the {} rules", r.what))?;
    }
    let target = Target {
        client: pods[0].name.clone(),
        server: pods[1].name.clone(),
        server_ip,
        path_mtu: ctx.mtu,
    };
    let mut parts: Vec<Box<dyn Any>> = Vec::new();
    parts.extend(pods.into_iter().map(|p| Box::new(p) as _));
    parts.push(Box::new(node));
    Ok((target, parts))
}

/// A client that opens thousands of connections a second: reuse ports in TIME_WAIT
/// (after 1 s, with timestamps) from the whole range.
pub fn tune_client(ns: &str) -> Result<()> {
    cmd::sh(
        ns,
        "sysctl -qw net.ipv4.tcp_tw_reuse=1 'net.ipv4.ip_local_port_range=1024 65535'",
    )?;
    Ok(())
}

fn status(name: String, path_mtu: Option<u32>, error: Option<String>) -> DatapathStatus {
    DatapathStatus {
        name,
        profile: None,
        scope: "same-node",
        status: if error.is_some() { "failed" } else { "ok" },
        path_mtu,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netcore_is_compared_with_its_baseline_and_iptables() {
        let s = Suite {
            prefix: "svc",
            sizes: &[1, 1000],
            rounds: 1,
            metrics: &[],
        };
        assert_eq!(
            s.baselines("svc-netcore-1000"),
            vec!["svc-netcore-1", "svc-iptables-1000"]
        );
        assert_eq!(s.baselines("svc-iptables-1000"), vec!["svc-iptables-1"]);
        assert_eq!(s.baselines("svc-netcore-1"), vec!["svc-iptables-1"]);
        let p = Suite {
            prefix: "pol",
            sizes: &[0, 1000],
            rounds: 1,
            metrics: &[],
        };
        assert_eq!(
            p.baselines("pol-netcore-1000"),
            vec!["pol-netcore-0", "pol-iptables-1000"]
        );
    }
}
