//! What the kernel says is attached to an interface's ingress: TCX links (asked with
//! `BPF_PROG_QUERY`) and cls_bpf filters (`tc filter show`), as (program name, id).

use anyhow::{Context, Result};
use aya::programs::{SchedClassifier, TcAttachType};

use crate::netns::Netns;

/// The kernel has TCX (Linux 6.6+), read from its version: independent of the
/// agent's own probe.
pub fn kernel_has_tcx() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (6, 6)
}

/// The handle of netcore's cls_bpf filters.
const NETCORE_HANDLE: &str = "0x4e43";

/// Programs on `ifname`'s ingress in `ns`: every TCX program, and netcore's filters.
pub fn ingress_programs(ns: &Netns, ifname: &str) -> Result<Vec<(String, u32)>> {
    let mut out = tcx_programs(ns, ifname)?;
    out.extend(filter_programs(ns, ifname)?);
    Ok(out)
}

fn tcx_programs(ns: &Netns, ifname: &str) -> Result<Vec<(String, u32)>> {
    if !kernel_has_tcx() {
        return Ok(Vec::new());
    }
    let ifname = ifname.to_string();
    let (_, progs) = ns
        .run(move || SchedClassifier::query_tcx(&ifname, TcAttachType::Ingress))
        .context("querying TCX")?;
    Ok(progs
        .iter()
        .map(|p| (p.name_as_str().unwrap_or("").to_string(), p.id()))
        .collect())
}

fn filter_programs(ns: &Netns, ifname: &str) -> Result<Vec<(String, u32)>> {
    let json = ns.sh(&format!("tc -j filter show dev {ifname} ingress"))?;
    let filters: serde_json::Value = serde_json::from_str(json.trim()).unwrap_or_default();
    Ok(filters
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            // Only netcore's filters (its handle). Names may be empty: where the
            // loader finds the kernel cannot take them (Linux 6.1 here), it names
            // neither program nor filter.
            if f["options"]["handle"] != NETCORE_HANDLE {
                return None;
            }
            let name = f["options"]["bpf_name"].as_str().unwrap_or("");
            let id = f["options"]["prog"]["id"].as_u64()?;
            Some((name.to_string(), id as u32))
        })
        .collect())
}
