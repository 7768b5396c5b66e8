//! The report: markdown tables (stdout and results.md) and results.json.

use std::{fmt::Write as _, path::Path};

use anyhow::{Context, Result};

use super::{
    metric::Metric,
    profile::Profile,
    results::{DatapathStatus, Ratio, Record, Results},
};

/// Metrics in the main table, in column order.
const COLUMNS: [Metric; 7] = [
    Metric::Tcp1,
    Metric::Tcp4,
    Metric::PingRtt,
    Metric::RrP50,
    Metric::RrP99,
    Metric::RrRate,
    Metric::CpuPerGb,
];
/// The single stream's loss and reordering counters.
const TCP_COLUMNS: [Metric; 4] = [
    Metric::Retransmits,
    Metric::Dsacks,
    Metric::OutOfOrder,
    Metric::RxPacket,
];
/// Metrics whose paired ratios are tabulated.
const RATIO_COLUMNS: [Metric; 5] = [
    Metric::Tcp1,
    Metric::Tcp4,
    Metric::PingRtt,
    Metric::RrP50,
    Metric::CpuPerGb,
];

pub fn write_json(r: &Results, dir: &Path) -> Result<()> {
    let path = dir.join("results.json");
    let text = serde_json::to_string_pretty(r)?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(
        s,
        "netcore bench: {} rounds × {} s, underlay MTU {}, TCP {}, Linux {}, {} CPUs ({})\n",
        r.rounds, r.seconds, r.mtu, r.tcp_congestion_control, m.kernel, m.cpus, m.cpu_model
    );
    if !r.datapaths.is_empty() {
        datapath_tables(r, &mut s);
    }
    if !r.services.is_empty() {
        s.push_str("\nServices: through a ClusterIP to a backend pod on the same node, with 1 and N services defined (svc-KIND-N); `iptables` is kube-proxy's nat chains, the measured service last.\n\n");
        beds_table(r, &r.services, &SERVICE_COLUMNS, &mut s);
    }
    if !r.policy.is_empty() {
        s.push_str("\nNetwork policy: client to server pod on one node, with 0 and N policies that all select the server (pol-KIND-N); `iptables` is kube-router's filter chains with ipsets, the admitting policy last.\n\n");
        beds_table(r, &r.policy, &POLICY_COLUMNS, &mut s);
    }
    if !r.control_plane.is_empty() {
        s.push_str("\nControl plane (netcore agent):\n\n");
        control_table(r, &mut s);
    }
    s
}

fn datapath_tables(r: &Results, s: &mut String) {
    for profile in Profile::ALL {
        let statuses: Vec<&DatapathStatus> = r
            .datapaths
            .iter()
            .filter(|d| d.profile == Some(profile.name()))
            .collect();
        if statuses.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "### Underlay `{}`: {}\n",
            profile.name(),
            profile.describe()
        );
        main_table(r, &statuses, &COLUMNS, s);
        s.push_str("\nTCP, 1 stream: segments retransmitted, segments the receiver reported as duplicates (DSACK: the retransmission was spurious), segments the receiver queued out of order, and the mean size of the packets the server received (above the MTU: merged by GRO or sent whole).\n\n");
        main_table(r, &statuses, &TCP_COLUMNS, s);
        s.push_str("\nPaired per-round ratios (median, min–max): above 1 is faster for throughput, slower for latency and CPU.\n\n");
        ratio_table(r, &statuses, s);
        s.push('\n');
    }
}

fn main_table(r: &Results, statuses: &[&DatapathStatus], columns: &[Metric], s: &mut String) {
    s.push_str("| datapath | path MTU |");
    columns.iter().for_each(|c| {
        let _ = write!(s, " {} |", c.heading());
    });
    s.push_str("\n|---|---:|");
    s.push_str(&"---:|".repeat(columns.len()));
    s.push('\n');
    for &d in statuses {
        let mtu = d.path_mtu.map_or("-".into(), |m| m.to_string());
        let _ = write!(s, "| {} | {mtu} |", d.name);
        if let Some(err) = &d.error {
            let _ = writeln!(s, " FAILED: {} |", one_line(err));
            continue;
        }
        for &c in columns {
            let cell = r.record(d, c.key()).map_or("-".into(), cell);
            let _ = write!(s, " {cell} |");
        }
        s.push('\n');
    }
}

