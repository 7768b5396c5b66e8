//! The PNG chart (gnuplot): TCP throughput and latency by datapath, medians.

use std::{fmt::Write as _, path::Path, process::Command};

use anyhow::{Context, Result};

use super::{cmd, metric::Metric, results::Results};

/// Writes `bench.png` (and the gnuplot data and script beside it) into `dir`.
pub fn write(r: &Results, dir: &Path) -> Result<()> {
    let data = dir.join("bench.dat");
    std::fs::write(&data, data_file(r)).with_context(|| format!("writing {}", data.display()))?;
    let script = dir.join("bench.gp");
    std::fs::write(&script, gnuplot_script(r, &data, &dir.join("bench.png")))?;
    cmd::run(Command::new("gnuplot").arg(&script))
        .context("drawing the chart (is gnuplot installed? `cargo xtask setup`)")?;
    Ok(())
}

/// One line per datapath and underlay profile: `name/profile`, TCP 1 and 4 streams
/// (Gbit/s), ping and RR p50 (µs); `?` where there is no figure.
fn data_file(r: &Results) -> String {
    let mut s = String::from("# datapath(profile) tcp1 tcp4 ping_us rr_p50_us\n");
    for d in &r.datapaths {
        let v = |m: Metric, scale: f64| {
            r.record(d, m.key())
                .map_or("?".into(), |rec| format!("{:.4}", rec.median * scale))
        };
        let _ = writeln!(
            s,
            "{}/{} {} {} {} {}",
            d.name,
            d.profile.unwrap_or("-"),
            v(Metric::Tcp1, 1.0),
            v(Metric::Tcp4, 1.0),
            v(Metric::PingRtt, 1000.0),
            v(Metric::RrP50, 1.0)
        );
    }
    s
}

fn gnuplot_script(r: &Results, data: &Path, png: &Path) -> String {
    let title = format!(
        "netcore bench: {} rounds, MTU {}, Linux {}, {} CPUs, {} (medians; /veth and /nic underlays)",
        r.rounds, r.mtu, r.machine.kernel, r.machine.cpus, r.machine.cpu_model
    );
    format!(
        r#"set terminal pngcairo size 1400,600 font "sans,11"
set output '{png}'
set datafile missing '?'
set multiplot layout 1,2 title "{title}"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -30 nomirror
set grid ytics
set yrange [0:*]
set key top right
set title "TCP throughput"
set ylabel "Gbit/s"
plot '{data}' using 2:xtic(1) title "1 stream", '' using 3 title "4 streams"
set title "Latency"
set ylabel "µs"
plot '{data}' using 4:xtic(1) title "ping RTT", '' using 5 title "request/response p50"
unset multiplot
"#,
        png = png.display(),
        data = data.display(),
    )
}
