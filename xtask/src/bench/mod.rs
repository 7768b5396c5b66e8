//! `cargo xtask bench`: every datapath side by side on one test bed, in interleaved
//! rounds, with a markdown table on stdout, results.json and a PNG chart.

mod agent;
mod beds;
mod chart;
mod cmd;
mod control_plane;
pub mod cps;
mod cpu;
mod datapaths;
mod iperf;
mod measure;
mod metric;
mod netns;
mod netstat;
mod ping;
mod policy;
mod profile;
mod report;
mod results;
pub mod rr;
mod run;
mod services;
mod signals;
mod stats;
mod testbed;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{value_parser, Args, ValueEnum};

pub use datapaths::Datapath;
pub use profile::Profile;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Rounds; each runs every datapath once, the first one rotated.
    #[arg(long, default_value_t = 3, value_parser = value_parser!(u32).range(1..=50))]
    pub rounds: u32,
    /// Seconds per throughput and request/response measurement.
    #[arg(long, default_value_t = 5, value_parser = value_parser!(u32).range(1..=300))]
    pub seconds: u32,
    /// Underlay profiles to measure in, each with every datapath (comma-separated):
    /// `veth` (64 KB packets cross whole) and `nic` (segmented, then merged by GRO).
    #[arg(long, value_delimiter = ',', default_value = "veth,nic")]
    pub underlay: Vec<Profile>,
    /// TCP congestion control of every measured flow: Linux's default (cubic) unless
    /// asked otherwise; some machines default to BBR, which paces and retransmits
    /// differently.
    #[arg(long, value_enum, default_value_t = Cc::Cubic)]
    pub cc: Cc,
    /// Underlay MTU (try 9000 for jumbo frames).
    #[arg(long, default_value_t = 1500, value_parser = value_parser!(u32).range(1280..=9000))]
    pub mtu: u32,
    /// One short round (1 s per measurement, small control-plane counts): proves that
    /// every datapath passes traffic.
    #[arg(long)]
    pub quick: bool,
    /// Only these datapaths, and the services or policy figures if `services` or
    /// `policy` is listed (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = parse_only)]
    pub only: Vec<Only>,
    /// Skip the control-plane figures.
    #[arg(long)]
    pub no_control_plane: bool,
    /// Skip the services figures (ClusterIP: netcore against kube-proxy's iptables).
    #[arg(long)]
    pub no_services: bool,
    /// Skip the network policy figures (netcore against kube-router's iptables).
    #[arg(long)]
    pub no_policy: bool,
    /// Where results.json, results.md and bench.png go [default: target/bench].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Use the binaries already in target/debug (no set-up, no build): for the test suite.
    #[arg(long)]
    pub no_build: bool,
}

/// A TCP congestion control module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Cc {
    Cubic,
    Bbr,
    Reno,
}

impl Cc {
    pub fn name(self) -> &'static str {
        match self {
            Cc::Cubic => "cubic",
            Cc::Bbr => "bbr",
            Cc::Reno => "reno",
        }
    }
}

/// What `--only` names: a datapath, or the services figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Only {
    Datapath(Datapath),
    Services,
    Policy,
}

fn parse_only(s: &str) -> Result<Only, String> {
    match s {
        "services" => return Ok(Only::Services),
        "policy" => return Ok(Only::Policy),
        _ => {}
    }
    Datapath::from_str(s, true)
        .map(Only::Datapath)
        .map_err(|_| format!("`{s}` is neither a datapath nor `services` nor `policy`"))
}

pub fn main(args: BenchArgs) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark builds network namespaces: run it as root");
    }
    if !args.no_build {
        crate::setup()?;
        crate::build()?;
    }
    run::run(args)
}