fn cell(rec: &Record) -> String {
    if rec.runs.len() == 1 {
        return num(rec.median);
    }
    format!("{} ({}–{})", num(rec.median), num(rec.min), num(rec.max))
}

fn ratio_table(r: &Results, statuses: &[&DatapathStatus], s: &mut String) {
    s.push_str("| datapath | vs |");
    RATIO_COLUMNS.iter().for_each(|c| {
        // Ratios have no unit: the heading without its last word.
        let name = c.heading().rsplit_once(' ').map_or(c.heading(), |(n, _)| n);
        let _ = write!(s, " {name} |");
    });
    s.push_str("\n|---|---|");
    s.push_str(&"---:|".repeat(RATIO_COLUMNS.len()));
    s.push('\n');
    for &d in statuses.iter().filter(|d| d.error.is_none()) {
        let Some(first) = r.record(d, Metric::Tcp1.key()) else {
            continue;
        };
        for base in first.ratio_to.keys() {
            let _ = write!(s, "| {} | {base} |", d.name);
            for c in RATIO_COLUMNS {
                let ratio = r.record(d, c.key()).and_then(|rec| rec.ratio_to.get(base));
                let text = ratio.map_or("-".into(), ratio_cell);
                let _ = write!(s, " {text} |");
            }
            s.push('\n');
        }
    }
}

/// Service metrics (key, column heading), in column order.
const SERVICE_COLUMNS: [(&str, &str); 3] = [
    ("connections_per_s", "connections/s"),
    ("rr_p50", "RR p50 µs"),
    ("rr_p99", "RR p99 µs"),
];
/// Network policy metrics.
const POLICY_COLUMNS: [(&str, &str); 2] = [
    ("connections_per_s", "connections/s"),
    ("tcp_1_stream", "TCP 1 stream Gbit/s"),
];

/// The beds' medians, then their paired ratios to what they are compared with.
fn beds_table(r: &Results, beds: &[DatapathStatus], columns: &[(&str, &str)], s: &mut String) {
    let heads: Vec<&str> = columns.iter().map(|c| c.1).collect();
    let align = "---:|".repeat(columns.len());
    let _ = writeln!(s, "| datapath | {} |\n|---|{align}", heads.join(" | "));
    for d in beds {
        let _ = write!(s, "| {} |", d.name);
        if let Some(err) = &d.error {
            let _ = writeln!(s, " FAILED: {} |", one_line(err));
            continue;
        }
        for (key, _) in columns {
            let text = r.record(d, key).map_or("-".into(), cell);
            let _ = write!(s, " {text} |");
        }
        s.push('\n');
    }
    let heads: Vec<&str> = columns
        .iter()
        .map(|c| c.1.trim_end_matches(" µs").trim_end_matches(" Gbit/s"))
        .collect();
    let _ = writeln!(
        s,
        "\n| datapath | vs | {} |\n|---|---|{align}",
        heads.join(" | ")
    );
    for d in beds.iter().filter(|d| d.error.is_none()) {
        let Some(first) = r.record(d, columns[0].0) else {
            continue;
        };
        for base in first.ratio_to.keys() {
            let _ = write!(s, "| {} | {base} |", d.name);
            for (key, _) in columns {
                let q = r.record(d, key).and_then(|rec| rec.ratio_to.get(base));
                let _ = write!(s, " {} |", q.map_or("-".into(), ratio_cell));
            }
            s.push('\n');
        }
    }
}

fn ratio_cell(q: &Ratio) -> String {
    format!("{:.2}× ({:.2}–{:.2})", q.median, q.min, q.max)
}

fn control_table(r: &Results, s: &mut String) {
    s.push_str("| figure | value | note |\n|---|---:|---|\n");
    for c in &r.control_plane {
        let _ = writeln!(
            s,
            "| {} | {} {} | {} |",
            c.metric,
            num(c.value),
            c.unit,
            c.note
        );
    }
}

/// Three significant digits, without exponent notation for the usual ranges.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn one_line(s: &str) -> String {
    let line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    line.replace('|', "/").chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(super::num(8.0123), "8.01");
        assert_eq!(super::num(0.0912), "0.091");
        assert_eq!(super::num(43.21), "43.2");
        assert_eq!(super::num(21345.6), "21346");
    }
}
