//! The run: set every datapath up once, measure in interleaved rounds (each round
//! runs every datapath once, starting one further along), then the control plane,
//! then the report. Guards remove everything, also on failure or Ctrl-C.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use super::{
    beds, chart, cmd, control_plane,
    datapaths::{Context, Datapath, Setup},
    measure::{self, Durations, Failure},
    metric::{Metric, Sample},
    netns, policy,
    profile::Profile,
    report,
    results::{self, DatapathStatus, Machine, Results},
    services, signals,
    testbed::Namer,
    BenchArgs, Only,
};

/// Namespace names start with this and the pid.
const TAG: &str = "ncb";

struct Plan {
    profiles: Vec<Profile>,
    datapaths: Vec<Datapath>,
    rounds: u32,
    durations: Durations,
    control_plane: Option<control_plane::Counts>,
    services: Option<services::Plan>,
    policy: Option<policy::Plan>,
}

impl Plan {
    fn of(a: &BenchArgs) -> Plan {
        let datapaths = if a.only.is_empty() {
            Datapath::ALL.to_vec()
        } else {
            Datapath::ALL
                .into_iter()
                .filter(|d| a.only.contains(&Only::Datapath(*d)))
                .collect()
        };
        let (rounds, secs, pings) = if a.quick {
            (1, 1, 10)
        } else {
            (a.rounds, a.seconds, 50)
        };
        let counts = if a.quick {
            control_plane::Counts {
                pods: 10,
                nodes: vec![100],
            }
        } else {
            control_plane::Counts {
                pods: 100,
                nodes: vec![1000, 10000],
            }
        };
        let mut profiles = a.underlay.clone();
        profiles.sort();
        profiles.dedup();
        Plan {
            profiles,
            datapaths,
            rounds,
            durations: Durations {
                iperf_s: secs,
                rr_s: secs,
                pings,
                cc: a.cc.name(),
            },
            control_plane: (!a.no_control_plane).then_some(counts),
            services: services_plan(a, rounds, secs),
            policy: policy_plan(a, rounds, secs),
        }
    }
}

/// Services after the datapaths unless `--no-services`, or `--only` without `services`.
fn services_plan(a: &BenchArgs, rounds: u32, seconds: u32) -> Option<services::Plan> {
    let wanted = a.only.is_empty() || a.only.contains(&Only::Services);
    (wanted && !a.no_services).then(|| services::Plan {
        counts: vec![1, if a.quick { 10 } else { 1000 }],
        rounds,
        seconds,
    })
}

/// Policy after the services unless `--no-policy`, or `--only` without `policy`.
fn policy_plan(a: &BenchArgs, rounds: u32, seconds: u32) -> Option<policy::Plan> {
    let wanted = a.only.is_empty() || a.only.contains(&Only::Policy);
    (wanted && !a.no_policy).then(|| policy::Plan {
        counts: vec![0, if a.quick { 10 } else { 1000 }],
        rounds,
        seconds,
        cc: a.cc.name(),
    })
}

/// The run's scratch directory and bpffs pin directory, removed on drop.
struct RunDirs {
    work: PathBuf,
    pins: PathBuf,
}

impl RunDirs {
    fn new(prefix: &str) -> Result<RunDirs> {
        if cmd::output(Command::new("mountpoint").args(["-q", "/sys/fs/bpf"]))?
            .status
            .success()
        {
            let dirs = RunDirs {
                work: std::env::temp_dir().join(format!("netcore-bench-{prefix}")),
                pins: Path::new("/sys/fs/bpf/netcore-bench").join(prefix),
            };
            std::fs::create_dir_all(&dirs.work)?;
            return Ok(dirs);
        }
        bail!("bpffs is not mounted at /sys/fs/bpf: run `cargo xtask setup`")
    }
}

