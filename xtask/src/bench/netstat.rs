//! TCP's own counters in a namespace (`/proc/net/netstat`, per network namespace):
//! what tells a spurious retransmission (the receiver reported a duplicate, DSACK)
//! and reordering (segments the receiver queued out of order) from real loss.

use std::collections::HashMap;

use anyhow::{Context, Result};

use super::cmd;

/// The `TcpExt:` counters of namespace `ns`.
pub fn tcp_ext(ns: &str) -> Result<HashMap<String, u64>> {
    let text = cmd::run(&mut cmd::in_ns(ns, &["cat", "/proc/net/netstat"]))?;
    parse(&text)
}

/// Pairs the `TcpExt:` header line with the value line after it.
pub fn parse(text: &str) -> Result<HashMap<String, u64>> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        anyhow::bail!("/proc/net/netstat has no TcpExt lines");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
        .map(|(n, v)| Ok((n.to_string(), v.parse().context("a TcpExt value")?)))
        .collect()
}

/// Bytes and packets received by every interface of namespace `ns` but `lo`
/// (`/proc/net/dev`).
pub fn rx_totals(ns: &str) -> Result<(u64, u64)> {
    let text = cmd::run(&mut cmd::in_ns(ns, &["cat", "/proc/net/dev"]))?;
    parse_dev(&text)
}

pub fn parse_dev(text: &str) -> Result<(u64, u64)> {
    let mut total = (0, 0);
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let mut fields = counters.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(bytes)), Some(Ok(packets))) = (fields.next(), fields.next()) else {
            anyhow::bail!("/proc/net/dev: cannot read {line:?}");
        };
        total = (total.0 + bytes, total.1 + packets);
    }
    Ok(total)
}

/// How much counter `name` grew between two readings.
pub fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>, name: &str) -> u64 {
    let get = |m: &HashMap<String, u64>| m.get(name).copied().unwrap_or(0);
    get(after).saturating_sub(get(before))
}

#[cfg(test)]
mod tests {
    #[test]
    fn pairs_names_with_values() {
        let text = "TcpExt: SyncookiesSent TCPDSACKRecv TCPOFOQueue\nTcpExt: 0 7 42\n\
                    IpExt: InNoRoutes\nIpExt: 3\n";
        let m = super::parse(text).unwrap();
        assert_eq!((m["TCPDSACKRecv"], m["TCPOFOQueue"]), (7, 42));
        let mut later = m.clone();
        later.insert("TCPDSACKRecv".into(), 10);
        assert_eq!(super::delta(&m, &later, "TCPDSACKRecv"), 3);
        assert!(super::parse("IpExt: a\nIpExt: 1").is_err());
    }

    #[test]
    fn sums_receive_counters_but_loopback() {
        let text = "Inter-|   Receive\n face |bytes    packets errs\n\
                    lo: 100 2 0 0\n  eth0: 90000 3 0 0\n ul0: 10 1 0\n";
        assert_eq!(super::parse_dev(text).unwrap(), (90010, 4));
        assert!(super::parse_dev("a\nb\n eth0: x y\n").is_err());
    }
}
