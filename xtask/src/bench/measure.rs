//! One datapath's turn in a round: the don't-fragment check at the path MTU, then
//! ping, TCP with 1 and 4 streams (with CPU time per GB), and request/response.

use anyhow::{Context, Result};

use super::{
    datapaths::{Datapath, Target},
    iperf,
    metric::{Metric, Sample},
    ping,
    profile::Profile,
    rr,
};

/// How long each measurement runs, and the bulk flows' TCP congestion control (the
/// machine's default may be another, BBR on some: iperf3 sets it per socket).
#[derive(Clone, Copy)]
pub struct Durations {
    pub iperf_s: u32,
    pub rr_s: u32,
    pub pings: u32,
    pub cc: &'static str,
}

/// Why a datapath's turn produced no figures.
pub enum Failure {
    /// The don't-fragment ping failed: the datapath is not set up right.
    Check(anyhow::Error),
    Measurement(anyhow::Error),
}

pub fn turn(
    profile: Profile,
    dp: Datapath,
    t: &Target,
    d: Durations,
    round: usize,
) -> Result<Vec<Sample>, Failure> {
    ping::df_check(t).map_err(Failure::Check)?;
    measure(profile, dp, t, d, round).map_err(Failure::Measurement)
}

fn measure(
    profile: Profile,
    dp: Datapath,
    t: &Target,
    d: Durations,
    round: usize,
) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    let mut push = |metric, value| {
        out.push(Sample {
            profile,
            datapath: dp,
            metric,
            round,
            value,
        })
    };
    push(Metric::PingRtt, ping::rtt_ms(t, d.pings).context("ping")?);
    let (one, cpu_s) = iperf::run(t, 1, d.iperf_s, d.cc).context("TCP, 1 stream")?;
    anyhow::ensure!(one.bytes > 0, "TCP, 1 stream: nothing arrived");
    push(Metric::Tcp1, one.gbit_per_s);
    push(Metric::Retransmits, one.retransmits as f64);
    push(Metric::Dsacks, one.dsacks as f64);
    push(Metric::OutOfOrder, one.out_of_order as f64);
    push(Metric::CpuPerGb, cpu_s / (one.bytes as f64 / 1e9));
    push(Metric::RxPacket, one.rx_packet_bytes);
    let (four, _) = iperf::run(t, 4, d.iperf_s, d.cc).context("TCP, 4 streams")?;
    push(Metric::Tcp4, four.gbit_per_s);
    let r = rr::measure(t, d.rr_s).context("request/response")?;
    push(Metric::RrRate, r.transactions_per_s);
    push(Metric::RrP50, r.p50_us);
    push(Metric::RrP99, r.p99_us);
    Ok(out)
}