impl Drop for RunDirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
        let _ = std::fs::remove_dir_all(&self.pins);
        if let Some(parent) = self.pins.parent() {
            let _ = std::fs::remove_dir(parent); // only when no other run uses it
        }
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    signals::install();
    let plan = Plan::of(&args);
    let netcore = crate::root().join("target/debug/netcore");
    if !netcore.exists() {
        bail!(
            "{} is missing: build it (`cargo xtask bench` without --no-build does)",
            netcore.display()
        );
    }
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| crate::root().join("target/bench"));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    netns::sweep_stale(TAG);
    let machine = Machine::this();
    if machine.load_at_start > 0.5 {
        eprintln!(
            "bench: warning: the machine is busy (load average {:.1}): figures will be noisy",
            machine.load_at_start
        );
    }
    let prefix = format!("{TAG}{}", std::process::id());
    let dirs = RunDirs::new(&prefix)?;
    let mut ctx = Context {
        namer: Namer { prefix },
        mtu: args.mtu,
        profile: Profile::Veth,
        netcore,
        work_dir: dirs.work.clone(),
        pin_dir: dirs.pins.clone(),
    };
    let mut statuses = Vec::new();
    let mut samples = Vec::new();
    // One profile at a time: every datapath set up on that underlay, measured in
    // interleaved rounds, then taken down.
    for &profile in &plan.profiles {
        ctx.profile = profile;
        eprintln!(
            "bench: underlay profile {}: {}",
            profile.name(),
            profile.describe()
        );
        let setups = set_up(&ctx, &plan, &mut statuses)?;
        samples.extend(rounds(profile, &plan, &setups, &mut statuses)?);
    }
    ctx.profile = Profile::Veth;
    let (svc, pol) = (services(&ctx, &plan)?, policy(&ctx, &plan)?);
    let control = control(&ctx, &plan)?;
    let mut results = assemble(&args, &plan, machine, statuses, &samples, control);
    results.records.extend(svc.records);
    results.services = svc.statuses;
    results.records.extend(pol.records);
    results.policy = pol.statuses;
    publish(&results, &out_dir)?;
    let failed: Vec<&str> = results
        .datapaths
        .iter()
        .chain(&results.services)
        .chain(&results.policy)
        .filter(|d| d.error.is_some())
        .map(|d| d.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("datapaths failed: {} (see the table)", failed.join(", "));
    }
    Ok(())
}

fn status(
    profile: Profile,
    dp: Datapath,
    path_mtu: Option<u32>,
    error: Option<String>,
) -> DatapathStatus {
    DatapathStatus {
        name: dp.name().into(),
        profile: Some(profile.name()),
        scope: if dp.same_node() {
            "same-node"
        } else {
            "cross-node"
        },
        status: if error.is_some() { "failed" } else { "ok" },
        path_mtu,
        error,
    }
}

fn set_up(
    ctx: &Context,
    plan: &Plan,
    statuses: &mut Vec<DatapathStatus>,
) -> Result<Vec<(Datapath, Setup)>> {
    let mut setups = Vec::new();
    for &dp in &plan.datapaths {
        signals::check()?;
        eprintln!("bench: setting up {}", dp.name());
        match dp.setup(ctx) {
            Ok(s) => {
                statuses.push(status(ctx.profile, dp, Some(s.target.path_mtu), None));
                setups.push((dp, s));
            }
            Err(e) => {
                eprintln!("bench: {} FAILED to set up: {e:#}", dp.name());
                statuses.push(status(
                    ctx.profile,
                    dp,
                    None,
                    Some(format!("set-up: {e:#}")),
                ));
            }
        }
    }
    Ok(setups)
}

fn rounds(
    profile: Profile,
    plan: &Plan,
    setups: &[(Datapath, Setup)],
    statuses: &mut [DatapathStatus],
) -> Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for round in 0..plan.rounds as usize {
        for k in 0..setups.len() {
            let (dp, setup) = &setups[(k + round) % setups.len()];
            let st = statuses
                .iter_mut()
                .find(|s| s.name == dp.name() && s.profile == Some(profile.name()))
                .expect("a status per datapath and profile");
            if st.error.is_some() {
                continue;
            }
            signals::check()?;
            eprintln!(
                "bench: {} round {}/{}: {}",
                profile.name(),
                round + 1,
                plan.rounds,
                dp.name()
            );
            match measure::turn(profile, *dp, &setup.target, plan.durations, round) {
                Ok(got) => {
                    progress(&got);
                    samples.extend(got);
                }
                Err(f) => {
                    signals::check()?;
                    *st = status(profile, *dp, st.path_mtu, Some(failure_text(f)));
                    eprintln!(
                        "bench: {} FAILED: {}",
                        dp.name(),
                        st.error.as_deref().unwrap_or("")
                    );
                }
            }
        }
    }
    Ok(samples)
}

