//! The results as `results.json` holds them: the run's conditions, each datapath's
//! status, one record per datapath and metric (median, min, max, every run, and the
//! paired per-round ratios to the baselines), and the control-plane figures.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    control_plane::CpRecord,
    datapaths::Datapath,
    metric::{Metric, Sample},
    profile::Profile,
    stats,
};

/// 2: records and datapath statuses name their underlay profile; 3: `policy` beds.
pub const SCHEMA: u32 = 3;

#[derive(Debug, Serialize)]
pub struct Results {
    pub schema: u32,
    pub machine: Machine,
    pub mtu: u32,
    pub tcp_congestion_control: &'static str,
    pub rounds: u32,
    pub seconds: u32,
    pub quick: bool,
    pub datapaths: Vec<DatapathStatus>,
    pub records: Vec<Record>,
    pub control_plane: Vec<CpRecord>,
    /// The service beds (issue 8); their records are in `records`.
    pub services: Vec<DatapathStatus>,
    /// The network policy beds (issue 14); their records are in `records`.
    pub policy: Vec<DatapathStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    /// /proc/loadavg's 1-minute figure when the run started (other work skews results).
    pub load_at_start: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatapathStatus {
    pub name: String,
    /// The underlay profile ("veth" or "nic"); none for the service beds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<&'static str>,
    pub scope: &'static str,
    /// "ok", or "failed" (then `error` says why, and it has no records).
    pub status: &'static str,
    pub path_mtu: Option<u32>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Record {
    pub datapath: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<&'static str>,
    pub metric: &'static str,
    pub unit: &'static str,
    pub better: &'static str,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: Vec<f64>,
    /// Baseline name → the ratios value/baseline, paired by round.
    pub ratio_to: BTreeMap<String, Ratio>,
}

#[derive(Debug, Serialize)]
pub struct Ratio {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: Vec<f64>,
}

/// The baselines ratios are taken to; `bridge` only for same-node datapaths, `netcore`
/// for its variants (what a forced mode or the monitor costs).
fn baselines(dp: Datapath) -> Vec<Datapath> {
    let mut b = vec![Datapath::HostGw, Datapath::VxlanKernel];
    if dp.same_node() {
        b.push(Datapath::Bridge);
    }
    if matches!(
        dp,
        Datapath::NetcoreDecapTc
            | Datapath::NetcoreAttachTc
            | Datapath::NetcoreMonitor
            | Datapath::NetcoreNoflows
    ) {
        b.push(Datapath::Netcore);
    }
    b.retain(|x| *x != dp);
    b
}

fn runs(samples: &[Sample], p: Profile, dp: Datapath, m: Metric) -> Vec<(usize, f64)> {
    samples
        .iter()
        .filter(|s| s.profile == p && s.datapath == dp && s.metric == m)
        .map(|s| (s.round, s.value))
        .collect()
}

/// One record per profile, datapath (that did not fail there) and metric; ratios
/// pair rounds of the same profile.
pub fn records(samples: &[Sample], ok: &[(Profile, Datapath)]) -> Vec<Record> {
    let mut out = Vec::new();
    for &(p, dp) in ok {
        for m in Metric::ALL {
            let mine = runs(samples, p, dp, m);
            let Some(mut rec) = summary(
                dp.name().into(),
                m.key(),
                m.unit(),
                m.higher_is_better(),
                &mine,
            ) else {
                continue;
            };
            rec.profile = Some(p.name());
            rec.ratio_to = baselines(dp)
                .into_iter()
                .filter(|b| ok.contains(&(p, *b)))
                .filter_map(|b| Some((b.name().into(), ratio(&mine, &runs(samples, p, b, m))?)))
                .collect();
            out.push(rec);
        }
    }
    out
}

/// A record of `runs` (round, value), without ratios; none without runs.
pub fn summary(
    datapath: String,
    metric: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    runs: &[(usize, f64)],
) -> Option<Record> {
    let values: Vec<f64> = runs.iter().map(|(_, v)| *v).collect();
    Some(Record {
        datapath,
        profile: None,
        metric,
        unit,
        better: if higher_is_better { "higher" } else { "lower" },
        median: stats::median(&values)?,
        min: stats::min(&values)?,
        max: stats::max(&values)?,
        runs: values,
        ratio_to: BTreeMap::new(),
    })
}

/// The ratios a/b, paired by round.
pub fn ratio(a: &[(usize, f64)], b: &[(usize, f64)]) -> Option<Ratio> {
    let runs = stats::paired_ratios(a, b);
    Some(Ratio {
        median: stats::median(&runs)?,
        min: stats::min(&runs)?,
        max: stats::max(&runs)?,
        runs,
    })
}

impl Results {
    /// The record of the datapath or bed `d` (in its profile) for `metric`.
    pub fn record(&self, d: &DatapathStatus, metric: &str) -> Option<&Record> {
        self.records
            .iter()
            .find(|r| r.datapath == d.name && r.profile == d.profile && r.metric == metric)
    }
}

impl Machine {
    pub fn this() -> Machine {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_default();
        let load_at_start = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(f64::NAN);
        Machine {
            load_at_start,
            kernel,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(dp: Datapath, round: usize, value: f64) -> Sample {
        Sample {
            profile: Profile::Veth,
            datapath: dp,
            metric: Metric::Tcp1,
            round,
            value,
        }
    }

    #[test]
    fn records_pair_ratios_by_round() {
        let samples = vec![
            s(Datapath::HostGw, 0, 8.0),
            s(Datapath::HostGw, 1, 4.0),
            s(Datapath::Netcore, 0, 10.0),
            s(Datapath::Netcore, 1, 6.0),
        ];
        let recs = records(
            &samples,
            &[
                (Profile::Veth, Datapath::HostGw),
                (Profile::Veth, Datapath::Netcore),
            ],
        );
        let nc = recs.iter().find(|r| r.datapath == "netcore").unwrap();
        assert_eq!((nc.median, nc.min, nc.max), (8.0, 6.0, 10.0));
        let r = &nc.ratio_to["host-gw"];
        assert_eq!(r.runs, vec![1.25, 1.5]);
        assert!(
            !nc.ratio_to.contains_key("vxlan-kernel"),
            "no vxlan-kernel runs"
        );
        let hg = recs.iter().find(|r| r.datapath == "host-gw").unwrap();
        assert!(!hg.ratio_to.contains_key("host-gw"), "no ratio to itself");
    }
}
