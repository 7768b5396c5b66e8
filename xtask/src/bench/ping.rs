//! Pings: the don't-fragment check at the path MTU that proves a datapath is set up
//! right, and round-trip latency (the median of every reply's time).

use anyhow::{bail, Result};

use super::{cmd, datapaths::Target, stats};

/// IPv4 + ICMP headers.
const ICMP_OVERHEAD: u32 = 28;

/// A don't-fragment ping whose IP packet is exactly the path MTU.
pub fn df_check(t: &Target) -> Result<()> {
    let size = (t.path_mtu - ICMP_OVERHEAD).to_string();
    let ip = t.server_ip.to_string();
    let args = [
        "ping", "-M", "do", "-s", &size, "-c", "3", "-i", "0.2", "-W", "1", &ip,
    ];
    let out = cmd::output(&mut cmd::in_ns(&t.client, &args))?;
    if !out.status.success() {
        bail!(
            "don't-fragment ping of {} bytes from {} to {ip} failed: {}{}",
            t.path_mtu,
            t.client,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Median round-trip time in milliseconds over `count` pings.
pub fn rtt_ms(t: &Target, count: u32) -> Result<f64> {
    let ip = t.server_ip.to_string();
    let count = count.to_string();
    let args = ["ping", "-c", &count, "-i", "0.02", "-W", "1", &ip];
    let out = cmd::run(&mut cmd::in_ns(&t.client, &args))?;
    match stats::median(&reply_times(&out)) {
        Some(ms) => Ok(ms),
        None => bail!("ping to {ip} got no replies: {out}"),
    }
}

/// Every `time=X ms` in ping's output.
pub fn reply_times(out: &str) -> Vec<f64> {
    out.split_whitespace()
        .filter_map(|w| w.strip_prefix("time="))
        .filter_map(|t| t.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_reply_times() {
        let out = "64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.081 ms\n\
                   64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=0.12 ms\n\
                   rtt min/avg/max/mdev = 0.081/0.100/0.12/0.02 ms";
        assert_eq!(super::reply_times(out), vec![0.081, 0.12]);
    }
}