fn failure_text(f: Failure) -> String {
    match f {
        Failure::Check(e) => format!("path MTU check: {e:#}"),
        Failure::Measurement(e) => format!("{e:#}"),
    }
}

fn progress(got: &[Sample]) {
    let v = |m: Metric| {
        got.iter()
            .find(|s| s.metric == m)
            .map_or(f64::NAN, |s| s.value)
    };
    eprintln!(
        "bench:   TCP {:.2} Gbit/s (4 streams {:.2}), ping {:.3} ms, RR p50 {:.0} µs p99 {:.0} µs, {:.2} CPU s/GB, {} retransmits ({} DSACKed, {} out of order), {:.0} B/packet received",
        v(Metric::Tcp1),
        v(Metric::Tcp4),
        v(Metric::PingRtt),
        v(Metric::RrP50),
        v(Metric::RrP99),
        v(Metric::CpuPerGb),
        v(Metric::Retransmits),
        v(Metric::Dsacks),
        v(Metric::OutOfOrder),
        v(Metric::RxPacket)
    );
}

fn services(ctx: &Context, plan: &Plan) -> Result<beds::Outcome> {
    let Some(p) = &plan.services else {
        return Ok(beds::Outcome::default());
    };
    signals::check()?;
    services::run(ctx, p)
}

fn policy(ctx: &Context, plan: &Plan) -> Result<beds::Outcome> {
    let Some(p) = &plan.policy else {
        return Ok(beds::Outcome::default());
    };
    signals::check()?;
    policy::run(ctx, p)
}

fn control(ctx: &Context, plan: &Plan) -> Result<Vec<control_plane::CpRecord>> {
    let Some(counts) = &plan.control_plane else {
        return Ok(Vec::new());
    };
    signals::check()?;
    control_plane::run(ctx, counts).context("control-plane figures")
}

fn assemble(
    args: &BenchArgs,
    plan: &Plan,
    machine: Machine,
    statuses: Vec<DatapathStatus>,
    samples: &[Sample],
    control_plane: Vec<control_plane::CpRecord>,
) -> Results {
    let ok: Vec<(Profile, Datapath)> = plan
        .profiles
        .iter()
        .flat_map(|p| plan.datapaths.iter().map(move |d| (*p, *d)))
        .filter(|(p, d)| {
            statuses
                .iter()
                .any(|s| s.name == d.name() && s.profile == Some(p.name()) && s.error.is_none())
        })
        .collect();
    Results {
        schema: results::SCHEMA,
        machine,
        mtu: args.mtu,
        tcp_congestion_control: plan.durations.cc,
        rounds: plan.rounds,
        seconds: plan.durations.iperf_s,
        quick: args.quick,
        records: results::records(samples, &ok),
        datapaths: statuses,
        control_plane,
        services: Vec::new(),
        policy: Vec::new(),
    }
}

/// results.json, results.md and bench.png in `dir`; the table on stdout.
fn publish(r: &Results, dir: &Path) -> Result<()> {
    report::write_json(r, dir)?;
    let table = report::markdown(r);
    std::fs::write(dir.join("results.md"), &table)?;
    if r.datapaths.is_empty() {
        // Only the services or policy figures: the chart draws datapaths.
    } else if let Err(e) = chart::write(r, dir) {
        eprintln!("bench: no chart: {e:#}");
    }
    println!("{table}");
    eprintln!("bench: wrote {}", dir.join("results.json").display());
    Ok(())
}
