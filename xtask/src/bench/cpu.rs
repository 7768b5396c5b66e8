//! CPU time from the kernel's accounting: the `cpu` line of /proc/stat, summed over
//! every CPU (the test bed shares the machine, so this is what the run cost in total).

use anyhow::{Context, Result};

/// Busy and total CPU time since boot, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

pub fn snapshot() -> Result<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse(&stat)
}

/// Parses /proc/stat: busy is everything but idle and iowait.
pub fn parse(stat: &str) -> Result<CpuTimes> {
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat has no `cpu` line")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().context("a /proc/stat field is not a number"))
        .collect::<Result<_>>()?;
    anyhow::ensure!(fields.len() >= 8, "/proc/stat's cpu line is short: {line}");
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = fields[..8].iter().sum();
    Ok(CpuTimes {
        busy: total - fields[3] - fields[4],
        total,
    })
}

/// CPU seconds spent between two snapshots.
pub fn busy_seconds(before: CpuTimes, after: CpuTimes) -> f64 {
    // SAFETY: sysconf with a constant name has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    after.busy.saturating_sub(before.busy) as f64 / hz
}

#[cfg(test)]
mod tests {
    #[test]
    fn busy_leaves_out_idle_and_iowait() {
        let stat = "cpu  10 1 5 100 7 2 3 1 0 0\ncpu0 5 0 2 50 3 1 1 0 0 0\n";
        let t = super::parse(stat).unwrap();
        assert_eq!(t.total, 129);
        assert_eq!(t.busy, 22);
        assert!(super::parse("intr 1 2").is_err());
    }
}
