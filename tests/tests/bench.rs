//! Keeps the benchmark harness from rotting: `xtask bench --quick` builds its own test
//! bed, and every datapath must pass traffic. No timing thresholds: this machine is
//! shared, and the figures are the benchmark's business, not the test's.

use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

const DATAPATHS: [&str; 11] = [
    "underlay",
    "host-gw",
    "vxlan-kernel",
    "socat-tun-udp",
    "netcore",
    "netcore-decap-tc",
    "netcore-attach-tc",
    "netcore-direct",
    "netcore-monitor",
    "bridge",
    "netcore-local",
];

/// Every datapath is measured on both underlays.
const PROFILES: [&str; 2] = ["veth", "nic"];

/// The service beds of a quick run (1 and 10 services).
const SERVICE_BEDS: [&str; 4] = [
    "svc-netcore-1",
    "svc-netcore-10",
    "svc-iptables-1",
    "svc-iptables-10",
];

/// The network policy beds of a quick run (0 and 10 policies).
const POLICY_BEDS: [&str; 4] = [
    "pol-netcore-0",
    "pol-netcore-10",
    "pol-iptables-0",
    "pol-iptables-10",
];

/// The `xtask` binary next to the test executable (built by `cargo xtask test`).
fn xtask_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps");
    let bin = dir.join("xtask");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo xtask test` does)",
        bin.display()
    );
    bin
}

fn record<'a>(results: &'a Value, datapath: &str, metric: &str) -> Option<&'a Value> {
    results["records"]
        .as_array()?
        .iter()
        .find(|r| r["datapath"] == datapath && r["metric"] == metric)
}

fn record_in<'a>(
    results: &'a Value,
    profile: &str,
    datapath: &str,
    metric: &str,
) -> Option<&'a Value> {
    results["records"]
        .as_array()?
        .iter()
        .find(|r| r["profile"] == profile && r["datapath"] == datapath && r["metric"] == metric)
}

#[test]
fn quick_bench_passes_traffic_on_every_datapath() -> Result<()> {
    let out = std::env::temp_dir().join(netcore_tests::unique("netcore-bench-test-"));
    let status = Command::new(xtask_bin())
        .args(["bench", "--quick", "--no-build", "--out"])
        .arg(&out)
        .status()
        .context("running xtask bench")?;
    let text = std::fs::read_to_string(out.join("results.json"));
    let _ = std::fs::remove_dir_all(&out);
    let results: Value = serde_json::from_str(&text.context("bench wrote no results.json")?)?;
    for dp in results["datapaths"].as_array().context("no datapaths")? {
        assert_eq!(dp["status"], "ok", "datapath failed: {dp}");
    }
    for profile in PROFILES {
        for dp in DATAPATHS {
            for metric in ["tcp_1_stream", "tcp_4_streams", "rr_rate"] {
                let median =
                    record_in(&results, profile, dp, metric).and_then(|r| r["median"].as_f64());
                assert!(
                    median.is_some_and(|v| v > 0.0),
                    "{dp} passed no traffic in {metric} on the {profile} underlay: {median:?}"
                );
            }
        }
    }
    for bed in results["services"].as_array().context("no services")? {
        assert_eq!(bed["status"], "ok", "service bed failed: {bed}");
    }
    for bed in SERVICE_BEDS {
        for metric in ["connections_per_s", "rr_p50"] {
            let median = record(&results, bed, metric).and_then(|r| r["median"].as_f64());
            assert!(
                median.is_some_and(|v| v > 0.0),
                "{bed}: no {metric} through the service address: {median:?}"
            );
        }
    }
    for bed in results["policy"].as_array().context("no policy beds")? {
        assert_eq!(bed["status"], "ok", "policy bed failed: {bed}");
    }
    for bed in POLICY_BEDS {
        for metric in ["connections_per_s", "tcp_1_stream"] {
            let median = record(&results, bed, metric).and_then(|r| r["median"].as_f64());
            assert!(
                median.is_some_and(|v| v > 0.0),
                "{bed}: no {metric} through the policies: {median:?}"
            );
        }
    }
    let control = results["control_plane"]
        .as_array()
        .context("no control plane")?;
    assert!(
        control.iter().any(|c| c["metric"] == "leases_apply_100"),
        "no lease figure: {control:?}"
    );
    assert!(status.success(), "xtask bench failed ({status})");
    Ok(())
}
